//! The appliance around the pipeline: configuration layering and its error
//! messages, version and help, logs, /metrics under promtool, /healthz and
//! /readyz, the generated references in the README, and the Kubernetes
//! manifests.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::corpus_dir;
use common::metrics::{promtool, sample};
use common::server::Server;
use common::wait;

use common::project_root as root;

fn demo() -> String {
    root().join("demo/demo.pcap").display().to_string()
}

/// Runs flowtap with `args` and `env`, with no FLOWTAP_ variables inherited.
fn flowtap(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowtap"));
    for (k, _) in std::env::vars() {
        if k.starts_with("FLOWTAP_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).envs(env.iter().copied()).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The effective value of option `field` from the start-up configuration log.
fn effective(o: &Output, field: &str) -> String {
    let log = stderr(o);
    let line = log
        .lines()
        .find(|l| l.contains("\"message\":\"configuration\""))
        .unwrap_or_else(|| panic!("no configuration log line in:\n{log}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON logs");
    let options = v["fields"]["options"].as_str().unwrap().to_owned();
    let start = options
        .find(&format!("{field}: "))
        .unwrap_or_else(|| panic!("{field} in {options}"))
        + field.len()
        + 2;
    options[start..]
        .split([',', ' '])
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn flags_override_environment_override_file_override_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flowtap.toml");
    std::fs::write(
        &config,
        format!("read = [\"{}\"]\nrate-window = 20\nudp_timeout = 7\nthreads = 3\nlog-format = \"json\"\n", demo()),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["--config", c];
        all.extend_from_slice(args);
        let o = flowtap(&all, env);
        assert!(o.status.success(), "{}", stderr(&o));
        o
    };
    // Default (no file value): snapshot_interval 1; file values apply.
    let o = run(&[], &[]);
    assert_eq!(effective(&o, "rate_window"), "20");
    assert_eq!(effective(&o, "udp_timeout"), "Some(7)");
    assert_eq!(effective(&o, "snapshot_interval"), "1.0");
    // Environment over file.
    let o = run(
        &[],
        &[("FLOWTAP_RATE_WINDOW", "30"), ("FLOWTAP_THREADS", "1")],
    );
    assert_eq!(effective(&o, "rate_window"), "30");
    assert_eq!(effective(&o, "threads"), "Some(1)");
    // Flag over environment and file.
    let o = run(&["--rate-window", "40"], &[("FLOWTAP_RATE_WINDOW", "30")]);
    assert_eq!(effective(&o, "rate_window"), "40");
    // The log says where each value set came from.
    let o = run(&["--rate-window", "40"], &[("FLOWTAP_THREADS", "1")]);
    let line = stderr(&o)
        .lines()
        .find(|l| l.contains("\"message\":\"configuration\""))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .unwrap();
    let settings = line["fields"]["settings"].as_str().unwrap().to_owned();
    for set in [
        format!("config={c} (command line)"),
        "rate-window=40 (command line)".to_owned(),
        "threads=1 (FLOWTAP_THREADS)".to_owned(),
        format!("udp-timeout=7 (config file {c})"),
        format!("log-format=json (config file {c})"),
    ] {
        assert!(settings.contains(&set), "{set:?} in {settings}");
    }
    assert!(
        !settings.contains("snapshot-interval"),
        "a default is not set: {settings}"
    );
    // One of a pair named on the command line overrides the other's
    // variable and file key, as any flag does (a DaemonSet's
    // FLOWTAP_INTERFACE, a ConfigMap's interface or k8s-watch): it was a
    // conflict. A switch set false by its variable is not given.
    let inventory = root().join("demo/inventory.json").display().to_string();
    let watching = dir.path().join("watch.toml");
    std::fs::write(&watching, "interface = \"eth1\"\nk8s-watch = true\n").unwrap();
    let w = watching.to_str().unwrap();
    let d = demo();
    for (args, env) in [
        (vec!["-r", &d], vec![("FLOWTAP_INTERFACE", "eth1")]),
        (
            vec!["-r", &d, "--config", w, "--k8s-inventory", &inventory],
            vec![],
        ),
        (
            vec!["-r", &d, "--k8s-inventory", &inventory],
            vec![("FLOWTAP_K8S_WATCH", "false")],
        ),
        (
            vec!["-r", &d],
            vec![
                ("FLOWTAP_K8S_WATCH", "false"),
                ("FLOWTAP_K8S_INVENTORY", &inventory),
            ],
        ),
    ] {
        let o = flowtap(&[&args[..], &["--log-format", "json"]].concat(), &env);
        assert!(o.status.success(), "{args:?} {env:?}: {}", stderr(&o));
        assert_eq!(effective(&o, "interface"), "[]", "{args:?} {env:?}");
    }
    // A capture's variable, invalid, is not the hub's nor the docs'
    // concern (it stopped both, naming an option they do not have).
    for args in [
        &["docs", "config"][..],
        &[
            "hub",
            "--agent",
            "http://127.0.0.1:9",
            "--dump",
            "/mcp/flows/summary",
        ],
    ] {
        let o = flowtap(args, &[("FLOWTAP_THREADS", "x"), ("FLOWTAP_MODE", "bogus")]);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    // Both named on the command line are still refused.
    let o = flowtap(
        &["-r", &d, "--k8s-watch", "--k8s-inventory", &inventory],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("give one source of names"),
        "{}",
        stderr(&o)
    );
    // A capture's name is taken whole: one with a comma was read as two.
    let comma = dir.path().join("demo,copy.pcap");
    std::fs::copy(demo(), &comma).unwrap();
    let o = flowtap(&["-r", comma.to_str().unwrap(), "--json"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The file alone can name the source (read = [...]) and the config file
    // itself can come from the environment.
    let o = flowtap(&[], &[("FLOWTAP_CONFIG", c)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(effective(&o, "udp_timeout"), "Some(7)");
}

/// An invalid configuration: arguments, environment, and what the error
/// must say.
type BadConfig<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, Vec<&'a str>);

#[test]
fn invalid_configuration_names_the_option_and_the_allowed_values() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let bad_mode = file("mode.toml", "mode = \"bogus\"\n");
    let unknown = file("unknown.toml", "colour = \"blue\"\n");
    let misspelt = file("misspelt.toml", "max-feed-byte = \"1Mi\"\n");
    let switch = file("switch.toml", "busy-poll = \"yes\"\n");
    let not_toml = file("broken.toml", "mode = \n");
    let level = file("level.toml", "log-level = \"warning\"\n");
    let d = demo();
    let cases: Vec<BadConfig<'_>> = vec![
        // Values checked after parsing named no file nor variable.
        (
            vec!["-r", &d, "--config", &level],
            vec![],
            vec!["config file", "level.toml", "--log-level", "is no level"],
        ),
        (
            vec!["-r", &d],
            vec![("FLOWTAP_IPFIX_COLLECTOR", "-1")],
            vec![
                "environment variable FLOWTAP_IPFIX_COLLECTOR",
                "--ipfix-collector",
                "give udp://HOST:PORT",
            ],
        ),
        (
            vec!["-r", &d, "--mode", "bogus"],
            vec![],
            vec!["--mode", "possible values: span, host"],
        ),
        (
            vec!["-r", &d],
            vec![("FLOWTAP_XDP_MODE", "fast")],
            vec![
                "environment variable FLOWTAP_XDP_MODE: ",
                "--xdp-mode",
                "possible values: auto, driver, skb",
            ],
        ),
        // The flag itself bad beside a good variable: the flag is named.
        (
            vec!["-r", &d, "--xdp-mode", "fast"],
            vec![("FLOWTAP_XDP_MODE", "skb")],
            vec!["error: invalid value 'fast' for '--xdp-mode"],
        ),
        (
            vec!["hub", "--agent", "http://198.18.0.1:8898"],
            vec![("FLOWTAP_HUB_MAX_AGENTS", "0")],
            vec![
                "environment variable FLOWTAP_HUB_MAX_AGENTS: ",
                "--max-agents",
            ],
        ),
        (
            vec!["-r", &d, "--config", &bad_mode],
            vec![],
            vec![&bad_mode, "--mode", "possible values: span, host"],
        ),
        (
            vec!["-r", &d, "--config", &unknown],
            vec![],
            vec![&unknown, "unknown option `colour`; known options:"],
        ),
        // A hub's file: its own options, its own usage line.
        (
            vec!["hub", "--config", &misspelt],
            vec![],
            vec![
                &misspelt,
                "unknown option `max-feed-byte`; did you mean `max-feed-bytes`? known options:",
                "Usage: flowtap hub ",
            ],
        ),
        (
            vec!["-r", &d, "--config", &switch],
            vec![],
            vec![&switch, "busy-poll", "true or false"],
        ),
        // No flows asked for is refused, not taken as one.
        (
            vec!["top", "--limit", "0"],
            vec![],
            vec!["--limit", "0 is not in 1.."],
        ),
        (
            vec!["-r", &d, "--config", &not_toml],
            vec![],
            vec![&not_toml],
        ),
        (
            vec!["-r", &d],
            vec![("FLOWTAP_CLUSTER_CIDR", "10.0.0.0/99")],
            vec!["--cluster-cidr", "10.0.0.0/99"],
        ),
        (vec!["-r", &d, "--threads=-1"], vec![], vec!["--threads"]),
        // Raised to 50 ms and 10 ms without a word.
        (
            vec!["-r", &d, "--snapshot-interval", "0"],
            vec![],
            vec!["--snapshot-interval", "at least 0.05 s"],
        ),
        (
            vec![
                "hub",
                "--agent",
                "http://198.18.0.1:8898",
                "--agent-timeout",
                "0",
            ],
            vec![],
            vec!["--agent-timeout", "at least 0.01 s"],
        ),
        // Bounds of zero were raised to a minimum without a word (a table
        // of 2 flows for --max-flows 0).
        (
            vec!["-r", &d, "--max-flows", "0"],
            vec![],
            vec!["--max-flows", "0 is not in 1.."],
        ),
        (
            vec!["-r", &d],
            vec![("FLOWTAP_HTTP_MAX_CONNECTIONS", "0")],
            vec!["FLOWTAP_HTTP_MAX_CONNECTIONS", "--http-max-connections"],
        ),
        // A thousand workers ran out of memory or threads and panicked.
        (
            vec!["-r", &d, "--threads", "1000"],
            vec![],
            vec!["--threads", "1..=256"],
        ),
        (vec!["-r", &d, "--k8s-inventory", &not_toml], vec![], vec![]),
        // A reply budget that the tools' own list does not fit in.
        (
            vec!["-r", &d, "--mcp-max-reply-bytes", "20k"],
            vec![],
            vec!["--mcp-max-reply-bytes", "at least 65536 bytes"],
        ),
        (
            vec!["-r", &d, "--log-format", "xml"],
            vec![],
            vec!["--log-format", "possible values: text, json"],
        ),
        (
            vec!["-r", &d, "--memory-limit", "1X"],
            vec![],
            vec!["--memory-limit", "unknown unit", "Mi"],
        ),
        // A timeout of 0 expired everything at once: refused.
        (
            vec!["-r", &d, "--udp-timeout", "0"],
            vec![],
            vec!["--udp-timeout", "1.."],
        ),
        // A hub's agents, checked where they are read: the error names
        // the variable.
        (
            vec!["hub"],
            vec![("FLOWTAP_HUB_AGENTS", "http://127.0.0.1:1,ftp://x")],
            vec!["environment variable FLOWTAP_HUB_AGENTS", "ftp://x"],
        ),
        (
            vec!["hub"],
            vec![("FLOWTAP_HUB_AGENTS_SERVICE", "flowtap-agents:8898")],
            vec![
                "environment variable FLOWTAP_HUB_AGENTS_SERVICE",
                "NAMESPACE/NAME",
            ],
        ),
        // A variable of several entries, split as its option splits them.
        (
            vec!["-r", &d],
            vec![("FLOWTAP_DECAP_PORTS", "vxlan=4789;foo=2")],
            vec!["environment variable FLOWTAP_DECAP_PORTS", "foo=2"],
        ),
        // A space after the comma, as the help allows: the variable was
        // not named.
        (
            vec!["-r", &d],
            vec![("FLOWTAP_CLUSTER_CIDR", "198.18.0.0/15, bad")],
            vec!["environment variable FLOWTAP_CLUSTER_CIDR", "bad"],
        ),
        (
            vec!["-r", &d],
            vec![("FLOWTAP_RING_FRAMES", "5000")],
            vec!["--ring-frames", "not a power of two"],
        ),
        (
            vec!["-r", &d, "--listen", "nowhere"],
            vec![],
            vec!["--listen"],
        ),
        (vec![], vec![], vec!["--read", "--interface"]),
        // An empty filter logged errors only; an empty node name named no
        // node; a maximum below the default page refused plain requests; an
        // empty entry allowed nothing.
        (
            vec!["-r", &d],
            vec![("FLOWTAP_LOG_LEVEL", "")],
            vec!["--log-level", "empty filter"],
        ),
        (
            vec!["-r", &d, "--node-name", ""],
            vec![],
            vec!["--node-name", "an empty name"],
        ),
        // Zero or too small, refused: each was raised without a word (an
        // MCP request bound of 1 byte, every request 413).
        (
            vec!["-r", &d, "--mcp-max-request-bytes", "0"],
            vec![],
            vec!["--mcp-max-request-bytes", "at least 256 bytes"],
        ),
        (
            vec!["-r", &d, "--ipfix-active-timeout", "0"],
            vec![],
            vec!["--ipfix-active-timeout", "0 is not in 1.."],
        ),
        (
            vec!["-r", &d, "--ipfix-max-pending-records", "0"],
            vec![],
            vec!["--ipfix-max-pending-records", "0 is not in 1.."],
        ),
        (
            vec!["-r", &d, "--http-max-limit", "50"],
            vec![],
            vec!["--http-max-limit", "50 is not in 1000.."],
        ),
        (
            vec!["-r", &d, "--allowed-host", "a.example,,b.example"],
            vec![],
            vec!["--allowed-host", "an empty entry"],
        ),
        // Entries that could never match, taken without a word.
        (
            vec!["-r", &d, "--allowed-host", "flowtap.example:18144"],
            vec![],
            vec!["--allowed-host", "a host name without its port"],
        ),
        (
            vec!["-r", &d],
            vec![("FLOWTAP_ALLOWED_ORIGIN", "https://app.example/")],
            vec![
                "environment variable FLOWTAP_ALLOWED_ORIGIN",
                "without a path or a trailing /",
            ],
        ),
    ];
    for (args, env, expect) in cases {
        let o = flowtap(&args, &env);
        if args.contains(&"--k8s-inventory") {
            // A present but invalid inventory stops flowtap at start.
            assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
            assert!(
                stderr(&o).contains("Kubernetes inventory") && stderr(&o).contains(&not_toml),
                "{}",
                stderr(&o)
            );
            continue;
        }
        assert_eq!(o.status.code(), Some(2), "{args:?} {env:?}: {}", stderr(&o));
        for e in expect {
            assert!(
                stderr(&o).contains(e),
                "{args:?} {env:?}: expected {e:?} in:\n{}",
                stderr(&o)
            );
        }
    }
    // A variable no option reads is warned of, with the one meant (it was
    // ignored without a word); one that is an option's is not, nor those
    // the kubelet gives for the hub's Service `flowtap-hub`.
    let o = flowtap(
        &["-r", &d, "--dump", "/mcp/flows/summary"],
        &[
            ("FLOWTAP_RATE_WINDO", "3"),
            ("FLOWTAP_RATE_WINDOW", "3"),
            ("FLOWTAP_HUB_SERVICE_HOST", "10.96.0.10"),
            ("FLOWTAP_HUB_SERVICE_PORT_HTTP", "8898"),
            ("FLOWTAP_HUB_PORT", "tcp://10.96.0.10:8898"),
            ("FLOWTAP_HUB_PORT_8898_TCP_ADDR", "10.96.0.10"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "environment variable FLOWTAP_RATE_WINDO is no option's, and ignored: did you mean FLOWTAP_RATE_WINDOW?"
        ),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        stderr(&o).matches("no option's").count(),
        1,
        "{}",
        stderr(&o)
    );
    // A live capture's options given to one reading files are said to do
    // nothing (accepted without a word, as --threads live is not).
    let o = flowtap(
        &["-r", &d, "--dump", "/mcp/flows/summary", "--busy-poll"],
        &[("FLOWTAP_RING_FRAMES", "1024")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("options of a live capture, given to one reading files")
            && stderr(&o).contains("--busy-poll --ring-frames"),
        "{}",
        stderr(&o)
    );
    // Room for requests held below one request, refused (it was raised);
    // the request bound alone raised above the default room raises it.
    let o = flowtap(
        &[
            "-r",
            &d,
            "--listen",
            "127.0.0.1:0",
            "--mcp-max-request-bytes-held",
            "2Mi",
        ],
        &[("FLOWTAP_MCP_MAX_REQUEST_BYTES", "3Mi")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "--mcp-max-request-bytes-held 2097152 is below --mcp-max-request-bytes 3145728"
        ),
        "{}",
        stderr(&o)
    );
    let o = flowtap(&["-r", &d, "--log-level", "loud=="], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--log-level"), "{}", stderr(&o));
    // A flag given without its value is the command line's doing, not its
    // variable's; clap's tip is said once.
    let o = flowtap(&["-r"], &[("FLOWTAP_READ", &d)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        !stderr(&o).contains("environment variable"),
        "{}",
        stderr(&o)
    );
    let o = flowtap(&["-r", &d], &[("FLOWTAP_XDP_MODE", "fast")]);
    assert_eq!(
        stderr(&o).matches("For more information").count(),
        1,
        "{}",
        stderr(&o)
    );
    // What prints and exits is no setting of a file.
    let o = flowtap(
        &[
            "-r",
            &d,
            "--config",
            &file("version.toml", "version = true\n"),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown option `version`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn version_help_and_json_logs() {
    let o = flowtap(&["--version"], &[]);
    let v = String::from_utf8_lossy(&o.stdout);
    let commit = v
        .trim()
        .rsplit_once("(commit ")
        .map(|(_, c)| c.trim_end_matches(')'))
        .unwrap();
    assert!(v.starts_with("flowtap 0.1.0"), "{v}");
    assert!(
        commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()) || commit == "unknown",
        "{v}"
    );
    let o = flowtap(&["--help"], &[]);
    let help = String::from_utf8_lossy(&o.stdout);
    for heading in [
        "Source:",
        "Live capture:",
        "API server:",
        "Kubernetes:",
        "Flows:",
        "Logging and configuration:",
    ] {
        assert!(help.contains(heading), "{heading} in --help");
    }
    assert!(help.contains("[env: FLOWTAP_INTERFACE=]"));
    // The reference printed to a full disk: an error said, not a panic.
    let full = Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .args(["docs", "metrics"])
        .stdout(File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(1), "{}", stderr(&full));
    assert!(
        stderr(&full).contains("flowtap docs: writing"),
        "{}",
        stderr(&full)
    );
    let o = flowtap(&["-r", &demo(), "--log-format", "json"], &[]);
    for line in stderr(&o).lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    // The error flowtap stops on is a JSON line too, naming what failed.
    let o = flowtap(
        &[
            "hub",
            "--agents-service",
            "shop/flowtap",
            "--log-format",
            "json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let last = lines.last().expect("a line");
    assert_eq!(last["level"], "ERROR", "{last}");
    assert_eq!(last["fields"]["message"], "flowtap hub stopped", "{last}");
    assert!(
        last["fields"]["error"]
            .as_str()
            .unwrap()
            .starts_with("--agents-service needs the Kubernetes names"),
        "{last}"
    );
}

#[test]
fn the_readme_references_are_generated_from_the_program() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for what in ["config", "metrics"] {
        let generated = String::from_utf8(flowtap(&["docs", what], &[]).stdout).unwrap();
        let begin = format!("<!-- BEGIN generated {what} reference -->\n");
        let end = format!("<!-- END generated {what} reference -->");
        let start = readme
            .find(&begin)
            .unwrap_or_else(|| panic!("no {what} block"))
            + begin.len();
        let stop = readme[start..].find(&end).unwrap() + start;
        assert_eq!(
            &readme[start..stop],
            generated,
            "README {what} reference is stale: run scripts/gen-docs.sh"
        );
    }
}

/// A file that could not be read is said where a service's clients look,
/// not only on stderr: served, the answers of the files read looked whole.
#[test]
fn a_file_that_could_not_be_read_is_in_the_metrics() {
    let s = Server::start(&["-r", "/nonexistent/capture.pcap", &demo()]);
    let text = String::from_utf8(s.admin_get("/metrics").body).unwrap();
    assert_eq!(sample(&text, "flowtap_capture_files_failed"), 1.0);
    assert_eq!(sample(&text, "flowtap_frames_total"), 6000.0);
}

#[test]
fn metrics_pass_promtool_and_count_what_was_read() {
    let capture = corpus_dir().join("captures/22_malformed_l3l4_bundle.pcap");
    let inventory = root().join("demo/inventory.json");
    let s = Server::start(&[
        "-r",
        capture.to_str().unwrap(),
        &demo(),
        "--k8s-inventory",
        inventory.to_str().unwrap(),
    ]);
    assert_eq!(s.get("/mcp/flows?limit=1").status, 200);
    assert_eq!(s.get("/mcp/flows?limit=x").status, 400);
    assert_eq!(s.get("/no/such/path").status, 404);
    // Health and metrics are served apart, on the admin listener.
    assert_eq!(s.get("/metrics").status, 404);
    let r = s.admin_get("/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(r.body).unwrap();
    promtool(&text);
    assert_eq!(sample(&text, "flowtap_frames_total"), (25 + 6000) as f64);
    assert_eq!(sample(&text, "flowtap_ready"), 1.0);
    assert_eq!(
        sample(
            &text,
            "flowtap_malformed_frames_total{reason=\"truncated\"}"
        ),
        (7 + 5) as f64,
        "the bundle's 7 and the demo's 5"
    );
    assert_eq!(
        sample(&text, "flowtap_frames_by_kind_total{kind=\"icmp\"}"),
        (2 + 3) as f64,
        "the bundle's 2 and the demo's 3"
    );
    assert_eq!(
        sample(
            &text,
            "flowtap_http_requests_total{path=\"/mcp/flows\",status=\"400\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "flowtap_http_requests_total{path=\"other\",status=\"404\"}"
        ),
        1.0
    );
    assert!(sample(&text, "flowtap_inventory_addresses") > 30.0);
    assert!(sample(&text, "flowtap_active_flows") > 100.0);
    assert!(text.contains("flowtap_build_info{version=\"0.1.0\",commit=\""));
    assert!(text.contains("flowtap_snapshot_merge_duration_seconds_bucket{le=\"0.001\"}"));
    assert_eq!(s.admin_get("/healthz").status, 200);
    assert_eq!(s.admin_get("/readyz").json()["status"], "ready");
    assert_eq!(s.send_admin("POST", "/metrics", &[]).status, 405);
    assert_eq!(
        s.admin_get("/mcp/flows").status,
        404,
        "no flow data on the admin port"
    );
}

#[test]
fn readiness_waits_for_the_files_and_shutdown_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.pcap");
    let spec = capgen::Spec {
        packets: 1_500_000,
        concurrent: 5_000,
        seed: 3,
        ..capgen::Spec::default()
    };
    capgen::Generator::new(spec)
        .write(File::create(&path).unwrap())
        .unwrap();
    let s = Server::start_serving(&["-r", path.to_str().unwrap(), "--threads", "1"]);
    let first = s.admin_get("/readyz");
    assert_eq!(
        first.status,
        503,
        "not ready while reading: {:?}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(first.json()["status"], "starting");
    assert_eq!(s.admin_get("/healthz").status, 200, "alive meanwhile");
    wait::until_holds(Duration::from_secs(120), "ready", || {
        s.admin_get("/readyz").status == 200
    });
    assert_eq!(
        s.get_json("/mcp/flows/summary")["total_pkts"]
            .as_u64()
            .map(|n| n > 1_000_000),
        Some(true)
    );
    assert_eq!(s.terminate(), 0, "SIGTERM: exit 0");

    // SIGHUP (a closed terminal or ssh session) stops it as cleanly: it was
    // killed by it, without its last words.
    let s = Server::start(&["-r", &demo()]);
    assert_eq!(s.admin_get("/readyz").status, 200);
    let stderr = s.stderr.clone();
    // Sent as soon as it is ready (the handlers were installed after that,
    // and under load a SIGHUP came first and killed it: -1).
    let status = s.signal("HUP");
    assert_eq!(status, 0, "SIGHUP: exit 0: {}", stderr.lock().unwrap());
    assert!(
        stderr.lock().unwrap().contains("flowtap: shutting down"),
        "{}",
        stderr.lock().unwrap()
    );

    // Started to ignore SIGHUP (`nohup`), it goes on ignoring it.
    let (mut nohup, log, _) = common::serving_through(&["nohup"], &["-r", &demo()]);
    let pid = nohup.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        nohup.try_wait().unwrap().is_none(),
        "SIGHUP ended a nohup'd flowtap: {}",
        log.lock().unwrap()
    );
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert_eq!(
        nohup.wait().unwrap().code(),
        Some(0),
        "{}",
        log.lock().unwrap()
    );
}

/// The YAML documents of a manifest, as JSON (PyYAML comes with
/// kubernetes-validate in the project venv).
fn documents(path: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(root().join(".venv/bin/python"))
        .args(["-c", "import json,sys,yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))"])
        .arg(path)
        .output()
        .expect("the project venv (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn reading_a_file_prints_a_table_or_with_json_the_summary() {
    let (capture, inventory) = (demo(), root().join("demo/inventory.json"));
    let inventory = inventory.to_str().unwrap();
    let args = ["-r", capture.as_str(), "--k8s-inventory", inventory];
    let table = flowtap(&args, &[]);
    assert!(table.status.success(), "{}", stderr(&table));
    let table = String::from_utf8(table.stdout).unwrap();
    // The heaviest flow, as the API lists it, is the table's first row.
    let first = flowtap(
        &[&args[..], &["--dump", "/mcp/flows?limit=1"]].concat(),
        &[],
    );
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let f = &first["flows"][0];
    let row = table
        .lines()
        .find(|l| l.contains(f["client"]["pod"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("{table}"));
    let pkts = f["client_stats"]["tx_pkts"].as_u64().unwrap();
    assert!(row.contains(&format!("{pkts} pkts")), "{row}");
    assert!(
        table.contains("client → server") && table.contains("20 of "),
        "{table}"
    );
    // --json: exactly the summary --dump gives.
    let json = flowtap(&[&args[..], &["--json"]].concat(), &[]);
    let summary = flowtap(
        &[&args[..], &["--dump", "/mcp/flows/summary"]].concat(),
        &[],
    );
    assert_eq!(
        common::without_ages(&String::from_utf8(json.stdout).unwrap()),
        common::without_ages(&String::from_utf8(summary.stdout).unwrap())
    );
}

/// The manifests of `deploy/kubernetes/`, in order (without the kustomize
/// base's list of them, which is no Kubernetes object).
fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "kustomization.yaml")
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_validate_and_say_what_they_must() {
    let files = manifest_files();
    let out = Command::new(root().join(".venv/bin/kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.31.0"])
        .args(&files)
        .output()
        .expect("kubernetes-validate from the project venv (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let docs: Vec<serde_json::Value> = files.iter().flat_map(|f| documents(f)).collect();
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let role = kind("ClusterRole");
    for rule in role["rules"].as_array().unwrap() {
        assert_eq!(
            rule["verbs"],
            serde_json::json!(["list", "watch"]),
            "read-only"
        );
        for r in rule["resources"].as_array().unwrap() {
            assert!(
                ["pods", "services", "nodes", "endpointslices"].contains(&r.as_str().unwrap()),
                "{r}"
            );
        }
    }
    let ds = kind("DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    // Its own priority (a new node's agent does not wait for room), and
    // not on virtual nodes, where no host-network pod runs.
    assert_eq!(
        pod["priorityClassName"],
        kind("PriorityClass")["metadata"]["name"]
    );
    let kept_off: Vec<(&str, &str)> = pod["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operator"] == "NotIn")
        .flat_map(|e| {
            e["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| (e["key"].as_str().unwrap(), v.as_str().unwrap()))
        })
        .collect();
    assert_eq!(
        kept_off,
        [
            ("eks.amazonaws.com/compute-type", "fargate"),
            ("type", "virtual-kubelet")
        ]
    );
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    let c = &pod["containers"][0];
    assert_eq!(
        c["securityContext"]["capabilities"]["add"],
        serde_json::json!(["BPF", "NET_ADMIN", "NET_RAW", "IPC_LOCK"])
    );
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    // Probes and scraping on the admin listener; flow data needs the token
    // from the Secret; no sidecar listing the whole cluster.
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], 8899, "{probe}");
    }
    assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
    let token = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "token")
        .expect("a token volume");
    assert_eq!(token["secret"]["secretName"], "flowtap-token");
    assert!(c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object());
    assert_eq!(
        ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    // The ConfigMap's flowtap.toml is a configuration flowtap accepts.
    let toml = kind("ConfigMap")["data"]["flowtap.toml"]
        .as_str()
        .unwrap()
        .to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("flowtap.toml");
    // Offline instead of live, without `listen` (which would serve until
    // signalled), with a token file of the test's; everything else as
    // deployed.
    // Every address of either family: an IPv6 cluster's probes and pulls.
    let listen = "listen = \"[::]:8898\"";
    for setting in [
        listen,
        "admin-listen = \"[::]:8899\"",
        "auth-token-file = \"/etc/flowtap/token/token\"",
        // Behind the hub, agents need no API access.
        "k8s-watch = false",
    ] {
        assert!(toml.contains(setting), "the DaemonSet expects {setting}");
    }
    let token = tmp.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let offline = toml
        .replace(
            "interface = \"default-route\"",
            &format!("read = [\"{}\"]", demo()),
        )
        .replace(listen, "")
        .replace("/etc/flowtap/token/token", token.to_str().unwrap());
    std::fs::write(&cfg, offline).unwrap();
    let o = flowtap(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--dump",
            "/mcp/flows/summary",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // The hub: a Deployment without capabilities, bound to the read-only
    // role, finding the agents through the headless Service whose selector
    // picks the DaemonSet's pods (and not the hub's own).
    let named = |k: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == k && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {k} {name}"))
    };
    let hub = named("Deployment", "flowtap-hub");
    let hub_pod = &hub["spec"]["template"]["spec"];
    let h = &hub_pod["containers"][0];
    assert_eq!(h["args"][0], "hub");
    assert_eq!(
        h["securityContext"]["capabilities"]["add"],
        serde_json::Value::Null
    );
    assert_eq!(h["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(h["securityContext"]["runAsNonRoot"], true);
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(h[probe]["httpGet"]["port"], 8899, "hub {probe}");
    }
    assert!(h["resources"]["requests"].is_object() && h["resources"]["limits"].is_object());
    let subjects: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding")
        .flat_map(|b| b["subjects"].as_array().unwrap())
        .map(|s| &s["name"])
        .collect();
    assert_eq!(
        subjects,
        [&hub_pod["serviceAccountName"]],
        "only the hub reads the API"
    );
    assert_eq!(
        pod["automountServiceAccountToken"], false,
        "agents hold no API token"
    );
    let agents = named("Service", "flowtap-agents");
    assert_eq!(agents["spec"]["clusterIP"], "None", "headless");
    let selector = &agents["spec"]["selector"];
    let labels = |pod: &serde_json::Value| pod["spec"]["template"]["metadata"]["labels"].clone();
    assert!(selects_all(selector, &labels(ds)) && !selects_all(selector, &labels(hub)));
    let hub_toml = named("ConfigMap", "flowtap-hub")["data"]["hub.toml"]
        .as_str()
        .unwrap()
        .to_owned();
    let service = format!(
        "agents-service = \"{}/{}:{}\"",
        agents["metadata"]["namespace"].as_str().unwrap(),
        agents["metadata"]["name"].as_str().unwrap(),
        agents["spec"]["ports"][0]["port"]
    );
    for setting in [
        service.as_str(),
        "agent-token-file = \"/etc/flowtap/token/token\"",
        "auth-token-file = \"/etc/flowtap/token/token\"",
        "k8s-watch = true",
    ] {
        assert!(hub_toml.contains(setting), "the hub expects {setting}");
    }
    let hub_service = named("Service", "flowtap-hub");
    assert!(selects_all(&hub_service["spec"]["selector"], &labels(hub)));
    // And flowtap hub accepts it: from an inventory file (empty) instead
    // of the watch, on loopback, with the test's token.
    let inventory = tmp.path().join("inventory.json");
    std::fs::write(
        &inventory,
        r#"{"apiVersion":"v1","kind":"List","items":[]}"#,
    )
    .unwrap();
    let hub_cfg = tmp.path().join("hub.toml");
    std::fs::write(
        &hub_cfg,
        hub_toml
            .replace(
                "k8s-watch = true",
                &format!("k8s-inventory = \"{}\"", inventory.display()),
            )
            .replace("/etc/flowtap/token/token", token.to_str().unwrap()),
    )
    .unwrap();
    let served = Server::start_serving(&["hub", "--config", hub_cfg.to_str().unwrap()]);
    // Reached by the Service's name, as clients in the cluster reach it;
    // once its first round is made, it names the agents' Service missing
    // (the empty inventory lists no endpoints for it).
    let coverage = wait::until(Duration::from_secs(10), "the hub's first round", || {
        let summary = served.get_json_with(
            "/mcp/flows/summary",
            &[
                ("Authorization", "Bearer s3cret"),
                ("Host", "flowtap-hub.flowtap.svc:8898"),
            ],
        );
        let coverage = summary["coverage"].clone();
        if coverage["agents_expected"] == 0 {
            Err(coverage.to_string())
        } else {
            Ok(coverage)
        }
    });
    assert_eq!(
        coverage["agents_missing"],
        serde_json::json!(["service:flowtap/flowtap-agents:8898"]),
        "{coverage}"
    );
    assert_eq!(
        coverage["agents"][0]["error"],
        "the Service has no endpoints: no agent pod is running"
    );
}

/// The image's binary, its file capabilities set as the Dockerfile sets
/// them, started as the hub's Deployment starts it (its user, every
/// capability dropped, no privilege escalation): it serves; and in a
/// container granted no capability (`docker run IMAGE -r FILE`) it reads a
/// file. With the capabilities effective in the file, the kernel refuses
/// to execute it at all where the bounding set cannot grant them, and the
/// hub's pod never started. Root: setcap.
#[test]
fn the_image_s_binary_runs_a_hub_and_reads_files_with_no_capability() {
    let bin = common::image_binaries_with_capabilities();
    let flowtap = bin.path().join("flowtap");

    let docs: Vec<serde_json::Value> = manifest_files().iter().flat_map(|f| documents(f)).collect();
    let hub = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "flowtap-hub")
        .expect("the hub's Deployment");
    let context = &hub["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(context["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(context["allowPrivilegeEscalation"], false);
    let as_the_hub = [
        "setpriv".to_owned(),
        format!("--reuid={}", context["runAsUser"]),
        format!("--regid={}", context["runAsGroup"]),
        "--clear-groups".to_owned(),
        "--bounding-set=-all".to_owned(),
        "--inh-caps=-all".to_owned(),
        "--no-new-privs".to_owned(),
        flowtap.to_str().unwrap().to_owned(),
    ];
    let mut hub = Command::new(&as_the_hub[0])
        .args(&as_the_hub[1..])
        .args(["hub", "--agent", "http://127.0.0.1:9"])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (log, lines) = common::follow_stderr(&mut hub);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut serving = false;
    while let Ok(line) =
        lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        if line.starts_with("flowtap: serving on ") {
            serving = true;
            break;
        }
    }
    let _ = hub.kill();
    let _ = hub.wait();
    assert!(serving, "the hub did not serve: {}", log.lock().unwrap());

    // (The tests' fault hook is not in the shipped binary: the variable
    // that makes a debug build's worker panic is ignored.)
    let read = Command::new(&as_the_hub[0])
        .args(&as_the_hub[1..])
        .args(["-r", demo().as_str(), "--json"])
        .env("FLOWTAP_FAULT", "panic-after-frames:1")
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", stderr(&read));
    let summary: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    assert!(summary["total_flows"].as_u64().unwrap() > 0, "{summary}");
}

/// Whether every label of `selector` is on `labels`.
fn selects_all(selector: &serde_json::Value, labels: &serde_json::Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| s.iter().all(|(k, v)| &labels[k] == v))
}

/// `kubectl kustomize` output as JSON documents, validated like the files.
fn kustomize(dir: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(dir)
        .output()
        .expect("kubectl (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tmp = tempfile::tempdir().unwrap();
    let rendered = tmp.path().join("rendered.yaml");
    std::fs::write(&rendered, &out.stdout).unwrap();
    let check = Command::new(root().join(".venv/bin/kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.31.0"])
        .arg(&rendered)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    documents(&rendered)
}

#[test]
fn the_manifests_are_a_kustomize_base_and_the_example_overlay_adapts_them() {
    // The base renders exactly the objects of its files.
    let base_dir = root().join("deploy/kubernetes");
    let base = kustomize(&base_dir);
    let mut listed: Vec<serde_json::Value> = Vec::new();
    let files = manifest_files();
    for f in &files {
        listed.extend(documents(f));
    }
    let names = |docs: &[serde_json::Value]| {
        let mut n: Vec<String> = docs
            .iter()
            .map(|d| format!("{}/{}", d["kind"], d["metadata"]["name"]))
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&base), names(&listed));

    // The overlay, with the token file its user writes (not in git).
    let tmp = tempfile::tempdir().unwrap();
    let copy = |from: &Path, to: &Path| {
        let status = Command::new("cp")
            .arg("-r")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(status.success());
    };
    copy(&base_dir, tmp.path());
    copy(&root().join("deploy/overlays"), tmp.path());
    let overlay = tmp.path().join("overlays/example");
    std::fs::write(overlay.join("token"), "s3cret-from-the-overlay\n").unwrap();
    let docs = kustomize(&overlay);
    assert_eq!(docs.len(), base.len() + 1, "the base and the token Secret");
    for d in &docs {
        match d["kind"].as_str().unwrap() {
            "Namespace" => assert_eq!(d["metadata"]["name"], "netobs"),
            // Cluster-scoped: no namespace to move to.
            "ClusterRole" | "PriorityClass" => {}
            "ClusterRoleBinding" => {
                assert_eq!(d["subjects"][0]["namespace"], "netobs")
            }
            _ => assert_eq!(d["metadata"]["namespace"], "netobs", "{d}"),
        }
    }
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    // Named by its content, and mounted by that name: a new token rolls
    // the agents and the hub (each reads it at start; one left on the old
    // token would answer 401 to the others).
    let secret = docs
        .iter()
        .find(|d| d["kind"] == "Secret")
        .expect("the token Secret");
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    assert!(secret_name.starts_with("flowtap-token-"), "{secret_name}");
    assert_eq!(secret["data"]["token"], "czNjcmV0LWZyb20tdGhlLW92ZXJsYXkK");
    let env = |workload: &serde_json::Value, name: &str| -> String {
        let c = &workload["spec"]["template"]["spec"]["containers"][0];
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {c}"))["value"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (agents, hub) = (
        find("DaemonSet", "flowtap"),
        find("Deployment", "flowtap-hub"),
    );
    for w in [agents, hub] {
        let c = &w["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "registry.example.com/netobs/flowtap:0.1.0");
        let volumes = w["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
        assert!(
            volumes
                .iter()
                .any(|v| v["secret"]["secretName"] == secret_name),
            "{volumes:?}"
        );
    }
    assert_eq!(env(agents, "FLOWTAP_INTERFACE"), "ens5");
    assert_eq!(
        env(hub, "FLOWTAP_HUB_AGENTS_SERVICE"),
        "netobs/flowtap-agents:8898"
    );
    assert!(env(hub, "FLOWTAP_ALLOWED_HOST").contains("flowtap-hub.netobs.svc"));
    // The values are ones flowtap accepts, from the environment, over a
    // configuration file that says otherwise.
    let cidrs = env(agents, "FLOWTAP_CLUSTER_CIDR");
    let cfg = tmp.path().join("f.toml");
    std::fs::write(&cfg, "cluster-cidr = [\"192.0.2.0/24\"]\n").unwrap();
    let o = flowtap(
        &["--config", cfg.to_str().unwrap(), "-r", &demo(), "--json"],
        &[("FLOWTAP_CLUSTER_CIDR", cidrs.as_str())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // (The start log prints the options it runs with.)
    let log = stderr(&o);
    assert!(
        log.contains("10.100.0.0") && log.contains("10.200.0.0") && !log.contains("192.0.2.0"),
        "{log}"
    );
}

/// `flowtap healthcheck` (the image's HEALTHCHECK) passes against the
/// admin listener's `/healthz` and fails where there is none.
#[test]
fn the_healthcheck_passes_on_the_admin_listener() {
    let demo = root().join("demo/demo.pcap");
    let server = Server::start(&["-r", demo.to_str().unwrap()]);
    let check = |url: String| {
        Command::new(env!("CARGO_BIN_EXE_flowtap"))
            .args(["healthcheck", "--url", &url])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(check(format!("http://{}/healthz", server.admin)), Some(0));
    assert_eq!(check(format!("http://{}/healthz", server.addr)), Some(1));
    // A base URL, as the other commands take one: its /healthz.
    assert_eq!(check(format!("http://{}", server.admin)), Some(0));
    // Without a URL: the admin listener flowtap was given, by its variable
    // (the container's environment), not the default.
    let by_variable = |admin: String| {
        Command::new(env!("CARGO_BIN_EXE_flowtap"))
            .arg("healthcheck")
            .env("FLOWTAP_ADMIN_LISTEN", admin)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(by_variable(server.admin.to_string()), Some(0));
    assert_eq!(by_variable(server.addr.to_string()), Some(1));
    // The capture's config file, in the environment the image's
    // HEALTHCHECK runs in, is not the health check's: it was an error
    // (exit 2, the file's options after the subcommand's).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flowtap.toml");
    std::fs::write(&config, "log-level = \"info\"\ninterface = \"eth1\"\n").unwrap();
    let with_config = Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .arg("healthcheck")
        .env("FLOWTAP_ADMIN_LISTEN", server.admin.to_string())
        .env("FLOWTAP_CONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(
        with_config.status.code(),
        Some(0),
        "{}",
        stderr(&with_config)
    );
}
