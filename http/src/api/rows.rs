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
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use pipeline::flow::rate::Rates;
use pipeline::flow::table::{CLIENT_LEG, SERVER_LEG};
use pipeline::flow::{Counter, HandshakeDigest, Percentiles, Window};
use pipeline::packet::L4Proto;

use super::query::Aggregate;
use crate::cluster::nat64_ipv4;
use crate::view::{Side, View};

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
    pub c2s: Counter,
    pub s2c: Counter,
    pub rates: Rates,
    pub last_seen_ns: u64,
    pub percentiles: [Option<Percentiles>; 2],
    /// Flows merged into this row (1 without aggregation).
    pub flows: u64,
}

impl Row {
    pub fn of_flow(view: &View, flow: usize) -> Row {
        let f = &view.flows()[flow];
        Row {
            proto: f.key.proto,
            client: EndpointFields::of(view, flow, Side::Client),
            server: EndpointFields::of(view, flow, Side::Server),
            server_port: Some(f.key.server_port),
            c2s: f.c2s,
            s2c: f.s2c,
            rates: f.rates,
            last_seen_ns: f.last_seen_ns,
            percentiles: f.percentiles,
            flows: 1,
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.c2s.bytes + self.s2c.bytes
    }

    pub fn total_pkts(&self) -> u64 {
        self.c2s.pkts + self.s2c.pkts
    }

    pub fn pps(&self) -> f64 {
        self.rates.pps[0] + self.rates.pps[1]
    }

    /// The larger leg's p99, the value `sort=handshake_p99` and
    /// `min_handshake_p99_us` use.
    pub fn handshake_p99(&self) -> Option<u64> {
        handshake_p99(&self.percentiles)
    }
}

pub fn handshake_p99(p: &[Option<Percentiles>; 2]) -> Option<u64> {
    p.iter().flatten().map(|p| p.p99).max()
}

/// An endpoint's place in an aggregation: the attribute's value, or its IP.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Member {
    /// The attribute, qualified by namespace where names are per namespace.
    Attr(Option<Arc<str>>, Arc<str>),
    Ip(IpAddr),
}

fn member(view: &View, flow: usize, side: Side, by: Aggregate) -> Member {
    let attr = match by {
        Aggregate::Pod => view
            .pod(flow, side)
            .map(|p| (view.ns(flow, side).cloned(), p.clone())),
        Aggregate::Namespace => view.ns(flow, side).map(|n| (None, n.clone())),
        Aggregate::Node => view.node(flow, side).map(|n| (None, n.clone())),
        Aggregate::Service => view
            .svc(flow, side)
            .map(|s| (view.ns(flow, side).cloned(), s.clone())),
    };
    match attr {
        Some((scope, name)) => Member::Attr(scope, name),
        None => Member::Ip(view.ip(flow, side)),
    }
}

struct Group {
    row: Row,
    digests: [HandshakeDigest; 2],
}

/// Merges the flows at `indices` by `by`. Rows come out in no particular
/// order; the caller sorts them.
pub fn aggregate(view: &View, indices: &[usize], by: Aggregate) -> Vec<Row> {
    let snapshot = &view.snapshot;
    let mut groups: HashMap<(L4Proto, Member, Member), Group> = HashMap::new();
    for &i in indices {
        let f = &view.flows()[i];
        let key = (
            f.key.proto,
            member(view, i, Side::Client, by),
            member(view, i, Side::Server, by),
        );
        let group = groups.entry(key).or_insert_with(|| Group {
            row: Row {
                flows: 0,
                c2s: Counter::default(),
                s2c: Counter::default(),
                rates: Rates::default(),
                ..Row::of_flow(view, i)
            },
            digests: Default::default(),
        });
        let row = &mut group.row;
        if row.flows > 0 {
            row.client
                .intersect(&EndpointFields::of(view, i, Side::Client));
            row.server
                .intersect(&EndpointFields::of(view, i, Side::Server));
            if row.server_port != Some(f.key.server_port) {
                row.server_port = None;
            }
        }
        row.flows += 1;
        row.c2s.pkts += f.c2s.pkts;
        row.c2s.bytes += f.c2s.bytes;
        row.s2c.pkts += f.s2c.pkts;
        row.s2c.bytes += f.s2c.bytes;
        for dir in 0..2 {
            row.rates.pps[dir] += f.rates.pps[dir];
            row.rates.bps[dir] += f.rates.bps[dir];
        }
        row.last_seen_ns = row.last_seen_ns.max(f.last_seen_ns);
        for leg in [CLIENT_LEG, SERVER_LEG] {
            if let Some(d) = &f.handshake[leg] {
                d.merge_into(
                    &mut group.digests[leg],
                    snapshot.as_of_ns,
                    snapshot.rtt_window,
                );
            }
        }
    }
    groups
        .into_values()
        .map(|mut g| {
            for leg in [CLIENT_LEG, SERVER_LEG] {
                g.row.percentiles[leg] =
                    g.digests[leg].percentiles(snapshot.as_of_ns, Window::Unbounded);
            }
            g.row
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pipeline::Snapshot;
    use pipeline::flow::{FlowKey, FlowRecord, HandshakeDigest, Window};
    use pipeline::packet::{Addr, L4Proto};

    use super::*;
    use crate::cluster::Cluster;

    fn flow(client: &str, server: &str, port: u16, samples: &[u64]) -> FlowRecord {
        let mut digest = HandshakeDigest::default();
        for us in samples {
            digest.record(1_000_000_000, *us, Window::Unbounded, true);
        }
        let p = digest.percentiles(1_000_000_000, Window::Unbounded);
        FlowRecord {
            key: FlowKey {
                proto: L4Proto::Tcp,
                client: Addr::from(client.parse::<IpAddr>().unwrap()),
                server: Addr::from(server.parse::<IpAddr>().unwrap()),
                server_port: port,
            },
            c2s: Counter {
                pkts: 10,
                bytes: 1000,
            },
            s2c: Counter {
                pkts: 5,
                bytes: 500,
            },
            rates: Rates::default(),
            first_seen_ns: 0,
            last_seen_ns: 1,
            connections: samples.len() as u64,
            handshake: [Some(Arc::new(digest.clone())), Some(Arc::new(digest))],
            percentiles: [p, p],
        }
    }

    fn view(flows: Vec<FlowRecord>, cluster: Cluster) -> View {
        let snapshot = Snapshot {
            as_of_ns: 1_000_000_000,
            flows,
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
        let rows = aggregate(&v, &[0, 1], Aggregate::Namespace);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.flows, 2);
        assert_eq!(r.total_bytes(), 3000);
        assert_eq!(r.server_port, None, "ports differ");
        assert_eq!(r.client.ip, Some("198.18.0.1".parse().unwrap()));
        let p = r.percentiles[0].unwrap();
        // Merged samples: nine of 100 us and one of 10 ms. Averaging the
        // flows' medians would give 5050.
        assert_eq!((p.p50, p.p90, p.p99), (100, 100, 10_000));
    }
}
