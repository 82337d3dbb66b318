//! Who may read the flow data: the bearer token (`--auth-token-file`) and
//! the defences against DNS rebinding the MCP transport asks for (a browser
//! page must not reach a loopback flowtap through a name it controls).
//!
//! Health and metrics paths carry no flow data and stay open to probes and
//! scrapers; the Origin check applies to every path.

use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, HOST, ORIGIN};

use crate::server::Route;

/// Access rules, fixed at start.
#[derive(Clone, Debug, Default)]
pub struct AccessConfig {
    /// Requests for flow data must bring `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Origins allowed besides loopback ones (`http://localhost:*`,
    /// `http://127.0.0.1:*`, `http://[::1]:*`, https too); `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Set when the listener is on a loopback address: the Host header must
    /// then name loopback too, which a rebinding page cannot arrange.
    pub loopback_host_only: bool,
}

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// 401: no token, or the wrong one.
    Unauthorized,
    /// 403: an Origin not allowed.
    Origin(String),
    /// 403: a Host that is not loopback on a loopback listener.
    Host(String),
}

impl Denied {
    pub fn status(&self) -> u16 {
        match self {
            Denied::Unauthorized => 401,
            Denied::Origin(_) | Denied::Host(_) => 403,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Denied::Unauthorized => {
                "missing or wrong bearer token (Authorization: Bearer <token>)".into()
            }
            Denied::Origin(o) => format!("origin {o:?} is not allowed (see --allowed-origin)"),
            Denied::Host(h) => {
                format!("host {h:?} is not a loopback name; flowtap listens on loopback only")
            }
        }
    }
}

impl AccessConfig {
    pub fn check(&self, route: Route, headers: &HeaderMap) -> Result<(), Denied> {
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            if !self.origin_allowed(&origin) {
                return Err(Denied::Origin(origin));
            }
        }
        if self.loopback_host_only
            && let Some(host) = headers.get(HOST)
        {
            let host = String::from_utf8_lossy(host.as_bytes()).into_owned();
            if !is_loopback_name(strip_port(&host)) {
                return Err(Denied::Host(host));
            }
        }
        if let Some(token) = &self.token
            && route.carries_flow_data()
        {
            let given = headers
                .get(AUTHORIZATION)
                .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
                .unwrap_or_default();
            if !constant_time_eq(given, token.as_bytes()) {
                return Err(Denied::Unauthorized);
            }
        }
        Ok(())
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        if self
            .allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let Some(rest) = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
        else {
            return false;
        };
        is_loopback_name(strip_port(rest))
    }
}

/// `host` of `host:port` or `[v6]:port`.
fn strip_port(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell an attacker how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origins_hosts_and_tokens() {
        let open = AccessConfig::default();
        assert!(open.check(Route::of("/mcp"), &headers(&[])).is_ok());
        for ok in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://[::1]:8898",
            "http://LOCALHOST",
        ] {
            assert!(
                open.check(Route::of("/mcp"), &headers(&[("origin", ok)]))
                    .is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "http://evil.example",
            "null",
            "http://localhost.evil.example",
            "file://",
        ] {
            assert_eq!(
                open.check(Route::of("/mcp"), &headers(&[("origin", bad)]))
                    .unwrap_err()
                    .status(),
                403,
                "{bad}"
            );
        }
        let listed = AccessConfig {
            allowed_origins: vec!["https://app.example".into()],
            ..open.clone()
        };
        assert!(
            listed
                .check(
                    Route::of("/mcp"),
                    &headers(&[("origin", "https://app.example")])
                )
                .is_ok()
        );

        let lo = AccessConfig {
            loopback_host_only: true,
            ..AccessConfig::default()
        };
        assert!(
            lo.check(Route::of("/mcp"), &headers(&[("host", "127.0.0.1:8898")]))
                .is_ok()
        );
        assert!(
            lo.check(Route::of("/mcp"), &headers(&[("host", "[::1]:1")]))
                .is_ok()
        );
        assert_eq!(
            lo.check(
                Route::of("/mcp"),
                &headers(&[("host", "rebound.example:8898")])
            )
            .unwrap_err()
            .status(),
            403
        );

        let token = AccessConfig {
            token: Some("s3cret".into()),
            ..AccessConfig::default()
        };
        assert_eq!(
            token.check(Route::of("/mcp"), &headers(&[])),
            Err(Denied::Unauthorized)
        );
        assert_eq!(
            token.check(
                Route::of("/mcp/flows"),
                &headers(&[("authorization", "Bearer s3cre")])
            ),
            Err(Denied::Unauthorized)
        );
        assert_eq!(
            token.check(
                Route::of("/mcp/flows/summary"),
                &headers(&[("authorization", "Bearer s3cret!")])
            ),
            Err(Denied::Unauthorized)
        );
        assert!(
            token
                .check(
                    Route::of("/mcp/flows"),
                    &headers(&[("authorization", "Bearer s3cret")])
                )
                .is_ok()
        );
        assert!(token.check(Route::of("/healthz"), &headers(&[])).is_ok());
        assert!(token.check(Route::of("/metrics"), &headers(&[])).is_ok());
    }
}
