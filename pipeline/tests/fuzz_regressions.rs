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
