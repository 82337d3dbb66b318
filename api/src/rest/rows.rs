//! Rows: what one entry of `/mcp/flows` says, whether it is one flow or a
//! group of flows merged by `aggregate`.
//!
//! Aggregation merges flows whose client and server have the same value of
//! the chosen attribute, and the same protocol. An endpoint without the
//! attribute (an external IP, a host process for `pod`...) stays grouped by
//! its IP. Packets, bytes and rates add up; handshake samples are merged
//! into one digest (percentiles are never averaged); an endpoint keeps every
//! field all its merged endpoints share (so `aggregate=pod` keeps the pod's
//! namespace and node), and the server port is kept when all merged flows
//! share it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use pipeline::flow::{
    Counter, FlowRecord, HandshakeDigest, PerSide, Percentiles, Rates, Side, TcpHealth, Window,
};
use pipeline::packet::{Addr, L4Proto};
use pipeline::wire::decap::Mirror;

use super::query::Aggregate;
use crate::cluster::nat64_ipv4;
use crate::view::View;

/// One endpoint as rendered.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointFields {
    pub ip: Option<IpAddr>,
    pub pod: Option<Arc<str>>,
    pub ns: Option<Arc<str>>,
    pub svc: Option<Arc<str>>,
    pub node: Option<Arc<str>>,
    pub container_id: Option<Arc<str>>,
    pub external: Option<bool>,
    pub nat64_ipv4: Option<Ipv4Addr>,
}

impl EndpointFields {
    pub fn of(view: &View, flow: usize, side: Side) -> EndpointFields {
        let ip = view.ip(flow, side);
        EndpointFields {
            ip: Some(ip),
            pod: view.pod(flow, side).cloned(),
            ns: view.ns(flow, side).cloned(),
            svc: view.svc(flow, side).cloned(),
            node: view.node(flow, side).cloned(),
            container_id: view.container_id(flow, side).cloned(),
            external: view.external(flow, side),
            nat64_ipv4: nat64_ipv4(ip),
        }
    }

    /// Keeps only the fields `other` has too, with the same value.
    fn intersect(&mut self, other: &EndpointFields) {
        fn keep<T: PartialEq>(mine: &mut Option<T>, theirs: &Option<T>) {
            if mine != theirs {
                *mine = None;
            }
        }
        keep(&mut self.ip, &other.ip);
        keep(&mut self.pod, &other.pod);
        keep(&mut self.ns, &other.ns);
        keep(&mut self.svc, &other.svc);
        keep(&mut self.node, &other.node);
        keep(&mut self.container_id, &other.container_id);
        keep(&mut self.external, &other.external);
        keep(&mut self.nat64_ipv4, &other.nat64_ipv4);
    }
}

/// One entry of the flow list.
#[derive(Clone, Debug)]
pub struct Row {
    pub proto: L4Proto,
    pub client: EndpointFields,
    pub server: EndpointFields,
    pub server_port: Option<u16>,
    /// Packets and bytes each side sent.
    pub sent: PerSide<Counter>,
    pub rates: Rates,
    pub last_seen_ns: u64,
    pub percentiles: PerSide<Option<Percentiles>>,
    /// Flows merged into this row (1 without aggregation).
    pub flows: u64,
    /// The mirror session, when every merged flow came through the same one.
    pub mirror: Option<Mirror>,
    /// In a hub's answer: the agents that saw it (every merged flow's).
    pub seen_by: Option<Vec<Arc<str>>>,
    /// TCP health, summed over the merged flows.
    pub tcp: TcpHealth,
}

impl Row {
    pub fn of_flow(view: &View, flow: usize) -> Row {
        let f = &view.flows()[flow];
        Row {
            proto: f.key.proto,
            client: EndpointFields::of(view, flow, Side::Client),
            server: EndpointFields::of(view, flow, Side::Server),
            server_port: Some(f.key.server_port),
            sent: f.sent,
            rates: f.rates,
            last_seen_ns: f.last_seen_ns,
            percentiles: f.percentiles,
            flows: 1,
            mirror: f.mirror,
            seen_by: view.seen_by(flow),
            tcp: f.tcp.clone(),
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.sent.total().bytes
    }

    pub fn total_pkts(&self) -> u64 {
        self.sent.total().pkts
    }

    /// What the entry sorts and filters by.
    pub fn rank(&self) -> Rank {
        Rank::of(self.sent, &self.rates, &self.percentiles, &self.tcp)
    }
}

pub fn handshake_p99(p: &PerSide<Option<Percentiles>>) -> Option<u64> {
    p.0.iter().flatten().map(|p| u64::from(p.p99)).max()
}

/// An endpoint's place in an aggregation: the attribute's value, or its IP.
/// Borrowed from the view: a key per flow, so it must be cheap to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Member<'v> {
    /// The attribute, qualified by namespace where names are per namespace.
    Attr(Option<&'v str>, &'v str),
    Ip(Addr),
}

fn member(view: &View, flow: usize, side: Side, by: Aggregate) -> Member<'_> {
    let ns = || view.ns(flow, side).map(|n| &**n);
    let attr = match by {
        Aggregate::Pod => view.pod(flow, side).map(|p| (ns(), &**p)),
        Aggregate::Namespace => view.ns(flow, side).map(|n| (None, &**n)),
        Aggregate::Node => view.node(flow, side).map(|n| (None, &**n)),
        Aggregate::Service => view.svc(flow, side).map(|s| (ns(), &**s)),
    };
    match attr {
        Some((scope, name)) => Member::Attr(scope, name),
        None => {
            let key = &view.flows()[flow].key;
            Member::Ip(match side {
                Side::Client => key.client,
                Side::Server => key.server,
            })
        }
    }
}

/// A group of flows. Most groups of a large snapshot hold one flow (every
/// endpoint without the attribute stays its own IP), so a group is just its
/// first flow until a second one joins; only then is a row built and the
/// handshake digests merged.
struct Group {
    first: usize,
    merged: Option<Box<Merged>>,
}

impl Group {
    fn new(first: usize) -> Group {
        Group {
            first,
            merged: None,
        }
    }
}

/// What entries sort and filter by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rank {
    pub bytes: u64,
    pub pkts: u64,
    pub pps: f64,
    /// The larger leg's p99 (`sort=handshake_p99`, `min_handshake_p99_us`).
    pub handshake_p99: Option<u64>,
    pub retransmits: u64,
    /// Refused, unanswered and reset connections (`sort=failed`, `min_failed`).
    pub failed: u64,
    pub rsts: u64,
}

impl Rank {
    fn of(
        sent: PerSide<Counter>,
        rates: &Rates,
        percentiles: &PerSide<Option<Percentiles>>,
        tcp: &TcpHealth,
    ) -> Rank {
        let total = sent.total();
        Rank {
            bytes: total.bytes,
            pkts: total.pkts,
            pps: rates.pps.total(),
            handshake_p99: handshake_p99(percentiles),
            retransmits: tcp.retransmits(),
            failed: tcp.connections.failed(),
            rsts: tcp.rsts(),
        }
    }
}

/// An aggregated entry before rendering: a lone flow stays an index, so that
/// only the entries a query returns are ever turned into rows.
pub enum Grouped {
    One(usize),
    Many(Box<Row>),
}

/// A flow's [`Rank`].
pub fn flow_rank(f: &FlowRecord) -> Rank {
    Rank::of(f.sent, &f.rates, &f.percentiles, &f.tcp)
}

impl Grouped {
    pub fn sort_key(&self, view: &View) -> Rank {
        match self {
            Grouped::One(i) => flow_rank(&view.flows()[*i]),
            Grouped::Many(r) => r.rank(),
        }
    }

    /// The first fields of the rendered order (protocol, client IP), read
    /// without building a row: most ties are settled by them.
    pub fn order_prefix(&self, view: &View) -> (L4Proto, Option<IpAddr>) {
        match self {
            Grouped::One(i) => (view.flows()[*i].key.proto, Some(view.ip(*i, Side::Client))),
            Grouped::Many(r) => (r.proto, r.client.ip),
        }
    }

    pub fn into_row(self, view: &View) -> Row {
        match self {
            Grouped::One(i) => Row::of_flow(view, i),
            Grouped::Many(row) => *row,
        }
    }
}

struct Merged {
    row: Row,
    digests: PerSide<HandshakeDigest>,
}

impl Merged {
    fn of(view: &View, flow: usize) -> Merged {
        let mut merged = Merged {
            row: Row::of_flow(view, flow),
            digests: Default::default(),
        };
        merged.merge_digests(view, flow);
        merged
    }

    fn merge_digests(&mut self, view: &View, flow: usize) {
        let snapshot = &view.snapshot;
        for side in Side::BOTH {
            if let Some(d) = &view.flows()[flow].handshake[side] {
                d.merge_into(
                    &mut self.digests[side],
                    snapshot.as_of_ns,
                    snapshot.rtt_window,
                );
            }
        }
    }

    fn add(&mut self, view: &View, flow: usize) {
        let f = &view.flows()[flow];
        let row = &mut self.row;
        row.client
            .intersect(&EndpointFields::of(view, flow, Side::Client));
        row.server
            .intersect(&EndpointFields::of(view, flow, Side::Server));
        if row.server_port != Some(f.key.server_port) {
            row.server_port = None;
        }
        if row.mirror != f.mirror {
            row.mirror = None;
        }
        if let (Some(seen), Some(more)) = (row.seen_by.as_mut(), view.seen_by(flow)) {
            for agent in more {
                if !seen.contains(&agent) {
                    seen.push(agent);
                }
            }
            seen.sort();
        }
        row.flows += 1;
        for side in Side::BOTH {
            row.sent[side].add(f.sent[side]);
            row.rates.pps[side] += f.rates.pps[side];
            row.rates.bps[side] += f.rates.bps[side];
        }
        row.last_seen_ns = row.last_seen_ns.max(f.last_seen_ns);
        row.tcp.add(&f.tcp);
        self.merge_digests(view, flow);
    }

    fn into_row(mut self, as_of_ns: u64) -> Row {
        for side in Side::BOTH {
            self.row.percentiles[side] =
                self.digests[side].percentiles(as_of_ns, Window::Unbounded);
        }
        self.row
    }
}

/// Merges the flows at `indices` by `by`. Entries come out in no particular
/// order; the caller sorts them.
pub fn aggregate(view: &View, indices: &[usize], by: Aggregate) -> Vec<Grouped> {
    let hasher = ahash::RandomState::new();
    aggregate_with(view, indices, by, |key| hasher.hash_one(key))
}

type GroupKey<'v> = (L4Proto, Member<'v>, Member<'v>);

/// [`aggregate`] with the key hash given (tests force collisions with it).
/// Groups are found by a 64-bit hash of their key: small entries, so that a
/// million groups stay a small table. Two keys with the same hash are told
/// apart by comparing with the group's first flow; the rare loser goes to a
/// second table keyed by the key itself. Groups come out in the order of
/// their first flows: the passes over them that read a lone flow's record
/// (its rank) then go through the snapshot in order, not at random.
fn aggregate_with<'v>(
    view: &'v View,
    indices: &[usize],
    by: Aggregate,
    hash: impl Fn(&GroupKey<'v>) -> u64,
) -> Vec<Grouped> {
    let key_of = |i: usize| {
        (
            view.flows()[i].key.proto,
            member(view, i, Side::Client, by),
            member(view, i, Side::Server, by),
        )
    };
    let mut groups: Vec<Group> = Vec::new();
    // Positions in `groups`.
    let mut by_hash: HashMap<u64, u32, BuildHasherDefault<PassHash>> =
        HashMap::with_capacity_and_hasher(indices.len(), BuildHasherDefault::default());
    let mut collided: HashMap<_, u32, ahash::RandomState> = HashMap::default();
    for &i in indices {
        let key = key_of(i);
        let at = match by_hash.entry(hash(&key)) {
            Entry::Vacant(v) => {
                v.insert(groups.len() as u32);
                groups.push(Group::new(i));
                continue;
            }
            Entry::Occupied(o) if key_of(groups[*o.get() as usize].first) == key => *o.get(),
            Entry::Occupied(_) => match collided.entry(key) {
                Entry::Vacant(v) => {
                    v.insert(groups.len() as u32);
                    groups.push(Group::new(i));
                    continue;
                }
                Entry::Occupied(o) => *o.get(),
            },
        };
        let group = &mut groups[at as usize];
        group
            .merged
            .get_or_insert_with(|| Box::new(Merged::of(view, group.first)))
            .add(view, i);
    }
    drop((by_hash, collided));
    let as_of_ns = view.snapshot.as_of_ns;
    groups
        .into_iter()
        .map(|g| match g.merged {
            // One flow: its own row, percentiles and all, when rendered.
            None => Grouped::One(g.first),
            Some(merged) => Grouped::Many(Box::new(merged.into_row(as_of_ns))),
        })
        .collect()
}

/// The identity hash, for keys that are hashes already.
#[derive(Default)]
struct PassHash(u64);

impl Hasher for PassHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pipeline::Snapshot;
    use pipeline::flow::{FlowKey, FlowRecord, HandshakeDigest, Window};
    use pipeline::packet::{Addr, L4Proto};

    use super::*;
    use crate::cluster::Cluster;
    use pipeline::time::SECOND;

    fn flow(client: &str, server: &str, port: u16, samples: &[u64]) -> FlowRecord {
        let mut digest = HandshakeDigest::default();
        for us in samples {
            digest.record(SECOND, *us, Window::Unbounded, true);
        }
        let p = digest.percentiles(SECOND, Window::Unbounded);
        FlowRecord {
            ip_bytes: Default::default(),
            key: FlowKey {
                proto: L4Proto::Tcp,
                client: Addr::from(client.parse::<IpAddr>().unwrap()),
                server: Addr::from(server.parse::<IpAddr>().unwrap()),
                server_port: port,
            },
            sent: PerSide::new(
                Counter {
                    pkts: 10,
                    bytes: 1000,
                },
                Counter {
                    pkts: 5,
                    bytes: 500,
                },
            ),
            rates: Rates::default(),
            first_seen_ns: 0,
            last_seen_ns: 1,
            connections: samples.len() as u64,
            mirror: None,
            tcp: TcpHealth::default(),
            seen_by: None,
            handshake: PerSide::new(Some(Arc::new(digest.clone())), Some(Arc::new(digest))),
            percentiles: PerSide::new(p, p),
        }
    }

    fn view(flows: Vec<FlowRecord>, cluster: Cluster) -> View {
        let snapshot = Snapshot {
            as_of_ns: SECOND,
            flows: flows.into(),
            ..Snapshot::default()
        };
        View::build(Arc::new(snapshot), None, Arc::new(cluster))
    }

    #[test]
    fn nat64_servers_are_external_and_show_their_ipv4() {
        let v = view(
            vec![flow("2001:db8::1", "64:ff9b::6257:ace0", 443, &[900])],
            Cluster::default(),
        );
        let row = Row::of_flow(&v, 0);
        assert_eq!(row.server.external, Some(true));
        assert_eq!(
            row.server.nat64_ipv4,
            Some("98.87.172.224".parse().unwrap())
        );
        assert_eq!(row.client.external, None, "unknown without --cluster-cidr");
    }

    /// A selector-less service's endpoint outside the cluster's ranges (a
    /// database kept outside) is named after its service and still
    /// external; a service's own address, a pod's outside the ranges (a
    /// dual-stack cluster's IPv6 pods), are inside.
    #[test]
    fn a_service_endpoint_outside_the_ranges_is_external() {
        let inventory = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            {"kind": "Service", "metadata": {"name": "payments-db", "namespace": "shop"},
             "spec": {"clusterIP": "198.18.100.9", "ports": [{"port": 5432}]}},
            {"kind": "EndpointSlice",
             "metadata": {"name": "payments-db", "namespace": "shop",
                          "labels": {"kubernetes.io/service-name": "payments-db"}},
             "endpoints": [{"addresses": ["198.18.250.20"]}],
             "ports": [{"port": 5432}]},
            {"kind": "Pod", "metadata": {"name": "checkout", "namespace": "shop"},
             "spec": {}, "status": {"phase": "Running", "podIP": "2001:db8::7",
                                    "podIPs": [{"ip": "2001:db8::7"}]}},
        ]});
        let inventory = k8s::Inventory::from_json(inventory.to_string().as_bytes()).unwrap();
        let cluster = Cluster {
            cidrs: vec!["198.19.0.0/16".parse().unwrap()],
        };
        let snapshot = Snapshot {
            as_of_ns: SECOND,
            flows: vec![
                flow("2001:db8::7", "198.18.250.20", 5432, &[900]),
                flow("2001:db8::7", "198.18.100.9", 5432, &[900]),
            ]
            .into(),
            ..Snapshot::default()
        };
        let v = View::build(
            Arc::new(snapshot),
            Some(Arc::new(inventory)),
            Arc::new(cluster),
        );
        let outside = Row::of_flow(&v, 0);
        assert_eq!(outside.server.svc.as_deref(), Some("payments-db"));
        assert_eq!(outside.server.external, Some(true));
        assert_eq!(outside.client.external, Some(false), "a pod is inside");
        let service_address = Row::of_flow(&v, 1);
        assert_eq!(service_address.server.external, Some(false));
    }

    #[test]
    fn aggregation_merges_samples_never_percentiles() {
        // Without an inventory every endpoint lacks a namespace and stays
        // grouped by IP: these two flows share client and server IPs.
        let v = view(
            vec![
                flow("198.18.0.1", "198.19.0.1", 80, &[100; 9]),
                flow("198.18.0.1", "198.19.0.1", 8080, &[10_000]),
            ],
            Cluster::default(),
        );
        let rows: Vec<Row> = aggregate(&v, &[0, 1], Aggregate::Namespace)
            .into_iter()
            .map(|g| g.into_row(&v))
            .collect();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.flows, 2);
        assert_eq!(r.total_bytes(), 3000);
        assert_eq!(r.server_port, None, "ports differ");
        assert_eq!(r.client.ip, Some("198.18.0.1".parse().unwrap()));
        let p = r.percentiles[Side::Client].unwrap();
        // Merged samples: nine of 100 us and one of 10 ms. Averaging the
        // flows' medians would give 5050.
        assert_eq!((p.p50, p.p90, p.p99), (100, 100, 10_000));
    }

    #[test]
    fn groups_whose_hashes_collide_stay_apart() {
        let v = view(
            vec![
                flow("198.18.0.1", "198.19.0.1", 80, &[100]),
                flow("198.18.0.2", "198.19.0.1", 80, &[200]),
                flow("198.18.0.1", "198.19.0.1", 443, &[300]),
                flow("198.18.0.3", "198.19.0.2", 80, &[400]),
            ],
            Cluster::default(),
        );
        let summary = |groups: Vec<Grouped>| {
            let mut rows: Vec<(String, u64, u64)> = groups
                .into_iter()
                .map(|g| g.into_row(&v))
                .map(|r| (format!("{:?}", r.client.ip), r.flows, r.total_bytes()))
                .collect();
            rows.sort();
            rows
        };
        let all = [0, 1, 2, 3];
        let honest = summary(aggregate(&v, &all, Aggregate::Namespace));
        // Every key hashes alike: the comparison with the first flow and the
        // second table must still find the same groups.
        let colliding = summary(aggregate_with(&v, &all, Aggregate::Namespace, |_| 7));
        assert_eq!(honest.len(), 3);
        assert_eq!(honest, colliding);
    }
}
