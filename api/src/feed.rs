//! The feed an agent serves its hub: `GET /internal/v1/feed` on the data
//! listener, behind the same token as the flow data. It holds the agent's
//! current flows with their handshake digests in mergeable form (samples or
//! sketch buckets, so the hub's percentiles are exact to digest precision
//! and never averages of percentiles), who the agent is, and what it lost.
//!
//! Encoded with postcard (serde in a compact binary form with varints):
//! about a quarter of the same data in JSON, and several times faster to
//! decode (BENCHMARKS.md, hub). A view encodes its feed once, the first time
//! it is asked for, and serves those bytes to every pull until the next
//! snapshot.

use std::sync::Arc;

use pipeline::flow::handshake::{DigestExport, EXACT_SAMPLES, HandshakeTally, TALLY_BOUNDS_US};
use pipeline::flow::sketch::MAX_BUCKETS;
use pipeline::flow::{
    Counter, FlowKey, FlowRecord, HandshakeDigest, PerSide, Rates, Side, TcpHealth, Window,
};
use pipeline::packet::{Addr, L4Proto};
use pipeline::snapshot::{Coverage, Losses};
use pipeline::wire::decap::{Encap, Mirror};
use serde::{Deserialize, Serialize};

use crate::view::View;

pub const PATH: &str = "/internal/v1/feed";

/// Why a hub's pull of a feed gave nothing to merge: the reasons
/// `flowtap_hub_pulls_failed_total` counts by (the coverage names the
/// agent and says the whole error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullFailure {
    /// No connection, or it broke: the agent down, its address gone.
    Unreachable,
    /// No whole answer within `--agent-timeout`.
    Timeout,
    /// An answer other than 200 (a wrong token, an agent shutting down).
    Refused,
    /// Larger than `--max-feed-bytes`.
    TooLarge,
    /// No room among the feeds held at once (`--max-feed-bytes-held`).
    NoRoom,
    /// An answer that is not HTTP (an agent that speaks TLS, another
    /// service on its port), or no feed this hub reads (another version,
    /// damaged, an unreadable age).
    Unreadable,
    /// Its flows would take the hub past `--max-flows`.
    FlowBound,
}

impl PullFailure {
    pub const ALL: [PullFailure; 7] = [
        PullFailure::Unreachable,
        PullFailure::Timeout,
        PullFailure::Refused,
        PullFailure::TooLarge,
        PullFailure::NoRoom,
        PullFailure::Unreadable,
        PullFailure::FlowBound,
    ];

    /// Its place in [`Self::ALL`] (the order the variants are declared
    /// in), and in the counters kept by it.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            PullFailure::Unreachable => "unreachable",
            PullFailure::Timeout => "timeout",
            PullFailure::Refused => "refused",
            PullFailure::TooLarge => "too_large",
            PullFailure::NoRoom => "no_room",
            PullFailure::Unreadable => "unreadable",
            PullFailure::FlowBound => "flow_bound",
        }
    }
}
pub const CONTENT_TYPE: &str = "application/x-flowtap-feed";
/// A feed's answer says in this header how long ago, by the agent's own
/// clock, the agent published the snapshot it serves (milliseconds). The
/// feed's bytes are encoded once a snapshot, so the age, which grows with
/// every pull, is said beside them. A hub dates the agent's data by it: an
/// agent whose pipeline has stopped publishing while its server still
/// answers shows data growing old, not the freshness of the pull, and no
/// clock is compared across nodes.
pub const AGE_HEADER: &str = "flowtap-snapshot-age-ms";
/// Changes whenever the encoding does: a hub refuses other versions.
pub const VERSION: u32 = 5;

/// A feed: its head, then its flows (postcard writes a struct's fields in
/// turn, so the head's are the feed's first, the version first of all).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Feed {
    pub head: FeedHead,
    pub flows: Vec<FeedFlow>,
}

/// Who the agent is, which snapshot, and what it lost.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FeedHead {
    pub version: u32,
    /// The agent's own name for itself and its node (`--node-name`).
    pub name: String,
    /// Drawn at random when the agent starts ([`instance`]): a hub that
    /// reaches one agent at two addresses (a dual-stack name's A and AAAA
    /// records, `--agent` beside discovery) merges it once.
    pub instance: u64,
    pub node: Option<String>,
    /// Increases with every snapshot the agent publishes.
    pub sequence: u64,
    /// The snapshot's time (capture time for files, wall clock live).
    pub as_of_ns: u64,
    pub since_ns: Option<u64>,
    pub losses: WireLosses,
}

/// At most this many flows are allocated ahead of decoding them, whatever
/// count a feed declares: a larger feed grows as it decodes, and room not
/// yet filled is address space, not memory.
const MAX_PREALLOCATED_FLOWS: usize = 1 << 20;

/// The fewest bytes a flow is encoded in: its two 16-byte addresses and
/// four 8-byte rates alone take 64 (postcard writes arrays and floats
/// whole; a test encodes the smallest flow).
const MIN_FLOW_BYTES: usize = 64;

/// A feed's flows, decoded one at a time from its bytes ([`Feed::open`]).
pub struct FeedFlows<'b> {
    /// How many the feed declares that are still to come.
    left: usize,
    rest: &'b [u8],
}

impl FeedFlows<'_> {
    /// The count the feed declares of the flows still to come (all of
    /// them, before the first is taken): no more than that are decoded.
    pub fn declared(&self) -> usize {
        self.left
    }

    /// How many flows to make room for: the count the feed declares, but
    /// no more than one a byte left (each takes several) nor than
    /// [`MAX_PREALLOCATED_FLOWS`], so that a count that lies allocates
    /// nothing much.
    pub fn room(&self) -> usize {
        self.left.min(self.rest.len()).min(MAX_PREALLOCATED_FLOWS)
    }
}

impl Iterator for FeedFlows<'_> {
    type Item = Result<FeedFlow, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        match postcard::take_from_bytes(self.rest) {
            Ok((flow, rest)) => {
                self.rest = rest;
                self.left -= 1;
                if self.left == 0
                    && let Err(e) = nothing_after_the_flows(rest)
                {
                    return Some(Err(e));
                }
                match FeedFlow::check(&flow) {
                    Ok(()) => Some(Ok(flow)),
                    Err(e) => {
                        self.left = 0;
                        Some(Err(e))
                    }
                }
            }
            Err(e) => {
                self.left = 0;
                Some(Err(not_a_feed(e)))
            }
        }
    }
}

/// Bytes after a feed's last flow mean it is not what the hub reads (a
/// proxy's body appended, another version's layout).
fn nothing_after_the_flows(rest: &[u8]) -> Result<(), String> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "not a feed: {} bytes after its last flow",
            rest.len()
        ))
    }
}

/// What a hub says of bytes that do not decode as a feed.
fn not_a_feed(e: postcard::Error) -> String {
    match e {
        // postcard keeps no message of serde's own errors: those of
        // `AtMost`, and of an enum's unknown variant.
        postcard::Error::SerdeDeCustom => {
            "not a feed: a value out of its range (a handshake leg with more samples or buckets than an agent's digest holds, or an unknown variant)".to_owned()
        }
        e => format!("not a feed: {e}"),
    }
}

/// The longest name an agent may give itself or its node: a DNS name's
/// (a Kubernetes node name is one), without control characters. Names go
/// into every answer's coverage and into metric labels.
pub const MAX_NAME_BYTES: usize = 253;

/// What is wrong with `name` as an agent's or a node's name, if anything.
pub fn name_problem(name: &str) -> Option<String> {
    (name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control)).then(|| {
        format!(
            "{} bytes; at most {MAX_NAME_BYTES}, no control characters",
            name.len()
        )
    })
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    match name_problem(name) {
        Some(problem) => Err(format!("not a feed: its {what} is not a name ({problem})")),
        None => Ok(()),
    }
}

/// A sequence of at most `N` elements, decoded without room for more: a
/// handshake leg holds at most [`EXACT_SAMPLES`] samples or
/// [`MAX_BUCKETS`] buckets, and a feed that says it holds millions would
/// otherwise be decoded whole first (4 bytes of memory for each byte of
/// the feed).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(transparent)]
pub struct AtMost<T, const N: usize>(pub Vec<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for AtMost<T, N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Elements<T, const N: usize>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> serde::de::Visitor<'de> for Elements<T, N> {
            type Value = AtMost<T, N>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "at most {N} elements")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let declared = seq.size_hint().unwrap_or(0);
                if declared > N {
                    return Err(serde::de::Error::invalid_length(declared, &self));
                }
                let mut all = Vec::with_capacity(declared);
                while let Some(element) = seq.next_element()? {
                    if all.len() == N {
                        return Err(serde::de::Error::invalid_length(N + 1, &self));
                    }
                    all.push(element);
                }
                Ok(AtMost(all))
            }
        }
        d.deserialize_seq(Elements(std::marker::PhantomData))
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WireLosses {
    pub capture_dropped: u64,
    pub handoff_dropped: u64,
    pub flows_evicted: u64,
    pub packets_in_no_flow: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FeedFlow {
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    pub client: [u8; 16],
    pub server: [u8; 16],
    pub server_port: u16,
    /// (packets, bytes) the client sent, then the server.
    pub sent: [(u64, u64); 2],
    /// Of those bytes, the ones that are not IP bytes (link headers, tags,
    /// padding): smaller numbers than the IP bytes, so fewer bytes to send.
    pub link_bytes: [u64; 2],
    /// Packets/s the client sent, the server sent; then bits/s likewise.
    pub pps: [f64; 2],
    pub bps: [f64; 2],
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub connections: u64,
    /// Handshake legs by whose view they are: client, server.
    pub legs: [Option<WireDigest>; 2],
    /// Every client-leg handshake since the flow began, when any: counts
    /// per bucket of `TALLY_BOUNDS_US`, and their sum in µs.
    pub tally: Option<([u32; TALLY_BOUNDS_US.len() + 1], u64)>,
    /// The mirror session: the encapsulation's index in `Encap::ALL`, its id.
    pub mirror: Option<(u8, Option<u32>)>,
    /// TCP health, when any is counted.
    pub tcp: Option<WireHealth>,
}

/// Per side (client, then server): retransmissions, RSTs, zero windows;
/// then the outcomes: established, refused, unanswered, reset, closed, open.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireHealth {
    pub sent: [[u64; 3]; 2],
    pub connections: [u64; 6],
}

impl WireHealth {
    fn of(h: &TcpHealth) -> Option<WireHealth> {
        (*h != TcpHealth::default()).then(|| {
            let (sent, connections) = h.to_counts();
            WireHealth { sent, connections }
        })
    }

    fn into_health(self) -> TcpHealth {
        TcpHealth::from_counts(self.sent, self.connections)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum WireDigest {
    Exact(AtMost<u32, EXACT_SAMPLES>),
    Sketch(AtMost<(u16, u32), { MAX_BUCKETS as usize }>),
}

impl From<DigestExport> for WireDigest {
    fn from(d: DigestExport) -> Self {
        match d {
            DigestExport::Exact(v) => WireDigest::Exact(AtMost(v)),
            DigestExport::Sketch(v) => WireDigest::Sketch(AtMost(v)),
        }
    }
}

impl From<WireDigest> for DigestExport {
    fn from(d: WireDigest) -> Self {
        match d {
            WireDigest::Exact(v) => DigestExport::Exact(v.0),
            WireDigest::Sketch(v) => DigestExport::Sketch(v.0),
        }
    }
}

impl From<Losses> for WireLosses {
    fn from(l: Losses) -> Self {
        WireLosses {
            capture_dropped: l.capture_dropped,
            handoff_dropped: l.handoff_dropped,
            flows_evicted: l.flows_evicted,
            packets_in_no_flow: l.packets_in_no_flow,
        }
    }
}

impl From<WireLosses> for Losses {
    fn from(l: WireLosses) -> Self {
        Losses {
            capture_dropped: l.capture_dropped,
            handoff_dropped: l.handoff_dropped,
            flows_evicted: l.flows_evicted,
            packets_in_no_flow: l.packets_in_no_flow,
        }
    }
}

/// This process's instance number, drawn once: the standard library's
/// randomly keyed hasher over the process id and the start time (no
/// dependency needed for 64 bits that only have to differ between agents).
pub fn instance() -> u64 {
    static INSTANCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *INSTANCE.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    })
}

impl Feed {
    /// The feed of `view`'s snapshot. The agent is the snapshot's first
    /// (its own) coverage entry.
    pub fn of(view: &View) -> Feed {
        let s = &view.snapshot;
        let me = s.coverage.agents.first();
        Feed {
            head: FeedHead {
                version: VERSION,
                name: me.map_or_else(String::new, |a| a.name.to_string()),
                instance: instance(),
                node: me.and_then(|a| a.node.as_deref().map(str::to_owned)),
                sequence: s.sequence,
                as_of_ns: s.as_of_ns,
                since_ns: s.since_ns,
                losses: me.map(|a| a.losses).unwrap_or_default().into(),
            },
            flows: s
                .flows
                .iter()
                .map(|f| FeedFlow::of(f, s.as_of_ns, s.rtt_window))
                .collect(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a feed serialises into memory")
    }

    /// Decodes a feed whole; a feed of another version is an error.
    pub fn decode(bytes: &[u8]) -> Result<Feed, String> {
        let (head, flows) = Feed::open(bytes)?;
        let mut all = Vec::with_capacity(flows.room());
        for flow in flows {
            all.push(flow?);
        }
        Ok(Feed { head, flows: all })
    }

    /// Decodes a feed's head, and gives its flows to decode one at a time:
    /// a hub makes each into a record as it comes, rather than holding a
    /// feed's flows all decoded beside their records (fresh memory each
    /// feed, which the kernel zeroes first). A feed of another version is
    /// an error.
    pub fn open(bytes: &[u8]) -> Result<(FeedHead, FeedFlows<'_>), String> {
        // The version alone first: another version's head may not decode
        // as this one's.
        let (version, _): (u32, _) = postcard::take_from_bytes(bytes).map_err(not_a_feed)?;
        if version != VERSION {
            return Err(format!(
                "feed version {version} (this hub reads {VERSION}): run the same flowtap version on agents and hub"
            ));
        }
        let (head, rest): (FeedHead, _) = postcard::take_from_bytes(bytes).map_err(not_a_feed)?;
        check_name("agent name", &head.name)?;
        if let Some(node) = &head.node {
            check_name("node name", node)?;
        }
        // A sequence is its length (a varint, as a `usize` is), then its
        // elements (postcard's wire format).
        let (left, rest): (usize, _) = postcard::take_from_bytes(rest).map_err(not_a_feed)?;
        // The hub charges the declared count against --max-flows before
        // decoding: a count the bytes cannot hold (2,000,000 flows in 30
        // bytes) pushed every honest agent out of the round.
        if left == 0 {
            nothing_after_the_flows(rest)?;
        }
        if left > rest.len() / MIN_FLOW_BYTES {
            return Err(format!(
                "not a feed: it declares {left} flows in {} bytes (a flow takes {MIN_FLOW_BYTES} at least)",
                rest.len()
            ));
        }
        Ok((head, FeedFlows { left, rest }))
    }
}

impl FeedFlow {
    /// Whether the flow's rates are ones an agent could have measured:
    /// finite and not negative (a merged group adds them). Counts are
    /// taken as they come: any may be as large as a long flow makes it,
    /// and every sum of them saturates.
    fn check(&self) -> Result<(), String> {
        if let Some(rate) = self
            .pps
            .iter()
            .chain(&self.bps)
            .find(|r| !(r.is_finite() && **r >= 0.0))
        {
            return Err(format!("not a feed: a flow's rate is {rate}"));
        }
        Ok(())
    }

    /// `f` as an agent sends it, its digests holding what `window` holds
    /// at `as_of_ns`.
    pub fn of(f: &FlowRecord, as_of_ns: u64, window: Window) -> FeedFlow {
        let leg = |side: Side| {
            f.handshake[side]
                .as_ref()
                .map(|d| WireDigest::from(d.export(as_of_ns, window)))
                .filter(|d| !matches!(d, WireDigest::Exact(v) if v.0.is_empty()))
        };
        FeedFlow {
            proto: f.key.proto as u8,
            client: f.key.client.0,
            server: f.key.server.0,
            server_port: f.key.server_port,
            sent: [Side::Client, Side::Server].map(|s| (f.sent[s].pkts, f.sent[s].bytes)),
            link_bytes: [Side::Client, Side::Server]
                .map(|s| f.sent[s].bytes.saturating_sub(f.ip_bytes[s])),
            pps: [f.rates.pps[Side::Client], f.rates.pps[Side::Server]],
            bps: [f.rates.bps[Side::Client], f.rates.bps[Side::Server]],
            first_seen_ns: f.first_seen_ns,
            last_seen_ns: f.last_seen_ns,
            connections: f.connections,
            legs: [leg(Side::Client), leg(Side::Server)],
            tally: f.handshake[Side::Client]
                .as_ref()
                .map(|d| d.tallied())
                .filter(|t| !t.is_empty())
                .map(|t| (t.counts, t.sum_us)),
            mirror: f.mirror.map(|m| (m.encap.index() as u8, m.id)),
            tcp: WireHealth::of(&f.tcp),
        }
    }

    /// The flow's key; `None` for a protocol flowtap does not count.
    pub fn key(&self) -> Option<FlowKey> {
        let proto = match self.proto {
            6 => L4Proto::Tcp,
            17 => L4Proto::Udp,
            _ => return None,
        };
        Some(FlowKey {
            proto,
            client: Addr(self.client),
            server: Addr(self.server),
            server_port: self.server_port,
        })
    }

    /// Whether the record will have a handshake leg (samples, or a tally
    /// without them): the only flows whose digests can be shared.
    pub fn has_handshake(&self) -> bool {
        self.legs.iter().any(Option::is_some) || self.tally.is_some()
    }

    /// The flow as a record of the hub's snapshot (its digests count every
    /// sample they hold: read them with an unbounded window).
    pub fn into_record(self) -> Option<FlowRecord> {
        self.into_record_sharing(|_| None)
    }

    /// [`FeedFlow::into_record`], sharing each handshake leg equal to that
    /// of `before(key)` (the same flow in the hub's last snapshot) with it:
    /// that record's digest and percentiles rather than new ones. A hub
    /// holds its last snapshot while it builds the next, and most flows'
    /// handshakes do not change from one round to the next. `before` is
    /// asked only for a flow with a handshake leg.
    pub fn into_record_sharing<'b>(
        self,
        before: impl FnOnce(&FlowKey) -> Option<&'b FlowRecord>,
    ) -> Option<FlowRecord> {
        let key = self.key()?;
        // Only a flow with a handshake leg has anything to share: the
        // others are not looked up.
        let before = if self.has_handshake() {
            before(&key)
        } else {
            None
        };
        // The tally outlives the samples in the window: a client leg for it
        // even without samples.
        let tally = PerSide::new(
            self.tally
                .map(|(counts, sum_us)| HandshakeTally { counts, sum_us }),
            None,
        );
        let legs = self.legs.map(|leg| leg.map(DigestExport::from));
        let has_leg = |side: Side| legs[side as usize].is_some() || tally[side].is_some();
        let mut handshake = PerSide::default();
        let mut percentiles = PerSide::default();
        for side in Side::BOTH.into_iter().filter(|&side| has_leg(side)) {
            let export = legs[side as usize].as_ref();
            let unchanged = before.filter(|b| {
                b.handshake[side]
                    .as_ref()
                    .is_some_and(|d| d.is_import_of(export, tally[side].as_ref()))
            });
            if let Some(b) = unchanged {
                handshake[side] = b.handshake[side].clone();
                percentiles[side] = b.percentiles[side];
            } else {
                let d = HandshakeDigest::imported(export, tally[side]);
                percentiles[side] = d.percentiles(0, Window::Unbounded);
                handshake[side] = Some(Arc::new(d));
            }
        }
        let counter = |(pkts, bytes): (u64, u64)| Counter { pkts, bytes };
        Some(FlowRecord {
            key,
            sent: PerSide::new(counter(self.sent[0]), counter(self.sent[1])),
            ip_bytes: PerSide::from_fn(|side| {
                let i = side as usize;
                self.sent[i].1.saturating_sub(self.link_bytes[i])
            }),
            rates: Rates {
                pps: PerSide::new(self.pps[0], self.pps[1]),
                bps: PerSide::new(self.bps[0], self.bps[1]),
            },
            first_seen_ns: self.first_seen_ns,
            last_seen_ns: self.last_seen_ns,
            connections: self.connections,
            handshake,
            percentiles,
            mirror: self.mirror.and_then(|(encap, id)| {
                Some(Mirror {
                    encap: *Encap::ALL.get(usize::from(encap))?,
                    id,
                })
            }),
            tcp: self.tcp.map(WireHealth::into_health).unwrap_or_default(),
            seen_by: None,
        })
    }
}

/// The coverage entry an agent's feed describes, its data taken at
/// `taken_ns` (the hub's clock: the pull's time less the agent's age of it).
pub fn agent_coverage(
    url: &str,
    feed: &FeedHead,
    taken_ns: u64,
) -> pipeline::snapshot::AgentCoverage {
    pipeline::snapshot::AgentCoverage {
        name: url.into(),
        node: feed.node.as_deref().map(Into::into),
        updated_ns: Some(taken_ns),
        error: None,
        losses: feed.losses.into(),
        instance: Some(feed.instance),
    }
}

/// What [`AGE_HEADER`] says for `view` at `now_ns`: how long ago its data
/// was taken, in whole milliseconds; nothing before anything answered.
pub fn age_ms(view: &View, now_ns: u64) -> Option<u64> {
    view.snapshot
        .coverage
        .oldest_update_ns()
        .map(|taken| now_ns.saturating_sub(taken) / pipeline::time::MILLISECOND)
}

/// An agent's own coverage: itself, with what its pipeline lost.
pub fn own_coverage(name: &str, node: Option<&str>, losses: Losses, now_ns: u64) -> Coverage {
    Coverage {
        agents: vec![pipeline::snapshot::AgentCoverage {
            name: name.into(),
            node: node.map(Into::into),
            updated_ns: Some(now_ns),
            error: None,
            losses,
            instance: None,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::flow::{Outcomes, SideHealth};

    /// The counters by failure are read in `ALL`'s order and written by
    /// `index`: the two agree.
    #[test]
    fn every_pull_failure_is_at_its_index() {
        for (at, failure) in PullFailure::ALL.iter().enumerate() {
            assert_eq!(failure.index(), at, "{failure:?}");
        }
    }

    /// A hub's record shares a handshake leg with its last snapshot's only
    /// where the two are equal.
    #[test]
    fn an_unchanged_leg_is_shared_with_the_last_snapshot() {
        let key = FlowKey {
            proto: L4Proto::Tcp,
            client: Addr::from_v4([198, 18, 0, 1]),
            server: Addr::from_v4([198, 19, 0, 1]),
            server_port: 443,
        };
        let mut digest = HandshakeDigest::default();
        for us in [100, 200, 300] {
            digest.record(1_000_000_000, us, Window::Unbounded, true);
        }
        let wire_of = |digest: &HandshakeDigest| {
            let record = FlowRecord {
                handshake: PerSide::new(Some(Arc::new(digest.clone())), None),
                ..FlowRecord::new(key)
            };
            FeedFlow::of(&record, 2_000_000_000, Window::Unbounded)
        };
        let last = wire_of(&digest).into_record().unwrap();
        let last_leg = last.handshake[Side::Client].as_ref().unwrap();
        let now = wire_of(&digest)
            .into_record_sharing(|k| (*k == key).then_some(&last))
            .unwrap();
        let leg = now.handshake[Side::Client].as_ref().unwrap();
        assert!(Arc::ptr_eq(leg, last_leg));
        assert_eq!(now.percentiles, last.percentiles);

        // One more handshake: a digest of its own, and its percentiles.
        digest.record(1_500_000_000, 900, Window::Unbounded, true);
        let now = wire_of(&digest)
            .into_record_sharing(|k| (*k == key).then_some(&last))
            .unwrap();
        let leg = now.handshake[Side::Client].as_ref().unwrap();
        assert!(!Arc::ptr_eq(leg, last_leg));
        let fresh = wire_of(&digest).into_record().unwrap();
        assert_eq!(Some(leg), fresh.handshake[Side::Client].as_ref());
        assert_eq!(now.percentiles[Side::Client].unwrap().p99, 900);
        assert_eq!(last.percentiles[Side::Client].unwrap().p99, 300);
    }

    #[test]
    fn a_flow_goes_through_the_feed_unchanged() {
        let mut digest = HandshakeDigest::default();
        for us in [100, 200, 300] {
            digest.record(1_000_000_000, us, Window::Unbounded, true);
            digest.tally(us);
        }
        let record = FlowRecord {
            key: FlowKey {
                proto: L4Proto::Tcp,
                client: Addr::from_v4([198, 18, 0, 1]),
                server: Addr::from_v4([198, 19, 0, 1]),
                server_port: 443,
            },
            sent: PerSide::new(
                Counter {
                    pkts: 3,
                    bytes: 180,
                },
                Counter {
                    pkts: 2,
                    bytes: 120,
                },
            ),
            ip_bytes: PerSide::new(138, 92),
            rates: Rates {
                pps: PerSide::new(1.5, 1.0),
                bps: PerSide::new(720.0, 480.0),
            },
            first_seen_ns: 1,
            last_seen_ns: 2,
            connections: 1,
            handshake: PerSide::new(Some(Arc::new(digest)), None),
            percentiles: PerSide::default(),
            mirror: Some(Mirror {
                encap: Encap::Vxlan,
                id: Some(7),
            }),
            tcp: TcpHealth::new(
                PerSide::new(
                    SideHealth {
                        retransmits: 2,
                        rsts: 0,
                        zero_windows: 1,
                    },
                    SideHealth {
                        retransmits: 0,
                        rsts: 1,
                        zero_windows: 0,
                    },
                ),
                Outcomes {
                    established: 1,
                    refused: 2,
                    unanswered: 3,
                    reset: 1,
                    closed: 0,
                    open: 0,
                },
            ),
            seen_by: None,
        };
        let wire = FeedFlow::of(&record, 2_000_000_000, Window::Unbounded);
        let back = wire.clone().into_record().unwrap();
        assert_eq!(
            (back.key, back.sent, back.connections),
            (record.key, record.sent, 1)
        );
        assert_eq!(back.mirror, record.mirror);
        assert_eq!(back.tcp, record.tcp);
        let p = back.percentiles[Side::Client].unwrap();
        assert_eq!((p.p50, p.p99), (200, 300));
        assert!(back.handshake[Side::Server].is_none());
        let client = back.handshake[Side::Client].as_ref().unwrap();
        assert_eq!(
            (client.tallied().count(), client.tallied().sum_us),
            (3, 600)
        );
        let feed = Feed {
            head: FeedHead {
                version: VERSION,
                name: "a".into(),
                instance: 1,
                node: Some("n".into()),
                sequence: 9,
                as_of_ns: 2,
                since_ns: Some(1),
                losses: WireLosses::default(),
            },
            flows: vec![wire],
        };
        assert_eq!(Feed::decode(&feed.encode()).unwrap(), feed);
        let old = Feed {
            head: FeedHead {
                version: 0,
                ..feed.head.clone()
            },
            ..feed.clone()
        };
        assert!(
            Feed::decode(&old.encode())
                .unwrap_err()
                .contains("version 0")
        );
        assert!(Feed::decode(b"garbage").is_err());
        // Another version whose head differs is named as one (its head
        // did not decode: "Found a varint that didn't terminate").
        let mut newer = postcard::to_allocvec(&(VERSION + 1, [0xffu8; 12])).unwrap();
        newer.extend(feed.encode());
        let refused = Feed::decode(&newer).unwrap_err();
        assert!(
            refused.contains(&format!("version {}", VERSION + 1)),
            "{refused}"
        );
        // Bytes after the last flow are no feed (a proxy's body appended),
        // with flows or without.
        for flows in [vec![], feed.flows.clone()] {
            let mut longer = Feed {
                flows,
                ..feed.clone()
            }
            .encode();
            longer.extend(b"GARBAGE");
            let refused = Feed::decode(&longer).unwrap_err();
            assert!(refused.contains("7 bytes after its last flow"), "{refused}");
        }

        // Opened, a feed gives its head, then its flows one by one; a feed
        // cut short gives the flows before the cut, then an error.
        let two = Feed {
            flows: vec![feed.flows[0].clone(); 2],
            ..feed.clone()
        }
        .encode();
        let (head, flows) = Feed::open(&two).unwrap();
        assert_eq!(head, feed.head);
        assert_eq!(flows.room(), 2);
        let flows: Vec<_> = flows.collect();
        assert_eq!(
            flows,
            vec![Ok(feed.flows[0].clone()), Ok(feed.flows[0].clone())]
        );
        let (_, flows) = Feed::open(&two[..two.len() - 1]).unwrap();
        let flows: Vec<_> = flows.collect();
        assert_eq!(flows.len(), 2);
        assert_eq!(flows[0], Ok(feed.flows[0].clone()));
        assert!(flows[1].as_ref().unwrap_err().contains("not a feed"));

        // Flows are allocated at the count the feed declares, not grown.
        let many = Feed {
            flows: vec![feed.flows[0].clone(); 10_000],
            ..feed.clone()
        };
        assert_eq!(
            Feed::decode(&many.encode()).unwrap().flows.capacity(),
            10_000
        );
        // A feed that declares more flows than it holds is an error, with
        // no more allocated ahead than the cap.
        let mut lying = Feed {
            flows: Vec::new(),
            ..feed
        }
        .encode();
        assert_eq!(lying.pop(), Some(0), "the flow count is the last byte");
        lying.extend([0x80, 0x80, 0x80, 0x80, 0x04]); // varint 2^30
        assert!(Feed::decode(&lying).unwrap_err().contains("not a feed"));
    }

    /// A feed whose names, counts, rates or handshake legs no agent could
    /// have sent is refused with what is wrong with it (it reached every
    /// answer's coverage and metric labels, wrapped the hub's sums, or
    /// decoded gigabytes of samples), and the one next to it is read.
    #[test]
    fn a_feed_no_agent_could_have_sent_is_refused() {
        let key = FlowKey {
            proto: L4Proto::Tcp,
            client: Addr::from_v4([198, 18, 0, 1]),
            server: Addr::from_v4([198, 19, 0, 1]),
            server_port: 443,
        };
        let mut record = FlowRecord::new(key);
        record.sent[Side::Client] = Counter {
            pkts: 3,
            bytes: 180,
        };
        let flow = FeedFlow::of(&record, 2_000_000_000, Window::Unbounded);
        let feed = |node: &str, flow: FeedFlow| {
            Feed {
                head: FeedHead {
                    version: VERSION,
                    name: "http://10.0.0.5:8898".into(),
                    instance: 1,
                    node: Some(node.into()),
                    sequence: 9,
                    as_of_ns: 2,
                    since_ns: None,
                    losses: WireLosses::default(),
                },
                flows: vec![flow],
            }
            .encode()
        };
        let refused = |bytes: Vec<u8>| Feed::decode(&bytes).unwrap_err();
        assert!(Feed::decode(&feed("node-a", flow.clone())).is_ok());
        // No flow is smaller than the least the count is checked against.
        let smallest = FeedFlow::of(&FlowRecord::new(key), 0, Window::Unbounded);
        assert!(postcard::to_allocvec(&smallest).unwrap().len() >= MIN_FLOW_BYTES);
        // A count its bytes cannot hold is refused before the hub charges
        // it against its bound.
        let one = feed("a", flow.clone());
        let head_len = one.len() - postcard::to_allocvec(&flow).unwrap().len() - 1;
        let lying = [
            &one[..head_len],
            &postcard::to_allocvec(&2_000_000usize).unwrap(),
            &[0; 24],
        ]
        .concat();
        let lie = Feed::open(&lying).map(|_| ()).unwrap_err();
        assert!(lie.contains("declares 2000000 flows in 24 bytes"), "{lie}");
        assert!(Feed::open(&one).is_ok());
        let longest = "n".repeat(MAX_NAME_BYTES);
        assert!(Feed::decode(&feed(&longest, flow.clone())).is_ok());

        let long = refused(feed(&format!("{longest}n"), flow.clone()));
        assert!(
            long.contains("node name is not a name (254 bytes"),
            "{long}"
        );
        assert!(refused(feed("node\u{1}a", flow.clone())).contains("node name"));
        // Counts are taken whatever their size (a month-long flow at
        // 25 Gb/s passes 2^53 bytes); the hub's sums saturate.
        let mut big = flow.clone();
        big.sent[0].1 = u64::MAX;
        big.tcp = Some(WireHealth {
            sent: [[0; 3]; 2],
            connections: [0, 0, 0, u64::MAX, 0, 0],
        });
        let record = Feed::decode(&feed("a", big)).unwrap().flows[0]
            .clone()
            .into_record()
            .unwrap();
        assert_eq!(record.total_bytes(), u64::MAX);
        for rate in [f64::NAN, f64::INFINITY, -1e9] {
            let mut odd = flow.clone();
            odd.bps[1] = rate;
            assert!(refused(feed("a", odd)).contains("rate is"), "{rate}");
        }

        // Handshake legs hold what an agent's digest holds at most.
        let mut legs = flow.clone();
        legs.legs[0] = Some(WireDigest::Exact(AtMost(vec![100; EXACT_SAMPLES])));
        legs.legs[1] = Some(WireDigest::Sketch(AtMost(vec![
            (7, 1);
            MAX_BUCKETS as usize
        ])));
        assert!(Feed::decode(&feed("a", legs.clone())).is_ok());
        let mut samples = legs.clone();
        samples.legs[0] = Some(WireDigest::Exact(AtMost(vec![100; EXACT_SAMPLES + 1])));
        let many = refused(feed("a", samples));
        assert!(many.contains("more samples or buckets"), "{many}");
        let mut buckets = legs;
        buckets.legs[1] = Some(WireDigest::Sketch(AtMost(vec![(7, 1); 1 << 20])));
        assert!(refused(feed("a", buckets)).contains("more samples or buckets"));
    }
}
