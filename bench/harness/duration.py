"""Duration sweep (issue 19): the same traffic spread over 10 s, 100 s and
1000 s of capture time, read by flowtap -r with one thread.

capgen's --time-scale stretches every gap between frames: the same frames
in the same order, so the flows are identical (flowtap/tests/synthetic.rs
checks it) and only what time measures changes. Two configurations: the
capture-file default (nothing expires), and timeouts longer than any gap
(--tcp-timeout/--udp-timeout 5000 s), which files every connection and flow
in the expiry wheel so that the wheel's ticks over the capture's seconds are
paid (a table walk per second of capture time would show here as growth).
Runs alternate (each round reads every file once) and the median is
reported with its ratio to the 10 s file's.
"""

import json
import statistics
import subprocess
import tempfile
from pathlib import Path

from offline import capture_seconds, generate, timed

# (packets, connections open at once, clients, servers).
FULL = (2_000_000, 50_000, 20_000, 500)
QUICK = (200_000, 5_000, 2_000, 100)
TARGETS_S = [10, 100, 1000]
CONFIGS = {
    "file default (no timeouts)": [],
    "timeouts 5000 s (all in the wheel)": ["--tcp-timeout", "5000", "--udp-timeout", "5000"],
}


def stretched(capgen: Path, data: Path, spec: tuple, scale: int) -> Path:
    """The capture of `spec` with every gap `scale` times longer."""
    return generate(capgen, data, f"duration-{spec[0]}-x{scale}", (*spec, scale), seed=9)["path"]


def run(flowtap: Path, capgen: Path, data: Path, quick: bool, runs: int) -> dict:
    spec = QUICK if quick else FULL
    base_s = capture_seconds(stretched(capgen, data, spec, 1))
    files = {}
    for target in TARGETS_S:
        scale = max(1, round(target / base_s))
        path = stretched(capgen, data, spec, scale)
        files[target] = {"path": path, "scale": scale, "seconds": capture_seconds(path)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="flowtap-duration-") as tmp:
        work = Path(tmp)
        for f in files.values():
            subprocess.run(["cat", str(f["path"])], stdout=subprocess.DEVNULL, check=True)
        for config, extra in CONFIGS.items():
            walls: dict[int, list[float]] = {t: [] for t in files}
            answers = {}
            for _ in range(runs):
                for target, f in files.items():
                    cmd = [str(flowtap), "--log-level", "warn", "--threads", "1", "--dump", "/mcp/flows/summary",
                           *extra, "-r", str(f["path"])]
                    res = timed(cmd, work)
                    walls[target].append(res["wall_s"])
                    if target not in answers:
                        # Once per file, untimed: what it found.
                        s = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
                        answers[target] = (s["total_flows"], s["total_pkts"], s["total_bytes"])
                    print(f"  duration {config:36} {f['seconds']:7.0f} s {res['wall_s']:7.3f} s", flush=True)
            if len(set(answers.values())) != 1:
                raise RuntimeError(f"duration sweep: different flows at different durations: {answers}")
            first = statistics.median(walls[TARGETS_S[0]])
            for target, f in files.items():
                wall = statistics.median(walls[target])
                rows.append({
                    "config": config,
                    "capture_s": f["seconds"],
                    "time_scale": f["scale"],
                    "wall_s": wall,
                    "ns_per_packet": wall / spec[0] * 1e9,
                    "vs_first": wall / first,
                    "flows": answers[target][0],
                })
    return {"packets": spec[0], "concurrent": spec[1], "runs": runs, "rows": rows}
