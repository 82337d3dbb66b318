#!/usr/bin/env python3
"""Real TCP and UDP traffic for flowtap's live tests (standard library only).

serve:  TCP servers that read "<n>\\n" and answer with n bytes, then close
        (at most --pacing-rate bytes a second per connection, if given);
        UDP servers that echo each datagram. Prints "ready" once listening.
client: connections to the servers, round-robin over their addresses and
        ports, each checked end to end; prints a JSON summary.
failures: one connection of each failure kind against the first address:
        refused (--closed-port), unanswered (--silent-addr: nothing answers
        there), reset by the client after the handshake (the first TCP
        port), and a bulk transfer (--bulk-port, --response bytes) whose
        losses are the test's to arrange; prints a JSON summary.
"""
import argparse
import json
import socket
import struct
import sys
import threading


# Linux's SO_MAX_PACING_RATE (asm-generic/socket.h); Python does not name it.
SO_MAX_PACING_RATE = getattr(socket, "SO_MAX_PACING_RATE", 47)


def serve_tcp(addr, port, pacing_rate):
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(128)

    def handle(c):
        with c:
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = c.recv(64)
                if not chunk:
                    return
                buf += chunk
            # The request is "q" padding, then the response size.
            c.sendall(b"r" * int(buf.lstrip(b"q")))

    while True:
        c, _ = s.accept()
        if pacing_rate:
            # TCP paces itself (no fq qdisc needed): segments leave evenly
            # spaced, retransmissions included.
            c.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, pacing_rate)
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def serve_udp(addr, port):
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


def failures(addr, port, a):
    out = {}
    try:
        socket.create_connection((addr, a.closed_port), timeout=5).close()
        out["refused"] = False
    except ConnectionRefusedError:
        out["refused"] = True
    # The kernel re-sends the SYN after 1 s; given up after 2.5 s: two SYNs.
    try:
        socket.create_connection((a.silent_addr, port), timeout=2.5).close()
        out["unanswered"] = False
    except (socket.timeout, TimeoutError):
        out["unanswered"] = True
    # Established, then aborted: close with a zero linger time sends a RST.
    c = socket.create_connection((addr, port), timeout=5)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    out["reset"] = True
    with socket.create_connection((addr, a.bulk_port), timeout=30) as c:
        c.sendall(str(a.response).encode() + b"\n")
        got = 0
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            got += len(chunk)
    out["bulk_bytes"] = got
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["serve", "client", "failures"])
    p.add_argument("--closed-port", type=int, default=7)
    p.add_argument("--silent-addr", default="")
    p.add_argument("--bulk-port", type=int, default=0)
    p.add_argument("--addrs", required=True, help="comma-separated server addresses")
    p.add_argument("--tcp-ports", default="", help="comma-separated")
    p.add_argument("--udp-ports", default="", help="comma-separated")
    p.add_argument("--connections", type=int, default=0, help="TCP connections to make")
    p.add_argument("--datagrams", type=int, default=0, help="UDP request/response pairs")
    p.add_argument("--request", type=int, default=300, help="bytes each client sends")
    p.add_argument("--response", type=int, default=3000, help="bytes each server sends back")
    p.add_argument("--pacing-rate", type=int, default=0, help="serve: bytes/s per connection")
    a = p.parse_args()
    addrs = [x for x in a.addrs.split(",") if x]
    tcp_ports = [int(x) for x in a.tcp_ports.split(",") if x]
    udp_ports = [int(x) for x in a.udp_ports.split(",") if x]

    if a.mode == "serve":
        for addr in addrs:
            for port in tcp_ports:
                threading.Thread(target=serve_tcp, args=(addr, port, a.pacing_rate), daemon=True).start()
            for port in udp_ports:
                threading.Thread(target=serve_udp, args=(addr, port), daemon=True).start()
        print("ready", flush=True)
        threading.Event().wait()
        return

    if a.mode == "failures":
        print(json.dumps(failures(addrs[0], tcp_ports[0], a)), flush=True)
        return

    summary = {"tcp_ok": 0, "tcp_failed": 0, "udp_ok": 0, "udp_failed": 0}
    # Distinct UDP 5-tuples: a socket may get a source port an earlier one
    # had, and then its datagrams continue that earlier exchange.
    udp_tuples = set()
    targets = [(addr, port) for addr in addrs for port in tcp_ports]
    for i in range(a.connections):
        addr, port = targets[i % len(targets)]
        # Vary sizes a little so flows differ.
        response = a.response + 97 * (i % 7)
        request = b"q" * max(a.request - 10, 0) + str(response).encode() + b"\n"
        try:
            with socket.create_connection((addr, port), timeout=5) as c:
                c.sendall(request)
                got = 0
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    got += len(chunk)
            ok = got == response
        except OSError as e:
            print(f"tcp {addr}:{port}: {e}", file=sys.stderr)
            ok = False
        summary["tcp_ok" if ok else "tcp_failed"] += 1
    utargets = [(addr, port) for addr in addrs for port in udp_ports]
    for i in range(a.datagrams):
        addr, port = utargets[i % len(utargets)]
        s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        payload = b"u" * (50 + i % 200)
        try:
            s.sendto(payload, (addr, port))
            udp_tuples.add((s.getsockname()[1], addr, port))
            data, _ = s.recvfrom(65535)
            ok = data == payload
        except OSError as e:
            print(f"udp {addr}:{port}: {e}", file=sys.stderr)
            ok = False
        finally:
            s.close()
        summary["udp_ok" if ok else "udp_failed"] += 1
    summary["udp_tuples"] = len(udp_tuples)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
