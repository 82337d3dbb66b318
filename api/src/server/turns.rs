//! Answers that take turns: a large answer (over [`LARGE_ANSWER`] flows or
//! workloads, an MCP tool call, a hub's feed) or a `/metrics` scrape is
//! rendered into memory of its own and held until its client has read it,
//! so only a few go at once; the others wait holding nothing. How many go
//! at once is an option, and `/metrics` tells both bounds and how many
//! requests wait for each (`flowtap_http_turns`, `flowtap_http_turns_waiting`).
//!
//! [`LARGE_ANSWER`]: super::LARGE_ANSWER

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What `/metrics` says of one kind of turn.
#[derive(Debug, Default)]
pub struct TurnStats {
    /// Turns at once, at most.
    pub at_once: AtomicU64,
    /// Requests waiting for a turn now.
    pub waiting: AtomicU64,
}

/// Turns of one kind: at most so many at once.
pub struct Turns {
    permits: Arc<Semaphore>,
    stats: Arc<TurnStats>,
}

impl Turns {
    pub fn new(at_once: usize, stats: Arc<TurnStats>) -> Turns {
        let at_once = at_once.max(1);
        stats.at_once.store(at_once as u64, Ordering::Relaxed);
        Turns {
            permits: Arc::new(Semaphore::new(at_once)),
            stats,
        }
    }

    /// Waits for a turn, counted as waiting until it comes (or until the
    /// request is given up: its connection closed or overdue). The turn
    /// lasts as long as the permit.
    pub async fn take(&self) -> OwnedSemaphorePermit {
        struct Waiting<'a>(&'a AtomicU64);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.stats.waiting);
        // Never closed: the semaphore lives as long as these turns.
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("turns are never closed")
    }

    /// Turns free now.
    pub fn free(&self) -> usize {
        self.permits.available_permits()
    }
}
