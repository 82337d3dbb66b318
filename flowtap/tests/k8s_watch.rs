//! Kubernetes names from a watch (`--k8s-watch`), against a stand-in for the
//! API server that speaks the real list/watch protocol
//! (`support/k8s_apiserver.py`: resourceVersions, bookmarks, `410 Gone`,
//! objects in the API's JSON). No real cluster can run here: what is
//! exercised is kube-rs against that protocol, not a real API server's
//! authentication, TLS or scale.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::Server;
use serde_json::{Value, json};

/// The stand-in API server, seeded with the demo's inventory.
struct ApiServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
}

impl ApiServer {
    fn start() -> ApiServer {
        let dir = tempfile::tempdir().unwrap();
        let inventory: Value = serde_json::from_str(
            &std::fs::read_to_string(common::project_root().join("demo/inventory.json")).unwrap(),
        )
        .unwrap();
        let seed = dir.path().join("seed.json");
        std::fs::write(&seed, inventory["items"].to_string()).unwrap();
        let script = common::project_root().join("flowtap/tests/support/k8s_apiserver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", "0", "--quiet", "--bookmark-interval", "1"])
            .arg("--seed")
            .arg(&seed)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the API server stand-in");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: http://127.0.0.1:{port}\n\
                 users:\n- name: test\n  user: {{}}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: test\n\
                 current-context: standin\n"
            ),
        )
        .unwrap();
        ApiServer {
            child,
            port,
            _dir: dir,
            kubeconfig,
        }
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let body = body.to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"),
            "{reply}"
        );
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or("{}");
        serde_json::from_str(body).unwrap_or(Value::Null)
    }

    fn stats(&self) -> Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "GET /_control/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The flows of a `format=full` listing, as (client ip, client pod, server
/// ip, server pod, server svc), sorted.
fn names(body: &Value) -> Vec<(String, String, String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let mut out: Vec<_> = body["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                s(&f["client"]["ip"]),
                s(&f["client"]["pod"]),
                s(&f["server"]["ip"]),
                s(&f["server"]["pod"]),
                s(&f["server"]["svc"]),
            )
        })
        .collect();
    out.sort();
    out
}

/// Polls `check` on the served flows until it holds, for up to `within`.
fn eventually(server: &Server, within: Duration, what: &str, check: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let body = server.get_json("/mcp/flows?format=full&limit=1000");
        if check(&body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen within {within:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn names_follow_the_cluster_through_a_watch() {
    let api = ApiServer::start();
    let root = common::project_root();
    let demo = root.join("demo/demo.pcap");
    let demo = demo.to_str().unwrap();
    // The same names from the file and from the watch.
    let from_file = Server::start(&[
        "-r",
        demo,
        "--k8s-inventory",
        root.join("demo/inventory.json").to_str().unwrap(),
    ]);
    let want = names(&from_file.get_json("/mcp/flows?format=full&limit=1000"));
    assert!(want.iter().any(|n| !n.3.is_empty()), "the demo names pods");
    let kubeconfig = api.kubeconfig.to_str().unwrap();
    let server =
        Server::start_with_env(&["-r", demo, "--k8s-watch"], &[("KUBECONFIG", kubeconfig)]);
    eventually(&server, Duration::from_secs(10), "the file's names", |b| {
        names(b) == want
    });
    let metrics = server.metrics();
    assert_eq!(common::metrics::sample(&metrics, "flowtap_k8s_synced"), 1.0);
    assert_eq!(
        common::metrics::sample(&metrics, "flowtap_k8s_objects{kind=\"pod\"}"),
        17.0
    );

    // Pod churn: the pod behind a server address is replaced by another
    // with the same address. One snapshot interval later, the new name.
    let (server_ip, old_pod) = want
        .iter()
        .find(|n| !n.3.is_empty())
        .map(|n| (n.2.clone(), n.3.clone()))
        .unwrap();
    let inventory: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("demo/inventory.json")).unwrap())
            .unwrap();
    let mut pod = inventory["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "Pod" && i["metadata"]["name"] == old_pod.as_str())
        .unwrap()
        .clone();
    api.post(
        "/_control/delete",
        &json!({"kind": "Pod", "metadata": pod["metadata"].clone()}),
    );
    pod["metadata"]["name"] = json!("replacement-7f9c4");
    api.post("/_control/apply", &pod);
    let started = Instant::now();
    eventually(
        &server,
        Duration::from_secs(5),
        "the replacement pod",
        |b| {
            names(b)
                .iter()
                .any(|n| n.2 == server_ip && n.3 == "replacement-7f9c4")
        },
    );
    eprintln!("pod churn reflected in {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "within an interval or two"
    );

    // The API server forgets its history and drops every watch: the
    // watchers get 410 Gone, list again, and the names carry on.
    let lists_before = api.stats();
    api.post("/_control/expire?drop-watches", &json!({}));
    pod["metadata"]["name"] = json!("after-the-relist-2b8d1");
    api.post("/_control/apply", &pod);
    eventually(
        &server,
        Duration::from_secs(10),
        "a change after 410 Gone",
        |b| {
            names(b)
                .iter()
                .any(|n| n.2 == server_ip && n.3 == "after-the-relist-2b8d1")
        },
    );
    let lists_after = api.stats();
    eprintln!("API requests before {lists_before} after {lists_after}");
    let relists = common::metrics::sample(&server.metrics(), "flowtap_k8s_relists_total");
    assert!(
        relists >= 8.0,
        "four first lists and four after the 410: {relists}"
    );
}
