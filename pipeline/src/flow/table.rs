//! One shard's state: its connections, the flows they aggregate into, and the
//! first-fragment ports that later fragments need. Owned by exactly one
//! thread, so updates take no locks.
//!
//! The concerns around it have modules of their own: [`super::limits`]
//! (how much and how long), [`super::slab`] (the flows), [`super::fragments`],
//! [`super::eviction`] (making room) and [`super::counters`].

use std::sync::Arc;

use super::conn::{Conn, Step, roles_are_a_guess, sender_is_client};
use super::conn_records::{ConnEnd, ConnRecord, ConnRecords};
use super::conns::{ConnRef, Conns};
use super::counters::TableCounters;
use super::eviction::Eviction;
use super::fragments::Fragments;
use super::handshake::{Recorded, Window};
use super::health::TcpHealth;
use super::key::ConnKey;
use super::limits::TableConfig;
use super::rate::{Meter, SlotClock};
use super::record::{EndedFlow, FlowEnd, FlowRecord};
use super::refusals::PendingRefusals;
use super::side::{PerSide, Side};
use super::slab::{FlowEntry, FlowSlab};
use crate::packet::{Addr, Fragment, L4Proto, PacketMeta, Transport};
use crate::prefetch::prefetch;
use crate::time::round_to_micros;
use crate::wire::dissect::FragmentId;

/// Packets between two stages of [`FlowTable::update_batch`]'s pipeline:
/// enough updates to cover a miss to memory.
const AHEAD: usize = 8;
/// The pipeline's ring of keys and flows: more than its depth.
const LOOKAHEAD: usize = 64;

/// A packet's connection key, which end sent it and the key's hash:
/// computed once per packet, at the first stage of a batch's pipeline.
#[derive(Clone, Copy)]
struct Keyed {
    key: ConnKey,
    from_lo: bool,
    hash: u64,
    /// Where the batch's lookup found the connection in the storage
    /// (`u32::MAX`: not looked up, or not there), so that counting the
    /// packet checks that place instead of looking the key up again.
    found_at: u32,
}

impl Keyed {
    /// What the pipeline's ring holds before a packet is keyed into it.
    const NONE: Keyed = Keyed {
        key: ConnKey {
            lo: Addr([0; 16]),
            hi: Addr([0; 16]),
            lo_port: 0,
            hi_port: 0,
            proto: L4Proto::Tcp,
        },
        from_lo: false,
        hash: 0,
        found_at: u32::MAX,
    };

    #[inline]
    fn of(t: &Transport, conns: &Conns) -> Keyed {
        let (key, from_lo) = ConnKey::of(t);
        Keyed {
            key,
            from_lo,
            hash: conns.hash(&key),
            found_at: u32::MAX,
        }
    }
}

#[derive(Debug)]
pub struct FlowTable {
    pub(super) config: TableConfig,
    clock: SlotClock,
    pub(super) conns: Conns,
    pub(super) flows: FlowSlab,
    fragments: Fragments<(u16, u16)>,
    /// ICMP refusals that came before their SYN ([`super::refusals`]).
    refusals: PendingRefusals,
    pub(super) eviction: Eviction,
    /// Digests in sketch form held by this table.
    sketches: usize,
    pub(super) counters: TableCounters,
    /// Newest capture time seen.
    pub(super) now_ns: u64,
    /// Oldest capture time seen (the start of observation, for rates).
    since_ns: u64,
    /// Per-connection records, when asked for ([`TableConfig::conn_records`]).
    conn_records: Option<ConnRecords>,
    /// The last records of flows that left the table since the last
    /// snapshot, when asked for ([`TableConfig::ended_flows`]).
    ended: Vec<EndedFlow>,
}

/// What a flow's record is made as of.
struct RecordAt {
    clock: SlotClock,
    as_of_ns: u64,
    /// When observation began (rates count from then).
    since_ns: u64,
    window: Window,
    /// Whether the record shares the flow's handshake digests (not only
    /// their percentiles).
    digests: bool,
}

impl RecordAt {
    fn record(&self, flow: &FlowEntry, meter: &Meter, health: &TcpHealth) -> FlowRecord {
        let as_of_ns = self.as_of_ns;
        FlowRecord {
            key: flow.key,
            sent: meter.counts,
            ip_bytes: meter.ip_bytes(&flow.rate),
            rates: meter.rates(&flow.rate, self.clock, as_of_ns, self.since_ns),
            first_seen_ns: meter.first_seen_ns,
            last_seen_ns: meter.last_seen_ns,
            connections: flow.connections,
            handshake: if self.digests {
                flow.handshake.clone()
            } else {
                PerSide::default()
            },
            mirror: flow.mirror,
            tcp: health.clone(),
            seen_by: None,
            percentiles: PerSide::from_fn(|side| {
                flow.handshake[side]
                    .as_ref()
                    .and_then(|d| d.percentiles(as_of_ns, self.window))
            }),
        }
    }
}

impl FlowTable {
    pub fn new(config: TableConfig, hasher: ahash::RandomState) -> FlowTable {
        FlowTable {
            config,
            clock: SlotClock::new(config.rate_window_ns),
            conns: Conns::new(hasher.clone()),
            flows: FlowSlab::new(hasher.clone()),
            conn_records: config
                .conn_records
                .map(|c| ConnRecords::new(c, hasher.clone())),
            refusals: PendingRefusals::new(hasher.clone()),
            fragments: Fragments::new(config.max_fragments, config.fragment_timeout_ns, hasher),
            eviction: Eviction::default(),
            sketches: 0,
            counters: TableCounters::default(),
            now_ns: 0,
            since_ns: u64::MAX,
            ended: Vec::new(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Counts one packet into its connection and flow.
    pub fn update(&mut self, p: &PacketMeta) {
        self.update_keyed(p, None);
    }

    /// [`Self::update`], given the packet's connection key when a batch
    /// computed it already.
    fn update_keyed(&mut self, p: &PacketMeta, keyed: Option<&Keyed>) {
        let ts = p.ts_ns;
        self.now_ns = self.now_ns.max(ts);
        self.since_ns = self.since_ns.min(ts);
        let mut t = p.transport;
        let fragment_id = |ident| FragmentId {
            src: t.src,
            dst: t.dst,
            ident,
            protocol: t.proto as u8,
        };
        match t.fragment {
            Fragment::Whole | Fragment::Continued => {}
            Fragment::First { ident } => {
                let ports = (t.src_port, t.dst_port);
                if self
                    .fragments
                    .first(fragment_id(ident), ports, ts)
                    .lost_one()
                {
                    self.counters.fragment_table_full += 1;
                }
            }
            Fragment::Later { ident, last } => {
                let Some((src_port, dst_port)) =
                    self.fragments.later(&fragment_id(ident), last, ts)
                else {
                    self.counters.fragments_unmatched += 1;
                    return;
                };
                t.src_port = src_port;
                t.dst_port = dst_port;
            }
        }
        if p.refusal {
            self.refuse(&t, ts);
            return;
        }
        if !p.counts_packet {
            self.count_bytes(&t, p.wire_len, ts);
            return;
        }

        // A later fragment's ports came from its first: its key is not the
        // one the batch computed.
        let Keyed {
            key,
            from_lo,
            hash,
            found_at,
        } = match keyed {
            Some(keyed) if !matches!(p.transport.fragment, Fragment::Later { .. }) => *keyed,
            _ => Keyed::of(&t, &self.conns),
        };
        // Where the batch found it, unless an earlier packet's removal
        // moved it since; else a lookup.
        let found = Some(found_at)
            .filter(|&at| self.conns.holds(at, &key))
            .or_else(|| self.conns.index_of(hash, &key));
        let found = self.unless_due(found, &key, ts);
        let Some(conn) = found.map(|at| self.conns.at_mut(at)) else {
            self.open_connection(hash, key, from_lo, &t, p);
            return;
        };
        let sender = Side::sender(from_lo == conn.client_is_lo());
        let was_closed = conn.is_closed();
        let timeouts = &self.config.timeouts;
        let was_half_open = timeouts.tcp_idle_ns < timeouts.tcp_handshake_ns && conn.is_half_open();
        let was_answered = conn.is_answered();
        let step = if t.proto == L4Proto::Tcp {
            conn.tcp_step_of(&t, sender, ts, p.duplicate)
        } else {
            conn.note_datagram(sender);
            Step::default()
        };
        if step.reopen {
            // A new connection on the same 5-tuple: the sender of the new SYN
            // is its client, and it may belong to another flow.
            let mut old = self.conns.remove(&key).expect("found above");
            self.end_connection(&mut old, ConnEnd::Closed);
            self.open_connection(hash, key, from_lo, &t, p);
            return;
        }
        conn.last_seen_ns = conn.last_seen_ns.max(ts);
        let flow = conn.flow;
        let (closed, answered) = (
            !was_closed && conn.is_closed(),
            !was_answered && conn.is_answered(),
        );
        // Its timeout shrank (closed; or its handshake completed, where the
        // SYN timeout is longer than the idle one): file it by the new
        // deadline, which the wheel, finding entries by their old ones,
        // would pass over.
        let completed = was_half_open && !conn.is_half_open();
        if closed || completed {
            let handle = ConnRef::new(hash, conn);
            self.file_connection(handle, false);
        }
        if answered {
            self.flows.get_mut(flow).answered = true;
        }
        self.count_packet(flow, sender, p, &step);
        if let Some(records) = &mut self.conn_records {
            records.count(hash, &key, sender, p, &step);
        }
    }

    /// Counts a batch of packets, in order, asking for what each update
    /// will read a few packets before it runs: with 100k connections most
    /// packets miss the cache several times (see BENCHMARKS.md), and each
    /// miss must be on its way while earlier packets are counted, not
    /// waited for in turn.
    ///
    /// A software pipeline: packet `i` is hashed and its index slot asked
    /// for; [`AHEAD`] packets later the connection that slot names; then
    /// its flow's meter; then, if the packet opens a rate slot (where
    /// traffic is thin, a flow's packets seconds apart, nearly every
    /// packet does), the flow's rate window; then it is counted. What the
    /// stages find is only ever a hint: a packet counted in between may
    /// open or close a connection, and the count looks everything up again.
    pub fn update_batch(&mut self, packets: &[PacketMeta]) {
        const UPDATE: usize = 4 * AHEAD;
        let mut keyed = [Keyed::NONE; LOOKAHEAD];
        let mut flows = [u32::MAX; LOOKAHEAD];
        let at = |i: usize| i % LOOKAHEAD;
        for i in 0..packets.len() + UPDATE {
            let stage = |lag: usize| i.checked_sub(lag).filter(|&j| j < packets.len());
            if let Some(j) = stage(0) {
                keyed[at(j)] = Keyed::of(&packets[j].transport, &self.conns);
                self.conns.prefetch_slot(keyed[at(j)].hash);
            }
            if let Some(j) = stage(AHEAD) {
                self.conns.prefetch_conn(keyed[at(j)].hash);
            }
            if let Some(j) = stage(2 * AHEAD) {
                let k = &mut keyed[at(j)];
                let found = self.conns.index_of(k.hash, &k.key);
                k.found_at = found.unwrap_or(u32::MAX);
                flows[at(j)] = found.map_or(u32::MAX, |at| self.conns.at(at).flow);
                if let Some(meter) = self.flows.meters.get(flows[at(j)] as usize) {
                    prefetch(meter);
                }
            }
            if let Some(j) = stage(3 * AHEAD) {
                let flow = flows[at(j)] as usize;
                // The whole entry, without reading it (whether the slab's
                // place holds a flow is in its last line).
                if let Some(meter) = self.flows.meters.get(flow)
                    && meter.opens_slot(self.clock, packets[j].ts_ns)
                    && let Some(entry) = self.flows.entries.get(flow)
                {
                    prefetch(entry);
                }
            }
            if let Some(j) = stage(UPDATE) {
                self.update_keyed(&packets[j], Some(&keyed[at(j)]));
            }
        }
    }

    /// A packet of a connection not in the table: track it if there is (or
    /// can be made) room, else count the packet in its flow alone.
    fn open_connection(
        &mut self,
        hash: u64,
        key: ConnKey,
        from_lo: bool,
        t: &Transport,
        p: &PacketMeta,
    ) {
        let (wire_len, ts) = (p.wire_len, p.ts_ns);
        let mut client_is_lo = if sender_is_client(t) {
            from_lo
        } else {
            !from_lo
        };
        // Where the first sender is only a guess, a flow of the pair the
        // other way round decides: a connection expired idle, or evicted,
        // and resumed by its server, and a reply read before its request
        // (on another receive queue), keep their flow instead of opening
        // one reversed (a lookup only for such packets).
        if roles_are_a_guess(t) {
            // A flow past its timeout is gone whether maintenance came by
            // since or not (else the roles hung on the workers' timing:
            // their number, the hash seed).
            for lo in [client_is_lo, !client_is_lo] {
                self.expire_flow_if_due(&key.flow_key(lo), ts);
            }
            if self.flows.index_of(&key.flow_key(client_is_lo)).is_none()
                && self.flows.index_of(&key.flow_key(!client_is_lo)).is_some()
            {
                client_is_lo = !client_is_lo;
            }
        }
        let sender = Side::sender(from_lo == client_is_lo);
        let flow_key = key.flow_key(client_is_lo);
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
        if let Some(mirror) = p.mirror {
            self.flows.get_mut(flow).mirror.get_or_insert(mirror);
        }
        let step = if tracked {
            let (mut conn, step) = Conn::new(flow, client_is_lo, t, sender, ts);
            if t.proto == L4Proto::Udp {
                conn.note_datagram(sender);
            }
            let handle = self.conns.insert(hash, conn);
            self.trim_eviction_queues();
            self.eviction.opened_connection(handle);
            self.file_connection(handle, true);
            if let Some(records) = &mut self.conn_records {
                records.open(hash, key, client_is_lo, ts);
                records.count(hash, &key, sender, p, &step);
            }
            step
        } else {
            self.counters.untracked_pkts += 1;
            if self.flows.get_mut(flow).live_connections == 0 {
                self.file_idle_flow(flow);
            }
            Step::default()
        };
        self.count_packet(flow, sender, p, &step);
        // A refusal of this SYN that came first (one branch a connection
        // while none waits).
        if tracked
            && !self.refusals.is_empty()
            && let Some(refused_ns) = self.refusals.take(&key, from_lo, t.tcp_seq, ts)
        {
            self.refuse(t, refused_ns);
        }
    }

    fn count_packet(&mut self, flow: u32, sender: Side, p: &PacketMeta, step: &Step) {
        // IP bytes by the IP header, never more than the frame (a length
        // field that claims more is not believed).
        let ip = p.transport.ip_len.min(p.wire_len);
        self.flows
            .count(flow, self.clock, sender, (1, p.wire_len, ip), p.ts_ns);
        self.record_step(flow, sender, step, p.ts_ns);
    }

    /// An ICMP error refused the segment `t` (as its client sent it): its
    /// connection is refused if that segment is its SYN, still unanswered.
    /// Nothing is counted as a packet of the connection. A refusal that
    /// refuses nothing may have been read before its SYN, which another
    /// worker hands on (the connection found, if any, an earlier one on
    /// the same ports): it waits for it.
    fn refuse(&mut self, t: &Transport, ts: u64) {
        let (key, from_lo) = ConnKey::of(t);
        let hash = self.conns.hash(&key);
        // The error refuses nothing of one idle past its timeout.
        let found = self.unless_due(self.conns.index_of(hash, &key), &key, ts);
        let refused = found.and_then(|at| {
            let conn = self.conns.at_mut(at);
            if Side::sender(from_lo == conn.client_is_lo()) != Side::Client {
                return None;
            }
            conn.refuse(t.tcp_seq).map(|step| (at, step))
        });
        let Some((at, step)) = refused else {
            self.counters.icmp_refusals_unmatched +=
                self.refusals.wait(key, from_lo, t.tcp_seq, ts);
            return;
        };
        let conn = self.conns.at_mut(at);
        let flow = conn.flow;
        // Closed: its timeout shrank; file it by the new deadline.
        let handle = ConnRef::new(hash, conn);
        self.file_connection(handle, false);
        self.record_step(flow, Side::Server, &step, ts);
        if let Some(records) = &mut self.conn_records {
            records.note(hash, &key, Side::Server, &step);
        }
    }

    /// Adds the bytes of a mirrored frame's later fragment to the flow its
    /// first fragment was counted in.
    fn count_bytes(&mut self, t: &Transport, wire_len: u32, ts: u64) {
        let (key, from_lo) = ConnKey::of(t);
        let hash = self.conns.hash(&key);
        let Some(conn) = self.conns.get_hashed(hash, &key) else {
            self.counters.fragments_unmatched += 1;
            return;
        };
        let sender = Side::sender(from_lo == conn.client_is_lo());
        let flow = conn.flow;
        if let Some(records) = &mut self.conn_records {
            records.count_bytes(hash, &key, sender, wire_len);
        }
        // The continuation of the inner IP packet whose first share counted
        // the packet: IP bytes. (The first share counts its inner link
        // header as IP bytes too: a few bytes a packet, in fragmented
        // tunnels only.)
        self.flows
            .count(flow, self.clock, sender, (0, wire_len, wire_len), ts);
    }

    /// Finds or creates a flow, evicting an unanswered one if the table is
    /// full; None when nothing can be evicted.
    /// `connection` is the client port of a new connection to count in it.
    fn attach_flow(
        &mut self,
        key: super::key::FlowKey,
        ts: u64,
        connection: Option<u16>,
    ) -> Option<u32> {
        // As a connection (see `update_keyed`).
        self.expire_flow_if_due(&key, ts);
        if self.flows.len() >= self.config.limits.max_flows
            && self.flows.index_of(&key).is_none()
            && !self.make_room_for_flow()
        {
            return None;
        }
        let (idx, created) = self.flows.attach(key, ts, self.clock, connection);
        if created {
            self.eviction
                .created_flow(idx, self.flows.generations[idx as usize]);
        }
        Some(idx)
    }

    /// Records what is left of a connection's handshake and detaches it from
    /// its flow (and cuts its record, if connections have records).
    pub(super) fn end_connection(&mut self, conn: &mut Conn, why: ConnEnd) {
        let step = conn.flush();
        self.record_step(conn.flow, Side::Client, &step, conn.last_seen_ns);
        if let Some(records) = &mut self.conn_records {
            let hash = self.conns.hash(&conn.key);
            records.end(hash, &conn.key, &step, why, conn.is_closed());
        }
        if self.flows.detach(conn.flow) == 0 {
            self.file_idle_flow(conn.flow);
        }
    }

    /// Records what a packet's step found in its flow: handshake legs and
    /// TCP health events, sent by `sender`.
    fn record_step(&mut self, flow: u32, sender: Side, step: &Step, ts: u64) {
        if step.out_of_order {
            self.counters.handshakes_out_of_order += 1;
        }
        if step.legs == PerSide::default() && step.tcp.is_empty() {
            // Most packets: do not touch the flow's entry (a cache miss).
            return;
        }
        if !step.tcp.is_empty() {
            self.flows.health[flow as usize].record(sender, step.tcp);
        }
        if step.legs == PerSide::default() {
            return;
        }
        let window = self.config.rtt_window;
        let max_sketches = self.config.limits.max_sketches;
        let flow = self.flows.get_mut(flow);
        for side in Side::BOTH {
            if let Some(ns) = step.legs[side] {
                let may_grow = self.sketches < max_sketches;
                let digest =
                    Arc::make_mut(flow.handshake[side].get_or_insert_with(Default::default));
                let us = round_to_micros(ns);
                if side == Side::Client {
                    // For Prometheus' per-pair histograms (the client's view).
                    digest.tally(us);
                }
                match digest.record(ts, us, window, may_grow) {
                    Recorded::Sample => {}
                    Recorded::BecameSketch => self.sketches += 1,
                    Recorded::ReplacedOldest => self.counters.handshake_samples_replaced += 1,
                }
            }
        }
    }

    /// Forgets a flow's digests (the flow leaves the table).
    pub(super) fn drop_digests(&mut self, flow: &FlowEntry) {
        for (_, digest) in flow.handshake.iter() {
            if digest.as_ref().is_some_and(|d| d.is_sketch()) {
                self.sketches -= 1;
            }
        }
    }

    /// [`FlowTable::end_capture`] for a live capture that stops at
    /// `now_ns`: a handshake still under way may yet be answered (its SYN
    /// timeout has not passed), so it has no outcome, as one evicted; one
    /// past its timeout expires first, unanswered. Counted unanswered,
    /// every restart or rollout turned the SYNs of its last seconds into
    /// failed connections in the last records.
    pub fn stop_capture(&mut self, now_ns: u64) {
        self.expire(now_ns);
        for conn in self.conns.values_mut() {
            conn.abandon_handshake();
        }
        self.end_capture();
    }

    /// Records every handshake leg and TCP outcome still pending, and cuts
    /// every connection's record: the capture has ended (a file's end: a
    /// handshake never completed was unanswered).
    pub fn end_capture(&mut self) {
        self.counters.icmp_refusals_unmatched += self.refusals.expire(u64::MAX);
        let mut pending = Vec::new();
        for conn in self.conns.values_mut() {
            let step = conn.flush();
            if let Some(records) = &mut self.conn_records {
                records.end_capture(&conn.key, &step, conn.is_closed());
            }
            if step != Step::default() {
                pending.push((conn.flow, step, conn.last_seen_ns));
            }
        }
        for (flow, step, ts) in pending {
            self.record_step(flow, Side::Client, &step, ts);
        }
    }

    /// The connection records cut since the last call (none unless
    /// [`TableConfig::conn_records`] asks for them).
    pub fn take_conn_records(&mut self) -> Vec<ConnRecord> {
        self.conn_records
            .as_mut()
            .map(ConnRecords::take)
            .unwrap_or_default()
    }

    /// The last records of the flows that left the table since the last
    /// call (none unless [`TableConfig::ended_flows`] asks for them).
    pub fn take_ended_flows(&mut self) -> Vec<EndedFlow> {
        std::mem::take(&mut self.ended)
    }

    /// Keeps the last record of the flow at `idx`, about to leave the
    /// table for `end`, if such records are asked for and there is room.
    pub(super) fn keep_ended_record(&mut self, idx: u32, end: FlowEnd) {
        let Some(max) = self.config.ended_flows else {
            return;
        };
        if self.ended.len() >= max {
            self.counters.ended_flow_records_dropped += 1;
            return;
        }
        let Some(flow) = self.flows.entries[idx as usize].as_ref() else {
            return;
        };
        // Its percentiles are in the record: the digests go with the flow
        // (counted no more, they must not stay alive in the queue).
        let as_of = RecordAt {
            clock: self.clock,
            as_of_ns: self.now_ns,
            since_ns: self.since_at(self.now_ns),
            window: self.config.rtt_window,
            digests: false,
        };
        let record = as_of.record(
            flow,
            &self.flows.meters[idx as usize],
            &self.flows.health[idx as usize],
        );
        self.ended.push(EndedFlow { record, end });
    }

    /// When observation began, for rates as of `as_of_ns`.
    fn since_at(&self, as_of_ns: u64) -> u64 {
        if self.since_ns == u64::MAX {
            as_of_ns
        } else {
            self.since_ns
        }
    }

    /// Drops idle connections, flows and fragments as of `now_ns`: only
    /// what has come due is looked at.
    pub fn expire(&mut self, now_ns: u64) {
        self.expire_due(now_ns);
        self.fragments.expire(now_ns);
        self.counters.icmp_refusals_unmatched += self.refusals.expire(now_ns);
        self.compact_eviction_queues();
    }

    /// The observation began at `ts_ns` (the pipeline's first packet, which
    /// another shard may have had): rates count from then.
    pub fn observed_since(&mut self, ts_ns: u64) {
        self.since_ns = self.since_ns.min(ts_ns);
    }

    /// Appends every flow as of `as_of_ns` to `out`. Handshake digests
    /// whose samples all left the RTT window free their memory meanwhile.
    pub fn export(&mut self, as_of_ns: u64, out: &mut Vec<FlowRecord>) {
        let window = self.config.rtt_window;
        let at = RecordAt {
            clock: self.clock,
            as_of_ns,
            since_ns: self.since_at(as_of_ns),
            window,
            digests: true,
        };
        let mut freed = 0;
        out.reserve(self.flows.len());
        let flows = self
            .flows
            .entries
            .iter_mut()
            .zip(self.flows.meters.iter())
            .zip(self.flows.health.iter());
        for ((flow, meter), health) in flows {
            let Some(flow) = flow else {
                continue;
            };
            for side in Side::BOTH {
                let digest = &mut flow.handshake[side];
                if digest
                    .as_ref()
                    .is_some_and(|d| d.count(as_of_ns, window) == 0)
                {
                    freed += usize::from(digest.as_ref().is_some_and(|d| d.is_sketch()));
                    *digest = None;
                }
            }
            out.push(at.record(flow, meter, health));
        }
        self.sketches -= freed;
    }

    pub fn counters(&self) -> TableCounters {
        let limits = self.config.limits;
        TableCounters {
            active_connections: self.conns.len() as u64,
            active_flows: self.flows.len() as u64,
            active_sketches: self.sketches as u64,
            connection_capacity: limits.max_connections as u64,
            flow_capacity: limits.max_flows as u64,
            sketch_capacity: limits.max_sketches as u64,
            conn_records_dropped: self.conn_records.as_ref().map_or(0, |r| r.dropped),
            ..self.counters
        }
    }

    /// The oldest capture time seen, if any packet was.
    pub fn since_ns(&self) -> Option<u64> {
        (self.since_ns != u64::MAX).then_some(self.since_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::limits::Limits;
    use crate::packet::Addr;
    use crate::wire::tcp::flags::{ACK, FIN, RST, SYN};

    const MS: u64 = 1_000_000;

    fn addr(i: u32) -> Addr {
        let b = i.to_be_bytes();
        Addr::from_v4([198, 18 + (b[1] & 1), b[2], b[3]])
    }

    fn tcp(ts_ns: u64, src: Addr, sport: u16, dst: Addr, dport: u16, f: u8) -> PacketMeta {
        PacketMeta {
            ts_ns,
            wire_len: 60,
            counts_packet: true,
            duplicate: false,
            copy_key: 0,
            copy_part: crate::ingest::CopyPart::WHOLE,
            refusal: false,
            mirror: None,
            transport: Transport {
                proto: L4Proto::Tcp,
                src,
                dst,
                src_port: sport,
                dst_port: dport,
                tcp_flags: f,
                tcp_seq: 1,
                // Every ACK acknowledges the other side's SYN (sequence
                // number 1): the SYN-ACK the client's SYN, the client's
                // ACK the SYN-ACK.
                tcp_ack: if f & ACK != 0 { 2 } else { 0 },
                tcp_window: 0,
                payload_len: 0,
                ip_len: 0,
                fragment: Fragment::Whole,
            },
        }
    }

    /// An ICMP error refusing `client`'s segment with sequence number `seq`
    /// to `server`'s port 443: counted in no flow, only matched to its SYN.
    fn refusal(ts_ns: u64, client: Addr, port: u16, server: Addr, seq: u32) -> PacketMeta {
        let segment = tcp(ts_ns, client, port, server, 443, 0);
        PacketMeta {
            counts_packet: false,
            refusal: true,
            wire_len: 0,
            transport: Transport {
                tcp_seq: seq,
                ..segment.transport
            },
            ..segment
        }
    }

    fn table(limits: Limits) -> FlowTable {
        table_of(TableConfig {
            limits,
            ..TableConfig::default()
        })
    }

    fn table_of(config: TableConfig) -> FlowTable {
        FlowTable::new(config, ahash::RandomState::with_seeds(1, 2, 3, 4))
    }

    /// A table with live timeouts (connections and flows expire).
    fn live_table() -> FlowTable {
        live_table_of(TableConfig::default().limits)
    }

    /// A whole connection: handshake, a request and a reply.
    fn converse(t: &mut FlowTable, ts: u64, client: Addr, port: u16, server: Addr) {
        t.update(&tcp(ts, client, port, server, 443, SYN));
        t.update(&tcp(ts + MS, server, 443, client, port, SYN | ACK));
        t.update(&tcp(ts + 2 * MS, client, port, server, 443, ACK));
        t.update(&tcp(ts + 3 * MS, server, 443, client, port, ACK));
    }

    /// A connection resumed without a SYN after its flow's idle timeout,
    /// by the other side: the new sender is the client, whether
    /// maintenance removed the old flow before or not (its direction was
    /// kept, giving a flow whose client never sent).
    #[test]
    fn a_flow_past_its_timeout_decides_no_roles() {
        let (a, b) = (addr(1), addr(2));
        let resumed_at = 301 * crate::time::SECOND;
        for maintained in [false, true] {
            let mut t = live_table();
            t.update(&tcp(0, a, 40_000, b, 40_001, ACK));
            if maintained {
                t.expire(resumed_at - MS);
            }
            t.update(&tcp(resumed_at, b, 40_001, a, 40_000, ACK));
            t.expire(resumed_at);
            let mut out = Vec::new();
            t.export(t.now_ns(), &mut out);
            assert_eq!(out.len(), 1, "maintained: {maintained}");
            let f = &out[0];
            assert_eq!(f.key.client, b, "maintained: {maintained}");
            assert_eq!(f.sent[Side::Client].pkts, 1, "maintained: {maintained}");
        }
    }

    /// A live table of these bounds ([`table`]'s live twin).
    fn live_table_of(limits: Limits) -> FlowTable {
        table_of(TableConfig {
            timeouts: crate::flow::Timeouts::LIVE,
            limits,
            ..TableConfig::default()
        })
    }

    /// 40 new connections to `server`'s port 443 from `start`, 10 ms apart,
    /// each answered (SYN-ACK, ACK, ACK) after the next one's SYN: a steady
    /// stream of new connections. The client of each, by its number.
    fn answered_after_the_next(t: &mut FlowTable, server: Addr, start: u64) -> fn(u32) -> Addr {
        let client: fn(u32) -> Addr = |i| addr(1_000 + i);
        let answer = |t: &mut FlowTable, i: u32, ts: u64| {
            t.update(&tcp(ts, server, 443, client(i), 50_000, SYN | ACK));
            t.update(&tcp(ts + MS, client(i), 50_000, server, 443, ACK));
            t.update(&tcp(ts + 2 * MS, server, 443, client(i), 50_000, ACK));
        };
        for i in 0..40u32 {
            let ts = start + u64::from(i) * 10 * MS;
            t.update(&tcp(ts, client(i), 50_000, server, 443, SYN));
            if i > 0 {
                answer(t, i - 1, ts + MS);
            }
        }
        answer(t, 39, start + 400 * MS);
        client
    }

    /// A flow's packets from each side, and its connections.
    fn sent_and_connections(f: &FlowRecord) -> (u64, u64, u64) {
        (
            f.sent[Side::Client].pkts,
            f.sent[Side::Server].pkts,
            f.connections,
        )
    }

    fn flows(t: &mut FlowTable) -> Vec<FlowRecord> {
        let mut out = Vec::new();
        t.export(t.now_ns(), &mut out);
        out
    }

    /// A worker counts in batches, looking connections up for the whole
    /// batch before counting any packet of it; packets earlier in a batch
    /// open, evict and end connections (which moves others in the
    /// storage). The result must be what counting one at a time gives.
    #[test]
    fn counting_in_batches_equals_counting_one_at_a_time() {
        let limits = Limits {
            max_connections: 40,
            max_flows: 1_000,
            max_sketches: 10,
        };
        let (mut one, mut batched) = (table(limits), table(limits));
        let server = Addr::from_v4([198, 19, 0, 1]);
        // A fixed pseudo-random walk over 120 clients' connections (more
        // than the table holds): handshakes, data, resets and closes, and
        // new SYNs on closed 5-tuples.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut packets = Vec::new();
        for n in 0..6_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let client = addr((state % 120) as u32);
            let port = 40_000 + ((state >> 8) % 2) as u16;
            let ts = n * MS;
            let p = match (state >> 16) % 8 {
                0 => tcp(ts, client, port, server, 443, SYN),
                1 => tcp(ts, server, 443, client, port, SYN | ACK),
                2 => tcp(ts, server, 443, client, port, RST),
                3 => tcp(ts, client, port, server, 443, FIN | ACK),
                _ => tcp(ts, client, port, server, 443, ACK),
            };
            packets.push(p);
        }
        for p in &packets {
            one.update(p);
        }
        for chunk in packets.chunks(32) {
            batched.update_batch(chunk);
        }
        let c = one.counters();
        assert!(
            c.connections_evicted + c.connections_evicted_recent > 0,
            "the walk must evict connections: {c:?}"
        );
        assert_eq!(c, batched.counters());
        let described = |t: &mut FlowTable| {
            let mut all: Vec<String> = flows(t).iter().map(|f| format!("{f:?}")).collect();
            all.sort();
            all
        };
        assert_eq!(described(&mut one), described(&mut batched));
    }

    /// Two connections between high ports (nothing but their SYNs says who
    /// serves) take turns in a table of one connection: each is evicted
    /// and opened again mid-stream, often by its server's packet. Each
    /// keeps its flow; guessing its client by that first sender split each
    /// into two one-way flows, keyed the wrong way round.
    #[test]
    fn a_connection_opened_again_mid_stream_keeps_its_flow() {
        let mut t = table(Limits {
            max_connections: 1,
            max_flows: 100,
            max_sketches: 10,
        });
        let server = Addr::from_v4([198, 19, 0, 1]);
        let clients = [addr(1), addr(2)];
        for (i, &client) in clients.iter().enumerate() {
            t.update(&tcp(i as u64 * MS, client, 40_000, server, 50_051, SYN));
        }
        for n in 0..20u64 {
            let client = clients[(n % 2) as usize];
            let ts = (10 + 2 * n) * MS;
            t.update(&tcp(ts, server, 50_051, client, 40_000, ACK));
            t.update(&tcp(ts + MS / 2, client, 40_000, server, 50_051, ACK));
        }
        assert!(t.counters().connections_evicted > 0);
        let mut keys: Vec<(Addr, Addr, u16)> = flows(&mut t)
            .iter()
            .map(|f| (f.key.client, f.key.server, f.key.server_port))
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            clients.map(|c| (c, server, 50_051)).to_vec(),
            "one flow a connection, its server the SYN's"
        );
    }

    /// Fragments take their flow from the first fragment: copies of them
    /// and one that comes after the last still do.
    #[test]
    fn a_datagram_s_fragments_count_in_its_flow_copied_and_out_of_order() {
        let mut t = live_table();
        let (client, server) = (addr(1), Addr::from_v4([198, 19, 0, 1]));
        let fragment = |ts: u64, fragment: Fragment| {
            let mut p = tcp(ts, client, 40_000, server, 53, 0);
            p.transport.proto = L4Proto::Udp;
            p.transport.fragment = fragment;
            p
        };
        let first = Fragment::First { ident: 7 };
        let middle = Fragment::Later {
            ident: 7,
            last: false,
        };
        let last = Fragment::Later {
            ident: 7,
            last: true,
        };
        // As a SPAN of both ends delivers them, the last before the middle
        // one: every copy is a packet of the flow.
        for (ts, f) in [(0, first), (10, last), (20, middle)] {
            t.update(&fragment(ts * 1_000, f));
            t.update(&fragment(ts * 1_000 + 500, f));
        }
        let [f] = &flows(&mut t)[..] else {
            panic!("one flow")
        };
        assert_eq!(f.sent[Side::Client].pkts, 6);
        assert_eq!(t.counters().fragments_unmatched, 0);
        // Forgotten about a second after the last fragment (not at the
        // 30 s fragment timeout): a fragment then is unmatched.
        t.expire(2 * crate::time::SECOND);
        t.update(&fragment(2 * crate::time::SECOND, middle));
        assert_eq!(t.counters().fragments_unmatched, 1);
    }

    /// A SPAN of both ports sends every packet twice, microseconds apart:
    /// the copies count as packets, but not as retransmissions, nor as
    /// the SYN a handshake is timed from.
    #[test]
    fn a_mirrors_copies_are_packets_not_retransmissions() {
        let mut t = table_of(TableConfig::default());
        let (client, server) = (addr(1), Addr::from_v4([198, 19, 0, 1]));
        let copy = |p: PacketMeta| PacketMeta {
            ts_ns: p.ts_ns + 20_000,
            duplicate: true,
            ..p
        };
        for p in [
            tcp(0, client, 40_000, server, 443, SYN),
            tcp(5 * MS, server, 443, client, 40_000, SYN | ACK),
            tcp(6 * MS, client, 40_000, server, 443, ACK),
        ] {
            t.update(&p);
            t.update(&copy(p));
        }
        let [f] = &flows(&mut t)[..] else {
            panic!("one flow")
        };
        assert_eq!(f.sent[Side::Client].pkts, 4, "copies are packets");
        assert_eq!(f.tcp.retransmits(), 0);
        assert_eq!(
            f.percentiles[Side::Client].map(|p| p.p50),
            Some(5_000),
            "timed from the first SYN, not its copy"
        );
    }

    /// An ICMP error that quotes a connection's SYN (kube-proxy's port
    /// unreachable for a Service without endpoints, a firewall's
    /// administratively prohibited) refuses it at once, and counts no
    /// packet. One quoting another sequence number (stale, or forged), a
    /// connection already answered, or no connection changes nothing.
    /// Whichever end has the lower address, one packet at a time or in a
    /// batch.
    #[test]
    fn an_icmp_error_quoting_the_syn_refuses_the_connection() {
        let ends = [
            (addr(1), Addr::from_v4([198, 19, 0, 1])),
            (
                Addr::from_v4([198, 19, 0, 9]),
                Addr::from_v4([198, 18, 0, 5]),
            ),
        ];
        for ((client, server), batch) in ends.into_iter().flat_map(|e| [(e, false), (e, true)]) {
            refusal_case(client, server, batch);
        }
    }

    fn refusal_case(client: Addr, server: Addr, batch: bool) {
        let mut t = table_of(TableConfig {
            conn_records: Some(super::super::conn_records::ConnRecordConfig {
                active_timeout_ns: 60 * crate::time::SECOND,
                max_pending: 100,
            }),
            ..TableConfig::default()
        });
        let refusal = |ts: u64, port: u16, seq: u32| refusal(ts, client, port, server, seq);
        let packets = [
            tcp(0, client, 40_000, server, 443, SYN),
            refusal(MS, 40_000, 1),
            tcp(0, client, 40_001, server, 443, SYN),
            refusal(MS, 40_001, 99),
            tcp(0, client, 40_002, server, 443, SYN),
            tcp(MS, server, 443, client, 40_002, SYN | ACK),
            tcp(2 * MS, client, 40_002, server, 443, ACK),
            tcp(3 * MS, server, 443, client, 40_002, ACK),
            refusal(5 * MS, 40_002, 1),
            refusal(5 * MS, 40_003, 1),
        ];
        if batch {
            t.update_batch(&packets);
        } else {
            packets.iter().for_each(|p| t.update(p));
        }
        t.end_capture();
        let [f] = &flows(&mut t)[..] else {
            panic!("one flow")
        };
        assert_eq!(f.key.client, client);
        assert_eq!(f.total_pkts(), 6, "two SYNs and a conversation");
        assert_eq!(f.connections, 3);
        let c = f.tcp.connections;
        assert_eq!(
            (c.refused, c.unanswered, c.established, c.reset),
            (1, 1, 1, 0)
        );
        assert_eq!(f.tcp.rsts(), 0, "no RST was sent");
        let refused: u64 = t
            .take_conn_records()
            .iter()
            .map(|r| r.health.connections.refused)
            .sum();
        assert_eq!(refused, 1, "the connection's record says so too");
        assert_eq!(
            t.counters().icmp_refusals_unmatched,
            3,
            "those of another sequence number, of an answered connection and of one never seen"
        );
    }

    /// A client sends its SYN again after an ICMP refusal (as after a
    /// RST): one connection, refused once, each error matched to a SYN.
    #[test]
    fn a_syn_sent_again_after_an_icmp_refusal_is_refused_once() {
        let mut t = table(TableConfig::default().limits);
        let (client, server) = (addr(1), Addr::from_v4([198, 19, 0, 1]));
        for n in 0..3u64 {
            let ts = n * 500 * MS;
            t.update(&tcp(ts, client, 40_000, server, 443, SYN));
            t.update(&refusal(ts + MS, client, 40_000, server, 1));
        }
        t.end_capture();
        let [f] = &flows(&mut t)[..] else {
            panic!("one flow")
        };
        assert_eq!(f.connections, 1);
        assert_eq!(f.tcp.connections.refused, 1);
        assert_eq!(
            f.tcp.sent(Side::Client).retransmits,
            2,
            "the SYN sent again"
        );
        assert_eq!(t.counters().icmp_refusals_unmatched, 0);
    }

    /// With several receive queues, the server's RST can reach the table
    /// before the SYN it refuses (which another worker hands on): the
    /// connection is still refused, one flow, its client the SYN's sender.
    #[test]
    fn a_rst_read_before_its_syn_refuses_it() {
        let mut t = table_of(TableConfig::default());
        let (client, server) = (addr(1), Addr::from_v4([198, 19, 0, 1]));
        let mut rst = tcp(MS / 10, server, 443, client, 40_000, RST | ACK);
        rst.transport.tcp_ack = 2;
        t.update(&rst);
        t.update(&tcp(0, client, 40_000, server, 443, SYN));
        t.end_capture();
        let [f] = &flows(&mut t)[..] else {
            panic!("one flow")
        };
        assert_eq!((f.key.client, f.key.server_port), (client, 443));
        let c = f.tcp.connections;
        assert_eq!((c.refused, c.reset, c.open), (1, 0, 0));
    }

    /// With several receive queues, a refusal can reach the table before
    /// the SYN it answers (which another worker hands on): it waits for
    /// it, a while, and refuses it when it comes. One older than its SYN
    /// refused an earlier attempt; one that waited too long is given up.
    #[test]
    fn an_icmp_error_read_before_its_syn_still_refuses_it() {
        let (client, server) = (addr(1), Addr::from_v4([198, 19, 0, 1]));
        let refusal = |ts: u64, port: u16| refusal(ts, client, port, server, 1);
        // Both with sequence number 1: the refusal quotes the SYN.
        let syn = |ts: u64, port: u16| tcp(ts, client, port, server, 443, SYN);
        for batch in [false, true] {
            let mut t = table_of(TableConfig::default());
            let feed = |t: &mut FlowTable, packets: &[PacketMeta]| {
                if batch {
                    t.update_batch(packets);
                } else {
                    packets.iter().for_each(|p| t.update(p));
                }
            };
            // A second attempt on the ports of a refused connection, with
            // another sequence number.
            let second = |p: PacketMeta| PacketMeta {
                transport: Transport {
                    tcp_seq: 7,
                    ..p.transport
                },
                ..p
            };
            feed(
                &mut t,
                &[
                    refusal(MS, 40_010),
                    syn(0, 40_010),
                    refusal(MS, 40_011),
                    syn(2 * MS, 40_011),
                    refusal(MS, 40_012),
                    syn(0, 40_013),
                    refusal(MS, 40_013),
                    second(refusal(3 * MS, 40_013)),
                    second(syn(2 * MS, 40_013)),
                ],
            );
            t.expire(3 * MS + super::super::refusals::WAIT_NS + 1);
            feed(&mut t, &[syn(0, 40_012)]);
            t.end_capture();
            let [f] = &flows(&mut t)[..] else {
                panic!("one flow")
            };
            let c = f.tcp.connections;
            assert_eq!((c.refused, c.unanswered), (3, 2), "batch {batch}");
            assert_eq!(t.counters().icmp_refusals_unmatched, 2, "batch {batch}");
        }
    }

    #[test]
    fn a_syn_flood_evicts_only_unanswered_state() {
        let mut t = table(Limits {
            max_connections: 100,
            max_flows: 80,
            max_sketches: 10,
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
        let real: Vec<_> = flows(&mut t)
            .into_iter()
            .filter(|f| f.sent[Side::Server].pkts > 0)
            .collect();
        assert_eq!(real.len(), 20);
        for f in real {
            assert_eq!(sent_and_connections(&f), (4, 4, 2), "{f:?}");
            assert!(f.handshake[Side::Client].is_some());
        }
    }

    /// A SYN flood against a port that answers: the server's SYN-ACK to
    /// each spoofed source answers nothing (no spoofer acknowledges it), so
    /// the real connections are kept, though the flood was seen later
    /// than they were. (The SYN-ACK answered: the first step found nothing
    /// to give up, the second gave up the least recently seen, the real
    /// connections, and kept the flood.)
    #[test]
    fn a_syn_flood_the_server_answers_evicts_only_half_open_state() {
        let mut t = table(Limits {
            max_connections: 100,
            max_flows: 80,
            max_sketches: 10,
        });
        let server = Addr::from_v4([198, 19, 0, 1]);
        for i in 0..20 {
            converse(&mut t, 0, addr(i), 40_000 + i as u16, server);
        }
        for i in 0..10_000u32 {
            let ts = 10 * MS + 10 * u64::from(i);
            let (source, port) = (addr(1000 + i), 1024 + (i % 60_000) as u16);
            t.update(&tcp(ts, source, port, server, 443, SYN));
            t.update(&tcp(ts + 1, server, 443, source, port, SYN | ACK));
            // The real connections go on, less often than the flood.
            if i % 1_000 == 999 {
                for r in 0..20 {
                    let port = 40_000 + r as u16;
                    t.update(&tcp(ts + 2, addr(r), port, server, 443, ACK));
                    t.update(&tcp(ts + 3, server, 443, addr(r), port, ACK));
                }
            }
        }
        let c = t.counters();
        assert_eq!(c.connections_evicted_recent, 0, "{c:?}");
        assert!(c.connections_evicted >= 10_000 - 100, "{c:?}");
        let real: Vec<_> = flows(&mut t)
            .into_iter()
            .filter(|f| (0..20).any(|r| f.key.client == addr(r)))
            .collect();
        assert_eq!(real.len(), 20);
        for f in real {
            assert_eq!(sent_and_connections(&f), (12, 12, 1), "{f:?}");
        }
    }

    /// A handshake given up to make room before its SYN timeout is no
    /// unanswered connection: its answer may come after the flood (a SYN
    /// flood made a healthy service's pending connections failures). One
    /// idle past the timeout still is.
    #[test]
    fn a_handshake_evicted_before_its_timeout_is_not_unanswered() {
        let server = Addr::from_v4([198, 19, 0, 1]);
        let unanswered = |flood_at: u64| {
            let mut t = table(Limits {
                max_connections: 100,
                max_flows: 10_000,
                max_sketches: 10,
            });
            t.update(&tcp(0, addr(1), 40_000, server, 443, SYN));
            for i in 0..1_000u32 {
                let syn = tcp(
                    flood_at + u64::from(i),
                    addr(1000 + i),
                    1024,
                    server,
                    443,
                    SYN,
                );
                t.update(&syn);
            }
            let c = t.counters();
            assert!(c.connections_evicted >= 900, "{c:?}");
            flows(&mut t)
                .into_iter()
                .find(|f| f.key.client == addr(1))
                .unwrap()
                .tcp
                .connections
                .unanswered
        };
        assert_eq!(unanswered(MS), 0, "evicted within a millisecond");
        assert_eq!(
            unanswered(60 * crate::time::SECOND),
            1,
            "idle past the SYN timeout"
        );
    }

    /// A live capture that stops leaves a handshake under way (a SYN; a
    /// SYN and its SYN-ACK) without an outcome, as it may yet be answered;
    /// a file's end counts it unanswered, and so does a stop past its SYN
    /// timeout. A refused or completed one keeps its outcome either way.
    #[test]
    fn a_stop_leaves_handshakes_under_way_without_an_outcome() {
        let server = Addr::from_v4([198, 19, 0, 1]);
        let s = crate::time::SECOND;
        for (stop_at, unanswered) in [(Some(s), 0), (None, 2), (Some(31 * s), 2)] {
            let mut t = live_table();
            t.update(&tcp(0, addr(1), 40_000, server, 443, SYN));
            t.update(&tcp(0, addr(1), 40_001, server, 443, SYN));
            t.update(&tcp(MS, server, 443, addr(1), 40_001, SYN | ACK));
            t.update(&tcp(2 * MS, addr(1), 40_001, server, 443, ACK));
            t.update(&tcp(0, addr(1), 40_002, server, 443, SYN));
            t.update(&tcp(MS, server, 443, addr(1), 40_002, RST | ACK));
            t.update(&tcp(0, addr(1), 40_003, server, 443, SYN));
            t.update(&tcp(MS, server, 443, addr(1), 40_003, SYN | ACK));
            match stop_at {
                Some(at) => t.stop_capture(at),
                None => t.end_capture(),
            }
            let [f] = &flows(&mut t)[..] else {
                panic!("one flow")
            };
            let c = f.tcp.connections;
            assert_eq!(
                (c.unanswered, c.established, c.refused),
                (unanswered, 1, 1),
                "{stop_at:?}"
            );
        }
    }

    #[test]
    fn a_table_full_of_answered_connections_gives_up_the_one_closest_to_expiry() {
        let mut t = table(Limits {
            max_connections: 5,
            max_flows: 100,
            max_sketches: 10,
        });
        let server = Addr::from_v4([198, 19, 0, 1]);
        for i in 0..5 {
            t.update(&tcp(0, addr(i), 40_000, server, 443, SYN));
            t.update(&tcp(MS, server, 443, addr(i), 40_000, SYN | ACK));
            t.update(&tcp(2 * MS, addr(i), 40_000, server, 443, ACK));
        }
        converse(&mut t, 10 * MS, addr(9), 40_001, server);
        let c = t.counters();
        assert_eq!(
            (
                c.active_connections,
                c.untracked_pkts,
                c.connections_evicted_recent
            ),
            (5, 0, 1),
            "{c:?}"
        );
        let late = flows(&mut t)
            .into_iter()
            .find(|f| f.key.client == addr(9))
            .unwrap();
        assert_eq!(
            (
                late.sent[Side::Client].pkts,
                late.sent[Side::Server].pkts,
                late.connections
            ),
            (2, 2, 1),
        );
    }

    /// Spoofed state with one packet back (a bare ACK after a SYN; a UDP
    /// datagram each way), refreshed, then real connections: the real ones
    /// all get in, exact, however full the table was.
    #[test]
    fn a_flood_answered_by_one_packet_cannot_blind_the_table() {
        let mut t = table(Limits {
            max_connections: 400,
            max_flows: 300,
            max_sketches: 10,
        });
        let server = Addr::from_v4([198, 19, 0, 1]);
        let flood = |t: &mut FlowTable, round: u64| {
            for i in 0..2_000u32 {
                let ts = round * 30 * crate::time::SECOND + u64::from(i);
                let src = addr(5_000 + i);
                let port = 1024 + (i % 50_000) as u16;
                if i % 2 == 0 {
                    t.update(&tcp(ts, src, port, server, 443, SYN));
                    t.update(&tcp(ts, server, 443, src, port, ACK));
                } else {
                    let mut out = tcp(ts, src, port, server, 53, 0);
                    out.transport.proto = L4Proto::Udp;
                    let mut back = tcp(ts, server, 53, src, port, 0);
                    back.transport.proto = L4Proto::Udp;
                    t.update(&out);
                    t.update(&back);
                }
            }
        };
        for round in 0..3 {
            flood(&mut t, round);
        }
        let start = 100 * crate::time::SECOND;
        for i in 0..200 {
            converse(
                &mut t,
                start + u64::from(i) * MS,
                addr(i),
                40_000 + i as u16,
                server,
            );
        }
        let c = t.counters();
        assert!(c.connections_evicted > 0 && c.flows_evicted > 0, "{c:?}");
        let real: Vec<_> = flows(&mut t)
            .into_iter()
            .filter(|f| f.key.client.to_ip().to_string().starts_with("198.18.0."))
            .filter(|f| (0..200).any(|i| f.key.client == addr(i)))
            .collect();
        assert_eq!(real.len(), 200, "{c:?}");
        for f in real {
            assert_eq!(sent_and_connections(&f), (2, 2, 1), "{f:?}");
        }
    }

    /// A full table under a steady stream of new connections, each
    /// answered after the next one's SYN: the flows whose connections
    /// ended a minute ago make room, and every new connection is counted
    /// whole. Before, each new SYN evicted the flow of the one before it,
    /// still unanswered, which its answer then made again, evicting the
    /// next: nothing new was counted whole while old flows held the table.
    #[test]
    fn new_flows_at_a_full_table_are_not_given_up_before_their_answers() {
        let mut t = live_table_of(Limits {
            max_connections: 1_000,
            max_flows: 50,
            max_sketches: 10,
        });
        let server = Addr::from_v4([198, 19, 0, 1]);
        let s = crate::time::SECOND;
        for i in 0..50 {
            let port = 40_000 + i as u16;
            converse(&mut t, 0, addr(i), port, server);
            t.update(&tcp(s, addr(i), port, server, 443, FIN | ACK));
            t.update(&tcp(s, server, 443, addr(i), port, FIN | ACK));
        }
        // Their connections closed and expired; their flows stay, idle.
        t.expire(20 * s);
        assert_eq!(
            (t.counters().active_flows, t.counters().active_connections),
            (50, 0)
        );
        let client = answered_after_the_next(&mut t, server, 60 * s);
        let c = t.counters();
        assert_eq!((c.flows_evicted, c.idle_flows_evicted), (0, 40), "{c:?}");
        let new: Vec<_> = flows(&mut t)
            .into_iter()
            .filter(|f| (0..40).any(|i| f.key.client == client(i)))
            .collect();
        assert_eq!(new.len(), 40);
        for f in new {
            assert_eq!(sent_and_connections(&f), (2, 2, 1), "{f:?}");
        }
    }

    /// The same at a full connection table: connections open and idle a
    /// minute hold it, new connections come, each answered after the next
    /// one's SYN. The oldest unanswered connection went first, and that was
    /// the newest: all 40 handshakes were lost.
    #[test]
    fn new_connections_at_a_full_table_are_not_given_up_before_their_answers() {
        let mut t = live_table_of(Limits {
            max_connections: 50,
            max_flows: 1_000,
            max_sketches: 1_000,
        });
        let server = Addr::from_v4([198, 19, 0, 1]);
        for i in 0..50 {
            converse(&mut t, 0, addr(i), 40_000 + i as u16, server);
        }
        assert_eq!(t.counters().active_connections, 50);
        let client = answered_after_the_next(&mut t, server, 60 * crate::time::SECOND);
        let c = t.counters();
        assert_eq!(
            (c.connections_evicted, c.connections_emergency_expired),
            (0, 40),
            "{c:?}"
        );
        let new: Vec<_> = flows(&mut t)
            .into_iter()
            .filter(|f| (0..40).any(|i| f.key.client == client(i)))
            .collect();
        assert_eq!(new.len(), 40);
        for f in new {
            assert!(f.handshake[Side::Client].is_some(), "{f:?}");
            assert!(f.handshake[Side::Server].is_some(), "{f:?}");
        }
    }

    #[test]
    fn idle_state_expires_by_its_timeout_without_a_walk() {
        let mut t = live_table();
        let server = Addr::from_v4([198, 19, 0, 1]);
        let s = crate::time::SECOND;
        converse(&mut t, 1_000 * s, addr(1), 40_000, server);
        // Closed: gone 10 s after its last packet (and its flow 300 s later).
        let fin = |ts, from_client: bool| {
            let (a, ap, b, bp) = if from_client {
                (addr(1), 40_000, server, 443)
            } else {
                (server, 443, addr(1), 40_000)
            };
            tcp(ts, a, ap, b, bp, FIN | ACK)
        };
        t.update(&fin(1_001 * s, true));
        t.update(&fin(1_001 * s, false));
        t.expire(1_005 * s);
        assert_eq!(t.counters().active_connections, 1);
        t.expire(1_012 * s);
        let c = t.counters();
        assert_eq!(
            (c.active_connections, c.connections_expired, c.active_flows),
            (0, 1, 1)
        );
        t.expire(1_302 * s);
        assert_eq!(t.counters().active_flows, 0);
        // An open connection kept busy is refiled, never expired.
        converse(&mut t, 2_000 * s, addr(2), 40_001, server);
        for k in 1..20 {
            t.update(&tcp(
                (2_000 + k * 100) * s,
                addr(2),
                40_001,
                server,
                443,
                ACK,
            ));
            t.expire((2_000 + k * 100) * s + 1);
        }
        assert_eq!(t.counters().active_connections, 1);
        assert_eq!(t.counters().connections_expired, 1);
    }

    /// A worker expires idle state once a second of capture time, and with
    /// several workers each ticks on its own packets, snapshots expire too:
    /// a packet that comes after its connection's (or its flow's) timeout
    /// must start a new one, and an ICMP error refuse nothing of it,
    /// whether or not and whenever in the second expiry has come round to
    /// the old one; with live timeouts, and with a SYN timeout longer than
    /// the idle one (a completed handshake shortens the deadline).
    #[test]
    fn what_a_packet_after_a_timeout_starts_does_not_depend_on_maintenance() {
        let s = crate::time::SECOND;
        let server = Addr::from_v4([198, 19, 0, 1]);
        let c = addr(1);
        let handshake = |ts: u64, port: u16| {
            [
                tcp(ts, c, port, server, 443, SYN),
                tcp(ts + MS, server, 443, c, port, SYN | ACK),
                tcp(ts + 2 * MS, c, port, server, 443, ACK),
            ]
        };
        let refusal = |ts: u64, port: u16| refusal(ts, c, port, server, 1);
        let long_syn = crate::flow::Timeouts {
            tcp_idle_ns: 5 * s,
            tcp_closed_ns: 5 * s,
            tcp_handshake_ns: 30 * s,
            udp_idle_ns: 5 * s,
        };
        for (timeouts, idle) in [(crate::flow::Timeouts::LIVE, 300 * s), (long_syn, 5 * s)] {
            // Each deadline falls 0.302 s into a second, each packet after
            // it 0.6 s into that second: expiry at 0.25 or 0.5 s comes
            // before it in the same second.
            let at = |base: u64| base + idle + 902 * MS;
            let mut packets = Vec::new();
            // Open, then silent past its timeout: the next packet starts a
            // connection.
            packets.extend(handshake(1_000 * s + 300 * MS, 40_000));
            packets.push(tcp(at(1_000 * s), c, 40_000, server, 443, ACK));
            // Open, then silent past its timeout: a new connection on its
            // flow starts a flow (and it expires).
            packets.extend(handshake(3_000 * s + 300 * MS, 40_001));
            packets.extend(handshake(at(3_000 * s), 40_002));
            // A SYN unanswered past the SYN timeout (30 s): an ICMP error
            // quoting it after then refuses nothing.
            packets.push(tcp(5_000 * s + 302 * MS, c, 40_003, server, 443, SYN));
            packets.push(refusal(5_030 * s + 902 * MS, 40_003));
            packets.push(tcp(6_000 * s, c, 40_004, server, 443, SYN));

            let run = |phase: Option<u64>| {
                let mut t = table_of(TableConfig {
                    timeouts,
                    ..TableConfig::default()
                });
                let mut next_tick = phase.map(|p| 1_000 * s + p);
                for p in &packets {
                    while let Some(tick) = next_tick.filter(|&tick| tick <= p.ts_ns) {
                        t.expire(tick);
                        next_tick = Some(tick + s);
                    }
                    t.update(p);
                }
                t.expire(packets.last().expect("packets").ts_ns);
                let described = format!("{:?}", flows(&mut t));
                (t.counters(), described)
            };
            let unticked = run(None);
            let c = &unticked.0;
            assert_eq!(
                (
                    c.connections_expired,
                    c.flows_expired,
                    c.icmp_refusals_unmatched
                ),
                (5, 5, 1),
                "every connection but the last SYN's, each flow before it, the refusal \
                 late: {c:?}"
            );
            for phase in [0, 250 * MS, 500 * MS, 750 * MS] {
                assert_eq!(
                    run(Some(phase)),
                    unticked,
                    "ticks {phase} ns into each second"
                );
            }
        }
    }

    #[test]
    fn connection_records_are_cut_when_connections_end_and_when_due() {
        use crate::flow::{ConnEnd, ConnRecordConfig};
        let s = crate::time::SECOND;
        let config = TableConfig {
            timeouts: crate::flow::Timeouts::LIVE,
            conn_records: Some(ConnRecordConfig {
                active_timeout_ns: 60 * s,
                max_pending: 3,
            }),
            ..TableConfig::default()
        };
        let mut t = table_of(config);
        let server = Addr::from_v4([198, 19, 0, 1]);
        // Closed by FINs, gone after its closed timeout.
        converse(&mut t, 1_000 * s, addr(1), 40_000, server);
        t.update(&tcp(1_001 * s, addr(1), 40_000, server, 443, FIN | ACK));
        t.update(&tcp(1_001 * s, server, 443, addr(1), 40_000, FIN | ACK));
        t.expire(1_005 * s);
        assert!(t.take_conn_records().is_empty(), "still in the table");
        t.expire(1_012 * s);
        let records = t.take_conn_records();
        let [r] = &records[..] else {
            panic!("{records:?}")
        };
        assert_eq!(r.end, ConnEnd::Closed);
        assert_eq!((r.client, r.server), ((addr(1), 40_000), (server, 443)));
        assert_eq!((r.start_ns, r.end_ns), (1_000 * s, 1_001 * s));
        let (c, sv) = (r.sent[Side::Client], r.sent[Side::Server]);
        assert_eq!((c.packets, c.bytes, sv.packets, sv.bytes), (3, 180, 3, 180));
        assert_eq!(
            (c.tcp_flags, sv.tcp_flags),
            (SYN | ACK | FIN, SYN | ACK | FIN)
        );
        // SYN to SYN-ACK 1 ms, SYN to completing ACK 2 ms.
        assert_eq!(r.legs, PerSide::new(Some(1_000), Some(2_000)));
        assert_eq!(r.health.connections.closed, 1, "{:?}", r.health);

        // Running for two minutes: a record each active timeout, counted
        // from the record's start, then the rest when the capture ends.
        converse(&mut t, 2_000 * s, addr(2), 40_001, server);
        for k in 1..=5 {
            t.update(&tcp(
                (2_000 + k * 25) * s,
                addr(2),
                40_001,
                server,
                443,
                ACK,
            ));
        }
        let records = t.take_conn_records();
        let [r] = &records[..] else {
            panic!("{records:?}")
        };
        assert_eq!(r.end, ConnEnd::Active);
        assert_eq!((r.start_ns, r.end_ns), (2_000 * s, 2_050 * s));
        assert_eq!(
            (r.sent[Side::Client].packets, r.sent[Side::Server].packets),
            (4, 2)
        );
        // A new SYN on a closed 5-tuple ends the old connection's record.
        converse(&mut t, 3_000 * s, addr(3), 40_002, server);
        t.update(&tcp(3_001 * s, server, 443, addr(3), 40_002, RST));
        converse(&mut t, 3_002 * s, addr(3), 40_002, server);
        let records = t.take_conn_records();
        let [r] = &records[..] else {
            panic!("{records:?}")
        };
        assert_eq!(
            (r.end, r.end_ns, r.health.connections.reset),
            (ConnEnd::Closed, 3_001 * s, 1)
        );
        t.end_capture();
        let mut records = t.take_conn_records();
        records.sort_by_key(|r| r.start_ns);
        let summary: Vec<_> = records
            .iter()
            .map(|r| {
                (
                    r.end,
                    r.start_ns / s,
                    r.sent[Side::Client].packets,
                    r.legs[Side::Client],
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (ConnEnd::CaptureEnded, 2_075, 3, None),
                (ConnEnd::CaptureEnded, 3_002, 2, Some(1_000)),
            ]
        );
        assert_eq!(t.counters().conn_records_dropped, 0);
    }

    #[test]
    fn queues_are_not_walked_at_every_connection() {
        // One client's connections to one server, one after another: the
        // flow is filed as idle each time a connection expires (the queue
        // by recency is not emptied by time), and every connection is
        // filed in the wheel when it opens and again when it closes.
        let mut t = live_table();
        let (client, server) = (addr(1), addr(100_000));
        let n = 6_000u32;
        for i in 0..n {
            let ts = u64::from(i) * 11 * crate::time::SECOND;
            t.expire(ts);
            let port = 10_000 + i as u16;
            converse(&mut t, ts, client, port, server);
            t.update(&tcp(ts + 4 * MS, client, port, server, 443, FIN | ACK));
            t.update(&tcp(ts + 5 * MS, server, 443, client, port, FIN | ACK));
        }
        // Each thinning waits until a queue doubles what the last one
        // kept, and drops the flow's entries while it has a connection:
        // a few passes, not one per connection.
        assert!(
            t.eviction.thinnings() < 40,
            "{} thinnings for {n} connections",
            t.eviction.thinnings()
        );
        assert_eq!(flows(&mut t).len(), 1);
    }

    #[test]
    fn connection_records_beyond_the_bound_are_counted() {
        use crate::flow::ConnRecordConfig;
        let config = TableConfig {
            timeouts: crate::flow::Timeouts::LIVE,
            conn_records: Some(ConnRecordConfig {
                active_timeout_ns: crate::flow::NEVER,
                max_pending: 2,
            }),
            ..TableConfig::default()
        };
        let mut t = table_of(config);
        for i in 0..5 {
            converse(&mut t, u64::from(i) * MS, addr(i), 40_000, addr(1_000));
        }
        t.expire(10_000 * crate::time::SECOND);
        assert_eq!(t.take_conn_records().len(), 2);
        assert_eq!(t.counters().conn_records_dropped, 3);
        // The queue is empty again; the capture's end cuts the records of
        // every running connection whatever the bound (their memory is
        // held already).
        for i in 0..3 {
            converse(
                &mut t,
                20_000 * crate::time::SECOND,
                addr(i),
                40_001,
                addr(1_000),
            );
        }
        t.end_capture();
        assert_eq!(t.take_conn_records().len(), 3);
        assert_eq!(t.counters().conn_records_dropped, 3);
    }

    #[test]
    fn the_sketch_limit_keeps_digests_small() {
        let mut t = table(Limits {
            max_sketches: 2,
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
        assert_eq!(c.active_sketches, 2);
        assert_eq!(c.handshake_samples_replaced, 48);
        t.expire(u64::MAX / 2);
        assert_eq!(t.counters().active_sketches, 2, "no window: samples stay");
    }
}
