//! One connection's state: who the client is, and the TCP handshake legs.
//!
//! Roles: the client is the sender of the pure SYN. Without one (a capture
//! that starts mid-stream, or UDP) the first packet decides: the sender of a
//! SYN-ACK is the server; otherwise a well-known service port
//! ([`super::services`]) on one side only makes that side the server, and
//! else the sender is the client unless its port is in a lower tier than
//! the receiver's (well-known < 1024 < registered < 32768 <= ephemeral), in
//! which case it is the server answering. So a DNS reply seen before its
//! query still makes port 53 the server, an NFS reply from 2049 to a
//! client's port 1023 makes 2049 the server, while two ephemeral ports keep
//! "first sender is the client".
//!
//! Handshake legs are paired up by timestamp, not by the order packets are
//! processed: live, a connection's two directions may arrive on different rx
//! queues and reach the shard in either order, while each direction keeps
//! its own order. The client leg is SYN-ACK minus the last client SYN at or
//! before it; the server leg is the first client ACK at or after the SYN-ACK
//! minus that same SYN. A leg is recorded once no earlier packet can still
//! change it: the client leg when a client packet newer than the SYN-ACK
//! shows every earlier SYN has been seen (or when the connection is flushed),
//! the server leg when the completing ACK is known.

use super::health::{Closing, ConnHealth, Events};
use super::key::ConnKey;
use super::services::is_service_port;
use super::side::{PerSide, Side};
use crate::packet::{L4Proto, Transport};
use crate::time::ticks;
use crate::wire::tcp::flags;

/// The idle timeout classes a connection passes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// TCP, a SYN seen and the handshake not completed.
    Handshake,
    /// TCP, established (or seen mid-stream).
    Open,
    /// TCP, closed by a RST or by FINs from both sides.
    Closed,
    Udp,
}

/// The lower the tier, the more a port looks like a service.
pub fn port_tier(port: u16) -> u8 {
    match port {
        0..1024 => 0,
        1024..32768 => 1,
        _ => 2,
    }
}

/// Whether the sender of a connection's first packet is its client.
pub fn sender_is_client(t: &Transport) -> bool {
    if let Some(client) = handshake_says_client(t) {
        return client;
    }
    // A RST|ACK read first where the ports say nothing: most often the
    // refusal of a SYN read after it (the two directions on two receive
    // queues: a closed high port, a NodePort without endpoints), which
    // is the server's; an abort of a connection the capture joined is
    // rarer.
    if tcp_flags(t)
        .is_some_and(|f| f & (flags::SYN | flags::RST | flags::ACK) == flags::RST | flags::ACK)
        && ports_tie(t.src_port, t.dst_port)
    {
        return false;
    }
    sender_port_is_client(t.src_port, t.dst_port)
}

/// Whether the packet's own flags say who the client is: a SYN is the
/// client's, a SYN-ACK the server's.
fn handshake_says_client(t: &Transport) -> Option<bool> {
    let f = tcp_flags(t)?;
    match (
        f & flags::SYN != 0,
        f & flags::ACK != 0,
        f & flags::RST != 0,
    ) {
        (true, false, _) => Some(true),
        (true, true, false) => Some(false),
        _ => None,
    }
}

/// A TCP segment's flags, where the packet carries its header (a later
/// fragment does not).
fn tcp_flags(t: &Transport) -> Option<u8> {
    (t.proto == L4Proto::Tcp && t.fragment.carries_header()).then_some(t.tcp_flags)
}

/// Whether nothing in a first packet says who the client is: no SYN or
/// SYN-ACK, and ports alike (both listed services or neither, in one
/// tier), so that the first sender is taken for the client.
pub fn roles_are_a_guess(t: &Transport) -> bool {
    handshake_says_client(t).is_none() && ports_tie(t.src_port, t.dst_port)
}

/// Ports that do not tell a service from its client.
fn ports_tie(a: u16, b: u16) -> bool {
    is_service_port(a) == is_service_port(b) && port_tier(a) == port_tier(b)
}

/// Whether the sender is the client by the ports alone (no SYN decided): a
/// service port on one side only, else the tiers.
pub fn sender_port_is_client(src_port: u16, dst_port: u16) -> bool {
    match (is_service_port(src_port), is_service_port(dst_port)) {
        (false, true) => true,
        (true, false) => false,
        _ => port_tier(src_port) >= port_tier(dst_port),
    }
}

/// Handshake legs a packet completed, in ns, and whether it reopened the
/// connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// By whose view of the round trip they are: the client's leg is
    /// SYN -> SYN-ACK, the server's SYN -> completing ACK.
    pub legs: PerSide<Option<u64>>,
    /// A SYN-ACK that precedes every SYN in time: nothing can be measured.
    pub out_of_order: bool,
    /// A new SYN on a closed or differently-sequenced connection: a new
    /// connection on the same 5-tuple, as tshark splits streams.
    pub reopen: bool,
    /// TCP health: what the packet was (retransmission, RST, zero window)
    /// and the connection's outcome if it changed.
    pub tcp: Events,
}

const FIN_CLIENT: u8 = 1;
const FIN_SERVER: u8 = 2;
const RST: u8 = 4;

/// Whether the other side has really answered: what a full table gives up
/// first is unanswered state (a spoofed SYN, a probe, a flood). UDP: the
/// other side sent a datagram. TCP, which a spoofer cannot fake as cheaply:
/// the handshake completed (a SYN-ACK acknowledging the client's SYN, and
/// the client's ACK of that SYN-ACK), or payload sent each way. A SYN-ACK
/// alone is not an answer: a server under a SYN flood sends one to every
/// spoofed source, but only a real client acknowledges it. Nor is a bare
/// packet back.
const ANSWERED: u8 = 1;
/// TCP, per side (shifted by the side's index): its first sequence number
/// is known; it has sent payload.
const SEQ_SEEN: u8 = 2;
const PAYLOAD_SENT: u8 = 8;
const SYNACK_SEEN: u8 = 32;
/// The roles: the client is the `lo` endpoint of the key; the server sent
/// the opening packet.
const CLIENT_IS_LO: u8 = 64;
const OPENED_BY_SERVER: u8 = 128;

/// `flag` for `side`.
fn per_side(flag: u8, side: Side) -> u8 {
    flag << (side as u8)
}

const CLIENT_LEG_DONE: u8 = 1;
const SERVER_LEG_DONE: u8 = 2;

/// SYN times kept: enough for retransmissions around the SYN-ACK.
const SYNS_KEPT: usize = 3;

/// Heap bytes of a connection's handshake state while it lasts (with the
/// allocator's overhead), for memory accounting.
pub const HANDSHAKE_STATE_BYTES: usize = size_of::<HandshakeTimes>() + 16;

/// A handshake time not seen yet. Not 0: a capture may stamp a packet 0
/// (a SYN-ACK at 0 lost both legs of its handshake, uncounted).
const NOT_SEEN: u64 = u64::MAX;

/// The handshake's timestamps so far.
#[derive(Clone, Copy, Debug)]
struct HandshakeTimes {
    /// The latest client SYNs, oldest first.
    syns: [u64; SYNS_KEPT],
    syn_count: u8,
    /// The earliest SYN-ACK from the server ([`NOT_SEEN`] before it).
    synack_ns: u64,
    /// The first client ACK (SYN clear) processed ([`NOT_SEEN`] before it).
    first_ack_ns: u64,
    /// The newest client packet processed.
    client_newest_ns: u64,
    done: u8,
    /// What the server's SYN-ACK acknowledged and its sequence number (once
    /// [`SYNACK_SEEN`]), kept in case the client's SYN or ACK is processed
    /// after it (its directions came through different queues). Here rather
    /// than in [`Conn`]: once the handshake is done, all were seen and
    /// compared.
    synack_ack: u32,
    synack_seq: u32,
    /// The latest SYN-ACK's sequence number: a SYN-cookie server answers a
    /// SYN sent again with a new one, which the client may acknowledge.
    latest_synack_seq: u32,
    /// What the client's first ACK (SYN and RST clear) acknowledged, kept
    /// in case the SYN-ACK is processed after it.
    client_ack: Option<u32>,
}

impl Default for HandshakeTimes {
    fn default() -> Self {
        HandshakeTimes {
            syns: [0; SYNS_KEPT],
            syn_count: 0,
            synack_ns: NOT_SEEN,
            first_ack_ns: NOT_SEEN,
            client_newest_ns: 0,
            done: 0,
            synack_ack: 0,
            synack_seq: 0,
            latest_synack_seq: 0,
            client_ack: None,
        }
    }
}

impl HandshakeTimes {
    /// Takes in one packet (TCP flags `f`) and records the legs it settles.
    fn step(&mut self, f: u8, sender: Side, pure_syn: bool, ts_ns: u64, step: &mut Step) {
        if sender == Side::Client {
            if pure_syn {
                self.push_syn(ts_ns);
            } else if f & flags::ACK != 0
                && f & (flags::SYN | flags::RST) == 0
                && self.first_ack_ns == NOT_SEEN
            {
                // (A RST|ACK does not complete the handshake: no server leg.)
                self.first_ack_ns = ts_ns;
            }
            self.client_newest_ns = self.client_newest_ns.max(ts_ns);
        } else if f & flags::SYN != 0 && f & flags::ACK != 0 && ts_ns < self.synack_ns {
            self.synack_ns = ts_ns;
        }
        self.settle(false, step);
    }

    /// Both legs are recorded (or can never be): nothing more to do.
    fn is_done(&self) -> bool {
        self.done == CLIENT_LEG_DONE | SERVER_LEG_DONE
    }

    fn push_syn(&mut self, ts: u64) {
        if (self.syn_count as usize) < SYNS_KEPT {
            self.syns[self.syn_count as usize] = ts;
            self.syn_count += 1;
        } else {
            self.syns.rotate_left(1);
            self.syns[SYNS_KEPT - 1] = ts;
        }
    }

    /// The last SYN at or before `ts`.
    fn syn_at_or_before(&self, ts: u64) -> Option<u64> {
        self.syns[..self.syn_count as usize]
            .iter()
            .rev()
            .copied()
            .find(|&s| s <= ts)
    }

    /// Records what can be recorded. `flush` records the client leg even
    /// without a later client packet (the connection is ending).
    fn settle(&mut self, flush: bool, step: &mut Step) {
        if self.synack_ns == NOT_SEEN
            || self.syn_count == 0
            || self.done == CLIENT_LEG_DONE | SERVER_LEG_DONE
        {
            return;
        }
        let Some(syn) = self.syn_at_or_before(self.synack_ns) else {
            // Every SYN is newer than the SYN-ACK: the client leg's
            // timestamps run backwards (a TAP's two directions stamped by
            // two clocks), and it is not measured. The server leg, SYN to
            // the completing ACK, is two packets of the client's, stamped
            // by one clock: it still is.
            if self.done & CLIENT_LEG_DONE == 0 && (self.client_newest_ns > self.synack_ns || flush)
            {
                step.out_of_order = true;
                self.done |= CLIENT_LEG_DONE;
            }
            if self.done & SERVER_LEG_DONE == 0
                && self.first_ack_ns != NOT_SEEN
                && let Some(syn) = self.syn_at_or_before(self.first_ack_ns)
            {
                step.legs[Side::Server] = Some(self.first_ack_ns - syn);
                self.done |= SERVER_LEG_DONE;
            } else if flush {
                self.done |= SERVER_LEG_DONE;
            }
            return;
        };
        // The client's ACK stamped before the SYN-ACK it answers: the
        // directions' clocks disagree the other way (the server's ahead),
        // and the client leg, from one clock to the other, is not
        // measured; the server leg, the client's two packets, still is.
        let acked_before_synack =
            self.first_ack_ns != NOT_SEEN && self.first_ack_ns < self.synack_ns;
        if self.done & CLIENT_LEG_DONE == 0 {
            if acked_before_synack {
                step.out_of_order = true;
                self.done |= CLIENT_LEG_DONE;
            } else if flush || self.client_newest_ns > self.synack_ns {
                step.legs[Side::Client] = Some(self.synack_ns - syn);
                self.done |= CLIENT_LEG_DONE;
            }
        }
        if self.done & SERVER_LEG_DONE == 0 && self.first_ack_ns != NOT_SEEN {
            let from = if acked_before_synack {
                self.syn_at_or_before(self.first_ack_ns)
            } else {
                Some(syn)
            };
            if let Some(from) = from {
                step.legs[Side::Server] = Some(self.first_ack_ns - from);
                self.done |= SERVER_LEG_DONE;
            }
        }
    }
}

/// Laid out in this order (`repr(C)`), 104 bytes: the key that every
/// lookup compares and what every packet reads and writes first; what only
/// handshakes and ends read last, so that a packet of an established
/// connection touches as few cache lines as possible. Every byte counts a
/// million times over: the table holds connections themselves (the key is
/// their first field), at a load between 44% and 88%.
#[derive(Clone, Debug)]
#[repr(C)]
pub struct Conn {
    /// Its 5-tuple.
    pub key: ConnKey,
    closing: u8,
    /// [`ANSWERED`], [`SEQ_SEEN`] per side, [`PAYLOAD_SENT`] per side,
    /// [`SYNACK_SEEN`], [`CLIENT_IS_LO`], [`OPENED_BY_SERVER`]: flags packed
    /// in a byte.
    flags: u8,
    /// Index of the connection's flow in the shard's flow slab.
    pub flow: u32,
    /// When the packet that opened this connection was sent, in ticks
    /// ([`ticks`]). A FIN or RST from before it belongs to an earlier
    /// connection on the 5-tuple (seen late, through another queue) and
    /// does not close this one. With the key, it names this connection in
    /// the expiry and eviction queues.
    opened: u32,
    pub last_seen_ns: u64,
    /// TCP: sequence tracking for retransmissions, and the outcome so far.
    health: ConnHealth,
    /// Until both legs are recorded (TCP only). Boxed, and dropped once
    /// done, because an established connection never needs it again: it
    /// would more than double the entry that every packet looks up.
    handshake: Option<Box<HandshakeTimes>>,
    /// First sequence number each side sent (once [`SEQ_SEEN`] says so), for
    /// port-reuse detection.
    base_seq: PerSide<u32>,
}

impl Conn {
    /// A connection from its first packet, sent by `sender`.
    pub fn new(
        flow: u32,
        client_is_lo: bool,
        t: &Transport,
        sender: Side,
        ts_ns: u64,
    ) -> (Conn, Step) {
        let mut flags = 0;
        if client_is_lo {
            flags |= CLIENT_IS_LO;
        }
        if sender == Side::Server {
            flags |= OPENED_BY_SERVER;
        }
        let mut conn = Conn {
            key: ConnKey::of(t).0,
            flow,
            last_seen_ns: ts_ns,
            opened: ticks(ts_ns),
            handshake: (t.proto == L4Proto::Tcp).then(Box::default),
            base_seq: PerSide::default(),
            closing: 0,
            flags,
            health: ConnHealth::default(),
        };
        let step = if t.proto == L4Proto::Tcp {
            let joined = t.fragment.carries_header() && conn.health.open(t.tcp_flags, sender);
            let mut step = conn.tcp_step(t, sender, ts_ns);
            step.tcp.set(Events::JOINED_OPEN, joined);
            step
        } else {
            Step::default()
        };
        (conn, step)
    }

    /// When the packet that opened the connection was sent, in ticks: with
    /// the key, it tells this connection from a later one on the 5-tuple.
    pub fn opened_tick(&self) -> u32 {
        self.opened
    }

    /// When the connection opened, to the tick (1024 ns, rounded down),
    /// from its tick and when it was last seen: exact for connections
    /// younger than 73 minutes; an older one is taken as opened a multiple
    /// of 73 minutes later, which matters only to a packet stamped in the
    /// moment after that.
    fn opened_ns(&self) -> u64 {
        let age = ticks(self.last_seen_ns).wrapping_sub(self.opened);
        (self.last_seen_ns >> 10).saturating_sub(u64::from(age)) << 10
    }

    /// Whether the client is the `lo` endpoint of the connection key.
    pub fn client_is_lo(&self) -> bool {
        self.flags & CLIENT_IS_LO != 0
    }

    /// The sender of the opening packet.
    fn opened_by(&self) -> Side {
        if self.flags & OPENED_BY_SERVER != 0 {
            Side::Server
        } else {
            Side::Client
        }
    }

    /// Notes a UDP datagram's sender: the first from the other side answers.
    pub fn note_datagram(&mut self, sender: Side) {
        if sender != self.opened_by() {
            self.flags |= ANSWERED;
        }
    }

    /// The other side has sent something.
    pub fn is_answered(&self) -> bool {
        self.flags & ANSWERED != 0
    }

    /// True once a RST, or a FIN from both sides, was seen.
    pub fn is_closed(&self) -> bool {
        self.closing & RST != 0
            || self.closing & (FIN_CLIENT | FIN_SERVER) == FIN_CLIENT | FIN_SERVER
    }

    /// Which idle timeout applies to the connection now.
    pub fn class(&self, proto: L4Proto) -> Class {
        match proto {
            L4Proto::Udp => Class::Udp,
            L4Proto::Tcp if self.is_closed() => Class::Closed,
            L4Proto::Tcp if self.is_half_open() => Class::Handshake,
            L4Proto::Tcp => Class::Open,
        }
    }

    /// A SYN was seen and the handshake has not completed.
    pub fn is_half_open(&self) -> bool {
        self.handshake
            .as_ref()
            .is_some_and(|h| h.syn_count > 0 && h.first_ack_ns == NOT_SEEN)
    }

    /// Advances the TCP state for one packet sent by `sender`.
    pub fn tcp_step(&mut self, t: &Transport, sender: Side, ts_ns: u64) -> Step {
        self.tcp_step_of(t, sender, ts_ns, false)
    }

    /// [`Self::tcp_step`] for a packet that may be a mirror's `duplicate`
    /// copy of one already counted (see `PacketMeta::duplicate`): a copy is
    /// no retransmission, and no SYN or ACK to time a handshake by; its
    /// flags count as the frame's (its RST, its zero window), as tshark
    /// counts them.
    pub fn tcp_step_of(
        &mut self,
        t: &Transport,
        sender: Side,
        ts_ns: u64,
        duplicate: bool,
    ) -> Step {
        let mut step = Step::default();
        if !t.fragment.carries_header() {
            return step;
        }
        let f = t.tcp_flags;
        let pure_syn = f & flags::SYN != 0 && f & flags::ACK == 0;
        // A new connection's SYN is newer than everything of the old one; a
        // SYN older than what was already seen is a late copy, reordered.
        let seq_seen = self.flags & per_side(SEQ_SEEN, sender) != 0;
        let same_syn = seq_seen && self.base_seq[sender] == t.tcp_seq;
        // The refused SYN sent again (as Windows does, twice, after a RST):
        // the same connect, the same connection (as tshark's stream), its
        // refusal counted once; the RST ended the try before, not this one.
        if pure_syn && ts_ns >= self.last_seen_ns {
            // Not a mirror's copy of the refused SYN, read late: that
            // repeats the SYN the RST answered.
            if same_syn && !duplicate && self.health.syn_sent_again() {
                self.closing = 0;
            } else if seq_seen && (self.closing != 0 || !same_syn) {
                step.reopen = true;
                return step;
            }
        }
        if !seq_seen {
            self.base_seq[sender] = t.tcp_seq;
            self.flags |= per_side(SEQ_SEEN, sender);
        }
        if !self.is_answered() {
            self.note_answer(t, sender);
        }
        if let Some(h) = self.handshake.as_deref_mut()
            && !duplicate
        {
            h.step(f, sender, pure_syn, ts_ns, &mut step);
            if h.is_done() {
                self.handshake = None;
            }
        }
        if let Some(rtt) = step.legs[Side::Server] {
            self.health.set_rtt(rtt);
        }
        if f & (flags::FIN | flags::RST) != 0 && ts_ns >= self.opened_ns() {
            if f & flags::FIN != 0 {
                self.closing |= match sender {
                    Side::Client => FIN_CLIENT,
                    Side::Server => FIN_SERVER,
                };
            }
            if f & flags::RST != 0 && !self.health.answers_another_syn(t, sender) {
                self.closing |= RST;
            }
        }
        let closing = if self.closing & RST != 0 {
            Closing::Rst
        } else if self.is_closed() {
            Closing::Fins
        } else {
            Closing::No
        };
        step.tcp = self.health.step(t, sender, ts_ns, closing, duplicate);
        step
    }

    /// An ICMP error refused the client's segment with sequence number
    /// `seq`: if that is this connection's SYN, still unanswered, the
    /// connection is refused and closed, as by the server's RST. `None`
    /// where the error refuses nothing of it (its refusal then waits for
    /// a SYN, or is counted unmatched).
    pub fn refuse(&mut self, seq: u32) -> Option<Step> {
        let syn_seen = self.flags & per_side(SEQ_SEEN, Side::Client) != 0;
        if !(syn_seen && self.base_seq[Side::Client] == seq && self.health.awaits_answer()) {
            return None;
        }
        let mut step = Step::default();
        // No outcome for the SYN sent again after its refusal: counted once.
        step.tcp.outcome = self.health.refuse();
        self.closing |= RST;
        Some(step)
    }

    /// Whether this segment answers the connection ([`ANSWERED`]): it
    /// completes the handshake (a SYN-ACK acknowledging the client's first
    /// sequence number, its SYN's, and the client's first ACK acknowledging
    /// the SYN-ACK's, in whichever order the three are processed), or it is
    /// payload sent by the second side of the two.
    fn note_answer(&mut self, t: &Transport, sender: Side) {
        let f = t.tcp_flags;
        if let Some(h) = self.handshake.as_deref_mut() {
            let bare_ack = f & flags::ACK != 0 && f & (flags::SYN | flags::RST) == 0;
            let synack = f & flags::SYN != 0 && f & flags::ACK != 0 && f & flags::RST == 0;
            if sender == Side::Server && synack {
                if self.flags & SYNACK_SEEN == 0 {
                    h.synack_ack = t.tcp_ack;
                    h.synack_seq = t.tcp_seq;
                    self.flags |= SYNACK_SEEN;
                }
                h.latest_synack_seq = t.tcp_seq;
            } else if sender == Side::Client && bare_ack && h.client_ack.is_none() {
                h.client_ack = Some(t.tcp_ack);
            }
        }
        let isn_seen = self.flags & per_side(SEQ_SEEN, Side::Client) != 0;
        if isn_seen
            && self.flags & SYNACK_SEEN != 0
            && self.handshake.as_deref().is_some_and(|h| {
                h.synack_ack == self.base_seq[Side::Client].wrapping_add(1)
                    && h.client_ack.is_some_and(|ack| {
                        ack == h.synack_seq.wrapping_add(1)
                            || ack == h.latest_synack_seq.wrapping_add(1)
                    })
            })
        {
            self.flags |= ANSWERED;
        }
        if t.payload_len > 0 {
            self.flags |= per_side(PAYLOAD_SENT, sender);
            if self.flags & per_side(PAYLOAD_SENT, sender.other()) != 0 {
                self.flags |= ANSWERED;
            }
        }
    }

    /// Given up before its handshake could time out: see
    /// [`ConnHealth::abandon_handshake`].
    pub fn abandon_handshake(&mut self) {
        self.health.abandon_handshake();
    }

    /// Records what is left of the handshake: the connection is ending (it
    /// expired, or the capture file ended).
    /// Its TCP outcome is settled too (a handshake that never completed was
    /// unanswered), once.
    pub fn flush(&mut self) -> Step {
        let mut step = Step::default();
        if let Some(h) = self.handshake.as_deref_mut() {
            h.settle(true, &mut step);
        }
        step.tcp.outcome = self.health.finish();
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Addr;

    fn tcp(sport: u16, dport: u16, f: u8, seq: u32) -> Transport {
        Transport {
            proto: L4Proto::Tcp,
            src: Addr::from_v4([198, 18, 0, 1]),
            dst: Addr::from_v4([198, 18, 0, 2]),
            src_port: sport,
            dst_port: dport,
            tcp_flags: f,
            tcp_seq: seq,
            tcp_ack: 0,
            tcp_window: 0,
            payload_len: 0,
            ip_len: 0,
            fragment: crate::packet::Fragment::Whole,
        }
    }

    fn udp(sport: u16, dport: u16) -> Transport {
        Transport {
            proto: L4Proto::Udp,
            ..tcp(sport, dport, 0, 0)
        }
    }

    use flags::{ACK, FIN, RST, SYN};

    #[test]
    fn role_rules_without_a_syn() {
        assert!(
            sender_is_client(&tcp(80, 40000, SYN, 0)),
            "a pure SYN decides"
        );
        assert!(
            !sender_is_client(&tcp(40000, 80, SYN | ACK, 0)),
            "SYN-ACK sender is the server"
        );
        assert!(sender_is_client(&tcp(40000, 80, ACK, 0)));
        assert!(
            !sender_is_client(&tcp(80, 52875, RST, 0)),
            "a reply from a well-known port"
        );
        assert!(!sender_is_client(&udp(53, 59368)));
        assert!(sender_is_client(&udp(59368, 53)));
        assert!(sender_is_client(&udp(520, 520)), "same tier: first sender");
        assert!(sender_is_client(&udp(68, 67)));
        assert!(sender_is_client(&udp(4444, 8472)));
        // A service on a registered port, its client on a privileged one.
        assert!(sender_is_client(&udp(1023, 2049)), "NFS call");
        assert!(!sender_is_client(&udp(2049, 1023)), "NFS reply first");
        assert!(
            !sender_is_client(&tcp(2049, 876, ACK, 0)),
            "mid-stream NFS over TCP"
        );
        assert!(!sender_is_client(&udp(389, 700)), "LDAP reply");
        assert!(sender_is_client(&udp(123, 123)), "NTP peers: first sender");
        assert!(
            !sender_is_client(&udp(8080, 45000)),
            "registered port answering an ephemeral one"
        );
        assert!(
            sender_is_client(&tcp(6260, 80, SYN | ACK | RST | FIN, 0)),
            "nonsense flags fall back to ports"
        );
        // A RST|ACK first, the ports alike: a refusal read before its SYN.
        assert!(!sender_is_client(&tcp(40000, 50051, RST | ACK, 0)));
        assert!(!sender_is_client(&tcp(31000, 20000, RST | ACK, 0)));
        // The ports decide where they can.
        assert!(!sender_is_client(&tcp(443, 40000, RST | ACK, 0)));
        assert!(sender_is_client(&tcp(40000, 443, RST | ACK, 0)));
        // Services whose clients send from ports of a lower tier.
        assert!(sender_is_client(&udp(801, 20048)), "NFSv3 mountd");
        assert!(sender_is_client(&udp(5000, 51820)), "WireGuard");
        // DHCPv6: the server's reply, read first.
        assert!(!sender_is_client(&udp(547, 546)));
        assert!(sender_is_client(&udp(546, 547)));
        // Only a guess where neither the flags nor the ports say.
        assert!(roles_are_a_guess(&udp(40000, 50443)));
        assert!(roles_are_a_guess(&tcp(40000, 32771, ACK, 0)));
        assert!(!roles_are_a_guess(&tcp(40000, 32771, SYN, 0)));
        assert!(!roles_are_a_guess(&udp(40000, 53)));
        assert!(!roles_are_a_guess(&udp(1023, 40000)));
    }

    /// Feeds (c2s, flags, ts) events in the given processing order; returns
    /// the legs recorded, and whether a flush recorded more.
    fn run(events: &[(bool, u8, u64)]) -> (Vec<u64>, Vec<u64>, bool) {
        let seq = |c2s: bool, f: u8| {
            if c2s {
                100 + u32::from(f & SYN == 0)
            } else {
                900
            }
        };
        let (first_c2s, first_f, first_ts) = events[0];
        let first = tcp(40000, 80, first_f, seq(first_c2s, first_f));
        let (mut conn, step) = Conn::new(0, true, &first, Side::sender(first_c2s), first_ts);
        let (mut client, mut server, mut ooo) = (Vec::new(), Vec::new(), step.out_of_order);
        let mut take = |s: Step| {
            client.extend(s.legs[Side::Client]);
            server.extend(s.legs[Side::Server]);
            ooo |= s.out_of_order;
        };
        take(step);
        for &(c2s, f, ts) in &events[1..] {
            let s = conn.tcp_step(&tcp(40000, 80, f, seq(c2s, f)), Side::sender(c2s), ts);
            assert!(!s.reopen);
            take(s);
        }
        take(conn.flush());
        (client, server, ooo)
    }

    #[test]
    fn legs_from_the_last_syn_in_time_order() {
        // SYN, retransmitted SYN, SYN-ACK, a second SYN-ACK, a SYN re-sent after it, ACK.
        let events = [
            (true, SYN, 1_000),
            (true, SYN, 1_000_001_000),
            (false, SYN | ACK, 1_000_017_000),
            (false, SYN | ACK, 1_000_018_000),
            (true, SYN, 1_000_019_000),
            (true, ACK, 1_000_020_000),
            (true, ACK, 1_000_030_000),
        ];
        assert_eq!(run(&events), (vec![16_000], vec![19_000], false));
    }

    /// A capture may stamp packets 0 (a tool's zeroed times): a SYN-ACK
    /// at 0 was taken for none seen, and both legs were lost, uncounted.
    #[test]
    fn a_handshake_stamped_zero_is_measured() {
        let events = [(true, SYN, 0), (false, SYN | ACK, 0), (true, ACK, 0)];
        assert_eq!(run(&events), (vec![0], vec![0], false));
        let events = [(true, SYN, 0), (false, SYN | ACK, 0), (true, ACK, 95_000)];
        assert_eq!(run(&events), (vec![0], vec![95_000], false));
    }

    #[test]
    fn directions_processed_out_of_order_give_the_same_legs() {
        let syn = (true, SYN, 10_000);
        let synack = (false, SYN | ACK, 30_000);
        let ack = (true, ACK, 45_000);
        let data = (false, ACK, 50_000);
        let want = (vec![20_000], vec![35_000], false);
        // Each direction keeps its order; the interleaving varies.
        for order in [
            [syn, synack, ack, data],
            [synack, syn, ack, data],
            [syn, ack, synack, data],
            [synack, data, syn, ack],
            [syn, ack, data, synack],
        ] {
            assert_eq!(run(&order), want, "{order:?}");
        }
    }

    #[test]
    fn an_unanswered_ack_is_flushed_and_a_backwards_handshake_is_counted() {
        // SYN and SYN-ACK only: the client leg is recorded when flushed.
        assert_eq!(
            run(&[(true, SYN, 1_000), (false, SYN | ACK, 5_000)]),
            (vec![4_000], vec![], false)
        );
        // The SYN-ACK's timestamp is before the SYN's (two clocks): the
        // client leg is not measured, and that is counted; the server leg,
        // the client's SYN to its ACK, is.
        assert_eq!(
            run(&[
                (true, SYN, 5_000),
                (false, SYN | ACK, 1_000),
                (true, ACK, 9_000)
            ]),
            (vec![], vec![4_000], true)
        );
        // So it is with the ACK processed first, or never seen.
        assert_eq!(
            run(&[
                (true, SYN, 5_000),
                (true, ACK, 9_000),
                (false, SYN | ACK, 1_000)
            ]),
            (vec![], vec![4_000], true)
        );
        assert_eq!(
            run(&[(true, SYN, 5_000), (false, SYN | ACK, 1_000)]),
            (vec![], vec![], true)
        );
        // The other way: the client's ACK stamped before the SYN-ACK it
        // answers (the server's direction stamped ahead), in either order.
        for order in [[1, 2], [2, 1]] {
            let packets = [
                (true, SYN, 1_000),
                (true, ACK, 6_000),
                (false, SYN | ACK, 11_000),
            ];
            assert_eq!(
                run(&[packets[0], packets[order[0]], packets[order[1]]]),
                (vec![], vec![5_000], true),
                "{order:?}"
            );
        }
        // Mid-stream: no SYN, nothing measured, nothing counted.
        assert_eq!(
            run(&[(false, SYN | ACK, 5_000), (true, ACK, 9_000)]),
            (vec![], vec![], false)
        );
    }

    #[test]
    fn only_a_real_answer_answers() {
        let synack = |ack: u32| Transport {
            tcp_ack: ack,
            ..tcp(80, 40000, SYN | ACK, 900)
        };
        // A bare ACK back, or a SYN-ACK acknowledging something else: no.
        let (mut c, _) = Conn::new(0, true, &tcp(40000, 80, SYN, 100), Side::Client, 0);
        c.tcp_step(&tcp(80, 40000, ACK, 900), Side::Server, 1);
        c.tcp_step(&synack(555), Side::Server, 2);
        assert!(!c.is_answered());
        // The client's ACK of the SYN-ACK (sequence number 900) completes
        // the handshake: a server under a SYN flood answers every spoofed
        // SYN, but no spoofer acknowledges its answer.
        let ack = |ack: u32| Transport {
            tcp_ack: ack,
            ..tcp(40000, 80, ACK, 101)
        };
        let (mut c, _) = Conn::new(0, true, &tcp(40000, 80, SYN, 100), Side::Client, 0);
        c.tcp_step(&synack(101), Side::Server, 3);
        assert!(!c.is_answered(), "a SYN-ACK alone");
        c.tcp_step(&ack(5), Side::Client, 4);
        assert!(!c.is_answered(), "an ACK of something else");
        let (mut c, _) = Conn::new(0, true, &tcp(40000, 80, SYN, 100), Side::Client, 0);
        c.tcp_step(&synack(101), Side::Server, 3);
        c.tcp_step(&ack(901), Side::Client, 4);
        assert!(c.is_answered(), "the handshake completed");
        // Processed in any order (the directions through different queues).
        let (mut c, _) = Conn::new(0, false, &synack(101), Side::Server, 5);
        assert!(!c.is_answered());
        c.tcp_step(&tcp(40000, 80, SYN, 100), Side::Client, 4);
        assert!(!c.is_answered());
        c.tcp_step(&ack(901), Side::Client, 6);
        assert!(c.is_answered());
        let (mut c, _) = Conn::new(0, true, &tcp(40000, 80, SYN, 100), Side::Client, 0);
        c.tcp_step(&ack(901), Side::Client, 6);
        assert!(!c.is_answered());
        c.tcp_step(&synack(101), Side::Server, 5);
        assert!(c.is_answered());
        // A SYN-cookie server answers the SYN sent again with a new cookie
        // (sequence number 5000): the client's ACK of either answers.
        for acked in [901, 5001] {
            let (mut c, _) = Conn::new(0, true, &tcp(40000, 80, SYN, 100), Side::Client, 0);
            c.tcp_step(&synack(101), Side::Server, 1);
            c.tcp_step(&tcp(40000, 80, SYN, 100), Side::Client, 2);
            let cookie = Transport {
                tcp_ack: 101,
                ..tcp(80, 40000, SYN | ACK, 5000)
            };
            c.tcp_step(&cookie, Side::Server, 3);
            c.tcp_step(&ack(acked), Side::Client, 4);
            assert!(c.is_answered(), "{acked}");
        }
        // Mid-stream: payload each way.
        let data = |sport, dport, n| Transport {
            payload_len: n,
            ip_len: 0,
            ..tcp(sport, dport, ACK, 7)
        };
        let (mut c, _) = Conn::new(0, true, &data(40000, 80, 100), Side::Client, 0);
        c.tcp_step(&data(80, 40000, 0), Side::Server, 1);
        c.tcp_step(&data(40000, 80, 10), Side::Client, 2);
        assert!(!c.is_answered(), "payload one way only");
        c.tcp_step(&data(80, 40000, 1), Side::Server, 3);
        assert!(c.is_answered());
        // UDP: any datagram back.
        let (mut c, _) = Conn::new(0, true, &udp(5000, 53), Side::Client, 0);
        c.note_datagram(Side::Client);
        assert!(!c.is_answered());
        c.note_datagram(Side::Server);
        assert!(c.is_answered());
    }

    #[test]
    fn reopen_on_new_isn_or_after_close() {
        let (mut c, _) = Conn::new(0, true, &tcp(40000, 80, SYN, 100), Side::Client, 0);
        assert!(
            c.tcp_step(&tcp(40000, 80, SYN, 555), Side::Client, 10)
                .reopen
        );

        // After a refusal, a new connect's SYN (a new ISN) reopens; the
        // refused SYN sent again is the same connection's, open again.
        let (mut c, _) = Conn::new(0, true, &tcp(40000, 80, SYN, 100), Side::Client, 0);
        c.tcp_step(&tcp(80, 40000, RST | ACK, 0), Side::Server, 10);
        assert!(c.is_closed());
        assert!(
            c.tcp_step(&tcp(40000, 80, SYN, 555), Side::Client, 20)
                .reopen
        );
        assert!(
            !c.tcp_step(&tcp(40000, 80, SYN, 100), Side::Client, 20)
                .reopen
        );
        assert!(!c.is_closed());
        assert!(c.is_half_open());

        let (mut c, _) = Conn::new(0, true, &tcp(40000, 80, ACK, 100), Side::Client, 0);
        c.tcp_step(&tcp(40000, 80, FIN | ACK, 100), Side::Client, 10);
        assert!(!c.is_closed(), "half-closed");
        c.tcp_step(&tcp(80, 40000, FIN | ACK, 100), Side::Server, 20);
        assert!(c.is_closed());

        // A FIN stamped before the SYN that opened the connection is a late
        // packet of the previous one: it neither closes nor reopens this one
        // (to the microsecond: when it opened is kept in 1024 ns ticks).
        let (mut c, _) = Conn::new(0, true, &tcp(40000, 80, SYN, 100), Side::Client, 10_000);
        c.tcp_step(&tcp(80, 40000, FIN | ACK, 5), Side::Server, 8_000);
        assert!(!c.is_closed());
        assert!(
            !c.tcp_step(&tcp(40000, 80, SYN, 100), Side::Client, 20_000)
                .reopen
        );

        // Past the 73 minutes its opening tick can tell, a connection still
        // closes: a late FIN (stamped before the newest packet) as well.
        let minute = 60 * crate::time::SECOND;
        for age in [36 * minute, 37 * minute, 80 * minute, 150 * minute] {
            let (mut c, _) = Conn::new(0, true, &tcp(40000, 80, ACK, 100), Side::Client, 0);
            c.last_seen_ns = age;
            c.tcp_step(&tcp(80, 40000, FIN | ACK, 5), Side::Server, age - 1_000_000);
            c.tcp_step(&tcp(40000, 80, FIN | ACK, 100), Side::Client, age);
            assert!(c.is_closed(), "{age}");
        }

        // A SYN older than packets already seen does not reopen.
        let (mut c, _) = Conn::new(0, true, &tcp(40000, 80, SYN, 100), Side::Client, 1_000);
        c.last_seen_ns = 5_000;
        assert!(
            !c.tcp_step(&tcp(40000, 80, SYN, 777), Side::Client, 3_000)
                .reopen
        );

        // A retransmitted SYN (same ISN) is not a new connection.
        let (mut c, _) = Conn::new(0, true, &tcp(40000, 80, SYN, 100), Side::Client, 0);
        assert!(
            !c.tcp_step(&tcp(40000, 80, SYN, 100), Side::Client, 10)
                .reopen
        );
        assert!(c.is_half_open());
    }

    /// Feeds (c2s, flags, seq, ack, ts) segments as the table does: a
    /// step that reopens starts a new connection with its packet. Returns
    /// the flow's health once every connection has ended, and how many
    /// connections there were.
    fn health_of(segments: &[(bool, u8, u32, u32, u64)]) -> (crate::flow::TcpHealth, usize) {
        let segment = |&(c2s, f, seq, ack, _): &(bool, u8, u32, u32, u64)| {
            let t = Transport {
                tcp_ack: ack,
                tcp_window: 1000,
                ..tcp(40000, 80, f, seq)
            };
            (t, Side::sender(c2s))
        };
        let mut health = crate::flow::TcpHealth::default();
        let (t, sender) = segment(&segments[0]);
        let (mut conn, step) = Conn::new(0, true, &t, sender, segments[0].4);
        health.record(sender, step.tcp);
        let mut conns = 1;
        for s in &segments[1..] {
            let (t, sender) = segment(s);
            let mut step = conn.tcp_step(&t, sender, s.4);
            if step.reopen {
                health.record(Side::Client, conn.flush().tcp);
                (conn, step) = Conn::new(0, true, &t, sender, s.4);
                conns += 1;
            }
            health.record(sender, step.tcp);
        }
        health.record(Side::Client, conn.flush().tcp);
        (health, conns)
    }

    /// Windows answers a RST to its SYN by sending the SYN twice more,
    /// half a second apart: one connect, one connection (tshark's one
    /// stream), one refusal, two SYNs sent again. A SYN with a new
    /// sequence number after a refusal is a new connection.
    #[test]
    fn a_refused_syn_sent_again_is_one_refused_connection() {
        const MS: u64 = 1_000_000;
        // [established, refused, unanswered, reset, closed, open]
        let outcomes = |h: &crate::flow::TcpHealth| h.connections.named().map(|(_, n)| n);
        let mut segments = Vec::new();
        for n in 0..3 {
            segments.push((true, SYN, 100, 0, n * 500 * MS));
            segments.push((false, RST | ACK, 0, 101, n * 500 * MS + MS));
        }
        let (health, conns) = health_of(&segments);
        assert_eq!(outcomes(&health), [0, 1, 0, 0, 0, 0]);
        assert_eq!(conns, 1);
        assert_eq!(health.sent(Side::Client).retransmits, 2);
        assert_eq!(health.sent(Side::Server).rsts, 3);
        // The last try answered (the server came up): made, after one refusal.
        segments.truncate(4);
        segments.push((true, SYN, 100, 0, 1000 * MS));
        segments.push((false, SYN | ACK, 900, 101, 1001 * MS));
        segments.push((true, ACK, 101, 901, 1002 * MS));
        let (health, conns) = health_of(&segments);
        assert_eq!(outcomes(&health), [1, 1, 0, 0, 0, 1]);
        assert_eq!(conns, 1);
        // Another connect: another sequence number, another connection.
        let (health, conns) = health_of(&[
            (true, SYN, 100, 0, 0),
            (false, RST | ACK, 0, 101, MS),
            (true, SYN, 7000, 0, 500 * MS),
            (false, RST | ACK, 0, 7001, 501 * MS),
        ]);
        assert_eq!(outcomes(&health), [0, 2, 0, 0, 0, 0]);
        assert_eq!(conns, 2);
        assert_eq!(health.sent(Side::Client).retransmits, 0);
        // A copy of the refused SYN read after the RST (another mirror
        // session, another queue), stamped before it: no try again, and
        // the SYN sent again after it still is one.
        let (health, conns) = health_of(&[
            (true, SYN, 100, 0, 0),
            (false, RST | ACK, 0, 101, MS),
            (true, SYN, 100, 0, MS / 2),
            (true, SYN, 100, 0, 500 * MS),
            (false, RST | ACK, 0, 101, 501 * MS),
        ]);
        assert_eq!(outcomes(&health), [0, 1, 0, 0, 0, 0]);
        assert_eq!(conns, 1);
        // The refused SYN sent again and left unanswered: its outcome was
        // the refusal, not unanswered as well.
        let (health, _) = health_of(&[
            (true, SYN, 100, 0, 0),
            (false, RST | ACK, 0, 101, MS),
            (true, SYN, 100, 0, 500 * MS),
        ]);
        assert_eq!(outcomes(&health), [0, 1, 0, 0, 0, 0]);
    }
}
