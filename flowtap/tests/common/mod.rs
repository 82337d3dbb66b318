//! Helpers shared by the integration tests: where the corpus is, and running
//! the real `flowtap` binary.
#![allow(dead_code)]

pub(crate) mod apiserver;
pub(crate) mod collectors;
pub(crate) mod metrics;
pub(crate) mod netns;
pub(crate) mod server;
pub(crate) mod truth;
pub(crate) mod wait;

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Runs `command` to its end and gives what it printed; fails the test
/// with its stderr if it failed.
pub(crate) fn stdout_of(command: &mut Command) -> Vec<u8> {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The image's binaries (`target/image-root`, staged by scripts/test.sh),
/// copied into a directory of their own under `target/` with the file
/// capabilities `scripts/install-caps.sh` gives them, as the Dockerfile
/// does: readable and executable by an unprivileged user. Root (setcap).
pub(crate) fn image_binaries_with_capabilities() -> tempfile::TempDir {
    let root = project_root();
    let staged = root.join("target/image-root/usr/local/bin");
    assert!(
        staged.join("flowtap").is_file(),
        "scripts/test.sh stages the image's binaries with scripts/build-release.sh first"
    );
    let bin = tempfile::Builder::new()
        .prefix("caps-")
        .tempdir_in(root.join("target"))
        .unwrap();
    std::fs::set_permissions(
        bin.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for name in ["flowtap", "pcap-replay"] {
        std::fs::copy(staged.join(name), bin.path().join(name)).unwrap();
    }
    let caps = Command::new("bash")
        .arg(root.join("scripts/install-caps.sh"))
        .arg(bin.path())
        .output()
        .unwrap();
    assert!(
        caps.status.success(),
        "{}",
        String::from_utf8_lossy(&caps.stderr)
    );
    bin
}

/// flowtap serving `args` on loopback, started through `program` (a
/// command that runs the binary it is given, such as `nohup` or
/// `prlimit --nofile=64:64`: the binary's path follows it); returns once
/// it serves, with its stderr's log and the data address.
pub(crate) fn serving_through(
    program: &[&str],
    args: &[&str],
) -> (Child, Arc<Mutex<String>>, String) {
    let mut child = Command::new(program[0])
        .args(&program[1..])
        .arg(env!("CARGO_BIN_EXE_flowtap"))
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (log, lines) = follow_stderr(&mut child);
    let addr = wait_for_serving(&log, &lines);
    (child, log, addr)
}

/// Waits (30 s at most) for flowtap's stderr, followed by
/// [`follow_stderr`], to say where it serves; returns the data address.
pub(crate) fn wait_for_serving(log: &Mutex<String>, lines: &Receiver<String>) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or_else(|_| panic!("flowtap did not serve: {}", log.lock().unwrap()));
        if let Some(addr) = line.strip_prefix("flowtap: serving on http://") {
            return addr.to_owned();
        }
    }
}

/// Follows a child's stderr (piped): every line is kept in the returned log
/// and also sent on the channel, for a caller waiting for a particular one.
pub(crate) fn follow_stderr(child: &mut Child) -> (Arc<Mutex<String>>, Receiver<String>) {
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let pipe = child.stderr.take().expect("stderr is piped");
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            kept.lock().unwrap().push_str(&format!("{line}\n"));
            let _ = tx.send(line);
        }
    });
    (log, rx)
}

/// `text` (an answer's JSON) with the number after every `"age_s":`
/// replaced by `_`, for comparing the answers of two flowtap processes:
/// each measures its own data's age on its own clock, from publishing its
/// snapshot to the answer, the one value two runs need not share (nor two
/// answers of one run).
pub(crate) fn without_ages(text: &str) -> String {
    const AGE: &str = "\"age_s\":";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(AGE) {
        let (head, tail) = rest.split_at(at + AGE.len());
        out.push_str(head);
        out.push('_');
        rest = tail.trim_start_matches(|c: char| c.is_ascii_digit() || ".-+eE".contains(c));
    }
    out.push_str(rest);
    out
}

/// The project's root directory (the workspace).
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `../shared/corpus` beside the project root (or `$FLOWTAP_CORPUS`). Tests
/// that need it fail loudly when it is missing.
pub(crate) fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLOWTAP_CORPUS") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = root.join("../shared/corpus");
    assert!(
        dir.is_dir(),
        "corpus not found at {} (set FLOWTAP_CORPUS)",
        dir.display()
    );
    dir
}

/// The Python of one of the project's venvs (`.venv`, `.venv-mcp1`), where
/// `scripts/setup.sh` installs the clients the tests drive.
pub(crate) fn venv_python(venv: &str) -> PathBuf {
    let python = project_root().join(venv).join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/setup.sh installs it",
        python.display()
    );
    python
}

/// A loopback TCP port nothing listens on (as of now).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A flow's key as the tests name it: (protocol, client, server, port).
pub(crate) type Key = (String, IpAddr, IpAddr, u16);

/// One flow as the API reports it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlowSummary {
    pub key: Key,
    pub client_tx_pkts: u64,
    pub client_rx_pkts: u64,
    pub client_tx_bytes: u64,
    pub client_rx_bytes: u64,
    pub server_tx_pkts: u64,
    pub server_rx_pkts: u64,
    pub server_tx_bytes: u64,
    pub server_rx_bytes: u64,
    pub connections: u64,
    pub client_handshake: Option<[u64; 3]>,
    pub server_handshake: Option<[u64; 3]>,
    /// `full` format's `mirror` object, if the flow came through one.
    pub mirror: Option<Value>,
    /// TCP health (TCP flows), the same in `full` and `raw` format.
    pub tcp: Option<TcpCounts>,
}

/// A TCP flow's health counters as the API reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TcpCounts {
    /// Retransmissions, RSTs and zero windows the client sent, then the server.
    pub sent: [[u64; 3]; 2],
    /// Connections established, refused, unanswered, reset, closed, open.
    pub connections: [u64; 6],
}

pub(crate) const OUTCOMES: [&str; 6] = [
    "established",
    "refused",
    "unanswered",
    "reset",
    "closed",
    "open",
];

impl TcpCounts {
    /// From a `full` entry and its `raw` twin, which must agree.
    fn parse(full: &Value, raw: &Value) -> Option<TcpCounts> {
        let u = |v: &Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
        let connections = |v: &Value| OUTCOMES.map(|o| u(&v["tcp_connections"], o));
        if full["proto"] != "tcp" {
            assert!(raw.get("tcp_connections").is_none(), "{raw}");
            return None;
        }
        let side = |stats: &Value| {
            ["tcp_retransmits", "tcp_rsts", "tcp_zero_windows"].map(|k| u(stats, k))
        };
        let from_full = TcpCounts {
            sent: [side(&full["client_stats"]), side(&full["server_stats"])],
            connections: connections(full),
        };
        let raw_side = |dir: &str| {
            ["retransmits", "rsts", "zero_windows"].map(|k| u(raw, &format!("{dir}_tcp_{k}")))
        };
        let from_raw = TcpCounts {
            sent: [raw_side("c2s"), raw_side("s2c")],
            connections: connections(raw),
        };
        assert_eq!(from_full, from_raw, "full and raw health of {full}");
        Some(from_full)
    }
}

pub(crate) struct Run {
    pub status: i32,
    pub flows: Vec<FlowSummary>,
    pub frames_read: u64,
    pub stderr: String,
    /// Every stdout line (one per `--dump`), parsed.
    pub bodies: Vec<Value>,
}

fn handshake(stats: &Value) -> Option<[u64; 3]> {
    Some([
        stats.get("tcp_handshake_p50_us")?.as_u64()?,
        stats.get("tcp_handshake_p90_us")?.as_u64()?,
        stats.get("tcp_handshake_p99_us")?.as_u64()?,
    ])
}

/// The flows of a `/mcp/flows?format=full` body and its `format=raw` twin
/// (same query, same order).
pub(crate) fn parse_flows(full: &Value, raw: &Value) -> Vec<FlowSummary> {
    let full = full["flows"].as_array().unwrap();
    let raw = raw["flows"].as_array().unwrap();
    assert_eq!(full.len(), raw.len());
    let mut flows = Vec::new();
    for (f, r) in full.iter().zip(raw) {
        let cs = &f["client_stats"];
        let ss = &f["server_stats"];
        let u = |v: &Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
        let key = (
            f["proto"].as_str().unwrap().to_owned(),
            f["client"]["ip"].as_str().unwrap().parse().unwrap(),
            f["server"]["ip"].as_str().unwrap().parse().unwrap(),
            u(&f["server"], "port") as u16,
        );
        assert_eq!(
            r["client_ip"], f["client"]["ip"],
            "full and raw list flows in one order"
        );
        flows.push(FlowSummary {
            key,
            client_tx_pkts: u(cs, "tx_pkts"),
            client_rx_pkts: u(cs, "rx_pkts"),
            client_tx_bytes: u(cs, "tx_bytes"),
            client_rx_bytes: u(cs, "rx_bytes"),
            server_tx_pkts: u(ss, "tx_pkts"),
            server_rx_pkts: u(ss, "rx_pkts"),
            server_tx_bytes: u(ss, "tx_bytes"),
            server_rx_bytes: u(ss, "rx_bytes"),
            connections: u(r, "connections"),
            client_handshake: handshake(cs),
            server_handshake: handshake(ss),
            mirror: f.get("mirror").cloned(),
            tcp: TcpCounts::parse(f, r),
        });
    }
    flows
}

/// Runs `flowtap -r FILES --threads N` with every flow dumped in `full` and
/// `raw` format, plus any `extra` arguments.
pub(crate) fn run_flowtap(files: &[&Path], threads: usize, extra: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .arg("-r")
        .args(files)
        .args(["--threads", &threads.to_string(), "--hash-seed", "7"])
        .args(["--dump", "/mcp/flows?format=full&limit=100000000"])
        .args(["--dump", "/mcp/flows?format=raw&limit=100000000"])
        .args(extra)
        .output()
        .expect("running flowtap");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let bodies: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON ({e}): {l:.200}")))
        .collect();
    let frames_read = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("flowtap: read ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let flows = if bodies.len() >= 2 {
        parse_flows(&bodies[0], &bodies[1])
    } else {
        Vec::new()
    };
    Run {
        status: output.status.code().unwrap_or(-1),
        flows,
        frames_read,
        stderr,
        bodies,
    }
}

/// What a flow's truth says each side sent, and its connections.
#[derive(Default)]
pub(crate) struct Sent {
    pub c2s_pkts: u64,
    pub c2s_bytes: u64,
    pub s2c_pkts: u64,
    pub s2c_bytes: u64,
    pub connections: u64,
}

/// Compares every per-side counter of a reported flow with the truth (what
/// one side sent is what the other received), adding each difference to
/// `errors`.
pub(crate) fn check_sent(what: &str, got: &FlowSummary, want: &Sent, errors: &mut Vec<String>) {
    let pairs = [
        ("client tx_pkts", got.client_tx_pkts, want.c2s_pkts),
        ("client rx_pkts", got.client_rx_pkts, want.s2c_pkts),
        ("client tx_bytes", got.client_tx_bytes, want.c2s_bytes),
        ("client rx_bytes", got.client_rx_bytes, want.s2c_bytes),
        ("server tx_pkts", got.server_tx_pkts, want.s2c_pkts),
        ("server rx_pkts", got.server_rx_pkts, want.c2s_pkts),
        ("server tx_bytes", got.server_tx_bytes, want.s2c_bytes),
        ("server rx_bytes", got.server_rx_bytes, want.c2s_bytes),
        ("connections", got.connections, want.connections),
    ];
    for (field, got, want) in pairs {
        if got != want {
            errors.push(format!("{what}: {field} {got}, truth {want}"));
        }
    }
}

/// Nearest-rank percentile of microsecond values rounded as flowtap rounds.
fn nearest_rank(values: &[f64], q: f64) -> u64 {
    let mut v: Vec<u64> = values.iter().map(|x| x.round() as u64).collect();
    v.sort_unstable();
    let idx = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[idx]
}

/// Compares a flow's reported handshake percentiles with the truth's legs
/// (in microseconds), adding any difference to `errors`.
pub(crate) fn check_legs(
    what: &str,
    truth: &[f64],
    got: Option<[u64; 3]>,
    errors: &mut Vec<String>,
) {
    match (truth.is_empty(), got) {
        (true, None) => {}
        (true, Some(g)) => errors.push(format!("{what}: handshake {g:?} but truth has none")),
        (false, None) => errors.push(format!("{what}: handshake missing, truth has {truth:?}")),
        (false, Some(g)) => {
            for (i, q) in [0.5, 0.9, 0.99].into_iter().enumerate() {
                let want = nearest_rank(truth, q);
                // Up to 16 samples are kept exactly (rounding to 1 us);
                // beyond, a sketch within 1%.
                let tolerance = if truth.len() <= 16 { 1 } else { want / 100 + 1 };
                if g[i].abs_diff(want) > tolerance {
                    errors.push(format!(
                        "{what}: p{} {} us, truth {want} us",
                        [50, 90, 99][i],
                        g[i]
                    ));
                }
            }
        }
    }
}

/// Reads "name N" pairs from the stderr report line starting with `prefix`.
pub(crate) fn report_counts(stderr: &str, prefix: &str) -> std::collections::BTreeMap<String, u64> {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stderr}"));
    report_pairs(line)
}

/// The "name N, name N, ..." pairs of a report line (after its title).
pub(crate) fn report_pairs(items: &str) -> std::collections::BTreeMap<String, u64> {
    items
        .split(", ")
        .filter_map(|pair| {
            let (name, n) = pair.trim().rsplit_once(' ')?;
            Some((name.to_owned(), n.parse().ok()?))
        })
        .collect()
}
