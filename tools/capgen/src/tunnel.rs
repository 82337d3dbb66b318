//! Carries a connection's frames in a tunnel or mirror session, as the
//! places flowtap watches deliver them: VXLAN and GENEVE (cloud mirroring,
//! overlay networks), GRE with Ethernet, ERSPAN II and III (switches), and
//! the tunnels that carry IP (GRE, IP-in-IP either way round, GTP-U). The
//! outer header may carry VLAN tags of its own, the inner frame keeps its.
//!
//! A correct meter counts a frame in a mirror session (whole Ethernet frame
//! inside) as that inner frame, and a frame in an IP tunnel as the frame on
//! the wire, keyed by the innermost headers ([`Tunnel::wrap`] says which).

use std::net::IpAddr;

use crate::frame::{ethernet, ipv4_header, ipv6_header};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    Vxlan {
        vni: u32,
    },
    /// GENEVE with one empty option, carrying Ethernet.
    Geneve {
        vni: u32,
    },
    GreEthernet {
        key: Option<u32>,
    },
    ErspanII {
        session: u16,
    },
    /// With the platform sub-header when `platform`.
    ErspanIII {
        session: u16,
        platform: bool,
    },
    /// GRE carrying the inner IP packet (with a checksum field).
    GreIp,
    /// IPv4 or IPv6 directly in the outer IP header.
    IpInIp,
    Gtpu {
        teid: u32,
    },
}

impl Carrier {
    pub const SAMPLES: [Carrier; 9] = [
        Carrier::Vxlan { vni: 12 },
        Carrier::Geneve { vni: 77 },
        Carrier::GreEthernet { key: Some(5) },
        Carrier::ErspanII { session: 100 },
        Carrier::ErspanIII {
            session: 200,
            platform: false,
        },
        Carrier::ErspanIII {
            session: 201,
            platform: true,
        },
        Carrier::GreIp,
        Carrier::IpInIp,
        Carrier::Gtpu { teid: 0x1234 },
    ];

    /// Whether it carries a whole Ethernet frame (a mirror session).
    pub fn mirrors(self) -> bool {
        !matches!(
            self,
            Carrier::GreIp | Carrier::IpInIp | Carrier::Gtpu { .. }
        )
    }

    /// The name flowtap reports the encapsulation under.
    pub fn encap_name(self) -> &'static str {
        match self {
            Carrier::Vxlan { .. } => "vxlan",
            Carrier::Geneve { .. } => "geneve",
            Carrier::GreEthernet { .. } | Carrier::GreIp => "gre",
            Carrier::ErspanII { .. } => "erspan_ii",
            Carrier::ErspanIII { .. } => "erspan_iii",
            Carrier::IpInIp => "ip_in_ip",
            Carrier::Gtpu { .. } => "gtpu",
        }
    }
}

/// A tunnel between two endpoints (the client side's first).
#[derive(Clone, Debug)]
pub struct Tunnel {
    pub carrier: Carrier,
    pub endpoints: [IpAddr; 2],
    /// VLAN ids of the outer frame.
    pub outer_vlans: Vec<u16>,
}

const GRE: u8 = 47;
const UDP: u8 = 17;

impl Tunnel {
    /// Writes `inner` (an Ethernet frame as [`crate::frame::segment`]
    /// builds it) inside the tunnel into `out` (cleared first), sent from
    /// the client's side when `c2s`. Returns the bytes a correct meter
    /// counts for it and the length of the headers in front of the inner
    /// frame's own.
    pub fn wrap(&self, inner: &[u8], c2s: bool, out: &mut Vec<u8>) -> (usize, usize) {
        out.clear();
        // The inner IP packet, after the inner Ethernet header and tags.
        let mut at = 12;
        while matches!(
            u16::from_be_bytes([inner[at], inner[at + 1]]),
            0x8100 | 0x88a8
        ) {
            at += 4;
        }
        let inner_ethertype = u16::from_be_bytes([inner[at], inner[at + 1]]);
        let inner_ip = &inner[at + 2..];
        let mut payload = Vec::new();
        let protocol = match self.carrier {
            Carrier::Vxlan { vni } => {
                udp_header(&mut payload, 4789, 8 + inner.len());
                payload.extend_from_slice(&[0x08, 0, 0, 0]);
                payload.extend_from_slice(&(vni << 8).to_be_bytes());
                payload.extend_from_slice(inner);
                UDP
            }
            Carrier::Geneve { vni } => {
                udp_header(&mut payload, 6081, 12 + inner.len());
                payload.extend_from_slice(&[0x01, 0, 0x65, 0x58]);
                payload.extend_from_slice(&(vni << 8).to_be_bytes());
                payload.extend_from_slice(&[0x01, 0x02, 0x80, 0]);
                payload.extend_from_slice(inner);
                UDP
            }
            Carrier::GreEthernet { key } => {
                let flags: u16 = if key.is_some() { 0x2000 } else { 0 };
                payload.extend_from_slice(&flags.to_be_bytes());
                payload.extend_from_slice(&0x6558u16.to_be_bytes());
                if let Some(key) = key {
                    payload.extend_from_slice(&key.to_be_bytes());
                }
                payload.extend_from_slice(inner);
                GRE
            }
            Carrier::ErspanII { session } => {
                payload.extend_from_slice(&[0x10, 0, 0x88, 0xbe, 0, 0, 0, 1]);
                payload.extend_from_slice(&[0x10, 0]);
                payload.extend_from_slice(&(session & 0x3ff).to_be_bytes());
                payload.extend_from_slice(&[0, 0, 0, 0]);
                payload.extend_from_slice(inner);
                GRE
            }
            Carrier::ErspanIII { session, platform } => {
                payload.extend_from_slice(&[0x10, 0, 0x22, 0xeb, 0, 0, 0, 1]);
                payload.extend_from_slice(&[0x20, 0]);
                payload.extend_from_slice(&(session & 0x3ff).to_be_bytes());
                payload.extend_from_slice(&[0x12, 0x34, 0x56, 0x78, 0, 0, 0, u8::from(platform)]);
                if platform {
                    payload.extend_from_slice(&[0x0c, 0, 0, 0, 0, 0, 0, 0]);
                }
                payload.extend_from_slice(inner);
                GRE
            }
            Carrier::GreIp => {
                payload.extend_from_slice(&[0x80, 0]);
                payload.extend_from_slice(&inner_ethertype.to_be_bytes());
                payload.extend_from_slice(&[0, 0, 0, 0]);
                payload.extend_from_slice(inner_ip);
                GRE
            }
            Carrier::IpInIp => {
                payload.extend_from_slice(inner_ip);
                if inner_ethertype == 0x86dd { 41 } else { 4 }
            }
            Carrier::Gtpu { teid } => {
                udp_header(&mut payload, 2152, 8 + inner_ip.len());
                payload.extend_from_slice(&[0x30, 0xff]);
                payload.extend_from_slice(&(inner_ip.len() as u16).to_be_bytes());
                payload.extend_from_slice(&teid.to_be_bytes());
                payload.extend_from_slice(inner_ip);
                UDP
            }
        };
        let (src, dst) = if c2s {
            (self.endpoints[0], self.endpoints[1])
        } else {
            (self.endpoints[1], self.endpoints[0])
        };
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                ethernet(out, &self.outer_vlans, 0x0800);
                ipv4_header(out, s.octets(), d.octets(), protocol, payload.len(), None);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                ethernet(out, &self.outer_vlans, 0x86dd);
                ipv6_header(out, s.octets(), d.octets(), protocol, payload.len());
            }
            _ => panic!("mixed tunnel endpoint families"),
        }
        let outer_len = out.len() + payload.len() - inner.len();
        out.extend_from_slice(&payload);
        let counted = if self.carrier.mirrors() {
            inner.len()
        } else {
            out.len()
        };
        // The bytes in front of the inner frame's own headers: for IP
        // tunnels the inner Ethernet header is gone.
        let in_front = if self.carrier.mirrors() {
            outer_len
        } else {
            out.len() - inner_ip.len() - (at + 2)
        };
        (counted, in_front)
    }
}

/// A UDP header from an entropy source port to `dport`, for `len` bytes of
/// payload.
fn udp_header(buf: &mut Vec<u8>, dport: u16, len: usize) {
    buf.extend_from_slice(&49_200u16.to_be_bytes());
    buf.extend_from_slice(&dport.to_be_bytes());
    buf.extend_from_slice(&((8 + len) as u16).to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
}
