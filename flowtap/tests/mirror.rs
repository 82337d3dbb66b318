//! What a mirror port delivers besides the conversations themselves: the
//! same packet twice (a SPAN session mirroring both ends), and sessions
//! whose encapsulation an operator moves to other ports or turns off.

mod common;

use std::fs::File;
use std::path::Path;

use capgen::frame::{Proto, Segment};
use capgen::pcap::{LINKTYPE_ETHERNET, PcapWriter};
use capgen::tunnel::{Carrier, Tunnel};
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
    assert!(
        sorted_flows(&deduped) == sorted_flows(&expected),
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

/// Cuts an Ethernet + IPv4 frame's datagram in two fragments at `at`
/// bytes of its payload (a multiple of 8), as a router on the carrier's
/// path does (RFC 791): each fragment with the headers, the first marked
/// "more fragments", the second at its offset.
fn ipv4_fragments(frame: &[u8], at: usize, ident: u16) -> [Vec<u8>; 2] {
    const ETH: usize = 14;
    const IP: usize = 20;
    let payload = &frame[ETH + IP..];
    let piece = |part: &[u8], flags_offset: u16| {
        let mut f = frame[..ETH + IP].to_vec();
        f[ETH + 2..ETH + 4].copy_from_slice(&((IP + part.len()) as u16).to_be_bytes());
        f[ETH + 4..ETH + 6].copy_from_slice(&ident.to_be_bytes());
        f[ETH + 6..ETH + 8].copy_from_slice(&flags_offset.to_be_bytes());
        f.extend_from_slice(part);
        f
    };
    [
        piece(&payload[..at], 0x2000),
        piece(&payload[at..], (at / 8) as u16),
    ]
}

/// A SPAN port's copy of a packet (padded to Ethernet's 60 bytes, some
/// with a packet broker's 8-byte trailer) and a cloud mirror's copy of the
/// same packet (VXLAN, unpadded, its carrier fragmented where the copy is
/// long) are one packet: every tunnelled copy is found a copy, and with
/// --dedup the answer is the SPAN port's alone, while the mirror session
/// still counts every frame it delivered, a fragmented carrier mirrored
/// twice included (the copy's first fragment dropped while the kept one's
/// datagram was still coming in took its later fragment). (The padding and the trailer
/// were compared as the packet's: 7 of 22 copies found; a dropped copy's
/// later fragments were counted as other IP, its session as nothing.)
#[test]
fn a_span_copy_and_a_tunnelled_copy_are_one_packet_whatever_pads_or_carries_them() {
    let dir = tempfile::tempdir().unwrap();
    let once = dir.path().join("once.pcap");
    generated(&once, 4_000, 50, false, 11);
    let tunnel = Tunnel {
        carrier: Carrier::Vxlan { vni: 5 },
        endpoints: ["198.18.9.1".parse().unwrap(), "198.18.9.2".parse().unwrap()],
        outer_vlans: Vec::new(),
    };
    let span_only = dir.path().join("span.pcap");
    let both = dir.path().join("both.pcap");
    let mut span_out =
        PcapWriter::new(File::create(&span_only).unwrap(), LINKTYPE_ETHERNET).unwrap();
    let mut both_out = PcapWriter::new(File::create(&both).unwrap(), LINKTYPE_ETHERNET).unwrap();
    let (vx_once, vx_twice) = (dir.path().join("vx1.pcap"), dir.path().join("vx2.pcap"));
    let mut vx_once_out =
        PcapWriter::new(File::create(&vx_once).unwrap(), LINKTYPE_ETHERNET).unwrap();
    let mut vx_twice_out =
        PcapWriter::new(File::create(&vx_twice).unwrap(), LINKTYPE_ETHERNET).unwrap();
    let (mut padded, mut fragmented, mut tunnelled) = (0, 0, 0u64);
    let mut carried = Vec::new();
    for (i, (ts, _, data)) in frames_of(&once).iter().enumerate() {
        let mut span = data.clone();
        if span.len() < 60 {
            span.resize(60, 0);
            padded += 1;
        }
        if i % 3 == 0 {
            span.extend_from_slice(&[0xab; 8]);
        }
        span_out.write(*ts, &span, span.len() as u32).unwrap();
        both_out.write(*ts, &span, span.len() as u32).unwrap();
        tunnel.wrap(data, true, &mut carried);
        let pieces = if carried.len() > 600 {
            fragmented += 1;
            ipv4_fragments(&carried, 512, i as u16).to_vec()
        } else {
            vec![carried.clone()]
        };
        for piece in &pieces {
            both_out
                .write(ts + 1_000, piece, piece.len() as u32)
                .unwrap();
            tunnelled += 1;
            vx_once_out.write(*ts, piece, piece.len() as u32).unwrap();
        }
        // The carrier's link mirrored at both ends: each piece twice,
        // interleaved (A1, B1, A2, B2).
        for piece in &pieces {
            for at in [*ts, ts + 1_000] {
                vx_twice_out.write(at, piece, piece.len() as u32).unwrap();
            }
        }
    }
    span_out.finish().unwrap();
    both_out.finish().unwrap();
    vx_once_out.finish().unwrap();
    vx_twice_out.finish().unwrap();
    assert!(padded > 500 && fragmented > 500, "{padded} {fragmented}");

    let expected = run_flowtap(&[&span_only], 1, &[]);
    let deduped = run_flowtap(&[&both], 1, &["--dedup"]);
    assert_eq!(deduped.status, 0, "{}", deduped.stderr);
    let flows = report_counts(&deduped.stderr, "flowtap: flows: ");
    assert_eq!(
        (flows["duplicates"], flows["duplicates dropped"]),
        (tunnelled, tunnelled),
        "every tunnelled frame a copy, dropped"
    );
    assert!(
        sorted_flows(&deduped) == sorted_flows(&expected),
        "with --dedup: the SPAN copy's flows"
    );
    let session = report_counts(&deduped.stderr, "flowtap: mirror session vxlan 5: ");
    assert_eq!(session["frames"], tunnelled, "the session's every frame");
    // Every frame counted by kind as it was read, the copies dropped
    // included: no fragment of a dropped copy counted as other IP.
    let kinds = |run: &common::Run| report_counts(&run.stderr, "flowtap: frames by kind: ");
    let (deduped_kinds, expected_kinds) = (kinds(&deduped), kinds(&expected));
    assert_eq!(
        deduped_kinds["tcp"] + deduped_kinds["udp"],
        expected_kinds["tcp"] + expected_kinds["udp"] + tunnelled
    );
    for kind in ["icmp", "arp", "ip_other", "non_ip"] {
        assert_eq!(deduped_kinds[kind], expected_kinds[kind], "{kind}");
    }

    // A fragmented carrier's datagram copied while the kept copy's is still
    // coming in (one IP id, read by one worker): the kept copy's later
    // fragment is counted, the copy's found a copy of the same part (once,
    // the copy's first fragment marked the datagram dropped, and the kept
    // copy lost its second fragment's bytes).
    let single = run_flowtap(&[&vx_once], 1, &[]);
    let twice = run_flowtap(&[&vx_twice], 1, &["--dedup"]);
    assert_eq!(counts_of(&twice), counts_of(&single));
    let flows = report_counts(&twice.stderr, "flowtap: flows: ");
    assert_eq!(flows["duplicates dropped"], tunnelled);
}

/// A run's flows, by key.
fn sorted_flows(run: &common::Run) -> Vec<common::FlowSummary> {
    let mut flows = run.flows.clone();
    flows.sort_by(|a, b| a.key.cmp(&b.key));
    flows
}

/// Each flow's key and its packets and bytes each way, sorted.
fn counts_of(run: &common::Run) -> Vec<(common::Key, [u64; 4])> {
    let mut counts: Vec<_> = run
        .flows
        .iter()
        .map(|f| {
            (
                f.key.clone(),
                [
                    f.client_tx_pkts,
                    f.client_tx_bytes,
                    f.server_tx_pkts,
                    f.server_tx_bytes,
                ],
            )
        })
        .collect();
    counts.sort();
    counts
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

    let counts = counts_of;
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
