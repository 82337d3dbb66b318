//! Counters the server and the publisher keep (the pipeline's own are in
//! the snapshot).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crate::server::Route;

/// Upper bounds (seconds) of the merge-duration histogram.
pub const MERGE_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// A histogram's values: (upper bound, count) per bucket, `+Inf` last.
/// Each bucket counts only the values above the bound before it: the
/// exposition (prometheus-client) accumulates them into `le` series.
#[derive(Clone, Debug, PartialEq)]
pub struct FixedHistogram {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

impl FixedHistogram {
    /// An empty histogram over `bounds` (ascending) and `+Inf`.
    pub fn new(bounds: &[f64]) -> FixedHistogram {
        let buckets = bounds
            .iter()
            .chain([&f64::INFINITY])
            .map(|le| (*le, 0))
            .collect();
        FixedHistogram {
            sum: 0.0,
            count: 0,
            buckets,
        }
    }

    pub fn observe(&mut self, value: f64) {
        if let Some((_, n)) = self.buckets.iter_mut().find(|(le, _)| value <= *le) {
            *n += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
pub struct ServiceStats {
    pub snapshots: AtomicU64,
    /// Snapshots that took longer than `--snapshot-interval` to make.
    pub snapshots_late: AtomicU64,
    pub inventory_reloads: AtomicU64,
    pub inventory_reload_errors: AtomicU64,
    pub inventory_addresses: AtomicU64,
    pub handoff_capacity: AtomicU64,
    /// Merge durations, over [`MERGE_BUCKETS`].
    pub(super) merge: Mutex<Option<FixedHistogram>>,
    /// Requests by (route, status).
    pub(super) http: Mutex<BTreeMap<(Route, u16), u64>>,
    /// MCP requests by (method label, outcome).
    pub(super) mcp: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    pub mcp_sessions: AtomicU64,
    /// The memory budget (bytes) the table limits come from.
    pub memory_limit: AtomicU64,
    /// 1 while the span interface is held promiscuous.
    pub promiscuous: AtomicU64,
    /// Frames on rx queues without a socket (the XDP program's count).
    pub xdp_unbound_frames: AtomicU64,
    /// Frames the capture interface's NIC missed since flowtap started.
    pub nic_rx_missed: AtomicU64,
    /// Frames the capture interface's NIC dropped as too long or damaged
    /// since flowtap started.
    pub nic_rx_refused: AtomicU64,
    /// Host mode: frames the mirror veth dropped before capture.
    pub mirror_veth_dropped: AtomicU64,
    /// Capture interfaces now down or without a link.
    pub interfaces_down: AtomicU64,
    /// 1 once the last snapshot is published (the files are read): the
    /// answers no longer change, and their age grows by design.
    pub capture_ended: AtomicU64,
    /// Capture files whose reading an error ended (`-r`).
    pub capture_files_failed: AtomicU64,
    /// A hub's room for feeds held at once (`--max-feed-bytes-held`).
    pub hub_feed_room_bytes: AtomicU64,
    /// A hub's pulls that waited for that room.
    pub hub_feed_room_waits: Arc<AtomicU64>,
    /// A hub's pulls that gave nothing to merge, by
    /// [`crate::feed::PullFailure`] (in the order of its `ALL`).
    pub hub_pulls_failed: [AtomicU64; crate::feed::PullFailure::ALL.len()],
    pub mcp_session_capacity: AtomicU64,
    pub mcp_sessions_evicted: AtomicU64,
    pub mcp_sessions_resumed: AtomicU64,
    pub http_connections: AtomicU64,
    pub http_connection_capacity: AtomicU64,
    pub http_connections_refused: AtomicU64,
    /// Connections from one address at most (`--http-max-connections-per-client`),
    /// and those refused at that bound.
    pub http_client_connection_capacity: AtomicU64,
    pub http_client_connections_refused: AtomicU64,
    pub http_connections_closed_idle: AtomicU64,
    /// Busy connections that wrote nothing for a while, closed to admit
    /// new ones when every connection was busy.
    pub http_connections_closed_stalled: AtomicU64,
    /// Request bodies' bytes held now, and at most ([`crate::server`]).
    pub request_body_bytes_held: AtomicU64,
    pub request_body_bytes_capacity: AtomicU64,
    /// MCP requests refused for want of room for their bodies.
    pub request_bodies_refused: AtomicU64,
    pub http_responses_overdue: AtomicU64,
    /// Connections closed for not sending a request head within
    /// `--http-header-timeout` (slowloris, or an idle keep-alive).
    pub http_header_timeouts: AtomicU64,
    pub mcp_batches_refused: AtomicU64,
    pub mcp_replies_over_budget: AtomicU64,
    pub mcp_sessions_refused: AtomicU64,
    /// The Kubernetes watch's counters (zero without a watch).
    pub k8s: Arc<k8s::WatchStats>,
    /// Bytes, packets and connections per workload pair, for Prometheus.
    pub pairs: Mutex<crate::pairs::PairCounters>,
    /// What the IPFIX exporter sent (zero without one).
    pub ipfix: Arc<ipfix::ExportStats>,
    /// Large answers' turns, `/metrics` answers' turns and the feed's.
    pub large_answer_turns: Arc<crate::server::TurnStats>,
    pub scrape_turns: Arc<crate::server::TurnStats>,
    pub feed_turns: Arc<crate::server::TurnStats>,
}

impl ServiceStats {
    /// Counters that include a Kubernetes watch's.
    pub fn with_k8s(k8s: Arc<k8s::WatchStats>) -> ServiceStats {
        ServiceStats {
            k8s,
            ..ServiceStats::default()
        }
    }

    pub fn observe_merge(&self, seconds: f64) {
        self.merge
            .lock()
            .expect("metrics lock")
            .get_or_insert_with(|| FixedHistogram::new(&MERGE_BUCKETS))
            .observe(seconds);
    }

    /// Counts an MCP request; `method` is one of a fixed set of labels.
    pub fn count_mcp(&self, method: &'static str, outcome: &'static str) {
        *self
            .mcp
            .lock()
            .expect("metrics lock")
            .entry((method, outcome))
            .or_default() += 1;
    }

    pub fn count_request(&self, route: Route, status: u16) {
        *self
            .http
            .lock()
            .expect("metrics lock")
            .entry((route, status))
            .or_default() += 1;
    }
}
