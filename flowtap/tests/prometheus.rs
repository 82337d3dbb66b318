//! Per workload pair series scraped by a real Prometheus (Debian's): the
//! byte counters summed by namespace pair equal the sums of the flows the
//! API lists, in PromQL over Prometheus' HTTP API; and the cardinality cap
//! folds the pairs beyond it into one `other` series without losing a byte.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::metrics::{promtool, sample};
use common::project_root;
use common::server::Server;
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
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: flowtap\n    static_configs:\n      - targets: ['{target}']\n"
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
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new("curl")
                .args(["-sf", "--get", &format!("{}/api/v1/query", self.base)])
                .args(["--data-urlencode", &format!("query={promql}")])
                .output()
                .unwrap();
            if let Ok(body) = serde_json::from_slice::<Value>(&out.stdout)
                && let Some(result) = body["data"]["result"].as_array()
                && !result.is_empty()
            {
                return result.clone();
            }
            assert!(Instant::now() < deadline, "no answer to {promql}");
            std::thread::sleep(Duration::from_millis(500));
        }
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
