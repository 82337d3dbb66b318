#!/usr/bin/env bash
# Regenerates the bundled demo capture (deterministic: the same bytes every
# time) from the conversations demo/traffic.toml describes, on the cluster of
# demo/inventory.json.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -p flowtap-capgen -- \
  --output demo/demo.pcap --packets 6000 --concurrent 60 \
  --mean-data-packets 8 --seed 7 --snaplen 96 --routes demo/traffic.toml
