//! Walks a captured frame from its link header to the TCP or UDP header,
//! through the tunnels and mirror encapsulations [`Decap`] opens.
//!
//! What a frame is ([`Dissected`]) and how it was carried ([`Carried`]) come
//! back together in a [`Dissection`]. The counting rule the ingest path
//! applies from them (README, "What is counted"): inside an encapsulation
//! that carries a whole Ethernet frame (VXLAN, GENEVE or GRE with Ethernet,
//! ERSPAN) the inner frame is counted as if captured on the original wire;
//! tunnels that carry IP (IP-in-IP, GRE with IP, GTP-U) key the flow by the
//! innermost headers and count the frame on the wire.

use super::decap::{Decap, Encap, Mirror};
use super::{
    Layer, LenError, ah, chdlc, erspan, ethernet, ethertype, fabricpath, geneve, gre, gtpu, icmp,
    ieee80211, ip_proto, ipv4, ipv6, linux_sll, llc, mpls, nflog, null, ppi, ppp, pppoe, radiotap,
    tags, tcp, tzsp, udp, vlan, vxlan,
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
    /// PPP with or without HDLC-like framing (9), and PPP_WITH_DIR (204,
    /// after a direction byte).
    Ppp {
        direction_byte: bool,
    },
    /// PPP in HDLC-like framing, or Cisco HDLC when it starts 0x0f / 0x8f (50).
    PppHdlc,
    /// A PPPoE session header, no Ethernet (PPP_ETHER, 51).
    PppEther,
    /// Cisco HDLC (104), and C_HDLC_WITH_DIR (205, after a direction byte).
    CiscoHdlc {
        direction_byte: bool,
    },
    /// Per-Packet Information header around another link type (192).
    Ppi,
    /// IEEE 802.11 (105).
    Ieee80211,
    /// Radiotap and IEEE 802.11 (127).
    Radiotap,
    /// Linux netfilter NFLOG (239).
    Nflog,
    /// A link type flowtap cannot read, on one interface of a pcapng file
    /// whose other interfaces it reads: its frames are counted as non-IP
    /// (as PPI around such a type is) and the file's report names it.
    Unreadable,
}

impl LinkType {
    /// Maps a pcap/pcapng link-type code; `None` for types flowtap cannot read.
    pub fn from_pcap(code: u32) -> Option<LinkType> {
        Some(match code {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            9 => LinkType::Ppp {
                direction_byte: false,
            },
            12 | 14 | 101 => LinkType::Raw,
            50 => LinkType::PppHdlc,
            51 => LinkType::PppEther,
            104 => LinkType::CiscoHdlc {
                direction_byte: false,
            },
            105 => LinkType::Ieee80211,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            127 => LinkType::Radiotap,
            192 => LinkType::Ppi,
            204 => LinkType::Ppp {
                direction_byte: true,
            },
            205 => LinkType::CiscoHdlc {
                direction_byte: true,
            },
            228 => LinkType::RawIpv4,
            229 => LinkType::RawIpv6,
            239 => LinkType::Nflog,
            276 => LinkType::LinuxSll2,
            _ => return None,
        })
    }

    /// Every link type flowtap reads, by pcap code (tests, fuzzing; the
    /// fuzz inputs kept in `fuzz/regressions` select by index, so new codes
    /// go at the end).
    pub const CODES: [u32; 21] = [
        0, 1, 101, 108, 113, 228, 229, 276, 9, 12, 14, 50, 51, 104, 105, 127, 192, 204, 205, 239,
        // A code flowtap does not read: PPI may name it.
        147,
    ];
}

/// Frames that are not TCP/UDP over IP, counted by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtherKind {
    Arp,
    /// ICMP and ICMPv6, errors quoting a TCP/UDP header included: those are
    /// not flow traffic.
    Icmp,
    /// IP with another upper-layer protocol (ESP, SCTP, IGMP, GRE that is not
    /// opened, ...).
    IpOther,
    /// Neither IP nor ARP (LLC, LLDP, MPLS pseudowires, unknown EtherTypes,
    /// encrypted 802.11), or on a link type flowtap cannot read.
    NonIp,
}

/// Why a frame could not be read as far as its transport header. A small,
/// fixed set so that counters stay meaningful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MalformedReason {
    /// A header is cut short (by the capture length or the frame itself).
    Truncated,
    /// A version field is wrong: the IP version nibble does not match the
    /// EtherType or link type; a GENEVE, GTP, ERSPAN, PPI or radiotap
    /// version is not the one defined.
    BadVersion,
    /// A header-length field is impossible (IPv4 IHL < 5, TCP data offset < 5
    /// or longer than its segment, a GTP extension header or NFLOG attribute
    /// of length zero, a PPI or radiotap header shorter than itself).
    BadHeaderLength,
    /// A total/payload length field is smaller than the headers it covers.
    BadTotalLength,
    /// Too many IPv6 extension headers or nested encapsulations.
    HeaderChainTooLong,
    /// An IPv6 source or destination in the IPv4-mapped range
    /// (`::ffff:0:0/96`), which RFC 4291 2.5.5.2 keeps off the wire (Linux
    /// drops such packets): only spoofed or broken traffic carries one, and
    /// its flow key would be an IPv4 flow's (it was counted in one, named
    /// as that flow's pod).
    BadAddress,
}

impl MalformedReason {
    pub const ALL: [MalformedReason; 6] = [
        MalformedReason::Truncated,
        MalformedReason::BadVersion,
        MalformedReason::BadHeaderLength,
        MalformedReason::BadTotalLength,
        MalformedReason::HeaderChainTooLong,
        MalformedReason::BadAddress,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            MalformedReason::Truncated => "truncated",
            MalformedReason::BadVersion => "bad_version",
            MalformedReason::BadHeaderLength => "bad_header_length",
            MalformedReason::BadTotalLength => "bad_total_length",
            MalformedReason::HeaderChainTooLong => "header_chain_too_long",
            MalformedReason::BadAddress => "bad_address",
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

impl Malformed {
    const fn new(reason: MalformedReason, layer: Layer) -> Malformed {
        Malformed { reason, layer }
    }
}

impl From<LenError> for Malformed {
    fn from(e: LenError) -> Self {
        Malformed::new(MalformedReason::Truncated, e.layer)
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
        Malformed::new(reason, Layer::Ipv4)
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
        Malformed::new(reason, Layer::Ipv6)
    }
}

impl From<udp::Error> for Malformed {
    fn from(e: udp::Error) -> Self {
        match e {
            udp::Error::Len(len) => len.into(),
            udp::Error::HeaderLength { .. } => {
                Malformed::new(MalformedReason::BadHeaderLength, Layer::Udp)
            }
        }
    }
}

impl From<tcp::Error> for Malformed {
    fn from(e: tcp::Error) -> Self {
        match e {
            tcp::Error::Len(len) => len.into(),
            tcp::Error::HeaderLength { .. } => {
                Malformed::new(MalformedReason::BadHeaderLength, Layer::Tcp)
            }
        }
    }
}

impl From<geneve::Error> for Malformed {
    fn from(e: geneve::Error) -> Self {
        match e {
            geneve::Error::Len(len) => len.into(),
            geneve::Error::Version(_) => Malformed::new(MalformedReason::BadVersion, Layer::Geneve),
        }
    }
}

impl From<tzsp::Error> for Malformed {
    fn from(e: tzsp::Error) -> Self {
        match e {
            tzsp::Error::Len(len) => len.into(),
            tzsp::Error::Version(_) => Malformed::new(MalformedReason::BadVersion, Layer::Tzsp),
        }
    }
}

impl From<erspan::Error> for Malformed {
    fn from(e: erspan::Error) -> Self {
        match e {
            erspan::Error::Len(len) => len.into(),
            erspan::Error::Version(_) => Malformed::new(MalformedReason::BadVersion, Layer::Erspan),
        }
    }
}

impl From<gtpu::Error> for Malformed {
    fn from(e: gtpu::Error) -> Self {
        let reason = match e {
            gtpu::Error::Len(len) => return len.into(),
            gtpu::Error::Version(_) => MalformedReason::BadVersion,
            gtpu::Error::ExtensionLength => MalformedReason::BadHeaderLength,
        };
        Malformed::new(reason, Layer::Gtpu)
    }
}

impl From<ppi::Error> for Malformed {
    fn from(e: ppi::Error) -> Self {
        let reason = match e {
            ppi::Error::Len(len) => return len.into(),
            ppi::Error::Version(_) => MalformedReason::BadVersion,
            ppi::Error::HeaderLength(_) => MalformedReason::BadHeaderLength,
        };
        Malformed::new(reason, Layer::Link)
    }
}

impl From<radiotap::Error> for Malformed {
    fn from(e: radiotap::Error) -> Self {
        let reason = match e {
            radiotap::Error::Len(len) => return len.into(),
            radiotap::Error::Version(_) => MalformedReason::BadVersion,
            radiotap::Error::HeaderLength(_) => MalformedReason::BadHeaderLength,
        };
        Malformed::new(reason, Layer::Link)
    }
}

impl From<nflog::Error> for Malformed {
    fn from(e: nflog::Error) -> Self {
        match e {
            nflog::Error::Len(len) => len.into(),
            nflog::Error::AttributeLength(_) => {
                Malformed::new(MalformedReason::BadHeaderLength, Layer::Link)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dissected {
    Transport(Transport),
    Other(OtherKind),
    /// An ICMP error that refuses the connection of the TCP segment it
    /// quotes ([`icmp::refused_tcp`]).
    Refusal(icmp::QuotedTcp),
}

/// A fragmented IP datagram whose payload is a tunnel: its later fragments
/// carry no inner headers, so the ingest path remembers the first one's
/// inner flow under this identity (the fragmented header's addresses,
/// identification and protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragmentId {
    pub src: Addr,
    pub dst: Addr,
    pub ident: u32,
    pub protocol: u8,
}

/// Where a frame sits in a fragmented tunnel datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelFragment {
    pub id: FragmentId,
    /// First (`None`), or later (`Some(last)`).
    pub later: Option<bool>,
    /// A later fragment's share of the datagram, in bytes.
    pub payload_len: u32,
    /// Where a later fragment's share starts in the datagram's payload,
    /// in bytes (0 for the first).
    pub offset: u32,
    /// Where a first fragment's share of the datagram ends in the frame
    /// (by its IP header): the part of the packet inside that it carries.
    pub ends_at: u32,
}

/// How a frame was carried: what the ingest path needs besides the flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    /// The outermost encapsulation opened.
    pub encap: Option<Encap>,
    /// The outermost encapsulation that carried a whole Ethernet frame.
    pub mirror: Option<Mirror>,
    /// Bytes in front of the innermost frame such an encapsulation carried,
    /// and after it (a trailer after the outer datagram): the frame as
    /// counted is the captured one minus these.
    pub outer_len: u32,
    pub trailer_len: u32,
    /// Where the innermost IP header starts, the one the flow is keyed on
    /// (duplicates are compared from there).
    pub ip_offset: Option<u32>,
    /// That IP packet's length as its header says (RFC 791's Total Length,
    /// 40 and RFC 8200's Payload Length), where it says one: what a copy of
    /// it holds whatever padding or trailer follows it, or however much of
    /// it a cut copy or a fragmented carrier brought.
    pub ip_len: Option<u32>,
    /// Set when a tunnel rides on a fragmented IP datagram.
    pub fragment: Option<TunnelFragment>,
}

/// A frame read as far as it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dissection {
    pub result: Result<Dissected, Malformed>,
    pub carried: Carried,
}

/// Encapsulations (tunnels, mirror sessions, FabricPath) entered before a
/// frame is called malformed: bounds the work and the recursion per frame.
pub const MAX_NESTING: u8 = 6;

/// Reads frames with a given [`Decap`] configuration.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dissector {
    pub decap: Decap,
}

impl Dissector {
    pub const fn new(decap: Decap) -> Dissector {
        Dissector { decap }
    }

    /// Reads `frame` (as captured, possibly cut by a snaplen) down to its
    /// transport header. Never panics.
    pub fn dissect(&self, link: LinkType, frame: &[u8]) -> Dissection {
        let mut carried = Carried::default();
        let result = self.dissect_into(link, frame, &mut carried);
        Dissection { result, carried }
    }

    /// The same, with how the frame was carried written into `carried`
    /// (reset first): the per-packet path keeps one and reads its fields
    /// where they were written, rather than copying a large result.
    #[inline]
    pub fn dissect_into(
        &self,
        link: LinkType,
        frame: &[u8],
        carried: &mut Carried,
    ) -> Result<Dissected, Malformed> {
        *carried = Carried::default();
        Walk {
            frame,
            decap: &self.decap,
            depth: 0,
            carried,
        }
        .link(link, frame)
    }
}

/// [`Dissector::dissect`] with the default encapsulations, without how the
/// frame was carried (tools, benchmarks, tests).
pub fn dissect(link: LinkType, frame: &[u8]) -> Result<Dissected, Malformed> {
    Dissector::new(Decap::DEFAULT).dissect(link, frame).result
}

type Outcome = Result<Dissected, Malformed>;

/// Bytes after an IPv6 packet's payload that a frame may carry where a
/// payload could be IPv6 or Ethernet ([`Dissector::ip_holds_up`]): an FCS,
/// a packet broker's trailer, Ethernet padding.
const IPV6_TRAILER_SLACK: usize = 64;

const NON_IP: Outcome = Ok(Dissected::Other(OtherKind::NonIp));
const IP_OTHER: Outcome = Ok(Dissected::Other(OtherKind::IpOther));

/// One frame's walk: the frame (to tell where a header sits in it), the
/// configuration, and what has been found on the way.
struct Walk<'a, 'd> {
    frame: &'a [u8],
    decap: &'d Decap,
    depth: u8,
    carried: &'d mut Carried,
}

/// What an IP header (either version) says about its payload.
struct Upper<'a> {
    protocol: u8,
    src: Addr,
    dst: Addr,
    payload: &'a [u8],
    payload_len: Option<usize>,
    /// The IP header's length, extension headers included.
    header_len: usize,
    fragment: Fragment,
    /// Where a fragment's payload starts in its datagram's, in bytes.
    fragment_offset: u32,
    layer: Layer,
}

impl<'a> Walk<'a, '_> {
    fn link(&mut self, link: LinkType, frame: &'a [u8]) -> Outcome {
        match link {
            LinkType::Ethernet => self.ethernet(frame),
            LinkType::LinuxSll => {
                let sll = linux_sll::Header::new_checked_v1(frame)?;
                self.by_ethertype(
                    sll.protocol(),
                    sll_payload(frame, linux_sll::SLL_HEADER_LEN),
                )
            }
            LinkType::LinuxSll2 => {
                let sll = linux_sll::Header::new_checked_v2(frame)?;
                self.by_ethertype(
                    sll.protocol(),
                    sll_payload(frame, linux_sll::SLL2_HEADER_LEN),
                )
            }
            LinkType::Null | LinkType::Loop => {
                let header = null::Header::new_checked(frame)?;
                match header.family(link == LinkType::Loop) {
                    null::Family::Ipv4 => self.ipv4(&frame[null::HEADER_LEN..]),
                    null::Family::Ipv6 => self.ipv6(&frame[null::HEADER_LEN..]),
                    null::Family::Other(_) => NON_IP,
                }
            }
            LinkType::Raw => self.by_version_nibble(frame),
            LinkType::RawIpv4 => self.ipv4(frame),
            LinkType::RawIpv6 => self.ipv6(frame),
            LinkType::Ppp { direction_byte } => {
                let frame = self.skip_direction(frame, direction_byte)?;
                self.ppp(frame)
            }
            LinkType::PppHdlc => match frame.first() {
                Some(&(chdlc::ADDRESS_UNICAST | chdlc::ADDRESS_BROADCAST)) => self.chdlc(frame),
                _ => self.ppp(frame),
            },
            LinkType::PppEther => self.pppoe(frame),
            LinkType::CiscoHdlc { direction_byte } => {
                let frame = self.skip_direction(frame, direction_byte)?;
                self.chdlc(frame)
            }
            LinkType::Ppi => {
                let header = ppi::Header::new_checked(frame)?;
                match LinkType::from_pcap(header.dlt()) {
                    // PPI in PPI would recurse without end.
                    Some(LinkType::Ppi) | None => NON_IP,
                    Some(inner) => self.link(inner, &frame[header.header_len()..]),
                }
            }
            LinkType::Unreadable => NON_IP,
            LinkType::Ieee80211 => self.ieee80211(frame, false),
            LinkType::Radiotap => {
                let header = radiotap::Header::new_checked(frame)?;
                let padded = header
                    .flags()
                    .is_some_and(|f| f & radiotap::FLAG_DATA_PAD != 0);
                self.ieee80211(&frame[header.header_len()..], padded)
            }
            LinkType::Nflog => {
                let header = nflog::Header::new_checked(frame)?;
                match header.packet()? {
                    Some(packet) => self.by_version_nibble(within(frame, packet)),
                    None => NON_IP,
                }
            }
        }
    }

    fn ethernet(&mut self, frame: &'a [u8]) -> Outcome {
        let eth = ethernet::Frame::new_checked(frame)?;
        self.by_ethertype(eth.ethertype(), &frame[ethernet::HEADER_LEN..])
    }

    /// An 802.3 frame (a length where the type would be): IP only in an
    /// RFC 1042 SNAP header (LLC `AA AA 03`, organisation 0), whose type
    /// follows; anything else (spanning tree, CDP, ...) is not IP.
    fn llc(&mut self, payload: &'a [u8]) -> Outcome {
        match llc::snap(payload) {
            Some(snap) if snap.organisation == 0 => self.by_ethertype(snap.ethertype, snap.payload),
            _ => NON_IP,
        }
    }

    /// Whether `frame` reads as an Ethernet frame carrying a type flowtap
    /// follows (IP with its version after the header): how an Ethernet
    /// pseudowire or a GTP-U Ethernet PDU, which say nothing of their
    /// payload, is told from one that is not.
    fn looks_like_ethernet(frame: &[u8]) -> bool {
        let version = frame.get(ethernet::HEADER_LEN).map(|b| b >> 4);
        ethernet::Frame::new_checked(frame).is_ok_and(|eth| match eth.ethertype() {
            ethertype::IPV4 => version == Some(4),
            ethertype::IPV6 => version == Some(6),
            other => matches!(
                other,
                ethertype::VLAN
                    | ethertype::QINQ
                    | ethertype::QINQ_LEGACY_9100
                    | ethertype::QINQ_LEGACY_9200
                    | ethertype::MPLS_UNICAST
                    | ethertype::MPLS_MULTICAST
                    | ethertype::PPPOE_SESSION
                    | ethertype::ARP
            ),
        })
    }

    /// Whether a payload that does not say what it carries (after an MPLS
    /// label stack, in a GTP-U PDU), whose version nibble is IP's, is IP
    /// rather than an Ethernet frame. A frame whose destination MAC starts
    /// with a 4 or a 6 has an IP version nibble too (RFC 4928 §2, why
    /// pseudowires have a control word, which many leave out): where the
    /// payload reads as both, IP must hold up, IPv4 by its header checksum
    /// and IPv6 by a payload length that accounts for the bytes that follow,
    /// give or take [`IPV6_TRAILER_SLACK`], unless the frame's own IPv4
    /// header holds up (its checksum). A MAC's bytes 4 and 5, read as an
    /// IPv6 payload length, fell within a large frame one time in fifty.
    /// A snap length's cut fails the length, but then the bytes after the
    /// would-be Ethernet header rarely hold the IP version its EtherType
    /// names.
    fn ip_holds_up(payload: &[u8]) -> bool {
        if !Self::looks_like_ethernet(payload) {
            return true;
        }
        match payload.first().map(|b| b >> 4) {
            Some(4) => ipv4::Packet::new_checked(payload).is_ok_and(|ip| ip.checksum_holds()),
            Some(6) => {
                // A payload length of 0 (a jumbogram, a segmentation
                // offload's) says nothing: taken as IPv6, as before.
                let accounted = ipv6::Packet::new_checked(payload).is_ok_and(|ip| {
                    let len = usize::from(ip.payload_len()) + ipv6::HEADER_LEN;
                    ip.payload_len() == 0
                        || payload
                            .len()
                            .checked_sub(len)
                            .is_some_and(|rest| rest <= IPV6_TRAILER_SLACK)
                });
                let frame_s_ipv4 = payload
                    .get(ethernet::HEADER_LEN..)
                    .and_then(|ip| ipv4::Packet::new_checked(ip).ok())
                    .is_some_and(|ip| ip.checksum_holds());
                accounted && !frame_s_ipv4
            }
            _ => false,
        }
    }

    fn by_ethertype(&mut self, mut ethertype: u16, mut payload: &'a [u8]) -> Outcome {
        // Each tag consumes bytes, so the loop ends at the latest when the
        // frame runs out ("stacked to any depth" is bounded by the frame).
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
                ethertype::VN_TAG | ethertype::E_TAG | ethertype::CISCO_METADATA => {
                    let len = tags::tag_len(ethertype).unwrap_or(0);
                    let tag =
                        tags::Tag::new_checked(ethertype, payload).unwrap_or(Err(LenError {
                            layer: Layer::Tag,
                            required: len,
                            available: payload.len(),
                        }))?;
                    ethertype = tag.ethertype();
                    payload = &payload[len..];
                }
                ethertype::FABRICPATH => {
                    fabricpath::Header::new_checked(payload)?;
                    // The original frame, whole, as a switch tag: counted
                    // on the wire like a VLAN tag.
                    self.enter(Layer::Tag)?;
                    return self.ethernet(&payload[fabricpath::TAG_LEN..]);
                }
                ethertype::IPV4 => return self.ipv4(payload),
                ethertype::IPV6 => return self.ipv6(payload),
                ethertype::PPPOE_SESSION => return self.pppoe(payload),
                ethertype::MPLS_UNICAST | ethertype::MPLS_MULTICAST => {
                    let entry = mpls::Entry::new_checked(payload)?;
                    payload = &payload[mpls::ENTRY_LEN..];
                    if entry.bottom_of_stack() {
                        // No protocol field after the stack: guess from the
                        // version nibble, as every MPLS dissector does; else
                        // an Ethernet pseudowire (RFC 4448: EoMPLS, VPLS),
                        // its control word first if it has one (a first
                        // nibble 0), the customer's frame counted on the
                        // wire like the labels.
                        return match payload.first().map(|b| b >> 4) {
                            Some(4) | Some(6) if Self::ip_holds_up(payload) => {
                                self.by_version_nibble(payload)
                            }
                            Some(0)
                                if Self::looks_like_ethernet(&payload[4.min(payload.len())..]) =>
                            {
                                self.enter(Layer::Tag)?;
                                self.ethernet(&payload[4..])
                            }
                            _ if Self::looks_like_ethernet(payload) => {
                                self.enter(Layer::Tag)?;
                                self.ethernet(payload)
                            }
                            _ => NON_IP,
                        };
                    }
                }
                ethertype::ARP | ethertype::RARP => return Ok(Dissected::Other(OtherKind::Arp)),
                length if length <= ethernet::MAX_8023_LENGTH => return self.llc(payload),
                _ => return NON_IP,
            }
        }
    }

    fn pppoe(&mut self, payload: &'a [u8]) -> Outcome {
        pppoe::Session::new_checked(payload)?;
        // The session header, then the PPP protocol field.
        self.ppp(&payload[pppoe::HEADER_LEN - 2..])
    }

    fn ppp(&mut self, frame: &'a [u8]) -> Outcome {
        let ppp = ppp::Frame::new_checked(frame)?;
        let payload = within(frame, ppp.payload());
        match ppp.protocol() {
            ppp::protocol::IPV4 => self.ipv4(payload),
            ppp::protocol::IPV6 => self.ipv6(payload),
            ppp::protocol::MPLS_UNICAST => self.by_ethertype(ethertype::MPLS_UNICAST, payload),
            _ => NON_IP,
        }
    }

    fn chdlc(&mut self, frame: &'a [u8]) -> Outcome {
        let header = chdlc::Header::new_checked(frame)?;
        self.by_ethertype(header.protocol(), &frame[chdlc::HEADER_LEN..])
    }

    fn ieee80211(&mut self, frame: &'a [u8], padded: bool) -> Outcome {
        let mut wifi = ieee80211::Frame::new_checked(frame)?;
        if padded {
            wifi = wifi.padded();
        }
        match wifi.snap_payload()? {
            Some((ethertype, payload)) => self.by_ethertype(ethertype, within(frame, payload)),
            None => NON_IP,
        }
    }

    fn by_version_nibble(&mut self, packet: &'a [u8]) -> Outcome {
        match packet.first().map(|b| b >> 4) {
            Some(6) => self.ipv6(packet),
            Some(4) => self.ipv4(packet),
            Some(_) => Err(Malformed::new(MalformedReason::BadVersion, Layer::Ipv4)),
            None => Err(LenError {
                layer: Layer::Ipv4,
                required: 1,
                available: 0,
            }
            .into()),
        }
    }

    fn ipv4(&mut self, buf: &'a [u8]) -> Outcome {
        let ip = ipv4::Packet::new_checked(buf)?;
        self.note_ip(buf, ip.payload_len().map(|len| ip.header_len() + len));
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
        let payload = ip_payload(within(buf, ip.payload()), ip.payload_len());
        self.upper(Upper {
            protocol: ip.protocol(),
            src: Addr::from_v4(ip.source()),
            dst: Addr::from_v4(ip.destination()),
            payload,
            payload_len: ip.payload_len(),
            header_len: ip.header_len(),
            fragment,
            fragment_offset: ip.fragment_offset(),
            layer: Layer::Ipv4,
        })
    }

    fn ipv6(&mut self, buf: &'a [u8]) -> Outcome {
        let ip = ipv6::Packet::new_checked(buf)?;
        // Zero: a jumbogram or a GSO super-packet, its length unknown.
        let len = Some(usize::from(ip.payload_len())).filter(|&len| len != 0);
        self.note_ip(buf, len.map(|len| ipv6::HEADER_LEN + len));
        let walked = ip.upper_layer()?;
        let fragment = match walked.fragment {
            Some(f) if f.offset != 0 => Fragment::Later {
                ident: f.ident,
                last: !f.more,
            },
            Some(f) if f.more => Fragment::First { ident: f.ident },
            _ => Fragment::Whole,
        };
        let (Some(src), Some(dst)) = (
            Addr::of_ipv6_packet(ip.source()),
            Addr::of_ipv6_packet(ip.destination()),
        ) else {
            return Err(Malformed::new(MalformedReason::BadAddress, Layer::Ipv6));
        };
        let payload = ip_payload(within(buf, walked.payload), walked.payload_len);
        self.upper(Upper {
            protocol: walked.protocol,
            src,
            dst,
            payload,
            payload_len: walked.payload_len,
            header_len: offset_in(buf, walked.payload),
            fragment,
            fragment_offset: walked.fragment.map_or(0, |f| f.offset),
            layer: Layer::Ipv6,
        })
    }

    fn upper(&mut self, ip: Upper<'a>) -> Outcome {
        let later = matches!(ip.fragment, Fragment::Later { .. });
        let proto = match ip.protocol {
            ip_proto::TCP => L4Proto::Tcp,
            ip_proto::UDP => L4Proto::Udp,
            ip_proto::ICMP | ip_proto::ICMPV6 => {
                let v6 = ip.protocol == ip_proto::ICMPV6;
                return Ok(match icmp::refused_tcp(ip.payload, v6) {
                    Some(quoted) if !later => Dissected::Refusal(quoted),
                    _ => Dissected::Other(OtherKind::Icmp),
                });
            }
            ip_proto::IPV4_IN_IP | ip_proto::IPV6_IN_IP | ip_proto::GRE if later => {
                self.later_fragment(&ip);
                return IP_OTHER;
            }
            ip_proto::IPV4_IN_IP | ip_proto::IPV6_IN_IP => {
                // Tunnelled IP: the flow is the innermost one, as tshark keys it.
                self.tunnel(Encap::IpInIp, &ip)?;
                return if ip.protocol == ip_proto::IPV4_IN_IP {
                    self.ipv4(ip.payload)
                } else {
                    self.ipv6(ip.payload)
                };
            }
            // ERSPAN rides GRE, and is switched off on its own.
            ip_proto::GRE if self.decap.gre || self.decap.erspan => return self.gre(&ip),
            // IPv6 walks past it with its extension headers.
            ip_proto::AH if ip.layer == Layer::Ipv4 && !later => return self.after_ah(ip),
            _ => return IP_OTHER,
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
            ip_len: 0,
            fragment: ip.fragment,
        };
        // What follows the IP header by its length fields; by what was captured
        // where they do not say (a segmentation offload's zero length, a
        // fragment whose datagram continues).
        let ip_payload = ip.payload_len.unwrap_or(ip.payload.len());
        transport.ip_len = u32::try_from(ip.header_len + ip_payload).unwrap_or(u32::MAX);
        // A packet inside a tunnel whose datagram was fragmented: this frame
        // carries its start, the later fragments the rest.
        if let Some(TunnelFragment {
            later: None,
            ends_at,
            ..
        }) = self.carried.fragment
        {
            let starts_at = self.offset(ip.payload).saturating_sub(ip.header_len as u32);
            transport.ip_len = transport.ip_len.min(ends_at.saturating_sub(starts_at));
        }
        match ip.fragment {
            Fragment::Later { .. } | Fragment::Continued => {
                if proto == L4Proto::Udp {
                    self.later_fragment(&ip);
                }
                transport.payload_len = clamp32(ip_payload);
            }
            Fragment::First { .. } | Fragment::Whole => {
                // A first fragment's TCP header may continue in the next fragment,
                // so the segment length only bounds the header of a whole segment.
                let extent = match ip.fragment {
                    Fragment::Whole => tcp::Extent::Whole(ip.payload_len),
                    _ => tcp::Extent::FirstFragment,
                };
                match proto {
                    L4Proto::Tcp => {
                        let seg = tcp::Packet::new_checked(ip.payload, extent)?;
                        transport.src_port = seg.src_port();
                        transport.dst_port = seg.dst_port();
                        transport.tcp_flags = seg.flags();
                        transport.tcp_seq = seg.seq_number();
                        transport.tcp_ack = seg.ack_number();
                        transport.tcp_window = seg.window();
                        transport.payload_len =
                            clamp32(ip_payload.saturating_sub(seg.header_len()));
                    }
                    L4Proto::Udp => {
                        let datagram_len = match ip.fragment {
                            Fragment::Whole => ip.payload_len,
                            _ => None,
                        };
                        let dgram = udp::Packet::new_checked(
                            ip.payload,
                            datagram_len,
                            ip.layer == Layer::Ipv6,
                        )?;
                        transport.src_port = dgram.src_port();
                        transport.dst_port = dgram.dst_port();
                        transport.payload_len = clamp32(ip_payload.saturating_sub(udp::HEADER_LEN));
                        if self.decap.is_udp_tunnel_port(dgram.dst_port())
                            && let Some(inner) = self.udp_tunnel(&ip, dgram.dst_port())
                        {
                            return inner;
                        }
                    }
                }
            }
        }
        Ok(Dissected::Transport(transport))
    }

    /// What an IPv4 Authentication Header (RFC 4302) protects: its length
    /// is in 32-bit words, less two.
    #[inline(never)]
    fn after_ah(&mut self, ip: Upper<'a>) -> Outcome {
        let p = ip.payload;
        let len = ah::header_len(p, Layer::Ipv4)?;
        self.enter(Layer::Ipv4)?;
        self.upper(Upper {
            protocol: p[0],
            payload: &p[len..],
            payload_len: ip.payload_len.map(|l| l.saturating_sub(len)),
            header_len: ip.header_len + len,
            ..ip
        })
    }

    /// The tunnel a UDP datagram to `port` carries, if it is one. Out of
    /// line: most datagrams are not tunnels.
    #[inline(never)]
    fn udp_tunnel(&mut self, ip: &Upper<'a>, port: u16) -> Option<Outcome> {
        let payload = &ip.payload[udp::HEADER_LEN..];
        // A datagram shorter than a GENEVE or GTP-U header (by its length
        // fields, not a snap length's cut) is not one: it stays the UDP
        // flow it is.
        let datagram_len = ip
            .payload_len
            .unwrap_or(ip.payload.len())
            .saturating_sub(udp::HEADER_LEN);
        if self.decap.vxlan.contains(port) {
            // A header the snap length cut stays the UDP flow it is, as
            // tshark counts it.
            let header = vxlan::Header::new_checked(payload).ok()?;
            if !header.has_vni() {
                return None;
            }
            let vni = header.vni();
            let inner = &payload[vxlan::HEADER_LEN..];
            // VXLAN-GPE (port 4790) says what it carries; elsewhere its
            // flag is a reserved bit, which RFC 7348 ignores on receipt.
            let next_protocol = header.next_protocol().filter(|_| port == vxlan::GPE_PORT);
            return Some(
                self.tunnel(Encap::Vxlan, ip)
                    .and_then(|()| match next_protocol {
                        None | Some(vxlan::NEXT_ETHERNET) => {
                            self.ethernet_in(Encap::Vxlan, Some(vni), inner)
                        }
                        Some(vxlan::NEXT_IPV4) => self.ipv4(inner),
                        Some(vxlan::NEXT_IPV6) => self.ipv6(inner),
                        Some(vxlan::NEXT_MPLS) => self.by_ethertype(ethertype::MPLS_UNICAST, inner),
                        Some(_) => NON_IP,
                    }),
            );
        }
        if self.decap.geneve.contains(port) && datagram_len >= geneve::FIXED_LEN {
            // A datagram whose version is not GENEVE's is not GENEVE: it
            // stays the UDP flow it is.
            let header = match geneve::Header::new_checked(payload) {
                Err(geneve::Error::Version(_)) => return None,
                // A header the snap length cut (its options within the
                // datagram, not all captured) stays the UDP flow it is, as
                // a cut VXLAN header does and tshark counts it; options
                // past the datagram's end are malformed.
                Err(geneve::Error::Len(_))
                    if payload.len() < datagram_len
                        && payload.first().is_none_or(|b| {
                            geneve::FIXED_LEN + usize::from(b & 0x3f) * 4 <= datagram_len
                        }) =>
                {
                    return None;
                }
                other => other,
            };
            return Some(self.tunnel(Encap::Geneve, ip).and_then(|()| {
                let header = header?;
                let inner = &payload[header.header_len()..];
                match header.protocol() {
                    ethertype::TEB => self.ethernet_in(Encap::Geneve, Some(header.vni()), inner),
                    other => self.by_ethertype(other, inner),
                }
            }));
        }
        if self.decap.tzsp.contains(port) && datagram_len >= tzsp::FIXED_LEN {
            // Not version 1, or a keep-alive or configuration message
            // without a frame: the UDP flow it is.
            let header = tzsp::Header::new_checked(payload);
            match &header {
                Err(tzsp::Error::Version(_)) => return None,
                Ok(h) if !h.carries_a_frame() => return None,
                _ => {}
            }
            return Some(self.tunnel(Encap::Tzsp, ip).and_then(|()| {
                let header = header?;
                let frame = &payload[header.header_len()..];
                match header.encapsulation() {
                    tzsp::ENCAP_ETHERNET => self.ethernet_in(Encap::Tzsp, None, frame),
                    tzsp::ENCAP_RAW_IP => self.ip_in(Encap::Tzsp, None, frame),
                    // 802.11 and the others, which RouterOS does not send.
                    _ => NON_IP,
                }
            }));
        }
        if self.decap.gtpu.contains(port) && datagram_len >= gtpu::FIXED_LEN {
            // Only a G-PDU carries user traffic; the tunnel's own messages
            // (echo, error indication) and datagrams that are not GTP
            // version 1 are the UDP flow they are.
            let header = gtpu::Header::new_checked(payload);
            match &header {
                Err(gtpu::Error::Version(_)) => return None,
                Ok(h) if h.message_type() != gtpu::MESSAGE_G_PDU => return None,
                _ => {}
            }
            return Some(self.tunnel(Encap::Gtpu, ip).and_then(|()| {
                let header = header?;
                let pdu = &payload[header.header_len()..];
                match pdu.first().map(|b| b >> 4) {
                    Some(4) | Some(6) if Self::ip_holds_up(pdu) => self.by_version_nibble(pdu),
                    // A 5G Ethernet PDU session's frame; else not IP.
                    _ if Self::looks_like_ethernet(pdu) => self.ethernet(pdu),
                    _ => NON_IP,
                }
            }));
        }
        None
    }

    #[inline(never)]
    fn gre(&mut self, ip: &Upper<'a>) -> Outcome {
        let header = match gre::Header::new_checked(ip.payload) {
            Ok(h) => h,
            // Cut short, it may be no ERSPAN: with GRE not opened, the
            // packet of the GRE flow.
            Err(gre::Error::Len(_)) if !self.decap.gre => return IP_OTHER,
            Err(gre::Error::Len(len)) => return Err(len.into()),
            Err(gre::Error::Unsupported) => return IP_OTHER,
        };
        let inner = &ip.payload[header.header_len()..];
        match header.protocol() {
            ethertype::ERSPAN_II | ethertype::ERSPAN_III if !self.decap.erspan => IP_OTHER,
            ethertype::ERSPAN_II if !header.has(gre::flags::SEQUENCE) => {
                // Type I: no header of its own, the frame right after GRE.
                self.tunnel(Encap::ErspanI, ip)?;
                self.ethernet_in(Encap::ErspanI, None, inner)
            }
            ethertype::ERSPAN_II | ethertype::ERSPAN_III => {
                let (encap, version) = if header.protocol() == ethertype::ERSPAN_II {
                    (Encap::ErspanII, erspan::VERSION_II)
                } else {
                    (Encap::ErspanIII, erspan::VERSION_III)
                };
                self.tunnel(encap, ip)?;
                let span = erspan::Header::new_checked(inner, version)?;
                let session = Some(u32::from(span.session_id()));
                let mirrored = &inner[span.header_len()..];
                match span.frame_type() {
                    erspan::FrameType::Ethernet => self.ethernet_in(encap, session, mirrored),
                    // An IP packet mirrored without its link header: a
                    // copy from another wire all the same.
                    erspan::FrameType::Ip => self.ip_in(encap, session, mirrored),
                    erspan::FrameType::Other(_) => NON_IP,
                }
            }
            // `--no-decap gre` leaves ERSPAN open, and every other GRE
            // packet the packet of the GRE flow.
            _ if !self.decap.gre => IP_OTHER,
            ethertype::TEB => {
                self.tunnel(Encap::Gre, ip)?;
                self.ethernet_in(Encap::Gre, header.key(), inner)
            }
            // A PPTP acknowledgement alone carries no PPP frame (RFC 2637
            // §4.4: the key's upper half, the payload length, is 0): a
            // packet of the GRE flow, as any not opened.
            ethertype::PPP
                if header.version() == 1 && header.key().is_some_and(|k| k >> 16 == 0) =>
            {
                IP_OTHER
            }
            ethertype::PPP if header.version() == 1 => {
                self.tunnel(Encap::Gre, ip)?;
                self.ppp(inner)
            }
            // IP, MPLS, and IP behind a Cisco MetaData tag (DMVPN with
            // TrustSec inline tagging; anything else behind one stays the
            // GRE packet's, as before): the protocol field is the
            // payload's EtherType (RFC 2784 §2.4).
            ethertype::CISCO_METADATA
                if header.version() == 0
                    && !matches!(
                        tags::Tag::new_checked(ethertype::CISCO_METADATA, inner)
                            .and_then(Result::ok)
                            .map(|tag| tag.ethertype()),
                        Some(ethertype::IPV4 | ethertype::IPV6)
                    ) =>
            {
                IP_OTHER
            }
            ethertype::IPV4
            | ethertype::IPV6
            | ethertype::MPLS_UNICAST
            | ethertype::MPLS_MULTICAST
            | ethertype::CISCO_METADATA
                if header.version() == 0 =>
            {
                self.tunnel(Encap::Gre, ip)?;
                self.by_ethertype(header.protocol(), inner)
            }
            _ => IP_OTHER,
        }
    }

    /// Enters a tunnel that `ip` carries: counts the nesting, names the
    /// outermost encapsulation, and marks a fragmented carrier.
    fn tunnel(&mut self, encap: Encap, ip: &Upper<'a>) -> Result<(), Malformed> {
        self.enter(ip.layer)?;
        self.carried.encap.get_or_insert(encap);
        if let Fragment::First { ident } = ip.fragment
            && self.carried.fragment.is_none()
        {
            self.carried.fragment = Some(TunnelFragment {
                id: FragmentId {
                    src: ip.src,
                    dst: ip.dst,
                    ident,
                    protocol: ip.protocol,
                },
                later: None,
                payload_len: 0,
                offset: 0,
                ends_at: self
                    .offset(ip.payload)
                    .saturating_add(ip.payload_len.unwrap_or(ip.payload.len()) as u32),
            });
        }
        Ok(())
    }

    /// A later fragment of a datagram that may carry a tunnel: the ingest
    /// path looks up its first fragment.
    fn later_fragment(&mut self, ip: &Upper<'a>) {
        if let Fragment::Later { ident, last } = ip.fragment
            && self.carried.fragment.is_none()
        {
            self.carried.fragment = Some(TunnelFragment {
                id: FragmentId {
                    src: ip.src,
                    dst: ip.dst,
                    ident,
                    protocol: ip.protocol,
                },
                later: Some(last),
                payload_len: ip.payload_len.unwrap_or(ip.payload.len()) as u32,
                offset: ip.fragment_offset,
                ends_at: 0,
            });
        }
    }

    /// A whole Ethernet frame inside `encap`: counted as that frame.
    fn ethernet_in(&mut self, encap: Encap, id: Option<u32>, frame: &'a [u8]) -> Outcome {
        self.mirrored(encap, id, frame);
        self.ethernet(frame)
    }

    /// An IP packet mirrored without its link header (ERSPAN type III,
    /// TZSP's raw IP), counted as that packet.
    fn ip_in(&mut self, encap: Encap, id: Option<u32>, packet: &'a [u8]) -> Outcome {
        self.mirrored(encap, id, packet);
        self.by_version_nibble(packet)
    }

    /// `frame` is a copy of a frame from another wire that `encap` (with
    /// session `id`) carried: counted as that frame, not the one captured.
    fn mirrored(&mut self, encap: Encap, id: Option<u32>, frame: &'a [u8]) {
        self.carried.mirror.get_or_insert(Mirror { encap, id });
        self.carried.outer_len = self.offset(frame);
        self.carried.trailer_len = (self.frame.len() as u32)
            .saturating_sub(self.carried.outer_len)
            .saturating_sub(frame.len() as u32);
    }

    /// The frame after a capture-direction byte, if there is one
    /// (PPP_WITH_DIR, C_HDLC_WITH_DIR): the capture's, no byte of the
    /// wire's, so not counted (tshark's frame length leaves it out).
    fn skip_direction(
        &mut self,
        frame: &'a [u8],
        direction_byte: bool,
    ) -> Result<&'a [u8], Malformed> {
        if !direction_byte {
            return Ok(frame);
        }
        let after = frame.get(1..).ok_or(LenError {
            layer: Layer::Link,
            required: 1,
            available: 0,
        })?;
        self.carried.outer_len = 1;
        Ok(after)
    }

    fn enter(&mut self, layer: Layer) -> Result<(), Malformed> {
        self.depth += 1;
        if self.depth >= MAX_NESTING {
            return Err(Malformed::new(MalformedReason::HeaderChainTooLong, layer));
        }
        Ok(())
    }

    /// An IP header, the innermost so far, and its packet's length if its
    /// header says it.
    fn note_ip(&mut self, header: &'a [u8], len: Option<usize>) {
        self.carried.ip_offset = Some(self.offset(header));
        self.carried.ip_len = len.and_then(|len| u32::try_from(len).ok());
    }

    /// Where `part` (a slice of the frame) starts in the frame.
    fn offset(&self, part: &[u8]) -> u32 {
        (part.as_ptr() as usize).saturating_sub(self.frame.as_ptr() as usize) as u32
    }
}

/// `part`, a slice a header view handed out of `buf`, with `buf`'s own
/// lifetime (views lend their bytes for as long as they live; the walk
/// keeps going after them).
fn within<'a>(buf: &'a [u8], part: &[u8]) -> &'a [u8] {
    let start = offset_in(buf, part);
    buf.get(start..start.saturating_add(part.len()))
        .unwrap_or_default()
}

/// Where `part`, a slice of `buf`, starts in it.
fn offset_in(buf: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize)
}

/// What an IP header's lengths say follows it, of what was captured: not
/// the Ethernet padding or a trailer after the datagram (a packet broker's
/// timestamp, a kept FCS), which would otherwise be read as transport or
/// tunnel bytes (RFC 791's Total Length, RFC 8200's Payload Length). A
/// length that is not known (0: a GSO super-packet) or that runs past the
/// capture (a snap length) leaves what was captured.
fn ip_payload(captured: &[u8], len: Option<usize>) -> &[u8] {
    match len {
        Some(len) if len < captured.len() => &captured[..len],
        _ => captured,
    }
}

/// A cooked header's payload.
fn sll_payload(frame: &[u8], header_len: usize) -> &[u8] {
    &frame[header_len.min(frame.len())..]
}

fn clamp32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::decap::Tunnel;
    use super::super::{erspan, gre, gtpu, ipv4, ipv6, tcp, udp};
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

    /// A GSO/GRO super-packet captured on the host (BIG TCP): IP length 0,
    /// its payload past 64 KiB counted whole (it was cut to 65,535, so
    /// the retransmission of its tail went unseen).
    #[test]
    fn a_segment_past_64_kib_with_ip_length_0_is_whole() {
        let mut f = eth(0x0800);
        f.extend(ipv4::tests::header(6, 0, 0));
        f.extend(tcp::tests::header(40000, 80, tcp::flags::ACK));
        f.resize(f.len() + 100_000, 0);
        let t = transport(dissect(LinkType::Ethernet, &f).unwrap());
        assert_eq!((t.payload_len, t.ip_len), (100_000, 100_040));
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

    /// A final Destination Unreachable quoting a TCP segment is that
    /// segment's refusal, its sender the quoted source; a later fragment of
    /// an ICMP datagram is not read as one.
    #[test]
    fn an_icmp_port_unreachable_quoting_tcp_is_a_refusal() {
        let icmp = |frag_word: u16| {
            let mut f = eth(0x0800);
            f.extend(ipv4::tests::header(1, 68, frag_word));
            f.extend([3, 3, 0, 0, 0, 0, 0, 0]);
            f.extend(ipv4_tcp(tcp::flags::SYN));
            f
        };
        let quoted = icmp::QuotedTcp {
            src: Addr::from_v4([198, 18, 0, 1]),
            dst: Addr::from_v4([198, 19, 0, 2]),
            src_port: 40000,
            dst_port: 80,
            seq: 1000,
        };
        assert_eq!(
            dissect(LinkType::Ethernet, &icmp(0)),
            Ok(Dissected::Refusal(quoted))
        );
        assert_eq!(
            dissect(LinkType::Ethernet, &icmp(10)),
            Ok(Dissected::Other(OtherKind::Icmp))
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

        // Fragments of 16 bytes (`nmap -ff`): the first holds the header up
        // to the window, the next its checksum and urgent pointer.
        let mut first = eth(0x0800);
        first.extend(ipv4::tests::header(6, 36, 0x2000));
        first.extend(&tcp::tests::header(12345, 80, tcp::flags::SYN)[..16]);
        let t = transport(dissect(LinkType::Ethernet, &first).unwrap());
        assert_eq!(t.fragment, Fragment::First { ident: 0x1234 });
        assert_eq!((t.src_port, t.dst_port), (12345, 80));
        assert_eq!(
            (t.tcp_flags, t.tcp_seq, t.ip_len),
            (tcp::flags::SYN, 1000, 36)
        );
        // Eight (no flags): RFC 1858's tiny fragment.
        let mut tiny = eth(0x0800);
        tiny.extend(ipv4::tests::header(6, 28, 0x2000));
        tiny.extend(&tcp::tests::header(12345, 80, tcp::flags::SYN)[..8]);
        assert_eq!(
            dissect(LinkType::Ethernet, &tiny).unwrap_err().reason,
            MalformedReason::Truncated
        );
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

        // UDP with no room for its header: a length field of 4 (tshark:
        // "Bad length value 4 < 8", no conversation), or an IP header
        // stating 4 bytes after it in a padded frame (not cut off).
        let mut f = eth(0x0800);
        let mut ip = ipv4::tests::header(17, 28, 0);
        let mut dgram = udp::tests::header(5353, 53);
        dgram[4..6].copy_from_slice(&4u16.to_be_bytes());
        ip.extend(dgram);
        f.extend(&ip);
        assert_eq!(
            reason(LinkType::Ethernet, &f),
            MalformedReason::BadHeaderLength
        );
        let mut f = eth(0x0800);
        let mut ip = ipv4::tests::header(17, 24, 0);
        ip.extend(udp::tests::header(5353, 53));
        f.extend(&ip);
        f.resize(60, 0);
        assert_eq!(
            reason(LinkType::Ethernet, &f),
            MalformedReason::BadHeaderLength
        );

        let mut f = eth(0x86dd);
        f.extend(ipv6::tests::header(6, 20));
        f[14] = 0x70;
        assert_eq!(reason(LinkType::Ethernet, &f), MalformedReason::BadVersion);

        // An IPv4-mapped IPv6 source, or destination: never on the wire.
        for at in [8, 24] {
            let mut ip = ipv6::tests::header(6, 20);
            ip[at..at + 16].copy_from_slice(&Addr::from_v4([198, 18, 0, 5]).0);
            ip.extend(tcp::tests::header(40000, 5432, tcp::flags::SYN));
            assert_eq!(reason(LinkType::Raw, &ip), MalformedReason::BadAddress);
        }
        let mut ip = ipv6::tests::header(6, 20);
        ip.extend(tcp::tests::header(40000, 5432, tcp::flags::SYN));
        assert!(dissect(LinkType::Raw, &ip).is_ok());

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
        for _ in 0..MAX_NESTING {
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

    fn ipv4_over(protocol: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = eth(0x0800);
        let mut ip = ipv4::tests::header(protocol, 20 + payload.len() as u16, 0);
        ip[12..20].copy_from_slice(&[198, 18, 9, 1, 198, 18, 9, 2]);
        f.extend(ip);
        f.extend_from_slice(payload);
        f
    }

    /// An Ethernet frame (with one VLAN tag) carrying IPv4/TCP.
    fn inner_frame() -> Vec<u8> {
        let mut f = eth(0x8100);
        f.extend_from_slice(&[0, 7, 0x08, 0x00]);
        f.extend(ipv4_tcp(tcp::flags::SYN));
        f
    }

    fn carried(f: &[u8]) -> (Transport, Carried) {
        let d = Dissector::default().dissect(LinkType::Ethernet, f);
        (transport(d.result.unwrap()), d.carried)
    }

    /// MikroTik's sniffer streaming: the frame after TZSP's tags is a
    /// mirrored one (Ethernet, or an IP packet alone); a keep-alive, another
    /// version or the encapsulation turned off is the UDP flow it is.
    #[test]
    fn tzsp_carries_a_mirrored_frame() {
        let inner = inner_frame();
        let over = |tzsp: &[u8], frame: &[u8]| {
            let mut udp = udp::tests::header(50000, 37008);
            udp.extend_from_slice(tzsp);
            udp.extend_from_slice(frame);
            ipv4_over(17, &udp)
        };
        let mirror = Some(Mirror {
            encap: Encap::Tzsp,
            id: None,
        });
        // As RouterOS sends it, and with tags before END.
        for tzsp in [&[1, 0, 0, 1, 1][..], &[1, 0, 0, 1, 0, 11, 1, 0x20, 1]] {
            let f = over(tzsp, &inner);
            let (t, c) = carried(&f);
            assert_eq!((t.src_port, t.dst_port, c.mirror), (40000, 80, mirror));
            assert_eq!(c.encap, Some(Encap::Tzsp));
            assert_eq!(f.len() as u32 - c.outer_len, inner.len() as u32);
        }
        // An IP packet alone.
        let packet = ipv4_tcp(0);
        let f = over(&[1, 0, 0, 7, 1], &packet);
        let (t, c) = carried(&f);
        assert_eq!((t.dst_port, c.mirror), (80, mirror));
        assert_eq!(f.len() as u32 - c.outer_len, packet.len() as u32);
        // Not a frame, or not TZSP: the datagram to 37008.
        for tzsp in [&[1, 4, 0, 1][..], &[1, 5, 0, 1], &[2, 0, 0, 1, 1]] {
            let (t, c) = carried(&over(tzsp, &inner));
            assert_eq!((t.proto, t.dst_port, c.mirror), (L4Proto::Udp, 37008, None));
        }
        let off = Dissector::new(Decap::DEFAULT.without(Tunnel::Tzsp));
        let d = off.dissect(LinkType::Ethernet, &over(&[1, 0, 0, 1, 1], &inner));
        assert_eq!(
            (transport(d.result.unwrap()).dst_port, d.carried.mirror),
            (37008, None)
        );
        // Tags cut short by the snap length.
        let d = Dissector::default().dissect(LinkType::Ethernet, &over(&[1, 0, 0, 1, 0, 11], &[]));
        let e = d.result.unwrap_err();
        assert_eq!(
            (e.reason, e.layer),
            (MalformedReason::Truncated, Layer::Tzsp)
        );
    }

    #[test]
    fn vxlan_and_geneve_carry_a_mirrored_frame() {
        let inner = inner_frame();
        let mut udp = udp::tests::header(50000, 4789);
        udp.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 12, 0]);
        udp.extend(&inner);
        let f = ipv4_over(17, &udp);
        let (t, c) = carried(&f);
        assert_eq!((t.src_port, t.dst_port), (40000, 80));
        assert_eq!(
            c.mirror,
            Some(Mirror {
                encap: Encap::Vxlan,
                id: Some(12)
            })
        );
        assert_eq!(c.encap, Some(Encap::Vxlan));
        assert_eq!(f.len() as u32 - c.outer_len, inner.len() as u32);
        assert_eq!(c.ip_offset, Some(c.outer_len + 18), "the inner IP header");

        // A mirror session of a node on a VXLAN overlay (Flannel, Cilium):
        // the session is the outermost, not the overlay's VNI inside it (a
        // Cilium VNI is a security identity: hundreds of them).
        let mut overlay = udp::tests::header(50000, 4789);
        overlay.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 1, 0]);
        overlay.extend(&inner);
        let mut node_frame = vec![0x02; 12];
        node_frame.extend_from_slice(&[0x08, 0x00]);
        node_frame.extend(&ipv4_over(17, &overlay)[14..]);
        let mut session = udp::tests::header(50000, 4789);
        session.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 12, 0]);
        session.extend(&node_frame);
        let (t, c) = carried(&ipv4_over(17, &session));
        assert_eq!(t.dst_port, 80);
        assert_eq!(c.mirror.and_then(|m| m.id), Some(12));

        // A trailer after the outer datagram (a packet broker's timestamp,
        // a kept FCS) is not part of the mirrored frame.
        let mut trailed = f.clone();
        trailed.extend([0xee; 16]);
        let (t, c) = carried(&trailed);
        assert_eq!((t.dst_port, c.trailer_len), (80, 16));
        assert_eq!(
            trailed.len() as u32 - c.outer_len - c.trailer_len,
            inner.len() as u32
        );

        // Without the VNI flag it is just a datagram to port 4789.
        let mut plain = f.clone();
        plain[14 + 20 + 8] = 0;
        let (t, c) = carried(&plain);
        assert_eq!((t.proto, t.dst_port, c.mirror), (L4Proto::Udp, 4789, None));
        // Off, or on other ports, too.
        let off = Dissector::new(Decap::DEFAULT.without(Tunnel::Vxlan));
        assert!(off.dissect(LinkType::Ethernet, &f).carried.encap.is_none());

        let mut udp = udp::tests::header(50000, 6081);
        udp.extend_from_slice(&[0x01, 0, 0x65, 0x58, 0, 0, 9, 0, 1, 2, 3, 0]);
        udp.extend(&inner);
        let (t, c) = carried(&ipv4_over(17, &udp));
        assert_eq!(t.dst_port, 80);
        assert_eq!(
            c.mirror,
            Some(Mirror {
                encap: Encap::Geneve,
                id: Some(9)
            })
        );
        // GENEVE carrying IP is a tunnel, not a mirror.
        let mut udp = udp::tests::header(50000, 6081);
        udp.extend_from_slice(&[0, 0, 0x08, 0x00, 0, 0, 9, 0]);
        udp.extend(ipv4_tcp(0));
        let (t, c) = carried(&ipv4_over(17, &udp));
        assert_eq!(
            (t.dst_port, c.mirror, c.encap),
            (80, None, Some(Encap::Geneve))
        );
        assert_eq!(c.outer_len, 0);
        // A GENEVE header whose options a snap length cut is the UDP flow
        // it is, as a cut VXLAN header (it was malformed); options past the
        // datagram's end are malformed.
        let mut udp = udp::tests::header(50000, 6081);
        udp.extend_from_slice(&[0x02, 0, 0x65, 0x58, 0, 0, 9, 0, 1, 2, 3, 0, 4, 5, 6, 0]);
        udp.extend(&inner);
        let whole = ipv4_over(17, &udp);
        let cut = &whole[..14 + 20 + 8 + 8 + 4];
        let cut_read = Dissector::default().dissect(LinkType::Ethernet, cut);
        match cut_read.result {
            Ok(Dissected::Transport(t)) => {
                assert_eq!((t.proto, t.dst_port), (L4Proto::Udp, 6081));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cut_read.carried.encap, None);
        let mut past_end = udp::tests::header(50000, 6081);
        past_end.extend_from_slice(&[0x3f, 0, 0x65, 0x58, 0, 0, 9, 0]);
        let read = Dissector::default().dissect(LinkType::Ethernet, &ipv4_over(17, &past_end));
        assert!(read.result.is_err(), "{read:?}");
        // So are they where a snap length cut the datagram too.
        past_end.extend([0u8; 20]);
        let whole = ipv4_over(17, &past_end);
        let read = Dissector::default().dissect(LinkType::Ethernet, &whole[..14 + 20 + 8 + 10]);
        assert!(read.result.is_err(), "{read:?}");
        // A datagram shorter than GENEVE's or GTP-U's header is the UDP
        // flow it is (it was a truncated GENEVE header).
        for port in [6081, 2152, 4789] {
            let mut short = udp::tests::header(50000, port);
            short.extend_from_slice(&[1, 2, 3, 4]);
            let (t, c) = carried(&ipv4_over(17, &short));
            assert_eq!((t.proto, t.dst_port, c.encap), (L4Proto::Udp, port, None));
        }
    }

    #[test]
    fn gre_and_erspan_by_protocol_and_flags() {
        let inner = inner_frame();
        // Cisco MetaData: version, length, option type, group tag 5, then
        // IPv4.
        let metadata = [0x01, 0x01, 0x00, 0x01, 0x00, 0x05, 0x08, 0x00];
        let cases: [(Vec<u8>, Option<Mirror>, Encap); 6] = [
            (
                gre::tests::header(0x6558, Some(5), false, true),
                Some(Mirror {
                    encap: Encap::Gre,
                    id: Some(5),
                }),
                Encap::Gre,
            ),
            (
                gre::tests::header(0x88be, None, false, false),
                Some(Mirror {
                    encap: Encap::ErspanI,
                    id: None,
                }),
                Encap::ErspanI,
            ),
            (
                [
                    gre::tests::header(0x88be, None, true, false),
                    erspan::tests::header(erspan::VERSION_II, 33, false),
                ]
                .concat(),
                Some(Mirror {
                    encap: Encap::ErspanII,
                    id: Some(33),
                }),
                Encap::ErspanII,
            ),
            (
                [
                    gre::tests::header(0x22eb, None, true, false),
                    erspan::tests::header(erspan::VERSION_III, 44, true),
                ]
                .concat(),
                Some(Mirror {
                    encap: Encap::ErspanIII,
                    id: Some(44),
                }),
                Encap::ErspanIII,
            ),
            (
                gre::tests::header(0x0800, Some(1), true, false),
                None,
                Encap::Gre,
            ),
            (
                [
                    gre::tests::header(0x8909, None, false, false),
                    metadata.to_vec(),
                ]
                .concat(),
                None,
                Encap::Gre,
            ),
        ];
        for (header, mirror, encap) in cases {
            let payload = if mirror.is_some() {
                inner.clone()
            } else {
                ipv4_tcp(0)
            };
            let f = ipv4_over(47, &[header.clone(), payload.clone()].concat());
            let (t, c) = carried(&f);
            assert_eq!(
                (t.dst_port, c.mirror, c.encap),
                (80, mirror, Some(encap)),
                "{header:x?}"
            );
            let counted = f.len() as u32 - c.outer_len;
            assert_eq!(
                counted as usize,
                if mirror.is_some() {
                    payload.len()
                } else {
                    f.len()
                }
            );
        }
        // Behind a Cisco MetaData tag, only IP is opened: anything else,
        // or a tag cut short, stays the GRE packet's.
        for tail in [
            &[0x01, 0x01, 0x00, 0x01, 0x00, 0x05, 0x08, 0x06][..],
            &[0x01, 0x01],
        ] {
            let f = ipv4_over(
                47,
                &[
                    gre::tests::header(0x8909, None, false, false),
                    tail.to_vec(),
                ]
                .concat(),
            );
            assert_eq!(
                Dissector::new(Decap::DEFAULT)
                    .dissect(LinkType::Ethernet, &f)
                    .result,
                Ok(Dissected::Other(OtherKind::IpOther))
            );
        }
        let off = Dissector::new(Decap::DEFAULT.without(Tunnel::Gre));
        let f = ipv4_over(
            47,
            &[gre::tests::header(0x6558, None, false, false), inner].concat(),
        );
        assert_eq!(
            off.dissect(LinkType::Ethernet, &f).result,
            Ok(Dissected::Other(OtherKind::IpOther))
        );
        // ERSPAN rides GRE but is switched off on its own: a switch's
        // mirror stays open when plain GRE tunnels are left closed, and the
        // other way round. A GRE header cut short is no ERSPAN either.
        let span = ipv4_over(
            47,
            &[
                gre::tests::header(0x88be, None, true, false),
                erspan::tests::header(erspan::VERSION_II, 33, false),
                inner_frame(),
            ]
            .concat(),
        );
        let opened = Dissector::new(Decap::DEFAULT.without(Tunnel::Gre))
            .dissect(LinkType::Ethernet, &span)
            .carried;
        assert_eq!(opened.encap, Some(Encap::ErspanII));
        let erspan_off = Dissector::new(Decap::DEFAULT.without(Tunnel::Erspan));
        assert_eq!(
            erspan_off.dissect(LinkType::Ethernet, &span).result,
            Ok(Dissected::Other(OtherKind::IpOther))
        );
        assert_eq!(
            off.dissect(LinkType::Ethernet, &ipv4_over(47, &[0x00, 0x00]))
                .result,
            Ok(Dissected::Other(OtherKind::IpOther))
        );
    }

    /// PPP_WITH_DIR's and C_HDLC_WITH_DIR's direction byte is the
    /// capture's: the frame counted is the one after it.
    #[test]
    fn a_capture_direction_byte_is_not_counted() {
        for (link, header) in [
            (204, &[0x00, 0x21][..]),
            (205, &[0x0f, 0x00, 0x08, 0x00][..]),
        ] {
            let link = LinkType::from_pcap(link).unwrap();
            let f = [&[1u8][..], header, &ipv4_tcp(0)].concat();
            let d = Dissector::default().dissect(link, &f);
            assert_eq!(transport(d.result.unwrap()).dst_port, 80);
            assert_eq!(d.carried.outer_len, 1, "{link:?}");
        }
    }

    #[test]
    fn gtpu_carries_ip_and_its_own_messages_are_udp() {
        let mut udp = udp::tests::header(2152, 2152);
        udp.extend(gtpu::tests::header(true));
        udp.extend(ipv4_tcp(0));
        let f = ipv4_over(17, &udp);
        let (t, c) = carried(&f);
        assert_eq!(
            (t.dst_port, c.encap, c.mirror, c.outer_len),
            (80, Some(Encap::Gtpu), None, 0)
        );
        let mut echo = udp::tests::header(2152, 2152);
        echo.extend_from_slice(&[0x32, 1, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0]);
        let (t, c) = carried(&ipv4_over(17, &echo));
        assert_eq!((t.dst_port, c.encap), (2152, None));
    }

    /// What the wire audit found counted as not IP, read as its
    /// specification defines it: an Ethernet pseudowire over MPLS with and
    /// without its control word (RFC 4448), 802.3 with an RFC 1042 SNAP
    /// header (untagged and tagged), IPv4 with an Authentication Header
    /// (RFC 4302), VXLAN-GPE carrying IPv4, and a GTP-U Ethernet PDU.
    #[test]
    fn pseudowires_snap_ah_gpe_and_ethernet_pdus_carry_their_flows() {
        let dst_port = |f: &[u8]| transport(dissect(LinkType::Ethernet, f).unwrap()).dst_port;
        let customer_frame = || {
            let mut f = vec![0x02u8; 12];
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend(ipv4_tcp(0));
            f
        };
        for control_word in [&[0u8, 0, 0, 7][..], &[]] {
            let mut f = eth(0x8847);
            f.extend_from_slice(&[0, 2, 1, 64]);
            f.extend_from_slice(control_word);
            f.extend(customer_frame());
            assert_eq!(dst_port(&f), 80, "control word {control_word:?}");
        }
        let snap = |f: &mut Vec<u8>| {
            f.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00]);
            f.extend(ipv4_tcp(0));
        };
        let mut untagged = eth(48);
        snap(&mut untagged);
        assert_eq!(dst_port(&untagged), 80);
        let mut tagged = eth(0x8100);
        tagged.extend_from_slice(&[0, 7, 0, 48]);
        snap(&mut tagged);
        assert_eq!(dst_port(&tagged), 80);
        let mut stp = eth(38);
        stp.extend_from_slice(&[0x42, 0x42, 0x03, 0, 0, 0, 0, 0]);
        assert_eq!(
            dissect(LinkType::Ethernet, &stp),
            Ok(Dissected::Other(OtherKind::NonIp))
        );

        let mut ah = vec![6u8, 4, 0, 0];
        ah.extend_from_slice(&[0; 20]);
        ah.extend(tcp::tests::header(40000, 80, 0));
        assert_eq!(dst_port(&ipv4_over(51, &ah)), 80);

        let mut gpe = udp::tests::header(50000, 4790);
        gpe.extend_from_slice(&[0x0c, 0, 0, vxlan::NEXT_IPV4, 0, 0, 9, 0]);
        gpe.extend(ipv4_tcp(0));
        let decap = Decap::DEFAULT
            .on_ports(Tunnel::Vxlan, &[4789, 4790])
            .unwrap();
        let d = Dissector::new(decap).dissect(LinkType::Ethernet, &ipv4_over(17, &gpe));
        assert_eq!(transport(d.result.unwrap()).dst_port, 80);
        // An MPLS label stack (a VPN's traffic), its bottom label then IP.
        let mut gpe = udp::tests::header(50000, 4790);
        gpe.extend_from_slice(&[0x0c, 0, 0, vxlan::NEXT_MPLS, 0, 0, 9, 0]);
        gpe.extend_from_slice(&[0, 2, 0, 64, 0, 3, 1, 64]);
        gpe.extend(ipv4_tcp(0));
        let d = Dissector::new(decap).dissect(LinkType::Ethernet, &ipv4_over(17, &gpe));
        assert_eq!(transport(d.result.unwrap()).dst_port, 80);

        let mut gtp = udp::tests::header(2152, 2152);
        gtp.extend(gtpu::tests::header(true));
        gtp.extend(customer_frame());
        assert_eq!(dst_port(&ipv4_over(17, &gtp)), 80);
    }

    /// A pseudowire without its control word and a GTP-U Ethernet PDU say
    /// nothing of what they carry, and a frame whose destination MAC starts
    /// with a 4 or a 6 (Apple's 4c:..., a locally administered 6a:...) has
    /// an IP version nibble (RFC 4928 §2): it is the Ethernet frame it is,
    /// and IP there whose start reads as Ethernet too is IP when its
    /// header holds up. VXLAN's reserved next-protocol bit is read only on
    /// VXLAN-GPE's port (RFC 7348: ignored on receipt). A PPTP
    /// acknowledgement alone carries no PPP frame to be malformed.
    #[test]
    fn payloads_that_read_both_as_ip_and_as_ethernet_are_told_apart() {
        let dissected = |f: &[u8]| dissect(LinkType::Ethernet, f);
        let dst_port = |f: &[u8]| transport(dissected(f).unwrap()).dst_port;
        let mpls = |payload: &[u8]| {
            let mut f = eth(0x8847);
            f.extend_from_slice(&[0, 2, 1, 64]);
            f.extend_from_slice(payload);
            f
        };
        let gtp = |payload: &[u8]| {
            let mut g = udp::tests::header(2152, 2152);
            g.extend(gtpu::tests::header(true));
            g.extend_from_slice(payload);
            ipv4_over(17, &g)
        };
        for mac in [0x4c, 0x6a, 0x02] {
            let mut frame = vec![mac; 12];
            frame.extend_from_slice(&[0x08, 0x00]);
            frame.extend(ipv4_tcp(0));
            assert_eq!(dst_port(&mpls(&frame)), 80, "MAC {mac:x} over MPLS");
            assert_eq!(dst_port(&gtp(&frame)), 80, "MAC {mac:x} in GTP-U");
        }
        // IPv4 from 8.0.69.x: bytes 12 to 14 read as IPv4's EtherType and
        // the start of an IPv4 header.
        let mut v4 = ipv4_tcp(0);
        v4[12..15].copy_from_slice(&[0x08, 0x00, 0x45]);
        let checksum = ipv4::header_checksum(&v4[..20]);
        v4[10..12].copy_from_slice(&checksum.to_be_bytes());
        assert_eq!(dst_port(&mpls(&v4)), 80);
        assert_eq!(dst_port(&gtp(&v4)), 80);
        // Without its checksum the same bytes are no IPv4 header: read as
        // a frame (whose own IP header is nothing like it).
        v4[10] ^= 1;
        let as_frame = dissected(&mpls(&v4));
        assert!(
            !matches!(as_frame, Ok(Dissected::Transport(t)) if t.dst_port == 80),
            "{as_frame:?}"
        );
        // From 8.0.0.x, where no IP header follows the would-be Ethernet
        // one, IP is read whatever its checksum.
        v4[14] = 0;
        assert_eq!(dst_port(&mpls(&v4)), 80);
        // IPv6 from 2001:db8:86dd::: its payload length decides.
        let mut v6 = ipv6::tests::header(6, 20);
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        v6.extend(tcp::tests::header(40000, 80, 0));
        assert_eq!(dst_port(&mpls(&v6)), 80);
        // Cut by a snap length: its length no longer fits, but the bytes
        // after the would-be Ethernet header are no IPv6 header.
        let mut cut = v6.clone();
        cut[4..6].copy_from_slice(&1400u16.to_be_bytes());
        assert_eq!(dst_port(&mpls(&cut)), 80);
        // Where they are (an address whose next byte starts with 6), the
        // length decides.
        v6[14] = 0x60;
        v6[4..6].copy_from_slice(&100u16.to_be_bytes());
        assert!(dissected(&mpls(&v6)).is_err());

        // IPv6 whose payload length says nothing (0: a jumbogram, an
        // offload's segment) is IPv6 all the same.
        let mut unsaid = v6.clone();
        unsaid[4..6].copy_from_slice(&0u16.to_be_bytes());
        unsaid.extend_from_slice(&[0; 100]);
        assert_eq!(dst_port(&mpls(&unsaid)), 80);

        // Frames to 6c:3e:6d:a1:00:08, whose bytes 4 and 5 read as an IPv6
        // payload length within the frame: one carrying IPv4 (its checksum
        // holds) and one carrying IPv6 with more bytes after it than any
        // trailer. Both are the frames they are.
        let to = [0x6c, 0x3e, 0x6d, 0xa1, 0x00, 0x08, 2, 2, 2, 2, 2, 2];
        let mut inner_v4 = ipv4_tcp(0);
        let checksum = ipv4::header_checksum(&inner_v4[..20]);
        inner_v4[10..12].copy_from_slice(&checksum.to_be_bytes());
        let mut inner_v6 = ipv6::tests::header(6, 220);
        inner_v6.extend(tcp::tests::header(40000, 80, 0));
        inner_v6.extend_from_slice(&[0; 200]);
        for (ethertype, ip) in [(0x0800u16, inner_v4), (0x86dd, inner_v6)] {
            let mut frame = to.to_vec();
            frame.extend_from_slice(&ethertype.to_be_bytes());
            frame.extend(ip);
            assert_eq!(dst_port(&mpls(&frame)), 80, "{ethertype:x} over MPLS");
            assert_eq!(dst_port(&gtp(&frame)), 80, "{ethertype:x} in GTP-U");
        }

        // Plain VXLAN with the reserved bit set: still an Ethernet frame.
        let mut vxlan = udp::tests::header(50000, 4789);
        vxlan.extend_from_slice(&[0x0c, 0, 0, 0, 0, 0, 9, 0]);
        vxlan.extend(inner_frame());
        assert_eq!(dst_port(&ipv4_over(17, &vxlan)), 80);

        // PPTP: key 0x0000_1234 (no payload, call 0x1234), an
        // acknowledgement number, nothing after.
        let ack_only = [0x20, 0x81, 0x88, 0x0b, 0, 0, 0x12, 0x34, 0, 0, 0, 5];
        assert_eq!(
            dissected(&ipv4_over(47, &ack_only)),
            Ok(Dissected::Other(OtherKind::IpOther))
        );
    }

    /// A driver that pads the 802.11 header to 4 bytes says so in
    /// radiotap's Flags field ("data pad"): the body is read after the
    /// padding.
    #[test]
    fn radiotap_s_data_pad_moves_the_body() {
        let frame = |flags: u8| {
            let mut f = vec![0, 0, 9, 0, 0x02, 0, 0, 0, flags];
            // QoS data to the DS (26 bytes), padded to 28, then LLC/SNAP.
            f.extend_from_slice(&[0x88, 0x01]);
            f.extend_from_slice(&[0; 24]);
            f.extend_from_slice(&[0; 2]);
            f.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00]);
            f.extend(ipv4_tcp(0));
            f
        };
        let padded = dissect(LinkType::Radiotap, &frame(0x20)).unwrap();
        assert_eq!(transport(padded).dst_port, 80);
        assert_eq!(
            dissect(LinkType::Radiotap, &frame(0)),
            Ok(Dissected::Other(OtherKind::NonIp))
        );
    }

    /// ERSPAN type III may mirror an IP packet without its link header
    /// (frame type 2): a mirrored packet all the same, its session known
    /// and its own length counted.
    #[test]
    fn erspan_iii_mirrors_ip_packets_too() {
        let mut span = erspan::tests::header(erspan::VERSION_III, 44, false);
        span[10] = 2 << 2;
        let mirrored = ipv4_tcp(0);
        let f = ipv4_over(
            47,
            &[
                gre::tests::header(0x22eb, None, true, false),
                span,
                mirrored.clone(),
            ]
            .concat(),
        );
        let (t, c) = carried(&f);
        assert_eq!(t.dst_port, 80);
        assert_eq!(
            c.mirror,
            Some(Mirror {
                encap: Encap::ErspanIII,
                id: Some(44)
            })
        );
        assert_eq!(f.len() as u32 - c.outer_len, mirrored.len() as u32);
    }

    /// Ethernet padding after an IPv4 datagram that says it holds no UDP
    /// header is not one: no phantom flow of port 0.
    #[test]
    fn padding_after_the_ip_datagram_is_not_read_as_transport() {
        let mut f = ipv4_over(17, &[]);
        f.extend([0u8; 26]);
        assert!(
            !matches!(dissect(LinkType::Ethernet, &f), Ok(Dissected::Transport(_))),
            "{:?}",
            dissect(LinkType::Ethernet, &f)
        );
    }

    #[test]
    fn switch_tags_and_fabricpath() {
        for (ethertype, tag) in [
            (0x8926u16, vec![0u8; 4]),
            (0x893f, vec![0; 6]),
            (0x8909, vec![1, 1, 0, 1, 0, 5]),
        ] {
            let mut f = eth(ethertype);
            f.extend(tag);
            f.extend_from_slice(&[0x81, 0x00, 0, 5, 0x08, 0x00]);
            f.extend(ipv4_tcp(0));
            assert_eq!(
                transport(dissect(LinkType::Ethernet, &f).unwrap()).dst_port,
                80
            );
        }
        let mut f = eth(0x8903);
        f.extend_from_slice(&[0, 0x3f]);
        f.extend(inner_frame());
        let (t, c) = carried(&f);
        assert_eq!(
            (t.dst_port, c.outer_len, c.mirror),
            (80, 0, None),
            "a tag, counted on the wire"
        );
    }

    #[test]
    fn more_link_types() {
        let ip = ipv4_tcp(0);
        let framed = |prefix: &[u8]| [prefix, &ip[..]].concat();
        for (code, frame) in [
            (9, framed(&[0xff, 0x03, 0x00, 0x21])),
            (9, framed(&[0x21])),
            (204, framed(&[0x00, 0x00, 0x21])),
            (50, framed(&[0xff, 0x03, 0x00, 0x21])),
            (50, framed(&[0x0f, 0x00, 0x08, 0x00])),
            (104, framed(&[0x8f, 0x00, 0x08, 0x00])),
            (205, framed(&[0x01, 0x0f, 0x00, 0x08, 0x00])),
            (51, framed(&[0x11, 0, 0, 1, 0, 48, 0x00, 0x21])),
            (192, framed(&[0, 0, 8, 0, 101, 0, 0, 0])),
            (239, framed(&[2, 0, 0, 0, 44, 0, 9, 0])),
            (
                105,
                framed(
                    &[
                        [0x08u8, 0x01].as_slice(),
                        &[0; 22],
                        &[0xaa, 0xaa, 3, 0, 0, 0, 8, 0],
                    ]
                    .concat(),
                ),
            ),
            (
                127,
                framed(
                    &[
                        [0u8, 0, 8, 0, 0, 0, 0, 0, 0x08, 0x02].as_slice(),
                        &[0; 22],
                        &[0xaa, 0xaa, 3, 0, 0, 0, 8, 0],
                    ]
                    .concat(),
                ),
            ),
        ] {
            let link = LinkType::from_pcap(code).unwrap();
            let got = dissect(link, &frame);
            assert!(
                matches!(got, Ok(Dissected::Transport(t)) if t.dst_port == 80),
                "{code}: {got:?}"
            );
        }
        // PPI naming PPI, or a link type flowtap does not read.
        for dlt in [192u8, 147] {
            let f = framed(&[0, 0, 8, 0, dlt, 0, 0, 0]);
            assert_eq!(
                dissect(LinkType::Ppi, &f),
                Ok(Dissected::Other(OtherKind::NonIp))
            );
        }
        assert_eq!(LinkType::from_pcap(147), None);
    }

    #[test]
    fn nesting_is_bounded_and_truncated_tunnels_are_malformed() {
        // VXLAN in VXLAN in ... beyond the bound.
        let mut frame = inner_frame();
        for _ in 0..MAX_NESTING {
            let mut udp = udp::tests::header(50000, 4789);
            udp.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 1, 0]);
            udp.extend(&frame);
            frame = ipv4_over(17, &udp);
        }
        assert_eq!(
            dissect(LinkType::Ethernet, &frame).unwrap_err().reason,
            MalformedReason::HeaderChainTooLong
        );
        let mut udp = udp::tests::header(50000, 6081);
        udp.extend_from_slice(&[0x02, 0, 0x65, 0x58, 0, 0, 9, 0, 1, 2]);
        let f = ipv4_over(17, &udp);
        let err = dissect(LinkType::Ethernet, &f).unwrap_err();
        assert_eq!(
            (err.reason, err.layer),
            (MalformedReason::Truncated, Layer::Geneve)
        );
    }

    #[test]
    fn a_fragmented_carrier_is_marked() {
        let mut udp = udp::tests::header(50000, 4789);
        udp.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 12, 0]);
        udp.extend(inner_frame());
        let mut f = ipv4_over(17, &udp);
        f[14 + 6] = 0x20; // more fragments
        let (t, c) = carried(&f);
        assert_eq!(t.dst_port, 80);
        let frag = c.fragment.unwrap();
        assert_eq!((frag.later, frag.id.protocol), (None, 17));
        let mut later = ipv4_over(17, &[0u8; 40]);
        later[14 + 6..14 + 8].copy_from_slice(&[0, 10]);
        let d = Dissector::default().dissect(LinkType::Ethernet, &later);
        let frag = d.carried.fragment.unwrap();
        assert_eq!(
            (frag.later, frag.payload_len, frag.id),
            (Some(true), 40, c.fragment.unwrap().id)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), link in 0usize..LinkType::CODES.len()) {
            if let Some(link) = LinkType::from_pcap(LinkType::CODES[link]) {
                let _ = dissect(link, &bytes);
            }
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
