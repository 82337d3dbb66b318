//! `GET /mcp/flows/summary`: computed once per view, so the endpoint answers
//! from a prepared body whatever the number of flows.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use pipeline::packet::L4Proto;
use pipeline::snapshot::Flows;
use serde::Serialize;

use super::render::ConnectionsJson;
use crate::view::View;
use pipeline::flow::{Side, SideHealth, TcpHealth};

/// Entries in `top_by_bytes` and `top_by_pkts`.
pub const TOP_N: usize = 10;

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct TopByBytes {
    pub client_pod: String,
    pub server_pod: String,
    pub bytes: u64,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct TopByPkts {
    pub client_pod: String,
    pub server_pod: String,
    pub pkts: u64,
}

/// A flow with failed TCP connections (refused + unanswered + reset).
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct TopByFailed {
    pub client_pod: String,
    pub server_pod: String,
    pub server_port: u16,
    pub failed: u64,
    pub refused: u64,
    pub unanswered: u64,
    pub reset: u64,
}

/// A flow with TCP retransmissions (both sides).
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct TopByRetransmits {
    pub client_pod: String,
    pub server_pod: String,
    pub server_port: u16,
    pub retransmits: u64,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct CrossNamespace {
    pub src_ns: String,
    pub dst_ns: String,
    pub flows: u64,
    pub bytes: u64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Summary {
    pub total_flows: usize,
    pub tcp_flows: usize,
    pub udp_flows: usize,
    pub total_bytes: u64,
    pub total_pkts: u64,
    /// Distinct client IPs.
    pub unique_clients: usize,
    /// Distinct server IPs.
    pub unique_servers: usize,
    /// Heaviest (client, server) pairs, named by pod where known, else by IP.
    pub top_by_bytes: Vec<TopByBytes>,
    pub top_by_pkts: Vec<TopByPkts>,
    /// Flows touching each namespace (a flow between two namespaces counts
    /// in both, a flow within one namespace once).
    pub by_namespace: BTreeMap<String, u64>,
    /// Flows whose client and server namespaces differ, client namespace
    /// first, heaviest first.
    pub cross_namespace: Vec<CrossNamespace>,
    /// Bytes of flows whose server is outside every `--cluster-cidr` (or
    /// NAT64): external egress. Present when cluster CIDRs are configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_bytes: Option<u64>,
    /// TCP health over every flow: retransmissions, RSTs and zero-window
    /// segments (both sides), and the connections' outcomes.
    pub tcp_retransmits: u64,
    pub tcp_rsts: u64,
    pub tcp_zero_windows: u64,
    pub tcp_connections: ConnectionsJson,
    /// The flows with the most failed connections, and with the most
    /// retransmissions (flows with none are left out).
    pub top_by_failed: Vec<TopByFailed>,
    pub top_by_retransmits: Vec<TopByRetransmits>,
    // Then `coverage`, the vantage points behind the summary (see
    // `coverage.rs`): written by each answer, as of its time
    // (`View::summary_json`).
}

/// How an endpoint is named in the top lists: its pod (told apart from a
/// pod of the same name in another namespace), else its IP.
/// Borrowed from the view: a summary names every flow's two ends, and
/// cloning shared names there would make every flow write to the same few
/// reference counts (which the per-pair counters, counting at the same
/// time on the other thread, also write to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Name<'a> {
    /// (namespace, pod).
    Pod(Option<&'a str>, &'a str),
    Ip(IpAddr),
}

impl<'a> Name<'a> {
    fn of(view: &'a View, flow: usize, side: Side) -> Name<'a> {
        match view.pod(flow, side) {
            Some(pod) => Name::Pod(view.ns(flow, side).map(|ns| &**ns), pod),
            None => Name::Ip(view.ip(flow, side)),
        }
    }

    fn text(&self) -> String {
        match self {
            Name::Pod(_, p) => (*p).to_owned(),
            Name::Ip(ip) => ip.to_string(),
        }
    }
}

/// A flow's (client name, server name) as the summary's pairs count them,
/// with its bytes and packets.
struct Pair {
    /// Of the two names ([`names_of`]).
    hash: u64,
    flow: usize,
    bytes: u64,
    pkts: u64,
}

/// Flow `flow`'s (client, server) names.
fn names_of(view: &View, flow: usize) -> (Name<'_>, Name<'_>) {
    (
        Name::of(view, flow, Side::Client),
        Name::of(view, flow, Side::Server),
    )
}

/// The first [`TOP_N`] of `items` in `order`, sorted, without sorting the rest.
fn top<T>(items: &mut [T], order: impl Fn(&T, &T) -> std::cmp::Ordering) -> &[T] {
    if items.len() > TOP_N {
        items.select_nth_unstable_by(TOP_N, &order);
    }
    let n = items.len().min(TOP_N);
    items[..n].sort_unstable_by(&order);
    &items[..n]
}

/// How many different values `items` holds.
fn distinct<T: Ord>(mut items: Vec<T>) -> usize {
    items.sort_unstable();
    items.dedup();
    items.len()
}

/// How many different client and server addresses `flows` have. One list
/// of a flow's ends at a time: the summary is built while the view it
/// replaces still holds the last snapshot, when a hub's memory peaks
/// (1.5M flows: 24 MB a list).
pub(crate) fn distinct_ends(flows: &Flows) -> (usize, usize) {
    let clients = distinct(flows.iter().map(|f| f.key.client).collect());
    let servers = distinct(flows.iter().map(|f| f.key.server).collect());
    (clients, servers)
}

pub fn build(view: &View) -> Summary {
    let flows = view.flows();
    // ahash for the maps by namespace: SipHash's resistance to chosen
    // keys buys nothing here.
    let hasher = ahash::RandomState::new;
    // Every flow's (client, server) names, and below its ends, counted by
    // sorting them, not by a map of them: where most flows are pairs of
    // their own (a hub's 1.5M), a map of that size costs a trip to memory
    // a flow (BENCHMARKS.md, hub). Each flow's pair is sorted by a hash of
    // its two names, the names compared only where hashes are equal: 32
    // bytes a flow rather than the names' 96 (at 1.5M flows, 48 MB of
    // fresh memory a snapshot rather than 144, where a hub's time goes to
    // the kernel zeroing fresh pages), and sorting compares integers.
    let pair_hasher = hasher();
    let mut pairs: Vec<Pair> = Vec::with_capacity(flows.len());
    let mut by_namespace: HashMap<&str, u64, _> = HashMap::with_hasher(hasher());
    // Flows and bytes per (client namespace, server namespace).
    let mut cross: HashMap<(&str, &str), (u64, u64), _> = HashMap::with_hasher(hasher());
    let mut external_bytes = view.cluster.configured().then_some(0u64);
    let (mut tcp_flows, mut udp_flows, mut total_bytes, mut total_pkts) = (0, 0, 0, 0);
    let mut health = TcpHealth::default();
    let (mut failing, mut retransmitting) = (Vec::new(), Vec::new());
    for (i, f) in flows.iter().enumerate() {
        health.add(&f.tcp);
        if f.tcp.connections.failed() > 0 {
            failing.push((f.tcp.connections.failed(), i));
        }
        if f.tcp.retransmits() > 0 {
            retransmitting.push((f.tcp.retransmits(), i));
        }
        match f.key.proto {
            L4Proto::Tcp => tcp_flows += 1,
            L4Proto::Udp => udp_flows += 1,
        }
        let (bytes, pkts) = (f.total_bytes(), f.total_pkts());
        // Saturating sums, as all of a hub's: an agent may lie.
        total_bytes = u64::saturating_add(total_bytes, bytes);
        total_pkts = u64::saturating_add(total_pkts, pkts);
        pairs.push(Pair {
            hash: pair_hasher.hash_one(names_of(view, i)),
            flow: i,
            bytes,
            pkts,
        });
        if let Some(external) = external_bytes.as_mut()
            && view.external(i, Side::Server) == Some(true)
        {
            *external = external.saturating_add(bytes);
        }
        let client_ns = view.ns(i, Side::Client).map(|ns| &**ns);
        let server_ns = view.ns(i, Side::Server).map(|ns| &**ns);
        match (client_ns, server_ns) {
            (Some(c), Some(s)) if c == s => *by_namespace.entry(c).or_default() += 1,
            (c, s) => {
                for ns in [c, s].into_iter().flatten() {
                    *by_namespace.entry(ns).or_default() += 1;
                }
            }
        }
        if let (Some(c), Some(s)) = (client_ns, server_ns)
            && c != s
        {
            let e = cross.entry((c, s)).or_default();
            e.0 += 1;
            e.1 = e.1.saturating_add(bytes);
        }
    }

    // Bytes and packets per pair: the flows of a pair made adjacent, then
    // added into the first of them.
    let pair_names = |p: &Pair| names_of(view, p.flow);
    let by_names = |a: &Pair, b: &Pair| pair_names(a).cmp(&pair_names(b));
    pairs.sort_unstable_by(|a, b| a.hash.cmp(&b.hash).then_with(|| by_names(a, b)));
    pairs.dedup_by(|later, first| {
        let same = later.hash == first.hash && pair_names(later) == pair_names(first);
        if same {
            first.bytes = first.bytes.saturating_add(later.bytes);
            first.pkts = first.pkts.saturating_add(later.pkts);
        }
        same
    });
    // Most first; ties by the names, as a sort by them would leave them.
    let top_by_bytes = top(&mut pairs, |a, b| {
        b.bytes.cmp(&a.bytes).then_with(|| by_names(a, b))
    })
    .iter()
    .map(|p| {
        let (c, s) = pair_names(p);
        TopByBytes {
            client_pod: c.text(),
            server_pod: s.text(),
            bytes: p.bytes,
        }
    })
    .collect();
    let top_by_pkts = top(&mut pairs, |a, b| {
        b.pkts.cmp(&a.pkts).then_with(|| by_names(a, b))
    })
    .iter()
    .map(|p| {
        let (c, s) = pair_names(p);
        TopByPkts {
            client_pod: c.text(),
            server_pod: s.text(),
            pkts: p.pkts,
        }
    })
    .collect();
    drop(pairs);
    let (unique_clients, unique_servers) = view.distinct_ends();
    let mut cross_namespace: Vec<CrossNamespace> = cross
        .into_iter()
        .map(|((src, dst), (flows, bytes))| CrossNamespace {
            src_ns: src.to_owned(),
            dst_ns: dst.to_owned(),
            flows,
            bytes,
        })
        .collect();
    cross_namespace.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| (&a.src_ns, &a.dst_ns).cmp(&(&b.src_ns, &b.dst_ns)))
    });
    // Most first; ties in the snapshot's order (bytes, then key).
    let most = |a: &(u64, usize), b: &(u64, usize)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
    let names = |i: usize| {
        (
            Name::of(view, i, Side::Client).text(),
            Name::of(view, i, Side::Server).text(),
            flows[i].key.server_port,
        )
    };
    let top_by_failed = top(&mut failing, most)
        .iter()
        .map(|&(failed, i)| {
            let (client_pod, server_pod, server_port) = names(i);
            let c = flows[i].tcp.connections;
            TopByFailed {
                client_pod,
                server_pod,
                server_port,
                failed,
                refused: c.refused,
                unanswered: c.unanswered,
                reset: c.reset,
            }
        })
        .collect();
    let top_by_retransmits = top(&mut retransmitting, most)
        .iter()
        .map(|&(retransmits, i)| {
            let (client_pod, server_pod, server_port) = names(i);
            TopByRetransmits {
                client_pod,
                server_pod,
                server_port,
                retransmits,
            }
        })
        .collect();
    let side_total = |f: fn(&SideHealth) -> u64| {
        f(&health.sent(Side::Client)).saturating_add(f(&health.sent(Side::Server)))
    };
    Summary {
        total_flows: flows.len(),
        tcp_flows,
        udp_flows,
        total_bytes,
        total_pkts,
        unique_clients,
        unique_servers,
        top_by_bytes,
        top_by_pkts,
        by_namespace: by_namespace
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        cross_namespace,
        external_bytes,
        tcp_retransmits: side_total(|s| s.retransmits),
        tcp_rsts: side_total(|s| s.rsts),
        tcp_zero_windows: side_total(|s| s.zero_windows),
        tcp_connections: ConnectionsJson(health.connections),
        top_by_failed,
        top_by_retransmits,
    }
}
