//! flowtap at a real terminal: tmux runs it in a pseudo-terminal of a known
//! size and `capture-pane` reads the screen as a person sees it. `flowtap
//! top` shows the API's heaviest flows until `q`; a long `-r` run shows its
//! progress on a terminal and nothing elsewhere.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::project_root;
use common::server::serve_demo;
use common::wait;
use serde_json::Value;

const TOKEN: &str = "top-test-token";

/// Bytes as the table prints them (binary units).
fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let (mut v, mut unit) = (n as f64, 0);
    while v >= 1023.95 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[unit])
    }
}

/// An endpoint as the table names it: pod, else service, else IP.
fn name(ep: &Value) -> String {
    if let Some(pod) = ep["pod"].as_str() {
        pod.to_owned()
    } else if let Some(svc) = ep["svc"].as_str() {
        format!("svc/{svc}")
    } else {
        ep["ip"].as_str().unwrap().to_owned()
    }
}

/// The line of `screen` showing `flow`, with its packets and bytes per side.
fn check_row(screen: &str, flow: &Value) {
    let client = name(&flow["client"]);
    let server = format!("{}:{}", name(&flow["server"]), flow["server"]["port"]);
    let sent = |side: &str| {
        let pkts = flow[side]["tx_pkts"].as_u64().unwrap();
        format!(
            "{pkts} pkt{}, {}",
            if pkts == 1 { "" } else { "s" },
            human_bytes(flow[side]["tx_bytes"].as_u64().unwrap())
        )
    };
    let (to_server, to_client) = (sent("client_stats"), sent("server_stats"));
    assert!(
        screen.lines().any(|line| {
            line.contains(&format!(" {client} "))
                && line.contains(&format!(" {server} "))
                && line.contains(&to_server)
                && line.contains(&to_client)
        }),
        "no row {client} {server} {to_server} {to_client} in\n{screen}"
    );
}

fn tmux(socket: &str, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(["-L", socket])
        .args(args)
        .output()
        .expect("tmux (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "tmux {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn wait_for(what: &str, mut check: impl FnMut() -> Option<String>) -> String {
    wait::until(Duration::from_secs(20), what, || {
        check().ok_or_else(|| "(not yet)".to_owned())
    })
}

/// The exit status a pane's shell wrote (`echo $? > FILE`), once it is
/// written whole: the file exists, empty, before its line is in it.
fn exit_status(what: &str, file: &Path) -> String {
    let line = wait_for(what, || {
        std::fs::read_to_string(file)
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
    line.trim().to_owned()
}

/// The pane once tmux has drawn what the program left on it at its exit
/// (it may not have yet when the exit status is written): one without
/// `gone`.
fn screen_without(socket: &str, gone: &str) -> String {
    wait_for(&format!("the screen without {gone:?}"), || {
        let screen = tmux(socket, &["capture-pane", "-p"]);
        (!screen.contains(gone)).then_some(screen)
    })
}

#[test]
fn top_shows_the_heaviest_flows_in_a_terminal_until_q() {
    let (server, dir) = serve_demo(TOKEN, &[]);
    let token = dir.path().join("token");
    let bearer = format!("Bearer {TOKEN}");
    let api = server.get_json_with(
        "/mcp/flows?format=full&sort=bytes&limit=5",
        &[("Authorization", &bearer)],
    );
    let flows = api["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 5);
    let footer = format!("5 of {} flows by bytes", api["total"]);

    let url = format!("http://{}", server.addr);
    let top = |extra: &[&str]| {
        let mut args = vec![
            "top",
            "--url",
            &url,
            "--auth-token-file",
            token.to_str().unwrap(),
            "--limit",
            "5",
        ];
        args.extend_from_slice(extra);
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    };

    // In a terminal: the table, refreshed, until q.
    let socket = format!("flowtap-top-{}", std::process::id());
    let done = dir.path().join("exit-status");
    let command = format!(
        "'{}' {}; echo $? > '{}'; sleep 30",
        env!("CARGO_BIN_EXE_flowtap"),
        top(&[]),
        done.display()
    );
    tmux(
        &socket,
        &["new-session", "-d", "-x", "200", "-y", "50", &command],
    );
    let screen = wait_for("the first screen of flowtap top", || {
        let screen = tmux(&socket, &["capture-pane", "-p"]);
        screen.contains(&footer).then_some(screen)
    });
    assert!(screen.starts_with("flowtap top · http://"), "{screen}");
    for flow in flows {
        check_row(&screen, flow);
    }
    tmux(&socket, &["send-keys", "q"]);
    assert_eq!(exit_status("flowtap top to quit on q", &done), "0");
    // The shell's screen is back (the alternate screen was left).
    screen_without(&socket, &footer);
    tmux(&socket, &["kill-server"]);

    // Without a terminal: one table; --json: the API's answer.
    let run = |extra: &[&str]| {
        let out = common::stdout_of(Command::new("sh").args([
            "-c",
            &format!("'{}' {}", env!("CARGO_BIN_EXE_flowtap"), top(extra)),
        ]));
        String::from_utf8(out).unwrap()
    };
    let piped = run(&[]);
    assert!(piped.contains(&footer), "{piped}");
    for flow in flows {
        check_row(&piped, flow);
    }
    let json: Value = serde_json::from_str(&run(&["--json"])).unwrap();
    let keys = |v: &Value| -> Vec<(String, String)> {
        v["flows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["client"]["ip"].to_string(), f["server"]["ip"].to_string()))
            .collect()
    };
    assert_eq!(keys(&json), keys(&api));
    assert!(Path::new(&done).exists());

    // A reader that stops early (`| head`, `less` quit): no error, exit 0.
    let out = Command::new("bash")
        .args([
            "-c",
            &format!(
                "'{}' {} | true; exit ${{PIPESTATUS[0]}}",
                env!("CARGO_BIN_EXE_flowtap"),
                top(&[])
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).as_ref()
        ),
        (Some(0), "")
    );

    // An ordinary 80 x 24 terminal and more flows than fit: the title, the
    // column names, the heaviest flows and the footer stay on the screen;
    // SIGTERM ends it as q does, the terminal given back.
    let small = format!("flowtap-top-small-{}", std::process::id());
    let done = dir.path().join("exit-status-small");
    let command = format!(
        "'{}' top --url '{url}' --auth-token-file '{}' --limit 20; echo $? > '{}'; sleep 30",
        env!("CARGO_BIN_EXE_flowtap"),
        token.display(),
        done.display()
    );
    tmux(
        &small,
        &["new-session", "-d", "-x", "80", "-y", "24", &command],
    );
    let footer20 = format!("20 of {} flows by bytes", api["total"]);
    let screen = wait_for("flowtap top in 80 x 24", || {
        let screen = tmux(&small, &["capture-pane", "-p"]);
        screen.contains(&footer20).then_some(screen)
    });
    assert!(screen.starts_with("flowtap top · http://"), "{screen}");
    assert!(screen.contains("client"), "the column names: {screen}");
    // The demo's IPv4 and IPv6 flows of one pair of pods told apart by
    // their addresses, each on a line of its own below the name (on the
    // name's line, they took the width that 100 columns give what the
    // client sent: see the test at 90 columns below).
    assert!(
        screen.contains("│ (198.18.0.1)"),
        "an address below its name: {screen}"
    );
    assert!(screen.contains("more lines"), "the cut is said: {screen}");
    let argv = format!(
        "{} top --url {url} --auth-token-file {} --limit 20",
        env!("CARGO_BIN_EXE_flowtap"),
        token.display()
    );
    let killed = Command::new("pkill")
        .args(["-TERM", "-f", "-x", &argv])
        .status()
        .unwrap();
    assert!(killed.success(), "no process {argv}");
    assert_eq!(exit_status("flowtap top to end on SIGTERM", &done), "0");
    screen_without(&small, &footer20);
    tmux(&small, &["kill-server"]);
    assert_eq!(server.terminate(), 0);
}

/// A flowtap that takes connections and never answers: `top` still quits
/// on q at once, not when its request times out (5 s).
#[test]
fn top_quits_on_q_while_an_answer_is_awaited() {
    let dir = tempfile::tempdir().unwrap();
    // Connections complete in the listener's backlog; none is answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let socket = format!("flowtap-top-silent-{}", std::process::id());
    let done = dir.path().join("exit-status");
    let command = format!(
        "'{}' top --url '{url}'; echo $? > '{}'; sleep 30",
        env!("CARGO_BIN_EXE_flowtap"),
        done.display()
    );
    tmux(
        &socket,
        &["new-session", "-d", "-x", "100", "-y", "30", &command],
    );
    // The request is under way: its connection was made (held open here,
    // never answered).
    silent.set_nonblocking(true).unwrap();
    let _request = wait::until(Duration::from_secs(20), "top's connection", || {
        silent.accept().map_err(|e| e.to_string())
    });
    let asked = std::time::Instant::now();
    tmux(&socket, &["send-keys", "q"]);
    let status = exit_status("flowtap top to quit on q", &done);
    let took = asked.elapsed();
    tmux(&socket, &["kill-server"]);
    assert_eq!(status, "0");
    assert!(
        took < Duration::from_secs(2),
        "q took {took:?}: it waited for the request"
    );
    drop(silent);
}

/// `top` ends when its terminal goes away (a closed window, a dropped ssh
/// session: SIGHUP, and a terminal with nothing more to read), where it
/// went on spinning on that terminal; and `kill -INT` ends it as q does,
/// the terminal given back (in raw mode Ctrl-C is a key, so SIGINT comes
/// only from elsewhere, and it left the shell on the alternate screen).
#[test]
fn top_ends_with_its_terminal_and_gives_it_back_on_sigint() {
    let (server, dir) = serve_demo(TOKEN, &[]);
    let token = dir.path().join("token");
    let url = format!("http://{}", server.addr);
    let bin = env!("CARGO_BIN_EXE_flowtap");
    let token = token.to_str().unwrap();
    // Each run's own --limit, so that pgrep finds that one.
    let args = |limit: &'static str| {
        [
            bin,
            "top",
            "--url",
            &url,
            "--auth-token-file",
            token,
            "--limit",
            limit,
        ]
        .map(str::to_owned)
    };
    let quoted = |args: &[String]| {
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let pid_of = |args: &[String]| -> u32 {
        let argv = args.join(" ");
        let pid = wait_for("flowtap top's process", || {
            let out = Command::new("pgrep")
                .args(["-f", "-x", &argv])
                .output()
                .ok()?;
            String::from_utf8(out.stdout)
                .ok()?
                .lines()
                .next()
                .map(str::to_owned)
        });
        pid.trim().parse().unwrap()
    };
    let first_screen = |socket: &str| {
        wait_for("the first screen of flowtap top", || {
            let screen = tmux(socket, &["capture-pane", "-p"]);
            screen.contains("flows by bytes").then_some(screen)
        })
    };

    // The window closed: tmux hangs up the pane's terminal.
    let socket = format!("flowtap-top-hup-{}", std::process::id());
    let closed = args("7");
    tmux(
        &socket,
        &[
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "30",
            &quoted(&closed),
        ],
    );
    first_screen(&socket);
    let pid = pid_of(&closed);
    tmux(&socket, &["kill-server"]);
    wait_for("flowtap top to end with its terminal", || {
        // Gone, or a zombie not reaped yet by its new parent.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => Some("gone".to_owned()),
            Ok(stat) => stat
                .rsplit_once(") ")
                .filter(|(_, rest)| rest.starts_with('Z'))
                .map(|_| "a zombie".to_owned()),
        }
    });

    // SIGINT from elsewhere.
    let socket = format!("flowtap-top-int-{}", std::process::id());
    let done = dir.path().join("exit-status-int");
    let interrupted = args("8");
    let command = format!(
        "{}; echo $? > '{}'; sleep 30",
        quoted(&interrupted),
        done.display()
    );
    tmux(
        &socket,
        &["new-session", "-d", "-x", "100", "-y", "30", &command],
    );
    first_screen(&socket);
    let pid = pid_of(&interrupted);
    let sent = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert_eq!(exit_status("flowtap top to end on SIGINT", &done), "0");
    let alternate = tmux(&socket, &["display-message", "-p", "#{alternate_on}"]);
    tmux(&socket, &["kill-server"]);
    assert_eq!(alternate.trim(), "0", "the shell's screen is back");
    assert_eq!(server.terminate(), 0);
}

#[test]
fn a_long_read_shows_progress_on_a_terminal_and_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let demo = project_root().join("demo/demo.pcap");
    let flowtap = env!("CARGO_BIN_EXE_flowtap");
    // The capture comes through a pipe that stays open after its last
    // frame until the test has seen the progress line (the file `go`;
    // bounded: 30 s): the run is long, and its size unknown (no bar, a
    // count).
    let out = dir.path().join("summary.json");
    let done = dir.path().join("exit-status");
    let go = dir.path().join("go");
    let command = format!(
        "(cat '{}'; for i in $(seq 300); do [ -e '{}' ] && break; sleep 0.1; done) | '{flowtap}' -r /dev/stdin --json > '{}'; echo $? > '{}'; sleep 30",
        demo.display(),
        go.display(),
        out.display(),
        done.display()
    );
    let socket = format!("flowtap-progress-{}", std::process::id());
    tmux(
        &socket,
        &["new-session", "-d", "-x", "200", "-y", "50", &command],
    );
    // The reader waits in the pipe for the rest of the input: the count
    // shows what it has parsed so far.
    // (A capture can catch the line drawn before its first count:
    // wait for a whole one.)
    let whole = |l: &&str| l.contains("of the input") && l.contains("file 1/1: ");
    let screen = wait_for("progress on the terminal", || {
        let screen = tmux(&socket, &["capture-pane", "-p"]);
        screen.lines().any(|l| whole(&l)).then_some(screen)
    });
    let line = screen.lines().find(whole).unwrap();
    let count: u64 = line
        .split("file 1/1: ")
        .nth(1)
        .and_then(|rest| rest.split(" frames").next())
        .map(|n| n.replace(',', "").parse().unwrap())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(count > 0 && count <= 6000, "{line}");
    assert!(
        line.contains("on the wire") && line.contains("frames/s"),
        "{line}"
    );
    // A person at the terminal is not shown every option first.
    assert!(!screen.contains("configuration"), "{screen}");
    std::fs::write(&go, "").unwrap();
    assert_eq!(exit_status("the run to end", &done), "0");
    // Cleared once the reading is over; the results are untouched.
    screen_without(&socket, "of the input");
    tmux(&socket, &["kill-server"]);
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    // The same as reading the file itself.
    let direct = Command::new(flowtap)
        .args(["-r", demo.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let direct: Value = serde_json::from_slice(&direct.stdout).unwrap();
    assert_eq!(summary["total_flows"], direct["total_flows"]);
    assert!(summary["total_flows"].as_u64().unwrap() > 100);

    // Without a terminal on stderr: the same long run draws nothing.
    let run = Command::new("sh")
        .args([
            "-c",
            &format!(
                "(cat '{}'; sleep 1) | '{flowtap}' -r /dev/stdin --json",
                demo.display()
            ),
        ])
        .output()
        .unwrap();
    assert!(run.status.success());
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert!(
        !stderr.contains("frames,") && !stderr.contains('\r'),
        "{stderr}"
    );
}

/// The demo's table in a 90-column terminal keeps what the client sent:
/// the rows qualified by their namespace and addresses put the addresses
/// on lines of their own (on the name's line they took 120 columns before
/// it showed). A terminal that says it is 0 columns wide (a pty not sized
/// yet) gets the whole table, a row a line, as a pipe does (it got a
/// character a line).
#[test]
fn the_demo_s_table_fits_what_the_client_sent_in_90_columns() {
    let root = project_root();
    let command = |tail: &str| {
        format!(
            "'{}' -r '{}' --k8s-inventory '{}' 2>/dev/null{tail}",
            env!("CARGO_BIN_EXE_flowtap"),
            root.join("demo/demo.pcap").display(),
            root.join("demo/inventory.json").display(),
        )
    };
    let socket = format!("flowtap-table-90-{}", std::process::id());
    tmux(
        &socket,
        &[
            "new-session",
            "-d",
            "-x",
            "90",
            "-y",
            "60",
            &command("; sleep 30"),
        ],
    );
    let screen = wait_for("the table in 90 columns", || {
        let screen = tmux(&socket, &["capture-pane", "-p"]);
        screen.contains("flows by bytes").then_some(screen)
    });
    tmux(&socket, &["kill-server"]);
    let header = screen.lines().find(|l| l.contains("│ client")).unwrap();
    assert!(header.contains("client → server"), "{screen}");
    assert!(screen.lines().all(|l| l.chars().count() <= 90), "{screen}");

    // `stty cols 0` inside a pty: what `script` and a fresh `kubectl exec
    // -t` give.
    let unsized_tty = Command::new("script")
        .args([
            "-q",
            "-c",
            &format!("stty cols 0 rows 0; {}", command("")),
            "/dev/null",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&unsized_tty.stdout);
    let header = text.lines().find(|l| l.contains("│ client")).unwrap();
    assert!(header.contains("rate"), "{text}");
    let rows = text.lines().filter(|l| l.starts_with("│ ")).count();
    assert!(rows <= 24, "{rows} lines of rows: {text}");
}
