//! TCP health: what each side sent that says a connection is in trouble
//! (retransmissions, resets, zero windows), and how each connection ended.
//!
//! **Retransmissions** follow tshark's TCP analysis: a segment carrying
//! sequence space (payload, SYN or FIN) that starts before the end of what
//! its sender already sent is a retransmission, unless it is a keep-alive
//! (at most one byte, at the last sequence number already sent, no
//! SYN/FIN/RST), a zero-window probe (one byte at the next sequence number
//! while the other side advertises a zero window; it does not advance the
//! sequence), or out of order (it arrived within the connection's first
//! round trip, or 3 ms when that is unknown, of the segment that last
//! advanced the sequence, and does not end where that one ended). A fast
//! retransmission (the segment the other side's two or more duplicate ACKs
//! ask for) is one even when it comes that soon, and so is a spurious
//! retransmission (one the other side's last ACK already acknowledged
//! whole: sent again, not held back on the way). As tshark's, a duplicate
//! ACK repeats the window (kept folded to a byte); unlike tshark's, a fast
//! retransmission need not follow it within 20 ms: a field fewer per
//! connection.
//!
//! **Outcomes**, each connection counted once when it is known:
//! `refused` (the server's first answer to the SYN is a RST, or an ICMP
//! Destination Unreachable quoting the SYN that TCP takes as final: see
//! [`crate::wire::icmp`]), `unanswered`
//! (a SYN, or a SYN and SYN-ACK, with nothing completing the handshake when
//! the connection expires or the capture ends), `established` (the client's
//! ACK after the SYN-ACK), `reset` (ended by a RST after the SYN-ACK),
//! `closed` (FINs from both sides), `open` (established and not ended: still
//! tracked, or expired idle without FIN or RST). A connection the capture
//! joins mid-stream (no SYN, no SYN-ACK) was established before it started:
//! it counts in `open`, `reset` or `closed`, not in `established`.

use super::side::{PerSide, Side};
use crate::packet::Transport;
use crate::time::ticks;
use crate::wire::tcp::flags;

/// What one side sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SideHealth {
    pub retransmits: u64,
    pub rsts: u64,
    /// Segments advertising a zero receive window (RSTs aside).
    pub zero_windows: u64,
}

impl SideHealth {
    pub fn add(&mut self, other: SideHealth) {
        self.retransmits = self.retransmits.saturating_add(other.retransmits);
        self.rsts = self.rsts.saturating_add(other.rsts);
        self.zero_windows = self.zero_windows.saturating_add(other.zero_windows);
    }
}

/// How a flow's connections ended (or have not yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub established: u64,
    pub refused: u64,
    pub unanswered: u64,
    pub reset: u64,
    pub closed: u64,
    pub open: u64,
}

impl Outcomes {
    /// Connections that failed: refused, unanswered or reset.
    pub fn failed(&self) -> u64 {
        self.refused
            .saturating_add(self.unanswered)
            .saturating_add(self.reset)
    }

    /// Saturating, as [`crate::flow::Counter::add`] is.
    pub fn add(&mut self, other: Outcomes) {
        self.established = self.established.saturating_add(other.established);
        self.refused = self.refused.saturating_add(other.refused);
        self.unanswered = self.unanswered.saturating_add(other.unanswered);
        self.reset = self.reset.saturating_add(other.reset);
        self.closed = self.closed.saturating_add(other.closed);
        self.open = self.open.saturating_add(other.open);
    }

    /// The counters by name, in the API's order.
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("established", self.established),
            ("refused", self.refused),
            ("unanswered", self.unanswered),
            ("reset", self.reset),
            ("closed", self.closed),
            ("open", self.open),
        ]
    }
}

/// A flow's TCP health: per side what it sent, and its connections' outcomes.
///
/// Most flows never see a retransmission, a RST or a zero window (every
/// UDP flow, most TCP ones), so the per-side counts live in a box made at
/// the first of them: 8 bytes in every flow and record instead of 48. The
/// box exists only while some count is non-zero, so equality is the counts'.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpHealth {
    sent: Option<Box<PerSide<SideHealth>>>,
    pub connections: Outcomes,
}

impl TcpHealth {
    pub fn new(sent: PerSide<SideHealth>, connections: Outcomes) -> TcpHealth {
        let sent = (sent != PerSide::default()).then(|| Box::new(sent));
        TcpHealth { sent, connections }
    }

    /// What `side` sent.
    pub fn sent(&self, side: Side) -> SideHealth {
        self.sent
            .as_ref()
            .map_or_else(SideHealth::default, |s| s[side])
    }

    /// The counts of `side`, boxed from here on: call only to add to them.
    fn sent_mut(&mut self, side: Side) -> &mut SideHealth {
        &mut self.sent.get_or_insert_with(Box::default)[side]
    }

    pub fn add(&mut self, other: &TcpHealth) {
        if let Some(other_sent) = &other.sent {
            for side in Side::BOTH {
                self.sent_mut(side).add(other_sent[side]);
            }
        }
        self.connections.add(other.connections);
    }

    pub fn retransmits(&self) -> u64 {
        (self.sent(Side::Client).retransmits).saturating_add(self.sent(Side::Server).retransmits)
    }

    pub fn rsts(&self) -> u64 {
        (self.sent(Side::Client).rsts).saturating_add(self.sent(Side::Server).rsts)
    }

    /// Failed connections or retransmissions: worth showing unasked.
    pub fn is_troubled(&self) -> bool {
        self.connections.failed() > 0 || self.retransmits() > 0
    }

    /// Its counts as arrays, for compact forms (the hub feed, connection
    /// records): per side (client, then server) retransmissions, RSTs and
    /// zero windows; then the outcomes in [`Outcomes::named`]'s order.
    pub fn to_counts(&self) -> ([[u64; 3]; 2], [u64; 6]) {
        let sent = Side::BOTH.map(|side| {
            let s = self.sent(side);
            [s.retransmits, s.rsts, s.zero_windows]
        });
        (sent, self.connections.named().map(|(_, n)| n))
    }

    /// The health of [`TcpHealth::to_counts`]' arrays.
    pub fn from_counts(sent: [[u64; 3]; 2], connections: [u64; 6]) -> TcpHealth {
        let side = |[retransmits, rsts, zero_windows]: [u64; 3]| SideHealth {
            retransmits,
            rsts,
            zero_windows,
        };
        let [established, refused, unanswered, reset, closed, open] = connections;
        TcpHealth::new(
            PerSide::new(side(sent[0]), side(sent[1])),
            Outcomes {
                established,
                refused,
                unanswered,
                reset,
                closed,
                open,
            },
        )
    }

    /// Counts what one packet's step found.
    pub fn record(&mut self, sender: Side, events: Events) {
        if events.has(Events::RETRANSMIT | Events::RST | Events::ZERO_WINDOW) {
            let sent = self.sent_mut(sender);
            sent.retransmits += u64::from(events.has(Events::RETRANSMIT));
            sent.rsts += u64::from(events.has(Events::RST));
            sent.zero_windows += u64::from(events.has(Events::ZERO_WINDOW));
        }
        let c = &mut self.connections;
        c.open += u64::from(events.has(Events::JOINED_OPEN));
        match events.outcome {
            None => {}
            Some(Outcome::Refused) => c.refused += 1,
            Some(Outcome::Unanswered) => c.unanswered += 1,
            Some(Outcome::Established) => {
                c.established += 1;
                c.open += 1;
            }
            Some(Outcome::JoinedOpen) => c.open += 1,
            Some(Outcome::ResetBeforeOpen) => c.reset += 1,
            Some(Outcome::Reset) => {
                c.reset += 1;
                c.open = c.open.saturating_sub(1);
            }
            Some(Outcome::Closed) => {
                c.closed += 1;
                c.open = c.open.saturating_sub(1);
            }
            Some(Outcome::EstablishedThenClosed) => {
                c.established += 1;
                c.closed += 1;
            }
            Some(Outcome::EstablishedThenReset) => {
                c.established += 1;
                c.reset += 1;
            }
        }
    }
}

/// A change in a connection's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Refused,
    Unanswered,
    /// The handshake completed: established, and open.
    Established,
    /// Seen mid-stream: open, its handshake before the capture.
    JoinedOpen,
    /// A RST after the SYN-ACK, before the handshake completed; or the
    /// RST of a connection the capture joined, read before its other
    /// packets (nothing was counted open).
    ResetBeforeOpen,
    /// An open connection ended by a RST.
    Reset,
    /// An open connection ended by FINs from both sides.
    Closed,
    /// Established by a packet read after the FINs of both sides (counted
    /// as both at once), or after a RST.
    EstablishedThenClosed,
    EstablishedThenReset,
}

/// What one packet's step found, for its flow's [`TcpHealth`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    bits: u8,
    pub outcome: Option<Outcome>,
}

impl Events {
    pub const RETRANSMIT: u8 = 1;
    pub const RST: u8 = 2;
    pub const ZERO_WINDOW: u8 = 4;
    /// A connection joined mid-stream: open (counted before `outcome`).
    pub const JOINED_OPEN: u8 = 8;

    pub fn has(&self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0 && self.outcome.is_none()
    }

    pub fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.bits |= bit;
        } else {
            self.bits &= !bit;
        }
    }

    pub fn with_outcome(outcome: Outcome) -> Events {
        Events {
            bits: 0,
            outcome: Some(outcome),
        }
    }
}

/// Where a connection is, for its outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Stage {
    /// Not TCP, or nothing decided yet.
    #[default]
    None,
    /// The client's SYN, no answer yet; `again` when it is that SYN sent
    /// again after its refusal (Windows sends it twice more, half a second
    /// apart, after a RST; a SYN resent on its timer can cross the RST):
    /// the same connection, tshark's too, whose refusal is counted once.
    SynSent {
        again: bool,
    },
    /// The server's SYN-ACK, the handshake not yet complete; `syn` when the
    /// client's SYN was seen. (A SYN-ACK to the refused SYN sent again
    /// starts a handshake whose outcome counts too: the server answered a
    /// try after the refusal.)
    SynAcked {
        syn: bool,
    },
    /// The server's RST came first: the answer to a SYN read after it (on
    /// another receive queue, handed on in batches), or the end of a
    /// connection the capture joined.
    Rst,
    /// The client's SYN was refused (a RST, or an ICMP error): counted.
    Refused,
    Open,
    /// The outcome is counted; nothing more is.
    Ended,
}

const KNOWN: u8 = 1;
const ZERO_WINDOW: u8 = 2;
const DUP_ACKS: u8 = 0b1100;
const DUP_ACK_ONE: u8 = 0b0100;
/// The side has sent an ACK: its `last_ack` is one.
const ACKED: u8 = 0b1_0000;

/// Out of order, when the connection's round trip is unknown (tshark's).
const OUT_OF_ORDER_NS: u64 = 3_000_000;

/// A connection's sequence tracking and stage: 32 bytes, kept in
/// the connection for its whole life (bounded state, no allocation).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct ConnHealth {
    /// Per side: the sequence number after the last one sent (SYN and FIN
    /// count one).
    next_seq: PerSide<u32>,
    /// Per side: when `next_seq` last advanced, in units of 1024 ns (wraps
    /// after 73 minutes; only differences of milliseconds are compared).
    advanced: PerSide<u32>,
    /// Per side: the last acknowledgment number it sent.
    last_ack: PerSide<u32>,
    /// The connection's first round trip (SYN to completing ACK), as
    /// [`Rtt`] keeps it; 0 while unknown.
    rtt: u16,
    /// Per side: [`KNOWN`], [`ZERO_WINDOW`] (its last window was zero),
    /// [`ACKED`], and in [`DUP_ACKS`] how many duplicate ACKs (no data, the
    /// same number and window) followed its last ACK, up to 3.
    bits: PerSide<u8>,
    /// Per side: the window of its last ACK, [`folded`] to a byte.
    window: PerSide<u8>,
    stage: Stage,
}

/// A round trip in 16 bits: to the tick (1.024 µs) up to 33 ms, where a
/// veth's or a data centre's few microseconds need it, then in units of
/// 256 ticks (262 µs) up to 8.6 s.
struct Rtt;

impl Rtt {
    const COARSE: u32 = 1 << 15;
    const COARSE_SHIFT: u32 = 8;

    fn encode(ticks: u32) -> u16 {
        let ticks = ticks.max(1);
        let v = if ticks < Self::COARSE {
            ticks
        } else {
            (Self::COARSE + (ticks >> Self::COARSE_SHIFT)).min(u32::from(u16::MAX))
        };
        v as u16
    }

    fn decode(v: u16) -> u32 {
        let v = u32::from(v);
        if v < Self::COARSE {
            v
        } else {
            (v - Self::COARSE) << Self::COARSE_SHIFT
        }
    }
}

/// A window folded to a byte (its two bytes XORed), to tell a repeated
/// window from a changed one in a byte of state: a change that folds to
/// the same byte (one in 256) is taken for a repeat.
fn folded(window: u16) -> u8 {
    let [high, low] = window.to_be_bytes();
    high ^ low
}

/// Whether sequence number `a` comes before `b` (modulo 2^32).
fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl ConnHealth {
    /// The connection's round trip is known: segments arriving within it
    /// of each other may be reordered rather than retransmitted.
    pub fn set_rtt(&mut self, ns: u64) {
        if self.rtt == 0 {
            self.rtt = Rtt::encode(ticks(ns));
        }
    }

    /// The first packet of a connection, sent by `sender`; true when it
    /// joins an open connection mid-stream.
    pub fn open(&mut self, f: u8, sender: Side) -> bool {
        let syn = f & flags::SYN != 0;
        let ack = f & flags::ACK != 0;
        self.stage = match (syn, ack, sender) {
            (true, false, Side::Client) => Stage::SynSent { again: false },
            (true, true, Side::Server) if f & flags::RST == 0 => Stage::SynAcked { syn: false },
            // A RST|ACK says which SYN it answers.
            (false, true, Side::Server) if f & flags::RST != 0 => Stage::Rst,
            _ => Stage::Open,
        };
        self.stage == Stage::Open
    }

    /// An ICMP error refused the client's SYN ([`crate::wire::icmp`]): the
    /// outcome, if the SYN is still unanswered.
    pub fn refuse(&mut self) -> Option<Outcome> {
        let Stage::SynSent { again } = self.stage else {
            return None;
        };
        self.stage = Stage::Refused;
        (!again).then_some(Outcome::Refused)
    }

    /// Whether the client's SYN waits for its answer (and an ICMP error
    /// quoting it refuses it).
    pub fn awaits_answer(&self) -> bool {
        matches!(self.stage, Stage::SynSent { .. })
    }

    /// The client sent its SYN again (its sequence number, stamped after
    /// the last packet): where that SYN was refused, the same connection
    /// waits again, its refusal counted once, and this says true; else
    /// nothing changes (a SYN with its sequence number after a close is a
    /// new connection).
    pub fn syn_sent_again(&mut self) -> bool {
        let refused = self.stage == Stage::Refused;
        if refused {
            self.stage = Stage::SynSent { again: true };
        }
        refused
    }

    /// One segment `t` sent by `sender`; `closed_by` says whether the
    /// connection is now closed, and how. A `duplicate` (a mirror's second
    /// copy of a segment just seen) counts as a RST or zero window again,
    /// per frame as tshark's, but is no retransmission, nor a duplicate
    /// ACK: its sequence and acknowledgement were read from the first.
    pub fn step(
        &mut self,
        t: &Transport,
        sender: Side,
        ts_ns: u64,
        closed_by: Closing,
        duplicate: bool,
    ) -> Events {
        let mut events = Events::default();
        let (f, window) = (t.tcp_flags, t.tcp_window);
        let rst = f & flags::RST != 0;
        events.set(Events::RST, rst);
        // As tshark's: not on a SYN, FIN or RST.
        let control = flags::SYN | flags::FIN | flags::RST;
        events.set(Events::ZERO_WINDOW, window == 0 && f & control == 0);
        if !duplicate {
            events.set(
                Events::RETRANSMIT,
                self.is_retransmission(f, t.tcp_seq, t.payload_len, sender, ts_ns),
            );
            self.note_ack(t, sender);
        }
        if !rst {
            self.bits[sender] =
                (self.bits[sender] & !ZERO_WINDOW) | if window == 0 { ZERO_WINDOW } else { 0 };
        }
        events.outcome = self.advance_stage(t, sender, closed_by);
        events
    }

    fn advance_stage(
        &mut self,
        t: &Transport,
        sender: Side,
        closed_by: Closing,
    ) -> Option<Outcome> {
        let (f, payload) = (t.tcp_flags, t.payload_len > 0);
        let rst = f & flags::RST != 0;
        let synack = f & (flags::SYN | flags::ACK) == flags::SYN | flags::ACK;
        let pure_syn = f & (flags::SYN | flags::ACK) == flags::SYN;
        let (stage, outcome) = match (self.stage, sender) {
            // The SYN the server's RST, read first, acknowledged (its
            // data too, with TCP Fast Open).
            (Stage::Rst, Side::Client)
                if pure_syn
                    && [0, t.payload_len].iter().any(|&data| {
                        let next = t.tcp_seq.wrapping_add(1).wrapping_add(data);
                        self.last_ack[Side::Server] == next
                    }) =>
            {
                (Stage::Refused, Some(Outcome::Refused))
            }
            (Stage::Rst, _) if rst => (Stage::Rst, None),
            // Anything else: a connection the capture joined, reset (its
            // packets read after the RST).
            (Stage::Rst, _) => (Stage::Ended, Some(Outcome::ResetBeforeOpen)),
            // The client's SYN, read after the SYN-ACK that answers it.
            (Stage::SynAcked { syn: false }, Side::Client) if pure_syn => {
                (Stage::SynAcked { syn: true }, None)
            }
            // A RST or a segment that does not acknowledge the SYN answers
            // another connection (a stale RST; a challenge ACK in the old
            // sequence space, when the 4-tuple is reused): the client drops
            // it (RFC 9293 3.10.7.3) and its SYN is still unanswered.
            (Stage::SynSent { .. }, Side::Server) if !self.acknowledges_syn(t) => {
                (self.stage, None)
            }
            (Stage::SynSent { again }, Side::Server) if rst => {
                (Stage::Refused, (!again).then_some(Outcome::Refused))
            }
            (Stage::SynSent { .. }, Side::Server) if synack => {
                (Stage::SynAcked { syn: true }, None)
            }
            // The SYN-ACK was not captured (a frame the mirror dropped, or
            // a mirror that sees one direction), but the connection shows
            // it was made: the server sends something other than a RST or
            // a SYN, or the client sends data after its SYN.
            (Stage::SynSent { .. }, Side::Server) if f & flags::SYN == 0 => {
                (Stage::Open, Some(Outcome::Established))
            }
            (Stage::SynSent { .. }, Side::Client) if f & flags::SYN == 0 && payload => {
                (Stage::Open, Some(Outcome::Established))
            }
            (Stage::SynAcked { .. }, _) if rst => (Stage::Ended, Some(Outcome::ResetBeforeOpen)),
            (Stage::SynAcked { .. }, Side::Client)
                if f & (flags::ACK | flags::SYN) == flags::ACK =>
            {
                (Stage::Open, Some(Outcome::Established))
            }
            (Stage::Open, _) if closed_by == Closing::Rst => (Stage::Ended, Some(Outcome::Reset)),
            (Stage::Open, _) if closed_by == Closing::Fins => (Stage::Ended, Some(Outcome::Closed)),
            (stage, _) => (stage, None),
        };
        // The packet that shows the connection made may come after its
        // end: a FIN or RST read before the completing ACK (the mirror's
        // two directions apart, or the ACK lost), or the ACK carrying the
        // last FIN. Made and ended, both counted.
        let (stage, outcome) = match (stage, outcome, closed_by) {
            (Stage::Open, Some(Outcome::Established), Closing::Fins) => {
                (Stage::Ended, Some(Outcome::EstablishedThenClosed))
            }
            (Stage::Open, Some(Outcome::Established), Closing::Rst) => {
                (Stage::Ended, Some(Outcome::EstablishedThenReset))
            }
            (stage, outcome, _) => (stage, outcome),
        };
        self.stage = stage;
        outcome
    }

    /// Whether `t`, sent by `sender` while the client's SYN is unanswered,
    /// belongs to another connection on the same ports: from the server,
    /// one that does not acknowledge the SYN (a stale RST, a challenge ACK,
    /// which the client drops); from the client, a RST not at its SYN's
    /// next sequence number (ending the old connection the challenge ACK
    /// spoke of). It closes nothing of this one.
    pub fn answers_another_syn(&self, t: &Transport, sender: Side) -> bool {
        matches!(self.stage, Stage::SynSent { .. })
            && match sender {
                Side::Server => !self.acknowledges_syn(t),
                Side::Client => {
                    t.tcp_flags & flags::RST != 0
                        && self.bits[Side::Client] & KNOWN != 0
                        && t.tcp_seq != self.next_seq[Side::Client]
                }
            }
    }

    /// Whether server segment `t`, while the client's SYN is unanswered,
    /// acknowledges that SYN: ACK set, and not past the client's next
    /// sequence number nor before its SYN (its data, with TCP Fast Open,
    /// may or may not be acknowledged). True when the SYN was not seen.
    fn acknowledges_syn(&self, t: &Transport) -> bool {
        if self.bits[Side::Client] & KNOWN == 0 {
            return true;
        }
        let next = self.next_seq[Side::Client];
        t.tcp_flags & flags::ACK != 0
            && !seq_before(next, t.tcp_ack)
            && next.wrapping_sub(t.tcp_ack) <= u32::from(u16::MAX)
    }

    /// Counts duplicate ACKs, as tshark's: segments without data or
    /// SYN/FIN/RST that acknowledge what the sender's previous ACK did,
    /// with the same window, not zero. An ACK that only changes the window
    /// is a window update: a receiver whose buffer grows as it takes a
    /// burst sends them, and counted as duplicates they made a segment
    /// held back on the way read as a fast retransmission.
    fn note_ack(&mut self, t: &Transport, sender: Side) {
        let f = t.tcp_flags;
        if f & flags::ACK == 0 {
            return;
        }
        let bare = t.payload_len == 0 && f & (flags::SYN | flags::FIN | flags::RST) == 0;
        let window = folded(t.tcp_window);
        let same_window = window == self.window[sender] && t.tcp_window != 0;
        self.window[sender] = window;
        let bits = &mut self.bits[sender];
        if *bits & ACKED == 0 {
            *bits |= ACKED;
            self.last_ack[sender] = t.tcp_ack;
        } else if t.tcp_ack == self.last_ack[sender] {
            if bare && same_window && *bits & DUP_ACKS != DUP_ACKS {
                *bits += DUP_ACK_ONE;
            }
        } else {
            self.last_ack[sender] = t.tcp_ack;
            *bits &= !DUP_ACKS;
        }
    }

    fn is_retransmission(
        &mut self,
        f: u8,
        seq: u32,
        payload_len: u32,
        sender: Side,
        ts_ns: u64,
    ) -> bool {
        let syn_fin = u32::from(f & flags::SYN != 0) + u32::from(f & flags::FIN != 0);
        let len = payload_len.wrapping_add(syn_fin);
        if f & flags::RST != 0 || len == 0 {
            return false;
        }
        let end = seq.wrapping_add(len);
        let now = ticks(ts_ns);
        if self.bits[sender] & KNOWN == 0 {
            self.bits[sender] |= KNOWN;
            self.next_seq[sender] = end;
            self.advanced[sender] = now;
            return false;
        }
        let next = self.next_seq[sender];
        let keep_alive = len <= 1 && syn_fin == 0 && seq == next.wrapping_sub(1);
        let window_probe = len == 1 && seq == next && self.bits[sender.other()] & ZERO_WINDOW != 0;
        if keep_alive || window_probe {
            return false;
        }
        let other = sender.other();
        let asked_for =
            self.bits[other] & DUP_ACKS >= 2 * DUP_ACK_ONE && self.last_ack[other] == seq;
        // Acknowledged whole already: the receiver had it, so this is a copy
        // sent again (spurious), not one held back on the way.
        let acknowledged = self.bits[other] & ACKED != 0 && !seq_before(self.last_ack[other], end);
        let mut retransmit = false;
        if seq_before(seq, next) {
            let threshold = if self.rtt != 0 {
                Rtt::decode(self.rtt)
            } else {
                ticks(OUT_OF_ORDER_NS)
            };
            let reordered = now.wrapping_sub(self.advanced[sender]) < threshold && end != next;
            retransmit = asked_for || acknowledged || !reordered;
        }
        if seq_before(next, end) {
            self.next_seq[sender] = end;
            self.advanced[sender] = now;
        }
        retransmit
    }

    /// The connection is given up before its handshake could time out
    /// (evicted to make room): a handshake not yet answered may still have
    /// been, so it is no outcome (`finish` counts nothing for it).
    pub fn abandon_handshake(&mut self) {
        if matches!(
            self.stage,
            Stage::SynSent { .. } | Stage::SynAcked { syn: true }
        ) {
            self.stage = Stage::Ended;
        }
    }

    /// The connection ends (expired, evicted, or the capture ended): a
    /// handshake that never completed was unanswered. Counted once.
    pub fn finish(&mut self) -> Option<Outcome> {
        let outcome = match self.stage {
            Stage::SynSent { again: false } | Stage::SynAcked { syn: true } => {
                Some(Outcome::Unanswered)
            }
            Stage::SynAcked { syn: false } => Some(Outcome::JoinedOpen),
            // A RST no SYN came for: a joined connection's end.
            Stage::Rst => Some(Outcome::ResetBeforeOpen),
            // Sent again after its refusal: that was its outcome.
            Stage::SynSent { again: true } => None,
            Stage::None | Stage::Open | Stage::Refused | Stage::Ended => None,
        };
        self.stage = Stage::Ended;
        outcome
    }
}

/// How a connection is closed, as of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closing {
    No,
    Rst,
    Fins,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Addr, L4Proto};
    use flags::{ACK, FIN, PSH, RST, SYN};

    const MS: u64 = 1_000_000;

    /// Runs (client?, flags, seq, window, payload, ts) through a connection;
    /// returns the flow's health after a finish.
    fn run(segments: &[(bool, u8, u32, u16, u16, u64)]) -> TcpHealth {
        let acked: Vec<_> = segments
            .iter()
            .map(|&(client, f, seq, win, len, ts)| (client, f, seq, 0, win, len, ts))
            .collect();
        run_acked(&acked)
    }

    /// [`run`] with acknowledgement numbers: (client?, flags, seq, ack,
    /// window, payload, ts).
    fn run_acked(segments: &[(bool, u8, u32, u32, u16, u16, u64)]) -> TcpHealth {
        let mut h = TcpHealth::default();
        let mut c = ConnHealth::default();
        let mut fins = PerSide::new(false, false);
        let mut rst = false;
        for (i, &(client, f, seq, ack, win, len, ts)) in segments.iter().enumerate() {
            let sender = Side::sender(client);
            let joined = i == 0 && c.open(f, sender);
            let t = Transport {
                tcp_seq: seq,
                tcp_ack: ack,
                tcp_window: win,
                payload_len: u32::from(len),
                ip_len: 0,
                ..Transport::new(
                    L4Proto::Tcp,
                    (Addr::from_v4([198, 18, 0, 1]), 4000),
                    (Addr::from_v4([198, 18, 0, 2]), 80),
                    f,
                )
            };
            // As the connection closes (`Conn::step`).
            fins[sender] |= f & FIN != 0;
            rst |= f & RST != 0 && !c.answers_another_syn(&t, sender);
            let closing = if rst {
                Closing::Rst
            } else if fins[Side::Client] && fins[Side::Server] {
                Closing::Fins
            } else {
                Closing::No
            };
            let mut ev = c.step(&t, sender, ts, closing, false);
            ev.set(Events::JOINED_OPEN, joined);
            h.record(sender, ev);
        }
        if let Some(o) = c.finish() {
            h.record(Side::Client, Events::with_outcome(o));
        }
        h
    }

    fn outcomes(h: &TcpHealth) -> [u64; 6] {
        h.connections.named().map(|(_, n)| n)
    }

    /// Every flow and record holds a `TcpHealth`: the per-side counts, which
    /// most flows never need, cost a pointer until the first of them.
    #[test]
    fn per_side_counts_are_boxed_only_once_some_count_is_not_zero() {
        assert!(size_of::<TcpHealth>() <= 56, "{}", size_of::<TcpHealth>());
        let mut h = TcpHealth::default();
        h.record(Side::Client, Events::with_outcome(Outcome::Established));
        h.record(Side::Server, Events::default());
        assert!(h.sent.is_none(), "outcomes alone box nothing: {h:?}");
        assert_eq!(h, TcpHealth::new(PerSide::default(), h.connections));

        let mut rst = Events::default();
        rst.set(Events::RST, true);
        h.record(Side::Server, rst);
        assert_eq!(h.sent(Side::Server).rsts, 1);
        assert_eq!(h.sent(Side::Client), SideHealth::default());
        // A sum, a clone and the compact arrays keep the counts.
        let mut sum = TcpHealth::default();
        sum.add(&h);
        sum.add(&h.clone());
        assert_eq!(sum.rsts(), 2);
        let (sent, connections) = h.to_counts();
        assert_eq!(TcpHealth::from_counts(sent, connections), h);
        // Adding a flow without counts boxes nothing.
        let mut quiet = TcpHealth::default();
        quiet.add(&TcpHealth::new(PerSide::default(), h.connections));
        assert!(quiet.sent.is_none());
    }

    /// The packet that makes the connection is read after both FINs (the
    /// mirror's two directions apart, or the completing ACK lost and the
    /// client's FIN the first to acknowledge the SYN-ACK): established and
    /// closed, not open for ever. Likewise after a RST.
    #[test]
    fn a_connection_made_after_its_end_is_counted_ended() {
        // [established, refused, unanswered, reset, closed, open]
        let closed = run_acked(&[
            (true, SYN, 100, 0, 1000, 0, 0),
            (false, SYN | ACK, 900, 101, 1000, 0, MS),
            (false, FIN | ACK, 901, 101, 1000, 0, 2 * MS),
            (true, FIN | ACK, 101, 902, 1000, 0, 3 * MS),
        ]);
        assert_eq!(outcomes(&closed), [1, 0, 0, 0, 1, 0]);
        let reset = run_acked(&[
            (true, SYN, 100, 0, 1000, 0, 0),
            (true, RST, 101, 0, 0, 0, MS),
            (false, ACK, 900, 101, 1000, 10, 2 * MS),
        ]);
        assert_eq!(outcomes(&reset), [1, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn outcomes_of_each_kind() {
        // [established, refused, unanswered, reset, closed, open]
        let refused = run(&[(true, SYN, 100, 100, 0, 0), (false, RST | ACK, 0, 0, 0, MS)]);
        assert_eq!(outcomes(&refused), [0, 1, 0, 0, 0, 0]);
        assert_eq!(refused.sent(Side::Server).rsts, 1);
        let unanswered = run(&[
            (true, SYN, 100, 100, 0, 0),
            (true, SYN, 100, 100, 0, 1000 * MS),
        ]);
        assert_eq!(outcomes(&unanswered), [0, 0, 1, 0, 0, 0]);
        assert_eq!(
            unanswered.sent(Side::Client).retransmits,
            1,
            "the SYN again"
        );
        let handshake = [
            (true, SYN, 100, 100, 0, 0),
            (false, SYN | ACK, 900, 100, 0, MS),
            (true, ACK, 101, 100, 0, 2 * MS),
        ];
        assert_eq!(outcomes(&run(&handshake)), [1, 0, 0, 0, 0, 1]);
        let mut reset = handshake.to_vec();
        reset.push((false, RST, 901, 0, 0, 3 * MS));
        assert_eq!(outcomes(&run(&reset)), [1, 0, 0, 1, 0, 0]);
        let mut closed = handshake.to_vec();
        closed.push((true, FIN | ACK, 101, 100, 0, 3 * MS));
        closed.push((false, FIN | ACK, 901, 100, 0, 4 * MS));
        closed.push((true, ACK, 102, 100, 0, 5 * MS));
        assert_eq!(outcomes(&run(&closed)), [1, 0, 0, 0, 1, 0]);
        // Mid-stream: open, then closed; never established.
        let mid = [
            (true, ACK | PSH, 5000, 100, 10, 0),
            (false, ACK, 900, 100, 0, MS),
        ];
        assert_eq!(outcomes(&run(&mid)), [0, 0, 0, 0, 0, 1]);
        let mut mid_closed = mid.to_vec();
        mid_closed.push((true, FIN | ACK, 5010, 100, 0, 2 * MS));
        mid_closed.push((false, FIN | ACK, 900, 100, 0, 3 * MS));
        assert_eq!(outcomes(&run(&mid_closed)), [0, 0, 0, 0, 1, 0]);
        // A SYN-ACK answered by the client's RST: reset, never established.
        let aborted = [
            (true, SYN, 100, 100, 0, 0),
            (false, SYN | ACK, 900, 100, 0, MS),
            (true, RST, 101, 0, 0, 2 * MS),
        ];
        assert_eq!(outcomes(&run(&aborted)), [0, 0, 0, 1, 0, 0]);
        // The SYN-ACK not captured (the mirror dropped it): the server's
        // ACK of the client's data shows the connection was made.
        let synack_lost = [
            (true, SYN, 100, 100, 0, 0),
            (true, ACK, 101, 100, 0, 2 * MS),
            (true, ACK | PSH, 101, 100, 10, 3 * MS),
            (false, ACK, 901, 100, 0, 4 * MS),
            (true, FIN | ACK, 111, 100, 0, 5 * MS),
            (false, FIN | ACK, 901, 100, 0, 6 * MS),
        ];
        assert_eq!(outcomes(&run(&synack_lost)), [1, 0, 0, 0, 1, 0]);
        // A mirror that sees the client's direction only: its data after
        // the SYN shows it had its SYN-ACK.
        let one_way = [
            (true, SYN, 100, 100, 0, 0),
            (true, ACK, 101, 100, 0, 2 * MS),
            (true, ACK | PSH, 101, 100, 10, 3 * MS),
        ];
        assert_eq!(outcomes(&run(&one_way)), [1, 0, 0, 0, 0, 1]);
        // A bare ACK after the SYN proves nothing (anyone can send one).
        let bare = [(true, SYN, 100, 100, 0, 0), (true, ACK, 101, 100, 0, MS)];
        assert_eq!(outcomes(&run(&bare)), [0, 0, 1, 0, 0, 0]);
    }

    /// What does not acknowledge the SYN answers another connection on the
    /// same ports, and the client drops it (RFC 9293 3.10.7.3): a stale RST
    /// is no refusal, a challenge ACK (the old connection's sequence space,
    /// when a NAT reuses the 4-tuple) no handshake, and the client's RST of
    /// the old connection closes nothing of this one. Each was counted.
    #[test]
    fn what_does_not_acknowledge_the_syn_answers_another_connection() {
        // [established, refused, unanswered, reset, closed, open]
        let refused = run_acked(&[
            (true, SYN, 100, 0, 0, 0, 0),
            (false, RST | ACK, 0, 101, 0, 0, MS),
        ]);
        assert_eq!(outcomes(&refused), [0, 1, 0, 0, 0, 0]);
        let handshake_after_a_stale_rst = run_acked(&[
            (true, SYN, 100, 0, 100, 0, 0),
            (false, RST | ACK, 0, 999, 0, 0, MS),
            (false, SYN | ACK, 900, 101, 100, 0, 10 * MS),
            (true, ACK, 101, 901, 100, 0, 20 * MS),
            (true, FIN | ACK, 101, 901, 100, 0, 30 * MS),
            (false, FIN | ACK, 901, 102, 100, 0, 31 * MS),
        ]);
        assert_eq!(outcomes(&handshake_after_a_stale_rst), [1, 0, 0, 0, 1, 0]);
        let challenged = run_acked(&[
            (true, SYN, 80_000, 0, 100, 0, 0),
            (false, ACK, 5000, 111, 100, 0, MS),
        ]);
        assert_eq!(outcomes(&challenged), [0, 0, 1, 0, 0, 0]);
        let mut c = ConnHealth::default();
        c.open(SYN, Side::Client);
        let segment = |f, seq, ack| Transport {
            tcp_seq: seq,
            tcp_ack: ack,
            ..Transport::new(
                L4Proto::Tcp,
                (Addr::from_v4([198, 18, 0, 1]), 4000),
                (Addr::from_v4([198, 18, 0, 2]), 80),
                f,
            )
        };
        c.step(
            &segment(SYN, 80_000, 0),
            Side::Client,
            0,
            Closing::No,
            false,
        );
        assert!(c.answers_another_syn(&segment(ACK, 5000, 111), Side::Server));
        assert!(c.answers_another_syn(&segment(RST, 111, 0), Side::Client));
        assert!(!c.answers_another_syn(&segment(RST, 80_001, 0), Side::Client));
        assert!(!c.answers_another_syn(&segment(RST | ACK, 0, 80_001), Side::Server));
    }

    #[test]
    fn retransmissions_keep_alives_probes_and_reordering() {
        let open = [
            (true, SYN, 100, 100, 0, 0),
            (false, SYN | ACK, 900, 100, 0, MS),
            (true, ACK, 101, 100, 0, 2 * MS),
        ];
        let with = |more: &[(bool, u8, u32, u16, u16, u64)]| {
            let mut v = open.to_vec();
            v.extend_from_slice(more);
            let h = run(&v);
            Side::BOTH.map(|side| h.sent(side).retransmits)
        };
        // Data, then the same data 200 ms later: a retransmission.
        assert_eq!(
            with(&[
                (true, ACK, 101, 100, 50, 10 * MS),
                (true, ACK, 101, 100, 50, 210 * MS)
            ]),
            [1, 0]
        );
        // A later segment first (one was lost), the gap filled 1 ms later
        // (within the 2 ms round trip): out of order, not retransmitted.
        assert_eq!(
            with(&[
                (true, ACK, 151, 100, 50, 10 * MS),
                (true, ACK, 101, 100, 50, 11 * MS)
            ]),
            [0, 0]
        );
        // ... filled 100 ms later: a retransmission.
        assert_eq!(
            with(&[
                (true, ACK, 151, 100, 50, 10 * MS),
                (true, ACK, 101, 100, 50, 110 * MS)
            ]),
            [1, 0]
        );
        // Keep-alives: one byte (or none) at the last sequence number sent.
        assert_eq!(
            with(&[
                (true, ACK, 100, 100, 1, 10_000 * MS),
                (true, ACK, 100, 100, 0, 20_000 * MS)
            ]),
            [0, 0]
        );
        // The server's window closes; the client probes it twice with the
        // next byte, then sends it for real once it opens: no retransmission.
        assert_eq!(
            with(&[
                (false, ACK, 901, 0, 0, 10 * MS),
                (true, ACK, 101, 100, 1, 210 * MS),
                (true, ACK, 101, 100, 1, 610 * MS),
                (false, ACK, 901, 100, 0, 700 * MS),
                (true, ACK, 101, 100, 50, 701 * MS),
            ]),
            [0, 0]
        );
        // A FIN sent twice.
        assert_eq!(
            with(&[
                (false, FIN | ACK, 901, 100, 0, 10 * MS),
                (false, FIN | ACK, 901, 100, 0, 300 * MS)
            ]),
            [0, 1]
        );
        // Sequence numbers that wrap around.
        let wrap = [
            (true, ACK, u32::MAX - 10, 100, 20, 0),
            (true, ACK, 9, 100, 20, MS),
            (true, ACK, u32::MAX - 10, 100, 20, 500 * MS),
        ];
        assert_eq!(run(&wrap).sent(Side::Client).retransmits, 1);
    }

    /// A connection's two directions may be read in either order (another
    /// receive queue's packets are handed on in batches): the answer to a
    /// SYN read before it still makes the outcome the SYN's.
    #[test]
    fn outcomes_whose_answer_is_read_before_the_syn() {
        // [established, refused, unanswered, reset, closed, open]
        let syn = (true, SYN, 100, 0, 100, 0, 0);
        // The server's RST first, then the SYN it acknowledges: refused.
        let rst = (false, RST | ACK, 0, 101, 0, 0, MS / 10);
        assert_eq!(outcomes(&run_acked(&[rst, syn])), [0, 1, 0, 0, 0, 0]);
        // A Fast Open SYN's data acknowledged too.
        let tfo_rst = (false, RST | ACK, 0, 111, 0, 0, MS / 10);
        let tfo_syn = (true, SYN, 100, 0, 100, 10, 0);
        assert_eq!(
            outcomes(&run_acked(&[tfo_rst, tfo_syn])),
            [0, 1, 0, 0, 0, 0]
        );
        // A RST without ACK names no SYN (even one of sequence number
        // 2^32 - 1).
        let bare = (false, RST, 0, 0, 0, 0, MS / 10);
        let wrapping = (true, SYN, u32::MAX, 0, 100, 0, 0);
        assert_eq!(outcomes(&run_acked(&[bare, wrapping])), [0, 0, 0, 1, 0, 0]);
        // A RST acknowledging another SYN, or none at all: the end of a
        // connection the capture joined, as before.
        let other = (true, SYN, 500, 0, 100, 0, 0);
        assert_eq!(outcomes(&run_acked(&[rst, other])), [0, 0, 0, 1, 0, 0]);
        assert_eq!(outcomes(&run_acked(&[rst])), [0, 0, 0, 1, 0, 0]);
        // The SYN-ACK first, then its SYN, and no ACK: unanswered (not a
        // connection joined open); with the ACK, established.
        let synack = (false, SYN | ACK, 900, 101, 100, 0, MS);
        assert_eq!(outcomes(&run_acked(&[synack, syn])), [0, 0, 1, 0, 0, 0]);
        let ack = (true, ACK, 101, 901, 100, 0, 2 * MS);
        assert_eq!(
            outcomes(&run_acked(&[synack, syn, ack])),
            [1, 0, 0, 0, 0, 1]
        );
    }

    #[test]
    fn a_connection_keeps_at_most_32_bytes() {
        assert!(size_of::<ConnHealth>() <= 32, "{}", size_of::<ConnHealth>());
    }

    #[test]
    fn zero_windows_count_except_in_syns_fins_and_resets() {
        let h = run(&[
            (true, SYN, 99, 0, 0, 0),
            (false, SYN | ACK, 899, 0, 0, MS),
            (true, ACK, 100, 0, 0, 2 * MS),
            (true, ACK, 100, 0, 0, 3 * MS),
            (true, FIN | ACK, 100, 0, 0, 4 * MS),
            (false, RST, 900, 0, 0, 5 * MS),
        ]);
        assert_eq!(h.sent(Side::Client).zero_windows, 2);
        assert_eq!(h.sent(Side::Server).zero_windows, 0);
        assert_eq!(h.sent(Side::Server).rsts, 1);
    }

    /// A segment sent again within a round trip of newer data, which the
    /// other side had acknowledged whole: a spurious retransmission, as
    /// tshark counts it (it read as reordered: an audit's real transfers
    /// through a delaying bridge had five, all missed). Not acknowledged,
    /// it may have been held back on the way: out of order.
    #[test]
    fn a_segment_already_acknowledged_is_retransmitted_however_soon() {
        // (client?, flags, seq, ack, window, payload, ts); a 2 ms round trip.
        let open = [
            (true, SYN, 100, 0, 100, 0, 0),
            (false, SYN | ACK, 900, 101, 100, 0, MS),
            (true, ACK, 101, 901, 100, 0, 2 * MS),
            (true, ACK, 101, 901, 100, 50, 10 * MS),
            (true, ACK, 151, 901, 100, 50, 11 * MS),
        ];
        let with = |more: &[(bool, u8, u32, u32, u16, u16, u64)]| {
            let mut v = open.to_vec();
            v.extend_from_slice(more);
            run_acked(&v).sent(Side::Client).retransmits
        };
        // The server has both segments; the first comes again 1.5 ms
        // after the second (a timer that fired too soon).
        let acked = (false, ACK, 901, 201, 100, 0, 12 * MS);
        let again = (true, ACK, 101, 901, 100, 50, 12 * MS + MS / 2);
        assert_eq!(with(&[acked, again]), 1);
        // The server has the first only up to its middle: not whole.
        let partly = (false, ACK, 901, 121, 100, 0, 12 * MS);
        assert_eq!(with(&[partly, again]), 0);
        // No ACK since: as before, out of order.
        assert_eq!(with(&[again]), 0);
    }

    #[test]
    fn round_trips_keep_to_the_tick_up_to_33_ms() {
        for ticks in [1, 4, 17, 32_767] {
            assert_eq!(Rtt::decode(Rtt::encode(ticks)), ticks);
        }
        assert_eq!(Rtt::decode(Rtt::encode(0)), 1);
        // Coarser above, never more than a unit (256 ticks) short.
        for ticks in [32_768, 100_000, 1_000_000, 8_000_000] {
            let back = Rtt::decode(Rtt::encode(ticks));
            assert!(back <= ticks && ticks - back < 256, "{ticks} {back}");
        }
        // Beyond 8.6 s, 8.6 s.
        assert_eq!(Rtt::decode(Rtt::encode(u32::MAX)), (32_767 << 8));
    }

    /// ACKs of one number that only grow the window are window updates,
    /// not duplicate ACKs (as tshark reads them): a segment held back
    /// behind them stays out of order, where it read as a fast
    /// retransmission (an audit's reordering bridge: 32 counted, tshark
    /// 15, every extra one an original by its timestamp). Two that repeat
    /// the window ask for it: a fast retransmission, however soon.
    #[test]
    fn window_updates_are_no_duplicate_acks() {
        // (client?, flags, seq, ack, window, payload, ts); the second
        // segment first, the first held back 1.5 ms.
        let run_with = |windows: [u16; 3]| {
            run_acked(&[
                (true, SYN, 100, 0, 100, 0, 0),
                (false, SYN | ACK, 900, 101, 100, 0, MS),
                (true, ACK, 101, 901, 100, 0, 2 * MS),
                (true, ACK, 151, 901, 100, 50, 10 * MS),
                (false, ACK, 901, 101, windows[0], 0, 10 * MS + 100_000),
                (false, ACK, 901, 101, windows[1], 0, 10 * MS + 200_000),
                (false, ACK, 901, 101, windows[2], 0, 10 * MS + 300_000),
                (true, ACK, 101, 901, 100, 50, 11 * MS + MS / 2),
            ])
            .sent(Side::Client)
            .retransmits
        };
        assert_eq!(run_with([300, 400, 500]), 0);
        assert_eq!(run_with([300, 300, 300]), 1);
        // A zero window repeated is no duplicate ACK either.
        assert_eq!(run_with([0, 0, 0]), 0);
    }

    /// A segment between 198.18.0.1:4000 and 198.18.0.2:80, window 100.
    fn segment(f: u8, seq: u32, ack: u32, payload_len: u32) -> Transport {
        Transport {
            tcp_seq: seq,
            tcp_ack: ack,
            tcp_window: 100,
            payload_len,
            ..Transport::new(
                L4Proto::Tcp,
                (Addr::from_v4([198, 18, 0, 1]), 4000),
                (Addr::from_v4([198, 18, 0, 2]), 80),
                f,
            )
        }
    }

    /// A SPAN of both ends delivers each segment twice: the copies of the
    /// receiver's ACKs are no duplicate ACKs, so a segment reordered within
    /// a round trip after one duplicate ACK stays out of order, not a fast
    /// retransmission (tshark on the capture without the copies: one
    /// duplicate ACK).
    #[test]
    fn a_mirror_s_copies_of_acks_are_no_duplicate_acks() {
        let mut c = ConnHealth::default();
        let mut retransmits = 0;
        // (client?, flags, seq, ack, payload, ts in µs, copied?)
        for (client, f, seq, ack, len, us, copied) in [
            (true, SYN, 100, 0, 0, 0, false),
            (false, SYN | ACK, 900, 101, 0, 1_000, false),
            (true, ACK, 101, 901, 0, 2_000, false),
            // The second segment first; the receiver asks again for the
            // first, which comes a millisecond later.
            (true, ACK, 151, 901, 50, 10_000, true),
            (false, ACK, 901, 101, 0, 10_200, true),
            (true, ACK, 101, 901, 50, 11_000, true),
        ] {
            let t = segment(f, seq, ack, len);
            let sender = Side::sender(client);
            for duplicate in [false, true].into_iter().take(1 + usize::from(copied)) {
                let events = c.step(&t, sender, us * 1_000, Closing::No, duplicate);
                retransmits += u32::from(events.has(Events::RETRANSMIT));
            }
        }
        assert_eq!(retransmits, 0);
    }

    /// A GSO/GRO segment past 64 KiB (BIG TCP: its IP length field 0, as
    /// tcpdump records it on the host): its tail sent again is a
    /// retransmission (a length cut to 65,535 left the tail unseen: tshark
    /// counted one, flowtap none).
    #[test]
    fn a_segment_past_64_kib_is_tracked_whole() {
        let mut c = ConnHealth::default();
        let mut retransmits = 0;
        // (client?, flags, seq, ack, payload, ts in µs)
        for (client, f, seq, ack, len, us) in [
            (true, SYN, 100, 0, 0, 0),
            (false, SYN | ACK, 900, 101, 0, 1_000),
            (true, ACK, 101, 901, 0, 2_000),
            (true, ACK, 101, 901, 100_000, 10_000),
            (true, ACK, 101 + 100_000 - 1_448, 901, 1_448, 210_000),
        ] {
            let t = segment(f, seq, ack, len);
            let events = c.step(&t, Side::sender(client), us * 1_000, Closing::No, false);
            retransmits += u32::from(events.has(Events::RETRANSMIT));
        }
        assert_eq!(retransmits, 1);
    }
}
