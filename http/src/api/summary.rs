//! `GET /mcp/flows/summary`: computed once per snapshot, when the view is
//! built, so the endpoint answers from a prepared body.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use serde::Serialize;

use crate::view::View;

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

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct CrossNamespace {
    pub src_ns: String,
    pub dst_ns: String,
    pub flows: u64,
    pub bytes: u64,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Summary {
    pub total_flows: usize,
    pub tcp_flows: usize,
    pub udp_flows: usize,
    pub total_bytes: u64,
    pub total_pkts: u64,
    pub unique_clients: usize,
    pub unique_servers: usize,
    pub top_by_bytes: Vec<TopByBytes>,
    pub top_by_pkts: Vec<TopByPkts>,
    pub by_namespace: BTreeMap<String, u64>,
    pub cross_namespace: Vec<CrossNamespace>,
}

/// How an endpoint is named in the top lists: its pod, else its IP.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointName {
    Pod(std::sync::Arc<str>),
    Ip(IpAddr),
}

impl EndpointName {
    fn to_text(&self) -> String {
        match self {
            EndpointName::Pod(p) => p.to_string(),
            EndpointName::Ip(ip) => ip.to_string(),
        }
    }
}

pub fn build(view: &View) -> Summary {
    let flows = &view.snapshot.flows;
    let mut clients = HashSet::new();
    let mut servers = HashSet::new();
    // Bytes and packets per (client name, server name) pair.
    let mut pairs: HashMap<(EndpointName, EndpointName), (u64, u64)> = HashMap::new();
    let mut summary = Summary {
        total_flows: flows.len(),
        tcp_flows: 0,
        udp_flows: 0,
        total_bytes: 0,
        total_pkts: 0,
        unique_clients: 0,
        unique_servers: 0,
        top_by_bytes: Vec::new(),
        top_by_pkts: Vec::new(),
        by_namespace: BTreeMap::new(),
        cross_namespace: Vec::new(),
    };
    for (i, f) in flows.iter().enumerate() {
        match f.key.proto {
            pipeline::packet::L4Proto::Tcp => summary.tcp_flows += 1,
            pipeline::packet::L4Proto::Udp => summary.udp_flows += 1,
        }
        summary.total_bytes += f.total_bytes();
        summary.total_pkts += f.total_pkts();
        clients.insert(f.key.client);
        servers.insert(f.key.server);
        let (client, server) = view.endpoint_names(i);
        let pair = pairs.entry((client, server)).or_default();
        pair.0 += f.total_bytes();
        pair.1 += f.total_pkts();
    }
    summary.unique_clients = clients.len();
    summary.unique_servers = servers.len();

    let mut ranked: Vec<_> = pairs.into_iter().collect();
    ranked.sort_unstable_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
    summary.top_by_bytes = ranked
        .iter()
        .take(TOP_N)
        .map(|((c, s), (bytes, _))| TopByBytes {
            client_pod: c.to_text(),
            server_pod: s.to_text(),
            bytes: *bytes,
        })
        .collect();
    ranked.sort_unstable_by(|a, b| b.1.1.cmp(&a.1.1).then_with(|| a.0.cmp(&b.0)));
    summary.top_by_pkts = ranked
        .iter()
        .take(TOP_N)
        .map(|((c, s), (_, pkts))| TopByPkts {
            client_pod: c.to_text(),
            server_pod: s.to_text(),
            pkts: *pkts,
        })
        .collect();
    summary
}
