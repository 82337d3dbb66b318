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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use pipeline::flow::handshake::TALLY_BOUNDS_US;
use pipeline::flow::{FlowKey, FlowRecord, HandshakeDigest, HandshakeTally, Side};
use pipeline::follow::{Change, FlowFollower};

use crate::metrics::FixedHistogram;
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

/// One endpoint's side of a pair: names kept (`Arc<str>`), or borrowed
/// from a view (`&str`) to look a pair up without cloning them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct End<S> {
    namespace: S,
    workload: S,
}

/// A pair's key; the map keeps `PairKey<Arc<str>>`, lookups borrow
/// (every flow that gained anything is looked up, every snapshot). Both
/// hash alike: the same fields in the same order, `&str` hashing as
/// `Arc<str>` does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PairKey<S = Arc<str>> {
    client: End<S>,
    server: End<S>,
    server_port: u16,
    protocol: &'static str,
}

impl End<&str> {
    fn owned(self) -> End<Arc<str>> {
        End {
            namespace: self.namespace.into(),
            workload: self.workload.into(),
        }
    }
}

impl PairKey<&str> {
    fn owned(&self) -> PairKey {
        PairKey {
            client: self.client.owned(),
            server: self.server.owned(),
            server_port: self.server_port,
            protocol: self.protocol,
        }
    }
}

impl hashbrown::Equivalent<PairKey> for PairKey<&str> {
    fn equivalent(&self, key: &PairKey) -> bool {
        let same = |a: &End<&str>, b: &End<Arc<str>>| {
            a.namespace == &*b.namespace && a.workload == &*b.workload
        };
        same(&self.client, &key.client)
            && same(&self.server, &key.server)
            && self.server_port == key.server_port
            && self.protocol == key.protocol
    }
}

/// What a pair's flows sent (both directions), how their connections went
/// and how long their handshakes took, since flowtap started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairCounts {
    pub bytes: u64,
    pub packets: u64,
    pub connections: u64,
    pub failed: u64,
    /// Client-leg handshakes per [`TALLY_BOUNDS_US`] bucket (the last:
    /// above every bound), and their sum in µs.
    pub handshakes: [u64; TALLY_BOUNDS_US.len() + 1],
    pub handshake_sum_us: u64,
    /// The view (by [`PairCounters`]' count) it last gained something in.
    pub(crate) last_gained: u64,
}

impl PairCounts {
    fn add(&mut self, flow: &FlowCounts) {
        // Saturating: the counters run for as long as the process does,
        // and a hub adds what its agents say.
        self.bytes = self.bytes.saturating_add(flow.bytes);
        self.packets = self.packets.saturating_add(flow.packets);
        self.connections = self.connections.saturating_add(flow.connections);
        self.failed = self.failed.saturating_add(flow.failed);
        for (n, m) in self.handshakes.iter_mut().zip(flow.handshakes.counts) {
            *n = n.saturating_add(u64::from(m));
        }
        self.handshake_sum_us = self.handshake_sum_us.saturating_add(flow.handshakes.sum_us);
    }

    /// The handshakes as a Prometheus histogram, in seconds.
    fn handshake_histogram(&self) -> FixedHistogram {
        let mut h = FixedHistogram::new(&TALLY_BOUNDS_US.map(|us| us as f64 / 1e6));
        for ((_, count), n) in h.buckets.iter_mut().zip(self.handshakes) {
            *count = n;
        }
        h.count = self.handshakes.iter().fold(0, |n, &m| n.saturating_add(m));
        h.sum = self.handshake_sum_us as f64 / 1e6;
        h
    }
}

/// One flow's counts at a snapshot, or what it gained since the previous.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FlowCounts {
    bytes: u64,
    packets: u64,
    connections: u64,
    failed: u64,
    handshakes: HandshakeTally,
}

/// What the follower remembers of a flow: its counts at the last snapshot,
/// the handshake tally as the client leg's digest then (shared with that
/// snapshot rather than copied: 8 bytes a flow, not 64), when it was last
/// seen, and how many of a hub's agents saw it.
#[derive(Clone, Debug, Default)]
struct Seen {
    counts: [u64; 4],
    client_leg: Option<Arc<HandshakeDigest>>,
    last_seen_ns: u64,
    vantages: u16,
}

impl Seen {
    fn of(f: &FlowRecord) -> Seen {
        let total = f.sent.total();
        Seen {
            counts: [
                total.bytes,
                total.pkts,
                f.connections,
                f.tcp.connections.failed(),
            ],
            client_leg: f.handshake[Side::Client].clone(),
            last_seen_ns: f.last_seen_ns,
            vantages: f.seen_by.as_ref().map_or(1, |agents| agents.len() as u16),
        }
    }

    /// Whether this (a flow first seen at `first_seen_ns`) is the flow
    /// `before` was, seen from fewer of a hub's agents while one is
    /// missing or restarted (`vantage_lost`), or seen by an agent that has
    /// restarted since. A flow two
    /// nodes saw is merged from the fuller count; while that node's agent
    /// misses pulls, or after it restarted (its counts begun again), the
    /// hub answers with the other node's, smaller and perhaps started
    /// later, which would read as a new flow and be counted again whole.
    /// A flow that started after `before` was last seen is a new one,
    /// whatever the outage.
    fn partial_of(
        &self,
        first_seen_ns: u64,
        before: &Seen,
        vantage_lost: bool,
        seen_by_restarted: bool,
    ) -> bool {
        first_seen_ns <= before.last_seen_ns
            && (seen_by_restarted || vantage_lost && self.vantages < before.vantages)
    }

    /// What to remember after `before` (this view of it `partial`, or the
    /// same flow grown): no count below what was already counted, so that
    /// a partial view's smaller counts, and the fuller ones back after
    /// it, add only what is new. Through an outage the larger number of
    /// vantages is kept, so the view stays partial.
    fn at_least(mut self, before: Seen, partial: bool, vantage_lost: bool) -> Seen {
        for (now, then) in self.counts.iter_mut().zip(before.counts) {
            *now = (*now).max(then);
        }
        // Read only here, on the rare partial views: the client leg that
        // tallied more handshakes, so that the fuller leg back adds none
        // it had counted.
        if partial && before.tallied().count() > self.tallied().count() {
            self.client_leg = before.client_leg;
        }
        if vantage_lost {
            self.vantages = self.vantages.max(before.vantages);
        }
        self.last_seen_ns = self.last_seen_ns.max(before.last_seen_ns);
        self
    }

    /// Whether this (a flow first seen at `first_seen_ns`) can be the
    /// flow `before` was, later: it began before `before` was last seen,
    /// and no count went down. (A flow that ended and began again, the
    /// same size or larger, a DNS query or a health check, was taken for
    /// the old one and added nothing.)
    fn continues(&self, first_seen_ns: u64, before: &Seen) -> bool {
        first_seen_ns <= before.last_seen_ns
            && self
                .counts
                .iter()
                .zip(before.counts)
                .all(|(now, then)| *now >= then)
    }

    fn counts(&self) -> FlowCounts {
        let [bytes, packets, connections, failed] = self.counts;
        FlowCounts {
            bytes,
            packets,
            connections,
            failed,
            handshakes: self.tallied(),
        }
    }

    fn tallied(&self) -> HandshakeTally {
        self.client_leg
            .as_ref()
            .map(|d| d.tallied())
            .unwrap_or_default()
    }

    /// What the flow (the same flow, later) gained since `before`. A client
    /// leg that is the very digest `before` holds tallied nothing since,
    /// and its tally is not read: a hub shares unchanged digests between
    /// rounds, and reading the tallies of a million flows behind two
    /// pointers each was a large share of following them.
    fn gained_since(&self, before: &Seen) -> FlowCounts {
        let same_leg = match (&self.client_leg, &before.client_leg) {
            (Some(now), Some(then)) => Arc::ptr_eq(now, then),
            (now, then) => now.is_none() && then.is_none(),
        };
        let [bytes, packets, connections, failed] =
            std::array::from_fn(|i| self.counts[i].saturating_sub(before.counts[i]));
        FlowCounts {
            bytes,
            packets,
            connections,
            failed,
            handshakes: if same_leg {
                HandshakeTally::default()
            } else {
                self.tallied().since(&before.tallied())
            },
        }
    }
}

#[derive(Debug)]
pub struct PairCounters {
    max_pairs: usize,
    pairs: hashbrown::HashMap<PairKey, PairCounts, ahash::RandomState>,
    /// Traffic of pairs beyond `max_pairs`.
    other: PairCounts,
    /// Flow updates that went to `other`.
    collapsed: u64,
    /// Each flow's counts in the last snapshot seen.
    last: FlowFollower<Seen>,
    /// Views observed, and when each pair last gained something (by that
    /// count): at the bound, pairs idle for [`IDLE_PAIR_VIEWS`] give their
    /// series up to new pairs.
    views: u64,
    /// Pairs whose series were given up so.
    evicted: u64,
    /// A new pair went to `other` since idle pairs were last looked for:
    /// only then do they give their series up.
    room_wanted: bool,
    /// Flows that left a hub's view while one of its agents was missing:
    /// most are that agent's, and come back when it answers again, when
    /// only what they gained since may count (counted again whole, every
    /// pull an agent missed doubled its pairs). Forgotten once every
    /// agent answers. Bounded by the view's flow capacity (a hub's
    /// `--max-flows`): past it, the flows last seen longest ago go first.
    absent: hashbrown::HashMap<FlowKey, Seen, ahash::RandomState>,
    /// Flows forgotten so.
    absent_forgotten: u64,
    /// The run (instance) each of a hub's agents last answered from: one
    /// answering from another has restarted.
    instances: HashMap<Arc<str>, u64>,
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
            pairs: hashbrown::HashMap::default(),
            other: PairCounts::default(),
            collapsed: 0,
            last: FlowFollower::default(),
            absent: hashbrown::HashMap::default(),
            absent_forgotten: 0,
            instances: HashMap::new(),
            views: 0,
            evicted: 0,
            room_wanted: false,
        }
    }

    pub fn set_max_pairs(&mut self, max_pairs: usize) {
        self.max_pairs = max_pairs;
    }

    /// Adds what every flow of `view` gained since the previous view.
    pub fn observe(&mut self, view: &View) {
        self.views += 1;
        self.evict_idle_pairs();
        let agents = &view.snapshot.coverage.agents;
        // An agent gone from the view (no longer discovered: a pod
        // replaced) is missing for this round, as one that did not answer.
        let listed: HashSet<&str> = agents.iter().map(|a| &*a.name).collect();
        let gone = self.instances.keys().any(|name| !listed.contains(&**name));
        let agent_missing = gone || !agents.iter().all(|a| a.answered());
        // By their place in the coverage, which `seen_by` names.
        let restarted: Vec<bool> = agents
            .iter()
            .map(|a| {
                a.instance
                    .zip(self.instances.get(&a.name))
                    .is_some_and(|(now, then)| now != *then)
            })
            .collect();
        let any_restarted = restarted.contains(&true);
        let vantage_lost = agent_missing || any_restarted;
        self.instances.retain(|name, _| listed.contains(&**name));
        for a in agents {
            if let Some(instance) = a.instance {
                self.instances.insert(a.name.clone(), instance);
            }
        }
        let mut last = std::mem::take(&mut self.last);
        let mut left = Vec::new();
        last.observe(
            view.flows(),
            |i, f, change| {
                let seen = Seen::of(f);
                let back = match change {
                    Change::Started if !self.absent.is_empty() => self.absent.remove(&f.key),
                    _ => None,
                };
                // The flow it continues, if any: the follower's, or one
                // that left while an agent was missing and whose counts
                // it has not lost.
                let (before, continued) = match change {
                    Change::Continued(before) => (Some(before), true),
                    Change::Restarted(before) => (Some(before), false),
                    Change::Started => {
                        let continued = back
                            .as_ref()
                            .is_some_and(|b| seen.continues(f.first_seen_ns, b));
                        (back, continued)
                    }
                };
                let seen_by_restarted = any_restarted
                    && f.seen_by.as_ref().is_some_and(|by| {
                        by.iter()
                            .any(|&a| restarted.get(usize::from(a)) == Some(&true))
                    });
                let partial = before.as_ref().is_some_and(|b| {
                    seen.partial_of(f.first_seen_ns, b, vantage_lost, seen_by_restarted)
                });
                let (gained, kept) = match before {
                    Some(before) if continued || partial => (
                        seen.gained_since(&before),
                        seen.at_least(before, partial, vantage_lost),
                    ),
                    // A new flow, or the key's earlier flow ended.
                    _ => (seen.counts(), seen),
                };
                if gained != FlowCounts::default() {
                    self.add(view, i, &gained);
                }
                kept
            },
            // What a flow sent before it left was counted as it grew.
            |key, seen| left.push((key, seen)),
        );
        self.last = last;
        if !agent_missing {
            self.absent.clear();
        } else {
            self.absent.extend(left);
            let capacity = view.snapshot.counters.table.flow_capacity;
            self.forget_absent_beyond(usize::try_from(capacity).unwrap_or(usize::MAX).max(1));
        }
    }

    /// Keeps the `capacity` absent flows last seen most recently: while an
    /// agent stays missing, keys that churn (pod addresses, or an agent
    /// sending fresh keys every round) would otherwise pile up here until
    /// it answered again. One forgotten and then back counts whole.
    fn forget_absent_beyond(&mut self, capacity: usize) {
        let excess = self.absent.len().saturating_sub(capacity);
        if excess == 0 {
            return;
        }
        let mut seen: Vec<u64> = self.absent.values().map(|s| s.last_seen_ns).collect();
        let (_, &mut oldest_kept, _) = seen.select_nth_unstable(excess);
        let before = self.absent.len();
        self.absent.retain(|_, s| s.last_seen_ns >= oldest_kept);
        // Flows last seen at the threshold itself (many, where keys churn
        // with one timestamp) go too, any of them, down to `capacity`.
        let mut over = self.absent.len().saturating_sub(capacity);
        self.absent.retain(|_, s| {
            let tied = over > 0 && s.last_seen_ns == oldest_kept;
            over -= usize::from(tied);
            !tied
        });
        self.absent_forgotten += (before - self.absent.len()) as u64;
    }

    fn add(&mut self, view: &View, i: usize, gained: &FlowCounts) {
        let f = &view.flows()[i];
        let key = PairKey {
            client: end(view, i, Side::Client),
            server: end(view, i, Side::Server),
            server_port: f.key.server_port,
            protocol: f.key.proto.name(),
        };
        if let Some(pair) = self.pairs.get_mut(&key) {
            pair.add(gained);
            pair.last_gained = self.views;
        } else if self.pairs.len() < self.max_pairs {
            let mut pair = PairCounts::default();
            pair.add(gained);
            pair.last_gained = self.views;
            self.pairs.insert(key.owned(), pair);
        } else {
            self.other.add(gained);
            self.collapsed += 1;
            self.room_wanted = true;
        }
    }

    /// Every series of one counter: labels in [`LABELS`] order, and value.
    pub fn samples(&self, counter: fn(&PairCounts) -> u64) -> Vec<(Vec<String>, f64)> {
        self.series(|c| Some(counter(c) as f64))
    }

    /// Every pair's handshake histogram (pairs that measured handshakes).
    pub fn handshake_histograms(&self) -> Vec<(Vec<String>, FixedHistogram)> {
        self.series(|c| {
            (c.handshakes != [0; TALLY_BOUNDS_US.len() + 1]).then(|| c.handshake_histogram())
        })
    }

    /// One series per pair that has one (`series` says), labels in
    /// [`LABELS`] order, sorted, and the `other` series last.
    fn series<T>(&self, series: impl Fn(&PairCounts) -> Option<T>) -> Vec<(Vec<String>, T)> {
        let mut out: Vec<(Vec<String>, T)> = self
            .pairs
            .iter()
            .filter_map(|(k, c)| {
                let labels = vec![
                    k.client.namespace.to_string(),
                    k.client.workload.to_string(),
                    k.server.namespace.to_string(),
                    k.server.workload.to_string(),
                    k.server_port.to_string(),
                    k.protocol.to_owned(),
                ];
                Some((labels, series(c)?))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        if self.other != PairCounts::default()
            && let Some(other_series) = series(&self.other)
        {
            let other = || "other".to_owned();
            let labels = vec![other(), other(), other(), other(), other(), other()];
            out.push((labels, other_series));
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

    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Flows that left while an agent was missing and were forgotten at
    /// the bound (see `absent`).
    pub fn absent_forgotten(&self) -> u64 {
        self.absent_forgotten
    }

    /// At the bound, once a new pair had to go to `other`, the pairs that
    /// gained nothing for [`IDLE_PAIR_VIEWS`] views leave (their series
    /// end; one that comes back starts again from 0, which Prometheus reads
    /// as a counter reset), so that a cluster whose workloads come and go
    /// (bare pods, jobs) keeps giving its new pairs series of their own
    /// rather than the `other` one. With no new pair waiting, idle series
    /// stay.
    fn evict_idle_pairs(&mut self) {
        if self.pairs.len() < self.max_pairs || !std::mem::take(&mut self.room_wanted) {
            return;
        }
        let now = self.views;
        let before = self.pairs.len();
        self.pairs
            .retain(|_, pair| now.saturating_sub(pair.last_gained) < IDLE_PAIR_VIEWS);
        self.evicted += (before - self.pairs.len()) as u64;
    }
}

/// Views (snapshots) a pair gains nothing in before, at the bound, its
/// series give way to a new pair's: 5 minutes at the default interval.
pub const IDLE_PAIR_VIEWS: u64 = 300;

/// An endpoint as a pair names it.
fn end(view: &View, flow: usize, side: Side) -> End<&str> {
    let namespace = view.ns(flow, side).map_or("", |ns| &**ns);
    let workload = match view.workload(flow, side) {
        Some(w) => &**w,
        None if view.external(flow, side) == Some(true) => "external",
        None => "unknown",
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
        let leg = |times: &[u64]| {
            let mut d = HandshakeDigest::default();
            for &us in times {
                d.tally(us);
            }
            Some(Arc::new(d))
        };
        let before = Seen {
            counts: [100, 2, 1, 0],
            client_leg: leg(&[300]),
            last_seen_ns: 0,
            vantages: 1,
        };
        let now = Seen {
            counts: [150, 3, 1, 0],
            client_leg: leg(&[300, 300, 20_000]),
            last_seen_ns: 0,
            vantages: 1,
        };
        let a = before.counts();
        let gained = now.gained_since(&before);
        assert_eq!(
            (
                gained.bytes,
                gained.packets,
                gained.connections,
                gained.failed
            ),
            (50, 1, 0, 0)
        );
        let mut only_new = HandshakeTally::default();
        only_new.observe(300);
        only_new.observe(20_000);
        assert_eq!(gained.handshakes, only_new);
        // The same digest (shared from the last snapshot), or an equal one,
        // gained no handshakes; nor did a flow without a client leg then
        // and now.
        for client_leg in [before.client_leg.clone(), leg(&[300]), None] {
            let then = Seen {
                client_leg: client_leg.clone(),
                ..before.clone()
            };
            let still = Seen {
                counts: now.counts,
                client_leg,
                last_seen_ns: 0,
                vantages: 1,
            };
            assert_eq!(
                still.gained_since(&then).handshakes,
                HandshakeTally::default()
            );
        }
        // A leg that appeared brings all it tallied.
        let first = Seen {
            client_leg: None,
            ..before.clone()
        };
        assert_eq!(now.gained_since(&first).handshakes.count(), 3);

        // The pair's histogram: buckets in seconds.
        let mut pair = PairCounts::default();
        pair.add(&a);
        pair.add(&gained);
        let h = pair.handshake_histogram();
        assert_eq!((h.count, h.sum), (3, 0.0206));
        let le = |bound: f64| h.buckets.iter().find(|(le, _)| *le == bound).unwrap().1;
        assert_eq!(
            (le(0.00025), le(0.0005), le(0.025), le(f64::INFINITY)),
            (0, 2, 1, 0)
        );
        // (A new flow under an old key is the follower's to tell:
        // pipeline::follow.)
    }

    /// A hub's view: `flows`, with the agents that answered and the ones
    /// that did not.
    fn hub_view(flows: Vec<FlowRecord>, missing: bool) -> View {
        hub_view_of(flows, missing, 1000)
    }

    /// [`hub_view`] of a hub merging at most `capacity` flows.
    fn hub_view_of(flows: Vec<FlowRecord>, missing: bool, capacity: u64) -> View {
        use pipeline::snapshot::{AgentCoverage, Coverage};
        let agent = |name: &str, answered: bool| AgentCoverage {
            name: name.into(),
            updated_ns: answered.then_some(1),
            error: (!answered).then(|| "no answer within 1.0 s".to_owned()),
            ..AgentCoverage::default()
        };
        let mut snapshot = pipeline::Snapshot {
            flows: flows.into(),
            coverage: Coverage {
                agents: vec![agent("http://a", true), agent("http://b", !missing)],
            },
            ..pipeline::Snapshot::default()
        };
        snapshot.counters.table.flow_capacity = capacity;
        View::build(Arc::new(snapshot), None, Arc::default())
    }

    /// While an agent stays missing, flows that keep leaving (keys that
    /// churn) are remembered up to the hub's flow capacity, the latest
    /// seen kept; the first of them, forgotten, counts whole when it is
    /// back, one still remembered only what it gained.
    #[test]
    fn flows_that_left_during_an_outage_are_remembered_up_to_the_capacity() {
        let mut pairs = PairCounters::default();
        let bytes = |pairs: &PairCounters| -> f64 {
            pairs.samples(|c| c.bytes).iter().map(|(_, v)| v).sum()
        };
        // Each round one flow to a port of its own, last seen in its
        // round, leaves the next round (its agent missing).
        let round = |port: u16| {
            let mut f = flow_to(port, 100, u64::from(port));
            f.last_seen_ns = u64::from(port) * 10;
            f
        };
        pairs.observe(&hub_view_of(vec![round(1)], true, 3));
        for port in 2..=10 {
            pairs.observe(&hub_view_of(vec![round(port)], true, 3));
            assert!(pairs.absent.len() <= 3, "{}", pairs.absent.len());
        }
        assert_eq!(pairs.absent_forgotten(), 6);
        assert_eq!(bytes(&pairs), 1000.0);
        // The agent is back with the first flow (forgotten: counted whole
        // again) and the eighth (remembered: only its 50 new bytes).
        let mut eighth = round(8);
        eighth.sent[Side::Client].bytes += 50;
        pairs.observe(&hub_view_of(vec![round(1), eighth], false, 3));
        assert_eq!(bytes(&pairs), 1000.0 + 100.0 + 50.0);

        // Keys that churn with one timestamp are held to the bound too.
        let mut churn = PairCounters::default();
        for port in 1..=10 {
            let mut f = flow_to(port, 100, 1);
            f.last_seen_ns = 7;
            churn.observe(&hub_view_of(vec![f], true, 3));
            assert!(churn.absent.len() <= 3, "{}", churn.absent.len());
        }
    }

    /// A flow of `pkts` packets (100 bytes each) seen from first to last by
    /// the agents at `by` in the coverage.
    fn seen(pkts: u64, (first_seen_ns, last_seen_ns): (u64, u64), by: &[u16]) -> FlowRecord {
        let mut f = flow(pkts * 100, first_seen_ns);
        f.sent[Side::Client].pkts = pkts;
        f.last_seen_ns = last_seen_ns;
        f.seen_by = Some(by.into());
        f
    }

    /// A flow of `bytes` over 10 packets, first seen at `first_seen_ns`.
    fn flow(bytes: u64, first_seen_ns: u64) -> FlowRecord {
        flow_to(443, bytes, first_seen_ns)
    }

    /// The same to server port `port`: another pair.
    fn flow_to(port: u16, bytes: u64, first_seen_ns: u64) -> FlowRecord {
        use pipeline::packet::{Addr, L4Proto};
        let mut f = FlowRecord::new(FlowKey {
            proto: L4Proto::Tcp,
            client: Addr::from_v4([198, 18, 0, 1]),
            server: Addr::from_v4([198, 18, 0, 2]),
            server_port: port,
        });
        f.sent[Side::Client] = pipeline::flow::Counter { pkts: 10, bytes };
        f.first_seen_ns = first_seen_ns;
        f.last_seen_ns = first_seen_ns;
        f
    }

    /// A hub's flow that leaves for the rounds its agent is missing and
    /// comes back counts what it gained meanwhile, not all it had again;
    /// one that leaves while every agent answers and comes back new counts
    /// whole.
    #[test]
    fn a_flow_back_with_its_agent_counts_only_what_it_gained() {
        let mut pairs = PairCounters::default();
        let bytes = |pairs: &PairCounters| -> f64 {
            pairs.samples(|c| c.bytes).iter().map(|(_, v)| v).sum()
        };
        pairs.observe(&hub_view(vec![flow(1000, 5)], false));
        assert_eq!(bytes(&pairs), 1000.0);
        // Agent b misses two pulls: its flow leaves the answer.
        pairs.observe(&hub_view(Vec::new(), true));
        pairs.observe(&hub_view(Vec::new(), true));
        pairs.observe(&hub_view(vec![flow(1500, 5)], false));
        assert_eq!(bytes(&pairs), 1500.0, "counted again whole");
        // It ends while every agent answers; a new flow under its key.
        pairs.observe(&hub_view(Vec::new(), false));
        pairs.observe(&hub_view(vec![flow(100, 9)], false));
        assert_eq!(bytes(&pairs), 1600.0);
        assert!(pairs.absent.is_empty());
        // It ends while an agent is missing (any agent: the flow's own
        // answers), and begins again as large: a new flow, counted whole.
        pairs.observe(&hub_view(Vec::new(), true));
        pairs.observe(&hub_view(vec![flow(100, 20)], true));
        assert_eq!(bytes(&pairs), 1700.0);
    }

    /// A flow two nodes saw, merged from the fuller count: while that
    /// node's agent misses pulls the hub answers with the other node's
    /// smaller count, started later. It counted everything again (26
    /// packets read as 50 after four missed pulls); it now adds only what
    /// goes beyond what was counted. A flow that starts after the last
    /// one under its key was last seen is a new one, outage or not.
    #[test]
    fn a_flow_seen_from_fewer_nodes_while_an_agent_is_missing_is_not_counted_again() {
        let packets = |pairs: &PairCounters| -> f64 {
            pairs.samples(|c| c.packets).iter().map(|(_, v)| v).sum()
        };
        let mut pairs = PairCounters::default();
        pairs.observe(&hub_view(vec![seen(26, (5, 10), &[0, 1])], false));
        assert_eq!(packets(&pairs), 26.0);
        for (pkts, last) in [(24, 10), (24, 10), (25, 11), (25, 11)] {
            pairs.observe(&hub_view(vec![seen(pkts, (7, last), &[0])], true));
            assert_eq!(packets(&pairs), 26.0, "a partial count of {pkts}");
        }
        pairs.observe(&hub_view(vec![seen(27, (5, 12), &[0, 1])], false));
        assert_eq!(packets(&pairs), 27.0);
        // The flow ends and starts again while an agent is missing.
        pairs.observe(&hub_view(vec![seen(3, (50, 50), &[0])], true));
        assert_eq!(packets(&pairs), 30.0, "a new flow, counted whole");
        pairs.observe(&hub_view(vec![seen(4, (50, 51), &[0])], true));
        assert_eq!(packets(&pairs), 31.0);
        // Every agent answers: a smaller, later flow is a new one.
        pairs.observe(&hub_view(vec![seen(2, (90, 90), &[0])], false));
        assert_eq!(packets(&pairs), 33.0);
    }

    /// A flow two agents saw, whose fuller agent restarts between two
    /// pulls (never named missing: the same address answers, from a new
    /// run): the hub answers with the other agent's smaller count, which
    /// was counted again whole (43 packets read as 66, a reviewer's two
    /// agents). An agent no longer discovered (a pod replaced) is missing
    /// for the round it leaves. A flow that starts after its key's last
    /// was seen still counts whole.
    #[test]
    fn a_flow_seen_by_an_agent_restarted_is_not_counted_again() {
        use pipeline::snapshot::{AgentCoverage, Coverage};
        let view = |flows: Vec<FlowRecord>, agents: &[(&str, u64)]| {
            let agents = agents
                .iter()
                .map(|&(name, instance)| AgentCoverage {
                    name: name.into(),
                    updated_ns: Some(1),
                    instance: Some(instance),
                    ..AgentCoverage::default()
                })
                .collect();
            let snapshot = pipeline::Snapshot {
                flows: flows.into(),
                coverage: Coverage { agents },
                ..pipeline::Snapshot::default()
            };
            View::build(Arc::new(snapshot), None, Arc::default())
        };
        let packets = |pairs: &PairCounters| -> f64 {
            pairs.samples(|c| c.packets).iter().map(|(_, v)| v).sum()
        };
        let mut pairs = PairCounters::default();
        let both = [("http://a", 1), ("http://b", 2)];
        pairs.observe(&view(vec![seen(43, (5, 10), &[0, 1])], &both));
        assert_eq!(packets(&pairs), 43.0);
        // a restarts (instance 3) and sees the flow again, from later.
        let a_again = [("http://a", 3), ("http://b", 2)];
        pairs.observe(&view(vec![seen(23, (5, 12), &[0, 1])], &a_again));
        assert_eq!(packets(&pairs), 43.0, "b's 23 counted again");
        pairs.observe(&view(vec![seen(25, (5, 13), &[0, 1])], &a_again));
        assert_eq!(packets(&pairs), 43.0);
        pairs.observe(&view(vec![seen(45, (5, 14), &[0, 1])], &a_again));
        assert_eq!(packets(&pairs), 45.0);
        // b restarts and no longer sees it: a's count, smaller.
        let b_again = [("http://a", 3), ("http://b", 4)];
        pairs.observe(&view(vec![seen(30, (5, 15), &[0])], &b_again));
        assert_eq!(packets(&pairs), 45.0, "a's 30 counted again");
        // b leaves discovery: missing for that round.
        pairs.observe(&view(vec![seen(46, (5, 16), &[0, 1])], &b_again));
        assert_eq!(packets(&pairs), 46.0);
        pairs.observe(&view(vec![seen(31, (5, 17), &[0])], &b_again[..1]));
        assert_eq!(packets(&pairs), 46.0, "a's 31 counted again");
        // A flow begun after the last was seen is new, restart or not.
        let a_once_more = [("http://a", 5)];
        pairs.observe(&view(vec![seen(2, (40, 40), &[0])], &a_once_more));
        assert_eq!(packets(&pairs), 48.0);
    }

    /// At `--metrics-max-pairs`, pairs idle for [`IDLE_PAIR_VIEWS`] views
    /// give their series to new pairs (bare pods and jobs come and go);
    /// below the bound, before that, and while no new pair wants room,
    /// series stay.
    #[test]
    fn idle_pairs_make_room_at_the_bound() {
        let mut pairs = PairCounters::new(2);
        let ports = |pairs: &PairCounters| -> Vec<String> {
            pairs
                .samples(|c| c.bytes)
                .into_iter()
                .map(|(l, _)| l[4].clone())
                .collect()
        };
        pairs.observe(&hub_view(
            vec![flow_to(1, 100, 1), flow_to(2, 100, 1)],
            false,
        ));
        for _ in 1..IDLE_PAIR_VIEWS - 1 {
            pairs.observe(&hub_view(Vec::new(), false));
        }
        // Not idle long enough yet: the third pair goes to `other`.
        pairs.observe(&hub_view(vec![flow_to(3, 100, 2)], false));
        assert_eq!(ports(&pairs), ["1", "2", "other"]);
        assert_eq!(pairs.evicted(), 0);
        // 1 and 2 are now idle for as long: they leave, and what 3 gains
        // from now on and the new 4 get series of their own.
        pairs.observe(&hub_view(
            vec![flow_to(3, 200, 2), flow_to(4, 100, 3)],
            false,
        ));
        assert_eq!(pairs.evicted(), 2);
        assert_eq!(ports(&pairs), ["3", "4", "other"]);
        // Idle twice as long, with no new pair: their series stay.
        for _ in 0..2 * IDLE_PAIR_VIEWS {
            pairs.observe(&hub_view(Vec::new(), false));
        }
        assert_eq!(pairs.evicted(), 2);
        assert_eq!(ports(&pairs), ["3", "4", "other"]);
    }

    #[test]
    fn a_borrowed_key_finds_its_pair() {
        let end = |namespace, workload| End {
            namespace,
            workload,
        };
        let borrowed = |workload| PairKey {
            client: end("shop", workload),
            server: end("", "external"),
            server_port: 443,
            protocol: "tcp",
        };
        let mut pairs = hashbrown::HashMap::<_, _, ahash::RandomState>::default();
        pairs.insert(borrowed("cart").owned(), PairCounts::default());
        assert!(pairs.get(&borrowed("cart")).is_some());
        assert!(pairs.get(&borrowed("carts")).is_none());
    }
}
