//! Every metric flowtap exports, each defined once: name, type, meaning, how
//! its value is read from the [`Sources`], and whether the end-of-run report
//! shows it. The exposition, the report and the README's reference
//! (`flowtap docs metrics`) are all generated from [`CATALOG`].

use std::sync::atomic::Ordering;

use pipeline::ingest::FrameKind;
use pipeline::time::{as_secs_f64, wall_now_ns};
use pipeline::wire::decap::Encap;
use pipeline::wire::dissect::MalformedReason;

use super::Sources;
use super::stats::{FixedHistogram, MERGE_BUCKETS};
use crate::pairs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Labelled samples: each with its label values (in the metric's label order).
pub type Samples = Vec<(Vec<String>, f64)>;

/// Labelled histograms: each with its label values.
pub type Histograms = Vec<(Vec<String>, FixedHistogram)>;

/// How a metric's value is read.
#[derive(Clone, Copy)]
pub enum Value {
    One(fn(&Sources<'_>) -> f64),
    Labelled(&'static [&'static str], fn(&Sources<'_>) -> Samples),
    Histogram(&'static [&'static str], fn(&Sources<'_>) -> Histograms),
}

/// The lines of the end-of-run report, in the order they are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Line {
    /// `frames by kind: tcp 1787, udp 210, ...`
    Kinds,
    /// `malformed frames: truncated 1, ...`
    Malformed,
    /// `flows: flows 120, connections 146, ...`
    Flows,
    /// `limits: connections 5, connection capacity 10, ...`
    Limits,
    /// `encapsulated frames: vxlan 10, geneve 0, ...`
    Encapsulated,
    /// One line per mirror session: `mirror session vxlan 12: frames 10, bytes 1500`
    MirrorSession,
    /// One line per live capture queue: `queue 0: frames 10, ...`
    Queue,
    /// `ipfix: records 240, messages 3, send errors 0, ...`, where an
    /// exporter sent or failed anything (no line without a collector).
    Ipfix,
}

impl Line {
    pub const ALL: [Line; 8] = [
        Line::Kinds,
        Line::Malformed,
        Line::Flows,
        Line::Limits,
        Line::Encapsulated,
        Line::MirrorSession,
        Line::Queue,
        Line::Ipfix,
    ];

    /// Lines left out when every value on them is 0 (a feature not in use).
    pub fn only_if_any(self) -> bool {
        matches!(self, Line::Ipfix)
    }

    /// Lines printed once per label value (each queue, each session) rather
    /// than once with every label value in it.
    pub fn per_label(self) -> bool {
        matches!(self, Line::MirrorSession | Line::Queue)
    }

    pub fn title(self) -> &'static str {
        match self {
            Line::Kinds => "frames by kind",
            Line::Malformed => "malformed frames",
            Line::Flows => "flows",
            Line::Limits => "limits",
            Line::Encapsulated => "encapsulated frames",
            Line::MirrorSession => "mirror session",
            Line::Queue => "queue",
            Line::Ipfix => "ipfix",
        }
    }
}

/// A metric: its name (counters without `_total`, which the encoder adds),
/// type, meaning, value, and where the report shows it (under what words;
/// labelled metrics show each label value instead).
#[derive(Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub value: Value,
    pub report: Option<(Line, &'static str)>,
}

impl Metric {
    pub fn labels(&self) -> &'static [&'static str] {
        match self.value {
            Value::Labelled(labels, _) | Value::Histogram(labels, _) => labels,
            Value::One(_) => &[],
        }
    }

    /// The name its samples carry (counters end in `_total`).
    pub fn sample_name(&self) -> String {
        match self.kind {
            Kind::Counter => format!("{}_total", self.name),
            _ => self.name.to_owned(),
        }
    }
}

macro_rules! metric {
    ($name:literal, $kind:ident, $help:literal, $value:expr) => {
        Metric {
            name: $name,
            kind: Kind::$kind,
            help: $help,
            value: $value,
            report: None,
        }
    };
    ($name:literal, $kind:ident, $help:literal, $value:expr, $line:ident $as:literal) => {
        Metric {
            name: $name,
            kind: Kind::$kind,
            help: $help,
            value: $value,
            report: Some((Line::$line, $as)),
        }
    };
}

/// A counter of the pipeline's ingest counters.
macro_rules! ingest {
    ($field:ident) => {
        Value::One(|s| s.snapshot.counters.ingest.$field as f64)
    };
}

/// A counter or gauge of the flow tables.
macro_rules! table {
    ($field:ident) => {
        Value::One(|s| s.snapshot.counters.table.$field as f64)
    };
}

/// A counter the server or publisher keeps.
/// Frames or bytes by encapsulation.
macro_rules! by_encap {
    ($field:ident) => {
        Value::Labelled(&["encap"], |s| {
            Encap::ALL
                .iter()
                .map(|e| {
                    (
                        vec![e.name().to_owned()],
                        s.snapshot.counters.ingest.$field[e.index()] as f64,
                    )
                })
                .collect()
        })
    };
}

/// Frames or bytes by mirror session.
macro_rules! by_session {
    ($field:ident) => {
        Value::Labelled(&["encap", "id"], |s| {
            s.snapshot
                .sessions
                .sorted()
                .iter()
                .map(|c| {
                    let id = c
                        .mirror
                        .id
                        .map_or_else(|| "none".to_owned(), |id| id.to_string());
                    (
                        vec![c.mirror.encap.name().to_owned(), id],
                        c.frames.$field as f64,
                    )
                })
                .collect()
        })
    };
}

macro_rules! stat {
    ($field:ident) => {
        Value::One(|s| s.stats.$field.load(Ordering::Relaxed) as f64)
    };
}

/// One sample per live capture queue.
macro_rules! per_queue {
    ($field:ident) => {
        Value::Labelled(&["interface", "queue"], |s| {
            s.queues
                .iter()
                .map(|q| {
                    (
                        vec![q.interface.to_string(), q.queue.to_string()],
                        q.$field as f64,
                    )
                })
                .collect()
        })
    };
}

/// Every metric flowtap exports, in exposition order.
pub const CATALOG: &[Metric] = &[
    metric!(
        "flowtap_build_info",
        Gauge,
        "Always 1; the labels say which build runs.",
        Value::Labelled(&["version", "commit"], |s| vec![(
            vec![s.version.to_owned(), s.commit.to_owned()],
            1.0
        )])
    ),
    metric!(
        "flowtap_ready",
        Gauge,
        "1 once capture is running (live) or the files are read, else 0.",
        Value::One(|s| f64::from(u8::from(s.ready)))
    ),
    metric!(
        "flowtap_frames",
        Counter,
        "Frames received (live) or read (files).",
        ingest!(frames)
    ),
    metric!(
        "flowtap_frame_bytes",
        Counter,
        "Wire bytes of those frames.",
        ingest!(bytes)
    ),
    metric!(
        "flowtap_frames_by_kind",
        Counter,
        "Parsed frames by kind: tcp, udp, icmp, arp, ip_other, non_ip (as read: duplicates dropped and hand-off drops included; with malformed frames, every frame read).",
        Value::Labelled(&["kind"], |s| FrameKind::ALL
            .iter()
            .map(|k| (
                vec![k.name().to_owned()],
                s.snapshot.counters.ingest.kind(*k) as f64
            ))
            .collect()),
        Kinds ""
    ),
    metric!(
        "flowtap_malformed_frames",
        Counter,
        "Frames that could not be read to their transport header, by reason.",
        Value::Labelled(&["reason"], |s| MalformedReason::ALL
            .iter()
            .map(|r| (
                vec![r.name().to_owned()],
                s.snapshot.counters.ingest.malformed(*r) as f64
            ))
            .collect()),
        Malformed ""
    ),
    metric!(
        "flowtap_active_flows",
        Gauge,
        "Flows tracked now.",
        table!(active_flows),
        Flows "flows"
    ),
    metric!(
        "flowtap_flow_connections",
        Gauge,
        "Connections counted in the flows of the served snapshot.",
        // Summed as integers: an empty f64 sum is -0.0, written "-0".
        Value::One(|s| s.snapshot.flows.iter().map(|f| f.connections).sum::<u64>() as f64),
        Flows "connections"
    ),
    metric!(
        "flowtap_fragments_unmatched",
        Counter,
        "Later IP fragments whose first fragment was never seen.",
        table!(fragments_unmatched),
        Flows "unmatched fragments"
    ),
    metric!(
        "flowtap_icmp_refusals_unmatched",
        Counter,
        "ICMP errors quoting a TCP segment (port or protocol unreachable, administratively prohibited) that refused no connection, even after waiting about a second of capture time for its SYN: the connection was not captured or was answered already, or the error quoted another segment.",
        table!(icmp_refusals_unmatched),
        Flows "unmatched ICMP refusals"
    ),
    metric!(
        "flowtap_handshakes_out_of_order",
        Counter,
        "Handshakes whose client leg was not measured because its timestamps ran backwards (a SYN-ACK stamped before its SYN, or after the client's ACK of it).",
        table!(handshakes_out_of_order),
        Flows "out-of-order handshakes"
    ),
    metric!(
        "flowtap_handoff_drops",
        Counter,
        "Packets dropped because a shard's hand-off queue was full.",
        ingest!(handoff_drops),
        Flows "hand-off drops"
    ),
    metric!(
        "flowtap_fragment_table_full",
        Counter,
        "Datagrams a full fragment table (--max-fragments) could not remember whole: the one waiting longest for its fragments given up to make room (its later fragments are then unmatched).",
        Value::One(|s| (s.snapshot.counters.table.fragment_table_full
            + s.snapshot.counters.ingest.tunnel_fragment_table_full) as f64),
        Flows "fragment table full"
    ),
    metric!(
        "flowtap_duplicate_frames",
        Counter,
        "Frames that repeated one seen within --dedup-window-us (the same IP packet, padding and trailers aside, or the same part of it in a fragmented carrier), as a SPAN session mirroring both ends delivers them; counted by kind too.",
        ingest!(duplicates),
        Flows "duplicates"
    ),
    metric!(
        "flowtap_duplicate_frames_dropped",
        Counter,
        "Of those, dropped because --dedup is on (otherwise counted like any frame).",
        ingest!(duplicates_dropped),
        Flows "duplicates dropped"
    ),
    metric!(
        "flowtap_duplicate_table_slots",
        Gauge,
        "Slots of each worker's duplicate table (--dedup-slots).",
        ingest!(duplicate_slots)
    ),
    metric!(
        "flowtap_connections_expired",
        Counter,
        "Connections dropped after their idle timeout.",
        table!(connections_expired)
    ),
    metric!(
        "flowtap_flows_expired",
        Counter,
        "Flows dropped after their idle timeout.",
        table!(flows_expired)
    ),
    metric!(
        "flowtap_active_connections",
        Gauge,
        "Connections tracked now.",
        table!(active_connections),
        Limits "connections"
    ),
    metric!(
        "flowtap_connection_capacity",
        Gauge,
        "Connections tracked at most (--max-connections, or from --memory-limit).",
        table!(connection_capacity),
        Limits "connection capacity"
    ),
    metric!(
        "flowtap_connections_evicted",
        Counter,
        "Unanswered connections given up to make room: in a full connection table (the first step), or with their unanswered flow in a full flow table.",
        table!(connections_evicted),
        Limits "connections evicted"
    ),
    metric!(
        "flowtap_connections_emergency_expired",
        Counter,
        "Connections given up to make room because they were idle past the emergency timeouts (after unanswered ones not seen for a second, and in the last step).",
        table!(connections_emergency_expired),
        Limits "connections emergency-expired"
    ),
    metric!(
        "flowtap_connections_evicted_recent",
        Counter,
        "Connections given up to make room although recently seen: those closest to expiring, when nothing else could go (the last step).",
        table!(connections_evicted_recent),
        Limits "connections evicted recent"
    ),
    metric!(
        "flowtap_untracked_packets",
        Counter,
        "Packets of connections not tracked because nothing could be given up to make room (still counted in their flows).",
        table!(untracked_pkts),
        Limits "untracked packets"
    ),
    metric!(
        "flowtap_flow_capacity",
        Gauge,
        "Flows kept at most (--max-flows, or from --memory-limit).",
        table!(flow_capacity),
        Limits "flow capacity"
    ),
    metric!(
        "flowtap_flows_evicted",
        Counter,
        "Unanswered flows given up to make room in a full flow table.",
        table!(flows_evicted),
        Limits "flows evicted"
    ),
    metric!(
        "flowtap_idle_flows_evicted",
        Counter,
        "Flows without connections given up to make room, closest to expiring first.",
        table!(idle_flows_evicted),
        Limits "idle flows evicted"
    ),
    metric!(
        "flowtap_evicted_flow_packets",
        Counter,
        "Packets the evicted flows had counted (no longer in answers; with IPFIX per flow, in their flows' last records but for those flowtap_ipfix_ended_flow_records_dropped_total counts).",
        table!(evicted_pkts),
        Limits "evicted flow packets"
    ),
    metric!(
        "flowtap_evicted_flow_bytes",
        Counter,
        "Bytes the evicted flows had counted (no longer in answers; with IPFIX per flow, in their flows' last records but for those flowtap_ipfix_ended_flow_records_dropped_total counts).",
        table!(evicted_bytes)
    ),
    metric!(
        "flowtap_flow_table_full_packets",
        Counter,
        "Packets counted in no flow: the flow table was full and nothing could be evicted.",
        table!(flow_table_full_pkts),
        Limits "packets in no flow"
    ),
    metric!(
        "flowtap_flow_table_full_bytes",
        Counter,
        "Bytes of those packets.",
        table!(flow_table_full_bytes)
    ),
    metric!(
        "flowtap_large_handshake_digests",
        Gauge,
        "Handshake digests grown past their exact samples into sketches (flows with many handshakes).",
        table!(active_sketches),
        Limits "large digests"
    ),
    metric!(
        "flowtap_large_handshake_digest_capacity",
        Gauge,
        "Large handshake digests kept at most (from --memory-limit); beyond it digests keep their latest samples.",
        table!(sketch_capacity),
        Limits "large digest capacity"
    ),
    metric!(
        "flowtap_handshake_samples_replaced",
        Counter,
        "Handshake samples that replaced a flow's oldest because the sketch limit was reached.",
        table!(handshake_samples_replaced),
        Limits "samples replaced"
    ),
    metric!(
        "flowtap_encapsulated_frames",
        Counter,
        "Frames by the outermost encapsulation flowtap opened: vxlan, geneve, gre, erspan_i, erspan_ii, erspan_iii, gtpu, ip_in_ip, tzsp.",
        by_encap!(encap_frames),
        Encapsulated ""
    ),
    metric!(
        "flowtap_encapsulated_bytes",
        Counter,
        "Wire bytes (outer headers included) of those frames.",
        by_encap!(encap_bytes)
    ),
    metric!(
        "flowtap_mirror_session_frames",
        Counter,
        "Frames each mirror session delivered: the outermost encapsulation that carried a whole Ethernet frame, and its VNI, ERSPAN session or GRE key (none without).",
        by_session!(pkts),
        MirrorSession "frames"
    ),
    metric!(
        "flowtap_mirror_session_bytes",
        Counter,
        "Wire bytes (outer headers included) each mirror session delivered.",
        by_session!(bytes),
        MirrorSession "bytes"
    ),
    metric!(
        "flowtap_mirror_sessions",
        Gauge,
        "Mirror sessions counted apart.",
        Value::One(|s| s.snapshot.sessions.len() as f64)
    ),
    metric!(
        "flowtap_mirror_session_capacity",
        Gauge,
        "Mirror sessions counted apart at most, per worker (--max-mirror-sessions).",
        Value::One(|s| s.snapshot.sessions.capacity() as f64)
    ),
    metric!(
        "flowtap_mirror_sessions_over_limit_frames",
        Counter,
        "Frames of mirror sessions beyond --max-mirror-sessions, counted together (a new session takes the place of one idle for 10 minutes of capture time first).",
        Value::One(|s| s.snapshot.sessions.over_limit.pkts as f64),
        Limits "mirror session frames over limit"
    ),
    metric!(
        "flowtap_mirror_sessions_reclaimed",
        Counter,
        "Mirror sessions that delivered nothing for 10 minutes of capture time and gave their place up to a new one at --max-mirror-sessions (their series start again from 0 if they come back).",
        Value::One(|s| s.snapshot.sessions.reclaimed as f64)
    ),
    metric!(
        "flowtap_interface_promiscuous",
        Gauge,
        "1 while flowtap holds the span interface (every one of several -i) in promiscuous mode (--no-promiscuous leaves it as it is), else 0.",
        stat!(promiscuous)
    ),
    metric!(
        "flowtap_xdp_unbound_frames",
        Counter,
        "Frames on rx queues flowtap has no socket on: given --unbound (passed on or dropped) and never counted; counted in capture_drops. The NIC gained queues after flowtap started, or --queues is below its count.",
        stat!(xdp_unbound_frames)
    ),
    metric!(
        "flowtap_nic_rx_missed_frames",
        Counter,
        "Frames the NIC of -i (of every -i, summed) missed since flowtap started, no room in its receive rings (its rx_missed_errors; 0 where the driver does not count them); counted in capture_drops. The host is not keeping up with the port: more queues, larger rings (ethtool -G), or a lighter mirror.",
        stat!(nic_rx_missed)
    ),
    metric!(
        "flowtap_nic_rx_refused_frames",
        Counter,
        "Frames the NIC of -i (of every -i, summed) received and dropped since flowtap started as too long for its MTU or damaged (its rx_length_errors, rx_crc_errors and rx_frame_errors; 0 where the driver does not count them); counted in capture_drops. A mirror of jumbo frames, or one that adds tags or a tunnel, needs the port's MTU raised (ip link set IFACE mtu 9000); CRC errors point at the mirror's link.",
        stat!(nic_rx_refused)
    ),
    metric!(
        "flowtap_mirror_veth_dropped_frames",
        Counter,
        "Host mode: frames the mirror veth dropped before capture (the tx_dropped of ftm<ifindex>: longer than its MTU, which follows the watched interface's within a quarter of a second, or no room); counted in capture_drops.",
        stat!(mirror_veth_dropped)
    ),
    metric!(
        "flowtap_interfaces_down",
        Gauge,
        "Interfaces of -i now down or without a link (carrier): nothing arrives from them, and /readyz answers 503 while any is; checked four times a second.",
        stat!(interfaces_down)
    ),
    metric!(
        "flowtap_capture_ended",
        Gauge,
        "1 once capture has ended (the files are read): the answers no longer change and flowtap_snapshot_age_seconds grows by design (the shipped FlowtapSnapshotStale alert leaves such a flowtap be); 0 while capturing.",
        stat!(capture_ended)
    ),
    metric!(
        "flowtap_capture_files_failed",
        Gauge,
        "Capture files (-r) whose reading an error ended (damaged, cut short, unreadable, missing): what they held past the error is in no answer; the end-of-run error on stderr names each file and the byte offset. Set once the files are read.",
        stat!(capture_files_failed)
    ),
    metric!(
        "flowtap_hub_feed_room_bytes",
        Gauge,
        "Hub: bytes of agents' feeds held at once, fetched and not yet decoded, at most (--max-feed-bytes-held; 0 on an agent).",
        stat!(hub_feed_room_bytes)
    ),
    metric!(
        "flowtap_hub_feed_room_waits",
        Counter,
        "Hub: pulls that waited for that room before reading their feed (one that waits past --agent-timeout fails, its agent named missing). Rising every round: raise --max-feed-bytes-held, or the hub holds more than its memory was planned for.",
        stat!(hub_feed_room_waits)
    ),
    metric!(
        "flowtap_hub_pulls_failed",
        Counter,
        "Hub: pulls of an agent's feed that gave nothing to merge, by reason: unreachable (no connection, or it broke), timeout (no whole answer within --agent-timeout), refused (an answer other than 200: a wrong token, an agent shutting down), too_large (past --max-feed-bytes), no_room (--max-feed-bytes-held reached), unreadable (an answer that is not HTTP, or no feed this hub reads), flow_bound (past --max-flows). The agent is named missing in that round's coverage, with the whole error; flowtap_agent_up says which agents are missing now.",
        Value::Labelled(&["reason"], |s| crate::feed::PullFailure::ALL
            .iter()
            .zip(&s.stats.hub_pulls_failed)
            .map(|(f, n)| (vec![f.label().to_owned()], n.load(Ordering::Relaxed) as f64))
            .collect())
    ),
    metric!(
        "flowtap_agents_expected",
        Gauge,
        "Vantage points this flowtap answers for: 1, or every agent a hub knows of (never answered: those beyond --max-agents, agent pods not ready, a discovery source that names none).",
        Value::One(|s| s.snapshot.coverage.agents.len() as f64)
    ),
    metric!(
        "flowtap_agents_answered",
        Gauge,
        "Of those, the ones whose data is in the current snapshot (a hub: those whose last pull succeeded).",
        Value::One(|s| s
            .snapshot
            .coverage
            .agents
            .iter()
            .filter(|a| a.answered())
            .count() as f64)
    ),
    metric!(
        "flowtap_agent_up",
        Gauge,
        "1 when the agent's data is in the current snapshot, 0 when it is missing (by agent name and node).",
        Value::Labelled(&["agent", "node"], |s| s
            .snapshot
            .coverage
            .agents
            .iter()
            .map(|a| (
                vec![
                    a.name.to_string(),
                    a.node.as_deref().unwrap_or("").to_owned()
                ],
                f64::from(u8::from(a.answered()))
            ))
            .collect())
    ),
    metric!(
        "flowtap_agent_losses",
        Counter,
        "What each vantage point whose data is in the snapshot reported losing since it started, by agent, node and loss: capture_drops (frames lost before flowtap read them: the kernel's, the NIC's, the mirror veth's), handoff_drops, flows_evicted, packets_in_no_flow; as in the answers' coverage. On a hub the only loss counters (its own capture families count nothing); an agent gives its own, under its node name: sum a hub's series or its agents', not both.",
        Value::Labelled(&["agent", "node", "loss"], |s| s
            .snapshot
            .coverage
            .agents
            .iter()
            .filter(|a| a.answered())
            .flat_map(|a| {
                let l = a.losses;
                [
                    ("capture_drops", l.capture_dropped),
                    ("handoff_drops", l.handoff_dropped),
                    ("flows_evicted", l.flows_evicted),
                    ("packets_in_no_flow", l.packets_in_no_flow),
                ]
                .map(|(loss, n)| {
                    (
                        vec![
                            a.name.to_string(),
                            a.node.as_deref().unwrap_or("").to_owned(),
                            loss.to_owned(),
                        ],
                        n as f64,
                    )
                })
            })
            .collect())
    ),
    metric!(
        "flowtap_pair_bytes",
        Counter,
        "Bytes (frames, both directions) between a client workload and a server workload on a server port, since start, as the snapshots saw them: what a flow gained after its last snapshot before it was evicted from a full table or timed out is not in it (flowtap_evicted_flow_bytes_total counts the evicted flows' bytes); workloads beyond --metrics-max-pairs are in the series labelled other.",
        Value::Labelled(&pairs::LABELS, |s| pair_samples(s, |c| c.bytes))
    ),
    metric!(
        "flowtap_pair_packets",
        Counter,
        "Packets (both directions) between a client workload and a server workload on a server port, since start.",
        Value::Labelled(&pairs::LABELS, |s| pair_samples(s, |c| c.packets))
    ),
    metric!(
        "flowtap_pair_connections",
        Counter,
        "Connections from a client workload to a server workload on a server port, since start.",
        Value::Labelled(&pairs::LABELS, |s| pair_samples(s, |c| c.connections))
    ),
    metric!(
        "flowtap_pair_failed_connections",
        Counter,
        "Failed TCP connections (refused, unanswered, reset) from a client workload to a server workload on a server port, since start.",
        Value::Labelled(&pairs::LABELS, |s| pair_samples(s, |c| c.failed))
    ),
    metric!(
        "flowtap_pair_handshake_seconds",
        Histogram,
        "TCP handshake times (SYN to SYN-ACK, the client's view) from a client workload to a server workload on a server port, since start.",
        Value::Histogram(&pairs::LABELS, |s| s
            .stats
            .pairs
            .lock()
            .expect("pairs lock")
            .handshake_histograms())
    ),
    metric!(
        "flowtap_metrics_pairs",
        Gauge,
        "Workload pairs with series of their own (at most --metrics-max-pairs).",
        Value::One(|s| s.stats.pairs.lock().expect("pairs lock").len() as f64)
    ),
    metric!(
        "flowtap_metrics_pairs_collapsed",
        Counter,
        "Flow updates counted in the pair series labelled other because --metrics-max-pairs pairs already had series.",
        Value::One(|s| s.stats.pairs.lock().expect("pairs lock").collapsed() as f64)
    ),
    metric!(
        "flowtap_metrics_pairs_evicted",
        Counter,
        "Pairs whose series ended to make room for new pairs at --metrics-max-pairs, after 300 snapshots without traffic.",
        Value::One(|s| s.stats.pairs.lock().expect("pairs lock").evicted() as f64)
    ),
    metric!(
        "flowtap_metrics_pairs_absent_forgotten",
        Counter,
        "Hub: flows that left the answer while an agent was missing, forgotten beyond --max-flows of them (one that comes back with its agent is then counted whole in the pair series).",
        Value::One(|s| s.stats.pairs.lock().expect("pairs lock").absent_forgotten() as f64)
    ),
    metric!(
        "flowtap_ipfix_records",
        Counter,
        "IPFIX data records exported: one per flow direction and export, one per flow with --ipfix-biflow, per connection with --ipfix-per connection.",
        Value::One(|s| s.stats.ipfix.records.load(Ordering::Relaxed) as f64),
        Ipfix "records"
    ),
    metric!(
        "flowtap_ipfix_messages",
        Counter,
        "IPFIX data messages made, each sent to every collector (template messages not counted).",
        Value::One(|s| s.stats.ipfix.messages.load(Ordering::Relaxed) as f64),
        Ipfix "messages"
    ),
    metric!(
        "flowtap_ipfix_send_errors",
        Counter,
        "IPFIX messages (data or templates) a collector's socket refused, or a TCP collector's connection failed.",
        Value::One(|s| s.stats.ipfix.send_errors.load(Ordering::Relaxed) as f64),
        Ipfix "send errors"
    ),
    metric!(
        "flowtap_ipfix_tcp_connects",
        Counter,
        "Connections made to tcp:// IPFIX collectors (more than one per collector: it went away and came back).",
        Value::One(|s| s.stats.ipfix.tcp_connects.load(Ordering::Relaxed) as f64),
        Ipfix "tcp connects"
    ),
    metric!(
        "flowtap_ipfix_records_lost",
        Counter,
        "IPFIX data records lost: in messages that could not be sent, or beyond a tcp:// collector's buffer (--ipfix-tcp-buffer). Records dropped before they reached the exporter are counted apart (flowtap_ipfix_connection_records_dropped_total, flowtap_ipfix_ended_flow_records_dropped_total).",
        Value::One(|s| s.stats.ipfix.records_lost.load(Ordering::Relaxed) as f64),
        Ipfix "records lost"
    ),
    metric!(
        "flowtap_ipfix_connection_records_dropped",
        Counter,
        "Connection records (--ipfix-per connection) dropped because the queue to the next snapshot was full (--ipfix-max-pending-records).",
        table!(conn_records_dropped),
        Ipfix "connection records dropped"
    ),
    metric!(
        "flowtap_ipfix_ended_flow_records_dropped",
        Counter,
        "Last records of flows that left the table, expired or evicted (--ipfix-per flow), dropped because the queue to the exporter was full (--ipfix-max-pending-records): what they counted since the last snapshot is in no record.",
        table!(ended_flow_records_dropped),
        Ipfix "ended flow records dropped"
    ),
    metric!(
        "flowtap_resident_memory_bytes",
        Gauge,
        "Resident memory of the process.",
        Value::One(|_| pipeline::memory::resident_bytes().unwrap_or(0) as f64)
    ),
    metric!(
        "flowtap_memory_limit_bytes",
        Gauge,
        "The memory budget the table limits were derived from (--memory-limit).",
        stat!(memory_limit)
    ),
    metric!(
        "flowtap_snapshots_published",
        Counter,
        "Snapshots published to the API.",
        stat!(snapshots)
    ),
    metric!(
        "flowtap_snapshots_late",
        Counter,
        "Snapshots that took longer than --snapshot-interval to make and prepare for queries (answers were older than the interval meanwhile; logged at most once a minute).",
        stat!(snapshots_late)
    ),
    metric!(
        "flowtap_snapshot_age_seconds",
        Gauge,
        "Wall-clock age of the snapshot the API serves: since it was published, or on a hub since its oldest answering agent's data was taken, +Inf while no agent answers (no sample before the first: absent() tells a flowtap that never published).",
        Value::Labelled(&[], |s| {
            if s.snapshot.sequence == 0 {
                return Vec::new();
            }
            let now = wall_now_ns();
            // The coverage's times are wall-clock ones; a snapshot's own time
            // is the capture's when files are read (months old).
            let coverage = &s.snapshot.coverage;
            let taken = match coverage.oldest_update_ns() {
                Some(taken) => taken,
                // A hub none of whose agents answered serves no data at
                // all: +Inf, where its own round's time read as fresh
                // through a whole outage.
                None if !coverage.agents.is_empty() => return vec![(Vec::new(), f64::INFINITY)],
                None => s.snapshot.as_of_ns,
            };
            let age = as_secs_f64(now.saturating_sub(taken.min(now)));
            vec![(Vec::new(), age)]
        })
    ),
    metric!(
        "flowtap_snapshot_merge_duration_seconds",
        Histogram,
        "Time to make one snapshot and prepare it for queries (names, summary): a flowtap exports, merges and sorts its shards' flows; a hub pulls, decodes and merges every agent's.",
        Value::Histogram(&[], |s| vec![(
            Vec::new(),
            s.stats
                .merge
                .lock()
                .expect("metrics lock")
                .clone()
                .unwrap_or_else(|| FixedHistogram::new(&MERGE_BUCKETS))
        )])
    ),
    metric!(
        "flowtap_xdp_frames",
        Counter,
        "Frames received on an rx queue's AF_XDP socket.",
        per_queue!(frames),
        Queue "frames"
    ),
    metric!(
        "flowtap_xdp_bytes",
        Counter,
        "Bytes received on an rx queue's AF_XDP socket.",
        per_queue!(bytes),
        Queue "bytes"
    ),
    metric!(
        "flowtap_xdp_frames_without_timestamp",
        Counter,
        "Frames whose XDP timestamp was missing (user-space time used).",
        per_queue!(without_timestamp),
        Queue "without XDP timestamp"
    ),
    metric!(
        "flowtap_xdp_rx_dropped",
        Counter,
        "Kernel: frames dropped for the socket: no free buffer (the worker too slow: its fill ring empty, copy mode), or too long without multi-buffer.",
        per_queue!(rx_dropped),
        Queue "rx_dropped"
    ),
    metric!(
        "flowtap_xdp_rx_ring_full",
        Counter,
        "Kernel: frames dropped because the rx ring was full: 0 with flowtap's rings, whose rx ring has room for every buffer (a slow worker's frames are rx_dropped instead).",
        per_queue!(rx_ring_full),
        Queue "rx_ring_full"
    ),
    metric!(
        "flowtap_xdp_fill_ring_empty",
        Counter,
        "Kernel: times the fill ring had no free buffer (events, not frames: in zero-copy mode the NIC drops the frames, counted where its driver counts rx_missed_errors).",
        per_queue!(fill_ring_empty),
        Queue "fill_ring_empty"
    ),
    metric!(
        "flowtap_xdp_invalid_descriptors",
        Counter,
        "Kernel: invalid rx/tx descriptors.",
        per_queue!(invalid),
        Queue "invalid"
    ),
    metric!(
        "flowtap_xdp_ring_entries",
        Gauge,
        "Size of each AF_XDP ring (fill, rx) in frames: the buffering bound.",
        per_queue!(ring_entries)
    ),
    metric!(
        "flowtap_xdp_max_frame_bytes",
        Gauge,
        "Longest frame one AF_XDP buffer receives (the frame size less the kernel's headroom); longer ones take several (multi-buffer) or are rx_dropped.",
        per_queue!(max_frame_bytes)
    ),
    metric!(
        "flowtap_handoff_queue_capacity",
        Gauge,
        "Packets each worker's hand-off queue holds: the bound behind hand-off drops.",
        stat!(handoff_capacity)
    ),
    metric!(
        "flowtap_http_requests",
        Counter,
        "HTTP requests by path (known paths; others are other) and status.",
        Value::Labelled(&["path", "status"], |s| s
            .stats
            .http
            .lock()
            .expect("metrics lock")
            .iter()
            .map(|((route, status), n)| (
                vec![route.label().to_owned(), status.to_string()],
                *n as f64
            ))
            .collect())
    ),
    metric!(
        "flowtap_inventory_reloads",
        Counter,
        "Times the Kubernetes names changed: the inventory file was re-read, or the watch saw a change.",
        stat!(inventory_reloads)
    ),
    metric!(
        "flowtap_inventory_reload_errors",
        Counter,
        "Re-reads that failed (the previous mapping stayed in force).",
        stat!(inventory_reload_errors)
    ),
    metric!(
        "flowtap_k8s_objects",
        Gauge,
        "Kubernetes objects the watch holds, by kind (trimmed to the fields flowtap reads).",
        Value::Labelled(&["kind"], |s| k8s::KINDS
            .iter()
            .zip(&s.stats.k8s.objects)
            .map(|(k, n)| (vec![(*k).to_owned()], n.load(Ordering::Relaxed) as f64))
            .collect())
    ),
    metric!(
        "flowtap_k8s_pods_gone",
        Gauge,
        "Pods deleted or finished that the watch keeps to name their old addresses (for flows from before a new pod had one, or while none has), as long as the longest idle timeout and 5 minutes at least (a hub: 5 minutes; a quarter of --k8s-max-objects at most, the oldest giving way; not in flowtap_k8s_objects).",
        Value::One(|s| s.stats.k8s.gone_pods.load(Ordering::Relaxed) as f64)
    ),
    metric!(
        "flowtap_k8s_objects_dropped",
        Counter,
        "Kubernetes objects left out because --k8s-max-objects were held (their addresses go unnamed), counted each time one comes (in a list, or changed); a kind that left some out is listed again once a tenth of the bound is free (every 5 minutes at most).",
        Value::One(|s| s.stats.k8s.dropped.load(Ordering::Relaxed) as f64)
    ),
    metric!(
        "flowtap_k8s_objects_left_out",
        Gauge,
        "1 while a kind has left objects out at --k8s-max-objects since it was last listed (names are incomplete: answers say names_known false), else 0.",
        Value::One(|s| f64::from(u8::from(s.stats.k8s.left_out.load(Ordering::Relaxed))))
    ),
    metric!(
        "flowtap_k8s_watch_errors",
        Counter,
        "Errors the Kubernetes watches met (each retried with backoff).",
        Value::One(|s| s.stats.k8s.errors.load(Ordering::Relaxed) as f64)
    ),
    metric!(
        "flowtap_k8s_answers_too_large",
        Counter,
        "Answers of the Kubernetes API cut off for a list's page or a watch event larger than --k8s-max-answer-bytes (each also a watch error, retried with backoff: a kind whose pages never fit stays unnamed; raise the bound).",
        Value::One(|s| s.stats.k8s.answers_too_large.load(Ordering::Relaxed) as f64)
    ),
    metric!(
        "flowtap_k8s_relists",
        Counter,
        "Full lists of a kind that came through whole: the first, one after each 410 Gone, and one when a kind that left objects out at --k8s-max-objects has room again (tries that failed are watch errors).",
        Value::One(|s| s.stats.k8s.relists.load(Ordering::Relaxed) as f64)
    ),
    metric!(
        "flowtap_k8s_synced",
        Gauge,
        "1 once the watch has listed every kind (names are complete), else 0.",
        Value::One(|s| f64::from(u8::from(s.stats.k8s.synced.load(Ordering::Relaxed))))
    ),
    metric!(
        "flowtap_k8s_names_stale",
        Gauge,
        "1 while a kind's watch has failed for a minute or more without a list, an event or the watch opened again getting through (names may be stale: pods made since unnamed, pods deleted since still listed; answers say names_known false), else 0.",
        Value::One(|s| f64::from(u8::from(s.stats.k8s.stale.load(Ordering::Relaxed))))
    ),
    metric!(
        "flowtap_inventory_addresses",
        Gauge,
        "IP addresses the inventory maps.",
        stat!(inventory_addresses)
    ),
    metric!(
        "flowtap_http_connections",
        Gauge,
        "HTTP connections open now, on the data and admin listeners together.",
        stat!(http_connections)
    ),
    metric!(
        "flowtap_http_connection_capacity",
        Gauge,
        "HTTP connections open at most: --http-max-connections on each listener (data and admin), summed.",
        stat!(http_connection_capacity)
    ),
    metric!(
        "flowtap_http_turns",
        Gauge,
        "Answers rendered or being sent at once, at most, by kind: large (over 1000 flows or workloads, MCP tool calls; --http-max-large-answers), metrics (/metrics; --http-max-scrapes) and feed (a hub's pull, its encoding: one at a time, the next pulls sharing its bytes).",
        Value::Labelled(&["answers"], |s| turn_samples(s, |t| &t.at_once))
    ),
    metric!(
        "flowtap_http_turns_waiting",
        Gauge,
        "Requests waiting for their turn, by kind (as flowtap_http_turns).",
        Value::Labelled(&["answers"], |s| turn_samples(s, |t| &t.waiting))
    ),
    metric!(
        "flowtap_http_turns_taken_back",
        Counter,
        "Turns taken back from a client that had stopped reading its answer (its socket took nothing for 2 s) while other requests waited: its connection closed, by kind (as flowtap_http_turns).",
        Value::Labelled(&["answers"], |s| turn_samples(s, |t| &t.taken_back))
    ),
    metric!(
        "flowtap_http_turn_clients_forgotten",
        Counter,
        "Clients whose conduct with their last answer (read, or taken back) was forgotten before its 5 minutes to make room: more than 4096 clients (addresses, IPv6 /64s) asked within them, by kind (as flowtap_http_turns). A client forgotten stands in line as one not seen yet.",
        Value::Labelled(&["answers"], |s| turn_samples(s, |t| &t.forgotten))
    ),
    metric!(
        "flowtap_http_connections_refused",
        Counter,
        "Connections answered 503 because every open one was busy.",
        stat!(http_connections_refused)
    ),
    metric!(
        "flowtap_http_client_connection_capacity",
        Gauge,
        "HTTP connections one client address may hold open on a listener (--http-max-connections-per-client): at it, the client's own oldest idle connection is closed for its new one.",
        stat!(http_client_connection_capacity)
    ),
    metric!(
        "flowtap_http_client_connections_refused",
        Counter,
        "Connections answered 503 because their client address held its bound of connections, every one busy (a flood of pipelined requests from one address).",
        stat!(http_client_connections_refused)
    ),
    metric!(
        "flowtap_http_connections_closed_idle",
        Counter,
        "Idle connections closed to admit new ones at the limit.",
        stat!(http_connections_closed_idle)
    ),
    metric!(
        "flowtap_http_request_body_bytes",
        Gauge,
        "Bytes of request bodies (MCP messages) held now, being read or handled, each at what has come in (4 KiB at first, doubling as it comes).",
        stat!(request_body_bytes_held)
    ),
    metric!(
        "flowtap_http_request_body_bytes_capacity",
        Gauge,
        "Bytes of request bodies held at once, at most (--mcp-max-request-bytes-held); past it, requests are answered 503.",
        stat!(request_body_bytes_capacity)
    ),
    metric!(
        "flowtap_http_request_bodies_refused",
        Counter,
        "MCP requests answered 503 because the request bodies held at once were at --mcp-max-request-bytes-held, or their client's (an address, an IPv6 /64) at a quarter of it (at least --mcp-max-request-bytes).",
        stat!(request_bodies_refused)
    ),
    metric!(
        "flowtap_http_connections_closed_stalled",
        Counter,
        "Connections whose socket had taken nothing of their answer for 2 s (a client that stopped reading), or whose request body had been coming in for 2 s, closed to admit new ones when every connection was busy.",
        stat!(http_connections_closed_stalled)
    ),
    metric!(
        "flowtap_http_header_timeouts",
        Counter,
        "Connections closed for not sending a whole request head within --http-header-timeout (a client trickling its headers, or a kept-alive one that sent nothing more).",
        stat!(http_header_timeouts)
    ),
    metric!(
        "flowtap_http_responses_overdue",
        Counter,
        "Connections closed because a response was not written out within --http-response-timeout.",
        stat!(http_responses_overdue)
    ),
    metric!(
        "flowtap_mcp_requests",
        Counter,
        "MCP JSON-RPC requests by method (known ones; others are other) and outcome (ok; tool_error: a tool call answered with isError, such as a bad argument; error: a JSON-RPC error).",
        Value::Labelled(&["method", "outcome"], |s| s
            .stats
            .mcp
            .lock()
            .expect("metrics lock")
            .iter()
            .map(|((method, outcome), n)| (
                vec![(*method).to_owned(), (*outcome).to_owned()],
                *n as f64
            ))
            .collect())
    ),
    metric!(
        "flowtap_mcp_sessions",
        Gauge,
        "Open MCP sessions (handshake protocol revisions over HTTP).",
        stat!(mcp_sessions)
    ),
    metric!(
        "flowtap_mcp_session_capacity",
        Gauge,
        "MCP sessions kept at most: the bound behind evictions.",
        stat!(mcp_session_capacity)
    ),
    metric!(
        "flowtap_mcp_sessions_evicted",
        Counter,
        "MCP sessions ended to make room (their least recently used): a client's own for its new one at --mcp-sessions-per-client, or, with --mcp-max-sessions open, those of the client holding the most.",
        stat!(mcp_sessions_evicted)
    ),
    metric!(
        "flowtap_mcp_sessions_resumed",
        Counter,
        "MCP sessions flowtap did not know (it restarted, or the session expired or was evicted) taken up again at the protocol revision the client's MCP-Protocol-Version header names, rather than answered 404.",
        stat!(mcp_sessions_resumed)
    ),
    metric!(
        "flowtap_mcp_sessions_refused",
        Counter,
        "MCP sessions refused (503) because --mcp-max-sessions were open, none had timed out, and no client held two more than the newcomer's.",
        stat!(mcp_sessions_refused)
    ),
    metric!(
        "flowtap_mcp_batches_refused",
        Counter,
        "JSON-RPC batches refused for holding more than --mcp-max-batch messages.",
        stat!(mcp_batches_refused)
    ),
    metric!(
        "flowtap_mcp_replies_over_budget",
        Counter,
        "MCP answers replaced by an error because the reply would have exceeded --mcp-max-reply-bytes.",
        stat!(mcp_replies_over_budget)
    ),
];

/// The metrics reference: a Markdown table generated from [`CATALOG`].
pub fn reference_markdown() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for m in CATALOG {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            m.sample_name(),
            m.kind.name(),
            m.labels().join(", "),
            m.help
        ));
    }
    out
}

/// One pair counter's series.
fn pair_samples(
    s: &Sources<'_>,
    counter: fn(&pairs::PairCounts) -> u64,
) -> Vec<(Vec<String>, f64)> {
    s.stats.pairs.lock().expect("pairs lock").samples(counter)
}

/// One figure of each kind of turn ([`crate::server::turns`]).
fn turn_samples(
    s: &Sources<'_>,
    figure: fn(&crate::server::TurnStats) -> &std::sync::atomic::AtomicU64,
) -> Vec<(Vec<String>, f64)> {
    [
        ("large", &s.stats.large_answer_turns),
        ("metrics", &s.stats.scrape_turns),
        ("feed", &s.stats.feed_turns),
    ]
    .into_iter()
    .map(|(kind, turns)| {
        let value = figure(turns).load(Ordering::Relaxed) as f64;
        (vec![kind.to_owned()], value)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_reported_words_too() {
        let mut names: Vec<&str> = CATALOG.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len());
        for line in Line::ALL {
            let mut words: Vec<&str> = CATALOG
                .iter()
                .filter_map(|m| m.report)
                .filter(|(l, _)| *l == line)
                .map(|(_, w)| w)
                .collect();
            let n = words.len();
            words.sort_unstable();
            words.dedup();
            assert_eq!(words.len(), n, "{line:?}");
        }
    }
}
