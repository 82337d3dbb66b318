//! Answers that take turns: a large answer (over [`LARGE_ANSWER`] flows or
//! workloads, an MCP tool call) or a `/metrics` scrape is
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
//! One client (an address, an IPv6 /64) holds or waits for as many turns
//! at most as go at once; its further requests wait behind its own, not in
//! everyone's line. Sixty requests from one address that never read their
//! answers otherwise stood in line ahead of everyone else's, each given
//! up only once stalled: another client's tool call waited a minute.
//!
//! [`LARGE_ANSWER`]: super::LARGE_ANSWER

use std::collections::HashMap;
#[cfg(test)]
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conns::{Client, ConnState, now_ms};

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

/// Each client's place in line: as many as go at once, held from the
/// request's arrival until its turn ends.
type Places = Mutex<HashMap<Client, Arc<Semaphore>>>;

/// Turns of one kind: at most so many at once.
pub struct Turns {
    at_once: usize,
    permits: Arc<Semaphore>,
    stats: Arc<TurnStats>,
    holders: Arc<Holders>,
    places: Arc<Places>,
    next_turn: AtomicU64,
}

/// A turn, held as long as this lives.
pub struct Turn {
    _permit: OwnedSemaphorePermit,
    id: u64,
    holders: Arc<Holders>,
    _place: Place,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut holders = self.holders.lock().expect("holders lock");
        holders.retain(|(id, _)| *id != self.id);
    }
}

/// A request's claim on its client's places, from its arrival: a place
/// once it has one. The client's entry goes when no request of it is left.
struct Place {
    client: Client,
    places: Arc<Places>,
    line: Option<Arc<Semaphore>>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Place {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut places = self.places.lock().expect("places lock");
        // Let go under the lock, so that of two requests of the client
        // ending at once the second sees the first's gone.
        drop(self.line.take());
        // The table's alone: no other request of the client.
        if places
            .get(&self.client)
            .is_some_and(|line| Arc::strong_count(line) == 1)
        {
            places.remove(&self.client);
        }
    }
}

impl Turns {
    pub fn new(at_once: usize, stats: Arc<TurnStats>) -> Turns {
        let at_once = at_once.max(1);
        stats.at_once.store(at_once as u64, Ordering::Relaxed);
        Turns {
            at_once,
            permits: Arc::new(Semaphore::new(at_once)),
            stats,
            holders: Arc::default(),
            places: Arc::default(),
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
        let line = {
            let mut places = self.places.lock().expect("places lock");
            let line = places
                .entry(conn.client)
                .or_insert_with(|| Arc::new(Semaphore::new(self.at_once)));
            line.clone()
        };
        let mut place = Place {
            client: conn.client,
            places: self.places.clone(),
            line: Some(line.clone()),
            permit: None,
        };
        // Never closed: the semaphores live as long as these turns. A
        // stalled holder is looked for while the request waits for its
        // client's place as well as for its turn (the holder may be the
        // client's own).
        let acquire = async {
            let own = line.acquire_owned().await;
            (own, self.permits.clone().acquire_owned().await)
        };
        tokio::pin!(acquire);
        let permit = loop {
            tokio::select! {
                (own, permit) = &mut acquire => {
                    place.permit = Some(own.expect("places are never closed"));
                    break permit.expect("turns are never closed");
                }
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
            _place: place,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A client holding every turn waits for its next behind its own: a
    /// request of another client that came later goes first (in one line
    /// for everyone, the first client's came first).
    #[tokio::test]
    async fn a_client_s_further_requests_wait_behind_its_own() {
        let turns = Arc::new(Turns::new(2, Arc::default()));
        let from = |ip: [u8; 4]| Arc::new(ConnState::from(Client::of(IpAddr::from(ip))));
        let (busy, other) = (from([198, 18, 0, 1]), from([198, 18, 0, 2]));
        let first = turns.take(&busy).await;
        let _second = turns.take(&busy).await;
        let take = |conn: &Arc<ConnState>| {
            let (turns, conn) = (turns.clone(), conn.clone());
            tokio::spawn(async move { turns.take(&conn).await })
        };
        let third = take(&busy);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let others = take(&other);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(turns.stats.waiting.load(Ordering::Relaxed), 2);
        drop(first);
        let others = tokio::time::timeout(Duration::from_secs(5), others)
            .await
            .expect("the other client's request goes first")
            .unwrap();
        assert!(!third.is_finished());
        drop(others);
        tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("then the client's own")
            .unwrap();
        // Every client's place given back: no entry left behind.
        drop(_second);
        assert!(turns.places.lock().unwrap().is_empty());
    }
}
