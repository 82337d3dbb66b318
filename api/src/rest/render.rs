//! The JSON shapes of the reference (`kubeshark-mcp-l4-tools.txt`): field
//! names, nesting and types exactly as documented, rendered one entry at a
//! time while the body is written.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use pipeline::Snapshot;
use pipeline::flow::{FlowRecord, Outcomes, Side};
use pipeline::packet::L4Proto;
use pipeline::wire::decap::Mirror;
use serde::{Serialize, Serializer};

use super::coverage::CoverageJson;
use super::rows::{EndpointFields, Row};

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
    /// What this side sent (TCP; `full`, or `compact` when not zero in a
    /// flow with failures or retransmissions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_retransmits: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_rsts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_zero_windows: Option<u64>,
}

/// How a TCP flow's connections ended: `{"established": .., "refused": ..,
/// "unanswered": .., "reset": .., "closed": .., "open": ..}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionsJson(pub Outcomes);

impl Serialize for ConnectionsJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let named = self.0.named();
        let mut map = s.serialize_map(Some(named.len()))?;
        for (name, n) in named {
            map.serialize_entry(name, &n)?;
        }
        map.end()
    }
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
    /// TCP connection outcomes (`full`; `compact` for a flow with failures
    /// or retransmissions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_connections: Option<ConnectionsJson>,
    /// Flows merged into an aggregated entry (`full` format with `aggregate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_flows: Option<u64>,
    /// The mirror session it came through (`full` format).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorJson>,
    /// The agents that saw it (`full` format, from a hub).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_by: Option<Vec<&'a str>>,
}

/// Where a flow seen through a mirror session came from, in `full` format:
/// `{"encap": "vxlan", "vni": 12}`, `{"encap": "erspan_ii", "session": 5}`,
/// `{"encap": "gre", "key": 7}` (no id when the encapsulation has none).
#[derive(Debug, Clone, Copy)]
pub struct MirrorJson(pub Mirror);

impl Serialize for MirrorJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Mirror { encap, id } = self.0;
        let mut map = s.serialize_map(Some(1 + usize::from(id.is_some())))?;
        map.serialize_entry("encap", encap.name())?;
        if let Some(id) = id {
            map.serialize_entry(encap.id_name(), &id)?;
        }
        map.end()
    }
}

/// The same in `raw` format, under the record's own names.
#[derive(Serialize, Debug)]
pub struct RawMirror {
    pub encap: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<RawMirror>,
    /// TCP health (TCP flows only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c2s_tcp_retransmits: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c2s_tcp_rsts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c2s_tcp_zero_windows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s2c_tcp_retransmits: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s2c_tcp_rsts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s2c_tcp_zero_windows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_connections: Option<ConnectionsJson>,
}

/// The entries of a `/mcp/flows` answer, owned: built while the view is
/// held, then serialised while the client reads, so that an answer waiting
/// on a slow socket keeps no snapshot alive, only its own entries.
pub enum Entries {
    Raw(Vec<RawFlow>),
    Rows {
        rows: Vec<Row>,
        full: bool,
        aggregated: bool,
    },
}

impl Entries {
    pub fn len(&self) -> usize {
        match self {
            Entries::Raw(v) => v.len(),
            Entries::Rows { rows, .. } => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serialises entry `i` (`i < len()`) into `out`.
    fn write_entry(&self, i: usize, out: &mut Vec<u8>) {
        let written = match self {
            Entries::Raw(v) => serde_json::to_writer(out, &v[i]),
            Entries::Rows {
                rows,
                full,
                aggregated,
            } => serde_json::to_writer(out, &shaped(&rows[i], *full, *aggregated)),
        };
        written.expect("entries serialise into memory");
    }
}

/// A `/mcp/flows` answer: `{"flows": [...], "total": N, "truncated": B,
/// "coverage": {...}}`.
pub struct FlowsAnswer {
    pub entries: Entries,
    pub total: usize,
    pub truncated: bool,
    pub coverage: Arc<CoverageJson>,
}

impl Serialize for FlowsAnswer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};

        struct List<'a>(&'a Entries);
        impl Serialize for List<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                match self.0 {
                    Entries::Raw(v) => v.iter().try_for_each(|f| seq.serialize_element(f))?,
                    Entries::Rows {
                        rows,
                        full,
                        aggregated,
                    } => rows
                        .iter()
                        .try_for_each(|r| seq.serialize_element(&shaped(r, *full, *aggregated)))?,
                }
                seq.end()
            }
        }
        let mut st = s.serialize_struct("FlowsAnswer", 4)?;
        st.serialize_field("flows", &List(&self.entries))?;
        st.serialize_field("total", &self.total)?;
        st.serialize_field("truncated", &self.truncated)?;
        st.serialize_field("coverage", &*self.coverage)?;
        st.end()
    }
}

impl FlowsAnswer {
    /// The answer's JSON in chunks of about `chunk` bytes, produced as they
    /// are asked for: the same bytes `serde_json::to_vec(&answer)` gives.
    pub fn into_chunks(self, chunk: usize) -> impl Iterator<Item = Vec<u8>> + Send {
        let mut next = 0;
        let mut started = false;
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            let mut out = Vec::with_capacity(chunk + 1024);
            if !started {
                out.extend_from_slice(b"{\"flows\":[");
                started = true;
            }
            while next < self.entries.len() && out.len() < chunk {
                if next > 0 {
                    out.push(b',');
                }
                self.entries.write_entry(next, &mut out);
                next += 1;
            }
            if next == self.entries.len() {
                out.extend_from_slice(
                    format!(
                        "],\"total\":{},\"truncated\":{},\"coverage\":{}}}",
                        self.total,
                        self.truncated,
                        serde_json::to_string(&*self.coverage).expect("coverage serialises")
                    )
                    .as_bytes(),
                );
                done = true;
            }
            Some(out)
        })
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
            p50_us: p.p50.into(),
            p90_us: p.p90.into(),
            p99_us: p.p99.into(),
        })
    };
    let (tcp, h) = (f.key.proto == L4Proto::Tcp, &f.tcp);
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
        mirror: f.mirror.map(|m| RawMirror {
            encap: m.encap.name(),
            id: m.id,
        }),
        c2s_tcp_retransmits: tcp.then_some(h.sent(Side::Client).retransmits),
        c2s_tcp_rsts: tcp.then_some(h.sent(Side::Client).rsts),
        c2s_tcp_zero_windows: tcp.then_some(h.sent(Side::Client).zero_windows),
        s2c_tcp_retransmits: tcp.then_some(h.sent(Side::Server).retransmits),
        s2c_tcp_rsts: tcp.then_some(h.sent(Side::Server).rsts),
        s2c_tcp_zero_windows: tcp.then_some(h.sent(Side::Server).zero_windows),
        tcp_connections: tcp.then_some(ConnectionsJson(h.connections)),
    }
}

/// A row in `compact` format, or `full` format when `full` is set.
pub fn shaped(row: &Row, full: bool, aggregated: bool) -> FlowJson<'_> {
    let tcp = row.proto == L4Proto::Tcp;
    let timestamp = full.then(|| iso8601(row.last_seen_ns));
    // TCP health: all of it in `full`; in `compact` (the reference's shape)
    // only for a flow in trouble, and only what is not zero.
    let health_shown = tcp && (full || row.tcp.is_troubled());
    let count = |n: u64| (health_shown && (full || n > 0)).then_some(n);
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
            tcp_handshake_p50_us: leg.map(|p| u64::from(p.p50)),
            tcp_handshake_p90_us: leg.map(|p| u64::from(p.p90)),
            tcp_handshake_p99_us: leg.map(|p| u64::from(p.p99)),
            tcp_retransmits: count(row.tcp.sent(side).retransmits),
            tcp_rsts: count(row.tcp.sent(side).rsts),
            tcp_zero_windows: count(row.tcp.sent(side).zero_windows),
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
        tcp_connections: health_shown.then_some(ConnectionsJson(row.tcp.connections)),
        merged_flows: (full && aggregated).then_some(row.flows),
        mirror: row.mirror.filter(|_| full).map(MirrorJson),
        seen_by: row
            .seen_by
            .as_ref()
            .filter(|_| full)
            .map(|agents| agents.iter().map(|a| &**a).collect()),
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
    fn mirrors_print_their_id_by_its_name() {
        use pipeline::wire::decap::Encap;
        let json = |encap, id| serde_json::to_string(&MirrorJson(Mirror { encap, id })).unwrap();
        assert_eq!(
            json(Encap::Vxlan, Some(12)),
            r#"{"encap":"vxlan","vni":12}"#
        );
        assert_eq!(
            json(Encap::ErspanII, Some(5)),
            r#"{"encap":"erspan_ii","session":5}"#
        );
        assert_eq!(json(Encap::ErspanI, None), r#"{"encap":"erspan_i"}"#);
    }

    #[test]
    fn chunks_are_the_whole_answer() {
        let rows = |n: usize| FlowsAnswer {
            entries: Entries::Raw(
                (0..n)
                    .map(|i| RawFlow {
                        proto: "tcp",
                        client_ip: IpAddr::from([198, 18, 0, i as u8]),
                        server_ip: IpAddr::from([198, 19, 0, 1]),
                        server_port: 80,
                        c2s_pkts: i as u64,
                        c2s_bytes: 0,
                        s2c_pkts: 0,
                        s2c_bytes: 0,
                        c2s_pps: Rate(0.5),
                        c2s_bps: Rate(0.0),
                        s2c_pps: Rate(0.0),
                        s2c_bps: Rate(0.0),
                        first_seen_ns: 0,
                        last_seen_ns: 0,
                        connections: 1,
                        syn_to_synack: None,
                        syn_to_ack: None,
                        mirror: (i % 2 == 0).then_some(RawMirror {
                            encap: "vxlan",
                            id: Some(7),
                        }),
                        c2s_tcp_retransmits: Some(1),
                        c2s_tcp_rsts: Some(0),
                        c2s_tcp_zero_windows: Some(0),
                        s2c_tcp_retransmits: Some(0),
                        s2c_tcp_rsts: Some(2),
                        s2c_tcp_zero_windows: Some(0),
                        tcp_connections: Some(ConnectionsJson(Default::default())),
                    })
                    .collect(),
            ),
            total: n + 3,
            truncated: true,
            coverage: Default::default(),
        };
        for n in [0, 1, 7, 200] {
            let whole = serde_json::to_vec(&rows(n)).unwrap();
            for chunk in [1, 100, 1 << 20] {
                let joined: Vec<u8> = rows(n).into_chunks(chunk).flatten().collect();
                assert_eq!(
                    String::from_utf8(joined).unwrap(),
                    String::from_utf8(whole.clone()).unwrap()
                );
            }
        }
    }

    #[test]
    fn timestamps_are_iso8601() {
        assert_eq!(
            iso8601(1_736_937_000_000_000_000),
            "2025-01-15T10:30:00.000000Z"
        );
    }
}
