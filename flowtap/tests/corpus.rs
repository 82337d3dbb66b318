//! Every real capture of `../shared/corpus/captures/` read with `flowtap -r`
//! and compared flow by flow with the tshark ground truth beside it
//! ([`common::truth`]).

mod common;

use std::collections::BTreeMap;

use common::corpus_dir;
use common::truth::{self, Intended};

/// Differences from tshark that flowtap makes on purpose.
const INTENDED: &[Intended] = &[Intended {
    capture: "22_malformed_l3l4_bundle",
    flow: ("tcp", "192.168.1.100", "10.0.0.5", 80),
    from_client: true,
    extra_pkts: 1,
    extra_bytes: 58,
    reason: "frames 14 and 15 are two IPv4 fragments of one TCP SYN whose header spans both; \
             tshark reassembles them and counts the datagram once, at its last fragment \
             (50 bytes); flowtap counts every fragment on the wire (58 + 50 bytes)",
}];

fn check_capture(capture: &str, threads: usize) {
    let (_, errors) = truth::check_run(&corpus_dir(), capture, threads, &BTreeMap::new(), INTENDED);
    truth::assert_none(capture, threads, &errors);
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
