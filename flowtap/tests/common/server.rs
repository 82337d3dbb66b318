//! A running `flowtap ... --listen 127.0.0.1:0` and a small HTTP/1.1 client
//! over plain sockets, so tests can send exactly the bytes they mean to.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) struct Server {
    child: Child,
    /// The data listener (flow data).
    pub addr: SocketAddr,
    /// The admin listener (/healthz, /readyz, /metrics).
    pub admin: SocketAddr,
    pub stderr: Arc<Mutex<String>>,
}

/// A raw HTTP response.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// flowtap serving the demo capture with its inventory behind `token`,
/// with `extra` arguments. The token is also in the file `token` of the
/// returned directory (for clients that read it from a file), which the
/// caller keeps as long as it needs the file.
pub(crate) fn serve_demo(token: &str, extra: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let root = super::project_root();
    let (demo, inventory) = (
        root.join("demo/demo.pcap"),
        root.join("demo/inventory.json"),
    );
    let mut args = vec![
        "-r",
        demo.to_str().unwrap(),
        "--k8s-inventory",
        inventory.to_str().unwrap(),
        "--auth-token-file",
        token_file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    (Server::start(&args), dir)
}

impl Server {
    /// Starts flowtap with `args` plus `--listen 127.0.0.1:0`; returns once
    /// the files are read and the final view is served.
    pub(crate) fn start(args: &[&str]) -> Server {
        Server::launch(args, &[], "flowtap: read ")
    }

    /// Like [`Server::start`], with extra environment variables.
    pub(crate) fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::launch(args, env, "flowtap: read ")
    }

    /// Like [`Server::start`], but returns as soon as the server listens
    /// (files may still be being read).
    pub(crate) fn start_serving(args: &[&str]) -> Server {
        Server::launch(args, &[], "flowtap: serving on ")
    }

    /// Like [`Server::start_serving`], with extra environment variables.
    pub(crate) fn start_serving_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::launch(args, env, "flowtap: serving on ")
    }

    /// Like [`Server::start`], on the data address `listen`.
    pub(crate) fn start_on(args: &[&str], listen: &str) -> Server {
        Server::launch_on(args, &[], "flowtap: read ", listen)
    }

    fn launch(args: &[&str], env: &[(&str, &str)], ready_line: &str) -> Server {
        Server::launch_on(args, env, ready_line, "127.0.0.1:0")
    }

    fn launch_on(args: &[&str], env: &[(&str, &str)], ready_line: &str, listen: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowtap"))
            .args(args)
            .envs(env.iter().copied())
            .args(["--listen", listen, "--admin-listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting flowtap");
        let (stderr, rx) = super::follow_stderr(&mut child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut addr = None;
        let mut admin = None;
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    panic!("flowtap did not become ready:\n{}", stderr.lock().unwrap())
                });
            if let Some(a) = line.strip_prefix("flowtap: serving on http://") {
                addr = Some(a.parse().unwrap());
            }
            if let Some(a) = line.strip_prefix("flowtap: admin on http://") {
                admin = Some(a.parse().unwrap());
            }
            if line.starts_with(ready_line) && addr.is_some() && admin.is_some() {
                break;
            }
        }
        Server {
            child,
            addr: addr.expect("a serving line before the read report"),
            admin: admin.expect("an admin line before the read report"),
            stderr,
        }
    }

    /// Sends `raw` as is to the data listener and reads the response until
    /// the server closes.
    pub(crate) fn raw(&self, raw: &[u8]) -> Response {
        raw_request(self.addr, raw)
    }

    /// GET on the admin listener.
    pub(crate) fn admin_get(&self, target: &str) -> Response {
        self.send_admin("GET", target, &[])
    }

    /// A request to the admin listener.
    pub(crate) fn send_admin(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        raw_request(self.admin, &request_bytes(method, target, headers, b""))
    }

    /// `/metrics` from the admin listener, as text.
    pub(crate) fn metrics(&self) -> String {
        let r = self.admin_get("/metrics");
        assert_eq!(r.status, 200);
        String::from_utf8(r.body).unwrap()
    }
}

/// Sends `raw` as is to `addr` and reads the response until it closes.
pub(crate) fn raw_request(addr: SocketAddr, raw: &[u8]) -> Response {
    parse_response(&exchange(addr, raw).expect("writing the request"))
}

/// Sends `raw` to `addr` and reads until the server closes: what came
/// back, or None when the request could not be written.
fn exchange(addr: SocketAddr, raw: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(raw).ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    Some(buf)
}

impl Server {
    pub(crate) fn request(&self, method: &str, target: &str) -> Response {
        self.send(method, target, &[], b"")
    }

    /// A request with extra headers and a body (`Host: localhost` unless
    /// `headers` gives one).
    pub(crate) fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.raw(&request_bytes(method, target, headers, body))
    }

    pub(crate) fn get(&self, target: &str) -> Response {
        self.request("GET", target)
    }

    /// GET, or None when the server closed the connection without a byte
    /// of response (it gave the connection up before reading the request).
    pub(crate) fn try_get(&self, target: &str) -> Option<Response> {
        let buf = exchange(self.addr, &request_bytes("GET", target, &[], b""))?;
        (!buf.is_empty()).then(|| parse_response(&buf))
    }

    /// GET that must succeed; returns the JSON body.
    pub(crate) fn get_json(&self, target: &str) -> Value {
        self.get_json_with(target, &[])
    }

    /// GET with extra headers that must succeed; returns the JSON body.
    pub(crate) fn get_json_with(&self, target: &str, headers: &[(&str, &str)]) -> Value {
        let r = self.send("GET", target, headers, b"");
        assert_eq!(
            r.status,
            200,
            "GET {target}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    /// The process, for what `/proc` says of it.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub(crate) fn terminate(self) -> i32 {
        self.signal("TERM")
    }

    /// Sends the signal named (`HUP`, `TERM`...) and waits for the exit
    /// status (-1: killed by a signal).
    pub(crate) fn signal(mut self, name: &str) -> i32 {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        status.code().unwrap_or(-1)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request's bytes (`Host: localhost` unless `headers` gives one).
pub(crate) fn request_bytes(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str("Host: localhost\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw
}

pub(crate) fn parse_response(buf: &[u8]) -> Response {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let raw = &buf[split + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Response {
        status,
        headers,
        body,
    }
}

/// The body of a `Transfer-Encoding: chunked` message.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap().trim(), 16)
            .expect("a hex chunk size");
        raw = &raw[eol + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}
