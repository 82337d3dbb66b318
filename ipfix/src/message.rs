//! IPFIX messages (RFC 7011): a 16-byte header, then sets; a template set
//! says which Information Elements (RFC 7012) a data set's records carry.
//! Written by hand: the format is a few fixed layouts, and the crates that
//! implement all of IPFIX (netgauze-flow-pkt) bring a generated registry of
//! every element and its dependencies, a large build for the dozen fields
//! used here. Checked against real decoders: nfdump, pmacct, tshark.

use std::net::IpAddr;

pub const VERSION: u16 = 10;
const HEADER_LEN: usize = 16;
const SET_HEADER_LEN: usize = 4;
const TEMPLATE_SET_ID: u16 = 2;
/// Template ids: one layout per address family.
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;

/// The enterprise number flowtap's own elements are under by default:
/// 32473, which IANA reserves for documentation (RFC 5612). flowtap has
/// none of its own; a deployment that keeps these records sets its own
/// (`--ipfix-enterprise-number`).
pub const DEFAULT_ENTERPRISE: u32 = 32473;

/// flowtap's own measurements: enterprise-specific Information Elements
/// (RFC 7011 section 3.2) under the configured enterprise number, after the
/// standard ones, in this order: (element id, length, name). Counts are
/// deltas since the direction's previous record, like packetDeltaCount.
/// Connection outcomes are the client's, in the client-to-server record (in
/// the other only when the client sent nothing since its last record); handshake percentiles are the record's direction's view
/// (client to server: SYN to SYN-ACK; server to client: SYN to completing
/// ACK), over flowtap's RTT window, 0 when none was measured.
pub const ENTERPRISE_ELEMENTS: [(u16, u16, &str); 10] = [
    (1, 8, "tcpRetransmissionDeltaCount"),
    (2, 8, "tcpRstDeltaCount"),
    (3, 8, "tcpZeroWindowDeltaCount"),
    (4, 4, "handshakeP50Microseconds"),
    (5, 4, "handshakeP99Microseconds"),
    (6, 8, "connectionsEstablishedDeltaCount"),
    (7, 8, "connectionsRefusedDeltaCount"),
    (8, 8, "connectionsUnansweredDeltaCount"),
    (9, 8, "connectionsResetDeltaCount"),
    (10, 8, "connectionsClosedDeltaCount"),
];

/// The enterprise bit of a field specifier's element id.
const ENTERPRISE_BIT: u16 = 0x8000;

/// Information Elements (IANA numbers) of a record, with their lengths.
const fn fields(v6: bool) -> [(u16, u16); 12] {
    let (src, dst, len) = if v6 { (27, 28, 16) } else { (8, 12, 4) };
    [
        (src, len), // source IPv4/IPv6 address
        (dst, len), // destination IPv4/IPv6 address
        (7, 2),     // sourceTransportPort
        (11, 2),    // destinationTransportPort
        (4, 1),     // protocolIdentifier
        (2, 8),     // packetDeltaCount
        (1, 8),     // octetDeltaCount: IP bytes, headers and payload
        (352, 8),   // layer2OctetDeltaCount: frame bytes, as flowtap counts them
        (152, 8),   // flowStartMilliseconds
        (153, 8),   // flowEndMilliseconds
        (136, 1),   // flowEndReason
        (6, 2),     // tcpControlBits (0: not tracked per direction)
    ]
}

/// The length of one data record.
pub const fn record_len(v6: bool) -> usize {
    let f = fields(v6);
    let mut n = 0;
    let mut i = 0;
    while i < f.len() {
        n += f[i].1 as usize;
        i += 1;
    }
    let mut i = 0;
    while i < ENTERPRISE_ELEMENTS.len() {
        n += ENTERPRISE_ELEMENTS[i].1 as usize;
        i += 1;
    }
    n
}

/// The length of a template's field specifiers.
const fn template_fields_len() -> usize {
    4 * fields(false).len() + 8 * ENTERPRISE_ELEMENTS.len()
}

/// flowtap's measurements in one record (see [`ENTERPRISE_ELEMENTS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Measured {
    pub retransmits: u64,
    pub rsts: u64,
    pub zero_windows: u64,
    pub handshake_p50_us: u32,
    pub handshake_p99_us: u32,
    pub established: u64,
    pub refused: u64,
    pub unanswered: u64,
    pub reset: u64,
    pub closed: u64,
}

/// Why a record was exported (RFC 7012 flowEndReason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The flow left flowtap's table (no packet for its idle timeout).
    Idle = 1,
    /// Still running: the counts since the last record.
    Active = 2,
    /// The capture ended (or flowtap stops).
    Forced = 4,
}

/// One direction of a flow since its last record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub packets: u64,
    /// IP bytes, headers and payload (RFC 7012 `octetDeltaCount`).
    pub octets: u64,
    /// Frame bytes (link header included), as flowtap's API counts them.
    pub layer2_octets: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    pub reason: EndReason,
    pub measured: Measured,
}

impl Record {
    fn v6(&self) -> bool {
        self.src.is_ipv6()
    }

    fn write(&self, out: &mut Vec<u8>) {
        let addr = |out: &mut Vec<u8>, a: IpAddr| match a {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        };
        addr(out, self.src);
        addr(out, self.dst);
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.push(self.protocol);
        out.extend_from_slice(&self.packets.to_be_bytes());
        out.extend_from_slice(&self.octets.to_be_bytes());
        out.extend_from_slice(&self.layer2_octets.to_be_bytes());
        out.extend_from_slice(&self.start_ms.to_be_bytes());
        out.extend_from_slice(&self.end_ms.to_be_bytes());
        out.push(self.reason as u8);
        out.extend_from_slice(&0u16.to_be_bytes());
        let m = &self.measured;
        for v in [m.retransmits, m.rsts, m.zero_windows] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&m.handshake_p50_us.to_be_bytes());
        out.extend_from_slice(&m.handshake_p99_us.to_be_bytes());
        for v in [m.established, m.refused, m.unanswered, m.reset, m.closed] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// Builds messages of at most `max_len` bytes for one observation domain,
/// numbering data records as RFC 7011 wants (the sequence number of a
/// message is the count of data records sent before it).
pub struct Encoder {
    domain: u32,
    enterprise: u32,
    max_len: usize,
    sequence: u32,
}

impl Encoder {
    pub fn new(domain: u32, enterprise: u32, max_len: usize) -> Encoder {
        // A message must hold the templates, and a record of each family.
        let templates = HEADER_LEN + SET_HEADER_LEN + 2 * (4 + template_fields_len());
        let records = HEADER_LEN + 2 * SET_HEADER_LEN + record_len(false) + record_len(true);
        Encoder {
            domain,
            enterprise,
            max_len: max_len.max(templates).max(records),
            sequence: 0,
        }
    }

    /// Data records sent so far.
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    /// A message holding the two templates.
    pub fn templates(&self, export_time_s: u32) -> Vec<u8> {
        let mut out = header(export_time_s, self.sequence, self.domain);
        let set = out.len();
        out.extend_from_slice(&TEMPLATE_SET_ID.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for (id, v6) in [(TEMPLATE_V4, false), (TEMPLATE_V6, true)] {
            let f = fields(v6);
            out.extend_from_slice(&id.to_be_bytes());
            let count = f.len() + ENTERPRISE_ELEMENTS.len();
            out.extend_from_slice(&(count as u16).to_be_bytes());
            for (element, len) in f {
                out.extend_from_slice(&element.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
            }
            for (element, len, _) in ENTERPRISE_ELEMENTS {
                out.extend_from_slice(&(element | ENTERPRISE_BIT).to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&self.enterprise.to_be_bytes());
            }
        }
        let set_len = (out.len() - set) as u16;
        out[set + 2..set + 4].copy_from_slice(&set_len.to_be_bytes());
        finish(&mut out);
        out
    }

    /// Messages carrying `records`, each within the size limit, in order,
    /// each with the number of records it holds.
    pub fn data(&mut self, records: &[Record], export_time_s: u32) -> Vec<(Vec<u8>, u32)> {
        let mut messages = Vec::new();
        let mut rest = records;
        while !rest.is_empty() {
            let mut out = header(export_time_s, self.sequence, self.domain);
            let mut sent = 0u32;
            // Records of one family per set; a message holds sets until full.
            while let Some(first) = rest.first() {
                let v6 = first.v6();
                let len = record_len(v6);
                if out.len() + SET_HEADER_LEN + len > self.max_len {
                    break;
                }
                let set = out.len();
                let id = if v6 { TEMPLATE_V6 } else { TEMPLATE_V4 };
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                while let Some(r) = rest.first() {
                    if r.v6() != v6 || out.len() + len > self.max_len {
                        break;
                    }
                    r.write(&mut out);
                    sent += 1;
                    rest = &rest[1..];
                }
                let set_len = (out.len() - set) as u16;
                out[set + 2..set + 4].copy_from_slice(&set_len.to_be_bytes());
            }
            finish(&mut out);
            self.sequence = self.sequence.wrapping_add(sent);
            messages.push((out, sent));
        }
        messages
    }
}

fn header(export_time_s: u32, sequence: u32, domain: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(1500);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // length, set by `finish`
    out.extend_from_slice(&export_time_s.to_be_bytes());
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&domain.to_be_bytes());
    out
}

fn finish(out: &mut [u8]) {
    let len = out.len() as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(v6: bool, n: u64) -> Record {
        let (src, dst) = if v6 {
            (
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            )
        } else {
            ("198.18.0.1".parse().unwrap(), "198.19.0.1".parse().unwrap())
        };
        Record {
            src,
            dst,
            src_port: 0,
            dst_port: 443,
            protocol: 6,
            packets: n,
            octets: 86 * n,
            layer2_octets: 100 * n,
            start_ms: 1,
            end_ms: 2,
            reason: EndReason::Forced,
            measured: Measured {
                retransmits: n,
                closed: 1,
                ..Measured::default()
            },
        }
    }

    #[test]
    fn messages_stay_within_the_limit_and_number_their_records() {
        let mut e = Encoder::new(7, DEFAULT_ENTERPRISE, 512);
        let t = e.templates(100);
        assert_eq!(u16::from_be_bytes([t[0], t[1]]), VERSION);
        assert_eq!(u16::from_be_bytes([t[2], t[3]]) as usize, t.len());
        // Each template: the standard field specifiers, then flowtap's, each
        // with the enterprise bit and number; their lengths make a record.
        let mut at = HEADER_LEN + SET_HEADER_LEN;
        for id in [TEMPLATE_V4, TEMPLATE_V6] {
            let u16_at = |i: usize| u16::from_be_bytes([t[i], t[i + 1]]);
            assert_eq!(u16_at(at), id);
            let count = u16_at(at + 2) as usize;
            at += 4;
            let (mut len, mut enterprise) = (0, Vec::new());
            for _ in 0..count {
                let (element, field_len) = (u16_at(at), u16_at(at + 2));
                len += field_len as usize;
                at += 4;
                if element & ENTERPRISE_BIT != 0 {
                    let pen = u32::from_be_bytes(t[at..at + 4].try_into().unwrap());
                    assert_eq!(pen, DEFAULT_ENTERPRISE);
                    enterprise.push(element & !ENTERPRISE_BIT);
                    at += 4;
                }
            }
            assert_eq!(enterprise, (1..=10).collect::<Vec<u16>>());
            assert_eq!(len, record_len(id == TEMPLATE_V6));
        }
        assert_eq!(at, t.len());
        let records: Vec<Record> = (0..50).map(|i| record(i % 3 == 0, i)).collect();
        let messages = e.data(&records, 100);
        let mut seq = 0;
        for (m, n) in &messages {
            let before = seq;
            assert!(m.len() <= 512);
            assert_eq!(u16::from_be_bytes([m[2], m[3]]) as usize, m.len());
            assert_eq!(u32::from_be_bytes([m[8], m[9], m[10], m[11]]), seq);
            assert_eq!(u32::from_be_bytes([m[12], m[13], m[14], m[15]]), 7);
            // Count the records in its sets.
            let mut at = HEADER_LEN;
            while at < m.len() {
                let id = u16::from_be_bytes([m[at], m[at + 1]]);
                let len = u16::from_be_bytes([m[at + 2], m[at + 3]]) as usize;
                let each = record_len(id == TEMPLATE_V6);
                assert_eq!((len - SET_HEADER_LEN) % each, 0);
                seq += ((len - SET_HEADER_LEN) / each) as u32;
                at += len;
            }
            assert_eq!(seq - before, *n);
        }
        assert_eq!(seq, 50);
        assert_eq!(e.sequence(), 50);
    }
}
