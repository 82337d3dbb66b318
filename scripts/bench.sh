#!/usr/bin/env bash
# flowtap's benchmarks, side by side with the peer tools (BENCHMARKS.md).
#   scripts/bench.sh            the whole run (about 35 minutes here)
#   scripts/bench.sh --quick    small captures, one run each (CI runs this)
# Further options go to bench/harness/run.py (--only SECTION, --out DIR...).
# Installs the peers (Debian packages) and matplotlib, builds the release
# binaries, generates the captures into target/bench/ and writes the results
# (results.json, tables.md, benchmarks.png) to bench/results/ or --out.
# The live section needs root (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

peers=(python3-venv time linux-perf tcpdump softflowd argus-server nfdump pmacct tshark wrk wireshark-common)
missing=()
for p in "${peers[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The packages' daemons must not start; there is no init system to start them anyway.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# matplotlib (the plot) in a venv of the project's own, pinned.
venv=target/venv-bench
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import matplotlib' 2>/dev/null || "$venv/bin/pip" install -q 'matplotlib==3.11.2'

cargo build --release -q -p flowtap -p flowtap-capgen -p pcap-replay -p flowtap-bench
exec "$venv/bin/python" bench/harness/run.py "$@"
