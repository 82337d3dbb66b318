//! `table-memory KIND N`: builds one flow table holding N of something and
//! prints, as JSON, how much resident memory it added per item. KIND:
//! - `connections`: N established TCP connections in a few hundred flows
//!   (the cost of a connection), with a capture file's timeouts (none);
//! - `live-connections`: the same with live capture's idle timeouts, which
//!   file each connection in the expiry wheel too;
//! - `flows`: N flows of one UDP datagram each (a flow with its connection);
//! - `handshake-flows`: N TCP flows with one measured handshake each (exact
//!   samples: what most flows hold);
//! - `histogram-flows`: N TCP flows with 20 handshakes each (the digest
//!   turns into a sketch after 16 samples).
//!
//! One kind per process, so that each measurement starts from a clean heap.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr};

use capgen::frame::{self, Proto, Segment};
use pipeline::flow::{FlowTable, TableConfig, Timeouts};

fn resident() -> u64 {
    pipeline::memory::resident_bytes().expect("/proc/self/statm is readable")
}

fn v4(base: [u8; 4], i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::from(base)) + i))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_default();
    let n: u32 = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("usage: table-memory KIND N");
    let config = match kind.as_str() {
        "live-connections" => TableConfig {
            timeouts: Timeouts::LIVE,
            ..TableConfig::default()
        },
        _ => TableConfig::default(),
    };
    let mut table = FlowTable::new(config, ahash::RandomState::with_seeds(1, 2, 3, 4));
    let before = resident();
    let mut ts = 1_000_000_000_000u64;
    let server = v4([198, 19, 0, 1], 0);
    match kind.as_str() {
        "connections" | "live-connections" => {
            for i in 0..n {
                let client = v4([198, 18, 0, 0], i % 256);
                let cport = 1024 + (i / 256) as u16;
                bench::handshake(&mut table, &mut ts, client, cport, server, 443);
            }
        }
        "flows" => {
            let mut buf = Vec::new();
            for i in 0..n {
                let client = v4([198, 18, 0, 0], i);
                let datagram = Segment {
                    proto: Proto::Udp,
                    ..Segment::tcp(client, 5353, server, 53, true, 0)
                };
                frame::segment(&mut buf, &datagram);
                ts += 1_000;
                table.update(&bench::packet(&buf, ts));
            }
        }
        "handshake-flows" => {
            for i in 0..n {
                let client = v4([198, 18, 0, 0], i);
                bench::handshake(&mut table, &mut ts, client, 40_000, server, 443);
            }
        }
        "histogram-flows" => {
            for i in 0..n {
                let client = v4([198, 18, 0, 0], i);
                for port in 0..20 {
                    bench::handshake(&mut table, &mut ts, client, 40_000 + port, server, 443);
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
        c.active_sketches,
        after - before,
        (after - before) as f64 / f64::from(n)
    );
}
