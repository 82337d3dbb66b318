//! A SYN flood from random sources with real connections mixed in: the
//! capture that shows a bounded flow table keeps the real flows while the
//! flood churns through the rest.
//!
//! Flood SYNs arrive one per microsecond, from random IPv4 sources outside
//! 198.18.0.0/15, to the servers the real connections use. The real
//! connections come from 198.18.0.0/15 (one client address each, so one flow
//! each), evenly spread over the flood; each is a handshake (200 us, then
//! 200 us to the ACK), a 100-byte request and a 1000-byte reply.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};

use crate::frame::{self, Segment, tcp_flags};
use crate::pcap::PcapWriter;
use crate::workload::FlowTruth;

pub struct FloodSpec {
    pub syns: u64,
    pub connections: u32,
    pub seed: u64,
}

const START_NS: u64 = 1_700_000_000_000_000_000;
const US: u64 = 1_000;
const SERVERS: u8 = 10;
const PORT: u16 = 443;
const REQUEST: u16 = 100;
const REPLY: u16 = 1000;

fn server(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        198,
        19,
        255,
        1 + (i % u32::from(SERVERS)) as u8,
    ))
}

fn client(i: u32) -> IpAddr {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 1));
    IpAddr::V4(Ipv4Addr::from(base + i))
}

/// A packet of a real connection, waiting for its time.
struct Pending {
    ts_ns: u64,
    c2s: bool,
    conn: u32,
    flags: u8,
    payload: u16,
}

/// Writes the capture (Ethernet, ns timestamps); returns the real flows'
/// truth.
pub fn write_syn_flood<W: Write>(out: W, spec: &FloodSpec) -> io::Result<Vec<FlowTruth>> {
    let mut w = PcapWriter::new(out, 1)?;
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let mut buf = Vec::with_capacity(2048);
    let spacing = (spec.syns / u64::from(spec.connections.max(1))).max(1);
    let mut pending: Vec<Pending> = Vec::new();
    let mut truth = Vec::with_capacity(spec.connections as usize);
    let mut next_conn = 0u32;
    let write_pending =
        |w: &mut PcapWriter<W>, upto: u64, pending: &mut Vec<Pending>, buf: &mut Vec<u8>| {
            pending.sort_by_key(|p| std::cmp::Reverse(p.ts_ns));
            while pending.last().is_some_and(|p| p.ts_ns <= upto) {
                let p = pending.pop().expect("checked");
                frame::segment(
                    buf,
                    &Segment {
                        seq: if p.c2s { 1000 } else { 5000 },
                        payload: p.payload,
                        ..Segment::tcp(
                            client(p.conn),
                            40_000 + (p.conn % 20_000) as u16,
                            server(p.conn),
                            PORT,
                            p.c2s,
                            p.flags,
                        )
                    },
                );
                w.write(p.ts_ns, buf, buf.len() as u32)?;
            }
            Ok::<(), io::Error>(())
        };
    for i in 0..spec.syns {
        let ts = START_NS + i * US;
        if i % spacing == 0 && next_conn < spec.connections {
            let c = next_conn;
            next_conn += 1;
            use tcp_flags::{ACK, PSH, SYN};
            for (dt, c2s, flags, payload) in [
                (0, true, SYN, 0),
                (200, false, SYN | ACK, 0),
                (400, true, ACK, 0),
                (450, true, PSH | ACK, REQUEST),
                (600, false, PSH | ACK, REPLY),
            ] {
                pending.push(Pending {
                    ts_ns: ts + dt * US,
                    c2s,
                    conn: c,
                    flags,
                    payload,
                });
            }
            let frame = 54u64;
            truth.push(FlowTruth {
                proto: "tcp",
                client: client(c),
                server: server(c),
                server_port: PORT,
                c2s_pkts: 3,
                c2s_bytes: 3 * frame + u64::from(REQUEST),
                s2c_pkts: 2,
                s2c_bytes: 2 * frame + u64::from(REPLY),
                connections: 1,
                client_legs_ns: vec![200 * US],
                server_legs_ns: vec![400 * US],
            });
        }
        write_pending(&mut w, ts, &mut pending, &mut buf)?;
        // A random source outside 198.18.0.0/15, a random port.
        let src = loop {
            let a = Ipv4Addr::from(rng.u32(..));
            let [x, y, ..] = a.octets();
            if !(x == 198 && (y & 0xfe) == 18) && x != 0 && x < 224 {
                break a;
            }
        };
        // Drawn in this order, so a seed always writes the same file.
        let dst = server(rng.u32(..));
        let sport = rng.u16(1024..);
        let seq = rng.u32(..);
        frame::segment(
            &mut buf,
            &Segment {
                seq,
                ..Segment::tcp(IpAddr::V4(src), sport, dst, PORT, true, tcp_flags::SYN)
            },
        );
        w.write(ts, &buf, buf.len() as u32)?;
    }
    write_pending(&mut w, u64::MAX, &mut pending, &mut buf)?;
    w.finish()?;
    Ok(truth)
}
