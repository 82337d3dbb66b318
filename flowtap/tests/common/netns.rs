//! Network namespaces for the live tests: a `Lab` makes its namespaces,
//! runs commands and processes in them, and on drop kills its processes and
//! deletes its namespaces (which deletes their veths, qdiscs and XDP
//! programs), also when the test panics. Addresses are 198.18.0.0/15 and
//! 2001:db8::/32 only.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{FlowSummary, Key, parse_flows};

pub(crate) fn require_root() {
    let uid = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the live tests create network namespaces and load XDP programs: run them as root (CI does)"
    );
}

pub(crate) fn traffic_script() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/traffic.py")
}

fn check(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub(crate) struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    /// `tag` keeps concurrent labs apart (with the process id).
    pub(crate) fn new(tag: &str) -> Lab {
        require_root();
        Lab {
            prefix: format!("ft{}{tag}", std::process::id() % 100_000),
            namespaces: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Ends the lab (as dropping it does) and checks that none of its
    /// namespaces is left.
    pub(crate) fn close(self) {
        let prefix = self.prefix.clone();
        drop(self);
        let left = namespaces_with(&prefix);
        assert!(left.is_empty(), "namespaces left: {left:?}");
    }

    /// Creates namespace `<prefix>-<name>` with loopback up; returns its name.
    pub(crate) fn ns(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.prefix);
        run(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `args` inside `ns` and returns its output (it must succeed).
    pub(crate) fn exec(&self, ns: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).args(args);
        check(&format!("{ns}: {}", args.join(" ")), cmd.output())
    }

    /// Starts `args` inside `ns` in the background; the lab kills it at the end.
    pub(crate) fn spawn(&mut self, ns: &str, args: &[&str]) -> &mut Child {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {args:?} in {ns}: {e}"));
        self.children.push(child);
        self.children.last_mut().unwrap()
    }

    /// Starts the traffic servers in `ns` and waits until they listen.
    pub(crate) fn traffic_servers(
        &mut self,
        ns: &str,
        addrs: &str,
        tcp_ports: &str,
        udp_ports: &str,
    ) {
        self.traffic_servers_with(ns, addrs, tcp_ports, udp_ports, &[]);
    }

    /// [`Lab::traffic_servers`] with more of the script's options.
    pub(crate) fn traffic_servers_with(
        &mut self,
        ns: &str,
        addrs: &str,
        tcp_ports: &str,
        udp_ports: &str,
        options: &[&str],
    ) {
        let script = traffic_script();
        let mut args = vec![
            "python3",
            script.to_str().unwrap(),
            "serve",
            "--addrs",
            addrs,
            "--tcp-ports",
            tcp_ports,
            "--udp-ports",
            udp_ports,
        ];
        args.extend_from_slice(options);
        let child = self.spawn(ns, &args);
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "traffic servers did not start");
    }

    /// Turns `dev`'s segmentation offloads off: what it sends and takes
    /// in is one frame a packet, as a wire carries them (a mirror of a
    /// host's own egress would take the stack's larger packets).
    pub(crate) fn no_offloads(&self, ns: &str, dev: &str) {
        self.exec(
            ns,
            &[
                "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off",
            ],
        );
    }

    /// Runs the traffic client in `ns`; returns its JSON summary.
    pub(crate) fn traffic_client(&self, ns: &str, args: &[&str]) -> Value {
        let script = traffic_script();
        let mut all = vec!["python3", script.to_str().unwrap(), "client"];
        all.extend_from_slice(args);
        let out = self.exec(ns, &all);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "client output: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs a command that must succeed.
pub(crate) fn run(args: &[&str]) -> Output {
    check(
        &args.join(" "),
        Command::new(args[0]).args(&args[1..]).output(),
    )
}

/// Namespaces whose names start with `prefix`.
pub(crate) fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = run(&["ip", "netns", "list"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// `flowtap -i ...` running inside a namespace, queried with curl there.
pub(crate) struct LiveFlowtap {
    child: Child,
    pub ns: String,
    /// The data listener (flow data).
    pub addr: String,
    /// The admin listener (/healthz, /readyz, /metrics).
    pub admin: String,
    pub stderr: Arc<Mutex<String>>,
    /// stderr's lines as they come: closed once flowtap has exited and its
    /// last line is in `stderr`.
    lines: std::sync::mpsc::Receiver<String>,
}

impl LiveFlowtap {
    pub(crate) fn start(ns: &str, args: &[&str]) -> LiveFlowtap {
        LiveFlowtap::start_with(ns, &[env!("CARGO_BIN_EXE_flowtap")], args)
    }

    /// Its process (`ip netns exec` and a wrapper exec it, keeping theirs).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Like `start`, serving flow data on `listen` (the admin listener on
    /// loopback).
    pub(crate) fn start_on(ns: &str, args: &[&str], listen: &str) -> LiveFlowtap {
        LiveFlowtap::launch(ns, &[env!("CARGO_BIN_EXE_flowtap")], args, listen)
    }

    /// Like `start`, with the command line that runs flowtap given: a
    /// binary elsewhere, or one run by a wrapper (`setpriv ... flowtap`).
    pub(crate) fn start_with(ns: &str, program: &[&str], args: &[&str]) -> LiveFlowtap {
        LiveFlowtap::launch(ns, program, args, "127.0.0.1:0")
    }

    fn launch(ns: &str, program: &[&str], args: &[&str], listen: &str) -> LiveFlowtap {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(program)
            .args(args)
            .args(["--listen", listen, "--admin-listen", "127.0.0.1:0"])
            .args(["--snapshot-interval", "0.2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting flowtap");
        let (stderr, rx) = super::follow_stderr(&mut child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() || admin.is_none() {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    panic!("flowtap -i did not start:\n{}", stderr.lock().unwrap())
                });
            if let Some(a) = line.strip_prefix("flowtap: serving on http://") {
                addr = Some(a.to_owned());
            }
            if let Some(a) = line.strip_prefix("flowtap: admin on http://") {
                admin = Some(a.to_owned());
            }
        }
        LiveFlowtap {
            child,
            ns: ns.to_owned(),
            addr: addr.expect("read above"),
            admin: admin.expect("read above"),
            stderr,
            lines: rx,
        }
    }

    pub(crate) fn get_json(&self, target: &str) -> Value {
        serde_json::from_str(&self.get_text(target)).unwrap()
    }

    /// Every flow, from a `format=full` answer and its `format=raw` twin
    /// taken from the same snapshot: a snapshot published between the two
    /// requests would pair different flow lists, so the pair is read again
    /// until the full answer is the same before and after the raw one
    /// (bounded: 20 tries).
    pub(crate) fn flows(&self) -> BTreeMap<Key, FlowSummary> {
        let q = "limit=100000";
        // An answer's coverage ages with each answer: the rest tells the
        // snapshot.
        let full_answer = || {
            let mut full = self.get_json(&format!("/mcp/flows?format=full&{q}"));
            full.as_object_mut().unwrap().remove("coverage");
            full
        };
        for _ in 0..20 {
            let full = full_answer();
            let raw = self.get_json(&format!("/mcp/flows?format=raw&{q}"));
            if full_answer() == full {
                return parse_flows(&full, &raw)
                    .into_iter()
                    .map(|f| (f.key.clone(), f))
                    .collect();
            }
        }
        panic!("no two answers in a row came from the same snapshot");
    }

    /// GET `target` on the data listener with curl inside the namespace; it
    /// must answer 2xx.
    pub(crate) fn get_text(&self, target: &str) -> String {
        self.curl(&self.addr, target)
    }

    /// GET `target` on the admin listener (/healthz, /readyz, /metrics).
    pub(crate) fn admin_text(&self, target: &str) -> String {
        self.curl(&self.admin, target)
    }

    /// The HTTP status of GET `target` on the admin listener.
    pub(crate) fn admin_status(&self, target: &str) -> u16 {
        self.admin_answer(target).0
    }

    /// The HTTP status and body of GET `target` on the admin listener,
    /// whatever the status.
    pub(crate) fn admin_answer(&self, target: &str) -> (u16, String) {
        let url = format!("http://{}{target}", self.admin);
        let out = check(
            &format!("curl {url}"),
            Command::new("ip")
                .args(["netns", "exec", &self.ns, "curl", "-sS"])
                .args(["-w", "\n%{http_code}", &url])
                .output(),
        );
        let out = String::from_utf8_lossy(&out.stdout);
        let (body, status) = out.rsplit_once('\n').expect("curl's -w line");
        (status.trim().parse().unwrap(), body.to_owned())
    }

    fn curl(&self, addr: &str, target: &str) -> String {
        let url = format!("http://{addr}{target}");
        let out = check(
            &format!("curl {url}"),
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.ns,
                    "curl",
                    "-sS",
                    "--fail-with-body",
                    &url,
                ])
                .output(),
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Waits until the published snapshot has counted `frames` frames.
    pub(crate) fn wait_for_frames(&self, at_least: u64) {
        super::wait::until(
            Duration::from_secs(20),
            &format!("{at_least} packets"),
            || {
                let summary = self.get_json("/mcp/flows/summary");
                match summary["total_pkts"].as_u64().unwrap_or(0) {
                    seen if seen >= at_least => Ok(()),
                    seen => Err(format!("flowtap saw {seen}")),
                }
            },
        );
        // One more snapshot interval, for stragglers.
        std::thread::sleep(Duration::from_millis(600));
    }

    /// Everything an exited flowtap wrote to stderr, once the thread that
    /// reads it has read its last line (bounded: 10 s).
    fn whole_stderr(&self) -> String {
        use std::sync::mpsc::RecvTimeoutError;
        super::wait::until(
            Duration::from_secs(10),
            "the end of flowtap's stderr",
            || {
                loop {
                    match self.lines.recv_timeout(super::wait::EVERY) {
                        Ok(_) => continue,
                        Err(RecvTimeoutError::Disconnected) => return Ok(()),
                        Err(RecvTimeoutError::Timeout) => return Err("still open".to_owned()),
                    }
                }
            },
        );
        self.stderr.lock().unwrap().clone()
    }

    /// The exit status and stderr, if flowtap has exited by itself.
    pub(crate) fn try_exit(&mut self) -> Option<(i32, String)> {
        let status = self.child.try_wait().ok()??;
        Some((status.code().unwrap_or(-1), self.whole_stderr()))
    }

    /// SIGTERM; returns the exit status and everything flowtap wrote to stderr.
    pub(crate) fn stop(self) -> (i32, String) {
        self.terminate();
        self.wait_exit()
    }

    /// Sends SIGTERM, and returns at once.
    pub(crate) fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends signal `name` (STOP, CONT, ...), and returns at once.
    pub(crate) fn signal(&self, name: &str) {
        run(&["kill", &format!("-{name}"), &self.child.id().to_string()]);
    }

    /// Waits (15 s at most) for flowtap to exit: its exit status and
    /// everything it wrote to stderr.
    pub(crate) fn wait_exit(mut self) -> (i32, String) {
        let status =
            super::wait::until(Duration::from_secs(15), "flowtap's exit on SIGTERM", || {
                self.child
                    .try_wait()
                    .unwrap()
                    .ok_or_else(|| "still running".to_owned())
            });
        (status.code().unwrap_or(-1), self.whole_stderr())
    }

    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; the exit status, stderr, and what flowtap printed on
    /// stdout (`--dump`'s answers: small, within the pipe's buffer).
    pub(crate) fn stop_with_stdout(self) -> (i32, String, String) {
        self.terminate();
        self.wait_exit_with_stdout()
    }

    /// [`LiveFlowtap::wait_exit`], with what flowtap printed on stdout.
    pub(crate) fn wait_exit_with_stdout(mut self) -> (i32, String, String) {
        let mut stdout = self.child.stdout.take().expect("stdout piped");
        let (status, stderr) = self.wait_exit();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        (status, stderr, text)
    }
}

impl Drop for LiveFlowtap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command line (split on whitespace; no quoting) that must succeed.
pub(crate) fn sh(line: &str) -> Output {
    let args: Vec<&str> = line.split_whitespace().collect();
    run(&args)
}
