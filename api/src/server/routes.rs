//! What each path answers: health, metrics, the REST flow endpoints
//! (chunked), and MCP. Access rules are checked first, for every path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ALLOW, CONTENT_TYPE, HOST, HeaderMap,
    HeaderValue, ORIGIN, RETRY_AFTER, VARY,
};
use hyper::{Method, Request as HttpRequest, Response, StatusCode};

use super::bodies::NoRoom;
use super::body::{ResponseBody, chunked, full, full_holding, tracked};
use super::conns::ConnState;
use super::turns::Turn;
use super::{AppState, LARGE_ANSWER, Listener, Readiness, ServerConfig};
use crate::access::Denied;
use crate::mcp::{self, jsonrpc, streamable::Reply};
use crate::metrics;
use crate::rest::{self, ApiResponse, query::ApiError};

/// Every path flowtap answers, the one list that routing, access rules and
/// the request metrics read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    /// The service map page (`crate::service_map`).
    Map,
    Flows,
    Summary,
    Workloads,
    /// The feed a hub pulls (`crate::feed`).
    Feed,
    Mcp,
    Metrics,
    Healthz,
    Readyz,
    /// Any other path (404).
    Unknown,
}

impl Route {
    pub const ALL: [Route; 10] = [
        Route::Map,
        Route::Flows,
        Route::Summary,
        Route::Workloads,
        Route::Feed,
        Route::Mcp,
        Route::Metrics,
        Route::Healthz,
        Route::Readyz,
        Route::Unknown,
    ];

    pub fn of(path: &str) -> Route {
        Route::ALL
            .into_iter()
            .find(|r| r.path() == Some(path))
            .unwrap_or(Route::Unknown)
    }

    pub fn path(self) -> Option<&'static str> {
        Some(match self {
            Route::Map => crate::service_map::PATH,
            Route::Flows => rest::FLOWS_PATH,
            Route::Summary => rest::SUMMARY_PATH,
            Route::Workloads => rest::workloads::PATH,
            Route::Feed => crate::feed::PATH,
            Route::Mcp => mcp::PATH,
            Route::Metrics => "/metrics",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Unknown => return None,
        })
    }

    /// How requests are labelled in `/metrics` (a scanner's paths are all
    /// "other", so it cannot grow the label set).
    pub fn label(self) -> &'static str {
        self.path().unwrap_or("other")
    }

    /// Health and metrics carry no flow (the per-pair counters name
    /// workloads, not addresses): probes and scrapers reach them without a
    /// token. Nor does the service map's page: a browser opening
    /// it cannot send a header, and the page brings the token to every
    /// request for data it makes.
    pub fn carries_flow_data(self) -> bool {
        self.listener() == Listener::Data && self != Route::Map
    }

    /// The listener that serves this path.
    pub fn listener(self) -> Listener {
        match self {
            Route::Metrics | Route::Healthz | Route::Readyz => Listener::Admin,
            Route::Map
            | Route::Flows
            | Route::Summary
            | Route::Workloads
            | Route::Feed
            | Route::Mcp
            | Route::Unknown => Listener::Data,
        }
    }
}

/// Where a request came in.
pub(super) struct Request {
    pub kind: Listener,
    /// The address the client connected to.
    pub local: SocketAddr,
    /// Its connection, and whom it is from.
    pub conn: Arc<ConnState>,
}

pub(super) async fn handle(
    req: HttpRequest<Incoming>,
    state: Arc<AppState>,
    config: Arc<ServerConfig>,
    request: Request,
) -> Result<Response<ResponseBody>, Infallible> {
    request.conn.response_started();
    let path = req.uri().path().to_owned();
    let route = Route::of(&path);
    let resp = route_request(req, &state, &config, route, &path, &request).await;
    state.stats.count_request(route, resp.status().as_u16());
    Ok(resp.map(|body| tracked(body, request.conn.clone())))
}

/// A request names the host it is for once, as RFC 9112 (3.2) requires an
/// HTTP/1.1 request to (HTTP/1.0 may leave it out), in a form an authority
/// takes (no user, a numeric port), and the same as its target when that
/// is in absolute form: the Host check ([`crate::access`]) vets that one
/// name, which no second header or target can contradict.
fn one_host(req: &HttpRequest<Incoming>) -> Result<(), String> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let (host, more) = (hosts.next(), hosts.next());
    let host = match (host, more) {
        (_, Some(_)) => return Err("Host given more than once".into()),
        (None, None) if req.version() == hyper::Version::HTTP_10 => return Ok(()),
        (None, None) => return Err("an HTTP/1.1 request must name its host (Host)".into()),
        (Some(host), None) => host,
    };
    let host = host
        .to_str()
        .ok()
        .filter(|h| !h.contains('@'))
        .and_then(|h| h.parse::<hyper::http::uri::Authority>().ok())
        .ok_or_else(|| format!("Host {host:?} is not a host and port"))?;
    match req.uri().authority() {
        Some(target) if !target.as_str().eq_ignore_ascii_case(host.as_str()) => Err(format!(
            "the request's target names {target}, its Host {host}"
        )),
        _ => Ok(()),
    }
}

fn response(api: ApiResponse) -> Response<ResponseBody> {
    let mut resp = Response::new(full(api.body));
    *resp.status_mut() =
        StatusCode::from_u16(api.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The service map's page. Its script and style are inline and it may
/// fetch only from flowtap itself: the policy says so to the browser.
fn map_page(refresh: std::time::Duration) -> Response<ResponseBody> {
    let mut resp = Response::new(full(crate::service_map::html(refresh)));
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::service_map::CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        hyper::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

fn json_status(status: u16, text: &str) -> ApiResponse {
    ApiResponse {
        status,
        body: format!("{{\"status\":\"{text}\"}}").into_bytes(),
    }
}

async fn route_request(
    req: HttpRequest<Incoming>,
    state: &Arc<AppState>,
    config: &ServerConfig,
    route: Route,
    path: &str,
    request: &Request,
) -> Response<ResponseBody> {
    if let Err(message) = one_host(&req) {
        return response(ApiResponse::error(&ApiError {
            status: 400,
            message,
            parameter: None,
        }));
    }
    // A browser client's preflight for /mcp: answered for the origins
    // flowtap allows (loopback ones, --allowed-origin), without a token.
    if route == Route::Mcp && req.method() == Method::OPTIONS {
        return match config
            .access
            .check_origin_and_host(req.headers(), request.local.ip())
        {
            Ok(()) => mcp_preflight(req.headers()),
            Err(denied) => refused(route, &denied),
        };
    }
    if let Err(denied) = config
        .access
        .check(route, req.headers(), request.local.ip())
    {
        let mut resp = refused(route, &denied);
        // An allowed origin without the token: a browser client (the MCP
        // Inspector, say) reads the 401 rather than a CORS failure.
        if route == Route::Mcp && denied == Denied::Unauthorized {
            allow_origin(resp.headers_mut(), req.headers().get(ORIGIN).cloned());
        }
        return resp;
    }
    if route != Route::Unknown && route.listener() != request.kind {
        let (listener, option) = match route.listener() {
            Listener::Admin => ("admin", "--admin-listen"),
            Listener::Data => ("data", "--listen"),
        };
        return response(ApiResponse::error(&ApiError {
            status: 404,
            message: format!("{path} is served on the {listener} listener ({option})"),
            parameter: None,
        }));
    }
    // What asks for data: not the probes, nor a path that answers 404,
    // nor the feed, which a hub does not serve (a hub pulling a hub must
    // neither keep it awake nor wait for its round to be told so).
    if let Some(demand) = &state.demand
        && route != Route::Unknown
        && route != Route::Feed
        && (route.carries_flow_data() || route == Route::Metrics)
    {
        demand.asked().await;
    }
    if route == Route::Mcp {
        // Allowed (checked above): a browser client may read the answer
        // and its session id.
        let origin = req.headers().get(ORIGIN).cloned();
        let mut resp = mcp_route(req, state, config, request).await;
        allow_origin(resp.headers_mut(), origin);
        return resp;
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    // HEAD where it costs nothing: the page and the probes, which uptime
    // checkers ask with HEAD (they read 405 as down). hyper sends a HEAD's
    // answer without its body.
    let head_allowed = matches!(route, Route::Map | Route::Healthz | Route::Readyz);
    let allowed = req.method() == Method::GET || (head_allowed && req.method() == Method::HEAD);
    // A path served nowhere is 404 whatever the method (`mcp-stdio --url
    // http://h/prefix` POSTs to /prefix/mcp, and was told to use GET).
    if !allowed && route != Route::Unknown {
        let allow = if head_allowed { "GET, HEAD" } else { "GET" };
        let mut resp = response(ApiResponse::error(&ApiError {
            status: 405,
            message: format!(
                "method {} not allowed on {path}; use {}",
                req.method(),
                allow.replace(", ", " or ")
            ),
            parameter: None,
        }));
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        return resp;
    }
    // The paths that take no parameter refuse one, as the others refuse
    // one they do not know.
    if matches!(
        route,
        Route::Map | Route::Healthz | Route::Readyz | Route::Metrics | Route::Feed
    ) {
        match rest::query::query_pairs(&query) {
            Err(e) => return response(ApiResponse::error(&e)),
            Ok(pairs) => {
                if let Some((name, _)) = pairs.first() {
                    return response(ApiResponse::error(&ApiError::bad_parameter(
                        name,
                        format!("unknown parameter {name:?}: {path} takes none"),
                    )));
                }
            }
        }
    }
    match route {
        Route::Map => map_page(config.map_refresh),
        Route::Healthz => response(json_status(200, "ok")),
        Route::Readyz => {
            let readiness = state.readiness.get();
            let status = if readiness == Readiness::Ready {
                200
            } else {
                503
            };
            response(json_status(status, readiness.says()))
        }
        Route::Metrics => {
            let format = metrics::Exposition::negotiate(
                req.headers()
                    .get(hyper::header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
            );
            // A scrape's text is megabytes (thousands of per-pair series):
            // a few at once, each holding its turn until its client has
            // read it, so that clients that do not read cannot pile them
            // up; the others wait here, holding nothing.
            let turn = state.scrapes.take(&request.conn).await;
            // Off the admin listener's own (single-threaded) runtime: the
            // per-pair counters are locked while the publisher follows a
            // snapshot's flows for them (about a second at a hub's 1.5M
            // flows), and /healthz must not wait behind that.
            let state = state.clone();
            let rendered = tokio::task::spawn_blocking(move || {
                // Waited for before the view is taken: a view held across
                // the publisher's swap is kept alive (a hub's 1.5M flows,
                // half a GiB) until the scrape lets go.
                drop(state.stats.pairs.lock());
                state.mcp.expire_idle_sessions();
                let view = state.views.load_full();
                let queues = state.queues.as_ref().map(|f| f()).unwrap_or_default();
                metrics::render(
                    &metrics::Sources {
                        snapshot: &view.snapshot,
                        stats: &state.stats,
                        queues: &queues,
                        ready: state.readiness.is_ready(),
                        version: state.version,
                        commit: state.commit,
                    },
                    format,
                )
            })
            .await;
            let text = match rendered {
                Ok(text) => text,
                Err(e) => return internal_error(e),
            };
            let mut resp = Response::new(full_holding(text, turn));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            resp
        }
        Route::Flows | Route::Summary | Route::Workloads | Route::Unknown => {
            flows_route(state, config, path.to_owned(), query, &request.conn).await
        }
        Route::Feed => feed_route(state, &request.conn).await,
        Route::Mcp => unreachable!("answered above"),
    }
}

/// What an MCP request body first takes of the bytes held at once
/// (`--mcp-max-request-bytes-held`); it takes more as it comes in. (Taken
/// at its declared length, or at the largest a body may be when sent in
/// chunks, a few addresses starting bodies and sending nothing held the
/// whole bound, and every other client's MCP requests got 503.)
const BODY_FIRST_SHARE: usize = 4096;

/// Why a request body was not read whole.
enum BodyRead {
    /// It came in past what the bound had room for.
    NoRoom(NoRoom),
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

/// `/mcp/flows` and `/mcp/flows/summary`: checked, then computed on a
/// blocking thread (filtering and aggregating a large snapshot is CPU work,
/// kept off the threads that read connections) into an answer that owns its
/// entries; the view is released before a byte is sent, and the answer is
/// serialised chunk by chunk as the client reads.
async fn flows_route(
    state: &Arc<AppState>,
    config: &ServerConfig,
    path: String,
    query: String,
    conn: &Arc<ConnState>,
) -> Response<ResponseBody> {
    let plan = match rest::plan(&path, &query, config.max_limit) {
        Ok(plan) => plan,
        Err(e) => return response(ApiResponse::error(&e)),
    };
    // Large answers take turns, waiting here (holding neither a thread nor
    // a snapshot); the permit lives as long as the answer's body.
    // Large by what the answer can hold: a limit of 100000 over a few
    // flows took a turn as if it were that large.
    let flows_now = state.views.load().snapshot.flows.len();
    let large = match &plan {
        rest::Plan::Flows(q) => q.limit.min(flows_now) > LARGE_ANSWER,
        rest::Plan::Workloads(q) => q.limit > LARGE_ANSWER,
        rest::Plan::Summary => false,
    };
    let permit = if large {
        Some(state.large_answers.take(conn).await)
    } else {
        None
    };
    let views = state.views.clone();
    let answer = tokio::task::spawn_blocking(move || rest::answer(&views.load_full(), &plan)).await;
    let body = match answer {
        Ok(rest::Answer::Summary(json)) => full(json),
        Ok(rest::Answer::Workloads(w)) => {
            full_holding(serde_json::to_vec(&w).expect("answers serialise"), permit)
        }
        Ok(rest::Answer::Flows(flows)) => chunked(
            flows.into_chunks(CHUNK_BYTES).map(bytes::Bytes::from),
            permit,
        ),
        Err(e) => return internal_error(e),
    };
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The feed a hub pulls: encoded on a blocking thread the first time a view
/// is asked for it (one at a time: [`AppState::feeds`]), then the same bytes.
async fn feed_route(state: &Arc<AppState>, conn: &Arc<ConnState>) -> Response<ResponseBody> {
    // A hub (whose data is pulled on demand) serves none: a hub pulling it
    // (a hub of hubs, or a hub given its own address, as a DNS name that
    // also names the hub can) would read as one agent that answered,
    // hiding the agents missing behind it, or serve its own flows back.
    if state.demand.is_some() {
        return response(ApiResponse::error(&ApiError {
            status: 404,
            message:
                "this is a hub, which serves no feed: give a hub the agents' addresses, not a hub's"
                    .to_owned(),
            parameter: None,
        }));
    }
    let permit = state.feeds.take(conn).await;
    let views = state.views.clone();
    let feed = tokio::task::spawn_blocking(move || {
        let view = views.load_full();
        let bytes = view.feed();
        (
            bytes,
            crate::feed::age_ms(&view, pipeline::time::wall_now_ns()),
        )
    })
    .await;
    drop(permit);
    match feed {
        Ok((bytes, age_ms)) => {
            let mut resp = Response::new(full(bytes));
            let headers = resp.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static(crate::feed::CONTENT_TYPE),
            );
            if let Some(age_ms) = age_ms {
                headers.insert(crate::feed::AGE_HEADER, HeaderValue::from(age_ms));
            }
            resp
        }
        Err(e) => internal_error(e),
    }
}

/// A 500 for work that failed on a blocking thread (it panicked).
fn internal_error(e: tokio::task::JoinError) -> Response<ResponseBody> {
    response(ApiResponse::error(&ApiError {
        status: 500,
        message: format!("internal error: {e}"),
        parameter: None,
    }))
}

/// Bytes of an answer serialised at a time.
const CHUNK_BYTES: usize = 64 * 1024;

/// 401 or 403: on `/mcp` as a JSON-RPC error, elsewhere as the REST error.
fn refused(route: Route, denied: &Denied) -> Response<ResponseBody> {
    let mut resp = if route == Route::Mcp {
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
    req: HttpRequest<Incoming>,
    state: &Arc<AppState>,
    config: &ServerConfig,
    request: &Request,
) -> Response<ResponseBody> {
    // Sessions are bounded per client as connections are: an IPv6 host's
    // /64 is one client (per address, one host filled the session table
    // from as many addresses as it liked).
    let client = request.conn.client.ip();
    match *req.method() {
        Method::POST => {
            let (parts, body) = req.into_parts();
            let too_large = || {
                let message = format!("request body over {} bytes", config.max_body_bytes);
                mcp_response(Reply::refusal(413, jsonrpc::INVALID_REQUEST, message))
            };
            // A length declared past the bound is refused before a byte is
            // read (and before `Expect: 100-continue` is answered).
            // hyper's reading of `Content-Length` (none for a chunked body).
            let declared = hyper::body::Body::size_hint(&body).exact();
            if declared.is_some_and(|n| n > config.max_body_bytes as u64) {
                return too_large();
            }
            let wanted = declared.map_or(config.max_body_bytes, |n| n as usize);
            let no_room = |why: NoRoom| {
                state
                    .stats
                    .request_bodies_refused
                    .fetch_add(1, Ordering::Relaxed);
                let whose = match why {
                    NoRoom::All => "request bodies held at once are at their bound",
                    NoRoom::Client => {
                        "this client's request bodies held at once are at its share of the bound"
                    }
                };
                let mut resp = mcp_response(Reply::refusal(
                    503,
                    jsonrpc::INVALID_REQUEST,
                    format!(
                        "Service Unavailable: {whose} (--mcp-max-request-bytes-held); try again"
                    ),
                ));
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                resp
            };
            let mut share = match state
                .bodies
                .take(request.conn.client, wanted.min(BODY_FIRST_SHARE))
            {
                Ok(share) => share,
                Err(why) => return no_room(why),
            };
            let mut limited = http_body_util::Limited::new(body, config.max_body_bytes);
            let arriving = request.conn.body_arriving();
            let read = async {
                let mut bytes = bytes::BytesMut::new();
                while let Some(frame) = limited.frame().await {
                    let Ok(data) = frame.map_err(BodyRead::Failed)?.into_data() else {
                        continue;
                    };
                    bytes.extend_from_slice(&data);
                    if bytes.len() > share.len() {
                        // Doubling, within the body's declared length (or
                        // the largest a body may be).
                        let to = (share.len() * 2).max(bytes.len()).min(wanted);
                        let more = to.saturating_sub(share.len());
                        state
                            .bodies
                            .grow(&mut share, more)
                            .map_err(BodyRead::NoRoom)?;
                    }
                }
                Ok(bytes.freeze())
            };
            let body = match tokio::time::timeout(config.header_read_timeout, read).await {
                Ok(Ok(body)) => body,
                Ok(Err(BodyRead::NoRoom(why))) => return no_room(why),
                Ok(Err(BodyRead::Failed(e))) if e.is::<http_body_util::LengthLimitError>() => {
                    return too_large();
                }
                Ok(Err(BodyRead::Failed(e))) => {
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
            drop(arriving);
            // Held while the request waits for its turn and is handled: at
            // what the body is.
            share.shrink_to(body.len());
            // Tool calls are large answers like any other: they take turns
            // with the REST ones (the permit lives as long as the reply).
            let permit = if mcp::calls_tools(&body) {
                Some(state.large_answers.take(&request.conn).await)
            } else {
                None
            };
            let state = state.clone();
            // Tool calls filter and render snapshots: CPU work, off the I/O threads.
            let reply = tokio::task::spawn_blocking(move || {
                let view = state.views.load_full();
                state.mcp.post(&parts.headers, &body, &view, client)
            })
            .await
            .unwrap_or_else(|e| {
                Reply::refusal(500, jsonrpc::INTERNAL_ERROR, format!("internal error: {e}"))
            });
            mcp_reply(reply, permit)
        }
        Method::DELETE => mcp_response(state.mcp.delete(req.headers())),
        _ => mcp_response(state.mcp.not_allowed()),
    }
}

/// The answer to an allowed origin's CORS preflight for `/mcp`: the
/// methods and headers the transport uses.
fn mcp_preflight(headers: &HeaderMap) -> Response<ResponseBody> {
    let mut resp = Response::new(full(Vec::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let out = resp.headers_mut();
    allow_origin(out, headers.get(ORIGIN).cloned());
    out.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, DELETE"),
    );
    out.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "authorization, content-type, accept, mcp-session-id, mcp-protocol-version, \
             mcp-method, mcp-name, last-event-id",
        ),
    );
    out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    resp
}

/// What lets a browser on an allowed `origin` (checked before) read an
/// `/mcp` answer and its session id; nothing without an Origin.
fn allow_origin(out: &mut HeaderMap, origin: Option<HeaderValue>) {
    let Some(origin) = origin else {
        return;
    };
    out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    out.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(mcp::headers::SESSION_ID),
    );
    out.insert(VARY, HeaderValue::from_static("origin"));
}

fn mcp_response(reply: Reply) -> Response<ResponseBody> {
    mcp_reply(reply, None)
}

/// An MCP reply; `permit` (a large answer's turn) is held until it is sent.
fn mcp_reply(reply: Reply, permit: Option<Turn>) -> Response<ResponseBody> {
    let has_body = reply.body.is_some();
    let bytes = reply.body.unwrap_or_default();
    let body = match permit {
        Some(permit) => full_holding(bytes, permit),
        None => full(bytes),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    if has_body {
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
