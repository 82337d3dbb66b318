//! The immutable result the merger publishes: every flow of every shard as
//! of one moment, in the API's order, plus the pipeline's counters.

use std::sync::Arc;

use crate::flow::{ConnRecord, EndedFlow, FlowRecord, Side, TableCounters, Window};
use crate::ingest::{IngestCounters, MirrorSessions};

pub mod flows;
pub use flows::Flows;

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
    pub flows: Flows,
    /// Connection records cut since the previous snapshot, when the tables
    /// keep them (`TableConfig::conn_records`; for IPFIX per connection).
    pub connections: Vec<ConnRecord>,
    /// The last records of flows that left the tables (expired, or given
    /// up to make room) since the previous snapshot, when the tables keep
    /// them (`TableConfig::ended_flows`; for IPFIX per flow). Not in
    /// `flows`.
    pub ended: Vec<EndedFlow>,
    pub counters: Counters,
    /// Frames and bytes per mirror session.
    pub sessions: MirrorSessions,
    /// The vantage points the flows come from, and what they missed.
    pub coverage: Coverage,
    /// How long building this snapshot took, in ns.
    pub merge_ns: u64,
}

/// Something that follows every snapshot published (an exporter), and is
/// told when no more will come (the capture ended, flowtap stops).
pub trait SnapshotSink: Send {
    /// A new snapshot, and who its flows' endpoints are where that is known;
    /// `last` when [`Self::finish`] follows it (the capture's end, a stop).
    fn snapshot(&mut self, snapshot: &Snapshot, names: &dyn EndpointNames, last: bool);
    /// Flows that left the tables between snapshots, taken without one
    /// ([`crate::Pipeline::take_ended_flows`]).
    fn ended(&mut self, _ended: &[EndedFlow]) {}
    fn finish(&mut self);
}

/// Who a flow's endpoints are, where something knows (Kubernetes names
/// from an inventory or a watch): what a sink may attach to what it
/// exports. The pipeline itself knows no names ([`Unnamed`]).
pub trait EndpointNames {
    /// The endpoint on `side` of the snapshot's flow at index `flow`.
    fn endpoint(&self, flow: usize, side: Side) -> Option<EndpointName>;
}

/// A Kubernetes endpoint's names, each where known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointName {
    pub namespace: Option<Arc<str>>,
    /// The pod's owner (Deployment, StatefulSet...), or the service.
    pub workload: Option<Arc<str>>,
    pub pod: Option<Arc<str>>,
}

/// No names known.
pub struct Unnamed;

impl EndpointNames for Unnamed {
    fn endpoint(&self, _: usize, _: Side) -> Option<EndpointName> {
        None
    }
}

/// Where a flow goes in the API's order: bytes descending, then packets
/// descending, then the flow key ascending so equal flows always come out
/// the same way. Flows with distinct keys (every snapshot's) are totally
/// ordered by it.
pub type ApiRank = (std::cmp::Reverse<(u64, u64)>, crate::flow::FlowKey);

pub fn api_rank(f: &FlowRecord) -> ApiRank {
    (std::cmp::Reverse((f.total_bytes(), f.total_pkts())), f.key)
}

/// Puts `flows` in the API's order ([`api_rank`]; a list already in it, as
/// an agent's feed is, costs one pass). Sorts small keys and moves each
/// record once: records are large, and a sort that swaps them around
/// spends its time copying (millions of flows in a hub).
pub fn sort_flows(flows: &mut [FlowRecord]) {
    if flows.is_sorted_by_key(api_rank) {
        return;
    }
    // (rank, position now)
    let mut order: Vec<(ApiRank, u32)> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| (api_rank(f), i as u32))
        .collect();
    order.sort_unstable();
    // Apply the permutation in place, cycle by cycle: no second copy.
    let mut target: Vec<u32> = order.into_iter().map(|(_, i)| i).collect();
    for start in 0..target.len() {
        let mut at = start;
        while target[at] as usize != start {
            let from = target[at] as usize;
            flows.swap(at, from);
            target[at] = at as u32;
            at = from;
        }
        target[at] = at as u32;
    }
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
    /// by the flowtap itself; for a hub, the pull's answer less the age the
    /// agent gave its snapshot. `None`: it has not answered.
    pub updated_ns: Option<u64>,
    /// Why its last answer failed, if it did.
    pub error: Option<String>,
    pub losses: Losses,
    /// Which run of the agent answered (a hub's agents; drawn when the
    /// agent starts): another one than before is a restart, whose counts
    /// began again.
    pub instance: Option<u64>,
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

    /// Saturating, as every sum of counts is (a hub adds its agents').
    pub fn add(&mut self, o: &Losses) {
        self.capture_dropped = self.capture_dropped.saturating_add(o.capture_dropped);
        self.handoff_dropped = self.handoff_dropped.saturating_add(o.handoff_dropped);
        self.flows_evicted = self.flows_evicted.saturating_add(o.flows_evicted);
        self.packets_in_no_flow = self.packets_in_no_flow.saturating_add(o.packets_in_no_flow);
    }
}

impl AgentCoverage {
    pub fn answered(&self) -> bool {
        self.updated_ns.is_some() && self.error.is_none()
    }
}

impl Coverage {
    /// When the oldest data that answered was taken: a flowtap's own
    /// publication, or a hub's least fresh agent. `None`: nothing answered.
    pub fn oldest_update_ns(&self) -> Option<u64> {
        self.agents
            .iter()
            .filter(|a| a.answered())
            .filter_map(|a| a.updated_ns)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Counter, FlowKey, PerSide};
    use crate::packet::{Addr, L4Proto};

    #[test]
    fn the_oldest_data_is_of_the_agents_that_answered() {
        let agent = |updated_ns, error: Option<&str>| AgentCoverage {
            updated_ns,
            error: error.map(Into::into),
            ..AgentCoverage::default()
        };
        let mut coverage = Coverage::default();
        assert_eq!(coverage.oldest_update_ns(), None);
        coverage.agents = vec![
            agent(Some(30), None),
            agent(None, Some("connecting: refused")),
            agent(Some(10), Some("a feed of another version")),
            agent(Some(20), None),
        ];
        assert_eq!(coverage.oldest_update_ns(), Some(20));
    }

    #[test]
    fn flows_sort_by_bytes_packets_then_key() {
        let flow = |n: u8, bytes: u64, pkts: u64| FlowRecord {
            ip_bytes: Default::default(),
            sent: PerSide::new(Counter { pkts, bytes }, Counter::default()),
            connections: 1,
            ..FlowRecord::new(FlowKey {
                proto: L4Proto::Tcp,
                client: Addr::from_v4([198, 18, 0, n]),
                server: Addr::from_v4([198, 19, 0, 1]),
                server_port: 80,
            })
        };
        let mut flows = vec![
            flow(1, 10, 1),
            flow(2, 30, 1),
            flow(3, 10, 2),
            flow(4, 20, 1),
            flow(5, 10, 2),
            flow(6, 30, 1),
        ];
        sort_flows(&mut flows);
        let order: Vec<u8> = flows.iter().map(|f| f.key.client.0[15]).collect();
        assert_eq!(order, [2, 6, 4, 3, 5, 1]);
    }
}
