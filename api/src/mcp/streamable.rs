//! The Streamable HTTP transport on `/mcp`. Every answer is one JSON body
//! (never an event stream: flowtap sends no server-initiated messages).
//!
//! A request speaks the stateless revision when its `MCP-Protocol-Version`
//! header names one other than the handshake revisions; without the header,
//! or with a handshake revision, it belongs to a session opened by
//! `initialize`. Handshake-era errors about a request's content are sent
//! with status 200 (older clients fail on any other status); errors of the
//! transport itself (missing or unknown session, bad headers) and every
//! stateless error use the statuses the specification gives.

use std::sync::Arc;

use std::net::IpAddr;

use bytes::Bytes;
use hyper::HeaderMap;
use hyper::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;

use super::McpLimits;
use super::headers;
use super::jsonrpc::{self, INVALID_REQUEST, Message, PARSE_ERROR, REPLY_TOO_LARGE, RpcError};
use super::session::{Full, Lookup, NotResumed, Sessions};
use super::stateless::{self, Mirrors};
use super::version::{HANDSHAKE, Version};
use crate::metrics::ServiceStats;
use crate::view::View;

/// An answer to one HTTP request on `/mcp`.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// `Mcp-Session-Id` to send (the answer to `initialize`).
    pub session_id: Option<String>,
    /// `Allow`, with 405.
    pub allow: Option<&'static str>,
    /// The JSON body; None for 202 and 204.
    pub body: Option<Bytes>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply::bytes(status, body.to_string().into_bytes())
    }

    fn bytes(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            session_id: None,
            allow: None,
            body: Some(body.into()),
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            session_id: None,
            allow: None,
            body: None,
        }
    }

    /// A transport-level refusal: a JSON-RPC error without an id.
    pub fn refusal(status: u16, code: i64, message: impl Into<String>) -> Reply {
        Reply::json(
            status,
            jsonrpc::error(&Value::Null, &RpcError::new(code, message)),
        )
    }
}

/// The MCP endpoint's state: its sessions, bounds and the build it reports.
pub struct Mcp {
    sessions: Sessions,
    limits: McpLimits,
    stats: Arc<ServiceStats>,
    build: &'static str,
}

/// The methods a JSON-RPC request may name, for metrics labels.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
];

impl Mcp {
    pub fn new(stats: Arc<ServiceStats>, build: &'static str, limits: McpLimits) -> Mcp {
        Mcp {
            sessions: Sessions::new(
                stats.clone(),
                limits.max_sessions,
                limits.sessions_per_client,
                limits.session_idle_timeout,
            ),
            limits,
            stats,
            build,
        }
    }

    /// Ends the sessions idle past their timeout (before a scrape reads
    /// how many are open).
    pub fn expire_idle_sessions(&self) {
        self.sessions.expire_idle();
    }

    /// One answer's JSON, or an error in its place when it would not fit
    /// in what is left of the reply budget (`left`, reduced by it); the
    /// request is counted by what it was answered (an answer over the
    /// budget is a tool's error, or a JSON-RPC one: it was counted ok).
    fn within_budget(&self, answer: Answer, left: &mut usize) -> Vec<u8> {
        let Answer {
            mut answer,
            method,
            outcome,
        } = answer;
        let bytes = answer.to_string().into_bytes();
        if bytes.len() <= *left {
            *left -= bytes.len();
            if let Some(method) = method {
                self.count(&method, outcome);
            }
            return bytes;
        }
        self.stats
            .mcp_replies_over_budget
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = answer.get("id").cloned().unwrap_or(Value::Null);
        let message = format!(
            "the answer is {} bytes, over what is left of this server's reply budget \
             ({} of {} bytes, --mcp-max-reply-bytes): ask for fewer flows (limit), filter, \
             aggregate, or send fewer calls per batch",
            bytes.len(),
            *left,
            self.limits.max_reply_bytes
        );
        // A tool call's answer too large is the tool's error, which a
        // client hands to the model (a JSON-RPC error most raise as a
        // failure of the protocol, and the model never sees the hint):
        // the result keeps what its revision adds (a stateless result's
        // resultType and _meta), its content the hint.
        let (error, outcome) = match answer.get_mut("result").and_then(Value::as_object_mut) {
            Some(result) if result.contains_key("isError") => {
                let hint = super::tools::tool_error(&message);
                result.remove("structuredContent");
                result.insert("content".into(), hint["content"].clone());
                result.insert("isError".into(), Value::Bool(true));
                (answer, "tool_error")
            }
            _ => (
                jsonrpc::error(&id, &RpcError::new(REPLY_TOO_LARGE, message)),
                "error",
            ),
        };
        if let Some(method) = method {
            self.count(&method, outcome);
        }
        let error = error.to_string().into_bytes();
        *left = left.saturating_sub(error.len());
        error
    }

    /// A reply of one answer, within the reply budget.
    fn answer(&self, status: u16, answer: Answer) -> Reply {
        let mut left = self.limits.max_reply_bytes;
        Reply::bytes(status, self.within_budget(answer, &mut left))
    }

    /// Answers a GET, PUT or any method but POST and DELETE: there is no
    /// server-initiated stream to open.
    pub fn not_allowed(&self) -> Reply {
        Reply {
            allow: Some("POST, DELETE"),
            ..Reply::refusal(
                405,
                INVALID_REQUEST,
                "use POST for MCP messages (no server-initiated stream is offered)",
            )
        }
    }

    /// DELETE: the client ends its session.
    pub fn delete(&self, request_headers: &HeaderMap) -> Reply {
        if let Some(refused) = unsupported_version_header(request_headers) {
            return refused;
        }
        match request_headers.get(headers::SESSION_ID) {
            None => Reply::refusal(400, INVALID_REQUEST, "Bad Request: Missing session ID"),
            Some(id) if self.sessions.end(&String::from_utf8_lossy(id.as_bytes())) => {
                Reply::empty(204)
            }
            Some(_) => Reply::refusal(
                404,
                INVALID_REQUEST,
                "Not Found: unknown or expired session ID",
            ),
        }
    }

    /// POST from `client`: one JSON-RPC message (or, in 2025-03-26
    /// sessions, a batch).
    pub fn post(
        &self,
        request_headers: &HeaderMap,
        body: &[u8],
        view: &View,
        client: IpAddr,
    ) -> Reply {
        let header = |name| {
            request_headers
                .get(name)
                .map(|v| v.to_str().unwrap_or_default().to_ascii_lowercase())
        };
        use crate::server::media::{essence, preference};
        if header(CONTENT_TYPE).is_none_or(|t| essence(&t) != "application/json") {
            return Reply::refusal(
                415,
                INVALID_REQUEST,
                "Content-Type must be application/json",
            );
        }
        // Every Accept line, as one list (RFC 9110 5.3: the first alone
        // refused `text/event-stream` then `application/json`).
        let accept: Vec<&str> = request_headers
            .get_all(ACCEPT)
            .iter()
            .map(|v| v.to_str().unwrap_or_default())
            .collect();
        if !accept.is_empty() && preference(&accept.join(","), "application/json").1 <= 0.0 {
            return Reply::refusal(406, INVALID_REQUEST, "Accept must include application/json");
        }
        // A revision flowtap does not speak is refused whatever the
        // message (a notification too: the transport says 400).
        if let Some(refused) = unsupported_version_header(request_headers) {
            return refused;
        }
        if jsonrpc::too_many_tokens(body) {
            return Reply::refusal(
                400,
                INVALID_REQUEST,
                format!(
                    "the message holds more than {} JSON elements (brackets, commas, colons); MCP messages hold tens",
                    jsonrpc::MAX_TOKENS
                ),
            );
        }
        let value: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Reply::refusal(400, PARSE_ERROR, format!("Parse error: {e}")),
        };
        let version_header = request_headers
            .get(headers::PROTOCOL_VERSION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        match version_header {
            Some(v) if !HANDSHAKE.contains(&v.as_str()) => {
                self.stateless(request_headers, value, view)
            }
            _ => self.handshake_era(request_headers, version_header, value, view, client),
        }
    }

    fn stateless(&self, request_headers: &HeaderMap, value: Value, view: &View) -> Reply {
        if value.is_array() {
            return Reply::refusal(
                400,
                INVALID_REQUEST,
                "batches are not part of this protocol revision",
            );
        }
        let (id, method, params) = match Message::parse(value) {
            Ok(Message::Request { id, method, params }) => (id, method, params),
            Ok(_) => return Reply::empty(202),
            Err((id, e)) => return Reply::json(400, jsonrpc::error(&id, &e)),
        };
        let decoded = |name: &str| {
            request_headers
                .get(name)
                .and_then(|v| headers::decode(v.as_bytes()))
        };
        let mirrors = Mirrors {
            protocol_version: decoded(headers::PROTOCOL_VERSION),
            method: decoded(headers::METHOD),
            name: decoded(headers::NAME),
        };
        let outcome = stateless::check(&method, &params, Some(&mirrors)).and_then(|version| {
            let result = if method == "server/discover" {
                super::discover()
            } else {
                super::dispatch(&method, &params, version, view)?
            };
            Ok(stateless::finish(
                &method,
                result,
                super::server_info(version, self.build),
            ))
        });
        let label = outcome_label(outcome.as_ref());
        match outcome {
            Ok(result) => self.answer(
                200,
                Answer::of(&method, label, jsonrpc::result(&id, result)),
            ),
            Err(e) => {
                self.count(&method, label);
                Reply::json(stateless::http_status(&e), jsonrpc::error(&id, &e))
            }
        }
    }

    fn handshake_era(
        &self,
        request_headers: &HeaderMap,
        version_header: Option<String>,
        value: Value,
        view: &View,
        client: IpAddr,
    ) -> Reply {
        // `initialize` opens a session; everything else belongs to one.
        if value.get("method").and_then(Value::as_str) == Some("initialize") {
            return match Message::parse(value) {
                Ok(Message::Request { id, method, params }) => {
                    let outcome = super::initialize(&params, self.build)
                        .map(|(v, r)| (self.sessions.create(v, client), r));
                    // Counted once the session is made or refused: a
                    // refusal for want of room is an error, not `ok`.
                    let label = match &outcome {
                        Ok((Ok(_), result)) => outcome_label::<()>(Ok(result)),
                        Ok((Err(Full), _)) | Err(_) => "error",
                    };
                    self.count(&method, label);
                    match outcome {
                        Ok((Ok(session), result)) => Reply {
                            session_id: Some(session),
                            ..Reply::json(200, jsonrpc::result(&id, result))
                        },
                        Ok((Err(Full), _)) => sessions_full(),
                        Err(e) => Reply::json(200, jsonrpc::error(&id, &e)),
                    }
                }
                Ok(_) => Reply::refusal(
                    400,
                    INVALID_REQUEST,
                    "initialize must be a request (with an id)",
                ),
                Err((id, e)) => handshake_refusal(jsonrpc::error(&id, &e)),
            };
        }
        let Some(session) = request_headers.get(headers::SESSION_ID) else {
            let initializes =
                |m: &Value| m.get("method").and_then(Value::as_str) == Some("initialize");
            if value
                .as_array()
                .is_some_and(|batch| batch.iter().any(initializes))
            {
                return Reply::refusal(
                    400,
                    INVALID_REQUEST,
                    "initialize is sent alone, not in a batch",
                );
            }
            return Reply::refusal(
                400,
                INVALID_REQUEST,
                "Bad Request: Missing session ID (send initialize first)",
            );
        };
        let session = String::from_utf8_lossy(session.as_bytes());
        let version = match self.sessions.touch(&session) {
            Lookup::Found(v) => v,
            Lookup::Unknown => {
                // Taken up again where the client names its revision
                // (`session` says why); a 2025-03-26 client names none.
                let named = version_header.as_deref().and_then(Version::parse);
                match named.map(|v| (v, self.sessions.resume(&session, v, client))) {
                    Some((v, Ok(()))) => v,
                    Some((_, Err(NotResumed::Full))) => return sessions_full(),
                    Some((_, Err(NotResumed::Unknown))) | None => {
                        return Reply::refusal(
                            404,
                            INVALID_REQUEST,
                            "Not Found: unknown or expired session ID (initialize again)",
                        );
                    }
                }
            }
        };
        if let Some(h) = version_header
            && h != version.as_str()
        {
            return Reply::refusal(
                400,
                INVALID_REQUEST,
                format!(
                    "MCP-Protocol-Version {h} does not match the session's {}",
                    version.as_str()
                ),
            );
        }
        match value {
            Value::Array(batch)
                if version.allows_batches() && batch.len() > self.limits.max_batch =>
            {
                self.stats
                    .mcp_batches_refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Reply::refusal(
                    400,
                    INVALID_REQUEST,
                    format!(
                        "a batch of {} messages; this server takes at most {} per batch \
                         (--mcp-max-batch)",
                        batch.len(),
                        self.limits.max_batch
                    ),
                )
            }
            Value::Array(batch) if version.allows_batches() && !batch.is_empty() => {
                // Each answer is serialised (and its tree freed) before the
                // next is computed; the reply stays within its budget.
                let mut left = self.limits.max_reply_bytes;
                let mut body = vec![b'['];
                for m in batch {
                    let Some(Ok(answer) | Err(answer)) = self.handshake_message(m, version, view)
                    else {
                        continue;
                    };
                    if body.len() > 1 {
                        body.push(b',');
                    }
                    body.extend(self.within_budget(answer, &mut left));
                }
                if body.len() == 1 {
                    Reply::empty(202)
                } else {
                    body.push(b']');
                    Reply::bytes(200, body)
                }
            }
            // JSON-RPC 2.0: an empty batch is an invalid request.
            Value::Array(batch) if version.allows_batches() => {
                debug_assert!(batch.is_empty());
                Reply::refusal(400, INVALID_REQUEST, "an empty batch")
            }
            Value::Array(_) => Reply::refusal(
                400,
                INVALID_REQUEST,
                format!(
                    "protocol revision {} takes one message per request",
                    version.as_str()
                ),
            ),
            single => match self.handshake_message(single, version, view) {
                Some(Ok(answer)) => self.answer(200, answer),
                Some(Err(refusal)) => handshake_refusal(refusal.answer),
                None => Reply::empty(202),
            },
        }
    }

    /// One message of a session: the answer, if it was a request, or the
    /// error, if it was no JSON-RPC message at all.
    fn handshake_message(
        &self,
        value: Value,
        version: Version,
        view: &View,
    ) -> Option<Result<Answer, Answer>> {
        match Message::parse(value) {
            Ok(Message::Request { id, method, params }) => {
                let outcome = if method == "initialize" {
                    Err(RpcError::new(
                        INVALID_REQUEST,
                        "the session is already initialized",
                    ))
                } else {
                    super::dispatch(&method, &params, version, view)
                };
                let label = outcome_label(outcome.as_ref());
                Some(Ok(Answer::of(
                    &method,
                    label,
                    match outcome {
                        Ok(result) => jsonrpc::result(&id, result),
                        Err(e) => jsonrpc::error(&id, &e),
                    },
                )))
            }
            Ok(Message::Notification { .. } | Message::Response) => None,
            Err((id, e)) => Some(Err(Answer::uncounted(jsonrpc::error(&id, &e)))),
        }
    }

    fn count(&self, method: &str, outcome: &'static str) {
        let label = METHODS
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("other");
        self.stats.count_mcp(label, outcome);
    }
}

/// The 400 for an `MCP-Protocol-Version` header naming a revision flowtap
/// does not speak (2025-06-18, transports: "the server MUST respond with
/// 400 Bad Request"), listing the ones it does.
fn unsupported_version_header(request_headers: &HeaderMap) -> Option<Reply> {
    let header = request_headers.get(headers::PROTOCOL_VERSION)?;
    let text = String::from_utf8_lossy(header.as_bytes());
    if Version::parse(&text).is_some() {
        return None;
    }
    Some(Reply::json(
        400,
        jsonrpc::error(&Value::Null, &stateless::unsupported(&text)),
    ))
}

/// The answer when the session table is full of live sessions.
fn sessions_full() -> Reply {
    Reply::refusal(
        503,
        INVALID_REQUEST,
        "Service Unavailable: every MCP session is in use \
         (--mcp-max-sessions); try again later",
    )
}

/// A handshake-era message its parse refused: a request's (its id known:
/// bad params, a wrong `jsonrpc`) is an error about its content, sent with
/// 200 as the module says; what has no usable id is no request at all, the
/// transport's 400, with the error.
fn handshake_refusal(refusal: Value) -> Reply {
    let status = if refusal["id"].is_null() { 400 } else { 200 };
    Reply::json(status, refusal)
}

/// `flowtap_mcp_requests`' outcome of an answer: `error` (a JSON-RPC
/// error), `tool_error` (a tool call answered with `isError`, such as a bad
/// argument: answered, but the model asked wrong) or `ok`.
/// A JSON-RPC answer, and the request it answers by method and outcome
/// (none for a message that was no request), counted once the reply
/// budget has had its say.
struct Answer {
    answer: Value,
    method: Option<String>,
    outcome: &'static str,
}

impl Answer {
    fn of(method: &str, outcome: &'static str, answer: Value) -> Answer {
        Answer {
            answer,
            method: Some(method.to_owned()),
            outcome,
        }
    }

    fn uncounted(answer: Value) -> Answer {
        Answer {
            answer,
            method: None,
            outcome: "error",
        }
    }
}

fn outcome_label<E>(answer: Result<&Value, &E>) -> &'static str {
    match answer {
        Err(_) => "error",
        Ok(result) if result.get("isError") == Some(&Value::Bool(true)) => "tool_error",
        Ok(_) => "ok",
    }
}
