//! Compiles the XDP/TC program (bpf/flowtap.bpf.c) with clang into OUT_DIR;
//! the object is embedded in the binary.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "bpf/flowtap.bpf.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("flowtap.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // Debian keeps asm/types.h under the multiarch include directory.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", source, "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "\n\nflowtap-xdp: `{clang}` failed ({s}) compiling {source}.\n\
             The XDP program needs the headers of libbpf-dev (bpf/bpf_helpers.h) and the kernel's\n\
             (linux/bpf.h): apt-get install clang libbpf-dev\n\n"
        ),
        Err(e) => panic!(
            "\n\nflowtap-xdp: cannot run `{clang}` ({e}).\n\
             Live capture compiles its XDP program with clang: apt-get install clang libbpf-dev\n\
             (or set CLANG=/path/to/clang). To build without live capture, build the flowtap\n\
             binary with --no-default-features.\n\n"
        ),
    }
}
