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

use hyper::HeaderMap;
use hyper::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;

use super::headers;
use super::jsonrpc::{self, INVALID_REQUEST, Message, PARSE_ERROR, RpcError};
use super::session::{Lookup, Sessions};
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
    /// None for 202 and 204.
    pub body: Option<Value>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            session_id: None,
            allow: None,
            body: Some(body),
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

/// The MCP endpoint's state: its sessions and the build it reports.
pub struct Mcp {
    sessions: Sessions,
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
    pub fn new(stats: Arc<ServiceStats>, build: &'static str) -> Mcp {
        Mcp {
            sessions: Sessions::new(stats.clone()),
            stats,
            build,
        }
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

    /// POST: one JSON-RPC message (or, in 2025-03-26 sessions, a batch).
    pub fn post(&self, request_headers: &HeaderMap, body: &[u8], view: &View) -> Reply {
        let header = |name| {
            request_headers
                .get(name)
                .map(|v| v.to_str().unwrap_or_default().to_ascii_lowercase())
        };
        if !header(CONTENT_TYPE).is_some_and(|t| t.starts_with("application/json")) {
            return Reply::refusal(
                415,
                INVALID_REQUEST,
                "Content-Type must be application/json",
            );
        }
        if let Some(accept) = header(ACCEPT)
            && !["application/json", "application/*", "*/*"]
                .iter()
                .any(|t| accept.contains(t))
        {
            return Reply::refusal(406, INVALID_REQUEST, "Accept must include application/json");
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
            _ => self.handshake_era(request_headers, version_header, value, view),
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
        self.count(&method, outcome.is_ok());
        match outcome {
            Ok(result) => Reply::json(200, jsonrpc::result(&id, result)),
            Err(e) => Reply::json(stateless::http_status(&e), jsonrpc::error(&id, &e)),
        }
    }

    fn handshake_era(
        &self,
        request_headers: &HeaderMap,
        version_header: Option<String>,
        value: Value,
        view: &View,
    ) -> Reply {
        // `initialize` opens a session; everything else belongs to one.
        if value.get("method").and_then(Value::as_str) == Some("initialize") {
            return match Message::parse(value) {
                Ok(Message::Request { id, method, params }) => {
                    let outcome = super::initialize(&params, self.build);
                    self.count(&method, outcome.is_ok());
                    match outcome {
                        Ok((version, result)) => Reply {
                            session_id: Some(self.sessions.create(version)),
                            ..Reply::json(200, jsonrpc::result(&id, result))
                        },
                        Err(e) => Reply::json(200, jsonrpc::error(&id, &e)),
                    }
                }
                Ok(_) => Reply::refusal(
                    400,
                    INVALID_REQUEST,
                    "initialize must be a request (with an id)",
                ),
                Err((id, e)) => Reply::json(400, jsonrpc::error(&id, &e)),
            };
        }
        let Some(session) = request_headers.get(headers::SESSION_ID) else {
            return Reply::refusal(
                400,
                INVALID_REQUEST,
                "Bad Request: Missing session ID (send initialize first)",
            );
        };
        let version = match self
            .sessions
            .touch(&String::from_utf8_lossy(session.as_bytes()))
        {
            Lookup::Found(v) => v,
            Lookup::Unknown => {
                return Reply::refusal(
                    404,
                    INVALID_REQUEST,
                    "Not Found: unknown or expired session ID (initialize again)",
                );
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
            Value::Array(batch) if version.allows_batches() && !batch.is_empty() => {
                let answers: Vec<Value> = batch
                    .into_iter()
                    .filter_map(|m| self.handshake_message(m, version, view))
                    .collect();
                if answers.is_empty() {
                    Reply::empty(202)
                } else {
                    Reply::json(200, Value::Array(answers))
                }
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
                Some(answer) => Reply::json(200, answer),
                None => Reply::empty(202),
            },
        }
    }

    /// One message of a session; the answer, if it was a request.
    fn handshake_message(&self, value: Value, version: Version, view: &View) -> Option<Value> {
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
                self.count(&method, outcome.is_ok());
                Some(match outcome {
                    Ok(result) => jsonrpc::result(&id, result),
                    Err(e) => jsonrpc::error(&id, &e),
                })
            }
            Ok(Message::Notification { .. } | Message::Response) => None,
            Err((id, e)) => Some(jsonrpc::error(&id, &e)),
        }
    }

    fn count(&self, method: &str, ok: bool) {
        let label = METHODS
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("other");
        self.stats.count_mcp(label, ok);
    }
}
