//! A published snapshot prepared for queries: the Kubernetes identity of
//! every flow's endpoints and the summary are computed once, when the
//! snapshot (or the inventory) changes, then read by any number of requests
//! without locks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use pipeline::Snapshot;
use pipeline::flow::{FlowRecord, PerSide, Side};

use crate::cluster::Cluster;
use crate::rest::coverage::CoverageJson;
use crate::rest::query::{Aggregate, FlowQuery};
use crate::rest::rows::Grouped;
use crate::rest::summary;
use k8s::{Identity, Inventory};
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
    summary_json: bytes::Bytes,
    /// The coverage every answer from this view carries.
    coverage: Arc<CoverageJson>,
    /// The agent feed of this view, encoded the first time a hub asks.
    feed: OnceLock<bytes::Bytes>,
    /// Aggregations computed from this view, by what they grouped.
    aggregations: Mutex<HashMap<AggregationKey, Arc<Vec<Grouped>>>>,
}

/// What an aggregation groups: the grouping and the filters applied before
/// it (sorting and limits come after, from the shared groups).
type AggregationKey = (
    Option<Aggregate>,
    Option<L4Proto>,
    Option<ipnetwork::IpNetwork>,
    [Option<String>; 3],
);

/// Aggregations kept per view; past it, the oldest is dropped. Each holds
/// one entry per group (16 bytes, a merged row for groups of several).
const AGGREGATIONS_KEPT: usize = 8;

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
                        inv.lookup(f.key.client.to_ip()).cloned(),
                        inv.lookup(f.key.server.to_ip()).cloned(),
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        let coverage = Arc::new(CoverageJson::of(
            &snapshot.coverage,
            pipeline::time::wall_now_ns(),
        ));
        let mut view = View {
            snapshot,
            identities,
            cluster,
            enriched: inventory.is_some(),
            inventory,
            workloads: OnceLock::new(),
            summary_json: bytes::Bytes::new(),
            coverage,
            feed: OnceLock::new(),
            aggregations: Mutex::default(),
        };
        view.summary_json = serde_json::to_vec(&summary::build(&view))
            .expect("the summary serialises")
            .into();
        view
    }

    /// An empty view, served before the first snapshot.
    pub fn empty() -> View {
        View::build(Arc::new(Snapshot::default()), None, Arc::default())
    }

    pub fn flows(&self) -> &[FlowRecord] {
        &self.snapshot.flows
    }

    /// The groups of `q`'s aggregation, computed by `compute` the first
    /// time a query asks for them.
    pub fn aggregation(
        &self,
        q: &FlowQuery,
        compute: impl FnOnce() -> Vec<Grouped>,
    ) -> Arc<Vec<Grouped>> {
        let key: AggregationKey = (
            q.aggregate,
            q.l4proto,
            q.ip,
            [q.ns.clone(), q.pod.clone(), q.svc.clone()],
        );
        if let Some(groups) = self
            .aggregations
            .lock()
            .expect("aggregations lock")
            .get(&key)
        {
            return groups.clone();
        }
        // Computed without the lock: a slow aggregation holds up no other.
        let groups = Arc::new(compute());
        let mut kept = self.aggregations.lock().expect("aggregations lock");
        if kept.len() >= AGGREGATIONS_KEPT {
            kept.clear();
        }
        kept.insert(key, groups.clone());
        groups
    }

    /// The coverage answers carry.
    pub fn coverage(&self) -> Arc<CoverageJson> {
        self.coverage.clone()
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
        self.summary_json.clone()
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

    pub fn external(&self, flow: usize, side: Side) -> Option<bool> {
        self.cluster.is_external(self.ip(flow, side))
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
