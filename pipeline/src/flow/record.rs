//! A flow as a shard exports it into a snapshot.

use std::sync::Arc;

use super::handshake::{HandshakeDigest, Percentiles};
use super::health::TcpHealth;
use super::key::FlowKey;
use super::rate::Rates;
use super::side::{Counter, PerSide};
use crate::wire::decap::Mirror;

/// A flow as exported into a snapshot.
#[derive(Clone, Debug)]
pub struct FlowRecord {
    pub key: FlowKey,
    /// Packets and bytes each side sent.
    pub sent: PerSide<Counter>,
    /// IP bytes each side sent (headers and payload, by the IP length
    /// fields): `sent`'s frame bytes less link headers, tags and padding.
    pub ip_bytes: PerSide<u64>,
    /// Rates of what each side sent.
    pub rates: Rates,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub connections: u64,
    /// Handshake samples by whose view of the round trip they are (client:
    /// SYN -> SYN-ACK, server: SYN -> completing ACK).
    pub handshake: PerSide<Option<Arc<HandshakeDigest>>>,
    pub percentiles: PerSide<Option<Percentiles>>,
    /// The mirror session (VXLAN VNI, ERSPAN session, ...) it was first seen
    /// through, if it was seen through one.
    pub mirror: Option<Mirror>,
    /// TCP only: retransmissions, resets and zero windows per side, and
    /// how its connections ended.
    pub tcp: TcpHealth,
    /// In a hub's snapshot: the agents that saw it, by their index in the
    /// snapshot's coverage (`None` in an agent's own).
    pub seen_by: Option<Arc<[u16]>>,
}

impl FlowRecord {
    /// A flow under `key` with nothing counted yet (nothing sent, no
    /// connection, no handshake), for building records field by field.
    pub fn new(key: FlowKey) -> FlowRecord {
        FlowRecord {
            key,
            sent: PerSide::default(),
            ip_bytes: PerSide::default(),
            rates: Rates::default(),
            first_seen_ns: 0,
            last_seen_ns: 0,
            connections: 0,
            handshake: PerSide::default(),
            percentiles: PerSide::default(),
            mirror: None,
            tcp: TcpHealth::default(),
            seen_by: None,
        }
    }

    pub fn total_pkts(&self) -> u64 {
        self.sent.total().pkts
    }

    pub fn total_bytes(&self) -> u64 {
        self.sent.total().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot holds one record per flow, and a hub two snapshots at a
    /// time (1.5M flows each at its benchmark's size): a field that grows
    /// the record should be a choice, not an accident.
    #[test]
    fn a_record_stays_within_its_size() {
        assert!(
            size_of::<FlowRecord>() <= 272,
            "FlowRecord is {} bytes",
            size_of::<FlowRecord>()
        );
    }
}

/// Why a flow left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowEnd {
    /// No packet for its idle timeout.
    Expired,
    /// Given up to make room in a full table.
    Evicted,
}

/// A flow that left the table, with its last record: what it counted
/// after the last snapshot that saw it is in no snapshot but this.
#[derive(Clone, Debug)]
pub struct EndedFlow {
    pub record: FlowRecord,
    pub end: FlowEnd,
}
