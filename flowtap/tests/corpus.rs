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

/// With idle timeouts, flows and connections end inside a capture, and a
/// packet after a timeout starts a new one. Each worker expires idle
/// state on its own clock, once a second of capture time, so what such a
/// packet starts must not depend on when that last was: the same flows
/// whatever the number of workers (and however they were scheduled: two
/// corpus captures gave one of four answers with two workers; with the
/// shorter timeouts, two more gave two answers until expiry looked again
/// within a second it had passed).
#[test]
fn with_idle_timeouts_the_flows_do_not_depend_on_the_threads() {
    let dump = |capture: &std::path::Path, threads: &str, timeouts: &[&str]| {
        let out = common::stdout_of(
            std::process::Command::new(env!("CARGO_BIN_EXE_flowtap"))
                .arg("-r")
                .arg(capture)
                .args(["--threads", threads])
                .args(timeouts)
                .args(["--dump", "/mcp/flows?limit=1000000&format=full"]),
        );
        common::without_ages(&String::from_utf8(out).unwrap())
    };
    let mut captures: Vec<_> = ["captures", "tunnels/captures"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(corpus_dir().join(dir)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    captures.sort();
    // Timeouts of a few seconds, so that flows and connections end inside
    // these short captures; a SYN timeout longer than the idle one.
    let settings: [&[&str]; 3] = [
        &["--tcp-timeout", "5", "--udp-timeout", "5"],
        &["--tcp-timeout", "1", "--udp-timeout", "1"],
        &[
            "--tcp-timeout",
            "2",
            "--tcp-syn-timeout",
            "30",
            "--udp-timeout",
            "2",
        ],
    ];
    let mut shortened = 0;
    for capture in &captures {
        let whole = dump(capture, "1", &[]);
        for timeouts in settings {
            let one = dump(capture, "1", timeouts);
            // Where it did, it depended on how the workers were scheduled:
            // each capture is read a few times.
            for threads in ["2", "3", "2", "3"] {
                assert_eq!(
                    dump(capture, threads, timeouts),
                    one,
                    "{} with {threads} threads, {timeouts:?}",
                    capture.display()
                );
            }
            shortened += usize::from(whole != one);
        }
    }
    assert!(
        shortened >= 2,
        "the timeouts must end flows in some captures ({shortened} of {})",
        captures.len()
    );
}
