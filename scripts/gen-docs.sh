#!/usr/bin/env bash
# Regenerates the README's configuration and metrics references from the
# program itself (`flowtap docs config|metrics`). A test fails when the
# README and the program disagree.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p flowtap --no-default-features
bin=target/debug/flowtap
python3 - "$bin" <<'PY'
import re, subprocess, sys
bin = sys.argv[1]
readme = open("README.md").read()
for what in ["config", "metrics"]:
    table = subprocess.run([bin, "docs", what], check=True, capture_output=True, text=True).stdout
    begin, end = f"<!-- BEGIN generated {what} reference -->", f"<!-- END generated {what} reference -->"
    readme = re.sub(re.escape(begin) + ".*?" + re.escape(end), begin + "\n" + table + end, readme, flags=re.S)
open("README.md", "w").write(readme)
PY
