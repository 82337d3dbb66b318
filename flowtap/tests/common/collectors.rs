//! A real IPFIX collector for the tests: Debian's nfcapd, its files read
//! back with nfdump; on the host or inside a test's network namespace.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub(crate) fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The kernel's row for the UDP socket on 127.0.0.1:`port` in `ns` (the
/// test's own namespace when `None`): bytes waiting to be read and
/// datagrams dropped, or `None` while there is no such socket.
fn udp_socket(ns: Option<&str>, port: u16) -> Option<(u64, u64)> {
    let local = format!("0100007F:{port:04X}");
    let table = match ns {
        None => std::fs::read_to_string("/proc/net/udp").unwrap(),
        Some(ns) => {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "cat", "/proc/net/udp"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    table.lines().skip(1).find_map(|l| {
        // sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout
        // inode ref pointer drops
        let fields: Vec<&str> = l.split_whitespace().collect();
        if fields.get(1) != Some(&local.as_str()) {
            return None;
        }
        let queued = fields[4].split(':').nth(1).unwrap();
        let queued = u64::from_str_radix(queued, 16).unwrap();
        Some((queued, fields[12].parse().unwrap()))
    })
}

/// Waits until a UDP socket on 127.0.0.1:`port` exists (the collector is
/// listening) in `ns`, by the kernel's socket table: a fixed sleep lost a
/// capture's records whenever a loaded machine started the collector late.
/// Bounded: 10 s.
pub(crate) fn wait_for_udp_listener(ns: Option<&str>, port: u16, collector: &str) {
    super::wait::until_holds(
        Duration::from_secs(10),
        &format!("{collector} listening on 127.0.0.1:{port}"),
        || udp_socket(ns, port).is_some(),
    );
}

/// Waits until the collector on 127.0.0.1:`port` has read every datagram
/// sent to it, and fails if its socket dropped any: a collector stopped
/// with datagrams still queued never reads them (nfcapd on a loaded
/// machine wrote a file with no flows at all). Bounded: 10 s.
fn wait_for_udp_drained(ns: Option<&str>, port: u16, collector: &str) {
    // Empty on two looks 100 ms apart: a datagram can still be on its way
    // through the loopback's backlog when the sender exits.
    let mut empty_before = false;
    let drops = super::wait::until(
        Duration::from_secs(10),
        &format!("{collector} reading what was sent to 127.0.0.1:{port}"),
        || match udp_socket(ns, port) {
            Some((0, drops)) if std::mem::replace(&mut empty_before, true) => Ok(drops),
            Some((0, _)) => {
                std::thread::sleep(Duration::from_millis(100));
                Err("empty once".to_owned())
            }
            other => {
                empty_before = false;
                Err(format!("{other:?} (bytes queued, drops)"))
            }
        },
    );
    assert_eq!(drops, 0, "{collector}'s socket dropped datagrams");
}

pub(crate) struct Nfcapd {
    child: Child,
    dir: tempfile::TempDir,
    ns: Option<String>,
    pub port: u16,
}

impl Nfcapd {
    pub(crate) fn start() -> Nfcapd {
        Nfcapd::start_in(None, free_udp_port())
    }

    /// nfcapd on 127.0.0.1:`port` of `ns` (the test's own when `None`).
    pub(crate) fn start_in(ns: Option<&str>, port: u16) -> Nfcapd {
        let dir = tempfile::tempdir().unwrap();
        let mut command = match ns {
            None => Command::new("nfcapd"),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nfcapd"]);
                c
            }
        };
        let child = command
            .args(["-w", dir.path().to_str().unwrap(), "-b", "127.0.0.1"])
            .args(["-p", &port.to_string()])
            // A capture's records arrive in one burst at its end: a socket
            // buffer for it, as a collector fed by busy exporters has.
            .args(["-B", "4194304"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nfcapd (Debian nfdump; scripts/setup.sh)");
        wait_for_udp_listener(ns, port, "nfcapd");
        Nfcapd {
            child,
            dir,
            ns: ns.map(str::to_owned),
            port,
        }
    }

    /// Stops nfcapd (it writes its file on SIGINT) once it has read every
    /// datagram, and reads the records.
    pub(crate) fn records(mut self) -> Vec<Value> {
        wait_for_udp_drained(self.ns.as_deref(), self.port, "nfcapd");
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap();
        let out = Command::new("nfdump")
            .env("TZ", "UTC")
            .args(["-R", self.dir.path().to_str().unwrap(), "-o", "json", "-q"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let text = text.trim();
        if text.is_empty() {
            return Vec::new();
        }
        let json = if text.starts_with('[') {
            text.to_owned()
        } else {
            format!("[{}]", text.trim_end_matches(','))
        };
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("nfdump JSON ({e}): {text:.500}"))
    }
}
