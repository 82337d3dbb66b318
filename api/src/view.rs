//! A published snapshot prepared for queries: the Kubernetes identity of
//! every flow's endpoints and the summary are computed once, when the
//! snapshot (or the inventory) changes, before the view is served, then
//! read by any number of requests without locks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use pipeline::Snapshot;
use pipeline::flow::{PerSide, Side};
use pipeline::snapshot::Flows;

use crate::cluster::Cluster;
use crate::rest::coverage::CoverageJson;
use crate::rest::query::{Aggregate, FlowQuery, SortKey};
use crate::rest::rows::{Grouped, Row};
use crate::rest::summary;
use k8s::{Identity, IdentityKind, Inventory};
use pipeline::packet::L4Proto;

pub struct View {
    pub snapshot: Arc<Snapshot>,
    /// Client and server identity of each flow, by flow index; empty when no
    /// inventory is loaded.
    identities: Vec<PerSide<Option<Arc<Identity>>>>,
    pub cluster: Arc<Cluster>,
    /// Whether an inventory was applied.
    pub enriched: bool,
    /// The inventory applied, if any (its workload list).
    pub inventory: Option<Arc<Inventory>>,
    /// Every workload with its traffic, computed the first time it is asked.
    workloads: OnceLock<Arc<Vec<crate::rest::workloads::WorkloadJson>>>,
    /// The summary's JSON but for its coverage and closing brace, computed
    /// by the publisher before the view is served (or by the first query,
    /// for a view never published).
    summary_json: OnceLock<bytes::Bytes>,
    /// How many different clients and servers the flows have (the
    /// summary's), counted by whichever thread asks first.
    distinct_ends: OnceLock<(usize, usize)>,
    /// The agent feed of this view, encoded the first time a hub asks.
    feed: OnceLock<bytes::Bytes>,
    /// Aggregations computed from this view, by what they grouped: each
    /// computed once, queries asking meanwhile waiting for it.
    aggregations: Memo<AggregationKey, Arc<Vec<Grouped>>>,
    /// Aggregated answers' entries and totals, by everything that chooses
    /// them: a repeated query renders, and does not rank the groups again.
    aggregated_tops: Memo<TopKey, Arc<(Vec<Row>, usize)>>,
    /// The aggregated queries clients asked this view (at most
    /// [`MEMO_KEPT`]): the next view answers them before it is served.
    asked: Mutex<Vec<FlowQuery>>,
}

fn aggregation_key(q: &FlowQuery) -> AggregationKey {
    (
        q.aggregate,
        q.l4proto,
        q.ip,
        [q.ns.clone(), q.pod.clone(), q.svc.clone()],
    )
}

/// What chooses an aggregated answer's entries: its groups, their order,
/// how many, and the thresholds they pass.
type TopKey = (AggregationKey, SortKey, usize, Option<u64>, Option<u64>);

/// Values computed from a view the first time a query asks for them, by
/// key; a query that asks while one is computed waits for it rather than
/// compute it again (a new snapshot met by several clients at once).
/// Bounded: past [`MEMO_KEPT`] keys the memo starts again, since clients
/// choose the keys.
struct Memo<K, V> {
    kept: Mutex<HashMap<K, Arc<OnceLock<V>>>>,
}

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo {
            kept: Mutex::default(),
        }
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Memo<K, V> {
    fn get(&self, key: K, compute: impl FnOnce() -> V) -> V {
        let cell = {
            let mut kept = self.kept.lock().expect("memo lock");
            if kept.len() >= MEMO_KEPT && !kept.contains_key(&key) {
                kept.clear();
            }
            kept.entry(key).or_default().clone()
        };
        // Computed without the map's lock: a slow value holds up no other.
        cell.get_or_init(compute).clone()
    }
}

/// What an aggregation groups: the grouping and the filters applied before
/// it (sorting and limits come after, from the shared groups).
type AggregationKey = (
    Option<Aggregate>,
    Option<L4Proto>,
    Option<ipnetwork::IpNetwork>,
    [Option<String>; 3],
);

/// Values a memo keeps per view. An aggregation holds one entry per group
/// (16 bytes, a merged row for groups of several); an answer its rows.
const MEMO_KEPT: usize = 16;

impl View {
    pub fn build(
        snapshot: Arc<Snapshot>,
        inventory: Option<Arc<Inventory>>,
        cluster: Arc<Cluster>,
    ) -> View {
        let identities = match inventory.as_deref() {
            Some(inv) => snapshot
                .flows
                .iter()
                .map(|f| {
                    PerSide::new(
                        inv.lookup_at(f.key.client.to_ip(), f.last_seen_ns).cloned(),
                        inv.lookup_at(f.key.server.to_ip(), f.last_seen_ns).cloned(),
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        View {
            snapshot,
            identities,
            cluster,
            enriched: inventory.is_some(),
            inventory,
            workloads: OnceLock::new(),
            summary_json: OnceLock::new(),
            distinct_ends: OnceLock::new(),
            feed: OnceLock::new(),
            aggregations: Memo::default(),
            aggregated_tops: Memo::default(),
            asked: Mutex::default(),
        }
    }

    /// An empty view, served before the first snapshot.
    pub fn empty() -> View {
        View::build(Arc::new(Snapshot::default()), None, Arc::default())
    }

    pub fn flows(&self) -> &Flows {
        &self.snapshot.flows
    }

    /// The groups of `q`'s aggregation, computed by `compute` the first
    /// time a query asks for them.
    pub fn aggregation(
        &self,
        q: &FlowQuery,
        compute: impl FnOnce() -> Vec<Grouped>,
    ) -> Arc<Vec<Grouped>> {
        self.aggregations
            .get(aggregation_key(q), || Arc::new(compute()))
    }

    /// The entries and total of `q`'s aggregated answer, computed by
    /// `compute` the first time a query asks for them (ranking every group
    /// is most of an answer's work: a million groups when names are
    /// unknown and each flow stands alone).
    pub fn aggregated_top(
        &self,
        q: &FlowQuery,
        compute: impl FnOnce() -> (Vec<Row>, usize),
    ) -> Arc<(Vec<Row>, usize)> {
        let key = (
            aggregation_key(q),
            q.sort,
            q.limit,
            q.min_handshake_p99_us,
            q.min_failed,
        );
        self.aggregated_tops.get(key, || Arc::new(compute()))
    }

    /// Notes that a client asked `q` (an aggregated query) of this view.
    pub fn asked(&self, q: &FlowQuery) {
        let mut asked = self.asked.lock().expect("asked lock");
        if asked.len() < MEMO_KEPT && !asked.contains(q) {
            asked.push(q.clone());
        }
    }

    /// Prepares this view for what clients asked `previous`: the answers
    /// they will ask again are computed once, before the view is served,
    /// rather than by the first query that meets it (which then waited for
    /// it: the p99 of an aggregation under load).
    pub fn prepare_as(&self, previous: &View) {
        let asked = previous.asked.lock().expect("asked lock").clone();
        for q in asked {
            crate::rest::flows(self, &q);
        }
    }

    /// The coverage an answer carries, its ages as of the answer: a view
    /// is served until the next snapshot, and its data ages meanwhile
    /// (most of all a stalled capture's, whose next snapshot never comes).
    pub fn coverage(&self) -> Arc<CoverageJson> {
        Arc::new(CoverageJson::of(
            &self.snapshot.coverage,
            pipeline::time::wall_now_ns(),
        ))
    }

    /// Every workload the inventory knows, with its traffic.
    pub fn workloads(&self) -> Arc<Vec<crate::rest::workloads::WorkloadJson>> {
        self.workloads
            .get_or_init(|| Arc::new(crate::rest::workloads::all(self)))
            .clone()
    }

    /// The agent feed of this view, encoded once.
    pub fn feed(&self) -> bytes::Bytes {
        self.feed
            .get_or_init(|| crate::feed::Feed::of(self).encode().into())
            .clone()
    }

    /// The names of the agents that saw flow `flow` (a hub's view).
    pub fn seen_by(&self, flow: usize) -> Option<Vec<Arc<str>>> {
        let agents = &self.snapshot.coverage.agents;
        let seen = self.snapshot.flows[flow].seen_by.as_ref()?;
        Some(
            seen.iter()
                .filter_map(|&i| agents.get(usize::from(i)))
                .map(|a| a.node.clone().unwrap_or_else(|| a.name.clone()))
                .collect(),
        )
    }

    /// The summary's JSON (shared, cheap to clone).
    pub fn summary_json(&self) -> bytes::Bytes {
        // Made once a view; its last field, the coverage, is written by
        // each answer as of its time.
        let rest = self.summary_json.get_or_init(|| {
            let mut json =
                serde_json::to_vec(&summary::build(self)).expect("the summary serialises");
            // An object: its closing brace comes after the coverage.
            json.pop();
            json.into()
        });
        let mut json = Vec::with_capacity(rest.len() + 1024);
        json.extend_from_slice(rest);
        json.extend_from_slice(b",\"coverage\":");
        serde_json::to_writer(&mut json, &*self.coverage()).expect("coverage serialises");
        json.push(b'}');
        json.into()
    }

    /// How many different client and server addresses the flows have.
    /// The publisher's other thread counts them once it has followed the
    /// flows for the per-pair counters, while the summary, which needs
    /// them last, is still being built.
    pub fn distinct_ends(&self) -> (usize, usize) {
        *self
            .distinct_ends
            .get_or_init(|| summary::distinct_ends(&self.snapshot.flows))
    }

    pub fn identity(&self, flow: usize, side: Side) -> Option<&Arc<Identity>> {
        self.identities.get(flow)?[side].as_ref()
    }

    pub fn ip(&self, flow: usize, side: Side) -> IpAddr {
        let key = &self.snapshot.flows[flow].key;
        match side {
            Side::Client => key.client.to_ip(),
            Side::Server => key.server.to_ip(),
        }
    }

    /// The port an endpoint is reached on: the server port for servers; a
    /// flow aggregates many client ports, so none for clients.
    pub fn port(&self, flow: usize, side: Side) -> Option<u16> {
        match side {
            Side::Client => None,
            Side::Server => Some(self.snapshot.flows[flow].key.server_port),
        }
    }

    pub fn pod(&self, flow: usize, side: Side) -> Option<&Arc<str>> {
        self.identity(flow, side)?.pod.as_ref()
    }

    pub fn ns(&self, flow: usize, side: Side) -> Option<&Arc<str>> {
        self.identity(flow, side)?.ns.as_ref()
    }

    pub fn node(&self, flow: usize, side: Side) -> Option<&Arc<str>> {
        self.identity(flow, side)?.node.as_ref()
    }

    /// The endpoint pod's workload (its Deployment, StatefulSet...).
    pub fn workload(&self, flow: usize, side: Side) -> Option<&Arc<str>> {
        self.identity(flow, side)?.workload.as_ref()
    }

    /// The endpoint's service, chosen by the server port for servers.
    pub fn svc(&self, flow: usize, side: Side) -> Option<&Arc<str>> {
        self.identity(flow, side)?.service(self.port(flow, side))
    }

    pub fn container_id(&self, flow: usize, side: Side) -> Option<&Arc<str>> {
        self.identity(flow, side)?
            .container_id(self.port(flow, side))
    }

    /// Whether the endpoint is outside the cluster (known only with
    /// `--cluster-cidr`): an address the Kubernetes names give a pod, a
    /// service's own address or a node is inside, whatever ranges were
    /// given (a dual-stack cluster's IPv6 pods outside IPv4-only ranges are
    /// still its pods); a service's endpoint that is none of those (a
    /// selector-less service's database outside) is where the ranges say.
    pub fn external(&self, flow: usize, side: Side) -> Option<bool> {
        let external = self.cluster.is_external(self.ip(flow, side))?;
        let named_inside = self
            .identity(flow, side)
            .is_some_and(|id| id.kind != IdentityKind::Endpoint);
        Some(external && !named_inside)
    }
}

/// Kubernetes names for what follows snapshots (the IPFIX exporter).
impl pipeline::snapshot::EndpointNames for View {
    fn endpoint(&self, flow: usize, side: Side) -> Option<pipeline::snapshot::EndpointName> {
        let id = self.identity(flow, side)?;
        Some(pipeline::snapshot::EndpointName {
            namespace: id.ns.clone(),
            workload: id.workload.clone(),
            pod: id.pod.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::rest::query::parse_flow_query;

    #[test]
    fn queries_that_meet_share_one_aggregation() {
        let view = View::empty();
        let computed = AtomicUsize::new(0);
        let compute = || {
            computed.fetch_add(1, Ordering::SeqCst);
            // Long enough for every thread to ask while it runs.
            std::thread::sleep(std::time::Duration::from_millis(100));
            Vec::new()
        };
        let by_namespace = parse_flow_query("aggregate=namespace").unwrap();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| view.aggregation(&by_namespace, compute));
            }
        });
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        // Sorting and limits come after: the same groups.
        let sorted = parse_flow_query("aggregate=namespace&limit=3&sort=pkts").unwrap();
        view.aggregation(&sorted, compute);
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        // Another grouping, or another filter, is computed on its own.
        view.aggregation(&parse_flow_query("aggregate=pod").unwrap(), compute);
        view.aggregation(
            &parse_flow_query("aggregate=namespace&ns=shop").unwrap(),
            compute,
        );
        assert_eq!(computed.load(Ordering::SeqCst), 3);

        // An answer's ranked entries: once per order, limit and thresholds.
        let ranked = AtomicUsize::new(0);
        let rank = || {
            ranked.fetch_add(1, Ordering::SeqCst);
            (Vec::new(), 0)
        };
        for query in ["aggregate=namespace", "aggregate=namespace&format=full"] {
            view.aggregated_top(&parse_flow_query(query).unwrap(), rank);
        }
        assert_eq!(ranked.load(Ordering::SeqCst), 1, "the format only renders");
        for query in [
            "aggregate=namespace&limit=5",
            "aggregate=namespace&min_failed=1",
        ] {
            view.aggregated_top(&parse_flow_query(query).unwrap(), rank);
        }
        assert_eq!(ranked.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_next_view_answers_what_clients_asked_before_it_is_served() {
        let (served, next, untouched) = (View::empty(), View::empty(), View::empty());
        let asked = parse_flow_query("aggregate=pod&sort=pkts").unwrap();
        let plan =
            crate::rest::plan(crate::rest::FLOWS_PATH, "aggregate=pod&sort=pkts", 100).unwrap();
        crate::rest::answer(&served, &plan);
        next.prepare_as(&served);
        next.aggregated_top(&asked, || panic!("prepared: not computed again"));
        // What nobody asked is not prepared.
        let other = parse_flow_query("aggregate=namespace").unwrap();
        let computed = AtomicUsize::new(0);
        next.aggregated_top(&other, || {
            computed.fetch_add(1, Ordering::SeqCst);
            (Vec::new(), 0)
        });
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        // A prepared view passes on only what its own clients asked.
        untouched.prepare_as(&next);
        assert!(untouched.asked.lock().unwrap().is_empty());
    }
}
