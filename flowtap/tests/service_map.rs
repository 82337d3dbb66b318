//! The service map at `GET /`, used as a person would in headless Chromium
//! (Debian's chromium and chromedriver through Selenium:
//! `tests/support/service_map.py`), and checked against the API it reads:
//! every edge with its bytes and latency colour, the flows listed for the
//! edge clicked, and the map regrouped by namespace.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::server::Server;
use common::{project_root, venv_python};
use serde_json::Value;

const TOKEN: &str = "service-map-token";

/// An endpoint's group, as the page documents it: the name at the level,
/// else its IP; external IPs in one group.
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
    if ep["external"] == true {
        return "external".into();
    }
    format!(
        "ip:{}",
        ep["ip"]
            .as_str()
            .expect("an endpoint without a name has its IP")
    )
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

type Edges = BTreeMap<(String, String), (u64, String)>;

/// The edges the map should draw for an aggregated answer: bytes summed,
/// coloured by the worse leg's p99 of the worst group.
fn expected_edges(answer: &Value, level: &str) -> Edges {
    let mut edges: BTreeMap<(String, String), (u64, Option<u64>)> = BTreeMap::new();
    for row in answer["flows"].as_array().unwrap() {
        let key = (group(&row["client"], level), group(&row["server"], level));
        let e = edges.entry(key).or_default();
        e.0 += row["totals"]["bytes"].as_u64().unwrap();
        let p99 = ["client_stats", "server_stats"]
            .iter()
            .filter_map(|s| row[s]["tcp_handshake_p99_us"].as_u64())
            .max();
        e.1 = e.1.max(p99);
    }
    edges
        .into_iter()
        .map(|(k, (bytes, p99))| (k, (bytes, latency(p99).to_owned())))
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
                ),
            )
        })
        .collect()
}

#[test]
fn the_map_draws_the_apis_groups_and_lists_an_edges_flows() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let root = project_root();
    let (demo, inventory) = (
        root.join("demo/demo.pcap"),
        root.join("demo/inventory.json"),
    );
    let server = Server::start(&[
        "-r",
        demo.to_str().unwrap(),
        "--k8s-inventory",
        inventory.to_str().unwrap(),
        "--auth-token-file",
        token.to_str().unwrap(),
    ]);

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
    let out = Command::new(venv_python(".venv"))
        .arg(root.join("flowtap/tests/support/service_map.py"))
        .args([&format!("http://{}/", server.addr), TOKEN])
        .arg(&screenshot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "service_map.py: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.stderr.lock().unwrap()
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(seen["asked_for_token"], true);
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

    // The heaviest edge, clicked: exactly the flows between its two groups.
    let heaviest = by_service
        .iter()
        .max_by_key(|(_, (bytes, _))| *bytes)
        .unwrap()
        .0;
    assert_eq!(
        (
            seen["clicked"]["from"].as_str().unwrap(),
            seen["clicked"]["to"].as_str().unwrap()
        ),
        (heaviest.0.as_str(), heaviest.1.as_str())
    );
    let flow_id = |client: &str, server: &str, port: &str, proto: &str| {
        format!("{proto} {client} -> {server}:{port}")
    };
    let want: BTreeSet<String> = all["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            group(&f["client"], "service") == heaviest.0
                && group(&f["server"], "service") == heaviest.1
        })
        .map(|f| {
            flow_id(
                f["client"]["ip"].as_str().unwrap(),
                f["server"]["ip"].as_str().unwrap(),
                &f["server"]["port"].to_string(),
                f["proto"].as_str().unwrap(),
            )
        })
        .collect();
    let listed: BTreeSet<String> = seen["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            flow_id(&s("client"), &s("server"), &s("port"), &s("proto"))
        })
        .collect();
    assert!(want.len() > 1, "{want:?}");
    assert_eq!(listed, want);

    assert_eq!(drawn_edges(&seen["namespace_edges"]), by_namespace);
    assert_eq!(seen["console_errors"], serde_json::json!([]));
    eprintln!("screenshot: {}", screenshot.display());
    assert_eq!(server.terminate(), 0);
}
