//! Sessions of the handshake revisions over HTTP: an `initialize` gets an
//! `Mcp-Session-Id`, later requests must bring it back. The table is
//! bounded two ways: each client (an address, an IPv6 /64) holds a few sessions at
//! most, its own least recently used one making room for its next; and the
//! table as a whole, where when full the client holding the most sessions
//! (two more than the newcomer's client at least) gives its least recently
//! used up, else the newcomer is refused. Sessions idle too long end. Sizes, evictions and
//! refusals are in `/metrics`.
//!
//! A session holds nothing but its revision, so one this process does not
//! know (it restarted, or the session expired or made room for another)
//! is taken up again when the client names its revision: real clients do
//! not initialize again on the 404 the transport prescribes, and would
//! stay broken until restarted. Sessions the client ended stay ended.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::version::Version;
use crate::metrics::ServiceStats;

struct Session {
    version: Version,
    client: IpAddr,
    last_used: Instant,
}

/// Sessions ended by their clients (DELETE) remembered, so that they are
/// not taken up again.
const ENDED_REMEMBERED: usize = 256;
/// The longest session id taken up again (flowtap's own are 32 bytes).
const MAX_ID_LEN: usize = 128;

pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
    ended: Mutex<VecDeque<String>>,
    capacity: usize,
    per_client: usize,
    /// A session unused this long has ended.
    idle_timeout: Duration,
    stats: Arc<ServiceStats>,
}

/// The table is full of live sessions: the new one is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// Why a session was not taken up again.
#[derive(Debug, PartialEq, Eq)]
pub enum NotResumed {
    Full,
    /// Its client ended it, or no session could have had that id.
    Unknown,
}

/// Why a session id was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(Version),
    /// Never issued, ended, evicted or expired: the client must initialize again.
    Unknown,
}

impl Sessions {
    pub fn new(
        stats: Arc<ServiceStats>,
        capacity: usize,
        per_client: usize,
        idle_timeout: Duration,
    ) -> Sessions {
        stats
            .mcp_session_capacity
            .store(capacity as u64, Ordering::Relaxed);
        Sessions {
            table: Mutex::new(HashMap::new()),
            ended: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            per_client: per_client.max(1),
            idle_timeout,
            stats,
        }
    }

    /// Starts a session speaking `version` for `client`; returns its id.
    pub fn create(&self, version: Version, client: IpAddr) -> Result<String, Full> {
        let id = new_id();
        self.admit(id.clone(), version, client)?;
        Ok(id)
    }

    /// Takes up again a session `id` this process does not know, speaking
    /// the `version` the client names, within the same bounds as a new one.
    pub fn resume(&self, id: &str, version: Version, client: IpAddr) -> Result<(), NotResumed> {
        let visible_ascii = id.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if id.is_empty() || id.len() > MAX_ID_LEN || !visible_ascii {
            return Err(NotResumed::Unknown);
        }
        if self
            .ended
            .lock()
            .expect("ended lock")
            .iter()
            .any(|e| e == id)
        {
            return Err(NotResumed::Unknown);
        }
        let entered = self
            .admit(id.to_owned(), version, client)
            .map_err(|Full| NotResumed::Full)?;
        if entered {
            self.stats
                .mcp_sessions_resumed
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Enters session `id` in the table, within its bounds; false if it is
    /// there already (a client's requests resuming it at once).
    fn admit(&self, id: String, version: Version, client: IpAddr) -> Result<bool, Full> {
        let now = Instant::now();
        let mut table = self.table.lock().expect("sessions lock");
        if let Some(session) = table.get_mut(&id) {
            session.last_used = now;
            return Ok(false);
        }
        self.expire(&mut table, now);
        let own: Vec<(&String, Instant)> = table
            .iter()
            .filter(|(_, s)| s.client == client)
            .map(|(id, s)| (id, s.last_used))
            .collect();
        if own.len() >= self.per_client {
            // The client's own least recently used session makes room.
            let oldest = own
                .iter()
                .min_by_key(|(_, used)| *used)
                .map(|(id, _)| (*id).clone());
            if let Some(oldest) = oldest {
                table.remove(&oldest);
                self.stats
                    .mcp_sessions_evicted
                    .fetch_add(1, Ordering::Relaxed);
            }
        } else if table.len() >= self.capacity {
            // Full: the client holding the most sessions, if it holds more
            // than this one, gives its least recently used up (a few
            // addresses opening sessions as fast as they can kept every
            // other client out for the idle timeout, an hour); else the
            // newcomer is refused rather than take a session from a client
            // holding no more than it.
            let mut held: HashMap<IpAddr, (usize, Instant, &String)> = HashMap::new();
            for (id, s) in table.iter() {
                let e = held.entry(s.client).or_insert((0, s.last_used, id));
                e.0 += 1;
                if s.last_used < e.1 {
                    (e.1, e.2) = (s.last_used, id);
                }
            }
            let heaviest = held
                .values()
                .max_by_key(|(count, oldest, _)| (*count, std::cmp::Reverse(*oldest)))
                .filter(|(count, ..)| *count > own.len() + 1)
                .map(|(.., id)| (*id).clone());
            let Some(oldest) = heaviest else {
                self.stats
                    .mcp_sessions_refused
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Full);
            };
            table.remove(&oldest);
            self.stats
                .mcp_sessions_evicted
                .fetch_add(1, Ordering::Relaxed);
        }
        table.insert(
            id,
            Session {
                version,
                client,
                last_used: now,
            },
        );
        self.stats
            .mcp_sessions
            .store(table.len() as u64, Ordering::Relaxed);
        Ok(true)
    }

    pub fn touch(&self, id: &str) -> Lookup {
        let now = Instant::now();
        let mut table = self.table.lock().expect("sessions lock");
        match table.get_mut(id) {
            Some(s) if now.duration_since(s.last_used) < self.idle_timeout => {
                s.last_used = now;
                Lookup::Found(s.version)
            }
            Some(_) => {
                table.remove(id);
                self.stats
                    .mcp_sessions
                    .store(table.len() as u64, Ordering::Relaxed);
                Lookup::Unknown
            }
            None => Lookup::Unknown,
        }
    }

    /// Ends the sessions idle too long, so that the sessions gauge counts
    /// live ones (called before each scrape: without it, sessions expired
    /// in a quiet hour were counted until the next session was made).
    pub fn expire_idle(&self) {
        let mut table = self.table.lock().expect("sessions lock");
        self.expire(&mut table, Instant::now());
    }

    fn expire(&self, table: &mut HashMap<String, Session>, now: Instant) {
        table.retain(|_, s| now.duration_since(s.last_used) < self.idle_timeout);
        self.stats
            .mcp_sessions
            .store(table.len() as u64, Ordering::Relaxed);
    }

    /// Ends a session (HTTP DELETE); false if there was none. Its id is
    /// remembered either way (one this process did not know may still be
    /// held by a client), so that it is not taken up again.
    pub fn end(&self, id: &str) -> bool {
        let mut table = self.table.lock().expect("sessions lock");
        let found = table.remove(id).is_some();
        self.stats
            .mcp_sessions
            .store(table.len() as u64, Ordering::Relaxed);
        drop(table);
        if id.len() <= MAX_ID_LEN {
            let mut ended = self.ended.lock().expect("ended lock");
            if !ended.iter().any(|e| e == id) {
                if ended.len() == ENDED_REMEMBERED {
                    ended.pop_front();
                }
                ended.push_back(id.to_owned());
            }
        }
        found
    }
}

/// 128 random bits from the kernel, as 32 hex digits: unguessable, and
/// visible ASCII as the transport requires.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the kernel's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bounded_per_client_and_in_all() {
        let stats = Arc::new(ServiceStats::default());
        let sessions = Sessions::new(stats.clone(), 6, 3, Duration::from_secs(3600));
        let v = Version::LATEST_HANDSHAKE;
        let (a, b): (IpAddr, IpAddr) =
            ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
        let first = sessions.create(v, a).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(sessions.touch(&first), Lookup::Found(v));
        let second = sessions.create(v, a).unwrap();
        assert_ne!(first, second);
        let third = sessions.create(v, a).unwrap();
        // a is at its quota: its least recently used (second) goes.
        assert_eq!(sessions.touch(&first), Lookup::Found(v));
        assert_eq!(sessions.touch(&third), Lookup::Found(v));
        let fourth = sessions.create(v, a).unwrap();
        assert_eq!(stats.mcp_sessions_evicted.load(Ordering::Relaxed), 1);
        assert_eq!(sessions.touch(&second), Lookup::Unknown);
        // b fills the table; then a new client's session is made room for
        // by the client holding the most (two more than it, at least):
        // here a and b hold 3 each, and a's least recently used goes.
        let b_ids: Vec<String> = (0..3).map(|_| sessions.create(v, b).unwrap()).collect();
        let c: IpAddr = "2001:db8::3".parse().unwrap();
        let c_id = sessions.create(v, c).unwrap();
        assert_eq!(stats.mcp_sessions_evicted.load(Ordering::Relaxed), 2);
        assert_eq!(sessions.touch(&first), Lookup::Unknown);
        for id in [&third, &fourth, &c_id].into_iter().chain(&b_ids) {
            assert_eq!(sessions.touch(id), Lookup::Found(v));
        }
        assert_eq!(stats.mcp_sessions.load(Ordering::Relaxed), 6);
        assert!(sessions.end(&third));
        assert!(!sessions.end(&third));
        assert_eq!(sessions.touch(&third), Lookup::Unknown);
        assert!(sessions.create(v, c).is_ok(), "room again");
        assert_eq!(stats.mcp_sessions_refused.load(Ordering::Relaxed), 0);
    }

    /// A table full of clients holding one session each refuses a new
    /// client rather than end another's.
    #[test]
    fn a_full_table_of_single_sessions_refuses_a_newcomer() {
        let stats = Arc::new(ServiceStats::default());
        let sessions = Sessions::new(stats.clone(), 3, 3, Duration::from_secs(3600));
        let v = Version::LATEST_HANDSHAKE;
        let client = |i: u8| IpAddr::from([198, 18, 0, i]);
        let ids: Vec<String> = (1..=3)
            .map(|i| sessions.create(v, client(i)).unwrap())
            .collect();
        assert_eq!(sessions.create(v, client(4)), Err(Full));
        assert_eq!(stats.mcp_sessions_refused.load(Ordering::Relaxed), 1);
        for id in &ids {
            assert_eq!(sessions.touch(id), Lookup::Found(v));
        }
        // Nor is a second session of a client holding one made room for.
        assert_eq!(sessions.create(v, client(1)), Err(Full));
    }

    #[test]
    fn idle_sessions_end_and_leave_the_gauge() {
        let stats = Arc::new(ServiceStats::default());
        let sessions = Sessions::new(stats.clone(), 8, 8, Duration::from_secs(60));
        let v = Version::LATEST_HANDSHAKE;
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let idle = sessions.create(v, a).unwrap();
        let used = sessions.create(v, a).unwrap();
        let later = Instant::now() + Duration::from_secs(45);
        sessions
            .table
            .lock()
            .unwrap()
            .get_mut(&used)
            .unwrap()
            .last_used = later;
        {
            let mut table = sessions.table.lock().unwrap();
            sessions.expire(&mut table, later + Duration::from_secs(30));
        }
        assert_eq!(stats.mcp_sessions.load(Ordering::Relaxed), 1);
        assert_eq!(sessions.touch(&idle), Lookup::Unknown);
        assert_eq!(sessions.touch(&used), Lookup::Found(v));
    }

    #[test]
    fn a_session_not_known_is_taken_up_again_but_not_one_its_client_ended() {
        let stats = Arc::new(ServiceStats::default());
        let sessions = Sessions::new(stats.clone(), 2, 2, Duration::from_secs(3600));
        let v = Version::LATEST_HANDSHAKE;
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        // An id from before a restart.
        let old = "0123456789abcdef0123456789abcdef";
        assert_eq!(sessions.touch(old), Lookup::Unknown);
        assert_eq!(sessions.resume(old, v, a), Ok(()));
        assert_eq!(sessions.touch(old), Lookup::Found(v));
        assert_eq!(stats.mcp_sessions_resumed.load(Ordering::Relaxed), 1);
        // Resumed by two requests at once: one session, counted once.
        assert_eq!(sessions.resume(old, v, a), Ok(()));
        assert_eq!(stats.mcp_sessions_resumed.load(Ordering::Relaxed), 1);
        assert_eq!(stats.mcp_sessions.load(Ordering::Relaxed), 1);
        // Ended by its client: not taken up again; nor one ended that this
        // process did not know.
        assert!(sessions.end(old));
        assert_eq!(sessions.resume(old, v, a), Err(NotResumed::Unknown));
        assert!(!sessions.end("feedface"));
        assert_eq!(sessions.resume("feedface", v, a), Err(NotResumed::Unknown));
        // Ids no session could have.
        for id in ["", "with space", &"x".repeat(MAX_ID_LEN + 1)] {
            assert_eq!(sessions.resume(id, v, a), Err(NotResumed::Unknown));
        }
        // Within the table's bounds (two clients holding one each).
        for client in ["198.18.0.2", "198.18.0.3"] {
            sessions.create(v, client.parse().unwrap()).unwrap();
        }
        assert_eq!(sessions.resume("another", v, a), Err(NotResumed::Full));
    }
}
