"""Offline throughput: flowtap -r against the peer tools on the same files.

Every tool reads the same capture from the page cache (a warm-up read comes
first), runs are interleaved (tool order rotates each round) so that the
machine's noise spreads over all tools alike, and the median is reported.
Peak RSS comes from the kernel (wait4's ru_maxrss of the tool's process).
"""

import hashlib
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

# Captures from the generator: (packets, connections open at once, clients,
# servers[, time scale]).
SPECS = {
    "synthetic-3M": (3_000_000, 100_000, 50_000, 1_000),
    "synthetic-10M": (10_000_000, 1_000_000, 200_000, 2_000),
    # Shaped like the capture issue 19 measured (3.2M packets, 250k
    # connections open at once, 130 s, mean frame 530 B): capgen's frames
    # average 488 B, its 0.12 s stretched 1085 times.
    "realistic-3.2M": (3_200_000, 250_000, 100_000, 2_000, 1_085),
}
# Made in every mode: quick mode's only capture, and the live benchmark's.
SMALL = ("synthetic-small", (300_000, 10_000, 5_000, 200))


def capture_packets(path: Path) -> int:
    out = subprocess.run(["capinfos", "-M", "-c", str(path)], capture_output=True, text=True, check=True)
    return int(re.search(r"Number of packets:\s*(\d+)", out.stdout).group(1))


def capture_seconds(path: Path) -> float:
    out = subprocess.run(["capinfos", "-M", "-u", str(path)], capture_output=True, text=True, check=True)
    return float(re.search(r"Capture duration:\s*([\d.]+) seconds", out.stdout).group(1))


def generator_identity(capgen: Path) -> str:
    """What decides the frames capgen writes: its sources' git tree (clean,
    so rebuilding unchanged sources keeps the cached captures), else the
    binary itself."""
    src = Path(__file__).resolve().parents[2] / "tools" / "capgen"
    tree = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD:tools/capgen"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "."], capture_output=True, text=True)
    if tree.returncode == 0 and dirty.returncode == 0 and not dirty.stdout.strip():
        return f"capgen tree {tree.stdout.strip()}"
    return f"capgen binary {hashlib.sha256(capgen.read_bytes()).hexdigest()}"


def generate(capgen: Path, data: Path, name: str, spec: tuple, seed: int = 7) -> dict:
    packets, concurrent, clients, servers, *scale = spec
    path = data / f"{name}.pcap"
    args = [
        str(capgen), "-o", str(path), "--clean", "--packets", str(packets), "--concurrent", str(concurrent),
        "--clients", str(clients), "--servers", str(servers), "--seed", str(seed),
        *(["--time-scale", str(scale[0])] if scale else []),
    ]
    stamp = data / f"{name}.args"
    made_by = " ".join(args[3:]) + f" by {generator_identity(capgen)}"
    # Regenerate only when the file is missing or was made with other
    # arguments or another generator (a change to capgen's traffic changes
    # the capture the same arguments give).
    if not path.exists() or not stamp.exists() or stamp.read_text() != made_by:
        subprocess.run(args, check=True)
        stamp.write_text(made_by)
    return {
        "path": path,
        "packets": packets,
        "spec": {"packets": packets, "concurrent": concurrent, "clients": clients, "servers": servers,
                 **({"time_scale": scale[0]} if scale else {})},
    }


def merge_corpus(corpus: Path, data: Path) -> dict | None:
    """The corpus's Ethernet captures merged into one classic pcap. A classic
    pcap holds one link type, and the peers (libpcap) read one link type per
    file, so the SLL, SLL2, NULL and raw-IP captures are left out here (flowtap
    reads them all: see the corpus tests)."""
    ether = []
    for f in sorted(corpus.glob("*.pcap*")):
        out = subprocess.run(["capinfos", "-M", "-E", "-T", str(f)], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1].endswith("\tether"):
            ether.append(str(f))
    if not ether:
        return None
    path = data / "corpus-ethernet.pcap"
    subprocess.run(["mergecap", "-F", "pcap", "-w", str(path), *ether], check=True)
    return {"path": path, "packets": capture_packets(path), "spec": {"files": [Path(e).name for e in ether]}}


def captures(capgen: Path, data: Path, corpus: Path, quick: bool) -> dict:
    specs = {} if quick else dict(SPECS)
    specs[SMALL[0]] = SMALL[1]
    caps = {name: generate(capgen, data, name, spec) for name, spec in specs.items()}
    merged = merge_corpus(corpus, data)
    if merged:
        caps["corpus-ethernet"] = merged
    return caps


def tools(flowtap: Path, work: Path) -> list[dict]:
    """Each tool: a name, its command for a capture, and how many runs at
    most (the slowest peers once: they take minutes on the big captures)."""
    cores = os.cpu_count() or 1
    ft = [str(flowtap), "--log-level", "warn", "--dump", "/mcp/flows/summary"]
    return [
        {"name": "flowtap (1 thread)", "cmd": lambda f: [*ft, "--threads", "1", "-r", f], "flowtap": True},
        {"name": f"flowtap ({cores} threads)", "cmd": lambda f: [*ft, "--threads", str(cores), "-r", f], "flowtap": True},
        {"name": "tcpdump -r -w /dev/null", "cmd": lambda f: ["tcpdump", "-q", "-r", f, "-w", "/dev/null"]},
        {"name": "softflowd -r", "cmd": lambda f: ["softflowd", "-r", f, "-m", "1000000"]},
        {"name": "argus -r", "cmd": lambda f: ["argus", "-r", f, "-w", str(work / "out.argus")]},
        {"name": "nfpcapd -r", "cmd": lambda f: ["nfpcapd", "-r", f, "-l", str(work / "nfpcapd")]},
        {"name": "pmacctd -I", "cmd": lambda f: [
            "pmacctd", "-I", f, "-c", "src_host,dst_host,src_port,dst_port,proto", "-P", "print",
            "-O", "csv", "-o", str(work / "pmacctd.csv")], "max_runs": 1},
        {"name": "tshark -z conv,tcp", "cmd": lambda f: ["tshark", "-r", f, "-q", "-z", "conv,tcp"], "max_runs": 1},
    ]


def timed(cmd: list[str], work: Path) -> dict:
    """Runs a command under GNU time: wall seconds, peak RSS (KiB, the
    kernel's high-water mark; GNU time's own footprint before exec is about
    2 MiB, a Python fork's would be 20) and the stderr tail."""
    shutil.rmtree(work / "nfpcapd", ignore_errors=True)
    (work / "nfpcapd").mkdir(parents=True)
    err, stats = work / "stderr", work / "time"
    with open(err, "wb") as e:
        started = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-o", str(stats), "-f", "%M", *cmd],
                              stdout=subprocess.DEVNULL, stderr=e, cwd=work)
        wall = time.perf_counter() - started
    text = err.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {text[-2000:]}")
    return {"wall_s": wall, "rss_kib": int(stats.read_text().split()[-1]), "stderr": text[-4000:]}


def flowtap_frames(stderr: str) -> int:
    m = re.search(r"read (\d+) frames", stderr)
    return int(m.group(1)) if m else -1


def run(flowtap: Path, caps: dict, runs: int, out: Path) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="flowtap-bench-") as tmp:
        work = Path(tmp)
        for cap_name, cap in caps.items():
            path = str(cap["path"])
            subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)  # into the page cache
            samples: dict[str, list] = {}
            ts = tools(flowtap, work)
            for r in range(runs):
                order = ts[r % len(ts):] + ts[: r % len(ts)]
                for tool in order:
                    if r >= tool.get("max_runs", runs):
                        continue
                    res = timed(tool["cmd"](path), work)
                    if tool.get("flowtap") and flowtap_frames(res["stderr"]) != cap["packets"]:
                        raise RuntimeError(f"flowtap read {flowtap_frames(res['stderr'])} of {cap['packets']} frames")
                    samples.setdefault(tool["name"], []).append(res)
                    print(f"  {cap_name:18} {tool['name']:24} {res['wall_s']:8.3f} s {res['rss_kib'] / 1024:8.1f} MiB", flush=True)
            rows = []
            for tool in ts:
                s = samples[tool["name"]]
                wall = statistics.median(x["wall_s"] for x in s)
                rows.append({
                    "tool": tool["name"],
                    "runs": len(s),
                    "wall_s": wall,
                    "pps": cap["packets"] / wall,
                    "rss_mib": max(x["rss_kib"] for x in s) / 1024,
                    "flowtap": bool(tool.get("flowtap")),
                })
            one = rows[0]["wall_s"]
            for row in rows:
                # How many times faster flowtap (1 thread) is than this tool.
                row["flowtap_1t_speedup"] = row["wall_s"] / one
            results[cap_name] = {"packets": cap["packets"], "rows": rows}
    return results
