//! The MCP tools: the two L4 endpoints as tool calls, with schemas and
//! descriptions written for a model. A call answers exactly what the REST
//! endpoint answers for the same parameters and snapshot.

use serde_json::{Map, Value, json};

use super::jsonrpc::RpcError;
use super::version::Version;
use crate::rest::{self, query};
use crate::view::View;

pub const LIST_FLOWS: &str = "list_l4_flows";
/// The most flows one tool call returns: more would not fit a model's
/// context; `total` and `truncated` tell it to narrow the query.
pub const MAX_LIMIT: usize = 1000;
pub const SUMMARY: &str = "get_l4_flow_summary";
pub const WORKLOADS: &str = "list_workloads";

/// How a model should read the numbers; shared by both tools.
const FIELD_GUIDE: &str = "\
Roles and counting (flowtap watches a mirror/SPAN port or a node's interface, so it sees both directions of every packet once): \
the client is the endpoint that sent the connection's SYN; without a SYN (UDP, or a capture that started mid-connection) \
a port of a well-known service (dns 53, http 80, https 443, nfs 2049, postgres 5432... where only one side has one) is \
the server's; otherwise the first sender is the client unless its port is in a lower tier than the receiver's \
(well-known < 1024 < registered < 32768 <= ephemeral), so a DNS reply still makes port 53 the server. \
A flow is (proto, client IP, server IP, server port): all connections between the two addresses on that server port. \
client_stats.tx_* = packets/bytes the client sent (= server_stats.rx_*), client_stats.rx_* = what it received. \
totals.pkts/bytes count each wire packet once (Kubeshark sums two endpoints' views, which doubles them). \
Bytes are frame lengths on the wire (link header included, no FCS). pps = packets per second, bps = bits per second, \
averaged over the last 75-100% of the rate window (default 10 s) ending at the snapshot, starting no earlier than \
the capture's first packet: a burst shorter than the window reads as its packets over the window (two packets 0.1 s \
apart read as about 0.2 pps once the capture is older than the window, not 20), and an idle flow decays to 0. \
TCP handshake fields are microseconds, p50/p90/p99 over the flow's connections in the RTT window: \
client_stats.tcp_handshake_* is SYN -> SYN-ACK (the client's view: the round trip to the server); \
server_stats.tcp_handshake_* is SYN -> the ACK completing the handshake (the server's view, which adds the client's \
turnaround). Times are taken where flowtap watches, so on a mirror port they cover the path beyond the mirror point. \
Absent for UDP and for TCP flows whose handshake was not seen. \
Interpretation: < 1000 us excellent (same node or datacenter); 1000-10000 us good (typical cross-node); \
10000-100000 us elevated (congestion or cross-AZ); > 100000 us high latency (cross-region or network trouble). \
Fast handshake + slow service = application issue; slow handshake = network issue. High p99 with normal p50 = \
intermittent hiccups; one source slow to everything = that source's node; every source slow to one destination = \
the destination (or its node) is overloaded. \
format=full: mirror names the mirror session a flow seen through a tunnel came through (encap: vxlan, geneve, gre, \
erspan_i/ii/iii...; with its vni, key, session or id when the encapsulation has one). \
Kubernetes fields (pod, ns, svc, node) appear only when flowtap's inventory maps the IP; a bare IP is an external or \
host-network endpoint, and a flow without pod/ns does not match the pod/ns filters. \
TCP health (format=full; in compact only for flows with failed connections or retransmissions, and only the \
non-zero counters): client_stats/server_stats.tcp_retransmits = segments that side sent again (sequence space it had \
already sent, as Wireshark's retransmission analysis counts them; keep-alives and zero-window probes excluded), \
tcp_rsts = RST segments it sent, tcp_zero_windows = segments in which it advertised a zero receive window (its \
application is not reading). tcp_connections counts the flow's connections by outcome: established (handshake \
completed), refused (the SYN answered by a RST or an ICMP port unreachable or administratively prohibited: nothing listening, \
a Service without endpoints, or a policy rejecting), unanswered (SYN with no \
completed handshake before the SYN timeout: dropped on the path, a firewall, or the server overloaded; one given up \
earlier to make room in a full table counts in no outcome), reset \
(ended by a RST after the server answered), closed (FINs both ways), open (established, not ended yet). Connections \
that started before the capture count in reset/closed/open but not in established. failed = refused + unanswered + \
reset; sort=failed, min_failed=N, sort=retransmits and sort=rsts find them. Retransmissions with normal handshakes \
point at loss or congestion on the path; a server's zero windows at a slow application. \
Coverage: every answer has a coverage object saying which vantage points it covers (one flowtap, or every agent a \
flowtap hub knows of, pulled or not, such as an agent pod that is not ready: agents_expected, agents_answered, agents_missing with each one's error, age_s of each one's \
data, growing when an agent stops publishing) and what they lost (capture_drops: frames the kernel dropped before flowtap read them; handoff_drops; \
flows_evicted; packets_in_no_flow). Before concluding that two endpoints do not talk, check it: with agents_missing \
non-empty or losses above zero, absent traffic may simply not have been seen. Nor does coverage show what a \
vantage point cannot see: a flowtap on a node's uplink does not see traffic between pods of the same node, and sees a \
pod's traffic to outside the cluster as its node's where the node masquerades it. From a hub, format=full lists in seen_by \
the agents (nodes) that saw each flow; a connection seen on both its nodes is counted once.";

fn flows_description() -> String {
    format!(
        "List the L4 (TCP/UDP) flows flowtap currently tracks: who talks to whom, on which server port, how much, how fast, \
and how long TCP handshakes take. Use it for dependency mapping ('what does X talk to?': filter by pod/svc/ns and \
aggregate=service), bandwidth questions (sort=bytes or pps), and network health (sort=handshake_p99, \
min_handshake_p99_us=10000 for 'handshakes over 10 ms'; sort=failed or min_failed=1 for refused, unanswered or reset \
connections; sort=retransmits for loss). Filters combine with AND and match either endpoint. \
Results are sorted descending and cut at limit (default 100, at most 1000); total counts every match and truncated says whether \
some were cut. Aggregated entries keep only the endpoint fields their flows share and merge handshake samples. \
Equivalent to GET /mcp/flows with the same parameters.\n\n{FIELD_GUIDE}"
    )
}

fn summary_description() -> String {
    format!(
        "An overview of all current flows: counts of TCP/UDP flows, total bytes and packets, distinct clients and servers, \
the 10 heaviest (client, server) pairs by bytes and by packets (named by pod where known, else IP), flows per \
namespace (a flow between two namespaces counts in both), and cross-namespace traffic (client namespace -> server \
namespace, with flows and bytes), plus external_bytes (traffic to servers outside the cluster CIDRs) when flowtap knows \
them; TCP health totals (tcp_retransmits, tcp_rsts, tcp_zero_windows, tcp_connections by outcome) and the 10 flows \
with the most failed connections (top_by_failed) and retransmissions (top_by_retransmits). Start here for 'give me an overview', 'what crosses namespaces?', or 'which connections use the most bandwidth?', \
then drill down with list_l4_flows. Takes no arguments. Equivalent to GET /mcp/flows/summary.\n\n{FIELD_GUIDE}"
    )
}

/// The JSON Schema of `list_l4_flows`'s arguments: every query parameter.
fn flows_input_schema() -> Value {
    let mut properties = Map::new();
    for p in query::PARAMS {
        let mut schema = if p.integer {
            json!({"type": "integer", "minimum": 0})
        } else if p.values.is_empty() {
            // An empty filter is refused (it would match nothing).
            json!({"type": "string", "minLength": 1})
        } else {
            json!({"type": "string", "enum": p.values})
        };
        if p.name == "limit" {
            schema["maximum"] = json!(MAX_LIMIT);
        }
        schema["description"] = json!(p.description);
        properties.insert(p.name.to_owned(), schema);
    }
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

fn endpoint_schema(server: bool) -> Value {
    let mut props = json!({
        "ip": {"type": "string", "description": "IPv4 or IPv6 address"},
        "pod": {"type": "string"},
        "ns": {"type": "string", "description": "namespace"},
        "svc": {"type": "string", "description": "service (for a server: the one exposing this port)"},
        "node": {"type": "string"},
        "container_id": {"type": "string", "description": "format=full"},
        "external": {"type": "boolean", "description": "format=full: outside every cluster CIDR, or NAT64"},
        "nat64_ipv4": {"type": "string", "description": "format=full: the IPv4 address a 64:ff9b::/96 address embeds"}
    });
    if server {
        props["port"] = json!({"type": "integer", "description": "server port"});
    }
    json!({"type": "object", "properties": props})
}

fn stats_schema() -> Value {
    let count = json!({"type": "integer", "minimum": 0});
    let rate = json!({"type": "number", "description": "format=full"});
    let us = json!({"type": "integer", "description": "microseconds; TCP only"});
    json!({
        "type": "object",
        "properties": {
            "tx_pkts": count, "rx_pkts": count, "tx_bytes": count, "rx_bytes": count,
            "tx_pps": rate, "rx_pps": rate, "tx_bps": rate, "rx_bps": rate,
            "timestamp": {"type": "string", "description": "format=full: last packet, ISO 8601"},
            "tcp_handshake_p50_us": us, "tcp_handshake_p90_us": us, "tcp_handshake_p99_us": us,
            "tcp_retransmits": {"type": "integer", "minimum": 0, "description": "TCP segments this side sent again"},
            "tcp_rsts": {"type": "integer", "minimum": 0, "description": "RST segments this side sent"},
            "tcp_zero_windows": {"type": "integer", "minimum": 0, "description": "segments advertising a zero window"}
        }
    })
}

/// `format=full`'s mirror session: its encapsulation and, where it has
/// one, its id under the encapsulation's own name.
fn mirror_schema() -> Value {
    let encaps: Vec<&str> = pipeline::wire::decap::Encap::ALL
        .iter()
        .map(|e| e.name())
        .collect();
    json!({
        "type": "object",
        "description": "format=full: the mirror session (tunnel) the flow came through",
        "required": ["encap"],
        "properties": {"encap": {"type": "string", "enum": encaps}},
        "additionalProperties": {"type": "integer", "minimum": 0}
    })
}

fn connections_schema() -> Value {
    let count = json!({"type": "integer", "minimum": 0});
    json!({
        "type": "object",
        "description": "TCP connections by outcome",
        "properties": {
            "established": count, "refused": count, "unanswered": count,
            "reset": count, "closed": count, "open": count
        }
    })
}

fn flows_output_schema() -> Value {
    json!({
        "type": "object",
        "required": ["flows", "total", "truncated"],
        "properties": {
            "flows": {
                "type": "array",
                "description": "compact/full entries as described; format=raw entries are flowtap's records \
    (client_ip, server_ip, server_port, c2s_*/s2c_* counts and rates, first/last_seen_ns, connections, syn_to_synack, syn_to_ack)",
                "items": {
                    "type": "object",
                    "properties": {
                        "proto": {"type": "string", "enum": ["tcp", "udp"]},
                        "client": endpoint_schema(false),
                        "server": endpoint_schema(true),
                        "client_stats": stats_schema(),
                        "server_stats": stats_schema(),
                        "totals": {
                            "type": "object",
                            "properties": {
                                "pkts": {"type": "integer"}, "bytes": {"type": "integer"},
                                "pps": {"type": "number"}, "bps": {"type": "number"}
                            }
                        },
                        "tcp_connections": connections_schema(),
                        "merged_flows": {"type": "integer", "description": "format=full with aggregate: flows merged"},
                        "mirror": mirror_schema(),
                        "seen_by": {
                            "type": "array", "items": {"type": "string"},
                            "description": "format=full, from a hub: the agents (nodes) that saw the flow"
                        }
                    }
                }
            },
            "total": {"type": "integer", "description": "matching entries before limit"},
            "truncated": {"type": "boolean", "description": "true when limit cut the list"},
            "coverage": coverage_schema()
        }
    })
}

fn summary_output_schema() -> Value {
    let top_flow = |what: &str| {
        json!({
            "type": "array",
            "items": {
                "type": "object",
                "required": ["client_pod", "server_pod", "server_port", what],
                "properties": {
                    "client_pod": {"type": "string", "description": "pod, or IP when unknown"},
                    "server_pod": {"type": "string", "description": "pod, or IP when unknown"},
                    "server_port": {"type": "integer"},
                    what: {"type": "integer"}
                }
            }
        })
    };
    let pair = |what: &str| {
        json!({
            "type": "array",
            "items": {
                "type": "object",
                "required": ["client_pod", "server_pod", what],
                "properties": {
                    "client_pod": {"type": "string", "description": "pod, or IP when unknown"},
                    "server_pod": {"type": "string", "description": "pod, or IP when unknown"},
                    what: {"type": "integer"}
                }
            }
        })
    };
    json!({
        "type": "object",
        "required": ["total_flows", "tcp_flows", "udp_flows", "total_bytes", "total_pkts",
                     "unique_clients", "unique_servers", "top_by_bytes", "top_by_pkts",
                     "by_namespace", "cross_namespace"],
        "properties": {
            "total_flows": {"type": "integer"},
            "tcp_flows": {"type": "integer"},
            "udp_flows": {"type": "integer"},
            "total_bytes": {"type": "integer"},
            "total_pkts": {"type": "integer"},
            "unique_clients": {"type": "integer", "description": "distinct client IPs"},
            "unique_servers": {"type": "integer", "description": "distinct server IPs"},
            "top_by_bytes": pair("bytes"),
            "top_by_pkts": pair("pkts"),
            "by_namespace": {"type": "object", "additionalProperties": {"type": "integer"}},
            "cross_namespace": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["src_ns", "dst_ns", "flows", "bytes"],
                    "properties": {
                        "src_ns": {"type": "string"}, "dst_ns": {"type": "string"},
                        "flows": {"type": "integer"}, "bytes": {"type": "integer"}
                    }
                }
            },
            "external_bytes": {"type": "integer", "description": "bytes to servers outside the cluster CIDRs"},
            "tcp_retransmits": {"type": "integer"},
            "tcp_rsts": {"type": "integer"},
            "tcp_zero_windows": {"type": "integer"},
            "tcp_connections": connections_schema(),
            "top_by_failed": top_flow("failed"),
            "top_by_retransmits": top_flow("retransmits"),
            "coverage": coverage_schema()
        }
    })
}

fn coverage_schema() -> Value {
    let count = json!({"type": "integer", "minimum": 0});
    json!({
        "type": "object",
        "description": "which vantage points the answer covers and what they lost",
        "properties": {
            "agents_expected": count, "agents_answered": count,
            "agents_missing": {"type": "array", "items": {"type": "string"}},
            "capture_drops": count, "handoff_drops": count, "flows_evicted": count,
            "packets_in_no_flow": count,
            "agents": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "node": {"type": "string"},
                "answered": {"type": "boolean"}, "age_s": {"type": "number"},
                "error": {"type": "string"},
                "capture_drops": count, "handoff_drops": count, "flows_evicted": count,
                "packets_in_no_flow": count
            }}}
        }
    })
}

fn workloads_description() -> String {
    format!(
        "List every pod, service and namespace flowtap's Kubernetes names know, with the flows in (as server) and out \
(as client) of each (a service has flows in only: its pods' own connections out are the pods'), the bytes it received and sent, when its last packet was seen, and whether it is active. Use it \
for 'which pods in namespace X have no traffic right now?' (namespace=X, state=idle, kind=pod) or 'what is busiest?' \
(sort=bytes or sort=flows; the default order is by kind, namespace and name, and limit cuts in the order asked). \
A workload is active when some flow of the current snapshot has it as an endpoint; a flow stays in the snapshot until \
the idle timeout after its last packet, whether its connections closed or not: live, TCP 300 s and UDP 60 s unless \
flowtap's --tcp-timeout and --udp-timeout say otherwise; reading capture files, for the whole capture. So idle means \
no packet for at least that long, and a workload that just stopped stays active that long - and only where flowtap \
watches (check coverage). names_known is false when flowtap has no Kubernetes names (then nothing can be listed) or not all of them \
(its watch has not listed every kind: a list refused or failing; or objects left out at its bound), or they may be stale (a watch failing for a minute or \
more: pods made since unnamed, pods deleted since still listed): then what is missing or idle may only be unknown. \
Equivalent to GET {}.",
        rest::workloads::PATH
    )
}

fn workloads_input_schema() -> Value {
    let mut properties = Map::new();
    for (name, description) in rest::workloads::PARAMS {
        let mut schema = match *name {
            "limit" => json!({"type": "integer", "minimum": 0, "maximum": MAX_LIMIT}),
            "state" => json!({"type": "string", "enum": ["active", "idle", "all"]}),
            "kind" => json!({"type": "string", "enum": ["pod", "service", "namespace"]}),
            "sort" => {
                let names: Vec<&str> = rest::workloads::Sort::BY_NAME
                    .iter()
                    .map(|(n, _)| *n)
                    .collect();
                json!({"type": "string", "enum": names})
            }
            _ => json!({"type": "string", "minLength": 1}),
        };
        schema["description"] = json!(description);
        properties.insert((*name).to_owned(), schema);
    }
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

fn workloads_output_schema() -> Value {
    let count = json!({"type": "integer", "minimum": 0});
    json!({
        "type": "object",
        "required": ["workloads", "total", "truncated", "names_known", "coverage"],
        "properties": {
            "workloads": {"type": "array", "items": {"type": "object",
                "required": ["kind", "namespace", "name", "active", "flows_in", "flows_out", "bytes_in", "bytes_out"],
                "properties": {
                    "kind": {"type": "string", "enum": ["pod", "service", "namespace"]},
                    "namespace": {"type": "string"}, "name": {"type": "string"}, "node": {"type": "string"},
                    "active": {"type": "boolean"},
                    "flows_in": count, "flows_out": count, "bytes_in": count, "bytes_out": count,
                    "last_seen": {"type": "string", "description": "ISO 8601; absent when idle"}
                }}},
            "total": count,
            "truncated": {"type": "boolean"},
            "names_known": {"type": "boolean"},
            "coverage": coverage_schema()
        }
    })
}

fn tool(
    version: Version,
    name: &str,
    title: &str,
    description: String,
    input: Value,
    output: Value,
) -> Value {
    let mut t = json!({"name": name, "description": description, "inputSchema": input});
    if version.has_annotations() {
        t["annotations"] = json!({
            "title": title,
            "readOnlyHint": true,
            "destructiveHint": false,
            "idempotentHint": true,
            "openWorldHint": false
        });
    }
    if version.has_titles() {
        t["title"] = json!(title);
    }
    if version.has_structured_output() {
        t["outputSchema"] = output;
    }
    t
}

/// The `tools/list` result.
pub fn list(version: Version) -> Value {
    json!({"tools": [
        tool(version, LIST_FLOWS, "List L4 flows", flows_description(), flows_input_schema(), flows_output_schema()),
        tool(
            version,
            SUMMARY,
            "L4 connectivity summary",
            summary_description(),
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
            summary_output_schema(),
        ),
        tool(
            version,
            WORKLOADS,
            "Workloads, active and idle",
            workloads_description(),
            workloads_input_schema(),
            workloads_output_schema(),
        ),
    ]})
}

/// The `tools/call` result. Unknown tools are protocol errors; mistakes in
/// the arguments are tool errors (`isError`), which a model can read and fix.
pub fn call(view: &View, params: &Map<String, Value>, version: Version) -> Result<Value, RpcError> {
    let name = match params.get("name") {
        Some(Value::String(n)) => n.as_str(),
        _ => {
            return Err(RpcError::invalid_params(
                "tools/call needs the tool's \"name\"",
            ));
        }
    };
    let empty = Map::new();
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(a)) => a,
        // The request itself malformed (not a value of one argument): a
        // protocol error, as the spec has it since 2025-11-25.
        Some(_) => return Err(RpcError::invalid_params("\"arguments\" must be an object")),
    };
    let outcome = match name {
        LIST_FLOWS => list_flows(view, arguments),
        SUMMARY => summary(view, arguments),
        WORKLOADS => workloads(view, arguments),
        other => {
            return Err(RpcError::invalid_params(format!(
                "unknown tool {other:?}; tools: {LIST_FLOWS}, {SUMMARY}, {WORKLOADS}"
            )));
        }
    };
    Ok(match outcome {
        Ok(value) => tool_result(value, version),
        Err(message) => tool_error(&message),
    })
}

/// A tool's arguments as the (name, value) pairs of the REST query it
/// answers like: strings as they are, numbers for the parameters
/// `integer` names (written as integers: JSON Schema counts 1.0 as the
/// integer 1). Models send `null` for "not given", so a null is left out
/// when `known` names it; an unknown argument goes on, to be named by the
/// query's parser, whatever its value (not its value's type: the model
/// would be told to fix the type of an argument that does not exist).
fn argument_pairs(
    arguments: &Map<String, Value>,
    known: impl Fn(&str) -> bool,
    integer: impl Fn(&str) -> bool,
) -> Result<Vec<(&str, String)>, String> {
    let mut pairs = Vec::with_capacity(arguments.len());
    for (name, value) in arguments {
        let text = match value {
            Value::Null if known(name) => continue,
            _ if !known(name) => String::new(),
            Value::String(s) => s.clone(),
            Value::Number(n) if integer(name) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && (0.0..=MAX_EXACT_F64).contains(&f) => {
                    (f as u64).to_string()
                }
                _ => n.to_string(),
            },
            _ => {
                let want = if integer(name) {
                    "a non-negative integer"
                } else {
                    "a string"
                };
                return Err(format!("argument {name}: must be {want}, got {value}"));
            }
        };
        pairs.push((name.as_str(), text));
    }
    Ok(pairs)
}

/// The largest integer below which every integer is exact as an `f64`.
const MAX_EXACT_F64: f64 = 9_007_199_254_740_992.0;

/// A query's error as a tool error's text, naming the argument.
fn argument_error(e: query::ApiError) -> String {
    match &e.parameter {
        Some(p) => format!("argument {p}: {}", e.message),
        None => e.message,
    }
}

fn list_flows(view: &View, arguments: &Map<String, Value>) -> Result<Value, String> {
    let param = |name: &str| query::PARAMS.iter().find(|p| p.name == name);
    let pairs = argument_pairs(
        arguments,
        |name| param(name).is_some(),
        |name| param(name).is_some_and(|p| p.integer),
    )?;
    let q =
        query::parse_pairs(pairs.iter().map(|(n, v)| (*n, v.as_str()))).map_err(argument_error)?;
    if q.limit > MAX_LIMIT {
        return Err(format!(
            "argument limit: at most {MAX_LIMIT} flows per call; narrow the query (ns, pod, svc, ip, l4proto) or aggregate"
        ));
    }
    Ok(serde_json::to_value(rest::flows(view, &q)).expect("flows serialise"))
}

fn summary(view: &View, arguments: &Map<String, Value>) -> Result<Value, String> {
    if let Some(name) = arguments.keys().next() {
        return Err(format!("argument {name}: {SUMMARY} takes no arguments"));
    }
    Ok(serde_json::from_slice(&view.summary_json()).expect("the summary is JSON"))
}

fn workloads(view: &View, arguments: &Map<String, Value>) -> Result<Value, String> {
    let pairs = argument_pairs(
        arguments,
        |name| rest::workloads::PARAMS.iter().any(|(n, _)| *n == name),
        |name| name == "limit",
    )?;
    let q = rest::workloads::parse(pairs.iter().map(|(n, v)| (*n, v.as_str())))
        .map_err(argument_error)?;
    if q.limit > MAX_LIMIT {
        return Err(format!(
            "argument limit: at most {MAX_LIMIT} workloads per call; narrow by namespace, kind or state"
        ));
    }
    Ok(serde_json::to_value(rest::workloads::answer(view, &q)).expect("workloads serialise"))
}

fn tool_result(value: Value, version: Version) -> Value {
    let text = value.to_string();
    let mut result = json!({"content": [{"type": "text", "text": text}], "isError": false});
    if version.has_structured_output() {
        result["structuredContent"] = value;
    }
    result
}

pub(super) fn tool_error(message: &str) -> Value {
    json!({"content": [{"type": "text", "text": message}], "isError": true})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_schema_lists_every_rest_parameter() {
        let schema = flows_input_schema();
        for p in query::PARAMS {
            assert!(schema["properties"][p.name].is_object(), "{}", p.name);
        }
        assert_eq!(schema["properties"]["limit"]["type"], "integer");
        assert_eq!(
            schema["properties"]["sort"]["enum"],
            json!([
                "bytes",
                "pkts",
                "pps",
                "handshake_p99",
                "retransmits",
                "failed",
                "rsts"
            ])
        );
    }

    #[test]
    fn argument_mistakes_are_tool_errors_naming_the_argument() {
        let view = View::empty();
        let v = Version::LATEST_HANDSHAKE;
        for (a, name) in [
            (json!({"limit": "ten"}), "limit"),
            (json!({"limit": -1}), "limit"),
            (json!({"limit": 1.5}), "limit"),
            (json!({"limit": 1001}), "limit"),
            (json!({"sort": "latency"}), "sort"),
            (json!({"ns": 3}), "ns"),
            (json!({"colour": "blue"}), "colour"),
            (json!({"colour": null}), "colour"),
            (json!({"colour": 1}), "colour"),
        ] {
            let r = call(&view, &args(json!({"name": LIST_FLOWS, "arguments": a})), v).unwrap();
            assert_eq!(r["isError"], true, "{r}");
            let text = r["content"][0]["text"].as_str().unwrap();
            assert!(text.contains(&format!("argument {name}")), "{text}");
        }
        // An unknown argument is named unknown whatever its value (a number
        // was answered "must be a string", as if it existed).
        for value in [json!(1), json!([]), json!("x")] {
            let a = json!({"name": LIST_FLOWS, "arguments": {"colour": value}});
            let r = call(&view, &args(a), v).unwrap();
            let text = r["content"][0]["text"].as_str().unwrap();
            assert!(text.contains("unknown parameter \"colour\""), "{text}");
        }
        let r = call(
            &view,
            &args(json!({"name": SUMMARY, "arguments": {"x": 1}})),
            v,
        )
        .unwrap();
        assert_eq!(r["isError"], true);
        for (a, name) in [
            (json!({"namespace": ""}), "namespace"),
            (json!({"limit": 0.5}), "limit"),
            (json!({"colour": null}), "colour"),
        ] {
            let r = call(&view, &args(json!({"name": WORKLOADS, "arguments": a})), v).unwrap();
            assert_eq!(r["isError"], true, "{r}");
            let text = r["content"][0]["text"].as_str().unwrap();
            assert!(text.contains(&format!("argument {name}")), "{text}");
        }
        // An integer written with a fraction of zero is that integer.
        for tool in [LIST_FLOWS, WORKLOADS] {
            let r = call(
                &view,
                &args(json!({"name": tool, "arguments": {"limit": 2.0}})),
                v,
            )
            .unwrap();
            assert_ne!(r["isError"], true, "{tool}: {r}");
        }
        let e = call(&view, &args(json!({"name": "nope"})), v).unwrap_err();
        assert_eq!(e.code, super::super::jsonrpc::INVALID_PARAMS);
        // Arguments that are no object: the request is malformed, a
        // protocol error (it was a tool's isError).
        for bad in [json!([1]), json!("limit=5")] {
            let e = call(
                &view,
                &args(json!({"name": LIST_FLOWS, "arguments": bad})),
                v,
            )
            .unwrap_err();
            assert_eq!(e.code, super::super::jsonrpc::INVALID_PARAMS);
        }
    }

    #[test]
    fn results_follow_the_revision() {
        let view = View::empty();
        let call_at = |v: &str| {
            let r = call(
                &view,
                &args(json!({"name": LIST_FLOWS, "arguments": {"limit": 5, "pod": null}})),
                Version::parse(v).unwrap(),
            )
            .unwrap();
            assert_eq!(r["isError"], false);
            r
        };
        let new = call_at("2025-06-18");
        assert_eq!(new["structuredContent"]["flows"], json!([]));
        assert_eq!(new["structuredContent"]["total"], 0);
        assert_eq!(new["structuredContent"]["coverage"]["agents_expected"], 0);
        let text: Value =
            serde_json::from_str(new["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(text, new["structuredContent"]);
        assert!(call_at("2025-03-26").get("structuredContent").is_none());
        let old = list(Version::parse("2024-11-05").unwrap());
        assert!(
            old["tools"][0].get("outputSchema").is_none()
                && old["tools"][0].get("annotations").is_none()
        );
        let cur = list(Version::LATEST_HANDSHAKE);
        assert!(cur["tools"][0]["outputSchema"].is_object());
    }
}
