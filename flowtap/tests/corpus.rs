//! Every real capture of `../shared/corpus/captures/` read with `flowtap -r`
//! and compared flow by flow with the tshark ground truth beside it.
//!
//! The truth lists connections (tshark streams); a flow is the sum of the
//! connections sharing (protocol, client IP, server IP, server port), where
//! the client is chosen by flowtap's documented rule (the pure-SYN sender,
//! else the first sender unless its port is in a lower tier).

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use common::{FlowSummary, Key, Sent, check_legs, check_sent, corpus_dir, run_flowtap};
use pipeline::flow::conn::port_tier;
use serde_json::Value;

/// Differences from tshark that flowtap makes on purpose.
struct Intended {
    capture: &'static str,
    flow: (&'static str, &'static str, &'static str, u16),
    extra_c2s_pkts: u64,
    extra_c2s_bytes: u64,
    reason: &'static str,
}

const INTENDED: &[Intended] = &[Intended {
    capture: "22_malformed_l3l4_bundle",
    flow: ("tcp", "192.168.1.100", "10.0.0.5", 80),
    extra_c2s_pkts: 1,
    extra_c2s_bytes: 58,
    reason: "frames 14 and 15 are two IPv4 fragments of one TCP SYN whose header spans both; \
             tshark reassembles them and counts the datagram once, at its last fragment \
             (50 bytes); flowtap counts every fragment on the wire (58 + 50 bytes)",
}];

#[derive(Default)]
struct Expected {
    sent: Sent,
    client_legs_us: Vec<f64>,
    server_legs_us: Vec<f64>,
}

fn truth(capture: &str) -> (BTreeMap<Key, Expected>, Value) {
    let dir = corpus_dir().join("truth");
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
        let a_is_client = (proto == "tcp" && has_syn) || port_tier(a_port) >= port_tier(b_port);
        let u = |k: &str| c[k].as_u64().unwrap();
        let (key, c2s, s2c) = if a_is_client {
            (
                (proto, a, b, b_port),
                (u("pkts_ab"), u("bytes_ab")),
                (u("pkts_ba"), u("bytes_ba")),
            )
        } else {
            (
                (proto, b, a, a_port),
                (u("pkts_ba"), u("bytes_ba")),
                (u("pkts_ab"), u("bytes_ab")),
            )
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

fn check_capture(capture: &str, threads: usize) {
    let path = corpus_dir()
        .join("captures")
        .join(format!("{capture}.pcap"));
    let (mut expected, summary) = truth(capture);
    for i in INTENDED.iter().filter(|i| i.capture == capture) {
        let (proto, c, s, port) = i.flow;
        let key = (
            proto.to_owned(),
            c.parse().unwrap(),
            s.parse().unwrap(),
            port,
        );
        let e = expected
            .get_mut(&key)
            .unwrap_or_else(|| panic!("intended flow {key:?} not in truth"));
        e.sent.c2s_pkts += i.extra_c2s_pkts;
        e.sent.c2s_bytes += i.extra_c2s_bytes;
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
    let got: BTreeMap<Key, &FlowSummary> = run.flows.iter().map(|f| (f.key.clone(), f)).collect();
    let mut errors = Vec::new();
    for key in expected.keys().filter(|k| !got.contains_key(*k)) {
        errors.push(format!("missing flow {key:?}"));
    }
    for key in got.keys().filter(|k| !expected.contains_key(*k)) {
        errors.push(format!("extra flow {key:?}"));
    }
    for (key, e) in &expected {
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
    assert!(
        errors.is_empty(),
        "{capture} with {threads} thread(s): {} differences:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

fn check(capture: &str) {
    // One thread (no hand-off) and three (packets cross shards) must agree
    // with the truth alike.
    check_capture(capture, 1);
    check_capture(capture, 3);
}

macro_rules! corpus_tests {
    ($($name:ident => $file:literal),* $(,)?) => {
        const LISTED: &[&str] = &[$($file),*];
        $(#[test] fn $name() { check($file); })*
    };
}

corpus_tests! {
    pcpp_example => "02_pcpp_example",
    ndpi_reddit_ipv6 => "05_ndpi_reddit_ipv6",
    ndpi_bot_vlan => "08_ndpi_bot_vlan",
    suri_syn_retransmit_vlan => "09_suri_syn_retransmit_vlan",
    suri_sll2 => "11_suri_sll2",
    zeek_vlan_qinqinq => "13_zeek_vlan_qinqinq",
    tcpdump_handshake_nsec_sll => "16_tcpdump_handshake_nsec_sll",
    tcpdump_null_ipv6_snap256 => "17_tcpdump_null_ipv6_snap256",
    pcpp_raw_ip => "18_pcpp_raw_ip",
    tcpreplay_test => "19_tcpreplay_test",
    malformed_l3l4_bundle => "22_malformed_l3l4_bundle",
}

/// Every capture of the corpus is checked: the named ones above (each must
/// still exist), and any added since, here.
#[test]
fn every_corpus_capture_is_checked() {
    let dir = corpus_dir().join("captures");
    let mut captures: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    captures.sort();
    for name in LISTED {
        assert!(
            captures.iter().any(|c| c == name),
            "{name} is tested by name but no longer in {}",
            dir.display()
        );
    }
    let unlisted: Vec<&String> = captures
        .iter()
        .filter(|c| !LISTED.contains(&c.as_str()))
        .collect();
    for name in &unlisted {
        check(name);
    }
    eprintln!(
        "{} captures: {} named, {} checked here",
        captures.len(),
        LISTED.len(),
        unlisted.len()
    );
    assert_eq!(LISTED.len() + unlisted.len(), captures.len());
}
