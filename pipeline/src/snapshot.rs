//! The immutable result the merger publishes: every flow of every shard as
//! of one moment, in the API's order, plus the pipeline's counters.

use std::cmp::Ordering;

use crate::flow::{FlowRecord, TableCounters, Window};
use crate::ingest::{IngestCounters, MirrorSessions};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub ingest: IngestCounters,
    pub table: TableCounters,
}

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases by one per published snapshot.
    pub sequence: u64,
    /// The time rates and windows are computed at (capture time for files,
    /// wall-clock time live), ns since the Unix epoch.
    pub as_of_ns: u64,
    /// When observation began (the first packet), if any packet was seen.
    pub since_ns: Option<u64>,
    pub rtt_window: Window,
    /// Flows by total bytes, descending; ties by packets, then by key.
    pub flows: Vec<FlowRecord>,
    pub counters: Counters,
    /// Frames and bytes per mirror session.
    pub sessions: MirrorSessions,
    /// How long building this snapshot took, in ns.
    pub merge_ns: u64,
}

/// The API's flow order: bytes descending, then packets descending, then the
/// flow key ascending so equal flows always come out the same way.
pub fn flow_order(a: &FlowRecord, b: &FlowRecord) -> Ordering {
    b.total_bytes()
        .cmp(&a.total_bytes())
        .then_with(|| b.total_pkts().cmp(&a.total_pkts()))
        .then_with(|| a.key.cmp(&b.key))
}
