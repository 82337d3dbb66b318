#!/usr/bin/env python3
"""Live receive-path benchmark: flowtap on a veth SPAN port, against two
floors on the same veth: the kernel's (a minimal XDP_DROP program) and
copy-mode AF_XDP's (`xsk-floor`: flowtap's own XDP program and sockets,
polled as flowtap polls them, the frames counted and given back unparsed).

One network namespace holds a veth pair: pcap-replay sends a capture into
`fb0` at fixed rates (and then as fast as it can), and the peer `fb1` is
the SPAN port, watched either by `flowtap -i fb1 --mode span` or by an
XDP_DROP program. For every rate it records what was sent, what the kernel
and flowtap received and dropped, and the receive CPU per packet: the
receiver's process time (flowtap only) plus the softirq time of all CPUs
(where the veth's NAPI poll, the XDP program and the AF_XDP copy run).

Needs root. Stdlib only. Usable as a module (`run(...)`) or standalone:

    python3 bench/harness/live.py --flowtap target/release/flowtap \
        --xsk-floor target/release/xsk-floor \
        --replay target/release/pcap-replay --capture FILE
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import re
import signal
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

# Target rates in packets/s, increasing; 0 stands for `--max`.
DEFAULT_RATES = [25_000, 50_000, 100_000, 200_000, 400_000, 0]
MAX = 0

PREFIX = "ftbench-"
TX_DEV, RX_DEV = "fb0", "fb1"  # pcap-replay sends on fb0; fb1 is the SPAN port
LISTEN = "127.0.0.1:8898"  # inside our own namespace, so it cannot collide
ADMIN = "127.0.0.1:8899"  # /readyz and /metrics: the admin listener
PROBE_PACKETS = 100_000  # the --max probe that sizes the --max run
CPU_GRACE_S = 0.2  # after the last frame is sent, until the CPU window closes
CLK_TCK = os.sysconf("SC_CLK_TCK")

XDP_DROP_C = r"""
// The kernel floor: every frame is dropped as soon as XDP sees it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_drop_all(struct xdp_md *ctx)
{
    return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
"""


# --- commands ---------------------------------------------------------------


def sh(*args: str, ns: str | None = None, timeout: float = 30) -> str:
    """Runs a command (inside `ns` if given); it must succeed. Returns stdout."""
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    return out.stdout


def http_get(ns: str, path: str) -> str:
    # Python 3.11 has no os.setns: curl inside the namespace, as the Rust tests do.
    # Health and metrics are on the admin listener, flow data on the other.
    at = ADMIN if path in ("/readyz", "/healthz", "/metrics") else LISTEN
    return sh("curl", "-sS", "--fail", "--max-time", "5", f"http://{at}{path}", ns=ns)


# --- the namespace ----------------------------------------------------------


class Lab:
    """A namespace with the veth pair fb0 -> fb1; deleting the namespace
    deletes the veths and any XDP program on them."""

    def __init__(self) -> None:
        self.ns = f"{PREFIX}{os.getpid()}"

    def __enter__(self) -> "Lab":
        remove_stale_namespaces()
        sh("ip", "netns", "add", self.ns)
        try:
            sh("ip", "-n", self.ns, "link", "set", "lo", "up")
            # One rx queue (the veth default): flowtap runs one socket.
            sh("ip", "-n", self.ns, "link", "add", TX_DEV, "type", "veth", "peer", "name", RX_DEV)
            for dev in (TX_DEV, RX_DEV):
                # No addresses and no IPv6: nothing but the replayed frames on the wire.
                sh("sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1", ns=self.ns)
                sh("ip", "-n", self.ns, "link", "set", dev, "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def remove_stale_namespaces() -> None:
    """Deletes ftbench-<pid> namespaces whose run was killed (pid gone)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(re.escape(PREFIX) + r"(\d+)", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


# --- counters ---------------------------------------------------------------


def softirq_ns() -> float:
    """Softirq time of all CPUs (/proc/stat: cpu user nice system idle iowait irq softirq ...)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[7]) * 1e9 / CLK_TCK


def process_cpu_ns(pid: int) -> float:
    """utime + stime of a whole process (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) * 1e9 / CLK_TCK


def veth_counters(ns: str) -> dict[str, int]:
    """Kernel counters of the pair: what fb1's XDP saw, and where the veth dropped."""
    stats = {}
    for line in sh("ethtool", "-S", RX_DEV, ns=ns).splitlines():
        key, _, value = line.strip().partition(": ")
        if value.isdigit():
            stats[key] = int(value)
    sum_of = lambda pattern: sum(v for k, v in stats.items() if re.fullmatch(pattern, k))
    links = {l["ifname"]: l["stats64"] for l in json.loads(sh("ip", "-j", "-s", "link", "show", ns=ns))}
    return {
        # Frames that ran through fb1's XDP program (driver mode only).
        "xdp_packets": sum_of(r"rx_queue_\d+_xdp_packets"),
        # fb1's rx packets as `ip -s link` shows them (counts in both modes).
        "link_rx": links[RX_DEV]["rx"]["packets"],
        # fb0's transmit drops: fb1's NAPI ring was full (the frame never reached fb1).
        "tx_dropped": links[TX_DEV]["tx"]["dropped"],
        # fb1's drops in its NAPI poll: failed conversions, XDP_ABORTED and
        # failed redirects (so also every frame an AF_XDP socket refused).
        "rx_drops": sum_of(r"rx_queue_\d+_drops"),
    }


def kernel_rx(veth: dict[str, int], mode: str) -> int:
    """Frames fb1 received: in driver mode its per-queue XDP counter; generic
    XDP runs after the veth driver, where only the link's rx counter sees them."""
    return veth["xdp_packets"] if mode == "driver" else veth["link_rx"]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {metric name: value summed over its labels}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_labels, _, value = line.rpartition(" ")
            name = name_labels.split("{", 1)[0]
            out[name] = out.get(name, 0.0) + float(value)
    return out


# --- the capture ------------------------------------------------------------


class Capture:
    """A classic pcap whose first N frames can be cut into a file of their own
    (pcap-replay has no frame limit: shorter runs need shorter files)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ends = self._record_ends()

    def _record_ends(self) -> list[int]:
        with open(self.path, "rb") as f:
            magic = f.read(24)[:4]
            if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
                endian = "<"
            elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
                endian = ">"
            else:
                raise ValueError(f"{self.path}: not a classic pcap (pcapng is not supported here)")
            ends, pos = [], 24
            while len(rec := f.read(16)) == 16:
                (incl,) = struct.unpack(endian + "I", rec[8:12])
                pos += 16 + incl
                f.seek(pos)
                ends.append(pos)
        if not ends:
            raise ValueError(f"{self.path}: no frames")
        return ends

    def plan(self, packets: int, work: Path) -> tuple[list[Path], Path | None]:
        """Files that together hold exactly `packets` frames: the capture
        repeated (pcap-replay sends its files in order; --loop could only
        repeat whole captures), then a cut of its first frames. Returns the
        files and the cut (a temporary file) if any."""
        whole, rest = divmod(packets, len(self.ends))
        if rest == 0:
            return [self.path] * whole, None
        cut = work / f"first-{rest}.pcap"
        with open(self.path, "rb") as src, open(cut, "wb") as dst:
            left = self.ends[rest - 1]
            while left > 0:
                chunk = src.read(min(left, 1 << 20))
                dst.write(chunk)
                left -= len(chunk)
        return [self.path] * whole + [cut], cut


# --- pacing -----------------------------------------------------------------


def tick_hz() -> int:
    """CONFIG_HZ of the running kernel (250 if the config cannot be read)."""
    for path in ("/proc/config.gz", f"/boot/config-{platform.release()}"):
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        return int(line.split("=")[1])
        except OSError:
            continue
    return 250


def paced_rate(target: int, hz: int) -> float:
    """The --pps actually asked for: `target` moved (by < 0.4 tick) so that
    the send period does not divide the scheduler tick.

    Without CONFIG_IRQ_TIME_ACCOUNTING, /proc/stat's softirq time is sampled
    by the tick. pcap-replay sends on a grid fixed to the same clock, so at
    100000 pps (10 us; 400 per 4 ms tick) every tick lands on the same point
    of the send cycle (in pcap-replay's spin loop) and the softirq that
    follows each send is never seen (0 ticks where ~10 were due). A rate of
    (k - 0.382) ticks' worth moves the sampling point by 0.618 of a period
    per tick, which spreads the samples evenly over the cycle.
    """
    k = max(1, round(target / hz))
    return (k - 0.382) * hz


# --- runs -------------------------------------------------------------------


def send_capture(replay_bin: Path, ns: str, capture: Capture, packets: int, pps: float | None, work: Path) -> dict:
    """Sends about `packets` frames at `pps` (None: --max); pcap-replay's report."""
    files, cut = capture.plan(packets, work)
    pace = ["--max"] if pps is None else ["--pps", f"{pps:.1f}"]
    expected_s = packets / (pps or 200_000)
    try:
        out = sh(str(replay_bin), "-i", TX_DEV, *pace, *map(str, files), ns=ns, timeout=3 * expected_s + 20)
    finally:
        if cut:
            cut.unlink()
    # "pcap-replay: sent N frames (B bytes) in S s (P pps), failed F"
    m = re.search(r"sent (\d+) frames \((\d+) bytes\) in ([\d.]+) s \((\d+) pps\), failed (\d+)", out)
    if not m:
        raise RuntimeError(f"unexpected pcap-replay output: {out!r}")
    sent, _, secs, sent_pps, failed = m.groups()
    return {"sent": int(sent), "seconds": float(secs), "sent_pps": int(sent_pps), "failed": int(failed)}


def settle(read: Callable[[], dict], expected: int, key: str = "received") -> dict:
    """Reads the counters until `key` reaches `expected` or stops moving
    for 1.5 s (flowtap publishes its counters about once a second); 10 s at most."""
    deadline = time.monotonic() + 10
    last, since = read(), time.monotonic()
    while last[key] < expected and time.monotonic() < deadline and time.monotonic() - since < 1.5:
        time.sleep(0.25)
        now = read()
        if now[key] != last[key]:
            since = time.monotonic()
        last = now
    return last


def measure(path: str, target: int, pps: float | None, packets: int, read: Callable[[], dict],
            pid: int | None, replay_run: Callable[[float | None, int], dict]) -> dict:
    """One row: counters and CPU before, replay, CPU after, counters settled."""
    before, soft0 = read(), softirq_ns()
    proc0 = process_cpu_ns(pid) if pid else 0.0
    sent = replay_run(pps, packets)
    # The receive work ends within milliseconds of the last frame (softirq
    # runs inline with the send; flowtap drains its rings); its counters are
    # published later (about once a second), so the CPU window closes first
    # and keeps little of flowtap's idle cost.
    time.sleep(CPU_GRACE_S)
    soft = softirq_ns() - soft0
    proc = (process_cpu_ns(pid) - proc0) if pid else 0.0
    after = settle(lambda: delta(read(), before), sent["sent"])
    received = after["received"]
    lost = sent["sent"] - received
    per_pkt = lambda ns: round(ns / received, 1) if received else None
    return {
        "path": path,
        "target_pps": "max" if target == MAX else target,
        "paced_pps": None if pps is None else round(pps, 1),
        "sent": sent["sent"],
        "failed": sent["failed"],
        "sent_pps": sent["sent_pps"],
        "seconds": sent["seconds"],
        "kernel_rx": after["kernel_rx"],
        "received": received,
        "lost": lost,
        "kernel_drops": kernel_drops(after),
        "veth_tx_dropped": after["tx_dropped"],
        "veth_rx_drops": after["rx_drops"],
        # flowtap's AF_XDP socket (None for xdp_drop)
        "xsk_rx_dropped": after.get("xsk_rx_dropped"),
        "xsk_rx_ring_full": after.get("xsk_rx_ring_full"),
        "xsk_fill_ring_empty": after.get("xsk_fill_ring_empty"),
        "xsk_invalid": after.get("xsk_invalid"),
        "handoff_drops": after.get("handoff_drops", 0),
        "unexplained": lost - kernel_drops(after),
        "cpu_ns_per_pkt": per_pkt(proc + soft),
        "proc_ns_per_pkt": per_pkt(proc) if pid else None,
        "softirq_ns_per_pkt": per_pkt(soft),
    }


def kernel_drops(c: dict) -> int:
    """Frames the kernel dropped between fb0 and the receiver. A frame the
    AF_XDP socket refuses is counted by the socket (xsk_*) and, in driver
    mode, again by fb1 as a failed redirect (rx_drops): take the larger."""
    xsk = c.get("xsk_rx_dropped", 0) + c.get("xsk_rx_ring_full", 0)
    return c["tx_dropped"] + max(c["rx_drops"], xsk)


def delta(now: dict, before: dict) -> dict:
    return {k: now[k] - before[k] for k in now}


def run_rates(path: str, rates: list[int], seconds: float, hz: int, read: Callable[[], dict],
              pid: int | None, replay_run: Callable[[float | None, int], dict]) -> tuple[list[dict], int]:
    """Every rate on one receiver; returns the rows and the probed --max rate."""
    # The probe warms the receiver up and tells how long a --max run must be.
    probe = replay_run(None, PROBE_PACKETS)
    rows = []
    for target in sorted(rates, key=lambda r: math.inf if r == MAX else r):
        pps = None if target == MAX else paced_rate(target, hz)
        packets = max(1000, round((pps or probe["sent_pps"]) * seconds))
        time.sleep(0.5)  # let the previous run's stragglers and timers pass
        rows.append(measure(path, target, pps, packets, read, pid, replay_run))
    return rows, probe["sent_pps"]


def run_process(path: str, receiver: "Flowtap | XskFloor", rates: list[int], seconds: float, hz: int,
                send: Callable[[float | None, int], dict],
                idle_seconds: float) -> tuple[list[dict], tuple[float, float], int, str]:
    """A receiver process's idle cost, then every rate on it; stops it.
    Returns the rows, the idle cost, the probed --max rate and its report."""
    try:
        idle = idle_cost(receiver.proc.pid, idle_seconds)
        rows, max_pps = run_rates(path, rates, seconds, hz, receiver.counters, receiver.proc.pid, send)
    finally:
        report = receiver.stop()
    return rows, idle, max_pps, report


def idle_cost(pid: int | None, seconds: float) -> tuple[float, float]:
    """CPU ms per second of the receiver process and of all softirqs, with no
    traffic. /proc counts in ticks (10 ms): over `seconds` the figure is good
    to 10 ms / `seconds` a second, so a one-second window says only 0 or 10."""
    soft0, proc0 = softirq_ns(), (process_cpu_ns(pid) if pid else 0.0)
    time.sleep(seconds)
    proc = (process_cpu_ns(pid) - proc0) if pid else 0.0
    return proc / seconds / 1e6, (softirq_ns() - soft0) / seconds / 1e6


# --- the receivers -----------------------------------------------------------


def xdp_mode(receiver: str, log: Path) -> str:
    """The mode a receiver attached in ("driver" or "skb"), from the line
    both print at start-up: which kernel counters say what it missed depends
    on it, so a log without it is an error, not a guess."""
    m = re.search(r'xdp_mode="(\w+)"', log.read_text())
    if not m:
        raise RuntimeError(f"no xdp_mode in {receiver}'s log:\n{log.read_text()}")
    return m.group(1)


class Flowtap:
    """`flowtap -i fb1 --mode span` inside the namespace (as the Rust live tests run it)."""

    def __init__(self, binary: Path, ns: str, work: Path) -> None:
        self.ns = ns
        self.log = work / "flowtap.stderr"
        with open(self.log, "wb") as err:
            # `ip netns exec` execs flowtap: the child's pid is flowtap's.
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, str(binary), "-i", RX_DEV, "--mode", "span", "--listen", LISTEN, "--admin-listen", ADMIN],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        try:
            self._wait_ready()
            self.mode = xdp_mode("flowtap", self.log)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"flowtap exited ({self.proc.returncode}):\n{self.log.read_text()}")
            try:
                if '"ready"' in http_get(self.ns, "/readyz"):
                    return
            except RuntimeError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"flowtap not ready after 30 s:\n{self.log.read_text()}")

    def counters(self) -> dict:
        m = parse_metrics(http_get(self.ns, "/metrics"))
        veth = veth_counters(self.ns)
        return {
            "received": int(m["flowtap_xdp_frames_total"]),
            "kernel_rx": kernel_rx(veth, self.mode),
            "tx_dropped": veth["tx_dropped"],
            "rx_drops": veth["rx_drops"],
            "xsk_rx_dropped": int(m["flowtap_xdp_rx_dropped_total"]),
            "xsk_rx_ring_full": int(m["flowtap_xdp_rx_ring_full_total"]),
            "xsk_fill_ring_empty": int(m["flowtap_xdp_fill_ring_empty_total"]),
            "xsk_invalid": int(m["flowtap_xdp_invalid_descriptors_total"]),
            "handoff_drops": int(m["flowtap_handoff_drops_total"]),
        }

    def stop(self) -> str:
        """SIGTERM (SIGKILL after 15 s); returns flowtap's per-queue exit report."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return " | ".join(l for l in self.log.read_text().splitlines() if l.startswith("flowtap: queue "))


class XskFloor:
    """`xsk-floor fb1 COUNT_FILE` inside the namespace: flowtap's capture set-up
    and socket polling without its pipeline (bench/src/bin/xsk-floor.rs)."""

    def __init__(self, binary: Path, ns: str, work: Path) -> None:
        self.ns = ns
        self.log, self.count = work / "xsk-floor.stderr", work / "xsk-floor.count"
        self.count.unlink(missing_ok=True)
        with open(self.log, "wb") as err:
            # Runs until its stdin closes; `ip netns exec` execs it.
            self.proc = subprocess.Popen(["ip", "netns", "exec", ns, str(binary), RX_DEV, str(self.count)],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 30
        while not self.count.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"xsk-floor did not start:\n{self.log.read_text()}")
            time.sleep(0.1)
        try:
            self.mode = xdp_mode("xsk-floor", self.log)
        except BaseException:
            self.stop()
            raise

    def counters(self) -> dict:
        veth = veth_counters(self.ns)
        return {"received": int(self.count.read_text()), "kernel_rx": kernel_rx(veth, self.mode),
                "tx_dropped": veth["tx_dropped"], "rx_drops": veth["rx_drops"]}

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log.read_text().strip().replace("\n", " | ")


class XdpDrop:
    """The XDP_DROP program, compiled here and attached with iproute2."""

    FLAGS = {"driver": "xdpdrv", "skb": "xdpgeneric"}

    def __init__(self, ns: str, work: Path, mode: str) -> None:
        self.ns, self.mode, self.flag = ns, mode, self.FLAGS[mode]
        src, obj = work / "xdp_drop.c", work / "xdp_drop.o"
        src.write_text(XDP_DROP_C)
        sh("clang", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c", str(src), "-o", str(obj))
        sh("ip", "-n", ns, "link", "set", "dev", RX_DEV, self.flag, "obj", str(obj), "sec", "xdp")

    def counters(self) -> dict:
        veth = veth_counters(self.ns)
        received = kernel_rx(veth, self.mode)
        return {"received": received, "kernel_rx": received, "tx_dropped": veth["tx_dropped"],
                "rx_drops": veth["rx_drops"]}

    def stop(self) -> None:
        subprocess.run(["ip", "-n", self.ns, "link", "set", "dev", RX_DEV, self.flag, "off"], capture_output=True)


# --- the benchmark ----------------------------------------------------------


def run(flowtap: Path, xsk_floor: Path, replay: Path, capture: Path, work: Path,
        rates: list[int] | None = None, seconds: float = 3.0, idle_seconds: float = 10.0) -> dict:
    """Measures flowtap's live receive path, the AF_XDP floor and the
    XDP_DROP floor at each rate (0 = --max). Returns {"rows": [...],
    "notes": [...]}; rows have target_pps "max" for the --max run."""
    if os.geteuid() != 0:
        raise PermissionError("live.py creates network namespaces and loads XDP programs: run it as root")
    rates = DEFAULT_RATES if rates is None else rates
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    cap = Capture(Path(capture))
    hz = tick_hz()
    notes = [f"load average at start: {Path('/proc/loadavg').read_text().split()[:3]} "
             f"on {os.cpu_count()} CPUs (the machine is shared: others' softirqs and load count too)"]
    rows: list[dict] = []
    with Lab() as lab:
        send = lambda pps, packets: send_capture(replay, lab.ns, cap, packets, pps, work)

        ft = Flowtap(flowtap, lab.ns, work)
        mode = ft.mode
        ft_rows, (proc_idle, soft_idle), ft_max, report = run_process("flowtap", ft, rates, seconds, hz, send, idle_seconds)
        rows += ft_rows
        notes.append(f"flowtap attached in XDP {mode} mode (copy-mode AF_XDP on veth), one rx queue; "
                     f"idle it uses {proc_idle:.1f} ms CPU/s over {idle_seconds:.0f} s (softirq of all CPUs meanwhile "
                     f"{soft_idle:.1f} ms/s); "
                     f"--max probe {ft_max} pps; exit report: {report}")

        floor = XskFloor(xsk_floor, lab.ns, work)
        floor_rows, (proc_idle, soft_idle), floor_max, report = run_process("xsk_floor", floor, rates, seconds, hz, send, idle_seconds)
        rows += floor_rows
        notes.append(f"xsk_floor (flowtap's capture set-up and polling, no pipeline) attached in XDP {floor.mode} "
                     f"mode; idle it uses {proc_idle:.1f} ms CPU/s over {idle_seconds:.0f} s (softirq {soft_idle:.1f} ms/s); "
                     f"--max probe {floor_max} pps; {report}")

        drop = XdpDrop(lab.ns, work, mode)
        try:
            _, soft_idle = idle_cost(None, idle_seconds)
            drop_rows, drop_max = run_rates("xdp_drop", rates, seconds, hz, drop.counters, None, send)
        finally:
            drop.stop()
        rows += drop_rows
        notes.append(f"xdp_drop attached with `ip link set dev {RX_DEV} {drop.flag} obj ... sec xdp` "
                     f"(the mode flowtap used); idle softirq {soft_idle:.1f} ms/s; --max probe {drop_max} pps")
    notes += ratio_notes(rows) + row_notes(rows) + counter_notes(hz)
    return {"rows": rows, "notes": notes}


def ratio_notes(rows: list[dict]) -> list[str]:
    """CPU a frame, rate by rate: flowtap over the AF_XDP floor, and the
    floor over XDP_DROP (the paced rates only: each receiver's maximum is
    a different rate)."""
    by = {(r["path"], r["target_pps"]): r for r in rows}
    parts = []
    for r in rows:
        if r["path"] != "flowtap" or r["target_pps"] == "max":
            continue
        rate = r["target_pps"]
        flowtap, floor, drop = (by.get((p, rate)) for p in ("flowtap", "xsk_floor", "xdp_drop"))
        if not (flowtap and floor and drop and all(x["cpu_ns_per_pkt"] for x in (flowtap, floor, drop))):
            continue
        part = (f"{rate}: flowtap {flowtap['cpu_ns_per_pkt'] / floor['cpu_ns_per_pkt']:.2f}x the floor, "
                f"the floor {floor['cpu_ns_per_pkt'] / drop['cpu_ns_per_pkt']:.2f}x XDP_DROP")
        # CPU a frame includes a fixed cost a second, so it falls as the rate
        # rises: receivers compare only at the rates they were really sent.
        reached = [x["sent_pps"] for x in (flowtap, floor, drop)]
        if min(reached) < 0.95 * max(reached):
            part += (f" (not comparable: sent {reached[0]}, {reached[1]} and {reached[2]} pps)")
        parts.append(part)
    return [f"CPU a frame by rate (pps): {'; '.join(parts)}"] if parts else []


def row_notes(rows: list[dict]) -> list[str]:
    """What stands out in the rows: rates not reached, losses, books that do not balance."""
    notes = []
    for r in rows:
        at = f"{r['path']} at {r['target_pps']}"
        if r["paced_pps"] and r["sent_pps"] < 0.95 * r["paced_pps"]:
            notes.append(f"{at}: pcap-replay reached only {r['sent_pps']} pps (paced, it makes one sendto per "
                         f"frame and shares 2 CPUs with the receiver; --max batches its sends)")
        if r["lost"]:
            notes.append(f"{at}: {r['lost']} of {r['sent']} frames lost; kernel drops {r['kernel_drops']} "
                         f"(fb0 tx dropped {r['veth_tx_dropped']}, fb1 rx drops {r['veth_rx_drops']}, "
                         f"AF_XDP rx_dropped {r['xsk_rx_dropped']}, rx_ring_full {r['xsk_rx_ring_full']}, "
                         f"fill ring found empty {r['xsk_fill_ring_empty']} times)")
        if r["unexplained"] or r["failed"]:
            notes.append(f"{at}: books do not balance: unexplained {r['unexplained']}, "
                         f"pcap-replay failed {r['failed']}")
        if r["handoff_drops"]:
            notes.append(f"{at}: flowtap dropped {r['handoff_drops']} received frames between its workers")
    return notes


def counter_notes(hz: int) -> list[str]:
    return [
        "sent: pcap-replay's count (frames handed to fb0's AF_XDP TX ring and sent); sent_pps its own rate.",
        "kernel_rx: frames that reached fb1's XDP program (ethtool -S fb1 rx_queue_N_xdp_packets; "
        "ip -s link rx packets agree in driver mode).",
        "received: flowtap = flowtap_xdp_frames_total (frames on its AF_XDP socket); xsk_floor = the frames "
        "its sockets gave it; "
        "xdp_drop = kernel_rx (every frame XDP_DROP'd by design, not a loss).",
        "kernel_drops = veth_tx_dropped (fb0's tx dropped in `ip -s link`: fb1's ring was full) + the larger "
        "of veth_rx_drops (fb1's rx_queue_N_drops in ethtool -S: drops in its NAPI poll, failed XDP redirects "
        "included) and, for flowtap, xsk_rx_dropped + xsk_rx_ring_full (flowtap_xdp_rx_dropped_total, "
        "flowtap_xdp_rx_ring_full_total: frames its socket refused, which fb1 also counts as failed "
        "redirects in driver mode). xsk_fill_ring_empty counts events, not frames (such frames are in "
        "xsk_rx_dropped). "
        "handoff_drops: frames flowtap received but dropped between its workers (not in lost). "
        "unexplained = lost - kernel_drops (0 when the books balance).",
        f"cpu_ns_per_pkt = proc_ns_per_pkt (the receiver's utime+stime, flowtap's or xsk-floor's, /proc/PID/stat, 10 ms resolution, includes its "
        f"idle cost) + softirq_ns_per_pkt (/proc/stat softirq of all CPUs), over the window from the replay's "
        f"start to {CPU_GRACE_S} s after its end. The kernel has no CONFIG_IRQ_TIME_ACCOUNTING: softirq time is "
        f"sampled by the {hz} Hz tick, so it is statistical, includes any other softirq on the machine, and "
        f"softirq run inside flowtap's own context would count twice. Fixed rates are paced at paced_pps "
        f"(target moved < {0.4 * hz:.0f} pps off the tick grid): at exact multiples of {hz} pps the tick "
        f"aliases with the send grid and sees no softirq at all.",
        "The veth's NAPI poll runs in softirq on the CPU that sent the frame, mostly inline in pcap-replay's "
        "sendto. It holds the skb-to-XDP conversion, the XDP program, the AF_XDP copy and wake-up (flowtap), "
        "and the free of the sender's skb (its TX completion): the same for both paths except what flowtap adds. "
        "pcap-replay spins a whole CPU at fixed rates.",
    ]


# --- standalone -------------------------------------------------------------


def table(rows: list[dict]) -> str:
    cols = ["path", "target_pps", "sent", "sent_pps", "kernel_rx", "received", "lost", "kernel_drops",
            "handoff_drops", "unexplained", "cpu_ns_per_pkt", "proc_ns_per_pkt", "softirq_ns_per_pkt"]
    heads = ["path", "target", "sent", "sent/s", "kernel_rx", "received", "lost", "k_drops",
             "handoff", "unexpl", "cpu ns/pkt", "proc ns", "softirq ns"]
    cells = [[("-" if r[c] is None else str(r[c])) for c in cols] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(heads)]
    fmt = lambda vals: "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths)))
    return "\n".join([fmt(heads), fmt(["-" * w for w in widths])] + [fmt(c) for c in cells])


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flowtap", type=Path, required=True)
    p.add_argument("--xsk-floor", type=Path, required=True)
    p.add_argument("--replay", type=Path, required=True)
    p.add_argument("--capture", type=Path, required=True)
    p.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    p.add_argument("--rates", help="comma-separated packets/s, 0 or max = --max (default: %(default)s)",
                   default=",".join("max" if r == MAX else str(r) for r in DEFAULT_RATES))
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    a = p.parse_args()
    # SIGTERM (a CI timeout) ends the run through the finally blocks: nothing left behind.
    signal.signal(signal.SIGTERM, _interrupt)
    rates = [MAX if r.strip() in ("0", "max") else int(r) for r in a.rates.split(",")]
    with tempfile.TemporaryDirectory(prefix=PREFIX) as tmp:
        result = run(a.flowtap.resolve(), a.xsk_floor.resolve(), a.replay.resolve(), a.capture.resolve(), a.work or Path(tmp),
                     rates, a.seconds)
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(table(result["rows"]))
    print()
    for note in result["notes"]:
        print(f"- {note}")


if __name__ == "__main__":
    main()
