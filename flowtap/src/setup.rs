//! What live capture and file reading set up alike: the flow tables'
//! configuration, the publisher (inventory, cluster ranges) and `--dump`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use http_api::Publisher;
use http_api::cluster::Cluster;
use http_api::k8s::InventoryFile;
use pipeline::Snapshot;
use pipeline::counters::FrameKind;
use pipeline::flow::{Limits, TableConfig, Timeouts, Window};
use pipeline::wire::dissect::MalformedReason;

use crate::cli::RunArgs;

pub const SECOND_NS: u64 = 1_000_000_000;

/// Memory the tables may not use: the program, its threads and hand-off
/// queues, the HTTP server under load (and, live, the AF_XDP buffers).
const RESERVED_BYTES: u64 = 128 << 20;
const RESERVED_LIVE_BYTES: u64 = 64 << 20;

/// The memory budget: `--memory-limit`, or half of what the machine (or the
/// container) has.
pub fn memory_limit(cli: &RunArgs) -> u64 {
    cli.memory_limit
        .unwrap_or_else(|| pipeline::memory::available_bytes().map_or(1 << 30, |b| b / 2))
}

/// The tables' limits: from the memory budget, unless given.
fn limits(cli: &RunArgs, live: bool) -> Limits {
    let reserved = RESERVED_BYTES + if live { RESERVED_LIVE_BYTES } else { 0 };
    let tables = memory_limit(cli).saturating_sub(reserved).max(1 << 20);
    let mut limits = Limits::for_memory(usize::try_from(tables).unwrap_or(usize::MAX));
    if let Some(n) = cli.max_connections {
        limits.max_connections = n.max(1);
    }
    if let Some(n) = cli.max_flows {
        limits.max_flows = n.max(1);
    }
    limits
}

/// RTT window live when `--rtt-window` is not given.
const LIVE_RTT_WINDOW_S: u32 = 120;

/// Timeouts and windows: live defaults, or "spans the whole file" for files,
/// with the command line's overrides.
pub fn table_config(cli: &RunArgs, live: bool) -> TableConfig {
    let mut timeouts = if live {
        Timeouts::LIVE
    } else {
        Timeouts::NEVER
    };
    if let Some(s) = cli.tcp_timeout {
        let ns = s * SECOND_NS;
        timeouts.tcp_idle_ns = ns;
        timeouts.tcp_closed_ns = timeouts.tcp_closed_ns.min(ns);
        timeouts.tcp_handshake_ns = timeouts.tcp_handshake_ns.min(ns);
    }
    if let Some(s) = cli.udp_timeout {
        timeouts.udp_idle_ns = s * SECOND_NS;
    }
    let rtt_window = match (cli.rtt_window, live) {
        (Some(s), _) => Window::Seconds(s),
        (None, true) => Window::Seconds(LIVE_RTT_WINDOW_S),
        (None, false) => Window::Unbounded,
    };
    TableConfig {
        timeouts,
        limits: limits(cli, live),
        rtt_window,
        rate_window_ns: cli.rate_window.max(1) * SECOND_NS,
        ..TableConfig::default()
    }
}

/// The publisher, with the inventory loaded (an invalid file fails here).
pub fn publisher(cli: &RunArgs) -> anyhow::Result<Arc<Mutex<Publisher>>> {
    let inventory = match &cli.k8s_inventory {
        Some(path) => Some(InventoryFile::open(path).context("loading the Kubernetes inventory")?),
        None => None,
    };
    let cluster = Cluster {
        cidrs: cli.cluster_cidr.clone(),
    };
    let publisher = Publisher::new(inventory, cluster);
    publisher
        .stats()
        .memory_limit
        .store(memory_limit(cli), std::sync::atomic::Ordering::Relaxed);
    Ok(Arc::new(Mutex::new(publisher)))
}

/// Prints the body of each `--dump` target from the current view; returns
/// whether any was refused.
pub fn dump(publisher: &Mutex<Publisher>, targets: &[String]) -> anyhow::Result<bool> {
    if targets.is_empty() {
        return Ok(false);
    }
    let view = publisher
        .lock()
        .expect("publisher lock")
        .views()
        .load_full();
    let mut stdout = std::io::stdout().lock();
    let mut failed = false;
    for target in targets {
        let (path, query) = http_api::api::split_target(target);
        let response = http_api::respond(&view, path, query);
        if response.status != 200 {
            failed = true;
            eprintln!("flowtap: --dump {target}: HTTP {}", response.status);
        }
        stdout
            .write_all(&response.body)
            .context("writing to stdout")?;
        stdout.write_all(b"\n").context("writing to stdout")?;
    }
    stdout.flush().context("writing to stdout")?;
    Ok(failed)
}

/// Frames by kind, malformed frames by reason, flows and what the tables
/// could not count, on stderr.
pub fn report_counters(snapshot: &Snapshot) {
    let c = &snapshot.counters;
    let kinds: Vec<String> = FrameKind::ALL
        .iter()
        .map(|k| format!("{} {}", k.name(), c.ingest.kind(*k)))
        .collect();
    let malformed: Vec<String> = MalformedReason::ALL
        .iter()
        .map(|r| format!("{} {}", r.name(), c.ingest.malformed(*r)))
        .collect();
    eprintln!("flowtap: frames by kind: {}", kinds.join(", "));
    eprintln!(
        "flowtap: malformed frames: {} ({})",
        c.ingest.malformed_total(),
        malformed.join(", ")
    );
    eprintln!(
        "flowtap: flows {}, connections {}, unmatched fragments {}, out-of-order handshakes {}, hand-off drops {}",
        snapshot.flows.len(),
        snapshot.flows.iter().map(|f| f.connections).sum::<u64>(),
        c.table.fragments_unmatched,
        c.table.handshakes_out_of_order,
        c.ingest.handoff_drops
    );
    let t = &c.table;
    eprintln!(
        "flowtap: limits: connections {} of {} (evicted {}, untracked packets {}), flows {} of {} (evicted {} holding {} packets, packets in no flow {}), histograms {} of {} (samples replaced {})",
        t.active_connections,
        t.connection_capacity,
        t.connections_evicted,
        t.untracked_pkts,
        t.active_flows,
        t.flow_capacity,
        t.flows_evicted,
        t.evicted_pkts,
        t.flow_table_full_pkts,
        t.active_histograms,
        t.histogram_capacity,
        t.handshake_samples_replaced,
    );
}

/// The peak memory line of the end-of-run report.
pub fn report_memory(cli: &RunArgs) {
    if let Some(peak) = pipeline::memory::peak_resident_bytes() {
        eprintln!(
            "flowtap: peak memory {} MiB (limit {} MiB)",
            peak >> 20,
            memory_limit(cli) >> 20
        );
    }
}
