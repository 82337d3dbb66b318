//! A generated 1M-frame capture with exact ground truth (handshakes with
//! known timing, SYN retransmits, mid-stream connections, VLAN and QinQ,
//! IPv6, fragments, snaplen-truncated, non-flow and malformed frames, and a
//! fifth of the connections carried in tunnels and mirror sessions: VXLAN,
//! GENEVE, GRE, ERSPAN II and III, IP-in-IP both ways, GTP-U, with VLAN tags
//! outside and inside; refused, unanswered, reset and closed connections,
//! retransmissions after a timeout and fast ones, keep-alives, zero windows
//! and window probes), read with `flowtap -r` and checked flow by flow
//! (TCP health included) and frame by frame.

mod common;

use std::collections::BTreeMap;
use std::fs::File;

use capgen::{Generator, Spec};
use common::{Sent, TcpCounts, check_legs, check_sent, report_counts, run_flowtap};

fn sum_outcome(truth: &capgen::Truth, o: usize) -> u64 {
    truth.flows.iter().map(|f| f.outcomes[o]).sum()
}

#[test]
fn million_frame_capture_matches_its_truth_flow_by_flow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synthetic.pcap");
    let spec = Spec {
        packets: 1_000_000,
        concurrent: 5_000,
        clients: 3_000,
        servers: 200,
        seed: 42,
        tunnels: true,
        ..Spec::default()
    };
    let (truth, _) = Generator::new(spec)
        .write(File::create(&path).unwrap())
        .unwrap();
    assert_eq!(truth.frames, 1_000_000);
    assert!(
        truth.flows.len() > 10_000,
        "a varied capture: {} flows",
        truth.flows.len()
    );
    assert!(
        truth.flows.iter().any(|f| f.client_legs_ns.len() > 16),
        "some flow must exceed the exact-sample digest"
    );
    // Every TCP health counter and outcome occurs, many times.
    let sum = |f: fn(&capgen::FlowTruth) -> u64| truth.flows.iter().map(f).sum::<u64>();
    let health = [
        sum(|f| f.c2s_tcp[0] + f.s2c_tcp[0]),
        sum(|f| f.c2s_tcp[1] + f.s2c_tcp[1]),
        sum(|f| f.c2s_tcp[2] + f.s2c_tcp[2]),
    ];
    assert!(
        health.iter().all(|&n| n > 100),
        "retransmissions, RSTs, zero windows: {health:?}"
    );
    for o in 0..6 {
        assert!(sum_outcome(&truth, o) > 100, "outcome {o}");
    }

    let run = run_flowtap(&[path.as_path()], 2, &[]);
    assert_eq!(run.status, 0, "stderr:\n{}", run.stderr);
    assert_eq!(run.frames_read, truth.frames);

    // Frames by kind and malformed frames by reason, exactly.
    let kinds = report_counts(&run.stderr, "flowtap: frames by kind: ");
    for (kind, n) in &kinds {
        assert_eq!(
            *n,
            truth.kinds.get(kind.as_str()).copied().unwrap_or(0),
            "frames of kind {kind}"
        );
    }
    let malformed = report_counts(&run.stderr, "flowtap: malformed frames: ");
    for (reason, n) in &malformed {
        assert_eq!(
            *n,
            truth.malformed.get(reason.as_str()).copied().unwrap_or(0),
            "malformed {reason}"
        );
    }
    assert_eq!(
        malformed.values().sum::<u64>() + kinds.values().sum::<u64>(),
        truth.frames
    );
    // Frames by encapsulation, exactly; every carrier appears.
    let encapsulated = report_counts(&run.stderr, "flowtap: encapsulated frames: ");
    for (encap, n) in &encapsulated {
        assert_eq!(
            *n,
            truth.encapsulated.get(encap.as_str()).copied().unwrap_or(0),
            "frames in {encap}"
        );
    }
    assert_eq!(truth.encapsulated.len(), 7, "{:?}", truth.encapsulated);
    assert!(
        encapsulated.values().sum::<u64>() > 100_000,
        "{encapsulated:?}"
    );

    assert_matches_truth("", &truth, &run);
}

/// Fails on every way `run`'s flows differ from the truth's (the first 30
/// shown): packets, bytes, connections, handshake legs, TCP health.
fn assert_matches_truth(capture: &str, truth: &capgen::Truth, run: &common::Run) {
    let got: BTreeMap<_, _> = run.flows.iter().map(|f| (f.key.clone(), f)).collect();
    let mut errors = Vec::new();
    if got.len() != truth.flows.len() {
        errors.push(format!("{} flows, want {}", got.len(), truth.flows.len()));
    }
    for t in &truth.flows {
        let key = (t.proto.to_owned(), t.client, t.server, t.server_port);
        let Some(g) = got.get(&key) else {
            errors.push(format!("missing flow {key:?}"));
            continue;
        };
        let what = format!("{key:?}");
        let sent = Sent {
            c2s_pkts: t.c2s_pkts,
            c2s_bytes: t.c2s_bytes,
            s2c_pkts: t.s2c_pkts,
            s2c_bytes: t.s2c_bytes,
            connections: t.connections,
        };
        check_sent(&what, g, &sent, &mut errors);
        let us = |legs: &[u64]| {
            legs.iter()
                .map(|ns| *ns as f64 / 1000.0)
                .collect::<Vec<_>>()
        };
        check_legs(
            &format!("{what} client leg"),
            &us(&t.client_legs_ns),
            g.client_handshake,
            &mut errors,
        );
        check_legs(
            &format!("{what} server leg"),
            &us(&t.server_legs_ns),
            g.server_handshake,
            &mut errors,
        );
        let want = (t.proto == "tcp").then_some(TcpCounts {
            sent: [t.c2s_tcp, t.s2c_tcp],
            connections: t.outcomes,
        });
        if g.tcp != want {
            errors.push(format!("{what} TCP health: got {:?}, want {want:?}", g.tcp));
        }
    }
    assert!(
        errors.is_empty(),
        "{capture}{} differences, first ones:\n{}",
        errors.len(),
        errors[..errors.len().min(30)].join("\n")
    );
}

/// The same traffic spread over 10 and 300 times the time (a duration
/// sweep's captures, issue 19): the same flows, each matching its truth,
/// and only what time measures (handshake legs, first and last seen, rates)
/// scaled. Stretching must not change what flowtap counts.
#[test]
fn stretched_captures_give_the_same_flows() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    // (Handshake legs stay under the minute flowtap tracks: x300 of the
    // longest, a retransmitted SYN's 60 ms, is 18 s.)
    for scale in [1, 10, 300] {
        let path = dir.path().join(format!("x{scale}.pcap"));
        let spec = Spec {
            packets: 60_000,
            concurrent: 1_000,
            seed: 19,
            time_scale: scale,
            ..Spec::default()
        };
        let (truth, _) = Generator::new(spec)
            .write(File::create(&path).unwrap())
            .unwrap();
        let run = run_flowtap(&[path.as_path()], 1, &[]);
        assert_eq!(run.status, 0, "stderr:\n{}", run.stderr);
        assert_matches_truth(&format!("x{scale}: "), &truth, &run);
        runs.push((scale, truth, run));
    }
    let (_, base_truth, base) = &runs[0];
    let seconds = |t: &capgen::Truth| (t.last_ns - t.first_ns) as f64 / 1e9;
    assert!(base.flows.len() > 1_000, "{} flows", base.flows.len());
    for (scale, truth, run) in &runs[1..] {
        let stretch = seconds(truth) / seconds(base_truth);
        assert!(
            (stretch - *scale as f64).abs() < 0.01 * *scale as f64,
            "x{scale}: {} s, {} s unstretched",
            seconds(truth),
            seconds(base_truth)
        );
        assert_eq!(run.frames_read, base.frames_read);
        let counts = |r: &common::Run| -> Vec<_> {
            let mut v: Vec<_> = r
                .flows
                .iter()
                .map(|f| {
                    let sent = [
                        f.client_tx_pkts,
                        f.client_tx_bytes,
                        f.server_tx_pkts,
                        f.server_tx_bytes,
                        f.connections,
                    ];
                    (f.key.clone(), sent, f.tcp)
                })
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert!(counts(run) == counts(base), "x{scale}: flows differ");
        for (t, b) in truth.flows.iter().zip(&base_truth.flows) {
            let scaled: Vec<u64> = b.client_legs_ns.iter().map(|ns| ns * scale).collect();
            assert_eq!(t.client_legs_ns, scaled, "x{scale}: handshake times scale");
        }
    }
}

/// capgen's segments carry valid TCP and UDP checksums, as tshark checks
/// them (they were zero: every TCP frame and every UDP-over-IPv6 one
/// failed, and a stack that a replay reached dropped them).
#[test]
fn generated_segments_have_valid_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checked.pcap");
    let spec = Spec {
        packets: 20_000,
        concurrent: 500,
        seed: 3,
        // --clean: no malformed, truncated or ICMP frames quoting parts.
        anomalies: false,
        ..Spec::default()
    };
    Generator::new(spec)
        .write(File::create(&path).unwrap())
        .unwrap();
    let count = |filter: &str| {
        let out = std::process::Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args([
                "-o",
                "tcp.check_checksum:TRUE",
                "-o",
                "udp.check_checksum:TRUE",
            ])
            .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
            .output()
            .expect("tshark (scripts/setup.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout.iter().filter(|&&b| b == b'\n').count()
    };
    assert_eq!(
        count("tcp.checksum.status == 0 || udp.checksum.status == 0"),
        0
    );
    assert_eq!(
        count("tcp.checksum.status == 1 || udp.checksum.status == 1"),
        20_000
    );
}
