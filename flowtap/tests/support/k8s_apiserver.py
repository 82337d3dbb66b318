#!/usr/bin/env python3
"""A Kubernetes API server stand-in for flowtap's tests (standard library only).

Serves list and watch as the real API server does for four cluster-wide
collections, /api/v1/{pods,services,nodes} and
/apis/discovery.k8s.io/v1/endpointslices, plus /version. kube-rs's watcher asks
for nothing else (no discovery).

    python3 k8s_apiserver.py --port 0 --seed seed.json
    -> "listening on http://127.0.0.1:PORT" on stdout once ready

A kubeconfig whose cluster server is that URL (no TLS, no user) lets kube-rs in.
A test changes the cluster while flowtap watches:

    POST /_control/apply         object, or list of them: upsert (ADDED/MODIFIED)
    POST /_control/delete        {"kind", "metadata": {"namespace", "name"}}
    POST /_control/expire        forget the event history: new watches and lists
                                 from any version handed out so far get 410;
                                 open watches go on, as after etcd compaction.
                                 ?drop-watches also ends them in the same step,
                                 so their clients resume, get 410 and relist.
    POST /_control/drop-watches  end every open watch stream; clients re-watch
    POST /_control/expire-after-page
                                 once: right after the next list page that has
                                 a continue token, expire as above, so the next
                                 page's request gets 410 (a paginated list
                                 outlived by etcd's compaction); the client lists
                                 again from the start
    POST /_control/fail-lists    {"collection", "answer", "times"}: the next
                                 `times` lists of that collection get HTTP
                                 `answer` (e.g. 403) with a Status, or with
                                 "hang" no answer at all (held until the
                                 client gives up), as a proxy that drops a
                                 request may do, or with "endless" a 200 whose
                                 first object's name never ends (sent until
                                 the client hangs up, 1 GiB at most; the
                                 bytes sent in stats' "endless_bytes")
    POST /_control/fail-watches  the same for watch requests (e.g. 503, as an
                                 overloaded server or a proxy answers)
    POST /_control/expired-watches-as-status {"on"}: a watch from an expired
                                 version gets HTTP 410 and a Status, as some
                                 proxies and aggregated servers answer, not 200
                                 and an ERROR event
    GET  /_control/stats         list/watch request counts per collection

Like the real server: one global resourceVersion counter (etcd's revision); list
items carry no kind/apiVersion; a watch without resourceVersion (or "0") starts
with ADDED for every object; a watch from before the retained history gets 200
and one ERROR event holding a 410 "Expired" Status; a list at an expired version
(resourceVersionMatch=Exact, or a continue token) gets HTTP 410 and a Status;
resourceVersionMatch=NotOlderThan never expires, any newer state will do.
"""
import argparse
import base64
import bisect
import json
import select
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# path -> (collection, kind, apiVersion, namespaced)
COLLECTIONS = {
    "/api/v1/pods": ("pods", "Pod", "v1", True),
    "/api/v1/services": ("services", "Service", "v1", True),
    "/api/v1/nodes": ("nodes", "Node", "v1", False),
    "/apis/discovery.k8s.io/v1/endpointslices": ("endpointslices", "EndpointSlice", "discovery.k8s.io/v1", True),
}
BY_KIND = {kind: (coll, api, ns) for coll, kind, api, ns in COLLECTIONS.values()}


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def expired(rv, floor):
    return {"type": "ERROR", "object": status(410, "Expired", f"too old resource version: {rv} ({floor})")}


class Cluster:
    """Objects, their event history, and the counters the tests read."""

    def __init__(self, history_cap):
        self.cond, self.rv, self.cap = threading.Condition(), 1, history_cap
        self.objects = {c[0]: {} for c in COLLECTIONS.values()}  # {(namespace, name): object}
        # Per collection: [(rv, type, object, previous object or None)], rv ascending.
        self.history = {c: [] for c in self.objects}
        # floor: the oldest version a new watch or Exact list may start from.
        # lost: the newest event dropped from history; an open watch behind it missed it.
        self.floor, self.lost = dict.fromkeys(self.objects, 0), dict.fromkeys(self.objects, 0)
        self.drop_gen, self.stopping, self.expire_after_page = 0, False, False
        self.list_faults = {}  # collection -> {"answer": int or "hang", "times": n}
        self.watch_faults = {}  # the same, for watch requests
        self.expired_as_status = False  # a watch from an expired version: HTTP 410
        # list_gone: lists answered 410 (an expired version or continue token).
        self.stats = {k: {c: 0 for c in self.objects} for k in ("list", "list_gone", "watch", "open_watches")}
        self.stats["other"] = {}
        self.stats["endless_bytes"] = 0

    def _record(self, coll, kind, obj, prev):
        hist = self.history[coll]
        hist.append((self.rv, kind, obj, prev))
        if len(hist) > self.cap:  # as etcd compacts: the oldest history goes
            self.lost[coll] = hist.pop(0)[0]
            self.floor[coll] = max(self.floor[coll], self.lost[coll])
        self.cond.notify_all()

    def apply(self, obj):
        coll, api, namespaced = BY_KIND[obj["kind"]]
        meta = obj.setdefault("metadata", {})
        if namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        with self.cond:
            key = (meta.get("namespace", ""), meta["name"])
            prev = self.objects[coll].get(key)
            old = prev["metadata"] if prev else {}
            self.rv += 1
            obj["apiVersion"] = api
            # An update keeps the object's identity, as the real server does.
            meta["uid"] = old.get("uid") or meta.get("uid") or str(uuid.uuid4())
            meta["creationTimestamp"] = (old.get("creationTimestamp") or meta.get("creationTimestamp")
                                         or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            meta["resourceVersion"] = str(self.rv)
            self.objects[coll][key] = obj
            kind = "MODIFIED" if prev else "ADDED"
            self._record(coll, kind, obj, prev)
        return {"type": kind, "object": obj}

    def delete(self, obj):
        coll, _, namespaced = BY_KIND[obj["kind"]]
        meta = obj.get("metadata", {})
        with self.cond:
            prev = self.objects[coll].pop((meta.get("namespace", "default") if namespaced else "", meta["name"]), None)
            if not prev:
                return None
            self.rv += 1
            # The DELETED event carries the last state, stamped with the deletion's version.
            gone = json.loads(json.dumps(prev))
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self._record(coll, "DELETED", gone, prev)
        return {"type": "DELETED", "object": gone}

    def expire(self, drop_watches):
        with self.cond:
            # The cut gets a version of its own: what lists return from now on is
            # watchable, every version handed out before is not.
            self.rv += 1
            for coll, hist in self.history.items():
                if hist:
                    self.lost[coll] = hist[-1][0]
                hist.clear()
                self.floor[coll] = self.rv
            # In the same step, so no bookmark can carry a client past the cut.
            self.drop_gen += drop_watches
            self.cond.notify_all()

    def state_at(self, coll, rv):
        """Objects as they were at rv (rv >= floor): undo the newer events."""
        objs = dict(self.objects[coll])
        for erv, _, obj, prev in reversed(self.history[coll]):
            if erv <= rv:
                break
            objs[(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = prev
        return {k: o for k, o in objs.items() if o is not None}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked watch streams
    cluster, quiet, bookmark_interval = None, False, 3.0

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away: its business, not a server error to print

    def log_message(self, fmt, *args):
        if not self.quiet:
            sys.stderr.write("k8s_apiserver: %s\n" % (fmt % args))

    def send_json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        c = self.cluster
        if url.path in COLLECTIONS:
            watch = q.get("watch") in ("true", "1")
            with c.cond:
                c.stats["watch" if watch else "list"][COLLECTIONS[url.path][0]] += 1
            faults = c.watch_faults if watch else c.list_faults
            if self.fault(COLLECTIONS[url.path][0], faults):
                return None
            return self.serve_watch(url.path, q) if watch else self.serve_list(url.path, q)
        if url.path == "/_control/stats":
            with c.cond:
                return self.send_json(200, dict(c.stats, resourceVersion=str(c.rv)))
        with c.cond:  # so a test sees what else its client asked for
            c.stats["other"][url.path] = c.stats["other"].get(url.path, 0) + 1
        if url.path == "/version":
            return self.send_json(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-stand-in"})
        self.send_json(404, status(404, "NotFound", f"the server could not find the requested resource ({url.path})"))

    def do_POST(self):
        c = self.cluster
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            arg = json.loads(body) if body else None
            if self.path == "/_control/apply":
                out = [c.apply(o) for o in (arg if isinstance(arg, list) else [arg])]
                return self.send_json(200, out if isinstance(arg, list) else out[0])
            if self.path == "/_control/delete":
                out = c.delete(arg)
                return self.send_json(200, out) if out else self.send_json(404, status(404, "NotFound", "no such object"))
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            return self.send_json(400, status(400, "BadRequest", f"bad object: {e!r}"))
        if self.path in ("/_control/fail-lists", "/_control/fail-watches"):
            with c.cond:
                faults = c.list_faults if self.path.endswith("lists") else c.watch_faults
                faults[arg["collection"]] = {"answer": arg["answer"], "times": int(arg["times"])}
            return self.send_json(200, {})
        if self.path == "/_control/expired-watches-as-status":
            with c.cond:
                c.expired_as_status = bool(arg["on"])
            return self.send_json(200, {})
        if self.path == "/_control/expire-after-page":
            with c.cond:
                c.expire_after_page = True
            return self.send_json(200, {})
        if self.path.startswith("/_control/expire"):
            c.expire(1 if "drop-watches" in self.path else 0)
            return self.send_json(200, {"resourceVersion": str(c.rv)})
        if self.path == "/_control/drop-watches":
            with c.cond:
                c.drop_gen += 1
                c.cond.notify_all()
            return self.send_json(200, {})
        self.send_json(404, status(404, "NotFound", self.path))

    def fault(self, coll, faults):
        """Answers a list or watch as /_control/fail-lists or fail-watches said, if
        it said so; True then."""
        c = self.cluster
        with c.cond:
            fault = faults.get(coll)
            if not fault or fault["times"] <= 0:
                return False
            fault["times"] -= 1
            if fault["answer"] == "hang":
                # No answer; the connection is held until the client goes.
                while not c.stopping and not self.hung_up():
                    c.cond.wait(timeout=0.2)
                return True
        if fault["answer"] == "endless":
            self.send_endless(coll)
            return True
        code = int(fault["answer"])
        self.send_json(code, status(code, "Forbidden" if code == 403 else "InternalError",
                                    f"{coll} is \"forbidden\": a fault the test asked for"))
        return True

    def send_endless(self, coll):
        """A 200 list whose first item's name never ends, in chunks, until the
        client hangs up (a write fails) or 1 GiB went."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"x" * 65536
        head = b'{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"'
        sent = 0
        try:
            for part in [head] + [chunk] * (16384):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                sent += len(part)
                with self.cluster.cond:
                    self.cluster.stats["endless_bytes"] = sent
                if self.cluster.stopping:
                    break
        except OSError:
            pass
        self.close_connection = True

    def serve_list(self, path, q):
        c = self.cluster
        coll, kind, api, _ = COLLECTIONS[path]
        rv, match, cont = q.get("resourceVersion", ""), q.get("resourceVersionMatch"), q.get("continue")
        limit, after = int(q.get("limit") or 0), None
        with c.cond:
            if cont:
                try:
                    list_rv, after = json.loads(base64.urlsafe_b64decode(cont))
                    after = tuple(after)
                except (ValueError, TypeError):
                    return self.send_json(400, status(400, "BadRequest", "invalid continue token"))
                if list_rv < c.floor[coll]:
                    c.stats["list_gone"][coll] += 1
                    return self.send_json(410, status(410, "Expired", "The provided continue parameter is too old "
                                                      "to display a consistent list result."))
                # Later pages show current objects under the first page's version:
                # a client watching from it sees such changes again, which is harmless.
                objs = c.objects[coll]
            elif match and not rv:
                return self.send_json(400, status(400, "BadRequest",
                                                  "resourceVersionMatch is forbidden unless resourceVersion is provided"))
            elif rv not in ("", "0") and (match == "Exact" or (match is None and limit)):
                list_rv = int(rv)
                if list_rv < c.floor[coll]:
                    c.stats["list_gone"][coll] += 1
                    return self.send_json(410, expired(list_rv, c.floor[coll])["object"])
                if list_rv > c.rv:
                    return self.send_json(504, status(504, "Timeout", "Too large resource version"))
                objs = c.state_at(coll, list_rv)
            else:
                # Unset: most recent; "0": any; NotOlderThan N: at least as new
                # as N, which the real server waits up to 3 s for.
                if rv not in ("", "0") and not c.cond.wait_for(lambda: c.rv >= int(rv), timeout=3):
                    return self.send_json(504, status(504, "Timeout", "Too large resource version"))
                objs, list_rv = c.objects[coll], c.rv
            keys = sorted(k for k in objs if after is None or k > after)
            items = [{k: v for k, v in objs[key].items() if k not in ("kind", "apiVersion")} for key in keys]
            meta = {"resourceVersion": str(list_rv)}
            if limit and len(items) > limit:
                meta["continue"] = base64.urlsafe_b64encode(json.dumps([list_rv, keys[limit - 1]]).encode()).decode()
                meta["remainingItemCount"] = len(items) - limit
                items = items[:limit]
                if c.expire_after_page:
                    c.expire_after_page = False
                    c.expire(0)
        self.send_json(200, {"kind": kind + "List", "apiVersion": api, "metadata": meta, "items": items})

    def chunk(self, event):
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def hung_up(self):
        readable, _, _ = select.select([self.connection], [], [], 0)
        return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)

    def serve_watch(self, path, q):
        c = self.cluster
        coll, kind, api, _ = COLLECTIONS[path]
        rv = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        initial = q.get("sendInitialEvents") in ("true", "1")
        deadline = time.monotonic() + int(q.get("timeoutSeconds") or 1800)
        pending = []
        with c.cond:
            gen = c.drop_gen
            c.stats["open_watches"][coll] += 1
            if rv in ("", "0") or initial:
                # "Start at most recent / any": the current state as ADDED events first.
                pending = [{"type": "ADDED", "object": o} for _, o in sorted(c.objects[coll].items())]
                cursor = c.rv
                if initial:  # a streaming list (WatchList): a bookmark ends the initial state
                    pending.append({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api, "metadata": {
                        "resourceVersion": str(cursor), "annotations": {"k8s.io/initial-events-end": "true"}}}})
            else:
                cursor = int(rv)
                if cursor < c.floor[coll]:
                    pending = [expired(cursor, c.floor[coll])]
                    if c.expired_as_status:
                        c.stats["open_watches"][coll] -= 1
                        return self.send_json(410, pending[0]["object"])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")  # one chunk per event
        self.end_headers()
        next_bookmark = time.monotonic() + self.bookmark_interval
        try:
            while not (pending and pending[-1]["type"] == "ERROR"):  # an ERROR ends the stream
                for event in pending:
                    self.chunk(event)
                pending = []
                with c.cond:
                    hist = c.history[coll]
                    news = lambda: hist[bisect.bisect_right(hist, cursor, key=lambda e: e[0]):]
                    wake = min(deadline, next_bookmark if bookmarks else deadline) - time.monotonic()
                    # Wake each second at least, to notice a client that hung up.
                    c.cond.wait_for(lambda: c.stopping or c.drop_gen != gen or news() or cursor < c.lost[coll],
                                    timeout=min(max(wake, 0), 1))
                    if c.stopping or c.drop_gen != gen or time.monotonic() >= deadline or self.hung_up():
                        break
                    pending = [{"type": t, "object": o} for _, t, o, _ in news()]
                    if cursor < c.lost[coll]:
                        # Events this watch had not been sent are gone: 410, the client relists.
                        pending = [expired(cursor, c.floor[coll])]
                    elif pending:
                        cursor = hist[-1][0]
                    elif bookmarks and time.monotonic() >= next_bookmark:
                        cursor = c.rv  # every event of this collection up to c.rv has been sent
                        pending = [{"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api,
                                                                  "metadata": {"resourceVersion": str(cursor)}}}]
                        next_bookmark = time.monotonic() + self.bookmark_interval
            for event in pending:
                self.chunk(event)
            self.wfile.write(b"0\r\n\r\n")
        finally:
            with c.cond:
                c.stats["open_watches"][coll] -= 1
        # Like the real server, keep the connection for the client's next request
        # after a stream ends, unless this server is going away.
        self.close_connection = c.stopping


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", help="JSON list of objects to start with")
    ap.add_argument("--bookmark-interval", type=float, default=3.0, help="seconds between watch bookmarks")
    ap.add_argument("--history", type=int, default=1000, help="events retained per collection")
    ap.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    args = ap.parse_args()

    cluster = Cluster(args.history)
    if args.seed:
        with open(args.seed) as f:
            for obj in json.load(f):
                cluster.apply(obj)
    Handler.cluster, Handler.quiet, Handler.bookmark_interval = cluster, args.quiet, args.bookmark_interval
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)  # a thread per request, daemonic

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    stop.wait()
    # End the watch streams so their clients see a clean end, not a reset.
    with cluster.cond:
        cluster.stopping = True
        cluster.cond.notify_all()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
