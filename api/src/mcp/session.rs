//! Sessions of the handshake revisions over HTTP: an `initialize` gets an
//! `Mcp-Session-Id`, later requests must bring it back. The table is
//! bounded; the least recently used session makes room, and sessions idle
//! too long end. Its size and evictions are in `/metrics`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::version::Version;
use crate::metrics::ServiceStats;

/// Sessions kept at most.
pub const CAPACITY: usize = 1024;
/// A session unused this long has ended.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

struct Session {
    version: Version,
    last_used: Instant,
}

pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
    stats: Arc<ServiceStats>,
}

/// Why a session id was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(Version),
    /// Never issued, ended, evicted or expired: the client must initialize again.
    Unknown,
}

impl Sessions {
    pub fn new(stats: Arc<ServiceStats>) -> Sessions {
        stats
            .mcp_session_capacity
            .store(CAPACITY as u64, Ordering::Relaxed);
        Sessions {
            table: Mutex::new(HashMap::new()),
            stats,
        }
    }

    /// Starts a session speaking `version`; returns its id.
    pub fn create(&self, version: Version) -> String {
        let id = new_id();
        let now = Instant::now();
        let mut table = self.table.lock().expect("sessions lock");
        table.retain(|_, s| now.duration_since(s.last_used) < IDLE_TIMEOUT);
        if table.len() >= CAPACITY {
            let oldest = table
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                table.remove(&oldest);
                self.stats
                    .mcp_sessions_evicted
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        table.insert(
            id.clone(),
            Session {
                version,
                last_used: now,
            },
        );
        self.stats
            .mcp_sessions
            .store(table.len() as u64, Ordering::Relaxed);
        id
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
    fn sessions_are_bounded_and_end() {
        let stats = Arc::new(ServiceStats::default());
        let sessions = Sessions::new(stats.clone());
        let v = Version::LATEST_HANDSHAKE;
        let first = sessions.create(v);
        assert_eq!(first.len(), 32);
        assert_eq!(sessions.touch(&first), Lookup::Found(v));
        let second = sessions.create(v);
        assert_ne!(first, second);
        // Fill the table: the least recently used (second) goes first.
        assert_eq!(sessions.touch(&first), Lookup::Found(v));
        for _ in 0..CAPACITY - 1 {
            sessions.create(v);
        }
        assert_eq!(stats.mcp_sessions_evicted.load(Ordering::Relaxed), 1);
        assert_eq!(sessions.touch(&second), Lookup::Unknown);
        assert_eq!(sessions.touch(&first), Lookup::Found(v));
        assert_eq!(stats.mcp_sessions.load(Ordering::Relaxed), CAPACITY as u64);
        assert!(sessions.end(&first));
        assert!(!sessions.end(&first));
        assert_eq!(sessions.touch(&first), Lookup::Unknown);
    }
}
