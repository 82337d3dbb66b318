//! Making room in a full table. The eviction order: unanswered connections
//! and flows (a spoofed SYN, a probe: what a flood is made of), oldest
//! first, then closed connections. Answered, open connections are never
//! evicted: a flood of spoofed packets cannot push out real traffic, only
//! what it could not count is counted instead.
//!
//! The queues hold (key, opened time) or (slab index, generation) pairs and
//! are checked when popped: an entry may since have been answered, or be
//! gone. They are trimmed a little on every new connection and compacted
//! when they grow past a multiple of what they track.

use std::collections::VecDeque;

use hashbrown::HashMap;

use super::conn::Conn;
use super::key::{ConnKey, FlowKey};
use super::slab::FlowSlab;
use super::table::FlowTable;

/// How many stale entries an eviction queue may hold, relative to what it
/// tracks, before it is compacted.
const QUEUE_SLACK: usize = 2;
/// Eviction candidates looked at for one new flow before giving up.
const EVICTION_TRIES: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct EvictionQueues {
    unanswered_conns: VecDeque<(ConnKey, u64)>,
    closed_conns: VecDeque<(ConnKey, u64)>,
    unanswered_flows: VecDeque<(u32, u32)>,
}

impl EvictionQueues {
    /// A new connection, unanswered until the other side sends.
    pub(super) fn opened_connection(&mut self, key: ConnKey, opened_ns: u64) {
        self.unanswered_conns.push_back((key, opened_ns));
    }

    pub(super) fn closed_connection(&mut self, key: ConnKey, opened_ns: u64) {
        self.closed_conns.push_back((key, opened_ns));
    }

    /// A new flow (index and generation in the slab).
    pub(super) fn created_flow(&mut self, idx: u32, generation: u32) {
        self.unanswered_flows.push_back((idx, generation));
    }
}

impl FlowTable {
    /// Ensures room for one more connection; false if the table is full of
    /// answered, open connections.
    pub(super) fn make_room_for_connection(&mut self) -> bool {
        if self.conns.len() < self.config.limits.max_connections {
            return true;
        }
        self.evict_unanswered_connection() || self.evict_closed_connection()
    }

    fn evict_unanswered_connection(&mut self) -> bool {
        while let Some((key, opened)) = self.eviction.unanswered_conns.pop_front() {
            if unanswered_conn(&self.conns, &key, opened) {
                self.evict_connection(&key);
                return true;
            }
        }
        false
    }

    fn evict_closed_connection(&mut self) -> bool {
        while let Some((key, opened)) = self.eviction.closed_conns.pop_front() {
            if self
                .conns
                .get(&key)
                .is_some_and(|c| c.opened_ns() == opened && c.is_closed())
            {
                self.evict_connection(&key);
                return true;
            }
        }
        false
    }

    fn evict_connection(&mut self, key: &ConnKey) {
        let mut conn = self
            .conns
            .remove(key)
            .expect("an evicted connection exists");
        self.end_connection(&mut conn);
        self.counters.connections_evicted += 1;
    }

    /// Evicts the oldest unanswered flow with at most one connection (that
    /// connection is unanswered too, or it would have answered the flow, and
    /// is evicted with it).
    pub(super) fn make_room_for_flow(&mut self) -> bool {
        for _ in 0..EVICTION_TRIES {
            let Some(&(idx, generation)) = self.eviction.unanswered_flows.front() else {
                return false;
            };
            let Some(flow) = self.flows.live(idx, generation) else {
                self.eviction.unanswered_flows.pop_front();
                continue;
            };
            if self.flows.is_answered(idx) {
                self.eviction.unanswered_flows.pop_front();
                continue;
            }
            if flow.live_connections == 1 {
                // Its only connection, if the newest is it: evict both.
                let only = conn_key(&flow.key, flow.last_client_port);
                if self.conns.get(&only).is_some_and(|c| c.flow == idx) {
                    self.evict_connection(&only);
                }
            }
            let flow = self.flows.live(idx, generation).expect("checked above");
            if flow.live_connections == 0 {
                self.eviction.unanswered_flows.pop_front();
                let flow = self.flows.remove(idx);
                self.drop_digests(&flow);
                self.counters.flows_evicted += 1;
                let counts = self.flows.meters[idx as usize].counts.total();
                self.counters.evicted_pkts += counts.pkts;
                self.counters.evicted_bytes += counts.bytes;
                return true;
            }
            // Several connections: try it again later, when they may be gone.
            self.eviction.unanswered_flows.rotate_left(1);
        }
        false
    }

    /// Pops a few answered or gone entries off the eviction queues' fronts:
    /// most connections are answered within moments, so this keeps the
    /// queues close to what is really unanswered, at a small cost per new
    /// connection.
    pub(super) fn trim_eviction_queues(&mut self) {
        let q = &mut self.eviction;
        for _ in 0..2 {
            match q.unanswered_conns.front() {
                Some((k, opened)) if !unanswered_conn(&self.conns, k, *opened) => {
                    q.unanswered_conns.pop_front();
                }
                _ => break,
            }
        }
        for _ in 0..2 {
            match q.unanswered_flows.front() {
                Some(&(idx, generation)) if !unanswered_flow(&self.flows, idx, generation) => {
                    q.unanswered_flows.pop_front();
                }
                _ => break,
            }
        }
        self.compact_eviction_queues();
    }

    /// Keeps the eviction queues proportional to what they track.
    pub(super) fn compact_eviction_queues(&mut self) {
        let q = &mut self.eviction;
        let conns = self.conns.len().max(1024) * QUEUE_SLACK;
        if q.unanswered_conns.len() > conns {
            let live = &self.conns;
            q.unanswered_conns
                .retain(|(k, opened)| unanswered_conn(live, k, *opened));
        }
        if q.closed_conns.len() > conns {
            let live = &self.conns;
            q.closed_conns
                .retain(|(k, opened)| live.get(k).is_some_and(|c| c.opened_ns() == *opened));
        }
        if q.unanswered_flows.len() > self.flows.len().max(1024) * QUEUE_SLACK {
            let flows = &self.flows;
            q.unanswered_flows
                .retain(|&(idx, generation)| unanswered_flow(flows, idx, generation));
        }
    }
}

/// Whether a queued (key, opened time) still names an unanswered connection.
fn unanswered_conn(
    conns: &HashMap<ConnKey, Conn, ahash::RandomState>,
    key: &ConnKey,
    opened_ns: u64,
) -> bool {
    conns
        .get(key)
        .is_some_and(|c| c.opened_ns() == opened_ns && !c.is_answered())
}

/// Whether a queued (index, generation) still names an unanswered flow.
fn unanswered_flow(flows: &FlowSlab, idx: u32, generation: u32) -> bool {
    flows.live(idx, generation).is_some() && !flows.is_answered(idx)
}

/// The 5-tuple of a connection of `flow` from `client_port`.
fn conn_key(flow: &FlowKey, client_port: u16) -> ConnKey {
    ConnKey::between(
        flow.proto,
        (flow.client, client_port),
        (flow.server, flow.server_port),
    )
}
