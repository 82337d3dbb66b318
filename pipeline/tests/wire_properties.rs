//! Property tests: random well-formed frames, built by the capture
//! generator's frame builder (any VLAN/QinQ stack, IPv4 or IPv6, TCP or
//! UDP, any ports, flags, sequence numbers and payload, whole or cut by a
//! snaplen after the transport header, IPv4 fragments), must parse to
//! exactly the fields they were built with; carried in any tunnel or mirror
//! session capgen builds, they must parse to the same fields, name their
//! encapsulation, and count as the rule says.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use capgen::frame::{self, Proto, Segment};
use capgen::tunnel::{Carrier, Tunnel};
use pipeline::packet::{Addr, Fragment, L4Proto};
use pipeline::wire::decap::Decap;
use pipeline::wire::dissect::{Dissected, Dissector, LinkType, dissect};
use proptest::prelude::*;

fn addr(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => Addr::from_v4(v4.octets()),
        IpAddr::V6(v6) => Addr(v6.octets()),
    }
}

fn ips() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<u32>(), any::<u32>())
            .prop_map(|(a, b)| (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b)))),
        (any::<u128>(), any::<u128>())
            .prop_map(|(a, b)| (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))),
    ]
}

fn carriers() -> impl Strategy<Value = Carrier> {
    (0..Carrier::SAMPLES.len(), any::<u16>()).prop_map(|(i, id)| match Carrier::SAMPLES[i] {
        Carrier::Vxlan { .. } => Carrier::Vxlan {
            vni: u32::from(id) << 4,
        },
        Carrier::Geneve { .. } => Carrier::Geneve { vni: u32::from(id) },
        Carrier::GreEthernet { .. } => Carrier::GreEthernet {
            key: (id & 1 == 1).then_some(u32::from(id)),
        },
        Carrier::ErspanII { .. } => Carrier::ErspanII {
            session: id & 0x3ff,
        },
        Carrier::ErspanIII { platform, .. } => Carrier::ErspanIII {
            session: id & 0x3ff,
            platform,
        },
        other => other,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn frames_in_tunnels_parse_to_their_inner_fields(
        (src, dst) in ips(),
        (outer_a, outer_b) in ips(),
        carrier in carriers(),
        tcp in any::<bool>(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        payload in 0u16..1400,
        vlans in proptest::collection::vec(1u16..4095, 0..3),
        outer_vlans in proptest::collection::vec(1u16..4095, 0..3),
        c2s in any::<bool>(),
    ) {
        prop_assume!(tcp || !Decap::DEFAULT.is_udp_tunnel_port(dport));
        let s = Segment {
            proto: if tcp { Proto::Tcp } else { Proto::Udp },
            src, dst, sport, dport,
            flags: 0x10, seq: 1, ack: 0, payload, vlans: &vlans,
        };
        let mut inner = Vec::new();
        frame::segment(&mut inner, &s);
        let tunnel = Tunnel { carrier, endpoints: [outer_a, outer_b], outer_vlans };
        let mut f = Vec::new();
        let (counted, _) = tunnel.wrap(&inner, c2s, &mut f);
        let d = Dissector::default().dissect(LinkType::Ethernet, &f);
        let Ok(Dissected::Transport(t)) = d.result else {
            panic!("{carrier:?}: not a transport: {:?}", d.result);
        };
        prop_assert_eq!((t.src, t.dst), (addr(src), addr(dst)));
        prop_assert_eq!((t.src_port, t.dst_port), (sport, dport));
        prop_assert_eq!(d.carried.encap.map(|e| e.name()), Some(carrier.encap_name()));
        prop_assert_eq!(d.carried.mirror.is_some(), carrier.mirrors());
        prop_assert_eq!(f.len() - d.carried.outer_len as usize, counted);
    }

    #[test]
    fn well_formed_frames_parse_to_their_fields(
        (src, dst) in ips(),
        tcp in any::<bool>(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        flags in any::<u8>(),
        seq in any::<u32>(),
        payload in 0u16..1400,
        vlans in proptest::collection::vec(1u16..4095, 0..4),
        snap_extra in proptest::option::of(0usize..64),
    ) {
        // A datagram to a tunnel's port is that tunnel's (below).
        prop_assume!(tcp || !Decap::DEFAULT.is_udp_tunnel_port(dport));
        let s = Segment {
            proto: if tcp { Proto::Tcp } else { Proto::Udp },
            src, dst, sport, dport,
            flags, seq, ack: 0, payload, vlans: &vlans,
        };
        let mut buf = Vec::new();
        let headers = frame::segment(&mut buf, &s);
        // A snaplen may cut the payload, never the headers.
        if let Some(extra) = snap_extra {
            buf.truncate(headers + extra.min(usize::from(payload)));
        }
        let Ok(Dissected::Transport(t)) = dissect(LinkType::Ethernet, &buf) else {
            panic!("not a transport: {:?}", dissect(LinkType::Ethernet, &buf));
        };
        prop_assert_eq!(t.proto, if tcp { L4Proto::Tcp } else { L4Proto::Udp });
        prop_assert_eq!((t.src, t.dst), (addr(src), addr(dst)));
        prop_assert_eq!((t.src_port, t.dst_port), (sport, dport));
        prop_assert_eq!(t.fragment, Fragment::Whole);
        if tcp {
            prop_assert_eq!((t.tcp_flags, t.tcp_seq), (flags, seq));
        }
        // The IP packet's length by its header, whatever a snaplen cut.
        let ip_header = if src.is_ipv4() { 20 } else { 40 };
        let l4_header = if tcp { 20 } else { 8 };
        prop_assert_eq!(t.ip_len, ip_header + l4_header + u32::from(payload));
        prop_assert_eq!(t.payload_len, u32::from(payload));
    }

    #[test]
    fn ipv4_fragments_parse_to_first_and_later(
        src in any::<u32>(), dst in any::<u32>(),
        sport in any::<u16>(), dport in any::<u16>(),
        payload in 600u16..4000, ident in any::<u16>(),
    ) {
        prop_assume!(!Decap::DEFAULT.is_udp_tunnel_port(dport));
        let s = Segment {
            proto: Proto::Udp,
            src: IpAddr::V4(Ipv4Addr::from(src)), dst: IpAddr::V4(Ipv4Addr::from(dst)),
            sport, dport, flags: 0, seq: 0, ack: 0, payload, vlans: &[],
        };
        let frames = frame::udp_fragments(&s, 512, ident);
        prop_assert!(frames.len() >= 2);
        for (i, f) in frames.iter().enumerate() {
            let Ok(Dissected::Transport(t)) = dissect(LinkType::Ethernet, f) else {
                panic!("fragment {i} not a transport");
            };
            prop_assert_eq!((t.src, t.dst), (Addr::from_v4(src.to_be_bytes()), Addr::from_v4(dst.to_be_bytes())));
            match (i, t.fragment) {
                (0, Fragment::First { ident: got }) => {
                    prop_assert_eq!(got, u32::from(ident));
                    prop_assert_eq!((t.src_port, t.dst_port), (sport, dport));
                }
                (i, Fragment::Later { ident: got, last }) if i > 0 => {
                    prop_assert_eq!(got, u32::from(ident));
                    prop_assert_eq!(last, i == frames.len() - 1);
                }
                (i, other) => panic!("fragment {i}: {other:?}"),
            }
        }
    }
}
