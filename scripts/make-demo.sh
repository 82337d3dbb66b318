#!/usr/bin/env bash
# Regenerates the bundled demo capture (deterministic: the same bytes every time).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -p flowtap-capgen -- \
  --output demo/demo.pcap --packets 2000 --concurrent 40 --clients 12 --servers 6 \
  --mean-data-packets 12 --seed 7 --snaplen 96
