//! The pipeline's threads. Each worker owns one shard ([`FlowTable`]) and
//! updates it without locks. A worker may also own a packet source (a capture
//! file, an AF_XDP socket); it parses each frame, and a packet whose shard
//! belongs to another worker crosses over through that worker's bounded
//! lock-free inbox, in batches ([`HANDOFF_BATCH`]). A snapshot request
//! makes every worker export its flows ([`Exports`]); the
//! [`merger`](crate::merger) merges them into one [`Snapshot`].
//!
//! With one worker there is no hand-off at all: the source's thread parses
//! and updates inline.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::Backoff;
use crossbeam_utils::sync::{Parker, Unparker};
use smallvec::SmallVec;

use crate::flow::{
    ConnRecord, EndedFlow, FlowRecord, FlowTable, ShardHasher, Share, TableConfig, TableCounters,
    Window,
};
use crate::ingest::{Ingest, IngestConfig, IngestCounters, MirrorSessions};
use crate::merger;
use crate::packet::PacketMeta;
use crate::snapshot::Snapshot;
use crate::source::{Frame, PacketSource, Poll, SourceWaker};
use crate::time::{Clock, SECOND};

/// What a full hand-off queue does to its producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backpressure {
    /// Wait for room (capture files: nothing may be lost, time is free).
    Wait,
    /// Drop the packet and count it (live: the NIC will not wait either).
    Drop,
}

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Worker threads, one shard each.
    pub workers: usize,
    /// Capacity of each worker's hand-off inbox, in packets (rounded up to
    /// whole batches of [`HANDOFF_BATCH`]).
    pub queue_capacity: usize,
    /// Every shard's table; its limits are the pipeline's totals, shared
    /// out equally between the shards.
    pub table: TableConfig,
    /// How each source's frames are read (encapsulations, duplicates).
    pub ingest: IngestConfig,
    /// Fixed hash seed (tests); random when `None`.
    pub hash_seed: Option<u64>,
    /// Without `hash_seed`, a fixed seed for what decides which copies of
    /// a packet a run finds (the worker each packet goes to and the
    /// duplicate tables, whose slots collide by the hash): capture files
    /// give the same answer every run (a random seed made a file with
    /// duplicates count 20,967, 20,997 or 20,970 packets). The flow tables
    /// keep a random seed: a crafted file could at most miss copies or
    /// unbalance the workers, not slow the tables.
    pub repeatable_seed: Option<u64>,
    pub backpressure: Backpressure,
    /// How often, in capture time, a shard expires idle state.
    pub maintenance_interval_ns: u64,
    /// Core to pin each worker to, by worker index.
    pub cores: Vec<Option<usize>>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 1,
            queue_capacity: 64 * 1024,
            table: TableConfig::default(),
            ingest: IngestConfig::default(),
            hash_seed: None,
            repeatable_seed: None,
            backpressure: Backpressure::Wait,
            maintenance_interval_ns: SECOND,
            cores: Vec::new(),
        }
    }
}

/// What an export is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExportFor {
    /// A snapshot while the capture runs.
    Snapshot,
    /// The last snapshot of a capture that stops (live, its frames no
    /// longer coming): what was handed between workers is counted first,
    /// then every connection ends (connection records cut; a handshake
    /// still under way, within its SYN timeout, has no outcome, as one
    /// evicted).
    Stop,
    /// The last snapshot once the sources finished (files): everything
    /// queued is processed first, then every connection ends.
    Finish,
}

enum Control {
    Export {
        as_of_ns: u64,
        /// The oldest capture timestamp any source delivered, if any.
        since_ns: Option<u64>,
        what: ExportFor,
        reply: Sender<ShardExport>,
    },
    /// The last records of the flows that left the table since the last
    /// export or take ([`Pipeline::take_ended_flows`]).
    TakeEnded {
        reply: Sender<Vec<EndedFlow>>,
    },
    /// Read the source until it is idle (its capture has stopped) and hand
    /// what it gave to its shards ([`Pipeline::quiesce`]).
    Quiesce {
        reply: Sender<()>,
        until: Instant,
    },
    Stop,
}

/// What one shard exports for a snapshot.
pub struct ShardExport {
    pub flows: Vec<FlowRecord>,
    /// Connection records cut since the last export (when the table keeps
    /// them).
    pub connections: Vec<ConnRecord>,
    /// The last records of flows that left the table since the last
    /// export (when the table keeps them).
    pub ended: Vec<EndedFlow>,
    pub ingest: IngestCounters,
    pub sessions: MirrorSessions,
    pub table: TableCounters,
    /// The shard's first packet, if any.
    pub since_ns: Option<u64>,
}

/// Every shard's export for one snapshot, before the merge.
pub struct Exports {
    pub sequence: u64,
    pub as_of_ns: u64,
    pub rtt_window: Window,
    pub shards: Vec<ShardExport>,
    /// When the exports were requested (the merge reports its duration).
    pub requested: Instant,
}

struct Shared {
    sources_running: AtomicUsize,
    /// Why the pipeline failed (a worker panicked, a source broke), if it did.
    failure: std::sync::Mutex<Option<String>>,
    /// Newest capture timestamp any source has delivered.
    capture_clock: AtomicU64,
    /// Oldest capture timestamp any source has delivered (`u64::MAX`
    /// before the first): when the observation began, for every shard's
    /// rates alike (a shard's own first packet is later, by chance of
    /// the hashing, and its flows' rates were over a shorter span: the
    /// same capture gave other rates run to run).
    capture_since: AtomicU64,
    sequence: AtomicU64,
}

impl Shared {
    fn fail(&self, why: String) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert(why);
        }
    }
}

struct WorkerHandle {
    control: Sender<Control>,
    wake: Wake,
    thread: Option<JoinHandle<()>>,
}

/// A running pipeline. Dropping it stops the workers.
pub struct Pipeline {
    workers: Vec<WorkerHandle>,
    shared: Arc<Shared>,
    rtt_window: Window,
}

impl PipelineConfig {
    /// Batches each worker's inbox holds: [`PipelineConfig::queue_capacity`]
    /// packets rounded up to whole batches of [`HANDOFF_BATCH`].
    fn inbox_batches(&self) -> usize {
        self.queue_capacity.div_ceil(HANDOFF_BATCH).max(1)
    }

    /// Packets each worker's inbox holds, in those whole batches.
    pub fn handoff_capacity(&self) -> usize {
        self.inbox_batches() * HANDOFF_BATCH
    }

    /// Bytes of every worker's inbox, all allocated when the pipeline
    /// starts (a batch's slot holds its packets in place), and of the
    /// batch each worker fills for each other: about 6 MiB a worker at
    /// 65,536 packets, which the memory budget must leave out of the
    /// tables' share (a node's 96 workers, 630 MiB).
    pub fn inbox_bytes(&self) -> u64 {
        let workers = self.workers.max(1);
        // `ArrayQueue`'s slot: the value and a stamp.
        let slot = size_of::<HandOff>() + size_of::<usize>();
        (workers * (self.inbox_batches() * slot + workers * size_of::<HandOff>())) as u64
    }
}

impl Pipeline {
    /// Starts `config.workers` workers; source `i` runs on worker `i`, so
    /// there can be at most as many sources as workers.
    pub fn start<S: PacketSource>(config: PipelineConfig, sources: Vec<S>) -> Pipeline {
        let workers = config.workers.max(1).max(sources.len());
        let shares = shard_shares(workers, sources.len());
        let total_shares: u64 = shares.iter().sum();
        let hasher = ShardHasher::with_shares(&shares, config.hash_seed.or(config.repeatable_seed));
        let table_hasher = match config.hash_seed {
            Some(seed) => ahash::RandomState::with_seeds(seed, 1, 2, 3),
            None => ahash::RandomState::new(),
        };
        let dedup_hasher = match (config.hash_seed, config.repeatable_seed) {
            (None, Some(seed)) => ahash::RandomState::with_seeds(seed, 5, 6, 7),
            _ => table_hasher.clone(),
        };
        let inboxes: Arc<[ArrayQueue<HandOff>]> = (0..workers)
            .map(|_| ArrayQueue::new(config.inbox_batches()))
            .collect();
        let shared = Arc::new(Shared {
            sources_running: AtomicUsize::new(sources.len()),
            failure: std::sync::Mutex::new(None),
            capture_clock: AtomicU64::new(0),
            capture_since: AtomicU64::new(u64::MAX),
            sequence: AtomicU64::new(0),
        });
        let mut sources: Vec<Option<S>> = sources.into_iter().map(Some).collect();
        sources.resize_with(workers, || None);
        let mut parkers: Vec<Parker> = (0..workers).map(|_| Parker::new()).collect();
        let wake: Arc<[Wake]> = parkers
            .iter()
            .zip(&sources)
            .map(|(parker, source)| Wake {
                parked: parker.unparker().clone(),
                waiting_source: source.as_ref().and_then(PacketSource::waker),
            })
            .collect();
        let handles = sources
            .into_iter()
            .enumerate()
            .map(|(id, source)| {
                let (control_tx, control_rx) = crossbeam_channel::unbounded();
                let parker = parkers.remove(0);
                let own_wake = wake[id].clone();
                let share = Share {
                    before: shares[..id].iter().sum(),
                    part: shares[id],
                    total: total_shares,
                };
                let worker = Worker {
                    id,
                    table: FlowTable::new(
                        TableConfig {
                            limits: config.table.limits.share(share),
                            conn_records: config.table.conn_records.map(|c| c.share(share)),
                            ended_flows: config.table.ended_flows.map(|n| share.of(n)),
                            ..config.table
                        },
                        table_hasher.clone(),
                    ),
                    inboxes: inboxes.clone(),
                    wake: wake.clone(),
                    outgoing: (0..workers).map(|_| HandOff::new()).collect(),
                    handed_since: vec![None; workers],
                    wake_at: WAKE_AT.min(config.queue_capacity / 4).max(1),
                    hasher: hasher.clone(),
                    ingest: Ingest::new(&config.ingest, table_hasher.clone(), dedup_hasher.clone()),
                    batch: Vec::with_capacity(UPDATE_BATCH),
                    backpressure: config.backpressure,
                    maintenance_interval_ns: config.maintenance_interval_ns,
                    next_maintenance_ns: 0,
                };
                let core = config.cores.get(id).copied().flatten();
                let shared = shared.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("flowtap-worker-{id}"))
                    .spawn(move || {
                        crate::privileges::keep_only_the_capture_s();
                        // A core outside the process's CPUs cannot be
                        // pinned to: the worker then runs where the
                        // scheduler puts it (the binary warns of such
                        // cores before it starts).
                        if let Some(core) = core {
                            core_affinity::set_for_current(core_affinity::CoreId { id: core });
                        }
                        let counted = AtomicBool::new(source.is_some());
                        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            run_worker(worker, source, control_rx, parker, &shared, &counted)
                        }));
                        if let Err(panic) = outcome {
                            let what = panic
                                .downcast_ref::<&str>()
                                .map(|s| (*s).to_owned())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_default();
                            // The failure first, then the source no longer
                            // counted: whoever waits for the sources sees it.
                            shared.fail(format!("worker {id} panicked: {what}"));
                            if counted.swap(false, Ordering::AcqRel) {
                                shared.sources_running.fetch_sub(1, Ordering::AcqRel);
                            }
                        }
                    })
                    .expect("spawning a worker thread");
                WorkerHandle {
                    control: control_tx,
                    wake: own_wake,
                    thread: Some(thread),
                }
            })
            .collect();
        Pipeline {
            workers: handles,
            shared,
            rtt_window: config.table.rtt_window,
        }
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Why the pipeline failed, if it did: a worker panicked (its shard is
    /// gone) or a source broke. A failed pipeline's snapshots are incomplete.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.lock().map_or_else(
            |_| Some("the failure record is poisoned".into()),
            |f| f.clone(),
        )
    }

    /// True once every source has delivered its last frame.
    pub fn sources_finished(&self) -> bool {
        self.shared.sources_running.load(Ordering::Acquire) == 0
    }

    /// Blocks until every source has finished.
    pub fn wait_sources(&self) {
        let backoff = Backoff::new();
        while !self.sources_finished() {
            if backoff.is_completed() {
                std::thread::sleep(Duration::from_millis(2));
            } else {
                backoff.snooze();
            }
        }
    }

    /// Takes a snapshot of every shard. Never blocks packet processing for
    /// longer than one shard's export.
    pub fn snapshot(&self, clock: Clock) -> Snapshot {
        merger::merge(self.export(clock, ExportFor::Snapshot))
    }

    /// The last snapshot of a capture that stops while its sources still
    /// run (live, once no frame comes: XDP detached and the rings read,
    /// [`Pipeline::quiesce`]): what the workers handed each other is
    /// counted, and every connection ends in it, a handshake still under
    /// way without an outcome.
    pub fn last_snapshot(&self, clock: Clock) -> Snapshot {
        merger::merge(self.export(clock, ExportFor::Stop))
    }

    /// Waits for the sources to finish, processes everything still queued,
    /// and returns the complete snapshot; or why the pipeline failed.
    pub fn finish(&self) -> Result<Snapshot, String> {
        self.wait_sources();
        let snapshot = merger::merge(self.export(Clock::Capture, ExportFor::Finish));
        match self.failure() {
            Some(why) => Err(why),
            None => Ok(snapshot),
        }
    }

    /// The last records of the flows that left the tables since the last
    /// snapshot (or take), without a snapshot's walk over every flow: what
    /// takes them between snapshots where snapshots are few (a file read
    /// without serving makes one, at its end), so that their bound is a
    /// second's worth, not the whole read's. Empty unless
    /// [`TableConfig::ended_flows`] asks for them.
    pub fn take_ended_flows(&self) -> Vec<EndedFlow> {
        self.ask_every_worker(|reply| Control::TakeEnded { reply })
            .iter()
            .flatten()
            .collect()
    }

    /// Sends every worker the request `ask` makes around a reply channel,
    /// and wakes it; the channel its answers come on, one a worker (a
    /// worker only disappears by panicking: its shard is then lost, and
    /// the answers lack it).
    fn ask_every_worker<T>(&self, ask: impl Fn(Sender<T>) -> Control) -> Receiver<T> {
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(self.workers.len());
        for w in &self.workers {
            let _ = w.control.send(ask(reply_tx.clone()));
            w.wake.wake();
        }
        reply_rx
    }

    /// Has every worker read its source until it is idle and hand what it
    /// read to its shards, so that a [`Pipeline::last_snapshot`] after it
    /// has every frame the sources gave (live, once XDP is detached: a
    /// frame read after the last snapshot was counted by its queue and in
    /// no flow). Waits `within` at most for all to answer (a stuck worker
    /// is the last snapshot's to find).
    pub fn quiesce(&self, within: Duration) {
        let give_up = Instant::now() + within;
        let reply_rx = self.ask_every_worker(|reply| Control::Quiesce {
            reply,
            until: give_up,
        });
        for _ in &self.workers {
            if reply_rx.recv_deadline(give_up).is_err() {
                break;
            }
        }
    }

    /// Asks every shard for its flows as of now on `clock`, for `what`.
    fn export(&self, clock: Clock, what: ExportFor) -> Exports {
        let requested = Instant::now();
        let as_of_ns = clock.now_ns(self.shared.capture_clock.load(Ordering::Acquire));
        let since_ns = Some(self.shared.capture_since.load(Ordering::Acquire))
            .filter(|&since| since != u64::MAX);
        let reply_rx = self.ask_every_worker(|reply| Control::Export {
            as_of_ns,
            since_ns,
            what,
            reply,
        });
        Exports {
            sequence: self.shared.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            as_of_ns,
            rtt_window: self.rtt_window,
            shards: reply_rx.iter().collect(),
            requested,
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for w in &self.workers {
            let _ = w.control.send(Control::Stop);
            w.wake.wake();
        }
        for w in &mut self.workers {
            if let Some(thread) = w.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Each worker's share of the flows. A worker that also reads and parses a
/// source (worker `i` owns source `i`) has less time left for counting, so
/// when some workers own no source (reading files: one source), the others
/// take twice its share. Measured on the 3M-packet benchmark capture with two
/// workers: the reader's shard then takes a third, not half, of the packets.
fn shard_shares(workers: usize, sources: usize) -> Vec<u64> {
    (0..workers)
        .map(|id| {
            if id < sources && sources < workers {
                1
            } else {
                2
            }
        })
        .collect()
}

/// How long a worker without a source sleeps when nothing wakes it.
const IDLE_PARK: Duration = Duration::from_millis(250);

/// Packets drained from the inbox between polls of the source.
const DRAIN_BATCH: usize = 1024;
/// Packets handed to the table at once ([`FlowTable::update_batch`]).
pub const UPDATE_BATCH: usize = 32;

/// Packets a worker hands another at once: one queue operation, and one
/// trip of the queue's ends between the cores, for a batch instead of for
/// every packet. A worker sends what it has for each shard after every poll
/// of its source, so a batch waits no longer than a packet did.
pub const HANDOFF_BATCH: usize = 32;

/// Packets on their way to another worker's shard, held in place: a batch
/// moves into its inbox's slot and out of it by value, so a hand-off does
/// not allocate, and an inbox's memory is all allocated when it is made.
pub type HandOff = SmallVec<[PacketMeta; HANDOFF_BATCH]>;

/// A worker wakes another it handed packets to when that one's inbox holds
/// this many (or a quarter of its capacity, if less), when the first of them
/// has waited [`WAKE_AFTER`], or when its own source has nothing more. A
/// wake-up after every poll of the source cost more than the packets at low
/// rates (a futex wake, two context switches and the sleeper's backoff,
/// thousands of times a second: BENCHMARKS.md, live). Packets carry their
/// capture time, so the wait delays counting, never the times counted.
const WAKE_AT: usize = 256;
const WAKE_AFTER: Duration = Duration::from_millis(5);

/// Wakes a worker wherever it waits: parked (nothing to do), or in its
/// source's wait for frames (a live socket's poll(2)), which an unpark
/// alone would not end until the wait times out.
#[derive(Clone)]
struct Wake {
    parked: Unparker,
    waiting_source: Option<Arc<dyn SourceWaker>>,
}

impl Wake {
    fn wake(&self) {
        self.parked.unpark();
        if let Some(source) = &self.waiting_source {
            source.wake();
        }
    }
}

struct Worker {
    id: usize,
    table: FlowTable,
    inboxes: Arc<[ArrayQueue<HandOff>]>,
    /// Packets for each other shard not yet sent (at most [`HANDOFF_BATCH`]).
    outgoing: Vec<HandOff>,
    /// Every worker's wake-up, and since when each shard has been handed
    /// packets without being woken: a worker without a source sleeps until
    /// packets come ([`WAKE_AT`], [`WAKE_AFTER`]).
    wake: Arc<[Wake]>,
    handed_since: Vec<Option<Instant>>,
    wake_at: usize,
    hasher: ShardHasher,
    ingest: Ingest,
    /// This shard's packets parsed but not yet counted.
    batch: Vec<PacketMeta>,
    backpressure: Backpressure,
    maintenance_interval_ns: u64,
    next_maintenance_ns: u64,
}

impl Worker {
    /// Parses one frame and sends it to its shard.
    #[inline]
    fn ingest(&mut self, frame: Frame<'_>) {
        let Some(meta) = self.ingest.frame(frame) else {
            return;
        };
        let shard = self.hasher.shard_of(&meta.transport);
        if shard == self.id {
            self.count(meta);
        } else {
            let outgoing = &mut self.outgoing[shard];
            outgoing.push(meta);
            if outgoing.len() == HANDOFF_BATCH {
                self.hand_off(shard);
            }
        }
    }

    /// Sends every shard what this worker has for it.
    fn hand_off_all(&mut self) {
        for shard in 0..self.outgoing.len() {
            if !self.outgoing[shard].is_empty() {
                self.hand_off(shard);
            }
        }
    }

    /// Counts a packet of this shard (read here or handed over) unless it
    /// is a copy `--dedup` drops: its copies meet here, wherever they were
    /// read, and the first to come is the one counted.
    #[inline]
    fn count(&mut self, mut meta: PacketMeta) {
        if self.ingest.drops_copy(&mut meta) {
            return;
        }
        self.batch.push(meta);
        if self.batch.len() == UPDATE_BATCH {
            self.flush();
        }
    }

    /// Counts the packets batched so far.
    fn flush(&mut self) {
        self.table.update_batch(&self.batch);
        self.batch.clear();
    }

    /// Sends `shard` the packets this worker has for it.
    fn hand_off(&mut self, shard: usize) {
        if self.handed_since[shard].is_none() {
            self.handed_since[shard] = Some(Instant::now());
        }
        let packets = std::mem::take(&mut self.outgoing[shard]);
        let Err(mut packets) = self.inboxes[shard].push(packets) else {
            return;
        };
        match self.backpressure {
            Backpressure::Drop => self.ingest.counters.handoff_drops += packets.len() as u64,
            Backpressure::Wait => loop {
                // Keep our own inbox moving so two waiting workers cannot
                // deadlock on each other; the full one's owner may sleep.
                self.wake[shard].wake();
                if self.drain(64) == 0 {
                    std::thread::yield_now();
                }
                match self.inboxes[shard].push(packets) {
                    Ok(()) => return,
                    Err(back) => packets = back,
                }
            },
        }
    }

    /// Wakes the workers this one handed packets to that have enough of
    /// them waiting, or have waited long enough, or all of them if this
    /// worker's source has gone quiet (`source_idle`).
    fn wake_handed(&mut self, source_idle: bool) {
        for (shard, handed_since) in self.handed_since.iter_mut().enumerate() {
            let Some(since) = *handed_since else {
                continue;
            };
            if source_idle
                || self.inboxes[shard].len() * HANDOFF_BATCH >= self.wake_at
                || since.elapsed() >= WAKE_AFTER
            {
                *handed_since = None;
                self.wake[shard].wake();
            }
        }
    }

    /// The packets queued for this shard now, at most (batches of
    /// [`HANDOFF_BATCH`]).
    fn queued_packets(&self) -> usize {
        self.inboxes[self.id].len() * HANDOFF_BATCH
    }

    /// Updates the table with the packets of queued batches, until `max`
    /// or more are counted.
    fn drain(&mut self, max: usize) -> usize {
        self.flush();
        let mut n = 0;
        while n < max {
            let Some(packets) = self.inboxes[self.id].pop() else {
                break;
            };
            n += packets.len();
            for &meta in &packets {
                self.count(meta);
            }
        }
        self.flush();
        n
    }

    fn maintain_by_capture_time(&mut self) {
        let now = self.table.now_ns();
        if now >= self.next_maintenance_ns {
            if self.next_maintenance_ns != 0 {
                self.table.expire(now);
                self.ingest.expire(now);
            }
            self.next_maintenance_ns = now.saturating_add(self.maintenance_interval_ns);
        }
    }

    fn export(&mut self, as_of_ns: u64, since_ns: Option<u64>) -> ShardExport {
        if let Some(since) = since_ns {
            self.table.observed_since(since);
        }
        self.table.expire(as_of_ns);
        let mut flows = Vec::new();
        self.table.export(as_of_ns, &mut flows);
        ShardExport {
            flows,
            connections: self.table.take_conn_records(),
            ended: self.table.take_ended_flows(),
            ingest: self.ingest.counters,
            sessions: self.ingest.sessions.clone(),
            table: self.table.counters(),
            since_ns: self.table.since_ns(),
        }
    }
}

/// Polls `src` once into `worker`, and hands what it gave to its shards
/// (before the source may count as finished: every packet it gave is then
/// in a shard's inbox).
fn poll_source<S: PacketSource>(src: &mut S, worker: &mut Worker, shared: &Shared) -> Poll {
    let (mut newest, mut oldest) = (0u64, u64::MAX);
    let status = src.poll(|frame| {
        newest = newest.max(frame.ts_ns);
        oldest = oldest.min(frame.ts_ns);
        worker.ingest(frame);
    });
    if newest != 0 {
        shared.capture_clock.fetch_max(newest, Ordering::AcqRel);
        shared.capture_since.fetch_min(oldest, Ordering::AcqRel);
    }
    worker.hand_off_all();
    worker.wake_handed(!matches!(status, Poll::Busy));
    status
}

/// Runs a worker until told to stop. `counted` says whether its source is
/// still counted as running; the source stops being counted when it ends
/// (or, if the worker panics, once the failure is recorded).
fn run_worker<S: PacketSource>(
    mut worker: Worker,
    mut source: Option<S>,
    control: Receiver<Control>,
    parker: Parker,
    shared: &Shared,
    counted: &AtomicBool,
) {
    let backoff = Backoff::new();
    let finished = |shared: &Shared| {
        if counted.swap(false, Ordering::AcqRel) {
            shared.sources_running.fetch_sub(1, Ordering::AcqRel);
        }
    };
    loop {
        let mut busy = false;
        if let Some(src) = source.as_mut() {
            let status = poll_source(src, &mut worker, shared);
            match status {
                Poll::Busy => busy = true,
                Poll::Idle => {}
                Poll::Finished => {
                    source = None;
                    finished(shared);
                }
                Poll::Failed(why) => {
                    shared.fail(format!("worker {}: {why}", worker.id));
                    source = None;
                    finished(shared);
                }
            }
        }
        busy |= worker.drain(DRAIN_BATCH) > 0;
        worker.maintain_by_capture_time();
        while let Ok(message) = control.try_recv() {
            match message {
                Control::Export {
                    as_of_ns,
                    since_ns,
                    what,
                    reply,
                } => {
                    // Nothing more will be counted: what was handed over is
                    // counted, the handshake legs still waiting for a later
                    // packet recorded, every connection ended.
                    match what {
                        ExportFor::Snapshot => {}
                        ExportFor::Stop => {
                            // What is queued now: the sources were read to
                            // their end before (`quiesce`), and a capture
                            // that still delivered (XDP not detached) must
                            // not keep this worker from answering.
                            worker.drain(worker.queued_packets().max(1));
                            worker.table.stop_capture(as_of_ns);
                        }
                        ExportFor::Finish => {
                            while worker.drain(usize::MAX) > 0 {}
                            worker.table.end_capture();
                        }
                    }
                    let _ = reply.send(worker.export(as_of_ns, since_ns));
                }
                Control::TakeEnded { reply } => {
                    let _ = reply.send(worker.table.take_ended_flows());
                }
                Control::Quiesce { reply, until } => {
                    if let Some(src) = source.as_mut() {
                        // Until the ring is empty, whatever its size (a
                        // count of polls left the frames past 16,384 of a
                        // full 65,536-frame ring in no flow); a capture
                        // that still delivers (XDP not detached) keeps it
                        // no longer than the caller waits.
                        let mut busy = true;
                        while busy && Instant::now() < until {
                            busy = matches!(poll_source(src, &mut worker, shared), Poll::Busy);
                            // What the others hand over meanwhile (their
                            // rings' frames of its connections), which a
                            // full inbox would drop.
                            worker.drain(DRAIN_BATCH);
                        }
                        src.settle();
                    }
                    let _ = reply.send(());
                }
                Control::Stop => return,
            }
        }
        if busy {
            backoff.reset();
        } else if backoff.is_completed() {
            // A source waits in its own poll; a worker without one has only
            // handed-off packets and control messages to wait for, and both
            // wake it. (The timeout only bounds a wake-up lost to a bug.)
            parker.park_timeout(if source.is_some() {
                Duration::from_millis(1)
            } else {
                IDLE_PARK
            });
        } else {
            backoff.snooze();
        }
    }
}
