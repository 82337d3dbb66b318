//! JSON-RPC 2.0 as MCP uses it: requests (with an id), notifications
//! (without), and the responses the server writes back.

use serde_json::{Map, Value, json};

/// The body is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON, but not a JSON-RPC message.
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// A server-defined error (the -32000..-32099 range): the answer would
/// exceed the server's reply budget.
pub const REPLY_TOO_LARGE: i64 = -32000;
/// MCP: the request names a protocol version the server does not speak
/// (its `data.supported` lists the ones it does).
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// An error answered in place of a result.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Box<Value>>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError::new(INVALID_PARAMS, message)
    }

    pub fn with_data(mut self, data: Value) -> RpcError {
        self.data = Some(Box::new(data));
        self
    }
}

/// One message from the client.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Request {
        id: Value,
        method: String,
        params: Map<String, Value>,
    },
    Notification {
        method: String,
        params: Map<String, Value>,
    },
    /// A response to a server-to-client request. flowtap sends none, so
    /// these are accepted and ignored.
    Response,
}

/// Whether `id` is one a request may carry and an answer echo. MCP: "a
/// string or integer ID". A number with a fraction, or an integer beyond
/// 64 bits (which serde_json reads as a float), could not be echoed as it
/// was sent, and the client could not match the answer: refused, and
/// answered with a null id.
pub fn echoable_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

impl Message {
    /// Reads one message. On error, the id to answer with (null when the
    /// message had none usable) and the error.
    pub fn parse(value: Value) -> Result<Message, (Value, RpcError)> {
        let Value::Object(mut obj) = value else {
            return Err((
                Value::Null,
                RpcError::new(INVALID_REQUEST, "a JSON-RPC message must be an object"),
            ));
        };
        let id = obj.remove("id");
        let id_ok = id.as_ref().is_some_and(echoable_id);
        let answer_id = if id_ok {
            id.clone().unwrap_or_default()
        } else {
            Value::Null
        };
        if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
            return Err((
                answer_id,
                RpcError::new(INVALID_REQUEST, "\"jsonrpc\" must be \"2.0\""),
            ));
        }
        let Some(method) = obj.remove("method") else {
            if obj.contains_key("result") || obj.contains_key("error") {
                return Ok(Message::Response);
            }
            return Err((
                answer_id,
                RpcError::new(INVALID_REQUEST, "a request needs a \"method\""),
            ));
        };
        let Value::String(method) = method else {
            return Err((
                answer_id,
                RpcError::new(INVALID_REQUEST, "\"method\" must be a string"),
            ));
        };
        let params = match obj.remove("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p,
            Some(_) => {
                return Err((
                    answer_id,
                    RpcError::new(INVALID_PARAMS, "\"params\" must be an object"),
                ));
            }
        };
        match id {
            None => Ok(Message::Notification { method, params }),
            Some(_) if id_ok => Ok(Message::Request {
                id: answer_id,
                method,
                params,
            }),
            Some(_) => Err((
                Value::Null,
                RpcError::new(
                    INVALID_REQUEST,
                    "\"id\" must be a string or an integer of at most 64 bits",
                ),
            )),
        }
    }
}

/// The most structural tokens (`[`, `{`, `,`, `:` outside strings) a
/// message may hold: a bound on the values parsing it makes. A parsed value
/// costs 32 to 100 bytes where `0,` took 2: a 1 MiB body of zeros became a
/// 32 MiB tree, and the bodies held at once half a GiB. MCP messages hold
/// tens (a batch of 16 tool calls, a few hundred).
pub const MAX_TOKENS: usize = 20_000;

/// Whether `body` holds more than [`MAX_TOKENS`] structural tokens; read
/// before it is parsed.
pub fn too_many_tokens(body: &[u8]) -> bool {
    let (mut tokens, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' | b',' | b':' => tokens += 1,
                _ => {}
            }
        }
    }
    tokens > MAX_TOKENS
}

pub fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub fn error(id: &Value, e: &RpcError) -> Value {
    let mut err = json!({"code": e.code, "message": e.message});
    if let Some(data) = &e.data {
        err["data"] = (**data).clone();
    }
    json!({"jsonrpc": "2.0", "id": id, "error": err})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values are bounded before parsing; what strings hold is not counted
    /// (escaped quotes included).
    #[test]
    fn messages_of_too_many_values_are_told_apart() {
        let zeros = |n: usize| format!("[{}0]", "0,".repeat(n));
        assert!(!too_many_tokens(zeros(MAX_TOKENS - 1).as_bytes()));
        assert!(too_many_tokens(zeros(MAX_TOKENS).as_bytes()));
        let quoted = format!(r#"{{"a":"\"{}","b":1}}"#, ",:[{".repeat(MAX_TOKENS));
        assert!(!too_many_tokens(quoted.as_bytes()));
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_l4_flows","arguments":{"limit":10}}}"#;
        assert!(!too_many_tokens(call.as_bytes()));
    }

    #[test]
    fn requests_notifications_and_mistakes() {
        let m = Message::parse(json!({"jsonrpc":"2.0","id":7,"method":"ping"})).unwrap();
        assert_eq!(
            m,
            Message::Request {
                id: json!(7),
                method: "ping".into(),
                params: Map::new()
            }
        );
        let m =
            Message::parse(json!({"jsonrpc":"2.0","method":"notifications/initialized"})).unwrap();
        assert!(matches!(m, Message::Notification { .. }));
        assert_eq!(
            Message::parse(json!({"jsonrpc":"2.0","id":1,"result":{}})).unwrap(),
            Message::Response
        );
        for (bad, code, id) in [
            (json!([1]), INVALID_REQUEST, Value::Null),
            (
                json!({"id":"a","method":"ping"}),
                INVALID_REQUEST,
                json!("a"),
            ),
            (json!({"jsonrpc":"2.0","id":2}), INVALID_REQUEST, json!(2)),
            (
                json!({"jsonrpc":"2.0","id":3,"method":5}),
                INVALID_REQUEST,
                json!(3),
            ),
            (
                json!({"jsonrpc":"2.0","id":4,"method":"x","params":[1]}),
                INVALID_PARAMS,
                json!(4),
            ),
            (
                json!({"jsonrpc":"2.0","id":null,"method":"ping"}),
                INVALID_REQUEST,
                Value::Null,
            ),
            (
                json!({"jsonrpc":"2.0","id":{},"method":"ping"}),
                INVALID_REQUEST,
                Value::Null,
            ),
            // Not an integer, or beyond 64 bits: it could not be echoed as sent.
            (
                json!({"jsonrpc":"2.0","id":1.5,"method":"ping"}),
                INVALID_REQUEST,
                Value::Null,
            ),
            (
                serde_json::from_str(
                    r#"{"jsonrpc":"2.0","id":99999999999999999999999,"method":"ping"}"#,
                )
                .unwrap(),
                INVALID_REQUEST,
                Value::Null,
            ),
        ] {
            let (got_id, e) = Message::parse(bad.clone()).unwrap_err();
            assert_eq!((e.code, got_id), (code, id), "{bad}");
        }
    }
}
