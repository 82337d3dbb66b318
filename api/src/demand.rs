//! Demand for data whose source is pulled on demand (the hub's merged
//! snapshots): the puller pauses when nobody has asked for a while, and a
//! request that finds it paused wakes it and waits for what it pulls next,
//! so that the answer is fresh rather than as old as the pause.
//!
//! Requests for flow data and for `/metrics` count as asking; probes do
//! not. The server calls [`Demand::asked`]; the puller calls the rest.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Demand {
    started: Instant,
    /// Milliseconds from `started` to the last request.
    asked_ms: AtomicU64,
    paused: AtomicBool,
    wake: tokio::sync::Notify,
    /// Counts the puller's publications; requests wait for the next one.
    published: tokio::sync::watch::Sender<u64>,
    /// How long a request waits for a paused puller's next publication
    /// before it is answered from what there is.
    wait_at_most: Duration,
}

impl Demand {
    pub fn new(wait_at_most: Duration) -> Demand {
        Demand {
            started: Instant::now(),
            asked_ms: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            published: tokio::sync::watch::Sender::new(0),
            wait_at_most,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A request for data arrived. If the puller is paused, it is woken,
    /// and this waits (at most the bound given to [`Demand::new`]) for its
    /// next publication; before its first, for that one (an answer from
    /// no round at all names no source, missing or not: it read as a
    /// cluster without traffic).
    pub async fn asked(&self) {
        // SeqCst on both sides: a request either sees the pause, or the
        // puller, pausing, sees the request (`Demand::pause` checks again).
        self.asked_ms.store(self.now_ms(), Ordering::SeqCst);
        let mut published = self.published.subscribe();
        let seen = *published.borrow_and_update();
        let wanted = if self.paused.load(Ordering::SeqCst) {
            self.wake.notify_one();
            seen + 1
        } else if seen == 0 {
            1
        } else {
            return;
        };
        let _ = tokio::time::timeout(self.wait_at_most, published.wait_for(|n| *n >= wanted)).await;
    }

    /// For the puller: how long since the last request (or since this was
    /// made, if none came).
    pub fn unasked_for(&self) -> Duration {
        let asked = self.asked_ms.load(Ordering::SeqCst);
        Duration::from_millis(self.now_ms().saturating_sub(asked))
    }

    /// For the puller: pauses until a request comes or `at_most` passes.
    /// Returns whether the puller should stay paused: nothing was asked for
    /// `idle` (requests that came meanwhile end it).
    pub async fn pause(&self, idle: Duration, at_most: Duration) -> bool {
        self.paused.store(true, Ordering::SeqCst);
        if self.unasked_for() < idle {
            self.resume();
            return false;
        }
        let _ = tokio::time::timeout(at_most, self.wake.notified()).await;
        if self.unasked_for() < idle {
            self.resume();
            return false;
        }
        true
    }

    /// For the puller: pulling again, requests need not wait.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// For the puller: a snapshot was published; requests waiting for one
    /// go on.
    pub fn published(&self) {
        self.published.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A request, on a task of its own: how long it waited.
    fn ask_in_the_background(demand: &Arc<Demand>) -> tokio::task::JoinHandle<Duration> {
        let demand = demand.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            demand.asked().await;
            started.elapsed()
        })
    }

    #[tokio::test]
    async fn a_request_to_a_paused_puller_wakes_it_and_waits_for_its_next_publication() {
        let demand = Arc::new(Demand::new(Duration::from_secs(10)));
        let idle = Duration::from_millis(50);
        tokio::time::sleep(Duration::from_millis(60)).await;
        // Nothing asked for longer than `idle`: the puller stays paused.
        assert!(demand.pause(idle, Duration::from_millis(10)).await);
        assert!(demand.is_paused());

        // A request while paused wakes the puller, then waits for it.
        let request = ask_in_the_background(&demand);
        // The puller, paused for up to a minute, is woken at once.
        let woken = Instant::now();
        assert!(!demand.pause(idle, Duration::from_secs(60)).await);
        assert!(woken.elapsed() < Duration::from_secs(5));
        assert!(!demand.is_paused());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !request.is_finished(),
            "the request waits for the publication"
        );
        demand.published();
        let waited = request.await.unwrap();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");

        // An active puller keeps nobody waiting.
        let started = Instant::now();
        demand.asked().await;
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    /// Before the puller's first round, an answer would name no source:
    /// a request waits for that round.
    #[tokio::test]
    async fn a_request_before_the_first_publication_waits_for_it() {
        let demand = Arc::new(Demand::new(Duration::from_secs(10)));
        let request = ask_in_the_background(&demand);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!request.is_finished(), "it waits for the first round");
        demand.published();
        let waited = request.await.unwrap();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        let started = Instant::now();
        demand.asked().await;
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_paused_puller_that_publishes_nothing_keeps_a_request_waiting_only_so_long() {
        let demand = Demand::new(Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            demand
                .pause(Duration::from_millis(20), Duration::ZERO)
                .await
        );
        let started = Instant::now();
        demand.asked().await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    }
}
