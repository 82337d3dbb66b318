#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/) for a fixed number of executions, or
# until its time budget is spent if that comes first, and prints a table of
# the executions that ran. The budgets keep CI inside its limit on a slow
# host: on 2026-12-01 flow_table's 2M executions took 2215 s (900 to 1250 a
# second, slowing as its corpus grew) and the whole CI run 69 minutes of
# its 90. Seeds are made at fuzz time from ../shared/corpus and its
# tunnels/ (never committed); hub_feed's seed is the demo's own feed, kept in
# fuzz/regressions/hub_feed/. A crash stops the run with its input saved under
# fuzz/regressions/<target>/, which pipeline/tests/fuzz_regressions.rs (and
# hub/tests/fuzz_regressions.rs) then replays for ever: commit it with the fix.
#
# cargo-fuzz on the stable toolchain: --sanitizer none (the sanitizers need
# nightly); coverage guidance, debug assertions and overflow checks remain.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A runs=(
  [dissect_frame]="${FUZZ_RUNS_DISSECT:-20000000}"
  [read_capture]="${FUZZ_RUNS_CAPTURE:-1000000}"
  [flow_table]="${FUZZ_RUNS_TABLE:-2000000}"
  [hub_feed]="${FUZZ_RUNS_FEED:-300000}"
)
declare -A seconds=(
  [dissect_frame]="${FUZZ_SECONDS_DISSECT:-600}"
  [read_capture]="${FUZZ_SECONDS_CAPTURE:-600}"
  [flow_table]="${FUZZ_SECONDS_TABLE:-900}"
  [hub_feed]="${FUZZ_SECONDS_FEED:-240}"
)
declare -A max_len=([dissect_frame]=4096 [read_capture]=65536 [flow_table]=4096 [hub_feed]=32768)
corpus="${FLOWTAP_CORPUS:-../shared/corpus}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 scripts/fuzz-seeds.py "$work/seeds" "$corpus/captures" "$corpus/tunnels/captures"

summary=()
for target in dissect_frame read_capture flow_table hub_feed; do
  corpus="$work/corpus/$target"
  mkdir -p "$corpus" "fuzz/regressions/$target"
  if [ -d "$work/seeds/$target" ]; then cp "$work/seeds/$target/"* "$corpus/"; fi
  # hub_feed's seed is the demo's feed, kept with its regressions.
  if [ "$target" = hub_feed ]; then cp fuzz/regressions/hub_feed/* "$corpus/"; fi
  log="$work/$target.log"
  started=$(date +%s%N)
  if ! (cd fuzz && cargo fuzz run --sanitizer none -O -a "$target" "$corpus" -- \
      -runs="${runs[$target]}" -max_total_time="${seconds[$target]}" -max_len="${max_len[$target]}" -seed=1 \
      -artifact_prefix="regressions/$target/" -print_final_stats=1) >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz: $target crashed; the input is in fuzz/regressions/$target/" >&2
    exit 1
  fi
  millis=$((($(date +%s%N) - started) / 1000000))
  executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  summary+=("$(printf '%-14s %12s %7d.%03d %8s %8s' "$target" "$executed" $((millis / 1000)) $((millis % 1000)) "$coverage" 0)")
done
printf '%-14s %12s %10s %8s %8s\n' target executions seconds edges crashes
printf '%s\n' "${summary[@]}"
