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

mod body;
mod conns;
mod routes;

pub use routes::Route;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
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
    /// Every response must be written out within this time of its
    /// request's arrival, or its connection is closed.
    pub response_timeout: Duration,
    /// Connections open at once (idle ones give way to new ones).
    pub max_connections: usize,
    /// The largest `limit` a `/mcp/flows` query may ask for.
    pub max_limit: usize,
    /// Who may read what.
    pub access: AccessConfig,
    /// MCP's bounds: batch length, reply size, sessions.
    pub mcp: McpLimits,
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
            response_timeout: Duration::from_secs(60),
            max_connections: 512,
            max_limit: 100_000,
            access: AccessConfig::default(),
            mcp: McpLimits::default(),
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
    /// Set once capture runs (live) or the files are read.
    pub ready: Arc<AtomicBool>,
    pub queues: Option<QueueStatsFn>,
    pub version: &'static str,
    pub commit: &'static str,
    pub mcp: Mcp,
    /// Large answers rendered at once, at most: they may wait on slow
    /// clients, and must leave threads for everyone else.
    pub large_answers: Arc<tokio::sync::Semaphore>,
    /// `/metrics` answers rendered or being sent at once, at most.
    pub scrapes: Arc<tokio::sync::Semaphore>,
    /// Set where the data is pulled on demand (the hub): requests for it
    /// are told to the puller, and wait for it when it is paused.
    pub demand: Option<Arc<crate::demand::Demand>>,
}

/// Large answers (over [`LARGE_ANSWER`] flows or workloads) rendered or
/// being sent at once.
pub const LARGE_ANSWERS_AT_ONCE: usize = 2;
/// Flows (or workloads) beyond which an answer counts as large.
pub const LARGE_ANSWER: usize = 1000;
/// `/metrics` answers rendered or being sent at once: a Prometheus pair
/// and a person or two.
pub const SCRAPES_AT_ONCE: usize = 4;

impl AppState {
    pub fn new(views: SharedView, stats: Arc<ServiceStats>, mcp: McpLimits) -> AppState {
        AppState {
            views,
            mcp: Mcp::new(stats.clone(), env!("CARGO_PKG_VERSION"), mcp),
            stats,
            ready: Arc::new(AtomicBool::new(false)),
            queues: None,
            version: env!("CARGO_PKG_VERSION"),
            commit: "unknown",
            large_answers: Arc::new(tokio::sync::Semaphore::new(LARGE_ANSWERS_AT_ONCE)),
            scrapes: Arc::new(tokio::sync::Semaphore::new(SCRAPES_AT_ONCE)),
            demand: None,
        }
    }
}

/// Serves `kind`'s paths on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    kind: Listener,
    state: Arc<AppState>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let config = Arc::new(config);
    let conns = Conns::new(config.max_connections, state.stats.clone());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let Some(admitted) = conns.admit() else {
            tokio::spawn(refuse(stream));
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
                    peer,
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
                    // Made room for a newer connection: finish what is in
                    // flight (briefly), then close.
                    conn.as_mut().graceful_shutdown();
                    tokio::time::timeout(Duration::from_secs(1), conn).await.unwrap_or(Ok(()))
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

/// Answers a connection that cannot be admitted (every open one is busy).
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"error":"too many connections; try again"}"#;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply.as_bytes())).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// One request on a fresh connection; the status line's code.
    fn get(addr: std::net::SocketAddr, path: &str) -> u16 {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {reply:?}"))
    }

    /// An admin listener over an empty publisher, on a thread of its own:
    /// its address, its statistics and its state.
    fn admin_server() -> (std::net::SocketAddr, Arc<ServiceStats>, Arc<AppState>) {
        let publisher =
            crate::publish::Publisher::new(None, Default::default(), Default::default());
        let stats = publisher.stats();
        let state = Arc::new(AppState::new(
            publisher.views(),
            stats.clone(),
            McpLimits::default(),
        ));
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
                serve(
                    listener,
                    Listener::Admin,
                    serving,
                    ServerConfig::default(),
                    std::future::pending(),
                )
                .await;
            });
        });
        (addr, stats, state)
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
        let started = std::time::Instant::now();
        assert_eq!(get(addr, "/healthz"), 200);
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(pairs);
        assert_eq!(scrape.join().unwrap(), 200);
    }

    /// Scrapes take turns: with every render waiting (the per-pair
    /// counters locked), no more than [`SCRAPES_AT_ONCE`] have started
    /// one, the rest wait holding nothing, and all are answered once the
    /// renders can go on.
    #[test]
    fn scrapes_take_turns() {
        let (addr, stats, state) = admin_server();
        let turns = state.scrapes.clone();
        let pairs = stats.pairs.lock().unwrap();
        let scrapes: Vec<_> = (0..SCRAPES_AT_ONCE + 3)
            .map(|_| std::thread::spawn(move || get(addr, "/metrics")))
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(turns.available_permits(), 0, "every turn taken");
        assert!(scrapes.iter().all(|s| !s.is_finished()));
        drop(pairs);
        for scrape in scrapes {
            assert_eq!(scrape.join().unwrap(), 200);
        }
        // Given back as each body is done, which may be just after its
        // client read the last byte.
        let given_back = std::time::Instant::now();
        while turns.available_permits() < SCRAPES_AT_ONCE {
            assert!(given_back.elapsed() < Duration::from_secs(5), "turns kept");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
