//! The threaded pipeline: results do not depend on the number of workers,
//! the merger publishes while packets flow, and full queues behave as
//! configured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipeline::Frame;
use pipeline::ingest::{DedupConfig, IngestConfig};
use pipeline::wire::dissect::LinkType;
use pipeline::{
    Backpressure, Clock, Merger, PacketSource, Pipeline, PipelineConfig, Poll, SourceWaker,
};

/// A source of synthetic Ethernet/IPv4/TCP frames: `conns` connections of
/// `per_conn` packets each, interleaved, one frame per call batch item.
struct Synthetic {
    next: u64,
    total: u64,
    conns: u64,
    pause_every: Option<(u64, Duration)>,
    /// Frames as a router forwarded them: TTL one less, another header
    /// checksum.
    routed: bool,
    /// Set when this source has delivered all its frames.
    finished: Arc<AtomicBool>,
    /// Delivers nothing until this is set.
    after: Option<Arc<AtomicBool>>,
    frame: Vec<u8>,
}

impl Synthetic {
    fn new(conns: u64, per_conn: u64) -> Synthetic {
        Synthetic {
            next: 0,
            total: conns * per_conn,
            conns,
            pause_every: None,
            routed: false,
            finished: Arc::default(),
            after: None,
            frame: Vec::new(),
        }
    }

    fn build(&mut self, i: u64) {
        let conn = i % self.conns;
        let from_client = (i / self.conns).is_multiple_of(2);
        let client = [198, 18, (conn >> 8) as u8, conn as u8];
        let server = [198, 19, 0, (conn % 7) as u8];
        let (src, dst, sport, dport) = if from_client {
            (client, server, 40000 + (conn % 1000) as u16, 443u16)
        } else {
            (server, client, 443u16, 40000 + (conn % 1000) as u16)
        };
        let f = &mut self.frame;
        f.clear();
        f.extend_from_slice(&[0; 12]);
        // Each packet its own IP identification.
        let [id_hi, id_lo] = (i as u16).to_be_bytes();
        let (ttl, checksum) = if self.routed { (63, 1) } else { (64, 0) };
        f.extend_from_slice(&[
            0x08, 0x00, 0x45, 0, 0, 40, id_hi, id_lo, 0x40, 0, ttl, 6, 0, checksum,
        ]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    }
}

/// Whether a source told to wait for `after` still waits.
fn waiting(after: &Option<Arc<AtomicBool>>) -> bool {
    after
        .as_ref()
        .is_some_and(|after| !after.load(Ordering::Acquire))
}

impl PacketSource for Synthetic {
    fn poll<F: FnMut(Frame<'_>)>(&mut self, mut on_frame: F) -> Poll {
        if self.next >= self.total {
            self.finished.store(true, Ordering::Release);
            return Poll::Finished;
        }
        if waiting(&self.after) {
            return Poll::Busy;
        }
        for _ in 0..256 {
            if self.next >= self.total {
                break;
            }
            let i = self.next;
            self.build(i);
            on_frame(Frame {
                ts_ns: 1_000_000_000_000 + i * 1000,
                wire_len: 54,
                link: LinkType::Ethernet,
                data: &self.frame,
            });
            self.next += 1;
            if let Some((every, pause)) = self.pause_every
                && self.next.is_multiple_of(every)
            {
                std::thread::sleep(pause);
            }
        }
        Poll::Busy
    }
}

fn key_counts(flows: &pipeline::snapshot::Flows) -> Vec<String> {
    flows
        .iter()
        .map(|f| format!("{:?} {:?} {}", f.key, f.sent, f.connections))
        .collect()
}

#[test]
fn results_do_not_depend_on_the_number_of_workers() {
    let mut reference = None;
    for workers in [1, 2, 3, 8] {
        let config = PipelineConfig {
            workers,
            queue_capacity: 64, // small, so producers really wait
            ..PipelineConfig::default()
        };
        let pipeline = Pipeline::start(config, vec![Synthetic::new(5000, 40)]);
        let snapshot = pipeline.finish().unwrap();
        assert_eq!(snapshot.counters.ingest.frames, 200_000);
        assert_eq!(
            snapshot.counters.ingest.handoff_drops, 0,
            "capture files never drop"
        );
        let flows: u64 = snapshot.flows.iter().map(|f| f.total_pkts()).sum();
        assert_eq!(flows, 200_000, "{workers} workers");
        let counts = key_counts(&snapshot.flows);
        match &reference {
            None => reference = Some(counts),
            Some(r) => assert_eq!(&counts, r, "{workers} workers"),
        }
    }
}

#[test]
fn the_merger_publishes_while_packets_flow() {
    let mut source = Synthetic::new(2000, 50);
    source.pause_every = Some((10_000, Duration::from_millis(20)));
    let config = PipelineConfig {
        workers: 2,
        ..PipelineConfig::default()
    };
    let pipeline = Arc::new(Pipeline::start(config, vec![source]));
    let published: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let sink = published.clone();
    let merger = Merger::spawn(
        pipeline.clone(),
        Duration::from_millis(25),
        Clock::Capture,
        move |s| {
            sink.lock()
                .unwrap()
                .push((s.sequence, s.counters.ingest.frames));
        },
    );
    let last = pipeline.finish().unwrap();
    merger.stop();
    let published = published.lock().unwrap();
    assert!(
        published.len() >= 3,
        "snapshots during ingestion: {published:?}"
    );
    assert!(
        published
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
    );
    assert!(
        published
            .iter()
            .any(|(_, frames)| *frames > 0 && *frames < 100_000),
        "{published:?}"
    );
    assert_eq!(last.counters.ingest.frames, 100_000);
}

#[test]
fn a_full_queue_drops_and_counts_when_told_to() {
    // Two sources on two workers push into each other's small inboxes; with
    // the drop policy nothing waits and every frame is either counted in a
    // flow or as a hand-off drop.
    let config = PipelineConfig {
        workers: 2,
        queue_capacity: 1,
        backpressure: Backpressure::Drop,
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::start(
        config,
        vec![Synthetic::new(3000, 20), Synthetic::new(3000, 20)],
    );
    let s = pipeline.finish().unwrap();
    let in_flows: u64 = s.flows.iter().map(|f| f.total_pkts()).sum();
    assert_eq!(s.counters.ingest.frames, 120_000);
    assert!(
        s.counters.ingest.handoff_drops > 0,
        "a one-packet queue must overflow"
    );
    assert_eq!(in_flows + s.counters.ingest.handoff_drops, 120_000);
}

/// A source that delivers a few frames, then breaks: by panicking, or by
/// reporting its socket failed.
struct Breaking {
    inner: Synthetic,
    after: u64,
    panic: bool,
}

impl PacketSource for Breaking {
    fn poll<F: FnMut(Frame<'_>)>(&mut self, on_frame: F) -> Poll {
        if self.inner.next >= self.after {
            if self.panic {
                panic!("planted fault");
            }
            return Poll::Failed("POLLERR on the socket".into());
        }
        self.inner.poll(on_frame)
    }
}

#[test]
fn a_failed_source_or_worker_fails_the_pipeline_and_nothing_hangs() {
    for panic in [false, true] {
        let source = Breaking {
            inner: Synthetic::new(100, 40),
            after: 500,
            panic,
        };
        let pipeline = Pipeline::start(
            PipelineConfig {
                workers: 2,
                ..PipelineConfig::default()
            },
            vec![source],
        );
        let failed = pipeline.finish().unwrap_err();
        let want = if panic {
            "panicked: planted fault"
        } else {
            "POLLERR"
        };
        assert!(failed.contains(want), "{failed}");
        assert_eq!(pipeline.failure(), Some(failed));
    }
}

/// Shaped like a live socket: delivers its frames, then sleeps in `poll`
/// (a socket's poll(2)) until woken through its waker or a minute passes.
struct Sleeping {
    frames: Synthetic,
    alarm: Arc<Alarm>,
    /// Sources that have delivered all their frames.
    done: Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Default)]
struct Alarm {
    rung: Mutex<bool>,
    bell: std::sync::Condvar,
}

impl SourceWaker for Alarm {
    fn wake(&self) {
        *self.rung.lock().unwrap() = true;
        self.bell.notify_all();
    }
}

impl PacketSource for Sleeping {
    fn poll<F: FnMut(Frame<'_>)>(&mut self, on_frame: F) -> Poll {
        if self.frames.next < self.frames.total {
            self.frames.poll(on_frame);
            if self.frames.next == self.frames.total {
                self.done.fetch_add(1, Ordering::AcqRel);
            }
            return Poll::Busy;
        }
        let rung = self.alarm.rung.lock().unwrap();
        let (mut rung, _) = self
            .alarm
            .bell
            .wait_timeout_while(rung, SOURCE_SLEEP, |rung| !*rung)
            .unwrap();
        *rung = false;
        Poll::Idle
    }

    fn waker(&self) -> Option<Arc<dyn SourceWaker>> {
        Some(self.alarm.clone())
    }
}

const SOURCE_SLEEP: Duration = Duration::from_secs(60);

#[test]
fn workers_asleep_in_their_sources_are_woken_for_snapshots_and_stop() {
    // Two sources on two workers, each handing the other the packets of
    // its shard, then both asleep: the snapshot must wake both (each
    // counts what the other handed it) and dropping the pipeline must end
    // their sleeps, each long before a sleep would end by itself.
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sources: Vec<Sleeping> = (0..2)
        .map(|_| Sleeping {
            frames: Synthetic::new(100, 4),
            alarm: Arc::default(),
            done: done.clone(),
        })
        .collect();
    let started = Instant::now();
    let pipeline = Pipeline::start(
        PipelineConfig {
            workers: 2,
            ..PipelineConfig::default()
        },
        sources,
    );
    while done.load(Ordering::Acquire) < 2 {
        assert!(started.elapsed() < SOURCE_SLEEP / 2, "sources never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Both sources are asleep (or about to be) from here.
    std::thread::sleep(Duration::from_millis(200));
    let snapshot = pipeline.snapshot(Clock::Capture);
    assert_eq!(snapshot.counters.ingest.frames, 800);
    let pkts: u64 = snapshot.flows.iter().map(|f| f.total_pkts()).sum();
    assert_eq!(pkts, 800, "every handed-off packet counted");
    drop(pipeline);
    assert!(
        started.elapsed() < SOURCE_SLEEP / 2,
        "a snapshot or the stop waited for a source's sleep to end: {:?}",
        started.elapsed()
    );
}

/// A mirror of both ends of a conversation delivers each packet twice, the
/// second copy routed (TTL one less) and, from a cloud mirror's other
/// session, on another receive queue: read by another worker. Both copies
/// go to the worker that counts their connection, which finds the second
/// and, with `--dedup`, drops it: the flows are those of one copy.
#[test]
fn copies_read_by_two_workers_are_duplicates() {
    let config = two_workers_dropping_copies();
    // The copies come in microseconds or more after their packets.
    let first = Synthetic::new(10, 4);
    let mut routed = Synthetic::new(10, 4);
    routed.routed = true;
    routed.after = Some(first.finished.clone());
    let one = Pipeline::start(config.clone(), vec![Synthetic::new(10, 4)])
        .finish()
        .unwrap();
    let dropped = Pipeline::start(config, vec![first, routed])
        .finish()
        .unwrap();
    let ingest = dropped.counters.ingest;
    assert_eq!(ingest.frames, 80);
    assert_eq!(ingest.duplicates, 40);
    assert_eq!(ingest.duplicates_dropped, 40);
    assert_eq!(ingest.duplicate_slots, 4096);
    assert_eq!(key_counts(&dropped.flows), key_counts(&one.flows));
}

/// Two workers, `--dedup` (a fixed hash seed).
fn two_workers_dropping_copies() -> PipelineConfig {
    PipelineConfig {
        workers: 2,
        hash_seed: Some(1),
        ingest: IngestConfig {
            dedup: DedupConfig {
                drop: true,
                ..DedupConfig::default()
            },
            ..IngestConfig::default()
        },
        ..PipelineConfig::default()
    }
}

/// One TCP segment in Ethernet/IPv4 (IP id `ident`), `payload` bytes of
/// zeros.
fn segment(
    (src, sport): ([u8; 4], u16),
    (dst, dport): ([u8; 4], u16),
    flags: u8,
    (seq, ack): (u32, u32),
    (ident, payload): (u16, u8),
) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40 + payload]);
    f.extend_from_slice(&ident.to_be_bytes());
    f.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.resize(f.len() + usize::from(payload), 0);
    f
}

/// A port of a SPAN of both ends, scripted in phases: each phase's frames
/// in one poll once the phase it waits for (another port's) was read; the
/// poll then held for `hold`, so that the worker hands them on only after
/// the other port's next phase was read.
struct Port {
    phases: std::collections::VecDeque<Phase>,
    hold: Duration,
}

struct Phase {
    after: Option<Arc<AtomicBool>>,
    frames: Vec<(u64, Vec<u8>)>,
    read: Arc<AtomicBool>,
}

impl PacketSource for Port {
    fn poll<F: FnMut(Frame<'_>)>(&mut self, mut on_frame: F) -> Poll {
        let Some(phase) = self.phases.front() else {
            return Poll::Finished;
        };
        if waiting(&phase.after) {
            return Poll::Busy;
        }
        let phase = self.phases.pop_front().expect("a phase");
        for (ts_ns, data) in &phase.frames {
            on_frame(Frame {
                ts_ns: *ts_ns,
                wire_len: data.len() as u32,
                link: LinkType::Ethernet,
                data,
            });
        }
        phase.read.store(true, Ordering::Release);
        std::thread::sleep(self.hold);
        Poll::Busy
    }
}

/// A SPAN of both ends on two ports, each read by a worker: each port
/// has every packet, in order, and a packet's copies are read as the two
/// workers come to them. Here the server's port is read first: its SYN and
/// SYN-ACK; then the client's port, up to the request; then the server's
/// up to the answer; then the client's. Each worker hands on what it read
/// only after the other port's next packets were read. A connection must
/// be counted in order by whichever worker counts it. (The copy kept was
/// the first read: the client port's worker counted the ACK and request
/// it read itself before the SYN and SYN-ACK the server port's worker
/// kept and handed on, and took the connection as joined mid-stream, not
/// established; the server port's worker counted the answer before the
/// request.)
#[test]
fn copies_read_by_two_workers_keep_a_handshake_in_order() {
    const CONNS: u16 = 64;
    let base = 1_000_000_000_000u64;
    let mut phases: [Vec<(u64, Vec<u8>)>; 4] = Default::default();
    for i in 0..CONNS {
        let client = ([198, 18, 1, i as u8], 40_000 + i);
        let server = ([198, 19, 0, 1], 443);
        let at = base + u64::from(i) * 100_000;
        let packets = [
            segment(client, server, 0x02, (100, 0), (i, 0)),
            segment(server, client, 0x12, (500, 101), (i, 0)),
            segment(client, server, 0x10, (101, 501), (i + 1, 0)),
            segment(client, server, 0x18, (101, 501), (i + 2, 10)),
            segment(server, client, 0x18, (501, 111), (i + 1, 20)),
        ];
        // (phase, packet, µs after `at`): each packet stamped first at the
        // port nearer its sender (the client's port reads phases 1 and 3).
        for (phase, packet, us) in [
            (0, 0, 10),
            (0, 1, 20),
            (1, 0, 0),
            (1, 1, 30),
            (1, 2, 40),
            (1, 3, 60),
            (2, 2, 50),
            (2, 3, 70),
            (2, 4, 80),
            (3, 4, 90),
        ] {
            phases[phase].push((at + us * 1_000, packets[packet].clone()));
        }
    }
    let read: Vec<Arc<AtomicBool>> = (0..4).map(|_| Arc::default()).collect();
    let port = |own: [usize; 2]| Port {
        phases: own
            .into_iter()
            .map(|p| Phase {
                after: p.checked_sub(1).map(|before| read[before].clone()),
                frames: phases[p].clone(),
                read: read[p].clone(),
            })
            .collect(),
        hold: Duration::from_millis(50),
    };
    let (server_port, client_port) = (port([0, 2]), port([1, 3]));
    let snapshot = Pipeline::start(
        two_workers_dropping_copies(),
        vec![server_port, client_port],
    )
    .finish()
    .unwrap();
    let ingest = snapshot.counters.ingest;
    let conns = u64::from(CONNS);
    assert_eq!(ingest.frames, conns * 10);
    assert_eq!(
        (ingest.duplicates, ingest.duplicates_dropped),
        (conns * 5, conns * 5),
        "every packet's second copy"
    );
    let pkts: u64 = snapshot.flows.iter().map(|f| f.total_pkts()).sum();
    assert_eq!(pkts, conns * 5);
    let established: u64 = snapshot
        .flows
        .iter()
        .map(|f| f.tcp.connections.established)
        .sum();
    assert_eq!(established, conns, "every handshake in order");
    let retransmitted: u64 = snapshot.flows.iter().map(|f| f.tcp.retransmits()).sum();
    assert_eq!(retransmitted, 0, "every segment in order");
}
