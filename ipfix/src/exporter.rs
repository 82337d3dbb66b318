//! Following snapshots and sending their flows' records (see the crate doc).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pipeline::Snapshot;
use pipeline::flow::{
    ConnEnd, ConnRecord, Counter, EndedFlow, FlowEnd, FlowKey, FlowRecord, Outcomes, PerSide,
    Percentiles, Side, TcpHealth,
};
use pipeline::follow::{Change, FlowFollower};
use pipeline::snapshot::{EndpointName, EndpointNames, SnapshotSink};

use crate::message::{Encoder, EndReason, OutcomeDeltas, Record, Sent, SideMeasured};
use crate::transport::{Collector, CollectorAddr, Trouble};

#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// Collectors, each sent every message.
    pub collectors: Vec<CollectorAddr>,
    /// Bytes of messages kept for a TCP collector that is away.
    pub tcp_buffer_bytes: usize,
    /// UDP collectors get the templates again this often.
    pub template_refresh: std::time::Duration,
    /// The observation domain id in every message header.
    pub domain: u32,
    /// One RFC 5103 biflow record a flow rather than one a direction.
    pub biflow: bool,
    /// What a record describes.
    pub per: RecordsPer,
    /// The enterprise number of flowtap's own elements
    /// ([`crate::message::ENTERPRISE_ELEMENTS`]).
    pub enterprise: u32,
    /// A running flow's counts are exported at least this often.
    pub active_timeout_ns: u64,
    /// Largest message, bytes (within the path MTU: no IP fragmentation).
    pub mtu: usize,
}

/// What a record describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordsPer {
    /// A flow (a client's connections to a server port): the client port
    /// is 0. Follows the snapshots' flows.
    #[default]
    Flow,
    /// A connection (5-tuple), with its TCP flags: the tables keep
    /// per-connection records (`TableConfig::conn_records`) and each
    /// snapshot brings those cut since the last.
    Connection,
}

/// What the exporter did, for `/metrics`.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub records: AtomicU64,
    pub messages: AtomicU64,
    /// Messages a collector did not take (the socket refused them).
    pub send_errors: AtomicU64,
    /// Records in messages that could not be sent, or that a TCP
    /// collector's buffer had no room for: lost.
    pub records_lost: AtomicU64,
    /// Connections made to TCP collectors.
    pub tcp_connects: AtomicU64,
}

/// A flow's counters, each exported as its growth since the last record.
#[derive(Clone, Debug, Default)]
struct Counts {
    sent: PerSide<Counter>,
    ip_bytes: PerSide<u64>,
    health: TcpHealth,
}

impl Counts {
    fn of(f: &FlowRecord) -> Counts {
        Counts {
            sent: f.sent,
            ip_bytes: f.ip_bytes,
            health: f.tcp.clone(),
        }
    }
}

/// One flow as last seen, and what of it is exported.
#[derive(Clone, Debug)]
struct Tracked {
    seen: Counts,
    exported: Counts,
    /// Its handshake percentiles as last seen (not counts: exported as
    /// they are).
    handshake: PerSide<Option<Percentiles>>,
    /// Its client's and server's Kubernetes names, as last seen.
    names: PerSide<EndpointName>,
    last_ns: u64,
    /// When its last record was made (or it was first seen), capture time.
    record_ns: u64,
    /// Where its next record's time range starts.
    start_ns: u64,
}

pub struct Exporter {
    config: ExportConfig,
    flows: FlowFollower<Tracked>,
    outbox: Outbox,
    /// The last snapshot's time, if one was seen: snapshots come an
    /// interval apart, which the active timeout is checked at.
    last_snapshot_ns: Option<u64>,
}

/// Records are made into messages and sent a batch at a time
/// ([`SEND_EVERY`]), as a snapshot's flows are followed: the records and
/// messages held at once stay a batch's, not a snapshot's (at a capture's
/// end, two records for every flow in the table).
struct Outbox {
    records: Vec<Record>,
    collectors: Vec<Collector>,
    /// Each collector's failures, as the log says them.
    troubles: Vec<Trouble>,
    encoder: Encoder,
    stats: Arc<ExportStats>,
}

/// Records sent at once.
const SEND_EVERY: usize = 1024;

impl Outbox {
    /// Hands something to every collector (`deliver`: a batch, or the
    /// last try as flowtap stops, `closing`), and tells each one's
    /// [`Trouble`] what that failed.
    fn hand_each_collector(
        &mut self,
        closing: bool,
        deliver: impl Fn(&mut Collector, &ExportStats),
    ) {
        for (c, trouble) in self.collectors.iter_mut().zip(&mut self.troubles) {
            let before = failures(&self.stats);
            deliver(c, &self.stats);
            let after = failures(&self.stats);
            let (errors, lost) = (after.0 - before.0, after.1 - before.1);
            trouble.after(c.addr(), errors, lost, c.reachable(), closing);
        }
    }

    /// Adds `records`, sending a batch when one is full.
    fn add(&mut self, records: impl IntoIterator<Item = Record>) {
        self.records.extend(records);
        if self.records.len() >= SEND_EVERY {
            self.send();
        }
    }

    /// Sends what is held.
    fn send(&mut self) {
        if self.records.is_empty() {
            return;
        }
        let now_s = crate::transport::now_s();
        let templates = self.encoder.templates(now_s);
        let data = self.encoder.data(&self.records, now_s);
        self.hand_each_collector(false, |c, stats| c.deliver(&templates, &data, stats));
        self.stats
            .messages
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.stats
            .records
            .fetch_add(self.records.len() as u64, Ordering::Relaxed);
        self.records.clear();
    }
}

/// Send errors and records lost so far (the exporter alone adds to them,
/// one collector at a time: the growth across a delivery is its own).
fn failures(stats: &ExportStats) -> (u64, u64) {
    (
        stats.send_errors.load(Ordering::Relaxed),
        stats.records_lost.load(Ordering::Relaxed),
    )
}

impl Exporter {
    pub fn new(config: ExportConfig, stats: Arc<ExportStats>) -> std::io::Result<Exporter> {
        let collectors: Vec<Collector> = config
            .collectors
            .iter()
            .map(|&to| Collector::open(to, config.tcp_buffer_bytes, config.template_refresh))
            .collect::<std::io::Result<_>>()?;
        Ok(Exporter {
            outbox: Outbox {
                records: Vec::with_capacity(SEND_EVERY + 2),
                troubles: collectors.iter().map(|_| Trouble::default()).collect(),
                collectors,
                encoder: Encoder::new(config.domain, config.enterprise, config.biflow, config.mtu),
                stats,
            },
            config,
            flows: FlowFollower::default(),
            last_snapshot_ns: None,
        })
    }
}

/// What `t`'s `side` sent since its last export.
fn sent(t: &Tracked, side: Side) -> Sent {
    let (now, before) = (t.seen.health.sent(side), t.exported.health.sent(side));
    let mut measured = SideMeasured {
        retransmits: now.retransmits.saturating_sub(before.retransmits),
        rsts: now.rsts.saturating_sub(before.rsts),
        zero_windows: now.zero_windows.saturating_sub(before.zero_windows),
        ..SideMeasured::default()
    };
    if let Some(p) = t.handshake[side] {
        measured.handshake_p50_us = p.p50;
        measured.handshake_p99_us = p.p99;
    }
    let (now, before) = (&t.seen, &t.exported);
    Sent {
        packets: now.sent[side].pkts.saturating_sub(before.sent[side].pkts),
        octets: now.ip_bytes[side].saturating_sub(before.ip_bytes[side]),
        layer2_octets: now.sent[side].bytes.saturating_sub(before.sent[side].bytes),
        tcp_flags: 0,
        measured,
    }
}

/// How the flow's connections ended since its last export.
fn outcomes(t: &Tracked) -> OutcomeDeltas {
    outcome_deltas(&t.seen.health.connections, &t.exported.health.connections)
}

fn outcome_deltas(c: &Outcomes, b: &Outcomes) -> OutcomeDeltas {
    OutcomeDeltas {
        established: c.established.saturating_sub(b.established),
        refused: c.refused.saturating_sub(b.refused),
        unanswered: c.unanswered.saturating_sub(b.unanswered),
        reset: c.reset.saturating_sub(b.reset),
        closed: c.closed.saturating_sub(b.closed),
    }
}

/// The records of what `t` sent since its last export.
fn records(key: &FlowKey, t: &Tracked, reason: EndReason, biflow: bool) -> Vec<Record> {
    let between = Between {
        proto: key.proto as u8,
        // A flow aggregates a client's connections: no client port.
        ends: PerSide::new(
            (key.client.to_ip(), 0),
            (key.server.to_ip(), key.server_port),
        ),
        // A packet still on its way to the tables when a snapshot was
        // made is older than the snapshot: a record's start is never
        // after its end.
        start_ns: t.start_ns.min(t.last_ns),
        end_ns: t.last_ns,
        names: &t.names,
    };
    let sent = PerSide::from_fn(|side| sent(t, side));
    between.records(reason, sent, outcomes(t), biflow)
}

/// A connection record's records.
fn connection_records(c: &ConnRecord, names: &PerSide<EndpointName>, biflow: bool) -> Vec<Record> {
    let between = Between {
        proto: c.proto as u8,
        ends: PerSide::new(
            (c.client.0.to_ip(), c.client.1),
            (c.server.0.to_ip(), c.server.1),
        ),
        start_ns: c.start_ns,
        end_ns: c.end_ns,
        names,
    };
    let reason = match c.end {
        ConnEnd::Active => EndReason::Active,
        ConnEnd::Idle => EndReason::Idle,
        ConnEnd::Closed => EndReason::EndOfFlow,
        ConnEnd::Evicted => EndReason::LackOfResources,
        ConnEnd::CaptureEnded => EndReason::Forced,
    };
    let sent = PerSide::from_fn(|side| {
        let (s, health) = (&c.sent[side], c.health.sent(side));
        // The connection's own handshake leg, in both percentiles.
        let leg = c.legs[side].map_or(0, |us| u32::try_from(us).unwrap_or(u32::MAX));
        Sent {
            packets: s.packets,
            octets: s.ip_bytes,
            layer2_octets: s.bytes,
            tcp_flags: s.tcp_flags,
            measured: SideMeasured {
                retransmits: health.retransmits,
                rsts: health.rsts,
                zero_windows: health.zero_windows,
                handshake_p50_us: leg,
                handshake_p99_us: leg,
            },
        }
    });
    let outcomes = outcome_deltas(&c.health.connections, &Outcomes::default());
    between.records(reason, sent, outcomes, biflow)
}

/// What a record is between: a flow's or a connection's two ends.
struct Between<'a> {
    proto: u8,
    /// Client and server: (address, transport port).
    ends: PerSide<(std::net::IpAddr, u16)>,
    start_ns: u64,
    end_ns: u64,
    names: &'a PerSide<EndpointName>,
}

impl Between<'_> {
    /// One record a direction that sent anything (client to server, then
    /// server to client), or with `biflow` one for both; the outcomes go
    /// in the first.
    fn records(
        &self,
        reason: EndReason,
        sent: PerSide<Sent>,
        outcomes: OutcomeDeltas,
        biflow: bool,
    ) -> Vec<Record> {
        let record = |side: Side, forward: Sent| {
            let ((src, src_port), (dst, dst_port)) = (self.ends[side], self.ends[side.other()]);
            Record {
                src,
                dst,
                src_port,
                dst_port,
                protocol: self.proto,
                start_ms: self.start_ns / 1_000_000,
                end_ms: self.end_ns / 1_000_000,
                reason,
                forward,
                reverse: None,
                outcomes: OutcomeDeltas::default(),
                names: [self.names[side].clone(), self.names[side.other()].clone()],
            }
        };
        let sent_any = |s: &Sent| s.packets > 0 || s.layer2_octets > 0;
        let (by_client, by_server) = (sent[Side::Client], sent[Side::Server]);
        let mut out = Vec::with_capacity(2);
        if biflow {
            if sent_any(&by_client) || sent_any(&by_server) {
                out.push(Record {
                    reverse: Some(by_server),
                    ..record(Side::Client, by_client)
                });
            }
        } else {
            for (side, s) in [(Side::Client, by_client), (Side::Server, by_server)] {
                if sent_any(&s) {
                    out.push(record(side, s));
                }
            }
        }
        // Connections settled without a packet since the last record (an
        // unanswered SYN given up at its timeout, a connection expired
        // idle) still go out, in a record of no packets: their counts
        // would be lost.
        if out.is_empty() && outcomes != OutcomeDeltas::default() {
            out.push(Record {
                reverse: biflow.then_some(by_server),
                ..record(Side::Client, by_client)
            });
        }
        // The client's connections, in the first record (the client's,
        // unless it sent nothing since the last one).
        if let Some(first) = out.first_mut() {
            first.outcomes = outcomes;
        }
        out
    }
}

/// The records of a flow that left the table since the last snapshot
/// (`ended`, with its last record): what it counted since its last record,
/// ended idle (flowEndReason 1) or for lack of resources (5, given up to
/// make room), with the names it had then (none if it started since). It
/// is followed no more.
fn ended_records(
    flows: &mut FlowFollower<Tracked>,
    ended: &EndedFlow,
    now_ns: u64,
    biflow: bool,
) -> Vec<Record> {
    let f = &ended.record;
    let mut t = flows.take_ended(f).unwrap_or_else(|| Tracked::of(f));
    let names = std::mem::take(&mut t.names);
    t.observe(f, names, now_ns);
    let reason = match ended.end {
        FlowEnd::Expired => EndReason::Idle,
        FlowEnd::Evicted => EndReason::LackOfResources,
    };
    records(&f.key, &t, reason, biflow)
}

impl Tracked {
    fn of(f: &FlowRecord) -> Tracked {
        Tracked {
            seen: Counts::of(f),
            exported: Counts::default(),
            handshake: f.percentiles,
            names: PerSide::default(),
            last_ns: f.last_seen_ns,
            record_ns: f.first_seen_ns,
            start_ns: f.first_seen_ns,
        }
    }

    /// Takes in the flow as the snapshot made at `now_ns` has it, with its
    /// endpoints' names.
    fn observe(&mut self, f: &FlowRecord, names: PerSide<EndpointName>, now_ns: u64) {
        // Every packet so far is exported: the next record's first packet
        // comes after this snapshot. Its start is then this snapshot's
        // time (within one interval of that packet), not the last packet
        // of the record before, which would stretch a burst after a quiet
        // spell over the whole spell (flowStartMilliseconds is the first
        // packet's time, RFC 7012).
        if f.sent == self.exported.sent {
            self.start_ns = self.start_ns.max(now_ns);
        }
        self.seen = Counts::of(f);
        self.handshake = f.percentiles;
        self.names = names;
        self.last_ns = f.last_seen_ns;
    }

    /// Counts it has not exported yet are now exported, as of the
    /// snapshot made at `at_ns`: the next record's packets come after it.
    fn exported(&mut self, at_ns: u64) {
        self.exported = self.seen.clone();
        self.record_ns = at_ns;
        self.start_ns = at_ns.max(self.last_ns);
    }
}

impl Exporter {
    /// Adds the records of the flows that left the table, as of `now_ns`
    /// (a snapshot's time; without one, each flow's last packet's). A
    /// record (or two) at a time, sent a batch at a time: a file read
    /// through a small table may give thousands up between snapshots.
    fn add_ended(&mut self, ended: &[EndedFlow], now_ns: Option<u64>) {
        for f in ended {
            let at = now_ns.unwrap_or(f.record.last_seen_ns);
            let records = ended_records(&mut self.flows, f, at, self.config.biflow);
            self.outbox.add(records);
        }
    }

    /// The records of the connections `snapshot` brings, named by their
    /// flows in it.
    fn connections(&mut self, snapshot: &Snapshot, names: &dyn EndpointNames) {
        if snapshot.connections.is_empty() {
            return;
        }
        // Names are per flow: find the flows of these connections.
        let mut flow_names: HashMap<FlowKey, PerSide<EndpointName>> = snapshot
            .connections
            .iter()
            .map(|c| (c.flow_key(), PerSide::default()))
            .collect();
        for (i, f) in snapshot.flows.iter().enumerate() {
            if let Some(n) = flow_names.get_mut(&f.key) {
                *n = PerSide::from_fn(|side| names.endpoint(i, side).unwrap_or_default());
            }
        }
        for c in &snapshot.connections {
            let records = connection_records(c, &flow_names[&c.flow_key()], self.config.biflow);
            self.outbox.add(records);
        }
        self.outbox.send();
    }
}

impl SnapshotSink for Exporter {
    fn snapshot(&mut self, snapshot: &Snapshot, names: &dyn EndpointNames, last: bool) {
        if self.config.per == RecordsPer::Connection {
            self.connections(snapshot, names);
            return;
        }
        let now = snapshot.as_of_ns;
        let interval_ns = self
            .last_snapshot_ns
            .replace(now)
            .map_or(0, |before| now.saturating_sub(before));
        self.add_ended(&snapshot.ended, Some(now));
        let active_timeout_ns = self.config.active_timeout_ns;
        let biflow = self.config.biflow;
        let mut left = Vec::new();
        let outbox = &mut self.outbox;
        let mut flows = std::mem::take(&mut self.flows);
        flows.observe(
            &snapshot.flows,
            |i, f, change| {
                let mut t = match change {
                    Change::Started => Tracked::of(f),
                    Change::Continued(t) => t,
                    // The key's earlier flow expired meanwhile: its last
                    // counts, ended idle, then the new one.
                    Change::Restarted(old) => {
                        outbox.add(records(&f.key, &old, EndReason::Idle, biflow));
                        Tracked::of(f)
                    }
                };
                t.observe(
                    f,
                    PerSide::from_fn(|side| names.endpoint(i, side).unwrap_or_default()),
                    now,
                );
                // The last snapshot's records are `finish`'s, ended forced
                // (the capture's end, a stop), not cut by the timeout.
                if !last
                    && crate::due_at_nearest(
                        now.saturating_sub(t.record_ns),
                        interval_ns,
                        active_timeout_ns,
                    )
                {
                    outbox.add(records(&f.key, &t, EndReason::Active, biflow));
                    t.exported(now);
                }
                t
            },
            |key, t| left.push((key, t)),
        );
        // Flows that left the table: their last counts, ended idle.
        for (key, t) in &left {
            outbox.add(records(key, t, EndReason::Idle, biflow));
        }
        outbox.send();
        self.flows = flows;
    }

    fn ended(&mut self, ended: &[EndedFlow]) {
        self.add_ended(ended, None);
        self.outbox.send();
    }

    fn finish(&mut self) {
        let biflow = self.config.biflow;
        let outbox = &mut self.outbox;
        for (key, t) in self.flows.states_mut() {
            outbox.add(records(key, t, EndReason::Forced, biflow));
            let at = t.last_ns;
            t.exported(at);
        }
        outbox.send();
        let templates = outbox.encoder.templates(crate::transport::now_s());
        let give_up = std::time::Instant::now() + crate::transport::CLOSE_WITHIN;
        outbox.hand_each_collector(true, |c, stats| c.close(&templates, stats, give_up));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::packet::{Addr, L4Proto};

    const S: u64 = 1_000_000_000;

    /// A flow whose client sent `pkts` packets, the last at `last_s`.
    fn flow(pkts: u64, last_s: u64) -> FlowRecord {
        let mut f = FlowRecord::new(FlowKey {
            proto: L4Proto::Udp,
            client: Addr::from_v4([198, 18, 0, 1]),
            server: Addr::from_v4([198, 18, 0, 2]),
            server_port: 53,
        });
        f.sent = PerSide::new(
            Counter {
                pkts,
                bytes: pkts * 100,
            },
            Counter::default(),
        );
        f.last_seen_ns = last_s * S;
        f
    }

    /// The time range of the client's record of `t`, ms.
    fn range(t: &Tracked) -> (u64, u64) {
        let r = &records(&flow(0, 0).key, t, EndReason::Active, false)[0];
        (r.start_ms, r.end_ms)
    }

    /// A connection settled without a packet (its SYN unanswered at the
    /// timeout) after the flow's last record still goes out, in a record
    /// of no packets, in both record layouts.
    #[test]
    fn an_outcome_settled_without_a_packet_is_exported() {
        let names = PerSide::default;
        let mut syn = flow(1, 1);
        syn.key.proto = L4Proto::Tcp;
        let mut t = Tracked::of(&syn);
        t.observe(&syn, names(), 2 * S);
        t.exported(2 * S);
        let mut given_up = syn.clone();
        given_up.tcp.connections.unanswered = 1;
        t.observe(&given_up, names(), 40 * S);
        for biflow in [false, true] {
            let out = records(&syn.key, &t, EndReason::Active, biflow);
            let [r] = &out[..] else {
                panic!("one record, not {out:?}")
            };
            assert_eq!((r.forward.packets, r.outcomes.unanswered), (0, 1));
        }
        t.exported(40 * S);
        assert!(records(&syn.key, &t, EndReason::Active, false).is_empty());
    }

    /// A flow evicted (or expired) between snapshots ends in a record of
    /// what it counted since its last one (all of it if it started since),
    /// reason 5 (or 1), and is followed no more: its key's next flow starts
    /// afresh.
    #[test]
    fn a_flow_that_left_the_table_ends_in_a_record_of_what_it_counted_since() {
        let mut flows: FlowFollower<Tracked> = FlowFollower::default();
        let follow = |flows: &mut FlowFollower<Tracked>, snapshot: &[FlowRecord], at: u64| {
            let (mut changes, mut left) = (Vec::new(), 0);
            let snapshot: pipeline::snapshot::Flows = snapshot.to_vec().into();
            flows.observe(
                &snapshot,
                |_, f, change| {
                    let started = matches!(change, Change::Started);
                    changes.push(started);
                    let mut t = match change {
                        Change::Continued(t) | Change::Restarted(t) => t,
                        Change::Started => Tracked::of(f),
                    };
                    t.observe(f, PerSide::default(), at);
                    t.exported(at);
                    t
                },
                |_, _| left += 1,
            );
            (changes, left)
        };
        // Seen with 10 packets, exported; then evicted at 15.
        follow(&mut flows, &[flow(10, 1)], 2 * S);
        let mut other = flow(3, 3);
        other.key.server_port = 54;
        let ended = [(flow(15, 4), FlowEnd::Evicted), (other, FlowEnd::Expired)];
        let out: Vec<Record> = ended
            .into_iter()
            .flat_map(|(record, end)| {
                ended_records(&mut flows, &EndedFlow { record, end }, 5 * S, false)
            })
            .collect();
        let sent: Vec<(u64, EndReason)> =
            out.iter().map(|r| (r.forward.packets, r.reason)).collect();
        assert_eq!(
            sent,
            [(5, EndReason::LackOfResources), (3, EndReason::Idle)],
            "what it counted since its last record, and all of the one never seen"
        );
        // Its key again, a new flow: started, and nothing left over.
        assert_eq!(follow(&mut flows, &[flow(2, 5)], 6 * S), (vec![true], 0));
    }

    /// Snapshots a hair under a second apart (as a live clock gives them):
    /// a running flow is cut every 10 snapshots at a 10 s active timeout,
    /// not every 11 (the snapshot just short of the timeout passed it by,
    /// and the next was a whole interval late).
    #[test]
    fn the_active_timeout_cuts_at_the_snapshot_nearest_it() {
        let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let stats = Arc::new(ExportStats::default());
        let mut exporter = Exporter::new(
            ExportConfig {
                collectors: vec![CollectorAddr::Udp(collector.local_addr().unwrap())],
                tcp_buffer_bytes: 1 << 20,
                template_refresh: std::time::Duration::from_secs(10),
                domain: 0,
                biflow: false,
                per: RecordsPer::Flow,
                enterprise: crate::message::DEFAULT_ENTERPRISE,
                active_timeout_ns: 10 * S,
                mtu: 1400,
            },
            stats.clone(),
        )
        .unwrap();
        let mut cut_at = Vec::new();
        for k in 1..=30u64 {
            let as_of_ns = k * (S - 1_000);
            let mut f = flow(k, 0);
            f.last_seen_ns = as_of_ns - 1;
            let snapshot = Snapshot {
                as_of_ns,
                flows: vec![f].into(),
                ..Default::default()
            };
            let before = stats.records.load(Ordering::Relaxed);
            exporter.snapshot(&snapshot, &pipeline::snapshot::Unnamed, false);
            if stats.records.load(Ordering::Relaxed) > before {
                cut_at.push(k);
            }
        }
        assert_eq!(cut_at, [10, 20, 30]);
        // Within half the pace, a hundredth of the timeout at most, before
        // it; without a pace known (the first snapshot), not before it.
        assert!(!crate::due_at_nearest(9 * S, S, 10 * S));
        assert!(crate::due_at_nearest(10 * S - S / 10, S, 10 * S));
        assert!(!crate::due_at_nearest(10 * S - S / 5, S, 10 * S));
        assert!(!crate::due_at_nearest(10 * S - 1, 0, 10 * S));
        // Snapshots far apart (a quiet stretch of a file): not 30 s early.
        assert!(!crate::due_at_nearest(30 * S, 200 * S, 60 * S));
    }

    /// A record's start is where its first packet can be, as near as the
    /// snapshots tell: after the snapshot that exported the record before
    /// it, and after any later snapshot that found nothing new; not the
    /// last packet of the record before, which stretched a burst after a
    /// quiet spell over the whole spell (flowStartMilliseconds is the first
    /// packet's time).
    #[test]
    fn a_record_starts_after_what_the_snapshots_saw_quiet() {
        let names = PerSide::default;
        // Five packets up to 1 s, exported by the snapshot at 10 s.
        let mut t = Tracked::of(&flow(5, 1));
        t.observe(&flow(5, 1), names(), 10 * S);
        t.exported(10 * S);
        // Nothing new at 20 s; five more packets by 69 s, seen at 70 s.
        t.observe(&flow(5, 1), names(), 20 * S);
        t.observe(&flow(10, 69), names(), 70 * S);
        assert_eq!(range(&t), (20_000, 69_000));
        t.exported(70 * S);
        // Packets right after the export (none quiet between): from the
        // export on.
        t.observe(&flow(12, 75), names(), 80 * S);
        assert_eq!(range(&t), (70_000, 75_000));
        // A packet older than the snapshot that exported the last record
        // (it was on its way): the range still runs forward.
        t.exported(80 * S);
        t.observe(&flow(13, 79), names(), 85 * S);
        assert_eq!(range(&t), (79_000, 79_000));
    }
}
