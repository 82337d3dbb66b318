//! MCP's HTTP header names and the encoding of header values taken from a
//! request body (`Mcp-Name`): plain printable ASCII as is, anything else as
//! `=?base64?<UTF-8 bytes in base64>?=`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub const SESSION_ID: &str = "mcp-session-id";
pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
pub const METHOD: &str = "mcp-method";
pub const NAME: &str = "mcp-name";

const PREFIX: &str = "=?base64?";
const SUFFIX: &str = "?=";

/// The header value for `text`.
pub fn encode(text: &str) -> String {
    let looks_encoded = text.starts_with(PREFIX) && text.ends_with(SUFFIX);
    let plain = !text.is_empty()
        && text.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !text.starts_with(' ')
        && !text.ends_with(' ')
        && !looks_encoded;
    if plain {
        text.to_owned()
    } else {
        format!("{PREFIX}{}{SUFFIX}", STANDARD.encode(text))
    }
}

/// The text a header value stands for; `None` when the encoding is broken.
pub fn decode(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    match text
        .strip_prefix(PREFIX)
        .and_then(|t| t.strip_suffix(SUFFIX))
    {
        Some(b64) => String::from_utf8(STANDARD.decode(b64).ok()?).ok(),
        None => Some(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(encode("list_l4_flows"), "list_l4_flows");
        assert_eq!(encode("héllo"), "=?base64?aMOpbGxv?=");
        assert_eq!(decode(b"=?base64?aMOpbGxv?=").as_deref(), Some("héllo"));
        for t in [" lead", "trail ", "=?base64?x?=", "tab\there", ""] {
            assert_eq!(decode(encode(t).as_bytes()).as_deref(), Some(t), "{t:?}");
            assert!(encode(t).starts_with(PREFIX), "{t:?}");
        }
        assert_eq!(decode(b"=?base64?***?="), None);
    }
}
