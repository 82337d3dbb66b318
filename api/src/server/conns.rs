//! Connections: how many are open, which one gives way, and how long a
//! response may take.
//!
//! At most `max` connections are open at once. When full, the oldest idle
//! connection (one with no response in progress: never used, between
//! requests, or still dribbling its headers in) is closed to admit the new
//! one, so idle and slow connections cannot lock out real queries; only when
//! every connection is busy is the newcomer refused.
//!
//! A response is in progress from the request's arrival until its body has
//! been handed over whole and flushed to the socket ([`Watched`]). A
//! response still in progress after the response deadline closes its
//! connection: a client that reads slowly, or not at all, cannot hold a
//! connection (and what its answer holds) for longer.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::metrics::ServiceStats;

/// Milliseconds on the process's monotonic clock (never 0).
fn now_ms() -> u64 {
    static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
    ORIGIN.elapsed().as_millis() as u64 + 1
}

/// One open connection, as the registry and its task share it.
#[derive(Debug, Default)]
pub(super) struct ConnState {
    /// When the response in progress began ([`now_ms`]); 0 when none is.
    response_started_ms: AtomicU64,
    /// The response's body has been handed over whole.
    body_ended: AtomicBool,
    /// Told to close (to make room).
    pub close: Notify,
}

impl ConnState {
    /// A request arrived: its response is in progress.
    pub(super) fn response_started(&self) {
        self.body_ended.store(false, Ordering::Release);
        self.response_started_ms.store(now_ms(), Ordering::Release);
    }

    pub(super) fn body_ended(&self) {
        self.body_ended.store(true, Ordering::Release);
    }

    /// A response is in progress.
    pub(super) fn busy(&self) -> bool {
        self.response_started_ms.load(Ordering::Acquire) != 0
    }

    /// The response in progress began longer than `deadline` ago.
    pub(super) fn overdue(&self, deadline: Duration) -> bool {
        let started = self.response_started_ms.load(Ordering::Acquire);
        started != 0 && now_ms().saturating_sub(started) > deadline.as_millis() as u64
    }

    /// Everything written so far reached the socket: if the body has ended,
    /// the response is complete.
    fn flushed(&self) {
        if self.body_ended.load(Ordering::Acquire) {
            self.response_started_ms.store(0, Ordering::Release);
        }
    }
}

/// A connection's socket, telling its [`ConnState`] when what was written
/// has been flushed.
pub(super) struct Watched<T> {
    inner: T,
    state: Arc<ConnState>,
}

impl<T> Watched<T> {
    pub(super) fn new(inner: T, state: Arc<ConnState>) -> Watched<T> {
        Watched { inner, state }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = polled {
            self.state.flushed();
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
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
        // Not there if it was closed to make room (counted off then).
        if open.remove(&self.id).is_some() {
            self.conns
                .stats
                .http_connections
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Conns {
    pub(super) fn new(max: usize, stats: Arc<ServiceStats>) -> Arc<Conns> {
        stats
            .http_connection_capacity
            .fetch_add(max as u64, Ordering::Relaxed);
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
                .find(|(_, c)| !c.busy())
                .map(|(id, c)| (*id, c.clone()));
            let Some((id, victim)) = idle else {
                self.stats
                    .http_connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                return None;
            };
            // It leaves the registry now; its task closes it.
            open.remove(&id);
            self.stats.http_connections.fetch_sub(1, Ordering::Relaxed);
            victim.close.notify_one();
            self.stats
                .http_connections_closed_idle
                .fetch_add(1, Ordering::Relaxed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState::default());
        open.insert(id, state.clone());
        // Counted up and down, not set: the data and admin listeners each
        // have their registry, and the gauge is their sum.
        self.stats.http_connections.fetch_add(1, Ordering::Relaxed);
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
        a.state.response_started();
        // Full: b (idle) makes room for c.
        let c = conns.admit().unwrap();
        assert_eq!(
            stats.http_connections_closed_idle.load(Ordering::Relaxed),
            1
        );
        c.state.response_started();
        // Now both are busy: refused.
        assert!(conns.admit().is_none());
        assert_eq!(stats.http_connections_refused.load(Ordering::Relaxed), 1);
        drop(b);
        drop(a);
        assert_eq!(stats.http_connections.load(Ordering::Relaxed), 1);
        assert!(conns.admit().is_some());
    }

    /// Two listeners (data and admin) count into one gauge: their sum, and
    /// their capacities' sum.
    #[test]
    fn the_gauges_are_the_listeners_sums() {
        let stats = Arc::new(ServiceStats::default());
        let (data, admin) = (Conns::new(2, stats.clone()), Conns::new(1, stats.clone()));
        let open = || stats.http_connections.load(Ordering::Relaxed);
        assert_eq!(stats.http_connection_capacity.load(Ordering::Relaxed), 3);
        let d1 = data.admit().unwrap();
        let _d2 = data.admit().unwrap();
        let a1 = admin.admit().unwrap();
        assert_eq!(open(), 3);
        // a1 (idle) is closed to make room for a2: still one on admin.
        let _a2 = admin.admit().unwrap();
        assert_eq!(open(), 3);
        drop(a1);
        assert_eq!(open(), 3, "closed to make room: counted off once");
        drop(d1);
        assert_eq!(open(), 2);
    }

    #[test]
    fn a_response_is_done_when_its_body_ended_and_was_flushed() {
        let s = ConnState::default();
        assert!(!s.busy());
        s.response_started();
        s.flushed();
        assert!(s.busy(), "the body has not ended");
        s.body_ended();
        s.flushed();
        assert!(!s.busy());
        s.response_started();
        assert!(!s.overdue(Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.overdue(Duration::from_millis(1)));
    }
}
