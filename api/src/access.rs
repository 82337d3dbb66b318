//! Who may read the flow data: the bearer token (`--auth-token-file`) and
//! the defences against DNS rebinding the MCP transport asks for (a browser
//! page must not reach flowtap through a name it controls).
//!
//! The Host header must name a loopback name, the address the client
//! connected to, or a host given with `--allowed-host`: a page that rebinds
//! its own name to flowtap's address still sends its own name. Health and
//! metrics paths carry no flow (no address, no connection) and need no
//! token: `/metrics` does say which workloads talk to which, in the
//! per-pair counters, which is why it is on the admin listener, for the
//! cluster's own scrapers (README, "Who may ask"). The Origin and Host
//! checks apply to every path.

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
    /// Host names (or addresses) requests may name besides loopback ones
    /// and the address they connected to; `*` allows any.
    pub allowed_hosts: Vec<String>,
}

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// 401: no token, or the wrong one.
    Unauthorized,
    /// 403: an Origin not allowed.
    Origin(String),
    /// 403: a Host that is neither loopback, nor the listener's address,
    /// nor allowed.
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
            Denied::Host(h) => format!(
                "host {h:?} is not allowed: name flowtap by a loopback name or the address it \
                 listens on, or allow the name with --allowed-host"
            ),
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header value: the scheme
/// in any case (RFC 9110 §11.1), one or more spaces after it (RFC 6750
/// §2.1).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(b"Bearer".len())?;
    if !scheme.eq_ignore_ascii_case(b"Bearer") || !rest.starts_with(b" ") {
        return None;
    }
    Some(rest.trim_ascii_start())
}

impl AccessConfig {
    /// Checks a request for `route` that reached the listener at `local`.
    pub fn check(
        &self,
        route: Route,
        headers: &HeaderMap,
        local: std::net::IpAddr,
    ) -> Result<(), Denied> {
        self.check_origin_and_host(headers, local)?;
        if let Some(token) = &self.token
            && route.carries_flow_data()
        {
            let given = headers
                .get(AUTHORIZATION)
                .and_then(|v| bearer_token(v.as_bytes()))
                .unwrap_or_default();
            if !constant_time_eq(given, token.as_bytes()) {
                return Err(Denied::Unauthorized);
            }
        }
        Ok(())
    }

    /// The checks a browser's CORS preflight gets (it carries no token:
    /// browsers send none with one; the request after it must).
    pub fn check_origin_and_host(
        &self,
        headers: &HeaderMap,
        local: std::net::IpAddr,
    ) -> Result<(), Denied> {
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            if !self.origin_allowed(&origin) && !same_origin(&origin, headers) {
                return Err(Denied::Origin(origin));
            }
        }
        if let Some(host) = headers.get(HOST) {
            let host = String::from_utf8_lossy(host.as_bytes()).into_owned();
            if !self.host_allowed(strip_port(&host), local) {
                return Err(Denied::Host(host));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, name: &str, local: std::net::IpAddr) -> bool {
        // Canonical forms: on a listener of `[::]` an IPv4 client's
        // connection has a mapped local address (`::ffff:198.18.0.5`),
        // which its Host header names as 198.18.0.5.
        is_loopback_name(name)
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.to_canonical() == local.to_canonical())
            || self.allowed_hosts.iter().any(|h| {
                h == "*"
                    || h.eq_ignore_ascii_case(name)
                    // An address however written (`2001:0db8::1`).
                    || h.parse::<std::net::IpAddr>()
                        .is_ok_and(|a| name.parse::<std::net::IpAddr>() == Ok(a))
            })
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

/// Whether a page of flowtap's own (the service map) sent the request: its
/// origin names the host the request names, which the Host check vets.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
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

    const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

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
        assert!(open.check(Route::of("/mcp"), &headers(&[]), LOCAL).is_ok());
        for ok in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://[::1]:8898",
            "http://LOCALHOST",
        ] {
            assert!(
                open.check(Route::of("/mcp"), &headers(&[("origin", ok)]), LOCAL)
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
                open.check(Route::of("/mcp"), &headers(&[("origin", bad)]), LOCAL)
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
                    &headers(&[("origin", "https://app.example")]),
                    LOCAL
                )
                .is_ok()
        );

        let lo = AccessConfig::default();
        let host = |config: &AccessConfig, h: &'static str, local: &str| {
            let local = local.parse().unwrap();
            config.check(Route::of("/mcp"), &headers(&[("host", h)]), local)
        };
        assert!(host(&lo, "127.0.0.1:8898", "127.0.0.1").is_ok());
        assert!(host(&lo, "[::1]:1", "::1").is_ok());
        assert!(host(&lo, "localhost", "198.18.0.5").is_ok());
        let rebound = host(&lo, "rebound.example:8898", "127.0.0.1");
        assert_eq!(rebound.unwrap_err().status(), 403);
        // On another address: that address, not another one, nor a name.
        assert!(host(&lo, "198.18.0.5:8898", "198.18.0.5").is_ok());
        assert!(host(&lo, "[2001:db8::5]:8898", "2001:db8::5").is_ok());
        assert!(host(&lo, "198.18.0.6:8898", "198.18.0.5").is_err());
        // A listener of `[::]` reached over IPv4 (the manifests' probes,
        // scrapes and the hub's pulls by address).
        assert!(host(&lo, "198.18.0.5:8899", "::ffff:198.18.0.5").is_ok());
        assert!(host(&lo, "198.18.0.6:8899", "::ffff:198.18.0.5").is_err());
        assert!(host(&lo, "flowtap.example:8898", "198.18.0.5").is_err());
        let named = AccessConfig {
            allowed_hosts: vec!["flowtap.example".into()],
            ..AccessConfig::default()
        };
        assert!(host(&named, "FLOWTAP.example:8898", "198.18.0.5").is_ok());
        assert!(host(&named, "other.example", "198.18.0.5").is_err());
        // The service map's own requests: same origin as the host they name,
        // which must itself be allowed.
        let from_page = |origin: &'static str, h: &'static str| {
            let local = "198.18.0.5".parse().unwrap();
            lo.check(
                Route::of("/mcp/flows"),
                &headers(&[("origin", origin), ("host", h)]),
                local,
            )
        };
        assert!(from_page("http://198.18.0.5:8898", "198.18.0.5:8898").is_ok());
        assert!(from_page("http://198.18.0.5:9999", "198.18.0.5:8898").is_err());
        assert!(from_page("http://flowtap.example:8898", "flowtap.example:8898").is_err());

        let token = AccessConfig {
            token: Some("s3cret".into()),
            ..AccessConfig::default()
        };
        assert_eq!(
            token.check(Route::of("/mcp"), &headers(&[]), LOCAL),
            Err(Denied::Unauthorized)
        );
        assert_eq!(
            token.check(
                Route::of("/mcp/flows"),
                &headers(&[("authorization", "Bearer s3cre")]),
                LOCAL
            ),
            Err(Denied::Unauthorized)
        );
        assert_eq!(
            token.check(
                Route::of("/mcp/flows/summary"),
                &headers(&[("authorization", "Bearer s3cret!")]),
                LOCAL
            ),
            Err(Denied::Unauthorized)
        );
        // The scheme in any case, one or more spaces after it.
        for given in ["bearer s3cret", "BEARER  s3cret"] {
            let h = headers(&[("authorization", given)]);
            assert!(token.check(Route::of("/mcp"), &h, LOCAL).is_ok(), "{given}");
        }
        for given in ["Bearers3cret", "Basic s3cret", "Bearer"] {
            let h = headers(&[("authorization", given)]);
            assert_eq!(
                token.check(Route::of("/mcp"), &h, LOCAL),
                Err(Denied::Unauthorized),
                "{given}"
            );
        }
        assert!(
            token
                .check(
                    Route::of("/mcp/flows"),
                    &headers(&[("authorization", "Bearer s3cret")]),
                    LOCAL
                )
                .is_ok()
        );
        // The service map's page holds no data; what it fetches needs the token.
        assert!(token.check(Route::of("/"), &headers(&[]), LOCAL).is_ok());
        assert!(
            token
                .check(Route::of("/healthz"), &headers(&[]), LOCAL)
                .is_ok()
        );
        assert!(
            token
                .check(Route::of("/metrics"), &headers(&[]), LOCAL)
                .is_ok()
        );
    }
}
