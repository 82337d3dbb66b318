"""A CPU profile of the offline path: perf record (cpu-clock sampling, which
works in VMs without hardware counters) on `flowtap -r` with one thread,
reported per symbol. BENCHMARKS.md says what was changed because of it."""

import re
import subprocess
from pathlib import Path


def symbol(column: str) -> str:
    """The symbol name alone: perf pads it and appends empty columns."""
    name = column.replace("[.] ", "").replace("[k] ", "")
    return re.split(r"\s{2,}", name.strip())[0]


def run(flowtap: Path, caps: dict, quick: bool, out: Path) -> dict:
    cap = caps["synthetic-small" if quick else "synthetic-3M"]
    data = out / "perf-offline.data"
    subprocess.run(
        ["perf", "record", "-e", "cpu-clock", "-F", "2000", "-g", "-o", str(data), "--",
         str(flowtap), "--log-level", "warn", "--threads", "1", "--dump", "/mcp/flows/summary", "-r", str(cap["path"])],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--no-children", "--sort", "symbol", "--percent-limit", "1",
         "--stdio", "-g", "none"],
        check=True, capture_output=True, text=True,
    ).stdout
    data.unlink()
    lines = [l for l in report.splitlines() if l.strip() and not l.startswith("#")]
    text = f"perf record -e cpu-clock -g: flowtap -r {cap['path'].name} --threads 1\n\n" + "\n".join(lines) + "\n"
    (out / "profile-offline.txt").write_text(text)
    top = []
    for l in lines:
        parts = l.split(None, 2)
        if len(parts) == 3 and parts[0].endswith("%"):
            top.append({"percent": float(parts[0].rstrip("%")), "symbol": symbol(parts[2])})
    return {"capture": cap["path"].name, "top": top[:15]}
