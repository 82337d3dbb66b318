"""Memory: bytes per tracked connection and per flow (table-memory, one
process per measurement), and flowtap's peak RSS on the biggest capture,
unbounded and with --memory-limit (the limit must hold whatever the input)."""

import json
import re
import subprocess
from pathlib import Path


def probe(table_memory: Path, kind: str, n: int) -> dict:
    out = subprocess.run([str(table_memory), kind, str(n)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def peak_rss(cmd: list[str]) -> tuple[float, str]:
    """flowtap's peak RSS, from its own end-of-run report (VmHWM)."""
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr
    m = re.search(r"peak memory (\d+) MiB", err)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"{cmd} failed: {err[-2000:]}")
    return float(m.group(1)), err


def run(bins: dict, caps: dict, quick: bool) -> dict:
    n = 100_000 if quick else 1_000_000
    conn = probe(bins["table-memory"], "connections", n)
    live = probe(bins["table-memory"], "live-connections", n)
    flow = probe(bins["table-memory"], "flows", n)
    hs = probe(bins["table-memory"], "handshake-flows", n)
    hist = probe(bins["table-memory"], "histogram-flows", n // 100)
    # Its 20 connections a flow, alone: a hash table's bytes per entry depend
    # on where its size falls between two doublings, so they are measured
    # at the same count.
    hist_conns = probe(bins["table-memory"], "connections", hist["connections"])
    per_conn = conn["bytes"] / conn["connections"]
    # A flow probe holds one connection per flow; take the connection out.
    rows = [
        {"what": "tracked TCP connection", "bytes": per_conn, "n": conn["connections"]},
        {"what": "tracked TCP connection, live timeouts (also in the expiry wheel)",
         "bytes": live["bytes"] / live["connections"], "n": live["connections"]},
        {"what": "flow, no handshake (UDP)", "bytes": flow["bytes"] / flow["flows"] - per_conn, "n": flow["flows"]},
        {"what": "flow with handshake samples (exact)", "bytes": hs["bytes"] / hs["flows"] - per_conn, "n": hs["flows"]},
        {"what": "flow with handshake histograms", "bytes": (hist["bytes"] - hist_conns["bytes"]) / hist["flows"], "n": hist["flows"]},
    ]
    big = caps["synthetic-small" if quick else "synthetic-10M"]
    ft = [str(bins["flowtap"]), "--log-level", "warn", "--threads", "1", "--dump", "/mcp/flows/summary", "-r", str(big["path"])]
    unbounded, err = peak_rss(ft)
    m = re.search(r"flowtap: flows: flows (\d+)", err)
    flows = int(m.group(1)) if m else None
    limit_mib = 64 if quick else 256
    limited, _ = peak_rss([*ft[:-2], "--memory-limit", f"{limit_mib}Mi", "-r", str(big["path"])])
    return {
        "rows": rows,
        "rss": {"capture": big["path"].name, "flows": flows, "unbounded_mib": unbounded,
                "limit_mib": limit_mib, "limited_mib": limited},
    }
