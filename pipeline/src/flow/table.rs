//! One shard's state: its connections, the flows they aggregate into, and the
//! first-fragment ports that later fragments need. Owned by exactly one
//! thread, so updates take no locks.

use std::sync::Arc;

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;

use super::conn::{Conn, Step, sender_is_client};
use super::handshake::{HandshakeDigest, Percentiles, Window};
use super::key::{ConnKey, FlowKey};
use super::rate::{C2S, RateWindow, Rates, S2C, SlotClock};
use crate::packet::{Addr, Fragment, L4Proto, PacketMeta};

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

#[derive(Clone, Copy, Debug)]
pub struct TableConfig {
    pub timeouts: Timeouts,
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
    /// Gauges at the time of the export.
    pub active_connections: u64,
    pub active_flows: u64,
}

impl TableCounters {
    pub fn add(&mut self, o: &TableCounters) {
        self.fragments_unmatched += o.fragments_unmatched;
        self.fragment_table_full += o.fragment_table_full;
        self.handshakes_out_of_order += o.handshakes_out_of_order;
        self.connections_expired += o.connections_expired;
        self.flows_expired += o.flows_expired;
        self.active_connections += o.active_connections;
        self.active_flows += o.active_flows;
    }
}

/// Handshake leg index: SYN -> SYN-ACK (client view), SYN -> ACK (server view).
pub const CLIENT_LEG: usize = 0;
pub const SERVER_LEG: usize = 1;

#[derive(Clone, Debug)]
struct FlowEntry {
    key: FlowKey,
    counts: [Counter; 2],
    rate: RateWindow,
    first_seen_ns: u64,
    last_seen_ns: u64,
    connections: u64,
    live_connections: u32,
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
    pub rates: Rates,
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
    free: Vec<u32>,
    index: HashMap<FlowKey, u32, ahash::RandomState>,
}

impl FlowSlab {
    /// Finds or creates the flow for a new connection and counts it.
    fn attach(&mut self, key: FlowKey, ts_ns: u64) -> u32 {
        let idx = match self.index.entry(key) {
            Entry::Occupied(o) => *o.get(),
            Entry::Vacant(v) => {
                let entry = FlowEntry {
                    key,
                    counts: [Counter::default(); 2],
                    rate: RateWindow::default(),
                    first_seen_ns: ts_ns,
                    last_seen_ns: ts_ns,
                    connections: 0,
                    live_connections: 0,
                    handshake: [None, None],
                };
                let idx = match self.free.pop() {
                    Some(idx) => {
                        self.entries[idx as usize] = Some(entry);
                        idx
                    }
                    None => {
                        self.entries.push(Some(entry));
                        (self.entries.len() - 1) as u32
                    }
                };
                *v.insert(idx)
            }
        };
        let flow = self.get_mut(idx);
        flow.connections += 1;
        flow.live_connections += 1;
        idx
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

#[derive(Debug)]
pub struct FlowTable {
    config: TableConfig,
    clock: SlotClock,
    conns: HashMap<ConnKey, Conn, ahash::RandomState>,
    flows: FlowSlab,
    fragments: HashMap<FragKey, FragEntry, ahash::RandomState>,
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
                free: Vec::new(),
                index: HashMap::with_hasher(hasher.clone()),
            },
            fragments: HashMap::with_hasher(hasher),
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
        let clock = self.clock;
        let (conn, step, c2s) = match self.conns.entry(key) {
            Entry::Occupied(o) => {
                let conn = o.into_mut();
                let c2s = from_lo == conn.client_is_lo;
                let step = if t.proto == L4Proto::Tcp {
                    conn.tcp_step(&t, c2s, ts)
                } else {
                    Step::default()
                };
                if step.reopen {
                    // A new connection on the same 5-tuple: the sender of the
                    // new SYN is its client, and it may belong to another flow.
                    let leftover = conn.flush();
                    record_legs(
                        self.flows.get_mut(conn.flow),
                        &leftover,
                        ts,
                        self.config.rtt_window,
                        &mut self.counters,
                    );
                    self.flows.detach(conn.flow);
                    let flow = self.flows.attach(flow_key(&key, from_lo), ts);
                    let (fresh, step) = Conn::new(flow, from_lo, &t, true, ts);
                    *conn = fresh;
                    (conn, step, true)
                } else {
                    (conn, step, c2s)
                }
            }
            Entry::Vacant(v) => {
                let client_is_lo = if sender_is_client(&t) {
                    from_lo
                } else {
                    !from_lo
                };
                let flow = self.flows.attach(flow_key(&key, client_is_lo), ts);
                let c2s = from_lo == client_is_lo;
                let (conn, step) = Conn::new(flow, client_is_lo, &t, c2s, ts);
                (v.insert(conn), step, c2s)
            }
        };
        conn.last_seen_ns = conn.last_seen_ns.max(ts);
        let flow = self.flows.get_mut(conn.flow);
        count(flow, clock, c2s, p.wire_len, ts);
        record_legs(flow, &step, ts, self.config.rtt_window, &mut self.counters);
    }

    /// Records every handshake leg still pending: the capture has ended.
    pub fn flush_handshakes(&mut self) {
        for conn in self.conns.values_mut() {
            let step = conn.flush();
            record_legs(
                self.flows.get_mut(conn.flow),
                &step,
                conn.last_seen_ns,
                self.config.rtt_window,
                &mut self.counters,
            );
        }
    }

    /// Drops idle connections, flows and fragments as of `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        let timeouts = self.config.timeouts;
        let window = self.config.rtt_window;
        let flows = &mut self.flows;
        let counters = &mut self.counters;
        let mut expired = 0;
        self.conns.retain(|key, conn| {
            let timeout = conn_timeout(&timeouts, key.proto, conn);
            if timeout != NEVER && now_ns.saturating_sub(conn.last_seen_ns) > timeout {
                let step = conn.flush();
                record_legs(
                    flows.get_mut(conn.flow),
                    &step,
                    conn.last_seen_ns,
                    window,
                    counters,
                );
                flows.detach(conn.flow);
                expired += 1;
                false
            } else {
                true
            }
        });
        self.counters.connections_expired += expired;

        for idx in 0..self.flows.entries.len() {
            let Some(flow) = self.flows.entries[idx].as_mut() else {
                continue;
            };
            // A digest whose samples all left the window frees its memory.
            for digest in flow.handshake.iter_mut() {
                if digest
                    .as_ref()
                    .is_some_and(|d| d.count(now_ns, window) == 0)
                {
                    *digest = None;
                }
            }
            let timeout = match flow.key.proto {
                L4Proto::Tcp => timeouts.tcp_idle_ns,
                L4Proto::Udp => timeouts.udp_idle_ns,
            };
            if flow.live_connections == 0
                && timeout != NEVER
                && now_ns.saturating_sub(flow.last_seen_ns) > timeout
            {
                self.flows.index.remove(&flow.key);
                self.flows.entries[idx] = None;
                self.flows.free.push(idx as u32);
                self.counters.flows_expired += 1;
            }
        }

        let fragment_timeout = self.config.fragment_timeout_ns;
        self.fragments
            .retain(|_, f| now_ns.saturating_sub(f.first_ns) <= fragment_timeout);
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
        for flow in self.flows.entries.iter().flatten() {
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
                c2s: flow.counts[C2S],
                s2c: flow.counts[S2C],
                rates: flow.rate.rates(self.clock, as_of_ns, since),
                first_seen_ns: flow.first_seen_ns,
                last_seen_ns: flow.last_seen_ns,
                connections: flow.connections,
                handshake: flow.handshake.clone(),
                percentiles,
            });
        }
    }

    pub fn counters(&self) -> TableCounters {
        TableCounters {
            active_connections: self.conns.len() as u64,
            active_flows: self.flows.len() as u64,
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

#[inline]
fn count(flow: &mut FlowEntry, clock: SlotClock, c2s: bool, wire_len: u32, ts: u64) {
    let dir = if c2s { C2S } else { S2C };
    flow.counts[dir].pkts += 1;
    flow.counts[dir].bytes += u64::from(wire_len);
    flow.rate.record(clock.slot_of(ts), dir, wire_len);
    flow.first_seen_ns = flow.first_seen_ns.min(ts);
    flow.last_seen_ns = flow.last_seen_ns.max(ts);
}

fn conn_timeout(t: &Timeouts, proto: L4Proto, conn: &Conn) -> u64 {
    match proto {
        L4Proto::Udp => t.udp_idle_ns,
        L4Proto::Tcp if conn.is_closed() => t.tcp_closed_ns,
        L4Proto::Tcp if conn.is_half_open() => t.tcp_handshake_ns,
        L4Proto::Tcp => t.tcp_idle_ns,
    }
}

/// Adds the legs a step completed to the flow's digests (microseconds,
/// rounded), and counts a handshake whose timestamps ran backwards.
fn record_legs(
    flow: &mut FlowEntry,
    step: &Step,
    ts: u64,
    window: Window,
    counters: &mut TableCounters,
) {
    if step.out_of_order {
        counters.handshakes_out_of_order += 1;
    }
    for (which, leg) in [(CLIENT_LEG, step.client_leg), (SERVER_LEG, step.server_leg)] {
        if let Some(ns) = leg {
            let digest = flow.handshake[which].get_or_insert_with(Default::default);
            Arc::make_mut(digest).record(ts, (ns + 500) / 1000, window);
        }
    }
}
