//! The service map at `GET /`, used as a person would in headless Chromium
//! (Debian's chromium and chromedriver through Selenium:
//! `tests/support/service_map.py`), and checked against the API it reads:
//! every edge with its bytes and latency colour, the flows listed for the
//! edge clicked, and the map regrouped by namespace.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::server::{Server, serve_demo};
use common::{project_root, venv_python};
use serde_json::Value;

const TOKEN: &str = "service-map-token";
/// The edge the test clicks: the demo's slow path.
const SLOW_FROM: &str = "service:shop/checkout";
const SLOW_TO: &str = "service:data/postgres";

/// An endpoint's group, as the page documents it: the name at the level;
/// else an address inside the cluster on its own, those outside it as one
/// group, and without cluster ranges every address without a name as one.
fn group(ep: &Value, level: &str) -> String {
    let name = match level {
        "namespace" => &ep["ns"],
        "service" => &ep["svc"],
        _ => &ep["pod"],
    };
    if let Some(name) = name.as_str() {
        return match level {
            "namespace" => format!("namespace:{name}"),
            _ => format!("{level}:{}/{name}", ep["ns"].as_str().unwrap_or_default()),
        };
    }
    match ep["external"].as_bool() {
        Some(true) => "external".into(),
        Some(false) => format!("ip:{}", ep["ip"].as_str().unwrap()),
        None => "unnamed".into(),
    }
}

/// Kubeshark's interpretation guide for handshake times.
fn latency(p99_us: Option<u64>) -> &'static str {
    match p99_us {
        None => "none",
        Some(us) if us < 1_000 => "excellent",
        Some(us) if us < 10_000 => "good",
        Some(us) if us < 100_000 => "elevated",
        Some(_) => "high",
    }
}

/// (client group, server group) -> (bytes, latency class, whether a quarter
/// or more of the connections, two at least, were not made: refused or
/// unanswered).
type Edges = BTreeMap<(String, String), (u64, String, bool)>;

/// The edges the map should draw for an aggregated answer: bytes summed,
/// coloured by the worse leg's p99 of the worst group, broken where
/// connections are not made one time in four (twice at least).
fn expected_edges(answer: &Value, level: &str) -> Edges {
    #[derive(Default)]
    struct Sum {
        bytes: u64,
        p99: Option<u64>,
        not_made: u64,
        tried: u64,
    }
    let mut edges: BTreeMap<(String, String), Sum> = BTreeMap::new();
    for row in answer["flows"].as_array().unwrap() {
        let key = (group(&row["client"], level), group(&row["server"], level));
        let e = edges.entry(key).or_default();
        e.bytes += row["totals"]["bytes"].as_u64().unwrap();
        let p99 = ["client_stats", "server_stats"]
            .iter()
            .filter_map(|s| row[s]["tcp_handshake_p99_us"].as_u64())
            .max();
        e.p99 = e.p99.max(p99);
        let c = |k: &str| row["tcp_connections"][k].as_u64().unwrap_or(0);
        e.not_made += c("refused") + c("unanswered");
        e.tried += c("established") + c("refused") + c("unanswered");
    }
    edges
        .into_iter()
        .map(|(k, e)| {
            let failing = e.not_made >= 2 && e.not_made * 4 >= e.tried;
            (k, (e.bytes, latency(e.p99).to_owned(), failing))
        })
        .collect()
}

fn drawn_edges(page: &Value) -> Edges {
    page.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (
                    e["from"].as_str().unwrap().to_owned(),
                    e["to"].as_str().unwrap().to_owned(),
                ),
                (
                    e["bytes"].as_u64().unwrap(),
                    e["latency"].as_str().unwrap().to_owned(),
                    e["failing"].as_bool().unwrap(),
                ),
            )
        })
        .collect()
}

/// A flow as the page's rows and the API's answers both give it.
fn flow_id(client: &str, server: &str, port: &str, proto: &str) -> String {
    format!("{proto} {client} -> {server}:{port}")
}

/// The flows of an answer (`format=full`) that `keep` keeps.
fn flows_where(answer: &Value, keep: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    answer["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| keep(f))
        .map(|f| {
            flow_id(
                f["client"]["ip"].as_str().unwrap(),
                f["server"]["ip"].as_str().unwrap(),
                &f["server"]["port"].to_string(),
                f["proto"].as_str().unwrap(),
            )
        })
        .collect()
}

/// The flows the page listed, from its rows' data attributes.
fn rows_listed(rows: &Value) -> BTreeSet<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            flow_id(&s("client"), &s("server"), &s("port"), &s("proto"))
        })
        .collect()
}

/// What `tests/support/service_map.py ARGS` saw of the page `server`
/// serves (its stderr in the message if the driver fails).
fn drive_page(args: &[&std::ffi::OsStr], server: &Server) -> Value {
    let out = Command::new(venv_python(".venv"))
        .arg(project_root().join("flowtap/tests/support/service_map.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "service_map.py: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.stderr.lock().unwrap()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_map_draws_the_apis_groups_and_lists_an_edges_flows() {
    // The demo cluster's ranges: its users and the internet are outside.
    let (server, _dir) = serve_demo(
        TOKEN,
        &["--cluster-cidr", "198.18.0.0/17,198.19.0.0/16,10.0.0.0/24"],
    );

    // The page holds no data and needs no token; its policy keeps it to
    // flowtap. The data it reads still needs the token.
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(String::from_utf8_lossy(&page.body).contains("service map"));
    assert_eq!(server.get("/mcp/flows?aggregate=service").status, 401);

    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let aggregated = |level: &str| {
        server.get_json_with(
            &format!("/mcp/flows?aggregate={level}&format=full&sort=bytes&limit=300"),
            &auth,
        )
    };
    let by_service = expected_edges(&aggregated("service"), "service");
    let by_namespace = expected_edges(&aggregated("namespace"), "namespace");
    let all = server.get_json_with("/mcp/flows?format=full&limit=100000", &auth);

    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("service-map.png");
    let seen = drive_page(
        &[
            format!("http://{}/", server.addr).as_ref(),
            TOKEN.as_ref(),
            screenshot.as_os_str(),
            SLOW_FROM.as_ref(),
            SLOW_TO.as_ref(),
        ],
        &server,
    );

    assert_eq!(seen["asked_for_token"], true);
    assert_eq!(seen["wrong_token_note"], "That token was not accepted.");
    assert_eq!(seen["requests_while_asking"], 0, "polled while asking");
    assert_eq!(seen["login_shown_after"], false);
    // One flowtap that read its whole file: nothing was not seen.
    assert_eq!(seen["coverage"], "");
    // The layout keeps the nodes off the frame (where it used to pile them)
    // and apart from each other.
    let positions: Vec<(String, f64, f64)> =
        serde_json::from_value(seen["positions"].clone()).unwrap();
    for (id, x, y) in &positions {
        assert!(
            (61.0..939.0).contains(x) && (31.0..669.0).contains(y),
            "{id} at ({x:.0}, {y:.0}), on the frame: {positions:?}"
        );
    }
    let closest = positions
        .iter()
        .enumerate()
        .flat_map(|(i, a)| {
            positions[i + 1..]
                .iter()
                .map(move |b| (a.1 - b.1).hypot(a.2 - b.2))
        })
        .fold(f64::INFINITY, f64::min);
    assert!(
        closest >= 20.0,
        "nodes {closest:.1} px apart: {positions:?}"
    );
    assert!(
        by_service.len() > 10,
        "a map worth the name: {by_service:?}"
    );
    assert_eq!(drawn_edges(&seen["edges"]), by_service);
    let nodes: BTreeSet<String> = by_service
        .keys()
        .flat_map(|(c, s)| [c.clone(), s.clone()])
        .collect();
    let drawn: BTreeSet<String> = serde_json::from_value(seen["nodes"].clone()).unwrap();
    assert_eq!(drawn, nodes);
    // The demo's story (demo/traffic.toml): every service of the shop is
    // on the map; the zone-b checkout pod's database handshakes (12-45 ms)
    // make checkout -> postgres an elevated edge, while the frontend's
    // calls to the gateway stay within a few milliseconds (the worse leg
    // includes the client's ACK).
    for service in [
        "shop/frontend",
        "shop/api-gateway",
        "shop/checkout",
        "data/postgres",
        "data/redis",
        "kube-system/kube-dns",
        "monitoring/prometheus-k8s",
    ] {
        assert!(
            drawn.contains(&format!("service:{service}")),
            "{service}: {drawn:?}"
        );
    }
    let colour = |from: &str, to: &str| {
        by_service[&(format!("service:{from}"), format!("service:{to}"))]
            .1
            .clone()
    };
    assert_eq!(colour("shop/checkout", "data/postgres"), "elevated");
    // The deleted recommendations pod's address, inside the cluster, is a
    // node of its own; the internet is one.
    assert!(
        drawn.contains("ip:198.19.0.5") && drawn.contains("external"),
        "{drawn:?}"
    );
    let gone = &by_service[&(
        "service:shop/frontend".to_owned(),
        "ip:198.19.0.5".to_owned(),
    )];
    assert!(gone.2, "the deleted pod's connections fail: {gone:?}");
    let failing: Vec<_> = by_service
        .iter()
        .filter(|(_, e)| e.2)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(failing.len(), 1, "one failing service: {failing:?}");
    let gateway = colour("shop/frontend", "shop/api-gateway");
    assert!(
        ["excellent", "good"].contains(&gateway.as_str()),
        "{gateway}"
    );

    // The slow edge, clicked: exactly the flows between its two groups.
    let clicked = (SLOW_FROM, SLOW_TO);
    assert_eq!(seen["details_title"], "shop/checkout → data/postgres");
    // As many as the edge's groups hold, all listed.
    let listed = seen["rows"].as_array().unwrap().len();
    assert_eq!(
        seen["details_note"],
        format!("{listed} flow{}", if listed == 1 { "" } else { "s" })
    );
    let want = flows_where(&all, |f| {
        group(&f["client"], "service") == clicked.0 && group(&f["server"], "service") == clicked.1
    });
    assert!(want.len() > 1, "{want:?}");
    assert_eq!(rows_listed(&seen["rows"]), want);

    // The node outside the cluster, clicked on the map of namespace data:
    // its flows with an end in data.
    let want = flows_where(&all, |f| {
        (f["client"]["ns"] == "data" || f["server"]["ns"] == "data")
            && (group(&f["client"], "service") == "external"
                || group(&f["server"], "service") == "external")
    });
    assert!(!want.is_empty(), "data talks outside the cluster");
    assert_eq!(rows_listed(&seen["external_rows"]), want);

    assert_eq!(drawn_edges(&seen["namespace_edges"]), by_namespace);
    assert_eq!(seen["console_errors"], serde_json::json!([]));
    eprintln!("screenshot: {}", screenshot.display());
    assert_eq!(server.terminate(), 0);
}

/// A hub with an agent that does not answer: the map says its traffic is
/// not on it, rather than drawing less traffic as if that were all.
#[test]
fn the_map_says_which_agents_it_does_not_show() {
    let (agent, dir) = serve_demo(TOKEN, &[]);
    let token_file = dir.path().join("token");
    let gone = format!("http://127.0.0.1:{}", common::free_port());
    let agents = format!("http://{},{gone}", agent.addr);
    let hub = Server::start_serving(&[
        "hub",
        "--agent",
        &agents,
        "--agent-token-file",
        token_file.to_str().unwrap(),
        "--snapshot-interval",
        "0.5",
    ]);
    common::wait::until_holds(
        std::time::Duration::from_secs(30),
        "one agent merged",
        || hub.get_json("/mcp/flows/summary")["coverage"]["agents_answered"] == 1,
    );
    let seen = drive_page(
        &[
            "--coverage".as_ref(),
            format!("http://{}/", hub.addr).as_ref(),
            TOKEN.as_ref(),
        ],
        &hub,
    );
    assert_eq!(
        seen["coverage"],
        format!(
            "NOT SEEN: 1 of 2 agents answered; missing {gone}: their traffic is not on this map"
        )
    );
}

/// An API that fails behind a proxy: its HTML error page is said by its
/// status (it was "Unexpected token '<'"), and one that never answers (a
/// stalled port-forward) is said after 10 s, where the page kept showing
/// its last map as if live. The proxy serves flowtap under a path of its
/// own (an Ingress path): the page asks for the API under it (it asked at
/// the host's root, and said "HTTP 404 Not Found").
#[test]
fn the_map_says_when_the_api_fails_or_stops_answering() {
    let (server, _dir) = serve_demo(TOKEN, &[]);
    let seen = drive_page(
        &[
            "--stalls".as_ref(),
            format!("http://{}", server.addr).as_ref(),
            TOKEN.as_ref(),
        ],
        &server,
    );
    assert!(
        seen["live"].as_str().unwrap().contains(" groups · "),
        "{seen}"
    );
    assert_eq!(seen["error_page"], "error: HTTP 502 Bad Gateway", "{seen}");
    assert_eq!(seen["no_answer"], "error: no answer within 10 s", "{seen}");
    // The last map stays, under the error.
    assert!(seen["edges_still_drawn"].as_u64().unwrap() > 0, "{seen}");
}

/// A service that is down moves few bytes: among more groups than the map
/// draws by bytes (300), its broken edge is drawn all the same, where it
/// fell off the map and the map looked healthy.
#[test]
fn a_service_that_is_down_stays_on_a_crowded_map() {
    let dir = tempfile::tempdir().unwrap();
    let clients: Vec<std::net::IpAddr> = (1..=20)
        .map(|i| std::net::IpAddr::from([10, 1, 0, i]))
        .collect();
    let route = |server: [u8; 4], weight: u32, failing: bool| capgen::workload::Route {
        clients: clients.clone(),
        server: server.into(),
        port: 443,
        proto: "tcp".into(),
        weight,
        rtt_us: [100, 900],
        failing,
    };
    let down = [10, 3, 0, 1];
    let mut routes: Vec<capgen::workload::Route> = (0..320u32)
        .map(|i| route([10, 2, (i / 200) as u8, (i % 200 + 1) as u8], 10, false))
        .collect();
    // One client, so that its edge holds every failed connection (an edge
    // is drawn broken from two not made).
    routes.push(capgen::workload::Route {
        clients: vec![std::net::IpAddr::from([10, 1, 0, 99])],
        ..route(down, 8, true)
    });
    let capture = dir.path().join("crowded.pcap");
    capgen::Generator::new(capgen::Spec {
        packets: 80_000,
        concurrent: 200,
        anomalies: false,
        seed: 8,
        routes,
        ..capgen::Spec::default()
    })
    .write(std::fs::File::create(&capture).unwrap())
    .unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let server = Server::start(&[
        "-r",
        capture.to_str().unwrap(),
        "--cluster-cidr",
        "10.0.0.0/8",
        "--auth-token-file",
        token.to_str().unwrap(),
    ]);
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let down_ip = std::net::IpAddr::from(down).to_string();
    let busiest = server.get_json_with(
        "/mcp/flows?aggregate=service&format=full&sort=bytes&limit=300",
        &auth,
    );
    assert!(
        busiest["total"].as_u64().unwrap() > 300,
        "{}",
        busiest["total"]
    );
    assert!(
        busiest["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|row| row["server"]["ip"] != down_ip.as_str()),
        "the service that is down is among the busiest: the test needs it not to be"
    );
    let worst = server.get_json_with(
        "/mcp/flows?aggregate=service&format=full&sort=failed&limit=1",
        &auth,
    );
    let worst = &worst["flows"][0];
    assert_eq!(worst["server"]["ip"], down_ip.as_str(), "{worst}");
    let edge = (
        group(&worst["client"], "service"),
        group(&worst["server"], "service"),
    );

    let seen = drive_page(
        &[
            "--coverage".as_ref(),
            format!("http://{}/", server.addr).as_ref(),
            TOKEN.as_ref(),
        ],
        &server,
    );
    let drawn = seen["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| (e["from"].as_str(), e["to"].as_str()) == (Some(&edge.0), Some(&edge.1)))
        .unwrap_or_else(|| panic!("no edge {edge:?} on the map: {seen}"));
    assert_eq!(drawn["failing"], true, "{drawn}");
    assert!(
        seen["status"].as_str().unwrap().contains(" failing · "),
        "{}",
        seen["status"]
    );
}
