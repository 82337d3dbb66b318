//! Benchmarks of flowtap. This library builds the in-memory workloads that
//! the per-packet benchmarks (`benches/pipeline.rs`) and the table-memory
//! probe (`src/bin/table-memory.rs`) share: `n` established TCP connections,
//! their frames and their parsed packets. The side-by-side comparison with
//! the peer tools is `harness/run.py` (see BENCHMARKS.md).
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr};

use capgen::frame::{self, Segment, tcp_flags as flags};
use pipeline::flow::{FlowTable, TableConfig};
use pipeline::packet::PacketMeta;
use pipeline::wire::dissect::{Dissected, LinkType, dissect};

/// Payload bytes of a data segment: a typical mix of small and full frames
/// averages a few hundred bytes; the size only matters for the copy.
pub const PAYLOAD: u16 = 200;

/// Where connection `i` of a workload runs: distinct clients in
/// 198.18.0.0/16, a few ports each, and servers in 198.19.0.0/16, so that
/// (almost) every connection is a flow of its own: the costliest case.
pub fn endpoints(i: u32) -> (IpAddr, u16, IpAddr, u16) {
    let client = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (i & 0xffff));
    let server = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 1)) + (i >> 16) * 7 % 251);
    (client.into(), 20_000 + (i >> 16) as u16, server.into(), 443)
}

/// One Ethernet/IPv4/TCP frame of connection `i`.
pub fn frame(i: u32, c2s: bool, tcp_flags: u8, payload: u16) -> Vec<u8> {
    let (client, cport, server, sport) = endpoints(i);
    tcp_frame(client, cport, server, sport, c2s, tcp_flags, payload)
}

/// One Ethernet/TCP frame between `client:cport` and `server:sport`.
pub fn tcp_frame(
    client: IpAddr,
    cport: u16,
    server: IpAddr,
    sport: u16,
    c2s: bool,
    tcp_flags: u8,
    payload: u16,
) -> Vec<u8> {
    let mut buf = Vec::new();
    // Data starts right after the SYN's sequence number, as in a capture,
    // and an ACK acknowledges the other side's SYN (so that the handshake
    // answers the connection, as a real one does).
    let (isn, peer_isn) = if c2s { (999, 8_999) } else { (8_999, 999) };
    frame::segment(
        &mut buf,
        &Segment {
            seq: isn + u32::from(tcp_flags & flags::SYN == 0),
            ack: if tcp_flags & flags::ACK != 0 {
                peer_isn + 1
            } else {
                0
            },
            payload,
            ..Segment::tcp(client, cport, server, sport, c2s, tcp_flags)
        },
    );
    buf
}

/// The parsed packet of a frame built by [`frame`].
pub fn packet(data: &[u8], ts_ns: u64) -> PacketMeta {
    match dissect(LinkType::Ethernet, data) {
        Ok(Dissected::Transport(transport)) => PacketMeta::new(ts_ns, data.len() as u32, transport),
        other => panic!("a workload frame must parse to a transport: {other:?}"),
    }
}

/// Data frames of `n` connections, each direction once, in a random order
/// (seeded), as a capture of many interleaved connections would present them.
pub fn data_frames(n: u32, seed: u64) -> Vec<Vec<u8>> {
    let mut order: Vec<(u32, bool)> = (0..n).flat_map(|i| [(i, true), (i, false)]).collect();
    fastrand::Rng::with_seed(seed).shuffle(&mut order);
    order
        .into_iter()
        .map(|(i, c2s)| frame(i, c2s, flags::ACK | flags::PSH, PAYLOAD))
        .collect()
}

/// A table (one shard, no limits, no timeouts) holding `n` established
/// connections, each opened with a full three-way handshake at `ts_ns`
/// onwards. Returns the table and the next free timestamp.
pub fn established(n: u32, config: TableConfig, ts_ns: u64) -> (FlowTable, u64) {
    let mut table = FlowTable::new(config, ahash::RandomState::with_seeds(1, 2, 3, 4));
    let mut ts = ts_ns;
    for i in 0..n {
        let (client, cport, server, sport) = endpoints(i);
        handshake(&mut table, &mut ts, client, cport, server, sport);
    }
    (table, ts)
}

/// Counts a three-way handshake between `client:cport` and `server:sport`
/// into `table`, a microsecond per packet from `ts`.
pub fn handshake(
    table: &mut FlowTable,
    ts: &mut u64,
    client: IpAddr,
    cport: u16,
    server: IpAddr,
    sport: u16,
) {
    for (c2s, f) in [
        (true, flags::SYN),
        (false, flags::SYN | flags::ACK),
        (true, flags::ACK),
    ] {
        table.update(&packet(
            &tcp_frame(client, cport, server, sport, c2s, f, 0),
            *ts,
        ));
        *ts += 1_000;
    }
}
