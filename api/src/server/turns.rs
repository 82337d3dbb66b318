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
//! What a client did with its last answer of a kind decides its line
//! for [`REMEMBERED_FOR`]: one that read it (its turn ended without being
//! taken back) may take any turn; one whose answer was taken back waits
//! behind one gate with every other such client (they hold one turn at a
//! time between them); others (a client not seen yet) hold all turns but
//! one between them, so a client that reads what it asks (Prometheus's
//! scrape, an agent's returning MCP client) always finds one (of two turns
//! or more: with one, the others take it too). Forty
//! addresses asking `/metrics` without reading held every turn for two
//! seconds each: another client's scrape waited twenty.
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

/// How long what a client did with its last answer decides its line.
pub(super) const REMEMBERED_FOR: Duration = Duration::from_secs(300);

/// Clients remembered at most, per kind of turn: past it, those whose
/// time is up are forgotten, then the reader noted longest ago, else the
/// client taken back longest ago (counted:
/// more clients than this within [`REMEMBERED_FOR`]). No more were noted
/// before: a reader first seen then stood in line with clients not seen
/// yet for good.
const MAX_REMEMBERED: usize = 4096;

/// What a client did with its last answer of a kind, and when (`now_ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conduct {
    /// Its turn ended without being taken back.
    Read,
    /// It stopped reading and its answer was taken back.
    TakenBack,
}

/// The line a request waits in, from its client's conduct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    Reader,
    Unknown,
    Suspect,
}

#[derive(Debug, Default)]
struct History {
    clients: HashMap<Client, (Conduct, u64)>,
    /// Where clients forgotten before their time are counted.
    stats: Arc<TurnStats>,
}

impl History {
    fn line_of(&self, client: Client, now_ms: u64) -> Line {
        match self.clients.get(&client) {
            Some(&(conduct, at))
                if now_ms.saturating_sub(at) < REMEMBERED_FOR.as_millis() as u64 =>
            {
                match conduct {
                    Conduct::Read => Line::Reader,
                    Conduct::TakenBack => Line::Suspect,
                }
            }
            _ => Line::Unknown,
        }
    }

    fn note(&mut self, client: Client, conduct: Conduct, now_ms: u64) {
        if self.clients.len() >= MAX_REMEMBERED && !self.clients.contains_key(&client) {
            let kept_ms = REMEMBERED_FOR.as_millis() as u64;
            self.clients
                .retain(|_, (_, at)| now_ms.saturating_sub(*at) < kept_ms);
            // A reader first: forgotten, it stands with clients not seen
            // yet; a client whose answer was taken back, forgotten, would
            // leave its line (anyone with 4096 addresses that read could
            // push it out).
            let noted_first = || {
                self.clients
                    .iter()
                    .min_by_key(|(_, (conduct, at))| (*conduct == Conduct::TakenBack, *at))
                    .map(|(client, _)| *client)
            };
            if self.clients.len() >= MAX_REMEMBERED
                && let Some(noted_first) = noted_first()
            {
                self.clients.remove(&noted_first);
                self.stats.forgotten.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.clients.insert(client, (conduct, now_ms));
    }
}

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
    /// Clients whose conduct was forgotten before its time, at
    /// [`MAX_REMEMBERED`].
    pub forgotten: AtomicU64,
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
    history: Arc<Mutex<History>>,
    /// Turns for clients that are not readers: all but one (with one
    /// turn only, that one).
    others: Arc<Semaphore>,
    /// One turn at a time for all clients whose answers were taken back.
    suspects: Arc<Semaphore>,
}

/// A turn, held as long as this lives.
pub struct Turn {
    _permit: OwnedSemaphorePermit,
    id: u64,
    holders: Arc<Holders>,
    _place: Place,
    _lines: (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>),
    conn: Weak<ConnState>,
    history: Arc<Mutex<History>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        {
            let mut holders = self.holders.lock().expect("holders lock");
            holders.retain(|(id, _)| *id != self.id);
        }
        // Taken back: noted so where it was closed.
        if let Some(conn) = self.conn.upgrade()
            && !conn.closing()
        {
            let mut history = self.history.lock().expect("history lock");
            history.note(conn.client, Conduct::Read, now_ms());
        }
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
        let history = Arc::new(Mutex::new(History {
            clients: HashMap::new(),
            stats: stats.clone(),
        }));
        Turns {
            at_once,
            permits: Arc::new(Semaphore::new(at_once)),
            stats,
            holders: Arc::default(),
            places: Arc::default(),
            next_turn: AtomicU64::new(0),
            history,
            others: Arc::new(Semaphore::new(at_once.saturating_sub(1).max(1))),
            suspects: Arc::new(Semaphore::new(1)),
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
        let waits_in = (self.history.lock().expect("history lock")).line_of(conn.client, now_ms());
        let acquire = async {
            let own = line.acquire_owned().await;
            let suspects = match waits_in {
                Line::Suspect => Some(self.suspects.clone().acquire_owned().await),
                Line::Reader | Line::Unknown => None,
            };
            let others = match waits_in {
                Line::Suspect | Line::Unknown => Some(self.others.clone().acquire_owned().await),
                Line::Reader => None,
            };
            let permit = self.permits.clone().acquire_owned().await;
            (own, (suspects, others), permit)
        };
        tokio::pin!(acquire);
        let (permit, lines) = loop {
            tokio::select! {
                (own, (suspects, others), permit) = &mut acquire => {
                    place.permit = Some(own.expect("places are never closed"));
                    let never_closed = |p: Result<OwnedSemaphorePermit, _>| p.expect("lines are never closed");
                    let lines = (suspects.map(never_closed), others.map(never_closed));
                    break (permit.expect("turns are never closed"), lines);
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
            _lines: lines,
            conn: Arc::downgrade(conn),
            history: self.history.clone(),
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
            let mut history = self.history.lock().expect("history lock");
            history.note(conn.client, Conduct::TakenBack, now);
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
        // Both read their answers before: either may take any turn.
        for conn in [&busy, &other] {
            drop(turns.take(conn).await);
        }
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

    /// A client that read its last answer finds a turn while clients not
    /// seen yet hold all they may; clients whose answers were taken back
    /// hold one turn at a time between them.
    #[tokio::test]
    async fn readers_find_a_turn_and_clients_that_stopped_reading_share_one() {
        let turns = Arc::new(Turns::new(3, Arc::default()));
        let from = |ip: [u8; 4]| Arc::new(ConnState::from(Client::of(IpAddr::from(ip))));
        let take = |conn: &Arc<ConnState>| {
            let (turns, conn) = (turns.clone(), conn.clone());
            tokio::spawn(async move { turns.take(&conn).await })
        };
        let settle = || tokio::time::sleep(Duration::from_millis(50));
        let (reader, stranger, suspect, other_suspect) = (
            from([198, 18, 0, 1]),
            from([198, 18, 0, 2]),
            from([198, 18, 0, 3]),
            from([198, 18, 0, 4]),
        );
        drop(turns.take(&reader).await);
        {
            let mut history = turns.history.lock().unwrap();
            history.note(suspect.client, Conduct::TakenBack, now_ms());
            history.note(other_suspect.client, Conduct::TakenBack, now_ms());
        }
        // Strangers hold two of the three turns at most.
        let strangers = [turns.take(&stranger).await, turns.take(&stranger).await];
        let third_stranger = take(&stranger);
        settle().await;
        assert!(!third_stranger.is_finished(), "a turn kept for readers");
        let read = tokio::time::timeout(Duration::from_secs(5), take(&reader))
            .await
            .expect("a reader finds the turn kept")
            .unwrap();
        drop(read);
        drop(strangers);
        let third = tokio::time::timeout(Duration::from_secs(5), third_stranger)
            .await
            .expect("then the stranger's")
            .unwrap();
        // One suspect's turn keeps the other's waiting, with a turn free.
        let held = turns.take(&suspect).await;
        let waiting = take(&other_suspect);
        settle().await;
        assert_eq!(turns.free(), 1);
        assert!(!waiting.is_finished(), "one turn for all suspects");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the suspects' turn passed on")
            .unwrap();
        drop(third);
        // Remembered for a while only.
        let later = now_ms() + REMEMBERED_FOR.as_millis() as u64;
        let history = turns.history.lock().unwrap();
        assert_eq!(history.line_of(suspect.client, later), Line::Unknown);
        assert_eq!(history.line_of(reader.client, now_ms()), Line::Reader);
    }

    /// More clients within the time conduct is remembered than the history
    /// holds: the reader noted longest ago makes room, else the client
    /// taken back longest ago, counted, and a reader seen last is still
    /// noted as one (none was, once it was full).
    #[test]
    fn a_full_history_forgets_the_client_noted_longest_ago() {
        let stats = Arc::new(TurnStats::default());
        let mut history = History {
            clients: HashMap::new(),
            stats: stats.clone(),
        };
        let client = |n: u32| Client::of(IpAddr::from(n.to_be_bytes()));
        for n in 0..MAX_REMEMBERED as u32 {
            history.note(client(n), Conduct::TakenBack, 1_000 + u64::from(n));
        }
        let now = 1_000 + MAX_REMEMBERED as u64;
        history.note(client(u32::MAX), Conduct::Read, now);
        assert_eq!(history.line_of(client(u32::MAX), now), Line::Reader);
        assert_eq!(history.line_of(client(0), now), Line::Unknown);
        assert_eq!(history.line_of(client(1), now), Line::Suspect);
        // Readers go before clients taken back, however recent.
        history.note(client(u32::MAX - 1), Conduct::Read, now + 1);
        assert_eq!(history.line_of(client(u32::MAX), now), Line::Unknown);
        assert_eq!(history.line_of(client(1), now), Line::Suspect);
        assert_eq!(history.clients.len(), MAX_REMEMBERED);
        assert_eq!(stats.forgotten.load(Ordering::Relaxed), 2);
    }
}
