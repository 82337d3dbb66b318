#!/usr/bin/env bash
# flowtap's test command (the one README.md gives): set up, check style and
# lints, run every test. Tests that need root (network namespaces, XDP) run
# here too, and fail loudly rather than skip when they cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
# Without the caller's FLOWTAP_* settings: every test and benchmark gives the
# binary the options it means (a FLOWTAP_LISTEN or FLOWTAP_AUTH_TOKEN_FILE
# set in the shell would change what their flowtaps do). Kept: the build's
# FLOWTAP_GIT_COMMIT and the fuzz corpus's FLOWTAP_CORPUS.
unset $(compgen -e | grep '^FLOWTAP_' | grep -vx 'FLOWTAP_GIT_COMMIT\|FLOWTAP_CORPUS' || true)
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
./scripts/audit.sh
# The live tests drive pcap-replay, a binary of its own crate.
cargo build --workspace --bins --locked
# The container image's build step, staged where the tests check it.
./scripts/build-release.sh target/image-root
cargo nextest run --workspace --locked --profile ci
# Each fuzz target for a fixed number of executions (prints a table).
./scripts/fuzz.sh
# The benchmark command, in quick mode: it must keep working (BENCHMARKS.md).
./scripts/bench.sh --quick --out target/bench-quick
