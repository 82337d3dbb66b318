//! Every real capture of `../shared/corpus/captures/` read with `flowtap -r`
//! and compared flow by flow with the tshark ground truth beside it
//! ([`common::truth`]).

mod common;

use std::collections::BTreeMap;

use common::{corpus_dir, run_flowtap, truth};

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

fn check_capture(capture: &str, threads: usize) {
    let dir = corpus_dir();
    let path = dir.join("captures").join(format!("{capture}.pcap"));
    let (mut expected, summary) = truth::read(&dir, capture, &BTreeMap::new());
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
    let errors = truth::differences(&expected, &run);
    assert!(
        errors.is_empty(),
        "{capture} with {threads} thread(s): {} differences:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

capture_truth_tests! {
    corpus_dir(), check_capture, every_corpus_capture_is_checked;
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
