#!/usr/bin/env python3
"""Drives flowtap's service map in headless Chromium (Debian's chromium and
chromedriver, through Selenium) as a person would, and prints what it saw
as JSON: whether the page asked for the token, the map's nodes and edges,
the flows listed after clicking the edge FROM -> TO (node ids as the page
gives them), and the map's groups after switching to namespaces. Browser
console errors are printed too.

usage: service_map.py URL TOKEN SCREENSHOT FROM TO
       service_map.py --coverage URL TOKEN   (the coverage banner's text, the
                                              status line and the edges)
       service_map.py --stalls URL TOKEN     (the status line while the API
                                              fails: a proxy's error page,
                                              then no answer at all)
"""
import http.server
import json
import sys
import threading
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait


# The namespace the map is narrowed to before a node is clicked.
NS = "data"


def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    # As root, without a GPU, and without Chromium's own calls home (refused
    # on a closed network).
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,900"]:
        o.add_argument(flag)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


# Read in one script, so that a redraw between two reads cannot mix maps.
EDGES = """return [...document.querySelectorAll('path.edge')].map(e => ({
    from: e.getAttribute('data-from'), to: e.getAttribute('data-to'),
    bytes: Number(e.getAttribute('data-bytes')), latency: e.getAttribute('data-latency'),
    failing: e.getAttribute('data-failing') === 'true'}))"""
NODES = "return [...document.querySelectorAll('g.node')].map(n => n.getAttribute('data-id')).sort()"
# Each node's place in the map's 1000 x 700 drawing.
POSITIONS = """return [...document.querySelectorAll('g.node')].map(n => {
    const m = n.getAttribute('transform').match(/translate\\(([-\\d.e]+),([-\\d.e]+)\\)/);
    return [n.getAttribute('data-id'), Number(m[1]), Number(m[2])]; })"""


def coverage(url, token):
    d = browser()
    try:
        # Opened without the token, then (where the server wants one) given
        # it in the fragment, as a person pastes the README's link into the
        # tab that asks for it.
        d.get(url)
        WebDriverWait(d, 15).until(lambda d: d.find_element(By.ID, "login").is_displayed()
                                   or d.find_elements(By.CSS_SELECTOR, "path.edge"))
        if d.find_element(By.ID, "login").is_displayed():
            d.execute_script("location.hash = arguments[0]", "#token=" + token)
            WebDriverWait(d, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, "path.edge"))
            if "token" in d.current_url:
                raise SystemExit("the token stayed in the address bar: " + d.current_url)
        # The banner is filled in with the map's first answer.
        print(json.dumps({"coverage": d.find_element(By.ID, "coverage").text,
                          "status": d.find_element(By.ID, "status").text,
                          "edges": d.execute_script(EDGES)}))
    finally:
        d.quit()


# Where the stalls proxy serves flowtap: under a path of its own, as an
# Ingress path or `kubectl proxy` does.
PREFIX = "/flowtap"


def stalls(url, token):
    """The page served through a proxy under PREFIX that passes everything
    on until told to fail the API's requests: first with an HTML error page
    (as a proxy's 502), then by never answering (a stalled port-forward)."""
    mode = {"api": "pass"}
    held = threading.Event()

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if not self.path.startswith(PREFIX + "/"):
                self.send_error(404)
                return
            path = self.path[len(PREFIX):]
            api = path.startswith("/mcp/")
            if api and mode["api"] == "502":
                body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                self.send_response(502)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if api and mode["api"] == "hold":
                held.wait(60)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() == "authorization"}
            try:
                answer = urllib.request.urlopen(urllib.request.Request(url + path, headers=headers))
            except urllib.error.HTTPError as e:
                answer = e
            body = answer.read()
            self.send_response(answer.status)
            for k in ["Content-Type", "Content-Security-Policy"]:
                if answer.headers.get(k):
                    self.send_header(k, answer.headers[k])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    d = browser()
    out = {}
    try:
        d.get(f"http://127.0.0.1:{proxy.server_address[1]}{PREFIX}/#token={token}")
        WebDriverWait(d, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, "path.edge"))
        status = lambda d: d.find_element(By.ID, "status").text
        out["live"] = status(d)
        mode["api"] = "502"
        WebDriverWait(d, 15).until(lambda d: status(d).startswith("error"))
        out["error_page"] = status(d)
        mode["api"] = "hold"
        WebDriverWait(d, 30).until(lambda d: "no answer" in status(d))
        out["no_answer"] = status(d)
        out["edges_still_drawn"] = len(d.find_elements(By.CSS_SELECTOR, "path.edge"))
    finally:
        held.set()
        d.quit()
        proxy.shutdown()
    print(json.dumps(out))


def main():
    if sys.argv[1] == "--coverage":
        coverage(*sys.argv[2:4])
        return
    if sys.argv[1] == "--stalls":
        stalls(*sys.argv[2:4])
        return
    url, token, screenshot, edge_from, edge_to = sys.argv[1:6]
    d = browser()
    wait = WebDriverWait(d, 15)
    out = {}
    try:
        # Opened without the token: the page asks for it.
        d.get(url)
        wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
        out["asked_for_token"] = True
        # A wrong token first: the page says so, and asks again.
        d.find_element(By.ID, "token").send_keys("not-the-token")
        d.find_element(By.CSS_SELECTOR, "#login button").click()
        wait.until(lambda d: "not accepted" in d.find_element(By.ID, "login-note").text)
        out["wrong_token_note"] = d.find_element(By.ID, "login-note").text
        # While it asks, it asks the API nothing (a forgotten tab sent a
        # refused request every second).
        d.execute_script("""window.requestsWhileAsking = 0; const f = window.fetch;
            window.fetch = (...a) => { window.requestsWhileAsking++; return f(...a); };""")
        time.sleep(2.5)
        out["requests_while_asking"] = d.execute_script("return window.requestsWhileAsking")
        d.find_element(By.ID, "token").clear()
        d.find_element(By.ID, "token").send_keys(token)
        d.find_element(By.CSS_SELECTOR, "#login button").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "path.edge"))
        out["login_shown_after"] = d.find_element(By.ID, "login").is_displayed()
        out["nodes"] = d.execute_script(NODES)
        out["positions"] = d.execute_script(POSITIONS)
        out["coverage"] = d.find_element(By.ID, "coverage").text
        out["edges"] = d.execute_script(EDGES)

        # The edge asked for, clicked: its flows are listed.
        edge = next(e for e in d.find_elements(By.CSS_SELECTOR, "path.edge")
                    if (e.get_attribute("data-from"), e.get_attribute("data-to")) == (edge_from, edge_to))
        # Where a person would click: a point of the line that nothing covers.
        x, y = d.execute_script("""const e = arguments[0], m = e.getScreenCTM(), n = e.getTotalLength();
            for (let i = 1; i < 20; i++) {
              const p = e.getPointAtLength((n * i) / 20);
              const x = p.x * m.a + p.y * m.c + m.e, y = p.x * m.b + p.y * m.d + m.f;
              if (document.elementFromPoint(x, y) === e) return [x, y];
            }
            throw new Error("the edge is covered everywhere");""", edge)
        actions = ActionBuilder(d)
        actions.pointer_action.move_to_location(int(x), int(y)).click()
        actions.perform()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#flows tbody tr"))
        out["details_title"] = d.find_element(By.ID, "details-title").text
        out["details_note"] = d.find_element(By.ID, "details-note").text
        out["rows"] = [
            {k: r.get_attribute("data-" + k) for k in ["client", "server", "port", "proto"]}
            for r in d.find_elements(By.CSS_SELECTOR, "#flows tbody tr")
        ]
        d.save_screenshot(screenshot)

        # Grouped by namespace instead.
        Select(d.find_element(By.ID, "level")).select_by_value("namespace")
        wait.until(lambda d: (lambda nodes: nodes and all(
            n.startswith(("namespace:", "ip:", "external")) for n in nodes))(d.execute_script(NODES)))
        out["namespace_edges"] = d.execute_script(EDGES)

        # Services of one namespace (NS), then the node outside the cluster
        # clicked: its flows on that map, those with an end in NS (it
        # listed the node's others too).
        Select(d.find_element(By.ID, "ns")).select_by_value(NS)
        Select(d.find_element(By.ID, "level")).select_by_value("service")
        wait.until(lambda d: (lambda nodes: "external" in nodes and all(
            n.startswith(("service:", "ip:", "external")) for n in nodes))(d.execute_script(NODES)))
        node = d.find_element(By.CSS_SELECTOR, 'g.node[data-id="external"]')
        d.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", node)
        wait.until(lambda d: d.find_element(By.ID, "details-title").text == "external"
                   and d.find_elements(By.CSS_SELECTOR, "#flows tbody tr"))
        out["external_rows"] = [
            {k: r.get_attribute("data-" + k) for k in ["client", "server", "port", "proto"]}
            for r in d.find_elements(By.CSS_SELECTOR, "#flows tbody tr")
        ]
        # The first request, without the token, was refused (401): expected.
        out["console_errors"] = [e["message"] for e in d.get_log("browser")
                                 if e["level"] == "SEVERE" and "401" not in e["message"]]
    finally:
        d.quit()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
