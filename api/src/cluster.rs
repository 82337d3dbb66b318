//! Where the cluster ends: `--cluster-cidr` ranges, and NAT64 addresses,
//! which always lead outside.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;

/// 64:ff9b::/96, the well-known NAT64 prefix (RFC 6052).
const NAT64_PREFIX: [u8; 12] = [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0];

/// `net` as the IPv4 range it stands for if it is an IPv4-mapped IPv6
/// range (`::ffff:198.18.0.0/111`, as dual-stack sockets write IPv4
/// peers): flows hold IPv4 addresses as IPv4, which only that form
/// contains. Other ranges as they are.
pub fn as_ipv4_if_mapped(net: IpNetwork) -> IpNetwork {
    match net {
        IpNetwork::V6(v6) if v6.prefix() >= 96 => match v6.ip().to_ipv4_mapped() {
            Some(v4) => IpNetwork::new(v4.into(), v6.prefix() - 96).unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// The IPv4 address a NAT64 address embeds.
pub fn nat64_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V6(v6) => {
            let o = v6.octets();
            (o[..12] == NAT64_PREFIX).then(|| Ipv4Addr::new(o[12], o[13], o[14], o[15]))
        }
        IpAddr::V4(_) => None,
    }
}

#[derive(Debug, Default, Clone)]
pub struct Cluster {
    /// The cluster's address ranges; empty when not configured.
    pub cidrs: Vec<IpNetwork>,
}

impl Cluster {
    /// Whether `ip` lies outside the cluster: always for NAT64 addresses,
    /// otherwise only known when cluster CIDRs are configured.
    pub fn is_external(&self, ip: IpAddr) -> Option<bool> {
        if nat64_ipv4(ip).is_some() {
            return Some(true);
        }
        if self.cidrs.is_empty() {
            return None;
        }
        Some(!self.cidrs.iter().any(|net| net.contains(ip)))
    }

    pub fn configured(&self) -> bool {
        !self.cidrs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat64_and_cidrs() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            nat64_ipv4(ip("64:ff9b::6257:ace0")),
            Some(Ipv4Addr::new(98, 87, 172, 224))
        );
        assert_eq!(nat64_ipv4(ip("2001:db8::1")), None);
        let none = Cluster::default();
        assert_eq!(none.is_external(ip("198.18.0.1")), None);
        assert_eq!(none.is_external(ip("64:ff9b::6257:ace0")), Some(true));
        let cluster = Cluster {
            cidrs: vec![
                "198.18.0.0/15".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
        };
        assert_eq!(cluster.is_external(ip("198.19.3.4")), Some(false));
        assert_eq!(cluster.is_external(ip("2001:db8:1::1")), Some(false));
        assert_eq!(cluster.is_external(ip("203.0.113.9")), Some(true));
    }

    #[test]
    fn a_mapped_range_is_the_ipv4_range() {
        let net = |s: &str| s.parse::<IpNetwork>().unwrap();
        assert_eq!(
            as_ipv4_if_mapped(net("::ffff:198.18.0.0/111")),
            net("198.18.0.0/15")
        );
        assert_eq!(
            as_ipv4_if_mapped(net("::ffff:198.18.0.1")),
            net("198.18.0.1/32")
        );
        for other in ["2001:db8::/32", "::/0", "198.18.0.0/15"] {
            assert_eq!(as_ipv4_if_mapped(net(other)), net(other));
        }
    }
}
