//! The bundled demo capture is what `scripts/make-demo.sh` makes, byte for
//! byte, as the README says: a change to the generator that changes its
//! frames must come with the capture made again (the demo's checksums were
//! zeros for a while after capgen began to write real ones).

use std::path::Path;
use std::process::Command;

/// The generator's arguments in `scripts/make-demo.sh`, everything after
/// `--`, with its output given as `output`.
fn make_demo_args(root: &Path, output: &Path) -> Vec<String> {
    let script = std::fs::read_to_string(root.join("scripts/make-demo.sh")).unwrap();
    let command = script.replace("\\\n", " ");
    let (_, args) = command
        .split_once(" -- ")
        .expect("make-demo.sh runs the generator with its arguments after --");
    let mut args: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
    let at = args
        .iter()
        .position(|a| a == "--output")
        .expect("make-demo.sh names its output");
    args[at + 1] = output.display().to_string();
    args
}

#[test]
fn the_demo_capture_is_what_make_demo_makes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = std::env::temp_dir().join(format!("flowtap-demo-{}.pcap", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_flowtap-capgen"))
        .args(make_demo_args(&root, &output))
        .current_dir(&root)
        .status()
        .unwrap();
    let made = std::fs::read(&output);
    let _ = std::fs::remove_file(&output);
    assert!(status.success());
    let bundled = std::fs::read(root.join("demo/demo.pcap")).unwrap();
    let made = made.unwrap();
    assert_eq!(made.len(), bundled.len(), "the demo's size");
    let first_difference = made.iter().zip(&bundled).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "demo/demo.pcap differs from what scripts/make-demo.sh makes: run it"
    );
}
