//! The tshark ground truth of a corpus capture, as the flows flowtap should
//! report, and the comparison of a run with it.
//!
//! The truth lists connections (tshark streams); a flow is the sum of the
//! connections sharing (protocol, client IP, server IP, server port), where
//! the client is chosen by flowtap's documented rule (the pure-SYN sender,
//! else by the ports: a listed service port, else the port tiers).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use pipeline::flow::conn::sender_port_is_client;
use serde_json::Value;

use super::{FlowSummary, Key, Run, Sent, check_legs, check_sent, run_flowtap};

/// One direction of a connection: (protocol, sender, sender port, receiver,
/// receiver port).
pub(crate) type Direction = (String, IpAddr, u16, IpAddr, u16);

/// Packets and bytes to take away from one direction of the truth (what the
/// truth counts differently from flowtap's documented rule).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Less {
    pub pkts: u64,
    pub bytes: u64,
}

#[derive(Default)]
pub(crate) struct Expected {
    pub sent: Sent,
    pub client_legs_us: Vec<f64>,
    pub server_legs_us: Vec<f64>,
}

/// The flows of `dir/truth/CAPTURE.conv.jsonl`, each direction less what
/// `less` says, and the capture's summary.
pub(crate) fn read(
    dir: &Path,
    capture: &str,
    less: &BTreeMap<Direction, Less>,
) -> (BTreeMap<Key, Expected>, Value) {
    let dir = dir.join("truth");
    let conv = std::fs::read_to_string(dir.join(format!("{capture}.conv.jsonl")))
        .unwrap_or_else(|e| panic!("truth for {capture}: {e}"));
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{capture}.summary.json"))).unwrap(),
    )
    .unwrap();
    let mut flows: BTreeMap<Key, Expected> = BTreeMap::new();
    for line in conv.lines().filter(|l| !l.trim().is_empty()) {
        let c: Value = serde_json::from_str(line).unwrap();
        let proto = c["proto"].as_str().unwrap().to_owned();
        let a: IpAddr = c["a_addr"].as_str().unwrap().parse().unwrap();
        let b: IpAddr = c["b_addr"].as_str().unwrap().parse().unwrap();
        let a_port = c["a_port"].as_u64().unwrap() as u16;
        let b_port = c["b_port"].as_u64().unwrap() as u16;
        let has_syn = c["syn_count"].as_u64().unwrap_or(0) > 0;
        // A is the pure-SYN sender when there is one, else the first sender.
        let a_is_client = (proto == "tcp" && has_syn) || sender_port_is_client(a_port, b_port);
        let u = |k: &str| c[k].as_u64().unwrap();
        let ab_less = less
            .get(&(proto.clone(), a, a_port, b, b_port))
            .copied()
            .unwrap_or_default();
        let ba_less = less
            .get(&(proto.clone(), b, b_port, a, a_port))
            .copied()
            .unwrap_or_default();
        let ab = (u("pkts_ab") - ab_less.pkts, u("bytes_ab") - ab_less.bytes);
        let ba = (u("pkts_ba") - ba_less.pkts, u("bytes_ba") - ba_less.bytes);
        let (key, c2s, s2c) = if a_is_client {
            ((proto, a, b, b_port), ab, ba)
        } else {
            ((proto, b, a, a_port), ba, ab)
        };
        let e = flows.entry(key).or_default();
        e.sent.c2s_pkts += c2s.0;
        e.sent.c2s_bytes += c2s.1;
        e.sent.s2c_pkts += s2c.0;
        e.sent.s2c_bytes += s2c.1;
        e.sent.connections += 1;
        if let Some(v) = c["syn_to_synack_us"].as_f64() {
            e.client_legs_us.push(v);
        }
        if let Some(v) = c["syn_to_ack_us"].as_f64() {
            e.server_legs_us.push(v);
        }
    }
    (flows, summary)
}

/// Every difference between a run's flows and the expected ones: missing
/// and extra flows, per-side counters, handshake percentiles.
pub(crate) fn differences(expected: &BTreeMap<Key, Expected>, run: &Run) -> Vec<String> {
    let got: BTreeMap<Key, &FlowSummary> = run.flows.iter().map(|f| (f.key.clone(), f)).collect();
    let mut errors = Vec::new();
    for key in expected.keys().filter(|k| !got.contains_key(*k)) {
        errors.push(format!("missing flow {key:?}"));
    }
    for key in got.keys().filter(|k| !expected.contains_key(*k)) {
        errors.push(format!("extra flow {key:?}"));
    }
    for (key, e) in expected {
        let Some(g) = got.get(key) else { continue };
        let what = format!("{key:?}");
        check_sent(&what, g, &e.sent, &mut errors);
        check_legs(
            &format!("{what} client (SYN->SYN-ACK)"),
            &e.client_legs_us,
            g.client_handshake,
            &mut errors,
        );
        check_legs(
            &format!("{what} server (SYN->ACK)"),
            &e.server_legs_us,
            g.server_handshake,
            &mut errors,
        );
    }
    errors
}

/// A difference from the truth that flowtap makes on purpose: packets and
/// bytes of one direction of one flow that the truth leaves out, and why.
pub(crate) struct Intended {
    pub capture: &'static str,
    /// (protocol, client, server, server port).
    pub flow: (&'static str, &'static str, &'static str, u16),
    /// Whether the packets are the client's (else the server's).
    pub from_client: bool,
    pub extra_pkts: u64,
    pub extra_bytes: u64,
    pub reason: &'static str,
}

/// `dir/captures/CAPTURE.pcap` read by `flowtap -r` on `threads` threads,
/// its exit status and frame count asserted, and its differences from the
/// truth (each direction less what `less` says, plus the `intended`
/// differences of this capture); the caller may add its own before
/// [`assert_none`].
pub(crate) fn check_run(
    dir: &Path,
    capture: &str,
    threads: usize,
    less: &BTreeMap<Direction, Less>,
    intended: &[Intended],
) -> (Run, Vec<String>) {
    let path = dir.join("captures").join(format!("{capture}.pcap"));
    let (mut expected, summary) = read(dir, capture, less);
    for i in intended.iter().filter(|i| i.capture == capture) {
        let (proto, c, s, port) = i.flow;
        let key = (
            proto.to_owned(),
            c.parse().unwrap(),
            s.parse().unwrap(),
            port,
        );
        let sent = &mut expected
            .get_mut(&key)
            .unwrap_or_else(|| panic!("intended flow {key:?} not in truth"))
            .sent;
        if i.from_client {
            sent.c2s_pkts += i.extra_pkts;
            sent.c2s_bytes += i.extra_bytes;
        } else {
            sent.s2c_pkts += i.extra_pkts;
            sent.s2c_bytes += i.extra_bytes;
        }
        eprintln!("{capture}: intended difference: {}", i.reason);
    }
    let run = run_flowtap(&[path.as_path()], threads, &[]);
    assert_eq!(
        run.status, 0,
        "{capture}: exit status; stderr:\n{}",
        run.stderr
    );
    assert_eq!(
        Some(run.frames_read),
        summary["frames"].as_u64(),
        "{capture}: frames read vs tshark"
    );
    let errors = differences(&expected, &run);
    (run, errors)
}

/// Fails the test with every difference, if there are any.
pub(crate) fn assert_none(capture: &str, threads: usize, errors: &[String]) {
    assert!(
        errors.is_empty(),
        "{capture} with {threads} thread(s): {} differences:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

/// The names of the captures in `dir/captures`, sorted.
pub(crate) fn captures(dir: &Path) -> Vec<String> {
    let dir = dir.join("captures");
    let mut captures: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    captures.sort();
    captures
}

/// A test per named capture of `dir`, each checked by `check_capture`
/// with one thread (no hand-off) and with three (packets cross shards),
/// which must agree with the truth alike; and `$every`, which checks the
/// captures added to `dir` since and that the named ones still exist.
#[macro_export]
macro_rules! capture_truth_tests {
    ($dir:expr, $check_capture:path, $every:ident; $($name:ident => $file:literal),* $(,)?) => {
        fn check(capture: &str) {
            $check_capture(capture, 1);
            $check_capture(capture, 3);
        }
        $(#[test] fn $name() { check($file); })*
        #[test]
        fn $every() {
            $crate::common::truth::check_unlisted(&$dir, &[$($file),*], check);
        }
    };
}

/// Asserts that the captures tested by name still exist, and runs `check`
/// on every other capture of the directory (added since).
pub(crate) fn check_unlisted(dir: &Path, listed: &[&str], check: impl Fn(&str)) {
    let captures = captures(dir);
    for name in listed {
        assert!(
            captures.iter().any(|c| c == name),
            "{name} is tested by name but no longer in {}",
            dir.display()
        );
    }
    let unlisted: Vec<&String> = captures
        .iter()
        .filter(|c| !listed.contains(&c.as_str()))
        .collect();
    for name in &unlisted {
        check(name);
    }
    eprintln!(
        "{} captures: {} named, {} checked here",
        captures.len(),
        listed.len(),
        unlisted.len()
    );
    assert_eq!(listed.len() + unlisted.len(), captures.len());
}
