//! Sessions of the handshake revisions over HTTP: an `initialize` gets an
//! `Mcp-Session-Id`, later requests must bring it back. The table is
//! bounded two ways: each client (by IP address) holds a few sessions at
//! most, its own least recently used one making room for its next; and the
//! table as a whole, which when full refuses new sessions rather than end
//! another client's. Sessions idle too long end. Sizes, evictions and
//! refusals are in `/metrics`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::version::Version;
use crate::metrics::ServiceStats;

/// A session unused this long has ended.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

struct Session {
    version: Version,
    client: IpAddr,
    last_used: Instant,
}

pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
    capacity: usize,
    per_client: usize,
    stats: Arc<ServiceStats>,
}

/// The table is full of live sessions: the new one is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// Why a session id was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(Version),
    /// Never issued, ended, evicted or expired: the client must initialize again.
    Unknown,
}

impl Sessions {
    pub fn new(stats: Arc<ServiceStats>, capacity: usize, per_client: usize) -> Sessions {
        stats
            .mcp_session_capacity
            .store(capacity as u64, Ordering::Relaxed);
        Sessions {
            table: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            per_client: per_client.max(1),
            stats,
        }
    }

    /// Starts a session speaking `version` for `client`; returns its id.
    pub fn create(&self, version: Version, client: IpAddr) -> Result<String, Full> {
        let now = Instant::now();
        let mut table = self.table.lock().expect("sessions lock");
        table.retain(|_, s| now.duration_since(s.last_used) < IDLE_TIMEOUT);
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
            self.stats
                .mcp_sessions_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(Full);
        }
        let id = new_id();
        table.insert(
            id.clone(),
            Session {
                version,
                client,
                last_used: now,
            },
        );
        self.stats
            .mcp_sessions
            .store(table.len() as u64, Ordering::Relaxed);
        Ok(id)
    }

    pub fn touch(&self, id: &str) -> Lookup {
        let now = Instant::now();
        let mut table = self.table.lock().expect("sessions lock");
        match table.get_mut(id) {
            Some(s) if now.duration_since(s.last_used) < IDLE_TIMEOUT => {
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

    /// Ends a session (HTTP DELETE); false if there was none.
    pub fn end(&self, id: &str) -> bool {
        let mut table = self.table.lock().expect("sessions lock");
        let found = table.remove(id).is_some();
        self.stats
            .mcp_sessions
            .store(table.len() as u64, Ordering::Relaxed);
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
        let sessions = Sessions::new(stats.clone(), 6, 3);
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
        // b fills the table; then a new client is refused, and nobody's
        // session was ended for it.
        for _ in 0..3 {
            sessions.create(v, b).unwrap();
        }
        let c: IpAddr = "2001:db8::3".parse().unwrap();
        assert_eq!(sessions.create(v, c), Err(Full));
        assert_eq!(stats.mcp_sessions_refused.load(Ordering::Relaxed), 1);
        for id in [&first, &third, &fourth] {
            assert_eq!(sessions.touch(id), Lookup::Found(v));
        }
        assert_eq!(stats.mcp_sessions.load(Ordering::Relaxed), 6);
        assert!(sessions.end(&first));
        assert!(!sessions.end(&first));
        assert_eq!(sessions.touch(&first), Lookup::Unknown);
        assert!(sessions.create(v, c).is_ok(), "room again");
    }
}
