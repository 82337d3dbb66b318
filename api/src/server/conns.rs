//! Admission of connections: at most `max` open at once. When full, the
//! oldest idle connection (one with no request in progress: never used, or
//! between requests, or still dribbling its headers in) is closed to admit
//! the new one, so idle and slow connections cannot lock out real queries;
//! only when every connection is busy is the newcomer refused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::metrics::ServiceStats;

/// One open connection, as the registry and its task share it.
#[derive(Debug, Default)]
pub(super) struct ConnState {
    /// A request is being answered.
    pub busy: AtomicBool,
    /// Told to close (to make room).
    pub close: Notify,
}

pub(super) struct Conns {
    max: usize,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<ConnState>>>,
    stats: Arc<ServiceStats>,
}

/// Keeps a connection registered while it lives.
pub(super) struct Admitted {
    id: u64,
    pub state: Arc<ConnState>,
    conns: Arc<Conns>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.conns.open.lock().expect("connections lock");
        open.remove(&self.id);
        self.conns
            .stats
            .http_connections
            .store(open.len() as u64, Ordering::Relaxed);
    }
}

impl Conns {
    pub(super) fn new(max: usize, stats: Arc<ServiceStats>) -> Arc<Conns> {
        stats
            .http_connection_capacity
            .store(max as u64, Ordering::Relaxed);
        Arc::new(Conns {
            max: max.max(1),
            next_id: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
            stats,
        })
    }

    /// Registers a new connection, closing the oldest idle one if the limit
    /// is reached; None when every open connection is busy.
    pub(super) fn admit(self: &Arc<Conns>) -> Option<Admitted> {
        let mut open = self.open.lock().expect("connections lock");
        if open.len() >= self.max {
            // Ids grow with time: the first idle one is the oldest.
            let idle = open
                .iter()
                .find(|(_, c)| !c.busy.load(Ordering::Acquire))
                .map(|(id, c)| (*id, c.clone()));
            let Some((id, victim)) = idle else {
                self.stats
                    .http_connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                return None;
            };
            // It leaves the registry now; its task closes it.
            open.remove(&id);
            victim.close.notify_one();
            self.stats
                .http_connections_closed_idle
                .fetch_add(1, Ordering::Relaxed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState::default());
        open.insert(id, state.clone());
        self.stats
            .http_connections
            .store(open.len() as u64, Ordering::Relaxed);
        Some(Admitted {
            id,
            state,
            conns: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_make_room_busy_ones_do_not() {
        let stats = Arc::new(ServiceStats::default());
        let conns = Conns::new(2, stats.clone());
        let a = conns.admit().unwrap();
        let b = conns.admit().unwrap();
        a.state.busy.store(true, Ordering::Release);
        // Full: b (idle) makes room for c.
        let c = conns.admit().unwrap();
        assert_eq!(
            stats.http_connections_closed_idle.load(Ordering::Relaxed),
            1
        );
        c.state.busy.store(true, Ordering::Release);
        // Now both are busy: refused.
        assert!(conns.admit().is_none());
        assert_eq!(stats.http_connections_refused.load(Ordering::Relaxed), 1);
        drop(b);
        drop(a);
        assert_eq!(stats.http_connections.load(Ordering::Relaxed), 1);
        assert!(conns.admit().is_some());
    }
}
