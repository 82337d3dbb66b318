//! One shard's state: its connections, the flows they aggregate into, and the
//! first-fragment ports that later fragments need. Owned by exactly one
//! thread, so updates take no locks.

use std::collections::VecDeque;
use std::sync::Arc;

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;

use super::conn::{Conn, Step, sender_is_client};
use super::handshake::{HandshakeDigest, Percentiles, Recorded, Window};
use super::key::{ConnKey, FlowKey};
use super::rate::{C2S, Meter, RateWindow, S2C, SlotClock};
use crate::packet::{Addr, Fragment, L4Proto, PacketMeta, Transport};

/// Never expire.
pub const NEVER: u64 = u64::MAX;

const SECOND: u64 = 1_000_000_000;

/// Idle timeouts in nanoseconds of capture time ([`NEVER`] disables one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// An established TCP connection with no packet for this long is dropped,
    /// and a TCP flow with no connection left and no packet for this long
    /// leaves the flow list.
    pub tcp_idle_ns: u64,
    /// A TCP connection closed by RST or by FIN from both sides.
    pub tcp_closed_ns: u64,
    /// A handshake that never completes (SYN without SYN-ACK, SYN-ACK without ACK).
    pub tcp_handshake_ns: u64,
    /// UDP connections and flows.
    pub udp_idle_ns: u64,
}

impl Timeouts {
    /// Capture files: a flow spans the whole file, as tshark's conversations do.
    pub const NEVER: Timeouts = Timeouts {
        tcp_idle_ns: NEVER,
        tcp_closed_ns: NEVER,
        tcp_handshake_ns: NEVER,
        udp_idle_ns: NEVER,
    };

    /// Live capture defaults.
    pub const LIVE: Timeouts = Timeouts {
        tcp_idle_ns: 300 * SECOND,
        tcp_closed_ns: 10 * SECOND,
        tcp_handshake_ns: 30 * SECOND,
        udp_idle_ns: 60 * SECOND,
    };
}

/// How much state a table may hold. A full table gives up unanswered
/// connections and flows (then closed connections) for new ones; answered,
/// open connections are never evicted: a flood of spoofed packets cannot push
/// out real traffic, only what it could not count is counted instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_flows: usize,
    /// Handshake digests past their exact samples (histograms, the big
    /// ones); beyond it a digest keeps its latest samples exactly.
    pub max_histograms: usize,
}

impl Limits {
    /// Estimated bytes per tracked connection: its map entry with the hash
    /// table's spare capacity, its eviction-queue entries, and its
    /// handshake state (a flood keeps every connection in its handshake).
    pub fn connection_bytes() -> usize {
        2 * (size_of::<(ConnKey, Conn)>() + 1)
            + 2 * size_of::<(ConnKey, u64)>()
            + super::conn::HANDSHAKE_STATE_BYTES
    }

    /// Estimated bytes per flow: its table entry, index and queue entry,
    /// and its records in the snapshots alive at once (the one served, the
    /// one being built, and the API's view of it).
    pub fn flow_bytes() -> usize {
        size_of::<Option<FlowEntry>>()
            + size_of::<Meter>()
            + size_of::<u32>()
            + 2 * (size_of::<(FlowKey, u32)>() + 1)
            + size_of::<(u32, u32)>()
            + 3 * (size_of::<FlowRecord>() + 32)
    }

    /// Estimated bytes per histogram digest, counting a copy a snapshot may
    /// still hold.
    pub fn histogram_bytes() -> usize {
        2 * super::handshake::histogram_bytes()
    }

    /// Limits that keep the tables within `bytes`: 35% for connections,
    /// 45% for flows, 20% for histograms.
    pub fn for_memory(bytes: usize) -> Limits {
        let share = |percent: usize, each: usize| (bytes / 100 * percent / each).max(1);
        Limits {
            max_connections: share(35, Limits::connection_bytes()),
            max_flows: share(45, Limits::flow_bytes()),
            max_histograms: share(20, Limits::histogram_bytes()),
        }
    }

    pub const UNBOUNDED: Limits = Limits {
        max_connections: usize::MAX,
        max_flows: usize::MAX,
        max_histograms: usize::MAX,
    };

    /// The limits of a shard that takes `part` of `total` shares of the
    /// traffic (rounded up).
    pub fn share(&self, part: u64, total: u64) -> Limits {
        let share = |n: usize| {
            let n = (u128::from(n as u64) * u128::from(part)).div_ceil(u128::from(total.max(1)));
            usize::try_from(n).unwrap_or(usize::MAX).max(1)
        };
        Limits {
            max_connections: share(self.max_connections),
            max_flows: share(self.max_flows),
            max_histograms: share(self.max_histograms),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct TableConfig {
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub rtt_window: Window,
    pub rate_window_ns: u64,
    /// First fragments remembered at once per shard.
    pub max_fragments: usize,
    pub fragment_timeout_ns: u64,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            timeouts: Timeouts::NEVER,
            limits: Limits::UNBOUNDED,
            rtt_window: Window::Unbounded,
            rate_window_ns: 10 * SECOND,
            max_fragments: 8192,
            fragment_timeout_ns: 30 * SECOND,
        }
    }
}

/// Packets and bytes in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub pkts: u64,
    pub bytes: u64,
}

/// What the table counts about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableCounters {
    /// Later fragments whose first fragment was never seen (or expired).
    pub fragments_unmatched: u64,
    /// First fragments not remembered because the fragment table was full.
    pub fragment_table_full: u64,
    /// Handshake legs not recorded because timestamps ran backwards.
    pub handshakes_out_of_order: u64,
    pub connections_expired: u64,
    pub flows_expired: u64,
    /// Unanswered or closed connections given up to make room.
    pub connections_evicted: u64,
    /// Packets of connections not tracked because the table was full of
    /// answered, open ones; they still count in their flows (but give no
    /// connection count or handshake time).
    pub untracked_pkts: u64,
    /// Unanswered flows given up to make room, and the packets and bytes
    /// they had counted (no longer reported).
    pub flows_evicted: u64,
    pub evicted_pkts: u64,
    pub evicted_bytes: u64,
    /// Packets (and bytes) counted in no flow: the flow table was full and
    /// nothing could be evicted.
    pub flow_table_full_pkts: u64,
    pub flow_table_full_bytes: u64,
    /// Handshake samples that replaced a digest's oldest because the
    /// histogram limit was reached.
    pub handshake_samples_replaced: u64,
    /// Gauges at the time of the export.
    pub active_connections: u64,
    pub active_flows: u64,
    pub active_histograms: u64,
    pub connection_capacity: u64,
    pub flow_capacity: u64,
    pub histogram_capacity: u64,
}

impl TableCounters {
    pub fn add(&mut self, o: &TableCounters) {
        let sat = |a: u64, b: u64| a.saturating_add(b);
        self.fragments_unmatched += o.fragments_unmatched;
        self.fragment_table_full += o.fragment_table_full;
        self.handshakes_out_of_order += o.handshakes_out_of_order;
        self.connections_expired += o.connections_expired;
        self.flows_expired += o.flows_expired;
        self.connections_evicted += o.connections_evicted;
        self.untracked_pkts += o.untracked_pkts;
        self.flows_evicted += o.flows_evicted;
        self.evicted_pkts += o.evicted_pkts;
        self.evicted_bytes += o.evicted_bytes;
        self.flow_table_full_pkts += o.flow_table_full_pkts;
        self.flow_table_full_bytes += o.flow_table_full_bytes;
        self.handshake_samples_replaced += o.handshake_samples_replaced;
        self.active_connections += o.active_connections;
        self.active_flows += o.active_flows;
        self.active_histograms += o.active_histograms;
        // Unbounded shards report u64::MAX: keep it saturated.
        self.connection_capacity = sat(self.connection_capacity, o.connection_capacity);
        self.flow_capacity = sat(self.flow_capacity, o.flow_capacity);
        self.histogram_capacity = sat(self.histogram_capacity, o.histogram_capacity);
    }
}

/// Handshake leg index: SYN -> SYN-ACK (client view), SYN -> ACK (server view).
pub const CLIENT_LEG: usize = 0;
pub const SERVER_LEG: usize = 1;

#[derive(Clone, Debug)]
struct FlowEntry {
    key: FlowKey,
    /// The rate window's slots; the per-packet counters are the flow's
    /// [`Meter`], kept apart in [`FlowSlab::meters`].
    rate: RateWindow,
    connections: u64,
    live_connections: u32,
    /// The client port of the newest connection: with the flow key, the
    /// 5-tuple of a flow's only connection, so a full table can evict an
    /// unanswered flow together with it.
    last_client_port: u16,
    /// Shared with snapshots; copied on write only while a snapshot holds it.
    handshake: [Option<Arc<HandshakeDigest>>; 2],
}

/// A flow as exported into a snapshot.
#[derive(Clone, Debug)]
pub struct FlowRecord {
    pub key: FlowKey,
    /// Client-to-server and server-to-client packets/bytes.
    pub c2s: Counter,
    pub s2c: Counter,
    pub rates: super::rate::Rates,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub connections: u64,
    pub handshake: [Option<Arc<HandshakeDigest>>; 2],
    pub percentiles: [Option<Percentiles>; 2],
}

impl FlowRecord {
    pub fn total_pkts(&self) -> u64 {
        self.c2s.pkts + self.s2c.pkts
    }

    pub fn total_bytes(&self) -> u64 {
        self.c2s.bytes + self.s2c.bytes
    }
}

/// Flows in a slab so a connection reaches its flow by index, not by a
/// second hash lookup.
#[derive(Debug)]
struct FlowSlab {
    entries: Vec<Option<FlowEntry>>,
    /// Each flow's per-packet counters, by the same index: a packet touches
    /// its flow's meter alone (one cache line), not the whole entry.
    meters: Vec<Meter>,
    /// Bumped each time a slot is freed, so a remembered (index, generation)
    /// names one flow and never a later occupant of its slot.
    generations: Vec<u32>,
    free: Vec<u32>,
    index: HashMap<FlowKey, u32, ahash::RandomState>,
}

impl FlowSlab {
    /// Finds or creates a flow; counts a connection in it when `connection`.
    /// Returns its index and whether it was created.
    fn attach(
        &mut self,
        key: FlowKey,
        ts_ns: u64,
        clock: SlotClock,
        connection: Option<u16>,
    ) -> (u32, bool) {
        let (idx, created) = match self.index.entry(key) {
            Entry::Occupied(o) => (*o.get(), false),
            Entry::Vacant(v) => {
                let entry = FlowEntry {
                    key,
                    rate: RateWindow::default(),
                    connections: 0,
                    live_connections: 0,
                    last_client_port: 0,
                    handshake: [None, None],
                };
                let idx = match self.free.pop() {
                    Some(idx) => {
                        self.entries[idx as usize] = Some(entry);
                        self.meters[idx as usize] = Meter::new(clock, ts_ns);
                        idx
                    }
                    None => {
                        self.entries.push(Some(entry));
                        self.meters.push(Meter::new(clock, ts_ns));
                        self.generations.push(0);
                        (self.entries.len() - 1) as u32
                    }
                };
                (*v.insert(idx), true)
            }
        };
        if let Some(client_port) = connection {
            let flow = self.get_mut(idx);
            flow.connections += 1;
            flow.live_connections += 1;
            flow.last_client_port = client_port;
        }
        (idx, created)
    }

    fn detach(&mut self, idx: u32) {
        let flow = self.get_mut(idx);
        flow.live_connections = flow.live_connections.saturating_sub(1);
    }

    fn get_mut(&mut self, idx: u32) -> &mut FlowEntry {
        self.entries[idx as usize]
            .as_mut()
            .expect("connections only point at live flows")
    }

    /// The flow at `idx` if it is still the one of `generation`.
    fn live(&self, idx: u32, generation: u32) -> Option<&FlowEntry> {
        if self.generations.get(idx as usize) != Some(&generation) {
            return None;
        }
        self.entries[idx as usize].as_ref()
    }

    /// Counts one packet into the flow at `idx`.
    #[inline]
    fn count(&mut self, idx: u32, clock: SlotClock, c2s: bool, wire_len: u32, ts: u64) {
        let dir = if c2s { C2S } else { S2C };
        let entries = &mut self.entries;
        self.meters[idx as usize].record(clock, ts, dir, wire_len, || {
            &mut entries[idx as usize]
                .as_mut()
                .expect("connections only point at live flows")
                .rate
        });
    }

    /// Both sides of the flow at `idx` have sent something.
    fn is_answered(&self, idx: u32) -> bool {
        let counts = &self.meters[idx as usize].counts;
        counts[C2S].pkts > 0 && counts[S2C].pkts > 0
    }

    fn remove(&mut self, idx: u32) -> FlowEntry {
        let flow = self.entries[idx as usize]
            .take()
            .expect("only live flows are removed");
        self.index.remove(&flow.key);
        self.generations[idx as usize] = self.generations[idx as usize].wrapping_add(1);
        self.free.push(idx);
        flow
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FragKey {
    src: Addr,
    dst: Addr,
    ident: u32,
    proto: L4Proto,
}

#[derive(Clone, Copy, Debug)]
struct FragEntry {
    src_port: u16,
    dst_port: u16,
    first_ns: u64,
}

/// How many stale entries an eviction queue may hold, relative to what it
/// tracks, before it is compacted.
const QUEUE_SLACK: usize = 2;
/// Packets whose state [`FlowTable::update_batch`] loads ahead at once.
const LOOKAHEAD: usize = 32;
/// Eviction candidates looked at for one new flow before giving up.
const EVICTION_TRIES: usize = 64;

#[derive(Debug)]
pub struct FlowTable {
    config: TableConfig,
    clock: SlotClock,
    conns: HashMap<ConnKey, Conn, ahash::RandomState>,
    flows: FlowSlab,
    fragments: HashMap<FragKey, FragEntry, ahash::RandomState>,
    /// Eviction order: unanswered connections and flows, oldest first, then
    /// closed connections. Entries are checked when popped (the connection
    /// may since have been answered, or be gone).
    unanswered_conns: VecDeque<(ConnKey, u64)>,
    closed_conns: VecDeque<(ConnKey, u64)>,
    unanswered_flows: VecDeque<(u32, u32)>,
    /// Digests in histogram form held by this table.
    histograms: usize,
    counters: TableCounters,
    /// Newest capture time seen.
    now_ns: u64,
    /// Oldest capture time seen (the start of observation, for rates).
    since_ns: u64,
}

impl FlowTable {
    pub fn new(config: TableConfig, hasher: ahash::RandomState) -> FlowTable {
        FlowTable {
            config,
            clock: SlotClock::new(config.rate_window_ns),
            conns: HashMap::with_hasher(hasher.clone()),
            flows: FlowSlab {
                entries: Vec::new(),
                meters: Vec::new(),
                generations: Vec::new(),
                free: Vec::new(),
                index: HashMap::with_hasher(hasher.clone()),
            },
            fragments: HashMap::with_hasher(hasher),
            unanswered_conns: VecDeque::new(),
            closed_conns: VecDeque::new(),
            unanswered_flows: VecDeque::new(),
            histograms: 0,
            counters: TableCounters::default(),
            now_ns: 0,
            since_ns: u64::MAX,
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Counts one packet into its connection and flow.
    pub fn update(&mut self, p: &PacketMeta) {
        let ts = p.ts_ns;
        self.now_ns = self.now_ns.max(ts);
        self.since_ns = self.since_ns.min(ts);
        let mut t = p.transport;
        match t.fragment {
            Fragment::Whole => {}
            Fragment::First { ident } => {
                let key = FragKey {
                    src: t.src,
                    dst: t.dst,
                    ident,
                    proto: t.proto,
                };
                if self.fragments.len() < self.config.max_fragments
                    || self.fragments.contains_key(&key)
                {
                    self.fragments.insert(
                        key,
                        FragEntry {
                            src_port: t.src_port,
                            dst_port: t.dst_port,
                            first_ns: ts,
                        },
                    );
                } else {
                    self.counters.fragment_table_full += 1;
                }
            }
            Fragment::Later { ident, last } => {
                let key = FragKey {
                    src: t.src,
                    dst: t.dst,
                    ident,
                    proto: t.proto,
                };
                let first = if last {
                    self.fragments.remove(&key)
                } else {
                    self.fragments.get(&key).copied()
                };
                let Some(first) = first else {
                    self.counters.fragments_unmatched += 1;
                    return;
                };
                t.src_port = first.src_port;
                t.dst_port = first.dst_port;
            }
        }

        let (key, from_lo) = ConnKey::of(&t);
        let Some(conn) = self.conns.get_mut(&key) else {
            self.open_connection(key, from_lo, &t, p.wire_len, ts);
            return;
        };
        let c2s = from_lo == conn.client_is_lo;
        let was_closed = conn.is_closed();
        let step = if t.proto == L4Proto::Tcp {
            conn.tcp_step(&t, c2s, ts)
        } else {
            Step::default()
        };
        if step.reopen {
            // A new connection on the same 5-tuple: the sender of the new SYN
            // is its client, and it may belong to another flow.
            let mut old = self.conns.remove(&key).expect("found above");
            self.end_connection(&mut old);
            self.open_connection(key, from_lo, &t, p.wire_len, ts);
            return;
        }
        conn.note_direction(c2s);
        conn.last_seen_ns = conn.last_seen_ns.max(ts);
        let flow = conn.flow;
        if !was_closed && conn.is_closed() {
            self.closed_conns.push_back((key, conn.opened_ns()));
        }
        self.count_packet(flow, c2s, p.wire_len, ts, &step);
    }

    /// Counts a batch of packets, in order. The connections and flow meters
    /// of the whole batch are looked up first, before any is updated: those
    /// lookups do not depend on each other, so the CPU overlaps their cache
    /// misses instead of waiting for each in turn (with 100k connections,
    /// most packets miss the cache twice or more; see BENCHMARKS.md).
    pub fn update_batch(&mut self, packets: &[PacketMeta]) {
        for chunk in packets.chunks(LOOKAHEAD) {
            // Connections first, then their flows' meters: each pass is a
            // row of independent loads.
            let mut flows = [u32::MAX; LOOKAHEAD];
            for (p, flow) in chunk.iter().zip(&mut flows) {
                let (key, _) = ConnKey::of(&p.transport);
                if let Some(conn) = self.conns.get(&key) {
                    *flow = conn.flow;
                }
            }
            let mut touched = 0u64;
            for &flow in &flows {
                if let Some(meter) = self.flows.meters.get(flow as usize) {
                    touched ^= meter.last_seen_ns;
                }
            }
            std::hint::black_box(touched);
            for p in chunk {
                self.update(p);
            }
        }
    }

    /// A packet of a connection not in the table: track it if there is (or
    /// can be made) room, else count the packet in its flow alone.
    fn open_connection(
        &mut self,
        key: ConnKey,
        from_lo: bool,
        t: &Transport,
        wire_len: u32,
        ts: u64,
    ) {
        let client_is_lo = if sender_is_client(t) {
            from_lo
        } else {
            !from_lo
        };
        let c2s = from_lo == client_is_lo;
        let flow_key = flow_key(&key, client_is_lo);
        let tracked = self.make_room_for_connection();
        let client_port = if client_is_lo {
            key.lo_port
        } else {
            key.hi_port
        };
        let Some(flow) = self.attach_flow(flow_key, ts, tracked.then_some(client_port)) else {
            self.counters.flow_table_full_pkts += 1;
            self.counters.flow_table_full_bytes += u64::from(wire_len);
            return;
        };
        let step = if tracked {
            let (conn, step) = Conn::new(flow, client_is_lo, t, c2s, ts);
            self.conns.insert(key, conn);
            self.trim_queues();
            self.unanswered_conns.push_back((key, ts));
            step
        } else {
            self.counters.untracked_pkts += 1;
            Step::default()
        };
        self.count_packet(flow, c2s, wire_len, ts, &step);
    }

    fn count_packet(&mut self, flow: u32, c2s: bool, wire_len: u32, ts: u64, step: &Step) {
        self.flows.count(flow, self.clock, c2s, wire_len, ts);
        self.record_legs(flow, step, ts);
    }

    /// Finds or creates a flow, evicting an unanswered one if the table is
    /// full; None when nothing can be evicted.
    /// `connection` is the client port of a new connection to count in it.
    fn attach_flow(&mut self, key: FlowKey, ts: u64, connection: Option<u16>) -> Option<u32> {
        if self.flows.len() >= self.config.limits.max_flows
            && !self.flows.index.contains_key(&key)
            && !self.make_room_for_flow()
        {
            return None;
        }
        let (idx, created) = self.flows.attach(key, ts, self.clock, connection);
        if created {
            self.unanswered_flows
                .push_back((idx, self.flows.generations[idx as usize]));
        }
        Some(idx)
    }

    /// Ensures room for one more connection; false if the table is full of
    /// answered, open connections.
    fn make_room_for_connection(&mut self) -> bool {
        if self.conns.len() < self.config.limits.max_connections {
            return true;
        }
        self.evict_unanswered_connection() || self.evict_closed_connection()
    }

    fn evict_unanswered_connection(&mut self) -> bool {
        while let Some((key, opened)) = self.unanswered_conns.pop_front() {
            if unanswered_conn(&self.conns, &key, opened) {
                self.evict_connection(&key);
                return true;
            }
        }
        false
    }

    fn evict_closed_connection(&mut self) -> bool {
        while let Some((key, opened)) = self.closed_conns.pop_front() {
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

    /// Records what is left of a connection's handshake and detaches it from
    /// its flow.
    fn end_connection(&mut self, conn: &mut Conn) {
        let step = conn.flush();
        self.record_legs(conn.flow, &step, conn.last_seen_ns);
        self.flows.detach(conn.flow);
    }

    /// Evicts the oldest unanswered flow with at most one connection (that
    /// connection is unanswered too, or it would have answered the flow, and
    /// is evicted with it).
    fn make_room_for_flow(&mut self) -> bool {
        for _ in 0..EVICTION_TRIES {
            let Some(&(idx, generation)) = self.unanswered_flows.front() else {
                return false;
            };
            let Some(flow) = self.flows.live(idx, generation) else {
                self.unanswered_flows.pop_front();
                continue;
            };
            if self.flows.is_answered(idx) {
                self.unanswered_flows.pop_front();
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
                self.unanswered_flows.pop_front();
                let flow = self.flows.remove(idx);
                self.drop_digests(&flow);
                self.counters.flows_evicted += 1;
                let counts = &self.flows.meters[idx as usize].counts;
                self.counters.evicted_pkts += counts[C2S].pkts + counts[S2C].pkts;
                self.counters.evicted_bytes += counts[C2S].bytes + counts[S2C].bytes;
                return true;
            }
            // Several connections: try it again later, when they may be gone.
            self.unanswered_flows.rotate_left(1);
        }
        false
    }

    /// Pops a few answered or gone entries off the eviction queues' fronts:
    /// most connections are answered within moments, so this keeps the
    /// queues close to what is really unanswered, at a small cost per new
    /// connection.
    fn trim_queues(&mut self) {
        for _ in 0..2 {
            match self.unanswered_conns.front() {
                Some((k, opened)) if !unanswered_conn(&self.conns, k, *opened) => {
                    self.unanswered_conns.pop_front();
                }
                _ => break,
            }
        }
        for _ in 0..2 {
            match self.unanswered_flows.front() {
                Some(&(idx, generation)) if !unanswered_flow(&self.flows, idx, generation) => {
                    self.unanswered_flows.pop_front();
                }
                _ => break,
            }
        }
        self.compact_queues();
    }

    /// Keeps the eviction queues proportional to what they track.
    fn compact_queues(&mut self) {
        let conns = self.conns.len().max(1024) * QUEUE_SLACK;
        if self.unanswered_conns.len() > conns {
            let live = &self.conns;
            self.unanswered_conns
                .retain(|(k, opened)| unanswered_conn(live, k, *opened));
        }
        if self.closed_conns.len() > conns {
            let live = &self.conns;
            self.closed_conns
                .retain(|(k, opened)| live.get(k).is_some_and(|c| c.opened_ns() == *opened));
        }
        if self.unanswered_flows.len() > self.flows.len().max(1024) * QUEUE_SLACK {
            let flows = &self.flows;
            self.unanswered_flows
                .retain(|&(idx, generation)| unanswered_flow(flows, idx, generation));
        }
    }

    fn record_legs(&mut self, flow: u32, step: &Step, ts: u64) {
        if step.out_of_order {
            self.counters.handshakes_out_of_order += 1;
        }
        if step.client_leg.is_none() && step.server_leg.is_none() {
            // Most packets: do not touch the flow's entry (a cache miss).
            return;
        }
        let window = self.config.rtt_window;
        let max_histograms = self.config.limits.max_histograms;
        let flow = self.flows.get_mut(flow);
        for (which, leg) in [(CLIENT_LEG, step.client_leg), (SERVER_LEG, step.server_leg)] {
            if let Some(ns) = leg {
                let may_grow = self.histograms < max_histograms;
                let digest = flow.handshake[which].get_or_insert_with(Default::default);
                match Arc::make_mut(digest).record(ts, (ns + 500) / 1000, window, may_grow) {
                    Recorded::Sample => {}
                    Recorded::BecameHistogram => self.histograms += 1,
                    Recorded::ReplacedOldest => self.counters.handshake_samples_replaced += 1,
                }
            }
        }
    }

    /// Forgets a flow's digests (the flow leaves the table).
    fn drop_digests(&mut self, flow: &FlowEntry) {
        for digest in flow.handshake.iter().flatten() {
            if digest.is_histogram() {
                self.histograms -= 1;
            }
        }
    }

    /// Records every handshake leg still pending: the capture has ended.
    pub fn flush_handshakes(&mut self) {
        let mut pending = Vec::new();
        for conn in self.conns.values_mut() {
            let step = conn.flush();
            if step != Step::default() {
                pending.push((conn.flow, step, conn.last_seen_ns));
            }
        }
        for (flow, step, ts) in pending {
            self.record_legs(flow, &step, ts);
        }
    }

    /// Drops idle connections, flows and fragments as of `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        let timeouts = self.config.timeouts;
        let ended: Vec<Conn> = self
            .conns
            .extract_if(|key, conn| {
                let timeout = conn_timeout(&timeouts, key.proto, conn);
                timeout != NEVER && now_ns.saturating_sub(conn.last_seen_ns) > timeout
            })
            .map(|(_, conn)| conn)
            .collect();
        self.counters.connections_expired += ended.len() as u64;
        for mut conn in ended {
            self.end_connection(&mut conn);
        }

        let window = self.config.rtt_window;
        for idx in 0..self.flows.entries.len() {
            let Some(flow) = self.flows.entries[idx].as_mut() else {
                continue;
            };
            // A digest whose samples all left the window frees its memory.
            let mut freed = 0;
            for digest in flow.handshake.iter_mut() {
                if digest
                    .as_ref()
                    .is_some_and(|d| d.count(now_ns, window) == 0)
                {
                    freed += usize::from(digest.as_ref().is_some_and(|d| d.is_histogram()));
                    *digest = None;
                }
            }
            self.histograms -= freed;
            let timeout = match flow.key.proto {
                L4Proto::Tcp => timeouts.tcp_idle_ns,
                L4Proto::Udp => timeouts.udp_idle_ns,
            };
            if flow.live_connections == 0
                && timeout != NEVER
                && now_ns.saturating_sub(self.flows.meters[idx].last_seen_ns) > timeout
            {
                let flow = self.flows.remove(idx as u32);
                self.drop_digests(&flow);
                self.counters.flows_expired += 1;
            }
        }

        let fragment_timeout = self.config.fragment_timeout_ns;
        self.fragments
            .retain(|_, f| now_ns.saturating_sub(f.first_ns) <= fragment_timeout);
        self.compact_queues();
    }

    /// Appends every flow as of `as_of_ns` to `out`.
    pub fn export(&self, as_of_ns: u64, out: &mut Vec<FlowRecord>) {
        let window = self.config.rtt_window;
        let since = if self.since_ns == u64::MAX {
            as_of_ns
        } else {
            self.since_ns
        };
        out.reserve(self.flows.len());
        for (flow, meter) in self.flows.entries.iter().zip(&self.flows.meters) {
            let Some(flow) = flow else {
                continue;
            };
            let percentiles = [
                flow.handshake[CLIENT_LEG]
                    .as_ref()
                    .and_then(|d| d.percentiles(as_of_ns, window)),
                flow.handshake[SERVER_LEG]
                    .as_ref()
                    .and_then(|d| d.percentiles(as_of_ns, window)),
            ];
            out.push(FlowRecord {
                key: flow.key,
                c2s: meter.counts[C2S],
                s2c: meter.counts[S2C],
                rates: meter.rates(&flow.rate, self.clock, as_of_ns, since),
                first_seen_ns: meter.first_seen_ns,
                last_seen_ns: meter.last_seen_ns,
                connections: flow.connections,
                handshake: flow.handshake.clone(),
                percentiles,
            });
        }
    }

    pub fn counters(&self) -> TableCounters {
        let limits = self.config.limits;
        TableCounters {
            active_connections: self.conns.len() as u64,
            active_flows: self.flows.len() as u64,
            active_histograms: self.histograms as u64,
            connection_capacity: limits.max_connections as u64,
            flow_capacity: limits.max_flows as u64,
            histogram_capacity: limits.max_histograms as u64,
            ..self.counters
        }
    }

    /// The oldest capture time seen, if any packet was.
    pub fn since_ns(&self) -> Option<u64> {
        (self.since_ns != u64::MAX).then_some(self.since_ns)
    }
}

fn flow_key(key: &ConnKey, client_is_lo: bool) -> FlowKey {
    if client_is_lo {
        FlowKey {
            proto: key.proto,
            client: key.lo,
            server: key.hi,
            server_port: key.hi_port,
        }
    } else {
        FlowKey {
            proto: key.proto,
            client: key.hi,
            server: key.lo,
            server_port: key.lo_port,
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
    let client = (flow.client, client_port);
    let server = (flow.server, flow.server_port);
    let ((lo, lo_port), (hi, hi_port)) = if client <= server {
        (client, server)
    } else {
        (server, client)
    };
    ConnKey {
        lo,
        hi,
        lo_port,
        hi_port,
        proto: flow.proto,
    }
}

fn conn_timeout(t: &Timeouts, proto: L4Proto, conn: &Conn) -> u64 {
    match proto {
        L4Proto::Udp => t.udp_idle_ns,
        L4Proto::Tcp if conn.is_closed() => t.tcp_closed_ns,
        L4Proto::Tcp if conn.is_half_open() => t.tcp_handshake_ns,
        L4Proto::Tcp => t.tcp_idle_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::flags::{ACK, SYN};

    const MS: u64 = 1_000_000;

    fn addr(i: u32) -> Addr {
        let b = i.to_be_bytes();
        Addr::from_v4([198, 18 + (b[1] & 1), b[2], b[3]])
    }

    fn tcp(ts_ns: u64, src: Addr, sport: u16, dst: Addr, dport: u16, f: u8) -> PacketMeta {
        PacketMeta {
            ts_ns,
            wire_len: 60,
            transport: Transport {
                proto: L4Proto::Tcp,
                src,
                dst,
                src_port: sport,
                dst_port: dport,
                tcp_flags: f,
                tcp_seq: 1,
                fragment: Fragment::Whole,
            },
        }
    }

    fn table(limits: Limits) -> FlowTable {
        let config = TableConfig {
            limits,
            ..TableConfig::default()
        };
        FlowTable::new(config, ahash::RandomState::with_seeds(1, 2, 3, 4))
    }

    /// A whole connection: handshake, a request and a reply.
    fn converse(t: &mut FlowTable, ts: u64, client: Addr, port: u16, server: Addr) {
        t.update(&tcp(ts, client, port, server, 443, SYN));
        t.update(&tcp(ts + MS, server, 443, client, port, SYN | ACK));
        t.update(&tcp(ts + 2 * MS, client, port, server, 443, ACK));
        t.update(&tcp(ts + 3 * MS, server, 443, client, port, ACK));
    }

    fn flows(t: &FlowTable) -> Vec<FlowRecord> {
        let mut out = Vec::new();
        t.export(t.now_ns(), &mut out);
        out
    }

    #[test]
    fn a_syn_flood_evicts_only_unanswered_state() {
        let mut t = table(Limits {
            max_connections: 100,
            max_flows: 80,
            max_histograms: 10,
        });
        let server = Addr::from_v4([198, 19, 0, 1]);
        for i in 0..20 {
            converse(&mut t, 0, addr(i), 40_000 + i as u16, server);
        }
        // Spoofed SYNs from 10,000 sources, none answered.
        for i in 0..10_000u32 {
            t.update(&tcp(
                10 * MS + u64::from(i),
                addr(1000 + i),
                1024 + (i % 60_000) as u16,
                server,
                443,
                SYN,
            ));
        }
        // The real connections go on.
        for i in 0..20 {
            converse(&mut t, 100 * MS, addr(i), 50_000 + i as u16, server);
        }
        let c = t.counters();
        assert!(c.active_connections <= 100 && c.active_flows <= 80, "{c:?}");
        assert_eq!(c.flow_table_full_pkts, 0, "room was always made");
        assert!(c.connections_evicted >= 10_000 - 100, "{c:?}");
        assert!(c.flows_evicted >= 10_000 - 80, "{c:?}");
        assert_eq!(c.evicted_pkts, c.flows_evicted, "one SYN each");
        let real: Vec<_> = flows(&t).into_iter().filter(|f| f.s2c.pkts > 0).collect();
        assert_eq!(real.len(), 20);
        for f in real {
            assert_eq!((f.c2s.pkts, f.s2c.pkts, f.connections), (4, 4, 2), "{f:?}");
            assert!(f.handshake[CLIENT_LEG].is_some());
        }
    }

    #[test]
    fn a_table_full_of_answered_connections_still_counts_packets() {
        let mut t = table(Limits {
            max_connections: 5,
            max_flows: 100,
            max_histograms: 10,
        });
        let server = Addr::from_v4([198, 19, 0, 1]);
        for i in 0..5 {
            t.update(&tcp(0, addr(i), 40_000, server, 443, SYN));
            t.update(&tcp(MS, server, 443, addr(i), 40_000, SYN | ACK));
        }
        converse(&mut t, 10 * MS, addr(9), 40_001, server);
        let c = t.counters();
        assert_eq!((c.active_connections, c.untracked_pkts), (5, 4), "{c:?}");
        let late = flows(&t)
            .into_iter()
            .find(|f| f.key.client == addr(9))
            .unwrap();
        assert_eq!(
            (late.c2s.pkts, late.s2c.pkts),
            (2, 2),
            "packets still counted"
        );
        assert_eq!(late.connections, 0, "but not as a tracked connection");
    }

    #[test]
    fn the_histogram_limit_keeps_digests_small() {
        let mut t = table(Limits {
            max_histograms: 2,
            ..Limits::UNBOUNDED
        });
        let server = Addr::from_v4([198, 19, 0, 1]);
        for client in [addr(1), addr(2)] {
            for i in 0..40 {
                converse(&mut t, i * 10 * MS, client, 30_000 + i as u16, server);
            }
        }
        let c = t.counters();
        // The first flow's two legs grew; the second's could not, and their
        // samples beyond 16 replaced older ones: 2 legs x 24.
        assert_eq!(c.active_histograms, 2);
        assert_eq!(c.handshake_samples_replaced, 48);
        t.expire(u64::MAX / 2);
        assert_eq!(t.counters().active_histograms, 2, "no window: samples stay");
    }
}
