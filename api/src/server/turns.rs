//! Answers that take turns: a large answer (over [`LARGE_ANSWER`] flows or
//! workloads, an MCP tool call, a hub's feed) or a `/metrics` scrape is
//! rendered into memory of its own and held until its client has read it
//! ([`super::conns`]), so only a few go at once; the others wait holding
//! nothing. How many go at once is an option, and `/metrics` tells both
//! bounds and how many requests wait for each (`flowtap_http_turns`,
//! `flowtap_http_turns_waiting`).
//!
//! A client that asks and then stops reading would keep its turn until the
//! response deadline (a minute), and a few such clients every turn: while
//! a request waits, the holder whose socket has taken nothing for longest,
//! once that is [`STALLED`](super::conns::STALLED), is closed, and its turn
//! goes to the next.
//!
//! [`LARGE_ANSWER`]: super::LARGE_ANSWER

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conns::{ConnState, now_ms};

/// How often a waiting request looks for a stalled holder.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// What `/metrics` says of one kind of turn.
#[derive(Debug, Default)]
pub struct TurnStats {
    /// Turns at once, at most.
    pub at_once: AtomicU64,
    /// Requests waiting for a turn now.
    pub waiting: AtomicU64,
    /// Holders closed because their client stopped reading while others
    /// waited.
    pub taken_back: AtomicU64,
}

/// The connections holding turns, by turn.
type Holders = Mutex<Vec<(u64, Weak<ConnState>)>>;

/// Turns of one kind: at most so many at once.
pub struct Turns {
    permits: Arc<Semaphore>,
    stats: Arc<TurnStats>,
    holders: Arc<Holders>,
    next_turn: AtomicU64,
}

/// A turn, held as long as this lives.
pub struct Turn {
    _permit: OwnedSemaphorePermit,
    id: u64,
    holders: Arc<Holders>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut holders = self.holders.lock().expect("holders lock");
        holders.retain(|(id, _)| *id != self.id);
    }
}

impl Turns {
    pub fn new(at_once: usize, stats: Arc<TurnStats>) -> Turns {
        let at_once = at_once.max(1);
        stats.at_once.store(at_once as u64, Ordering::Relaxed);
        Turns {
            permits: Arc::new(Semaphore::new(at_once)),
            stats,
            holders: Arc::default(),
            next_turn: AtomicU64::new(0),
        }
    }

    /// Waits for a turn for the connection `conn`, counted as waiting until
    /// it comes (or until the request is given up: its connection closed
    /// or overdue); meanwhile a holder that stalled is closed. The turn
    /// lasts as long as the [`Turn`].
    pub(super) async fn take(&self, conn: &Arc<ConnState>) -> Turn {
        struct Waiting<'a>(&'a AtomicU64);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.stats.waiting);
        // Never closed: the semaphore lives as long as these turns.
        let acquire = self.permits.clone().acquire_owned();
        tokio::pin!(acquire);
        let permit = loop {
            tokio::select! {
                permit = &mut acquire => break permit.expect("turns are never closed"),
                () = tokio::time::sleep(LOOK_EVERY) => self.close_a_stalled_holder(),
            }
        };
        let id = self.next_turn.fetch_add(1, Ordering::Relaxed);
        let mut holders = self.holders.lock().expect("holders lock");
        holders.push((id, Arc::downgrade(conn)));
        Turn {
            _permit: permit,
            id,
            holders: self.holders.clone(),
        }
    }

    /// Closes the holder whose socket has refused its answer longest, if
    /// that is [`STALLED`](super::conns::STALLED) (one still rendering is
    /// not), unless one closed so has not given its turn back yet.
    fn close_a_stalled_holder(&self) {
        let now = now_ms();
        let holders: Vec<Weak<ConnState>> = {
            let holders = self.holders.lock().expect("holders lock");
            holders.iter().map(|(_, conn)| conn.clone()).collect()
        };
        // Upgraded, and let go, with the lock released: the last reference
        // to a connection that has just ended drops its turn, which takes
        // the lock.
        let holders: Vec<Arc<ConnState>> = holders.iter().filter_map(Weak::upgrade).collect();
        if holders.iter().any(|conn| conn.closing()) {
            return;
        }
        let stalled = holders
            .iter()
            .filter_map(|conn| Some((conn, conn.stalled_for(now)?)))
            .max_by_key(|(_, ms)| *ms);
        if let Some((conn, _)) = stalled
            && conn.close_for_good()
        {
            self.stats.taken_back.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Turns free now.
    pub fn free(&self) -> usize {
        self.permits.available_permits()
    }
}
