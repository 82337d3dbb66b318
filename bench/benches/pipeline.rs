//! Per-packet cost of the hot path, so that regressions show:
//! - `parse`: the dissector on Ethernet/IPv4/TCP frames;
//! - `handoff`: a packet's share of handing a batch of them to another
//!   shard: gathered, pushed and popped through a shard inbox (the queue
//!   type the workers use; measured on one core, so without the cache-line
//!   transfer a real cross-core hand-off adds);
//! - `update/N`: one data packet into a table holding N established
//!   connections, in random connection order; `update/batched_N` the same
//!   through `FlowTable::update_batch`, as the workers count;
//! - `path/N`: frame to flow at N connections as a worker does it: the
//!   ingest step (dissector, duplicate check, encapsulations), a hand-off
//!   in batches, and counting in batches;
//! - `follow/N`: following a snapshot of N flows from the previous one, per
//!   flow (`pipeline::follow`: the per-pair Prometheus counters and the
//!   IPFIX exporter do it at every snapshot, a hub over every agent's).
//!
//! Run: `cargo bench -p flowtap-bench --bench pipeline` (BENCHMARKS.md).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bench::{data_frames, established, packet};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_queue::ArrayQueue;
use pipeline::Frame;
use pipeline::engine::{HANDOFF_BATCH, HandOff};
use pipeline::flow::TableConfig;
use pipeline::ingest::{Ingest, IngestConfig};
use pipeline::packet::PacketMeta;
use pipeline::wire::dissect::{LinkType, dissect};

const SIZES: [(u32, &str); 3] = [(1_000, "1k"), (100_000, "100k"), (1_000_000, "1M")];
/// Frames per measured batch: enough to spread over the table, small enough
/// for criterion's sampling.
const BATCH: usize = 4096;
/// Packets a worker counts at once (`pipeline::engine`).
const UPDATE_BATCH: usize = pipeline::engine::UPDATE_BATCH;

fn parse(c: &mut Criterion) {
    let frames = data_frames(BATCH as u32 / 2, 1);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("eth_ipv4_tcp", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(dissect(LinkType::Ethernet, black_box(f)).is_ok());
            }
        })
    });
    g.finish();
}

fn handoff(c: &mut Criterion) {
    let frames = data_frames(BATCH as u32 / 2, 1);
    let packets: Vec<PacketMeta> = frames.iter().map(|f| packet(f, 1)).collect();
    let inbox = ArrayQueue::new(64);
    let mut g = c.benchmark_group("handoff");
    g.throughput(Throughput::Elements(packets.len() as u64));
    g.bench_function("batched", |b| {
        b.iter(|| {
            // As a worker does it: gathered per shard, sent a batch at once.
            for batch in packets.chunks(HANDOFF_BATCH) {
                let outgoing = HandOff::from_slice(batch);
                let _ = inbox.push(outgoing);
                if let Some(received) = inbox.pop() {
                    for p in &received {
                        black_box(p);
                    }
                }
            }
        })
    });
    g.finish();
}

/// Runs `each` over the packets of an N-connection workload, cycling, with
/// timestamps that keep increasing (as in a capture), telling it which pass
/// over the items this is, counting on from `done` (items processed by
/// earlier calls): each pass is the next segment of every connection, so
/// TCP sequence numbers advance as in a capture (the same segment again
/// would be a retransmission).
fn cycle<T>(
    items: &[T],
    iters: u64,
    done: &mut u64,
    mut each: impl FnMut(&T, u64, u32),
) -> Duration {
    let started = Instant::now();
    // Each call starts at the same time, as it always has: what the rate
    // windows do at a slot boundary stays out of the per-packet cost.
    let mut ts = 10_000_000_000_000u64;
    for _ in 0..iters {
        ts += 1_000;
        let k = *done as usize;
        each(&items[k % items.len()], ts, (k / items.len()) as u32);
        *done += 1;
    }
    started.elapsed()
}

/// Packet `p` as the `pass`-th data segment of its direction.
fn next_segment(p: &PacketMeta, ts_ns: u64, pass: u32) -> PacketMeta {
    let mut p = PacketMeta { ts_ns, ..*p };
    p.transport.tcp_seq = p
        .transport
        .tcp_seq
        .wrapping_add(pass.wrapping_mul(u32::from(bench::PAYLOAD)));
    p
}

fn update(c: &mut Criterion) {
    let mut g = c.benchmark_group("update");
    g.throughput(Throughput::Elements(1));
    for (n, name) in SIZES {
        let (mut table, _) = established(n, TableConfig::default(), 1_000_000_000_000);
        let packets: Vec<PacketMeta> = data_frames(n, 2).iter().map(|f| packet(f, 0)).collect();
        let mut done = 0;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                cycle(&packets, iters, &mut done, |p, ts, pass| {
                    table.update(&next_segment(p, ts, pass));
                })
            })
        });
    }
    for (n, name) in SIZES {
        let (mut table, _) = established(n, TableConfig::default(), 1_000_000_000_000);
        let packets: Vec<PacketMeta> = data_frames(n, 2).iter().map(|f| packet(f, 0)).collect();
        let mut done = 0;
        g.bench_function(format!("batched_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut batch = Vec::with_capacity(UPDATE_BATCH);
                let d = cycle(&packets, iters, &mut done, |p, ts, pass| {
                    batch.push(next_segment(p, ts, pass));
                    if batch.len() == UPDATE_BATCH {
                        table.update_batch(&batch);
                        batch.clear();
                    }
                });
                table.update_batch(&batch);
                d
            })
        });
    }
    g.finish();
}

fn path(c: &mut Criterion) {
    let mut g = c.benchmark_group("path");
    g.throughput(Throughput::Elements(1));
    for (n, name) in SIZES {
        let (mut table, _) = established(n, TableConfig::default(), 1_000_000_000_000);
        let frames = data_frames(n, 3);
        let inbox = ArrayQueue::<HandOff>::new(64);
        let hasher = ahash::RandomState::new();
        let mut ingest = Ingest::new(&IngestConfig::default(), hasher.clone(), hasher);
        let mut done = 0;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                // As a worker does it: parse, hand off in batches, and count
                // in batches.
                let mut outgoing = HandOff::new();
                let mut batch = Vec::with_capacity(UPDATE_BATCH);
                let mut hand_off =
                    |outgoing: HandOff, batch: &mut Vec<PacketMeta>, ingest: &mut Ingest| {
                        let _ = inbox.push(outgoing);
                        let Some(received) = inbox.pop() else {
                            return;
                        };
                        for &p in &received {
                            // Its copies looked for, where it is counted.
                            let mut p = p;
                            if ingest.drops_copy(&mut p) {
                                continue;
                            }
                            batch.push(p);
                            if batch.len() == UPDATE_BATCH {
                                table.update_batch(batch);
                                batch.clear();
                            }
                        }
                    };
                let d = cycle(&frames, iters, &mut done, |f, ts, pass| {
                    let frame = Frame {
                        ts_ns: ts,
                        wire_len: f.len() as u32,
                        link: LinkType::Ethernet,
                        data: f,
                    };
                    if let Some(meta) = ingest.frame(frame) {
                        outgoing.push(next_segment(&meta, ts, pass));
                        if outgoing.len() == HANDOFF_BATCH {
                            let full = std::mem::take(&mut outgoing);
                            hand_off(full, &mut batch, &mut ingest);
                        }
                    }
                });
                hand_off(outgoing, &mut batch, &mut ingest);
                table.update_batch(&batch);
                d
            })
        });
    }
    g.finish();
}

fn follow(c: &mut Criterion) {
    use pipeline::flow::{Counter, FlowKey, FlowRecord, PerSide};
    use pipeline::follow::{Change, FlowFollower};
    use pipeline::packet::{Addr, L4Proto};
    use pipeline::snapshot::Flows;
    let mut g = c.benchmark_group("follow");
    g.throughput(Throughput::Elements(1));
    for (n, name) in [(100_000u32, "100k"), (1_000_000, "1M")] {
        // Each snapshot: every flow a packet more; a hundredth replaced by
        // new ones (flows that left, flows that started).
        let snapshot = |round: u32| -> Flows {
            (0..n)
                .map(|i| {
                    let id = if i % 100 == 0 { i + round * n } else { i };
                    let [a, b, c, d] = id.to_be_bytes();
                    FlowRecord {
                        sent: PerSide::new(
                            Counter {
                                pkts: u64::from(round) + 1,
                                bytes: 100,
                            },
                            Counter::default(),
                        ),
                        ..FlowRecord::new(FlowKey {
                            proto: L4Proto::Tcp,
                            client: Addr::from_v4([198, 18 | (a & 1), b, c]),
                            server: Addr::from_v4([198, 19, 0, d]),
                            server_port: 443,
                        })
                    }
                })
                .collect()
        };
        let snapshots = [snapshot(1), snapshot(2)];
        let mut follower = FlowFollower::<u64>::default();
        let mut round = 0;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut left = 0u64;
                for _ in 0..iters.div_ceil(u64::from(n)) {
                    round += 1;
                    follower.observe(
                        &snapshots[round % 2],
                        |_, f, change| match change {
                            Change::Continued(s) | Change::Restarted(s) => s + f.sent.total().pkts,
                            Change::Started => 0,
                        },
                        |_, s| left += s,
                    );
                }
                black_box(left);
                // Per flow: a round follows n of them.
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (iters.div_ceil(u64::from(n)) * u64::from(n)) as f64)
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = parse, handoff, update, path, follow
}
criterion_main!(benches);
