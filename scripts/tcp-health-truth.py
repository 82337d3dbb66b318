#!/usr/bin/env python3
"""Ground truth for TCP health counters (retransmissions, RSTs, zero windows,
connection outcome), derived with tshark (4.0.x) from capture files.

    tcp-health-truth.py [--table] CAPTURE.pcap [CAPTURE2 ...]

Prints JSON Lines on stdout, one object per TCP conversation = tshark
`tcp.stream`. Join key with ../shared/corpus/*truth/NAME.conv.jsonl:
(capture = file stem, stream); A/B orientation is that file's: A = sender of
the stream's first pure SYN (SYN set, ACK clear), else of its first frame.
--table also prints a per-capture summary table on stderr.

Per stream: retrans_ab/ba (retransmission, fast or spurious flag; keep-alives
and zero-window probes excluded), the individual flags for information,
rst_ab/ba, zero_window_ab/ba (raw window field 0, RST excluded), syn_count
(pure SYNs from A), outcome (refused / unanswered / established / other;
established also where no SYN-ACK was captured but the server sent something
other than a RST or SYN, or the client sent data, after the SYN) and
ended (reset / closed / open; null for refused and unanswered). `client` is
"a", or "b" when the SYN is missing and A sent the SYN-ACK (the outcome is
then judged with B as the client).

tshark runs once per file, single pass, with its default preferences except
that SEQ/ACK analysis is forced on (a user preferences file could disable it
and silently zero every analysis flag):

    tshark -n -r FILE -o tcp.analyze_sequence_numbers:TRUE
      -o tcp.relative_sequence_numbers:TRUE
      -Y 'tcp.stream and not icmp and not icmpv6'
      -T fields -E separator=/t -E occurrence=a
      -e frame.number -e frame.protocols -e tcp.stream
      -e ip.src -e ip.dst -e ipv6.src -e ipv6.dst
      -e tcp.srcport -e tcp.dstport -e tcp.flags -e tcp.window_size_value
      -e tcp.analysis.retransmission -e tcp.analysis.fast_retransmission
      -e tcp.analysis.spurious_retransmission -e tcp.analysis.keep_alive
      -e tcp.analysis.zero_window_probe -e tcp.analysis.out_of_order

Notes:
* ICMP/ICMPv6 errors quote a TCP header that tshark gives tcp.* fields and a
  stream; the existing truth does not count them, so they are filtered out.
  flowtap takes a final Destination Unreachable quoting a SYN as its refusal
  (pipeline/src/wire/icmp.rs); no corpus capture has one, so this script
  does not derive it (flowtap/tests/live.rs checks it against a real
  kernel's REJECT).
* Tunnels: tshark's stream is the innermost TCP. With several IP layers
  (occurrence=a) ip.src lists them outer->inner, so the LAST value is used;
  frame.protocols tells whether the innermost layer is IPv4 or IPv6 (6in4).
* tshark 4.0 has no `tcp.analysis.window_probe`; its zero-window probe flag is
  `tcp.analysis.zero_window_probe` (reported as window_probe_*).
* Retransmitted SYNs are flagged tcp.analysis.retransmission by tshark and
  are counted in retrans_* like any other retransmission.
"""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

# (output name, tshark field); FT_NONE fields print "1" when present.
FLAGS = [
    ("retrans", "tcp.analysis.retransmission"),
    ("fast_retrans", "tcp.analysis.fast_retransmission"),
    ("spurious", "tcp.analysis.spurious_retransmission"),
    ("keepalive", "tcp.analysis.keep_alive"),
    ("window_probe", "tcp.analysis.zero_window_probe"),
    ("out_of_order", "tcp.analysis.out_of_order"),
]
BASE = ["frame.number", "frame.protocols", "tcp.stream", "ip.src", "ip.dst",
        "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport", "tcp.flags",
        "tcp.window_size_value", "tcp.len"]
FIELDS = BASE + [f for _, f in FLAGS]
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10


def tshark_cmd(path):
    cmd = ["tshark", "-n", "-r", str(path),
           "-o", "tcp.analyze_sequence_numbers:TRUE",
           "-o", "tcp.relative_sequence_numbers:TRUE",
           "-Y", "tcp.stream and not icmp and not icmpv6",
           "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"]
    for f in FIELDS:
        cmd += ["-e", f]
    return cmd


def last(v):
    """Innermost value of a multi-occurrence field ('' if absent)."""
    return v.split(",")[-1] if v else ""


def read_frames(path):
    """Yield one dict per TCP frame (innermost TCP/IP layer), in file order."""
    res = subprocess.run(tshark_cmd(path), capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"tshark failed on {path} (rc {res.returncode}): {res.stderr}")
    for line in res.stdout.splitlines():
        v = dict(zip(FIELDS, line.split("\t")))
        # Innermost network layer: the last ip/ipv6 token before tcp.
        protos = v["frame.protocols"].split(":")
        tcp_at = len(protos) - 1 - protos[::-1].index("tcp")
        l3 = [p for p in protos[:tcp_at] if p in ("ip", "ipv6")]
        pre = "ipv6" if l3 and l3[-1] == "ipv6" else "ip"
        flags = last(v["tcp.flags"])
        win = last(v["tcp.window_size_value"])
        yield {
            "num": int(v["frame.number"]),
            "stream": int(last(v["tcp.stream"])),
            "src": (last(v[pre + ".src"]), int(last(v["tcp.srcport"]) or 0)),
            "dst": (last(v[pre + ".dst"]), int(last(v["tcp.dstport"]) or 0)),
            # A truncated TCP header (22_malformed) can have a stream but no flags.
            "flags": int(flags, 16) if flags else 0,
            "win": int(win) if win else None,
            "len": int(last(v["tcp.len"]) or 0),
            "an": {name: bool(v[f]) for name, f in FLAGS},
        }


def outcome(frames, client):
    """(outcome, ended) for a stream's frames [(dir, frame)], dir 'ab'/'ba'."""
    server = "ba" if client == "ab" else "ab"
    fl = [(d, f["flags"]) for d, f in frames]
    lens = [f.get("len", 0) for _, f in frames]
    syn_i = next((i for i, (d, x) in enumerate(fl) if d == client and x & (SYN | ACK) == SYN), None)
    sa_i = next((i for i, (d, x) in enumerate(fl) if d == server and x & (SYN | ACK) == SYN | ACK), None)
    if syn_i is not None:
        # The server's first answer to the SYN (RST or SYN-ACK) decides "refused".
        ans = next((x for d, x in fl[syn_i + 1:] if d == server and (x & RST or x & (SYN | ACK) == SYN | ACK)), None)
        if ans is not None and ans & RST:
            return "refused", None
    start = 0
    if sa_i is not None:
        # The client's first ACK (SYN clear) or RST after the SYN-ACK.
        after = [(i, x) for i, (d, x) in enumerate(fl)
                 if i > sa_i and d == client and (x & RST or x & (ACK | SYN) == ACK)]
        if after and not after[0][1] & RST:
            res, start = "established", after[0][0] + 1
        elif after:
            res = "other"  # e.g. SYN-ACK answered by a RST from the client
        elif syn_i is not None:
            return "unanswered", None
        else:
            res = "other"
    elif syn_i is not None:
        # No SYN-ACK captured (the mirror dropped it, or sees one direction
        # only): established if the connection shows it was made, by the
        # server sending anything but a RST or a SYN, or the client sending
        # data after its SYN.
        made = next((i for i, (d, x) in enumerate(fl) if i > syn_i and not x & SYN and (
            (d == server and not x & RST) or (d == client and lens[i] > 0))), None)
        if made is None:
            return "unanswered", None
        res, start = "established", made
    else:
        res = "other"  # mid-stream: neither SYN nor SYN-ACK
    # Ended by whichever comes first: a RST, or FINs from both sides (a RST
    # after both FINs is the clean-up of a closed connection).
    fins = set()
    for d, x in fl[start:]:
        if x & RST:
            return res, "reset"
        if x & FIN:
            fins.add(d)
            if fins == {"ab", "ba"}:
                return res, "closed"
    return res, "open"


def conversations(path):
    name = Path(path).stem
    streams = {}
    for f in read_frames(path):
        streams.setdefault(f["stream"], []).append(f)
    for sid in sorted(streams):
        fr = streams[sid]
        first = next((f for f in fr if f["flags"] & (SYN | ACK) == SYN), fr[0])
        a, b = first["src"], first["dst"]
        # A self-connection (a == b) counts every frame as A->B, like the truth.
        tagged = [("ab" if f["src"] == a else "ba", f) for f in fr]
        o = {"capture": name, "stream": sid, "a_addr": a[0], "a_port": a[1],
             "b_addr": b[0], "b_port": b[1]}
        c = Counter()
        for d, f in tagged:
            an, x = f["an"], f["flags"]
            if (an["retrans"] or an["fast_retrans"] or an["spurious"]) \
                    and not (an["keepalive"] or an["window_probe"]):
                c["retrans_" + d] += 1
            for k in ("fast_retrans", "spurious", "keepalive", "window_probe", "out_of_order"):
                c[f"{k}_{d}"] += an[k]
            c["rst_" + d] += bool(x & RST)
            c["zero_window_" + d] += f["win"] == 0 and not x & RST
            c["syn_" + d] += x & (SYN | ACK) == SYN
        for k in ("retrans", "fast_retrans", "spurious", "keepalive", "window_probe",
                  "out_of_order", "rst", "zero_window"):
            o[k + "_ab"], o[k + "_ba"] = c[k + "_ab"], c[k + "_ba"]
        # The client is A, except when the SYN is missing and A sent the
        # SYN-ACK (capture starts with it): then B is the client.
        client = "ab"
        if not c["syn_ab"]:
            sa = next((d for d, f in tagged if f["flags"] & (SYN | ACK) == SYN | ACK), None)
            client = "ba" if sa == "ab" else "ab"
        o["outcome"], o["ended"] = outcome(tagged, client)
        o["client"] = "a" if client == "ab" else "b"
        o["syn_count"] = c["syn_ab"]
        yield o


def table(rows):
    hdr = "capture streams retr_ab retr_ba rst_ab rst_ba zwin_ab zwin_ba outcomes(ended)"
    print(hdr, file=sys.stderr)
    by = {}
    for r in rows:
        by.setdefault(r["capture"], []).append(r)
    for cap, rs in by.items():
        s = lambda k: sum(r[k] for r in rs)
        oc = Counter(r["outcome"] + (f"/{r['ended']}" if r["ended"] else "") for r in rs)
        print(cap, len(rs), s("retrans_ab"), s("retrans_ba"), s("rst_ab"), s("rst_ba"),
              s("zero_window_ab"), s("zero_window_ba"),
              " ".join(f"{k}={v}" for k, v in sorted(oc.items())), file=sys.stderr)


def main(argv):
    want_table = "--table" in argv
    paths = [p for p in argv if p != "--table"]
    if not paths:
        sys.exit(__doc__)
    rows = []
    for p in paths:
        for o in conversations(p):
            print(json.dumps(o))
            rows.append(o)
    if want_table:
        table(rows)


if __name__ == "__main__":
    main(sys.argv[1:])
