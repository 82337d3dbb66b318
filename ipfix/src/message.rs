//! IPFIX messages (RFC 7011): a 16-byte header, then sets; a template set
//! says which Information Elements (RFC 7012) a data set's records carry.
//! Written by hand: the format is a few fixed layouts, and the crates that
//! implement all of IPFIX (netgauze-flow-pkt) bring a generated registry of
//! every element and its dependencies, a large build for the dozen fields
//! used here. Checked against real decoders: nfdump, pmacct, tshark.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

pub use pipeline::snapshot::EndpointName;

pub const VERSION: u16 = 10;
const HEADER_LEN: usize = 16;
/// Where a message header holds its export time and its sequence number
/// (RFC 7011 §3.1).
const EXPORT_TIME_AT: usize = 4;
const SEQUENCE_AT: usize = 8;
/// The largest message: its length is a 16-bit field (RFC 7011 §3.1), and
/// a UDP datagram holds 65,507 bytes at most.
pub const MAX_MESSAGE_LEN: usize = 65_507;
const SET_HEADER_LEN: usize = 4;
const TEMPLATE_SET_ID: u16 = 2;
/// Template ids: one layout per address family, for one direction's
/// records and for RFC 5103 biflow records.
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;
pub const TEMPLATE_BIFLOW_V4: u16 = 258;
pub const TEMPLATE_BIFLOW_V6: u16 = 259;

/// The enterprise number flowtap's own elements are under by default:
/// 32473, which IANA reserves for documentation (RFC 5612). flowtap has
/// none of its own; a deployment that keeps these records sets its own
/// (`--ipfix-enterprise-number`).
pub const DEFAULT_ENTERPRISE: u32 = 32473;

/// RFC 5103: an IANA element under this enterprise number is the same
/// element for the reverse direction of a biflow record.
pub const REVERSE_PEN: u32 = 29305;

/// flowtap's own measurements: enterprise-specific Information Elements
/// (RFC 7011 section 3.2) under the configured enterprise number, after the
/// standard ones, in this order: (element id, length, name). Counts are
/// deltas since the previous record, like packetDeltaCount. Ids 1-5 are the
/// record's direction's (client to server in a biflow record); 6-10 the
/// flow's connection outcomes, which the client's record carries (the
/// other only when the client sent nothing since its last record); 11-15,
/// in biflow records only, repeat 1-5 for the reverse direction (server to
/// client). Handshake percentiles are the direction's view (client to
/// server: SYN to SYN-ACK; server to client: SYN to completing ACK), over
/// flowtap's RTT window, 0 when none was measured.
pub const ENTERPRISE_ELEMENTS: [(u16, u16, &str); 15] = [
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
    (11, 8, "reverseTcpRetransmissionDeltaCount"),
    (12, 8, "reverseTcpRstDeltaCount"),
    (13, 8, "reverseTcpZeroWindowDeltaCount"),
    (14, 4, "reverseHandshakeP50Microseconds"),
    (15, 4, "reverseHandshakeP99Microseconds"),
];
/// Of those, the ones a one-direction record carries.
const UNIFLOW_ENTERPRISE: usize = 10;

/// The Kubernetes names of the record's source and destination, after
/// flowtap's measurements, as variable-length strings (RFC 7011 section 7;
/// empty where unknown): (element id, name).
pub const NAME_ELEMENTS: [(u16, &str); 6] = [
    (16, "sourceK8sNamespace"),
    (17, "sourceK8sWorkload"),
    (18, "sourceK8sPod"),
    (19, "destinationK8sNamespace"),
    (20, "destinationK8sWorkload"),
    (21, "destinationK8sPod"),
];

/// The length a template gives a variable-length element.
const VARIABLE_LENGTH: u16 = 0xFFFF;

/// The enterprise bit of a field specifier's element id.
const ENTERPRISE_BIT: u16 = 0x8000;

/// Whose element a field is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Iana,
    /// IANA's, for the reverse direction (RFC 5103).
    Reverse,
    Flowtap,
}

/// IANA Information Elements of every record, with their lengths.
const fn standard(v6: bool) -> [(u16, u16); 12] {
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
        (6, 2),     // tcpControlBits: per connection (0 in a flow's records)
    ]
}

/// A biflow record's counts for the reverse direction, after the standard
/// elements: packetDeltaCount, octetDeltaCount, layer2OctetDeltaCount, and
/// the server's tcpControlBits (RFC 5103 §6.1: reversible).
const REVERSE: [(u16, u16); 4] = [(2, 8), (1, 8), (352, 8), (6, 2)];

/// A record's fields in order: (element id, length, whose).
fn layout(v6: bool, biflow: bool) -> Vec<(u16, u16, Owner)> {
    let mut fields: Vec<_> = standard(v6)
        .into_iter()
        .map(|(id, len)| (id, len, Owner::Iana))
        .collect();
    let ours = if biflow {
        fields.extend(REVERSE.map(|(id, len)| (id, len, Owner::Reverse)));
        ENTERPRISE_ELEMENTS.len()
    } else {
        UNIFLOW_ENTERPRISE
    };
    fields.extend(
        ENTERPRISE_ELEMENTS[..ours]
            .iter()
            .map(|&(id, len, _)| (id, len, Owner::Flowtap)),
    );
    fields.extend(
        NAME_ELEMENTS
            .iter()
            .map(|&(id, _)| (id, VARIABLE_LENGTH, Owner::Flowtap)),
    );
    fields
}

/// The length of one data record's fixed-length elements (each of its
/// names adds its length and a length byte or three).
pub fn record_len(v6: bool, biflow: bool) -> usize {
    layout(v6, biflow)
        .iter()
        .filter(|f| f.1 != VARIABLE_LENGTH)
        .map(|&(_, len, _)| usize::from(len))
        .sum()
}

/// A name as a variable-length element holds it: at most 65535 bytes.
fn name_bytes(name: &Option<Arc<str>>) -> &[u8] {
    let bytes = name.as_deref().unwrap_or("").as_bytes();
    &bytes[..bytes.len().min(usize::from(u16::MAX))]
}

/// The encoded length of a variable-length element holding `len` bytes.
fn variable_len(len: usize) -> usize {
    if len < 255 { 1 + len } else { 3 + len }
}

/// The template a record's set needs.
fn template_id(v6: bool, biflow: bool) -> u16 {
    match (v6, biflow) {
        (false, false) => TEMPLATE_V4,
        (true, false) => TEMPLATE_V6,
        (false, true) => TEMPLATE_BIFLOW_V4,
        (true, true) => TEMPLATE_BIFLOW_V6,
    }
}

/// What flowtap measured of one direction since its last record (see
/// [`ENTERPRISE_ELEMENTS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SideMeasured {
    pub retransmits: u64,
    pub rsts: u64,
    pub zero_windows: u64,
    pub handshake_p50_us: u32,
    pub handshake_p99_us: u32,
}

/// How many of the flow's connections ended each way since its last
/// record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutcomeDeltas {
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
    /// A connection ended by FINs or RST (or a new one on its 5-tuple).
    EndOfFlow = 3,
    /// The capture ended (or flowtap stops).
    Forced = 4,
    /// A connection or flow given up to make room for others.
    LackOfResources = 5,
}

/// What one direction sent since its last record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub packets: u64,
    /// IP bytes, headers and payload (RFC 7012 `octetDeltaCount`).
    pub octets: u64,
    /// Frame bytes (link header included), as flowtap's API counts them.
    pub layer2_octets: u64,
    /// TCP flags the direction sent, ORed (per-connection records only: a
    /// flow does not keep them).
    pub tcp_flags: u8,
    pub measured: SideMeasured,
}

/// A flow's record since its last: one direction's (source to
/// destination), or with `reverse`, both (an RFC 5103 biflow record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub start_ms: u64,
    pub end_ms: u64,
    pub reason: EndReason,
    pub forward: Sent,
    /// The destination's direction, in a biflow record.
    pub reverse: Option<Sent>,
    pub outcomes: OutcomeDeltas,
    /// Kubernetes names of the source and the destination.
    pub names: [EndpointName; 2],
}

impl Record {
    fn family(&self) -> (bool, bool) {
        (self.is_ipv6(), self.reverse.is_some())
    }

    /// Whether the record is an IPv6 one: either end IPv6. Both ends go
    /// in one family, the template's: a real IPv6 packet from an
    /// IPv4-mapped address (`::ffff:a.b.c.d`, which flowtap's keys read as
    /// IPv4) has one end of each, and an end written in its own family
    /// made the record 12 bytes off its template, the rest of the set
    /// misread by every collector.
    fn is_ipv6(&self) -> bool {
        self.src.is_ipv6() || self.dst.is_ipv6()
    }

    fn name_fields(&self) -> [&Option<Arc<str>>; 6] {
        let [s, d] = &self.names;
        [
            &s.namespace,
            &s.workload,
            &s.pod,
            &d.namespace,
            &d.workload,
            &d.pod,
        ]
    }

    /// The length of its names in a data set (the rest is its family's
    /// [`record_len`]).
    fn names_len(&self) -> usize {
        self.name_fields()
            .iter()
            .map(|n| variable_len(name_bytes(n).len()))
            .sum()
    }

    fn write(&self, out: &mut Vec<u8>) {
        let v6 = self.is_ipv6();
        let addr = |out: &mut Vec<u8>, a: IpAddr| match a {
            IpAddr::V4(a) if v6 => out.extend_from_slice(&a.to_ipv6_mapped().octets()),
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        };
        let counts = |out: &mut Vec<u8>, s: &Sent| {
            for v in [s.packets, s.octets, s.layer2_octets] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        };
        let measured = |out: &mut Vec<u8>, m: &SideMeasured| {
            for v in [m.retransmits, m.rsts, m.zero_windows] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.extend_from_slice(&m.handshake_p50_us.to_be_bytes());
            out.extend_from_slice(&m.handshake_p99_us.to_be_bytes());
        };
        addr(out, self.src);
        addr(out, self.dst);
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.push(self.protocol);
        counts(out, &self.forward);
        out.extend_from_slice(&self.start_ms.to_be_bytes());
        out.extend_from_slice(&self.end_ms.to_be_bytes());
        out.push(self.reason as u8);
        out.extend_from_slice(&u16::from(self.forward.tcp_flags).to_be_bytes());
        if let Some(reverse) = &self.reverse {
            counts(out, reverse);
            out.extend_from_slice(&u16::from(reverse.tcp_flags).to_be_bytes());
        }
        measured(out, &self.forward.measured);
        let o = &self.outcomes;
        for v in [o.established, o.refused, o.unanswered, o.reset, o.closed] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        if let Some(reverse) = &self.reverse {
            measured(out, &reverse.measured);
        }
        for name in self.name_fields() {
            let bytes = name_bytes(name);
            if bytes.len() < 255 {
                out.push(bytes.len() as u8);
            } else {
                out.push(255);
                out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            }
            out.extend_from_slice(bytes);
        }
    }
}

/// Builds messages of at most `max_len` bytes for one observation domain,
/// numbering data records as RFC 7011 wants (the sequence number of a
/// message is the count of data records sent before it).
pub struct Encoder {
    domain: u32,
    enterprise: u32,
    /// Biflow records (and only their templates) rather than one-direction
    /// ones.
    biflow: bool,
    /// The fixed-length part of an IPv4 and an IPv6 record of that kind.
    record_lens: [usize; 2],
    max_len: usize,
    sequence: u32,
}

impl Encoder {
    pub fn new(domain: u32, enterprise: u32, biflow: bool, max_len: usize) -> Encoder {
        let record_lens = [record_len(false, biflow), record_len(true, biflow)];
        let mut e = Encoder {
            domain,
            enterprise,
            biflow,
            record_lens,
            max_len: 0,
            sequence: 0,
        };
        // A message must hold the templates, and a record of either family
        // (without its names, if they are too long for it).
        let records = HEADER_LEN + SET_HEADER_LEN + record_lens[1] + NAME_ELEMENTS.len();
        e.max_len = max_len
            .min(MAX_MESSAGE_LEN)
            .max(e.templates(0).len())
            .max(records);
        e
    }

    /// The largest message this encoder writes: the `max_len` asked for,
    /// or what the templates and one record need, if more.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// A record's length in a data set.
    fn len_of(&self, r: &Record) -> usize {
        self.record_lens[usize::from(r.is_ipv6())] + r.names_len()
    }

    /// Data records sent so far.
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    /// A message holding the templates of the records this encoder makes.
    pub fn templates(&self, export_time_s: u32) -> Vec<u8> {
        let mut out = header(export_time_s, self.sequence, self.domain);
        let set = out.len();
        out.extend_from_slice(&TEMPLATE_SET_ID.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for v6 in [false, true] {
            let biflow = self.biflow;
            let fields = layout(v6, biflow);
            out.extend_from_slice(&template_id(v6, biflow).to_be_bytes());
            out.extend_from_slice(&(fields.len() as u16).to_be_bytes());
            for (element, len, owner) in fields {
                let pen = match owner {
                    Owner::Iana => None,
                    Owner::Reverse => Some(REVERSE_PEN),
                    Owner::Flowtap => Some(self.enterprise),
                };
                let id = if pen.is_some() {
                    element | ENTERPRISE_BIT
                } else {
                    element
                };
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
                if let Some(pen) = pen {
                    out.extend_from_slice(&pen.to_be_bytes());
                }
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
        // A record too long for any message (names of kilobytes) goes
        // without its names: its counts stay.
        let room = self.max_len - HEADER_LEN - SET_HEADER_LEN;
        let records: Vec<Cow<'_, Record>> = records
            .iter()
            .map(|r| {
                if self.len_of(r) <= room {
                    return Cow::Borrowed(r);
                }
                let mut short = r.clone();
                short.names = Default::default();
                Cow::Owned(short)
            })
            .collect();
        let mut messages = Vec::new();
        let mut rest = &records[..];
        while !rest.is_empty() {
            let mut out = header(export_time_s, self.sequence, self.domain);
            let mut sent = 0u32;
            // Records of one family per set; a message holds sets until full.
            while let Some(first) = rest.first() {
                let (v6, biflow) = first.family();
                debug_assert_eq!(biflow, self.biflow, "a record of the other kind");
                if out.len() + SET_HEADER_LEN + self.len_of(first) > self.max_len {
                    break;
                }
                let set = out.len();
                out.extend_from_slice(&template_id(v6, biflow).to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                while let Some(r) = rest.first() {
                    if r.family() != (v6, biflow) || out.len() + self.len_of(r) > self.max_len {
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
    let len = u16::try_from(out.len()).expect("messages stay within MAX_MESSAGE_LEN");
    out[2..4].copy_from_slice(&len.to_be_bytes());
}

/// A message's sequence number: that of its first data record (a
/// template message's: of the next data record sent).
pub fn sequence_of(message: &[u8]) -> u32 {
    let at = &message[SEQUENCE_AT..SEQUENCE_AT + 4];
    u32::from_be_bytes(at.try_into().expect("four bytes"))
}

/// Sets a message's sequence number.
pub fn set_sequence(message: &mut [u8], sequence: u32) {
    message[SEQUENCE_AT..SEQUENCE_AT + 4].copy_from_slice(&sequence.to_be_bytes());
}

/// Sets a message's export time (seconds since the epoch): when it leaves
/// the exporter, which for a message kept for a TCP collector that was
/// away is when it is written, not when it was made.
pub fn set_export_time(message: &mut [u8], export_time_s: u32) {
    message[EXPORT_TIME_AT..EXPORT_TIME_AT + 4].copy_from_slice(&export_time_s.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(v6: bool, biflow: bool, n: u64) -> Record {
        let (src, dst) = if v6 {
            (
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            )
        } else {
            ("198.18.0.1".parse().unwrap(), "198.19.0.1".parse().unwrap())
        };
        let sent = Sent {
            packets: n,
            octets: 86 * n,
            layer2_octets: 100 * n,
            tcp_flags: 0x1b,
            measured: SideMeasured {
                retransmits: n,
                ..SideMeasured::default()
            },
        };
        Record {
            src,
            dst,
            src_port: 0,
            dst_port: 443,
            protocol: 6,
            start_ms: 1,
            end_ms: 2,
            reason: EndReason::Forced,
            forward: sent,
            reverse: biflow.then_some(sent),
            outcomes: OutcomeDeltas {
                closed: 1,
                ..OutcomeDeltas::default()
            },
            // Names of every length up to past the one-byte length form.
            names: [
                EndpointName {
                    namespace: Some("shop".into()),
                    workload: Some("x".repeat(n as usize * 7).into()),
                    pod: None,
                },
                EndpointName::default(),
            ],
        }
    }

    /// A template read back: its id, its records' length (from its field
    /// lengths), and its fields (element id, enterprise number if any).
    type Template = (u16, usize, Vec<(u16, Option<u32>)>);

    /// The templates of a message.
    fn read_templates(t: &[u8]) -> Vec<Template> {
        let u16_at = |i: usize| u16::from_be_bytes([t[i], t[i + 1]]);
        let mut at = HEADER_LEN + SET_HEADER_LEN;
        let mut out = Vec::new();
        while at < t.len() {
            let (id, count) = (u16_at(at), u16_at(at + 2) as usize);
            at += 4;
            let (mut len, mut fields) = (0, Vec::new());
            for _ in 0..count {
                let (element, field_len) = (u16_at(at), u16_at(at + 2));
                if field_len != VARIABLE_LENGTH {
                    len += field_len as usize;
                }
                at += 4;
                let pen = (element & ENTERPRISE_BIT != 0).then(|| {
                    at += 4;
                    u32::from_be_bytes(t[at - 4..at].try_into().unwrap())
                });
                fields.push((element & !ENTERPRISE_BIT, pen));
            }
            out.push((id, len, fields));
        }
        assert_eq!(at, t.len());
        out
    }

    #[test]
    fn templates_carry_flowtaps_and_reverse_elements() {
        let mut templates = Vec::new();
        for biflow in [false, true] {
            let t = Encoder::new(7, 4242, biflow, 512).templates(100);
            assert_eq!(u16::from_be_bytes([t[0], t[1]]), VERSION);
            assert_eq!(u16::from_be_bytes([t[2], t[3]]) as usize, t.len());
            templates.extend(read_templates(&t));
        }
        let ids: Vec<u16> = templates.iter().map(|t| t.0).collect();
        assert_eq!(ids, [256, 257, 258, 259]);
        for (id, len, fields) in templates {
            let biflow = id == TEMPLATE_BIFLOW_V4 || id == TEMPLATE_BIFLOW_V6;
            let v6 = id == TEMPLATE_V6 || id == TEMPLATE_BIFLOW_V6;
            assert_eq!(len, record_len(v6, biflow));
            let of =
                |pen| -> Vec<u16> { fields.iter().filter(|f| f.1 == pen).map(|f| f.0).collect() };
            let ours = if biflow { 15 } else { 10 };
            let want: Vec<u16> = (1..=ours).chain(16..=21).collect();
            assert_eq!(of(Some(4242)), want);
            let reverse: &[u16] = if biflow { &[2, 1, 352, 6] } else { &[] };
            assert_eq!(of(Some(REVERSE_PEN)), reverse);
            assert_eq!(of(None).len(), 12);
        }
    }

    #[test]
    fn messages_stay_within_the_limit_and_number_their_records() {
        for biflow in [false, true] {
            check_messages(biflow);
        }
    }

    fn check_messages(biflow: bool) {
        const MAX: usize = 1400;
        let mut e = Encoder::new(7, DEFAULT_ENTERPRISE, biflow, MAX);
        let lengths: std::collections::HashMap<u16, usize> = read_templates(&e.templates(100))
            .into_iter()
            .map(|(id, len, _)| (id, len))
            .collect();
        let mut records: Vec<Record> = (0..50).map(|i| record(i % 3 == 0, biflow, i)).collect();
        // Names too long for any message: the record goes without them.
        records[7].names[1].pod = Some("p".repeat(2000).into());
        // An IPv6 packet from or to an IPv4-mapped address, which flowtap's
        // keys read as IPv4: an IPv6 record, its length its template's.
        records[4].dst = "2001:db8::4".parse().unwrap();
        records[5].src = "2001:db8::5".parse().unwrap();
        let messages = e.data(&records, 100);
        let mut seq = 0;
        let mut names = Vec::new();
        for (m, n) in &messages {
            let before = seq;
            assert!(m.len() <= MAX);
            assert_eq!(u16::from_be_bytes([m[2], m[3]]) as usize, m.len());
            assert_eq!(u32::from_be_bytes([m[8], m[9], m[10], m[11]]), seq);
            assert_eq!(u32::from_be_bytes([m[12], m[13], m[14], m[15]]), 7);
            // Walk the records of its sets: the fixed part, then six names.
            let mut at = HEADER_LEN;
            while at < m.len() {
                let id = u16::from_be_bytes([m[at], m[at + 1]]);
                let end = at + u16::from_be_bytes([m[at + 2], m[at + 3]]) as usize;
                let mut r = at + SET_HEADER_LEN;
                while r < end {
                    r += lengths[&id];
                    let mut six = Vec::new();
                    for _ in 0..6 {
                        let (len, skip) = match m[r] {
                            255 => (u16::from_be_bytes([m[r + 1], m[r + 2]]) as usize, 3),
                            len => (len as usize, 1),
                        };
                        six.push(String::from_utf8(m[r + skip..r + skip + len].to_vec()).unwrap());
                        r += skip + len;
                    }
                    names.push(six);
                    seq += 1;
                }
                assert_eq!(r, end, "records fill their set");
                at = end;
            }
            assert_eq!(seq - before, *n);
        }
        assert_eq!(seq, 50);
        assert_eq!(e.sequence(), 50);
        // Both ends in the template's family: the IPv4 one mapped.
        let (m, _) = &Encoder::new(7, DEFAULT_ENTERPRISE, biflow, MAX).data(&records[4..5], 100)[0];
        let set = &m[HEADER_LEN..];
        let v6_template = if biflow {
            TEMPLATE_BIFLOW_V6
        } else {
            TEMPLATE_V6
        };
        assert_eq!(u16::from_be_bytes([set[0], set[1]]), v6_template);
        let src = &set[SET_HEADER_LEN..SET_HEADER_LEN + 16];
        assert_eq!(
            src,
            "::ffff:198.18.0.1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        for (i, six) in names.iter().enumerate() {
            if i == 7 {
                assert!(six.iter().all(String::is_empty), "{six:?}");
                continue;
            }
            let workload = "x".repeat(i * 7);
            assert_eq!(six, &["shop", &workload, "", "", "", ""]);
        }
    }
}
