//! The Model Context Protocol server, driven by the official Python SDK
//! (the current 2.x, which speaks the stateless 2026-07-28 revision or the
//! handshake, and the last 1.x, handshake only) and the official
//! TypeScript SDK (the client inside Claude Desktop's `mcp-remote`, Cursor
//! and the MCP Inspector) over Streamable HTTP and over stdio through
//! `flowtap mcp-stdio`; every structured result is
//! compared with the REST endpoint's answer on the same snapshot. Then the
//! protocol's error paths and the access rules, with raw HTTP.

mod common;

use std::process::Command;

use common::server::{Response, Server, serve_demo};
use common::{project_root, venv_python};
use serde_json::{Value, json};

const TOKEN: &str = "test-token-7f3a";

/// flowtap serving the demo capture with its inventory, behind a token.
fn start() -> (Server, tempfile::TempDir) {
    serve_demo(TOKEN, &["--cluster-cidr", "10.0.0.0/8,2001:db8::/32"])
}

/// The tool calls every client makes: both tools, with and without filters,
/// and two mistakes.
fn calls() -> Value {
    json!([
        ["get_l4_flow_summary", {}],
        ["list_l4_flows", {}],
        ["list_l4_flows", {"l4proto": "tcp", "sort": "handshake_p99", "limit": 5}],
        ["list_l4_flows", {"ns": "shop", "format": "full", "limit": 1000}],
        ["list_l4_flows", {"aggregate": "namespace", "sort": "pkts"}],
        ["list_l4_flows", {"min_handshake_p99_us": 10000, "l4proto": "tcp", "format": "full"}],
        ["list_l4_flows", {"ip": "2001:db8::/32", "svc": "redis", "format": "raw"}],
        ["list_l4_flows", {"limit": "ten"}],
        ["list_l4_flows", {"sort": "latency"}]
    ])
}

/// The TypeScript SDK's client script, its packages installed beside it
/// (scripts/setup.sh, `npm ci`).
fn typescript_sdk() -> Command {
    let dir = project_root().join("flowtap/tests/support/mcp_client_ts");
    assert!(
        dir.join("node_modules/@modelcontextprotocol/sdk").exists(),
        "{}/node_modules is missing: scripts/setup.sh installs it",
        dir.display()
    );
    let mut node = Command::new("node");
    node.arg(dir.join("mcp_client.mjs"));
    node
}

/// Runs an SDK's client script (a venv's Python SDK, or `"ts"`); returns
/// its report.
fn sdk(client: &str, args: &[&str]) -> Value {
    let calls = calls().to_string();
    let mut command = if client == "ts" {
        typescript_sdk()
    } else {
        let mut python = Command::new(venv_python(client));
        python.arg(project_root().join("flowtap/tests/support/mcp_client.py"));
        python
    };
    let out = command
        .args(["--calls", &calls])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{client} {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The REST query string for tool arguments.
fn query(arguments: &Value) -> String {
    let mut q = form_urlencoded_pairs(arguments);
    q.sort();
    q.join("&")
}

fn form_urlencoded_pairs(arguments: &Value) -> Vec<String> {
    arguments
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.replace('/', "%2F"),
                other => other.to_string(),
            };
            format!("{k}={v}")
        })
        .collect()
}

fn get_authorized(server: &Server, target: &str) -> Value {
    server.get_json_with(target, &[("Authorization", &format!("Bearer {TOKEN}"))])
}

/// `value` as a JavaScript client holds it: every number a double. The
/// `*_ns` timestamps (about 1.8e18) are integers beyond 2^53, which
/// `JSON.parse` rounds to the nearest double (within 128 ns); the REST
/// API's bytes stay the reference's integers, so JavaScript clients see
/// them so rounded. Unchanged for the other clients.
fn in_javascript(javascript: bool, value: &Value) -> Value {
    match value {
        Value::Number(n) if javascript => n.as_f64().map_or(Value::Null, |f| json!(f)),
        Value::Array(items) => items.iter().map(|v| in_javascript(javascript, v)).collect(),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.clone(), in_javascript(javascript, v)))
            .collect(),
        other => other.clone(),
    }
}

/// Everything a client saw must be what the REST API answers.
fn check_report(server: &Server, report: &Value, protocol: &str, era: &str) {
    let who = format!("{} {}", report["sdk"], report["protocol"]);
    let javascript = report["sdk"].as_str().is_some_and(|s| s.starts_with("ts "));
    assert_eq!(
        (report["protocol"].as_str(), report["era"].as_str()),
        (Some(protocol), Some(era)),
        "{who}"
    );
    let tools: Vec<(&str, bool)> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["has_output_schema"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tools,
        [
            ("list_l4_flows", true),
            ("get_l4_flow_summary", true),
            ("list_workloads", true)
        ],
        "{who}"
    );

    for call in report["calls"].as_array().unwrap() {
        let args = &call["arguments"];
        let text = call["text"].as_str().unwrap();
        if args.get("limit") == Some(&json!("ten")) || args.get("sort") == Some(&json!("latency")) {
            let name = args.as_object().unwrap().keys().next().unwrap();
            assert_eq!(call["is_error"], true, "{who} {args}");
            assert!(
                text.starts_with(&format!("argument {name}:")),
                "{who}: {text}"
            );
            continue;
        }
        assert_eq!(call["is_error"], false, "{who} {args}: {text}");
        let rest = if call["tool"] == "get_l4_flow_summary" {
            get_authorized(server, "/mcp/flows/summary")
        } else {
            get_authorized(server, &format!("/mcp/flows?{}", query(args)))
        };
        // Ages are each answer's own (the coverage's, as of the answer).
        let timeless = |v: &Value| common::without_ages(&in_javascript(javascript, v).to_string());
        assert_eq!(
            timeless(&call["structured"]),
            timeless(&rest),
            "{who} {args}"
        );
        let text: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            in_javascript(javascript, &text),
            in_javascript(javascript, &call["structured"]),
            "{who} {args}: the text content is the same JSON"
        );
        if call["tool"] == "list_l4_flows" {
            assert!(
                !rest["flows"].as_array().unwrap().is_empty(),
                "{args} selects something"
            );
        }
    }
    let prompts: Vec<&str> = report["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        prompts.contains(&"diagnose_slow_service")
            && prompts.contains(&"audit_cross_namespace_traffic")
    );
    assert_eq!(report["prompts"][0]["required"], json!(["service"]));
    assert_eq!(report["prompt"]["role"], "user");
    assert!(
        report["prompt"]["text"]
            .as_str()
            .unwrap()
            .contains("svc=\"payments\"")
    );
}

#[test]
fn python_sdks_over_http_see_what_the_rest_api_serves() {
    let (server, _dir) = start();
    let url = format!("http://{}/mcp", server.addr);
    let http = ["--http", &url, "--token", TOKEN];
    // The current SDK negotiates the stateless revision...
    let report = sdk(".venv", &http);
    check_report(&server, &report, "2026-07-28", "stateless");
    // ...or, told to, the handshake; the 1.x SDK knows only the handshake.
    let report = sdk(".venv", &[&http[..], &["--mode", "legacy"]].concat());
    check_report(&server, &report, "2025-11-25", "handshake");
    let report = sdk(".venv-mcp1", &http);
    check_report(&server, &report, "2025-11-25", "handshake");
}

/// The TypeScript SDK (1.x: the handshake, 2025-11-25) checks every
/// structured result against its tool's output schema, which the Python
/// SDK does not: a result that strays from its schema fails here.
#[test]
fn the_typescript_sdk_over_http_and_stdio_sees_what_the_rest_api_serves() {
    let (server, dir) = start();
    let url = format!("http://{}/mcp", server.addr);
    let report = sdk("ts", &["--http", &url, "--token", TOKEN]);
    check_report(&server, &report, "2025-11-25", "handshake");
    let token = dir.path().join("token");
    let stdio = stdio_arguments(&server, &token);
    let report = sdk("ts", &stdio.iter().map(String::as_str).collect::<Vec<_>>());
    check_report(&server, &report, "2025-11-25", "handshake");
}

/// A client script's arguments that run `flowtap mcp-stdio` for `server`.
fn stdio_arguments(server: &Server, token: &std::path::Path) -> Vec<String> {
    [
        "--stdio",
        "--",
        env!("CARGO_BIN_EXE_flowtap"),
        "mcp-stdio",
        "--url",
        &format!("http://{}", server.addr),
        "--auth-token-file",
        token.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn python_sdks_over_stdio_through_mcp_stdio() {
    let (server, dir) = start();
    let command = stdio_arguments(&server, &dir.path().join("token"));
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let report = sdk(".venv", &command);
    check_report(&server, &report, "2026-07-28", "stateless");
    let report = sdk(".venv-mcp1", &command);
    check_report(&server, &report, "2025-11-25", "handshake");
}

// ------------------------------------------------------------- raw HTTP

/// POST to /mcp with the token and the usual media types, unless `headers`
/// gives its own.
fn post(server: &Server, headers: &[(&str, &str)], body: &Value) -> Response {
    post_bytes(server, headers, body.to_string().as_bytes())
}

fn post_bytes(server: &Server, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let auth = format!("Bearer {TOKEN}");
    let mut all = headers.to_vec();
    for (name, value) in [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ] {
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            all.push((name, value));
        }
    }
    server.send("POST", "/mcp", &all, body)
}

fn initialize(server: &Server, version: &str) -> (String, Value) {
    let r = post(
        server,
        &[],
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    (
        r.header("mcp-session-id").expect("a session id").to_owned(),
        r.json(),
    )
}

fn stateless_envelope(version: &str) -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}})
}

#[test]
fn tokens_origins_and_hosts() {
    let (server, _dir) = start();
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    for (headers, path) in [
        (vec![], "/mcp/flows"),
        (
            vec![("Authorization", "Bearer wrong")],
            "/mcp/flows/summary",
        ),
        (vec![("Authorization", "Basic dGVzdA==")], "/mcp/flows"),
    ] {
        let r = server.send("GET", path, &headers, b"");
        assert_eq!(r.status, 401, "{path} {headers:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"flowtap\"")
        );
        assert!(r.json()["error"].as_str().unwrap().contains("bearer token"));
    }
    let r = server.send(
        "POST",
        "/mcp",
        &[
            ("Authorization", "Bearer wrong"),
            ("Content-Type", "application/json"),
        ],
        ping.to_string().as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["jsonrpc"], "2.0", "a JSON-RPC error on /mcp");
    // A browser client on an allowed origin can read the 401 (not a CORS
    // failure); the scheme's case does not matter (RFC 9110).
    let r = server.send(
        "POST",
        "/mcp",
        &[
            ("Origin", "http://localhost:6274"),
            ("Content-Type", "application/json"),
        ],
        ping.to_string().as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:6274")
    );
    let auth = format!("bearer {TOKEN}");
    let r = server.send(
        "GET",
        "/mcp/flows/summary",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200);
    // Health and metrics stay open for probes and scrapers, on the admin
    // listener.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(server.admin_get(path).status, 200, "{path}");
    }
    // Browser origins: loopback ones pass, others are refused everywhere.
    let r = post(&server, &[("Origin", "http://evil.example")], &ping);
    assert_eq!(r.status, 403);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("evil.example")
    );
    assert_eq!(
        server
            .send_admin("GET", "/healthz", &[("Origin", "https://evil.example")])
            .status,
        403
    );
    let (session, _) = initialize(&server, "2025-11-25");
    let r = post(
        &server,
        &[
            ("Origin", "http://localhost:6274"),
            ("Mcp-Session-Id", &session),
        ],
        &ping,
    );
    assert_eq!((r.status, r.json()["result"].clone()), (200, json!({})));
    // A browser client (MCP Inspector's direct mode, on a loopback
    // origin): its CORS preflight is answered without a token, and the
    // answers let it read the session id; another origin's is refused.
    let preflight = |origin: &str| {
        server.send(
            "OPTIONS",
            "/mcp",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, mcp-session-id",
                ),
            ],
            b"",
        )
    };
    let r = preflight("http://localhost:6274");
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:6274")
    );
    let allowed = r.header("access-control-allow-headers").unwrap_or_default();
    for header in [
        "authorization",
        "mcp-session-id",
        "mcp-protocol-version",
        "content-type",
    ] {
        assert!(allowed.contains(header), "{allowed}");
    }
    assert_eq!(preflight("http://evil.example").status, 403);
    let r = post(&server, &[("Origin", "http://localhost:6274")], &ping);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:6274")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("mcp-session-id")
    );
    // Without an Origin (not a browser), no CORS headers.
    let r = post(&server, &[("Mcp-Session-Id", &session)], &ping);
    assert_eq!(r.header("access-control-allow-origin"), None);
    // A rebound name in Host is refused, on both listeners.
    let r = server.send("GET", "/mcp/flows", &[("Host", "rebind.example:8898")], b"");
    assert_eq!(r.status, 403);
    let r = server.send_admin("GET", "/healthz", &[("Host", "rebind.example:8899")]);
    assert_eq!(r.status, 403);
}

#[test]
fn handshake_sessions_versions_and_errors() {
    let (server, _dir) = start();
    // Negotiation: a known revision is echoed, an unknown one gets the latest.
    let (old, init) = initialize(&server, "2024-11-05");
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
    assert!(
        init["result"]["serverInfo"]["name"] == "flowtap"
            && init["result"]["capabilities"]["tools"].is_object()
    );
    let (_, init) = initialize(&server, "1999-01-01");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let r = post(&server, &[("Mcp-Session-Id", &old)], &list);
    let tool = &r.json()["result"]["tools"][0];
    assert!(
        tool.get("outputSchema").is_none()
            && tool["inputSchema"]["properties"]["limit"].is_object()
    );

    let (session, _) = initialize(&server, "2025-11-25");
    let with = |extra: &[(&str, &str)], body: &Value| {
        let mut h = vec![
            ("Mcp-Session-Id", session.as_str()),
            ("MCP-Protocol-Version", "2025-11-25"),
        ];
        h.extend_from_slice(extra);
        post(&server, &h, body)
    };
    let tool_list = with(&[], &list).json();
    assert!(tool_list["result"]["tools"][0]["outputSchema"].is_object());
    // Lists come whole: no next cursor, and a cursor (never given) is
    // refused rather than answered with the first page again.
    assert!(tool_list["result"].get("nextCursor").is_none());
    for method in ["tools/list", "prompts/list"] {
        let paged =
            json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": {"cursor": "bogus"}});
        let error = &with(&[], &paged).json()["error"];
        assert_eq!(error["code"], -32602, "{method}: {error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .starts_with("cursor \"bogus\""),
            "{error}"
        );
        let first =
            json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": {"cursor": null}});
        assert!(with(&[], &first).json()["result"].is_object(), "{method}");
    }
    // Notifications are accepted without a body.
    let r = with(
        &[],
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    assert_eq!((r.status, r.body.len()), (202, 0));
    // Unknown method: JSON-RPC -32601 (status 200 in the handshake era).
    let r = with(
        &[],
        &json!({"jsonrpc": "2.0", "id": 2, "method": "resources/list"}),
    );
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_i64()),
        (200, Some(-32601))
    );
    assert_eq!(r.json()["id"], 2);
    // Unknown tool: -32602; bad arguments: a tool error naming the argument.
    let call = |name: &str, arguments: Value| {
        with(&[], &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": name, "arguments": arguments}})).json()
    };
    assert_eq!(call("drop_tables", json!({}))["error"]["code"], -32602);
    let bad = call("list_l4_flows", json!({"ip": "10.0.0.300"}));
    assert_eq!(bad["result"]["isError"], true);
    assert!(
        bad["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("argument ip:")
    );
    let bad = call(
        "list_l4_flows",
        json!({"format": "raw", "aggregate": "pod"}),
    );
    assert!(
        bad["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("argument aggregate:")
    );
    assert_eq!(
        call("get_l4_flow_summary", json!({"verbose": true}))["result"]["isError"],
        true
    );
    // Unknown prompt, or one missing its argument: -32602.
    let r = with(
        &[],
        &json!({"jsonrpc": "2.0", "id": 4, "method": "prompts/get", "params": {"name": "map_dependencies"}}),
    );
    assert_eq!(r.json()["error"]["code"], -32602);
    // Malformed messages.
    let r = post_bytes(&server, &[("Mcp-Session-Id", &session)], b"{not json");
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_i64()),
        (400, Some(-32700))
    );
    let r = with(&[], &json!({"jsonrpc": "1.0", "id": 5, "method": "ping"}));
    assert_eq!(r.json()["error"]["code"], -32600);
    // A request's bad params: an error about its content, sent with 200
    // in a handshake session (was 400).
    let r = with(
        &[],
        &json!({"jsonrpc": "2.0", "id": 6, "method": "ping", "params": []}),
    );
    let answer = r.json();
    assert_eq!(
        (r.status, &answer["error"]["code"], &answer["id"]),
        (200, &json!(-32602), &json!(6))
    );
    // Transport rules: the session, the revision header, media types.
    assert_eq!(post(&server, &[], &list).status, 400, "no session");
    assert_eq!(
        post(&server, &[("Mcp-Session-Id", "feedface")], &list).status,
        404,
        "unknown session"
    );
    let other = [
        ("Mcp-Session-Id", session.as_str()),
        ("MCP-Protocol-Version", "2025-06-18"),
    ];
    assert_eq!(post(&server, &other, &list).status, 400, "another revision");
    let plain = [
        ("Mcp-Session-Id", session.as_str()),
        ("Content-Type", "text/plain"),
    ];
    assert_eq!(post(&server, &plain, &list).status, 415);
    assert_eq!(with(&[("Accept", "text/html")], &list).status, 406);
    // Types compared parsed, not as text (a prefix and a substring let
    // these through).
    let lines = [
        ("Mcp-Session-Id", session.as_str()),
        ("Content-Type", "application/jsonlines"),
    ];
    assert_eq!(post(&server, &lines, &list).status, 415);
    let refused = [("Accept", "application/json;q=0, text/event-stream")];
    assert_eq!(with(&refused, &list).status, 406);
    assert_eq!(with(&[("Accept", "application/*")], &list).status, 200);
    // Accept on two lines is one list.
    let two_lines = [
        ("Accept", "text/event-stream"),
        ("Accept", "application/json"),
    ];
    assert_eq!(with(&two_lines, &list).status, 200);
    // Batches: only in 2025-03-26 sessions.
    let batch = json!([list, {"jsonrpc": "2.0", "id": 9, "method": "ping"}, {"jsonrpc": "2.0", "method": "notifications/x"}]);
    assert_eq!(with(&[], &batch).status, 400);
    let (s0326, _) = initialize(&server, "2025-03-26");
    let r = post(&server, &[("Mcp-Session-Id", &s0326)], &batch);
    let answers = r.json();
    assert_eq!(answers.as_array().unwrap().len(), 2, "{answers}");
    assert_eq!(answers[1], json!({"jsonrpc": "2.0", "id": 9, "result": {}}));
    let empty = post(&server, &[("Mcp-Session-Id", &s0326)], &json!([]));
    assert_eq!(empty.status, 400);
    assert_eq!(
        empty.json()["error"]["code"],
        -32600,
        "JSON-RPC: an empty batch is invalid"
    );
    assert_eq!(empty.json()["error"]["message"], "an empty batch");
    // GET offers no stream; DELETE ends the session.
    let auth = format!("Bearer {TOKEN}");
    let r = server.send(
        "GET",
        "/mcp",
        &[("Authorization", &auth), ("Accept", "text/event-stream")],
        b"",
    );
    assert_eq!((r.status, r.header("allow")), (405, Some("POST, DELETE")));
    let del = |id: &str| {
        server
            .send(
                "DELETE",
                "/mcp",
                &[("Authorization", &auth), ("Mcp-Session-Id", id)],
                b"",
            )
            .status
    };
    assert_eq!(del(&session), 204);
    assert_eq!(del(&session), 404);
    assert_eq!(with(&[], &list).status, 404, "an ended session");

    // A revision flowtap does not speak in the header: 400 naming the ones
    // it does, whatever the message (a notification, a DELETE too).
    let (live, _) = initialize(&server, "2025-06-18");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    for r in [
        post(&server, &[("MCP-Protocol-Version", "banana")], &initialized),
        post(
            &server,
            &[
                ("MCP-Protocol-Version", "2099-01-01"),
                ("Mcp-Session-Id", &live),
            ],
            &list,
        ),
        server.send(
            "DELETE",
            "/mcp",
            &[
                ("Authorization", &auth),
                ("Mcp-Session-Id", &live),
                ("MCP-Protocol-Version", "banana"),
            ],
            b"",
        ),
    ] {
        let error = &r.json()["error"];
        assert_eq!((r.status, &error["code"]), (400, &json!(-32022)), "{error}");
        assert!(error["data"]["supported"].as_array().unwrap().len() >= 4);
    }
    // What is no JSON-RPC message at all gets 400 too, with its error.
    let not_jsonrpc = json!({"jsonrpc": "1.0", "method": "notifications/initialized"});
    let r = post(&server, &[("Mcp-Session-Id", &live)], &not_jsonrpc);
    assert_eq!(
        (r.status, &r.json()["error"]["code"]),
        (400, &json!(-32600))
    );
    let r = post(
        &server,
        &[],
        &json!([{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}]),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["message"],
        "initialize is sent alone, not in a batch"
    );
    assert_eq!(del(&live), 204, "the session was left as it was");
}

#[test]
fn stateless_requests_are_checked_against_their_headers() {
    let (server, _dir) = start();
    let v = "2026-07-28";
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "list_l4_flows", "arguments": {"limit": 1}, "_meta": stateless_envelope(v)}});
    let ok = post(
        &server,
        &[
            ("MCP-Protocol-Version", v),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "list_l4_flows"),
        ],
        &call,
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let result = &ok.json()["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "flowtap"
    );
    assert_eq!(
        result["structuredContent"]["flows"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(ok.header("mcp-session-id").is_none(), "no sessions");
    // The name, base64-encoded as clients send non-ASCII names, must decode to it.
    let encoded = post(
        &server,
        &[
            ("MCP-Protocol-Version", v),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "=?base64?bGlzdF9sNF9mbG93cw==?="),
        ],
        &call,
    );
    assert_eq!(encoded.status, 200);

    let error = |headers: &[(&str, &str)], body: &Value| {
        let r = post(&server, headers, body);
        (
            r.status,
            r.json()["error"]["code"].as_i64().unwrap_or(0),
            r.json(),
        )
    };
    let (status, code, _) = error(
        &[
            ("MCP-Protocol-Version", v),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "get_l4_flow_summary"),
        ],
        &call,
    );
    assert_eq!(
        (status, code),
        (400, -32020),
        "Mcp-Name differs from the body"
    );
    let (status, code, _) = error(
        &[("MCP-Protocol-Version", v), ("Mcp-Name", "list_l4_flows")],
        &call,
    );
    assert_eq!((status, code), (400, -32020), "no Mcp-Method");
    let mut bare = call.clone();
    bare["params"].as_object_mut().unwrap().remove("_meta");
    let (status, code, _) = error(
        &[
            ("MCP-Protocol-Version", v),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "list_l4_flows"),
        ],
        &bare,
    );
    assert_eq!((status, code), (400, -32602), "no _meta envelope");
    let future = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": stateless_envelope("2099-01-01")}});
    let (status, code, body) = error(
        &[
            ("MCP-Protocol-Version", "2099-01-01"),
            ("Mcp-Method", "tools/list"),
        ],
        &future,
    );
    assert_eq!((status, code), (400, -32022));
    assert!(
        body["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!(v))
    );
    let unknown = json!({"jsonrpc": "2.0", "id": 3, "method": "logging/setLevel", "params": {"_meta": stateless_envelope(v)}});
    let (status, code, _) = error(
        &[
            ("MCP-Protocol-Version", v),
            ("Mcp-Method", "logging/setLevel"),
        ],
        &unknown,
    );
    assert_eq!((status, code), (404, -32601), "unknown method");
    let discover = json!({"jsonrpc": "2.0", "id": 4, "method": "server/discover", "params": {"_meta": stateless_envelope(v)}});
    let d = post(
        &server,
        &[
            ("MCP-Protocol-Version", v),
            ("Mcp-Method", "server/discover"),
        ],
        &discover,
    )
    .json();
    assert!(
        d["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!(v))
    );
    assert!(d["result"]["ttlMs"].is_u64() && d["result"]["cacheScope"] == "public");
    // Bad arguments are tool errors here too.
    let bad = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                     "params": {"name": "list_l4_flows", "arguments": {"limit": -3}, "_meta": stateless_envelope(v)}});
    let r = post(
        &server,
        &[
            ("MCP-Protocol-Version", v),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "list_l4_flows"),
        ],
        &bad,
    );
    assert_eq!(
        (r.status, r.json()["result"]["isError"].as_bool()),
        (200, Some(true))
    );
    // The requests are counted by method and outcome: a tool call the
    // model got wrong apart (it was counted ok).
    let metrics = server.metrics();
    for (outcome, n) in [("ok", 2), ("tool_error", 1)] {
        let line = format!(
            "flowtap_mcp_requests_total{{method=\"tools/call\",outcome=\"{outcome}\"}} {n}\n"
        );
        assert!(metrics.contains(&line), "{line}: {metrics}");
    }
    assert!(metrics.contains("flowtap_mcp_session_capacity 1024"));
}

/// `flowtap mcp-stdio --url URL` with `more` arguments, its stdin and
/// stdout piped, its stderr to `stderr`.
fn mcp_stdio(url: &str, more: &[&str], stderr: std::process::Stdio) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .args(["mcp-stdio", "--url", url])
        .args(more)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// `flowtap mcp-stdio` takes answers of a bounded size: a server that
/// sends without end gets the client a JSON-RPC error naming the bound,
/// not a bridge that grows until it is killed.
#[test]
fn mcp_stdio_refuses_an_answer_without_end() {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sending = sent.clone();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = [0u8; 4096];
        let _ = conn.read(&mut head);
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let chunk = format!("100000\r\n{}\r\n", " ".repeat(1 << 20));
        // At most 1 GiB: the test's own bound.
        for _ in 0..1024 {
            if conn.write_all(chunk.as_bytes()).is_err() {
                return;
            }
            sending.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let mut bridge = mcp_stdio(&format!("http://{addr}"), &[], std::process::Stdio::null());
    let mut stdin = bridge.stdin.take().unwrap();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":1,"method":"ping"}}"#).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(bridge.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    drop(stdin);
    let _ = bridge.wait();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["id"], 1, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("larger than 67108864 bytes"), "{answer}");
    let mib = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(mib < 200, "{mib} MiB sent before the bridge let go");
}

/// `flowtap mcp-stdio` forwards a few requests at once: an answer that
/// does not come (a hung server, a hub's slow round) holds no request
/// behind it, and once its client closes stdin the bridge waits for it a
/// few seconds, not the minute a request may take, nor for the session's
/// end. (It forwarded one at a time: the ping waited a minute, and so did
/// the bridge's exit, and a minute more for the DELETE.)
#[test]
fn mcp_stdio_is_not_held_by_an_answer_that_does_not_come() {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for _ in 0..8 {
            let Ok((conn, _)) = listener.accept() else {
                return;
            };
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(conn);
                let (mut length, mut request_line) = (0, String::new());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if request_line.is_empty() {
                        request_line = line.clone();
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let message: Value = serde_json::from_slice(&body).unwrap_or_default();
                if message["id"] == "slow" || request_line.starts_with("DELETE") {
                    // Never answered: held until the bridge lets go.
                    let _ = reader.read_to_end(&mut Vec::new());
                    return;
                }
                let (session, result) = if message["method"] == "initialize" {
                    let result = json!({"protocolVersion": "2025-06-18", "capabilities": {},
                                        "serverInfo": {"name": "hung", "version": "1"}});
                    ("Mcp-Session-Id: s1\r\n", result)
                } else {
                    ("", json!({}))
                };
                let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": result});
                let answer = answer.to_string();
                let _ = write!(
                    reader.into_inner(),
                    "HTTP/1.1 200 OK\r\n{session}Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{answer}",
                    answer.len()
                );
            });
        }
    });
    let mut bridge = mcp_stdio(&format!("http://{addr}"), &[], std::process::Stdio::null());
    let mut stdin = bridge.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(bridge.stdout.take().unwrap());
    let mut line = String::new();
    // A session, which the bridge ends (DELETE, never answered here) once
    // its input has ended.
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#).unwrap();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"hung\""), "{line}");
    line.clear();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":"slow","method":"ping"}}"#).unwrap();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":2,"method":"ping"}}"#).unwrap();
    stdout.read_line(&mut line).unwrap();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer, json!({"jsonrpc": "2.0", "id": 2, "result": {}}));
    let closed = std::time::Instant::now();
    drop(stdin);
    let status = loop {
        if let Some(status) = bridge.try_wait().unwrap() {
            break status;
        }
        if closed.elapsed() > std::time::Duration::from_secs(40) {
            let _ = bridge.kill();
            panic!("the bridge still runs 40 s after its input ended");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    assert!(
        closed.elapsed() < std::time::Duration::from_secs(25),
        "exited {:?} after its input ended",
        closed.elapsed()
    );
}

/// Real clients do not initialize again when a session they hold is
/// answered 404 (the TypeScript and Python SDKs, mcp-remote), so a restart
/// of flowtap would leave them broken: a session flowtap does not know
/// (here one of another flowtap, as after a restart) is taken up again at
/// the revision the client's MCP-Protocol-Version header names. Without
/// the header (a 2025-03-26 client sends none), or once its client ended
/// it, it stays unknown.
#[test]
fn a_session_from_before_a_restart_is_taken_up_again() {
    let (before, _dir) = start();
    let (session, _) = initialize(&before, "2025-06-18");
    drop(before);
    let (after, _dir) = start();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let id_alone = [("Mcp-Session-Id", session.as_str())];
    let named = [
        ("Mcp-Session-Id", session.as_str()),
        ("MCP-Protocol-Version", "2025-06-18"),
    ];
    assert_eq!(
        post(&after, &id_alone, &list).status,
        404,
        "no revision named"
    );
    let r = post(&after, &named, &list);
    assert_eq!(r.status, 200);
    assert!(
        r.json()["result"]["tools"][0]["outputSchema"].is_object(),
        "answered in the revision named"
    );
    // A session as any other from then on.
    assert_eq!(post(&after, &id_alone, &list).status, 200);
    assert_eq!(
        common::metrics::sample(&after.metrics(), "flowtap_mcp_sessions_resumed_total"),
        1.0
    );
    let auth = format!("Bearer {TOKEN}");
    let delete = [("Authorization", auth.as_str()), id_alone[0]];
    assert_eq!(after.send("DELETE", "/mcp", &delete, b"").status, 204);
    assert_eq!(
        post(&after, &named, &list).status,
        404,
        "ended by its client"
    );
}

/// A server that ends its sessions when told (`end`): the next request of
/// the session is answered 404, as the transport lets a server do; an
/// `initialize` opens a new session, requests get empty results and
/// notifications 202. flowtap takes unknown sessions up again, so the
/// bridge's way out of a 404 is tried on this one. One request a
/// connection, 64 connections at most.
fn a_server_that_ends_sessions(end: std::sync::Arc<std::sync::atomic::AtomicBool>) -> String {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut opened, mut ended) = (0, Vec::new());
        for _ in 0..64 {
            let Ok((conn, _)) = listener.accept() else {
                return;
            };
            let mut reader = std::io::BufReader::new(conn);
            let (mut length, mut session) = (0, None);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("mcp-session-id:") {
                    session = Some(line[15..].trim().to_owned());
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let message: Value = serde_json::from_slice(&body).unwrap_or_default();
            let (status, mut headers, answer) = match (&message["method"], &session) {
                (m, _) if m == "initialize" => {
                    opened += 1;
                    let result = json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                                        "serverInfo": {"name": "ending", "version": "1"}});
                    let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": result});
                    (
                        200,
                        format!("Mcp-Session-Id: s{opened}\r\n"),
                        answer.to_string(),
                    )
                }
                (_, Some(s)) if ended.contains(s) => (404, String::new(), String::new()),
                (_, Some(s)) if end.swap(false, std::sync::atomic::Ordering::SeqCst) => {
                    ended.push(s.clone());
                    (404, String::new(), String::new())
                }
                (_, Some(_)) if message.get("id").is_none() => (202, String::new(), String::new()),
                (m, Some(_)) => {
                    let result = if m == "tools/list" {
                        json!({"tools": []})
                    } else {
                        json!({})
                    };
                    let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": result});
                    (200, String::new(), answer.to_string())
                }
                (_, None) => (400, String::new(), String::new()),
            };
            headers.push_str("Content-Type: application/json\r\nConnection: close\r\n");
            let mut conn = reader.into_inner();
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\n{headers}Content-Length: {}\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    format!("http://{addr}")
}

/// `flowtap mcp-stdio` keeps its client served when the server ends the
/// session (a server that does not take sessions up again: a restart, an
/// idle hour, sessions giving way): on the 404 it starts a new session with
/// the client's own `initialize`, as the transport asks a client to, and
/// sends the message again. It never answers a notification, and a line
/// that is not UTF-8 gets a parse error rather than ending the bridge.
#[test]
fn mcp_stdio_starts_a_new_session_when_the_server_ends_its_own() {
    use std::io::{BufRead, Write};
    let end = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = a_server_that_ends_sessions(end.clone());
    let mut bridge = mcp_stdio(&url, &[], std::process::Stdio::piped());
    let mut stdin = bridge.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(bridge.stdout.take().unwrap());
    let mut answer = || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    };
    let mut send = |message: &[u8]| {
        stdin.write_all(message).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}}})
        .to_string()
        .as_bytes(),
    );
    let first = answer();
    assert_eq!(first["result"]["protocolVersion"], "2025-06-18", "{first}");
    send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let tools = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    send(tools.to_string().as_bytes());
    assert!(answer()["result"]["tools"].is_array());

    // The server ends the session.
    end.store(true, std::sync::atomic::Ordering::SeqCst);
    let again = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    send(again.to_string().as_bytes());
    let listed = answer();
    assert_eq!(listed["id"], 3, "{listed}");
    assert!(listed["result"]["tools"].is_array(), "{listed}");

    // A notification after the server ended the session again is sent
    // again in a new one too, and, as any notification, not answered: the
    // next line read is the answer to what follows it.
    end.store(true, std::sync::atomic::Ordering::SeqCst);
    send(br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99}}"#);
    send(b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"\xff}");
    let unreadable = answer();
    assert_eq!(unreadable["error"]["code"], -32700, "{unreadable}");
    assert_eq!(unreadable["id"], Value::Null, "{unreadable}");
    send(br#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#);
    let pong = answer();
    assert_eq!(pong, json!({"jsonrpc": "2.0", "id": 5, "result": {}}));

    drop(stdin);
    let out = bridge.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("the server ended the session").count(),
        2,
        "{stderr}"
    );
}

/// A stdio client that initializes again ends its earlier session: each
/// was left open, holding a slot of the server's for the idle hour (five
/// initializations left four sessions after the bridge exited).
#[test]
fn mcp_stdio_ends_the_session_a_new_initialize_replaces() {
    use std::io::Write;
    let (server, dir) = serve_demo(TOKEN, &[]);
    let token = dir.path().join("token");
    let url = format!("http://{}", server.addr);
    let mut bridge = mcp_stdio(
        &url,
        &["--auth-token-file", token.to_str().unwrap()],
        std::process::Stdio::piped(),
    );
    let mut stdin = bridge.stdin.take().unwrap();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}}});
    for _ in 0..3 {
        writeln!(stdin, "{initialize}").unwrap();
        writeln!(
            stdin,
            r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
        )
        .unwrap();
    }
    drop(stdin);
    let out = bridge.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers = String::from_utf8_lossy(&out.stdout);
    assert_eq!(answers.lines().count(), 3, "{answers}");
    let sessions = common::metrics::sample(&server.metrics(), "flowtap_mcp_sessions");
    assert_eq!(sessions, 0.0);
}

/// `flowtap mcp-stdio` passes a batch's answers on as the server gives
/// them: an array for a batch answered message by message, the one error
/// object for a batch refused whole (JSON-RPC 2.0, 6: it wrapped that in
/// an array); and an id the server cannot echo is not put back in its
/// answer.
#[test]
fn mcp_stdio_answers_batches_as_the_server_does() {
    use std::io::{BufRead, Write};
    let (server, dir) = serve_demo("secret", &[]);
    let token = dir.path().join("token");
    let url = format!("http://{}", server.addr);
    let bridge_at = |version: &str| {
        let mut bridge = mcp_stdio(
            &url,
            &["--auth-token-file", token.to_str().unwrap()],
            std::process::Stdio::inherit(),
        );
        let mut stdin = bridge.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(bridge.stdout.take().unwrap());
        let mut ask = move |message: &str| {
            stdin.write_all(message.as_bytes()).unwrap();
            stdin.write_all(b"\n").unwrap();
            stdin.flush().unwrap();
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
        };
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}});
        let first = ask(&init.to_string());
        assert_eq!(first["result"]["protocolVersion"], version, "{first}");
        (bridge, ask)
    };
    let (mut old, mut ask) = bridge_at("2025-03-26");
    let empty = ask("[]");
    assert_eq!(empty["error"]["code"], -32600, "{empty}");
    assert!(empty.is_object(), "{empty}");
    let batch = ask(r#"[{"jsonrpc":"2.0","id":7,"method":"ping"}]"#);
    assert_eq!(batch, json!([{"jsonrpc": "2.0", "id": 7, "result": {}}]));
    let fraction = ask(r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#);
    assert_eq!(fraction["error"]["code"], -32600, "{fraction}");
    assert_eq!(fraction["id"], Value::Null, "{fraction}");
    drop(ask);
    assert!(old.wait().unwrap().success());
    let (mut new, mut ask) = bridge_at("2025-06-18");
    let refused = ask(r#"[{"jsonrpc":"2.0","id":8,"method":"ping"}]"#);
    assert!(refused.is_object(), "{refused}");
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
    drop(ask);
    assert!(new.wait().unwrap().success());
}

/// A tool call whose answer is over `--mcp-max-reply-bytes` is answered as
/// the tool's error with the hint (a JSON-RPC error, which clients raise as
/// a failure, never reached the model), keeping what its revision adds to
/// a result (a stateless one's resultType and _meta).
#[test]
fn an_answer_over_the_reply_budget_is_the_tool_s_error() {
    let (server, _dir) = serve_demo(TOKEN, &["--mcp-max-reply-bytes", "64Ki"]);
    let v = "2026-07-28";
    let arguments = json!({"limit": 1000, "format": "full"});
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "list_l4_flows", "arguments": arguments,
                                 "_meta": stateless_envelope(v)}});
    let r = post(
        &server,
        &[
            ("MCP-Protocol-Version", v),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "list_l4_flows"),
        ],
        &call,
    );
    assert_eq!(r.status, 200);
    let answer = r.json();
    let result = &answer["result"];
    assert_eq!(answer["id"], 3, "{answer}");
    assert_eq!(result["isError"], true, "{answer}");
    assert!(result.get("structuredContent").is_none(), "{answer}");
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("--mcp-max-reply-bytes"), "{text}");
    assert_eq!(result["resultType"], "complete", "{answer}");
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "flowtap"
    );
    // The reply itself within the budget.
    assert!(r.body.len() < 64 << 10);
    let metrics = server.metrics();
    assert!(
        metrics.contains("flowtap_mcp_replies_over_budget_total 1\n"),
        "{metrics}"
    );
    // Counted as what it was answered: the tool's error (it was counted ok).
    assert!(
        metrics.contains(
            "flowtap_mcp_requests_total{method=\"tools/call\",outcome=\"tool_error\"} 1\n"
        ),
        "{metrics}"
    );
    assert!(
        !metrics.contains("flowtap_mcp_requests_total{method=\"tools/call\",outcome=\"ok\"}"),
        "{metrics}"
    );
}
