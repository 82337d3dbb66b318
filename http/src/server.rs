//! The HTTP server: hyper 1.x over HTTP/1.1 on a tokio runtime of its own,
//! never on the capture cores. Requests read the published view and never
//! wait for the pipeline.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::api::{self, ApiResponse, query::ApiError};
use crate::metrics::{self, QueueSample, ServiceStats};
use crate::publish::SharedView;

/// Limits that protect the server from its clients.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request head (request line plus headers); beyond it the
    /// request is refused with 431 (or 414 for a request line alone).
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// Time a client gets to send a complete request head.
    pub header_read_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Reads the live capture's per-queue counters at scrape time.
pub type QueueStatsFn = Arc<dyn Fn() -> Vec<QueueSample> + Send + Sync>;

/// What every request handler can reach.
pub struct AppState {
    pub views: SharedView,
    pub stats: Arc<ServiceStats>,
    /// Set once capture runs (live) or the files are read.
    pub ready: Arc<AtomicBool>,
    pub queues: Option<QueueStatsFn>,
    pub version: &'static str,
    pub commit: &'static str,
}

impl AppState {
    pub fn new(views: SharedView, stats: Arc<ServiceStats>) -> AppState {
        AppState {
            views,
            stats,
            ready: Arc::new(AtomicBool::new(false)),
            queues: None,
            version: env!("CARGO_PKG_VERSION"),
            commit: "unknown",
        }
    }
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
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
        let state = state.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, state.clone(), peer));
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(config.header_read_timeout)
                .max_buf_size(config.max_head_bytes.max(8192))
                .max_headers(config.max_headers);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

fn response(api: ApiResponse) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(api.body)));
    *resp.status_mut() =
        StatusCode::from_u16(api.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn json_status(status: u16, text: &str) -> ApiResponse {
    ApiResponse {
        status,
        body: format!("{{\"status\":\"{text}\"}}").into_bytes(),
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<AppState>,
    _peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let resp = route(req, &state, &path).await;
    state.stats.count_request(&path, resp.status().as_u16());
    Ok(resp)
}

async fn route(req: Request<Incoming>, state: &Arc<AppState>, path: &str) -> Response<Full<Bytes>> {
    let query = req.uri().query().unwrap_or("").to_owned();
    if req.method() != Method::GET {
        let mut resp = response(ApiResponse::error(&ApiError {
            status: 405,
            message: format!("method {} not allowed on {path}; use GET", req.method()),
            parameter: None,
        }));
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return resp;
    }
    match path {
        "/healthz" => response(json_status(200, "ok")),
        "/readyz" => {
            if state.ready.load(Ordering::Acquire) {
                response(json_status(200, "ready"))
            } else {
                response(json_status(503, "starting"))
            }
        }
        "/metrics" => {
            let format = metrics::Exposition::negotiate(
                req.headers()
                    .get(hyper::header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
            );
            let state = state.clone();
            let text = tokio::task::spawn_blocking(move || {
                let view = state.views.load_full();
                let queues = state.queues.as_ref().map(|f| f()).unwrap_or_default();
                metrics::render(
                    &metrics::Scrape {
                        view: &view,
                        stats: &state.stats,
                        queues,
                        ready: state.ready.load(Ordering::Acquire),
                        version: state.version,
                        commit: state.commit,
                    },
                    format,
                )
            })
            .await
            .unwrap_or_default();
            let mut resp = Response::new(Full::new(Bytes::from(text)));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            resp
        }
        _ => {
            let view = state.views.load_full();
            let path = path.to_owned();
            // Filtering and rendering a large snapshot is CPU work: keep it
            // off the threads that accept and read connections.
            let api = tokio::task::spawn_blocking(move || api::respond(&view, &path, &query))
                .await
                .unwrap_or_else(|e| {
                    ApiResponse::error(&ApiError {
                        status: 500,
                        message: format!("internal error: {e}"),
                        parameter: None,
                    })
                });
            response(api)
        }
    }
}
