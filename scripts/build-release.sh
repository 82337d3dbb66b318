#!/usr/bin/env bash
# The build step of the container image (the Dockerfile runs it, and so does
# scripts/test.sh, so the steps are tested even where no Docker engine runs):
# builds the release binaries and stages them under DESTDIR/usr/local/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:?usage: build-release.sh DESTDIR}"
# One package at a time: features then resolve as for `cargo build -p flowtap`
# (the README's quick start), so the two builds share their artifacts.
cargo build --release --locked -p flowtap
cargo build --release --locked -p pcap-replay
install -D -m 0755 target/release/flowtap "$dest/usr/local/bin/flowtap"
install -D -m 0755 target/release/pcap-replay "$dest/usr/local/bin/pcap-replay"
# The staged binary must run: version, and the offline demo.
"$dest/usr/local/bin/flowtap" --version
"$dest/usr/local/bin/flowtap" -r demo/demo.pcap --dump '/mcp/flows/summary' >/dev/null 2>&1
