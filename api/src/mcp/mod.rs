//! A Model Context Protocol server over flowtap's flows, so an AI client
//! calls the L4 tools directly. Written on serde_json rather than an SDK:
//! flowtap's server is plain hyper, the protocol surface is small (seven
//! methods), and both protocol eras (the `initialize` handshake of
//! 2024-11-05 .. 2025-11-25 and the stateless 2026-07-28) are served on one
//! endpoint, which needs control of every header and status.
//!
//! - [`jsonrpc`]: messages and error codes.
//! - [`version`]: the revisions and what each carries.
//! - [`tools`], [`prompts`]: what the server offers.
//! - [`stateless`]: the 2026-07-28 request envelope (`_meta`, headers).
//! - [`session`]: `Mcp-Session-Id` for the handshake revisions.
//! - [`streamable`]: the Streamable HTTP transport on `/mcp`.
//! - [`headers`]: MCP's encoding of header values (shared with `mcp-stdio`).

pub mod headers;
pub mod jsonrpc;
pub mod prompts;
pub mod session;
pub mod stateless;
pub mod streamable;
pub mod tools;
pub mod version;

use serde_json::{Map, Value, json};

use crate::view::View;
use jsonrpc::{METHOD_NOT_FOUND, RpcError};
use version::Version;

/// The endpoint path.
pub const PATH: &str = "/mcp";

/// The least `McpLimits::max_reply_bytes` may be: what the largest list a
/// client asks first (the tools, with their schemas and descriptions)
/// takes, with room to grow (a test checks it fits).
pub const MIN_REPLY_BYTES: usize = 64 << 10;

/// MCP's bounds, each an option and a metric: a client cannot make one
/// request cost more than `max_batch` calls and `max_reply_bytes` of reply,
/// nor push other clients' sessions out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct McpLimits {
    /// Messages in one JSON-RPC batch (2025-03-26 sessions); larger batches
    /// are refused whole.
    pub max_batch: usize,
    /// Bytes of one HTTP reply; answers past it are replaced by errors.
    pub max_reply_bytes: usize,
    /// Sessions open at once; when all are in use and none has timed out,
    /// a new one is refused (503).
    pub max_sessions: usize,
    /// Sessions one client (IP address) may hold; its own least recently
    /// used one makes room for its next.
    pub sessions_per_client: usize,
    /// A session unused this long has ended (its client is told 404 and
    /// may take it up again).
    pub session_idle_timeout: std::time::Duration,
}

impl Default for McpLimits {
    fn default() -> Self {
        McpLimits {
            max_batch: 16,
            max_reply_bytes: 8 << 20,
            max_sessions: 1024,
            sessions_per_client: 32,
            session_idle_timeout: std::time::Duration::from_secs(3600),
        }
    }
}

/// Whether a request body may call tools (the costly method): such a
/// request takes its turn among large answers. Errs on the side of yes.
pub fn calls_tools(body: &[u8]) -> bool {
    body.windows(b"tools/call".len())
        .any(|w| w == b"tools/call")
}

/// What a client is told when it connects.
const INSTRUCTIONS: &str = "flowtap watches mirrored network traffic and reports L4 (TCP/UDP) flows: who talks to whom, \
how much, and TCP handshake round-trip times. Start with get_l4_flow_summary for an overview, then use list_l4_flows \
with filters (pod, svc, ns, ip, l4proto), aggregate, sort and min_handshake_p99_us to answer specific questions, \
and list_workloads for every pod, service and namespace with its traffic in and out (state=idle: those with none). \
Numbers describe the current snapshot (refreshed about every second on a live port).";

/// The server's name and version, as `serverInfo`.
pub fn server_info(version: Version, build: &str) -> Value {
    let mut info = json!({"name": "flowtap", "version": build});
    if version.has_titles() {
        info["title"] = json!("flowtap L4 flows");
    }
    info
}

fn capabilities() -> Value {
    json!({"tools": {"listChanged": false}, "prompts": {"listChanged": false}})
}

/// Answers `initialize` (handshake revisions): the negotiated revision and
/// the result.
pub fn initialize(params: &Map<String, Value>, build: &str) -> Result<(Version, Value), RpcError> {
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("initialize needs \"protocolVersion\""))?;
    let version = Version::negotiate(requested);
    Ok((
        version,
        json!({
            "protocolVersion": version.as_str(),
            "capabilities": capabilities(),
            "serverInfo": server_info(version, build),
            "instructions": INSTRUCTIONS,
        }),
    ))
}

/// Answers `server/discover` (stateless revisions).
pub fn discover() -> Value {
    json!({
        "supportedVersions": version::all().collect::<Vec<_>>(),
        "capabilities": capabilities(),
        "instructions": INSTRUCTIONS,
    })
}

/// A list request's check of its cursor. Lists are answered whole, with no
/// `nextCursor`, so any cursor is one this server never gave: the
/// specification's pagination rules ask for -32602 then, where answering
/// the first page again would loop a client that pages on.
fn whole_list(params: &Map<String, Value>) -> Result<(), RpcError> {
    match params.get("cursor") {
        None | Some(Value::Null) => Ok(()),
        Some(cursor) => Err(RpcError::invalid_params(format!(
            "cursor {cursor}: this server never gives one (its lists come whole, in one page)"
        ))),
    }
}

/// Answers the methods both eras share.
pub fn dispatch(
    method: &str,
    params: &Map<String, Value>,
    version: Version,
    view: &View,
) -> Result<Value, RpcError> {
    match method {
        "tools/list" => whole_list(params).map(|()| tools::list(version)),
        "tools/call" => tools::call(view, params, version),
        "prompts/list" => whole_list(params).map(|()| prompts::list(version)),
        "prompts/get" => prompts::get(params),
        "ping" if !version.is_stateless() => Ok(json!({})),
        _ => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("method {method:?} not found"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_reply_budget_holds_every_list() {
        for text in version::HANDSHAKE.iter().chain(version::STATELESS) {
            let version = Version::parse(text).expect("a revision flowtap speaks");
            for list in [tools::list(version), prompts::list(version)] {
                let len = list.to_string().len();
                // Half: the list may grow before the bound is revisited.
                assert!(len * 2 < MIN_REPLY_BYTES, "{text}: {len} bytes");
            }
        }
    }
}
