"""Markdown tables and the PNG plot from a run's results."""

from pathlib import Path


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def describe(packets: int, spec: dict) -> str:
    if "files" in spec:
        return f"{packets:,} packets: the corpus's Ethernet captures " + ", ".join(spec["files"])
    stretched = f", every gap x{spec['time_scale']:,}" if "time_scale" in spec else ""
    return (f"{packets:,} packets, {spec['concurrent']:,} connections open at once, "
            f"{spec['clients']:,} clients, {spec['servers']:,} servers{stretched}")


def mpps(pps: float) -> str:
    return f"{pps / 1e6:.2f}"


def tables(res: dict) -> str:
    m = res["machine"]
    # A partial run (--only) keeps the other sections of an earlier one:
    # the date is this run's, of the sections it ran.
    ran = f" ({', '.join(res['last_run'])})" if "last_run" in res else ""
    out = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}; last run {m['date']}{ran}; "
           f"median of up to {res['runs']} interleaved runs{' (quick mode)' if res['quick'] else ''}.\n"]
    binaries = res.get("binaries", {})
    if binaries:
        out.append("Measured: " + "; ".join(f"{section} by {measured}" for section, measured in sorted(binaries.items())) + ".\n")
    for name, cap in res.get("offline", {}).items():
        out.append(f"\n### Offline: {name} ({describe(cap['packets'], res['captures'][name]['spec'])})\n\n")
        out.append(table(
            ["tool", "runs", "wall s", "Mpps", "peak RSS MiB", "flowtap 1-thread speed-up"],
            [[r["tool"], r["runs"], f"{r['wall_s']:.3f}", mpps(r["pps"]), f"{r['rss_mib']:.0f}",
              f"{r['flowtap_1t_speedup']:.2f}x"] for r in cap["rows"]],
        ))
    if "duration" in res:
        d = res["duration"]
        out.append(f"\n### Duration sweep: the same {d['packets']:,} packets ({d['concurrent']:,} connections open at once) "
                   f"over more capture time, flowtap -r, 1 thread (median of {d['runs']})\n\n")
        out.append(table(["configuration", "capture s", "time scale", "wall s", "ns/packet", "vs the 10 s file", "flows"],
                         [[r["config"], f"{r['capture_s']:.0f}", r["time_scale"], f"{r['wall_s']:.3f}",
                           f"{r['ns_per_packet']:.0f}", f"{r['vs_first']:.2f}x", f"{r['flows']:,}"] for r in d["rows"]]))
    if "micro" in res:
        out.append("\n### Per packet (criterion, median)\n\n")
        out.append(table(["benchmark", "ns/packet", "95% interval"],
                         [[f"{r['group']}/{r['name']}", f"{r['ns_per_packet']:.1f}", f"{r['low']:.1f} to {r['high']:.1f}"]
                          for r in res["micro"]["rows"]]))
    if "memory" in res:
        mem = res["memory"]
        out.append("\n### Memory\n\n")
        out.append(table(["what", "bytes each", "measured over"],
                         [[r["what"], f"{r['bytes']:.0f}", f"{r['n']:,}"] for r in mem["rows"]]))
        rss = mem["rss"]
        out.append(f"\nflowtap on {rss['capture']} ({rss['flows']:,} flows): peak RSS {rss['unbounded_mib']:.0f} MiB "
                   f"unbounded; {rss['limited_mib']:.0f} MiB with --memory-limit {rss['limit_mib']}Mi.\n")
    if "hub" in res:
        out.append("\n### Hub (stand-in agents; snapshot = pulls, decoding, merge, preparing for queries)\n\n")
        out.append(table(
            ["agents x flows", "flows merged", "feeds MiB", "snapshot s (interval 1 s)", "peak RSS MiB",
             "limit=100 p50/p99 ms", "aggregate=namespace p50/p99 ms", "summary p50/p99 ms"],
            [[f"{r['agents']} x {r['flows_per_agent']:,}", f"{r['flows']:,}", f"{r['feed_mib']:.0f}",
              f"{r['snapshot_s']:.2f}", f"{r['peak_rss_mib']:.0f}"]
             + [f"{q['p50_ms']:.1f} / {q['p99_ms']:.1f}" for q in r["rows"]] for r in res["hub"]["runs"]]))
    if "queries" in res:
        q = res["queries"]
        out.append(f"\n### Queries ({q['flows']:,} flows; ingesting at {mpps(q['idle_ingest_pps'])} Mpps without queries; "
                   f"wrk -t1 -c4 flat out, {q['window_s']:.0f} s each; the last row paced)\n\n")
        out.append(table(["query", "first request ms", "p50 ms", "p99 ms", "requests/s", "ingest Mpps meanwhile", "ingest drop"],
                         [[r["query"], f"{r['first_ms']:.0f}" if "first_ms" in r else "-", f"{r['p50_ms']:.2f}",
                           f"{r['p99_ms']:.2f}", f"{r['requests_per_s']:.0f}",
                           mpps(r["ingest_pps"]), f"{100 * r['ingest_drop']:.0f}%"] for r in q["rows"]]))
    if "live" in res:
        out.append("\n### Live: pcap-replay into a SPAN veth\n\n")
        out.append(table(["path", "target pps", "sent pps", "sent", "received", "lost", "kernel drops", "CPU ns/packet"],
                         [[r["path"], r["target_pps"], f"{r['sent_pps']:.0f}", r["sent"], r["received"], r["lost"],
                           r["kernel_drops"], f"{r['cpu_ns_per_pkt']:.0f}"] for r in res["live"]["rows"]]))
        for note in res["live"].get("notes", []):
            out.append(f"- {note}\n")
    if "profile" in res:
        p = res["profile"]
        out.append(f"\n### Profile: flowtap -r {p['capture']}, one thread (perf, cpu-clock)\n\n")
        out.append(table(["share", "symbol"], [[f"{r['percent']:.1f}%", f"`{r['symbol'][:90]}`"] for r in p["top"]]))
    return "".join(out)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("offline", "micro", "live") if k in res]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "offline":
            caps = list(res["offline"])
            tools = [r["tool"] for r in res["offline"][caps[0]]["rows"]]
            width = 0.8 / len(caps)
            for i, cap in enumerate(caps):
                rows = {r["tool"]: r["pps"] / 1e6 for r in res["offline"][cap]["rows"]}
                ax.barh([t + i * width for t in range(len(tools))], [rows.get(t, 0) for t in tools], width, label=cap)
            ax.set_yticks([t + 0.4 - width / 2 for t in range(len(tools))], tools, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel("million packets/s (higher is better)")
            ax.set_title("Offline: reading the same capture")
            ax.legend(fontsize=7)
        elif panel == "micro":
            sizes = {"1k": 1e3, "100k": 1e5, "1M": 1e6}
            for group in ("update", "path"):
                pts = sorted((sizes[r["name"]], r["ns_per_packet"]) for r in res["micro"]["rows"]
                             if r["group"] == group and r["name"] in sizes)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=group)
            ax.set_xscale("log")
            ax.set_xlabel("live connections in the table")
            ax.set_ylabel("ns per packet")
            ax.set_title("Per-packet cost vs table size")
            ax.legend()
        elif panel == "live":
            for p in ("flowtap", "xsk_floor", "xdp_drop"):
                pts = [(r["sent_pps"], r["cpu_ns_per_pkt"]) for r in res["live"]["rows"] if r["path"] == p]
                ax.plot([x / 1e3 for x, _ in pts], [y for _, y in pts], marker="o", label=p)
            ax.set_xlabel("sent thousand packets/s")
            ax.set_ylabel("receive CPU ns per packet")
            ax.set_title("Live: receive cost, flowtap vs AF_XDP and XDP_DROP floors")
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
