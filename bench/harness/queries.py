"""Query latency with a million flows in the snapshot, while the pipeline
ingests: flowtap reads the big capture several times over (`-r F F F ...`,
one worker thread) and serves; once the snapshot holds all its flows, wrk
loads one path at a time and the frames counter gives the ingestion rate
during each load, against a window with no queries.

The frames counter comes from the published snapshot (once a second), so a
window's edges are taken where the counter changes (polled every 50 ms)."""

import http.client
import re
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

PATHS = [
    ("/mcp/flows?limit=100", "limit=100"),
    ("/mcp/flows?aggregate=namespace", "aggregate=namespace"),
    ("/mcp/flows/summary", "summary"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 30.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def frames(admin: str) -> int:
    """Frames read so far, from /metrics on the admin listener."""
    m = re.search(r"^flowtap_frames_total (\d+)", get(admin + "/metrics"), re.M)
    return int(m.group(1)) if m else 0


def edge(admin: str, limit_s: float = 5.0) -> tuple[float, int]:
    """Waits for the next snapshot (the frames counter changes): its time and value."""
    first = frames(admin)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(0.05)
        value = frames(admin)
        if value != first:
            return time.monotonic(), value
    raise RuntimeError("the frames counter did not move: is the pipeline still reading?")


def ingest_rate(admin: str, seconds: float, during=None) -> tuple[float, object]:
    """Frames per second between two snapshot edges about `seconds` apart,
    with `during` (a callable) running in between."""
    t0, v0 = edge(admin)
    result = during() if during else time.sleep(seconds)
    t1, v1 = edge(admin)
    return (v1 - v0) / (t1 - t0), result


def to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, seconds: float) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", "-c4", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    pct = {p: to_ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk got {errors.group(1)} error responses from {url}")
    return {"p50_ms": pct["50"], "p99_ms": pct["99"], "requests_per_s": rps}


def paced(port: int, paths: list[str], rate: float, seconds: float) -> dict:
    """`paths` in turn at `rate` requests a second in all (the issue's load:
    limit=100 and the summary at 100 a second), each on its own connection
    and thread, a request leaving at its scheduled time (or at once if the
    previous came back late); latency from the scheduled time, so a late
    answer delays the next one's count too (no coordinated omission)."""
    latencies, lock = [], threading.Lock()
    start = time.monotonic() + 0.1
    every = len(paths) / rate

    def client(k: int, path: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        n = 0
        while True:
            due = start + k / rate + n * every
            if due > start + seconds:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            conn.request("GET", path)
            conn.getresponse().read()
            with lock:
                latencies.append((time.monotonic() - due) * 1000)
            n += 1

    threads = [threading.Thread(target=client, args=(k, p)) for k, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return {"p50_ms": latencies[len(latencies) // 2], "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
            "requests_per_s": len(latencies) / seconds}


def run(flowtap: Path, caps: dict, quick: bool) -> dict:
    cap = caps["synthetic-small" if quick else "synthetic-10M"]
    window = 2.0 if quick else 10.0
    # Enough passes over the capture to outlast the windows three times over
    # at the rate flowtap reads it alone (the test ends when reading does).
    alone = subprocess.run([str(flowtap), "--log-level", "warn", "--threads", "1", "-r", str(cap["path"])],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True).stderr
    seconds_per_pass = float(re.search(r"frames .* in ([\d.]+) s", alone).group(1))
    copies = max(2, round(3 * (5 * window + 10) / seconds_per_pass))
    port, admin_port = free_port(), free_port()
    base, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    proc = subprocess.Popen(
        [str(flowtap), "--log-level", "warn", "--threads", "1", "--listen", f"127.0.0.1:{port}",
         "--admin-listen", f"127.0.0.1:{admin_port}", "-r", *[str(cap["path"])] * copies],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # Wait for the server, then for the snapshot to hold the capture's flows.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if frames(admin) > cap["packets"]:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("flowtap never finished the first pass over the capture")
        idle_rate, _ = ingest_rate(admin, window)
        rows = []
        for path, name in PATHS:
            # One request first, timed on its own: the first of a new
            # aggregation computes it for the snapshot it meets (later
            # snapshots compute it before they are served), and wrk's
            # correction for coordinated omission would spread that one
            # wait over its percentiles as if every second were like it.
            started = time.monotonic()
            get(base + path)
            first_ms = (time.monotonic() - started) * 1000
            rate, w = ingest_rate(admin, window, lambda p=path: wrk(base + p, window))
            w["first_ms"] = first_ms
            rows.append({"query": name, **w, "ingest_pps": rate, "ingest_drop": 1 - rate / idle_rate})
        # The steady load rather than wrk's flat-out one.
        steady = [path for path, name in PATHS if name in ("limit=100", "summary")]
        rate, w = ingest_rate(admin, window, lambda: paced(port, steady, 100.0, window))
        rows.append({"query": "limit=100 and summary, 100/s in all", **w, "ingest_pps": rate,
                     "ingest_drop": 1 - rate / idle_rate})
        flows = int(re.search(r'"total_flows":(\d+)', get(base + "/mcp/flows/summary")).group(1))
        return {"flows": flows, "idle_ingest_pps": idle_rate, "window_s": window, "rows": rows}
    finally:
        proc.kill()
        proc.wait()
