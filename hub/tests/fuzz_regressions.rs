//! Replays every input kept under `fuzz/regressions/hub_feed/` (crashes the
//! fuzzer once found, and the demo's own feed, its seed) through the fuzz
//! target's own code: what broke once stays fixed.

use std::path::Path;

#[test]
fn kept_hub_feed_inputs_still_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/hub_feed");
    let mut replayed = 0;
    for input in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = input.unwrap().path();
        eprintln!("hub_feed: {}", path.display());
        hub::fuzzing::hub_feed(&std::fs::read(&path).unwrap());
        replayed += 1;
    }
    assert!(replayed >= 1, "fuzz/regressions/hub_feed keeps no input");
}

/// The demo's feed (`flowtap -r demo/demo.pcap --listen`, then `GET
/// /internal/v1/feed`) is the target's seed: it must decode, or the fuzzer
/// starts from nothing that reaches the merge.
#[test]
fn the_seed_is_a_feed_this_hub_reads() {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/hub_feed/demo-feed");
    let bytes = std::fs::read(&seed).unwrap();
    let (head, flows) = api::feed::Feed::open(&bytes).expect("the seed is a feed of this version");
    assert_eq!(head.version, api::feed::VERSION);
    assert!(flows.declared() > 10, "{} flows", flows.declared());
}
