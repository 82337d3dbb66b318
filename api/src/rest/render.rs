//! The JSON shapes of the reference (`kubeshark-mcp-l4-tools.txt`): field
//! names, nesting and types exactly as documented, rendered one entry at a
//! time while the body is written.

use std::net::{IpAddr, Ipv4Addr};

use pipeline::Snapshot;
use pipeline::flow::{FlowRecord, Side};
use pipeline::packet::L4Proto;
use serde::{Serialize, Serializer};

use super::rows::{EndpointFields, Row};
use crate::view::View;

/// A rate: printed as an integer when it is one (as the reference's Go
/// encoder does), else rounded to three decimals.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate(pub f64);

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = if self.0.is_finite() {
            (self.0 * 1000.0).round() / 1000.0
        } else {
            0.0
        };
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            s.serialize_i64(v as i64)
        } else {
            s.serialize_f64(v)
        }
    }
}

/// An endpoint: the reference's fields in its order, then flowtap's
/// additions (`full` only): `external` (outside every `--cluster-cidr`, or
/// NAT64) and `nat64_ipv4` (the IPv4 address a 64:ff9b::/96 address embeds).
/// `cgroup_id` is never known from a mirror port and so never present.
#[derive(Serialize, Debug)]
pub struct Endpoint<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svc: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat64_ipv4: Option<Ipv4Addr>,
}

impl<'a> Endpoint<'a> {
    fn of(e: &'a EndpointFields, port: Option<u16>, full: bool) -> Endpoint<'a> {
        Endpoint {
            ip: e.ip,
            port,
            pod: e.pod.as_deref(),
            ns: e.ns.as_deref(),
            svc: e.svc.as_deref(),
            node: e.node.as_deref(),
            container_id: e.container_id.as_deref().filter(|_| full),
            external: e.external.filter(|_| full),
            nat64_ipv4: e.nat64_ipv4.filter(|_| full),
        }
    }
}

#[derive(Serialize, Debug)]
pub struct Stats {
    pub tx_pkts: u64,
    pub rx_pkts: u64,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_pps: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_pps: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_bps: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_bps: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_handshake_p50_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_handshake_p90_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_handshake_p99_us: Option<u64>,
}

#[derive(Serialize, Debug)]
pub struct Totals {
    pub pkts: u64,
    pub bytes: u64,
    pub pps: Rate,
    pub bps: Rate,
}

/// A flow (or aggregated group) in `compact` or `full` format.
#[derive(Serialize, Debug)]
pub struct FlowJson<'a> {
    pub proto: &'static str,
    pub client: Endpoint<'a>,
    pub server: Endpoint<'a>,
    pub client_stats: Stats,
    pub server_stats: Stats,
    pub totals: Totals,
    /// Flows merged into an aggregated entry (`full` format with `aggregate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_flows: Option<u64>,
}

/// Handshake leg summary in `raw` format.
#[derive(Serialize, Debug)]
pub struct RawLeg {
    pub samples: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
}

/// A flow in `raw` format: the internal record, native names.
#[derive(Serialize, Debug)]
pub struct RawFlow {
    pub proto: &'static str,
    pub client_ip: IpAddr,
    pub server_ip: IpAddr,
    pub server_port: u16,
    pub c2s_pkts: u64,
    pub c2s_bytes: u64,
    pub s2c_pkts: u64,
    pub s2c_bytes: u64,
    pub c2s_pps: Rate,
    pub c2s_bps: Rate,
    pub s2c_pps: Rate,
    pub s2c_bps: Rate,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub connections: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syn_to_synack: Option<RawLeg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syn_to_ack: Option<RawLeg>,
}

/// The entries of a `/mcp/flows` body. Flows are referred to by index and
/// shaped one at a time as the body is written, so an answer holds no
/// second copy of its flows; only aggregated rows are built beforehand.
pub enum Entries {
    Raw(Vec<usize>),
    Flows {
        indices: Vec<usize>,
        full: bool,
    },
    Rows {
        rows: Vec<Row>,
        full: bool,
        aggregated: bool,
    },
}

impl Entries {
    pub fn len(&self) -> usize {
        match self {
            Entries::Raw(v) | Entries::Flows { indices: v, .. } => v.len(),
            Entries::Rows { rows, .. } => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The `/mcp/flows` body.
#[derive(Serialize)]
pub struct FlowsBody<'a> {
    pub flows: RenderedFlows<'a>,
    pub total: usize,
    pub truncated: bool,
}

pub struct RenderedFlows<'a> {
    pub entries: Entries,
    pub view: &'a View,
}

impl Serialize for RenderedFlows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.entries.len()))?;
        let snapshot = &self.view.snapshot;
        match &self.entries {
            Entries::Raw(indices) => {
                for &i in indices {
                    seq.serialize_element(&raw_flow(&self.view.flows()[i], snapshot))?;
                }
            }
            Entries::Flows { indices, full } => {
                for &i in indices {
                    let row = Row::of_flow(self.view, i);
                    seq.serialize_element(&shaped(&row, *full, false))?;
                }
            }
            Entries::Rows {
                rows,
                full,
                aggregated,
            } => {
                for row in rows {
                    seq.serialize_element(&shaped(row, *full, *aggregated))?;
                }
            }
        }
        seq.end()
    }
}

/// ISO 8601 / RFC 3339 UTC time with microseconds.
pub fn iso8601(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_micros(t).to_string()
}

/// A flow in `raw` format.
pub fn raw_flow(f: &FlowRecord, snapshot: &Snapshot) -> RawFlow {
    let leg = |side: Side| {
        let p = f.percentiles[side]?;
        let d = f.handshake[side].as_ref()?;
        Some(RawLeg {
            samples: d.count(snapshot.as_of_ns, snapshot.rtt_window),
            p50_us: p.p50,
            p90_us: p.p90,
            p99_us: p.p99,
        })
    };
    RawFlow {
        proto: f.key.proto.name(),
        client_ip: f.key.client.to_ip(),
        server_ip: f.key.server.to_ip(),
        server_port: f.key.server_port,
        c2s_pkts: f.sent[Side::Client].pkts,
        c2s_bytes: f.sent[Side::Client].bytes,
        s2c_pkts: f.sent[Side::Server].pkts,
        s2c_bytes: f.sent[Side::Server].bytes,
        c2s_pps: Rate(f.rates.pps[Side::Client]),
        c2s_bps: Rate(f.rates.bps[Side::Client]),
        s2c_pps: Rate(f.rates.pps[Side::Server]),
        s2c_bps: Rate(f.rates.bps[Side::Server]),
        first_seen_ns: f.first_seen_ns,
        last_seen_ns: f.last_seen_ns,
        connections: f.connections,
        syn_to_synack: leg(Side::Client),
        syn_to_ack: leg(Side::Server),
    }
}

/// A row in `compact` format, or `full` format when `full` is set.
pub fn shaped(row: &Row, full: bool, aggregated: bool) -> FlowJson<'_> {
    let tcp = row.proto == L4Proto::Tcp;
    let timestamp = full.then(|| iso8601(row.last_seen_ns));
    // One side's stats: what it sent is its tx, what the other sent its rx.
    let stats = |side: Side| {
        let (tx, rx) = (side, side.other());
        let rate = |v: f64| full.then_some(Rate(v));
        let leg = row.percentiles[side].filter(|_| tcp);
        Stats {
            tx_pkts: row.sent[tx].pkts,
            rx_pkts: row.sent[rx].pkts,
            tx_bytes: row.sent[tx].bytes,
            rx_bytes: row.sent[rx].bytes,
            tx_pps: rate(row.rates.pps[tx]),
            rx_pps: rate(row.rates.pps[rx]),
            tx_bps: rate(row.rates.bps[tx]),
            rx_bps: rate(row.rates.bps[rx]),
            timestamp: timestamp.clone(),
            tcp_handshake_p50_us: leg.map(|p| p.p50),
            tcp_handshake_p90_us: leg.map(|p| p.p90),
            tcp_handshake_p99_us: leg.map(|p| p.p99),
        }
    };
    FlowJson {
        proto: row.proto.name(),
        client: Endpoint::of(&row.client, None, full),
        server: Endpoint::of(&row.server, row.server_port, full),
        client_stats: stats(Side::Client),
        server_stats: stats(Side::Server),
        totals: Totals {
            pkts: row.total_pkts(),
            bytes: row.total_bytes(),
            pps: Rate(row.rates.pps.total()),
            bps: Rate(row.rates.bps.total()),
        },
        merged_flows: (full && aggregated).then_some(row.flows),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_print_like_the_reference() {
        let json = |v| serde_json::to_string(&Rate(v)).unwrap();
        assert_eq!(json(8388608.0), "8388608");
        assert_eq!(json(100.5), "100.5");
        assert_eq!(json(1.0 / 3.0), "0.333");
        assert_eq!(json(f64::NAN), "0");
    }

    #[test]
    fn timestamps_are_iso8601() {
        assert_eq!(
            iso8601(1_736_937_000_000_000_000),
            "2025-01-15T10:30:00.000000Z"
        );
    }
}
