//! Builds Ethernet frames: optional VLAN/QinQ tags, IPv4 or IPv6 (with
//! fragments), TCP or UDP, and the malformed and non-flow frames the
//! generator mixes in.

use std::net::IpAddr;

pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// An IPv4 fragment (offset in bytes, more-fragments flag).
#[derive(Clone, Copy, Debug)]
pub struct Frag {
    pub offset: u16,
    pub more: bool,
    pub ident: u16,
}

/// One TCP segment or UDP datagram to build.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub proto: Proto,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub payload: u16,
    /// VLAN ids, outermost first; more than one makes an 802.1ad QinQ stack.
    pub vlans: &'a [u16],
}

impl Segment<'_> {
    /// A TCP segment of the connection `client:cport` <-> `server:sport`,
    /// sent by the client when `c2s`, else by the server: sequence 0, no
    /// payload, untagged (set the rest with `..`).
    pub fn tcp(
        client: IpAddr,
        cport: u16,
        server: IpAddr,
        sport: u16,
        c2s: bool,
        flags: u8,
    ) -> Segment<'static> {
        let (src, dst, sport, dport) = if c2s {
            (client, server, cport, sport)
        } else {
            (server, client, sport, cport)
        };
        Segment {
            proto: Proto::Tcp,
            src,
            dst,
            sport,
            dport,
            flags,
            seq: 0,
            ack: 0,
            payload: 0,
            vlans: &[],
        }
    }
}

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

pub(crate) fn ethernet(buf: &mut Vec<u8>, vlans: &[u16], ethertype: u16) {
    buf.extend_from_slice(&MAC_A);
    buf.extend_from_slice(&MAC_B);
    for (i, id) in vlans.iter().enumerate() {
        let tpid: u16 = if i == 0 && vlans.len() > 1 {
            0x88a8
        } else {
            0x8100
        };
        buf.extend_from_slice(&tpid.to_be_bytes());
        buf.extend_from_slice(&(id & 0x0fff).to_be_bytes());
    }
    buf.extend_from_slice(&ethertype.to_be_bytes());
}

fn checksum(header: &[u8]) -> u16 {
    !fold(sum_words(0, header))
}

/// The ones'-complement sum of `bytes` as 16-bit words (the last padded
/// with zero), added to `sum`, not yet folded.
fn sum_words(mut sum: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The TCP or UDP checksum of `segment` (header and payload, its checksum
/// field zero) between `src` and `dst` (RFC 9293 3.1, RFC 768, RFC 8200
/// 8.1): over the pseudo-header, then the segment. UDP's zero is sent as
/// all ones (zero means none, which IPv6 does not allow).
fn l4_checksum(src: &[u8], dst: &[u8], proto: u8, segment: &[u8]) -> u16 {
    let mut sum = sum_words(sum_words(0, src), dst);
    sum += u64::from(proto) + segment.len() as u64;
    let sum = !fold(sum_words(sum, segment));
    if sum == 0 && proto == 17 { 0xffff } else { sum }
}

/// Fills in the TCP or UDP checksum of the frame `buf` built by [`segment`]
/// (after anything that changes it: a window, a payload), whose IP header
/// starts at `ip`.
pub fn fill_l4_checksum(buf: &mut [u8], ip: usize) {
    let (src, dst, proto, l4) = match buf[ip] >> 4 {
        4 => {
            let ihl = usize::from(buf[ip] & 0x0f) * 4;
            (ip + 12..ip + 16, ip + 16..ip + 20, buf[ip + 9], ip + ihl)
        }
        _ => (ip + 8..ip + 24, ip + 24..ip + 40, buf[ip + 6], ip + 40),
    };
    let at = match proto {
        6 => l4 + 16,
        17 => l4 + 6,
        _ => return,
    };
    buf[at..at + 2].fill(0);
    let sum = l4_checksum(&buf[src], &buf[dst], proto, &buf[l4..]);
    buf[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

pub(crate) fn ipv4_header(
    buf: &mut Vec<u8>,
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    payload_len: usize,
    frag: Option<Frag>,
) {
    let start = buf.len();
    let total = (20 + payload_len) as u16;
    let (ident, word) = match frag {
        Some(f) => (f.ident, (f.offset / 8) | if f.more { 0x2000 } else { 0 }),
        None => (0, 0x4000), // don't fragment
    };
    buf.extend_from_slice(&[0x45, 0]);
    buf.extend_from_slice(&total.to_be_bytes());
    buf.extend_from_slice(&ident.to_be_bytes());
    buf.extend_from_slice(&word.to_be_bytes());
    buf.extend_from_slice(&[64, proto, 0, 0]);
    buf.extend_from_slice(&src);
    buf.extend_from_slice(&dst);
    let sum = checksum(&buf[start..start + 20]);
    buf[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
}

pub(crate) fn ipv6_header(
    buf: &mut Vec<u8>,
    src: [u8; 16],
    dst: [u8; 16],
    next: u8,
    payload_len: usize,
) {
    buf.extend_from_slice(&[0x60, 0, 0, 0]);
    buf.extend_from_slice(&(payload_len as u16).to_be_bytes());
    buf.extend_from_slice(&[next, 64]);
    buf.extend_from_slice(&src);
    buf.extend_from_slice(&dst);
}

fn l4_header(buf: &mut Vec<u8>, s: &Segment<'_>) {
    buf.extend_from_slice(&s.sport.to_be_bytes());
    buf.extend_from_slice(&s.dport.to_be_bytes());
    match s.proto {
        Proto::Tcp => {
            buf.extend_from_slice(&s.seq.to_be_bytes());
            buf.extend_from_slice(&s.ack.to_be_bytes());
            buf.extend_from_slice(&[5 << 4, s.flags]);
            buf.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        }
        Proto::Udp => {
            buf.extend_from_slice(&(8 + s.payload).to_be_bytes());
            buf.extend_from_slice(&[0, 0]);
        }
    }
}

fn l4_len(s: &Segment<'_>) -> usize {
    (match s.proto {
        Proto::Tcp => 20,
        Proto::Udp => 8,
    }) + usize::from(s.payload)
}

fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

/// Sets the window of the TCP segment whose headers (with a 20-byte TCP
/// header last) end at `headers` in `buf`, as [`segment`] wrote it (its
/// checksum then to be filled in: [`fill_l4_checksum`]).
pub fn set_tcp_window(buf: &mut [u8], headers: usize, window: u16) {
    buf[headers - 6..headers - 4].copy_from_slice(&window.to_be_bytes());
}

/// Builds a whole segment into `buf` (cleared first), its checksums
/// filled in. Returns the number of header bytes (everything before the
/// payload); [`ip_start`] says where the IP header starts.
pub fn segment(buf: &mut Vec<u8>, s: &Segment<'_>) -> usize {
    let headers = segment_unsummed(buf, s);
    fill_l4_checksum(buf, ip_start(s));
    headers
}

/// [`segment`] with the TCP or UDP checksum left zero, for a caller that
/// changes the segment (its window, its payload) and fills it in after:
/// the payload is summed once.
pub(crate) fn segment_unsummed(buf: &mut Vec<u8>, s: &Segment<'_>) -> usize {
    buf.clear();
    match (s.src, s.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            ethernet(buf, s.vlans, 0x0800);
            ipv4_header(
                buf,
                src.octets(),
                dst.octets(),
                proto_number(s.proto),
                l4_len(s),
                None,
            );
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            ethernet(buf, s.vlans, 0x86dd);
            ipv6_header(
                buf,
                src.octets(),
                dst.octets(),
                proto_number(s.proto),
                l4_len(s),
            );
        }
        _ => panic!("mixed address families"),
    }
    l4_header(buf, s);
    let headers = buf.len();
    buf.resize(headers + usize::from(s.payload), 0);
    headers
}

/// Where the IP header of a frame [`segment`] built for `s` starts: after
/// Ethernet and its tags.
pub fn ip_start(s: &Segment<'_>) -> usize {
    14 + 4 * s.vlans.len()
}

/// Builds the IPv4 fragments of a UDP datagram, each at most `mtu_payload`
/// bytes of IP payload (a multiple of 8). Returns the frames.
pub fn udp_fragments(s: &Segment<'_>, mtu_payload: usize, ident: u16) -> Vec<Vec<u8>> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (s.src, s.dst) else {
        panic!("IPv4 fragments only");
    };
    let mut datagram = Vec::new();
    l4_header(&mut datagram, s);
    datagram.resize(l4_len(s), 0);
    // Over the whole datagram, as its sender computed it before
    // fragmenting.
    let sum = l4_checksum(&src.octets(), &dst.octets(), 17, &datagram);
    datagram[6..8].copy_from_slice(&sum.to_be_bytes());
    let mut frames = Vec::new();
    let mut offset = 0;
    while offset < datagram.len() {
        let end = (offset + mtu_payload).min(datagram.len());
        let mut f = Vec::new();
        ethernet(&mut f, s.vlans, 0x0800);
        let frag = Frag {
            offset: offset as u16,
            more: end < datagram.len(),
            ident,
        };
        ipv4_header(
            &mut f,
            src.octets(),
            dst.octets(),
            17,
            end - offset,
            Some(frag),
        );
        f.extend_from_slice(&datagram[offset..end]);
        frames.push(f);
        offset = end;
    }
    frames
}

/// Frames that are not flow traffic, by the kind flowtap counts them as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonFlow {
    Arp,
    IcmpEcho,
    /// ICMP destination unreachable quoting a TCP header: not flow traffic.
    IcmpErrorQuotingTcp,
    Lldp,
    /// IPsec ESP: IP with a protocol that carries no ports.
    Esp,
}

impl NonFlow {
    pub const ALL: [NonFlow; 5] = [
        NonFlow::Arp,
        NonFlow::IcmpEcho,
        NonFlow::IcmpErrorQuotingTcp,
        NonFlow::Lldp,
        NonFlow::Esp,
    ];

    /// The frame kind flowtap reports.
    pub fn kind(self) -> &'static str {
        match self {
            NonFlow::Arp => "arp",
            NonFlow::IcmpEcho | NonFlow::IcmpErrorQuotingTcp => "icmp",
            NonFlow::Lldp => "non_ip",
            NonFlow::Esp => "ip_other",
        }
    }
}

pub fn non_flow(buf: &mut Vec<u8>, what: NonFlow) {
    buf.clear();
    let a = [198, 18, 200, 1];
    let b = [198, 18, 200, 2];
    match what {
        NonFlow::Arp => {
            ethernet(buf, &[], 0x0806);
            buf.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
            buf.extend_from_slice(&MAC_A);
            buf.extend_from_slice(&a);
            buf.extend_from_slice(&[0; 6]);
            buf.extend_from_slice(&b);
        }
        NonFlow::IcmpEcho => {
            ethernet(buf, &[], 0x0800);
            ipv4_header(buf, a, b, 1, 16, None);
            buf.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
            buf.extend_from_slice(&[0; 8]);
        }
        NonFlow::IcmpErrorQuotingTcp => {
            ethernet(buf, &[], 0x0800);
            ipv4_header(buf, a, b, 1, 8 + 20 + 20, None);
            buf.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
            ipv4_header(buf, b, a, 6, 20, None);
            buf.extend_from_slice(&[
                0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
            ]);
        }
        NonFlow::Lldp => {
            buf.extend_from_slice(&[0x01, 0x80, 0xc2, 0, 0, 0x0e]);
            buf.extend_from_slice(&MAC_A);
            buf.extend_from_slice(&0x88ccu16.to_be_bytes());
            buf.extend_from_slice(&[0; 32]);
        }
        NonFlow::Esp => {
            ethernet(buf, &[], 0x0800);
            ipv4_header(buf, a, b, 50, 16, None);
            buf.extend_from_slice(&[0, 0, 0x10, 0, 0, 0, 0, 1]);
            buf.extend_from_slice(&[0; 8]);
        }
    }
}

/// Malformed frames, by the reason flowtap reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    TruncatedIpv4,
    BadIpVersion,
    BadTcpDataOffset,
    BadIpv4TotalLength,
    Ipv6ChainTooLong,
}

impl Malformed {
    pub const ALL: [Malformed; 5] = [
        Malformed::TruncatedIpv4,
        Malformed::BadIpVersion,
        Malformed::BadTcpDataOffset,
        Malformed::BadIpv4TotalLength,
        Malformed::Ipv6ChainTooLong,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            Malformed::TruncatedIpv4 => "truncated",
            Malformed::BadIpVersion => "bad_version",
            Malformed::BadTcpDataOffset => "bad_header_length",
            Malformed::BadIpv4TotalLength => "bad_total_length",
            Malformed::Ipv6ChainTooLong => "header_chain_too_long",
        }
    }
}

pub fn malformed(buf: &mut Vec<u8>, what: Malformed) {
    buf.clear();
    let a = [198, 18, 201, 1];
    let b = [198, 18, 201, 2];
    match what {
        Malformed::TruncatedIpv4 => {
            ethernet(buf, &[], 0x0800);
            buf.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6]);
        }
        Malformed::BadIpVersion => {
            ethernet(buf, &[], 0x0800);
            ipv4_header(buf, a, b, 6, 20, None);
            let ip = buf.len() - 20;
            buf[ip] = 0x75;
            buf.extend_from_slice(&[0; 20]);
        }
        Malformed::BadTcpDataOffset => {
            ethernet(buf, &[], 0x0800);
            ipv4_header(buf, a, b, 6, 20, None);
            buf.extend_from_slice(&[
                0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x20, 0x10, 0xff, 0xff, 0, 0, 0, 0,
            ]);
        }
        Malformed::BadIpv4TotalLength => {
            ethernet(buf, &[], 0x0800);
            ipv4_header(buf, a, b, 17, 0, None);
            let ip = buf.len() - 20;
            buf[ip + 2..ip + 4].copy_from_slice(&12u16.to_be_bytes());
            buf.extend_from_slice(&[0; 8]);
        }
        Malformed::Ipv6ChainTooLong => {
            ethernet(buf, &[], 0x86dd);
            let mut src = [0u8; 16];
            src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            ipv6_header(buf, src, src, 60, 12 * 8 + 8);
            for _ in 0..12 {
                buf.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
            }
            buf.extend_from_slice(&[0; 8]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_tagged_ipv4_tcp() {
        let mut buf = Vec::new();
        let s = Segment {
            proto: Proto::Tcp,
            src: "198.18.0.1".parse().unwrap(),
            dst: "198.18.0.2".parse().unwrap(),
            sport: 40000,
            dport: 80,
            flags: tcp_flags::SYN,
            seq: 1,
            ack: 0,
            payload: 10,
            vlans: &[100, 200],
        };
        let headers = segment(&mut buf, &s);
        assert_eq!(headers, 14 + 8 + 20 + 20);
        assert_eq!(buf.len(), headers + 10);
        assert_eq!(&buf[12..14], &[0x88, 0xa8]);
        assert_eq!(&buf[16..18], &[0x81, 0x00]);
        // The IPv4 header checksum verifies to zero.
        assert_eq!(checksum(&buf[22..42]), 0);
    }

    #[test]
    fn fragments_cover_the_datagram() {
        let s = Segment {
            proto: Proto::Udp,
            src: "198.18.0.1".parse().unwrap(),
            dst: "198.18.0.2".parse().unwrap(),
            sport: 40000,
            dport: 53,
            flags: 0,
            seq: 0,
            ack: 0,
            payload: 2992,
            vlans: &[],
        };
        let frames = udp_fragments(&s, 1480, 7);
        assert_eq!(frames.len(), 3);
        let ip_payload: usize = frames.iter().map(|f| f.len() - 34).sum();
        assert_eq!(ip_payload, 3000);
    }
}
