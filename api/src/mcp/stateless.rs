//! The stateless revisions (2026-07-28): no handshake; every request
//! carries its revision and the client's capabilities in `params._meta`,
//! mirrored over HTTP in `MCP-Protocol-Version`, `Mcp-Method` and
//! `Mcp-Name`; every result says `resultType`, list results say how long
//! they may be cached, and all name the server in `_meta`.

use serde_json::{Map, Value, json};

use super::jsonrpc::{
    INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, RpcError,
    UNSUPPORTED_PROTOCOL_VERSION,
};
use super::version::{self, Version};

pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// A request or one of its HTTP headers disagrees with the body.
pub const HEADER_MISMATCH: i64 = -32020;

/// How long list results may be cached: they change only with the binary.
const LIST_TTL_MS: u64 = 300_000;

/// The revision a request's `_meta` names, if it carries the envelope.
pub fn requested_version(params: &Map<String, Value>) -> Option<&str> {
    params.get("_meta")?.get(META_PROTOCOL_VERSION)?.as_str()
}

/// The HTTP headers a stateless request came with (already decoded).
#[derive(Clone, Default, Debug)]
pub struct Mirrors {
    pub protocol_version: Option<String>,
    pub method: Option<String>,
    pub name: Option<String>,
}

/// Checks a request's envelope and headers, in the specification's order;
/// returns the revision it speaks.
pub fn check(
    method: &str,
    params: &Map<String, Value>,
    mirrors: Option<&Mirrors>,
) -> Result<Version, RpcError> {
    let meta = params.get("_meta").and_then(Value::as_object);
    let requested = meta.and_then(|m| m.get(META_PROTOCOL_VERSION));
    let capabilities = meta.and_then(|m| m.get(META_CLIENT_CAPABILITIES));
    if !requested.is_some_and(Value::is_string) || !capabilities.is_some_and(Value::is_object) {
        return Err(RpcError::new(
            INVALID_PARAMS,
            format!(
                "params._meta must carry {META_PROTOCOL_VERSION} (a string) and {META_CLIENT_CAPABILITIES} (an object)"
            ),
        ));
    }
    let requested = requested.and_then(Value::as_str).unwrap_or_default();
    if let Some(h) = mirrors {
        let mismatch = |header: &str, want: &str, got: &Option<String>| {
            (got.as_deref() != Some(want)).then(|| {
                let got = match got {
                    Some(got) => format!("{got:?}"),
                    None => "absent".to_owned(),
                };
                RpcError::new(
                    HEADER_MISMATCH,
                    format!("{header} header {got} does not match the request body's {want:?}"),
                )
            })
        };
        if let Some(e) = mismatch("MCP-Protocol-Version", requested, &h.protocol_version) {
            return Err(e);
        }
        if let Some(e) = mismatch("Mcp-Method", method, &h.method) {
            return Err(e);
        }
        if matches!(method, "tools/call" | "prompts/get") {
            let name = params
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(e) = mismatch("Mcp-Name", name, &h.name) {
                return Err(e);
            }
        }
    }
    match Version::parse(requested) {
        Some(v) if v.is_stateless() => Ok(v),
        _ => Err(unsupported(requested)),
    }
}

/// The error for a revision flowtap does not speak statelessly, listing the
/// ones it does (the handshake ones too, so a client may fall back).
pub fn unsupported(requested: &str) -> RpcError {
    RpcError::new(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version").with_data(json!({
        "supported": version::all().collect::<Vec<_>>(),
        "requested": requested,
    }))
}

/// The HTTP status of a stateless error, as the specification maps them.
pub fn http_status(e: &RpcError) -> u16 {
    match e.code {
        METHOD_NOT_FOUND => 404,
        PARSE_ERROR
        | INVALID_REQUEST
        | INVALID_PARAMS
        | HEADER_MISMATCH
        | UNSUPPORTED_PROTOCOL_VERSION => 400,
        _ => 200,
    }
}

/// Adds what a stateless result must carry.
pub fn finish(method: &str, mut result: Value, server_info: Value) -> Value {
    result["resultType"] = json!("complete");
    if matches!(method, "tools/list" | "prompts/list" | "server/discover") {
        result["ttlMs"] = json!(LIST_TTL_MS);
        result["cacheScope"] = json!("public");
    }
    result["_meta"] = json!({ META_SERVER_INFO: server_info });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn envelope(version: &str) -> Value {
        json!({META_PROTOCOL_VERSION: version, META_CLIENT_CAPABILITIES: {}})
    }

    #[test]
    fn envelope_headers_then_version() {
        let p = params(json!({"name": "list_l4_flows", "_meta": envelope("2026-07-28")}));
        let good = Mirrors {
            protocol_version: Some("2026-07-28".into()),
            method: Some("tools/call".into()),
            name: Some("list_l4_flows".into()),
        };
        assert!(check("tools/call", &p, Some(&good)).unwrap().is_stateless());
        assert!(check("tools/call", &p, None).is_ok(), "no headers on stdio");
        assert_eq!(
            check("tools/call", &params(json!({"name": "x"})), Some(&good))
                .unwrap_err()
                .code,
            INVALID_PARAMS
        );
        let wrong_name = Mirrors {
            name: Some("get_l4_flow_summary".into()),
            ..good.clone()
        };
        assert_eq!(
            check("tools/call", &p, Some(&wrong_name)).unwrap_err().code,
            HEADER_MISMATCH
        );
        let no_method = Mirrors {
            method: None,
            ..good.clone()
        };
        assert_eq!(
            check("tools/call", &p, Some(&no_method)).unwrap_err().code,
            HEADER_MISMATCH
        );
        let future = params(json!({"_meta": envelope("2099-01-01")}));
        let h = Mirrors {
            protocol_version: Some("2099-01-01".into()),
            method: Some("tools/list".into()),
            name: None,
        };
        let e = check("tools/list", &future, Some(&h)).unwrap_err();
        assert_eq!(e.code, UNSUPPORTED_PROTOCOL_VERSION);
        assert!(
            e.data.unwrap()["supported"]
                .as_array()
                .unwrap()
                .contains(&json!("2026-07-28"))
        );
    }

    #[test]
    fn results_carry_type_cache_hints_and_server() {
        let r = finish(
            "tools/list",
            json!({"tools": []}),
            json!({"name": "flowtap"}),
        );
        assert_eq!(
            (r["resultType"].as_str(), r["cacheScope"].as_str()),
            (Some("complete"), Some("public"))
        );
        assert_eq!(r["_meta"][META_SERVER_INFO]["name"], "flowtap");
        let r = finish("tools/call", json!({"content": []}), json!({}));
        assert!(r.get("ttlMs").is_none());
    }
}
