//! The HTTP server: hyper 1.x over HTTP/1.1 on a tokio runtime of its own,
//! never on the capture cores. Requests read the published view and never
//! wait for the pipeline.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::access::{AccessConfig, Denied};
use crate::api::{self, ApiResponse, query::ApiError};
use crate::mcp::{self, jsonrpc, streamable::Mcp, streamable::Reply};
use crate::metrics::{self, QueueSample, ServiceStats};
use crate::publish::SharedView;

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
    /// Who may read what.
    pub access: AccessConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            header_read_timeout: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
            access: AccessConfig::default(),
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
    pub mcp: Mcp,
}

impl AppState {
    pub fn new(views: SharedView, stats: Arc<ServiceStats>) -> AppState {
        AppState {
            views,
            mcp: Mcp::new(stats.clone(), env!("CARGO_PKG_VERSION")),
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
    let config = Arc::new(config);
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
            let limits = config.clone();
            let service = service_fn(move |req| handle(req, state.clone(), limits.clone(), peer));
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
    config: Arc<ServerConfig>,
    _peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let resp = route(req, &state, &config, &path).await;
    state.stats.count_request(&path, resp.status().as_u16());
    Ok(resp)
}

async fn route(
    req: Request<Incoming>,
    state: &Arc<AppState>,
    config: &ServerConfig,
    path: &str,
) -> Response<Full<Bytes>> {
    if let Err(denied) = config.access.check(path, req.headers()) {
        return refused(path, &denied);
    }
    if path == mcp::PATH {
        return mcp_route(req, state, config).await;
    }
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

/// 401 or 403: on `/mcp` as a JSON-RPC error, elsewhere as the REST error.
fn refused(path: &str, denied: &Denied) -> Response<Full<Bytes>> {
    let mut resp = if path == mcp::PATH {
        mcp_response(Reply::refusal(
            denied.status(),
            jsonrpc::INVALID_REQUEST,
            denied.message(),
        ))
    } else {
        response(ApiResponse::error(&ApiError {
            status: denied.status(),
            message: denied.message(),
            parameter: None,
        }))
    };
    if *denied == Denied::Unauthorized {
        resp.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"flowtap\""),
        );
    }
    resp
}

async fn mcp_route(
    req: Request<Incoming>,
    state: &Arc<AppState>,
    config: &ServerConfig,
) -> Response<Full<Bytes>> {
    match *req.method() {
        Method::POST => {
            let (parts, body) = req.into_parts();
            let limited = http_body_util::Limited::new(body, config.max_body_bytes);
            let body = match tokio::time::timeout(config.header_read_timeout, limited.collect())
                .await
            {
                Ok(Ok(collected)) => collected.to_bytes(),
                Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                    let message = format!("request body over {} bytes", config.max_body_bytes);
                    return mcp_response(Reply::refusal(413, jsonrpc::INVALID_REQUEST, message));
                }
                Ok(Err(e)) => {
                    return mcp_response(Reply::refusal(
                        400,
                        jsonrpc::INVALID_REQUEST,
                        format!("reading the body: {e}"),
                    ));
                }
                Err(_) => {
                    return mcp_response(Reply::refusal(
                        408,
                        jsonrpc::INVALID_REQUEST,
                        "the request body took too long",
                    ));
                }
            };
            let state = state.clone();
            // Tool calls filter and render snapshots: CPU work, off the I/O threads.
            let reply = tokio::task::spawn_blocking(move || {
                let view = state.views.load_full();
                state.mcp.post(&parts.headers, &body, &view)
            })
            .await
            .unwrap_or_else(|e| {
                Reply::refusal(500, jsonrpc::INTERNAL_ERROR, format!("internal error: {e}"))
            });
            mcp_response(reply)
        }
        Method::DELETE => mcp_response(state.mcp.delete(req.headers())),
        _ => mcp_response(state.mcp.not_allowed()),
    }
}

fn mcp_response(reply: Reply) -> Response<Full<Bytes>> {
    let body = reply
        .body
        .as_ref()
        .map(|b| b.to_string())
        .unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    if reply.body.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(id) = reply
        .session_id
        .and_then(|id| HeaderValue::from_str(&id).ok())
    {
        headers.insert(mcp::headers::SESSION_ID, id);
    }
    if let Some(allow) = reply.allow {
        headers.insert(ALLOW, HeaderValue::from_static(allow));
    }
    resp
}
