//! Records the git commit for `flowtap --version` and /metrics.

use std::process::Command;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for f in [".git/HEAD", ".git/index"] {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    println!("cargo:rerun-if-env-changed=FLOWTAP_GIT_COMMIT");
    // Given (an image's build, which has no .git), else asked of git.
    let given = std::env::var("FLOWTAP_GIT_COMMIT").ok();
    let commit = given.filter(|c| !c.is_empty()).or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(&root)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    println!(
        "cargo:rustc-env=FLOWTAP_GIT_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
}
