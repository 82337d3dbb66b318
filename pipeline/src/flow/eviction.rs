//! Expiry and eviction: what leaves a shard's table, and in what order.
//!
//! **Expiry.** Connections, and flows without connections, are filed in a
//! timer wheel by when they would expire ([`Wheel`]); as capture time
//! passes, only the entries that come due are looked at (expired, or filed
//! again if seen since). Nothing walks the whole table. (Where nothing
//! expires, capture files by default, nothing is filed.)
//!
//! **Eviction.** A full table makes room in this order, each step counted:
//! 1. unanswered state, oldest first: connections whose other side never
//!    really answered (a spoofed SYN, a probe: what a flood is made of; see
//!    [`Conn::is_answered`]), and flows none of whose connections did:
//!    first those not seen for [`UNANSWERED_GRACE_NS`], then connections
//!    (or flows without connections) idle past the emergency timeouts, then
//!    the unanswered ones of any age;
//! 2. then, as Suricata's flow emergency mode does, the least recently seen
//!    state of any kind (to the second, [`Recency`]): counted as
//!    *emergency-expired* when idle past the emergency timeouts (a few
//!    seconds), else as *evicted recent*; a flow goes only once it has no
//!    connection left.
//!
//! So a flood of spoofed packets cannot fill the table with state that
//! cannot be evicted, answered, active connections go last, and a steady
//! stream of new connections at a full table is not given up before its
//! answers come while the table holds connections and flows long over.

use std::collections::VecDeque;

use super::conn::{Class, Conn};
use super::conn_records::ConnEnd;
use super::conns::{ConnRef, Conns};
use super::key::{ConnKey, FlowKey};
use super::limits::{NEVER, Timeouts};
use super::record::FlowEnd;
use super::slab::FlowSlab;
use super::table::FlowTable;
use super::wheel::{Recency, Verdict, Wheel};
use crate::packet::L4Proto;
use crate::time::SECOND;

/// How many stale entries an eviction queue or wheel may hold, relative to
/// what it tracks, before it is compacted.
const QUEUE_SLACK: usize = 2;
/// Candidates looked at to make room for one entry before giving up.
const EVICTION_TRIES: usize = 64;

/// An unanswered flow seen this recently is given up only after flows
/// without connections idle past the emergency timeouts: its answer may be
/// on the way (a round trip). Evicted first, a full table's newest flows
/// went before their answers, were made again by them and went again, for
/// as long as new flows came: nothing new got in, and answers aged (a live
/// soak at a full table: 68% of packets counted in flows thrown away, the
/// table held by flows whose connections had ended minutes before).
pub(super) const UNANSWERED_GRACE_NS: u64 = SECOND;

/// Idle timeouts under pressure: what has been idle this long is given up
/// before anything more recent.
pub(super) const EMERGENCY: Timeouts = Timeouts {
    tcp_idle_ns: 30 * SECOND,
    tcp_closed_ns: SECOND,
    tcp_handshake_ns: 5 * SECOND,
    udp_idle_ns: 10 * SECOND,
};

/// The shortest of a connection's emergency timeouts, whatever its state:
/// a connection idle no longer than it is past none of them.
const SHORTEST_CONN_EMERGENCY_NS: u64 = {
    let t = EMERGENCY;
    let mut shortest = t.tcp_closed_ns;
    if t.tcp_handshake_ns < shortest {
        shortest = t.tcp_handshake_ns;
    }
    if t.tcp_idle_ns < shortest {
        shortest = t.tcp_idle_ns;
    }
    if t.udp_idle_ns < shortest {
        shortest = t.udp_idle_ns;
    }
    shortest
};

/// A flow filed for expiry or eviction: its slab index and generation.
pub(crate) type FlowEntry = (u32, u32);

#[derive(Debug, Default)]
pub(crate) struct Eviction {
    unanswered_conns: VecDeque<ConnRef>,
    unanswered_flows: VecDeque<FlowEntry>,
    /// Connections by when they expire, and by when they were last seen.
    conns: Wheel<ConnRef>,
    conns_by_recency: Recency<ConnRef>,
    /// Flows without connections (a flow with connections lives as long as
    /// they do), likewise.
    idle_flows: Wheel<FlowEntry>,
    idle_flows_by_recency: Recency<FlowEntry>,
    /// When each queue is next thinned.
    thinned: Thinned,
    /// Capture time before which the steps for connections, and for flows
    /// without connections, idle past the emergency timeouts are not tried
    /// again, having found none: under a flood at a table of state idle
    /// less than that, each new entry walked and filed back 64 of them.
    conns_past_emergency_from: u64,
    idle_flows_past_emergency_from: u64,
}

/// How long a step that found nothing idle past the emergency timeouts is
/// not tried again, in capture time (their shortest is a second).
const PAST_EMERGENCY_RETRY_NS: u64 = SECOND;

/// What each eviction queue held after its last thinning, and how many
/// thinnings there have been (for tests).
#[derive(Debug, Default)]
struct Thinned {
    unanswered_conns: usize,
    conns: usize,
    conns_by_recency: usize,
    unanswered_flows: usize,
    idle_flows: usize,
    idle_flows_by_recency: usize,
    passes: u64,
}

impl Thinned {
    /// Thins a queue of `len` entries with `thin` (which returns what it
    /// kept) when it holds more than `bound` and more than twice what its
    /// last thinning kept (`kept`).
    fn thin_if_due(
        kept: &mut usize,
        passes: &mut u64,
        len: usize,
        bound: usize,
        thin: impl FnOnce() -> usize,
    ) {
        if len > bound.max(2 * *kept) {
            *kept = thin();
            *passes += 1;
        }
    }
}

impl Eviction {
    /// Thinning passes so far.
    #[cfg(test)]
    pub(super) fn thinnings(&self) -> u64 {
        self.thinned.passes
    }

    /// A new connection, unanswered until the other side answers.
    pub(super) fn opened_connection(&mut self, conn: ConnRef) {
        self.unanswered_conns.push_back(conn);
    }

    /// A new flow (index and generation in the slab).
    pub(super) fn created_flow(&mut self, idx: u32, generation: u32) {
        self.unanswered_flows.push_back((idx, generation));
    }
}

/// The idle timeout of a connection class.
fn timeout(t: &Timeouts, class: Class) -> u64 {
    match class {
        Class::Udp => t.udp_idle_ns,
        Class::Closed => t.tcp_closed_ns,
        Class::Handshake => t.tcp_handshake_ns,
        Class::Open => t.tcp_idle_ns,
    }
}

fn flow_timeout(t: &Timeouts, proto: L4Proto) -> u64 {
    match proto {
        L4Proto::Tcp => t.tcp_idle_ns,
        L4Proto::Udp => t.udp_idle_ns,
    }
}

impl FlowTable {
    /// When `conn` would expire: by the configured timeouts, or where those
    /// never expire (capture files), by the live ones, which then only order
    /// eviction.
    fn conn_deadline(&self, key: &ConnKey, conn: &Conn) -> (u64, bool) {
        let class = conn.class(key.proto);
        match timeout(&self.config.timeouts, class) {
            NEVER => (
                conn.last_seen_ns
                    .saturating_add(timeout(&Timeouts::LIVE, class)),
                false,
            ),
            t => (conn.last_seen_ns.saturating_add(t), true),
        }
    }

    fn flow_deadline(&self, proto: L4Proto, last_seen_ns: u64) -> (u64, bool) {
        match flow_timeout(&self.config.timeouts, proto) {
            NEVER => (
                last_seen_ns.saturating_add(flow_timeout(&Timeouts::LIVE, proto)),
                false,
            ),
            t => (last_seen_ns.saturating_add(t), true),
        }
    }

    /// Files a connection by when it would expire (new, or just closed:
    /// its timeout shrank) and, when `new`, in the order of recency.
    pub(super) fn file_connection(&mut self, handle: ConnRef, new: bool) {
        let Some(conn) = self.conns.resolve(handle) else {
            return;
        };
        if new {
            self.eviction
                .conns_by_recency
                .file(handle, conn.last_seen_ns);
        }
        if let (deadline, true) = self.conn_deadline(&conn.key, conn) {
            self.eviction.conns.file(handle, deadline, self.now_ns);
        }
    }

    /// Files a flow that has no connection left.
    pub(super) fn file_idle_flow(&mut self, idx: u32) {
        let Some(flow) = self.flows.entries[idx as usize].as_ref() else {
            return;
        };
        let last_seen = self.flows.meters[idx as usize].last_seen_ns;
        let entry = (idx, self.flows.generations[idx as usize]);
        let proto = flow.key.proto;
        self.eviction.idle_flows_by_recency.file(entry, last_seen);
        if let (deadline, true) = self.flow_deadline(proto, last_seen) {
            self.eviction.idle_flows.file(entry, deadline, self.now_ns);
        }
    }

    /// The connection of `key` found at `at`, unless it has been idle past
    /// its timeout at `ts_ns`: then it is over (expired now), whether or
    /// not maintenance (a tick a second of capture time, per worker) has
    /// come round to it, so that what a packet at `ts_ns` starts does not
    /// depend on when that was.
    pub(super) fn unless_due(&mut self, at: Option<u32>, key: &ConnKey, ts_ns: u64) -> Option<u32> {
        let conn = self.conns.at(at?);
        if matches!(self.conn_deadline(key, conn), (deadline, true) if deadline < ts_ns) {
            self.expire_connection(key);
            return None;
        }
        at
    }

    /// Expires the flow of `key` if it has had no packet for its timeout
    /// at `ts_ns` and has no connection left once those due are expired.
    pub(super) fn expire_flow_if_due(&mut self, key: &FlowKey, ts_ns: u64) {
        if flow_timeout(&self.config.timeouts, key.proto) == NEVER {
            return;
        }
        let Some(idx) = self.flows.index_of(key) else {
            return;
        };
        let last_seen = self.flows.meters[idx as usize].last_seen_ns;
        if !matches!(self.flow_deadline(key.proto, last_seen), (deadline, true) if deadline < ts_ns)
        {
            return;
        }
        let flow = self.flows.entries[idx as usize]
            .as_ref()
            .expect("indexed flows are live");
        if flow.live_connections == 0 {
            self.expire_flow(idx);
        } else {
            // Its connections are quiet for as long, so probably all due
            // (a flow's timeout is its longest connection's but for a
            // longer SYN timeout): maintenance brought forward to now
            // expires them, and then the flow. Rare: a new connection on
            // a flow silent for minutes.
            self.expire_due(ts_ns);
        }
    }

    /// Ends the connection of `key`, idle past its timeout.
    pub(super) fn expire_connection(&mut self, key: &ConnKey) {
        let mut conn = self
            .conns
            .remove(key)
            .expect("expired connections are in the table");
        self.counters.connections_expired += 1;
        self.end_connection(&mut conn, ConnEnd::Idle);
    }

    /// Removes the flow at `idx`, idle past its timeout.
    pub(super) fn expire_flow(&mut self, idx: u32) {
        self.keep_ended_record(idx, FlowEnd::Expired);
        let flow = self.flows.remove(idx);
        self.drop_digests(&flow);
        self.counters.flows_expired += 1;
    }

    /// Expires what has come due by `now_ns`.
    pub(super) fn expire_due(&mut self, now_ns: u64) {
        let mut wheel = std::mem::take(&mut self.eviction.conns);
        wheel.turn(now_ns, |handle| {
            let Some(conn) = self.conns.resolve(handle) else {
                return Verdict::Drop;
            };
            let key = conn.key;
            match self.conn_deadline(&key, conn) {
                (deadline, true) if deadline < now_ns => {
                    self.expire_connection(&key);
                    Verdict::Done
                }
                (deadline, true) => Verdict::Refile(handle, deadline),
                (_, false) => Verdict::Drop,
            }
        });
        self.eviction.conns = wheel;
        let mut wheel = std::mem::take(&mut self.eviction.idle_flows);
        wheel.turn(now_ns, |(idx, generation)| {
            let Some(flow) = self.flows.live(idx, generation) else {
                return Verdict::Drop;
            };
            if flow.live_connections > 0 {
                // Filed again when its last connection goes.
                return Verdict::Drop;
            }
            let last_seen = self.flows.meters[idx as usize].last_seen_ns;
            match self.flow_deadline(flow.key.proto, last_seen) {
                (deadline, true) if deadline < now_ns => {
                    self.expire_flow(idx);
                    Verdict::Done
                }
                (deadline, true) => Verdict::Refile((idx, generation), deadline),
                (_, false) => Verdict::Drop,
            }
        });
        self.eviction.idle_flows = wheel;
    }

    /// Ensures room for one more connection; false if nothing could be
    /// given up (the connection is then counted in its flow alone). The
    /// flows' order: an unanswered connection not seen for
    /// [`UNANSWERED_GRACE_NS`], then one idle past its emergency timeout,
    /// then an unanswered one of any age, then the least recently seen. (The
    /// oldest unanswered first, whatever its age, gave up each new
    /// connection of a steady stream before its answer came, at a table
    /// full of connections long over.)
    pub(super) fn make_room_for_connection(&mut self) -> bool {
        if self.conns.len() < self.config.limits.max_connections {
            return true;
        }
        self.evict_unanswered_connection(UNANSWERED_GRACE_NS)
            || self.evict_connection_by_age(Idle::PastEmergency)
            || self.evict_unanswered_connection(0)
            || self.evict_connection_by_age(Idle::Any)
    }

    /// Evicts the oldest unanswered connection, if it has not been seen for
    /// `unseen_ns`.
    fn evict_unanswered_connection(&mut self, unseen_ns: u64) -> bool {
        while let Some(&handle) = self.eviction.unanswered_conns.front() {
            let Some(conn) = self.conns.resolve(handle).filter(|c| !c.is_answered()) else {
                self.eviction.unanswered_conns.pop_front();
                continue;
            };
            if self.now_ns.saturating_sub(conn.last_seen_ns) < unseen_ns {
                // Seen lately (its answer may be on the way): the steps
                // after go first.
                return false;
            }
            let key = conn.key;
            self.eviction.unanswered_conns.pop_front();
            self.evict_connection(&key);
            self.counters.connections_evicted += 1;
            return true;
        }
        false
    }

    /// Gives up the least recently seen connection (step 2), only one idle
    /// past its emergency timeout with [`Idle::PastEmergency`]. An entry
    /// seen since it was filed is filed again by when; each such move is
    /// paid for by the packet that refreshed it.
    fn evict_connection_by_age(&mut self, idle: Idle) -> bool {
        if idle == Idle::PastEmergency && self.now_ns < self.eviction.conns_past_emergency_from {
            return false;
        }
        // Those looked past, not idle long enough for their state: filed
        // back once done, or they would come straight out again.
        let mut passed: Vec<(ConnRef, u64)> = Vec::new();
        let evicted = loop {
            let Some((handle, filed)) = self.eviction.conns_by_recency.pop_oldest() else {
                break false;
            };
            let Some(conn) = self.conns.resolve(handle) else {
                continue;
            };
            let key = conn.key;
            if filed.is_before(conn.last_seen_ns) {
                // Seen since it was filed: filed again, by when.
                self.eviction
                    .conns_by_recency
                    .file(handle, conn.last_seen_ns);
                continue;
            }
            let idle_ns = self.now_ns.saturating_sub(conn.last_seen_ns);
            let past_emergency = idle_ns > timeout(&EMERGENCY, conn.class(key.proto));
            if idle == Idle::PastEmergency && !past_emergency {
                passed.push((handle, conn.last_seen_ns));
                // Idle less than every state's emergency timeout: none
                // after it is idle longer (to the second).
                if idle_ns <= SHORTEST_CONN_EMERGENCY_NS || passed.len() == EVICTION_TRIES {
                    break false;
                }
                continue;
            }
            if past_emergency {
                self.counters.connections_emergency_expired += 1;
            } else {
                self.counters.connections_evicted_recent += 1;
            }
            self.evict_connection(&key);
            break true;
        };
        for (handle, last_seen) in passed {
            self.eviction.conns_by_recency.file(handle, last_seen);
        }
        if idle == Idle::PastEmergency && !evicted {
            self.eviction.conns_past_emergency_from = self.now_ns + PAST_EMERGENCY_RETRY_NS;
        }
        evicted
    }

    fn evict_connection(&mut self, key: &ConnKey) {
        let mut conn = self
            .conns
            .remove(key)
            .expect("an evicted connection exists");
        // Given up before it would have expired: a handshake not answered
        // yet is no failure (a SYN flood made a healthy service's pending
        // connections unanswered ones, and their answers new connections).
        if self.now_ns < self.conn_deadline(key, &conn).0 {
            conn.abandon_handshake();
        }
        self.end_connection(&mut conn, ConnEnd::Evicted);
    }

    /// Makes room for one more flow: an unanswered one not seen for
    /// [`UNANSWERED_GRACE_NS`], then a flow without connections idle past
    /// its emergency timeout, then an unanswered one of any age, then the
    /// least recently seen flow without connections, giving up connections
    /// (least recently seen first) to leave flows idle when none is.
    pub(super) fn make_room_for_flow(&mut self) -> bool {
        if self.evict_unanswered_flow(UNANSWERED_GRACE_NS)
            || self.evict_idle_flow(Idle::PastEmergency)
            || self.evict_unanswered_flow(0)
            || self.evict_idle_flow(Idle::Any)
        {
            return true;
        }
        for _ in 0..EVICTION_TRIES {
            if !self.evict_connection_by_age(Idle::Any) {
                return false;
            }
            if self.evict_idle_flow(Idle::Any) {
                return true;
            }
        }
        false
    }

    /// Evicts the oldest unanswered flow with at most one connection (that
    /// connection is unanswered too, or it would have answered the flow, and
    /// is evicted with it), if it has not been seen for `unseen_ns`.
    fn evict_unanswered_flow(&mut self, unseen_ns: u64) -> bool {
        for _ in 0..EVICTION_TRIES {
            let Some(&(idx, generation)) = self.eviction.unanswered_flows.front() else {
                return false;
            };
            let Some(flow) = self.flows.live(idx, generation) else {
                self.eviction.unanswered_flows.pop_front();
                continue;
            };
            if flow.answered {
                self.eviction.unanswered_flows.pop_front();
                continue;
            }
            let last_seen = self.flows.meters[idx as usize].last_seen_ns;
            if self.now_ns.saturating_sub(last_seen) < unseen_ns {
                // The oldest made was seen lately (its answer may be on the
                // way, or it is retried): those behind it wait for the
                // steps after, which idle flows go in first.
                return false;
            }
            if flow.live_connections == 1 {
                // Its only connection, if the newest is it: evict both.
                let only = conn_key(&flow.key, flow.last_client_port);
                if self.conns.get(&only).is_some_and(|c| c.flow == idx) {
                    self.evict_connection(&only);
                    self.counters.connections_evicted += 1;
                }
            }
            let flow = self.flows.live(idx, generation).expect("checked above");
            if flow.live_connections == 0 {
                self.eviction.unanswered_flows.pop_front();
                self.remove_evicted_flow(idx);
                self.counters.flows_evicted += 1;
                return true;
            }
            // Several connections: try it again later, when they may be gone.
            self.eviction.unanswered_flows.rotate_left(1);
        }
        false
    }

    /// Evicts the least recently seen flow without connections (only if
    /// idle past its emergency timeout, with [`Idle::PastEmergency`]).
    fn evict_idle_flow(&mut self, idle: Idle) -> bool {
        if idle == Idle::PastEmergency && self.now_ns < self.eviction.idle_flows_past_emergency_from
        {
            return false;
        }
        // Those looked past, not idle long enough for their protocol (a TCP
        // flow's emergency timeout is longer than a UDP one's): filed back
        // once done, or they would come straight out again.
        let mut passed: Vec<(FlowEntry, u64)> = Vec::new();
        let evicted = loop {
            let Some(((idx, generation), filed)) = self.eviction.idle_flows_by_recency.pop_oldest()
            else {
                break false;
            };
            let Some(flow) = self.flows.live(idx, generation) else {
                continue;
            };
            if flow.live_connections > 0 {
                // Queued again when its last connection goes.
                continue;
            }
            let last_seen = self.flows.meters[idx as usize].last_seen_ns;
            if filed.is_before(last_seen) {
                self.eviction
                    .idle_flows_by_recency
                    .file((idx, generation), last_seen);
                continue;
            }
            let idle_ns = self.now_ns.saturating_sub(last_seen);
            if idle == Idle::PastEmergency && idle_ns <= flow_timeout(&EMERGENCY, flow.key.proto) {
                passed.push(((idx, generation), last_seen));
                // Idle less than every protocol's timeout: none after it is
                // idle longer (to the second).
                if idle_ns <= EMERGENCY.tcp_idle_ns.min(EMERGENCY.udp_idle_ns)
                    || passed.len() == EVICTION_TRIES
                {
                    break false;
                }
                continue;
            }
            self.remove_evicted_flow(idx);
            self.counters.idle_flows_evicted += 1;
            break true;
        };
        for (entry, last_seen) in passed {
            self.eviction.idle_flows_by_recency.file(entry, last_seen);
        }
        if idle == Idle::PastEmergency && !evicted {
            self.eviction.idle_flows_past_emergency_from = self.now_ns + PAST_EMERGENCY_RETRY_NS;
        }
        evicted
    }

    /// Removes a flow to make room, counting what it had counted.
    fn remove_evicted_flow(&mut self, idx: u32) {
        self.keep_ended_record(idx, FlowEnd::Evicted);
        let flow = self.flows.remove(idx);
        self.drop_digests(&flow);
        let counts = self.flows.meters[idx as usize].counts.total();
        self.counters.evicted_pkts += counts.pkts;
        self.counters.evicted_bytes += counts.bytes;
    }

    /// Pops a few answered or gone entries off the unanswered queues'
    /// fronts: most connections are answered within moments, so this keeps
    /// the queues close to what is really unanswered, at a small cost per
    /// new connection.
    pub(super) fn trim_eviction_queues(&mut self) {
        let q = &mut self.eviction;
        for _ in 0..2 {
            match q.unanswered_conns.front() {
                Some(&handle) if unanswered_conn(&self.conns, handle).is_none() => {
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

    /// Keeps the eviction queues and wheels proportional to what they track.
    ///
    /// A queue is thinned when it holds more than its bound and more than
    /// twice what its last thinning kept. Not everything a thinning keeps
    /// is stale-free: a connection is filed in the wheel when it opens and
    /// again when it closes, both entries naming a live connection. Without
    /// the second condition a queue whose live entries exceed its bound was
    /// walked whole at every new connection (the live benchmark's replayed
    /// connections: most of a worker's time, and frames dropped at the
    /// highest rate); with it a thinning's cost is paid for by the entries
    /// added since the last one.
    pub(super) fn compact_eviction_queues(&mut self) {
        let q = &mut self.eviction;
        let conns = self.conns.len().max(1024) * QUEUE_SLACK;
        let flows = self.flows.len().max(1024) * QUEUE_SLACK;
        let t = &mut q.thinned;
        let len = q.unanswered_conns.len();
        Thinned::thin_if_due(&mut t.unanswered_conns, &mut t.passes, len, conns, || {
            let live = &self.conns;
            q.unanswered_conns
                .retain(|&handle| unanswered_conn(live, handle).is_some());
            q.unanswered_conns.len()
        });
        let live_conn = |&handle: &ConnRef| self.conns.resolve(handle).is_some();
        let len = q.conns.len();
        Thinned::thin_if_due(&mut t.conns, &mut t.passes, len, conns, || {
            q.conns.retain(live_conn);
            q.conns.len()
        });
        let len = q.conns_by_recency.len();
        Thinned::thin_if_due(&mut t.conns_by_recency, &mut t.passes, len, conns, || {
            q.conns_by_recency.retain(live_conn);
            q.conns_by_recency.len()
        });
        let len = q.unanswered_flows.len();
        Thinned::thin_if_due(&mut t.unanswered_flows, &mut t.passes, len, flows, || {
            let live = &self.flows;
            q.unanswered_flows
                .retain(|&(idx, generation)| unanswered_flow(live, idx, generation));
            q.unanswered_flows.len()
        });
        // A flow is filed as idle each time its last connection goes; an
        // entry of a flow that has connections again is stale (it is filed
        // anew when they go, as `evict_idle_flow` says).
        let idle_flow = |&(idx, generation): &FlowEntry| {
            self.flows
                .live(idx, generation)
                .is_some_and(|f| f.live_connections == 0)
        };
        let len = q.idle_flows.len();
        Thinned::thin_if_due(&mut t.idle_flows, &mut t.passes, len, flows, || {
            q.idle_flows.retain(idle_flow);
            q.idle_flows.len()
        });
        let len = q.idle_flows_by_recency.len();
        Thinned::thin_if_due(
            &mut t.idle_flows_by_recency,
            &mut t.passes,
            len,
            flows,
            || {
                q.idle_flows_by_recency.retain(idle_flow);
                q.idle_flows_by_recency.len()
            },
        );
    }
}

/// Which flows without connections [`FlowTable::evict_idle_flow`] may give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Idle {
    PastEmergency,
    Any,
}

/// The key of the connection a queued handle names, if it is still there
/// and unanswered.
fn unanswered_conn(conns: &Conns, handle: ConnRef) -> Option<ConnKey> {
    conns
        .resolve(handle)
        .filter(|c| !c.is_answered())
        .map(|c| c.key)
}

/// Whether a queued (index, generation) still names an unanswered flow.
fn unanswered_flow(flows: &FlowSlab, idx: u32, generation: u32) -> bool {
    flows.live(idx, generation).is_some_and(|f| !f.answered)
}

/// The 5-tuple of a connection of `flow` from `client_port`.
fn conn_key(flow: &FlowKey, client_port: u16) -> ConnKey {
    ConnKey::between(
        flow.proto,
        (flow.client, client_port),
        (flow.server, flow.server_port),
    )
}
