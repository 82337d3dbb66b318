//! `flowtap hub` over real agents: three flowtaps each reading a different
//! corpus capture, and one hub pulling them. Its answer must hold every flow
//! of the three truths exactly, agree with one flowtap reading all three
//! captures (flows, filters, aggregation, limits, summary, MCP tools, all but
//! the rates, which depend on each snapshot's time), and say in its
//! coverage which agent is missing when one stops, then recover; and name
//! an agent that never answers without waiting on it past its timeout.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::apiserver::ApiServer;
use common::metrics::sample;
use common::server::Server;
use common::wait;
use common::{Key, Run, corpus_dir, free_port, parse_flows, truth};
use serde_json::{Value, json};

const CAPTURES: [(&str, &str); 3] = [
    ("02_pcpp_example", "node-a"),
    ("05_ndpi_reddit_ipv6", "node-b"),
    ("08_ndpi_bot_vlan", "node-c"),
];

const INTERVAL_S: f64 = 1.0;

fn capture(name: &str) -> String {
    corpus_dir()
        .join("captures")
        .join(format!("{name}.pcap"))
        .to_string_lossy()
        .into_owned()
}

fn agent(name: &str, node: &str, listen: &str) -> Server {
    // Returns once its capture is read: its feed is complete from then on.
    Server::start_on(&["-r", &capture(name), "--node-name", node], listen)
}

/// Polls the hub's summary until `check` holds (bounded by `within`).
fn wait_for(
    hub: &Server,
    within: Duration,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Duration {
    let started = Instant::now();
    wait::until(within, what, || {
        let summary = hub.get_json("/mcp/flows/summary");
        if check(&summary) {
            Ok(())
        } else {
            Err(summary["coverage"].to_string())
        }
    });
    started.elapsed()
}

/// Drops what depends on the moment of the snapshot (rates, last-packet
/// times) or on who answered (coverage, seen_by), recursively.
fn timeless(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| {
                    !(k.ends_with("pps")
                        || k.ends_with("bps")
                        || *k == "timestamp"
                        || *k == "coverage"
                        || *k == "seen_by")
                })
                .map(|(k, v)| (k.clone(), timeless(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(timeless).collect()),
        other => other.clone(),
    }
}

fn mcp_session(server: &Server) -> String {
    let r = server.send(
        "POST",
        "/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
               "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                          "clientInfo": {"name": "hub-test", "version": "1"}}})
        .to_string()
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.header("mcp-session-id").expect("a session").to_owned()
}

fn mcp_call(server: &Server, session: &str, tool: &str, arguments: Value) -> Value {
    let r = server.send(
        "POST",
        "/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Mcp-Session-Id", session),
            ("Mcp-Protocol-Version", "2025-06-18"),
        ],
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": tool, "arguments": arguments}})
        .to_string()
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let result = r.json()["result"].clone();
    assert_eq!(result["isError"], false, "{result}");
    result["structuredContent"].clone()
}

#[test]
fn a_hub_answers_for_every_agent_and_says_which_are_missing() {
    // Three agents, each a different capture; the third on a port it can
    // be restarted on.
    let third = format!("127.0.0.1:{}", free_port());
    let mut agents: Vec<Server> = CAPTURES[..2]
        .iter()
        .map(|(name, node)| agent(name, node, "127.0.0.1:0"))
        .collect();
    agents.push(agent(CAPTURES[2].0, CAPTURES[2].1, &third));
    let urls: Vec<String> = agents
        .iter()
        .map(|a| format!("http://{}", a.addr))
        .collect();
    let hub_over_the_agents = |more: &[&str]| {
        let (agents, interval) = (urls.join(","), INTERVAL_S.to_string());
        let mut args = vec!["hub", "--agent", &agents, "--snapshot-interval", &interval];
        args.extend_from_slice(more);
        Server::start_serving(&args)
    };
    let hub = hub_over_the_agents(&[]);
    wait_for(&hub, Duration::from_secs(30), "all agents", |s| {
        s["coverage"]["agents_answered"] == 3
    });

    // Every flow of the union of the truths, exactly.
    let mut expected = BTreeMap::new();
    let mut flows_in_truths = 0;
    for (name, _) in CAPTURES {
        let (flows, _) = truth::read(&corpus_dir(), name, &BTreeMap::new());
        flows_in_truths += flows.len();
        expected.extend(flows);
    }
    assert_eq!(
        expected.len(),
        flows_in_truths,
        "the captures share no flow"
    );
    let full = hub.get_json("/mcp/flows?format=full&limit=100000");
    let raw = hub.get_json("/mcp/flows?format=raw&limit=100000");
    let run = Run {
        status: 0,
        flows: parse_flows(&full, &raw),
        frames_read: 0,
        stderr: String::new(),
        bodies: Vec::new(),
    };
    let errors = truth::differences(&expected, &run);
    assert!(
        errors.is_empty(),
        "{} differences:\n{}",
        errors.len(),
        errors.join("\n")
    );
    // Each flow says which agent saw it: the node its capture stands for.
    let by_key: BTreeMap<Key, String> = run
        .flows
        .iter()
        .map(|f| (f.key.clone(), f.key.1.to_string()))
        .collect();
    assert_eq!(by_key.len(), expected.len());
    for f in full["flows"].as_array().unwrap() {
        let seen = f["seen_by"].as_array().expect("seen_by in format=full");
        assert_eq!(seen.len(), 1, "{f}");
    }

    // The same answers as one flowtap reading all three captures.
    let paths: Vec<String> = CAPTURES.iter().map(|(n, _)| capture(n)).collect();
    let mut args = vec!["-r"];
    args.extend(paths.iter().map(String::as_str));
    let single = Server::start(&args);
    for target in [
        "/mcp/flows?limit=100000",
        "/mcp/flows?format=full&limit=100000",
        "/mcp/flows?format=raw&limit=100000",
        "/mcp/flows?limit=7",
        "/mcp/flows?l4proto=udp&limit=100000",
        "/mcp/flows?ip=10.0.0.0%2F8&format=full&limit=100000",
        "/mcp/flows?sort=handshake_p99&limit=20",
        "/mcp/flows?sort=pkts&limit=15&format=full",
        "/mcp/flows?min_handshake_p99_us=10000&limit=100000",
        "/mcp/flows?aggregate=namespace&format=full&limit=100000",
        "/mcp/flows?aggregate=pod&limit=100000",
        "/mcp/flows/summary",
    ] {
        assert_eq!(
            timeless(&hub.get_json(target)),
            timeless(&single.get_json(target)),
            "{target}"
        );
    }
    // The per-pair series (bytes, connections, handshake histograms): the
    // hub's, from its agents' feeds, are the single flowtap's.
    let pair_series = |metrics: String| -> Vec<String> {
        metrics
            .lines()
            .filter(|l| l.starts_with("flowtap_pair_"))
            .map(str::to_owned)
            .collect()
    };
    let hub_pairs = pair_series(hub.metrics());
    assert!(
        hub_pairs
            .iter()
            .any(|l| l.starts_with("flowtap_pair_handshake_seconds_bucket")),
        "{hub_pairs:?}"
    );
    assert_eq!(hub_pairs, pair_series(single.metrics()));
    let (hub_session, single_session) = (mcp_session(&hub), mcp_session(&single));
    for (tool, arguments) in [
        ("list_l4_flows", json!({"limit": 50, "sort": "bytes"})),
        (
            "list_l4_flows",
            json!({"l4proto": "tcp", "limit": 1000, "format": "full"}),
        ),
        ("get_l4_flow_summary", json!({})),
    ] {
        let from_hub = mcp_call(&hub, &hub_session, tool, arguments.clone());
        let from_single = mcp_call(&single, &single_session, tool, arguments.clone());
        assert_eq!(
            timeless(&from_hub),
            timeless(&from_single),
            "{tool} {arguments}"
        );
        assert_eq!(from_hub["coverage"]["agents_expected"], 3);
    }

    // A hub allowed fewer agents than it finds pulls that many, and names
    // the rest missing, saying why: its answer is not passed off as whole.
    let bounded = hub_over_the_agents(&["--max-agents", "2"]);
    wait_for(&bounded, Duration::from_secs(30), "two agents", |s| {
        s["coverage"]["agents_answered"] == 2
    });
    let summary = bounded.get_json("/mcp/flows/summary");
    assert_eq!(summary["coverage"]["agents_expected"], 3, "{summary}");
    let missing = summary["coverage"]["agents_missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{summary}");
    let left_out = agent_in(&summary["coverage"], missing[0].as_str().unwrap());
    assert_eq!(
        left_out["error"], "not pulled: more agents than --max-agents 2",
        "{left_out}"
    );
    let metrics = bounded.metrics();
    assert_eq!(sample(&metrics, "flowtap_agents_expected"), 3.0);
    assert_eq!(sample(&metrics, "flowtap_agents_answered"), 2.0);
    assert!(
        summary["total_flows"].as_u64().unwrap() < expected.len() as u64,
        "{summary}"
    );
    drop(bounded);

    // Room for the largest feed only (--max-feed-bytes-held): pulls wait
    // for one another's feeds to be decoded, and the answer is whole.
    let largest = agents
        .iter()
        .map(|a| a.send("GET", "/internal/v1/feed", &[], b"").body.len())
        .max()
        .unwrap()
        .to_string();
    let one_at_a_time = hub_over_the_agents(&[
        "--max-feed-bytes",
        &largest,
        "--max-feed-bytes-held",
        &largest,
    ]);
    wait_for(&one_at_a_time, Duration::from_secs(30), "all agents", |s| {
        s["coverage"]["agents_answered"] == 3
    });
    let summary = one_at_a_time.get_json("/mcp/flows/summary");
    assert_eq!(summary["total_flows"], expected.len(), "{summary}");
    let metrics = one_at_a_time.metrics();
    assert_eq!(
        sample(&metrics, "flowtap_hub_feed_room_bytes"),
        largest.parse::<f64>().unwrap()
    );
    // Three pulls start at once every round: some wait (within ten rounds
    // on however loaded a machine).
    let waited = || {
        sample(
            &one_at_a_time.metrics(),
            "flowtap_hub_feed_room_waits_total",
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while waited() == 0.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(waited() > 0.0, "no pull waited for room");
    drop(one_at_a_time);
    // Room below one feed's bound is refused at start; without the option,
    // the room is at least one feed's bound.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .args(["hub", "--agent", &urls[0], "--max-feed-bytes", "2Gi"])
        .args(["--max-feed-bytes-held", "1Gi"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--max-feed-bytes-held 1073741824 is below --max-feed-bytes 2147483648"),
        "{stderr}"
    );
    for (extra, room) in [
        (&[][..], 268435456.0),
        (&["--max-feed-bytes", "2Gi"][..], 2147483648.0),
    ] {
        let metrics = hub_over_the_agents(extra).metrics();
        assert_eq!(
            sample(&metrics, "flowtap_hub_feed_room_bytes"),
            room,
            "{extra:?}"
        );
    }

    // One agent stops: named missing within two intervals, the others'
    // flows still served.
    let stopped = agents.pop().unwrap();
    let c_flows = {
        let (flows, _) = truth::read(&corpus_dir(), CAPTURES[2].0, &BTreeMap::new());
        flows.len()
    };
    let rounds = || sample(&hub.metrics(), "flowtap_snapshots_published_total");
    let published = rounds();
    stopped.terminate();
    let took = wait_for(
        &hub,
        Duration::from_secs(10),
        "the stopped agent named",
        |s| s["coverage"]["agents_missing"] == json!([format!("http://{third}")]),
    );
    // Two intervals of the hub's own clock: where a loaded machine made its
    // rounds late, named by the second round after the one under way at
    // the stop (the snapshots counted after the answer may be one more).
    let rounds_taken = rounds() - published;
    assert!(
        took.as_secs_f64() <= 2.0 * INTERVAL_S || rounds_taken <= 3.0,
        "missing agent named after {took:?} and {rounds_taken} snapshots, more than two intervals"
    );
    let summary = hub.get_json("/mcp/flows/summary");
    assert_eq!(summary["coverage"]["agents_answered"], 2);
    let missing = agent_in(&summary["coverage"], &format!("http://{third}"));
    assert_eq!(missing["answered"], false, "{missing}");
    assert!(
        missing["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{missing}"
    );
    // Named with the node it last reported, in the answer and in
    // flowtap_agent_up: the series that read 1 reads 0, rather than going
    // stale beside a new one without a node.
    assert_eq!(missing["node"], CAPTURES[2].1, "{missing}");
    let up = format!(
        "flowtap_agent_up{{agent=\"http://{third}\",node=\"{}\"}}",
        CAPTURES[2].1
    );
    assert_eq!(sample(&hub.metrics(), &up), 0.0);
    // Its pulls counted as failed: it said it was shutting down, then
    // nothing listened at its address.
    let metrics = hub.metrics();
    let failed = |reason: &str| {
        sample(
            &metrics,
            &format!("flowtap_hub_pulls_failed_total{{reason=\"{reason}\"}}"),
        )
    };
    assert!(
        failed("unreachable") + failed("refused") >= 1.0,
        "{metrics}"
    );
    assert_eq!(failed("unreadable"), 0.0, "{metrics}");
    // In /metrics, what the agents that answered lost, as their coverage
    // says (a hub's capture families count nothing: they read 0); nothing
    // for the missing one.
    let metrics = hub.metrics();
    for a in summary["coverage"]["agents"].as_array().unwrap() {
        for loss in ["capture_drops", "flows_evicted", "packets_in_no_flow"] {
            let series = format!(
                "flowtap_agent_losses_total{{agent=\"{}\",node=\"{}\",loss=\"{loss}\"}}",
                a["name"].as_str().unwrap(),
                a["node"].as_str().unwrap_or("")
            );
            if a["answered"] == true {
                assert_eq!(
                    sample(&metrics, &series),
                    a[loss].as_f64().unwrap_or(0.0),
                    "{series}"
                );
            } else {
                assert!(!metrics.contains(&series), "{series}");
            }
        }
    }
    assert_eq!(
        summary["total_flows"].as_u64().unwrap() as usize,
        expected.len() - c_flows
    );

    // It comes back: the whole answer again, and its flows, back in the
    // answer, count in the per-pair series only what they gained while
    // it was away (nothing: it read the same capture), not all again.
    let _back = agent(CAPTURES[2].0, CAPTURES[2].1, &third);
    wait_for(&hub, Duration::from_secs(10), "the agent back", |s| {
        s["coverage"]["agents_answered"] == 3 && s["total_flows"] == expected.len()
    });
    assert_eq!(pair_series(hub.metrics()), pair_series(single.metrics()));
}

#[test]
fn agents_from_the_endpoints_of_their_service() {
    // Two agents on two loopback addresses and one port, as a DaemonSet's
    // pods behind a headless Service; the hub finds them through the
    // EndpointSlice the API server stand-in serves, and follows it.
    let port = free_port();
    let a = agent(CAPTURES[0].0, "node-a", &format!("127.0.0.2:{port}"));
    let b = agent(CAPTURES[1].0, "node-b", &format!("127.0.0.3:{port}"));
    let api = ApiServer::start();
    // Each endpoint as (address, ready), on the node its agent names. No
    // endpoint at all is `null`, as the API writes it (Go's nil slice).
    let slice = |service: &str, endpoints: &[(&str, bool)]| {
        let node = |a: &str| if a == "127.0.0.2" { "node-a" } else { "node-b" };
        let endpoints: Vec<Value> = endpoints
            .iter()
            .map(|(a, ready)| json!({"addresses": [a], "conditions": {"ready": ready}, "nodeName": node(a)}))
            .collect();
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{service}-x"), "namespace": "monitoring",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": if endpoints.is_empty() { Value::Null } else { json!(endpoints) },
            "ports": [{"port": port, "protocol": "TCP"}]
        })
    };
    let agents = |endpoints: &[(&str, bool)]| slice("flowtap-agents", endpoints);
    // Another Service with no pods: its slice must not fail the list.
    api.post("/_control/apply", &slice("idle", &[]));
    api.post("/_control/apply", &agents(&[("127.0.0.2", true)]));
    let kubeconfig = api.kubeconfig.to_str().unwrap().to_owned();
    let service = format!("monitoring/flowtap-agents:{port}");
    let hub = Server::start_serving_with_env(
        &[
            "hub",
            "--agents-service",
            &service,
            "--k8s-watch",
            "--snapshot-interval",
            "0.5",
        ],
        &[("KUBECONFIG", &kubeconfig)],
    );
    wait_for(&hub, Duration::from_secs(30), "the first agent", |s| {
        s["coverage"]["agents_answered"] == 1
    });
    api.post(
        "/_control/apply",
        &agents(&[("127.0.0.2", true), ("127.0.0.3", true)]),
    );
    wait_for(&hub, Duration::from_secs(10), "the second agent", |s| {
        s["coverage"]["agents_answered"] == 2
    });
    let nodes: Vec<Value> = hub.get_json("/mcp/flows/summary")["coverage"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["node"].clone())
        .collect();
    assert_eq!(nodes, [json!("node-a"), json!("node-b")]);
    // The first agent's pod stops being ready (restarting, or failing its
    // probe): its node is not seen, and the coverage says so rather than
    // forgetting it.
    let first = format!("http://127.0.0.2:{port}");
    api.post(
        "/_control/apply",
        &agents(&[("127.0.0.2", false), ("127.0.0.3", true)]),
    );
    wait_for(
        &hub,
        Duration::from_secs(10),
        "the first agent not ready",
        |s| s["coverage"]["agents_missing"] == json!([first]),
    );
    let coverage = hub.get_json("/mcp/flows/summary")["coverage"].clone();
    assert_eq!(coverage["agents_expected"], 2, "{coverage}");
    assert_eq!(coverage["agents_answered"], 1, "{coverage}");
    let not_ready = agent_in(&coverage, &first);
    assert!(
        not_ready["error"]
            .as_str()
            .unwrap()
            .starts_with("not ready"),
        "{not_ready}"
    );
    assert_eq!(not_ready["node"], "node-a", "{not_ready}");
    // Its pod gone from the slice (deleted, its node drained): no longer
    // expected.
    api.post("/_control/apply", &agents(&[("127.0.0.3", true)]));
    wait_for(&hub, Duration::from_secs(10), "the first agent gone", |s| {
        s["coverage"]["agents_expected"] == 1 && s["coverage"]["agents"][0]["node"] == "node-b"
    });
    // A ready endpoint whose agent does not answer is named missing with
    // the node its slice names (it was named without one).
    let silent = format!("http://127.0.0.4:{port}");
    api.post(
        "/_control/apply",
        &agents(&[("127.0.0.3", true), ("127.0.0.4", true)]),
    );
    wait_for(
        &hub,
        Duration::from_secs(10),
        "a ready agent not answering",
        |s| s["coverage"]["agents_missing"] == json!([silent]),
    );
    let coverage = hub.get_json("/mcp/flows/summary")["coverage"].clone();
    assert_eq!(agent_in(&coverage, &silent)["node"], "node-b", "{coverage}");
    // No agent at all: the Service itself is named missing, so that an
    // empty answer does not read as a cluster without traffic.
    api.post("/_control/apply", &agents(&[]));
    let service = format!("service:monitoring/flowtap-agents:{port}");
    wait_for(&hub, Duration::from_secs(10), "no agents", |s| {
        s["coverage"]["agents_missing"] == json!([service])
    });
    let summary = hub.get_json("/mcp/flows/summary");
    assert_eq!(summary["coverage"]["agents_answered"], 0);
    assert_eq!(summary["total_flows"], 0);
    drop((a, b));
}

/// Feeds an agent served a hub, by its own request metrics.
fn feeds_served(agent: &Server) -> u64 {
    let text = agent.metrics();
    let series = "flowtap_http_requests_total{path=\"/internal/v1/feed\",status=\"200\"}";
    // The series appears with the first feed served.
    if text.contains(series) {
        sample(&text, series) as u64
    } else {
        0
    }
}

#[test]
fn a_hub_nobody_asks_pauses_and_a_request_wakes_it_for_a_fresh_answer() {
    let listen = format!("127.0.0.1:{}", free_port());
    let first = agent(CAPTURES[0].0, CAPTURES[0].1, &listen);
    let hub = Server::start_serving(&[
        "hub",
        "--agent",
        &format!("http://{listen}"),
        "--snapshot-interval",
        "0.2",
        "--idle-after",
        "1",
    ]);
    wait_for(&hub, Duration::from_secs(30), "the agent", |s| {
        s["coverage"]["agents"][0]["node"] == CAPTURES[0].1
    });

    // Nobody asks the hub: after a second it stops pulling (it pulled
    // every 0.2 s while asked).
    std::thread::sleep(Duration::from_millis(2500));
    let paused = feeds_served(&first);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(feeds_served(&first), paused, "pulls while nobody asks");

    // Meanwhile the agent's data changes (another capture, another node),
    // unseen by the paused hub.
    drop(first);
    let second = agent(CAPTURES[1].0, CAPTURES[1].1, &listen);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(feeds_served(&second), 0, "pulls while nobody asks");

    // A request wakes the hub, and is answered from the round it started,
    // not from the snapshot made before the pause.
    let started = Instant::now();
    let summary = hub.get_json("/mcp/flows/summary");
    let waited = started.elapsed();
    assert_eq!(
        summary["coverage"]["agents"][0]["node"], CAPTURES[1].1,
        "answered from before the pause: {}",
        summary["coverage"]
    );
    assert_eq!(summary["coverage"]["agents_answered"], 1);
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");

    // Asked again, it pulls every interval again.
    let resumed = feeds_served(&second);
    for _ in 0..10 {
        hub.get_json("/mcp/flows?limit=1");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        feeds_served(&second) >= resumed + 3,
        "not pulling while asked"
    );
}

/// An agent that takes the hub's connection and never answers (a flowtap
/// that hangs, a node whose pod network stalls) is missing from every
/// answer, named with why, while the other agent's flows keep being served
/// whole and pulled every round: the silent one costs a round its timeout,
/// no more. The other's data is dated by its own snapshot, not the pull.
#[test]
fn an_agent_that_never_answers_is_named_missing_and_the_others_stay_fresh() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    // Takes each connection and holds it, reading and answering nothing
    // (bounded: a hub opens one a round).
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(1000).collect();
        drop(held);
    });
    let started = Instant::now();
    let answering = agent(CAPTURES[0].0, CAPTURES[0].1, "127.0.0.1:0");
    // It has read its capture and published its one snapshot by now.
    let published_by = Instant::now();
    let agents = format!("http://{},{silent_url}", answering.addr);
    let hub = Server::start_serving(&[
        "hub",
        "--agent",
        &agents,
        "--snapshot-interval",
        "0.5",
        "--agent-timeout",
        "1",
    ]);
    wait_for(&hub, Duration::from_secs(30), "the answering agent", |s| {
        s["coverage"]["agents_answered"] == 1
    });

    let summary = hub.get_json("/mcp/flows/summary");
    let coverage = &summary["coverage"];
    assert_eq!(coverage["agents_expected"], 2, "{coverage}");
    assert_eq!(
        coverage["agents_missing"],
        json!([silent_url]),
        "{coverage}"
    );
    let missing = agent_in(coverage, &silent_url);
    assert_eq!(missing["answered"], false);
    assert_eq!(missing["error"], "no answer within 1.0 s", "{missing}");
    // Everything the answering agent saw, as it reports it itself.
    let own = answering.get_json("/mcp/flows/summary");
    for total in ["total_flows", "total_pkts", "total_bytes"] {
        assert_eq!(summary[total], own[total], "{total}");
    }
    let metrics = hub.metrics();
    let up = |name: &str, node: &str| {
        sample(
            &metrics,
            &format!("flowtap_agent_up{{agent=\"{name}\",node=\"{node}\"}}"),
        )
    };
    assert_eq!(up(&silent_url, ""), 0.0, "{metrics}");
    let answering_url = format!("http://{}", answering.addr);
    assert_eq!(up(&answering_url, CAPTURES[0].1), 1.0, "{metrics}");
    // Each of its pulls counted by why it failed.
    let failed = |reason: &str| {
        sample(
            &metrics,
            &format!("flowtap_hub_pulls_failed_total{{reason=\"{reason}\"}}"),
        )
    };
    assert!(failed("timeout") >= 1.0, "{metrics}");
    assert_eq!(failed("unreachable"), 0.0, "{metrics}");

    // Rounds go on, each waiting the silent agent's timeout (1 s) at most:
    // the answering agent is pulled about once a second.
    let before = feeds_served(&answering);
    std::thread::sleep(Duration::from_secs(6));
    let pulled = feeds_served(&answering) - before;
    let answer = hub.get_json("/mcp/flows/summary");
    let age = agent_in(&answer["coverage"], &answering_url)["age_s"]
        .as_f64()
        .expect("the answering agent's age");
    let (oldest, youngest) = (
        started.elapsed().as_secs_f64(),
        published_by.elapsed().as_secs_f64(),
    );
    eprintln!(
        "{pulled} pulls in 6 s; the answering agent's data {age} s old, published \
         {youngest:.2}-{oldest:.2} s ago"
    );
    assert!(pulled >= 3, "{pulled} pulls in 6 s");
    // Its data is as old as its one snapshot, however fresh the pulls (as
    // with an agent whose capture stalled while its server answers): the
    // age the agent gives with its feed, not the time of the pull. The
    // answer's view is a round old at most (the interval, the silent
    // agent's timeout and the round's work).
    assert!(
        age >= youngest - 3.5 && age <= oldest + 0.1,
        "the answering agent's data is {age} s old, published {youngest:.2}-{oldest:.2} s ago"
    );
}

/// Before its first round a hub is not ready, and a request for data waits
/// for that round: answered at once, it named no agent, missing or not,
/// and read as a cluster without traffic (ready at once too, a rollout
/// sent clients there).
#[test]
fn a_hub_is_ready_and_answers_after_its_first_round() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(1000).collect();
        drop(held);
    });
    let hub = Server::start_serving(&["hub", "--agent", &silent_url, "--agent-timeout", "3"]);
    let started = Instant::now();
    let starting = hub.admin_get("/readyz");
    assert_eq!(starting.status, 503);
    assert_eq!(starting.json()["status"], "starting");
    let summary = hub.get_json("/mcp/flows/summary");
    let waited = started.elapsed();
    let coverage = &summary["coverage"];
    assert_eq!(coverage["agents_expected"], 1, "{coverage}");
    assert_eq!(
        coverage["agents_missing"],
        json!([silent_url]),
        "{coverage}"
    );
    assert!(
        waited >= Duration::from_secs(2),
        "answered after {waited:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while hub.admin_get("/readyz").status != 200 {
        assert!(Instant::now() < deadline, "not ready after its first round");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `flowtap hub --dump` prints the first round's answer and exits (it
/// served until a signal before); `--json` is refused, a hub's answers
/// being JSON.
#[test]
fn a_hub_dumps_its_first_answer_and_exits() {
    let one = agent(CAPTURES[0].0, CAPTURES[0].1, "127.0.0.1:0");
    let own = one.get_json("/mcp/flows/summary");
    let url = format!("http://{}", one.addr);
    let hub = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_flowtap"))
            .args(["hub", "--agent", &url, "--agent-timeout", "10"])
            .args(extra)
            .output()
            .unwrap()
    };
    let started = Instant::now();
    let out = hub(&["--dump", "/mcp/flows/summary"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["total_flows"], own["total_flows"]);
    assert_eq!(summary["coverage"]["agents_answered"], 1);
    let out = hub(&["--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--json"));
}

/// The entry of the agent named `name` in an answer's `coverage`.
fn agent_in<'c>(coverage: &'c Value, name: &str) -> &'c Value {
    coverage["agents"]
        .as_array()
        .and_then(|agents| agents.iter().find(|a| a["name"] == name))
        .unwrap_or_else(|| panic!("{name} not in {coverage}"))
}

/// `--max-flows` bounds what a hub merges: with room for the larger of two
/// agents' feeds but not for both, one is merged whole and the other left
/// out, named missing with the bound as its reason; the bound and the
/// flows merged are in `/metrics`.
#[test]
fn a_hub_at_its_flow_bound_leaves_a_feed_out_and_names_its_agent() {
    let agents = [CAPTURES[0], CAPTURES[1]].map(|(name, node)| agent(name, node, "127.0.0.1:0"));
    let own = agents.each_ref().map(|a| a.get_json("/mcp/flows/summary"));
    let flows = own.each_ref().map(|s| s["total_flows"].as_u64().unwrap());
    let bound = flows[0].max(flows[1]);
    assert!(flows[0].min(flows[1]) > 0, "{flows:?}");
    let urls = agents.each_ref().map(|a| format!("http://{}", a.addr));
    // One round only in the test's time (the first): which agent fits is
    // the one whose feed arrives first (later rounds keep it).
    let hub = Server::start_serving(&[
        "hub",
        "--agent",
        &urls.join(","),
        "--snapshot-interval",
        "60",
        // The one round must not lose a pull to a loaded machine.
        "--agent-timeout",
        "10",
        "--max-flows",
        &bound.to_string(),
    ]);
    wait_for(&hub, Duration::from_secs(30), "one agent merged", |s| {
        s["coverage"]["agents_answered"] == 1
    });
    let summary = hub.get_json("/mcp/flows/summary");
    let coverage = &summary["coverage"];
    assert_eq!(coverage["agents_expected"], 2, "{coverage}");
    let merged = urls
        .iter()
        .position(|u| agent_in(coverage, u)["answered"] == true)
        .expect("an agent merged");
    let left_out = 1 - merged;
    assert_eq!(
        coverage["agents_missing"],
        json!([urls[left_out]]),
        "{coverage}"
    );
    let error = agent_in(coverage, &urls[left_out])["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let expected = format!(
        "not merged: its {} flows would take the hub past --max-flows {bound} ({} left this round)",
        flows[left_out],
        bound - flows[merged]
    );
    assert_eq!(error, expected, "{coverage}");
    // It answered, so its node is known: named with it (it was left null).
    assert_eq!(
        agent_in(coverage, &urls[left_out])["node"],
        CAPTURES[left_out].1,
        "{coverage}"
    );
    // The merged agent whole, as it reports itself.
    for total in ["total_flows", "total_pkts", "total_bytes"] {
        assert_eq!(summary[total], own[merged][total], "{total}");
    }
    let metrics = hub.metrics();
    assert_eq!(sample(&metrics, "flowtap_flow_capacity"), bound as f64);
    let left_out = "flowtap_hub_pulls_failed_total{reason=\"flow_bound\"}";
    assert!(sample(&metrics, left_out) >= 1.0, "{metrics}");
    assert_eq!(
        sample(&metrics, "flowtap_active_flows"),
        flows[merged] as f64
    );
}

/// One agent reached at two addresses (as a dual-stack name's A and AAAA
/// records reach it) is one agent: merged once, expected once, and taking
/// its share of `--max-flows` once (at its own count as the bound, a second
/// share would leave it out).
#[test]
fn one_agent_at_two_addresses_is_merged_once() {
    let (name, node) = CAPTURES[0];
    let one = agent(name, node, "127.0.0.1:0");
    let own = one.get_json("/mcp/flows/summary");
    let flows = own["total_flows"].as_u64().unwrap().to_string();
    let (urls, hub, summary) = a_hub_over_two_addresses_of(&one, &["--max-flows", &flows]);
    let coverage = &summary["coverage"];
    assert_eq!(agent_in(coverage, &urls[0])["answered"], true, "{coverage}");
    for total in ["total_flows", "total_pkts", "total_bytes"] {
        assert_eq!(summary[total], own[total], "{total}");
    }
    // A hub serves no feed: another hub given its address (a hub of hubs,
    // or a name that also resolves to the hub) names it missing, rather
    // than reading as one agent that answered for everything behind it.
    let hub_url = format!("http://{}", hub.addr);
    let upper = std::process::Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .args(["hub", "--agent", &hub_url, "--agent-timeout", "10"])
        .args(["--dump", "/mcp/flows/summary"])
        .output()
        .unwrap();
    assert!(
        upper.status.success(),
        "{}",
        String::from_utf8_lossy(&upper.stderr)
    );
    let upper: Value = serde_json::from_slice(&upper.stdout).unwrap();
    let coverage = &upper["coverage"];
    assert_eq!(coverage["agents_missing"], json!([hub_url]), "{coverage}");
    assert!(
        agent_in(coverage, &hub_url)["error"]
            .as_str()
            .unwrap()
            .contains("this is a hub"),
        "{coverage}"
    );
    // The agent down: one agent missing, named once (each address that
    // failed had its entry, two agents expected for one).
    drop(one);
    wait_for(&hub, Duration::from_secs(30), "the agent missing", |s| {
        s["coverage"]["agents_answered"] == 0
    });
    for _ in 0..3 {
        let coverage = hub.get_json("/mcp/flows/summary")["coverage"].clone();
        assert_eq!(coverage["agents_expected"], 1, "{coverage}");
        assert_eq!(coverage["agents_missing"], json!([urls[0]]), "{coverage}");
        std::thread::sleep(Duration::from_millis(400));
    }
}

/// A hub (`extra` beside its agents) over `agent` at two addresses,
/// 127.0.0.1 and localhost, and its summary after three rounds, whose
/// coverage it checks names one agent, answered: the two addresses and the
/// hub with it.
fn a_hub_over_two_addresses_of(agent: &Server, extra: &[&str]) -> ([String; 2], Server, Value) {
    let port = agent.addr.port();
    let urls = [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ];
    let agents = urls.join(",");
    let mut args = vec!["hub", "--agent", &agents, "--snapshot-interval", "0.3"];
    args.extend_from_slice(extra);
    let hub = Server::start_serving(&args);
    // From the second round on, the hub pulls the first address only.
    wait_for(&hub, Duration::from_secs(30), "three rounds", |_| {
        sample(&hub.metrics(), "flowtap_snapshots_published_total") >= 3.0
    });
    let summary = hub.get_json("/mcp/flows/summary");
    let coverage = &summary["coverage"];
    assert_eq!(coverage["agents_expected"], 1, "{coverage}");
    assert_eq!(coverage["agents_answered"], 1, "{coverage}");
    assert_eq!(coverage["agents_missing"], json!([]), "{coverage}");
    (urls, hub, summary)
}

/// `--max-agents` counts agents, not addresses: the second address of an
/// agent already pulled, beyond the bound, is asked once who it is and is
/// not named missing from then on (it was named missing for good: a
/// dual-stack cluster of more than half the bound read as half missing).
#[test]
fn the_agent_bound_counts_agents_not_addresses() {
    let (name, node) = CAPTURES[0];
    let one = agent(name, node, "127.0.0.1:0");
    let port = one.addr.port();
    let (_, hub, _) = a_hub_over_two_addresses_of(&one, &["--max-agents", "1"]);
    // The agent restarted (a new instance at the same addresses): its
    // second address is asked again, not named missing for good.
    drop(one);
    let _again = agent(name, node, &format!("127.0.0.1:{port}"));
    let published = sample(&hub.metrics(), "flowtap_snapshots_published_total");
    wait_for(
        &hub,
        Duration::from_secs(30),
        "rounds after the restart",
        |_| sample(&hub.metrics(), "flowtap_snapshots_published_total") >= published + 4.0,
    );
    let coverage = hub.get_json("/mcp/flows/summary")["coverage"].clone();
    assert_eq!(coverage["agents_expected"], 1, "{coverage}");
    assert_eq!(coverage["agents_missing"], json!([]), "{coverage}");
}

/// In the first round, before the hub knows that two addresses are one
/// agent, both are pulled and one is let go: the agents after it must
/// still be named right in `seen_by` (their numbers are their places in
/// the coverage, which has no entry for the second address).
#[test]
fn seen_by_names_the_right_agents_beside_a_second_address() {
    let (first, node_a) = CAPTURES[0];
    let (second, node_b) = CAPTURES[1];
    let a = agent(first, node_a, "127.0.0.1:0");
    let b = agent(second, node_b, "127.0.0.1:0");
    let urls = [
        format!("http://127.0.0.1:{}", a.addr.port()),
        format!("http://localhost:{}", a.addr.port()),
        format!("http://{}", b.addr),
    ];
    // One round only in the test's time: the first.
    let hub = Server::start_serving(&[
        "hub",
        "--agent",
        &urls.join(","),
        "--snapshot-interval",
        "60",
    ]);
    wait_for(&hub, Duration::from_secs(30), "both agents", |s| {
        s["coverage"]["agents_answered"] == 2
    });
    let b_flows = b.get_json("/mcp/flows?format=full&limit=100000");
    let merged = hub.get_json("/mcp/flows?format=full&limit=100000");
    let key = |f: &Value| {
        (
            f["proto"].to_string(),
            f["client"]["ip"].to_string(),
            f["server"]["ip"].to_string(),
            f["server"]["port"].to_string(),
        )
    };
    let seen: BTreeMap<_, Value> = merged["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (key(f), f["seen_by"].clone()))
        .collect();
    let b_flows = b_flows["flows"].as_array().unwrap();
    assert!(!b_flows.is_empty());
    for f in b_flows {
        let by = &seen[&key(f)];
        assert!(
            by.as_array().unwrap().contains(&json!(node_b)),
            "{f}: seen_by {by}"
        );
    }
}
