"""Per-packet costs from the criterion benchmarks (bench/benches/pipeline.rs):
runs them, then reads criterion's own estimates (target/criterion)."""

import json
import subprocess
import time
from pathlib import Path


def run(root: Path, quick: bool) -> dict:
    cmd = ["cargo", "bench", "-p", "flowtap-bench", "--bench", "pipeline", "--", "--noplot"]
    if quick:
        cmd += ["--warm-up-time", "0.2", "--measurement-time", "0.5", "--sample-size", "10"]
    started = time.time()
    subprocess.run(cmd, cwd=root, check=True, stdout=subprocess.DEVNULL)
    rows = []
    for bench_json in sorted((root / "target" / "criterion").glob("*/*/new/benchmark.json")):
        if bench_json.stat().st_mtime < started:
            continue  # a benchmark that no longer exists
        meta = json.loads(bench_json.read_text())
        estimates = json.loads((bench_json.parent / "estimates.json").read_text())
        elements = (meta.get("throughput") or {}).get("Elements", 1)
        ns = estimates["median"]["point_estimate"] / elements
        low = estimates["median"]["confidence_interval"]["lower_bound"] / elements
        high = estimates["median"]["confidence_interval"]["upper_bound"] / elements
        rows.append({"group": meta["group_id"], "name": meta["function_id"], "ns_per_packet": ns, "low": low, "high": high})
    return {"rows": rows}
