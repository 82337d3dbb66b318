//! `flowtap -i IFACE`: capture live with XDP/AF_XDP, serve the flows while
//! capturing, and on SIGINT/SIGTERM detach and remove everything.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use pipeline::{Backpressure, Clock, Merger, Pipeline, PipelineConfig};
use xdp::{LiveCapture, LiveConfig};

use crate::cli::RunArgs;
use crate::serve::Service;
use crate::{fault, setup};

fn live_config(cli: &RunArgs, iface: &str) -> LiveConfig {
    let mut config = LiveConfig::new(iface);
    config.mode = cli.mode;
    config.xdp_mode = cli.xdp_mode;
    config.unbound = cli.unbound;
    config.queues = cli.queues;
    config.busy_poll = cli.busy_poll;
    config.frame_size = cli.frame_size;
    config.ring_frames = cli.ring_frames;
    config.promiscuous = !cli.no_promiscuous;
    config.multi_buffer = !cli.no_multi_buffer;
    if let Some(q) = cli.queues {
        config.host_queues = q;
    }
    config
}

/// The cores workers are pinned to: `--cores`, else every CPU this process
/// may run on (its affinity mask: `taskset`, a container's cpuset), not
/// CPUs 0..n, which in a cpuset of CPUs 8-9 are not its own.
fn capture_cores(cli: &RunArgs) -> Vec<usize> {
    let allowed: Vec<usize> = match core_affinity::get_core_ids() {
        Some(ids) if !ids.is_empty() => ids.into_iter().map(|c| c.id).collect(),
        _ => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            (0..n).collect()
        }
    };
    if cli.cores.is_empty() {
        return allowed;
    }
    for core in cli.cores.iter().filter(|c| !allowed.contains(c)) {
        tracing::warn!(
            core,
            ?allowed,
            "--cores names a CPU this process may not run on: its worker runs unpinned"
        );
    }
    cli.cores.clone()
}

pub(crate) fn run(cli: &RunArgs, iface: &str) -> anyhow::Result<i32> {
    let publisher = setup::publisher(cli)?;
    // Before attaching anything: a bad token file fails at once.
    let server_config = cli.serve.server_config(cli.snapshot_interval)?;
    let (capture, sources) = LiveCapture::start(&live_config(cli, iface))
        .with_context(|| format!("starting capture on {iface}"))?;
    let info = capture.info.clone();
    {
        // Its coverage counts what the kernel dropped for its sockets, the
        // frames of queues it has no socket on and those the NIC missed
        // (the last two also metrics, kept up to date here, at each
        // snapshot).
        let name = setup::node_name(cli);
        let queues = info.clone();
        let mut publisher = publisher.lock().expect("publisher lock");
        let stats = publisher.stats();
        publisher.set_identity(
            &name,
            Some(&name),
            Some(Arc::new(move || {
                let unbound = queues.unbound_frames.load(Ordering::Relaxed);
                stats.xdp_unbound_frames.store(unbound, Ordering::Relaxed);
                let missed = queues.nic_missed.load(Ordering::Relaxed);
                stats.nic_rx_missed.store(missed, Ordering::Relaxed);
                let dropped: u64 = queues
                    .queues
                    .iter()
                    .map(|q| {
                        q.rx_dropped.load(Ordering::Relaxed)
                            + q.rx_ring_full.load(Ordering::Relaxed)
                    })
                    .sum();
                dropped + unbound + missed
            })),
        );
    }
    let cores = capture_cores(cli);
    // One worker per queue; more if there are more cores, to spread the shards.
    let workers = sources.len().max(cores.len());
    let worker_cores: Vec<Option<usize>> =
        (0..workers).map(|i| Some(cores[i % cores.len()])).collect();
    tracing::info!(
        interface = %info.iface,
        capture_interface = %info.capture_iface,
        mode = ?info.mode,
        xdp_mode = info.xdp_mode,
        zero_copy = info.zero_copy,
        frame_size = info.frame_size,
        ring_frames = info.ring_frames,
        multi_buffer = info.multi_buffer,
        promiscuous = info.promiscuous,
        queues = info.queues.len(),
        workers,
        cores = ?worker_cores.iter().flatten().collect::<Vec<_>>(),
        "capturing"
    );
    let config = PipelineConfig {
        workers,
        table: setup::table_config(cli, Some(info.buffer_bytes)),
        ingest: setup::ingest_config(cli)?,
        backpressure: Backpressure::Drop,
        hash_seed: cli.hash_seed,
        cores: worker_cores,
        queue_capacity: cli.handoff_queue as usize,
        ..PipelineConfig::default()
    };
    let sources = sources
        .into_iter()
        .map(fault::planted)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pipeline = Arc::new(Pipeline::start(config.clone(), sources));
    let queue_info = info.clone();
    let queue_stats: api::server::QueueStatsFn =
        Arc::new(move || queue_info.queues.iter().map(|q| q.sample()).collect());
    let handoff_capacity = config.handoff_capacity() as u64;
    let service = Service::start(
        cli.serve.listen(),
        publisher.clone(),
        server_config,
        &cores,
        Some(queue_stats),
        None,
    )?;
    {
        let stats = publisher.lock().expect("publisher lock").stats();
        stats
            .handoff_capacity
            .store(handoff_capacity, Ordering::Relaxed);
        stats
            .promiscuous
            .store(u64::from(info.promiscuous), Ordering::Relaxed);
    }
    let interval = Duration::from_secs_f64(cli.snapshot_interval.max(0.05));
    publisher
        .lock()
        .expect("publisher lock")
        .set_interval(interval);
    let merger = {
        let publisher = publisher.clone();
        let clock = Clock::Live(info.clock);
        Merger::spawn(pipeline.clone(), interval, clock, move |snapshot| {
            publisher.lock().expect("publisher lock").publish(snapshot);
        })
    };

    // XDP is attached, the sockets are bound, the workers run.
    service.set_ready();
    let published = publisher.lock().expect("publisher lock").stats();
    let stall = StallWatch::new(cli.stall_timeout, interval);
    let outcome = service.run_until_signal(|| {
        pipeline
            .failure()
            .or_else(|| stall.check(published.snapshots.load(Ordering::Relaxed), Instant::now()))
    });
    if stall.tripped.get() {
        // The stuck worker answers nothing, so stopping the merger (which
        // waits for it) or the workers would wait forever: the service
        // stops, XDP is detached, and the process's exit ends the rest.
        std::mem::forget(merger);
        service.stop();
        capture.stop();
        eprintln!("flowtap: detached from {iface}");
        return outcome.map(|()| 1);
    }

    merger.stop();
    let snapshot = pipeline.last_snapshot(Clock::Live(info.clock));
    {
        let mut publisher = publisher.lock().expect("publisher lock");
        publisher.publish(snapshot);
        publisher.finish();
    }
    let failed = setup::dump(&publisher, &cli.serve.dump)?;
    service.stop();
    // Stop the workers (closing the sockets and reading their kernel
    // counters a last time), then report, detach and remove.
    drop(pipeline);
    let queues: Vec<_> = info.queues.iter().map(|q| q.sample()).collect();
    setup::report(&publisher, &queues);
    setup::report_memory(cli);
    capture.stop();
    eprintln!("flowtap: detached from {iface}");
    outcome?;
    Ok(if failed { 2 } else { 0 })
}

/// Whether live capture still publishes: a worker that no longer answers
/// holds up the merger's snapshot, which waits for every worker, so the
/// count of published snapshots stops. Asked once a second.
struct StallWatch {
    /// `--stall-timeout`, at least three snapshot intervals; `None`: never.
    after: Option<Duration>,
    /// The count of snapshots when last asked, and since when it stands.
    last: Cell<(u64, Instant)>,
    tripped: Cell<bool>,
}

impl StallWatch {
    fn new(stall_timeout_s: f64, interval: Duration) -> StallWatch {
        StallWatch {
            after: (stall_timeout_s > 0.0)
                .then(|| Duration::from_secs_f64(stall_timeout_s).max(interval * 3)),
            last: Cell::new((0, Instant::now())),
            tripped: Cell::new(false),
        }
    }

    /// Why capture is stuck, if it is: `published` snapshots at `now`.
    fn check(&self, published: u64, now: Instant) -> Option<String> {
        let after = self.after?;
        let (count, since) = self.last.get();
        if published != count {
            self.last.set((published, now));
            return None;
        }
        let stuck = now.saturating_duration_since(since);
        if stuck < after {
            return None;
        }
        self.tripped.set(true);
        Some(format!(
            "no snapshot for {:.0} s (--stall-timeout {} s): a capture worker no longer answers",
            stuck.as_secs_f64(),
            after.as_secs_f64()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_is_stuck_once_no_snapshot_comes_for_the_timeout() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let watch = StallWatch {
            last: Cell::new((0, start)),
            ..StallWatch::new(10.0, Duration::from_secs(1))
        };
        assert_eq!(watch.check(1, at(1)), None);
        assert_eq!(watch.check(5, at(5)), None);
        assert_eq!(watch.check(5, at(14)), None, "9 s without one");
        assert!(!watch.tripped.get());
        let why = watch.check(5, at(15)).expect("10 s without one");
        assert!(why.contains("no snapshot for 10 s"), "{why}");
        assert!(watch.tripped.get());
        // Three intervals at the least; 0 never.
        let slow = StallWatch::new(10.0, Duration::from_secs(5));
        assert_eq!(slow.after, Some(Duration::from_secs(15)));
        let never = StallWatch::new(0.0, Duration::from_secs(1));
        assert_eq!(never.check(0, at(1_000_000)), None);
    }
}
