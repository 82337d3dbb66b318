//! `GET /`: the service map, one page embedded in the binary (no CDN, no
//! build step). It asks `/mcp/flows?aggregate=...` for the busiest workload
//! pairs (never for all flows, so it stays light at a million), draws them
//! as a graph in hand-written SVG (small enough not to need a library), and
//! lists a node's or an edge's flows from `/mcp/flows?format=full`.
//!
//! The page itself holds no flow data and is served without a token; it
//! takes the token from the address it was opened with (`/#token=...`: a
//! fragment never reaches a server or its logs), or asks for it, and sends
//! it with every request for data.

use std::time::Duration;

pub const PATH: &str = "/";

/// Inline script and style, data from flowtap only, nothing else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

const PAGE: &str = include_str!("service_map.html");

/// The page, refreshing its data every `refresh` (the snapshot interval).
pub fn html(refresh: Duration) -> String {
    let ms = refresh.as_millis().clamp(250, 60_000);
    PAGE.replace("{{REFRESH_MS}}", &ms.to_string())
}
