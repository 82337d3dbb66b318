//! Publishing: each new snapshot (and each inventory change) becomes a new
//! prepared [`View`], swapped in atomically; requests take the current one
//! without locks and never see a half-built view.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use pipeline::Snapshot;
use pipeline::time::AtMostEvery;

use std::sync::atomic::Ordering;

use crate::cluster::Cluster;
use crate::metrics::ServiceStats;
use crate::view::View;
use k8s::Source;

/// The view requests read.
pub type SharedView = Arc<ArcSwap<View>>;

/// Counts the frames the kernel dropped before the capture read them.
pub type CaptureDropsFn = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Who this flowtap is, for its own coverage.
struct Identity {
    name: String,
    node: Option<String>,
    capture_drops: Option<CaptureDropsFn>,
}

pub struct Publisher {
    views: SharedView,
    identity: Option<Identity>,
    /// Where Kubernetes names come from, if anywhere.
    inventory: Option<Source>,
    cluster: Arc<Cluster>,
    snapshot: Arc<Snapshot>,
    stats: Arc<ServiceStats>,
    /// What follows every snapshot besides the API (the IPFIX exporter).
    sinks: Vec<Box<dyn pipeline::snapshot::SnapshotSink>>,
    /// The view last replaced, when a query still held it then: freed here
    /// at the next publish, not by whichever query lets go of it last (a
    /// million-flow view takes a while to free, and that query's client
    /// would wait for it).
    retired: Option<Arc<View>>,
    /// Whether anything will read the per-pair counters (`/metrics` is
    /// served): following every flow for them is a pass over the snapshot.
    pair_counters: bool,
    other_thread: OtherThread,
    /// How often snapshots are due (live capture, hub; `None` reading
    /// files), and when the log last said that one was late.
    due: Option<Due>,
    /// The snapshot being published is the last ([`Self::publish_last`]).
    last: bool,
}

/// Snapshots due every `interval`: one that takes longer to make and
/// prepare than that is late, and answers are older than the interval
/// says. The operator hears of it at most once a minute while it goes on,
/// not at every snapshot (a hub over too many flows is late every round).
struct Due {
    interval: Duration,
    /// The log says so at most once a minute, with the late snapshots
    /// since.
    warned: AtMostEvery,
    late_unlogged: u64,
}

/// Late snapshots are logged at most this often.
const LATE_LOG_EVERY: Duration = Duration::from_secs(60);

/// A second thread for the publisher's passes over a snapshot, started
/// once: one spawned per snapshot would leave its allocator heap behind
/// each time (a hub's peak memory grew by a tenth to a quarter that way).
/// Given the per-pair counters' pass, which allocates nothing once its map
/// has grown, while the publishing thread computes the summary.
struct OtherThread {
    /// None if the thread could not be started: jobs run in turn.
    jobs: Option<mpsc::SyncSender<Job>>,
}

type Job = Box<dyn FnOnce() + Send>;

/// A job started on the other thread; [`Started::wait`] until it is done.
enum Started {
    Running(mpsc::Receiver<()>),
    Done,
}

impl OtherThread {
    fn new() -> OtherThread {
        let (jobs, todo) = mpsc::sync_channel::<Job>(1);
        let started = std::thread::Builder::new()
            .name("flowtap-publish".into())
            .spawn(move || {
                pipeline::privileges::give_up_for_this_thread();
                for job in todo {
                    job();
                }
            });
        if let Err(e) = &started {
            tracing::warn!(error = %e, "no second thread for publishing; its passes run in turn");
        }
        OtherThread {
            jobs: started.ok().map(|_| jobs),
        }
    }

    fn start(&self, job: impl FnOnce() + Send + 'static) -> Started {
        let (finished, done) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            job();
            let _ = finished.send(());
        });
        // Run here, in turn, if there is no other thread (or it is gone: a
        // job panicked).
        let job = match &self.jobs {
            Some(jobs) => match jobs.send(job) {
                Ok(()) => return Started::Running(done),
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        job();
        Started::Done
    }
}

impl Started {
    fn wait(self) {
        if let Started::Running(done) = self {
            let _ = done.recv();
        }
    }
}

impl Publisher {
    /// `k8s` counts what a Kubernetes watch does (zero otherwise).
    pub fn new(
        inventory: Option<Source>,
        cluster: Cluster,
        k8s: Arc<k8s::WatchStats>,
    ) -> Publisher {
        let stats = Arc::new(ServiceStats::with_k8s(k8s));
        if let Some(inv) = &inventory {
            stats
                .inventory_addresses
                .store(inv.current().len() as u64, Ordering::Relaxed);
        }
        Publisher {
            views: Arc::new(ArcSwap::from_pointee(View::empty())),
            identity: None,
            inventory,
            cluster: Arc::new(cluster),
            snapshot: Arc::new(Snapshot::default()),
            stats,
            sinks: Vec::new(),
            retired: None,
            pair_counters: true,
            other_thread: OtherThread::new(),
            due: None,
            last: false,
        }
    }

    /// Snapshots are due every `interval` (`--snapshot-interval`): one that
    /// takes longer to make and prepare is counted
    /// (`flowtap_snapshots_late_total`) and logged, at most once a minute.
    pub fn set_interval(&mut self, interval: Duration) {
        self.due = Some(Due {
            interval,
            warned: AtMostEvery::new(LATE_LOG_EVERY),
            late_unlogged: 0,
        });
    }

    /// The counters the publisher keeps (and /metrics serves).
    pub fn stats(&self) -> Arc<ServiceStats> {
        self.stats.clone()
    }

    pub fn views(&self) -> SharedView {
        self.views.clone()
    }

    pub fn inventory(&self) -> Option<&Source> {
        self.inventory.as_ref()
    }

    /// Names this flowtap in the coverage of the snapshots it publishes
    /// (a hub's snapshots bring their own), with its capture's drops.
    pub fn set_identity(
        &mut self,
        name: &str,
        node: Option<&str>,
        capture_drops: Option<CaptureDropsFn>,
    ) {
        self.identity = Some(Identity {
            name: name.to_owned(),
            node: node.map(str::to_owned),
            capture_drops,
        });
    }

    /// Publishes a new snapshot, with the inventory as it is now; returns
    /// it as published (with this flowtap's coverage when it had none).
    /// `sink` follows every snapshot published from now on.
    pub fn add_sink(&mut self, sink: Box<dyn pipeline::snapshot::SnapshotSink>) {
        self.sinks.push(sink);
    }

    /// Publishes the last snapshot ([`Self::publish`]): no more will come,
    /// and the sinks finish (the exporter sends what it has not sent).
    pub fn publish_last(&mut self, snapshot: Snapshot) -> Arc<Snapshot> {
        self.last = true;
        let snapshot = self.publish(snapshot);
        self.last = false;
        self.stats.capture_ended.store(1, Ordering::Relaxed);
        for sink in &mut self.sinks {
            sink.finish();
        }
        snapshot
    }

    /// Hands the sinks the flows that left the tables between snapshots
    /// ([`pipeline::Pipeline::take_ended_flows`]).
    pub fn ended(&mut self, ended: &[pipeline::flow::EndedFlow]) {
        if ended.is_empty() {
            return;
        }
        for sink in &mut self.sinks {
            sink.ended(ended);
        }
    }

    /// Workload pairs with series of their own in `/metrics`
    /// (`--metrics-max-pairs`).
    pub fn set_metrics_max_pairs(&mut self, max_pairs: usize) {
        self.stats
            .pairs
            .lock()
            .expect("pairs lock")
            .set_max_pairs(max_pairs);
    }

    /// Nothing will read `/metrics` (a file read without `--listen`): the
    /// per-pair counters are not kept.
    pub fn without_pair_counters(&mut self) {
        self.pair_counters = false;
    }

    pub fn publish(&mut self, mut snapshot: Snapshot) -> Arc<Snapshot> {
        if let Some(me) = &self.identity
            && snapshot.coverage.agents.is_empty()
        {
            let mut losses = pipeline::snapshot::Losses::of(&snapshot.counters);
            losses.capture_dropped = me.capture_drops.as_ref().map_or(0, |f| f());
            snapshot.coverage = crate::feed::own_coverage(
                &me.name,
                me.node.as_deref(),
                losses,
                pipeline::time::wall_now_ns(),
            );
        }
        let snapshot = Arc::new(snapshot);
        self.publish_shared(snapshot.clone());
        snapshot
    }

    pub fn publish_shared(&mut self, snapshot: Arc<Snapshot>) {
        self.reload_inventory();
        let merge_ns = snapshot.merge_ns;
        self.snapshot = snapshot;
        let started = Instant::now();
        let view = Arc::new(self.build_view());
        let built = started.elapsed();
        // The per-pair counters and the summary are each a pass over every
        // flow (most of a second each over a hub's 1.5 million): the
        // counters follow on the publisher's other thread meanwhile, which
        // then counts the summary's distinct ends (the longer summary needs
        // them last).
        let following = self.pair_counters.then(|| {
            let (stats, view) = (self.stats.clone(), view.clone());
            self.other_thread.start(move || {
                stats.pairs.lock().expect("pairs lock").observe(&view);
                view.distinct_ends();
            })
        });
        view.summary_json(); // meanwhile; `serve` then finds it computed
        if let Some(following) = following {
            following.wait();
        }
        let summarized = started.elapsed();
        self.serve(view);
        let served = started.elapsed();
        let view = self.views.load();
        for sink in &mut self.sinks {
            sink.snapshot(&self.snapshot, &**view, self.last);
        }
        // Where publishing spends its time (a hub's 1.5M flows on
        // 2026-12-01: names 0.1 s, summary and counters 0.6-0.75 s, freeing
        // the replaced view 0.6-0.7 s).
        tracing::debug!(
            names_ms = built.as_millis() as u64,
            summary_and_pairs_ms = (summarized - built).as_millis() as u64,
            serve_and_free_ms = (served - summarized).as_millis() as u64,
            sinks_ms = (started.elapsed() - served).as_millis() as u64,
            "prepared"
        );
        // Building the snapshot, then preparing it for queries.
        let took = Duration::from_nanos(merge_ns) + started.elapsed();
        self.stats.observe_merge(took.as_secs_f64());
        self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
        self.check_due(took);
    }

    fn check_due(&mut self, took: Duration) {
        let Some(due) = &mut self.due else {
            return;
        };
        if took <= due.interval {
            return;
        }
        self.stats.snapshots_late.fetch_add(1, Ordering::Relaxed);
        due.late_unlogged += 1;
        if !due.warned.due() {
            return;
        }
        tracing::warn!(
            took_s = took.as_secs_f64(),
            interval_s = due.interval.as_secs_f64(),
            late = due.late_unlogged,
            "snapshots take longer to make than --snapshot-interval, so answers are older than \
             the interval: raise --snapshot-interval for this many flows, or give flowtap more \
             CPU; on a hub, a round also waits up to --agent-timeout for an agent that does not \
             answer (flowtap_agent_up says which) (late: snapshots late since the last such line)"
        );
        due.late_unlogged = 0;
    }

    /// Takes in a changed inventory (a rewritten file, what a watch saw)
    /// and, if there is one, republishes the last snapshot with the new
    /// mapping. Returns true when it did.
    pub fn refresh(&mut self) -> bool {
        let changed = self.reload_inventory();
        if changed {
            self.serve(Arc::new(self.build_view()));
        }
        changed
    }

    fn reload_inventory(&mut self) -> bool {
        let Some(file) = self.inventory.as_mut() else {
            return false;
        };
        match file.refresh() {
            Ok(changed) => {
                if changed {
                    let inv = file.current();
                    self.stats.inventory_reloads.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .inventory_addresses
                        .store(inv.len() as u64, Ordering::Relaxed);
                    // A watch's changes come with every pod of a busy
                    // cluster: said at debug, and counted.
                    if file.follows_the_api() {
                        tracing::debug!(
                            pods = inv.pods,
                            services = inv.services,
                            nodes = inv.nodes,
                            "inventory reloaded"
                        );
                    } else {
                        tracing::info!(
                            pods = inv.pods,
                            services = inv.services,
                            nodes = inv.nodes,
                            "inventory reloaded"
                        );
                    }
                }
                changed
            }
            Err(e) => {
                self.stats
                    .inventory_reload_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "inventory reload failed; keeping the previous mapping");
                false
            }
        }
    }

    /// The view of the last snapshot with the inventory as it is now,
    /// not yet served.
    fn build_view(&self) -> View {
        let inventory = self.inventory.as_ref().map(Source::current);
        View::build(self.snapshot.clone(), inventory, self.cluster.clone())
    }

    /// Serves `view` from now on, with its summary and prepared for what
    /// clients asked of the view it replaces.
    fn serve(&mut self, view: Arc<View>) {
        view.summary_json();
        view.prepare_as(&self.views.load());
        let replaced = self.views.swap(view);
        // The one retired before goes in any case.
        self.retired = None;
        // Freed here, not on the other thread: freed there, while the
        // next round allocates, a hub's peak memory grew by 700 MiB for no
        // shorter round (2 cores, both busy then).
        self.retired = release(replaced, RELEASE_WAIT);
    }
}

/// How long the publisher waits for queries to let go of the view it
/// replaced before it retires it instead (queries take milliseconds).
const RELEASE_WAIT: Duration = Duration::from_millis(500);

/// Frees `replaced` once the queries that still hold it let go, waiting at
/// most `wait`; returns it if one still holds it then. Retired rather than
/// waited for, a view lives until the next publish: at a hub's 1.5M flows
/// that was half a GiB more through a whole round whenever a query (a
/// Prometheus scrape, say) overlapped the swap.
fn release(replaced: Arc<View>, wait: Duration) -> Option<Arc<View>> {
    let deadline = Instant::now() + wait;
    while Arc::strong_count(&replaced) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    Arc::try_unwrap(replaced).err()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher() -> Publisher {
        let mut publisher = Publisher::new(None, Cluster::default(), Default::default());
        publisher.without_pair_counters();
        publisher
    }

    /// With an interval set, a snapshot that took longer than it to make is
    /// counted late; one on time is not.
    #[test]
    fn a_snapshot_slower_than_the_interval_is_counted_late() {
        let mut publisher = publisher();
        let late = |p: &Publisher| p.stats.snapshots_late.load(Ordering::Relaxed);
        let taking = |ms: u64| Snapshot {
            merge_ns: ms * 1_000_000,
            ..Snapshot::default()
        };
        publisher.publish(taking(5_000));
        assert_eq!(late(&publisher), 0, "no interval, nothing is late");
        publisher.set_interval(Duration::from_secs(1));
        publisher.publish(taking(1_500));
        publisher.publish(taking(2_000));
        assert_eq!(late(&publisher), 2);
        // Logged for the first, not again within the minute.
        assert_eq!(publisher.due.as_ref().map(|d| d.late_unlogged), Some(1));
        publisher.publish(taking(10));
        assert_eq!(late(&publisher), 2);
    }

    /// A query that holds the served view while a new one is swapped in
    /// lets go of it within the wait: the replaced view is freed by the
    /// publish, not kept until the next one.
    #[test]
    fn a_view_a_query_held_at_the_swap_is_freed_when_it_lets_go() {
        let mut publisher = publisher();
        publisher.publish(Snapshot::default());
        let held = publisher.views().load_full();
        let replaced = Arc::downgrade(&held);
        let query = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        });
        publisher.publish(Snapshot::default());
        assert!(
            replaced.upgrade().is_none(),
            "the replaced view is still alive"
        );
        assert!(publisher.retired.is_none());
        query.join().unwrap();
    }

    /// A view still held when the wait ends is retired, and let go of at
    /// the next publish (whoever holds it then frees it).
    #[test]
    fn a_view_held_past_the_wait_is_retired_until_the_next_publish() {
        let mut publisher = publisher();
        publisher.publish(Snapshot::default());
        let held = publisher.views().load_full();
        publisher.publish(Snapshot::default());
        let retired = publisher.retired.as_ref().expect("a view retired");
        assert!(Arc::ptr_eq(retired, &held));
        publisher.publish(Snapshot::default());
        assert!(publisher.retired.is_none());
        assert_eq!(Arc::strong_count(&held), 1);
    }
}
