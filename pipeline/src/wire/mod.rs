//! Zero-copy views over the protocol headers flowtap reads, one module per
//! protocol, in the style of smoltcp's `wire`: each view wraps any
//! `T: AsRef<[u8]>`, checks its length once in `new_checked`, and from then on
//! reads fields at fixed offsets without panicking.
//!
//! [`dissect`] walks a whole frame from its link header to the transport
//! header and returns either the transport fields a flow needs or the kind of
//! frame it was; it never panics on any input (see the property test there).

pub mod ah;
pub mod chdlc;
pub mod decap;
pub mod dissect;
pub mod erspan;
pub mod ethernet;
pub mod fabricpath;
pub mod geneve;
pub mod gre;
pub mod gtpu;
pub mod icmp;
pub mod ieee80211;
pub mod ipv4;
pub mod ipv6;
pub mod linux_sll;
pub mod llc;
pub mod mpls;
pub mod nflog;
pub mod null;
pub mod ppi;
pub mod ppp;
pub mod pppoe;
pub mod radiotap;
pub mod tags;
pub mod tcp;
pub mod tzsp;
pub mod udp;
pub mod vlan;
pub mod vxlan;

use std::fmt;

/// The protocol layer a header view belongs to; names where a frame went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    Link,
    Vlan,
    Pppoe,
    Mpls,
    Ipv4,
    Ipv6,
    Ipv6Extension,
    Tcp,
    Udp,
    Ppp,
    /// Switch tags other than 802.1Q (VN-Tag, E-Tag, MetaData, FabricPath).
    Tag,
    Vxlan,
    Geneve,
    Gre,
    Erspan,
    Gtpu,
    Tzsp,
}

impl Layer {
    pub const fn name(self) -> &'static str {
        match self {
            Layer::Link => "link",
            Layer::Vlan => "vlan",
            Layer::Pppoe => "pppoe",
            Layer::Mpls => "mpls",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Ipv6Extension => "ipv6_extension",
            Layer::Tcp => "tcp",
            Layer::Udp => "udp",
            Layer::Ppp => "ppp",
            Layer::Tag => "tag",
            Layer::Vxlan => "vxlan",
            Layer::Geneve => "geneve",
            Layer::Gre => "gre",
            Layer::Erspan => "erspan",
            Layer::Gtpu => "gtpu",
            Layer::Tzsp => "tzsp",
        }
    }
}

/// The error every view shares: fewer bytes were captured than the header needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LenError {
    pub layer: Layer,
    pub required: usize,
    pub available: usize,
}

impl fmt::Display for LenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} header needs {} bytes, {} captured",
            self.layer.name(),
            self.required,
            self.available
        )
    }
}

/// Returns `Ok` when `buf` holds at least `required` bytes.
#[inline]
pub(crate) fn check_len(layer: Layer, buf: &[u8], required: usize) -> Result<(), LenError> {
    if buf.len() < required {
        Err(LenError {
            layer,
            required,
            available: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// `impl From<LenError>` for a layer's error enum with a `Len` variant, so
/// that `?` turns a short buffer into that layer's error.
macro_rules! len_error {
    ($error:ty) => {
        impl From<super::LenError> for $error {
            fn from(e: super::LenError) -> Self {
                Self::Len(e)
            }
        }
    };
}
pub(crate) use len_error;

#[inline]
pub(crate) fn be16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

#[inline]
pub(crate) fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Little-endian fields: the headers capture tools write in their host's
/// order (radiotap, PPI, NFLOG's attributes on most hosts).
#[inline]
pub(crate) fn le16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

#[inline]
pub(crate) fn le32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// EtherType values the dissector follows.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const RARP: u16 = 0x8035;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ tag types still seen on older switches.
    pub const QINQ_LEGACY_9100: u16 = 0x9100;
    pub const QINQ_LEGACY_9200: u16 = 0x9200;
    pub const IPV6: u16 = 0x86dd;
    pub const PPPOE_SESSION: u16 = 0x8864;
    pub const MPLS_UNICAST: u16 = 0x8847;
    pub const MPLS_MULTICAST: u16 = 0x8848;
    /// Transparent Ethernet bridging: a whole Ethernet frame (GRE, GENEVE).
    pub const TEB: u16 = 0x6558;
    /// ERSPAN type I and II (GRE protocol type).
    pub const ERSPAN_II: u16 = 0x88be;
    /// ERSPAN type III (GRE protocol type).
    pub const ERSPAN_III: u16 = 0x22eb;
    /// PPP (GRE protocol type in PPTP).
    pub const PPP: u16 = 0x880b;
    pub const FABRICPATH: u16 = 0x8903;
    pub const VN_TAG: u16 = 0x8926;
    pub const E_TAG: u16 = 0x893f;
    pub const CISCO_METADATA: u16 = 0x8909;
}

/// IP protocol numbers the dissector follows.
pub mod ip_proto {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const IPV4_IN_IP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6_IN_IP: u8 = 41;
    pub const IPV6_ROUTING: u8 = 43;
    pub const IPV6_FRAGMENT: u8 = 44;
    pub const GRE: u8 = 47;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_DEST_OPTS: u8 = 60;
    pub const MOBILITY: u8 = 135;
    pub const HIP: u8 = 139;
    pub const SHIM6: u8 = 140;
}
