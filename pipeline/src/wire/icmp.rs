//! ICMP (RFC 792) and ICMPv6 (RFC 4443) Destination Unreachable errors, as
//! far as flowtap reads them: one that quotes a TCP segment tells that
//! segment's sender that its connection cannot be made.
//!
//! Only the errors a TCP stack takes as final are read (RFC 1122
//! §4.2.3.9, RFC 5461): protocol and port unreachable, and
//! communication administratively prohibited (RFC 1812 §5.2.7.1: a
//! firewall's rejection); over IPv6 also a failed policy and a reject
//! route (RFC 4443 §3.1). Network and host unreachable are soft errors to
//! RFC 1122 (a host may try again; Linux gives up at once in SYN-SENT):
//! such a connection ends unanswered at the SYN timeout. Fragmentation
//! Needed is path MTU discovery, no error.
//! Kubernetes' kube-proxy answers a connection to a Service without
//! endpoints with a port unreachable.

use super::{be16, be32, ip_proto, ipv4, ipv6};
use crate::packet::Addr;

mod field {
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    /// The quoted packet, after type, code, checksum and 4 unused bytes.
    pub(super) const QUOTED: usize = 8;
}

/// The first 8 bytes of a TCP header, all an ICMP error must quote
/// (RFC 792): the ports and the sequence number (RFC 793).
mod tcp_field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const SEQ: usize = 4;
    pub(super) const QUOTED_LEN: usize = 8;
}

const V4_DESTINATION_UNREACHABLE: u8 = 3;
/// Protocol, port unreachable; network, host, communication prohibited.
const V4_FINAL_CODES: [u8; 5] = [2, 3, 9, 10, 13];
const V6_DESTINATION_UNREACHABLE: u8 = 1;
/// Communication prohibited, port unreachable, failed ingress/egress
/// policy, reject route.
const V6_FINAL_CODES: [u8; 4] = [1, 4, 5, 6];

/// The TCP segment an error quotes: its sender is `src`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotedTcp {
    pub src: Addr,
    pub dst: Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
}

/// The TCP segment that `message` (an ICMP message, over IPv6 when `v6`)
/// says cannot be delivered, if it is a final Destination Unreachable
/// quoting the start of one.
pub fn refused_tcp(message: &[u8], v6: bool) -> Option<QuotedTcp> {
    let quoted = message.get(field::QUOTED..)?;
    let (ty, code) = (message[field::TYPE], message[field::CODE]);
    // The ports and sequence number of the quoted segment.
    let start = |segment: &[u8]| {
        (segment.len() >= tcp_field::QUOTED_LEN).then(|| {
            (
                be16(segment, tcp_field::SRC_PORT),
                be16(segment, tcp_field::DST_PORT),
                be32(segment, tcp_field::SEQ),
            )
        })
    };
    let (src, dst, (src_port, dst_port, seq)) = if v6 {
        if ty != V6_DESTINATION_UNREACHABLE || !V6_FINAL_CODES.contains(&code) {
            return None;
        }
        let ip = ipv6::Packet::new_checked(quoted).ok()?;
        let upper = ip.upper_layer().ok()?;
        let first = upper.fragment.is_none_or(|f| f.offset == 0);
        if upper.protocol != ip_proto::TCP || !first {
            return None;
        }
        // An IPv4-mapped address (`bad_address`) would be an IPv4
        // connection's, which no IPv6 error refuses.
        (
            Addr::of_ipv6_packet(ip.source())?,
            Addr::of_ipv6_packet(ip.destination())?,
            start(upper.payload)?,
        )
    } else {
        if ty != V4_DESTINATION_UNREACHABLE || !V4_FINAL_CODES.contains(&code) {
            return None;
        }
        let ip = ipv4::Packet::new_checked(quoted).ok()?;
        if ip.protocol() != ip_proto::TCP || ip.fragment_offset() != 0 {
            return None;
        }
        (
            Addr::from_v4(ip.source()),
            Addr::from_v4(ip.destination()),
            start(&quoted[ip.header_len()..])?,
        )
    };
    Some(QuotedTcp {
        src,
        dst,
        src_port,
        dst_port,
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMPv4 error of `ty`/`code` quoting an IPv4 header and the first
    /// 8 bytes of a TCP SYN from 198.18.0.1:40000 to 198.18.0.2:443.
    fn v4(ty: u8, code: u8, protocol: u8) -> Vec<u8> {
        let mut m = vec![ty, code, 0, 0, 0, 0, 0, 0];
        let mut ip = vec![0x45, 0, 0, 60, 0, 1, 0x40, 0, 64, protocol, 0, 0];
        ip.extend([198, 18, 0, 1, 198, 18, 0, 2]);
        m.extend(ip);
        m.extend(40000u16.to_be_bytes());
        m.extend(443u16.to_be_bytes());
        m.extend(7u32.to_be_bytes());
        m
    }

    #[test]
    fn final_unreachables_quoting_tcp_are_read() {
        let quoted = QuotedTcp {
            src: Addr::from_v4([198, 18, 0, 1]),
            dst: Addr::from_v4([198, 18, 0, 2]),
            src_port: 40000,
            dst_port: 443,
            seq: 7,
        };
        for code in V4_FINAL_CODES {
            assert_eq!(
                refused_tcp(&v4(3, code, 6), false),
                Some(quoted),
                "code {code}"
            );
        }
        // Soft errors, Fragmentation Needed, other types, UDP, short quotes.
        for code in [0, 1, 4, 5] {
            assert_eq!(refused_tcp(&v4(3, code, 6), false), None, "code {code}");
        }
        assert_eq!(refused_tcp(&v4(11, 0, 6), false), None);
        assert_eq!(refused_tcp(&v4(3, 3, 17), false), None);
        let whole = v4(3, 3, 6);
        assert_eq!(refused_tcp(&whole[..whole.len() - 1], false), None);
        assert_eq!(refused_tcp(&whole[..4], false), None);
    }

    #[test]
    fn icmpv6_port_unreachable_quoting_tcp_is_read() {
        let mut m = vec![1, 4, 0, 0, 0, 0, 0, 0];
        let mut ip = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
        let (src, dst) = (
            [0x20, 1, 0xd, 0xb8].repeat(4),
            [0x20, 1, 0xd, 0xb9].repeat(4),
        );
        ip.extend(&src);
        ip.extend(&dst);
        m.extend(ip);
        m.extend(40000u16.to_be_bytes());
        m.extend(443u16.to_be_bytes());
        m.extend(9u32.to_be_bytes());
        let quoted = refused_tcp(&m, true).expect("read");
        assert_eq!(quoted.src, Addr::from_v6(src.try_into().unwrap()));
        assert_eq!(
            (quoted.src_port, quoted.dst_port, quoted.seq),
            (40000, 443, 9)
        );
        // Quoting an IPv4-mapped address: no IPv6 packet carries one.
        let mut mapped = m.clone();
        mapped[16..32].copy_from_slice(&Addr::from_v4([198, 18, 0, 1]).0);
        assert_eq!(refused_tcp(&mapped, true), None);
        // No route (0) is a soft error; type 2 is Packet Too Big.
        m[1] = 0;
        assert_eq!(refused_tcp(&m, true), None);
        m[0] = 2;
        m[1] = 4;
        assert_eq!(refused_tcp(&m, true), None);
    }
}
