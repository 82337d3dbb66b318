//! The immutable result the merger publishes: every flow of every shard as
//! of one moment, in the API's order, plus the pipeline's counters.

use std::cmp::Ordering;
use std::sync::Arc;

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
    /// The vantage points the flows come from, and what they missed.
    pub coverage: Coverage,
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

/// Which vantage points a snapshot covers — one flowtap, or every agent a
/// hub knows — and what each reported missing, so that a reader can tell
/// "no traffic" from "not seen".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Coverage {
    /// Every vantage point expected, answered or not.
    pub agents: Vec<AgentCoverage>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentCoverage {
    /// How it is known: its URL, or (for a flowtap itself) its node name.
    pub name: Arc<str>,
    /// The node it runs on, as it reported it.
    pub node: Option<Arc<str>>,
    /// When its data was taken (wall clock, ns since the epoch): published
    /// by the flowtap itself, fetched by a hub. `None`: it has not answered.
    pub updated_ns: Option<u64>,
    /// Why its last answer failed, if it did.
    pub error: Option<String>,
    pub losses: Losses,
}

/// What a vantage point counted as lost: frames it never saw, packets it
/// saw but could not count, state it gave up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// Frames the kernel dropped before flowtap read them (AF_XDP
    /// `rx_dropped` and `rx_ring_full`).
    pub capture_dropped: u64,
    /// Packets dropped between workers (a full hand-off queue).
    pub handoff_dropped: u64,
    /// Flows given up to make room (no longer reported).
    pub flows_evicted: u64,
    /// Packets counted in no flow: the table was full.
    pub packets_in_no_flow: u64,
}

impl Losses {
    /// What a pipeline's own counters say it lost (the kernel's capture
    /// drops are added by the live source's owner).
    pub fn of(counters: &Counters) -> Losses {
        Losses {
            capture_dropped: 0,
            handoff_dropped: counters.ingest.handoff_drops,
            flows_evicted: counters.table.flows_evicted + counters.table.idle_flows_evicted,
            packets_in_no_flow: counters.table.flow_table_full_pkts,
        }
    }

    pub fn add(&mut self, o: &Losses) {
        self.capture_dropped += o.capture_dropped;
        self.handoff_dropped += o.handoff_dropped;
        self.flows_evicted += o.flows_evicted;
        self.packets_in_no_flow += o.packets_in_no_flow;
    }
}

impl AgentCoverage {
    pub fn answered(&self) -> bool {
        self.updated_ns.is_some() && self.error.is_none()
    }
}
