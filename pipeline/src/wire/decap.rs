//! Which tunnels and mirror encapsulations the dissector opens, and the
//! names of what it found inside. IP-in-IP (4 and 41) is always opened, as
//! before; the others can be turned off (`--no-decap`) and the UDP ones
//! moved to other ports (`--decap-ports`).

use std::fmt;
use std::str::FromStr;

/// At most this many ports per UDP encapsulation.
pub const MAX_PORTS: usize = 8;

/// A small fixed set of UDP ports, cheap to copy and to test.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PortSet {
    ports: [u16; MAX_PORTS],
    len: u8,
}

impl PortSet {
    pub const EMPTY: PortSet = PortSet {
        ports: [0; MAX_PORTS],
        len: 0,
    };

    /// The set of `ports` (at most [`MAX_PORTS`]; more is an error).
    pub fn of(ports: &[u16]) -> Result<PortSet, String> {
        if ports.len() > MAX_PORTS {
            return Err(format!("at most {MAX_PORTS} ports per encapsulation"));
        }
        let mut set = PortSet::EMPTY;
        set.ports[..ports.len()].copy_from_slice(ports);
        set.len = ports.len() as u8;
        Ok(set)
    }

    const fn two(a: u16, b: u16) -> PortSet {
        let mut ports = [0; MAX_PORTS];
        ports[0] = a;
        ports[1] = b;
        PortSet { ports, len: 2 }
    }

    const fn one(a: u16) -> PortSet {
        let mut ports = [0; MAX_PORTS];
        ports[0] = a;
        PortSet { ports, len: 1 }
    }

    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.as_slice().contains(&port)
    }

    pub fn as_slice(&self) -> &[u16] {
        &self.ports[..usize::from(self.len)]
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The encapsulations that can be turned off or moved, as the options name
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunnel {
    Vxlan,
    Geneve,
    Gtpu,
    /// GRE: with IP, with Ethernet (transparent bridging), and PPTP's.
    Gre,
    /// ERSPAN types I, II and III (inside GRE).
    Erspan,
    /// MikroTik's packet sniffer streaming ([`super::tzsp`]).
    Tzsp,
}

impl Tunnel {
    pub const ALL: [Tunnel; 6] = [
        Tunnel::Vxlan,
        Tunnel::Geneve,
        Tunnel::Gtpu,
        Tunnel::Gre,
        Tunnel::Erspan,
        Tunnel::Tzsp,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Tunnel::Vxlan => "vxlan",
            Tunnel::Geneve => "geneve",
            Tunnel::Gtpu => "gtpu",
            Tunnel::Gre => "gre",
            Tunnel::Erspan => "erspan",
            Tunnel::Tzsp => "tzsp",
        }
    }
}

impl FromStr for Tunnel {
    type Err = String;
    fn from_str(s: &str) -> Result<Tunnel, String> {
        Tunnel::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<_> = Tunnel::ALL.iter().map(|t| t.name()).collect();
                format!("unknown encapsulation {s:?} (one of {})", names.join(", "))
            })
    }
}

/// What the dissector opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decap {
    /// UDP destination ports of VXLAN (4789 by IANA, 8472 Linux's and
    /// Flannel's default).
    pub vxlan: PortSet,
    pub geneve: PortSet,
    pub gtpu: PortSet,
    pub tzsp: PortSet,
    pub gre: bool,
    pub erspan: bool,
}

impl Decap {
    pub const DEFAULT: Decap = Decap {
        vxlan: PortSet::two(4789, 8472),
        geneve: PortSet::one(6081),
        gtpu: PortSet::one(2152),
        tzsp: PortSet::one(super::tzsp::PORT),
        gre: true,
        erspan: true,
    };

    /// Whether a UDP datagram to `port` may carry a tunnel.
    #[inline]
    pub fn is_udp_tunnel_port(&self, port: u16) -> bool {
        self.vxlan.contains(port)
            || self.geneve.contains(port)
            || self.gtpu.contains(port)
            || self.tzsp.contains(port)
    }

    /// `tunnel` no longer opened.
    pub fn without(mut self, tunnel: Tunnel) -> Decap {
        match tunnel {
            Tunnel::Vxlan => self.vxlan = PortSet::EMPTY,
            Tunnel::Geneve => self.geneve = PortSet::EMPTY,
            Tunnel::Gtpu => self.gtpu = PortSet::EMPTY,
            Tunnel::Tzsp => self.tzsp = PortSet::EMPTY,
            Tunnel::Gre => self.gre = false,
            Tunnel::Erspan => self.erspan = false,
        }
        self
    }

    /// `tunnel` on exactly `ports` instead of its defaults.
    pub fn on_ports(mut self, tunnel: Tunnel, ports: &[u16]) -> Result<Decap, String> {
        let set = PortSet::of(ports)?;
        match tunnel {
            Tunnel::Vxlan => self.vxlan = set,
            Tunnel::Geneve => self.geneve = set,
            Tunnel::Gtpu => self.gtpu = set,
            Tunnel::Tzsp => self.tzsp = set,
            Tunnel::Gre | Tunnel::Erspan => {
                return Err(format!("{} is not carried on UDP ports", tunnel.name()));
            }
        }
        Ok(self)
    }

    /// Refuses a UDP port two encapsulations are opened on: the one tried
    /// first (VXLAN before Geneve, GTP-U, TZSP) would take every datagram
    /// to it, and the other be opened on none, without a word.
    pub fn ports_apart(&self) -> Result<(), String> {
        let udp = [
            (Tunnel::Vxlan, &self.vxlan),
            (Tunnel::Geneve, &self.geneve),
            (Tunnel::Gtpu, &self.gtpu),
            (Tunnel::Tzsp, &self.tzsp),
        ];
        for (i, (first, ports)) in udp.iter().enumerate() {
            for (second, others) in &udp[i + 1..] {
                if let Some(port) = ports.as_slice().iter().find(|&&p| others.contains(p)) {
                    return Err(format!(
                        "UDP port {port} is both {}'s and {}'s: give each its own",
                        first.name(),
                        second.name()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Parses one `--decap-ports` value: `vxlan=4789,8472`.
    pub fn parse_ports(value: &str) -> Result<(Tunnel, Vec<u16>), String> {
        let (name, ports) = value
            .split_once('=')
            .ok_or_else(|| format!("{value:?}: expected NAME=PORT[,PORT...]"))?;
        let tunnel: Tunnel = name.parse()?;
        let ports = ports
            .split(',')
            .map(|p| {
                match p.trim().parse::<u16>() {
                    // No datagram is sent to port 0 (RFC 768 reserves it).
                    Ok(0) => Err(format!("{value:?}: port 0 is no UDP destination")),
                    Ok(port) => Ok(port),
                    Err(_) => Err(format!("{value:?}: {p:?} is not a port")),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((tunnel, ports))
    }
}

impl Default for Decap {
    fn default() -> Self {
        Decap::DEFAULT
    }
}

/// The encapsulation a frame arrived in (its outermost one), as counted in
/// `flowtap_encapsulated_frames_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encap {
    Vxlan,
    Geneve,
    Gre,
    ErspanI,
    ErspanII,
    ErspanIII,
    Gtpu,
    IpInIp,
    Tzsp,
}

impl Encap {
    pub const ALL: [Encap; 9] = [
        Encap::Vxlan,
        Encap::Geneve,
        Encap::Gre,
        Encap::ErspanI,
        Encap::ErspanII,
        Encap::ErspanIII,
        Encap::Gtpu,
        Encap::IpInIp,
        Encap::Tzsp,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Encap::Vxlan => "vxlan",
            Encap::Geneve => "geneve",
            Encap::Gre => "gre",
            Encap::ErspanI => "erspan_i",
            Encap::ErspanII => "erspan_ii",
            Encap::ErspanIII => "erspan_iii",
            Encap::Gtpu => "gtpu",
            Encap::IpInIp => "ip_in_ip",
            Encap::Tzsp => "tzsp",
        }
    }

    /// What the session id of this encapsulation is called: the VNI, the
    /// ERSPAN session, the GRE key.
    pub const fn id_name(self) -> &'static str {
        match self {
            Encap::Vxlan | Encap::Geneve => "vni",
            Encap::ErspanI | Encap::ErspanII | Encap::ErspanIII => "session",
            Encap::Gre => "key",
            Encap::Gtpu | Encap::IpInIp | Encap::Tzsp => "id",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The mirror session a frame came through: the outermost encapsulation
/// that carried a whole Ethernet frame, and its id where it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mirror {
    pub encap: Encap,
    pub id: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        assert_eq!(
            Decap::parse_ports("vxlan=4789, 4790").unwrap(),
            (Tunnel::Vxlan, vec![4789, 4790])
        );
        assert!(Decap::parse_ports("vxlan").is_err());
        assert!(Decap::parse_ports("vxlan=x").is_err());
        assert!(Decap::parse_ports("vxlan=4789,0").is_err());
        assert!(
            Decap::parse_ports("ipx=1")
                .unwrap_err()
                .contains("one of vxlan")
        );
        let d = Decap::DEFAULT.on_ports(Tunnel::Geneve, &[1, 2]).unwrap();
        assert!(d.geneve.contains(2) && !d.geneve.contains(6081));
        assert!(Decap::DEFAULT.on_ports(Tunnel::Gre, &[1]).is_err());
        assert!(PortSet::of(&[1; 9]).is_err());
        let off = Decap::DEFAULT
            .without(Tunnel::Vxlan)
            .without(Tunnel::Erspan);
        assert!(!off.vxlan.contains(4789) && !off.erspan && off.gre);
    }

    /// A port two encapsulations claim is refused (VXLAN on Geneve's 6081
    /// left Geneve opened on none); moved away, or the other turned off,
    /// it is not.
    #[test]
    fn a_port_is_one_encapsulation_s() {
        assert_eq!(Decap::DEFAULT.ports_apart(), Ok(()));
        let both = Decap::DEFAULT.on_ports(Tunnel::Vxlan, &[6081]).unwrap();
        assert_eq!(
            both.ports_apart(),
            Err("UDP port 6081 is both vxlan's and geneve's: give each its own".into())
        );
        assert_eq!(both.without(Tunnel::Geneve).ports_apart(), Ok(()));
        let moved = both.on_ports(Tunnel::Geneve, &[6082]).unwrap();
        assert_eq!(moved.ports_apart(), Ok(()));
        let tzsp = Decap::DEFAULT.on_ports(Tunnel::Tzsp, &[2152]).unwrap();
        assert!(
            tzsp.ports_apart()
                .unwrap_err()
                .contains("gtpu's and tzsp's")
        );
    }
}
