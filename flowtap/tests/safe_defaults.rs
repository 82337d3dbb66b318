//! Safe as shipped: each attack or fault against the real binary, and the
//! bound that holds it (beside `hostile.rs`, whose floods and HTTP abuse
//! still hold).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::metrics::sample;
use common::server::{Server, raw_request, request_bytes};
use common::wait;
use serde_json::{Value, json};

fn demo() -> String {
    common::project_root()
        .join("demo/demo.pcap")
        .to_string_lossy()
        .into_owned()
}

/// A capture of about `flows` flows (one per client), written by capgen.
fn capture_with_flows(dir: &std::path::Path, flows: u32) -> std::path::PathBuf {
    let path = dir.join("flows.pcap");
    let spec = capgen::Spec {
        packets: u64::from(flows) * 8,
        concurrent: flows as usize,
        clients: flows,
        servers: 50,
        seed: 21,
        ..capgen::Spec::default()
    };
    capgen::Generator::new(spec)
        .write(std::fs::File::create(&path).unwrap())
        .unwrap();
    path
}

fn resident_mib(server: &Server) -> f64 {
    sample(&server.metrics(), "flowtap_resident_memory_bytes") / f64::from(1 << 20)
}

#[test]
fn flow_data_off_loopback_needs_a_token_or_says_it_is_insecure() {
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flowtap"))
            .args([
                "-r",
                &demo(),
                "--listen",
                "0.0.0.0:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = run(&[]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--auth-token-file") && stderr.contains("--insecure-listen"),
        "the error names the options: {stderr}"
    );

    // Overridden: served, with a warning; and the Host header must still
    // name the listener (or an allowed host).
    // (A list's entries are taken without the spaces around them: the
    // second was ` flowtap.example`, which no Host header matched.)
    let mut child = run(&[
        "--insecure-listen",
        "--allowed-host",
        "other.example, flowtap.example",
    ]);
    let (log, lines) = common::follow_stderr(&mut child);
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("serving");
        if let Some(a) = line.strip_prefix("flowtap: serving on http://0.0.0.0:") {
            break format!("127.0.0.1:{a}").parse().unwrap();
        }
    };
    let get = |host: &str| {
        raw_request(
            addr,
            &request_bytes("GET", "/mcp/flows?limit=1", &[("Host", host)], b""),
        )
        .status
    };
    wait::until_holds(Duration::from_secs(30), "serving", || {
        get("127.0.0.1") == 200
    });
    assert_eq!(
        get("flowtap.example:8898"),
        200,
        "allowed by --allowed-host"
    );
    assert_eq!(get("rebound.example"), 403, "any other name is refused");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        log.lock().unwrap().contains("--insecure-listen"),
        "a warning is logged"
    );

    // With a token file it serves, and asks for the token.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let mut child = run(&["--auth-token-file", token.to_str().unwrap()]);
    let (_, lines) = common::follow_stderr(&mut child);
    let addr: std::net::SocketAddr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("serving");
        if let Some(a) = line.strip_prefix("flowtap: serving on http://0.0.0.0:") {
            break format!("127.0.0.1:{a}").parse().unwrap();
        }
    };
    let status = |headers: &[(&str, &str)]| {
        raw_request(
            addr,
            &request_bytes("GET", "/mcp/flows/summary", headers, b""),
        )
        .status
    };
    wait::until_holds(
        Duration::from_secs(30),
        "serving the token's bearer",
        || status(&[("Authorization", "Bearer s3cret")]) == 200,
    );
    assert_eq!(status(&[]), 401);
    let _ = child.kill();
    let _ = child.wait();
}

/// 512 connections dribbling a POST body and 8 asking for 100,000 flows
/// without reading: the kubelet's probe on the admin listener still answers
/// within a second, every time.
#[test]
fn probes_answer_while_the_data_port_is_abused() {
    let dir = tempfile::tempdir().unwrap();
    let capture = capture_with_flows(dir.path(), 20_000);
    let server = Server::start(&[
        "-r",
        capture.to_str().unwrap(),
        "--http-header-timeout",
        "30",
    ]);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let mut abusers = Vec::new();
    for _ in 0..512 {
        let stop = stop.clone();
        abusers.push(std::thread::spawn(move || {
            let Ok(mut s) = TcpStream::connect(addr) else {
                return;
            };
            let _ = s.write_all(
                b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n[",
            );
            while !stop.load(Ordering::Relaxed) && s.write_all(b" ").is_ok() {
                std::thread::sleep(Duration::from_millis(500));
            }
        }));
    }
    for _ in 0..8 {
        let stop = stop.clone();
        abusers.push(std::thread::spawn(move || {
            let Ok(mut s) = TcpStream::connect(addr) else {
                return;
            };
            let _ = s.write_all(
                b"GET /mcp/flows?limit=100000&format=full HTTP/1.1\r\nHost: localhost\r\n\r\n",
            );
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(1));
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let r = server.admin_get("/healthz");
        worst = worst.max(t.elapsed());
        assert_eq!(r.status, 200);
        assert_eq!(server.admin_get("/readyz").status, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for a in abusers {
        let _ = a.join();
    }
    eprintln!("/healthz during 512 slow POSTs and 8 slow readers: worst {worst:?}");
    assert!(worst < Duration::from_secs(1), "{worst:?}");
}

fn mcp(server: &Server, headers: &[(&str, &str)], body: &[u8]) -> common::server::Response {
    let mut all = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    all.extend_from_slice(headers);
    server.send("POST", "/mcp", &all, body)
}

fn session(server: &Server, version: &str) -> common::server::Response {
    mcp(
        server,
        &[],
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
               "params": {"protocolVersion": version, "capabilities": {},
                          "clientInfo": {"name": "t", "version": "1"}}})
        .to_string()
        .as_bytes(),
    )
}

/// The 140 KB request that made flowtap answer 716 MB: a 2025-03-26 batch
/// of 1,000 full listings. Now refused; a batch of 16 stays within the reply
/// budget, and memory within a stated growth.
#[test]
fn mcp_batches_replies_and_sessions_are_bounded() {
    const GROWTH_MIB: f64 = 160.0;
    let dir = tempfile::tempdir().unwrap();
    let capture = capture_with_flows(dir.path(), 39_000);
    let server = Server::start(&["-r", capture.to_str().unwrap()]);
    let before = resident_mib(&server);
    let r = session(&server, "2025-03-26");
    let id = r.header("mcp-session-id").unwrap().to_owned();
    let headers = [("Mcp-Session-Id", id.as_str())];
    let call = |i: usize| {
        json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
               "params": {"name": "list_l4_flows", "arguments": {"limit": 1000, "format": "full"}}})
    };
    let batch = |n: usize| Value::Array((0..n).map(call).collect()).to_string();
    let body = batch(1000);
    assert!(body.len() > 100_000, "the reproduction's request");
    let r = mcp(&server, &headers, body.as_bytes());
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("at most 16"));
    let r = mcp(&server, &headers, batch(16).as_bytes());
    assert_eq!(r.status, 200);
    let answers = r.json();
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 16);
    // The calls past the budget answered with the tool's error, which
    // reaches the model (a JSON-RPC error most clients raise instead).
    let over = answers
        .iter()
        .filter(|a| {
            a["result"]["isError"] == true
                && a["result"]["content"][0]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("--mcp-max-reply-bytes"))
        })
        .count();
    assert!(over > 0 && over < 16, "{over} answers over the budget");
    assert!(r.body.len() <= 8 << 20, "{} bytes", r.body.len());
    for _ in 0..4 {
        assert_eq!(mcp(&server, &headers, batch(16).as_bytes()).status, 200);
    }
    let after = resident_mib(&server);
    let metrics = server.metrics();
    eprintln!(
        "MCP batches: resident {before:.0} -> {after:.0} MiB; refused {}, over budget {}",
        sample(&metrics, "flowtap_mcp_batches_refused_total"),
        sample(&metrics, "flowtap_mcp_replies_over_budget_total")
    );
    assert_eq!(sample(&metrics, "flowtap_mcp_batches_refused_total"), 1.0);
    assert!(sample(&metrics, "flowtap_mcp_replies_over_budget_total") >= over as f64);
    assert!(after - before < GROWTH_MIB, "{before:.0} -> {after:.0} MiB");

    // Sessions: one client's new sessions replace its own oldest; they
    // never end another's. (All from 127.0.0.1: one client.)
    let first = session(&server, "2025-11-25");
    let first = first.header("mcp-session-id").unwrap().to_owned();
    for _ in 0..40 {
        assert_eq!(session(&server, "2025-11-25").status, 200);
    }
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let r = mcp(&server, &[("Mcp-Session-Id", &first)], ping.as_bytes());
    assert_eq!(r.status, 404, "its own oldest session made room");
    assert!(sample(&server.metrics(), "flowtap_mcp_sessions_evicted_total") >= 9.0);
}

#[test]
fn mcp_sessions_are_refused_not_stolen_when_all_are_in_use() {
    let server = Server::start(&[
        "-r",
        &demo(),
        "--mcp-max-sessions",
        "4",
        "--mcp-sessions-per-client",
        "8",
        "--mcp-session-idle-timeout",
        "5",
    ]);
    for _ in 0..4 {
        assert_eq!(session(&server, "2025-11-25").status, 200);
    }
    let r = session(&server, "2025-11-25");
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let metrics = server.metrics();
    assert_eq!(sample(&metrics, "flowtap_mcp_sessions_refused_total"), 1.0);
    assert_eq!(sample(&metrics, "flowtap_mcp_sessions"), 4.0);
    // The refusal is an error, not a session made.
    for (outcome, n) in [("ok", 4.0), ("error", 1.0)] {
        let series =
            format!("flowtap_mcp_requests_total{{method=\"initialize\",outcome=\"{outcome}\"}}");
        assert_eq!(sample(&metrics, &series), n, "{outcome}");
    }
    // Idle past --mcp-session-idle-timeout, they end: the gauge says so
    // without a new session being made, and there is room again.
    std::thread::sleep(Duration::from_millis(5200));
    assert_eq!(sample(&server.metrics(), "flowtap_mcp_sessions"), 0.0);
    assert_eq!(session(&server, "2025-11-25").status, 200);
}

/// `aggregate=` over every flow, many at once and again and again: memory
/// grows by a bounded amount, whatever the number of requests.
#[test]
fn aggregations_are_bounded_and_shared() {
    const GROWTH_MIB: f64 = 96.0;
    let dir = tempfile::tempdir().unwrap();
    let capture = capture_with_flows(dir.path(), 60_000);
    let server = Server::start(&["-r", capture.to_str().unwrap()]);
    let before = resident_mib(&server);
    let addr = server.addr;
    let mut answers = Vec::new();
    for round in 0..3 {
        let clients: Vec<_> = (0..16)
            .map(|i| {
                std::thread::spawn(move || {
                    let by = ["namespace", "pod", "service", "node"][(i + round) % 4];
                    let target = format!("/mcp/flows?aggregate={by}&limit=50&format=full");
                    let r = raw_request(addr, &request_bytes("GET", &target, &[], b""));
                    assert_eq!(r.status, 200);
                    (by, r.body)
                })
            })
            .collect();
        answers.extend(clients.into_iter().map(|c| c.join().unwrap()));
    }
    // The same question, the same answer, cached or not (but for the age
    // its coverage gives the data, as of each answer).
    let timeless = |body: &[u8]| common::without_ages(std::str::from_utf8(body).unwrap());
    for (by, body) in &answers {
        let again = server.get(&format!("/mcp/flows?aggregate={by}&limit=50&format=full"));
        assert_eq!(timeless(&again.body), timeless(body), "aggregate={by}");
    }
    let after = resident_mib(&server);
    eprintln!("48 aggregations over 60,000 flows: resident {before:.0} -> {after:.0} MiB");
    assert!(after - before < GROWTH_MIB, "{before:.0} -> {after:.0} MiB");
}

/// A broken inventory file is counted and the names stay, as they do when
/// the file is removed (said once); a worker that
/// panics ends `-r` with an error instead of a hang; absurd durations are
/// refused by name, huge timeouts saturate.
#[test]
fn faults_are_counted_or_fatal_never_silent() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.json");
    let write_the_demo_s = || {
        std::fs::copy(
            common::project_root().join("demo/inventory.json"),
            &inventory,
        )
        .unwrap()
    };
    write_the_demo_s();
    let server = Server::start(&[
        "-r",
        &demo(),
        "--k8s-inventory",
        inventory.to_str().unwrap(),
    ]);
    let named = |s: &Server| {
        s.get_json("/mcp/flows?format=full&limit=1")["flows"][0]["server"]["pod"].is_string()
    };
    assert!(named(&server));
    // Reading files, the hand-off queues are the live ones' size.
    assert_eq!(
        sample(&server.metrics(), "flowtap_handoff_queue_capacity"),
        65_536.0
    );
    std::fs::write(&inventory, b"{ not json").unwrap();
    wait::until_holds(Duration::from_secs(10), "the broken file counted", || {
        sample(&server.metrics(), "flowtap_inventory_reload_errors_total") >= 1.0
    });
    assert!(named(&server), "the previous mapping stays");
    write_the_demo_s();
    wait::until_holds(Duration::from_secs(10), "the fixed file counted", || {
        sample(&server.metrics(), "flowtap_inventory_reloads_total") >= 1.0
    });
    // A file that goes away is said once, and the names stay until a new
    // one is written, which is read.
    std::fs::remove_file(&inventory).unwrap();
    let removed = "inventory file removed";
    wait::until_holds(Duration::from_secs(10), "the removal said", || {
        server.stderr.lock().unwrap().contains(removed)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(server.stderr.lock().unwrap().matches(removed).count(), 1);
    assert!(named(&server), "the names last read stay");
    write_the_demo_s();
    wait::until_holds(Duration::from_secs(10), "the new file read", || {
        sample(&server.metrics(), "flowtap_inventory_reloads_total") >= 2.0
    });

    for threads in ["1", "2"] {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_flowtap"))
            .args(["-r", &demo(), "--threads", threads])
            .env("FLOWTAP_FAULT", "panic-after-frames:500")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("worker 0 panicked"), "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(20), "no hang");
    }

    for (option, value) in [
        ("--snapshot-interval", "inf"),
        ("--http-response-timeout", "-1"),
        // An IPFIX message's length is 16 bits, a UDP datagram's payload
        // at most 65,507 bytes.
        ("--ipfix-mtu", "65508"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_flowtap"))
            .args(["-r", &demo(), &format!("{option}={value}")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(option) && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    let out = common::stdout_of(
        Command::new(env!("CARGO_BIN_EXE_flowtap"))
            .args(["-r", &demo(), "--json"])
            .args(["--tcp-timeout", "18446744073709551615"])
            .args(["--udp-timeout", &u64::MAX.to_string()]),
    );
    assert!(String::from_utf8_lossy(&out).contains("total_flows"));
}

/// What `/proc/PID/status` says of transparent huge pages for process `pid`.
fn huge_pages_enabled(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .unwrap_or_else(|| panic!("no THP_enabled line (Linux 5.0 on):\n{status}"));
    line.trim() == "1"
}

/// A capture and a hub go without transparent huge pages (a fault that
/// zeroes a fresh 2 MiB page can stall a capture worker, and cost a hub
/// half its round: BENCHMARKS.md, memory and hub); mimalloc's own switch
/// in the environment still decides.
#[test]
fn captures_and_the_hub_go_without_transparent_huge_pages() {
    let inherited = huge_pages_enabled(std::process::id());
    let agent = Server::start(&["-r", &demo()]);
    assert!(
        !huge_pages_enabled(agent.pid()),
        "a capture with huge pages"
    );
    let asked = Server::start_with_env(&["-r", &demo()], &[("MIMALLOC_ALLOW_THP", "1")]);
    assert_eq!(
        huge_pages_enabled(asked.pid()),
        inherited,
        "MIMALLOC_ALLOW_THP set: the setting should be left as it was"
    );
    let hub = Server::start_serving(&["hub", "--agent", &format!("http://{}", agent.addr)]);
    assert!(!huge_pages_enabled(hub.pid()), "a hub with huge pages");
    let hub_asked = Server::start_serving_with_env(
        &["hub", "--agent", &format!("http://{}", agent.addr)],
        &[("MIMALLOC_ALLOW_THP", "1")],
    );
    assert_eq!(
        huge_pages_enabled(hub_asked.pid()),
        inherited,
        "a hub with MIMALLOC_ALLOW_THP set"
    );
}

/// A `--memory-limit` that the hand-off inboxes (or live, the capture
/// buffers) take whole is refused at start, naming what takes it: it was
/// warned of, and the process ran at 1.7 GiB against a limit of 256 MiB.
#[test]
fn a_memory_limit_the_buffers_take_whole_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .args(["-r", &demo(), "--threads", "1"])
        .args(["--handoff-queue", "16777216", "--memory-limit", "256Mi"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--memory-limit 256 MiB is below what is allocated at start")
            && stderr.contains("hand-off inboxes")
            && !stderr.contains("--ring-frames"),
        "{stderr}"
    );
    // A small limit that what is allocated at start fits in reads a file
    // (the tables from 1 MiB, with a warning), as it did.
    let small = Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .args(["-r", &demo(), "--threads", "1", "--memory-limit", "100Mi"])
        .output()
        .unwrap();
    assert!(
        small.status.success(),
        "{}",
        String::from_utf8_lossy(&small.stderr)
    );
}

/// The workers' hand-off inboxes, allocated whole at start (about 6 MiB a
/// worker at the default `--handoff-queue`), come out of the memory budget
/// before the tables take their share: with sixteen workers the tables get
/// less than with one, rather than the inboxes pushing the process past
/// its limit once the tables fill (a pod on a node of many CPUs).
#[test]
fn the_workers_inboxes_come_out_of_the_memory_budget() {
    let flow_capacity = |threads: &str| -> f64 {
        let out = Command::new(env!("CARGO_BIN_EXE_flowtap"))
            .args(["-r", &demo(), "--threads", threads])
            .args(["--memory-limit", "256MiB"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let at = stderr.find("flow capacity ").expect("the limits line") + "flow capacity ".len();
        let digits: String = stderr[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    let (one, sixteen) = (flow_capacity("1"), flow_capacity("16"));
    // 256 MiB less the 128 reserved: about 122 MiB for the tables beside
    // one inbox, 27 beside sixteen.
    assert!(
        sixteen < one * 0.5 && sixteen > one * 0.1,
        "flow capacity with 1 worker {one}, with 16 {sixteen}"
    );
}

/// Out of file descriptors (a hard limit of 64, which flowtap cannot
/// raise), idle connections past it make every accept fail, twenty times
/// a second: said once every 10 s with the count, not in a line each (350
/// lines in 17 s before).
#[test]
fn failures_to_accept_are_said_without_a_flood() {
    let (mut child, log, addr) =
        common::serving_through(&["prlimit", "--nofile=64:64"], &["-r", &demo()]);
    let idle: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let _ = child.kill();
    let _ = child.wait();
    drop(idle);
    let log = log.lock().unwrap().clone();
    let said = log.matches("accept failed").count();
    assert!(
        (1..=2).contains(&said),
        "{said} lines of accept failures in 3 s: {log}"
    );
    assert!(log.contains("Too many open files"), "{log}");
}

/// A client that sends `request` to `addr` and reads nothing: its receive
/// buffer is the kernel's least, set before connecting so that its window
/// stays that small, and what it is answered stays with the server.
fn a_client_that_never_reads(addr: std::net::SocketAddr, request: &str) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType, connect, socket, sockopt};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    sockopt::set_socket_recv_buffer_size(&fd, 1024).unwrap();
    connect(&fd, &addr).unwrap();
    let mut stream = TcpStream::from(fd);
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

/// A large answer's turn (`--http-max-large-answers`) is held until the
/// answer has left for the client, not only until it was rendered: a
/// client that asks and never reads keeps the answer's memory, so the
/// turns are what bound it (before, each such client held a rendered
/// answer with no turn taken: 300 scrapes of a hub's 6.9 MB `/metrics`
/// took its memory to 2.3 GB), and taken back from it when it stalled and
/// another request waits. The answer here, every workload of an inventory
/// of 60,000 pods (8 MB), is larger than the kernel's socket buffers take.
#[test]
fn a_large_answer_nobody_reads_keeps_its_turn() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.json");
    let pods: Vec<Value> = (0..60_000u32)
        .map(|i| {
            json!({
                "kind": "Pod",
                "metadata": {"name": format!("worker-{i}"), "namespace": format!("ns{}", i % 50)},
                "spec": {"nodeName": "n1"},
                "status": {"phase": "Running", "podIP": format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)},
            })
        })
        .collect();
    std::fs::write(
        &inventory,
        serde_json::to_vec(&json!({"kind": "List", "items": pods})).unwrap(),
    )
    .unwrap();
    let server = Server::start(&[
        "-r",
        &demo(),
        "--k8s-inventory",
        inventory.to_str().unwrap(),
        "--http-max-large-answers",
        "1",
    ]);
    let every = "GET /mcp/workloads?limit=100000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let _holder = a_client_that_never_reads(server.addr, every);
    std::thread::sleep(Duration::from_secs(1));
    let addr = server.addr;
    let waiting = std::thread::spawn(move || {
        raw_request(
            addr,
            &request_bytes("GET", "/mcp/workloads?limit=2000", &[], b""),
        )
        .status
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!waiting.is_finished(), "answered while the turn was held");
    // Small answers do not take turns, nor a large limit over the demo's
    // 140 flows.
    assert_eq!(server.get("/mcp/flows/summary").status, 200);
    assert_eq!(server.get("/mcp/flows?limit=2000").status, 200);
    // Once the holder's socket has taken nothing for 2 s, the waiting
    // request closes it and takes its turn.
    assert_eq!(waiting.join().unwrap(), 200);
    let metrics = server.metrics();
    assert_eq!(
        sample(
            &metrics,
            "flowtap_http_turns_taken_back_total{answers=\"large\"}"
        ),
        1.0
    );
}

/// Clients that send requests and read none of the answers can take every
/// connection (`--http-max-connections`) of either listener, each with its
/// answer in progress; the one whose socket has taken nothing for longest
/// is then closed for a newcomer (or for a request waiting for its turn),
/// so the kubelet's probes and real queries are still
/// answered (before, every newcomer was refused 503 until the response
/// timeout, 60 s, closed them: the probes failed and the pod restarted).
#[test]
fn clients_that_never_read_lock_out_neither_probes_nor_queries() {
    let server = Server::start(&["-r", &demo(), "--http-max-connections", "6"]);
    // Answers of about 9 MB on each connection, more than the kernel's
    // socket buffers take (a scrape is about 90 kB, the flows 150 kB).
    let scrapes = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(100);
    let queries =
        "GET /mcp/flows?limit=2000&format=full HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(60);
    let _holders: Vec<TcpStream> = (0..6)
        .flat_map(|_| {
            [
                a_client_that_never_reads(server.admin, &scrapes),
                a_client_that_never_reads(server.addr, &queries),
            ]
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    wait::until_holds(Duration::from_secs(10), "a probe answered", || {
        server.admin_get("/healthz").status == 200
    });
    wait::until_holds(Duration::from_secs(10), "a query answered", || {
        server.get("/mcp/flows/summary").status == 200
    });
    // Each listener freed a connection from a client that does not read:
    // closed for the newcomer, or for a request waiting for its turn.
    let metrics = server.metrics();
    let freed = sample(&metrics, "flowtap_http_connections_closed_stalled_total")
        + sample(
            &metrics,
            "flowtap_http_turns_taken_back_total{answers=\"metrics\"}",
        )
        + sample(
            &metrics,
            "flowtap_http_turns_taken_back_total{answers=\"large\"}",
        );
    assert!(freed >= 2.0, "{metrics}");
}

/// MCP request bodies are bounded one by one (`--mcp-max-request-bytes`,
/// refused by their declared length before they are read) and together
/// (`--mcp-max-request-bytes-held`): clients that start bodies and never
/// finish them hold no more than the bound, and the next is answered 503
/// at once (before, 512 connections of 1 MiB bodies held 550 MB, and real
/// queries were refused for the body timeout); one client holds a quarter
/// of it at most (here one largest body), so that it alone cannot keep
/// everyone else's requests out.
#[test]
fn request_bodies_are_bounded_one_by_one_and_together() {
    let server = Server::start(&[
        "-r",
        &demo(),
        "--mcp-max-request-bytes",
        "1000",
        "--mcp-max-request-bytes-held",
        "3000",
    ]);
    let head = |length: usize| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {length}\r\n"
        )
    };
    // Declared past the bound: 413 without the body, even when the client
    // waits for leave to send it.
    let refused = raw_request(
        server.addr,
        format!("{}Expect: 100-continue\r\n\r\n", head(5000)).as_bytes(),
    );
    assert_eq!(refused.status, 413);
    // A body begun and never finished, from `from`.
    let begin = |from: u8| {
        let mut s = connect_from([127, 0, 0, from], server.addr);
        write!(s, "{}\r\n{{\"jsonrpc\":", head(1000)).unwrap();
        s
    };
    // One client's second is refused: its share is held.
    let first = begin(2);
    wait::until_holds(Duration::from_secs(10), "a body held", || {
        sample(&server.metrics(), "flowtap_http_request_body_bytes") == 1000.0
    });
    let mut second = begin(2);
    // Read up to the end of its message (the connection stays open).
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let mut buf = [0u8; 4096];
    while !answer.contains("try again") {
        match second.read(&mut buf).unwrap() {
            0 => break,
            n => answer.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("this client's request bodies"), "{answer}");
    // Three clients' bodies begun and never finished take the whole bound.
    let started = [first, begin(3), begin(4)];
    wait::until_holds(Duration::from_secs(10), "three bodies held", || {
        sample(&server.metrics(), "flowtap_http_request_body_bytes") == 3000.0
    });
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "1"}},
    })
    .to_string();
    let post = || {
        raw_request(
            server.addr,
            format!(
                "{}Connection: close\r\n\r\n{initialize}",
                head(initialize.len())
            )
            .as_bytes(),
        )
    };
    let busy = post();
    assert_eq!(busy.status, 503);
    assert_eq!(busy.header("retry-after"), Some("1"));
    drop(started);
    wait::until_holds(Duration::from_secs(10), "the bodies given back", || {
        sample(&server.metrics(), "flowtap_http_request_body_bytes") == 0.0
    });
    assert_eq!(post().status, 200);
    assert_eq!(
        sample(
            &server.metrics(),
            "flowtap_http_request_body_bytes_capacity"
        ),
        3000.0
    );
    assert_eq!(
        sample(
            &server.metrics(),
            "flowtap_http_request_bodies_refused_total"
        ),
        2.0
    );
}

/// A body is counted at what has come in, not at its declared length:
/// bodies declared at the largest size and never sent (16 of them from 4
/// addresses held the whole bound, and every other client's MCP requests
/// got 503) hold 4 KiB each.
#[test]
fn request_bodies_hold_what_has_come_in() {
    let server = Server::start(&["-r", &demo()]);
    let head = |length: usize| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    let _begun: Vec<TcpStream> = (0..16u8)
        .map(|i| {
            let mut s = connect_from([127, 0, 0, 2 + i % 4], server.addr);
            write!(s, "{}{{", head(1 << 20)).unwrap();
            s
        })
        .collect();
    wait::until_holds(Duration::from_secs(10), "sixteen bodies held", || {
        sample(&server.metrics(), "flowtap_http_request_body_bytes") == 16.0 * 4096.0
    });
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "1"}},
    })
    .to_string();
    let answer = raw_request(
        server.addr,
        format!(
            "{}{initialize}",
            head(initialize.len()).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
        )
        .as_bytes(),
    );
    assert_eq!(answer.status, 200);
}

/// A connection to `to` from `from`, another loopback address than the
/// default's: another client.
fn connect_from(from: [u8; 4], to: std::net::SocketAddr) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let socket = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    bind(&socket, &std::net::SocketAddr::from((from, 0))).unwrap();
    connect(&socket, &to).unwrap();
    TcpStream::from(socket)
}

/// A request names its host once, in a host's form, and the same as its
/// target (RFC 9112 3.2: 400 otherwise; each of these was answered 200,
/// the Host check reading only the first, or the part before an `@`); the
/// paths that take no parameter refuse one by name, as the others do, and
/// a count is digits only.
#[test]
fn requests_name_their_host_once_and_only_known_parameters() {
    let server = Server::start(&["-r", &demo()]);
    let summary = "GET /mcp/flows/summary HTTP/1.1\r\nConnection: close\r\n";
    for (head, why) in [
        (format!("{summary}\r\n"), "no Host"),
        (
            format!("{summary}Host: 127.0.0.1\r\nHost: evil.example\r\n\r\n"),
            "two Hosts",
        ),
        (format!("{summary}Host: localhost:1@evil.example\r\n\r\n"), "a user"),
        (
            "GET http://evil.example/mcp/flows/summary HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                .to_owned(),
            "another target",
        ),
    ] {
        let answer = raw_request(server.addr, head.as_bytes());
        assert_eq!(answer.status, 400, "{why}: {answer:?}");
    }
    // HTTP/1.0 may leave Host out.
    let old = raw_request(server.addr, b"GET /mcp/flows/summary HTTP/1.0\r\n\r\n");
    assert_eq!(old.status, 200);

    for (addr, target, parameter) in [
        (server.admin, "/metrics?limit=abc", "limit"),
        (server.admin, "/healthz?bogus=1", "bogus"),
        (server.admin, "/readyz?x=%ff", "x"),
        (server.addr, "/?limit=1", "limit"),
        (server.addr, "/mcp/flows?limit=%2B5", "limit"),
    ] {
        let answer = raw_request(addr, &request_bytes("GET", target, &[], b""));
        assert_eq!(answer.status, 400, "{target}");
        assert_eq!(answer.json()["parameter"], parameter, "{target}");
    }
}

/// One client address holds `--http-max-connections-per-client` at most:
/// a flood of pipelined scrapes from one address, read as fast as they
/// come (so no connection is idle or stalled), kept every connection of
/// the admin listener busy, and the kubelet's probes got 503 (36 of 39 in
/// an audit: the pod restarts). The probes come from another address here.
#[test]
fn one_address_keeping_every_connection_busy_locks_out_no_probe() {
    use std::io::Read;
    let server = Server::start(&[
        "-r",
        &demo(),
        "--http-max-connections",
        "8",
        "--http-max-connections-per-client",
        "4",
        "--http-max-scrapes",
        "1",
    ]);
    let admin = server.admin;
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..12)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let scrapes = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(50);
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect(admin) else {
                        continue;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                    if s.write_all(scrapes.as_bytes()).is_err() {
                        continue;
                    }
                    // Read everything, until closed or told to stop.
                    while !stop.load(Ordering::Relaxed) {
                        match s.read(&mut buf) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // The kubelet, from another address: the status and body of `path`.
    let from_elsewhere = |path: &str| -> (u16, String) {
        use rustix::net::{AddressFamily, SocketAddrV4, SocketType, bind, connect, socket};
        let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        bind(&fd, &SocketAddrV4::new([127, 0, 0, 2].into(), 0)).unwrap();
        connect(&fd, &admin).unwrap();
        let mut stream = TcpStream::from(fd);
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        let status = reply.split(' ').nth(1).and_then(|c| c.parse().ok());
        (status.unwrap_or(0), reply)
    };
    let probes: Vec<u16> = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            from_elsewhere("/healthz").0
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    for t in flood {
        t.join().unwrap();
    }
    assert!(probes.iter().all(|&c| c == 200), "{probes:?}");
    let (status, metrics) = from_elsewhere("/metrics");
    assert_eq!(status, 200);
    assert!(
        sample(&metrics, "flowtap_http_client_connections_refused_total") > 0.0,
        "the flood met its bound"
    );
    assert_eq!(
        sample(&metrics, "flowtap_http_client_connection_capacity"),
        4.0
    );
}
