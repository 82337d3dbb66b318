//! What a mirror port delivers besides the conversations themselves: the
//! same packet twice (a SPAN session mirroring both ends), and sessions
//! whose encapsulation an operator moves to other ports or turns off.

mod common;

use std::fs::File;
use std::path::Path;

use capgen::frame::{Proto, Segment};
use capgen::pcap::{LINKTYPE_ETHERNET, PcapWriter};
use capgen::{Generator, Spec};
use common::{corpus_dir, report_counts, run_flowtap};
use pipeline::capture::CaptureFile;
use pipeline::wire::tzsp;

/// The frames of capture `path`: time, length on the wire, bytes.
fn frames_of(path: &Path) -> Vec<(u64, u32, Vec<u8>)> {
    let mut input = CaptureFile::open(path).unwrap();
    let mut frames = Vec::new();
    while input
        .read_frames(1024, |f| {
            frames.push((f.ts_ns, f.wire_len, f.data.to_vec()))
        })
        .unwrap()
        > 0
    {}
    frames
}

/// Copies `from` to `to`, writing every frame a second time `delay_ns`
/// later (as a SPAN session mirroring both switch ports delivers it).
/// Returns the number of frames copied.
fn doubled(from: &Path, to: &Path, delay_ns: u64) -> u64 {
    let frames = frames_of(from);
    let mut out = PcapWriter::new(File::create(to).unwrap(), LINKTYPE_ETHERNET).unwrap();
    for (ts, len, data) in &frames {
        out.write(*ts, data, *len).unwrap();
        out.write(ts + delay_ns, data, *len).unwrap();
    }
    out.finish().unwrap();
    frames.len() as u64
}

/// A capgen capture of `packets` packets, `concurrent` connections at a
/// time, without anomalies, written to `path`.
fn generated(path: &Path, packets: u64, concurrent: usize, tunnels: bool, seed: u64) {
    let spec = Spec {
        packets,
        concurrent,
        anomalies: false,
        tunnels,
        seed,
        ..Spec::default()
    };
    Generator::new(spec)
        .write(File::create(path).unwrap())
        .unwrap();
}

#[test]
fn duplicates_are_counted_always_and_dropped_only_with_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let once = dir.path().join("once.pcap");
    generated(&once, 20_000, 200, true, 9);
    let twice = dir.path().join("twice.pcap");
    // 1 us apart: both copies of a frame come before the next frame.
    let frames = doubled(&once, &twice, 1_000);
    let expected = run_flowtap(&[&once], 1, &[]);
    assert_eq!(
        report_counts(&expected.stderr, "flowtap: flows: ")["duplicates"],
        0
    );

    let deduped = run_flowtap(&[&twice], 1, &["--dedup"]);
    assert_eq!(deduped.status, 0, "{}", deduped.stderr);
    let flows = report_counts(&deduped.stderr, "flowtap: flows: ");
    assert_eq!(
        (flows["duplicates"], flows["duplicates dropped"]),
        (frames, frames)
    );
    let sorted = |run: &common::Run| {
        let mut flows = run.flows.clone();
        flows.sort_by(|a, b| a.key.cmp(&b.key));
        flows
    };
    assert!(
        sorted(&deduped) == sorted(&expected),
        "with --dedup: the same flows"
    );

    let counted = run_flowtap(&[&twice], 1, &[]);
    let flows = report_counts(&counted.stderr, "flowtap: flows: ");
    assert_eq!(
        (flows["duplicates"], flows["duplicates dropped"]),
        (frames, 0)
    );
    let total = |run: &common::Run| -> (u64, u64) {
        run.flows.iter().fold((0, 0), |(p, b), f| {
            (
                p + f.client_tx_pkts + f.server_tx_pkts,
                b + f.client_tx_bytes + f.server_tx_bytes,
            )
        })
    };
    let (pkts, bytes) = total(&expected);
    assert_eq!(
        total(&counted),
        (2 * pkts, 2 * bytes),
        "without: every copy counts"
    );

    // Copies further apart than the window are not duplicates.
    let apart = dir.path().join("apart.pcap");
    doubled(&once, &apart, 1_000_000);
    let run = run_flowtap(&[&apart], 1, &["--dedup", "--dedup-window-us", "100"]);
    assert_eq!(
        report_counts(&run.stderr, "flowtap: flows: ")["duplicates"],
        0
    );
}

#[test]
fn encapsulations_can_be_moved_or_turned_off() {
    let vxlan = corpus_dir().join("tunnels/captures/t12_tcpdump_gso_vxlan_ipv6.pcap");
    let inner = |run: &common::Run| {
        run.flows
            .iter()
            .map(|f| (f.key.0.clone(), f.key.3))
            .collect::<Vec<_>>()
    };
    let opened = run_flowtap(&[&vxlan], 1, &[]);
    assert_eq!(inner(&opened), [("tcp".to_owned(), 40145)]);
    let mirror = opened.flows[0].mirror.as_ref().unwrap();
    assert_eq!(
        (mirror["encap"].as_str(), mirror["vni"].as_u64()),
        (Some("vxlan"), Some(5001))
    );
    let sessions = report_counts(&opened.stderr, "flowtap: mirror session vxlan 5001: ");
    assert_eq!(sessions["frames"], 1);

    for args in [
        &["--no-decap", "vxlan,gre"][..],
        &["--decap-ports", "vxlan=4790"][..],
    ] {
        let run = run_flowtap(&[&vxlan], 1, args);
        assert_eq!(run.status, 0, "{args:?}: {}", run.stderr);
        assert_eq!(inner(&run), [("udp".to_owned(), 4789)], "{args:?}");
        assert!(run.flows[0].mirror.is_none());
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flowtap.toml");
    std::fs::write(&config, "decap-ports = [\"vxlan=4790;geneve=6081\"]\n").unwrap();
    let run = run_flowtap(&[&vxlan], 1, &["--config", config.to_str().unwrap()]);
    assert_eq!(inner(&run), [("udp".to_owned(), 4789)], "{}", run.stderr);

    for (bad, says) in [
        ("ipx=1", "unknown encapsulation"),
        ("vxlan=port", "is not a port"),
        ("gre=47", "not carried on UDP ports"),
    ] {
        let run = run_flowtap(&[&vxlan], 1, &["--decap-ports", bad]);
        assert_ne!(run.status, 0);
        assert!(run.stderr.contains(says), "{bad}: {}", run.stderr);
    }
}

/// MikroTik's packet sniffer streams what it captures in TZSP to UDP
/// 37008: each frame of a capture sent so (a router at 198.18.0.1 to a
/// collector at 198.18.0.2, as RouterOS writes the header: version 1,
/// received, Ethernet, no tags but END) gives the capture's own flows,
/// each through the `tzsp` session; with `--no-decap tzsp`, the one UDP
/// flow of the stream.
#[test]
fn a_mikrotik_sniffer_stream_gives_the_flows_it_carries() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.pcap");
    generated(&plain, 5_000, 50, false, 4);
    let streamed = dir.path().join("tzsp.pcap");
    let mut out = PcapWriter::new(File::create(&streamed).unwrap(), LINKTYPE_ETHERNET).unwrap();
    let header = [1, 0, 0, 1, 1];
    let mut frame = Vec::new();
    for (ts, len, data) in frames_of(&plain) {
        assert_eq!(len as usize, data.len(), "whole frames");
        let datagram = Segment {
            proto: Proto::Udp,
            payload: (header.len() + data.len()) as u16,
            ..Segment::tcp(
                "198.18.0.1".parse().unwrap(),
                50000,
                "198.18.0.2".parse().unwrap(),
                tzsp::PORT,
                true,
                0,
            )
        };
        let headers = capgen::frame::segment(&mut frame, &datagram);
        frame[headers..headers + header.len()].copy_from_slice(&header);
        frame[headers + header.len()..].copy_from_slice(&data);
        out.write(ts, &frame, frame.len() as u32).unwrap();
    }
    out.finish().unwrap();

    let counts = |run: &common::Run| {
        let mut flows: Vec<_> = run
            .flows
            .iter()
            .map(|f| {
                (
                    f.key.clone(),
                    f.client_tx_pkts,
                    f.client_tx_bytes,
                    f.server_tx_pkts,
                    f.server_tx_bytes,
                )
            })
            .collect();
        flows.sort();
        flows
    };
    let expected = run_flowtap(&[&plain], 1, &[]);
    let opened = run_flowtap(&[&streamed], 1, &[]);
    assert_eq!(opened.status, 0, "{}", opened.stderr);
    assert!(!expected.flows.is_empty());
    assert!(counts(&opened) == counts(&expected), "the flows carried");
    assert!(
        opened
            .flows
            .iter()
            .all(|f| f.mirror.as_ref().and_then(|m| m["encap"].as_str()) == Some("tzsp"))
    );
    let closed = run_flowtap(&[&streamed], 1, &["--no-decap", "tzsp"]);
    assert_eq!(
        closed
            .flows
            .iter()
            .map(|f| (f.key.0.as_str(), f.key.3))
            .collect::<Vec<_>>(),
        [("udp", tzsp::PORT)]
    );
}
