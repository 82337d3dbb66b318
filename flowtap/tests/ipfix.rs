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
use std::io::{Read, Write};
use std::net::IpAddr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::collectors::{Nfcapd, free_udp_port, wait_for_udp_listener};
use common::{FlowSummary, corpus_dir, run_flowtap};
use serde_json::Value;

/// (source, source port, destination, destination port, protocol).
type Direction = (IpAddr, u16, IpAddr, u16, u8);

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
        wait_for_udp_listener(None, port, "nfacctd");
        // Bound is not yet ready: records that arrive before its print
        // plugin runs are lost (seen on a loaded machine), and nothing says
        // when it runs. Its plugin is a process of its own: once forked, a
        // second for it to settle.
        let children = format!("/proc/{0}/task/{0}/children", child.id());
        common::wait::until_holds(Duration::from_secs(10), "nfacctd's print plugin", || {
            std::fs::read_to_string(&children).is_ok_and(|c| !c.trim().is_empty())
        });
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
            // Whole lines only: the plugin may be writing the file.
            let whole = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
            for line in whole
                .map(str::trim_end)
                .filter(|l| !l.starts_with("SRC_IP"))
            {
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

/// One TCP or UDP packet as tshark reads it.
struct TsharkPacket {
    /// (source, source port, destination, destination port, protocol).
    direction: Direction,
    /// IP bytes: the IPv4 total length, or the IPv6 payload length and its
    /// 40-byte header.
    ip_len: u64,
    /// Capture time, ms since the epoch.
    ms: u64,
    /// TCP flags (0 for UDP).
    tcp_flags: u8,
}

fn tshark_packets(capture: &Path) -> Vec<TsharkPacket> {
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
        .args(["-e", "ip.len", "-e", "ipv6.plen"])
        .args(["-e", "tcp.srcport", "-e", "tcp.dstport"])
        .args(["-e", "udp.srcport", "-e", "udp.dstport"])
        .args(["-e", "frame.time_epoch", "-e", "tcp.flags"])
        .output()
        .unwrap();
    assert!(out.status.success(), "tshark on {}", capture.display());
    let mut packets = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (src, dst, ip_len) = if f[0].is_empty() {
            (f[2], f[3], f[5].parse::<u64>().unwrap() + 40)
        } else {
            (f[0], f[1], f[4].parse::<u64>().unwrap())
        };
        let (sport, dport, proto) = if f[6].is_empty() {
            (f[8], f[9], 17)
        } else {
            (f[6], f[7], 6)
        };
        // Whole ms of "seconds.fraction", without a float's rounding.
        let (secs, frac) = f[10].split_once('.').unwrap_or((f[10], ""));
        let frac = format!("{frac:0<3}");
        let ms = secs.parse::<u64>().unwrap() * 1000 + frac[..3].parse::<u64>().unwrap();
        let tcp_flags = u16::from_str_radix(f[11].trim_start_matches("0x"), 16).unwrap_or(0) as u8;
        packets.push(TsharkPacket {
            direction: (
                src.parse().unwrap(),
                sport.parse().unwrap(),
                dst.parse().unwrap(),
                dport.parse().unwrap(),
                proto,
            ),
            ip_len,
            ms,
            tcp_flags,
        });
    }
    packets
}

/// IP bytes of every TCP and UDP packet in `capture` by tshark, per flow
/// direction as the records key them: the client's port 0.
fn tshark_ip_bytes(
    capture: &Path,
    directions: &BTreeMap<Direction, (u64, u64, u64, u64)>,
) -> BTreeMap<Direction, u64> {
    let mut bytes = BTreeMap::new();
    for p in tshark_packets(capture) {
        let (src, sport, dst, dport, proto) = p.direction;
        let key = [(src, 0, dst, dport, proto), (src, sport, dst, 0, proto)]
            .into_iter()
            .find(|k| directions.contains_key(k))
            .unwrap_or_else(|| panic!("{:?}: in no direction flowtap reported", p.direction));
        *bytes.entry(key).or_default() += p.ip_len;
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
        let (key, first, last) = (
            nfdump_direction(r),
            nfdump_ms(r, "first"),
            nfdump_ms(r, "last"),
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

    let total: u64 = want.values().map(|v| v.1).sum();
    let (health, reasons) = check_decoded(&name, &datagrams, total, &run.bodies[0]);
    // A file read without --listen: one snapshot, the last, and every
    // flow's record ends forced (4, the capture's end; a flow longer than
    // the active timeout was said to be cut by it, 2, with no record after).
    assert_eq!(reasons, ["4"], "{name}: flowEndReason");
    (records.len(), total, health)
}

/// A record's direction as nfdump reads it.
fn nfdump_direction(r: &Value) -> Direction {
    let ip = |k4: &str, k6: &str| -> IpAddr {
        r.get(k4)
            .or(r.get(k6))
            .and_then(Value::as_str)
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        ip("src4_addr", "src6_addr"),
        r["src_port"].as_u64().unwrap() as u16,
        ip("dst4_addr", "dst6_addr"),
        r["dst_port"].as_u64().unwrap() as u16,
        r["proto"].as_u64().unwrap() as u8,
    )
}

/// A record's `first` or `last` time as nfdump reads it, ms.
fn nfdump_ms(r: &Value, field: &str) -> u64 {
    ms_of(r[field].as_str().unwrap())
}

/// tshark decodes every message the test received without a malformed
/// warning; the frame bytes (`layer2OctetDeltaCount`) add up to
/// `frame_bytes`; flowtap's enterprise elements add up to the API's
/// (`full`, a `format=full` answer). Returns those sums.
/// Checks the messages as tshark decodes them; returns the enterprise
/// elements' sums and the `flowEndReason`s the records carry.
fn check_decoded(
    name: &str,
    datagrams: &[Vec<u8>],
    frame_bytes: u64,
    full: &Value,
) -> ([u64; 8], Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("ipfix.pcap");
    write_pcap(&pcap, datagrams);
    let out = Command::new("tshark")
        .args(["-r", pcap.to_str().unwrap(), "-d", "udp.port==4739,cflow"])
        .args([
            "-T",
            "fields",
            "-e",
            "cflow.layer2_octet_delta_count",
            "-e",
            "cflow.flow_end_reason",
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
    assert_eq!(
        l2, frame_bytes,
        "{name}: layer2OctetDeltaCount over every record"
    );
    let reasons: std::collections::BTreeSet<String> = text
        .lines()
        .flat_map(|l| l.split('\t').nth(1).unwrap_or("").split(','))
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    let health = enterprise_counts(&tshark_records(&pcap));
    assert_eq!(
        health,
        api_health(full),
        "{name}: flowtap's enterprise elements over every record vs the API \
         (retransmits, RSTs, zero windows, established, refused, unanswered, reset, closed)"
    );
    (health, reasons.into_iter().collect())
}

/// Fails naming the keys whose values differ (the maps are large).
fn assert_same<V: PartialEq + std::fmt::Debug>(
    got: &BTreeMap<Direction, V>,
    want: &BTreeMap<Direction, V>,
    what: &str,
) {
    let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
    let differ: Vec<_> = keys
        .into_iter()
        .filter(|k| got.get(k) != want.get(k))
        .map(|k| (k, got.get(k), want.get(k)))
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: {} of {} differ (key, got, want): {:?}",
        differ.len(),
        want.len(),
        &differ[..differ.len().min(10)]
    );
}

/// nfdump's "tcp_flags" ("...AP.SF": CWR ECE URG ACK PSH RST SYN FIN) as
/// the header's bits.
fn nfdump_flags(r: &Value) -> u8 {
    let text = r["tcp_flags"].as_str().unwrap_or("........");
    text.bytes()
        .enumerate()
        .filter(|&(_, c)| c != b'.')
        .fold(0, |bits, (i, _)| bits | 0x80 >> i)
}

/// Per-connection records (`--ipfix-per connection`) of one capture,
/// against tshark's packets: per direction of each 5-tuple, nfdump's
/// packets, IP bytes and TCP flags equal tshark's, its first and last ms
/// the 5-tuple's; pmacct's packets and IP bytes equal tshark's; summed per
/// flow, the records' packets equal the API's; tshark decodes every
/// message, the frame bytes and enterprise elements adding up to the API's.
/// Returns the number of records nfdump read and of directions. `pmacct`
/// says whether to check pmacct too: its core hands records to its print
/// plugin through a pipe that drops part of a burst of thousands (seen when
/// the active timeout cuts many), where nfcapd and tshark read them all.
fn check_connection_records(capture: &Path, more_args: &[&str], pmacct: bool) -> (usize, usize) {
    let nfcapd = Nfcapd::start();
    let nfacctd = pmacct.then(Nfacctd::start);
    let (sink, receiver) = tcp_collector();
    let mut collectors = format!("udp://127.0.0.1:{},{sink}", nfcapd.port);
    if let Some(nfacctd) = &nfacctd {
        collectors += &format!(",udp://127.0.0.1:{}", nfacctd.port);
    }
    let mut args = vec![
        "--ipfix-collector",
        &collectors,
        "--ipfix-per",
        "connection",
        "--ipfix-mtu",
        "1200",
    ];
    args.extend(more_args);
    let run = run_flowtap(&[capture], 1, &args);
    let datagrams = receiver.join().unwrap();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let name = capture.display().to_string();

    // tshark: per direction (packets, IP bytes, flags); per 5-tuple, its
    // first and last packet's ms.
    let mut want: BTreeMap<Direction, (u64, u64, u8)> = BTreeMap::new();
    let mut times: BTreeMap<Direction, (u64, u64)> = BTreeMap::new();
    let either = |d: Direction| d.min((d.2, d.3, d.0, d.1, d.4));
    for p in tshark_packets(capture) {
        let w = want.entry(p.direction).or_default();
        w.0 += 1;
        w.1 += p.ip_len;
        w.2 |= p.tcp_flags;
        let t = times.entry(either(p.direction)).or_insert((u64::MAX, 0));
        *t = (t.0.min(p.ms), t.1.max(p.ms));
    }
    let records = nfcapd.records();
    let mut got: BTreeMap<Direction, (u64, u64, u8)> = BTreeMap::new();
    let mut got_times: BTreeMap<Direction, (u64, u64)> = BTreeMap::new();
    for r in &records {
        let d = nfdump_direction(r);
        let g = got.entry(d).or_default();
        g.0 += r["in_packets"].as_u64().unwrap();
        g.1 += r["in_bytes"].as_u64().unwrap();
        g.2 |= nfdump_flags(r);
        let t = got_times.entry(either(d)).or_insert((u64::MAX, 0));
        *t = (
            t.0.min(nfdump_ms(r, "first")),
            t.1.max(nfdump_ms(r, "last")),
        );
    }
    assert_same(
        &got,
        &want,
        &format!("{name}: nfdump vs tshark (packets, IP bytes, TCP flags) per direction"),
    );
    assert_same(
        &got_times,
        &times,
        &format!("{name}: nfdump vs tshark (first, last ms) per 5-tuple"),
    );
    if let Some(nfacctd) = nfacctd {
        let packets = want.values().map(|v| v.0).sum();
        let want_pm: BTreeMap<Direction, (u64, u64)> =
            want.iter().map(|(k, v)| (*k, (v.0, v.1))).collect();
        assert_same(
            &nfacctd.directions(packets),
            &want_pm,
            &format!("{name}: pmacct vs tshark per direction"),
        );
    }

    // Summed per flow (the client's port 0), the API's packets.
    let api = api_directions(&run.flows, &run.bodies[1]);
    let mut per_flow: BTreeMap<Direction, u64> = BTreeMap::new();
    for (&(src, sport, dst, dport, proto), v) in &got {
        let key = [(src, 0, dst, dport, proto), (src, sport, dst, 0, proto)]
            .into_iter()
            .find(|k| api.contains_key(k))
            .unwrap_or_else(|| panic!("{name}: {src}:{sport} -> {dst}:{dport} in no flow"));
        *per_flow.entry(key).or_default() += v.0;
    }
    let api_packets: BTreeMap<Direction, u64> = api.iter().map(|(k, v)| (*k, v.0)).collect();
    assert_same(
        &per_flow,
        &api_packets,
        &format!("{name}: records summed per flow vs the API's packets"),
    );
    let frame_bytes = api.values().map(|v| v.1).sum();
    check_decoded(&name, &datagrams, frame_bytes, &run.bodies[0]);
    (records.len(), want.len())
}

#[test]
fn connection_records_match_tshark_per_5_tuple() {
    let mut records = 0;
    for name in [
        "02_pcpp_example.pcap",
        "05_ndpi_reddit_ipv6.pcap",
        "19_tcpreplay_test.pcap",
    ] {
        records += check_connection_records(&capture(name), &[], true).0;
    }
    let dir = tempfile::tempdir().unwrap();
    // Spread over 210 s of capture time, so that connections run for
    // seconds.
    let path = generated_capture(dir.path(), 200);
    let (n, directions) =
        check_connection_records(&path, &["--ipfix-active-timeout", "1000"], true);
    assert_eq!(n, directions, "one record a direction of a connection");
    // Cut every second of capture time while they run: more records, the
    // same sums.
    let (split, _) = check_connection_records(&path, &["--ipfix-active-timeout", "1"], false);
    assert!(
        split > n + 1000,
        "{split} records cut by the active timeout, {n} without"
    );
    records += n;
    assert!(records > 2000, "{records} records");
}

/// A capgen capture (20,000 frames, 200 connections at once) in `dir`, its
/// time stretched `time_scale` times (1: about a second).
fn generated_capture(dir: &Path, time_scale: u64) -> PathBuf {
    let path = dir.join("gen.pcap");
    let spec = capgen::Spec {
        packets: 20_000,
        concurrent: 200,
        seed: 5,
        anomalies: false,
        time_scale,
        ..capgen::Spec::default()
    };
    capgen::Generator::new(spec)
        .write(std::fs::File::create(&path).unwrap())
        .unwrap();
    path
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
    // 105 s of traffic: flows outlast the active timeout (60 s), and their
    // records still end forced, at the capture's end.
    let (records, _, _) = check_capture(&generated_capture(dir.path(), 100), false);
    assert!(records > 1000, "{records} records");
}

#[test]
fn nfdump_reads_biflow_records() {
    let (records, _, _) = check_capture(&capture("02_pcpp_example.pcap"), true);
    assert!(records > 20, "{records} records");
}

#[test]
fn records_carry_the_kubernetes_names_of_both_ends() {
    for per in ["flow", "connection"] {
        check_names(per);
    }
}

/// The demo with its inventory: every record (`--ipfix-per per`) names its
/// source and destination as the API names the flow's client and server.
fn check_names(per: &str) {
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
            "--ipfix-per",
            per,
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
        assert_eq!(
            (name(16), name(18)),
            named[&src],
            "per {per}, {r:?}: its source"
        );
        assert_eq!(
            (name(19), name(21)),
            named[&dst],
            "per {per}, {r:?}: its destination"
        );
        with_names += usize::from(!name(16).is_empty() && !name(19).is_empty());
    }
    assert!(
        records.len() > 100 && with_names > 50,
        "per {per}: {} records, {with_names} named",
        records.len()
    );
}

/// A collector that cannot be reached is said in the log and in the
/// end-of-run report, with the records lost: an export that never arrives
/// is not silent (it was: every failure a debug line, the metrics alone).
#[test]
fn an_unreachable_collector_is_said_with_what_was_lost() {
    // A port nothing listens on: each connection refused.
    let closed = format!("tcp://127.0.0.1:{}", common::free_port());
    let demo = common::project_root().join("demo/demo.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .args(["-r", demo.to_str().unwrap(), "--ipfix-collector", &closed])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warned = stderr
        .lines()
        .filter(|l| l.contains("IPFIX export fails"))
        .collect::<Vec<_>>();
    assert!(
        !warned.is_empty() && warned.iter().all(|l| l.contains(&closed[6..])),
        "{stderr}"
    );
    let lost = reported(&stderr, "ipfix", "records lost");
    let records = reported(&stderr, "ipfix", "records");
    assert!(records > 0 && lost == records, "{stderr}");
}

/// What the exporter cannot keep to is refused at start: an
/// `--ipfix-mtu` below the templates (messages were sent longer than
/// asked, without a word), idle timeouts reading files per flow.
#[test]
fn what_an_exporter_cannot_keep_to_is_refused() {
    let demo = common::project_root().join("demo/demo.pcap");
    for (biflow, least) in [(&[][..], "380"), (&["--ipfix-biflow"][..], "524")] {
        let out = Command::new(env!("CARGO_BIN_EXE_flowtap"))
            .arg("-r")
            .arg(&demo)
            .args([
                "--ipfix-collector",
                "udp://127.0.0.1:9",
                "--ipfix-mtu",
                "300",
            ])
            .args(biflow)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("--ipfix-mtu 300: the templates"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("give at least {least}")),
            "{stderr}"
        );
    }
    // Port 0 (every send failed, each record counted lost).
    let out = Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .arg("-r")
        .arg(&demo)
        .args(["--ipfix-collector", "udp://127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--ipfix-collector \"udp://127.0.0.1:0\": port 0 reaches no collector"),
        "{stderr}"
    );
    // Idle timeouts reading a file: flows that time out between two
    // snapshots are exported all the same (once refused per flow: they
    // were not), per flow as per connection.
    let timed_out = |per: &str| {
        Command::new(env!("CARGO_BIN_EXE_flowtap"))
            .arg("-r")
            .arg(&demo)
            .args([
                "--ipfix-collector",
                "udp://127.0.0.1:9",
                "--tcp-timeout",
                "2",
            ])
            .args(["--ipfix-per", per])
            .output()
            .unwrap()
    };
    for per in ["flow", "connection"] {
        let out = timed_out(per);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A full table gives flows up to make room (a flood, a scan, a bound set
/// low): what each counted since the last snapshot goes out in a last
/// record, ended for lack of resources (flowEndReason 5), so that the
/// records add up to every packet counted. Here a file read whole (one
/// snapshot, at its end) through a table of 8 flows and 8 connections:
/// the evicted flows' records carry all they counted.
#[test]
fn flows_evicted_from_a_full_table_end_in_records_of_what_they_counted() {
    let (sink, receiver) = tcp_collector();
    let capture = capture("05_ndpi_reddit_ipv6.pcap");
    let bound = ["--max-flows", "8", "--max-connections", "8"];
    let run = run_flowtap(
        &[&capture],
        1,
        &[&["--ipfix-collector", sink.as_str()][..], &bound].concat(),
    );
    let datagrams = receiver.join().unwrap();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let limit = |name: &str| limit_of(&run.stderr, name);
    let evicted_pkts = limit("evicted flow packets");
    let evicted_flows = limit("flows evicted") + limit("idle flows evicted");
    assert!(evicted_flows > 100, "the bound must evict: {}", run.stderr);
    assert_eq!(
        reported(&run.stderr, "ipfix", "ended flow records dropped"),
        0
    );
    let kept_pkts: u64 = run
        .flows
        .iter()
        .map(|f| f.client_tx_pkts + f.server_tx_pkts)
        .sum();
    let (by_reason, records) = packets_by_end_reason(&datagrams);
    assert_eq!(
        by_reason.values().sum::<u64>(),
        kept_pkts + evicted_pkts,
        "every packet counted is in a record: {by_reason:?}"
    );
    assert_eq!(
        by_reason.get(&5).copied(),
        Some(evicted_pkts),
        "{by_reason:?}"
    );
    assert!(
        records[&5] >= evicted_flows,
        "a record at least for each flow evicted ({evicted_flows}): {records:?}"
    );
}

/// A counter of flowtap's "limits:" line on standard error.
fn limit_of(stderr: &str, name: &str) -> u64 {
    reported(stderr, "limits", name)
}

/// Value `name` of the end-of-run report's line `line` (`limits`, `ipfix`).
fn reported(stderr: &str, line: &str, name: &str) -> u64 {
    let prefix = format!("flowtap: {line}: ");
    let values = stderr
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {line} line in {stderr}"));
    values
        .split(", ")
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {values}"))
}

/// The packets (`packetDeltaCount`) of the records in `datagrams`, and the
/// records, by `flowEndReason`, as tshark's dissector reads them.
fn packets_by_end_reason(datagrams: &[Vec<u8>]) -> (BTreeMap<u64, u64>, BTreeMap<u64, u64>) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("ipfix.pcap");
    write_pcap(&pcap, datagrams);
    let out = Command::new("tshark")
        .args(["-r", pcap.to_str().unwrap(), "-d", "udp.port==4739,cflow"])
        .args(["-T", "fields", "-E", "occurrence=a"])
        .args(["-e", "cflow.packets", "-e", "cflow.flow_end_reason"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let (mut by_reason, mut records) = (BTreeMap::<u64, u64>::new(), BTreeMap::<u64, u64>::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut fields = line.split('\t').map(|values| -> Vec<u64> {
            values.split(',').filter_map(|v| v.parse().ok()).collect()
        });
        let (packets, reasons) = (
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
        );
        assert_eq!(packets.len(), reasons.len(), "{line}");
        for (p, r) in packets.into_iter().zip(reasons) {
            *by_reason.entry(r).or_default() += p;
            *records.entry(r).or_default() += 1;
        }
    }
    (by_reason, records)
}

/// Flows that expire idle while a file is read (here with 1 s timeouts,
/// a capture of 105 s) end in records of what they counted, reason 1:
/// every packet is in a record, as with no timeout. Read without `--listen`
/// (one snapshot, at the end), their records are taken a second at a
/// time: fed slowly through a pipe, a bound of half the flows that end is
/// enough; read at once, it is not, and the rest is counted.
#[test]
fn flows_that_expire_during_a_read_end_in_records_of_what_they_counted() {
    let dir = tempfile::tempdir().unwrap();
    let capture = generated_capture(dir.path(), 100);
    let all = run_flowtap(&[&capture], 1, &[]);
    let total: u64 = all
        .flows
        .iter()
        .map(|f| f.client_tx_pkts + f.server_tx_pkts)
        .sum();
    let timeouts = ["--tcp-timeout", "1", "--udp-timeout", "1"];
    // Read whole, each run to a collector of its own.
    let read = |bound: Option<&str>, slowly: bool| {
        let (sink, receiver) = tcp_collector();
        let mut flowtap = Command::new(env!("CARGO_BIN_EXE_flowtap"));
        flowtap
            .args([
                "-r",
                if slowly {
                    "-"
                } else {
                    capture.to_str().unwrap()
                },
            ])
            .args(["--threads", "1", "--json", "--ipfix-collector", &sink])
            .args(timeouts)
            .args(
                bound
                    .map(|b| ["--ipfix-max-pending-records", b])
                    .iter()
                    .flatten(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = flowtap.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let bytes = std::fs::read(&capture).unwrap();
        let writer = std::thread::spawn(move || {
            if slowly {
                // Ten parts 0.4 s apart: four seconds of reading.
                for part in bytes.chunks(bytes.len().div_ceil(10)) {
                    stdin.write_all(part).unwrap();
                    std::thread::sleep(Duration::from_millis(400));
                }
            }
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{stderr}");
        let (by_reason, records) = packets_by_end_reason(&receiver.join().unwrap());
        (
            by_reason,
            records,
            reported(&stderr, "ipfix", "ended flow records dropped"),
        )
    };
    let (by_reason, records, dropped) = read(None, false);
    assert_eq!(dropped, 0);
    assert_eq!(
        by_reason.values().sum::<u64>(),
        total,
        "every packet in a record: {by_reason:?}"
    );
    let ended = records.get(&1).copied().unwrap_or(0);
    assert!(ended > 200, "flows must expire: {records:?}");
    let half = (ended / 2).to_string();
    let (_, _, dropped) = read(Some(&half), false);
    assert!(
        dropped > 0,
        "read at once, {ended} ended flows wait for the end"
    );
    let (by_reason, _, dropped) = read(Some(&half), true);
    assert_eq!(dropped, 0, "taken a second at a time");
    assert_eq!(by_reason.values().sum::<u64>(), total, "{by_reason:?}");
}

/// A stop signal while files are read (here a pipe, then a file not yet
/// reached) ends the reading where it is: what was read is answered as a
/// whole read of it is, every packet read goes to the collector in a
/// record (the last ones ended forced, reason 4), nothing is served after
/// it, the file not reached is said, and the exit status is the shell's
/// for the signal. The signal had ended the process at once: no answer,
/// and no record of what was read since the last snapshot.
#[test]
fn a_stop_while_reading_answers_and_exports_what_was_read() {
    let capture = capture("05_ndpi_reddit_ipv6.pcap");
    let bytes = std::fs::read(&capture).unwrap();
    let summary = "/mcp/flows/summary";
    let whole = run_flowtap(&[&capture], 1, &["--dump", summary]);
    let total: u64 = whole
        .flows
        .iter()
        .map(|f| f.client_tx_pkts + f.server_tx_pkts)
        .sum();
    let (sink, receiver) = tcp_collector();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .args(["-r", "-", capture.to_str().unwrap()])
        .args([
            "--threads",
            "1",
            "--hash-seed",
            "7",
            "--ipfix-collector",
            &sink,
        ])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--dump", summary])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (log, lines) = common::follow_stderr(&mut child);
    // Said once the signals are caught.
    common::wait_for_serving(&log, &lines);
    let rchar = |pid: u32| -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: ")?.parse().ok())
            .unwrap_or(0)
    };
    let before = rchar(child.id());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&bytes).unwrap();
    // The pipe is kept open: read whole, flowtap waits for more.
    let read = before + bytes.len() as u64;
    common::wait::until_holds(Duration::from_secs(30), "the capture read", || {
        rchar(child.id()) >= read
    });
    // Its frames counted (a few milliseconds' work).
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    // The wait for more ends with the pipe (a read waiting on a pipe stops
    // only when the pipe brings something); the next file is not opened.
    std::thread::sleep(Duration::from_millis(200));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = log.lock().unwrap().clone();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("flowtap: stopped by SIGINT: 1 more file(s) not read"),
        "{stderr}"
    );
    assert!(!stderr.contains("shutting down"), "not served: {stderr}");
    assert_eq!(
        common::without_ages(
            &serde_json::from_slice::<Value>(&out.stdout)
                .unwrap()
                .to_string()
        ),
        common::without_ages(&whole.bodies[2].to_string()),
        "what was read answered as a whole read is"
    );
    let (by_reason, records) = packets_by_end_reason(&receiver.join().unwrap());
    assert_eq!(by_reason.values().sum::<u64>(), total, "{by_reason:?}");
    assert!(records.get(&4).is_some_and(|&n| n > 0), "{records:?}");
}
