//! The fuzz targets' bodies (`fuzz/`), here so that the inputs a fuzzer
//! once found are replayed by ordinary tests (`pipeline/tests/fuzz_regressions.rs`)
//! through exactly the same code. Each function panics on a failed check.

use std::io::Cursor;
use std::path::Path;

use crate::capture::CaptureFile;
use crate::flow::{FlowTable, Limits, TableConfig, Timeouts};
use crate::ingest::{Ingest, IngestConfig};
use crate::packet::{Addr, Fragment, L4Proto, PacketMeta, Transport};
use crate::source::Frame;
use crate::wire::dissect::{LinkType, dissect};

/// The first byte picks a link type ([`LinkType::CODES`], by index), the
/// rest is the frame: the ingest step (dissector with every encapsulation
/// opened, duplicate check, tunnel fragments) must return a packet or count
/// the frame, and every frame must be counted exactly once.
pub fn dissect_frame(data: &[u8]) {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let code = LinkType::CODES[usize::from(selector) % LinkType::CODES.len()];
    let Some(link) = LinkType::from_pcap(code) else {
        return;
    };
    let _ = dissect(link, frame);
    let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
    let mut ingest = Ingest::new(&IngestConfig::default(), hasher.clone(), hasher);
    // Twice: the second is a duplicate, and may finish a fragment the first began.
    for ts_ns in [1_000, 2_000] {
        let frame = Frame {
            ts_ns,
            wire_len: frame.len() as u32,
            link,
            data: frame,
        };
        if let Some(mut packet) = ingest.frame(frame) {
            // As the worker that counts its connection does.
            ingest.drops_copy(&mut packet);
            // A mirror's cut copy counts the length its IP header says.
            let most = match packet.mirror {
                Some(_) => frame.wire_len.saturating_add(packet.transport.ip_len),
                None => frame.wire_len,
            };
            assert!(packet.wire_len <= most);
        }
    }
    let c = &ingest.counters;
    let counted = c.kinds.iter().sum::<u64>() + c.malformed_total();
    assert_eq!(counted, c.frames, "{c:?}");
    // The second a copy of the first (or of its part, a later fragment).
    assert!(c.duplicates <= 1);
}

/// The bytes as a capture file: read to the end or to a clear error, every
/// frame through the parser.
pub fn read_capture(data: &[u8]) {
    let Ok(mut file) = CaptureFile::from_reader(Path::new("fuzz"), Cursor::new(data.to_vec()))
    else {
        return;
    };
    // Every call that delivers frames consumes their records. A compressed
    // capture can hold far more than its own size (a few bytes of zstd
    // make 128 KiB), so the read stops at a bound of decompressed bytes,
    // to keep each run short.
    loop {
        let before = file.offset();
        match file.read_frames(64, |f| {
            let _ = dissect(f.link, f.data);
        }) {
            Ok(0) | Err(_) => return,
            Ok(_) => assert!(file.offset() > before, "the reader does not advance"),
        }
        if file.offset() > FUZZ_DECOMPRESSED_BYTES {
            return;
        }
    }
}

/// Decompressed bytes [`read_capture`] reads at most.
const FUZZ_DECOMPRESSED_BYTES: u64 = 16 << 20;

/// The bytes as packets (8 bytes each, from a few addresses and ports so
/// that they meet in the same connections) into a small bounded table: it
/// must never hold more than its limits.
pub fn flow_table(data: &[u8]) {
    let limits = Limits {
        max_connections: 8,
        max_flows: 6,
        max_sketches: 1,
    };
    let timeouts = if data.first().is_some_and(|b| b & 1 == 1) {
        Timeouts::LIVE
    } else {
        Timeouts::NEVER
    };
    let config = TableConfig {
        limits,
        timeouts,
        conn_records: Some(crate::flow::ConnRecordConfig {
            active_timeout_ns: 30 * crate::time::SECOND,
            max_pending: 64,
        }),
        ..TableConfig::default()
    };
    let mut table = FlowTable::new(config, ahash::RandomState::with_seeds(1, 2, 3, 4));
    let mut ts = crate::time::SECOND;
    // Connection records never count a packet twice.
    let (mut packets, mut in_records) = (0u64, 0u64);
    let mut take_records = |table: &mut FlowTable| {
        for r in table.take_conn_records() {
            assert!(r.start_ns <= r.end_ns, "{r:?}");
            in_records += r.sent[crate::flow::Side::Client].packets
                + r.sent[crate::flow::Side::Server].packets;
        }
    };
    for p in data.chunks_exact(8) {
        let step = if p[6] & 0x80 != 0 {
            crate::time::SECOND
        } else {
            1_000_000
        };
        ts += u64::from(p[7]) * step;
        let fragment = match p[6] & 3 {
            0 | 1 => Fragment::Whole,
            2 => Fragment::First {
                ident: u32::from(p[5]),
            },
            _ => Fragment::Later {
                ident: u32::from(p[5]),
                last: p[6] & 4 != 0,
            },
        };
        let port =
            |bits: u8, well_known: bool| u16::from(bits & 7) + if well_known { 80 } else { 40_000 };
        // Now and then an ICMP error refusing the segment (no packet).
        let refusal = p[4] & 0x40 != 0;
        let packet = PacketMeta {
            ts_ns: ts,
            wire_len: 60 + u32::from(p[5]),
            // Now and then the bytes of a mirrored frame's later fragment.
            counts_packet: p[6] & 0x20 == 0 && !refusal,
            // Now and then a mirror's copy of a packet.
            duplicate: p[4] & 0x80 != 0,
            copy_key: 0,
            copy_part: crate::ingest::CopyPart::WHOLE,
            refusal,
            mirror: None,
            transport: Transport {
                proto: if p[0] & 1 == 0 {
                    L4Proto::Tcp
                } else {
                    L4Proto::Udp
                },
                src: Addr::from_v4([198, 18, 0, p[0] >> 5]),
                dst: Addr::from_v4([198, 18, 0, p[1] >> 5]),
                src_port: port(p[1], p[6] & 8 != 0),
                dst_port: port(p[2], p[6] & 16 != 0),
                tcp_flags: p[3],
                tcp_seq: u32::from(p[4] & 3),
                tcp_ack: 0,
                tcp_window: 0,
                payload_len: 0,
                ip_len: u32::from(p[5]) + 40,
                fragment,
            },
        };
        packets += u64::from(packet.counts_packet);
        table.update(&packet);
        if p[6] & 0x40 != 0 {
            table.expire(ts);
        }
        take_records(&mut table);
        let c = table.counters();
        assert!(
            c.active_connections <= 8 && c.active_flows <= 6 && c.active_sketches <= 1,
            "{c:?}"
        );
    }
    table.end_capture();
    take_records(&mut table);
    assert!(in_records <= packets, "{in_records} > {packets}");
    assert_eq!(table.counters().conn_records_dropped, 0);
    let mut flows = Vec::new();
    table.export(ts, &mut flows);
    assert!(flows.len() <= 6);
}
