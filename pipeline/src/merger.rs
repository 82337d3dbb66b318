//! The merger: turns every shard's export into one [`Snapshot`] ([`merge`]),
//! and, as a thread ([`Merger`]), takes one at a fixed interval and hands it
//! to a publisher (which, in flowtap, prepares it for queries and swaps it
//! in for readers). Packet processing never waits for readers: workers only
//! copy their flows out when asked.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::{Exports, Pipeline};
use crate::snapshot::Snapshot;
use crate::time::Clock;

/// One snapshot from every shard's export: counters added up, flows
/// gathered and put in the API's order. Shards never share a flow (a flow's
/// connections all hash to one shard), so gathering is all the merge there is.
pub fn merge(exports: Exports) -> Snapshot {
    let mut snapshot = Snapshot {
        sequence: exports.sequence,
        as_of_ns: exports.as_of_ns,
        rtt_window: exports.rtt_window,
        ..Snapshot::default()
    };
    let mut flows = Vec::new();
    for export in exports.shards {
        snapshot.counters.ingest.add(&export.ingest);
        snapshot.counters.table.add(&export.table);
        snapshot.sessions.add(&export.sessions);
        snapshot.since_ns = match (snapshot.since_ns, export.since_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        snapshot.connections.extend(export.connections);
        snapshot.ended.extend(export.ended);
        if flows.is_empty() {
            flows = export.flows;
        } else {
            flows.extend(export.flows);
        }
    }
    crate::snapshot::sort_flows(&mut flows);
    snapshot.flows = flows.into();
    snapshot.merge_ns = exports.requested.elapsed().as_nanos() as u64;
    snapshot
}

/// When the snapshot after the one due at `due` (made at `now`) is due:
/// one interval later, or, where that is past already (the process was
/// stopped or starved: a paused VM, a throttled cgroup, a merge slower
/// than the interval), one interval from now. Ticks missed are skipped,
/// not made up back to back (20 whole merges in 0.25 s after a 20 s
/// stop, while the workers catch up).
fn next_tick(due: Instant, now: Instant, interval: Duration) -> Instant {
    let next = due + interval;
    if next <= now { now + interval } else { next }
}

pub struct Merger {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Merger {
    /// Publishes a snapshot of `pipeline` every `interval` until stopped.
    pub fn spawn(
        pipeline: Arc<Pipeline>,
        interval: Duration,
        clock: Clock,
        mut publish: impl FnMut(Snapshot) + Send + 'static,
    ) -> Merger {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("flowtap-merger".into())
            .spawn(move || {
                crate::privileges::give_up_for_this_thread();
                let mut next = Instant::now() + interval;
                while !stopping.load(Ordering::Acquire) {
                    let now = Instant::now();
                    if now < next {
                        // A stop unparks it (an idle appliance wakes only
                        // for its snapshots).
                        std::thread::park_timeout(next - now);
                        continue;
                    }
                    next = next_tick(next, now, interval);
                    publish(pipeline.snapshot(clock));
                }
            })
            .expect("spawning the merger thread");
        Merger {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the thread after its current snapshot, if any.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Merger {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_missed_are_skipped_not_made_up() {
        let second = Duration::from_secs(1);
        let t0 = Instant::now();
        // On time, or a little late: the next one interval after the last.
        assert_eq!(next_tick(t0, t0, second), t0 + second);
        let late = t0 + Duration::from_millis(300);
        assert_eq!(next_tick(t0, late, second), t0 + second);
        // After a 20 s stop: one interval from now, not 20 at once.
        let resumed = t0 + 20 * second;
        assert_eq!(next_tick(t0, resumed, second), resumed + second);
    }
}
