//! One connection's state: who the client is, and the TCP handshake legs.
//!
//! Roles: the client is the sender of the pure SYN. Without one (a capture
//! that starts mid-stream, or UDP) the first packet decides: the sender of a
//! SYN-ACK is the server; otherwise the sender is the client unless its port
//! is in a lower tier than the receiver's (well-known < 1024 < registered
//! < 32768 <= ephemeral), in which case it is the server answering. So a DNS
//! reply seen before its query still makes port 53 the server, while two
//! ephemeral ports keep "first sender is the client".

use crate::packet::{Fragment, L4Proto, Transport};
use crate::wire::tcp::flags;

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
    if t.proto == L4Proto::Tcp && !matches!(t.fragment, Fragment::Later { .. }) {
        let f = t.tcp_flags;
        if f & flags::SYN != 0 && f & flags::ACK == 0 {
            return true;
        }
        if f & flags::SYN != 0 && f & flags::ACK != 0 && f & flags::RST == 0 {
            return false;
        }
    }
    port_tier(t.src_port) >= port_tier(t.dst_port)
}

/// Where a TCP connection is in its three-way handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// UDP, or TCP first seen mid-stream: nothing to measure.
    Untracked,
    /// Pure SYN seen, waiting for the SYN-ACK.
    SynSent,
    /// SYN-ACK seen, waiting for the client's ACK.
    SynAckSeen,
    Complete,
}

/// What a TCP packet did to its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// SYN -> SYN-ACK measured (the client's view of the RTT), in ns.
    ClientLeg(u64),
    /// SYN -> completing ACK measured (the server's view), in ns.
    ServerLeg(u64),
    /// A leg whose timestamps run backwards (out-of-order capture): the state
    /// advances but nothing is recorded.
    OutOfOrder,
    /// A new SYN on a closed or differently-sequenced connection: a new
    /// connection on the same 5-tuple, as tshark splits streams.
    Reopen,
}

const FIN_CLIENT: u8 = 1;
const FIN_SERVER: u8 = 2;
const RST: u8 = 4;

/// Direction index into per-direction arrays.
const C2S: usize = 0;
const S2C: usize = 1;

#[derive(Clone, Copy, Debug)]
pub struct Conn {
    /// Index of the connection's flow in the shard's flow slab.
    pub flow: u32,
    pub last_seen_ns: u64,
    /// The last pure SYN from the client before the first SYN-ACK.
    syn_ns: u64,
    /// First sequence number seen in each direction, for port-reuse detection.
    base_seq: [u32; 2],
    base_seq_set: [bool; 2],
    pub state: Handshake,
    /// Whether the client is the `lo` endpoint of the connection key.
    pub client_is_lo: bool,
    closing: u8,
}

impl Conn {
    pub fn new(flow: u32, client_is_lo: bool, t: &Transport, c2s: bool, ts_ns: u64) -> Conn {
        let mut conn = Conn {
            flow,
            last_seen_ns: ts_ns,
            syn_ns: 0,
            base_seq: [0; 2],
            base_seq_set: [false; 2],
            state: Handshake::Untracked,
            client_is_lo,
            closing: 0,
        };
        if t.proto == L4Proto::Tcp {
            conn.start(t, c2s, ts_ns);
        }
        conn
    }

    /// Re-initialises the connection for a new SYN from the `lo` side
    /// (`client_is_lo`) or the `hi` side.
    pub fn reopen(&mut self, flow: u32, client_is_lo: bool, t: &Transport, ts_ns: u64) {
        *self = Conn::new(flow, client_is_lo, t, true, ts_ns);
    }

    fn start(&mut self, t: &Transport, c2s: bool, ts_ns: u64) {
        let dir = if c2s { C2S } else { S2C };
        if !matches!(t.fragment, Fragment::Later { .. }) {
            self.base_seq[dir] = t.tcp_seq;
            self.base_seq_set[dir] = true;
        }
        if is_pure_syn(t.tcp_flags) {
            self.state = Handshake::SynSent;
            self.syn_ns = ts_ns;
        }
        self.note_close(t.tcp_flags, c2s);
    }

    /// True once a RST, or a FIN from both sides, was seen.
    pub fn is_closed(&self) -> bool {
        self.closing & RST != 0
            || self.closing & (FIN_CLIENT | FIN_SERVER) == FIN_CLIENT | FIN_SERVER
    }

    /// Advances the TCP state for one packet sent client-to-server (`c2s`) or
    /// back. Call [`Conn::new`] for the first packet instead.
    pub fn tcp_step(&mut self, t: &Transport, c2s: bool, ts_ns: u64) -> Step {
        let f = t.tcp_flags;
        let dir = if c2s { C2S } else { S2C };
        if matches!(t.fragment, Fragment::Later { .. }) {
            return Step::Nothing;
        }
        if !self.base_seq_set[dir] {
            self.base_seq[dir] = t.tcp_seq;
            self.base_seq_set[dir] = true;
        }
        let step = if is_pure_syn(f) {
            if self.closing != 0 || self.base_seq[dir] != t.tcp_seq {
                return Step::Reopen;
            }
            if self.state == Handshake::SynSent && c2s {
                // A retransmitted SYN: measure from the latest one.
                self.syn_ns = ts_ns;
            }
            Step::Nothing
        } else if f & flags::SYN != 0 && f & flags::ACK != 0 {
            if self.state == Handshake::SynSent && !c2s {
                self.state = Handshake::SynAckSeen;
                leg(ts_ns, self.syn_ns, Step::ClientLeg)
            } else {
                Step::Nothing
            }
        } else if f & flags::ACK != 0 && c2s && self.state == Handshake::SynAckSeen {
            self.state = Handshake::Complete;
            leg(ts_ns, self.syn_ns, Step::ServerLeg)
        } else {
            Step::Nothing
        };
        self.note_close(f, c2s);
        step
    }

    fn note_close(&mut self, f: u8, c2s: bool) {
        if f & flags::FIN != 0 {
            self.closing |= if c2s { FIN_CLIENT } else { FIN_SERVER };
        }
        if f & flags::RST != 0 {
            self.closing |= RST;
        }
    }
}

fn is_pure_syn(f: u8) -> bool {
    f & flags::SYN != 0 && f & flags::ACK == 0
}

fn leg(ts_ns: u64, syn_ns: u64, make: fn(u64) -> Step) -> Step {
    match ts_ns.checked_sub(syn_ns) {
        Some(ns) => make(ns),
        None => Step::OutOfOrder,
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
            fragment: Fragment::Whole,
        }
    }

    fn udp(sport: u16, dport: u16) -> Transport {
        Transport {
            proto: L4Proto::Udp,
            ..tcp(sport, dport, 0, 0)
        }
    }

    #[test]
    fn role_rules_without_a_syn() {
        use flags::*;
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
        assert!(sender_is_client(&udp(4500, 8472)));
        assert!(
            !sender_is_client(&udp(8080, 45000)),
            "registered port answering an ephemeral one"
        );
        assert!(
            sender_is_client(&tcp(6260, 80, SYN | ACK | RST | FIN, 0)),
            "nonsense flags fall back to ports"
        );
    }

    #[test]
    fn handshake_legs_from_the_last_syn() {
        use flags::*;
        let syn = tcp(40000, 80, SYN, 100);
        let mut c = Conn::new(0, true, &syn, true, 1_000);
        assert_eq!(c.state, Handshake::SynSent);
        // Retransmitted SYN (same ISN) one second later.
        assert_eq!(c.tcp_step(&syn, true, 1_000_001_000), Step::Nothing);
        let synack = tcp(80, 40000, SYN | ACK, 900);
        assert_eq!(
            c.tcp_step(&synack, false, 1_000_017_000),
            Step::ClientLeg(16_000)
        );
        // A second SYN-ACK does not measure again.
        assert_eq!(c.tcp_step(&synack, false, 1_000_018_000), Step::Nothing);
        // The client re-sending its SYN after the SYN-ACK is ignored.
        assert_eq!(c.tcp_step(&syn, true, 1_000_019_000), Step::Nothing);
        let ack = tcp(40000, 80, ACK, 101);
        assert_eq!(
            c.tcp_step(&ack, true, 1_000_020_000),
            Step::ServerLeg(19_000)
        );
        assert_eq!(c.state, Handshake::Complete);
        assert_eq!(c.tcp_step(&ack, true, 1_000_030_000), Step::Nothing);
    }

    #[test]
    fn out_of_order_timestamps_do_not_record() {
        use flags::*;
        let mut c = Conn::new(0, true, &tcp(1, 2, SYN, 0), true, 5_000);
        assert_eq!(
            c.tcp_step(&tcp(2, 1, SYN | ACK, 0), false, 4_000),
            Step::OutOfOrder
        );
        assert_eq!(c.state, Handshake::SynAckSeen);
    }

    #[test]
    fn reopen_on_new_isn_or_after_close() {
        use flags::*;
        let mut c = Conn::new(0, true, &tcp(40000, 80, SYN, 100), true, 0);
        assert_eq!(
            c.tcp_step(&tcp(40000, 80, SYN, 555), true, 10),
            Step::Reopen
        );

        let mut c = Conn::new(0, true, &tcp(40000, 80, SYN, 100), true, 0);
        c.tcp_step(&tcp(80, 40000, RST | ACK, 0), false, 10);
        assert!(c.is_closed());
        assert_eq!(
            c.tcp_step(&tcp(40000, 80, SYN, 100), true, 20),
            Step::Reopen
        );

        let mut c = Conn::new(0, true, &tcp(40000, 80, ACK, 100), true, 0);
        c.tcp_step(&tcp(40000, 80, FIN | ACK, 100), true, 10);
        assert!(!c.is_closed(), "half-closed");
        c.tcp_step(&tcp(80, 40000, FIN | ACK, 100), false, 20);
        assert!(c.is_closed());
    }
}
