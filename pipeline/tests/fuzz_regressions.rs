//! Replays every input kept under `fuzz/regressions/<target>/` (crashes a
//! fuzzer once found, and hand-made hard cases) through the fuzz targets'
//! own code: what broke once stays fixed.

use std::path::Path;

use pipeline::fuzzing;

/// A fuzz target's body.
type Target = fn(&[u8]);

#[test]
fn kept_fuzz_inputs_still_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let targets: [(&str, Target); 3] = [
        ("dissect_frame", fuzzing::dissect_frame),
        ("read_capture", fuzzing::read_capture),
        ("flow_table", fuzzing::flow_table),
    ];
    for (name, target) in targets {
        let inputs = std::fs::read_dir(dir.join(name))
            .unwrap_or_else(|e| panic!("fuzz/regressions/{name}: {e}"));
        let mut replayed = 0;
        for input in inputs {
            let path = input.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            eprintln!("{name}: {}", path.display());
            target(&data);
            replayed += 1;
        }
        assert!(replayed >= 1, "fuzz/regressions/{name} keeps no input");
        eprintln!("{name}: replayed {replayed} kept inputs");
    }
}

/// The seed script selects link types by the same index the target reads.
#[test]
fn the_seed_script_knows_the_link_types_in_order() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fuzz-seeds.py");
    let text = std::fs::read_to_string(&script).unwrap();
    let list = text
        .lines()
        .find_map(|l| l.strip_prefix("LINKS = ["))
        .and_then(|l| l.strip_suffix(']'))
        .expect("a LINKS = [...] line");
    let codes: Vec<u32> = list.split(',').map(|c| c.trim().parse().unwrap()).collect();
    assert_eq!(codes, pipeline::wire::dissect::LinkType::CODES);
}
