"""A hub over many agents: `hub-agents` serves N stand-in agents' feeds of M
flows each in the real encoding (a twentieth of each agent's flows shared
with the next, as the two nodes of a cross-node connection share them), and
the real `flowtap hub` pulls them every interval with the inventory that
names the servers. Measured: the time each snapshot takes (pulls, decoding,
the merge, preparing it for queries: flowtap_snapshot_merge_duration_seconds
over a window that starts once the hub has published WARM_UP snapshots),
the hub's peak RSS, and p50/p99 of queries (sequential,
while the hub keeps merging)."""

import re
import subprocess
import time
import urllib.request
from pathlib import Path

from queries import free_port, get

PATHS = [
    ("/mcp/flows?limit=100", "limit=100"),
    ("/mcp/flows?aggregate=namespace", "aggregate=namespace"),
    ("/mcp/flows/summary", "summary"),
]


# Snapshots a hub publishes before the window opens: its first rounds have
# no last snapshot to share unchanged digests with, and were slower (the
# merge's ordering 0.9-1.2 s in them against about 0.2 s after, at 32 x 50k
# on 2026-12-03); a 15 s window of 3 s rounds averaged them in.
WARM_UP = 5


def metric(base: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([\d.e+]+)", get(base + "/metrics"), re.M)
    return float(m.group(1)) if m else 0.0


def peak_rss_mib(pid: int) -> float:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024


def latency(url: str, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as r:
            r.read()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(0.99 * len(times)))]


def one(flowtap: Path, agents_bin: Path, agents: int, flows: int, interval: float, window: float, n: int, data: Path,
        warm_up: int) -> dict:
    inventory = data / f"hub-inventory-{agents}.json"
    served = subprocess.Popen([str(agents_bin), "--agents", str(agents), "--flows", str(flows), "--inventory", str(inventory)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hub = None
    try:
        urls = []
        for line in served.stdout:
            line = line.strip()
            if line == "ready":
                break
            urls.append("http://" + line)
        feed_bytes = int(re.search(r"(\d+) feed bytes", served.stderr.readline()).group(1))
        port, admin = free_port(), free_port()
        base, admin_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
        hub = subprocess.Popen(
            [str(flowtap), "hub", "--log-level", "warn", "--agent", ",".join(urls), "--k8s-inventory", str(inventory),
             "--snapshot-interval", str(interval), "--agent-timeout", "30",
             "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if metric(admin_base, "flowtap_agents_answered") == agents and metric(admin_base, "flowtap_snapshots_published_total") >= warm_up:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("the hub never merged every agent")
        total = int(re.search(r'"total_flows":(\d+)', get(base + "/mcp/flows/summary")).group(1))
        s0 = metric(admin_base, "flowtap_snapshot_merge_duration_seconds_sum")
        c0 = metric(admin_base, "flowtap_snapshot_merge_duration_seconds_count")
        rows = []
        for path, name in PATHS:
            p50, p99 = latency(base + path, n)
            rows.append({"query": name, "p50_ms": p50, "p99_ms": p99})
        time.sleep(max(0.0, window - 1))
        s1 = metric(admin_base, "flowtap_snapshot_merge_duration_seconds_sum")
        c1 = metric(admin_base, "flowtap_snapshot_merge_duration_seconds_count")
        return {"agents": agents, "flows_per_agent": flows, "flows": total, "feed_mib": feed_bytes / 2**20,
                "interval_s": interval, "snapshot_s": (s1 - s0) / max(1.0, c1 - c0), "snapshots": c1 - c0,
                "peak_rss_mib": peak_rss_mib(hub.pid), "rows": rows}
    finally:
        for p in (hub, served):
            if p:
                p.kill()
                p.wait()


def run(flowtap: Path, agents_bin: Path, quick: bool, data: Path) -> dict:
    sizes = [(4, 5_000)] if quick else [(8, 50_000), (32, 15_000), (32, 50_000)]
    return {"runs": [one(flowtap, agents_bin, a, f, 1.0, 3.0 if quick else 15.0, 20 if quick else 200, data,
                         2 if quick else WARM_UP)
                     for a, f in sizes]}
