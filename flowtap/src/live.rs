//! `flowtap -i IFACE [-i IFACE...]`: capture live with XDP/AF_XDP, serve
//! the flows while capturing, and on SIGINT/SIGTERM/SIGHUP detach and remove
//! everything. Several interfaces are one stream: their queues' sockets
//! feed the same workers, whose flow table is sharded by the unordered
//! address pair, so a connection's two directions meet whichever
//! interface each arrives on (a passive TAP's two ports).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use api::server::Readiness;
use pipeline::{Backpressure, Clock, Merger, Pipeline, PipelineConfig};
use xdp::{LiveCapture, LiveConfig, LiveInfo};

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

/// The cores workers run on, and whether they are pinned to them:
/// `--cores`, else the CPUs this process may run on (its affinity mask:
/// `taskset`, a container's cpuset), not CPUs 0..n, which in a cpuset of
/// CPUs 8-9 are not its own; as many of them as its CPU quota grants.
/// Where the quota is a share of a larger mask (a Burstable pod's
/// `limits.cpu` of 2 on a node's shared pool of 96), they are not pinned:
/// pinned to the first two, every node's workers sat on CPUs 0 and 1
/// beside whatever else runs there (often the NIC's interrupts), the other
/// cores idle.
fn capture_cores(cli: &RunArgs) -> (Vec<usize>, bool) {
    let allowed: Vec<usize> = match core_affinity::get_core_ids() {
        Some(ids) if !ids.is_empty() => ids.into_iter().map(|c| c.id).collect(),
        _ => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            (0..n).collect()
        }
    };
    if cli.cores.is_empty() {
        let quota = std::thread::available_parallelism().map_or(allowed.len(), |n| n.get());
        return within_quota(allowed, quota);
    }
    for core in cli.cores.iter().filter(|c| !allowed.contains(c)) {
        tracing::warn!(
            core,
            ?allowed,
            "--cores names a CPU this process may not run on: its worker runs unpinned"
        );
    }
    (cli.cores.clone(), true)
}

/// The `allowed` CPUs workers run on under a CPU `quota` (a pod's
/// `limits.cpu`, which std reads from the cgroup), and whether they are
/// pinned: a pod of 2 CPUs on a node of 96 runs 2 workers, not 96 taking
/// turns in its quota, each with a hand-off inbox out of its memory limit.
fn within_quota(mut allowed: Vec<usize>, quota: usize) -> (Vec<usize>, bool) {
    let pinned = quota >= allowed.len();
    allowed.truncate(quota.max(1));
    (allowed, pinned)
}

/// Every interface named once, each an interface of this host, before any
/// is attached: an empty name (`eth1,` in the environment), one given
/// twice or under two names (an altname) is refused.
fn check_interfaces(interfaces: &[String]) -> anyhow::Result<()> {
    let mut seen: Vec<(u32, &str)> = Vec::with_capacity(interfaces.len());
    for iface in interfaces {
        anyhow::ensure!(
            !iface.trim().is_empty(),
            "-i names an empty interface ({interfaces:?})"
        );
        let index = xdp::sys::if_index(iface).map_err(|e| anyhow::anyhow!("-i {iface}: {e}"))?;
        if let Some((_, first)) = seen.iter().find(|(i, _)| *i == index) {
            anyhow::bail!("-i {iface} is given twice (as {first} and {iface})");
        }
        seen.push((index, iface));
    }
    Ok(())
}

/// The captures of every interface, started in turn; one that fails
/// detaches those before it (dropped). One clock offset for all of them
/// ([`LiveConfig::realtime_offset_ns`]).
fn start_captures(
    cli: &RunArgs,
    interfaces: &[String],
) -> anyhow::Result<(Vec<LiveCapture>, Vec<xdp::XskSource>)> {
    check_interfaces(interfaces)?;
    let realtime_offset_ns = xdp::sys::realtime_offset_ns();
    let mut captures = Vec::with_capacity(interfaces.len());
    let mut sources = Vec::new();
    for iface in interfaces {
        let config = LiveConfig {
            realtime_offset_ns: Some(realtime_offset_ns),
            ..live_config(cli, iface)
        };
        let (capture, of_iface) =
            LiveCapture::start(&config).with_context(|| format!("starting capture on {iface}"))?;
        captures.push(capture);
        sources.extend(of_iface);
    }
    Ok((captures, sources))
}

/// Raises the capabilities this process is permitted but does not hold in
/// effect: the image's binary holds the capture's four as file
/// capabilities permitted only (`scripts/install-caps.sh`), not effective,
/// because `exec` of a file whose effective bit is set fails outright
/// where the bounding set cannot grant them all: a hub's container, which
/// drops every capability, or `docker run` of the image for `-r` without
/// `--cap-add`. Only a capture takes them up, here.
///
/// Capabilities are a thread's: raised on the main thread before any
/// capture is set up, they pass to the threads started after (the
/// workers), not to those started before. As root, or where the file
/// gave none, there is nothing to raise; one that cannot be raised leaves
/// the capture to fail with the kernel's own refusal, said where it is met.
fn take_up_permitted_capabilities() {
    use rustix::thread::{capabilities, set_capabilities};
    match capabilities(None) {
        Ok(mut sets) if !sets.permitted.difference(sets.effective).is_empty() => {
            sets.effective = sets.permitted;
            if let Err(e) = set_capabilities(None, sets) {
                tracing::warn!(error = %e, "the permitted capabilities could not be raised");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "capabilities not read"),
    }
}

/// The name `iface` goes by in sysfs and netlink: an alternative name
/// (`ip link property add ... altname`, as systemd gives NICs their long
/// names) is taken for its interface's primary one. A name that names
/// nothing is left for the checks to refuse.
fn primary_name(iface: &str) -> String {
    let primary = xdp::sys::if_index(iface).and_then(xdp::sys::if_name);
    match primary {
        Ok(primary) if primary != iface => {
            tracing::info!(interface = %primary, "-i {iface}: an alternative name of {primary}");
            primary
        }
        _ => iface.to_owned(),
    }
}

/// `-i` as given, [`xdp::netdev::DEFAULT_ROUTE`] replaced by the interface
/// of the host's default route, alternative names by primary ones.
fn resolve_interfaces(interfaces: &[String]) -> anyhow::Result<Vec<String>> {
    interfaces
        .iter()
        .map(|iface| {
            if iface.trim() != xdp::netdev::DEFAULT_ROUTE {
                return Ok(primary_name(iface));
            }
            let found = xdp::netdev::default_route_interface()
                .map_err(|e| anyhow::anyhow!("-i {}: {e}", xdp::netdev::DEFAULT_ROUTE))?;
            tracing::info!(
                interface = %found,
                "-i {}: the interface of the host's default route",
                xdp::netdev::DEFAULT_ROUTE
            );
            Ok(found)
        })
        .collect()
}

pub(crate) fn run(cli: &RunArgs, interfaces: &[String]) -> anyhow::Result<i32> {
    let interfaces = &resolve_interfaces(interfaces)?;
    take_up_permitted_capabilities();
    let publisher = setup::publisher(cli)?;
    // Before attaching anything: a bad token file fails at once.
    let server_config = cli.serve.server_config(cli.snapshot_interval)?;
    let (captures, sources) = start_captures(cli, interfaces)?;
    let infos: Vec<Arc<LiveInfo>> = captures.iter().map(|c| c.info.clone()).collect();
    {
        // Its coverage counts what the kernel dropped for its sockets, the
        // frames of queues it has no socket on, those the NIC missed and
        // those host mode's mirror veth dropped (the last three also
        // metrics, kept up to date here, at each snapshot).
        let name = setup::node_name(cli);
        let infos = infos.clone();
        let mut publisher = publisher.lock().expect("publisher lock");
        let stats = publisher.stats();
        publisher.set_identity(
            &name,
            Some(&name),
            Some(Arc::new(move || {
                let sum = |count: fn(&LiveInfo) -> u64| infos.iter().map(|i| count(i)).sum::<u64>();
                let unbound = sum(|i| i.unbound_frames.load(Ordering::Relaxed));
                stats.xdp_unbound_frames.store(unbound, Ordering::Relaxed);
                let missed = sum(|i| i.nic_missed.load(Ordering::Relaxed));
                stats.nic_rx_missed.store(missed, Ordering::Relaxed);
                let refused = sum(|i| i.nic_refused.load(Ordering::Relaxed));
                stats.nic_rx_refused.store(refused, Ordering::Relaxed);
                let mirror = sum(|i| i.link.mirror_dropped.load(Ordering::Relaxed));
                stats.mirror_veth_dropped.store(mirror, Ordering::Relaxed);
                let dropped = sum(|i| {
                    i.queues
                        .iter()
                        .map(|q| {
                            q.rx_dropped.load(Ordering::Relaxed)
                                + q.rx_ring_full.load(Ordering::Relaxed)
                        })
                        .sum()
                });
                dropped + unbound + missed + refused + mirror
            })),
        );
    }
    let (cores, pinned) = capture_cores(cli);
    // One worker per queue; more if there are more cores, to spread the shards.
    let workers = sources.len().max(cores.len());
    let worker_cores: Vec<Option<usize>> = (0..workers)
        .map(|i| pinned.then(|| cores[i % cores.len()]))
        .collect();
    if let Some(threads) = cli.threads {
        tracing::warn!(
            threads,
            workers,
            "--threads is for files: live, a worker runs for each capture queue and each core \
             of --cores"
        );
    }
    for info in &infos {
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
    }
    let buffer_bytes = infos.iter().map(|i| i.buffer_bytes).sum();
    let mut config = PipelineConfig {
        workers,
        ingest: setup::ingest_config(cli)?,
        backpressure: Backpressure::Drop,
        hash_seed: cli.hash_seed,
        cores: worker_cores,
        queue_capacity: cli.handoff_queue as usize,
        ..PipelineConfig::default()
    };
    config.table = setup::table_config(cli, Some(buffer_bytes), config.inbox_bytes())?;
    let sources = sources
        .into_iter()
        .map(fault::planted)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pipeline = Arc::new(Pipeline::start(config.clone(), sources));
    let queue_infos = infos.clone();
    let queue_stats: api::server::QueueStatsFn = Arc::new(move || samples(&queue_infos));
    let service = Service::start(
        cli.serve.listen(),
        publisher.clone(),
        server_config,
        // Unpinned workers leave the HTTP threads unpinned too.
        if pinned { &cores } else { &[] },
        Some(queue_stats),
        None,
    )?;
    {
        setup::publish_handoff_capacity(&publisher, &config);
        let stats = publisher.lock().expect("publisher lock").stats();
        let promiscuous = infos.iter().all(|i| i.promiscuous);
        stats
            .promiscuous
            .store(u64::from(promiscuous), Ordering::Relaxed);
    }
    let interval = Duration::from_secs_f64(cli.snapshot_interval);
    publisher
        .lock()
        .expect("publisher lock")
        .set_interval(interval);
    // The interfaces' clocks are one: the kernel's monotonic clock (the
    // frames' XDP timestamps) plus the realtime offset read once for all.
    let clock = Clock::Live(infos[0].clock);
    let merger = {
        let publisher = publisher.clone();
        Merger::spawn(pipeline.clone(), interval, clock, move |snapshot| {
            publisher.lock().expect("publisher lock").publish(snapshot);
        })
    };

    // XDP is attached, the sockets are bound, the workers run.
    service.catch_stop_signals()?;
    service.set_ready();
    let published = publisher.lock().expect("publisher lock").stats();
    let stall = StallWatch::new(cli.stall_timeout, interval);
    let outcome = service.run_until_signal(|| {
        // Ready while every interface can receive: a mirror port that went
        // down must not read as a quiet network (a hub names an agent that
        // is not ready missing).
        let down = infos
            .iter()
            .filter(|i| !i.link.up.load(Ordering::Relaxed))
            .count();
        published
            .interfaces_down
            .store(down as u64, Ordering::Relaxed);
        service.set_readiness(if down == 0 {
            Readiness::Ready
        } else {
            Readiness::InterfaceDown
        });
        pipeline
            .failure()
            .or_else(|| stall.check(published.snapshots.load(Ordering::Relaxed), Instant::now()))
    });
    // Capture ends before the last snapshot: the XDP programs detached, so
    // that no frame comes after it, and the workers read what their rings
    // still hold and hand it on, so that the last snapshot (its flows, its
    // IPFIX records, the report) has every frame the queues counted.
    // Detached after it, the frames of the half second until the workers
    // stopped were counted per queue and in no flow (225,076 of 2,111,636
    // at 600 kpps). Host mode's mirror veth and the promiscuous mode go
    // after the workers: the sockets are bound to the veth.
    let mut captures = captures;
    captures.iter_mut().for_each(LiveCapture::detach_programs);
    if !stall.tripped.get() {
        pipeline.quiesce(RINGS_READ_WITHIN);
    }
    // A stuck worker answers nothing, so stopping the merger (which waits
    // for it) or the workers would wait forever: after a stall, or after a
    // signal that came while a worker was stuck (before the stall timeout:
    // the last snapshot is given SHUTDOWN_PATIENCE). The service is
    // stopped, and the process's exit ends the rest; the last snapshot,
    // its export and the report are given up.
    let last = if stall.tripped.get() {
        std::mem::forget(merger);
        None
    } else {
        last_snapshot_within(
            merger,
            &pipeline,
            clock,
            (interval * 3).max(SHUTDOWN_PATIENCE),
        )
    };
    let Some(snapshot) = last else {
        if !stall.tripped.get() {
            let quiet =
                stall.quiet_for(published.snapshots.load(Ordering::Relaxed), Instant::now());
            eprintln!(
                "flowtap: no snapshot for {:.0} s: a capture worker no longer answers; \
                 leaving without the last snapshot",
                quiet.as_secs_f64()
            );
        }
        detach(captures, interfaces);
        // Not stopped: the workers wait for the stuck one, and the merger
        // thread holds the pipeline too, so they are never joined.
        std::mem::forget(pipeline);
        service.stop();
        return outcome.map(|()| 1);
    };
    {
        let mut publisher = publisher.lock().expect("publisher lock");
        publisher.publish_last(snapshot);
    }
    let failed = setup::dump(&publisher, &cli.serve.dump)?;
    service.stop();
    // Stop the workers (closing the sockets and reading their kernel
    // counters a last time), then report.
    drop(pipeline);
    setup::report(&publisher, &samples(&infos));
    setup::report_memory(cli);
    detach(captures, interfaces);
    outcome?;
    Ok(if failed { 2 } else { 0 })
}

/// Detaches from every interface, and says so.
fn detach(captures: Vec<LiveCapture>, interfaces: &[String]) {
    captures.into_iter().for_each(LiveCapture::stop);
    eprintln!("flowtap: detached from {}", interfaces.join(", "));
}

/// How long a stop waits for the workers to read what the capture rings
/// hold once XDP is detached (a worker counts a million or more frames a
/// second: the largest ring, 65,536 frames, in tens of milliseconds).
const RINGS_READ_WITHIN: Duration = Duration::from_millis(500);

/// Every capture queue's counters as they are now, interface by interface.
fn samples(infos: &[Arc<LiveInfo>]) -> Vec<pipeline::source::QueueStats> {
    infos
        .iter()
        .flat_map(|i| i.queues.iter().map(|q| q.sample()))
        .collect()
}

/// How long shutting down waits for the snapshot under way before it
/// takes the capture for stuck (at least three intervals).
const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(10);

/// Stops `merger`, which first finishes the snapshot under way, and takes
/// the last snapshot, each waiting for every worker's part, unless that
/// takes longer than `patience`: then both are left waiting on a thread of
/// their own, and `None`. (A worker that hung while the merger rested
/// between two snapshots lets the merger stop, and holds up the last one.)
fn last_snapshot_within(
    merger: Merger,
    pipeline: &Arc<Pipeline>,
    clock: Clock,
    patience: Duration,
) -> Option<pipeline::Snapshot> {
    let (done, taken) = std::sync::mpsc::channel();
    let pipeline = pipeline.clone();
    std::thread::spawn(move || {
        merger.stop();
        let snapshot = pipeline.last_snapshot(clock);
        // Not the last reference, whose drop stops the workers after the
        // report has read their counters.
        drop(pipeline);
        let _ = done.send(snapshot);
    });
    taken.recv_timeout(patience).ok()
}

/// A gap between two checks (asked once a second) this long means the
/// process was not running (stopped, its cgroup frozen, the VM paused):
/// snapshots could not come meanwhile either, so the wait starts again.
const PAUSED: Duration = Duration::from_secs(3);

/// Whether live capture still publishes: a worker that no longer answers
/// holds up the merger's snapshot, which waits for every worker, so the
/// count of published snapshots stops. Asked once a second.
struct StallWatch {
    /// `--stall-timeout`, at least three snapshot intervals; `None`: never.
    after: Option<Duration>,
    /// The count of snapshots when last asked, since when it stands, and
    /// when it was last asked.
    last: Cell<(u64, Instant, Instant)>,
    tripped: Cell<bool>,
}

impl StallWatch {
    fn new(stall_timeout_s: f64, interval: Duration) -> StallWatch {
        let now = Instant::now();
        StallWatch {
            after: (stall_timeout_s > 0.0)
                .then(|| Duration::from_secs_f64(stall_timeout_s).max(interval * 3)),
            last: Cell::new((0, now, now)),
            tripped: Cell::new(false),
        }
    }

    /// How long the count of snapshots has stood at `published`, at `now`.
    fn quiet_for(&self, published: u64, now: Instant) -> Duration {
        let (count, mut since, asked) = self.last.get();
        if published != count || now.saturating_duration_since(asked) >= PAUSED {
            since = now;
        }
        self.last.set((published, since, now));
        now.saturating_duration_since(since)
    }

    /// Why capture is stuck, if it is: `published` snapshots at `now`.
    fn check(&self, published: u64, now: Instant) -> Option<String> {
        let quiet = self.quiet_for(published, now);
        let after = self.after?;
        if quiet < after {
            return None;
        }
        self.tripped.set(true);
        Some(format!(
            "no snapshot for {:.0} s (--stall-timeout {} s): a capture worker no longer answers",
            quiet.as_secs_f64(),
            after.as_secs_f64()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quota covering every allowed CPU (a host, a pod with CPUs of its
    /// own) pins a worker to each; a share of a larger pool runs as many
    /// workers as it grants, unpinned (not on the pool's first CPUs).
    #[test]
    fn workers_are_pinned_only_where_the_quota_covers_their_cpus() {
        assert_eq!(within_quota(vec![8, 9], 2), (vec![8, 9], true));
        assert_eq!(within_quota(vec![0, 1], 4), (vec![0, 1], true));
        assert_eq!(within_quota((0..96).collect(), 2), (vec![0, 1], false));
        assert_eq!(within_quota(vec![0, 1, 2], 0), (vec![0], false));
    }

    /// A watch with a 10 s timeout, as if made at `start`.
    fn watch_from(start: Instant) -> StallWatch {
        StallWatch {
            last: Cell::new((0, start, start)),
            ..StallWatch::new(10.0, Duration::from_secs(1))
        }
    }

    #[test]
    fn capture_is_stuck_once_no_snapshot_comes_for_the_timeout() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let watch = watch_from(start);
        // Asked once a second, as `run_until_signal` does.
        for s in 1..=5 {
            assert_eq!(watch.check(s.min(5), at(s)), None);
        }
        for s in 6..=14 {
            assert_eq!(watch.check(5, at(s)), None, "{} s without one", s - 5);
        }
        assert!(!watch.tripped.get());
        let why = watch.check(5, at(15)).expect("10 s without one");
        assert!(why.contains("no snapshot for 10 s"), "{why}");
        assert!(watch.tripped.get());
        // Three intervals at the least; 0 never.
        let slow = StallWatch::new(10.0, Duration::from_secs(5));
        assert_eq!(slow.after, Some(Duration::from_secs(15)));
        let never = StallWatch::new(0.0, Duration::from_secs(1));
        assert_eq!(never.check(0, at(1)), None);
        assert_eq!(never.check(0, at(2)), None);
    }

    /// A process stopped (SIGSTOP, a frozen cgroup, a paused VM) for longer
    /// than the timeout is not stuck when it runs again: the wait starts
    /// over.
    #[test]
    fn a_pause_is_no_stall() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let watch = watch_from(start);
        assert_eq!(watch.check(1, at(1)), None);
        assert_eq!(watch.check(1, at(60)), None, "resumed after 59 s");
        assert_eq!(watch.quiet_for(1, at(61)), Duration::from_secs(1));
        for s in 62..70 {
            assert_eq!(watch.check(1, at(s)), None);
        }
        assert!(watch.check(1, at(70)).is_some(), "10 s after resuming");
    }
}
