//! `GET /metrics`: Prometheus text format, through prometheus-client. Every
//! metric is in [`CATALOG`] (the single list the README's metrics reference
//! is generated from); values are read at scrape time from the published
//! view, the live capture's per-queue counters, and the server's own.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use pipeline::counters::FrameKind;
use pipeline::merger::now_ns;
use pipeline::wire::dissect::MalformedReason;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::view::View;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric: its name (counters without `_total`, which the encoder adds),
/// type, labels and meaning.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

macro_rules! spec {
    ($name:literal, $kind:ident, [$($label:literal),*], $help:literal) => {
        Spec { name: $name, kind: Kind::$kind, labels: &[$($label),*], help: $help }
    };
}

pub const BUILD_INFO: Spec = spec!(
    "flowtap_build_info",
    Gauge,
    ["version", "commit"],
    "Always 1; the labels say which build runs."
);
pub const READY: Spec = spec!(
    "flowtap_ready",
    Gauge,
    [],
    "1 once capture is running (live) or the files are read, else 0."
);
pub const FRAMES: Spec = spec!(
    "flowtap_frames",
    Counter,
    [],
    "Frames received (live) or read (files)."
);
pub const FRAME_BYTES: Spec = spec!(
    "flowtap_frame_bytes",
    Counter,
    [],
    "Wire bytes of those frames."
);
pub const FRAMES_BY_KIND: Spec = spec!(
    "flowtap_frames_by_kind",
    Counter,
    ["kind"],
    "Parsed frames by kind: tcp, udp, icmp, arp, ip_other, non_ip."
);
pub const MALFORMED: Spec = spec!(
    "flowtap_malformed_frames",
    Counter,
    ["reason"],
    "Frames that could not be read to their transport header, by reason."
);
pub const HANDOFF_DROPS: Spec = spec!(
    "flowtap_handoff_drops",
    Counter,
    [],
    "Packets dropped because a shard's hand-off queue was full."
);
pub const FRAGMENTS_UNMATCHED: Spec = spec!(
    "flowtap_fragments_unmatched",
    Counter,
    [],
    "Later IP fragments whose first fragment was never seen."
);
pub const FRAGMENT_TABLE_FULL: Spec = spec!(
    "flowtap_fragment_table_full",
    Counter,
    [],
    "First fragments not remembered because the fragment table was full."
);
pub const HANDSHAKES_OUT_OF_ORDER: Spec = spec!(
    "flowtap_handshakes_out_of_order",
    Counter,
    [],
    "Handshakes not measured because their timestamps ran backwards."
);
pub const CONNECTIONS_EXPIRED: Spec = spec!(
    "flowtap_connections_expired",
    Counter,
    [],
    "Connections dropped after their idle timeout."
);
pub const FLOWS_EXPIRED: Spec = spec!(
    "flowtap_flows_expired",
    Counter,
    [],
    "Flows dropped after their idle timeout."
);
pub const CONNECTIONS_EVICTED: Spec = spec!(
    "flowtap_connections_evicted",
    Counter,
    [],
    "Unanswered or closed connections given up to make room in a full connection table."
);
pub const UNTRACKED_PACKETS: Spec = spec!(
    "flowtap_untracked_packets",
    Counter,
    [],
    "Packets of connections not tracked because the table was full of answered ones (still counted in their flows)."
);
pub const FLOWS_EVICTED: Spec = spec!(
    "flowtap_flows_evicted",
    Counter,
    [],
    "Unanswered flows given up to make room in a full flow table."
);
pub const EVICTED_PACKETS: Spec = spec!(
    "flowtap_evicted_flow_packets",
    Counter,
    [],
    "Packets the evicted flows had counted (no longer reported)."
);
pub const EVICTED_BYTES: Spec = spec!(
    "flowtap_evicted_flow_bytes",
    Counter,
    [],
    "Bytes the evicted flows had counted (no longer reported)."
);
pub const FLOW_TABLE_FULL_PACKETS: Spec = spec!(
    "flowtap_flow_table_full_packets",
    Counter,
    [],
    "Packets counted in no flow: the flow table was full and nothing could be evicted."
);
pub const FLOW_TABLE_FULL_BYTES: Spec = spec!(
    "flowtap_flow_table_full_bytes",
    Counter,
    [],
    "Bytes of those packets."
);
pub const HANDSHAKE_SAMPLES_REPLACED: Spec = spec!(
    "flowtap_handshake_samples_replaced",
    Counter,
    [],
    "Handshake samples that replaced a flow's oldest because the histogram limit was reached."
);
pub const ACTIVE_HISTOGRAMS: Spec = spec!(
    "flowtap_large_handshake_digests",
    Gauge,
    [],
    "Handshake digests grown past their exact samples into histograms (flows with many handshakes)."
);
pub const CONNECTION_CAPACITY: Spec = spec!(
    "flowtap_connection_capacity",
    Gauge,
    [],
    "Connections tracked at most (--max-connections, or from --memory-limit)."
);
pub const FLOW_CAPACITY: Spec = spec!(
    "flowtap_flow_capacity",
    Gauge,
    [],
    "Flows kept at most (--max-flows, or from --memory-limit)."
);
pub const HISTOGRAM_CAPACITY: Spec = spec!(
    "flowtap_large_handshake_digest_capacity",
    Gauge,
    [],
    "Large handshake digests kept at most (from --memory-limit); beyond it digests keep their latest samples."
);
pub const RESIDENT_MEMORY: Spec = spec!(
    "flowtap_resident_memory_bytes",
    Gauge,
    [],
    "Resident memory of the process."
);
pub const MEMORY_LIMIT: Spec = spec!(
    "flowtap_memory_limit_bytes",
    Gauge,
    [],
    "The memory budget the table limits were derived from (--memory-limit)."
);
pub const ACTIVE_CONNECTIONS: Spec = spec!(
    "flowtap_active_connections",
    Gauge,
    [],
    "Connections tracked now."
);
pub const ACTIVE_FLOWS: Spec = spec!("flowtap_active_flows", Gauge, [], "Flows tracked now.");
pub const SNAPSHOTS: Spec = spec!(
    "flowtap_snapshots_published",
    Counter,
    [],
    "Snapshots published to the API."
);
pub const SNAPSHOT_AGE: Spec = spec!(
    "flowtap_snapshot_age_seconds",
    Gauge,
    [],
    "Wall-clock age of the snapshot the API serves."
);
pub const MERGE_DURATION: Spec = spec!(
    "flowtap_snapshot_merge_duration_seconds",
    Histogram,
    [],
    "Time to export, merge and sort the shards' flows for one snapshot."
);
pub const XDP_FRAMES: Spec = spec!(
    "flowtap_xdp_frames",
    Counter,
    ["queue"],
    "Frames received on an rx queue's AF_XDP socket."
);
pub const XDP_BYTES: Spec = spec!(
    "flowtap_xdp_bytes",
    Counter,
    ["queue"],
    "Bytes received on an rx queue's AF_XDP socket."
);
pub const XDP_NO_TIMESTAMP: Spec = spec!(
    "flowtap_xdp_frames_without_timestamp",
    Counter,
    ["queue"],
    "Frames whose XDP timestamp was missing (user-space time used)."
);
pub const XDP_RX_DROPPED: Spec = spec!(
    "flowtap_xdp_rx_dropped",
    Counter,
    ["queue"],
    "Kernel: frames dropped for the socket (no room, or over 4 KiB)."
);
pub const XDP_RX_RING_FULL: Spec = spec!(
    "flowtap_xdp_rx_ring_full",
    Counter,
    ["queue"],
    "Kernel: frames dropped because the rx ring was full."
);
pub const XDP_FILL_RING_EMPTY: Spec = spec!(
    "flowtap_xdp_fill_ring_empty",
    Counter,
    ["queue"],
    "Kernel: times the fill ring had no free buffer."
);
pub const XDP_INVALID: Spec = spec!(
    "flowtap_xdp_invalid_descriptors",
    Counter,
    ["queue"],
    "Kernel: invalid rx/tx descriptors."
);
pub const XDP_RING_SIZE: Spec = spec!(
    "flowtap_xdp_ring_entries",
    Gauge,
    ["queue"],
    "Size of each AF_XDP ring (fill, rx) in frames: the buffering bound."
);
pub const HANDOFF_CAPACITY: Spec = spec!(
    "flowtap_handoff_queue_capacity",
    Gauge,
    [],
    "Packets each worker's hand-off queue holds: the bound behind hand-off drops."
);
pub const HTTP_REQUESTS: Spec = spec!(
    "flowtap_http_requests",
    Counter,
    ["path", "status"],
    "HTTP requests by path (known paths; others are \"other\") and status."
);
pub const INVENTORY_RELOADS: Spec = spec!(
    "flowtap_inventory_reloads",
    Counter,
    [],
    "Times the Kubernetes inventory file was re-read after a change."
);
pub const INVENTORY_RELOAD_ERRORS: Spec = spec!(
    "flowtap_inventory_reload_errors",
    Counter,
    [],
    "Re-reads that failed (the previous mapping stayed in force)."
);
pub const HTTP_CONNECTIONS: Spec = spec!(
    "flowtap_http_connections",
    Gauge,
    [],
    "HTTP connections open now."
);
pub const HTTP_CONNECTION_CAPACITY: Spec = spec!(
    "flowtap_http_connection_capacity",
    Gauge,
    [],
    "HTTP connections open at most (--http-max-connections)."
);
pub const HTTP_CONNECTIONS_REFUSED: Spec = spec!(
    "flowtap_http_connections_refused",
    Counter,
    [],
    "Connections answered 503 because every open one was busy."
);
pub const HTTP_CONNECTIONS_CLOSED_IDLE: Spec = spec!(
    "flowtap_http_connections_closed_idle",
    Counter,
    [],
    "Idle connections closed to admit new ones at the limit."
);
pub const MCP_REQUESTS: Spec = spec!(
    "flowtap_mcp_requests",
    Counter,
    ["method", "outcome"],
    "MCP JSON-RPC requests by method (known ones; others are \"other\") and outcome (ok, error)."
);
pub const MCP_SESSIONS: Spec = spec!(
    "flowtap_mcp_sessions",
    Gauge,
    [],
    "Open MCP sessions (handshake protocol revisions over HTTP)."
);
pub const MCP_SESSION_CAPACITY: Spec = spec!(
    "flowtap_mcp_session_capacity",
    Gauge,
    [],
    "MCP sessions kept at most: the bound behind evictions."
);
pub const MCP_SESSIONS_EVICTED: Spec = spec!(
    "flowtap_mcp_sessions_evicted",
    Counter,
    [],
    "MCP sessions ended early to make room for new ones (least recently used first)."
);
pub const INVENTORY_ADDRESSES: Spec = spec!(
    "flowtap_inventory_addresses",
    Gauge,
    [],
    "IP addresses the inventory maps."
);

/// Every metric flowtap exports.
pub const CATALOG: &[Spec] = &[
    BUILD_INFO,
    READY,
    FRAMES,
    FRAME_BYTES,
    FRAMES_BY_KIND,
    MALFORMED,
    HANDOFF_DROPS,
    FRAGMENTS_UNMATCHED,
    FRAGMENT_TABLE_FULL,
    HANDSHAKES_OUT_OF_ORDER,
    CONNECTIONS_EXPIRED,
    FLOWS_EXPIRED,
    ACTIVE_CONNECTIONS,
    ACTIVE_FLOWS,
    CONNECTIONS_EVICTED,
    UNTRACKED_PACKETS,
    FLOWS_EVICTED,
    EVICTED_PACKETS,
    EVICTED_BYTES,
    FLOW_TABLE_FULL_PACKETS,
    FLOW_TABLE_FULL_BYTES,
    HANDSHAKE_SAMPLES_REPLACED,
    ACTIVE_HISTOGRAMS,
    CONNECTION_CAPACITY,
    FLOW_CAPACITY,
    HISTOGRAM_CAPACITY,
    RESIDENT_MEMORY,
    MEMORY_LIMIT,
    SNAPSHOTS,
    SNAPSHOT_AGE,
    MERGE_DURATION,
    XDP_FRAMES,
    XDP_BYTES,
    XDP_NO_TIMESTAMP,
    XDP_RX_DROPPED,
    XDP_RX_RING_FULL,
    XDP_FILL_RING_EMPTY,
    XDP_INVALID,
    XDP_RING_SIZE,
    HANDOFF_CAPACITY,
    HTTP_REQUESTS,
    INVENTORY_RELOADS,
    INVENTORY_RELOAD_ERRORS,
    INVENTORY_ADDRESSES,
    HTTP_CONNECTIONS,
    HTTP_CONNECTION_CAPACITY,
    HTTP_CONNECTIONS_REFUSED,
    HTTP_CONNECTIONS_CLOSED_IDLE,
    MCP_REQUESTS,
    MCP_SESSIONS,
    MCP_SESSION_CAPACITY,
    MCP_SESSIONS_EVICTED,
];

/// One rx queue's counters, as the live capture reports them.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueSample {
    pub queue: u32,
    pub frames: u64,
    pub bytes: u64,
    pub without_timestamp: u64,
    pub rx_dropped: u64,
    pub rx_ring_full: u64,
    pub fill_ring_empty: u64,
    pub invalid: u64,
    pub ring_entries: u64,
}

/// Counters kept by the publisher and the server.
#[derive(Debug, Default)]
pub struct ServiceStats {
    pub snapshots: AtomicU64,
    pub inventory_reloads: AtomicU64,
    pub inventory_reload_errors: AtomicU64,
    pub inventory_addresses: AtomicU64,
    pub handoff_capacity: AtomicU64,
    /// Merge durations, over [`MERGE_BUCKETS`].
    merge: Mutex<Option<Histogram>>,
    /// Requests by (path label, status).
    http: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// MCP requests by (method label, outcome).
    mcp: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    pub mcp_sessions: AtomicU64,
    /// The memory budget (bytes) the table limits come from.
    pub memory_limit: AtomicU64,
    pub mcp_session_capacity: AtomicU64,
    pub mcp_sessions_evicted: AtomicU64,
    pub http_connections: AtomicU64,
    pub http_connection_capacity: AtomicU64,
    pub http_connections_refused: AtomicU64,
    pub http_connections_closed_idle: AtomicU64,
}

/// Upper bounds (seconds) of the merge-duration histogram.
pub const MERGE_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// The paths requests are labelled with; anything else is "other", so a
/// scanner cannot grow the label set.
pub const KNOWN_PATHS: &[&str] = &[
    "/mcp/flows",
    "/mcp/flows/summary",
    "/mcp",
    "/metrics",
    "/healthz",
    "/readyz",
];

impl ServiceStats {
    pub fn observe_merge(&self, seconds: f64) {
        let mut merge = self.merge.lock().expect("metrics lock");
        let h = merge.get_or_insert_with(|| Histogram::new(&MERGE_BUCKETS));
        for (le, n) in &mut h.buckets {
            if seconds <= *le {
                *n += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Counts an MCP request; `method` is one of a fixed set of labels.
    pub fn count_mcp(&self, method: &'static str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        *self
            .mcp
            .lock()
            .expect("metrics lock")
            .entry((method, outcome))
            .or_default() += 1;
    }

    pub fn count_request(&self, path: &str, status: u16) {
        let label = KNOWN_PATHS
            .iter()
            .find(|p| **p == path)
            .copied()
            .unwrap_or("other");
        *self
            .http
            .lock()
            .expect("metrics lock")
            .entry((label, status))
            .or_default() += 1;
    }
}

/// What a scrape reads.
pub struct Scrape<'a> {
    pub view: &'a View,
    pub stats: &'a ServiceStats,
    pub queues: Vec<QueueSample>,
    pub ready: bool,
    pub version: &'a str,
    pub commit: &'a str,
}

type Labels = Vec<(String, String)>;

/// The values of one metric family.
struct Family {
    spec: Spec,
    samples: Vec<(Labels, f64)>,
    histogram: Option<Histogram>,
}

/// A histogram's values as prometheus-client encodes them.
#[derive(Clone, Debug)]
struct Histogram {
    sum: f64,
    count: u64,
    /// (upper bound, cumulative count) per bucket, `+Inf` last.
    buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending) and `+Inf`.
    fn new(bounds: &[f64]) -> Histogram {
        let buckets = bounds
            .iter()
            .chain([&f64::INFINITY])
            .map(|le| (*le, 0))
            .collect();
        Histogram {
            sum: 0.0,
            count: 0,
            buckets,
        }
    }
}

/// A collector over precomputed families (prometheus-client asks collectors
/// to encode themselves; ours has already read every value).
struct Encoded {
    families: Vec<Family>,
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoded")
            .field("families", &self.families.len())
            .finish()
    }
}

impl Collector for Encoded {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let no_labels: Labels = Vec::new();
        for family in &self.families {
            let spec = family.spec;
            let kind = match spec.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            let mut metric = encoder.encode_descriptor(spec.name, spec.help, None, kind)?;
            if let Some(h) = &family.histogram {
                metric.encode_histogram::<Labels>(h.sum, h.count, &h.buckets, None)?;
                continue;
            }
            for (labels, value) in &family.samples {
                let sample = metric.encode_family(if labels.is_empty() {
                    &no_labels
                } else {
                    labels
                })?;
                match spec.kind {
                    Kind::Counter => ConstCounter::new(*value as u64).encode(sample)?,
                    _ => ConstGauge::new(*value).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

fn one(spec: Spec, value: f64) -> Family {
    Family {
        spec,
        samples: vec![(Vec::new(), value)],
        histogram: None,
    }
}

fn labelled(spec: Spec, samples: impl IntoIterator<Item = (Labels, f64)>) -> Family {
    Family {
        spec,
        samples: samples.into_iter().collect(),
        histogram: None,
    }
}

/// Samples of a counter kept by two labels.
fn two_labels<B: ToString>(
    names: [&str; 2],
    counts: &Mutex<BTreeMap<(&'static str, B), u64>>,
) -> Vec<(Labels, f64)> {
    counts
        .lock()
        .expect("metrics lock")
        .iter()
        .map(|((a, b), n)| {
            let labels = vec![
                (names[0].to_owned(), (*a).to_owned()),
                (names[1].to_owned(), b.to_string()),
            ];
            (labels, *n as f64)
        })
        .collect()
}

fn label(name: &str, value: impl ToString) -> Labels {
    vec![(name.to_owned(), value.to_string())]
}

/// Renders every metric in the chosen text format.
pub fn render(s: &Scrape<'_>, format: Exposition) -> String {
    let snapshot = &s.view.snapshot;
    let c = &snapshot.counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let age = if snapshot.sequence == 0 {
        0.0
    } else {
        now_ns().saturating_sub(snapshot.as_of_ns.min(now_ns())) as f64 / 1e9
    };
    let mut families = vec![
        labelled(
            BUILD_INFO,
            [(
                vec![
                    ("version".to_owned(), s.version.to_owned()),
                    ("commit".to_owned(), s.commit.to_owned()),
                ],
                1.0,
            )],
        ),
        one(READY, if s.ready { 1.0 } else { 0.0 }),
        one(FRAMES, c.ingest.frames as f64),
        one(FRAME_BYTES, c.ingest.bytes as f64),
        labelled(
            FRAMES_BY_KIND,
            FrameKind::ALL
                .iter()
                .map(|k| (label("kind", k.name()), c.ingest.kind(*k) as f64)),
        ),
        labelled(
            MALFORMED,
            MalformedReason::ALL
                .iter()
                .map(|r| (label("reason", r.name()), c.ingest.malformed(*r) as f64)),
        ),
        one(HANDOFF_DROPS, c.ingest.handoff_drops as f64),
        one(FRAGMENTS_UNMATCHED, c.table.fragments_unmatched as f64),
        one(FRAGMENT_TABLE_FULL, c.table.fragment_table_full as f64),
        one(
            HANDSHAKES_OUT_OF_ORDER,
            c.table.handshakes_out_of_order as f64,
        ),
        one(CONNECTIONS_EXPIRED, c.table.connections_expired as f64),
        one(FLOWS_EXPIRED, c.table.flows_expired as f64),
        one(ACTIVE_CONNECTIONS, c.table.active_connections as f64),
        one(ACTIVE_FLOWS, c.table.active_flows as f64),
        one(CONNECTIONS_EVICTED, c.table.connections_evicted as f64),
        one(UNTRACKED_PACKETS, c.table.untracked_pkts as f64),
        one(FLOWS_EVICTED, c.table.flows_evicted as f64),
        one(EVICTED_PACKETS, c.table.evicted_pkts as f64),
        one(EVICTED_BYTES, c.table.evicted_bytes as f64),
        one(FLOW_TABLE_FULL_PACKETS, c.table.flow_table_full_pkts as f64),
        one(FLOW_TABLE_FULL_BYTES, c.table.flow_table_full_bytes as f64),
        one(
            HANDSHAKE_SAMPLES_REPLACED,
            c.table.handshake_samples_replaced as f64,
        ),
        one(ACTIVE_HISTOGRAMS, c.table.active_histograms as f64),
        one(CONNECTION_CAPACITY, c.table.connection_capacity as f64),
        one(FLOW_CAPACITY, c.table.flow_capacity as f64),
        one(HISTOGRAM_CAPACITY, c.table.histogram_capacity as f64),
        one(
            RESIDENT_MEMORY,
            pipeline::memory::resident_bytes().unwrap_or(0) as f64,
        ),
        one(MEMORY_LIMIT, load(&s.stats.memory_limit)),
        one(SNAPSHOTS, load(&s.stats.snapshots)),
        one(SNAPSHOT_AGE, age),
    ];
    families.push(Family {
        spec: MERGE_DURATION,
        samples: Vec::new(),
        histogram: Some(
            (s.stats.merge.lock().expect("metrics lock").clone())
                .unwrap_or_else(|| Histogram::new(&MERGE_BUCKETS)),
        ),
    });
    let per_queue = |spec: Spec, f: fn(&QueueSample) -> u64| {
        labelled(
            spec,
            s.queues
                .iter()
                .map(|q| (label("queue", q.queue), f(q) as f64)),
        )
    };
    families.extend([
        per_queue(XDP_FRAMES, |q| q.frames),
        per_queue(XDP_BYTES, |q| q.bytes),
        per_queue(XDP_NO_TIMESTAMP, |q| q.without_timestamp),
        per_queue(XDP_RX_DROPPED, |q| q.rx_dropped),
        per_queue(XDP_RX_RING_FULL, |q| q.rx_ring_full),
        per_queue(XDP_FILL_RING_EMPTY, |q| q.fill_ring_empty),
        per_queue(XDP_INVALID, |q| q.invalid),
        per_queue(XDP_RING_SIZE, |q| q.ring_entries),
        one(HANDOFF_CAPACITY, load(&s.stats.handoff_capacity)),
    ]);
    families.push(labelled(
        HTTP_REQUESTS,
        two_labels(["path", "status"], &s.stats.http),
    ));
    families.push(labelled(
        MCP_REQUESTS,
        two_labels(["method", "outcome"], &s.stats.mcp),
    ));
    families.extend([
        one(INVENTORY_RELOADS, load(&s.stats.inventory_reloads)),
        one(
            INVENTORY_RELOAD_ERRORS,
            load(&s.stats.inventory_reload_errors),
        ),
        one(INVENTORY_ADDRESSES, load(&s.stats.inventory_addresses)),
        one(HTTP_CONNECTIONS, load(&s.stats.http_connections)),
        one(
            HTTP_CONNECTION_CAPACITY,
            load(&s.stats.http_connection_capacity),
        ),
        one(
            HTTP_CONNECTIONS_REFUSED,
            load(&s.stats.http_connections_refused),
        ),
        one(
            HTTP_CONNECTIONS_CLOSED_IDLE,
            load(&s.stats.http_connections_closed_idle),
        ),
        one(MCP_SESSIONS, load(&s.stats.mcp_sessions)),
        one(MCP_SESSION_CAPACITY, load(&s.stats.mcp_session_capacity)),
        one(MCP_SESSIONS_EVICTED, load(&s.stats.mcp_sessions_evicted)),
    ]);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Encoded { families }));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    match format {
        Exposition::OpenMetrics => out,
        Exposition::Prometheus => openmetrics_to_prometheus(&out),
    }
}

/// The two text formats a scraper may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    /// `application/openmetrics-text; version=1.0.0` (what Prometheus asks for).
    OpenMetrics,
    /// `text/plain; version=0.0.4`, the classic format (curl, promtool).
    Prometheus,
}

impl Exposition {
    /// Chooses by the request's Accept header.
    pub fn negotiate(accept: Option<&str>) -> Exposition {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Exposition::OpenMetrics,
            _ => Exposition::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Exposition::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// prometheus-client writes OpenMetrics; the classic format names a
/// counter's family like its samples (`_total`), has no `# EOF`, and writes
/// no empty label set.
fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(&l),
            None => out.push_str(&line.replacen("{} ", " ", 1)),
        }
        out.push('\n');
    }
    out
}

/// The metrics reference: a Markdown table generated from [`CATALOG`].
pub fn reference_markdown() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for spec in CATALOG {
        let name = match spec.kind {
            Kind::Counter => format!("{}_total", spec.name),
            _ => spec.name.to_owned(),
        };
        let kind = match spec.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        out.push_str(&format!(
            "| `{name}` | {kind} | {} | {} |\n",
            spec.labels.join(", "),
            spec.help
        ));
    }
    out
}
