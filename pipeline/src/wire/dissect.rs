//! Walks a captured frame from its link header to the TCP or UDP header.

use super::{
    Layer, LenError, ethernet, ethertype, ip_proto, ipv4, ipv6, linux_sll, mpls, null, pppoe, tcp,
    udp, vlan,
};
use crate::packet::{Addr, Fragment, L4Proto, Transport};

/// The link types flowtap reads, by their pcap LINKTYPE_* meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    /// BSD loopback, family in host byte order (LINKTYPE_NULL, 0).
    Null,
    /// OpenBSD loopback, family in network byte order (LINKTYPE_LOOP, 108).
    Loop,
    /// Raw IP, version from the first nibble (101; DLT_RAW 12 and 14 in old files).
    Raw,
    RawIpv4,
    RawIpv6,
    LinuxSll,
    LinuxSll2,
}

impl LinkType {
    /// Maps a pcap/pcapng link-type code; `None` for types flowtap cannot read.
    pub fn from_pcap(code: u32) -> Option<LinkType> {
        Some(match code {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::RawIpv4,
            229 => LinkType::RawIpv6,
            276 => LinkType::LinuxSll2,
            _ => return None,
        })
    }
}

/// Frames that are not TCP/UDP over IP, counted by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtherKind {
    Arp,
    /// ICMP and ICMPv6, errors quoting a TCP/UDP header included: those are
    /// not flow traffic.
    Icmp,
    /// IP with another upper-layer protocol (ESP, GRE, SCTP, IGMP, ...).
    IpOther,
    /// Neither IP nor ARP (LLC, LLDP, MPLS pseudowires, unknown EtherTypes).
    NonIp,
}

/// Why a frame could not be read as far as its transport header. A small,
/// fixed set so that counters stay meaningful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MalformedReason {
    /// A header is cut short (by the capture length or the frame itself).
    Truncated,
    /// The IP version nibble does not match the EtherType or link type.
    BadVersion,
    /// A header-length field is impossible (IPv4 IHL < 5, TCP data offset < 5
    /// or longer than its segment).
    BadHeaderLength,
    /// A total/payload length field is smaller than the headers it covers.
    BadTotalLength,
    /// Too many IPv6 extension headers or nested IP-in-IP layers.
    HeaderChainTooLong,
}

impl MalformedReason {
    pub const ALL: [MalformedReason; 5] = [
        MalformedReason::Truncated,
        MalformedReason::BadVersion,
        MalformedReason::BadHeaderLength,
        MalformedReason::BadTotalLength,
        MalformedReason::HeaderChainTooLong,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            MalformedReason::Truncated => "truncated",
            MalformedReason::BadVersion => "bad_version",
            MalformedReason::BadHeaderLength => "bad_header_length",
            MalformedReason::BadTotalLength => "bad_total_length",
            MalformedReason::HeaderChainTooLong => "header_chain_too_long",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed {
    pub reason: MalformedReason,
    pub layer: Layer,
}

impl From<LenError> for Malformed {
    fn from(e: LenError) -> Self {
        Malformed {
            reason: MalformedReason::Truncated,
            layer: e.layer,
        }
    }
}

impl From<ipv4::Error> for Malformed {
    fn from(e: ipv4::Error) -> Self {
        let reason = match e {
            ipv4::Error::Len(len) => return len.into(),
            ipv4::Error::Version(_) => MalformedReason::BadVersion,
            ipv4::Error::HeaderLength(_) => MalformedReason::BadHeaderLength,
            ipv4::Error::TotalLength { .. } => MalformedReason::BadTotalLength,
        };
        Malformed {
            reason,
            layer: Layer::Ipv4,
        }
    }
}

impl From<ipv6::Error> for Malformed {
    fn from(e: ipv6::Error) -> Self {
        let reason = match e {
            ipv6::Error::Len(len) => return len.into(),
            ipv6::Error::Version(_) => MalformedReason::BadVersion,
            ipv6::Error::ChainTooLong => MalformedReason::HeaderChainTooLong,
            ipv6::Error::PayloadLength { .. } => MalformedReason::BadTotalLength,
        };
        Malformed {
            reason,
            layer: Layer::Ipv6,
        }
    }
}

impl From<tcp::Error> for Malformed {
    fn from(e: tcp::Error) -> Self {
        match e {
            tcp::Error::Len(len) => len.into(),
            tcp::Error::HeaderLength { .. } => Malformed {
                reason: MalformedReason::BadHeaderLength,
                layer: Layer::Tcp,
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dissected {
    Transport(Transport),
    Other(OtherKind),
}

/// IP-in-IP layers followed before a frame is called malformed.
pub const MAX_IP_NESTING: u8 = 4;

/// Reads `frame` (as captured, possibly cut by a snaplen) down to its
/// transport header. Never panics.
pub fn dissect(link: LinkType, frame: &[u8]) -> Result<Dissected, Malformed> {
    match link {
        LinkType::Ethernet => {
            let eth = ethernet::Frame::new_checked(frame)?;
            if eth.ethertype() <= ethernet::MAX_8023_LENGTH {
                return Ok(Dissected::Other(OtherKind::NonIp));
            }
            by_ethertype(eth.ethertype(), eth.payload())
        }
        LinkType::LinuxSll => {
            let sll = linux_sll::Header::new_checked_v1(frame)?;
            by_ethertype(sll.protocol(), sll.payload())
        }
        LinkType::LinuxSll2 => {
            let sll = linux_sll::Header::new_checked_v2(frame)?;
            by_ethertype(sll.protocol(), sll.payload())
        }
        LinkType::Null | LinkType::Loop => {
            let header = null::Header::new_checked(frame)?;
            match header.family(link == LinkType::Loop) {
                null::Family::Ipv4 => ipv4_packet(header.payload(), 0),
                null::Family::Ipv6 => ipv6_packet(header.payload(), 0),
                null::Family::Other(_) => Ok(Dissected::Other(OtherKind::NonIp)),
            }
        }
        LinkType::Raw => by_version_nibble(frame, 0),
        LinkType::RawIpv4 => ipv4_packet(frame, 0),
        LinkType::RawIpv6 => ipv6_packet(frame, 0),
    }
}

fn by_ethertype(mut ethertype: u16, mut payload: &[u8]) -> Result<Dissected, Malformed> {
    // Each tag consumes four bytes, so the loop ends at the latest when the
    // frame runs out ("stacked to any depth" is bounded by the frame length).
    loop {
        match ethertype {
            ethertype::VLAN
            | ethertype::QINQ
            | ethertype::QINQ_LEGACY_9100
            | ethertype::QINQ_LEGACY_9200 => {
                let tag = vlan::Tag::new_checked(payload)?;
                ethertype = tag.ethertype();
                payload = &payload[vlan::TAG_LEN..];
            }
            ethertype::IPV4 => return ipv4_packet(payload, 0),
            ethertype::IPV6 => return ipv6_packet(payload, 0),
            ethertype::PPPOE_SESSION => {
                let session = pppoe::Session::new_checked(payload)?;
                return match session.ppp_protocol() {
                    pppoe::ppp_protocol::IPV4 => ipv4_packet(&payload[pppoe::HEADER_LEN..], 0),
                    pppoe::ppp_protocol::IPV6 => ipv6_packet(&payload[pppoe::HEADER_LEN..], 0),
                    _ => Ok(Dissected::Other(OtherKind::NonIp)),
                };
            }
            ethertype::MPLS_UNICAST | ethertype::MPLS_MULTICAST => {
                let entry = mpls::Entry::new_checked(payload)?;
                payload = &payload[mpls::ENTRY_LEN..];
                if entry.bottom_of_stack() {
                    // No protocol field after the stack: guess from the
                    // version nibble, as every MPLS dissector does. Anything
                    // else (pseudowire control word) is not IP.
                    return match payload.first().map(|b| b >> 4) {
                        Some(4) | Some(6) => by_version_nibble(payload, 0),
                        _ => Ok(Dissected::Other(OtherKind::NonIp)),
                    };
                }
            }
            ethertype::ARP | ethertype::RARP => return Ok(Dissected::Other(OtherKind::Arp)),
            _ => return Ok(Dissected::Other(OtherKind::NonIp)),
        }
    }
}

fn by_version_nibble(packet: &[u8], depth: u8) -> Result<Dissected, Malformed> {
    match packet.first().map(|b| b >> 4) {
        Some(6) => ipv6_packet(packet, depth),
        Some(4) => ipv4_packet(packet, depth),
        Some(_) => Err(Malformed {
            reason: MalformedReason::BadVersion,
            layer: Layer::Ipv4,
        }),
        None => Err(LenError {
            layer: Layer::Ipv4,
            required: 1,
            available: 0,
        }
        .into()),
    }
}

fn ipv4_packet(buf: &[u8], depth: u8) -> Result<Dissected, Malformed> {
    let ip = ipv4::Packet::new_checked(buf)?;
    let fragment = if ip.fragment_offset() != 0 {
        Fragment::Later {
            ident: u32::from(ip.ident()),
            last: !ip.more_fragments(),
        }
    } else if ip.more_fragments() {
        Fragment::First {
            ident: u32::from(ip.ident()),
        }
    } else {
        Fragment::Whole
    };
    let upper = Upper {
        protocol: ip.protocol(),
        src: Addr::from_v4(ip.source()),
        dst: Addr::from_v4(ip.destination()),
        payload: ip.payload(),
        payload_len: ip.payload_len(),
        fragment,
    };
    upper_layer(upper, depth, Layer::Ipv4)
}

fn ipv6_packet(buf: &[u8], depth: u8) -> Result<Dissected, Malformed> {
    let ip = ipv6::Packet::new_checked(buf)?;
    let walked = ip.upper_layer()?;
    let fragment = match walked.fragment {
        Some(f) if f.offset != 0 => Fragment::Later {
            ident: f.ident,
            last: !f.more,
        },
        Some(f) if f.more => Fragment::First { ident: f.ident },
        _ => Fragment::Whole,
    };
    let upper = Upper {
        protocol: walked.protocol,
        src: Addr::from_v6(ip.source()),
        dst: Addr::from_v6(ip.destination()),
        payload: walked.payload,
        payload_len: walked.payload_len,
        fragment,
    };
    upper_layer(upper, depth, Layer::Ipv6)
}

/// What an IP header (either version) says about its payload.
struct Upper<'a> {
    protocol: u8,
    src: Addr,
    dst: Addr,
    payload: &'a [u8],
    payload_len: Option<usize>,
    fragment: Fragment,
}

fn upper_layer(ip: Upper<'_>, depth: u8, layer: Layer) -> Result<Dissected, Malformed> {
    let proto = match ip.protocol {
        ip_proto::TCP => L4Proto::Tcp,
        ip_proto::UDP => L4Proto::Udp,
        ip_proto::ICMP | ip_proto::ICMPV6 => return Ok(Dissected::Other(OtherKind::Icmp)),
        ip_proto::IPV4_IN_IP | ip_proto::IPV6_IN_IP
            if !matches!(ip.fragment, Fragment::Later { .. }) =>
        {
            // Tunnelled IP: the flow is the innermost one, as tshark keys it.
            if depth + 1 >= MAX_IP_NESTING {
                return Err(Malformed {
                    reason: MalformedReason::HeaderChainTooLong,
                    layer,
                });
            }
            return if ip.protocol == ip_proto::IPV4_IN_IP {
                ipv4_packet(ip.payload, depth + 1)
            } else {
                ipv6_packet(ip.payload, depth + 1)
            };
        }
        _ => return Ok(Dissected::Other(OtherKind::IpOther)),
    };
    let mut transport = Transport {
        proto,
        src: ip.src,
        dst: ip.dst,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        tcp_seq: 0,
        tcp_ack: 0,
        tcp_window: 0,
        payload_len: 0,
        fragment: ip.fragment,
    };
    // What follows the IP header by its length fields; by what was captured
    // where they do not say (a segmentation offload's zero length, a
    // fragment whose datagram continues).
    let ip_payload = ip.payload_len.unwrap_or(ip.payload.len());
    match ip.fragment {
        Fragment::Later { .. } => {}
        Fragment::First { .. } | Fragment::Whole => {
            // A first fragment's TCP header may continue in the next fragment,
            // so the segment length only bounds the header of a whole segment.
            let segment_len = match ip.fragment {
                Fragment::Whole => ip.payload_len,
                _ => None,
            };
            match proto {
                L4Proto::Tcp => {
                    let seg = tcp::Packet::new_checked(ip.payload, segment_len)?;
                    transport.src_port = seg.src_port();
                    transport.dst_port = seg.dst_port();
                    transport.tcp_flags = seg.flags();
                    transport.tcp_seq = seg.seq_number();
                    transport.tcp_ack = seg.ack_number();
                    transport.tcp_window = seg.window();
                    transport.payload_len = clamp16(ip_payload.saturating_sub(seg.header_len()));
                }
                L4Proto::Udp => {
                    let dgram = udp::Packet::new_checked(ip.payload)?;
                    transport.src_port = dgram.src_port();
                    transport.dst_port = dgram.dst_port();
                    transport.payload_len = clamp16(ip_payload.saturating_sub(udp::HEADER_LEN));
                }
            }
        }
    }
    if let Fragment::Later { .. } = ip.fragment {
        transport.payload_len = clamp16(ip_payload);
    }
    Ok(Dissected::Transport(transport))
}

fn clamp16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::{ipv4, ipv6, tcp, udp};
    use super::*;
    use proptest::prelude::*;

    fn eth(ethertype: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    fn ipv4_tcp(flags: u8) -> Vec<u8> {
        let mut p = ipv4::tests::header(6, 40, 0);
        p.extend(tcp::tests::header(40000, 80, flags));
        p
    }

    fn transport(d: Dissected) -> Transport {
        match d {
            Dissected::Transport(t) => t,
            other => panic!("expected transport, got {other:?}"),
        }
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let mut f = eth(0x0800);
        f.extend(ipv4_tcp(tcp::flags::SYN));
        let t = transport(dissect(LinkType::Ethernet, &f).unwrap());
        assert_eq!(t.proto, L4Proto::Tcp);
        assert_eq!(
            (t.src_port, t.dst_port, t.tcp_flags),
            (40000, 80, tcp::flags::SYN)
        );
        assert_eq!(t.src.to_string(), "198.18.0.1");
        assert_eq!(t.fragment, Fragment::Whole);
    }

    #[test]
    fn stacked_vlan_tags_of_any_type() {
        let mut f = eth(0x88a8);
        for inner in [0x8100u16, 0x9100, 0x8100, 0x0800] {
            f.extend_from_slice(&[0x00, 0x0a]);
            f.extend_from_slice(&inner.to_be_bytes());
        }
        f.extend(ipv4_tcp(tcp::flags::ACK));
        let t = transport(dissect(LinkType::Ethernet, &f).unwrap());
        assert_eq!(t.dst_port, 80);
    }

    #[test]
    fn pppoe_and_mpls() {
        let mut f = eth(0x8864);
        f.extend_from_slice(&[0x11, 0, 0, 1, 0, 48, 0x00, 0x21]);
        f.extend(ipv4_tcp(0));
        assert!(matches!(
            dissect(LinkType::Ethernet, &f),
            Ok(Dissected::Transport(_))
        ));

        let mut f = eth(0x8847);
        f.extend_from_slice(&[0, 1, 0, 64, 0, 2, 1, 64]);
        f.extend(ipv4_tcp(0));
        assert!(matches!(
            dissect(LinkType::Ethernet, &f),
            Ok(Dissected::Transport(_))
        ));

        let mut f = eth(0x8847);
        f.extend_from_slice(&[0, 2, 1, 64, 0, 0, 0, 0]);
        assert_eq!(
            dissect(LinkType::Ethernet, &f),
            Ok(Dissected::Other(OtherKind::NonIp))
        );
    }

    #[test]
    fn cooked_loopback_and_raw_links() {
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&0x0800u16.to_be_bytes());
        sll.extend(ipv4_tcp(0));
        assert!(matches!(
            dissect(LinkType::LinuxSll, &sll),
            Ok(Dissected::Transport(_))
        ));

        let mut sll2 = 0x86ddu16.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend(ipv6::tests::header(17, 8));
        sll2.extend(udp::tests::header(5000, 53));
        let t = transport(dissect(LinkType::LinuxSll2, &sll2).unwrap());
        assert_eq!((t.proto, t.dst_port), (L4Proto::Udp, 53));
        assert!(!t.src.is_ipv4());

        let mut null = vec![30u8, 0, 0, 0];
        null.extend(ipv6::tests::header(17, 8));
        null.extend(udp::tests::header(5000, 443));
        assert!(matches!(
            dissect(LinkType::Null, &null),
            Ok(Dissected::Transport(_))
        ));

        let raw = ipv4_tcp(0);
        assert!(matches!(
            dissect(LinkType::Raw, &raw),
            Ok(Dissected::Transport(_))
        ));
        assert!(matches!(
            dissect(LinkType::RawIpv4, &raw),
            Ok(Dissected::Transport(_))
        ));
        assert_eq!(
            dissect(LinkType::RawIpv6, &raw).unwrap_err().reason,
            MalformedReason::BadVersion
        );
    }

    #[test]
    fn other_kinds() {
        assert_eq!(
            dissect(LinkType::Ethernet, &eth(0x0806)),
            Ok(Dissected::Other(OtherKind::Arp))
        );
        assert_eq!(
            dissect(LinkType::Ethernet, &eth(0x88cc)),
            Ok(Dissected::Other(OtherKind::NonIp))
        );
        assert_eq!(
            dissect(LinkType::Ethernet, &eth(100)),
            Ok(Dissected::Other(OtherKind::NonIp))
        );
        let mut icmp = eth(0x0800);
        icmp.extend(ipv4::tests::header(1, 56, 0));
        // An ICMP error quoting a TCP header is ICMP, not flow traffic.
        icmp.extend(ipv4_tcp(tcp::flags::SYN));
        assert_eq!(
            dissect(LinkType::Ethernet, &icmp),
            Ok(Dissected::Other(OtherKind::Icmp))
        );
        let mut gre = eth(0x0800);
        gre.extend(ipv4::tests::header(47, 24, 0));
        gre.extend_from_slice(&[0; 4]);
        assert_eq!(
            dissect(LinkType::Ethernet, &gre),
            Ok(Dissected::Other(OtherKind::IpOther))
        );
    }

    #[test]
    fn fragments() {
        let mut first = eth(0x0800);
        first.extend(ipv4::tests::header(6, 44, 0x2000));
        let mut seg = tcp::tests::header(12345, 80, tcp::flags::SYN);
        seg[12] = 10 << 4; // 40-byte header continued in the next fragment
        first.extend(&seg);
        first.extend_from_slice(&[0; 4]);
        let t = transport(dissect(LinkType::Ethernet, &first).unwrap());
        assert_eq!(t.fragment, Fragment::First { ident: 0x1234 });
        assert_eq!(t.dst_port, 80);

        let mut later = eth(0x0800);
        later.extend(ipv4::tests::header(6, 36, 3));
        later.extend_from_slice(&[0; 16]);
        let t = transport(dissect(LinkType::Ethernet, &later).unwrap());
        assert_eq!(
            t.fragment,
            Fragment::Later {
                ident: 0x1234,
                last: true
            }
        );
        assert_eq!((t.src_port, t.dst_port), (0, 0));
    }

    #[test]
    fn malformed_reasons() {
        let reason = |link, f: &[u8]| dissect(link, f).unwrap_err().reason;
        let mut f = eth(0x0800);
        f.extend_from_slice(&[0x45, 0, 0]);
        assert_eq!(reason(LinkType::Ethernet, &f), MalformedReason::Truncated);

        let mut f = eth(0x0800);
        let mut ip = ipv4::tests::header(6, 36, 0);
        ip.extend(tcp::tests::header(1, 2, 0));
        ip[20 + 12] = 10 << 4; // 40-byte TCP header in a 16-byte segment
        f.extend(&ip);
        assert_eq!(
            reason(LinkType::Ethernet, &f),
            MalformedReason::BadHeaderLength
        );

        let mut f = eth(0x86dd);
        f.extend(ipv6::tests::header(6, 20));
        f[14] = 0x70;
        assert_eq!(reason(LinkType::Ethernet, &f), MalformedReason::BadVersion);

        // Snaplen-truncated TCP options are not malformed.
        let mut f = eth(0x0800);
        let mut ip = ipv4::tests::header(6, 1500, 0);
        let mut seg = tcp::tests::header(1, 2, tcp::flags::ACK);
        seg[12] = 15 << 4;
        ip.extend(seg);
        f.extend(ip);
        assert!(dissect(LinkType::Ethernet, &f).is_ok());

        // IP-in-IP beyond the nesting bound.
        let mut nested = ipv4_tcp(0);
        for _ in 0..MAX_IP_NESTING {
            let mut outer = ipv4::tests::header(4, 0, 0);
            outer.extend(nested);
            nested = outer;
        }
        assert_eq!(
            reason(LinkType::Raw, &nested),
            MalformedReason::HeaderChainTooLong
        );
    }

    #[test]
    fn ip_in_ip_uses_the_inner_header() {
        let mut outer = ipv4::tests::header(41, 0, 0);
        outer[12..20].copy_from_slice(&[203, 0, 113, 1, 203, 0, 113, 2]);
        outer.extend(ipv6::tests::header(17, 8));
        outer.extend(udp::tests::header(1000, 2000));
        let t = transport(dissect(LinkType::Raw, &outer).unwrap());
        assert_eq!(t.src.to_string(), "2001:db8::1");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), link in 0usize..8) {
            let links = [LinkType::Ethernet, LinkType::Null, LinkType::Loop, LinkType::Raw,
                LinkType::RawIpv4, LinkType::RawIpv6, LinkType::LinuxSll, LinkType::LinuxSll2];
            let _ = dissect(links[link], &bytes);
        }

        #[test]
        fn never_panics_on_mutated_frames(pos in 0usize..60, val in any::<u8>(), cut in 0usize..62) {
            let mut f = eth(0x8100);
            f.extend_from_slice(&[0, 5, 0x08, 0x00]);
            f.extend(ipv4_tcp(tcp::flags::SYN));
            if pos < f.len() { f[pos] = val; }
            f.truncate(cut.max(1));
            let _ = dissect(LinkType::Ethernet, &f);
        }
    }
}
