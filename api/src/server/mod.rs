//! The HTTP server: hyper 1.x over HTTP/1.1 on a tokio runtime of its own,
//! never on the capture cores. Requests read the published view and never
//! wait for the pipeline.
//!
//! Two listeners: the data listener answers with flow data (the REST
//! endpoints and MCP), the admin listener with `/healthz`, `/readyz` and
//! `/metrics` ([`Listener`]). They run on separate runtimes, so nothing a
//! client does on the data port can keep a probe or a scrape waiting.
//!
//! - [`conns`]: how many connections, which one gives way, response deadlines.
//! - [`routes`]: what each path answers.
//! - [`body`]: whole and chunked response bodies.
//! - [`turns`]: large answers and scrapes, a few at once.
//! - [`readiness`]: what `/readyz` says.

mod bodies;
mod body;
mod conns;
pub mod media;
pub mod readiness;
mod routes;
pub mod turns;

use bodies::Bodies;
pub use readiness::{Readiness, ReadinessCell};
pub use routes::Route;
pub use turns::{TurnStats, Turns};

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use pipeline::time::AtMostEvery;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::access::AccessConfig;
use crate::mcp::McpLimits;
use crate::mcp::streamable::Mcp;
use crate::metrics::ServiceStats;
use crate::publish::SharedView;
use conns::{Conns, Watched};
use pipeline::source::QueueStats;

/// Which paths a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Flow data: `/mcp/flows`, `/mcp/flows/summary`, `/mcp`.
    Data,
    /// `/healthz`, `/readyz`, `/metrics`: for probes and scrapers.
    Admin,
}

/// Limits that protect the server from its clients.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request head (request line plus headers); beyond it the
    /// request is refused with 431 (or 414 for a request line alone).
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// Time a client gets to send a complete request head, and again to
    /// send a request body.
    pub header_read_timeout: Duration,
    /// Largest request body (MCP messages); beyond it, 413.
    pub max_body_bytes: usize,
    /// Bytes of request bodies held at once, being read or handled (each
    /// counted at what has come in, 4 KiB at first); beyond it, 503.
    pub max_body_bytes_held: usize,
    /// Every response must be written out within this time of its
    /// request's arrival, or its connection is closed.
    pub response_timeout: Duration,
    /// Connections open at once (idle ones give way to new ones).
    pub max_connections: usize,
    /// Connections from one client address at once (its own idle ones give
    /// way to its new ones).
    pub max_connections_per_client: usize,
    /// The largest `limit` a `/mcp/flows` query may ask for.
    pub max_limit: usize,
    /// Who may read what.
    pub access: AccessConfig,
    /// MCP's bounds: batch length, reply size, sessions.
    pub mcp: McpLimits,
    /// Large answers (over [`LARGE_ANSWER`] flows or workloads, MCP tool
    /// calls) rendered or being sent at once: they may wait
    /// on slow clients, and must leave threads for everyone else.
    pub large_answers_at_once: usize,
    /// `/metrics` answers rendered or being sent at once: a Prometheus
    /// pair and a person or two.
    pub scrapes_at_once: usize,
    /// How often the service map asks for new data: the snapshot interval.
    pub map_refresh: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            header_read_timeout: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
            max_body_bytes_held: 16 * 1024 * 1024,
            response_timeout: Duration::from_secs(60),
            max_connections: 512,
            max_connections_per_client: 64,
            max_limit: 100_000,
            access: AccessConfig::default(),
            mcp: McpLimits::default(),
            large_answers_at_once: 2,
            scrapes_at_once: 4,
            map_refresh: Duration::from_secs(1),
        }
    }
}

/// Reads the live capture's per-queue counters at scrape time.
pub type QueueStatsFn = Arc<dyn Fn() -> Vec<QueueStats> + Send + Sync>;

/// What every request handler can reach.
pub struct AppState {
    pub views: SharedView,
    pub stats: Arc<ServiceStats>,
    /// Ready once capture runs (live) or the files are read; else why not.
    pub readiness: Arc<ReadinessCell>,
    pub queues: Option<QueueStatsFn>,
    pub version: &'static str,
    pub commit: &'static str,
    pub mcp: Mcp,
    /// Large answers' turns ([`ServerConfig::large_answers_at_once`]).
    pub large_answers: Turns,
    /// `/metrics` answers' turns ([`ServerConfig::scrapes_at_once`]).
    pub scrapes: Turns,
    /// The feed's encoding, one at a time (the pulls after it share its
    /// bytes): apart from large answers, so that clients asking for many
    /// of those cannot keep a hub's pulls waiting past its agent timeout.
    pub feeds: Turns,
    /// Request bodies' bytes held at once
    /// ([`ServerConfig::max_body_bytes_held`]).
    pub bodies: Bodies,
    /// Set where the data is pulled on demand (the hub): requests for it
    /// are told to the puller, and wait for it when it is paused.
    pub demand: Option<Arc<crate::demand::Demand>>,
}

/// Flows (or workloads) beyond which an answer counts as large.
pub const LARGE_ANSWER: usize = 1000;

impl AppState {
    pub fn new(views: SharedView, stats: Arc<ServiceStats>, config: &ServerConfig) -> AppState {
        AppState {
            views,
            mcp: Mcp::new(stats.clone(), env!("CARGO_PKG_VERSION"), config.mcp),
            large_answers: Turns::new(
                config.large_answers_at_once,
                stats.large_answer_turns.clone(),
            ),
            scrapes: Turns::new(config.scrapes_at_once, stats.scrape_turns.clone()),
            feeds: Turns::new(1, stats.feed_turns.clone()),
            bodies: Bodies::new(
                config.max_body_bytes_held,
                config.max_body_bytes,
                stats.clone(),
            ),
            stats,
            readiness: Arc::default(),
            queues: None,
            version: env!("CARGO_PKG_VERSION"),
            commit: "unknown",
            demand: None,
        }
    }
}

/// Serves `kind`'s paths on `listener` until `shutdown` completes.
/// How often failures to accept a connection are said in the log.
const ACCEPT_FAILURES_SAID_EVERY: Duration = Duration::from_secs(10);

pub async fn serve(
    listener: TcpListener,
    kind: Listener,
    state: Arc<AppState>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let config = Arc::new(config);
    let conns = Conns::new(
        config.max_connections,
        config.max_connections_per_client,
        state.stats.clone(),
    );
    // Accept failures said at most once every ACCEPT_FAILURES_SAID_EVERY,
    // with how many there were: out of descriptors, the loop below fails
    // twenty times a second for as long as that lasts.
    let mut failures_unsaid = 0u64;
    // Refused connections that wait for their requests, so that their
    // clients read the 503 ([`refuse`]): a few, so that refusals cannot
    // hold sockets past the bound either.
    let refusals = Arc::new(tokio::sync::Semaphore::new(REFUSALS_WAITING));
    let mut failures_said = AtMostEvery::new(ACCEPT_FAILURES_SAID_EVERY);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    failures_unsaid += 1;
                    if failures_said.due() {
                        tracing::warn!(
                            error = %e,
                            failures = failures_unsaid,
                            "accept failed (said at most once every 10 s, with the failures since)"
                        );
                        failures_unsaid = 0;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let Some(admitted) = conns.admit(peer.ip()) else {
            tokio::spawn(refuse(stream, refusals.clone().try_acquire_owned().ok()));
            continue;
        };
        // Answers are written whole, often in several segments: with
        // Nagle's algorithm the last waited for the client's delayed ACK
        // (40 ms on Linux) on every answer of more than one segment.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        // The address the client reached: a Host header naming it is the
        // client's own choice, not a rebinding page's.
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        // An IPv4 client of a listener of `[::]` is seen as an IPv4 address
        // (not `::ffff:198.18.0.5`) in per-client limits and the logs (the
        // Host check compares canonical forms itself).
        let peer = std::net::SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let state = state.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let stats = state.stats.clone();
            let conn_state = admitted.state.clone();
            let limits = config.clone();
            let service = service_fn(move |req| {
                let request = routes::Request {
                    kind,
                    local,
                    conn: conn_state.clone(),
                };
                routes::handle(req, state.clone(), limits.clone(), request)
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(config.header_read_timeout)
                .max_buf_size(config.max_head_bytes.max(8192))
                .max_headers(config.max_headers);
            let io = TokioIo::new(Watched::new(stream, admitted.state.clone()));
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            let overdue = async {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    if admitted.state.overdue(config.response_timeout) {
                        return;
                    }
                }
            };
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = admitted.state.close.notified() => {
                    // Made room for a newer connection: closed at once,
                    // so that open sockets stay within the bound. A
                    // stalled one (its client reads nothing) finishes
                    // nothing; an idle one has nothing in flight (a
                    // request come in meanwhile is its client's to send
                    // again, as clients do on a closed keep-alive
                    // connection). Shut down gracefully, for up to a
                    // second, a flood of slowly sent heads held five times
                    // --http-max-connections sockets open.
                    Ok(())
                }
                () = overdue => {
                    stats.http_responses_overdue.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            };
            if let Err(e) = result {
                // A head hyper refused was answered by hyper itself and
                // never reached a handler: counted here, as answered.
                if let Some(status) = refused_head_status(&e) {
                    stats.count_request(Route::Unknown, status);
                } else if e.is_timeout() {
                    stats.http_header_timeouts.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(admitted);
        });
    }
}

/// The status hyper answered a request head it could not take with: 414
/// for a request line too long, 431 for a head too large, 400 for one
/// that does not parse (bytes a URI may not hold, a malformed header).
fn refused_head_status(e: &hyper::Error) -> Option<u16> {
    if e.is_parse_too_large() {
        // hyper tells the two apart only in its description.
        Some(if e.to_string().contains("URI too long") {
            414
        } else {
            431
        })
    } else if e.is_parse() {
        Some(400)
    } else {
        None
    }
}

/// Refused connections that wait for their requests at once, at most.
const REFUSALS_WAITING: usize = 64;

/// Answers a connection that cannot be admitted (every open one is busy).
/// Its request is read first, as much as has come (and for 200 ms more
/// while it holds one of the few `turn`s): a request left unread at close
/// makes the kernel reset the connection, and the client see a reset in
/// place of the 503.
async fn refuse(mut stream: TcpStream, turn: Option<tokio::sync::OwnedSemaphorePermit>) {
    let body = r#"{"error":"too many connections; try again"}"#;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply.as_bytes())).await;
    let _ = stream.shutdown().await;
    let drain = async {
        let (mut unread, mut read) = ([0u8; 4096], 0);
        while read < 64 << 10 {
            match stream.read(&mut unread).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    };
    // Without a turn, what has come only: a timeout polls its future once
    // before it looks at the clock.
    let waits = turn
        .as_ref()
        .map_or(Duration::ZERO, |_| Duration::from_millis(200));
    let _ = tokio::time::timeout(waits, drain).await;
    drop(turn);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

    /// One request on a fresh connection; the status line's code.
    fn get(addr: std::net::SocketAddr, path: &str) -> u16 {
        fetch(addr, path).0
    }

    /// One request on a fresh connection; the status line's code and the
    /// whole reply.
    fn fetch(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        // Bytes (a feed is binary), its head read as text.
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        let reply = String::from_utf8_lossy(&bytes).into_owned();
        let status = reply
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {reply:?}"));
        (status, reply)
    }

    /// An admin listener over an empty publisher, on a thread of its own:
    /// its address, its statistics and its state.
    fn admin_server() -> (std::net::SocketAddr, Arc<ServiceStats>, Arc<AppState>) {
        server(Listener::Admin, ServerConfig::default())
    }

    /// A `kind` listener over an empty publisher, on a thread of its own.
    fn server(
        kind: Listener,
        config: ServerConfig,
    ) -> (std::net::SocketAddr, Arc<ServiceStats>, Arc<AppState>) {
        let publisher =
            crate::publish::Publisher::new(None, Default::default(), Default::default());
        let stats = publisher.stats();
        let state = Arc::new(AppState::new(publisher.views(), stats.clone(), &config));
        let serving = state.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                serve(listener, kind, serving, config, std::future::pending()).await;
            });
        });
        (addr, stats, state)
    }

    /// A data listener of 4 connections at most, all of which one client
    /// may hold.
    fn four_connections_server() -> (std::net::SocketAddr, Arc<ServiceStats>, Arc<AppState>) {
        server(
            Listener::Data,
            ServerConfig {
                max_connections: 4,
                max_connections_per_client: 4,
                ..ServerConfig::default()
            },
        )
    }

    /// `n` connections to `addr`, each having sent `begun` (a request not
    /// finished).
    fn begun(addr: std::net::SocketAddr, n: usize, begun: &[u8]) -> Vec<std::net::TcpStream> {
        (0..n)
            .map(|_| {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.write_all(begun).unwrap();
                c
            })
            .collect()
    }

    /// Waits until `holds` (10 s at most).
    fn until(holds: impl Fn() -> bool) {
        let started = Instant::now();
        while !holds() {
            assert!(started.elapsed() < Duration::from_secs(10), "never held");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Connections closed to make room close at once: sockets held open stay
    /// within the bound whatever the rate of new connections dribbling
    /// their heads.
    #[test]
    fn connections_made_room_for_let_their_sockets_go_at_once() {
        // The process's descriptors: the test's alone under nextest, which
        // runs each test in a process of its own (as the test command does).
        let open_fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        let (addr, stats, _) = four_connections_server();
        // Serving (its runtime's descriptors open) before counting.
        assert_eq!(get(addr, "/nowhere"), 404);
        let before = open_fds();
        let clients = begun(addr, 40, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        until(|| stats.http_connections_closed_idle.load(Ordering::Relaxed) >= 36);
        // The server's sockets: 4 open, and none of the 36 closed to make
        // room (they lingered a second each).
        let settled = Instant::now();
        loop {
            let server_side = open_fds().saturating_sub(before + clients.len());
            if server_side <= 4 {
                break;
            }
            assert!(
                settled.elapsed() < Duration::from_millis(500),
                "{server_side} server sockets for 4 connections"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Connections whose request bodies come in a byte at a time give way
    /// to a newcomer once they have taken 2 s (they were busy, never
    /// stalled, and kept every other client out for the body timeout); a
    /// newcomer refused before then reads its 503.
    #[test]
    fn bodies_sent_a_byte_at_a_time_give_way() {
        let (addr, stats, _) = four_connections_server();
        let _slow = begun(
            addr,
            4,
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Accept: application/json\r\nContent-Length: 100\r\n\r\n{",
        );
        // All four reading their bodies (100 bytes held each): busy.
        until(|| stats.request_body_bytes_held.load(Ordering::Relaxed) == 400);
        // Before then, every connection busy: refused, with a 503 the
        // client reads (it read a reset: its request was left unread).
        let (status, reply) = fetch(addr, "/mcp/flows?limit=1");
        assert_eq!(status, 503, "{reply}");
        assert!(reply.contains("too many connections"), "{reply}");
        std::thread::sleep(conns::STALLED + Duration::from_millis(300));
        assert_eq!(get(addr, "/mcp/flows?limit=1"), 200);
        assert_eq!(
            stats
                .http_connections_closed_stalled
                .load(Ordering::Relaxed),
            1
        );
    }

    /// A scrape that waits for the per-pair counters (locked while the
    /// publisher follows a snapshot) does not hold up the probes on the
    /// admin listener's single thread.
    #[test]
    fn probes_answer_while_a_scrape_waits_for_the_pair_counters() {
        let (addr, stats, _) = admin_server();
        let pairs = stats.pairs.lock().unwrap();
        let scrape = std::thread::spawn(move || get(addr, "/metrics"));
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !scrape.is_finished(),
            "the scrape did not wait for the counters"
        );
        let started = Instant::now();
        assert_eq!(get(addr, "/healthz"), 200);
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(pairs);
        assert_eq!(scrape.join().unwrap(), 200);
    }

    /// Waits (bounded) until every turn of `turns` is free again: a turn
    /// is given back as its body is done, which may be just after its
    /// client read the last byte.
    fn all_given_back(turns: &Turns, at_once: usize) {
        let given_back = Instant::now();
        while turns.free() < at_once {
            assert!(given_back.elapsed() < Duration::from_secs(5), "turns kept");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Scrapes take turns: with every render waiting (the per-pair
    /// counters locked), no more than `scrapes_at_once` have started one,
    /// the rest wait holding nothing (counted as waiting), and all are
    /// answered once the renders can go on.
    #[test]
    fn scrapes_take_turns() {
        let at_once = ServerConfig::default().scrapes_at_once;
        let (addr, stats, state) = admin_server();
        // A client that read a scrape may take every turn (one not seen
        // yet, all but one).
        assert_eq!(get(addr, "/metrics"), 200);
        all_given_back(&state.scrapes, at_once);
        let pairs = stats.pairs.lock().unwrap();
        let scrapes: Vec<_> = (0..at_once + 3)
            .map(|_| std::thread::spawn(move || get(addr, "/metrics")))
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(state.scrapes.free(), 0, "every turn taken");
        assert_eq!(stats.scrape_turns.waiting.load(Ordering::Relaxed), 3);
        assert!(scrapes.iter().all(|s| !s.is_finished()));
        drop(pairs);
        for scrape in scrapes {
            assert_eq!(scrape.join().unwrap(), 200);
        }
        all_given_back(&state.scrapes, at_once);
        assert_eq!(stats.scrape_turns.waiting.load(Ordering::Relaxed), 0);
    }

    /// Large answers take turns (`--http-max-large-answers`): with the one
    /// turn taken, a flows answer and a workloads answer over 1,000 entries
    /// each wait for it, counted in `flowtap_http_turns_waiting`, while a
    /// small answer (a small limit, or a large one over few flows) and a
    /// hub's pull of the feed are served at once; both are answered once
    /// the turn is given back.
    #[test]
    fn large_answers_take_turns() {
        let config = ServerConfig {
            large_answers_at_once: 1,
            ..ServerConfig::default()
        };
        let (addr, stats, state) = server(Listener::Data, config);
        assert_eq!(get(addr, "/mcp/flows?limit=2000"), 200, "over no flows");
        let flows: Vec<_> = (0..2_000u16)
            .map(|port| {
                pipeline::flow::FlowRecord::new(pipeline::flow::FlowKey {
                    proto: pipeline::packet::L4Proto::Tcp,
                    client: pipeline::packet::Addr::from_v4([198, 18, 0, 1]),
                    server: pipeline::packet::Addr::from_v4([198, 18, 0, 2]),
                    server_port: port,
                })
            })
            .collect();
        let snapshot = pipeline::Snapshot {
            flows: flows.into(),
            ..pipeline::Snapshot::default()
        };
        state.views.store(Arc::new(crate::view::View::build(
            Arc::new(snapshot),
            None,
            Arc::default(),
        )));
        let metrics =
            || crate::metrics::exposition::render_for_test(&pipeline::Snapshot::default(), &stats);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let held = runtime.block_on(state.large_answers.take(&Arc::default()));
        let large: Vec<_> = ["/mcp/flows?limit=2000", "/mcp/workloads?limit=2000"]
            .into_iter()
            .map(|path| std::thread::spawn(move || fetch(addr, path)))
            .collect();
        let waiting = || stats.large_answer_turns.waiting.load(Ordering::Relaxed);
        let started = Instant::now();
        while waiting() < 2 {
            assert!(started.elapsed() < Duration::from_secs(5), "not waiting");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(get(addr, "/mcp/flows?limit=10"), 200, "a small answer");
        // Clients asking for large answers kept a hub's pulls waiting past
        // its agent timeout.
        assert_eq!(get(addr, crate::feed::PATH), 200, "the feed");
        assert!(large.iter().all(|a| !a.is_finished()));
        let text = metrics();
        for line in [
            "flowtap_http_turns{answers=\"large\"} 1.0",
            "flowtap_http_turns{answers=\"metrics\"} 4.0",
            "flowtap_http_turns_waiting{answers=\"large\"} 2.0",
            "flowtap_http_turns_waiting{answers=\"metrics\"} 0.0",
            "flowtap_http_turns{answers=\"feed\"} 1.0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in {text}");
        }
        drop(held);
        for answer in large {
            let (status, reply) = answer.join().unwrap();
            assert_eq!(status, 200, "{reply}");
        }
        assert_eq!(waiting(), 0);
        all_given_back(&state.large_answers, 1);
    }
}
