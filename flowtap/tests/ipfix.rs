//! IPFIX export read by real collectors: flowtap reads corpus captures and
//! a capgen capture with `--ipfix-collector` pointing at Debian's nfcapd
//! (nfdump), pmacct's nfacctd (over UDP) and a socket of the test (over
//! TCP). Per flow direction, nfdump's records must give the packets, ports,
//! protocol and times of flowtap's own API for the same capture and the IP
//! bytes tshark counts in it (`octetDeltaCount`), pmacct's the packets and
//! IP bytes; tshark's IPFIX dissector must decode every message the test
//! received without a malformed-packet warning, the frame bytes
//! (`layer2OctetDeltaCount`) summing to the API's, and flowtap's enterprise
//! elements (TCP health, connection outcomes) summing to the API's counters.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{FlowSummary, corpus_dir, run_flowtap};
use serde_json::Value;

/// (source, source port, destination, destination port, protocol).
type Direction = (IpAddr, u16, IpAddr, u16, u8);

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until a UDP socket on 127.0.0.1:`port` exists (the collector is
/// listening), by the kernel's socket table: a fixed sleep lost a capture's
/// records whenever a loaded machine started the collector late. Bounded:
/// 10 s.
fn wait_for_udp_listener(port: u16, collector: &str) {
    let local = format!("0100007F:{port:04X}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let table = std::fs::read_to_string("/proc/net/udp").unwrap();
        if table
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{collector} not listening on 127.0.0.1:{port} after 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Nfcapd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Nfcapd {
    fn start() -> Nfcapd {
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let child = Command::new("nfcapd")
            .args(["-w", dir.path().to_str().unwrap(), "-b", "127.0.0.1"])
            .args(["-p", &port.to_string()])
            // A capture's records arrive in one burst at its end: a socket
            // buffer for it, as a collector fed by busy exporters has.
            .args(["-B", "4194304"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nfcapd (Debian nfdump; scripts/setup.sh)");
        wait_for_udp_listener(port, "nfcapd");
        Nfcapd { child, dir, port }
    }

    /// Stops nfcapd (it writes its file on SIGINT) and reads the records.
    fn records(mut self) -> Vec<Value> {
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
        let json = if text.starts_with('[') {
            text.to_owned()
        } else {
            format!("[{}]", text.trim_end_matches(','))
        };
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("nfdump JSON ({e}): {text:.500}"))
    }
}

/// pmacct's nfacctd with its print plugin appending CSV every second.
struct Nfacctd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Nfacctd {
    fn start() -> Nfacctd {
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let config = dir.path().join("nfacctd.conf");
        std::fs::write(
            &config,
            format!(
                "daemonize: false\nnfacctd_ip: 127.0.0.1\nnfacctd_port: {port}\nnfacctd_pipe_size: 4194304\nplugins: print\n\
                 aggregate: src_host, dst_host, src_port, dst_port, proto\nprint_output: csv\n\
                 print_output_file: {}\nprint_output_file_append: true\nprint_refresh_time: 1\n",
                dir.path().join("out.csv").display()
            ),
        )
        .unwrap();
        let child = Command::new("nfacctd")
            .args(["-f", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nfacctd (Debian pmacct; scripts/setup.sh)");
        wait_for_udp_listener(port, "nfacctd");
        // Bound is not yet ready: records that arrive before its print
        // plugin runs are lost (seen on a loaded machine), and nothing says
        // when it runs.
        std::thread::sleep(Duration::from_millis(1000));
        Nfacctd { child, dir, port }
    }

    /// Packets and bytes per direction, once `packets` packets in all were
    /// written out (bounded: 10 s), then stops nfacctd.
    fn directions(mut self, packets: u64) -> BTreeMap<Direction, (u64, u64)> {
        let path = self.dir.path().join("out.csv");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut got = BTreeMap::new();
        loop {
            got.clear();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for line in text.lines().filter(|l| !l.starts_with("SRC_IP")) {
                let f: Vec<&str> = line.split(',').collect();
                let key = (
                    f[0].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[1].parse().unwrap(),
                    f[3].parse().unwrap(),
                    match f[4] {
                        "tcp" => 6,
                        "udp" => 17,
                        other => panic!("protocol {other}"),
                    },
                );
                let e: &mut (u64, u64) = got.entry(key).or_default();
                e.0 += f[5].parse::<u64>().unwrap();
                e.1 += f[6].parse::<u64>().unwrap();
            }
            if got.values().map(|v| v.0).sum::<u64>() >= packets
                || std::time::Instant::now() > deadline
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        got
    }
}

/// What the API says each direction sent: packets, frame bytes, first and
/// last seen (ms).
fn api_directions(flows: &[FlowSummary], raw: &Value) -> BTreeMap<Direction, (u64, u64, u64, u64)> {
    let mut out = BTreeMap::new();
    for (f, r) in flows.iter().zip(raw["flows"].as_array().unwrap()) {
        let (proto, client, server, port) = f.key.clone();
        let p = if proto == "tcp" { 6 } else { 17 };
        let first = r["first_seen_ns"].as_u64().unwrap() / 1_000_000;
        let last = r["last_seen_ns"].as_u64().unwrap() / 1_000_000;
        if f.client_tx_pkts > 0 {
            out.insert(
                (client, 0, server, port, p),
                (f.client_tx_pkts, f.client_tx_bytes, first, last),
            );
        }
        if f.server_tx_pkts > 0 {
            out.insert(
                (server, port, client, 0, p),
                (f.server_tx_pkts, f.server_tx_bytes, first, last),
            );
        }
    }
    out
}

/// One data record as tshark decodes it: its addresses and flowtap's
/// enterprise elements (type, value bytes), in order.
#[derive(Debug, Default)]
struct Decoded {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    elements: Vec<(u16, Vec<u8>)>,
}

/// The data records of `pcap` (IPFIX to port 4739) by tshark's PDML: a
/// record starts at its source address. (`-T fields` leaves out the empty
/// names, so the elements' positions would not say which they are.)
fn tshark_records(pcap: &Path) -> Vec<Decoded> {
    let out = Command::new("tshark")
        .args([
            "-r",
            pcap.to_str().unwrap(),
            "-d",
            "udp.port==4739,cflow",
            "-T",
            "pdml",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let attr = |line: &str, name: &str| -> String {
        let key = format!(" {name}=\"");
        let Some(at) = line.find(&key) else {
            return String::new();
        };
        let rest = &line[at + key.len()..];
        rest[..rest.find('"').unwrap_or(rest.len())].to_string()
    };
    let mut records: Vec<Decoded> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim_start();
        if !line.starts_with("<field ") {
            continue;
        }
        let name = attr(line, "name");
        match name.as_str() {
            "cflow.srcaddr" | "cflow.srcaddrv6" => records.push(Decoded {
                src: attr(line, "show").parse().ok(),
                ..Decoded::default()
            }),
            "cflow.dstaddr" | "cflow.dstaddrv6" => {
                records.last_mut().unwrap().dst = attr(line, "show").parse().ok();
            }
            "cflow.enterprise_private_entry" => {
                let shown = attr(line, "showname");
                let kind = shown
                    .split("Type ")
                    .nth(1)
                    .and_then(|t| t.split(':').next())
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| panic!("no type in {shown}"));
                let hex = attr(line, "value");
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                records.last_mut().unwrap().elements.push((kind, bytes));
            }
            _ => {}
        }
    }
    records
}

/// The counts among flowtap's enterprise elements (README, IPFIX), summed
/// over every record: retransmissions, RSTs and zero windows of either
/// direction (1-3, and 11-13 in biflow records), then the connection
/// outcomes (6-10).
fn enterprise_counts(records: &[Decoded]) -> [u64; 8] {
    let mut sums = [0u64; 8];
    for r in records {
        for (kind, bytes) in &r.elements {
            let slot = match kind {
                1..=3 => kind - 1,
                11..=13 => kind - 11,
                6..=10 => kind - 3,
                _ => continue,
            };
            let value = bytes.iter().fold(0u64, |v, b| v << 8 | u64::from(*b));
            sums[usize::from(slot)] += value;
        }
    }
    sums
}

/// The same counts from the API (`format=full`).
fn api_health(full: &Value) -> [u64; 8] {
    let mut sums = [0u64; 8];
    for f in full["flows"].as_array().unwrap() {
        for side in ["client_stats", "server_stats"] {
            for (i, k) in ["tcp_retransmits", "tcp_rsts", "tcp_zero_windows"]
                .iter()
                .enumerate()
            {
                sums[i] += f[side][k].as_u64().unwrap_or(0);
            }
        }
        for (i, k) in ["established", "refused", "unanswered", "reset", "closed"]
            .iter()
            .enumerate()
        {
            sums[3 + i] += f["tcp_connections"][k].as_u64().unwrap_or(0);
        }
    }
    sums
}

/// IP bytes (the IPv4 total length, or the IPv6 payload length and its
/// 40-byte header) of every TCP and UDP packet in `capture` by tshark, per
/// direction as the records key them: the client's port 0.
fn tshark_ip_bytes(
    capture: &Path,
    directions: &BTreeMap<Direction, (u64, u64, u64, u64)>,
) -> BTreeMap<Direction, u64> {
    let out = Command::new("tshark")
        .args([
            "-r",
            capture.to_str().unwrap(),
            "-Y",
            "(tcp or udp) and not icmp and not icmpv6",
        ])
        .args(["-T", "fields", "-E", "occurrence=f"])
        .args([
            "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
        ])
        .args([
            "-e",
            "ip.len",
            "-e",
            "ipv6.plen",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
        ])
        .args(["-e", "udp.srcport", "-e", "udp.dstport"])
        .output()
        .unwrap();
    assert!(out.status.success(), "tshark on {}", capture.display());
    let mut bytes = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (src, dst, len) = if f[0].is_empty() {
            (f[2], f[3], f[5].parse::<u64>().unwrap() + 40)
        } else {
            (f[0], f[1], f[4].parse::<u64>().unwrap())
        };
        let (sport, dport, proto) = if f[6].is_empty() {
            (f[8], f[9], 17)
        } else {
            (f[6], f[7], 6)
        };
        let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let (sport, dport): (u16, u16) = (sport.parse().unwrap(), dport.parse().unwrap());
        let key = [(src, 0, dst, dport, proto), (src, sport, dst, 0, proto)]
            .into_iter()
            .find(|k| directions.contains_key(k))
            .unwrap_or_else(|| panic!("{line}: in no direction flowtap reported"));
        *bytes.entry(key).or_default() += len;
    }
    bytes
}

fn ms_of(s: &str) -> u64 {
    let t = humantime::parse_rfc3339(&format!("{s}Z")).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Ethernet, IPv4 and UDP headers around each datagram, as a pcap tshark
/// reads (destination port 4739, IPFIX's).
fn write_pcap(path: &Path, datagrams: &[Vec<u8>]) {
    let mut w = capgen::pcap::PcapWriter::new(
        std::fs::File::create(path).unwrap(),
        capgen::pcap::LINKTYPE_ETHERNET,
    )
    .unwrap();
    for (i, d) in datagrams.iter().enumerate() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 8 + d.len()) as u16;
        f.extend_from_slice(&[
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            17,
            0,
            0,
        ]);
        f.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&4739u16.to_be_bytes());
        f.extend_from_slice(&((8 + d.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(d);
        w.write(
            1_700_000_000_000_000_000 + i as u64 * 1000,
            &f,
            f.len() as u32,
        )
        .unwrap();
    }
    w.finish().unwrap();
}

/// The test's own collector: a `tcp://` URL for flowtap, and the thread
/// that returns every message sent to it once flowtap closes the
/// connection. TCP loses none: a capture's messages can be more than a UDP
/// socket's receive buffer holds, and this one is read only once flowtap is
/// done.
fn tcp_collector() -> (String, std::thread::JoinHandle<Vec<Vec<u8>>>) {
    let sink = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", sink.local_addr().unwrap());
    let receiver = std::thread::spawn(move || {
        let mut stream = Vec::new();
        sink.accept().unwrap().0.read_to_end(&mut stream).unwrap();
        // Split the stream into its messages by their length fields.
        let mut messages = Vec::new();
        let mut rest = &stream[..];
        while rest.len() >= 4 {
            let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
            messages.push(rest[..len].to_vec());
            rest = &rest[len..];
        }
        assert!(rest.is_empty(), "a message cut short");
        messages
    });
    (url, receiver)
}

/// Checks the records of one capture; returns how many nfdump read, the
/// frame bytes, and the enterprise counts ([`enterprise_counts`]).
fn check_capture(capture: &Path, biflow: bool) -> (usize, u64, [u64; 8]) {
    let nfcapd = Nfcapd::start();
    let nfacctd = Nfacctd::start();
    let (sink, receiver) = tcp_collector();
    let collectors = format!(
        "udp://127.0.0.1:{},udp://127.0.0.1:{},{sink}",
        nfcapd.port, nfacctd.port,
    );
    let mut args = vec!["--ipfix-collector", &collectors, "--ipfix-mtu", "1200"];
    if biflow {
        args.push("--ipfix-biflow");
    }
    let run = run_flowtap(&[capture], 1, &args);
    let datagrams = receiver.join().unwrap();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let want = api_directions(&run.flows, &run.bodies[1]);
    for d in &datagrams {
        assert!(d.len() <= 1200, "a message of {} bytes", d.len());
    }
    let name = capture.display().to_string();
    let records = nfcapd.records();
    let mut got = BTreeMap::new();
    for r in &records {
        let ip = |k4: &str, k6: &str| -> IpAddr {
            r.get(k4)
                .or(r.get(k6))
                .and_then(Value::as_str)
                .unwrap()
                .parse()
                .unwrap()
        };
        let key = (
            ip("src4_addr", "src6_addr"),
            r["src_port"].as_u64().unwrap() as u16,
            ip("dst4_addr", "dst6_addr"),
            r["dst_port"].as_u64().unwrap() as u16,
            r["proto"].as_u64().unwrap() as u8,
        );
        let (first, last) = (
            ms_of(r["first"].as_str().unwrap()),
            ms_of(r["last"].as_str().unwrap()),
        );
        let mut sent = vec![(key, ("in_packets", "in_bytes"))];
        if biflow {
            // nfdump reads RFC 5103's reverse elements as out_packets and
            // out_bytes: the server's direction.
            let (src, src_port, dst, dst_port, proto) = key;
            sent.push((
                (dst, dst_port, src, src_port, proto),
                ("out_packets", "out_bytes"),
            ));
        }
        for (key, (packets, bytes)) in sent {
            let packets = r[packets].as_u64().unwrap();
            if packets == 0 && biflow {
                continue;
            }
            let value = (packets, r[bytes].as_u64().unwrap(), first, last);
            assert!(got.insert(key, value).is_none(), "{name}: {key:?} twice");
        }
    }
    let ip_bytes = tshark_ip_bytes(capture, &want);
    let want_nf: BTreeMap<Direction, (u64, u64, u64, u64)> = want
        .iter()
        .map(|(k, v)| (*k, (v.0, ip_bytes.get(k).copied().unwrap_or(0), v.2, v.3)))
        .collect();
    assert_eq!(
        got, want_nf,
        "{name}: nfdump vs the API (packets, first, last ms) and tshark (IP bytes), per direction"
    );
    // pmacct reads octetDeltaCount, IP bytes, when a record has it, and
    // of a biflow record only the forward direction (the client's: its
    // port is 0).
    let want_pm: BTreeMap<Direction, (u64, u64)> = want_nf
        .iter()
        .filter(|(k, _)| !biflow || k.1 == 0)
        .map(|(k, v)| (*k, (v.0, v.1)))
        .collect();
    let packets = want_pm.values().map(|v| v.0).sum();
    assert_eq!(
        nfacctd.directions(packets),
        want_pm,
        "{name}: pmacct vs the API (packets) and tshark (IP bytes), per direction"
    );

    // tshark decodes every message; the frame bytes add up to the API's.
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("ipfix.pcap");
    write_pcap(&pcap, &datagrams);
    let out = Command::new("tshark")
        .args(["-r", pcap.to_str().unwrap(), "-d", "udp.port==4739,cflow"])
        .args([
            "-T",
            "fields",
            "-e",
            "cflow.layer2_octet_delta_count",
            "-e",
            "_ws.expert.message",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.to_lowercase().contains("malformed"),
        "{name}: {text:.2000}"
    );
    let l2: u64 = text
        .lines()
        .flat_map(|l| l.split('\t').next().unwrap_or("").split(','))
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    let total: u64 = want.values().map(|v| v.1).sum();
    assert_eq!(l2, total, "{name}: layer2OctetDeltaCount over every record");
    let health = enterprise_counts(&tshark_records(&pcap));
    assert_eq!(
        health,
        api_health(&run.bodies[0]),
        "{name}: flowtap's enterprise elements over every record vs the API \
         (retransmits, RSTs, zero windows, established, refused, unanswered, reset, closed)"
    );
    (records.len(), total, health)
}

fn capture(name: &str) -> PathBuf {
    corpus_dir().join("captures").join(name)
}

#[test]
fn nfdump_and_tshark_read_the_records_of_corpus_captures() {
    let (mut records, mut health) = (0, [0u64; 8]);
    for name in [
        "02_pcpp_example.pcap",
        "05_ndpi_reddit_ipv6.pcap",
        "19_tcpreplay_test.pcap",
    ] {
        let (n, _, h) = check_capture(&capture(name), false);
        records += n;
        health.iter_mut().zip(h).for_each(|(sum, v)| *sum += v);
    }
    assert!(records > 100, "{records} records");
    // The comparison means something: there are retransmissions, and
    // established and closed connections, to count.
    assert!(
        health[0] > 0 && health[3] > 0 && health[7] > 0,
        "{health:?}"
    );
}

#[test]
fn nfdump_reads_the_records_of_a_generated_capture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gen.pcap");
    let spec = capgen::Spec {
        packets: 20_000,
        concurrent: 200,
        seed: 5,
        anomalies: false,
        ..capgen::Spec::default()
    };
    capgen::Generator::new(spec)
        .write(std::fs::File::create(&path).unwrap())
        .unwrap();
    let (records, _, _) = check_capture(&path, false);
    assert!(records > 1000, "{records} records");
}

#[test]
fn nfdump_reads_biflow_records() {
    let (records, _, _) = check_capture(&capture("02_pcpp_example.pcap"), true);
    assert!(records > 20, "{records} records");
}

#[test]
fn records_carry_the_kubernetes_names_of_both_ends() {
    // The demo with its inventory: every record names its source and
    // destination as the API names the flow's client and server.
    let root = common::project_root();
    let (collector, receiver) = tcp_collector();
    let inventory = root.join("demo/inventory.json");
    let run = run_flowtap(
        &[&root.join("demo/demo.pcap")],
        1,
        &[
            "--k8s-inventory",
            inventory.to_str().unwrap(),
            "--ipfix-collector",
            &collector,
        ],
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("ipfix.pcap");
    write_pcap(&pcap, &receiver.join().unwrap());
    // What the API says each address is: (namespace, pod).
    let mut named = BTreeMap::new();
    for f in run.bodies[0]["flows"].as_array().unwrap() {
        for end in [&f["client"], &f["server"]] {
            let ip: IpAddr = end["ip"].as_str().unwrap().parse().unwrap();
            let text = |k: &str| end[k].as_str().unwrap_or("").to_string();
            named.insert(ip, (text("ns"), text("pod")));
        }
    }
    let records = tshark_records(&pcap);
    let mut with_names = 0;
    for r in &records {
        let name = |kind: u16| -> String {
            r.elements
                .iter()
                .find(|e| e.0 == kind)
                .map(|e| String::from_utf8(e.1.clone()).unwrap())
                .unwrap_or_default()
        };
        let (src, dst) = (r.src.unwrap(), r.dst.unwrap());
        assert_eq!((name(16), name(18)), named[&src], "{r:?}: its source");
        assert_eq!((name(19), name(21)), named[&dst], "{r:?}: its destination");
        with_names += usize::from(!name(16).is_empty() && !name(19).is_empty());
    }
    assert!(
        records.len() > 100 && with_names > 50,
        "{} records, {with_names} named",
        records.len()
    );
}
