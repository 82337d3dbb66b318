//! `table-memory KIND N`: builds one flow table holding N of something and
//! prints, as JSON, how much resident memory it added per item. KIND:
//! - `connections`: N established TCP connections in a few hundred flows
//!   (the cost of a connection);
//! - `flows`: N flows of one UDP datagram each (a flow with its connection);
//! - `handshake-flows`: N TCP flows with one measured handshake each (exact
//!   samples: what most flows hold);
//! - `histogram-flows`: N TCP flows with 20 handshakes each (the digest
//!   turns into a histogram after 16 samples).
//!
//! One kind per process, so that each measurement starts from a clean heap.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr};

use capgen::frame::{self, Proto, Segment, tcp_flags as flags};
use pipeline::flow::{FlowTable, TableConfig};

fn resident() -> u64 {
    pipeline::memory::resident_bytes().expect("/proc/self/statm is readable")
}

fn v4(base: [u8; 4], i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::from(base)) + i))
}

fn send(table: &mut FlowTable, ts: &mut u64, s: Segment<'_>) {
    let mut buf = Vec::new();
    frame::segment(&mut buf, &s);
    *ts += 1_000;
    table.update(&bench::packet(&buf, *ts));
}

fn tcp<'a>(client: IpAddr, cport: u16, server: IpAddr, c2s: bool, f: u8) -> Segment<'a> {
    let (src, dst, sport, dport) = if c2s {
        (client, server, cport, 443)
    } else {
        (server, client, 443, cport)
    };
    Segment {
        proto: Proto::Tcp,
        src,
        dst,
        sport,
        dport,
        flags: f,
        seq: if c2s { 1 } else { 7 },
        ack: 0,
        payload: 0,
        vlans: &[],
    }
}

fn handshake(table: &mut FlowTable, ts: &mut u64, client: IpAddr, cport: u16, server: IpAddr) {
    for (c2s, f) in [
        (true, flags::SYN),
        (false, flags::SYN | flags::ACK),
        (true, flags::ACK),
    ] {
        send(table, ts, tcp(client, cport, server, c2s, f));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_default();
    let n: u32 = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("usage: table-memory KIND N");
    let mut table = FlowTable::new(
        TableConfig::default(),
        ahash::RandomState::with_seeds(1, 2, 3, 4),
    );
    let before = resident();
    let mut ts = 1_000_000_000_000u64;
    let server = v4([198, 19, 0, 1], 0);
    match kind.as_str() {
        "connections" => {
            for i in 0..n {
                let client = v4([198, 18, 0, 0], i % 256);
                handshake(&mut table, &mut ts, client, 1024 + (i / 256) as u16, server);
            }
        }
        "flows" => {
            for i in 0..n {
                let mut s = tcp(v4([198, 18, 0, 0], i), 5353, server, true, 0);
                s.proto = Proto::Udp;
                s.dport = 53;
                send(&mut table, &mut ts, s);
            }
        }
        "handshake-flows" => {
            for i in 0..n {
                handshake(&mut table, &mut ts, v4([198, 18, 0, 0], i), 40_000, server);
            }
        }
        "histogram-flows" => {
            for i in 0..n {
                for port in 0..20 {
                    handshake(
                        &mut table,
                        &mut ts,
                        v4([198, 18, 0, 0], i),
                        40_000 + port,
                        server,
                    );
                }
            }
        }
        other => panic!("unknown kind {other:?}"),
    }
    let after = resident();
    let c = table.counters();
    println!(
        "{{\"kind\":\"{kind}\",\"n\":{n},\"connections\":{},\"flows\":{},\"histograms\":{},\"bytes\":{},\"bytes_per_item\":{:.1}}}",
        c.active_connections,
        c.active_flows,
        c.active_histograms,
        after - before,
        (after - before) as f64 / f64::from(n)
    );
}
