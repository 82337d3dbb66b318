//! Query parameters of `GET /mcp/flows`, parsed and validated in one place
//! so that HTTP, `--dump` and MCP tool calls reject the same mistakes.

use std::fmt;

use ipnetwork::IpNetwork;
use pipeline::packet::L4Proto;

/// How each flow is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// The reference's LLM-oriented shape with totals.
    #[default]
    Compact,
    /// Compact plus rates, timestamps, container ids, external marks.
    Full,
    /// flowtap's internal record with its native field names.
    Raw,
}

/// What flows are merged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aggregate {
    Pod,
    Namespace,
    Node,
    Service,
}

/// The order of the returned flows (all descending).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SortKey {
    #[default]
    Bytes,
    Pkts,
    Pps,
    /// The larger of the two handshake legs' p99 (SYN -> ACK when the
    /// handshake completed); flows without one come last.
    HandshakeP99,
    /// TCP retransmissions, both sides.
    Retransmits,
    /// Failed TCP connections: refused, unanswered and reset.
    Failed,
    /// RST segments, both sides.
    Rsts,
}

/// Flows returned when the query gives no `limit`.
pub const DEFAULT_LIMIT: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowQuery {
    pub format: Format,
    pub limit: usize,
    pub aggregate: Option<Aggregate>,
    pub l4proto: Option<L4Proto>,
    pub ip: Option<IpNetwork>,
    pub ns: Option<String>,
    pub pod: Option<String>,
    pub svc: Option<String>,
    pub sort: SortKey,
    pub min_handshake_p99_us: Option<u64>,
    pub min_failed: Option<u64>,
}

impl Default for FlowQuery {
    fn default() -> Self {
        FlowQuery {
            format: Format::Compact,
            limit: DEFAULT_LIMIT,
            aggregate: None,
            l4proto: None,
            ip: None,
            ns: None,
            pod: None,
            svc: None,
            sort: SortKey::Bytes,
            min_handshake_p99_us: None,
            min_failed: None,
        }
    }
}

/// A request the API refuses, with the parameter at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub parameter: Option<String>,
}

impl ApiError {
    pub fn bad_parameter(parameter: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            parameter: Some(parameter.to_owned()),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.parameter {
            Some(p) => write!(f, "{} (parameter {p})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// One parameter: its name, its accepted values (for messages and schemas),
/// and what it means.
pub struct ParamDoc {
    pub name: &'static str,
    /// The accepted values of a choice; empty for free text and integers.
    pub values: &'static [&'static str],
    /// A non-negative integer rather than text.
    pub integer: bool,
    pub description: &'static str,
}

/// Every parameter of `/mcp/flows`, the single list that error messages,
/// the README and the MCP tool schema are written from.
pub const PARAMS: &[ParamDoc] = &[
    ParamDoc {
        name: "format",
        values: &["compact", "full", "raw"],
        integer: false,
        description: "compact (default): the reference shape; full: adds rates, timestamps, container ids and external marks; raw: flowtap's internal record",
    },
    ParamDoc {
        name: "aggregate",
        values: &["pod", "namespace", "node", "service"],
        integer: false,
        description: "merge flows whose client and server share this attribute (and protocol); endpoints without it stay grouped by IP",
    },
    ParamDoc {
        name: "l4proto",
        values: &["tcp", "udp"],
        integer: false,
        description: "only this transport protocol",
    },
    ParamDoc {
        name: "ip",
        values: &[],
        integer: false,
        description: "an IP address or CIDR; flows with either endpoint inside",
    },
    ParamDoc {
        name: "ns",
        values: &[],
        integer: false,
        description: "namespace of either endpoint, by its exact name",
    },
    ParamDoc {
        name: "pod",
        values: &[],
        integer: false,
        description: "pod of either endpoint: the exact name or a prefix",
    },
    ParamDoc {
        name: "svc",
        values: &[],
        integer: false,
        description: "service of either endpoint, by its exact name",
    },
    ParamDoc {
        name: "limit",
        values: &[],
        integer: true,
        description: "flows to return (default 100); total counts all matches",
    },
    ParamDoc {
        name: "sort",
        values: &[
            "bytes",
            "pkts",
            "pps",
            "handshake_p99",
            "retransmits",
            "failed",
            "rsts",
        ],
        integer: false,
        description: "order, descending (default bytes); handshake_p99 is the larger leg's p99; retransmits and rsts count both sides' TCP retransmissions and RSTs; failed counts refused, unanswered and reset connections",
    },
    ParamDoc {
        name: "min_handshake_p99_us",
        values: &[],
        integer: true,
        description: "only TCP flows whose handshake p99 (the larger leg) is at least this many microseconds; with aggregate, only groups whose merged p99 is (the group's totals count all its flows)",
    },
    ParamDoc {
        name: "min_failed",
        values: &[],
        integer: true,
        description: "only flows with at least this many failed TCP connections (refused + unanswered + reset); with aggregate, only groups with that many among their flows (the group's totals count all its flows)",
    },
];

pub(crate) fn choice<T: Copy>(
    name: &str,
    value: &str,
    options: &[(&str, T)],
) -> Result<T, ApiError> {
    options
        .iter()
        .find(|(v, _)| *v == value)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let allowed: Vec<&str> = options.iter().map(|(v, _)| *v).collect();
            ApiError::bad_parameter(
                name,
                format!(
                    "invalid {name} {value:?}; expected one of: {}",
                    allowed.join(", ")
                ),
            )
        })
}

pub(crate) fn non_empty(name: &str, value: &str) -> Result<String, ApiError> {
    if value.is_empty() {
        return Err(ApiError::bad_parameter(
            name,
            format!("{name} must not be empty"),
        ));
    }
    Ok(value.to_owned())
}

pub(crate) fn unsigned(name: &str, value: &str) -> Result<u64, ApiError> {
    // Digits only: Rust's parser also takes a leading `+`.
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| value.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::bad_parameter(
                name,
                format!("{name} must be a non-negative integer, got {value:?}"),
            )
        })
}

/// A query string's (name, value) pairs, decoded as an HTML form's
/// (`application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte; a
/// `%` not followed by two hex digits stands for itself). Every endpoint's
/// parameters come through here, so each refuses, naming the parameter, a
/// name or value whose bytes are not UTF-8 (rather than matching nothing
/// with U+FFFD in it) and a parameter given twice (rather than letting the
/// last win).
pub fn query_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for piece in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        let name = form_decoded(name).map_err(|lossy| {
            ApiError::bad_parameter(&lossy, "parameter name is not UTF-8 once decoded")
        })?;
        let value = form_decoded(value).map_err(|_| {
            ApiError::bad_parameter(&name, format!("{name}'s value is not UTF-8 once decoded"))
        })?;
        if pairs.iter().any(|(seen, _)| *seen == name) {
            return Err(ApiError::bad_parameter(
                &name,
                format!("parameter {name} given more than once"),
            ));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// One name or value of a query string, decoded; its lossy form when the
/// bytes are not UTF-8.
fn form_decoded(encoded: &str) -> Result<String, String> {
    let spaced = encoded.replace('+', " ");
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(&spaced).collect();
    String::from_utf8(bytes).map_err(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Parses the query string of `/mcp/flows`.
pub fn parse_flow_query(raw: &str) -> Result<FlowQuery, ApiError> {
    let pairs = query_pairs(raw)?;
    parse_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

/// Parses name/value pairs (from a query string, through [`query_pairs`],
/// or from tool arguments, a JSON object's, each named once).
pub fn parse_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<FlowQuery, ApiError> {
    let mut q = FlowQuery::default();
    for (name, value) in pairs {
        match name {
            "format" => {
                q.format = choice(
                    name,
                    value,
                    &[
                        ("compact", Format::Compact),
                        ("full", Format::Full),
                        ("raw", Format::Raw),
                    ],
                )?
            }
            "aggregate" => {
                q.aggregate = Some(choice(
                    name,
                    value,
                    &[
                        ("pod", Aggregate::Pod),
                        ("namespace", Aggregate::Namespace),
                        ("node", Aggregate::Node),
                        ("service", Aggregate::Service),
                    ],
                )?)
            }
            "l4proto" => {
                q.l4proto = Some(choice(
                    name,
                    value,
                    &[("tcp", L4Proto::Tcp), ("udp", L4Proto::Udp)],
                )?)
            }
            "ip" => {
                q.ip = Some(ip_filter(value).ok_or_else(|| {
                    ApiError::bad_parameter(
                        name,
                        format!("ip must be an IP address or CIDR, got {value:?}"),
                    )
                })?)
            }
            "ns" => q.ns = Some(non_empty(name, value)?),
            "pod" => q.pod = Some(non_empty(name, value)?),
            "svc" => q.svc = Some(non_empty(name, value)?),
            "limit" => q.limit = usize::try_from(unsigned(name, value)?).unwrap_or(usize::MAX),
            "sort" => {
                q.sort = choice(
                    name,
                    value,
                    &[
                        ("bytes", SortKey::Bytes),
                        ("pkts", SortKey::Pkts),
                        ("pps", SortKey::Pps),
                        ("handshake_p99", SortKey::HandshakeP99),
                        ("retransmits", SortKey::Retransmits),
                        ("failed", SortKey::Failed),
                        ("rsts", SortKey::Rsts),
                    ],
                )?
            }
            "min_handshake_p99_us" => q.min_handshake_p99_us = Some(unsigned(name, value)?),
            "min_failed" => q.min_failed = Some(unsigned(name, value)?),
            other => {
                let known: Vec<&str> = PARAMS.iter().map(|p| p.name).collect();
                return Err(ApiError::bad_parameter(
                    other,
                    format!("unknown parameter {other:?}; known: {}", known.join(", ")),
                ));
            }
        }
    }
    if q.format == Format::Raw && q.aggregate.is_some() {
        return Err(ApiError::bad_parameter(
            "aggregate",
            "format=raw lists flowtap's per-flow records and cannot be aggregated; use compact or full",
        ));
    }
    Ok(q)
}

/// An `ip` filter: an address or a CIDR, also as URLs write an IPv6
/// address (`[2001:db8::1]`), and an IPv4-mapped IPv6 address
/// (`::ffff:198.18.0.1`, as dual-stack sockets report IPv4 peers) as the
/// IPv4 address it stands for, which is how flows hold it.
fn ip_filter(text: &str) -> Option<IpNetwork> {
    let (address, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let address = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    let net: IpNetwork = match prefix {
        Some(p) => format!("{address}/{p}").parse().ok()?,
        None => address.parse().ok()?,
    };
    Some(crate::cluster::as_ipv4_if_mapped(net))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_filters_as_clients_write_them() {
        let net = |t: &str| ip_filter(t).map(|n| n.to_string());
        assert_eq!(net("198.18.0.1").as_deref(), Some("198.18.0.1/32"));
        assert_eq!(net("[2001:db8::1]").as_deref(), Some("2001:db8::1/128"));
        assert_eq!(net("[2001:db8::]/32").as_deref(), Some("2001:db8::/32"));
        assert_eq!(net("::ffff:198.18.0.1").as_deref(), Some("198.18.0.1/32"));
        assert_eq!(
            net("::ffff:198.18.0.0/112").as_deref(),
            Some("198.18.0.0/16")
        );
        assert_eq!(net("2001:db8::/32").as_deref(), Some("2001:db8::/32"));
        assert_eq!(net("[198.18.0.1"), None);
        assert_eq!(net("fe80::1%eth0"), None);
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(parse_flow_query("").unwrap(), FlowQuery::default());
        let q = parse_flow_query("format=full&limit=1000000&aggregate=namespace&l4proto=udp&ip=10.0.0.0%2F8&ns=kube&pod=front&svc=web&sort=handshake_p99&min_handshake_p99_us=10000").unwrap();
        assert_eq!((q.format, q.limit), (Format::Full, 1_000_000));
        assert_eq!(q.aggregate, Some(Aggregate::Namespace));
        assert_eq!(q.l4proto, Some(L4Proto::Udp));
        assert_eq!(q.ip, Some("10.0.0.0/8".parse().unwrap()));
        assert_eq!(
            (q.ns.as_deref(), q.pod.as_deref(), q.svc.as_deref()),
            (Some("kube"), Some("front"), Some("web"))
        );
        assert_eq!(
            (q.sort, q.min_handshake_p99_us),
            (SortKey::HandshakeP99, Some(10_000))
        );
        assert_eq!(
            parse_flow_query("ip=2001:db8::1").unwrap().ip,
            Some("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn errors_name_the_parameter() {
        for (q, param) in [
            ("format=xml", "format"),
            ("limit=-1", "limit"),
            ("limit=ten", "limit"),
            ("limit=", "limit"),
            ("aggregate=cluster", "aggregate"),
            ("l4proto=sctp", "l4proto"),
            ("ip=10.0.0.300", "ip"),
            ("ip=10.0.0.0%2F33", "ip"),
            ("ns=", "ns"),
            ("sort=latency", "sort"),
            ("min_handshake_p99_us=fast", "min_handshake_p99_us"),
            ("bogus=1", "bogus"),
            ("limit=1&limit=2", "limit"),
            ("%6Cimit=1&limit=2", "limit"),
            ("format=raw&aggregate=pod", "aggregate"),
            ("ns=%FF", "ns"),
            ("ns=caf%C3", "ns"),
            ("%FF=1", "\u{FFFD}"),
        ] {
            let err = parse_flow_query(q).unwrap_err();
            assert_eq!(err.status, 400);
            assert_eq!(err.parameter.as_deref(), Some(param), "{q}");
        }
    }

    #[test]
    fn query_strings_decode_as_forms_do() {
        let pairs = query_pairs("ns=a+b&&pod=%41%zz&svc=caf%C3%A9&limit").unwrap();
        let want = [
            ("ns", "a b"),
            ("pod", "A%zz"),
            ("svc", "café"),
            ("limit", ""),
        ];
        assert_eq!(
            pairs,
            want.map(|(n, v)| (n.to_owned(), v.to_owned())).to_vec()
        );
    }

    #[test]
    fn every_endpoints_parameters_come_through_one_decoding() {
        for (path, q, param) in [
            (super::super::workloads::PATH, "limit=1&limit=2", "limit"),
            (super::super::workloads::PATH, "namespace=", "namespace"),
            (super::super::workloads::PATH, "namespace=%FF", "namespace"),
            (super::super::SUMMARY_PATH, "%FF", "\u{FFFD}"),
        ] {
            let Err(err) = super::super::plan(path, q, 1000) else {
                panic!("{path}?{q} planned");
            };
            assert_eq!(err.status, 400);
            assert_eq!(err.parameter.as_deref(), Some(param), "{path}?{q}");
        }
    }
}
