//! Kubernetes names from a watch (`--k8s-watch`), against a stand-in for the
//! API server that speaks the real list/watch protocol
//! (`support/k8s_apiserver.py`: resourceVersions, bookmarks, `410 Gone`,
//! objects in the API's JSON). No real cluster can run here: what is
//! exercised is kube-rs against that protocol (lists in pages included),
//! not a real API server's authentication, TLS or scale.

mod common;

use std::time::{Duration, Instant};

use common::apiserver::ApiServer;
use common::server::Server;
use common::wait;
use serde_json::{Value, json};

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

/// The demo's flows named from its inventory file, as [`names`] gives them.
fn names_from_the_inventory_file() -> Vec<(String, String, String, String, String)> {
    let root = common::project_root();
    let from_file = Server::start(&[
        "-r",
        root.join("demo/demo.pcap").to_str().unwrap(),
        "--k8s-inventory",
        root.join("demo/inventory.json").to_str().unwrap(),
    ]);
    names(&from_file.get_json("/mcp/flows?format=full&limit=1000"))
}

/// Polls `check` on the served flows until it holds, for up to `within`.
fn eventually(server: &Server, within: Duration, what: &str, check: impl Fn(&Value) -> bool) {
    wait::until(within, what, || {
        let body = server.get_json("/mcp/flows?format=full&limit=1000");
        if check(&body) {
            Ok(())
        } else {
            Err(body.to_string())
        }
    })
}

/// flowtap reading the demo's capture, its names from `api`'s watch.
fn watching_the_demo(api: &ApiServer) -> Server {
    watching_the_demo_with(api, &[])
}

/// [`watching_the_demo`] with `more` options.
fn watching_the_demo_with(api: &ApiServer, more: &[&str]) -> Server {
    let demo = common::project_root().join("demo/demo.pcap");
    let args = [&["-r", demo.to_str().unwrap(), "--k8s-watch"][..], more].concat();
    Server::start_with_env(&args, &[("KUBECONFIG", api.kubeconfig.to_str().unwrap())])
}

/// Waits until the watch says it is synced and holds `pods` pods
/// (bounded: 10 s): the names can be whole before the last kind is listed.
fn synced_with_pods(server: &Server, pods: usize) {
    wait::until(Duration::from_secs(10), "synced, every pod held", || {
        let metrics = server.metrics();
        let synced = common::metrics::sample(&metrics, "flowtap_k8s_synced");
        let held = common::metrics::sample(&metrics, "flowtap_k8s_objects{kind=\"pod\"}");
        if synced == 1.0 && held == pods as f64 {
            Ok(())
        } else {
            Err(format!("synced {synced}, {held} pods"))
        }
    });
}

#[test]
fn names_follow_the_cluster_through_a_watch() {
    let api = ApiServer::start();
    let root = common::project_root();
    let demo = root.join("demo/demo.pcap");
    let demo = demo.to_str().unwrap();
    // The same names from the file and from the watch.
    let want = names_from_the_inventory_file();
    assert!(want.iter().any(|n| !n.3.is_empty()), "the demo names pods");
    let kubeconfig = api.kubeconfig.to_str().unwrap();
    let server =
        Server::start_with_env(&["-r", demo, "--k8s-watch"], &[("KUBECONFIG", kubeconfig)]);
    eventually(&server, Duration::from_secs(10), "the file's names", |b| {
        names(b) == want
    });
    // Synced once every kind is listed (nodes too, which no name needs).
    synced_with_pods(&server, 19);

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
    // Deleted, the pod still names its flows (they stay in answers until
    // their idle timeout; its name went at once before): three rebuilds
    // later, still there, while no other pod has its address.
    std::thread::sleep(Duration::from_millis(1500));
    let held = names(&server.get_json("/mcp/flows?format=full&limit=1000"));
    assert!(
        held.iter().any(|n| n.2 == server_ip && n.3 == old_pod),
        "{old_pod} forgotten: {held:?}"
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
        started.elapsed() < Duration::from_secs(4),
        "within an interval or two (1 s each), on a loaded machine"
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
    // Each kind's watcher lists again on its own; the pods' came first above.
    wait::until(
        Duration::from_secs(10),
        "four first lists and four after the 410",
        || {
            let relists = common::metrics::sample(&server.metrics(), "flowtap_k8s_relists_total");
            if relists >= 8.0 {
                Ok(())
            } else {
                Err(format!("{relists} lists"))
            }
        },
    );
}

/// Pods beside the demo's: more than kube-rs asks for in one list page.
const BULK: usize = 1500;

/// [`BULK`] pods, in a namespace that sorts before the demo's: the demo's
/// pods, which name its flows, come on the last page of a list.
fn bulk_pods() -> Vec<Value> {
    (0..BULK)
        .map(|i| {
            // Addresses the demo does not use: its names stay its own.
            let ip = format!("2001:db8:ffff::{:x}", i + 1);
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": format!("bulk-{i:04}"), "namespace": "aaa-bulk"},
                "spec": {"nodeName": "node-a"},
                "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
            })
        })
        .collect()
}

/// A cluster with more pods than kube-rs asks for in one list page (500):
/// the pods are listed in pages through `continue` tokens, as a real API
/// server serves a large cluster. The first try's list outlives the
/// server's history after its first page (its continue token expires: 410),
/// and the watcher lists again from the start: every pod is held once, and
/// the pods on the last page name the flows.
#[test]
fn a_cluster_larger_than_a_list_page_is_listed_whole() {
    let api = ApiServer::start_with(&bulk_pods());
    api.post("/_control/expire-after-page", &json!({}));
    let demo = common::project_root().join("demo/demo.pcap");
    let demo = demo.to_str().unwrap();
    let want = names_from_the_inventory_file();
    let server = Server::start_with_env(
        &["-r", demo, "--k8s-watch"],
        &[("KUBECONFIG", api.kubeconfig.to_str().unwrap())],
    );
    eventually(
        &server,
        Duration::from_secs(20),
        "the names of the last page",
        |b| names(b) == want,
    );
    let stats = api.stats();
    eprintln!("API requests {stats}");
    // Every pod of every page, each once.
    synced_with_pods(&server, 19 + BULK);
    assert!(
        common::metrics::sample(&server.metrics(), "flowtap_k8s_watch_errors_total") >= 1.0,
        "the expired list counted as an error"
    );
    assert_eq!(stats["list_gone"]["pods"], 1, "one continue token expired");
    // The first try: a page, then the expired token; the second: four pages
    // of 500 for 1519 pods.
    assert!(
        stats["list"]["pods"].as_u64().unwrap() >= 6,
        "lists of pods: {stats}"
    );
}

/// `--k8s-max-objects` bounds what a first list brings, as it bounds what
/// the watch adds later: the objects beyond it are left out and counted.
#[test]
fn the_objects_bound_holds_for_the_first_list() {
    let api = ApiServer::start_with(&bulk_pods());
    let server = watching_the_demo_with(&api, &["--k8s-max-objects", "1000"]);
    let offered = 43 + BULK; // the demo's 19 pods, 10 services, 11 slices, 3 nodes
    let metrics = wait::until(Duration::from_secs(20), "the first lists", || {
        let metrics = server.metrics();
        if common::metrics::sample(&metrics, "flowtap_k8s_synced") == 1.0 {
            Ok(metrics)
        } else {
            Err(String::from("not synced"))
        }
    });
    let held: f64 = ["pod", "service", "endpointslice", "node"]
        .iter()
        .map(|kind| {
            common::metrics::sample(&metrics, &format!("flowtap_k8s_objects{{kind=\"{kind}\"}}"))
        })
        .sum();
    let dropped = common::metrics::sample(&metrics, "flowtap_k8s_objects_dropped_total");
    assert_eq!(
        held, 1000.0,
        "held of {offered} offered ({dropped} dropped)"
    );
    assert!(dropped >= (offered - 1000) as f64, "{dropped} dropped");
    // Names are incomplete while objects are left out: an answer that named
    // no pod for an address must not read as the cluster's whole truth
    // (names_known was true: the watch had listed every kind).
    assert_eq!(
        common::metrics::sample(&metrics, "flowtap_k8s_objects_left_out"),
        1.0
    );
    wait::until_holds(Duration::from_secs(10), "names said incomplete", || {
        server.get_json("/mcp/workloads")["names_known"] == false
    });

    // Pods held are deleted: those left out are named once there is room
    // (the watch sends an object only when it changes, so the kind is
    // listed again; they stayed unnamed before).
    let relists = common::metrics::sample(&metrics, "flowtap_k8s_relists_total");
    for i in 0..200 {
        let name = format!("bulk-{i:04}");
        api.post(
            "/_control/delete",
            &json!({"kind": "Pod", "metadata": {"namespace": "aaa-bulk", "name": name}}),
        );
    }
    let pods = || common::metrics::sample(&server.metrics(), "flowtap_k8s_objects{kind=\"pod\"}");
    let total = || -> f64 {
        let metrics = server.metrics();
        ["pod", "service", "endpointslice", "node"]
            .iter()
            .map(|kind| {
                common::metrics::sample(
                    &metrics,
                    &format!("flowtap_k8s_objects{{kind=\"{kind}\"}}"),
                )
            })
            .sum()
    };
    // Listed again once a tenth of the bound was free (deletes after that
    // list take room again): without it, 800 held.
    wait::until(Duration::from_secs(20), "the room filled again", || {
        let (total, pods) = (total(), pods());
        if total > 850.0 {
            Ok(())
        } else {
            Err(format!("{total} held, {pods} pods"))
        }
    });
    assert!(
        common::metrics::sample(&server.metrics(), "flowtap_k8s_relists_total") > relists,
        "listed again"
    );
}

/// `flowtap_k8s_synced` once every kind was listed.
fn wait_synced(server: &Server) {
    wait::until_holds(Duration::from_secs(20), "the first lists", || {
        common::metrics::sample(&server.metrics(), "flowtap_k8s_synced") == 1.0
    });
}

/// A list the API server (or a proxy before it) never answers is given up
/// after `--k8s-request-timeout` and tried again. Before, kube-rs waited for
/// it for good: that kind's names stopped changing (a node added later was
/// never named, and a hub never pulled its agent), with nothing said.
/// Then that node's heartbeats, which change nothing flowtap keeps, rebuild
/// no mapping (each did, with a line in the log).
#[test]
fn a_list_never_answered_is_given_up_and_tried_again() {
    let api = ApiServer::start();
    let server = watching_the_demo_with(&api, &["--k8s-request-timeout", "2"]);
    wait_synced(&server);
    api.post(
        "/_control/fail-lists",
        &json!({"collection": "nodes", "answer": "hang", "times": 1}),
    );
    // Every watch ends and every kind lists again: the nodes' list hangs.
    api.post("/_control/expire?drop-watches", &json!({}));
    api.post(
        "/_control/apply",
        &json!({"kind": "Node", "metadata": {"name": "node-new"},
                "status": {"addresses": [{"type": "InternalIP", "address": "198.19.9.9"}]}}),
    );
    wait::until_holds(Duration::from_secs(30), "the new node held", || {
        common::metrics::sample(&server.metrics(), "flowtap_k8s_objects{kind=\"node\"}") == 4.0
    });
    let stats = api.stats();
    assert!(
        stats["list"]["nodes"].as_u64().unwrap() >= 3,
        "the first list, the one never answered, and the next: {stats}"
    );

    // Updates to fields flowtap does not keep (a node's heartbeat in its
    // conditions) change no names; a new address does.
    let reloads = || {
        // Applied from the next snapshot or request: asked once first.
        server.get("/mcp/flows/summary");
        common::metrics::sample(&server.metrics(), "flowtap_inventory_reloads_total")
    };
    let node = |address: &str, beat: u32| {
        json!({"kind": "Node", "metadata": {"name": "node-new"},
               "status": {"addresses": [{"type": "InternalIP", "address": address}],
                          "conditions": [{"type": "Ready", "status": "True",
                                          "lastHeartbeatTime": format!("2026-12-06T00:00:{beat:02}Z")}]}})
    };
    api.post("/_control/apply", &node("198.19.9.9", 0));
    std::thread::sleep(Duration::from_secs(2));
    let before = reloads();
    for beat in 1..=5 {
        api.post("/_control/apply", &node("198.19.9.9", beat));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(reloads(), before, "heartbeats changed the names");
    api.post("/_control/apply", &node("198.19.9.10", 6));
    wait::until_holds(Duration::from_secs(10), "the new address taken in", || {
        reloads() > before
    });
}

/// A list whose answer never ends (a pod's name that never closes, from a
/// server or a proxy before it) is cut off at `--k8s-max-answer-bytes`,
/// counted, and listed again. Before, kube read it whole: the process
/// grew by what came (about 3 GiB in 12 s from a Python server) until
/// killed.
#[test]
fn an_answer_without_end_is_cut_off_at_its_bound() {
    let api = ApiServer::start();
    api.post(
        "/_control/fail-lists",
        &json!({"collection": "pods", "answer": "endless", "times": 1}),
    );
    let server = watching_the_demo_with(&api, &["--k8s-max-answer-bytes", "1Mi"]);
    wait_synced(&server);
    let metrics = server.metrics();
    assert_eq!(
        common::metrics::sample(&metrics, "flowtap_k8s_answers_too_large_total"),
        1.0
    );
    assert!(common::metrics::sample(&metrics, "flowtap_k8s_watch_errors_total") >= 1.0);
    // The pods listed again whole, the endless answer given up: sent up to
    // what the sockets' buffers took beyond the bound, no more.
    let expected = names_from_the_inventory_file();
    eventually(
        &server,
        Duration::from_secs(10),
        "the demo's names",
        |body| names(body) == expected,
    );
    let sent = api.stats()["endless_bytes"].as_u64().unwrap();
    assert!(
        (1 << 20..32 << 20).contains(&sent),
        "{sent} bytes of the endless answer sent"
    );
}

/// A list that keeps failing (403: the ClusterRole is missing) is tried
/// again less and less often, 0.8 s doubling to 30 s, as client-go's
/// reflector does. Before, kube's backoff started over at the event its
/// watcher sends before every list: every second, for as long as it
/// failed, from every agent that watched.
#[test]
fn a_list_that_keeps_failing_is_tried_less_and_less_often() {
    let api = ApiServer::start();
    api.post(
        "/_control/fail-lists",
        &json!({"collection": "pods", "answer": 403, "times": 1000}),
    );
    let started = Instant::now();
    let server = watching_the_demo(&api);
    std::thread::sleep(Duration::from_secs(9).saturating_sub(started.elapsed()));
    let lists = api.stats()["list"]["pods"].as_u64().unwrap();
    // Tried at about 0, 0.9, 2.7 and 6.3 s (up to a quarter later each);
    // every second before (8 or 9).
    assert!((3..=5).contains(&lists), "{lists} lists of pods in 9 s");
    let metrics = server.metrics();
    assert_eq!(common::metrics::sample(&metrics, "flowtap_k8s_synced"), 0.0);
    assert_eq!(
        common::metrics::sample(&metrics, "flowtap_k8s_relists_total"),
        3.0,
        "the kinds that were listed, not the tries"
    );
    // The answers say so: with no pod known, every pod is not idle but
    // unknown (names_known was true, so an agent read "no traffic").
    let workloads = server.get_json("/mcp/workloads");
    assert_eq!(workloads["names_known"], false, "{workloads}");
}

/// Answers wait for the watch's first lists (10 s at most): a `--dump`, and
/// the per-pair counters' first sight of each flow, made before them named
/// nobody, and the counters credited each pair's history to `unknown` for
/// good. Here the pods' first two lists fail (500, retried after 0.8 and
/// 1.6 s): the dump and the pair counters are the inventory file's.
#[test]
fn answers_wait_for_the_watch_s_first_lists() {
    let root = common::project_root();
    let demo = root.join("demo/demo.pcap");
    let demo = demo.to_str().unwrap();
    let fail_pods = json!({"collection": "pods", "answer": 500, "times": 2});
    let api = ApiServer::start();
    api.post("/_control/fail-lists", &fail_pods);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .args(["-r", demo, "--k8s-watch"])
        .args(["--dump", "/mcp/flows?format=full&limit=1000"])
        .env("KUBECONFIG", &api.kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dumped: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(names(&dumped), names_from_the_inventory_file());
    assert!(
        api.stats()["list"]["pods"].as_u64().unwrap() >= 3,
        "{}",
        api.stats()
    );

    let pairs = |server: &Server| {
        let mut lines: Vec<String> = server
            .metrics()
            .lines()
            .filter(|l| l.starts_with("flowtap_pair_bytes_total{"))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let from_file = Server::start(&[
        "-r",
        demo,
        "--k8s-inventory",
        root.join("demo/inventory.json").to_str().unwrap(),
    ]);
    let api = ApiServer::start();
    api.post("/_control/fail-lists", &fail_pods);
    let watching = Server::start_with_env(
        &["-r", demo, "--k8s-watch"],
        &[("KUBECONFIG", api.kubeconfig.to_str().unwrap())],
    );
    let want = pairs(&from_file);
    assert!(
        want.len() > 20
            && want
                .iter()
                .any(|l| l.contains("client_workload=\"checkout\""))
    );
    assert_eq!(pairs(&watching), want);
}

/// A watch that keeps failing leaves the names as last listed: pods made
/// since unnamed, pods deleted since listed as idle, while answers said
/// names were known. After a minute of failing they say not (and
/// `flowtap_k8s_names_stale` is 1); once a list gets through again, known.
#[test]
fn names_are_said_stale_while_a_watch_keeps_failing_and_known_once_it_recovers() {
    let api = ApiServer::start();
    let server = watching_the_demo(&api);
    let names_known = || server.get_json("/mcp/workloads")["names_known"].clone();
    let stale = || common::metrics::sample(&server.metrics(), "flowtap_k8s_names_stale");
    assert_eq!(names_known(), true);
    assert_eq!(stale(), 0.0);
    // Every watch ends and must list again (410); the pods' lists fail.
    let fail_pods = |times: u32| json!({"collection": "pods", "answer": 500, "times": times});
    api.post("/_control/fail-lists", &fail_pods(1000));
    let failing_from = Instant::now();
    api.post("/_control/expire?drop-watches", &json!({}));
    wait::until_holds(Duration::from_secs(90), "names said stale", || {
        names_known() == false
    });
    assert!(
        failing_from.elapsed() >= Duration::from_secs(60),
        "said stale after {:?}",
        failing_from.elapsed()
    );
    assert_eq!(stale(), 1.0);
    // The names held were kept meanwhile.
    let flows = server.get_json("/mcp/flows?format=full&limit=1000");
    assert_eq!(names(&flows), names_from_the_inventory_file());
    api.post("/_control/fail-lists", &fail_pods(0));
    // The next try, within the longest wait between tries (30 s and a
    // quarter more), gets through.
    wait::until_holds(Duration::from_secs(45), "names known again", || {
        names_known() == true
    });
    assert_eq!(stale(), 0.0);
}

/// A pod of the demo's inventory (namespace shop).
const DELETED_POD: &str = "orders-worker-0";

/// Waits until `collection` has a watch open again on the stand-in
/// (bounded: 30 s).
fn watch_open(api: &ApiServer, collection: &str) {
    wait::until(Duration::from_secs(30), "the watch open again", || {
        let open = api.stats()["open_watches"][collection]
            .as_u64()
            .unwrap_or(0);
        if open >= 1 {
            Ok(())
        } else {
            Err(format!("{open} open"))
        }
    });
}

/// A watch answered 503 (an API server overloaded or restarting, a proxy)
/// is counted at once, and a run of failures ends when the watch opens
/// again, however quiet its kind. Before, kube retried a 503 on its own for
/// minutes, nothing counted or said stale; and once it reopened, a kind
/// with no event (services, nodes: often quiet for minutes) was said stale
/// a minute after its first failure and for minutes after.
#[test]
fn a_watch_that_opens_again_ends_its_failures_however_quiet_its_kind() {
    let api = ApiServer::start();
    let server = watching_the_demo(&api);
    synced_with_pods(&server, 19);
    let sample = |name: &str| common::metrics::sample(&server.metrics(), name);
    let fail_services =
        |times: u32| json!({"collection": "services", "answer": 503, "times": times});
    api.post("/_control/fail-watches", &fail_services(1000));
    let failing_from = Instant::now();
    api.post("/_control/drop-watches", &json!({}));
    wait::until_holds(Duration::from_secs(10), "the failures counted", || {
        sample("flowtap_k8s_watch_errors_total") >= 2.0
    });
    api.post("/_control/fail-watches", &fail_services(0));
    watch_open(&api, "services");
    // Past the minute after which a run of failures says names stale.
    std::thread::sleep(Duration::from_secs(65).saturating_sub(failing_from.elapsed()));
    assert_eq!(sample("flowtap_k8s_names_stale"), 0.0);
    assert_eq!(server.get_json("/mcp/workloads")["names_known"], true);
}

/// A watch from a version the server no longer has, refused as the watch
/// request's status (HTTP 410, as some proxies and aggregated API servers
/// answer) rather than in the stream, lists again. Before, kube's watcher
/// asked again at the same version forever: every change since unseen.
#[test]
fn a_watch_refused_as_gone_lists_again() {
    let api = ApiServer::start();
    let server = watching_the_demo(&api);
    synced_with_pods(&server, 19);
    let sample = |name: &str| common::metrics::sample(&server.metrics(), name);
    let relists = sample("flowtap_k8s_relists_total");
    api.post("/_control/expired-watches-as-status", &json!({"on": true}));
    // Every watch ends and resumes from its version, now expired.
    api.post("/_control/expire?drop-watches", &json!({}));
    wait::until_holds(Duration::from_secs(30), "every kind listed again", || {
        sample("flowtap_k8s_relists_total") >= relists + 4.0
    });
    for collection in ["pods", "services", "endpointslices", "nodes"] {
        watch_open(&api, collection);
    }
    // Watching again: a pod deleted now goes from the objects held.
    api.post(
        "/_control/delete",
        &json!({"kind": "Pod", "metadata": {"namespace": "shop", "name": DELETED_POD}}),
    );
    wait::until_holds(Duration::from_secs(10), "the pod deleted seen", || {
        sample("flowtap_k8s_objects{kind=\"pod\"}") == 18.0
    });
}
