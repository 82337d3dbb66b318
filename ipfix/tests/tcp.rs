//! The TCP transport across a collector restart: records exported while
//! the collector is away wait in the bounded buffer and arrive, after the
//! templates, on the next connection; records the buffer has no room for
//! are counted as lost.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ipfix::message::{TEMPLATE_V4, TEMPLATE_V6};
use ipfix::{CollectorAddr, ExportConfig, ExportStats, Exporter};
use pipeline::Snapshot;
use pipeline::flow::{Counter, FlowKey, FlowRecord, PerSide};
use pipeline::packet::{Addr, L4Proto};
use pipeline::snapshot::{SnapshotSink, Unnamed};

const SECOND: u64 = 1_000_000_000;

fn flow(n: u8, pkts: u64) -> FlowRecord {
    FlowRecord {
        ip_bytes: Default::default(),
        sent: PerSide::new(
            Counter {
                pkts,
                bytes: 100 * pkts,
            },
            Counter {
                pkts,
                bytes: 60 * pkts,
            },
        ),
        last_seen_ns: 1,
        connections: 1,
        ..FlowRecord::new(FlowKey {
            proto: L4Proto::Tcp,
            client: Addr::from_v4([198, 18, 0, n]),
            server: Addr::from_v4([198, 19, 0, 1]),
            server_port: 443,
        })
    }
}

/// A snapshot at `at_s` seconds with flows 1 and 2 at `pkts` packets each way.
fn snapshot(at_s: u64, pkts: u64) -> Snapshot {
    Snapshot {
        as_of_ns: at_s * SECOND,
        flows: vec![flow(1, pkts), flow(2, pkts)].into(),
        ..Snapshot::default()
    }
}

/// A message header's sequence number and export time.
#[derive(Debug)]
struct Header {
    sequence: u32,
    export_time_s: u32,
}

/// Reads IPFIX messages from `s` until `records` data records came (or 5
/// s passed); returns the set ids of the first message, the records, and
/// every message's header.
fn read_records(s: &mut TcpStream, records: u64) -> (Vec<u16>, u64, Vec<Header>) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (mut first, mut got, mut headers) = (None, 0, Vec::new());
    while got < records {
        let mut header = [0u8; 16];
        s.read_exact(&mut header).expect("a message header");
        assert_eq!(u16::from_be_bytes([header[0], header[1]]), 10, "version");
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        let word = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().unwrap());
        headers.push(Header {
            export_time_s: word(4),
            sequence: word(8),
        });
        let mut body = vec![0u8; len - 16];
        s.read_exact(&mut body).unwrap();
        let mut ids = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let id = u16::from_be_bytes([body[at], body[at + 1]]);
            let set_len = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
            ids.push(id);
            if id == TEMPLATE_V4 || id == TEMPLATE_V6 {
                got += ((set_len - 4) / (ipfix::message::record_len(id == TEMPLATE_V6, false) + 6))
                    as u64;
            }
            at += set_len;
        }
        first.get_or_insert(ids);
    }
    (first.unwrap_or_default(), got, headers)
}

#[test]
fn records_wait_for_a_restarted_collector() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(ExportStats::default());
    let config = ExportConfig {
        collectors: vec![CollectorAddr::Tcp(addr)],
        tcp_buffer_bytes: 1 << 20,
        template_refresh: Duration::from_secs(10),
        domain: 1,
        enterprise: ipfix::message::DEFAULT_ENTERPRISE,
        biflow: false,
        per: ipfix::RecordsPer::Flow,
        active_timeout_ns: SECOND,
        mtu: 1400,
    };
    let mut exporter = Exporter::new(config, stats.clone()).unwrap();

    // Two flows, each way: four records, after the templates.
    exporter.snapshot(&snapshot(10, 5), &Unnamed, false);
    let (mut conn, _) = listener.accept().unwrap();
    let (ids, n, _) = read_records(&mut conn, 4);
    assert_eq!((ids[0], n), (2, 4), "templates first, then four records");

    // The collector stops; four more records are made meanwhile.
    drop((conn, listener));
    std::thread::sleep(Duration::from_millis(100));
    exporter.snapshot(&snapshot(20, 9), &Unnamed, false);
    assert_eq!(
        stats.records_lost.load(Ordering::Relaxed),
        0,
        "buffered, not lost"
    );

    // It is back (same port): the next export reconnects, templates lead,
    // and the buffered records arrive with the new ones.
    let listener = TcpListener::bind(addr).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    exporter.snapshot(&snapshot(30, 12), &Unnamed, false);
    let (mut conn, _) = listener.accept().unwrap();
    let (ids, n, headers) = read_records(&mut conn, 8);
    assert_eq!((ids[0], n), (2, 8));
    // The templates carry the sequence number of the data after them (the
    // records kept, numbered from 4), not the newest (8); every message
    // the time it was written, not when it was made (30 s ago here, in
    // capture time; the wall clock is what an export time is).
    let sequences: Vec<u32> = headers.iter().map(|h| h.sequence).collect();
    assert_eq!(&sequences[..2], &[4, 4], "{headers:?}");
    assert!(sequences.windows(2).all(|w| w[0] <= w[1]), "{headers:?}");
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    assert!(
        headers.iter().all(|h| h.export_time_s.abs_diff(now_s) <= 5),
        "{headers:?} at {now_s}"
    );
    assert_eq!(stats.tcp_connects.load(Ordering::Relaxed), 2);
    assert_eq!(stats.records_lost.load(Ordering::Relaxed), 0);
    assert_eq!(stats.records.load(Ordering::Relaxed), 12);
}

#[test]
fn records_beyond_the_buffer_are_counted_lost() {
    // Nothing listens on this port once the listener is gone.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let stats = Arc::new(ExportStats::default());
    let config = ExportConfig {
        collectors: vec![CollectorAddr::Tcp(addr)],
        // Messages of at most three records (16 + 4 + 3 x 134 = 422
        // bytes, six of each record's the names' zero lengths): room for
        // the first, not for the second (one record, 154).
        tcp_buffer_bytes: 440,
        template_refresh: Duration::from_secs(10),
        domain: 1,
        enterprise: ipfix::message::DEFAULT_ENTERPRISE,
        biflow: false,
        per: ipfix::RecordsPer::Flow,
        active_timeout_ns: SECOND,
        mtu: 434,
    };
    let mut exporter = Exporter::new(config, stats.clone()).unwrap();
    exporter.snapshot(&snapshot(10, 5), &Unnamed, false);
    assert_eq!(stats.records.load(Ordering::Relaxed), 4);
    assert_eq!(
        stats.records_lost.load(Ordering::Relaxed),
        1,
        "one message kept"
    );
    exporter.finish();
    assert_eq!(
        stats.records_lost.load(Ordering::Relaxed),
        4,
        "and lost at the end"
    );
}
