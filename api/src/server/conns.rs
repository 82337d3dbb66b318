//! Connections: how many are open, which one gives way, and how long a
//! response may take.
//!
//! At most `max` connections are open at once. When full, the oldest idle
//! connection (one with no response in progress: never used, between
//! requests, or still dribbling its headers in) is closed to admit the new
//! one, so idle and slow connections cannot lock out real queries. With
//! none idle, the busy connection whose socket has taken nothing for
//! longest, [`STALLED`] at least (a client that stopped reading), or whose
//! request body has been coming in that long, is closed at once instead,
//! so that clients that send requests and never read the answers, or send
//! bodies a byte at a time, cannot lock out the rest (the kubelet's probes
//! among them); a request still being worked on (rendered, waiting for its
//! turn or for the hub's round) is not stalled. Only when every
//! connection is busy and none stalled is the newcomer refused. One client
//! address holds `max_per_client` connections at most: at that bound its
//! own connections make room for its new one the same way, or it is
//! refused, so that a flood from one address (pipelined scrapes that keep
//! every connection busy) leaves room for everyone else.
//!
//! A response is in progress from the request's arrival until its body has
//! been handed over whole and flushed to the socket ([`Watched`]), and what
//! its body held (a large answer's turn) is let go then, not when hyper
//! took the body into its write buffer, where a client that does not read
//! would keep it ([`ConnState::hold_until_flushed`]). A response still in
//! progress after the response deadline closes its connection: a client
//! that reads slowly, or not at all, cannot hold a connection (and what its
//! answer holds) for longer.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::metrics::ServiceStats;

/// Milliseconds on the process's monotonic clock (never 0).
pub(super) fn now_ms() -> u64 {
    static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
    ORIGIN.elapsed().as_millis() as u64 + 1
}

/// A busy connection whose socket has taken nothing for this long gives
/// way to a new one when every connection is busy, and gives its turn to a
/// request waiting for one ([`super::turns`]).
pub(super) const STALLED: Duration = Duration::from_secs(2);

/// The client an address stands for in the per-client bounds (connections,
/// turns, request bodies, MCP sessions): an IPv4 address (IPv4-mapped ones
/// as such), or an IPv6 address's /64, which one host holds whole (SLAAC,
/// privacy addresses) and could draw addresses from without end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    pub fn of(address: IpAddr) -> Client {
        Client(match address.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            v4 => v4,
        })
    }

    /// The address, or the /64's first, that stands for the client.
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

/// Tests' connections, from no address in particular.
impl Default for Client {
    fn default() -> Client {
        Client(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }
}

/// One open connection, as the registry and its task share it.
#[derive(Default)]
pub(super) struct ConnState {
    /// Whom it is from.
    pub(super) client: Client,
    /// When the response in progress began ([`now_ms`]); 0 when none is.
    response_started_ms: AtomicU64,
    /// Since when the socket has taken none of what was written to it; 0
    /// while it takes it.
    write_blocked_ms: AtomicU64,
    /// Since when a request body has been coming in; 0 when none is.
    body_since_ms: AtomicU64,
    /// Told to close for good (its turn taken back).
    closing: AtomicBool,
    /// The response's body has been handed over whole.
    body_ended: AtomicBool,
    /// What finished bodies held, kept until the connection has flushed
    /// their bytes.
    held: Mutex<Vec<Box<dyn Send>>>,
    /// Told to close (to make room).
    pub close: Notify,
}

/// A request body coming in ([`ConnState::body_arriving`]).
pub(super) struct BodyArriving(Arc<ConnState>);

impl Drop for BodyArriving {
    fn drop(&mut self) {
        self.0.body_since_ms.store(0, Ordering::Release);
    }
}

impl ConnState {
    /// A connection from `client`, for tests.
    #[cfg(test)]
    pub(super) fn from(client: Client) -> ConnState {
        ConnState {
            client,
            ..ConnState::default()
        }
    }

    /// A request arrived: its response is in progress.
    pub(super) fn response_started(&self) {
        self.body_ended.store(false, Ordering::Release);
        self.response_started_ms.store(now_ms(), Ordering::Release);
    }

    /// Keeps `what` (a finished body, and the turn it holds) until the
    /// response in progress has been flushed; lets it go at once when none
    /// is in progress.
    pub(super) fn hold_until_flushed(&self, what: Box<dyn Send>) {
        let mut held = self.held.lock().expect("held lock");
        if self.busy() {
            held.push(what);
        }
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

    /// A write to the socket: bytes taken end a block, none taken (the
    /// client does not read) start one.
    fn wrote(&self, written: &Poll<io::Result<usize>>) {
        match written {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.write_blocked_ms.store(0, Ordering::Release);
            }
            Poll::Pending => {
                let _ = self.write_blocked_ms.compare_exchange(
                    0,
                    now_ms(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            _ => {}
        }
    }

    /// How long the socket has taken nothing of what the connection has to
    /// write, or a request body has been coming in, once that is
    /// [`STALLED`] at least; None while neither, before then, or once the
    /// connection was told to close for good.
    pub(super) fn stalled_for(&self, now_ms: u64) -> Option<u64> {
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        let for_ms = |since: u64| (since != 0).then(|| now_ms.saturating_sub(since));
        let blocked = for_ms(self.write_blocked_ms.load(Ordering::Acquire));
        let body = for_ms(self.body_since_ms.load(Ordering::Acquire));
        blocked
            .max(body)
            .filter(|ms| *ms >= STALLED.as_millis() as u64)
    }

    /// A request body is coming in until the guard is dropped: one that
    /// takes [`STALLED`] or longer (an MCP message is a few kilobytes)
    /// makes its connection one that gives way when every one is busy, or
    /// connections sending bodies a byte at a time kept everyone else out.
    pub(super) fn body_arriving(self: &Arc<Self>) -> BodyArriving {
        self.body_since_ms.store(now_ms(), Ordering::Release);
        BodyArriving(self.clone())
    }

    /// Told to close for good.
    pub(super) fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Tells the connection to close at once; false if it was told already.
    pub(super) fn close_for_good(&self) -> bool {
        let first = !self.closing.swap(true, Ordering::AcqRel);
        if first {
            self.close.notify_one();
        }
        first
    }

    /// Everything written so far reached the socket: if the body has ended,
    /// the response is complete.
    fn flushed(&self) {
        // What finished bodies held: their bytes were in the write buffer
        // before they were dropped, so any flush since has sent them.
        let mut held = self.held.lock().expect("held lock");
        if self.body_ended.load(Ordering::Acquire) {
            self.response_started_ms.store(0, Ordering::Release);
        }
        held.clear();
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
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.state.wrote(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.state.wrote(&written);
        written
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
    /// Connections from one client address at most.
    max_per_client: usize,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Open>>,
    stats: Arc<ServiceStats>,
}

/// An open connection: who it is from, and its state.
struct Open {
    client: Client,
    state: Arc<ConnState>,
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
    pub(super) fn new(max: usize, max_per_client: usize, stats: Arc<ServiceStats>) -> Arc<Conns> {
        stats
            .http_connection_capacity
            .fetch_add(max as u64, Ordering::Relaxed);
        stats
            .http_client_connection_capacity
            .store(max_per_client as u64, Ordering::Relaxed);
        Arc::new(Conns {
            max: max.max(1),
            max_per_client: max_per_client.max(1),
            next_id: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
            stats,
        })
    }

    /// Registers a new connection from `client`, closing the oldest idle
    /// one if a limit is reached; None when every connection that could
    /// make room is busy. A client at its own limit makes room among its
    /// own connections only, so that one address (a flood of pipelined
    /// scrapes) cannot keep everyone else out, the kubelet's probes
    /// included.
    pub(super) fn admit(self: &Arc<Conns>, client: IpAddr) -> Option<Admitted> {
        self.admit_at(Client::of(client), now_ms())
    }

    /// [`Conns::admit`] at `now` ([`now_ms`]).
    fn admit_at(self: &Arc<Conns>, client: Client, now: u64) -> Option<Admitted> {
        let mut open = self.open.lock().expect("connections lock");
        let from_client = open.values().filter(|o| o.client == client).count();
        if from_client >= self.max_per_client {
            if !self.make_room(&mut open, now, |o| o.client == client) {
                self.stats
                    .http_client_connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                return None;
            }
        } else if open.len() >= self.max && !self.make_room(&mut open, now, |_| true) {
            self.stats
                .http_connections_refused
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            client,
            ..ConnState::default()
        });
        open.insert(
            id,
            Open {
                client,
                state: state.clone(),
            },
        );
        // Counted up and down, not set: the data and admin listeners each
        // have their registry, and the gauge is their sum.
        self.stats.http_connections.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            id,
            state,
            conns: self.clone(),
        })
    }

    /// Closes one of the open connections `among` picks to make room: the
    /// oldest idle one, else the busy one whose socket has taken nothing,
    /// or whose request body has been coming in, longest (a client that
    /// stopped reading, or sends a byte at a time); false if none can go.
    fn make_room(
        &self,
        open: &mut BTreeMap<u64, Open>,
        now: u64,
        among: impl Fn(&Open) -> bool,
    ) -> bool {
        let candidates = || open.iter().filter(|(_, o)| among(o));
        // Ids grow with time: the first idle one is the oldest.
        let idle = candidates().find(|(_, o)| !o.state.busy());
        // It leaves the registry now; its task closes it at once (an idle
        // one has nothing in flight; a stalled one finishes nothing).
        let id = match idle {
            Some((&id, victim)) => {
                victim.state.close.notify_one();
                self.stats
                    .http_connections_closed_idle
                    .fetch_add(1, Ordering::Relaxed);
                id
            }
            None => {
                // Only a socket that takes nothing, or a body coming in
                // for 2 s: a request still being worked on (rendered,
                // waiting for its turn or for the hub's round) is not
                // stalled.
                let stalled = candidates()
                    .filter_map(|(id, o)| Some((*id, o, o.state.stalled_for(now)?)))
                    .max_by_key(|&(.., ms)| ms);
                let Some((id, victim, _)) = stalled else {
                    return false;
                };
                victim.state.close_for_good();
                self.stats
                    .http_connections_closed_stalled
                    .fetch_add(1, Ordering::Relaxed);
                id
            }
        };
        open.remove(&id);
        self.stats.http_connections.fetch_sub(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 1));

    #[test]
    fn idle_connections_make_room_busy_ones_do_not() {
        let stats = Arc::new(ServiceStats::default());
        let conns = Conns::new(2, 8, stats.clone());
        let a = conns.admit(CLIENT).unwrap();
        let b = conns.admit(CLIENT).unwrap();
        a.state.response_started();
        // Full: b (idle) makes room for c.
        let c = conns.admit(CLIENT).unwrap();
        assert_eq!(
            stats.http_connections_closed_idle.load(Ordering::Relaxed),
            1
        );
        c.state.response_started();
        // Now both are busy: refused.
        assert!(conns.admit(CLIENT).is_none());
        assert_eq!(stats.http_connections_refused.load(Ordering::Relaxed), 1);
        drop(b);
        drop(a);
        assert_eq!(stats.http_connections.load(Ordering::Relaxed), 1);
        assert!(conns.admit(CLIENT).is_some());
    }

    /// With every connection busy, the one whose socket has taken nothing
    /// for longest gives way, once that is [`STALLED`]; one whose socket
    /// takes what it writes, or that writes nothing yet, does not.
    #[test]
    fn a_stalled_connection_makes_room_when_all_are_busy() {
        let stats = Arc::new(ServiceStats::default());
        let conns = Conns::new(3, 8, stats.clone());
        let (a, b, c) = (
            conns.admit(CLIENT).unwrap(),
            conns.admit(CLIENT).unwrap(),
            conns.admit(CLIENT).unwrap(),
        );
        for conn in [&a, &b, &c] {
            conn.state.response_started();
        }
        let start = now_ms();
        let stalled = STALLED.as_millis() as u64;
        // b's socket stopped taking bytes first, c's after it; a's takes
        // them (a request being worked on writes nothing and is not
        // blocked either).
        b.state.write_blocked_ms.store(start, Ordering::Relaxed);
        c.state
            .write_blocked_ms
            .store(start + 500, Ordering::Relaxed);
        // Not stalled long enough yet: refused.
        assert!(
            conns
                .admit_at(Client::of(CLIENT), start + stalled - 1)
                .is_none()
        );
        let _d = conns
            .admit_at(Client::of(CLIENT), start + stalled + 600)
            .unwrap();
        assert_eq!(
            stats
                .http_connections_closed_stalled
                .load(Ordering::Relaxed),
            1
        );
        let open = conns.open.lock().unwrap();
        assert!(!open.contains_key(&b.id), "b, stalled longest, gave way");
        assert!(open.contains_key(&a.id) && open.contains_key(&c.id));
    }

    /// What a finished body held is let go once its bytes are flushed, or
    /// at once when nothing is in progress.
    #[test]
    fn what_a_body_held_is_kept_until_the_response_is_flushed() {
        let s = ConnState::default();
        let turn = Arc::new(());
        s.hold_until_flushed(Box::new(turn.clone()));
        assert_eq!(Arc::strong_count(&turn), 1, "no response in progress");
        s.response_started();
        s.body_ended();
        s.hold_until_flushed(Box::new(turn.clone()));
        assert_eq!(Arc::strong_count(&turn), 2);
        s.flushed();
        assert_eq!(Arc::strong_count(&turn), 1);
    }

    /// Two listeners (data and admin) count into one gauge: their sum, and
    /// their capacities' sum.
    #[test]
    fn the_gauges_are_the_listeners_sums() {
        let stats = Arc::new(ServiceStats::default());
        let (data, admin) = (
            Conns::new(2, 8, stats.clone()),
            Conns::new(1, 8, stats.clone()),
        );
        let open = || stats.http_connections.load(Ordering::Relaxed);
        assert_eq!(stats.http_connection_capacity.load(Ordering::Relaxed), 3);
        let d1 = data.admit(CLIENT).unwrap();
        let _d2 = data.admit(CLIENT).unwrap();
        let a1 = admin.admit(CLIENT).unwrap();
        assert_eq!(open(), 3);
        // a1 (idle) is closed to make room for a2: still one on admin.
        let _a2 = admin.admit(CLIENT).unwrap();
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

    /// One address at its bound makes room among its own connections, or
    /// is refused, while another address is still admitted: a flood of
    /// busy connections from one client kept the kubelet's probes out.
    #[test]
    fn one_client_cannot_take_every_connection() {
        let stats = Arc::new(ServiceStats::default());
        let conns = Conns::new(4, 2, stats.clone());
        let flood: Vec<Admitted> = (0..2).map(|_| conns.admit(CLIENT).unwrap()).collect();
        for c in &flood {
            c.state.response_started();
        }
        // Its own busy connections: refused, counted apart.
        assert!(conns.admit(CLIENT).is_none());
        assert_eq!(
            stats
                .http_client_connections_refused
                .load(Ordering::Relaxed),
            1
        );
        assert_eq!(stats.http_connections_refused.load(Ordering::Relaxed), 0);
        // Another address (the kubelet) is admitted.
        let probe = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 2));
        let _p = conns.admit(probe).unwrap();
        // An IPv6 host's other addresses in its /64 are the same client.
        assert_eq!(
            Client::of("2001:db8:1:2::5".parse().unwrap()),
            Client::of("2001:db8:1:2:ffff::9".parse().unwrap())
        );
        assert_ne!(
            Client::of("2001:db8:1:2::5".parse().unwrap()),
            Client::of("2001:db8:1:3::5".parse().unwrap())
        );
        assert_eq!(
            Client::of("::ffff:198.18.0.1".parse().unwrap()),
            Client::of(CLIENT),
            "an IPv4-mapped address is its IPv4 address"
        );
        // A client at its bound with an idle connection closes its own.
        flood[0].state.body_ended();
        flood[0].state.flushed();
        let _again = conns.admit(CLIENT).unwrap();
        assert_eq!(
            stats.http_connections_closed_idle.load(Ordering::Relaxed),
            1
        );
        assert_eq!(
            stats
                .http_client_connection_capacity
                .load(Ordering::Relaxed),
            2
        );
    }
}
