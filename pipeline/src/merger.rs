//! The merger: a thread that takes a snapshot of the pipeline at a fixed
//! interval and hands it to a publisher (which, in flowtap, prepares it for
//! queries and swaps it in for readers). Packet processing never waits for
//! readers: workers only copy their flows out when asked.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::engine::{AsOf, Pipeline};
use crate::snapshot::Snapshot;

/// Which clock snapshots are taken at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The newest capture timestamp (capture files).
    Capture,
    /// Wall-clock time (live capture).
    Wall,
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
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
                let mut next = Instant::now() + interval;
                while !stopping.load(Ordering::Acquire) {
                    let now = Instant::now();
                    if now < next {
                        // Sleep in short steps so a stop is noticed promptly.
                        std::thread::sleep((next - now).min(Duration::from_millis(50)));
                        continue;
                    }
                    next += interval;
                    let as_of = match clock {
                        Clock::Capture => AsOf::CaptureClock,
                        Clock::Wall => AsOf::Time(now_ns()),
                    };
                    publish(pipeline.snapshot(as_of));
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
            let _ = t.join();
        }
    }
}

impl Drop for Merger {
    fn drop(&mut self) {
        self.shutdown();
    }
}
