//! The JSON shapes of the reference (`kubeshark-mcp-l4-tools.txt`): field
//! names, nesting and types exactly as documented, built from flow records.

use std::net::IpAddr;

use pipeline::Snapshot;
use pipeline::flow::rate::{C2S, S2C};
use pipeline::flow::table::{CLIENT_LEG, SERVER_LEG};
use pipeline::flow::{FlowRecord, Percentiles};
use serde::{Serialize, Serializer};

use super::query::Format;

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

#[derive(Serialize, Debug)]
pub struct Endpoint {
    pub ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
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

/// A flow in `compact` or `full` format.
#[derive(Serialize, Debug)]
pub struct FlowJson {
    pub proto: &'static str,
    pub client: Endpoint,
    pub server: Endpoint,
    pub client_stats: Stats,
    pub server_stats: Stats,
    pub totals: Totals,
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

/// The `/mcp/flows` body. Flows are rendered one at a time as the body is
/// serialised, so no second copy of the whole list is ever built.
#[derive(Serialize)]
pub struct FlowsBody<'a> {
    pub flows: RenderedFlows<'a>,
    pub total: usize,
    pub truncated: bool,
}

pub struct RenderedFlows<'a> {
    pub flows: Vec<&'a FlowRecord>,
    pub snapshot: &'a Snapshot,
    pub format: Format,
}

impl Serialize for RenderedFlows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.flows.len()))?;
        for f in &self.flows {
            if self.format == Format::Raw {
                seq.serialize_element(&raw_flow(f, self.snapshot))?;
            } else {
                seq.serialize_element(&shaped_flow(f, self.format == Format::Full))?;
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

fn handshake_fields(p: Option<Percentiles>, tcp: bool) -> [Option<u64>; 3] {
    match p {
        Some(p) if tcp => [Some(p.p50), Some(p.p90), Some(p.p99)],
        _ => [None; 3],
    }
}

/// A flow in `raw` format.
pub fn raw_flow(f: &FlowRecord, snapshot: &Snapshot) -> RawFlow {
    let leg = |i: usize| {
        let p = f.percentiles[i]?;
        let d = f.handshake[i].as_ref()?;
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
        c2s_pkts: f.c2s.pkts,
        c2s_bytes: f.c2s.bytes,
        s2c_pkts: f.s2c.pkts,
        s2c_bytes: f.s2c.bytes,
        c2s_pps: Rate(f.rates.pps[C2S]),
        c2s_bps: Rate(f.rates.bps[C2S]),
        s2c_pps: Rate(f.rates.pps[S2C]),
        s2c_bps: Rate(f.rates.bps[S2C]),
        first_seen_ns: f.first_seen_ns,
        last_seen_ns: f.last_seen_ns,
        connections: f.connections,
        syn_to_synack: leg(CLIENT_LEG),
        syn_to_ack: leg(SERVER_LEG),
    }
}

/// A flow in `compact` format, or `full` format when `full` is set.
pub fn shaped_flow(f: &FlowRecord, full: bool) -> FlowJson {
    let tcp = f.key.proto == pipeline::packet::L4Proto::Tcp;
    let rate = |v: f64| full.then_some(Rate(v));
    let timestamp = full.then(|| iso8601(f.last_seen_ns));
    let [c50, c90, c99] = handshake_fields(f.percentiles[CLIENT_LEG], tcp);
    let [s50, s90, s99] = handshake_fields(f.percentiles[SERVER_LEG], tcp);
    FlowJson {
        proto: f.key.proto.name(),
        client: Endpoint {
            ip: f.key.client.to_ip(),
            port: None,
        },
        server: Endpoint {
            ip: f.key.server.to_ip(),
            port: Some(f.key.server_port),
        },
        client_stats: Stats {
            tx_pkts: f.c2s.pkts,
            rx_pkts: f.s2c.pkts,
            tx_bytes: f.c2s.bytes,
            rx_bytes: f.s2c.bytes,
            tx_pps: rate(f.rates.pps[C2S]),
            rx_pps: rate(f.rates.pps[S2C]),
            tx_bps: rate(f.rates.bps[C2S]),
            rx_bps: rate(f.rates.bps[S2C]),
            timestamp: timestamp.clone(),
            tcp_handshake_p50_us: c50,
            tcp_handshake_p90_us: c90,
            tcp_handshake_p99_us: c99,
        },
        server_stats: Stats {
            tx_pkts: f.s2c.pkts,
            rx_pkts: f.c2s.pkts,
            tx_bytes: f.s2c.bytes,
            rx_bytes: f.c2s.bytes,
            tx_pps: rate(f.rates.pps[S2C]),
            rx_pps: rate(f.rates.pps[C2S]),
            tx_bps: rate(f.rates.bps[S2C]),
            rx_bps: rate(f.rates.bps[C2S]),
            timestamp,
            tcp_handshake_p50_us: s50,
            tcp_handshake_p90_us: s90,
            tcp_handshake_p99_us: s99,
        },
        totals: Totals {
            pkts: f.total_pkts(),
            bytes: f.total_bytes(),
            pps: Rate(f.rates.pps[C2S] + f.rates.pps[S2C]),
            bps: Rate(f.rates.bps[C2S] + f.rates.bps[S2C]),
        },
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
