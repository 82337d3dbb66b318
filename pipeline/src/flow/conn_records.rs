//! Per-connection records, kept only when something exports connections
//! (`flowtap --ipfix-per connection`): each connection's packets, bytes and
//! TCP flags per side, its handshake legs and TCP health, cut into a record
//! when it ends and at least every active timeout while it runs.
//!
//! A table of their own beside the connections, looked up with the hash
//! the packet's connection lookup already computed: without it, flowtap
//! pays one branch per packet and no memory (a connection's entry is
//! sized to a memory budget, see `Limits::connection_bytes`); with it, one
//! more lookup per packet and about [`RECORD_BYTES`] per connection.
//! Records wait in a bounded queue for the next export
//! ([`ConnRecordConfig::max_pending`]); what does not fit is counted.

use hashbrown::HashTable;

use super::conn::Step;
use super::health::TcpHealth;
use super::key::{ConnKey, FlowKey};
use super::side::{PerSide, Side};
use crate::packet::{Addr, L4Proto, PacketMeta};
use crate::time::round_to_micros;

/// What asks for connection records, per shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnRecordConfig {
    /// A running connection's counts are cut into a record once its record
    /// is this old (capture time).
    pub active_timeout_ns: u64,
    /// Records kept for the next export at most; more are dropped and
    /// counted (`TableCounters::conn_records_dropped`).
    pub max_pending: usize,
}

impl ConnRecordConfig {
    /// The config of a shard that takes `share` of the traffic: its part
    /// of the pending records.
    pub fn share(&self, share: super::limits::Share) -> ConnRecordConfig {
        ConnRecordConfig {
            max_pending: share.of(self.max_pending),
            ..*self
        }
    }
}

/// Why a connection's record was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnEnd {
    /// Still running: its counts since its last record.
    Active,
    /// No packet for its idle timeout.
    Idle,
    /// Ended by FIN from both sides or RST (it left the table after its
    /// closed timeout), or replaced by a new connection on the 5-tuple.
    Closed,
    /// Given up to make room for others.
    Evicted,
    /// The capture ended, or flowtap stops.
    CaptureEnded,
}

/// One side's share of a record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnSent {
    pub packets: u64,
    /// Frame bytes, as flows count them.
    pub bytes: u64,
    /// IP bytes, header and payload.
    pub ip_bytes: u64,
    /// Every TCP flag the side sent, ORed.
    pub tcp_flags: u8,
}

/// A connection's record: what it did from `start_ns` to `end_ns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnRecord {
    pub proto: L4Proto,
    pub client: (Addr, u16),
    pub server: (Addr, u16),
    pub start_ns: u64,
    pub end_ns: u64,
    pub sent: PerSide<ConnSent>,
    /// Handshake legs (µs) measured in this record's time: the client's
    /// (SYN to SYN-ACK) and the server's (SYN to completing ACK).
    pub legs: PerSide<Option<u64>>,
    /// Retransmissions, RSTs and zero windows per side, and the
    /// connection's outcome once settled (at most one outcome counts).
    pub health: TcpHealth,
    pub end: ConnEnd,
}

/// The size of a connection's running record in the table, for the README
/// and the memory note.
pub const RECORD_BYTES: usize = size_of::<Running>();

impl ConnRecord {
    /// The flow the connection belongs to.
    pub fn flow_key(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            client: self.client.0,
            server: self.server.0,
            server_port: self.server.1,
        }
    }
}

/// A running connection's record, kept small (there is one per
/// connection): its key gives its ends, four-byte counters its TCP health.
#[derive(Clone, Debug)]
struct Running {
    key: ConnKey,
    client_is_lo: bool,
    /// Connection outcomes in this record: established, refused,
    /// unanswered, reset, closed.
    outcomes: [u8; 5],
    start_ns: u64,
    end_ns: u64,
    sent: PerSide<ConnSent>,
    legs_us: PerSide<Option<u32>>,
    /// Retransmissions, RSTs and zero windows each side sent.
    health: PerSide<[u32; 3]>,
}

impl Running {
    fn new(key: ConnKey, client_is_lo: bool, ts_ns: u64) -> Running {
        Running {
            key,
            client_is_lo,
            outcomes: [0; 5],
            start_ns: ts_ns,
            end_ns: ts_ns,
            sent: PerSide::default(),
            legs_us: PerSide::default(),
            health: PerSide::default(),
        }
    }

    /// Notes what a packet's step (sent by `sender`) found: handshake legs
    /// and TCP health events, counted by the rule flows count them by.
    fn note_step(&mut self, sender: Side, step: &Step) {
        for side in Side::BOTH {
            if let Some(ns) = step.legs[side] {
                let us = u32::try_from(round_to_micros(ns)).unwrap_or(u32::MAX);
                self.legs_us[side] = Some(us);
            }
        }
        if step.tcp.is_empty() {
            return;
        }
        let mut events = TcpHealth::default();
        events.record(sender, step.tcp);
        let (sent, outcomes) = events.to_counts();
        let counts = &mut self.health[sender];
        for (count, add) in counts.iter_mut().zip(PerSide(sent)[sender]) {
            *count = count.saturating_add(add as u32);
        }
        // Established, refused, unanswered, reset, closed (not open: a
        // record counts the outcomes in its time).
        for (count, add) in self.outcomes.iter_mut().zip(outcomes) {
            *count = count.saturating_add(add as u8);
        }
    }

    /// Its record as of now, cut for `why`.
    fn record(&self, why: ConnEnd) -> ConnRecord {
        let k = &self.key;
        let (client, server) = if self.client_is_lo {
            ((k.lo, k.lo_port), (k.hi, k.hi_port))
        } else {
            ((k.hi, k.hi_port), (k.lo, k.lo_port))
        };
        let [established, refused, unanswered, reset, closed] = self.outcomes.map(u64::from);
        let sent = self.health.0.map(|counts| counts.map(u64::from));
        ConnRecord {
            proto: k.proto,
            client,
            server,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            sent: self.sent,
            legs: self.legs_us.map(|us| us.map(u64::from)),
            health: TcpHealth::from_counts(
                sent,
                [established, refused, unanswered, reset, closed, 0],
            ),
            end: why,
        }
    }
}

#[derive(Debug)]
pub(super) struct ConnRecords {
    config: ConnRecordConfig,
    running: HashTable<Running>,
    hasher: ahash::RandomState,
    pending: Vec<ConnRecord>,
    /// Records the pending queue had no room for.
    pub(super) dropped: u64,
}

impl ConnRecords {
    pub(super) fn new(config: ConnRecordConfig, hasher: ahash::RandomState) -> ConnRecords {
        ConnRecords {
            config,
            running: HashTable::new(),
            hasher,
            pending: Vec::new(),
            dropped: 0,
        }
    }

    /// Starts the record of a connection the table just opened (`hash` is
    /// its key's, as the connection table files it).
    pub(super) fn open(&mut self, hash: u64, key: ConnKey, client_is_lo: bool, ts_ns: u64) {
        let hasher = &self.hasher;
        let running = Running::new(key, client_is_lo, ts_ns);
        self.running
            .insert_unique(hash, running, |r| hasher.hash_one(r.key));
    }

    /// Counts a packet of the connection and what its step found; cuts an
    /// active record first if the running one is due.
    pub(super) fn count(
        &mut self,
        hash: u64,
        key: &ConnKey,
        sender: Side,
        p: &PacketMeta,
        step: &Step,
    ) {
        let Some(r) = self.running.find_mut(hash, |r| r.key == *key) else {
            return;
        };
        let ts = p.ts_ns;
        if ts.saturating_sub(r.start_ns) >= self.config.active_timeout_ns
            && r.sent != PerSide::default()
        {
            let done = r.record(ConnEnd::Active);
            push(&mut self.pending, &mut self.dropped, self.config, done);
            *r = Running::new(r.key, r.client_is_lo, ts);
        }
        let sent = &mut r.sent[sender];
        sent.packets += 1;
        sent.bytes += u64::from(p.wire_len);
        sent.ip_bytes += u64::from(p.transport.ip_len.min(p.wire_len));
        sent.tcp_flags |= p.transport.tcp_flags;
        r.start_ns = r.start_ns.min(ts);
        r.end_ns = r.end_ns.max(ts);
        r.note_step(sender, step);
    }

    /// Notes what a step found without a packet (an ICMP error's refusal).
    pub(super) fn note(&mut self, hash: u64, key: &ConnKey, sender: Side, step: &Step) {
        if let Some(r) = self.running.find_mut(hash, |r| r.key == *key) {
            r.note_step(sender, step);
        }
    }

    /// Adds the bytes of a later fragment (no packet of its own).
    pub(super) fn count_bytes(&mut self, hash: u64, key: &ConnKey, sender: Side, wire_len: u32) {
        if let Some(r) = self.running.find_mut(hash, |r| r.key == *key) {
            let sent = &mut r.sent[sender];
            sent.bytes += u64::from(wire_len);
            sent.ip_bytes += u64::from(wire_len);
        }
    }

    /// The connection left the table: its record, with what its last step
    /// settled (`step`, the client's), is cut.
    pub(super) fn end(
        &mut self,
        hash: u64,
        key: &ConnKey,
        step: &Step,
        why: ConnEnd,
        closed: bool,
    ) {
        if let Some(record) = self.cut(hash, key, step, why, closed) {
            push(&mut self.pending, &mut self.dropped, self.config, record);
        }
    }

    /// The capture ended: the connection's record is cut, with what the
    /// end settled (`step`), as closed if it was. Not bounded by
    /// `max_pending`: its running record held the memory already (and a
    /// file read without timeouts cuts every record here).
    pub(super) fn end_capture(&mut self, key: &ConnKey, step: &Step, closed: bool) {
        let hash = self.hasher.hash_one(key);
        if let Some(record) = self.cut(hash, key, step, ConnEnd::CaptureEnded, closed) {
            self.pending.push(record);
        }
    }

    /// Removes a connection's running record and cuts it, with what its
    /// last step settled (`step`, the client's). A connection closed by
    /// FINs or RST that leaves idle or at the capture's end ended closed.
    fn cut(
        &mut self,
        hash: u64,
        key: &ConnKey,
        step: &Step,
        why: ConnEnd,
        closed: bool,
    ) -> Option<ConnRecord> {
        let entry = self.running.find_entry(hash, |r| r.key == *key).ok()?;
        let (mut r, _) = entry.remove();
        r.note_step(Side::Client, step);
        let why = match why {
            ConnEnd::Idle | ConnEnd::CaptureEnded if closed => ConnEnd::Closed,
            why => why,
        };
        Some(r.record(why))
    }

    /// The records cut since the last call.
    pub(super) fn take(&mut self) -> Vec<ConnRecord> {
        std::mem::take(&mut self.pending)
    }
}

fn push(pending: &mut Vec<ConnRecord>, dropped: &mut u64, config: ConnRecordConfig, r: ConnRecord) {
    if pending.len() < config.max_pending {
        pending.push(r);
    } else {
        *dropped += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_record_is_small() {
        // What `--ipfix-per connection` adds to each connection, before
        // the hash table's load factor; README and `--ipfix-per` say it.
        assert_eq!(RECORD_BYTES, 168);
    }
}
