//! What live capture and file reading set up alike: the flow tables'
//! configuration, the publisher (inventory, cluster ranges) and `--dump`.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use api::Publisher;
use api::cluster::Cluster;
use k8s::{InventoryFile, Source};
use pipeline::PipelineConfig;
use pipeline::flow::{ConnRecordConfig, Limits, TableConfig, Timeouts, Window};
use pipeline::ingest::{DedupConfig, IngestConfig};
use pipeline::source::QueueStats;
use pipeline::time;
use pipeline::wire::decap::Decap;

use crate::cli::{NamesArgs, RunArgs, ServeArgs};

/// Memory the tables may not use: the program, its threads and the HTTP
/// server under load. Counted beside it as they are: the workers' hand-off
/// inboxes (allocated whole at start: about 6 MiB a worker at the default
/// `--handoff-queue`) and, live, the AF_XDP buffers (a ring of 16 MiB a
/// queue, locked and filled at start, so a NIC of 32 queues takes 512 MiB
/// of the budget).
const RESERVED_BYTES: u64 = 128 << 20;

/// The memory budget: `--memory-limit`, or half of what the machine (or the
/// container) has.
pub(crate) fn memory_limit(cli: &RunArgs) -> u64 {
    cli.memory_limit
        .unwrap_or_else(|| pipeline::memory::available_bytes().map_or(1 << 30, |b| b / 2))
}

/// The memory flowtap may use, and what capture and hand-off take of it
/// before the tables.
struct Budget {
    total: u64,
    capture_buffers: u64,
    inboxes: u64,
}

impl Budget {
    fn of(cli: &RunArgs, capture_buffers: u64, inboxes: u64) -> Budget {
        Budget {
            total: memory_limit(cli),
            capture_buffers,
            inboxes,
        }
    }

    /// What is left for the tables and the records waiting beside them.
    fn left(&self) -> u64 {
        self.total
            .saturating_sub(RESERVED_BYTES + self.capture_buffers + self.inboxes)
    }
}

/// The tables' limits: from the memory budget, less the capture buffers,
/// the hand-off inboxes and the `ended_flows` records waiting for an
/// exporter, unless given. A `--memory-limit` given that those take whole
/// is refused (the tables ran on 1 MiB, and the process far over the limit
/// it was given: a pod's would kill it); one taken from the machine only
/// warned of.
fn limits(cli: &RunArgs, budget: &Budget, ended_flows: Option<usize>) -> anyhow::Result<Limits> {
    let ended_records = ended_flows.map_or(0, |n| n as u64 * Limits::ended_record_bytes() as u64);
    // What is allocated whole at start, whatever the tables hold.
    let allocated = budget.capture_buffers + budget.inboxes;
    if let Some(limit) = cli.memory_limit
        && allocated > limit
    {
        let lower = if budget.capture_buffers > 0 {
            "--ring-frames, --frame-size, --queues, --handoff-queue or the workers (--cores)"
        } else {
            "--handoff-queue or the workers (--threads)"
        };
        anyhow::bail!(
            "--memory-limit {} MiB is below what is allocated at start: {} MiB of capture buffers \
             and {} MiB of the workers' hand-off inboxes. Raise it, or lower {lower}",
            limit >> 20,
            budget.capture_buffers >> 20,
            budget.inboxes >> 20,
        );
    }
    if budget.left() <= ended_records {
        tracing::warn!(
            budget_mib = budget.total >> 20,
            capture_buffers_mib = budget.capture_buffers >> 20,
            handoff_inboxes_mib = budget.inboxes >> 20,
            "the memory limit leaves the flow tables next to nothing beside the capture buffers \
             and the workers' hand-off inboxes: raise --memory-limit, or lower --ring-frames, \
             --queues, --handoff-queue or the workers (--cores, --threads)"
        );
    }
    let tables = budget.left().saturating_sub(ended_records).max(1 << 20);
    let mut limits = Limits::for_memory(usize::try_from(tables).unwrap_or(usize::MAX));
    if connection_records(cli) {
        limits = limits.with_connection_records();
    }
    if let Some(n) = cli.max_connections {
        limits.max_connections = n.max(1);
    }
    if let Some(n) = cli.max_flows {
        limits.max_flows = n.max(1);
    }
    Ok(limits)
}

/// How many last records of flows that left the tables may wait for an
/// IPFIX exporter per flow (none kept otherwise): `--ipfix-max-pending-records`,
/// and at most a tenth of the memory the tables may use, so that a small
/// `--memory-limit` keeps room for flows (taken a second at a time, a
/// tenth of 72 MiB holds about 20,000).
fn ended_flow_records(cli: &RunArgs, budget: &Budget) -> Option<usize> {
    if !flow_records(cli) {
        return None;
    }
    let tenth = budget.left() / 10 / Limits::ended_record_bytes() as u64;
    let bound = (cli.ipfix_max_pending_records as u64).min(tenth).max(1);
    Some(usize::try_from(bound).unwrap_or(usize::MAX))
}

/// RTT window live when `--rtt-window` is not given.
const LIVE_RTT_WINDOW_S: u32 = 120;

/// Timeouts and windows: live defaults, or "spans the whole file" for files,
/// with the command line's overrides. `capture_buffers`: live, the bytes
/// of the AF_XDP buffers (out of the memory budget); `None` for files.
/// `inboxes`: the bytes of the workers' hand-off inboxes
/// ([`pipeline::PipelineConfig::inbox_bytes`]), out of the budget too.
pub(crate) fn table_config(
    cli: &RunArgs,
    capture_buffers: Option<u64>,
    inboxes: u64,
) -> anyhow::Result<TableConfig> {
    let live = capture_buffers.is_some();
    let timeouts = timeouts(cli, live);
    let budget = Budget::of(cli, capture_buffers.unwrap_or(0), inboxes);
    let ended_flows = ended_flow_records(cli, &budget);
    let rtt_window = match (cli.rtt_window, live) {
        (Some(s), _) => Window::Seconds(s),
        (None, true) => Window::Seconds(LIVE_RTT_WINDOW_S),
        (None, false) => Window::Unbounded,
    };
    Ok(TableConfig {
        timeouts,
        limits: limits(cli, &budget, ended_flows)?,
        rtt_window,
        rate_window_ns: time::from_secs(cli.rate_window.max(1)),
        max_fragments: cli.max_fragments,
        conn_records: connection_records(cli).then_some(ConnRecordConfig {
            active_timeout_ns: ipfix_active_timeout_ns(cli),
            max_pending: cli.ipfix_max_pending_records.max(1),
        }),
        ended_flows,
        ..TableConfig::default()
    })
}

/// Each worker's hand-off queue, in packets, for `/metrics`
/// (`flowtap_handoff_queue_capacity`): live and reading files alike.
pub(crate) fn publish_handoff_capacity(publisher: &Mutex<Publisher>, config: &PipelineConfig) {
    publisher
        .lock()
        .expect("publisher lock")
        .stats()
        .handoff_capacity
        .store(config.handoff_capacity() as u64, Ordering::Relaxed);
}

/// Whether the capture workers keep per-connection records: an IPFIX
/// exporter asks for them.
pub(crate) fn connection_records(cli: &RunArgs) -> bool {
    !cli.ipfix_collector.is_empty() && cli.ipfix_per == crate::cli::IpfixPer::Connection
}

/// Whether an IPFIX exporter makes records per flow, and so needs the last
/// records of flows evicted between snapshots.
pub(crate) fn flow_records(cli: &RunArgs) -> bool {
    !cli.ipfix_collector.is_empty() && cli.ipfix_per == crate::cli::IpfixPer::Flow
}

fn ipfix_active_timeout_ns(cli: &RunArgs) -> u64 {
    time::from_secs(cli.ipfix_active_timeout.max(1))
}

/// How frames are read: which encapsulations are opened on which ports,
/// duplicates, mirror sessions.
pub(crate) fn ingest_config(cli: &RunArgs) -> anyhow::Result<IngestConfig> {
    let mut decap = Decap::DEFAULT;
    for (tunnel, ports) in &cli.decap_ports {
        decap = decap
            .on_ports(*tunnel, ports)
            .map_err(|e| anyhow::anyhow!("--decap-ports: {e}"))?;
    }
    for tunnel in &cli.no_decap {
        decap = decap.without(*tunnel);
    }
    decap
        .ports_apart()
        .map_err(|e| anyhow::anyhow!("--decap-ports: {e}"))?;
    let defaults = IngestConfig::default();
    Ok(IngestConfig {
        decap,
        dedup: DedupConfig {
            drop: cli.dedup,
            window_ns: cli.dedup_window_us.saturating_mul(1_000),
            slots: cli.dedup_slots,
        },
        max_mirror_sessions: cli.max_mirror_sessions,
        max_tunnel_fragments: cli.max_fragments,
        ..defaults
    })
}

/// The idle timeouts of a capture (`live`) or of files, as the options set
/// them.
fn timeouts(cli: &RunArgs, live: bool) -> Timeouts {
    let mut timeouts = if live {
        Timeouts::LIVE
    } else {
        Timeouts::NEVER
    };
    if let Some(s) = cli.tcp_timeout {
        let ns = time::from_secs(s);
        timeouts.tcp_idle_ns = ns;
        timeouts.tcp_closed_ns = timeouts.tcp_closed_ns.min(ns);
        timeouts.tcp_handshake_ns = timeouts.tcp_handshake_ns.min(ns);
    }
    if let Some(s) = cli.tcp_syn_timeout {
        timeouts.tcp_handshake_ns = time::from_secs(s);
    }
    if let Some(s) = cli.udp_timeout {
        timeouts.udp_idle_ns = time::from_secs(s);
    }
    timeouts
}

/// How long the Kubernetes watch keeps a pod deleted or finished to name
/// its old address: as long as its flows may stay in answers (the longest
/// idle timeout that ends flows), 5 minutes at least.
fn gone_pods_kept(cli: &RunArgs) -> std::time::Duration {
    let t = timeouts(cli, !cli.interface.is_empty());
    let longest = [t.tcp_idle_ns, t.udp_idle_ns]
        .into_iter()
        .filter(|&ns| ns != pipeline::flow::NEVER)
        .max()
        .unwrap_or(0);
    std::time::Duration::from_nanos(longest).max(k8s::GONE_PODS_KEPT)
}

/// The publisher of a flowtap reading files or capturing, with the
/// inventory loaded (an invalid file fails here), naming itself in its
/// coverage.
pub(crate) fn publisher(cli: &RunArgs) -> anyhow::Result<Arc<Mutex<Publisher>>> {
    let mut publisher = named_publisher(&cli.names, &cli.serve, gone_pods_kept(cli))?;
    publisher
        .stats()
        .memory_limit
        .store(memory_limit(cli), Ordering::Relaxed);
    let name = node_name(cli);
    publisher.set_identity(&name, Some(&name), None);
    if !cli.ipfix_collector.is_empty() {
        let config = ipfix::ExportConfig {
            collectors: cli
                .ipfix_collector
                .iter()
                .map(|c| collector(c))
                .collect::<anyhow::Result<_>>()?,
            tcp_buffer_bytes: usize::try_from(cli.ipfix_tcp_buffer).unwrap_or(usize::MAX),
            template_refresh: std::time::Duration::from_secs_f64(cli.ipfix_template_refresh),
            domain: cli.ipfix_domain,
            enterprise: cli.ipfix_enterprise_number,
            biflow: cli.ipfix_biflow,
            per: cli.ipfix_per.records(),
            active_timeout_ns: ipfix_active_timeout_ns(cli),
            mtu: cli.ipfix_mtu,
        };
        // Messages no shorter than the templates (they were sent longer
        // than asked, without a word).
        let least = ipfix::message::Encoder::new(0, 0, config.biflow, 0).max_len();
        if config.mtu < least {
            anyhow::bail!(
                "--ipfix-mtu {}: the templates{} take {least} bytes: give at least {least}",
                config.mtu,
                if config.biflow {
                    " of biflow records"
                } else {
                    ""
                }
            );
        }
        let exporter = ipfix::Exporter::new(config, publisher.stats().ipfix.clone())
            .context("--ipfix-collector: opening a socket")?;
        publisher.add_sink(Box::new(exporter));
    }
    Ok(Arc::new(Mutex::new(publisher)))
}

/// How a collector is reached, given its address.
type Transport = fn(std::net::SocketAddr) -> ipfix::CollectorAddr;

/// A collector's `HOST:PORT` and transport, from `udp://HOST:PORT` or
/// `tcp://HOST:PORT` (also `--ipfix-collector`'s value parser, so that a
/// bad one is named with where it came from).
pub(crate) fn collector_url(url: &str) -> Result<(&str, Transport), String> {
    if let Some(addr) = url.strip_prefix("udp://") {
        Ok((addr, ipfix::CollectorAddr::Udp))
    } else if let Some(addr) = url.strip_prefix("tcp://") {
        Ok((addr, ipfix::CollectorAddr::Tcp))
    } else {
        Err(format!("{url:?}: give udp://HOST:PORT or tcp://HOST:PORT"))
    }
}

/// An IPFIX collector from `udp://HOST:PORT` or `tcp://HOST:PORT`.
fn collector(url: &str) -> anyhow::Result<ipfix::CollectorAddr> {
    use std::net::ToSocketAddrs;
    let (addr, transport) =
        collector_url(url).map_err(|e| anyhow::anyhow!("--ipfix-collector {e}"))?;
    let resolved = addr
        .to_socket_addrs()
        .with_context(|| format!("--ipfix-collector {url:?}"))?
        .next()
        .with_context(|| format!("--ipfix-collector {url:?}: no address"))?;
    // Taken, every message's send then failed.
    if resolved.port() == 0 {
        anyhow::bail!("--ipfix-collector {url:?}: port 0 reaches no collector");
    }
    Ok(transport(resolved))
}

/// This flowtap's name: `--node-name`, else the host name.
pub(crate) fn node_name(cli: &RunArgs) -> String {
    cli.node_name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "flowtap".to_owned())
    })
}

/// A publisher with the Kubernetes names `names` says where to find (a
/// watch keeping pods gone for `gone_pods_kept`), and the per-pair metrics
/// `serve` bounds.
pub(crate) fn named_publisher(
    names: &NamesArgs,
    serve: &ServeArgs,
    gone_pods_kept: std::time::Duration,
) -> anyhow::Result<Publisher> {
    let stats = Arc::new(k8s::WatchStats::default());
    let inventory = match &names.k8s_inventory {
        Some(path) => Some(Source::File(
            InventoryFile::open(path).context("loading the Kubernetes inventory")?,
        )),
        None if names.k8s_watch => Some(watch(names, stats.clone(), gone_pods_kept)?),
        None => None,
    };
    let cluster = Cluster {
        cidrs: names.cluster_cidr.clone(),
    };
    if let Some(watch) = inventory.as_ref().filter(|s| s.follows_the_api()) {
        wait_for_the_first_lists(watch);
    }
    let mut publisher = Publisher::new(inventory, cluster, stats);
    publisher.set_metrics_max_pairs(serve.metrics_max_pairs);
    Ok(publisher)
}

/// How long flowtap waits at start for the Kubernetes watch's first lists.
const FIRST_LISTS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits, [`FIRST_LISTS_WAIT`] at most, until the watch has listed every
/// kind: answers made before would name nobody (a hub's first round, a
/// `--dump`), and the per-pair counters would credit each pair's history
/// to `unknown` the first time they see it, for good. Past the wait,
/// answers name what the watch holds so far, and `flowtap_k8s_synced`
/// says it is not done.
fn wait_for_the_first_lists(watch: &Source) {
    let started = std::time::Instant::now();
    // Complete once every kind was listed and the mapping rebuilt with them.
    while !watch.current().complete {
        if started.elapsed() >= FIRST_LISTS_WAIT {
            tracing::warn!(
                "the Kubernetes watch has not listed every kind within {FIRST_LISTS_WAIT:?}: \
                 names are incomplete until it has (flowtap_k8s_synced)"
            );
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(feature = "watch")]
fn watch(
    names: &NamesArgs,
    stats: Arc<k8s::WatchStats>,
    gone_pods_kept: std::time::Duration,
) -> anyhow::Result<Source> {
    let config = k8s::watch::WatchConfig {
        max_objects: names.k8s_max_objects,
        request_timeout: std::time::Duration::from_secs_f64(names.k8s_request_timeout),
        max_answer_bytes: names.k8s_max_answer_bytes,
        gone_pods_kept,
    };
    Ok(Source::Watch(
        k8s::watch::Watch::start(config, stats).context("--k8s-watch")?,
    ))
}

#[cfg(not(feature = "watch"))]
fn watch(_: &NamesArgs, _: Arc<k8s::WatchStats>, _: std::time::Duration) -> anyhow::Result<Source> {
    anyhow::bail!(
        "--k8s-watch: this flowtap was built without the `watch` feature; rebuild with default features"
    )
}

/// Prints the body of each `--dump` target from the current view; returns
/// whether any was refused.
pub(crate) fn dump(publisher: &Mutex<Publisher>, targets: &[String]) -> anyhow::Result<bool> {
    if targets.is_empty() {
        return Ok(false);
    }
    let view = publisher
        .lock()
        .expect("publisher lock")
        .views()
        .load_full();
    let mut stdout = std::io::stdout().lock();
    let terminal = std::io::IsTerminal::is_terminal(&stdout);
    let mut failed = false;
    for target in targets {
        let (path, query) = api::rest::split_target(target);
        let response = api::respond(&view, path, query);
        if response.status != 200 {
            failed = true;
            eprintln!("flowtap: --dump {target}: HTTP {}", response.status);
        }
        if terminal {
            stdout.write_all(crate::table::json_for_terminal(&response.body).as_bytes())
        } else {
            stdout.write_all(&response.body)
        }
        .context("writing to stdout")?;
        stdout.write_all(b"\n").context("writing to stdout")?;
    }
    stdout.flush().context("writing to stdout")?;
    Ok(failed)
}

/// The end-of-run report on stderr: the metrics that have a place in it
/// (frames by kind, malformed frames by reason, flows, limits, and each live
/// capture queue), as the served snapshot and `queues` have them.
pub(crate) fn report(publisher: &Mutex<Publisher>, queues: &[QueueStats]) {
    let (view, stats) = {
        let p = publisher.lock().expect("publisher lock");
        (p.views().load_full(), p.stats())
    };
    let sources = api::metrics::Sources {
        snapshot: &view.snapshot,
        stats: &stats,
        queues,
        ready: true,
        version: crate::cli::VERSION,
        commit: crate::cli::COMMIT,
    };
    for line in api::metrics::report::lines(&sources) {
        eprintln!("flowtap: {line}");
    }
}

/// The peak memory line of the end-of-run report.
pub(crate) fn report_memory(cli: &RunArgs) {
    if let Some(peak) = pipeline::memory::peak_resident_bytes() {
        eprintln!(
            "flowtap: peak memory {} MiB (limit {} MiB)",
            peak >> 20,
            memory_limit(cli) >> 20
        );
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    /// The last records of ended flows waiting for an IPFIX exporter per
    /// flow take a tenth of the tables' memory at most: a small
    /// `--memory-limit` keeps its room for flows (the default bound's 82
    /// MiB left 312 flows of 18,716 under 200 MiB).
    #[test]
    fn ended_flow_records_take_a_tenth_of_the_tables_at_most() {
        let run = |args: &[&str]| {
            Cli::try_parse_from([&["flowtap", "-r", "f.pcap"], args].concat())
                .unwrap()
                .run
        };
        let collector = ["--ipfix-collector", "udp://127.0.0.1:9"];
        let ended = |cli: &RunArgs| ended_flow_records(cli, &Budget::of(cli, 0, 0));
        assert_eq!(ended(&run(&[])), None);
        let per_connection = run(&[&collector[..], &["--ipfix-per", "connection"]].concat());
        assert_eq!(ended(&per_connection), None);
        let small = run(&[&collector[..], &["--memory-limit", "200Mi"]].concat());
        let bound = ended(&small).unwrap();
        let bytes = (bound * Limits::ended_record_bytes()) as u64;
        assert!(
            bound > 10_000 && bytes <= ((200 << 20) - RESERVED_BYTES) / 10,
            "{bound} records, {bytes} bytes"
        );
        let flows = |cli: &RunArgs| {
            limits(cli, &Budget::of(cli, 0, 0), ended(cli))
                .unwrap()
                .max_flows
        };
        let without = run(&["--memory-limit", "200Mi"]);
        assert!(
            flows(&small) * 10 >= flows(&without) * 8,
            "{} of {}",
            flows(&small),
            flows(&without)
        );
        let large = run(&[&collector[..], &["--memory-limit", "64Gi"]].concat());
        assert_eq!(ended(&large), Some(262_144), "--ipfix-max-pending-records");
    }

    /// A pod gone is kept to name its flows for as long as they can stay
    /// in answers: the longest idle timeout that ends flows, 5 minutes at
    /// least (files, whose flows never end, and short timeouts).
    #[test]
    fn gone_pods_are_kept_as_long_as_their_flows_stay() {
        let kept = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["flowtap"], args].concat()).unwrap();
            gone_pods_kept(&cli.run).as_secs()
        };
        assert_eq!(kept(&["-i", "eth0"]), 300);
        assert_eq!(kept(&["-i", "eth0", "--tcp-timeout", "3600"]), 3600);
        assert_eq!(kept(&["-i", "eth0", "--udp-timeout", "900"]), 900);
        assert_eq!(kept(&["-i", "eth0", "--tcp-timeout", "5"]), 300);
        assert_eq!(kept(&["-r", "f.pcap"]), 300);
        assert_eq!(kept(&["-r", "f.pcap", "--tcp-timeout", "7200"]), 7200);
    }
}
