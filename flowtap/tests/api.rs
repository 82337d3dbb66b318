//! The MCP L4 HTTP API over real captures (the corpus's 02_pcpp_example and
//! the bundled demo) with the bundled Kubernetes inventory: every parameter,
//! format, aggregation and error, checked with real HTTP requests against
//! the reference's JSON shapes and against oracles computed here from the
//! full flow list.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::metrics::sample;
use common::server::Server;
use common::wait;
use common::{corpus_dir, project_root, without_ages};
use serde_json::{Value, json};

fn capture_args(inventory: &Path) -> Vec<String> {
    let root = project_root();
    vec![
        "-r".into(),
        corpus_dir()
            .join("captures/02_pcpp_example.pcap")
            .display()
            .to_string(),
        root.join("demo/demo.pcap").display().to_string(),
        "--k8s-inventory".into(),
        inventory.display().to_string(),
        "--cluster-cidr".into(),
        "10.0.0.0/24".into(),
        "--cluster-cidr".into(),
        "198.18.0.0/15".into(),
        "--cluster-cidr".into(),
        "2001:db8::/32".into(),
        "--threads".into(),
        "2".into(),
        "--hash-seed".into(),
        "5".into(),
    ]
}

fn start(extra: &[&str]) -> Server {
    let inventory = project_root().join("demo/inventory.json");
    let mut args = capture_args(&inventory);
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

// ---------------------------------------------------------------- shapes

/// A JSON type as the reference's tables give it.
#[derive(Clone, Copy)]
enum T {
    Str,
    Int,
    Num,
    Bool,
    Obj(&'static [Field]),
    Arr(&'static T),
    Map(&'static T),
}

/// A field: name, type, and whether it must be present.
type Field = (&'static str, T, bool);

const ENDPOINT: &[Field] = &[
    ("ip", T::Str, false),
    ("port", T::Int, false),
    ("pod", T::Str, false),
    ("ns", T::Str, false),
    ("svc", T::Str, false),
    ("node", T::Str, false),
    ("container_id", T::Str, false),
    ("cgroup_id", T::Int, false),
    // flowtap's additions (full format).
    ("external", T::Bool, false),
    ("nat64_ipv4", T::Str, false),
];

const STATS_COMPACT: &[Field] = &[
    ("tx_pkts", T::Int, true),
    ("rx_pkts", T::Int, true),
    ("tx_bytes", T::Int, true),
    ("rx_bytes", T::Int, true),
    ("tcp_handshake_p50_us", T::Int, false),
    ("tcp_handshake_p90_us", T::Int, false),
    ("tcp_handshake_p99_us", T::Int, false),
    // flowtap's TCP health (TCP flows: always in full, in compact only the
    // non-zero counters of a flow with failures or retransmissions).
    ("tcp_retransmits", T::Int, false),
    ("tcp_rsts", T::Int, false),
    ("tcp_zero_windows", T::Int, false),
];

const STATS_FULL: &[Field] = &[
    ("tx_pkts", T::Int, true),
    ("rx_pkts", T::Int, true),
    ("tx_bytes", T::Int, true),
    ("rx_bytes", T::Int, true),
    ("tx_pps", T::Num, true),
    ("rx_pps", T::Num, true),
    ("tx_bps", T::Num, true),
    ("rx_bps", T::Num, true),
    ("timestamp", T::Str, true),
    ("tcp_handshake_p50_us", T::Int, false),
    ("tcp_handshake_p90_us", T::Int, false),
    ("tcp_handshake_p99_us", T::Int, false),
    // flowtap's TCP health (TCP flows: always in full, in compact only the
    // non-zero counters of a flow with failures or retransmissions).
    ("tcp_retransmits", T::Int, false),
    ("tcp_rsts", T::Int, false),
    ("tcp_zero_windows", T::Int, false),
];

const TOTALS: &[Field] = &[
    ("pkts", T::Int, true),
    ("bytes", T::Int, true),
    ("pps", T::Num, true),
    ("bps", T::Num, true),
];

/// flowtap's addition to every answer: which vantage points it covers.
const LOSSES: [Field; 4] = [
    ("capture_drops", T::Int, true),
    ("handoff_drops", T::Int, true),
    ("flows_evicted", T::Int, true),
    ("packets_in_no_flow", T::Int, true),
];
const AGENT: &[Field] = &[
    ("name", T::Str, true),
    ("node", T::Str, false),
    ("answered", T::Bool, true),
    ("age_s", T::Num, false),
    ("error", T::Str, false),
    LOSSES[0],
    LOSSES[1],
    LOSSES[2],
    LOSSES[3],
];
const COVERAGE: &[Field] = &[
    ("agents_expected", T::Int, true),
    ("agents_answered", T::Int, true),
    ("agents_missing", T::Arr(&T::Str), true),
    ("agents", T::Arr(&T::Obj(AGENT)), true),
    LOSSES[0],
    LOSSES[1],
    LOSSES[2],
    LOSSES[3],
];
/// flowtap's addition for flows seen through a mirror session.
const MIRROR: &[Field] = &[
    ("encap", T::Str, true),
    ("vni", T::Int, false),
    ("session", T::Int, false),
    ("key", T::Int, false),
    ("id", T::Int, false),
];

/// flowtap's TCP connection outcomes.
const CONNECTIONS: &[Field] = &[
    ("established", T::Int, true),
    ("refused", T::Int, true),
    ("unanswered", T::Int, true),
    ("reset", T::Int, true),
    ("closed", T::Int, true),
    ("open", T::Int, true),
];

const FLOW_COMPACT: &[Field] = &[
    ("proto", T::Str, true),
    ("client", T::Obj(ENDPOINT), true),
    ("server", T::Obj(ENDPOINT), true),
    ("client_stats", T::Obj(STATS_COMPACT), true),
    ("server_stats", T::Obj(STATS_COMPACT), true),
    ("totals", T::Obj(TOTALS), true),
    ("tcp_connections", T::Obj(CONNECTIONS), false),
];

const FLOW_FULL: &[Field] = &[
    ("proto", T::Str, true),
    ("client", T::Obj(ENDPOINT), true),
    ("server", T::Obj(ENDPOINT), true),
    ("client_stats", T::Obj(STATS_FULL), true),
    ("server_stats", T::Obj(STATS_FULL), true),
    ("totals", T::Obj(TOTALS), true),
    ("tcp_connections", T::Obj(CONNECTIONS), false),
    ("merged_flows", T::Int, false),
    // flowtap's additions: the mirror session, and (from a hub) the agents.
    ("mirror", T::Obj(MIRROR), false),
    ("seen_by", T::Arr(&T::Str), false),
];

const RAW_LEG: &[Field] = &[
    ("samples", T::Int, true),
    ("p50_us", T::Int, true),
    ("p90_us", T::Int, true),
    ("p99_us", T::Int, true),
];

const FLOW_RAW: &[Field] = &[
    ("proto", T::Str, true),
    ("client_ip", T::Str, true),
    ("server_ip", T::Str, true),
    ("server_port", T::Int, true),
    ("c2s_pkts", T::Int, true),
    ("c2s_bytes", T::Int, true),
    ("s2c_pkts", T::Int, true),
    ("s2c_bytes", T::Int, true),
    ("c2s_pps", T::Num, true),
    ("c2s_bps", T::Num, true),
    ("s2c_pps", T::Num, true),
    ("s2c_bps", T::Num, true),
    ("first_seen_ns", T::Int, true),
    ("last_seen_ns", T::Int, true),
    ("connections", T::Int, true),
    ("syn_to_synack", T::Obj(RAW_LEG), false),
    ("syn_to_ack", T::Obj(RAW_LEG), false),
    ("mirror", T::Obj(MIRROR), false),
    ("c2s_tcp_retransmits", T::Int, false),
    ("c2s_tcp_rsts", T::Int, false),
    ("c2s_tcp_zero_windows", T::Int, false),
    ("s2c_tcp_retransmits", T::Int, false),
    ("s2c_tcp_rsts", T::Int, false),
    ("s2c_tcp_zero_windows", T::Int, false),
    ("tcp_connections", T::Obj(CONNECTIONS), false),
];

const TOP_FAILED: &[Field] = &[
    ("client_pod", T::Str, true),
    ("server_pod", T::Str, true),
    ("server_port", T::Int, true),
    ("failed", T::Int, true),
    ("refused", T::Int, true),
    ("unanswered", T::Int, true),
    ("reset", T::Int, true),
];
const TOP_RETRANSMITS: &[Field] = &[
    ("client_pod", T::Str, true),
    ("server_pod", T::Str, true),
    ("server_port", T::Int, true),
    ("retransmits", T::Int, true),
];

const TOP_BYTES: &[Field] = &[
    ("client_pod", T::Str, true),
    ("server_pod", T::Str, true),
    ("bytes", T::Int, true),
];
const TOP_PKTS: &[Field] = &[
    ("client_pod", T::Str, true),
    ("server_pod", T::Str, true),
    ("pkts", T::Int, true),
];
const CROSS: &[Field] = &[
    ("src_ns", T::Str, true),
    ("dst_ns", T::Str, true),
    ("flows", T::Int, true),
    ("bytes", T::Int, true),
];

const SUMMARY: &[Field] = &[
    ("total_flows", T::Int, true),
    ("tcp_flows", T::Int, true),
    ("udp_flows", T::Int, true),
    ("total_bytes", T::Int, true),
    ("total_pkts", T::Int, true),
    ("unique_clients", T::Int, true),
    ("unique_servers", T::Int, true),
    ("top_by_bytes", T::Arr(&T::Obj(TOP_BYTES)), true),
    ("top_by_pkts", T::Arr(&T::Obj(TOP_PKTS)), true),
    ("by_namespace", T::Map(&T::Int), true),
    ("cross_namespace", T::Arr(&T::Obj(CROSS)), true),
    // flowtap's addition, with --cluster-cidr.
    ("external_bytes", T::Int, false),
    // flowtap's TCP health totals and worst flows.
    ("tcp_retransmits", T::Int, true),
    ("tcp_rsts", T::Int, true),
    ("tcp_zero_windows", T::Int, true),
    ("tcp_connections", T::Obj(CONNECTIONS), true),
    ("top_by_failed", T::Arr(&T::Obj(TOP_FAILED)), true),
    ("top_by_retransmits", T::Arr(&T::Obj(TOP_RETRANSMITS)), true),
    ("coverage", T::Obj(COVERAGE), true),
];

fn check(v: &Value, t: T, at: &str) {
    match t {
        T::Str => assert!(v.is_string(), "{at}: expected a string, got {v}"),
        T::Int => assert!(v.is_u64(), "{at}: expected an integer, got {v}"),
        T::Num => assert!(v.is_number(), "{at}: expected a number, got {v}"),
        T::Bool => assert!(v.is_boolean(), "{at}: expected a bool, got {v}"),
        T::Arr(item) => {
            for (i, x) in v
                .as_array()
                .unwrap_or_else(|| panic!("{at}: expected an array"))
                .iter()
                .enumerate()
            {
                check(x, *item, &format!("{at}[{i}]"));
            }
        }
        T::Map(item) => {
            for (k, x) in v
                .as_object()
                .unwrap_or_else(|| panic!("{at}: expected an object"))
            {
                check(x, *item, &format!("{at}.{k}"));
            }
        }
        T::Obj(fields) => {
            let obj = v
                .as_object()
                .unwrap_or_else(|| panic!("{at}: expected an object, got {v}"));
            for (name, x) in obj {
                let (_, ft, _) = fields
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .unwrap_or_else(|| panic!("{at}: field {name:?} is not in the reference"));
                check(x, *ft, &format!("{at}.{name}"));
            }
            for (name, _, required) in fields.iter() {
                assert!(
                    !required || obj.contains_key(*name),
                    "{at}: required field {name:?} missing"
                );
            }
        }
    }
}

fn flows_body(v: &Value, flow: &'static [Field]) {
    let body: &'static [Field] = match flow.len() {
        n if n == FLOW_RAW.len() => &[
            ("flows", T::Arr(&T::Obj(FLOW_RAW)), true),
            ("total", T::Int, true),
            ("truncated", T::Bool, true),
            ("coverage", T::Obj(COVERAGE), true),
        ],
        n if n == FLOW_FULL.len() => &[
            ("flows", T::Arr(&T::Obj(FLOW_FULL)), true),
            ("total", T::Int, true),
            ("truncated", T::Bool, true),
            ("coverage", T::Obj(COVERAGE), true),
        ],
        _ => &[
            ("flows", T::Arr(&T::Obj(FLOW_COMPACT)), true),
            ("total", T::Int, true),
            ("truncated", T::Bool, true),
            ("coverage", T::Obj(COVERAGE), true),
        ],
    };
    check(v, T::Obj(body), "body");
}

const ALL: &str = "limit=100000";

#[test]
fn responses_have_the_reference_shapes() {
    let s = start(&[]);
    let compact = s.get_json(&format!("/mcp/flows?{ALL}"));
    flows_body(&compact, FLOW_COMPACT);
    let full = s.get_json(&format!("/mcp/flows?format=full&{ALL}"));
    flows_body(&full, FLOW_FULL);
    let raw = s.get_json(&format!("/mcp/flows?format=raw&{ALL}"));
    flows_body(&raw, FLOW_RAW);
    for by in ["pod", "namespace", "node", "service"] {
        flows_body(
            &s.get_json(&format!("/mcp/flows?aggregate={by}&{ALL}")),
            FLOW_COMPACT,
        );
        flows_body(
            &s.get_json(&format!("/mcp/flows?aggregate={by}&format=full&{ALL}")),
            FLOW_FULL,
        );
    }
    let summary = s.get_json("/mcp/flows/summary");
    check(&summary, T::Obj(SUMMARY), "summary");

    let flows = full["flows"].as_array().unwrap();
    assert_eq!(flows.len() as u64, full["total"].as_u64().unwrap());
    for f in flows {
        // Every flow of the unaggregated list names both IPs and the server port.
        assert!(
            f["client"]["ip"].is_string()
                && f["server"]["ip"].is_string()
                && f["server"]["port"].is_u64()
        );
        assert!(
            f["client"].get("port").is_none(),
            "a flow merges many client ports"
        );
        let tcp = f["proto"] == "tcp";
        assert!(tcp || f["proto"] == "udp");
        if !tcp {
            assert!(
                f["client_stats"].get("tcp_handshake_p50_us").is_none(),
                "never for UDP"
            );
        }
        // The sides mirror each other; totals count each packet once.
        let (c, sv) = (&f["client_stats"], &f["server_stats"]);
        assert_eq!(c["tx_pkts"], sv["rx_pkts"]);
        assert_eq!(c["rx_bytes"], sv["tx_bytes"]);
        assert_eq!(
            f["totals"]["pkts"].as_u64().unwrap(),
            c["tx_pkts"].as_u64().unwrap() + c["rx_pkts"].as_u64().unwrap()
        );
    }
    // Compact is full minus the full-only fields, in the same order.
    let compact_flows = compact["flows"].as_array().unwrap();
    for (c, f) in compact_flows.iter().zip(flows) {
        assert_eq!(c["client"]["ip"], f["client"]["ip"]);
        assert_eq!(c["totals"], f["totals"]);
        assert_eq!(c["client_stats"]["tx_bytes"], f["client_stats"]["tx_bytes"]);
        assert!(c["server"].get("container_id").is_none());
    }
}

#[test]
fn enrichment_follows_the_inventory() {
    let s = start(&[]);
    let full = s.get_json(&format!("/mcp/flows?format=full&{ALL}"));
    let flows = full["flows"].as_array().unwrap();
    let find = |client: &str, server: &str, port: u64| {
        flows
            .iter()
            .find(|f| {
                f["client"]["ip"] == client
                    && f["server"]["ip"] == server
                    && f["server"]["port"] == port
            })
            .unwrap_or_else(|| panic!("no flow {client} -> {server}:{port}"))
    };
    // A pod client and an external server of the real capture.
    let f = find("10.0.0.6", "212.199.202.9", 80);
    assert_eq!(f["client"]["pod"], "legacy-browser-5b8f9d7c6-qrz2m");
    assert_eq!(f["client"]["ns"], "lab");
    assert_eq!(f["client"]["node"], "gateway-node");
    assert_eq!(f["client"]["external"], false);
    assert!(f["client"]["container_id"].as_str().unwrap().len() == 64);
    assert_eq!(f["server"]["external"], true);
    assert!(f["server"].get("pod").is_none() && f["server"].get("ns").is_none());
    // The DNS resolver runs on the node itself: node only.
    let f = find("10.0.0.6", "10.0.0.138", 53);
    assert_eq!(f["server"]["node"], "gateway-node");
    assert!(f["server"].get("pod").is_none() && f["server"].get("svc").is_none());
    // A pod server: the service and container chosen by the server port.
    let f = flows
        .iter()
        .find(|f| f["server"]["ip"] == "198.19.0.0" && f["server"]["port"] == 5432)
        .unwrap();
    assert_eq!(
        (f["server"]["pod"].as_str(), f["server"]["svc"].as_str()),
        (Some("postgres-0"), Some("postgres"))
    );
    // A ClusterIP seen before DNAT: service and namespace only.
    let f = flows
        .iter()
        .find(|f| f["server"]["ip"] == "198.19.0.2")
        .unwrap();
    assert_eq!(
        (f["server"]["svc"].as_str(), f["server"]["ns"].as_str()),
        (Some("api-gateway"), Some("shop"))
    );
    assert!(f["server"].get("pod").is_none() && f["server"].get("node").is_none());
    // A host process on a node.
    let f = flows
        .iter()
        .find(|f| f["server"]["ip"] == "198.19.0.4")
        .unwrap();
    assert_eq!(f["server"]["node"], "node-a");
    assert!(f["server"].get("pod").is_none());
    // Inside the cluster CIDRs but unknown to the inventory.
    let f = flows
        .iter()
        .find(|f| f["server"]["ip"] == "198.19.0.5")
        .unwrap();
    assert_eq!(f["server"]["external"], false);
    assert!(f["server"].get("ns").is_none());
}

// --------------------------------------------------------------- filters

type FlowId = (String, String, String, u64);

fn id(f: &Value) -> FlowId {
    (
        f["proto"].as_str().unwrap().to_owned(),
        f["client"]["ip"].as_str().unwrap().to_owned(),
        f["server"]["ip"].as_str().unwrap().to_owned(),
        f["server"]["port"].as_u64().unwrap(),
    )
}

fn ids(body: &Value) -> BTreeSet<FlowId> {
    body["flows"].as_array().unwrap().iter().map(id).collect()
}

fn starts(v: &Value, prefix: &str) -> bool {
    v.as_str().is_some_and(|s| s.starts_with(prefix))
}

#[test]
fn every_filter_matches_either_side_and_combines_with_and() {
    let s = start(&[]);
    let all_body = s.get_json(&format!("/mcp/flows?format=full&{ALL}"));
    let all = all_body["flows"].as_array().unwrap();
    assert!(all.len() > 100);
    let net = |ip: &str, cidr: &str| -> bool {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let (base, bits) = cidr
            .split_once('/')
            .unwrap_or((cidr, if cidr.contains(':') { "128" } else { "32" }));
        let base: std::net::IpAddr = base.parse().unwrap();
        let bits: u32 = bits.parse().unwrap();
        match (ip, base) {
            (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => {
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(a) & mask == u32::from(b) & mask
            }
            (std::net::IpAddr::V6(a), std::net::IpAddr::V6(b)) => {
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    };
    let side = |f: &Value, key: &str, p: &str| {
        starts(&f["client"][key], p) || starts(&f["server"][key], p)
    };
    let exactly =
        |f: &Value, key: &str, name: &str| f["client"][key] == name || f["server"][key] == name;
    type Keep = Box<dyn Fn(&Value) -> bool>;
    let cases: Vec<(&str, Keep)> = vec![
        ("l4proto=udp", Box::new(|f: &Value| f["proto"] == "udp")),
        ("l4proto=tcp", Box::new(|f: &Value| f["proto"] == "tcp")),
        (
            "ip=10.0.0.138",
            Box::new(move |f: &Value| {
                f["client"]["ip"] == "10.0.0.138" || f["server"]["ip"] == "10.0.0.138"
            }),
        ),
        (
            "ip=198.19.0.0%2F30",
            Box::new(move |f: &Value| {
                net(f["client"]["ip"].as_str().unwrap(), "198.19.0.0/30")
                    || net(f["server"]["ip"].as_str().unwrap(), "198.19.0.0/30")
            }),
        ),
        (
            "ip=2001:db8:1::%2F64",
            Box::new(move |f: &Value| {
                net(f["client"]["ip"].as_str().unwrap(), "2001:db8:1::/64")
                    || net(f["server"]["ip"].as_str().unwrap(), "2001:db8:1::/64")
            }),
        ),
        (
            "ns=data",
            Box::new(move |f: &Value| exactly(f, "ns", "data")),
        ),
        (
            "ns=kube-system",
            Box::new(move |f: &Value| exactly(f, "ns", "kube-system")),
        ),
        // Namespaces and services are matched whole: no flow is in a
        // namespace or behind a service named "kube" or "shop-".
        ("ns=kube", Box::new(|_: &Value| false)),
        ("svc=postgres-", Box::new(|_: &Value| false)),
        (
            "pod=frontend",
            Box::new(move |f: &Value| side(f, "pod", "frontend")),
        ),
        (
            "pod=postgres-0",
            Box::new(move |f: &Value| side(f, "pod", "postgres-0")),
        ),
        (
            "svc=api-gateway",
            Box::new(move |f: &Value| exactly(f, "svc", "api-gateway")),
        ),
        (
            "svc=postgres",
            Box::new(move |f: &Value| exactly(f, "svc", "postgres")),
        ),
        (
            "ns=shop&l4proto=tcp&svc=api-gateway",
            Box::new(move |f: &Value| {
                exactly(f, "ns", "shop") && f["proto"] == "tcp" && exactly(f, "svc", "api-gateway")
            }),
        ),
        ("pod=nothing-like-this", Box::new(|_: &Value| false)),
    ];
    for (query, keep) in cases {
        let want: BTreeSet<FlowId> = all.iter().filter(|f| keep(f)).map(id).collect();
        let got = s.get_json(&format!("/mcp/flows?format=full&{ALL}&{query}"));
        assert_eq!(ids(&got), want, "{query}");
        assert_eq!(
            got["total"].as_u64().unwrap() as usize,
            want.len(),
            "{query}: total"
        );
        if !["pod=nothing-like-this", "ns=kube", "svc=postgres-"].contains(&query) {
            assert!(
                !want.is_empty(),
                "{query} should match something in these captures"
            );
        }
    }
}

#[test]
fn limit_total_truncated_and_sorting() {
    let s = start(&[]);
    let all = s.get_json(&format!("/mcp/flows?{ALL}"));
    let n = all["total"].as_u64().unwrap();
    let default = s.get_json("/mcp/flows");
    assert_eq!(
        default["flows"].as_array().unwrap().len(),
        100,
        "default limit"
    );
    assert_eq!(
        (default["total"].as_u64(), default["truncated"].as_bool()),
        (Some(n), Some(true))
    );
    let five = s.get_json("/mcp/flows?limit=5");
    assert_eq!(five["flows"].as_array().unwrap().len(), 5);
    assert_eq!(
        five["flows"].as_array().unwrap()[..],
        all["flows"].as_array().unwrap()[..5]
    );
    let zero = s.get_json("/mcp/flows?limit=0");
    assert_eq!(
        (
            zero["flows"].as_array().unwrap().len(),
            zero["truncated"].as_bool()
        ),
        (0, Some(true))
    );
    assert_eq!(all["truncated"], false);
    // Default order: bytes, descending.
    let bytes: Vec<u64> = all["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["totals"]["bytes"].as_u64().unwrap())
        .collect();
    assert!(bytes.windows(2).all(|w| w[0] >= w[1]));

    let p99 = |f: &Value| {
        ["client_stats", "server_stats"]
            .iter()
            .filter_map(|s| f[*s]["tcp_handshake_p99_us"].as_u64())
            .max()
    };
    let by_pkts = s.get_json(&format!("/mcp/flows?sort=pkts&{ALL}"));
    let pkts: Vec<u64> = by_pkts["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["totals"]["pkts"].as_u64().unwrap())
        .collect();
    assert!(pkts.windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(pkts.len() as u64, n);
    let by_pps = s.get_json(&format!("/mcp/flows?sort=pps&{ALL}"));
    let pps: Vec<f64> = by_pps["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["totals"]["pps"].as_f64().unwrap())
        .collect();
    assert!(pps.windows(2).all(|w| w[0] >= w[1]));
    let by_hs = s.get_json(&format!("/mcp/flows?sort=handshake_p99&{ALL}"));
    let hs: Vec<Option<u64>> = by_hs["flows"].as_array().unwrap().iter().map(p99).collect();
    assert!(
        hs.windows(2).all(|w| w[0] >= w[1]),
        "handshake_p99 descending, flows without one last"
    );
    assert!(hs[0].is_some());
    // The top 3 by pkts are the first 3 of the full sorted list.
    let top3 = s.get_json("/mcp/flows?sort=pkts&limit=3");
    assert_eq!(
        top3["flows"].as_array().unwrap()[..],
        by_pkts["flows"].as_array().unwrap()[..3]
    );

    let want = all["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| p99(f).is_some_and(|v| v >= 20_000))
        .count();
    let slow = s.get_json(&format!(
        "/mcp/flows?min_handshake_p99_us=20000&l4proto=tcp&{ALL}"
    ));
    assert_eq!(slow["total"].as_u64().unwrap() as usize, want);
    assert!(want > 0);
    assert!(
        slow["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| p99(f).unwrap() >= 20_000)
    );
}

// ----------------------------------------------------------- aggregation

fn member(e: &Value, by: &str) -> String {
    let s = |k: &str| e[k].as_str().map(str::to_owned);
    let attr = match by {
        "pod" => s("pod").map(|p| format!("pod {}/{p}", s("ns").unwrap_or_default())),
        "namespace" => s("ns").map(|n| format!("ns {n}")),
        "node" => s("node").map(|n| format!("node {n}")),
        "service" => s("svc").map(|v| format!("svc {}/{v}", s("ns").unwrap_or_default())),
        _ => unreachable!(),
    };
    attr.unwrap_or_else(|| format!("ip {}", e["ip"].as_str().unwrap()))
}

#[test]
fn aggregation_merges_by_attribute_and_keeps_ip_for_the_rest() {
    let s = start(&[]);
    let all_body = s.get_json(&format!("/mcp/flows?format=full&{ALL}"));
    let all = all_body["flows"].as_array().unwrap();
    for by in ["pod", "namespace", "node", "service"] {
        // The oracle: group the full flow list here.
        #[derive(Default, Debug)]
        struct G {
            bytes: u64,
            pkts: u64,
            flows: u64,
            ports: BTreeSet<u64>,
            p99s: Vec<u64>,
        }
        let mut want: BTreeMap<(String, String, String), G> = BTreeMap::new();
        for f in all {
            let g = want
                .entry((
                    f["proto"].as_str().unwrap().to_owned(),
                    member(&f["client"], by),
                    member(&f["server"], by),
                ))
                .or_default();
            g.bytes += f["totals"]["bytes"].as_u64().unwrap();
            g.pkts += f["totals"]["pkts"].as_u64().unwrap();
            g.flows += 1;
            g.ports.insert(f["server"]["port"].as_u64().unwrap());
            g.p99s
                .extend(f["client_stats"]["tcp_handshake_p99_us"].as_u64());
        }
        let got = s.get_json(&format!("/mcp/flows?aggregate={by}&format=full&{ALL}"));
        let rows = got["flows"].as_array().unwrap();
        assert_eq!(rows.len(), want.len(), "{by}: groups");
        assert_eq!(got["total"].as_u64().unwrap() as usize, want.len());
        assert!(rows.len() < all.len(), "{by}: aggregation merges something");
        for r in rows {
            let key = (
                r["proto"].as_str().unwrap().to_owned(),
                member(&r["client"], by),
                member(&r["server"], by),
            );
            let g = want
                .get(&key)
                .unwrap_or_else(|| panic!("{by}: unexpected group {key:?}"));
            assert_eq!(r["totals"]["bytes"].as_u64(), Some(g.bytes), "{by} {key:?}");
            assert_eq!(r["totals"]["pkts"].as_u64(), Some(g.pkts), "{by} {key:?}");
            assert_eq!(r["merged_flows"].as_u64(), Some(g.flows), "{by} {key:?}");
            // The server port is kept only when all merged flows share it.
            let port = r["server"]["port"].as_u64();
            if g.ports.len() == 1 {
                assert_eq!(port, g.ports.first().copied(), "{by} {key:?}");
            } else {
                assert_eq!(port, None, "{by} {key:?}");
            }
            // Merged handshake percentiles lie between the members' own
            // (within HdrHistogram's 1% once a group holds over 16 samples).
            if let Some(p) = r["client_stats"]["tcp_handshake_p99_us"].as_u64() {
                let (lo, hi) = (*g.p99s.iter().min().unwrap(), *g.p99s.iter().max().unwrap());
                let (lo, hi) = (lo - lo / 100, hi + hi / 100 + 1);
                assert!(
                    (lo..=hi).contains(&p),
                    "{by} {key:?}: p99 {p} outside [{lo}, {hi}]"
                );
                if g.flows == 1 {
                    assert_eq!(p, g.p99s[0]);
                }
            }
        }
    }
    // The reference's example: what services is the frontend talking to?
    let front = s.get_json(&format!("/mcp/flows?pod=frontend&aggregate=service&{ALL}"));
    assert!(
        front["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["server"]["svc"] == "redis")
    );
}

// --------------------------------------------------------------- summary

#[test]
fn the_summary_agrees_with_the_flows() {
    let s = start(&[]);
    let all_body = s.get_json(&format!("/mcp/flows?format=full&{ALL}"));
    let all = all_body["flows"].as_array().unwrap();
    let summary = s.get_json("/mcp/flows/summary");
    let u = |k: &str| summary[k].as_u64().unwrap();
    assert_eq!(u("total_flows") as usize, all.len());
    assert_eq!(
        u("tcp_flows") as usize,
        all.iter().filter(|f| f["proto"] == "tcp").count()
    );
    assert_eq!(
        u("udp_flows") as usize,
        all.iter().filter(|f| f["proto"] == "udp").count()
    );
    assert_eq!(
        u("total_bytes"),
        all.iter()
            .map(|f| f["totals"]["bytes"].as_u64().unwrap())
            .sum::<u64>()
    );
    assert_eq!(
        u("total_pkts"),
        all.iter()
            .map(|f| f["totals"]["pkts"].as_u64().unwrap())
            .sum::<u64>()
    );
    let distinct = |side: &str| {
        all.iter()
            .map(|f| f[side]["ip"].as_str().unwrap())
            .collect::<BTreeSet<_>>()
            .len()
    };
    assert_eq!(u("unique_clients") as usize, distinct("client"));
    assert_eq!(u("unique_servers") as usize, distinct("server"));

    let mut by_ns: BTreeMap<String, u64> = BTreeMap::new();
    let mut cross: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let mut external = 0;
    let mut pairs: HashMap<(String, String), u64> = HashMap::new();
    for f in all {
        let (c, sv) = (f["client"]["ns"].as_str(), f["server"]["ns"].as_str());
        let touched: BTreeSet<&str> = [c, sv].into_iter().flatten().collect();
        for ns in touched {
            *by_ns.entry(ns.to_owned()).or_default() += 1;
        }
        if let (Some(c), Some(sv)) = (c, sv)
            && c != sv
        {
            let e = cross.entry((c.to_owned(), sv.to_owned())).or_default();
            e.0 += 1;
            e.1 += f["totals"]["bytes"].as_u64().unwrap();
        }
        if f["server"]["external"] == true {
            external += f["totals"]["bytes"].as_u64().unwrap();
        }
        let name = |e: &Value| e["pod"].as_str().or(e["ip"].as_str()).unwrap().to_owned();
        *pairs
            .entry((name(&f["client"]), name(&f["server"])))
            .or_default() += f["totals"]["bytes"].as_u64().unwrap();
    }
    let got_ns: BTreeMap<String, u64> =
        serde_json::from_value(summary["by_namespace"].clone()).unwrap();
    assert_eq!(got_ns, by_ns);
    assert!(by_ns.len() >= 4);
    let got_cross: BTreeMap<(String, String), (u64, u64)> = summary["cross_namespace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                (
                    c["src_ns"].as_str().unwrap().to_owned(),
                    c["dst_ns"].as_str().unwrap().to_owned(),
                ),
                (c["flows"].as_u64().unwrap(), c["bytes"].as_u64().unwrap()),
            )
        })
        .collect();
    assert_eq!(got_cross, cross);
    assert!(got_cross.contains_key(&("shop".into(), "data".into())));
    assert_eq!(summary["external_bytes"].as_u64(), Some(external));
    assert!(
        external > 3_000_000,
        "the real capture's web traffic leaves the cluster"
    );

    let top = summary["top_by_bytes"].as_array().unwrap();
    assert_eq!(top.len(), 10);
    let mut ranked: Vec<u64> = pairs.values().copied().collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    for (i, t) in top.iter().enumerate() {
        let key = (
            t["client_pod"].as_str().unwrap().to_owned(),
            t["server_pod"].as_str().unwrap().to_owned(),
        );
        assert_eq!(pairs.get(&key), t["bytes"].as_u64().as_ref(), "{key:?}");
        assert_eq!(t["bytes"].as_u64(), Some(ranked[i]), "rank {i}");
    }
    assert_eq!(top[0]["client_pod"], "legacy-browser-5b8f9d7c6-qrz2m");
    assert_eq!(
        top[0]["server_pod"], "212.199.202.9",
        "an IP where no pod is known"
    );
}

/// `flowtap -r demo/demo.pcap --k8s-inventory INVENTORY EXTRA --dump
/// TARGET`: the answer.
fn dump_demo(inventory: &Path, extra: &[&str], target: &str) -> Value {
    let out = common::stdout_of(
        Command::new(env!("CARGO_BIN_EXE_flowtap"))
            .arg("-r")
            .arg(project_root().join("demo/demo.pcap"))
            .arg("--k8s-inventory")
            .arg(inventory)
            .args(extra)
            .args(["--dump", target]),
    );
    serde_json::from_slice(&out).unwrap()
}

/// The demo's inventory with `edit` applied to each of its objects, in a
/// file of a directory that lives as long as the first value returned.
fn demo_inventory_with(edit: impl Fn(&mut Value)) -> (tempfile::TempDir, std::path::PathBuf) {
    let mut inventory: Value =
        serde_json::from_slice(&std::fs::read(project_root().join("demo/inventory.json")).unwrap())
            .unwrap();
    inventory["items"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .for_each(edit);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("inventory.json");
    std::fs::write(&file, inventory.to_string()).unwrap();
    (dir, file)
}

/// An address given to a new pod names the flows last seen before it was
/// created after the pod that had it then: the demo's backup agent created
/// during the capture, in the address of a finished migration job.
#[test]
fn flows_are_named_after_the_pod_that_had_the_address_at_their_time() {
    let root = project_root();
    let (_dir, file) = demo_inventory_with(|item| {
        let created = match item["metadata"]["name"].as_str() {
            Some("db-migrate-28311040-zt7x2") => "2025-12-31T23:00:00Z",
            Some("backup-agent-5f7d8c6b9-m3ntq") => "2026-01-01T00:00:00.5Z",
            _ => return,
        };
        item["metadata"]["creationTimestamp"] = json!(created);
    });
    let names = |inventory: &Path| {
        let flows = dump_demo(inventory, &[], "/mcp/flows?format=full&limit=100000");
        let mut named: Vec<(String, String)> = flows["flows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["client"]["ip"] == "198.18.0.9")
            .map(|f| {
                (
                    f["client_stats"]["timestamp"].as_str().unwrap().to_owned(),
                    f["client"]["pod"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        named.sort();
        named
    };
    let named = names(&file);
    assert_eq!(
        named
            .iter()
            .map(|(_, pod)| pod.as_str())
            .collect::<Vec<_>>(),
        ["db-migrate-28311040-zt7x2", "backup-agent-5f7d8c6b9-m3ntq"],
        "{named:?}"
    );
    assert!(
        named[0].0.as_str() < "2026-01-01T00:00:00.5"
            && named[1].0.as_str() > "2026-01-01T00:00:00.5",
        "{named:?}"
    );
    // As shipped, both pods were created after the capture: who has the
    // address now names both.
    let shipped = names(&root.join("demo/inventory.json"));
    assert!(
        shipped
            .iter()
            .all(|(_, pod)| pod == "backup-agent-5f7d8c6b9-m3ntq"),
        "{shipped:?}"
    );
}

/// Two pods of one name in two namespaces are two endpoints in the
/// summary's top lists, as in `aggregate=pod`: their bytes are not summed
/// under the one name.
#[test]
fn the_summary_keeps_same_named_pods_of_two_namespaces_apart() {
    let (_dir, file) = demo_inventory_with(|item| {
        if item["kind"] == "Pod" && item["metadata"]["name"] == "orders-worker-1" {
            item["metadata"]["name"] = json!("orders-worker-0");
            item["metadata"]["namespace"] = json!("shop-eu");
        }
    });
    let dump = |target: &str| dump_demo(&file, &[], target);
    let flows = dump("/mcp/flows?format=full&limit=100000");
    let mut pairs: HashMap<(String, String, String, String), u64> = HashMap::new();
    for f in flows["flows"].as_array().unwrap() {
        let end = |e: &Value| {
            let name = e["pod"].as_str().or(e["ip"].as_str()).unwrap().to_owned();
            (e["ns"].as_str().unwrap_or_default().to_owned(), name)
        };
        let ((cn, c), (sn, s)) = (end(&f["client"]), end(&f["server"]));
        *pairs.entry((cn, c, sn, s)).or_default() += f["totals"]["bytes"].as_u64().unwrap();
    }
    let worker = |ns: &str| {
        pairs
            .iter()
            .filter(|(k, _)| k.0 == ns && k.1 == "orders-worker-0" && k.3 == "postgres-0")
            .map(|(_, b)| *b)
            .sum::<u64>()
    };
    let (shop, eu) = (worker("shop"), worker("shop-eu"));
    assert!(shop > 0 && eu > 0, "{shop} {eu}");
    let summary = dump("/mcp/flows/summary");
    let listed: Vec<u64> = summary["top_by_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["client_pod"] == "orders-worker-0" && t["server_pod"] == "postgres-0")
        .map(|t| t["bytes"].as_u64().unwrap())
        .collect();
    assert!(
        !listed.contains(&(shop + eu)),
        "the two pods' bytes summed under one name: {listed:?}"
    );
    for bytes in listed {
        assert!(
            bytes == shop || bytes == eu,
            "{bytes} is neither pod's ({shop}, {eu})"
        );
    }
}

/// With `--cluster-cidr` naming only the IPv4 ranges of a dual-stack
/// cluster, its pods' IPv6 addresses are still inside: whatever the
/// Kubernetes names know is never "external".
#[test]
fn named_endpoints_are_inside_the_cluster_whatever_its_ranges() {
    let flows = dump_demo(
        &project_root().join("demo/inventory.json"),
        &["--cluster-cidr", "198.18.0.0/17,198.19.0.0/16,10.0.0.0/24"],
        "/mcp/flows?format=full&limit=100000",
    );
    let ends: Vec<&Value> = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| [&f["client"], &f["server"]])
        .collect();
    let named_v6 = ends
        .iter()
        .filter(|e| e["pod"].is_string() && e["ip"].as_str().unwrap().contains(':'))
        .count();
    assert!(named_v6 > 0, "the demo has IPv6 pods");
    for e in &ends {
        if e["pod"].is_string() || e["svc"].is_string() || e["node"].is_string() {
            assert_eq!(e["external"], false, "{e}");
        }
    }
    assert!(
        ends.iter().any(|e| e["external"] == true),
        "the internet is outside"
    );
}

// ---------------------------------------------------------------- errors

#[test]
fn bad_requests_get_400_404_405_431_with_json_errors() {
    let s = start(&[]);
    for (query, param) in [
        ("format=xml", "format"),
        ("aggregate=zone", "aggregate"),
        ("l4proto=icmp", "l4proto"),
        ("ip=999.1.1.1", "ip"),
        ("ip=10.0.0.0%2F40", "ip"),
        ("limit=-5", "limit"),
        ("limit=many", "limit"),
        ("sort=random", "sort"),
        ("colour=blue", "colour"),
        // Bytes that are not UTF-8 once decoded would match nothing.
        ("ns=%FF", "ns"),
    ] {
        let r = s.get(&format!("/mcp/flows?{query}"));
        assert_eq!(r.status, 400, "{query}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body = r.json();
        assert_eq!(body["parameter"], param, "{query}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let r = s.get("/mcp/flows/summary?limit=3");
    assert_eq!(
        (r.status, r.json()["parameter"].as_str()),
        (400, Some("limit"))
    );
    // (`/mcp` itself is the MCP endpoint: tests/mcp.rs.)
    // (`/` is the service map: tests/service_map.rs.)
    for path in [
        "/index.html",
        "/mcpx",
        "/mcp/flowz",
        "/mcp/flows/summary/extra",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert!(r.json()["error"].is_string());
        // Whatever the method: an MCP client given a wrong prefix was told
        // to use GET.
        let r = s.request("POST", &format!("/prefix{path}"));
        assert_eq!(r.status, 404, "POST /prefix{path}");
    }
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = s.request(method, "/mcp/flows");
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET"));
        assert!(r.json()["error"].as_str().unwrap().contains(method));
    }
    // The probes take HEAD too, and say so in the error as in Allow.
    let r = s.send_admin("POST", "/healthz", &[]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .ends_with("use GET or HEAD"),
        "{}",
        r.json()
    );
    // Oversized request heads are refused.
    let big_header = format!(
        "GET /mcp/flows HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(40_000)
    );
    assert_eq!(s.raw(big_header.as_bytes()).status, 431);
    let long_uri = format!(
        "GET /mcp/flows?pod={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "p".repeat(40_000)
    );
    let status = s.raw(long_uri.as_bytes()).status;
    assert!(
        status == 414 || status == 431,
        "long request line: {status}"
    );
    let mut many = String::from("GET /mcp/flows HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("Connection: close\r\n\r\n");
    assert_eq!(s.raw(many.as_bytes()).status, 431);
    // A byte a URI may not hold: refused by the HTTP layer, without a body.
    let raw_byte = b"GET /mcp/flows?ns=\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(s.raw(raw_byte).status, 400);
    // Those the HTTP layer refused are counted as the handlers' are.
    // (A series not there is none refused with that status.)
    let refused = |metrics: &str, status: u16| {
        let series = format!("flowtap_http_requests_total{{path=\"other\",status=\"{status}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let long_line_431 = f64::from(u8::from(status == 431));
    let expected = [2.0 + long_line_431, 1.0 - long_line_431, 1.0];
    // Counted as their connections end, which may be just after the
    // client has read the refusal.
    wait::until(Duration::from_secs(10), "the refusals counted", || {
        let metrics = s.metrics();
        let counted = [431, 414, 400].map(|status| refused(&metrics, status));
        if counted == expected {
            Ok(())
        } else {
            Err(format!(
                "431, 414, 400: {counted:?}, not {expected:?}\n{metrics}"
            ))
        }
    });
    // The server is still fine.
    assert_eq!(s.get("/mcp/flows/summary").status, 200);
}

#[test]
fn slow_clients_time_out_while_others_are_served() {
    use std::io::{Read, Write};
    let s = start(&["--http-header-timeout", "1"]);
    // From before the connection: the timeout runs from its accept.
    let started = Instant::now();
    let mut slow = std::net::TcpStream::connect(s.addr).unwrap();
    slow.write_all(b"GET /mcp/flows HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        s.get("/mcp/flows/summary").status,
        200,
        "others are served meanwhile"
    );
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
    assert!(
        waited >= Duration::from_millis(900),
        "not before the timeout: {waited:?}"
    );
    if !buf.is_empty() {
        assert_eq!(common::server::parse_response(&buf).status, 408);
    }
    // Counted (it reached a debug log only).
    assert_eq!(
        sample(&s.metrics(), "flowtap_http_header_timeouts_total"),
        1.0
    );
}

// ------------------------------------------------- dump, curl, inventory

#[test]
fn dump_prints_exactly_what_http_returns() {
    let s = start(&[]);
    let queries = [
        "/mcp/flows",
        "/mcp/flows?format=full&limit=20",
        "/mcp/flows?format=raw&limit=50&l4proto=udp",
        "/mcp/flows?aggregate=namespace&format=full",
        "/mcp/flows?ns=data&sort=handshake_p99",
        "/mcp/flows/summary",
        "/mcp/flows?limit=bad",
    ];
    let inventory = project_root().join("demo/inventory.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowtap"));
    cmd.args(capture_args(&inventory));
    for q in queries {
        cmd.args(["--dump", q]);
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a failing --dump makes the run fail"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), queries.len());
    for (q, line) in queries.iter().zip(lines) {
        let http = s.get(q);
        assert_eq!(
            without_ages(&String::from_utf8(http.body).unwrap()),
            without_ages(line),
            "{q}"
        );
    }
}

/// Rates count from the capture's first packet in every shard: a flow's
/// rate was over the span since its own shard's first packet, so the same
/// capture gave other rates as the hashing spread flows over the workers
/// (the served answer and `--dump` differed run to run).
#[test]
fn rates_do_not_depend_on_how_flows_are_spread_over_workers() {
    let demo = project_root().join("demo/demo.pcap");
    let answers: BTreeSet<String> = (1..=4)
        .map(|seed| {
            let out = Command::new(env!("CARGO_BIN_EXE_flowtap"))
                .args(["-r", demo.to_str().unwrap(), "--threads", "2"])
                .args(["--hash-seed", &seed.to_string()])
                .args(["--dump", "/mcp/flows?format=raw&limit=1000"])
                .output()
                .unwrap();
            assert!(out.status.success());
            without_ages(&String::from_utf8(out.stdout).unwrap())
        })
        .collect();
    assert_eq!(answers.len(), 1, "{answers:#?}");
}

#[test]
fn curl_reads_the_api() {
    let s = start(&[]);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            &format!("http://{}/mcp/flows?limit=2&l4proto=tcp", s.addr),
        ])
        .output()
        .expect("curl is installed by scripts/setup.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["flows"].as_array().unwrap().len(), 2);
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            &format!("http://{}/mcp/flows", s.addr),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "405");
    // HEAD, as uptime checkers ask, where it costs nothing: the page and
    // the probes (it was 405, read as down); not the data.
    let head = |url: String| {
        let out = Command::new("curl")
            .args(["-sS", "-I", "-o", "/dev/null", "-w", "%{http_code}", &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(head(format!("http://{}/", s.addr)), "200");
    assert_eq!(head(format!("http://{}/healthz", s.admin)), "200");
    assert_eq!(head(format!("http://{}/readyz", s.admin)), "200");
    assert_eq!(head(format!("http://{}/mcp/flows", s.addr)), "405");
}

#[test]
fn an_inventory_change_takes_effect_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.json");
    let original = std::fs::read_to_string(project_root().join("demo/inventory.json")).unwrap();
    std::fs::write(&inventory, &original).unwrap();
    let args = capture_args(&inventory);
    let s = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let client_pod = |s: &Server| {
        let body = s.get_json("/mcp/flows?ip=10.0.0.6&limit=1");
        body["flows"][0]["client"]["pod"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(
        client_pod(&s).as_deref(),
        Some("legacy-browser-5b8f9d7c6-qrz2m")
    );
    let wait_for = |want: Option<&str>| {
        wait::until(Duration::from_secs(10), "the mapping", || {
            let got = client_pod(&s);
            if got.as_deref() == want {
                Ok(())
            } else {
                Err(format!("{got:?}, not {want:?}"))
            }
        })
    };
    // Replace the file the way kubectl > tmp && mv would (written in
    // place, a reload could read it half written).
    let replace = |text: &str| {
        let tmp = dir.path().join("inventory.json.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &inventory).unwrap();
    };
    replace(&original.replace("legacy-browser-5b8f9d7c6-qrz2m", "browser-v2-0"));
    wait_for(Some("browser-v2-0"));
    // A broken file keeps the last good mapping.
    replace("{ this is not json");
    wait::until_holds(Duration::from_secs(10), "the failed reload said", || {
        s.stderr.lock().unwrap().contains("inventory reload failed")
    });
    assert_eq!(client_pod(&s).as_deref(), Some("browser-v2-0"));
    // And an emptied inventory removes the names.
    replace(r#"{"apiVersion":"v1","kind":"List","items":[]}"#);
    wait_for(None);
}

/// Every answer's coverage gives its data's age as of the answer, not as of
/// the snapshot's preparation: data read once (as a stalled capture's
/// last snapshot) is older at each answer, in the summary (prepared once a
/// snapshot, all but its coverage) as in the flows and the workloads.
#[test]
fn coverage_ages_as_of_each_answer() {
    let s = start(&[]);
    let paths = ["/mcp/flows/summary", "/mcp/flows?limit=1", "/mcp/workloads"];
    let answers = || {
        paths.map(|path| {
            let r = s.get(path);
            assert_eq!(r.status, 200, "{path}");
            String::from_utf8(r.body).unwrap()
        })
    };
    let age = |answer: &str| {
        serde_json::from_str::<Value>(answer).unwrap()["coverage"]["agents"][0]["age_s"]
            .as_f64()
            .expect("an age")
    };
    let before = answers();
    std::thread::sleep(Duration::from_millis(1500));
    let after = answers();
    for ((path, b), a) in paths.iter().zip(&before).zip(&after) {
        let (then, now) = (age(b), age(a));
        assert!(now >= then + 1.4, "{path}: {then} s, then {now} s");
        assert_eq!(without_ages(a), without_ages(b), "{path}");
    }
}

#[test]
fn without_an_inventory_the_api_serves_ips() {
    let root = project_root();
    let demo = root.join("demo/demo.pcap");
    let s = Server::start(&["-r", demo.to_str().unwrap()]);
    let body = s.get_json(&format!("/mcp/flows?format=full&{ALL}"));
    for f in body["flows"].as_array().unwrap() {
        assert!(f["client"]["ip"].is_string());
        for key in ["pod", "ns", "svc", "node", "container_id", "external"] {
            assert!(
                f["client"].get(key).is_none() && f["server"].get(key).is_none(),
                "{key} without inventory"
            );
        }
    }
    let summary = s.get_json("/mcp/flows/summary");
    assert_eq!(summary["by_namespace"], serde_json::json!({}));
    assert_eq!(summary["cross_namespace"], serde_json::json!([]));
    assert!(summary.get("external_bytes").is_none());
    // Aggregation without attributes groups every endpoint by IP.
    let agg = s.get_json(&format!("/mcp/flows?aggregate=namespace&{ALL}"));
    assert!(agg["total"].as_u64().unwrap() <= body["total"].as_u64().unwrap());
    assert_eq!(s.terminate(), 0, "SIGTERM ends a clean run with status 0");
}

/// `/mcp/workloads`: every pod, service and namespace of the inventory with
/// its traffic, checked against the flows themselves.
#[test]
fn workloads_active_and_idle() {
    let s = start(&[]);
    let all = s.get_json("/mcp/workloads?limit=100000");
    assert_eq!(all["names_known"], true);
    let workloads = all["workloads"].as_array().unwrap();
    assert_eq!(all["total"].as_u64().unwrap() as usize, workloads.len());
    let flows = s.get_json("/mcp/flows?format=full&limit=100000");
    let flows = flows["flows"].as_array().unwrap();
    for w in workloads.iter().filter(|w| w["kind"] == "pod") {
        let (ns, name) = (&w["namespace"], &w["name"]);
        let on = |side: &str| {
            flows
                .iter()
                .filter(|f| f[side]["pod"] == *name && f[side]["ns"] == *ns)
                .collect::<Vec<_>>()
        };
        let (served, opened) = (on("server"), on("client"));
        assert_eq!(
            w["flows_in"].as_u64().unwrap() as usize,
            served.len(),
            "{w}"
        );
        assert_eq!(
            w["flows_out"].as_u64().unwrap() as usize,
            opened.len(),
            "{w}"
        );
        let sum = |fs: &[&Value], stats: &str, field: &str| -> u64 {
            fs.iter().map(|f| f[stats][field].as_u64().unwrap()).sum()
        };
        assert_eq!(
            w["bytes_in"].as_u64().unwrap(),
            sum(&served, "server_stats", "rx_bytes") + sum(&opened, "client_stats", "rx_bytes"),
            "{w}"
        );
        assert_eq!(
            w["active"],
            !(served.is_empty() && opened.is_empty()),
            "{w}"
        );
        assert_eq!(w["last_seen"].is_string(), w["active"] == true, "{w}");
    }
    // A service has flows in only: those to it (its pods' calls out are
    // the pods'), and is active only when something connects to it.
    for w in workloads.iter().filter(|w| w["kind"] == "service") {
        let (ns, name) = (&w["namespace"], &w["name"]);
        let served = flows
            .iter()
            .filter(|f| f["server"]["svc"] == *name && f["server"]["ns"] == *ns)
            .count();
        assert_eq!(w["flows_in"].as_u64().unwrap() as usize, served, "{w}");
        assert_eq!(w["flows_out"], 0, "{w}");
        assert_eq!(w["active"], served > 0, "{w}");
    }
    let idle = s.get_json("/mcp/workloads?state=idle&kind=pod&limit=100000");
    let idle = idle["workloads"].as_array().unwrap();
    let expected: Vec<&Value> = workloads
        .iter()
        .filter(|w| w["kind"] == "pod" && w["active"] == false)
        .collect();
    assert_eq!(idle.iter().collect::<Vec<_>>(), expected);
    let active = s.get_json("/mcp/workloads?state=active&kind=pod&limit=100000")["total"].clone();
    assert!(active.as_u64().unwrap() > 0);
    let shop = s.get_json("/mcp/workloads?namespace=shop&kind=namespace");
    assert_eq!(shop["workloads"].as_array().unwrap().len(), 1);
    // "What is busiest?": the order asked, which limit cuts (the order by
    // name cut the busiest away).
    let busiest = |sort: &str, key: &dyn Fn(&Value) -> u64| {
        let mut expected: Vec<&Value> = workloads.iter().collect();
        expected.sort_by_key(|w| std::cmp::Reverse(key(w)));
        let top = s.get_json(&format!("/mcp/workloads?sort={sort}&limit=5"));
        let top = top["workloads"].as_array().unwrap();
        assert_eq!(top.len(), 5, "{sort}");
        assert_eq!(
            top.iter().map(key).collect::<Vec<_>>(),
            expected[..5].iter().map(|w| key(w)).collect::<Vec<_>>(),
            "{sort}"
        );
        assert!(key(&top[0]) > 0, "{sort}");
    };
    busiest("bytes", &|w| {
        w["bytes_in"].as_u64().unwrap() + w["bytes_out"].as_u64().unwrap()
    });
    busiest("flows", &|w| {
        w["flows_in"].as_u64().unwrap() + w["flows_out"].as_u64().unwrap()
    });
    for (query, parameter) in [
        ("sort=busiest", "sort"),
        ("limit=%2B2", "limit"),
        ("state=asleep", "state"),
        ("kind=deployment", "kind"),
        ("limit=-1", "limit"),
        ("colour=red", "colour"),
        ("limit=1&limit=2", "limit"),
        ("namespace=", "namespace"),
        ("namespace=%FF", "namespace"),
    ] {
        let r = s.get(&format!("/mcp/workloads?{query}"));
        assert_eq!(r.status, 400, "{query}");
        assert_eq!(r.json()["parameter"], parameter, "{query}");
    }
    // Without names there is nothing to list, and the answer says so.
    let bare = Server::start(&[
        "-r",
        project_root().join("demo/demo.pcap").to_str().unwrap(),
    ]);
    let none = bare.get_json("/mcp/workloads");
    assert_eq!(
        (none["names_known"].clone(), none["total"].clone()),
        (json!(false), json!(0))
    );
}

/// A `--dump` target answered other than 200 prints its answer (the JSON
/// error naming the parameter), says so on stderr and makes the exit
/// status 2, as a damaged file does: a script sees the failure.
#[test]
fn a_refused_dump_prints_its_error_and_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .arg("-r")
        .arg(project_root().join("demo/demo.pcap"))
        .args(["--dump", "/mcp/flows?limit=-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["parameter"], "limit", "{body}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--dump /mcp/flows?limit=-1: HTTP 400"),
        "{stderr}"
    );
}
