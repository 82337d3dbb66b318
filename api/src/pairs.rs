//! Per workload pair counters for Prometheus: bytes, packets, connections
//! and failed connections between (client namespace, client workload) and
//! (server namespace, server workload) on a server port and protocol.
//!
//! Snapshots hold flows, whose counts grow and which leave when they
//! expire; a Prometheus counter must only grow. So each snapshot's flows
//! are compared with the counts of the same flows in the previous one
//! ([`FlowFollower`]), and what they gained is added to their pair's
//! counters, which never shrink. A flow seen for the first time (or a new
//! flow under a key whose earlier flow ended) adds all it has.
//!
//! Cardinality is bounded: at most `max_pairs` pairs get series of their
//! own; traffic of any further pair is added to one `other` series, and
//! counted. Endpoints outside the cluster are collapsed into the workload
//! `external`, in-cluster addresses without a pod (service IPs, nodes,
//! unknown addresses) into `unknown`, with their namespace when known.

use std::collections::HashMap;
use std::sync::Arc;

use pipeline::flow::Side;
use pipeline::follow::{Change, FlowFollower};

use crate::view::View;

/// Series per pair: one per counter of [`PairCounts`].
pub const LABELS: [&str; 6] = [
    "client_namespace",
    "client_workload",
    "server_namespace",
    "server_workload",
    "server_port",
    "protocol",
];

/// The default of `--metrics-max-pairs`.
pub const DEFAULT_MAX_PAIRS: usize = 2_000;

/// One endpoint's side of a pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct End {
    namespace: Arc<str>,
    workload: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PairKey {
    client: End,
    server: End,
    server_port: u16,
    protocol: &'static str,
}

/// What a pair's flows sent (both directions) and how their connections
/// went, since flowtap started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairCounts {
    pub bytes: u64,
    pub packets: u64,
    pub connections: u64,
    pub failed: u64,
}

impl PairCounts {
    fn add(&mut self, other: PairCounts) {
        self.bytes += other.bytes;
        self.packets += other.packets;
        self.connections += other.connections;
        self.failed += other.failed;
    }

    /// What `self` (the same flow, later) gained since `before`.
    fn since(self, before: PairCounts) -> PairCounts {
        PairCounts {
            bytes: self.bytes.saturating_sub(before.bytes),
            packets: self.packets.saturating_sub(before.packets),
            connections: self.connections.saturating_sub(before.connections),
            failed: self.failed.saturating_sub(before.failed),
        }
    }
}

#[derive(Debug)]
pub struct PairCounters {
    max_pairs: usize,
    pairs: HashMap<PairKey, PairCounts, ahash::RandomState>,
    /// Traffic of pairs beyond `max_pairs`.
    other: PairCounts,
    /// Flow updates that went to `other`.
    collapsed: u64,
    /// Each flow's counts in the last snapshot seen.
    last: FlowFollower<PairCounts>,
}

impl Default for PairCounters {
    fn default() -> Self {
        PairCounters::new(DEFAULT_MAX_PAIRS)
    }
}

impl PairCounters {
    pub fn new(max_pairs: usize) -> PairCounters {
        PairCounters {
            max_pairs,
            pairs: HashMap::default(),
            other: PairCounts::default(),
            collapsed: 0,
            last: FlowFollower::default(),
        }
    }

    pub fn set_max_pairs(&mut self, max_pairs: usize) {
        self.max_pairs = max_pairs;
    }

    /// Adds what every flow of `view` gained since the previous view.
    pub fn observe(&mut self, view: &View) {
        let mut last = std::mem::take(&mut self.last);
        last.observe(
            view.flows(),
            |i, f, change| {
                let total = f.sent.total();
                let now = PairCounts {
                    bytes: total.bytes,
                    packets: total.pkts,
                    connections: f.connections,
                    failed: f.tcp.connections.failed(),
                };
                let gained = match change {
                    Change::Continued(before) => now.since(before),
                    Change::Started | Change::Restarted(_) => now,
                };
                if gained != PairCounts::default() {
                    self.add(view, i, gained);
                }
                now
            },
            // What a flow sent before it left was counted as it grew.
            |_, _| {},
        );
        self.last = last;
    }

    fn add(&mut self, view: &View, i: usize, gained: PairCounts) {
        let f = &view.flows()[i];
        let key = PairKey {
            client: end(view, i, Side::Client),
            server: end(view, i, Side::Server),
            server_port: f.key.server_port,
            protocol: f.key.proto.name(),
        };
        if let Some(pair) = self.pairs.get_mut(&key) {
            pair.add(gained);
        } else if self.pairs.len() < self.max_pairs {
            self.pairs.insert(key, gained);
        } else {
            self.other.add(gained);
            self.collapsed += 1;
        }
    }

    /// Every series of one counter: labels in [`LABELS`] order, and value.
    pub fn samples(&self, counter: fn(&PairCounts) -> u64) -> Vec<(Vec<String>, f64)> {
        let mut out: Vec<(Vec<String>, f64)> = self
            .pairs
            .iter()
            .map(|(k, c)| {
                let labels = vec![
                    k.client.namespace.to_string(),
                    k.client.workload.to_string(),
                    k.server.namespace.to_string(),
                    k.server.workload.to_string(),
                    k.server_port.to_string(),
                    k.protocol.to_owned(),
                ];
                (labels, counter(c) as f64)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        if self.other != PairCounts::default() {
            let other = || "other".to_owned();
            let labels = vec![other(), other(), other(), other(), other(), other()];
            out.push((labels, counter(&self.other) as f64));
        }
        out
    }

    /// Pairs with series of their own.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Flow updates added to the `other` series (pairs beyond the cap).
    pub fn collapsed(&self) -> u64 {
        self.collapsed
    }
}

/// An endpoint as a pair names it.
fn end(view: &View, flow: usize, side: Side) -> End {
    let namespace = view.ns(flow, side).cloned().unwrap_or_else(|| "".into());
    let workload = match view.workload(flow, side) {
        Some(w) => w.clone(),
        None if view.external(flow, side) == Some(true) => "external".into(),
        None => "unknown".into(),
    };
    End {
        namespace,
        workload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_grow() {
        let a = PairCounts {
            bytes: 100,
            packets: 2,
            connections: 1,
            failed: 0,
        };
        let b = PairCounts {
            bytes: 150,
            packets: 3,
            ..a
        };
        assert_eq!(
            b.since(a),
            PairCounts {
                bytes: 50,
                packets: 1,
                connections: 0,
                failed: 0
            }
        );
        // (A new flow under an old key is the follower's to tell:
        // pipeline::follow.)
    }
}
