//! What the dissector hands to the flow tables: a packet reduced to the few
//! fields a flow needs, small enough to cross threads by value.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ingest::CopyPart;
use crate::wire::decap::Mirror;

/// An IPv4 or IPv6 address in one fixed-size form, so keys hash and compare as
/// plain bytes. IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`); that
/// range never appears on the wire as real IPv6 (RFC 4291 §2.5.5.2).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Addr(pub [u8; 16]);

/// The bytes' order (the derived one), compared as one big-endian 128-bit
/// word rather than byte by byte: flows are sorted and merged by keys that
/// hold two addresses (1.5M of them every round in a hub).
impl Ord for Addr {
    #[inline]
    fn cmp(&self, other: &Addr) -> std::cmp::Ordering {
        u128::from_be_bytes(self.0).cmp(&u128::from_be_bytes(other.0))
    }
}

impl PartialOrd for Addr {
    #[inline]
    fn partial_cmp(&self, other: &Addr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One 128-bit word rather than a length-prefixed byte slice (the derived
/// form): every packet hashes two addresses, twice.
impl Hash for Addr {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.0));
    }
}

impl Addr {
    pub const fn from_v4(octets: [u8; 4]) -> Addr {
        let [a, b, c, d] = octets;
        Addr([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d])
    }

    pub const fn from_v6(octets: [u8; 16]) -> Addr {
        Addr(octets)
    }

    /// An IPv6 packet's address, unless IPv4-mapped: that range never
    /// appears on the wire (RFC 4291 §2.5.5.2; Linux drops such packets),
    /// and as a key it would be an IPv4 address's.
    pub fn of_ipv6_packet(octets: [u8; 16]) -> Option<Addr> {
        Some(Addr(octets)).filter(|a| !a.is_ipv4())
    }

    pub fn is_ipv4(&self) -> bool {
        self.0[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
    }

    pub fn to_ip(self) -> IpAddr {
        if self.is_ipv4() {
            IpAddr::V4(Ipv4Addr::new(
                self.0[12], self.0[13], self.0[14], self.0[15],
            ))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.0))
        }
    }
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Addr {
        match ip {
            IpAddr::V4(v4) => Addr::from_v4(v4.octets()),
            IpAddr::V6(v6) => Addr::from_v6(v6.octets()),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_ip().fmt(f)
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_ip().fmt(f)
    }
}

/// The transport protocols flows are built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum L4Proto {
    Tcp = 6,
    Udp = 17,
}

impl L4Proto {
    pub const fn name(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
        }
    }
}

/// Where a packet sits in an IP fragment train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fragment {
    /// Not fragmented.
    #[default]
    Whole,
    /// First fragment: carries the transport header.
    First { ident: u32 },
    /// A later fragment: no transport header, ports come from the first.
    Later { ident: u32, last: bool },
    /// A later fragment of a tunnel's datagram whose inner flow the ingest
    /// path already found (from the first fragment): the key is complete,
    /// there is still no transport header.
    Continued,
}

impl Fragment {
    /// Whether the packet carries its transport header (flags, sequence
    /// numbers): not a later fragment.
    pub fn carries_header(self) -> bool {
        matches!(self, Fragment::Whole | Fragment::First { .. })
    }
}

/// The transport-level view of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transport {
    pub proto: L4Proto,
    pub src: Addr,
    pub dst: Addr,
    /// Zero for later fragments until the shard fills them in.
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags (zero for UDP and for later fragments).
    pub tcp_flags: u8,
    /// TCP sequence number (zero for UDP and for later fragments).
    pub tcp_seq: u32,
    /// TCP acknowledgment number (zero for UDP and later fragments).
    pub tcp_ack: u32,
    /// The TCP window field as sent, unscaled (zero for UDP).
    pub tcp_window: u16,
    /// Bytes of payload after the TCP or UDP header, by the IP length
    /// fields (whatever a snaplen cut); for a fragment, its own share.
    /// Past 64 KiB in a GSO/GRO segment (BIG TCP), whose IP length field
    /// is 0.
    pub payload_len: u32,
    /// The IP packet's bytes, header and payload, by its length fields
    /// (the innermost IP packet in a tunnel; a fragment's own): what
    /// IPFIX's `octetDeltaCount` counts.
    pub ip_len: u32,
    pub fragment: Fragment,
}

impl Transport {
    /// A transport header with only the key fields set (tests, tools).
    pub fn new(proto: L4Proto, src: (Addr, u16), dst: (Addr, u16), tcp_flags: u8) -> Transport {
        Transport {
            proto,
            src: src.0,
            dst: dst.0,
            src_port: src.1,
            dst_port: dst.1,
            tcp_flags,
            tcp_seq: 0,
            tcp_ack: 0,
            tcp_window: 0,
            payload_len: 0,
            ip_len: 0,
            fragment: Fragment::Whole,
        }
    }
}

/// A parsed packet on its way to its shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketMeta {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The bytes it counts: the frame on the wire (link header and VLAN
    /// tags included, no FCS), or, inside a mirror encapsulation, the
    /// mirrored frame (see [`crate::ingest`]).
    pub wire_len: u32,
    /// False for the later fragment of a mirrored frame whose first fragment
    /// was already counted as its packet: it adds bytes only.
    pub counts_packet: bool,
    /// A copy of a packet already counted, as a SPAN of both ports sends
    /// (the same IP packet within `--dedup-window-us`; set where its
    /// connection is counted): counted as a packet
    /// unless `--dedup` drops it, but not as a retransmission, nor as a SYN
    /// or ACK to time a handshake by (its flags count per frame, as
    /// tshark's do: a RST, a zero window).
    pub duplicate: bool,
    /// What its copies share ([`crate::ingest::Duplicates::key`]),
    /// computed where it was read and looked up where its connection is
    /// counted ([`crate::ingest::Ingest::drops_copy`]); 0: not compared.
    pub copy_key: u64,
    /// Which part of that packet it carries.
    pub copy_part: CopyPart,
    /// Not a packet of the flow but an ICMP error that refuses it
    /// ([`crate::wire::icmp`]): `transport` is the TCP segment it quotes,
    /// as its client sent it. Counts nothing; refuses the connection if
    /// that segment is its SYN, still unanswered.
    pub refusal: bool,
    /// The mirror session it came through, if any.
    pub mirror: Option<Mirror>,
    pub transport: Transport,
}

impl PacketMeta {
    /// A packet as captured, outside any mirror session.
    pub fn new(ts_ns: u64, wire_len: u32, transport: Transport) -> PacketMeta {
        PacketMeta {
            ts_ns,
            wire_len,
            counts_packet: true,
            duplicate: false,
            copy_key: 0,
            copy_part: CopyPart::WHOLE,
            refusal: false,
            mirror: None,
            transport,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_round_trips() {
        let v4: IpAddr = "198.18.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(Addr::from(v4).is_ipv4());
        assert!(!Addr::from(v6).is_ipv4());
        assert_eq!(Addr::from(v4).to_ip(), v4);
        assert_eq!(Addr::from(v6).to_string(), "2001:db8::1");
    }

    mod order {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Addresses order as their bytes do (what the derived order
            /// gave, which every sorted list and API answer relies on),
            /// also when they share a prefix.
            #[test]
            fn addresses_order_as_their_bytes(
                a: [u8; 16],
                b: [u8; 16],
                shared in 0usize..=16,
            ) {
                let mut b = b;
                b[..shared].copy_from_slice(&a[..shared]);
                prop_assert_eq!(Addr(a).cmp(&Addr(b)), a.cmp(&b));
                prop_assert_eq!(Addr(b).cmp(&Addr(a)), b.cmp(&a));
            }
        }
    }
}
