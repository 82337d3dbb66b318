#!/usr/bin/env python3
"""flowtap's side-by-side benchmarks: one command, tables on stdout, and
results (JSON, Markdown tables, a PNG plot) in the output directory.

    scripts/bench.sh            # the whole run (BENCHMARKS.md)
    scripts/bench.sh --quick    # small captures, one run each (CI checks it works)

Sections (each can be chosen with --only):
  offline  flowtap -r against the peer tools on the same files, interleaved
  micro    criterion per-packet benchmarks (parse, hand-off, update)
  memory   bytes per connection and per flow, RSS at 1M flows
  queries  HTTP latency with 1M flows while the pipeline ingests, under wrk
  hub      flowtap hub over stand-in agents: snapshot time, RSS, queries
  live     pcap-replay into a SPAN veth, flowtap against the AF_XDP and XDP_DROP floors
  profile  perf profile of flowtap -r (one thread)
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import offline  # noqa: E402
import perf_profile  # noqa: E402
import micro  # noqa: E402
import memory  # noqa: E402
import queries  # noqa: E402
import duration  # noqa: E402
import hub  # noqa: E402
import report  # noqa: E402

SECTIONS = ["offline", "duration", "micro", "memory", "queries", "hub", "live", "profile"]


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small captures, one run each")
    ap.add_argument("--runs", type=int, help="runs per tool and capture (default 5, quick 1)")
    ap.add_argument("--only", action="append", choices=SECTIONS)
    ap.add_argument("--capture", action="append", help="offline section: only these captures (their rows replace the last run's)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--data", type=Path, default=ROOT / "target" / "bench", help="where captures are generated")
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus" / "captures")
    ap.add_argument("--report", action="store_true", help="only redo the tables and plot from results.json")
    args = ap.parse_args()
    if args.report:
        results = json.loads((args.out / "results.json").read_text())
        (args.out / "tables.md").write_text(report.tables(results))
        report.plot(results, args.out / "benchmarks.png")
        print(report.tables(results))
        return 0
    sections = args.only or SECTIONS
    runs = args.runs or (1 if args.quick else 5)
    args.out.mkdir(parents=True, exist_ok=True)
    args.data.mkdir(parents=True, exist_ok=True)
    bins = {name: ROOT / "target" / "release" / name for name in ["flowtap", "flowtap-capgen", "pcap-replay", "table-memory", "hub-agents", "xsk-floor"]}
    for name, path in bins.items():
        if not path.exists():
            raise SystemExit(f"bench: {path} is missing; run scripts/bench.sh (it builds the release binaries)")

    results = {}
    previous = args.out / "results.json"
    if args.only and previous.exists():
        # A partial run replaces its sections of the last full one.
        results = json.loads(previous.read_text())
    results.update({"machine": machine(), "quick": args.quick, "runs": runs, "last_run": sorted(sections)})
    # Which flowtap each section measured (`flowtap --version` names its
    # commit): a partial run keeps the other sections of an earlier build.
    version = subprocess.run([str(bins["flowtap"]), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    # and when: the machine's date is this run's, and a partial run's
    # other sections were measured earlier.
    measured = f"{version}, {results['machine']['date']}"
    results["binaries"] = {**results.get("binaries", {}), **{s: measured for s in sections}}
    # The hub section serves its own stand-in agents, the duration sweep makes
    # its own captures; every other reads these.
    captures = {}
    if set(sections) - {"micro", "hub", "duration"}:
        captures = offline.captures(bins["flowtap-capgen"], args.data, args.corpus, args.quick)
        results["captures"] = {k: {"path": str(v["path"]), "packets": v["packets"], "spec": v["spec"]} for k, v in captures.items()}
    if "offline" in sections:
        chosen = {k: v for k, v in captures.items() if not args.capture or k in args.capture}
        results.setdefault("offline", {}).update(offline.run(bins["flowtap"], chosen, runs, args.out))
    if "duration" in sections:
        results["duration"] = duration.run(bins["flowtap"], bins["flowtap-capgen"], args.data, args.quick, runs)
    if "micro" in sections:
        results["micro"] = micro.run(ROOT, args.quick)
    if "memory" in sections:
        results["memory"] = memory.run(bins, captures, args.quick)
    if "queries" in sections:
        results["queries"] = queries.run(bins["flowtap"], captures, args.quick)
    if "hub" in sections:
        results["hub"] = hub.run(bins["flowtap"], bins["hub-agents"], args.quick, args.data)
    if "live" in sections:
        import live  # needs root and namespaces

        small = captures["synthetic-small"]["path"]
        results["live"] = live.run(bins["flowtap"], bins["xsk-floor"], bins["pcap-replay"], small, args.data / "live",
                                   idle_seconds=3.0 if args.quick else 10.0)
    if "profile" in sections:
        results["profile"] = perf_profile.run(bins["flowtap"], captures, args.quick, args.out)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    tables = report.tables(results)
    (args.out / "tables.md").write_text(tables)
    report.plot(results, args.out / "benchmarks.png")
    print(tables)
    print(f"bench: results in {args.out}/ (results.json, tables.md, benchmarks.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
