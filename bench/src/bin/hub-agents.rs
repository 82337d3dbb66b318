//! Stand-in agents for the hub benchmark (`bench/harness/hub.py`): N
//! agents, each serving a feed of M flows in the real encoding
//! (`api::feed`), on 127.0.0.1 ports it prints one per line, until killed;
//! and the Kubernetes inventory (`--inventory FILE`) that names the flows'
//! servers: pods in 20 namespaces on N nodes.
//!
//! Each agent's clients are its own; its servers are shared pods, so the
//! hub's names and aggregations have work to do. Every agent shares a
//! twentieth of its flows with the next (as the two nodes of a cross-node
//! connection do), so the merge combines as well as gathers. TCP flows
//! carry exact handshake samples, one in a hundred a sketch.
//!
//! With `--changing`, an agent's feed alternates between two versions
//! whose every handshake digest differs (each sample 1 µs apart, each
//! sketch bucket one count apart), so that no digest is the same as in the
//! hub's last snapshot: the worst case for a hub that shares unchanged
//! digests between rounds.
//!
//!     hub-agents --agents 32 --flows 50000 --inventory inv.json [--changing]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use api::feed::{AtMost, Feed, FeedFlow, FeedHead, VERSION, WireDigest, WireHealth, WireLosses};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;

const NAMESPACES: u32 = 20;
const SERVER_PODS: u32 = 5_000;

const USAGE: &str = "usage: hub-agents [--agents N] [--flows N] [--inventory FILE] [--changing]
Serves N stand-in agents (default 32) of M flows each (default 50000) on
127.0.0.1 ports it prints one a line, then `ready`, until killed.
";

/// Refuses what is not an option above (an unknown one started 32 agents
/// of 50,000 flows: `--help` did), and says how to use it on `--help`.
fn check_args() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--agents" | "--flows" | "--inventory" if i + 1 < args.len() => i += 2,
            "--changing" => i += 1,
            other => {
                eprint!("hub-agents: unknown or incomplete argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn server_ip(n: u32) -> [u8; 4] {
    let [_, _, hi, lo] = n.to_be_bytes();
    [198, 19, hi, lo]
}

fn client_ip(agent: u32, n: u32) -> [u8; 4] {
    let [_, _, hi, lo] = n.to_be_bytes();
    [10, agent as u8, hi, lo]
}

fn addr(ip: [u8; 4]) -> [u8; 16] {
    pipeline::packet::Addr::from_v4(ip).0
}

/// Flow `i` of `agent`; `version` shifts its handshake samples.
fn flow(agent: u32, i: u32, rng: &mut u64, version: u32) -> FeedFlow {
    let mut next = || {
        // xorshift: cheap, deterministic.
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let tcp = !i.is_multiple_of(5);
    let server = (next() % u64::from(SERVER_PODS)) as u32;
    let pkts = 2 + next() % 2000;
    let legs = if tcp {
        let leg = |base: u64, r: &mut dyn FnMut() -> u64| {
            if i.is_multiple_of(100) {
                WireDigest::Sketch(AtMost(
                    (0..40)
                        .map(|b| (200 + b as u16, 1 + version + (r() % 50) as u32))
                        .collect(),
                ))
            } else {
                WireDigest::Exact(AtMost(
                    (0..3)
                        .map(|_| (base + r() % 5000) as u32 + version)
                        .collect(),
                ))
            }
        };
        [Some(leg(200, &mut next)), Some(leg(300, &mut next))]
    } else {
        [None, None]
    };
    FeedFlow {
        proto: if tcp { 6 } else { 17 },
        client: addr(client_ip(agent, i)),
        server: addr(server_ip(server)),
        server_port: [443, 80, 5432, 6379, 53][(i % 5) as usize],
        sent: [(pkts, pkts * 700), (pkts / 2 + 1, pkts * 300)],
        // An Ethernet header in front of each IP packet.
        link_bytes: [pkts * 14, (pkts / 2 + 1) * 14],
        pps: [pkts as f64 / 10.0, pkts as f64 / 20.0],
        bps: [pkts as f64 * 560.0, pkts as f64 * 240.0],
        first_seen_ns: 1_000_000_000,
        last_seen_ns: 2_000_000_000,
        connections: 1 + next() % 10,
        legs,
        mirror: None,
        // TCP flows: one connection, established and closed, its handshake
        // in the 1-2.5 ms bucket.
        tcp: tcp.then_some(WireHealth {
            sent: [[0; 3]; 2],
            connections: [1, 0, 0, 0, 1, 0],
        }),
        tally: tcp.then_some((std::array::from_fn(|b| u32::from(b == 4)), 1_500)),
    }
}

fn feed(agent: u32, agents: u32, flows: u32, version: u32) -> Feed {
    let mut rng = 0x9e37_79b9_7f4a_7c15 ^ u64::from(agent);
    let mut list: Vec<FeedFlow> = (0..flows)
        .map(|i| flow(agent, i, &mut rng, version))
        .collect();
    // A twentieth of the previous agent's flows, seen here too.
    let prev = (agent + agents - 1) % agents;
    let mut prev_rng = 0x9e37_79b9_7f4a_7c15 ^ u64::from(prev);
    let shared: Vec<FeedFlow> = (0..flows)
        .map(|i| flow(prev, i, &mut prev_rng, version))
        .filter(|f| u32::from_be_bytes(f.client[12..16].try_into().unwrap()) % 20 == 0)
        .collect();
    let n = shared.len();
    list.truncate(flows as usize - n);
    list.extend(shared);
    // In the API's order, as a real agent's feed is (its snapshot's).
    list.sort_by_cached_key(|f| {
        f.clone()
            .into_record()
            .map(|r| pipeline::snapshot::api_rank(&r))
    });
    Feed {
        head: FeedHead {
            version: VERSION,
            name: format!("agent-{agent}"),
            // Each stand-in is an agent of its own.
            instance: u64::from(agent),
            node: Some(format!("node-{agent}")),
            sequence: 1,
            as_of_ns: 2_000_000_000,
            since_ns: Some(1_000_000_000),
            losses: WireLosses::default(),
        },
        flows: list,
    }
}

fn inventory(agents: u32) -> serde_json::Value {
    let pods = (0..SERVER_PODS).map(|n| {
        let [a, b, c, d] = server_ip(n);
        json!({"kind": "Pod",
               "metadata": {"name": format!("server-{n}"), "namespace": format!("ns-{}", n % NAMESPACES)},
               "spec": {"nodeName": format!("node-{}", n % agents), "containers": []},
               "status": {"phase": "Running", "podIP": format!("{a}.{b}.{c}.{d}")}})
    });
    let nodes = (0..agents).map(|n| json!({"kind": "Node", "metadata": {"name": format!("node-{n}")}, "status": {"addresses": []}}));
    json!({"kind": "List", "items": pods.chain(nodes).collect::<Vec<_>>()})
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    check_args();
    let agents = arg("--agents", 32) as u32;
    let flows = arg("--flows", 50_000) as u32;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--inventory") {
        std::fs::write(&args[i + 1], inventory(agents).to_string()).expect("writing the inventory");
    }
    let versions = if args.iter().any(|a| a == "--changing") {
        2
    } else {
        1
    };
    let mut bytes_total = 0;
    for agent in 0..agents {
        let bodies: Vec<Bytes> = (0..versions)
            .map(|v| Bytes::from(feed(agent, agents, flows, v).encode()))
            .collect();
        bytes_total += bodies[0].len();
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("binding an agent port");
        println!("{}", listener.local_addr().unwrap());
        // Which version the next pull gets.
        let bodies = Arc::new((bodies, std::sync::atomic::AtomicUsize::new(0)));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let bodies = bodies.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        let (versions, next) = &*bodies;
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let body = versions[n % versions.len()].clone();
                        async move { Ok::<_, std::convert::Infallible>(Response::new(Full::new(body))) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    }
    eprintln!("hub-agents: {agents} agents, {flows} flows each, {bytes_total} feed bytes in all");
    println!("ready");
    std::future::pending::<()>().await;
}
