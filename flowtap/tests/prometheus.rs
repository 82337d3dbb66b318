//! Per workload pair series scraped by a real Prometheus (Debian's): the
//! byte counters summed by namespace pair equal the sums of the flows the
//! API lists, in PromQL over Prometheus' HTTP API; the handshake histograms
//! hold tshark's handshake times; and the cardinality cap folds the pairs
//! beyond it into one `other` series without losing a byte. The shipped
//! alerting rules pass promtool and their unit tests, name only metrics
//! flowtap serves, and raise in a real Prometheus the one alert a hub with
//! an agent down deserves.

mod common;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::metrics::{promtool, sample};
use common::project_root;
use common::server::Server;
use common::wait;
use serde_json::Value;

fn demo() -> Vec<String> {
    let root = project_root();
    vec![
        "-r".into(),
        root.join("demo/demo.pcap").display().to_string(),
        "--k8s-inventory".into(),
        root.join("demo/inventory.json").display().to_string(),
    ]
}

/// Bytes of every flow, summed by (client namespace, server namespace),
/// from the API ("" where a side has no namespace).
fn bytes_by_namespace_pair(server: &Server) -> BTreeMap<(String, String), u64> {
    let flows = server.get_json("/mcp/flows?format=full&limit=100000");
    let mut out = BTreeMap::new();
    for f in flows["flows"].as_array().unwrap() {
        let ns = |side: &str| f[side]["ns"].as_str().unwrap_or("").to_owned();
        *out.entry((ns("client"), ns("server"))).or_default() +=
            f["totals"]["bytes"].as_u64().unwrap();
    }
    out
}

/// The `flowtap_pair_bytes_total` series of a /metrics text: labels, value.
fn pair_series(metrics: &str) -> Vec<(BTreeMap<String, String>, u64)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("flowtap_pair_bytes_total{"))
        .map(|l| {
            let (labels, value) = l.rsplit_once("} ").unwrap();
            let labels = labels
                .split("\",")
                .map(|kv| {
                    let (k, v) = kv.split_once("=\"").unwrap();
                    (k.to_owned(), v.trim_end_matches('"').to_owned())
                })
                .collect();
            (labels, value.parse().unwrap())
        })
        .collect()
}

/// Upper bounds (seconds) of the pair handshake histogram's buckets, as
/// the README lists them.
const HANDSHAKE_BOUNDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// tshark's client-leg handshake times in the demo, counted into the
/// histogram's buckets (cumulative, `+Inf` last): per TCP stream, the
/// first SYN-ACK's time less the last SYN's before it (README: a
/// retransmitted SYN does not inflate the leg), in whole microseconds.
fn tshark_handshake_buckets(pcap: &Path) -> Vec<u64> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-Y", "tcp.flags.syn == 1", "-T", "fields"])
        .args([
            "-e",
            "tcp.stream",
            "-e",
            "tcp.flags.ack",
            "-e",
            "frame.time_epoch",
        ])
        .output()
        .expect("tshark");
    assert!(out.status.success());
    // Nanoseconds from the decimal text: an f64 of epoch seconds would
    // round away the microseconds being counted.
    let ns = |t: &str| {
        let (s, frac) = t.split_once('.').unwrap_or((t, ""));
        let frac = format!("{frac:0<9}");
        s.parse::<u64>().unwrap() * 1_000_000_000 + frac[..9].parse::<u64>().unwrap()
    };
    let (mut last_syn, mut measured) = (BTreeMap::new(), BTreeSet::new());
    let mut buckets = vec![0u64; HANDSHAKE_BOUNDS.len() + 1];
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let [stream, ack, time] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("{line}")
        };
        if measured.contains(stream) {
            continue;
        }
        if ack == "0" {
            last_syn.insert(stream.to_owned(), ns(time));
        } else if let Some(syn) = last_syn.get(stream) {
            let us = (ns(time) - syn + 500) / 1000;
            let bucket = HANDSHAKE_BOUNDS
                .iter()
                .position(|&le| us as f64 / 1e6 <= le)
                .unwrap_or(HANDSHAKE_BOUNDS.len());
            buckets[bucket] += 1;
            measured.insert(stream.to_owned());
        }
    }
    buckets
        .iter()
        .scan(0, |sum, n| {
            *sum += n;
            Some(*sum)
        })
        .collect()
}

/// `flowtap_pair_handshake_seconds_bucket` summed over every pair, by `le`
/// in ascending order (`+Inf` last).
fn handshake_buckets(metrics: &str) -> Vec<u64> {
    let mut by_le: BTreeMap<String, u64> = BTreeMap::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("flowtap_pair_handshake_seconds_bucket{le=\"") {
            let (le, _) = rest.split_once('"').unwrap();
            let value: u64 = rest.rsplit_once(' ').unwrap().1.parse().unwrap();
            *by_le.entry(le.to_owned()).or_default() += value;
        }
    }
    let mut out: Vec<(f64, u64)> = by_le
        .into_iter()
        .map(|(le, n)| (le.replace("+Inf", "inf").parse().unwrap(), n))
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out.into_iter().map(|(_, n)| n).collect()
}

struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Prometheus scraping `target` (host:port) every second.
    fn start(target: &str) -> Prometheus {
        Prometheus::start_with_rules(target, None)
    }

    /// Prometheus scraping `target` every second and evaluating the
    /// alerting `rules` (a file) every second.
    fn start_with_rules(target: &str, rules: Option<&Path>) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let rule_files = rules.map_or(String::new(), |r| {
            format!("rule_files:\n  - '{}'\n", r.display())
        });
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rule_files}scrape_configs:\n  - job_name: flowtap\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = common::free_port();
        let mut child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("prometheus (scripts/setup.sh installs it)");
        // Keep its log flowing (a full pipe would stall it).
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// An instant PromQL query's vector, once it has one (bounded: 60 s).
    fn query(&self, promql: &str) -> Vec<Value> {
        let what = format!("an answer to {promql}");
        wait::until(Duration::from_secs(60), &what, || {
            let out = Command::new("curl")
                .args(["-sf", "--get", &format!("{}/api/v1/query", self.base)])
                .args(["--data-urlencode", &format!("query={promql}")])
                .output()
                .unwrap();
            let body: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            match body["data"]["result"].as_array() {
                Some(result) if !result.is_empty() => Ok(result.clone()),
                _ => Err(String::from_utf8_lossy(&out.stdout).into_owned()),
            }
        })
    }
}

#[test]
fn prometheus_sees_the_flows_per_workload_pair() {
    let server = Server::start(&demo().iter().map(String::as_str).collect::<Vec<_>>());
    let metrics = server.metrics();
    promtool(&metrics);
    let series = pair_series(&metrics);
    assert!(series.len() > 20, "{} pairs", series.len());
    // Workloads are controllers: no pod name with a ReplicaSet's hash.
    assert!(
        series
            .iter()
            .any(|(l, _)| l["client_workload"] == "checkout"),
        "{series:?}"
    );
    let total = server.get_json("/mcp/flows/summary")["total_bytes"]
        .as_u64()
        .unwrap();
    assert_eq!(series.iter().map(|(_, v)| v).sum::<u64>(), total);
    let want = bytes_by_namespace_pair(&server);
    let handshakes = tshark_handshake_buckets(&project_root().join("demo/demo.pcap"));
    assert!(handshakes.last() > Some(&300), "{handshakes:?}");
    assert_eq!(
        handshake_buckets(&metrics),
        handshakes,
        "handshakes vs tshark"
    );

    let prometheus = Prometheus::start(&server.admin.to_string());
    let got: BTreeMap<(String, String), u64> = prometheus
        .query("sum by (client_namespace, server_namespace) (flowtap_pair_bytes_total)")
        .iter()
        .map(|r| {
            let m = &r["metric"];
            let ns = |k: &str| m[k].as_str().unwrap_or("").to_owned();
            let v: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
            ((ns("client_namespace"), ns("server_namespace")), v as u64)
        })
        .collect();
    assert_eq!(got, want, "PromQL vs the API");
    let total_promql = prometheus.query("sum(flowtap_pair_bytes_total)");
    assert_eq!(
        total_promql[0]["value"][1],
        Value::String(total.to_string())
    );

    // The histograms, read by PromQL: the same buckets as tshark's, and a
    // p99 per server workload (README's query, over the whole capture: a
    // file's counters do not move, so they have no rate) within the bucket
    // that holds that workload's slowest handshakes.
    let by_le = prometheus.query("sum by (le) (flowtap_pair_handshake_seconds_bucket)");
    let mut got: Vec<(f64, u64)> = by_le
        .iter()
        .map(|r| {
            let le = r["metric"]["le"].as_str().unwrap().replace("+Inf", "inf");
            let n: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
            (le.parse().unwrap(), n as u64)
        })
        .collect();
    got.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(
        got.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        handshakes,
        "PromQL vs tshark"
    );
    let p99 = prometheus.query(
        "histogram_quantile(0.99, sum by (le, server_workload) (flowtap_pair_handshake_seconds_bucket))",
    );
    let postgres = p99
        .iter()
        .find(|r| r["metric"]["server_workload"] == "postgres")
        .unwrap_or_else(|| panic!("no postgres p99: {p99:?}"));
    let seconds: f64 = postgres["value"][1].as_str().unwrap().parse().unwrap();
    // The demo's database handshakes take 12-45 ms (README).
    assert!((0.025..=0.05).contains(&seconds), "postgres p99 {seconds}");
}

#[test]
fn pairs_beyond_the_cap_fold_into_other() {
    let mut args = demo();
    args.extend(["--metrics-max-pairs".into(), "5".into()]);
    let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let metrics = server.metrics();
    promtool(&metrics);
    let series = pair_series(&metrics);
    assert_eq!(series.len(), 6, "five pairs and other: {series:?}");
    assert_eq!(
        series
            .iter()
            .filter(|(l, _)| l["client_workload"] == "other")
            .count(),
        1
    );
    let total = server.get_json("/mcp/flows/summary")["total_bytes"]
        .as_u64()
        .unwrap();
    assert_eq!(
        series.iter().map(|(_, v)| v).sum::<u64>(),
        total,
        "no byte lost"
    );
    assert_eq!(sample(&metrics, "flowtap_metrics_pairs"), 5.0);
    assert!(sample(&metrics, "flowtap_metrics_pairs_collapsed_total") > 0.0);
}

/// The alerting rules shipped in `deploy/prometheus/`: promtool checks them
/// and runs their unit tests (each alert fires on what it is about, after
/// its `for`, and not on a healthy flowtap's values); every metric they name
/// is one flowtap serves (README's table, generated from the program); and
/// loaded into a real Prometheus scraping a hub whose second agent is down,
/// the one alert raised is that agent's.
#[test]
fn the_shipped_alerts_check_and_fire_on_a_hub_with_an_agent_down() {
    let dir = project_root().join("deploy/prometheus");
    for args in [
        ["check", "rules", "flowtap-alerts.yml"],
        ["test", "rules", "flowtap-alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (scripts/setup.sh installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = std::fs::read_to_string(dir.join("flowtap-alerts.yml")).unwrap();
    let readme = std::fs::read_to_string(project_root().join("README.md")).unwrap();
    let named: BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("flowtap_"))
        .collect();
    assert!(named.len() >= 10, "{named:?}");
    for name in &named {
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "the rules name {name}, which flowtap does not serve"
        );
    }

    let agent = Server::start(&demo().iter().map(String::as_str).collect::<Vec<_>>());
    // Nothing listens there.
    let down = format!("127.0.0.1:{}", common::free_port());
    let agents = format!("http://{},http://{down}", agent.addr);
    // The agent that answers is given time to (a pull timed out on a
    // loaded machine would raise a second alert).
    let hub = Server::start_serving(&[
        "hub",
        "--agent",
        &agents,
        "--snapshot-interval",
        "1",
        "--agent-timeout",
        "10",
    ]);
    // Ready before Prometheus first looks (a pending FlowtapNotReady else).
    wait::until_holds(Duration::from_secs(30), "the hub ready", || {
        sample(&hub.metrics(), "flowtap_ready") == 1.0
    });
    let prometheus = Prometheus::start_with_rules(
        &hub.admin.to_string(),
        Some(&dir.join("flowtap-alerts.yml")),
    );
    let alerts = || -> BTreeSet<(String, String, String)> {
        prometheus
            .query("ALERTS")
            .iter()
            .map(|r| {
                let label = |k: &str| r["metric"][k].as_str().unwrap_or("").to_owned();
                (label("alertname"), label("alertstate"), label("agent"))
            })
            .collect()
    };
    let first = alerts();
    // Some evaluations later (every second), still only that one: pending
    // for its two minutes.
    std::thread::sleep(Duration::from_secs(5));
    let later = alerts();
    for raised in [first, later] {
        assert_eq!(raised.len(), 1, "{raised:?}");
        let (name, state, who) = raised.into_iter().next().unwrap();
        assert_eq!(
            (name.as_str(), state.as_str()),
            ("FlowtapAgentMissing", "pending")
        );
        assert!(who.contains(&down), "{who} is not {down}");
    }
}
