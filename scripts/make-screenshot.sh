#!/usr/bin/env bash
# Regenerates docs/service-map.png, the picture of the service map in the
# README: the browser test (flowtap/tests/service_map.rs) serves the demo,
# drives the page in headless Chromium and leaves its screenshot in
# target/tmp/. Needs what scripts/setup.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f target/tmp/service-map.png
cargo nextest run -p flowtap --test service_map --no-fail-fast
cp target/tmp/service-map.png docs/service-map.png
echo "docs/service-map.png updated"
