//! Floods from spoofed sources with real connections among them: the
//! captures that show a bounded flow table keeps the real flows whatever a
//! flood puts on the mirrored link.
//!
//! - [`write_syn_flood`]: SYNs, one per microsecond, from random IPv4
//!   sources outside 198.18.0.0/15, with the real connections spread over
//!   the flood (one client address each, so one flow each).
//! - [`write_answered_flood`]: flow keys that each got one packet back (a
//!   bare ACK after a SYN, or a UDP datagram each way), refreshed round
//!   after round, then the real connections.
//!
//! A real connection is a handshake (200 us, then 200 us to the ACK), a
//! 100-byte request and a 1000-byte reply.

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
    /// Its client's index (see [`client`]).
    client: u32,
    flags: u8,
    payload: u16,
}

/// Ethernet + IPv4 + TCP headers.
const FRAME: u64 = 54;

/// Real connection `c` (from client `cl`)'s packets from `start_ns`, and
/// its truth as a flow of its own.
fn real_connection(
    c: u32,
    cl: u32,
    start_ns: u64,
    close: bool,
    pending: &mut Vec<Pending>,
) -> FlowTruth {
    use tcp_flags::{ACK, FIN, PSH, SYN};
    let mut packets = vec![
        (0, true, SYN, 0),
        (200, false, SYN | ACK, 0),
        (400, true, ACK, 0),
        (450, true, PSH | ACK, REQUEST),
        (600, false, PSH | ACK, REPLY),
    ];
    if close {
        packets.extend([(700, true, FIN | ACK, 0), (800, false, FIN | ACK, 0)]);
    }
    let (mut c2s, mut s2c) = ((0, 0), (0, 0));
    for (dt, from_client, flags, payload) in packets {
        pending.push(Pending {
            ts_ns: start_ns + dt * US,
            c2s: from_client,
            conn: c,
            client: cl,
            flags,
            payload,
        });
        let side = if from_client { &mut c2s } else { &mut s2c };
        side.0 += 1;
        side.1 += FRAME + u64::from(payload);
    }
    FlowTruth {
        proto: "tcp",
        client: client(cl),
        server: server(cl),
        server_port: PORT,
        c2s_pkts: c2s.0,
        c2s_bytes: c2s.1,
        s2c_pkts: s2c.0,
        s2c_bytes: s2c.1,
        connections: 1,
        client_legs_ns: vec![200 * US],
        server_legs_ns: vec![400 * US],
        c2s_tcp: [0; 3],
        s2c_tcp: [0; 3],
        // Established; closed by FINs both ways, or still open.
        outcomes: if close {
            [1, 0, 0, 0, 1, 0]
        } else {
            [1, 0, 0, 0, 0, 1]
        },
    }
}

/// Writes the pending packets due by `upto`, in time order. A real
/// connection's segments acknowledge each other (client ISN 1000, server
/// 5000), as a real stack's do.
fn write_pending<W: Write>(
    w: &mut PcapWriter<W>,
    upto: u64,
    pending: &mut Vec<Pending>,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    pending.sort_by_key(|p| std::cmp::Reverse(p.ts_ns));
    while pending.last().is_some_and(|p| p.ts_ns <= upto) {
        let p = pending.pop().expect("checked");
        let syn = p.flags & tcp_flags::SYN != 0;
        let (seq, ack) = match (p.c2s, syn) {
            (true, true) => (1000, 0),
            (true, false) => (1001, 5001),
            (false, _) => (5000 + u32::from(!syn), 1001),
        };
        frame::segment(
            buf,
            &Segment {
                seq,
                ack,
                payload: p.payload,
                ..Segment::tcp(
                    client(p.client),
                    40_000 + (p.conn % 20_000) as u16,
                    server(p.client),
                    PORT,
                    p.c2s,
                    p.flags,
                )
            },
        );
        w.write(p.ts_ns, buf, buf.len() as u32)?;
    }
    Ok(())
}

/// A random source outside 198.18.0.0/15.
fn spoofed(rng: &mut fastrand::Rng) -> Ipv4Addr {
    loop {
        let a = Ipv4Addr::from(rng.u32(..));
        let [x, y, ..] = a.octets();
        if !(x == 198 && (y & 0xfe) == 18) && x != 0 && x < 224 {
            break a;
        }
    }
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
    for i in 0..spec.syns {
        let ts = START_NS + i * US;
        if i % spacing == 0 && next_conn < spec.connections {
            truth.push(real_connection(
                next_conn,
                next_conn,
                ts,
                false,
                &mut pending,
            ));
            next_conn += 1;
        }
        write_pending(&mut w, ts, &mut pending, &mut buf)?;
        // Drawn in this order, so a seed always writes the same file.
        let src = spoofed(&mut rng);
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

/// A flood whose every flow key got one packet back, then real connections.
pub struct AnsweredFloodSpec {
    /// Spoofed flow keys: even ones TCP (a SYN, then a bare ACK back), odd
    /// ones UDP to port 53 (a datagram each way).
    pub keys: u32,
    /// Times the whole flood is sent again, `round_interval_ns` apart.
    pub rounds: u32,
    pub round_interval_ns: u64,
    /// Real connections after the flood, 100 us apart, closed with FINs,
    /// `per_client` from each client address (one flow per client).
    pub connections: u32,
    pub per_client: u32,
    pub seed: u64,
}

/// Writes the capture (Ethernet, ns timestamps); returns the real flows'
/// truth.
pub fn write_answered_flood<W: Write>(
    out: W,
    spec: &AnsweredFloodSpec,
) -> io::Result<Vec<FlowTruth>> {
    let mut w = PcapWriter::new(out, 1)?;
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let mut buf = Vec::with_capacity(2048);
    let keys: Vec<(Ipv4Addr, u16, IpAddr)> = (0..spec.keys)
        .map(|i| (spoofed(&mut rng), rng.u16(1024..), server(i)))
        .collect();
    for round in 0..u64::from(spec.rounds) {
        for (i, &(src, sport, dst)) in keys.iter().enumerate() {
            let ts = START_NS + round * spec.round_interval_ns + i as u64 * US;
            let src = IpAddr::V4(src);
            let pair = if i % 2 == 0 {
                [
                    Segment::tcp(src, sport, dst, PORT, true, tcp_flags::SYN),
                    Segment::tcp(src, sport, dst, PORT, false, tcp_flags::ACK),
                ]
            } else {
                let udp = |c2s| Segment {
                    proto: frame::Proto::Udp,
                    payload: 40,
                    ..Segment::tcp(src, sport, dst, 53, c2s, 0)
                };
                [udp(true), udp(false)]
            };
            for (k, segment) in pair.iter().enumerate() {
                frame::segment(&mut buf, segment);
                w.write(ts + k as u64 * 100, &buf, buf.len() as u32)?;
            }
        }
    }
    let start = START_NS + u64::from(spec.rounds) * spec.round_interval_ns;
    let mut pending = Vec::new();
    // One truth per connection, added up per flow.
    let mut flows: Vec<FlowTruth> = Vec::new();
    for c in 0..spec.connections {
        let cl = c / spec.per_client.max(1);
        let t = real_connection(c, cl, start + u64::from(c) * 100 * US, true, &mut pending);
        match flows.last_mut().filter(|f| f.client == t.client) {
            Some(f) => {
                f.c2s_pkts += t.c2s_pkts;
                f.c2s_bytes += t.c2s_bytes;
                f.s2c_pkts += t.s2c_pkts;
                f.s2c_bytes += t.s2c_bytes;
                f.connections += 1;
                f.client_legs_ns.extend(t.client_legs_ns);
                f.server_legs_ns.extend(t.server_legs_ns);
            }
            None => flows.push(t),
        }
    }
    let truth = flows;
    write_pending(&mut w, u64::MAX, &mut pending, &mut buf)?;
    w.finish()?;
    Ok(truth)
}
