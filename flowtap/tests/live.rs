//! Live capture on real SPAN ports built from network namespaces (root
//! only; CI runs as root, and these tests fail rather than skip without it).
//!
//! Every test builds its own namespaces with a `Lab`, which deletes them
//! (and with them every veth, qdisc and XDP program) when the test ends,
//! also when it fails; each test then checks nothing of its own is left.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capgen::frame::{self, Segment, tcp_flags};
use capgen::pcap::PcapWriter;
use common::collectors::Nfcapd;
use common::metrics::{promtool, sample};
use common::netns::{Lab, LiveFlowtap, run, sh};
use common::wait;
use common::{FlowSummary, Key, corpus_dir, run_flowtap};

/// The live flows, once flowtap has counted every frame of `file`'s flows
/// (the same traffic, recorded).
fn live_flows_once_counted(
    ft: &LiveFlowtap,
    file: &BTreeMap<Key, FlowSummary>,
) -> BTreeMap<Key, FlowSummary> {
    ft.wait_for_frames(frames_of(file));
    ft.flows()
}

/// Frames of some flows, both directions.
fn frames_of(flows: &BTreeMap<Key, FlowSummary>) -> u64 {
    flows
        .values()
        .map(|f| f.client_tx_pkts + f.server_tx_pkts)
        .sum()
}

fn file_flows(path: &Path) -> BTreeMap<Key, FlowSummary> {
    let run = run_flowtap(&[path], 1, &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    run.flows.into_iter().map(|f| (f.key.clone(), f)).collect()
}

/// Compares packets, bytes and connections exactly, and returns the
/// handshake differences (live minus file, in microseconds) of every
/// percentile present on both sides, the file's divided by `speed` (the
/// replay's speed-up).
fn compare(
    live: &BTreeMap<Key, FlowSummary>,
    file: &BTreeMap<Key, FlowSummary>,
    speed: u64,
) -> Vec<i64> {
    let missing: Vec<_> = file.keys().filter(|k| !live.contains_key(*k)).collect();
    let extra: Vec<_> = live.keys().filter(|k| !file.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}\nextra {extra:?}"
    );
    let mut diffs = Vec::new();
    for (k, f) in file {
        let l = &live[k];
        let counts = |x: &FlowSummary| {
            [
                x.client_tx_pkts,
                x.client_tx_bytes,
                x.server_tx_pkts,
                x.server_tx_bytes,
                x.connections,
            ]
        };
        assert_eq!(
            counts(l),
            counts(f),
            "{k:?}: [c2s pkts, c2s bytes, s2c pkts, s2c bytes, connections] live vs tcpdump"
        );
        for (a, b) in [
            (l.client_handshake, f.client_handshake),
            (l.server_handshake, f.server_handshake),
        ] {
            assert_eq!(
                a.is_some(),
                b.is_some(),
                "{k:?}: handshake measured on one side only"
            );
            if let (Some(a), Some(b)) = (a, b) {
                diffs.extend((0..3).map(|i| a[i] as i64 - (b[i] / speed) as i64));
            }
        }
    }
    diffs
}

/// How live handshake times may differ from the reference's, in
/// microseconds: the median over all compared percentiles, the 95th
/// percentile, and the worst single one. Live times are XDP timestamps,
/// taken when the receiving veth's NAPI poll runs; the references stamp
/// frames when sent (tcpdump on the mirror's sending end, or pcap-replay's
/// `--sent` log of when it handed each frame to the kernel). On this 2-core
/// machine the two agree to tens of microseconds, with rare scheduling
/// outliers of a few ms; with fewer than 20 values compared the p95 is the
/// max, so one outlier over the p95 bound fails a try (CI gives the tests
/// that call this one retry: .config/nextest.toml).
struct Tolerance {
    median: i64,
    p95: i64,
    max: i64,
}

const HANDSHAKE_TOLERANCE: Tolerance = Tolerance {
    median: 200,
    p95: 1_000,
    max: 10_000,
};

fn check_handshakes(name: &str, diffs: &[i64], t: &Tolerance) {
    assert!(!diffs.is_empty(), "{name}: no handshake compared");
    let mut abs: Vec<i64> = diffs.iter().map(|d| d.abs()).collect();
    abs.sort_unstable();
    let at = |q: f64| abs[((q * abs.len() as f64).ceil() as usize).clamp(1, abs.len()) - 1];
    let (median, p95, max) = (at(0.5), at(0.95), at(1.0));
    eprintln!(
        "{name}: {} handshake percentiles compared; |live - reference| median {median} us, p95 {p95} us, max {max} us",
        abs.len()
    );
    assert!(
        median <= t.median && p95 <= t.p95 && max <= t.max,
        "{name}: handshake times off: median {median} us (<= {}), p95 {p95} us (<= {}), max {max} us (<= {})",
        t.median,
        t.p95,
        t.max
    );
}

/// The kernel drop counters flowtap printed per queue at exit, summed.
fn queue_report(stderr: &str) -> (Vec<u64>, u64) {
    let mut frames = Vec::new();
    let mut drops = 0;
    for line in stderr.lines().filter(|l| l.starts_with("flowtap: queue ")) {
        let (_, items) = line
            .split_once(": ")
            .and_then(|(_, r)| r.split_once(": "))
            .unwrap();
        let n = common::report_pairs(items);
        frames.push(n["frames"]);
        drops += n["rx_dropped"] + n["rx_ring_full"];
    }
    (frames, drops)
}

/// Waits until flowtap's AF_XDP sockets have received `total` frames (the
/// replay is over, the rings read), before it is stopped and its exit
/// report read.
fn wait_for_xdp_frames(ft: &LiveFlowtap, total: u64) {
    wait::until(Duration::from_secs(10), &format!("{total} frames"), || {
        let metrics = ft.admin_text("/metrics");
        let frames: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("flowtap_xdp_frames_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if frames as u64 >= total {
            Ok(())
        } else {
            Err(format!("{frames}"))
        }
    });
}

/// A running tcpdump: its pid, its file and what it writes to stderr.
struct Tcpdump {
    pid: u32,
    file: PathBuf,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

/// Stops tcpdump once its file has stopped growing for a second (packets
/// still in its buffer at SIGINT are never written, and a pause shorter
/// than a loaded machine's stall could be one) and checks it dropped
/// nothing: a reference that lost packets proves nothing.
fn stop_tcpdump(dump: Tcpdump) {
    let size = || std::fs::metadata(&dump.file).map_or(0, |m| m.len());
    let mut last = size();
    wait::until_holds(
        Duration::from_secs(20),
        "tcpdump's file to stop growing",
        || {
            std::thread::sleep(Duration::from_millis(1000));
            let now = size();
            std::mem::replace(&mut last, now) == now
        },
    );
    run(&["kill", "-INT", &dump.pid.to_string()]);
    let report = wait::until(Duration::from_secs(5), "tcpdump's report on exit", || {
        let stderr = dump.stderr.lock().unwrap().clone();
        if stderr.contains("dropped by kernel") {
            Ok(stderr)
        } else {
            Err(stderr)
        }
    });
    let dropped: u64 = report
        .lines()
        .find_map(|l| {
            l.strip_suffix(" packets dropped by kernel")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no drop count in tcpdump's report: {report}"));
    assert_eq!(dropped, 0, "tcpdump lost packets: {report}");
}

/// Starts tcpdump in `ns` writing `file`; returns once it listens.
fn tcpdump(lab: &mut Lab, ns: &str, iface: &str, file: &Path) -> Tcpdump {
    // Immediate mode: without it libpcap hands packets over in blocks retired
    // once a second, and the block in progress at SIGINT is lost.
    let child = lab.spawn(
        ns,
        &[
            "tcpdump",
            "-i",
            iface,
            "-nn",
            "--immediate-mode",
            // A 16 MiB buffer: the reference must not drop what it records
            // while the machine is busy (2 cores, tests and builds).
            "-B",
            "16384",
            "-U",
            "-s",
            "0",
            "-w",
            file.to_str().unwrap(),
        ],
    );
    let pid = child.id();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(line.contains("listening on"), "tcpdump: {line}");
    // Keep reading: a closed pipe would kill tcpdump with SIGPIPE at its
    // next message, and its exit report says what it dropped.
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for l in std::io::BufRead::lines(stderr).map_while(Result::ok) {
            sink.lock().unwrap().push_str(&format!("{l}\n"));
        }
    });
    Tcpdump {
        pid,
        file: file.to_owned(),
        stderr: log,
    }
}

fn assert_no_xdp(lab: &Lab, ns: &str, iface: &str) {
    let out = lab.exec(ns, &["ip", "link", "show", "dev", iface]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("xdp"),
        "an XDP program is left on {iface}: {text}"
    );
}

fn sysctl(lab: &Lab, ns: &str, key: &str) {
    lab.exec(ns, &["sysctl", "-qw", key]);
}

#[test]
fn span_port_flows_match_a_tcpdump_of_the_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new("span");
    let (cl, sv, tap) = (lab.ns("cl"), lab.ns("sv"), lab.ns("tap"));
    sh(&format!(
        "ip -n {cl} link add c0 type veth peer name s0 netns {sv}"
    ));
    sh(&format!("ip -n {cl} addr add 198.18.7.1/24 dev c0"));
    sh(&format!(
        "ip -n {cl} addr add 2001:db8:7::1/64 dev c0 nodad"
    ));
    sh(&format!("ip -n {sv} addr add 198.18.7.2/24 dev s0"));
    sh(&format!("ip -n {sv} addr add 198.18.7.3/24 dev s0"));
    sh(&format!(
        "ip -n {sv} addr add 2001:db8:7::2/64 dev s0 nodad"
    ));
    // The mirror port. One queue: a multi-queue veth picks a queue from the
    // sender's flow hash, which Linux re-draws mid-connection (IPv6), so a
    // direction could hop queues, which NIC RSS never does; multiple queues
    // are tested with pcap-replay below.
    sh(&format!(
        "ip -n {sv} link add m0 numtxqueues 1 numrxqueues 1 type veth peer name m1 numtxqueues 1 numrxqueues 1 netns {tap}"
    ));
    sysctl(&lab, &sv, "net.ipv6.conf.m0.disable_ipv6=1");
    sysctl(&lab, &tap, "net.ipv6.conf.m1.disable_ipv6=1");
    for (ns, dev) in [(&cl, "c0"), (&sv, "s0"), (&sv, "m0"), (&tap, "m1")] {
        sh(&format!("ip -n {ns} link set {dev} up"));
    }
    // PLATFORM.md's SPAN: mirror the server side's ingress and egress.
    sh(&format!("tc -n {sv} qdisc add dev s0 clsact"));
    for dir in ["ingress", "egress"] {
        sh(&format!(
            "tc -n {sv} filter add dev s0 {dir} protocol all u32 match u32 0 0 action mirred egress mirror dev m0"
        ));
    }
    let ft = LiveFlowtap::start(&tap, &["-i", "m1"]);
    // tcpdump records the same mirror port: the frames m0 sends.
    let pcap = dir.path().join("mirror.pcap");
    let dump = tcpdump(&mut lab, &sv, "m0", &pcap);
    lab.traffic_servers(
        &sv,
        "198.18.7.2,198.18.7.3,2001:db8:7::2",
        "8080,9090,5432",
        "5353,8125",
    );
    let summary = lab.traffic_client(
        &cl,
        &[
            "--addrs",
            "198.18.7.2,198.18.7.3,2001:db8:7::2",
            "--tcp-ports",
            "8080,9090,5432",
            "--udp-ports",
            "5353,8125",
            "--connections",
            "300",
            "--datagrams",
            "80",
        ],
    );
    assert_eq!(
        (summary["tcp_ok"].as_u64(), summary["udp_ok"].as_u64()),
        (Some(300), Some(80)),
        "{summary}"
    );
    std::thread::sleep(Duration::from_millis(500));
    stop_tcpdump(dump);

    let file = file_flows(&pcap);
    // One client: a TCP flow per server address and port (3 x 3), a UDP
    // flow per address and UDP port (3 x 2).
    assert_eq!(
        file.len(),
        9 + 6,
        "flows: {:?}",
        file.keys().collect::<Vec<_>>()
    );
    let live = live_flows_once_counted(&ft, &file);
    let diffs = compare(&live, &file, 1);
    let connections = |proto: &str| -> u64 {
        live.iter()
            .filter(|(k, _)| k.0 == proto)
            .map(|(_, f)| f.connections)
            .sum()
    };
    assert_eq!(connections("tcp"), 300);
    // Each exchange is its own socket; two that drew the same source port
    // are one 5-tuple, so one connection.
    assert_eq!(connections("udp"), summary["udp_tuples"].as_u64().unwrap());
    check_handshakes("span", &diffs, &HANDSHAKE_TOLERANCE);

    // Ready (XDP attached, socket bound), and the live metrics are valid
    // and count what the mirror carried, per queue.
    assert!(ft.admin_text("/readyz").contains("\"ready\""));
    let metrics = ft.admin_text("/metrics");
    promtool(&metrics);
    assert_eq!(sample(&metrics, "flowtap_ready"), 1.0);
    let expected = frames_of(&file);
    assert!(
        sample(
            &metrics,
            "flowtap_xdp_frames_total{interface=\"m1\",queue=\"0\"}"
        ) >= expected as f64
    );
    assert!(sample(&metrics, "flowtap_frames_total") >= expected as f64);
    assert_eq!(
        sample(
            &metrics,
            "flowtap_xdp_rx_dropped_total{interface=\"m1\",queue=\"0\"}"
        ),
        0.0
    );
    // The port's NIC counts what it missed (a veth misses nothing: the
    // series is there, its driver's count 0; netdev's tests read a count).
    let missed = lab.exec(
        &tap,
        &["cat", "/sys/class/net/m1/statistics/rx_missed_errors"],
    );
    assert_eq!(String::from_utf8_lossy(&missed.stdout).trim(), "0");
    assert_eq!(sample(&metrics, "flowtap_nic_rx_missed_frames_total"), 0.0);
    // Likewise the frames it refused as too long or damaged (a veth drops
    // a frame longer than its MTU as rx_dropped, which counts more than
    // that: netdev's tests read the counters a NIC keeps).
    let refused = lab.exec(
        &tap,
        &["cat", "/sys/class/net/m1/statistics/rx_length_errors"],
    );
    assert_eq!(String::from_utf8_lossy(&refused.stdout).trim(), "0");
    assert_eq!(sample(&metrics, "flowtap_nic_rx_refused_frames_total"), 0.0);
    // Every frame stamped by the XDP program (in front of its data),
    // none by user space.
    assert_eq!(
        sample(
            &metrics,
            "flowtap_xdp_frames_without_timestamp_total{interface=\"m1\",queue=\"0\"}"
        ),
        0.0
    );
    // An Ethernet MTU: 2 KiB buffers, 16 MiB of them.
    assert_eq!(
        sample(
            &metrics,
            "flowtap_xdp_max_frame_bytes{interface=\"m1\",queue=\"0\"}"
        ),
        1776.0
    );
    assert_eq!(
        sample(
            &metrics,
            "flowtap_xdp_ring_entries{interface=\"m1\",queue=\"0\"}"
        ),
        8192.0
    );
    assert_eq!(sample(&metrics, "flowtap_handoff_drops_total"), 0.0);

    let (status, stderr) = ft.stop();
    assert_eq!(status, 0, "{stderr}");
    let (frames, drops) = queue_report(&stderr);
    assert_eq!(frames.len(), 1, "{stderr}");
    assert_eq!(drops, 0, "kernel drops: {stderr}");
    assert_no_xdp(&lab, &tap, "m1");
    lab.close();
}

/// TCP failures on a SPAN port, each reported exactly: a connection to a
/// closed port (refused), one to an address nothing answers (unanswered,
/// its SYN sent again), one the client aborts after the handshake (reset),
/// and a bulk transfer losing one in 300 of the server's segments after the mirror
/// (an nftables rule on the client's side drops them), so that the mirror
/// sees each lost segment and its retransmission. The live counters
/// equal those of the recording, and the known ones their known values.
#[test]
fn tcp_failures_on_a_span_port_are_reported_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new("fail");
    let (cl, sv, tap) = (lab.ns("cl"), lab.ns("sv"), lab.ns("tap"));
    sh(&format!(
        "ip -n {cl} link add c0 type veth peer name s0 netns {sv}"
    ));
    sh(&format!("ip -n {cl} addr add 198.18.9.1/24 dev c0"));
    sh(&format!("ip -n {sv} addr add 198.18.9.2/24 dev s0"));
    sh(&format!(
        "ip -n {sv} link add m0 numtxqueues 1 numrxqueues 1 type veth peer name m1 numtxqueues 1 numrxqueues 1 netns {tap}"
    ));
    for (ns, dev) in [(&cl, "c0"), (&sv, "s0"), (&sv, "m0"), (&tap, "m1")] {
        sysctl(&lab, ns, &format!("net.ipv6.conf.{dev}.disable_ipv6=1"));
        // Wire-sized segments: a loss is one segment, as on a wire.
        lab.no_offloads(ns, dev);
        sh(&format!("ip -n {ns} link set {dev} up"));
    }
    // 198.18.9.9 is on the link, but nobody has it: its frames reach the
    // server's side (a static neighbour entry) and are dropped there.
    let mac = mac_of(&lab, &sv, "s0");
    sh(&format!(
        "ip -n {cl} neigh add 198.18.9.9 lladdr {mac} dev c0"
    ));
    sh(&format!("tc -n {sv} qdisc add dev s0 clsact"));
    for dir in ["ingress", "egress"] {
        sh(&format!(
            "tc -n {sv} filter add dev s0 {dir} protocol all u32 match u32 0 0 action mirred egress mirror dev m0"
        ));
    }
    // One in 300 of the bulk transfer's server segments is lost on the way
    // to the client, after the mirror saw it (this kernel has no netem).
    // Spaced losses: each is recovered on its own, by the retransmission
    // the client's duplicate ACKs ask for, or by a timeout; a burst of
    // losses would also retransmit segments within a round trip of new
    // data, which the analysis (like tshark's) calls reordering or not by
    // microseconds of timestamp, and the live and recorded timestamps differ.
    // The server paces its segments a millisecond apart (about 1.45 MB/s),
    // so that every retransmission, even one sent after a single duplicate
    // ACK (RACK), leaves well over a veth round trip after the last new data.
    let nft = |rule: &str| sh(&format!("ip netns exec {cl} nft {rule}"));
    nft("add table inet loss");
    nft("add chain inet loss in { type filter hook prerouting priority -300 ; }");
    nft("add rule inet loss in tcp sport 9090 numgen inc mod 300 == 150 drop");
    // The client sends its SYN again 1 s apart (tcp_syn_linear_timeouts);
    // a SYN timeout of 1 s would race those retransmissions, giving up the
    // attempt just before its next SYN opened a second one. 2 s keeps the
    // three SYNs one unanswered connection, as in the recording (where
    // nothing times out).
    let ft = LiveFlowtap::start(&tap, &["-i", "m1", "--tcp-syn-timeout", "2"]);
    let pcap = dir.path().join("mirror.pcap");
    let dump = tcpdump(&mut lab, &sv, "m0", &pcap);
    lab.traffic_servers_with(
        &sv,
        "198.18.9.2",
        "8080,9090",
        "",
        &["--pacing-rate", "1450000"],
    );
    let script = common::netns::traffic_script();
    let out = lab.exec(
        &cl,
        &[
            "python3",
            script.to_str().unwrap(),
            "failures",
            "--addrs",
            "198.18.9.2",
            "--tcp-ports",
            "8080",
            "--closed-port",
            "7",
            "--silent-addr",
            "198.18.9.9",
            "--bulk-port",
            "9090",
            "--response",
            "2000000",
        ],
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary,
        serde_json::json!({"refused": true, "unanswered": true, "reset": true, "bulk_bytes": 2000000}),
    );
    // A port the server's firewall rejects with an ICMP port unreachable,
    // as kube-proxy answers for a Service without endpoints: the client's
    // connect fails at once, and so is the connection reported.
    let firewall = |rule: &str| sh(&format!("ip netns exec {sv} nft {rule}"));
    firewall("add table inet kube");
    firewall("add chain inet kube in { type filter hook input priority 0 ; }");
    firewall("add rule inet kube in tcp dport 7070 reject with icmpx type port-unreachable");
    let connect = "import socket\ntry:\n    socket.create_connection(('198.18.9.2', 7070), timeout=5)\nexcept ConnectionRefusedError:\n    print('refused')";
    let out = lab.exec(&cl, &["python3", "-c", connect]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "refused");
    std::thread::sleep(Duration::from_millis(500));
    stop_tcpdump(dump);
    let file = file_flows(&pcap);
    let c = |addr: &str| -> IpAddr { addr.parse().unwrap() };
    let key = |server: &str, port: u16| ("tcp".to_owned(), c("198.18.9.1"), c(server), port);
    let refused = key("198.18.9.2", 7);
    let rejected = key("198.18.9.2", 7070);
    let unanswered = key("198.18.9.9", 8080);
    let reset = key("198.18.9.2", 8080);
    let bulk = key("198.18.9.2", 9090);
    let health = |flows: &BTreeMap<Key, FlowSummary>, k: &Key| {
        flows
            .get(k)
            .and_then(|f| f.tcp)
            .unwrap_or_else(|| panic!("no TCP flow {k:?} in {:?}", flows.keys()))
    };
    // [established, refused, unanswered, reset, closed, open]; per side
    // [retransmissions, RSTs, zero windows].
    assert_eq!(health(&file, &refused).connections, [0, 1, 0, 0, 0, 0]);
    assert_eq!(health(&file, &refused).sent, [[0, 0, 0], [0, 1, 0]]);
    // The ICMP error is no packet of the flow: the SYN alone, no RST.
    assert_eq!(health(&file, &rejected).connections, [0, 1, 0, 0, 0, 0]);
    assert_eq!(health(&file, &rejected).sent, [[0, 0, 0], [0, 0, 0]]);
    assert_eq!(
        (
            file[&rejected].client_tx_pkts,
            file[&rejected].server_tx_pkts
        ),
        (1, 0)
    );
    assert_eq!(health(&file, &unanswered).connections, [0, 0, 1, 0, 0, 0]);
    // Every SYN after the first is a retransmission (the kernel re-sends
    // at 1 s intervals at first: tcp_syn_linear_timeouts).
    let syns = file[&unanswered].client_tx_pkts;
    assert!(
        syns >= 2 && file[&unanswered].server_tx_pkts == 0,
        "{syns} SYNs"
    );
    assert_eq!(
        health(&file, &unanswered).sent,
        [[syns - 1, 0, 0], [0, 0, 0]]
    );
    assert_eq!(health(&file, &reset).connections, [1, 0, 0, 1, 0, 0]);
    assert_eq!(health(&file, &reset).sent, [[0, 1, 0], [0, 0, 0]]);
    assert_eq!(health(&file, &bulk).connections, [1, 0, 0, 0, 1, 0]);
    let lost = health(&file, &bulk).sent[1][0];
    assert!(lost > 0, "the bulk transfer lost segments");
    eprintln!("bulk transfer: {lost} retransmissions");

    // Live: the same, once the unanswered connection's SYN timeout passed
    // (2 s after its last SYN) and every frame is counted.
    let live = live_flows_once_counted(&ft, &file);
    compare(&live, &file, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut live = live;
    while health(&live, &unanswered).connections[2] == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        live = ft.flows();
    }
    for k in [&refused, &rejected, &unanswered, &reset, &bulk] {
        assert_eq!(health(&live, k), health(&file, k), "{k:?}: live vs tcpdump");
    }
    let summary = ft.get_json("/mcp/flows/summary");
    assert_eq!(summary["tcp_connections"]["refused"], 2, "{summary}");
    assert_eq!(summary["top_by_failed"][0]["failed"], 1, "{summary}");
    assert_eq!(
        summary["top_by_retransmits"][0]["server_port"], 9090,
        "{summary}"
    );
    let (status, stderr) = ft.stop();
    assert_eq!(status, 0, "{stderr}");
    lab.close();
}

fn pcap_replay() -> PathBuf {
    // A sibling binary of the workspace, built by scripts/test.sh.
    let path = Path::new(env!("CARGO_BIN_EXE_flowtap")).with_file_name("pcap-replay");
    assert!(
        path.exists(),
        "{} missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Brings `devs` in `ns` up without IPv6 (no router solicitations or DAD
/// frames among the frames a test counts).
fn bring_up(lab: &Lab, ns: &str, devs: &[&str]) {
    for dev in devs {
        sysctl(lab, ns, &format!("net.ipv6.conf.{dev}.disable_ipv6=1"));
        sh(&format!("ip -n {ns} link set {dev} up"));
    }
}

/// A lab of one namespace, `tag`, holding a veth pair of two queues each
/// way, r0 to send on and r1 to capture, up without IPv6.
fn two_queue_veth(tag: &str) -> (Lab, String) {
    let mut lab = Lab::new(tag);
    let ns = lab.ns(tag);
    sh(&format!(
        "ip -n {ns} link add r0 numtxqueues 2 numrxqueues 2 type veth peer name r1 numtxqueues 2 numrxqueues 2"
    ));
    bring_up(&lab, &ns, &["r0", "r1"]);
    (lab, ns)
}

/// Runs pcap-replay in `ns` with `args` (interface, pacing, queues) on
/// `capture`; its report.
fn replay(lab: &Lab, ns: &str, args: &[&str], capture: &Path) -> String {
    let replay = pcap_replay();
    let command = [
        &[replay.to_str().unwrap()][..],
        args,
        &[capture.to_str().unwrap()],
    ]
    .concat();
    String::from_utf8_lossy(&lab.exec(ns, &command).stdout).into_owned()
}

/// Stopped while frames still come, flowtap's last snapshot has every
/// frame its queues received: sorted by kind, and the TCP and UDP ones in
/// its flows (handed between its two workers too). Before, XDP stayed
/// attached until after the last snapshot: the frames read meanwhile were
/// counted per queue and in no flow (about a tenth at 600 kpps).
#[test]
fn a_stop_under_traffic_leaves_no_frame_out_of_the_last_snapshot() {
    let (mut lab, ns) = two_queue_veth("stop");
    // --threads is for files, and said to be (it was ignored live without a
    // word).
    let ft = LiveFlowtap::start(
        &ns,
        &["-i", "r1", "--dump", "/mcp/flows/summary", "--threads", "1"],
    );
    send_until_stopped(&mut lab, &ns);
    ft.wait_for_frames(50_000);
    let (status, stderr, stdout) = ft.stop_with_stdout();
    assert!(stderr.contains("--threads is for files"), "{stderr}");
    every_frame_read_is_in_the_last_snapshot(status, &stderr, &stdout);
    lab.close();
}

/// The largest rings, full when the stop comes (flowtap stopped by SIGSTOP
/// while the sender goes on): each worker reads its ring whole before the
/// last snapshot. A stop read at most 16,384 frames a ring, and the rest
/// were read after the last snapshot, in no flow.
#[test]
fn a_stop_with_full_rings_leaves_no_frame_out_of_the_last_snapshot() {
    let (mut lab, ns) = two_queue_veth("stopfull");
    let ft = LiveFlowtap::start(
        &ns,
        &[
            "-i",
            "r1",
            "--dump",
            "/mcp/flows/summary",
            "--ring-frames",
            "65536",
        ],
    );
    send_until_stopped(&mut lab, &ns);
    ft.wait_for_frames(50_000);
    ft.signal("STOP");
    // The sender's few hundred thousand frames a second fill both rings.
    std::thread::sleep(Duration::from_secs(1));
    ft.terminate();
    ft.signal("CONT");
    let (status, stderr, stdout) = ft.wait_exit_with_stdout();
    every_frame_read_is_in_the_last_snapshot(status, &stderr, &stdout);
    lab.close();
}

/// Sends a corpus capture on r0's two queues as fast as the sender goes,
/// for longer than a test waits (a few million frames; the lab ends the
/// sender).
fn send_until_stopped(lab: &mut Lab, ns: &str) {
    let capture = corpus_dir().join("captures/02_pcpp_example.pcap");
    let replay = pcap_replay();
    lab.spawn(
        ns,
        &[
            replay.to_str().unwrap(),
            "-i",
            "r0",
            "--queues",
            "2",
            "--spread",
            "direction",
            "--max",
            "--loop",
            "1000",
            capture.to_str().unwrap(),
        ],
    );
}

/// A stopped capture's report and last snapshot (`--dump` of the summary
/// on stdout) agree: every frame the queues read is in a kind, and every
/// TCP and UDP frame in a flow.
fn every_frame_read_is_in_the_last_snapshot(status: i32, stderr: &str, stdout: &str) {
    assert_eq!(status, 0, "{stderr}");
    let counts = |line: &str| -> Vec<(String, u64)> {
        line.split(", ")
            .filter_map(|item| {
                let (name, n) = item.rsplit_once(' ')?;
                Some((name.to_owned(), n.parse().ok()?))
            })
            .collect()
    };
    let received: u64 = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("flowtap: queue r1 "))
        .map(|l| {
            let (_, items) = l.split_once(": ").unwrap();
            counts(items)
                .into_iter()
                .find(|(name, _)| name == "frames")
                .unwrap()
                .1
        })
        .sum();
    let kinds = counts(
        stderr
            .lines()
            .find_map(|l| l.strip_prefix("flowtap: frames by kind: "))
            .expect("the report's frames by kind"),
    );
    let sorted: u64 = kinds.iter().map(|(_, n)| n).sum();
    let in_flows: u64 = kinds
        .iter()
        .filter(|(kind, _)| kind == "tcp" || kind == "udp")
        .map(|(_, n)| n)
        .sum();
    assert!(received > 50_000, "{received} frames received: {stderr}");
    assert_eq!(sorted, received, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["total_pkts"].as_u64(), Some(in_flows), "{summary}");
}

#[test]
fn connections_split_over_queues_still_form_one_correct_flow() {
    let (lab, ns) = two_queue_veth("mq");
    // Rings smaller than the default: the option reaches both sockets. A
    // hand-off queue of its own size, rounded up to whole batches of 32.
    let ft = LiveFlowtap::start(
        &ns,
        &[
            "-i",
            "r1",
            "--ring-frames",
            "1024",
            "--handoff-queue",
            "100001",
        ],
    );
    let metrics = ft.admin_text("/metrics");
    for queue in 0..2 {
        let entries = format!("flowtap_xdp_ring_entries{{interface=\"r1\",queue=\"{queue}\"}}");
        assert_eq!(sample(&metrics, &entries), 1024.0, "{entries}");
    }
    assert_eq!(
        sample(&metrics, "flowtap_handoff_queue_capacity"),
        100_032.0
    );
    let capture = corpus_dir().join("captures/02_pcpp_example.pcap");
    // Every connection's two directions go out on different queues, so they
    // arrive on different workers; at 4x the recorded speed. pcap-replay
    // logs when it sent each frame: a sender the scheduler delays by a few
    // ms (CI runs other tests beside this one) sends a SYN-ACK that much
    // later than the recording says, and the live time is right to differ.
    let dir = tempfile::tempdir().unwrap();
    let sent_log = dir.path().join("sent.pcap");
    let report = replay(
        &lab,
        &ns,
        &[
            "-i",
            "r0",
            "--queues",
            "2",
            "--spread",
            "direction",
            "--speed",
            "4",
            "--sent",
            sent_log.to_str().unwrap(),
        ],
        &capture,
    );
    eprintln!("{report}");
    let file = file_flows(&capture);
    let live = live_flows_once_counted(&ft, &file);
    // Counts against the capture itself; times against when frames went out.
    compare(&live, &file, 4);
    let diffs = compare(&live, &file_flows(&sent_log), 1);
    check_handshakes("multi-queue", &diffs, &HANDSHAKE_TOLERANCE);
    let (status, stderr) = ft.stop();
    assert_eq!(status, 0);
    let (frames, drops) = queue_report(&stderr);
    assert_eq!(frames.len(), 2);
    assert!(
        frames.iter().all(|&n| n > 1000),
        "both workers fed the shards: {frames:?}"
    );
    assert_eq!(drops, 0);
    lab.close();
}

/// The kernel lets go of a closed AF_XDP socket's queue in deferred work, so
/// a socket bound the moment another closes finds the queue busy (`EBUSY`)
/// for a while: replays started back to back on one queue each bind it
/// (they wait for the queue) and send every frame. Before the wait, every
/// second replay failed.
#[test]
fn a_replay_right_after_another_binds_the_same_queue() {
    let mut lab = Lab::new("rebind");
    let ns = lab.ns("rb");
    sh(&format!(
        "ip -n {ns} link add r0 mtu 9000 type veth peer name r1 mtu 9000"
    ));
    bring_up(&lab, &ns, &["r0", "r1"]);
    // Frames longer than one buffer: sent only by a multi-buffer socket.
    // The queue is busy for a moment after the last replay's socket
    // closed; a bind that settled for a lesser socket meanwhile (it did,
    // one time in three) could send none of them.
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("jumbo.pcap");
    let mut w = PcapWriter::new(File::create(&capture).unwrap(), 1).unwrap();
    let mut buf = Vec::new();
    let (client, server) = ("198.18.9.1".parse().unwrap(), "198.18.9.2".parse().unwrap());
    for i in 0..20u64 {
        frame::segment(
            &mut buf,
            &Segment {
                payload: 8000,
                ..Segment::tcp(client, 40000, server, 80, i % 2 == 0, tcp_flags::ACK)
            },
        );
        w.write(
            1_767_225_600_000_000_000 + i * 1_000_000,
            &buf,
            buf.len() as u32,
        )
        .unwrap();
    }
    w.finish().unwrap();
    for _ in 0..6 {
        let report = replay(&lab, &ns, &["-i", "r0", "--max"], &capture);
        assert!(
            report.contains("sent 20 ") && report.contains("failed 0"),
            "{report}"
        );
    }
    lab.close();
}

#[test]
fn a_replay_refuses_frames_that_are_not_ethernet() {
    let mut lab = Lab::new("rawrp");
    let ns = lab.ns("rr");
    sh(&format!("ip -n {ns} link add r0 type veth peer name r1"));
    bring_up(&lab, &ns, &["r0", "r1"]);
    // Raw IP: sent as they are, the frames would reach the receiver as
    // Ethernet frames addressed to 45:00:..., every one garbage.
    let capture = corpus_dir().join("captures/18_pcpp_raw_ip.pcap");
    let replay = pcap_replay();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(&replay)
        .args(["-i", "r0", "--max"])
        .arg(&capture)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("18_pcpp_raw_ip.pcap") && stderr.contains("not Ethernet"),
        "{stderr}"
    );
    lab.close();
}

/// A capture of `n` connections per gap: SYN, SYN-ACK `gap` later, ACK 1 ms
/// after that, a request and a reply; connections start 25 ms apart.
fn handshake_capture(path: &Path, gaps_ms: &[(u16, u64)], n: u32) {
    let mut w = PcapWriter::new(File::create(path).unwrap(), 1).unwrap();
    let client: IpAddr = "198.18.9.1".parse().unwrap();
    let server: IpAddr = "198.18.9.2".parse().unwrap();
    let mut buf = Vec::new();
    let t = 1_767_225_600_000_000_000u64;
    let mut events = Vec::new();
    for i in 0..n {
        for (k, &(port, gap)) in gaps_ms.iter().enumerate() {
            let cport = 40000 + (i * gaps_ms.len() as u32 + k as u32) as u16;
            let start = t + (i as u64 * gaps_ms.len() as u64 + k as u64) * 25_000_000;
            let gap = gap * 1_000_000;
            for (at, from_client, flags, payload) in [
                (0, true, tcp_flags::SYN, 0),
                (gap, false, tcp_flags::SYN | tcp_flags::ACK, 0),
                (gap + 1_000_000, true, tcp_flags::ACK, 0),
                (gap + 1_100_000, true, tcp_flags::ACK | tcp_flags::PSH, 200),
                (gap + 2_000_000, false, tcp_flags::ACK | tcp_flags::PSH, 900),
            ] {
                events.push((start + at, from_client, flags, payload, cport, port));
            }
        }
    }
    events.sort_by_key(|e| e.0);
    for (ts, from_client, flags, payload, cport, port) in events {
        frame::segment(
            &mut buf,
            &Segment {
                seq: 7,
                payload,
                ..Segment::tcp(client, cport, server, port, from_client, flags)
            },
        );
        w.write(ts, &buf, buf.len() as u32).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn replayed_handshake_gaps_are_measured_live() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("gaps.pcap");
    handshake_capture(&capture, &[(80, 5), (443, 20)], 20);
    let mut lab = Lab::new("gap");
    let ns = lab.ns("gap");
    sh(&format!("ip -n {ns} link add g0 type veth peer name g1"));
    bring_up(&lab, &ns, &["g0", "g1"]);
    let ft = LiveFlowtap::start(&ns, &["-i", "g1"]);
    let started = Instant::now();
    let report = replay(&lab, &ns, &["-i", "g0"], &capture);
    eprintln!(
        "{} (recorded span 1.0 s, took {:?})",
        report.trim(),
        started.elapsed()
    );
    ft.wait_for_frames(200);
    let live = ft.flows();
    let mut diffs = Vec::new();
    for (port, gap_us) in [(80u16, 5_000i64), (443, 20_000)] {
        let f = live
            .values()
            .find(|f| f.key.3 == port)
            .unwrap_or_else(|| panic!("no flow to port {port}"));
        assert_eq!(f.connections, 20);
        let c = f.client_handshake.unwrap();
        let s = f.server_handshake.unwrap();
        eprintln!(
            "port {port}: client leg p50/p90/p99 {c:?} (recorded {gap_us}), server leg {s:?} (recorded {})",
            gap_us + 1000
        );
        diffs.push(c[0] as i64 - gap_us);
        diffs.push(s[0] as i64 - (gap_us + 1000));
    }
    // p50 over 20 connections: an outlier connection does not move it.
    check_handshakes(
        "replay timing (p50)",
        &diffs,
        &Tolerance {
            median: 200,
            p95: 500,
            max: 500,
        },
    );
    assert_eq!(ft.stop().0, 0);
    lab.close();
}

#[test]
fn host_mode_counts_the_nodes_traffic_without_disturbing_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new("host");
    let (cl, sv) = (lab.ns("cl"), lab.ns("sv"));
    sh(&format!(
        "ip -n {cl} link add c0 type veth peer name s0 netns {sv}"
    ));
    sh(&format!("ip -n {cl} addr add 198.18.8.1/24 dev c0"));
    sh(&format!("ip -n {sv} addr add 198.18.8.2/24 dev s0"));
    for (ns, dev) in [(&cl, "c0"), (&sv, "s0")] {
        sysctl(&lab, ns, &format!("net.ipv6.conf.{dev}.disable_ipv6=1"));
        // Wire-sized frames everywhere, so tcpdump on s0 sees what the mirror sees.
        lab.no_offloads(ns, dev);
        sh(&format!("ip -n {ns} link set {dev} up"));
    }
    // Twenty TCP servers, so twenty flows of six connections each: 120
    // handshake percentiles compared, so that one handshake the kernel
    // delivered late (it moves at most four of them) is inside the p95.
    // With two flows of 60 the p95 of 12 values was their max.
    let tcp_ports = (8080..8100)
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    lab.traffic_servers(&sv, "198.18.8.2", &tcp_ports, "5353");
    let client = [
        "--addrs",
        "198.18.8.2",
        "--tcp-ports",
        &tcp_ports,
        "--udp-ports",
        "5353",
    ];
    let with = |n: &str, d: &str| {
        let mut a = client.to_vec();
        a.extend(["--connections", n, "--datagrams", d]);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let client_run = |lab: &Lab, n: &str, d: &str| {
        let args = with(n, d);
        lab.traffic_client(&cl, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // A crashed run leaves its mirror veth behind; the next start replaces it.
    let crashed = LiveFlowtap::start(&sv, &["-i", "s0", "--mode", "host"]);
    crashed.kill();
    let links = String::from_utf8_lossy(&lab.exec(&sv, &["ip", "-o", "link"]).stdout).into_owned();
    assert!(
        links.contains("ftm"),
        "a SIGKILLed run leaves its veth: {links}"
    );

    // A CNI's TC programs, attached before flowtap (at the node's boot),
    // ending the chain as Cilium's do: flowtap's mirror must run ahead of
    // them both ways, or it never sees what they let go.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tcx_pass.py");
    let mut cni = Command::new("ip")
        .args([
            "netns",
            "exec",
            &sv,
            "python3",
            script.to_str().unwrap(),
            "s0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut attached = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(cni.stdout.take().unwrap()),
        &mut attached,
    )
    .unwrap();
    assert_eq!(attached.trim(), "attached", "the CNI stand-in's TCX links");

    let pcap = dir.path().join("s0.pcap");
    let dump = tcpdump(&mut lab, &sv, "s0", &pcap);
    let ft = LiveFlowtap::start(&sv, &["-i", "s0", "--mode", "host"]);
    assert!(
        ft.stderr
            .lock()
            .unwrap()
            .contains("removing a mirror veth left by an earlier run")
    );
    // A second flowtap in host mode on the same interface refuses (and
    // leaves the first one's mirror alone).
    let second = Command::new("ip")
        .args(["netns", "exec", &sv, env!("CARGO_BIN_EXE_flowtap")])
        .args(["-i", "s0", "--mode", "host"])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let second_err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{second_err}");
    assert!(second_err.contains("another flowtap"), "{second_err}");
    let during = client_run(&lab, "120", "30");
    assert_eq!(
        (during["tcp_ok"].as_u64(), during["udp_ok"].as_u64()),
        (Some(120), Some(30)),
        "traffic flows while mirrored: {during}"
    );
    std::thread::sleep(Duration::from_millis(500));
    stop_tcpdump(dump);
    let file = file_flows(&pcap);
    let live = live_flows_once_counted(&ft, &file);
    let diffs = compare(&live, &file, 1);
    check_handshakes("host", &diffs, &HANDSHAKE_TOLERANCE);

    let (status, stderr) = ft.stop();
    assert_eq!(status, 0, "{stderr}");
    drop(cni.stdin.take());
    assert!(cni.wait().unwrap().success(), "the CNI stand-in");
    let links = String::from_utf8_lossy(&lab.exec(&sv, &["ip", "-o", "link"]).stdout).into_owned();
    assert!(
        !links.contains("ftm") && !links.contains("ftc"),
        "mirror veth left: {links}"
    );
    assert_no_xdp(&lab, &sv, "s0");
    let after = client_run(&lab, "40", "10");
    assert_eq!(
        (after["tcp_ok"].as_u64(), after["udp_ok"].as_u64()),
        (Some(40), Some(10)),
        "traffic flows after: {after}"
    );
    lab.close();
}

#[test]
fn skb_mode_and_unbound_queues_pass_or_drop() {
    let capture = corpus_dir().join("captures/19_tcpreplay_test.pcap");
    let total = 179; // frames in 19_tcpreplay_test
    let mut lab = Lab::new("ub");
    let ns = lab.ns("ub");
    sh(&format!(
        "ip -n {ns} link add u0 numtxqueues 2 numrxqueues 2 type veth peer name u1 numtxqueues 2 numrxqueues 2"
    ));
    bring_up(&lab, &ns, &["u0", "u1"]);
    let replay_slowly = |lab: &Lab| {
        let args = [
            "-i",
            "u0",
            "--queues",
            "2",
            "--spread",
            "direction",
            "--pps",
            "2000",
        ];
        replay(lab, &ns, &args, &capture);
    };

    // SKB (generic) mode captures everything. (A veth records no rx queue
    // without its NAPI path, which driver-mode XDP turns on: every frame
    // arrives as queue 0 here.)
    let ft = LiveFlowtap::start(&ns, &["-i", "u1", "--xdp-mode", "skb"]);
    assert!(
        ft.stderr.lock().unwrap().contains("xdp_mode=\"skb\""),
        "{}",
        ft.stderr.lock().unwrap()
    );
    replay_slowly(&lab);
    wait_for_xdp_frames(&ft, total);
    let (status, stderr) = ft.stop();
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(
        queue_report(&stderr).0.iter().sum::<u64>(),
        total,
        "{stderr}"
    );

    // Driver mode with a socket on queue 0 only: queue 1's frames meet --unbound.
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for unbound in ["pass", "drop"] {
        let ft = LiveFlowtap::start(
            &ns,
            &[
                "-i",
                "u1",
                "--xdp-mode",
                "driver",
                "--queues",
                "1",
                "--unbound",
                unbound,
            ],
        );
        let pcap = dir.path().join(format!("{unbound}.pcap"));
        let dump = tcpdump(&mut lab, &ns, "u1", &pcap);
        replay_slowly(&lab);
        stop_tcpdump(dump);
        // The frames queue 0 did not get are counted, not lost unseen: in
        // the metric, and in the coverage's capture drops.
        wait::until_holds(Duration::from_secs(10), "unbound frames counted", || {
            let metrics = ft.admin_text("/metrics");
            sample(&metrics, "flowtap_xdp_unbound_frames_total")
                + sample(
                    &metrics,
                    "flowtap_xdp_frames_total{interface=\"u1\",queue=\"0\"}",
                )
                == total as f64
        });
        let coverage = ft.get_json("/mcp/flows/summary")["coverage"].clone();
        let unbound_frames = sample(
            &ft.admin_text("/metrics"),
            "flowtap_xdp_unbound_frames_total",
        ) as u64;
        assert!(unbound_frames > 0, "{unbound}");
        assert_eq!(coverage["capture_drops"], unbound_frames, "{coverage}");
        let (status, stderr) = ft.stop();
        // Said at start too (only counted, a mirror spread over a NIC's
        // queues lost most of itself with readiness green).
        assert!(stderr.contains("capturing 1 of 2 rx queues"), "{stderr}");
        assert_eq!(status, 0, "{stderr}");
        let q0 = queue_report(&stderr).0[0];
        let stack = run_flowtap(&[&pcap], 1, &[]).frames_read;
        eprintln!("unbound {unbound}: flowtap (queue 0) {q0}, the stack (tcpdump) {stack}");
        seen.push((q0, stack));
    }
    let ((q0_pass, stack_pass), (q0_drop, stack_drop)) = (seen[0], seen[1]);
    assert!(
        q0_pass > 0 && q0_pass < total,
        "queue 0 got part of the frames: {q0_pass}"
    );
    assert_eq!(
        q0_pass + stack_pass,
        total,
        "pass: queue 1's frames reach the stack"
    );
    assert_eq!(q0_drop, q0_pass);
    assert_eq!(stack_drop, 0, "drop: nothing reaches the stack");
    lab.close();
}

/// The image's binary with its file capabilities (scripts/install-caps.sh,
/// as the Dockerfile uses them) captures as an unprivileged user, on a SPAN
/// port and in host mode, and only its main thread keeps them.
#[test]
fn an_unprivileged_user_captures_with_the_file_capabilities() {
    let bin = common::image_binaries_with_capabilities();
    let flowtap = bin.path().join("flowtap");
    // As the DaemonSet's container: every capability dropped but the four
    // (the file's are permitted only, and flowtap raises them itself).
    let as_nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--bounding-set=-all,+bpf,+net_admin,+net_raw,+ipc_lock",
        flowtap.to_str().unwrap(),
    ];

    let capture = corpus_dir().join("captures/19_tcpreplay_test.pcap");
    let total = 179; // frames in 19_tcpreplay_test
    let mut lab = Lab::new("nr");
    let ns = lab.ns("nr");
    sh(&format!("ip -n {ns} link add u0 type veth peer name u1"));
    bring_up(&lab, &ns, &["u0", "u1"]);
    for mode in ["span", "host"] {
        let ft = LiveFlowtap::start_with(&ns, &as_nobody, &["-i", "u1", "--mode", mode]);
        replay(&lab, &ns, &["-i", "u0", "--pps", "2000"], &capture);
        wait_for_xdp_frames(&ft, total);
        // Host mode's veth pair has no address, not even IPv6's link-local
        // one, which the sysctl a non-root flowtap cannot write would have
        // prevented: it sends nothing of its own.
        let addresses = lab.exec(&ns, &["ip", "-o", "addr", "show"]);
        let addresses = String::from_utf8_lossy(&addresses.stdout);
        assert!(
            !addresses.contains("ftm") && !addresses.contains("ftc"),
            "{mode}: {addresses}"
        );
        // Not for want of IPv6: a new interface here gets it.
        let default = lab.exec(&ns, &["sysctl", "-n", "net.ipv6.conf.default.disable_ipv6"]);
        assert_eq!(String::from_utf8_lossy(&default.stdout).trim(), "0");
        // The threads that read what others send, or only count, hold no
        // capability (every thread held the four for the whole run); the
        // one that set the capture up keeps them, to follow and detach it.
        let held = capabilities_by_thread(ft.pid());
        let main = &held.iter().find(|(name, ..)| name == "flowtap").unwrap();
        assert_ne!(main.1, 0, "{mode}: {held:?}");
        for name in [
            "flowtap-http",
            "flowtap-admin",
            "flowtap-publish",
            "flowtap-merger",
        ] {
            let threads: Vec<_> = held.iter().filter(|(n, ..)| n == name).collect();
            assert!(!threads.is_empty(), "{mode}: no {name} in {held:?}");
            for (_, effective, permitted) in threads {
                assert_eq!((*effective, *permitted), (0, 0), "{mode}: {name}: {held:?}");
            }
        }
        let (status, stderr) = ft.stop();
        assert_eq!(status, 0, "{mode}: {stderr}");
        assert_eq!(
            queue_report(&stderr).0.iter().sum::<u64>(),
            total,
            "{mode}: {stderr}"
        );
        assert_no_xdp(&lab, &ns, "u1");
    }
    lab.close();
}

/// Each thread of process `pid`: its name, and its effective and
/// permitted capabilities (`/proc/PID/task/TID/status`).
fn capabilities_by_thread(pid: u32) -> Vec<(String, u64, u64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut held = Vec::new();
    for task in tasks {
        let dir = task.unwrap().path();
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue; // a thread that ended meanwhile
        };
        let field = |key: &str| {
            let line = status.lines().find(|l| l.starts_with(key)).unwrap();
            line[key.len()..].trim().to_owned()
        };
        let hex = |key: &str| u64::from_str_radix(&field(key), 16).unwrap();
        held.push((field("Name:"), hex("CapEff:"), hex("CapPrm:")));
    }
    held
}

/// The README's quick start, verbatim, in a namespace whose default route
/// leaves through a veth: it must print readiness and metrics and stop
/// cleanly, leaving nothing attached.
#[test]
fn the_readme_quick_start_runs_verbatim() {
    let root = common::project_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let begin = "### Quick start on a mirror port";
    let section = &readme[readme.find(begin).expect("quick start section")..];
    let start = section.find("```sh\n").unwrap() + "```sh\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];

    let mut lab = Lab::new("qs");
    let (node, gw) = (lab.ns("node"), lab.ns("gw"));
    sh(&format!(
        "ip -n {node} link add eth0 type veth peer name g0 netns {gw}"
    ));
    sh(&format!("ip -n {node} addr add 198.18.9.2/24 dev eth0"));
    sh(&format!("ip -n {gw} addr add 198.18.9.1/24 dev g0"));
    sh(&format!("ip -n {node} link set eth0 up"));
    sh(&format!("ip -n {node} link set lo up"));
    sh(&format!("ip -n {gw} link set g0 up"));
    sh(&format!("ip -n {node} route add default via 198.18.9.1"));
    // Something to count: the gateway sends the node a datagram every 50 ms
    // for longer than the block may run (its set-up lines take a while: a
    // release build of flowtap, when nothing has built one yet, took 232 s
    // under load); the lab stops it at the end.
    lab.spawn(
        &gw,
        &[
            "python3",
            "-c",
            "import socket, time\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for _ in range(6600):\n    s.sendto(b'tick', ('198.18.9.2', 9999)); time.sleep(0.05)",
        ],
    );
    // Bounded: a failing line leaves flowtap running in the background,
    // holding the output pipe open.
    let out = Command::new("timeout")
        .args([
            "-k", "5", "300", "ip", "netns", "exec", &node, "bash", "-euo", "pipefail", "-c", block,
        ])
        .current_dir(root)
        // A user's shell: without what cargo and nextest set for tests
        // (FLOWTAP_GIT_COMMIT, from build.rs, would make cargo rebuild).
        .env_clear()
        .envs(
            ["PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME"]
                .iter()
                .filter_map(|k| Some((k, std::env::var_os(k)?))),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quick start failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("{\"status\":\"ready\"}"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(r#""server":{"ip":"198.18.9.2","port":9999}"#),
        "the datagrams' flow: {stdout}"
    );
    // curl prints the JSON bodies without a newline: find the sample.
    let frames: f64 = stdout
        .split("flowtap_frames_total ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no flowtap_frames_total in {stdout}"));
    assert!(
        frames > 0.0,
        "the datagrams were not counted: {stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("capturing") && stderr.contains("interface=eth0"),
        "{stderr}"
    );
    assert_no_xdp(&lab, &node, "eth0");
    let links = lab.exec(&node, &["ip", "-o", "link", "show"]);
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains("ftm") && !links.contains("ftc"),
        "mirror left: {links}"
    );
    lab.close();
}

/// Two namespaces joined by a veth pair, flowtap capturing on the server's
/// end (SPAN mode): the client's datagrams are counted.
fn udp_lab(tag: &str) -> (Lab, String, String) {
    let mut lab = Lab::new(tag);
    let (cl, sv) = (lab.ns("cl"), lab.ns("sv"));
    sh(&format!(
        "ip -n {cl} link add c0 type veth peer name s0 netns {sv}"
    ));
    sh(&format!("ip -n {cl} addr add 198.18.10.1/24 dev c0"));
    sh(&format!("ip -n {sv} addr add 198.18.10.2/24 dev s0"));
    for (ns, dev) in [(&cl, "c0"), (&sv, "s0")] {
        sysctl(&lab, ns, &format!("net.ipv6.conf.{dev}.disable_ipv6=1"));
        sh(&format!("ip -n {ns} link set {dev} up"));
    }
    // flowtap consumes what reaches s0 (ARP included): the client needs no
    // answer to send.
    let mac = mac_of(&lab, &sv, "s0");
    sh(&format!(
        "ip -n {cl} neigh add 198.18.10.2 lladdr {mac} dev c0 nud permanent"
    ));
    (lab, cl, sv)
}

/// The MAC address of `dev` in `ns`.
fn mac_of(lab: &Lab, ns: &str, dev: &str) -> String {
    let path = format!("/sys/class/net/{dev}/address");
    String::from_utf8_lossy(&lab.exec(ns, &["cat", &path]).stdout)
        .trim()
        .to_owned()
}

/// The MTU of both ends of `udp_lab`'s veth pair.
fn set_udp_lab_mtu(cl: &str, sv: &str, mtu: u32) {
    for (ns, dev) in [(cl, "c0"), (sv, "s0")] {
        sh(&format!("ip -n {ns} link set {dev} mtu {mtu}"));
    }
}

fn send_datagrams(lab: &Lab, ns: &str, n: u32) {
    send_datagrams_from(lab, ns, 40000, n);
}

/// `n` datagrams of 50 bytes (78 IP bytes) from 198.18.10.1:`port` to
/// 198.18.10.2:9999.
fn send_datagrams_from(lab: &Lab, ns: &str, port: u16, n: u32) {
    send_datagrams_of(lab, ns, port, n, 50);
}

/// `n` datagrams of `payload` bytes from 198.18.10.1:`port` to
/// 198.18.10.2:9999.
fn send_datagrams_of(lab: &Lab, ns: &str, port: u16, n: u32, payload: usize) {
    send_datagrams_between(lab, ns, ("198.18.10.1", port), "198.18.10.2", n, payload);
}

/// `n` datagrams of `payload` bytes from `from` to `to`, port 9999.
fn send_datagrams_between(
    lab: &Lab,
    ns: &str,
    (from, port): (&str, u16),
    to: &str,
    n: u32,
    payload: usize,
) {
    lab.exec(
        ns,
        &[
            "python3",
            "-c",
            &format!(
                "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 s.bind(('{from}', {port}))\n\
                 for _ in range({n}): s.sendto(b'x' * {payload}, ('{to}', 9999))"
            ),
        ],
    );
}

/// AF_XDP buffers follow the capture interface's MTU (at 9000 bytes a
/// buffer is a page, 16 MiB of them), and a frame longer than a buffer
/// arrives in several (multi-buffer XDP and sockets, Linux 6.6 on): jumbo
/// datagrams are counted whole, packets and bytes exact against a tcpdump
/// of the sending end, in pages (three a frame) and in 2 KiB buffers
/// (`--frame-size 2048`, five a frame), on a span port and in host mode
/// (whose mirror veth takes the node interface's MTU, or it would drop
/// them); then pcap-replay sends the first run's capture again, each frame
/// from several transmit buffers. (The default at an Ethernet MTU, 2 KiB
/// buffers, is asserted in `span_port_flows_match_a_tcpdump_of_the_mirror`.)
#[test]
fn jumbo_frames_arrive_whole_in_several_buffers() {
    let (mut lab, cl, sv) = udp_lab("mtu");
    set_udp_lab_mtu(&cl, &sv, 9000);
    let dir = tempfile::tempdir().unwrap();
    let (sent, payload) = (20u64, 8000);
    // UDP and IPv4 headers, Ethernet's.
    let frame_len = payload as u64 + 8 + 20 + 14;
    for (args, max_frame, ring) in [
        (&[][..], 3824.0, 4096.0),
        (&["--frame-size", "2048"][..], 1776.0, 8192.0),
        (&["--mode", "host"][..], 3824.0, 4096.0),
    ] {
        // In host mode the server's stack answers too (port unreachable):
        // the flows are compared, not the interface's totals.
        let span = !args.contains(&"host");
        let ft = LiveFlowtap::start(&sv, &[&["-i", "s0"][..], args].concat());
        let log = ft.stderr.lock().unwrap().clone();
        assert!(log.contains("multi_buffer=true"), "{log}");
        let metrics = ft.admin_text("/metrics");
        assert_eq!(
            sample(
                &metrics,
                "flowtap_xdp_max_frame_bytes{interface=\"s0\",queue=\"0\"}"
            ),
            max_frame,
            "{args:?}"
        );
        assert_eq!(
            sample(
                &metrics,
                "flowtap_xdp_ring_entries{interface=\"s0\",queue=\"0\"}"
            ),
            ring,
            "{args:?}"
        );
        let pcap = dir.path().join(format!("c0-{}.pcap", args.join("")));
        let dump = tcpdump(&mut lab, &cl, "c0", &pcap);
        send_datagrams_of(&lab, &cl, 40000, sent as u32, payload);
        std::thread::sleep(Duration::from_millis(500));
        stop_tcpdump(dump);
        let file = file_flows(&pcap);
        assert_eq!(frames_of(&file), sent, "{args:?}");
        let live = live_flows_once_counted(&ft, &file);
        compare(&live, &file, 1);
        let metrics = ft.admin_text("/metrics");
        // Read from its first buffer, a frame is whole, not cut short.
        let malformed: Vec<f64> = metrics
            .lines()
            .filter(|l| l.starts_with("flowtap_malformed_frames_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        assert!(!malformed.is_empty(), "{metrics}");
        assert_eq!(malformed.iter().sum::<f64>(), 0.0, "{args:?}: {metrics}");
        if span {
            assert_eq!(
                sample(
                    &metrics,
                    "flowtap_xdp_bytes_total{interface=\"s0\",queue=\"0\"}"
                ) as u64,
                sent * frame_len,
                "{args:?}"
            );
        }
        let (status, stderr) = ft.stop();
        assert_eq!(status, 0, "{stderr}");
        let (frames, drops) = queue_report(&stderr);
        assert_eq!(drops, 0, "{args:?}: {stderr}");
        if span {
            assert_eq!(frames, vec![sent], "{args:?}: {stderr}");
        }
    }
    // The first run's capture replayed by pcap-replay, whose transmit socket
    // sends each frame in three buffers: the same flows, byte for byte.
    let recorded = dir.path().join("c0-.pcap");
    let file = file_flows(&recorded);
    let ft = LiveFlowtap::start(&sv, &["-i", "s0"]);
    let report = replay(&lab, &cl, &["-i", "c0", "--max"], &recorded);
    assert!(
        report.contains(&format!("sent {sent} frames ({} bytes)", sent * frame_len))
            && report.contains("failed 0"),
        "{report}"
    );
    let live = live_flows_once_counted(&ft, &file);
    compare(&live, &file, 1);
    let metrics = ft.admin_text("/metrics");
    assert_eq!(
        sample(
            &metrics,
            "flowtap_xdp_bytes_total{interface=\"s0\",queue=\"0\"}"
        ) as u64,
        sent * frame_len
    );
    let (status, stderr) = ft.stop();
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(queue_report(&stderr), (vec![sent], 0), "{stderr}");
    lab.close();
}

/// An interface that changes while flowtap captures it. In host mode the
/// mirror veth follows the node interface's MTU when it is raised (jumbo
/// datagrams sent after the change counted whole, against a tcpdump of the
/// sending end, none dropped by the mirror); the veth kept its first MTU
/// and dropped them, counted nowhere. An interface that goes down is said
/// once and reported not ready until it is back (it was ready throughout,
/// reading as a quiet network). Named by an alternative name (as systemd
/// names NICs), and renamed while captured, it is followed still (by the
/// old name the check read nothing: readiness stuck, the MTU unfollowed).
#[test]
fn an_interface_changed_while_captured_is_followed() {
    let (mut lab, cl, sv) = udp_lab("ifchg");
    let dir = tempfile::tempdir().unwrap();
    sh(&format!(
        "ip -n {sv} link property add dev s0 altname uplink-alt"
    ));
    let ft = LiveFlowtap::start(&sv, &["-i", "uplink-alt", "--mode", "host"]);
    set_udp_lab_mtu(&cl, &sv, 9000);
    let index =
        String::from_utf8_lossy(&lab.exec(&sv, &["cat", "/sys/class/net/s0/ifindex"]).stdout)
            .trim()
            .to_owned();
    for end in ["ftm", "ftc"] {
        let path = format!("/sys/class/net/{end}{index}/mtu");
        wait::until_holds(
            Duration::from_secs(5),
            &format!("{end}{index} at MTU 9000"),
            || String::from_utf8_lossy(&lab.exec(&sv, &["cat", &path]).stdout).trim() == "9000",
        );
    }
    let pcap = dir.path().join("c0.pcap");
    let dump = tcpdump(&mut lab, &cl, "c0", &pcap);
    send_datagrams_of(&lab, &cl, 40000, 20, 8000);
    std::thread::sleep(Duration::from_millis(500));
    stop_tcpdump(dump);
    let file = file_flows(&pcap);
    assert_eq!(frames_of(&file), 20);
    compare(&live_flows_once_counted(&ft, &file), &file, 1);
    let metrics = ft.admin_text("/metrics");
    assert_eq!(
        sample(&metrics, "flowtap_mirror_veth_dropped_frames_total"),
        0.0
    );
    assert_eq!(sample(&metrics, "flowtap_interfaces_down"), 0.0);

    assert_eq!(ft.admin_status("/readyz"), 200);
    sh(&format!("ip -n {sv} link set s0 down"));
    wait::until_holds(
        Duration::from_secs(5),
        "/readyz 503 while s0 is down",
        || ft.admin_status("/readyz") == 503,
    );
    assert_eq!(
        sample(&ft.admin_text("/metrics"), "flowtap_interfaces_down"),
        1.0
    );
    // Not ready, and says why: not a start.
    assert_eq!(
        ft.admin_answer("/readyz"),
        (503, r#"{"status":"interface down"}"#.to_owned())
    );
    assert_eq!(ft.admin_status("/healthz"), 200);
    sh(&format!("ip -n {sv} link set s0 up"));
    wait::until_holds(Duration::from_secs(5), "/readyz 200 once s0 is up", || {
        ft.admin_status("/readyz") == 200
    });
    assert_eq!(
        sample(&ft.admin_text("/metrics"), "flowtap_interfaces_down"),
        0.0
    );
    // The mirror veth set down (by an operator, a network manager) stops
    // the frames as well.
    sh(&format!("ip -n {sv} link set ftm{index} down"));
    wait::until_holds(
        Duration::from_secs(5),
        "/readyz 503 while the mirror is down",
        || ft.admin_status("/readyz") == 503,
    );
    sh(&format!("ip -n {sv} link set ftm{index} up"));
    wait::until_holds(
        Duration::from_secs(5),
        "/readyz 200 once the mirror is up",
        || ft.admin_status("/readyz") == 200,
    );
    // Renamed while down: not ready until up again, and its MTU followed.
    sh(&format!("ip -n {sv} link set s0 down"));
    sh(&format!("ip -n {sv} link set s0 name node0"));
    wait::until_holds(
        Duration::from_secs(5),
        "/readyz 503 while the renamed s0 is down",
        || ft.admin_status("/readyz") == 503,
    );
    sh(&format!("ip -n {sv} link set node0 up"));
    sh(&format!("ip -n {sv} link set node0 mtu 8000"));
    wait::until_holds(
        Duration::from_secs(5),
        "/readyz 200 once the renamed s0 is up",
        || ft.admin_status("/readyz") == 200,
    );
    let path = format!("/sys/class/net/ftc{index}/mtu");
    wait::until_holds(
        Duration::from_secs(5),
        &format!("ftc{index} at the renamed interface's MTU"),
        || String::from_utf8_lossy(&lab.exec(&sv, &["cat", &path]).stdout).trim() == "8000",
    );
    let (status, stderr) = ft.stop();
    assert_eq!(status, 0, "{stderr}");
    assert!(stderr.contains("the mirror veth follows"), "{stderr}");
    assert!(
        stderr.contains("-i uplink-alt: an alternative name of s0"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("went down or lost its link").count(),
        3,
        "{stderr}"
    );
    assert!(stderr.contains("up with a link again"), "{stderr}");
    lab.close();
}

/// `--no-multi-buffer` runs the single-buffer XDP program and sockets,
/// which is what a kernel before 6.6 (sockets) or 5.18 (the program) runs:
/// frames a buffer holds are counted exactly against a tcpdump of the
/// sending end, and a jumbo frame no buffer holds is dropped by the kernel
/// and counted as dropped (`rx_dropped`), never counted in a flow nor lost
/// without a count. At a 9000-byte MTU (in skb mode: the veth takes no
/// single-buffer program in driver mode there), then at an Ethernet MTU
/// (in driver mode).
#[test]
fn single_buffer_sockets_count_the_frames_they_cannot_hold() {
    let (mut lab, cl, sv) = udp_lab("sbuf");
    set_udp_lab_mtu(&cl, &sv, 9000);
    let dir = tempfile::tempdir().unwrap();
    let ft = LiveFlowtap::start(&sv, &["-i", "s0", "--no-multi-buffer"]);
    let log = ft.stderr.lock().unwrap().clone();
    assert!(log.contains("multi_buffer=false"), "{log}");
    let metrics = ft.admin_text("/metrics");
    // At a 9000-byte MTU a buffer is a page: 3824 bytes of frame.
    assert_eq!(
        sample(
            &metrics,
            "flowtap_xdp_max_frame_bytes{interface=\"s0\",queue=\"0\"}"
        ),
        3824.0
    );
    // Datagrams that fit a buffer, recorded by tcpdump on the sending end;
    // and the flowtap that counted them stopped, with the kernel's drops.
    let fitting = 30u64;
    let record_fitting = |lab: &mut Lab, name: &str, payload: usize| {
        let pcap = dir.path().join(name);
        let dump = tcpdump(lab, &cl, "c0", &pcap);
        send_datagrams_of(lab, &cl, 40000, fitting as u32, payload);
        std::thread::sleep(Duration::from_millis(500));
        stop_tcpdump(dump);
        let file = file_flows(&pcap);
        assert_eq!(frames_of(&file), fitting);
        file
    };
    let stop = |ft: LiveFlowtap, dropped: u64| {
        let (status, stderr) = ft.stop();
        assert_eq!(status, 0, "{stderr}");
        assert_eq!(queue_report(&stderr), (vec![fitting], dropped), "{stderr}");
    };
    // 1042-byte frames; then 20 of 8042 bytes, to the same flow.
    let file = record_fitting(&mut lab, "c0-9000.pcap", 1000);
    let jumbo = 20u64;
    send_datagrams_of(&lab, &cl, 40001, jumbo as u32, 8000);
    // The kernel counts every jumbo frame it could not hand over.
    let rx_dropped = |ft: &LiveFlowtap| {
        sample(
            &ft.admin_text("/metrics"),
            "flowtap_xdp_rx_dropped_total{interface=\"s0\",queue=\"0\"}",
        ) as u64
    };
    wait::until(Duration::from_secs(10), "the jumbo frames' drops", || {
        if rx_dropped(&ft) >= jumbo {
            Ok(())
        } else {
            Err(ft.admin_text("/metrics"))
        }
    });
    assert_eq!(rx_dropped(&ft), jumbo, "{}", ft.admin_text("/metrics"));
    // The flow holds the fitting datagrams exactly, none of the others.
    compare(&live_flows_once_counted(&ft, &file), &file, 1);
    stop(ft, jumbo);
    // The veth takes no single-buffer program in driver mode at that MTU
    // (a frame could be longer than a page), so that run was in skb mode;
    // at an Ethernet MTU it is in driver mode, as an older kernel's would
    // be, and counts exactly.
    assert!(log.contains("xdp_mode=\"skb\""), "{log}");
    set_udp_lab_mtu(&cl, &sv, 1500);
    let ft = LiveFlowtap::start(&sv, &["-i", "s0", "--no-multi-buffer"]);
    let log = ft.stderr.lock().unwrap().clone();
    assert!(
        log.contains("multi_buffer=false") && log.contains("xdp_mode=\"driver\""),
        "{log}"
    );
    let file = record_fitting(&mut lab, "c0-1500.pcap", 1400);
    compare(&live_flows_once_counted(&ft, &file), &file, 1);
    stop(ft, 0);
    lab.close();
}

/// Connection records live (`--ipfix-per connection`) to a real nfcapd in
/// the capture's namespace: datagrams from three client ports, each a
/// connection counted exactly; the first two idle past `--udp-timeout` get
/// their records while flowtap runs, the third when it stops.
#[test]
fn connection_records_are_exported_live() {
    let (lab, cl, sv) = udp_lab("ipfix");
    let nfcapd = Nfcapd::start_in(Some(&sv), 4739);
    let ft = LiveFlowtap::start(
        &sv,
        &[
            "-i",
            "s0",
            "--udp-timeout",
            "1",
            "--ipfix-per",
            "connection",
            "--ipfix-collector",
            "udp://127.0.0.1:4739",
        ],
    );
    let records_sent =
        |ft: &LiveFlowtap| sample(&ft.admin_text("/metrics"), "flowtap_ipfix_records_total");
    send_datagrams_from(&lab, &cl, 40001, 3);
    send_datagrams_from(&lab, &cl, 40002, 5);
    // Idle for a second: expired, and their records sent, while running.
    wait::until_holds(
        Duration::from_secs(10),
        "records for idle connections",
        || records_sent(&ft) >= 2.0,
    );
    send_datagrams_from(&lab, &cl, 40003, 7);
    // Its flow has the three connections' 15 packets, or its 7 if the flow
    // expired with the first two.
    wait::until_holds(
        Duration::from_secs(10),
        "the third connection counted",
        || matches!(udp_flow_packets(&ft), Some(7 | 15)),
    );
    let (status, stderr) = ft.stop();
    assert_eq!(status, 0, "{stderr}");
    let mut got = BTreeMap::new();
    for r in nfcapd.records() {
        let key = (
            r["src4_addr"].as_str().unwrap().to_owned(),
            r["src_port"].as_u64().unwrap(),
            r["dst4_addr"].as_str().unwrap().to_owned(),
            r["dst_port"].as_u64().unwrap(),
            r["proto"].as_u64().unwrap(),
        );
        let counts = (
            r["in_packets"].as_u64().unwrap(),
            r["in_bytes"].as_u64().unwrap(),
        );
        assert!(got.insert(key, counts).is_none(), "{r}: a second record");
    }
    let want: BTreeMap<_, _> = [(40001, 3), (40002, 5), (40003, 7)]
        .into_iter()
        .map(|(port, n)| {
            let key = (
                "198.18.10.1".to_owned(),
                port,
                "198.18.10.2".to_owned(),
                9999,
                17,
            );
            (key, (n, 78 * n))
        })
        .collect();
    assert_eq!(got, want);
    lab.close();
}

/// The flow of the test's datagrams: its client packets, if listed.
fn udp_flow_packets(ft: &LiveFlowtap) -> Option<u64> {
    let body = ft.get_json("/mcp/flows?ip=198.18.10.1&format=full");
    body["flows"]
        .as_array()?
        .iter()
        .find(|f| f["server"]["port"] == 9999)
        .and_then(|f| f["client_stats"]["tx_pkts"].as_u64())
}

/// The wall clock steps an hour ahead, then back (NTP, a VM resumed):
/// nothing expires for it, and flows stay exact. Expiry and rates run on
/// the clock the packets carry (monotonic), not the wall clock. The step is
/// libfaketime's, which moves only the wall clock.
#[test]
fn a_wall_clock_step_expires_nothing() {
    let (lab, cl, sv) = udp_lab("clock");
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let preload = "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(
        Path::new(&preload["LD_PRELOAD=".len()..]).exists(),
        "libfaketime (Debian faketime; scripts/setup.sh installs it)"
    );
    let file = format!("FAKETIME_TIMESTAMP_FILE={}", offset.display());
    let ft = LiveFlowtap::start_with(
        &sv,
        &[
            "env",
            preload,
            &file,
            "FAKETIME_NO_CACHE=1",
            "FAKETIME_DONT_FAKE_MONOTONIC=1",
            env!("CARGO_BIN_EXE_flowtap"),
        ],
        &["-i", "s0", "--udp-timeout", "60"],
    );
    send_datagrams(&lab, &cl, 5);
    wait::until_holds(Duration::from_secs(10), "the datagrams counted", || {
        udp_flow_packets(&ft) == Some(5)
    });
    for step in ["+3600", "-3600"] {
        std::fs::write(&offset, format!("{step}\n")).unwrap();
        // Several snapshots (0.2 s apart) on the stepped clock.
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            udp_flow_packets(&ft),
            Some(5),
            "the flow survives a wall clock stepped {step} s"
        );
    }
    send_datagrams(&lab, &cl, 3);
    wait::until_holds(
        Duration::from_secs(10),
        "the later datagrams counted",
        || udp_flow_packets(&ft) == Some(8),
    );
    let metrics = ft.admin_text("/metrics");
    assert_eq!(sample(&metrics, "flowtap_flows_expired_total"), 0.0);
    let (status, stderr) = ft.stop();
    assert_eq!(status, 0, "{stderr}");
    lab.close();
}

/// The capture interface disappears under flowtap: its socket reports an
/// error, readiness fails and flowtap exits non-zero, saying why, instead
/// of serving silence as if there were no traffic.
#[test]
fn a_broken_capture_socket_fails_loudly() {
    // In span mode the socket is on the interface; in host mode on the
    // capture veth, which outlives the watched interface.
    for (mode, gone) in [
        ("span", "capture failed: worker 0: the interface s0 is gone"),
        ("host", "the watched interface s0 is gone"),
    ] {
        let (lab, _cl, sv) = udp_lab("gone");
        let mut ft = LiveFlowtap::start(&sv, &["-i", "s0", "--mode", mode]);
        assert!(ft.admin_text("/readyz").contains("ready"));
        // s0 carries an address of its own (198.18.10.2): span mode warns
        // that it takes the host's traffic on it; host mode leaves it be.
        let warned = ft
            .stderr
            .lock()
            .unwrap()
            .contains("span mode on an interface with addresses of its own");
        assert_eq!(warned, mode == "span", "{mode}");
        if mode == "span" {
            // A second flowtap on the same port is told why it cannot.
            let err = refused_start(&sv, "s0");
            assert!(
                err.contains("s0 queue 0 already has an AF_XDP socket"),
                "{err}"
            );
        }
        sh(&format!("ip -n {sv} link del s0"));
        let (status, stderr) = wait::until(
            Duration::from_secs(15),
            "flowtap's exit without its interface",
            || ft.try_exit().ok_or_else(|| "still running".to_owned()),
        );
        assert_eq!(status, 1, "{mode}: {stderr}");
        assert!(stderr.contains(gone), "{mode}: {stderr}");
        lab.close();
    }
}

/// Starts flowtap on `iface` in `ns`, which must refuse to start: its
/// error output.
fn refused_start(ns: &str, iface: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_flowtap")])
        .args([
            "-i",
            iface,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

/// An interface that is down is refused, as tcpdump refuses it, naming the
/// fix: nothing would arrive, and answers would read as no traffic. A
/// macvlan device, an interface built on another, takes XDP in SKB mode, chosen
/// (said in the log) rather than fallen back to, and its frames are
/// counted. A bond or an Azure NIC with accelerated networking,
/// whose driver mode installs the program on the devices under it (where
/// the upper device's sockets cannot take their frames, dropped unseen), is
/// chosen for the same way, by its sysfs `lower_*` links; this kernel has
/// no bonding (nor VLAN) driver to show that.
#[test]
fn a_down_interface_is_refused_and_one_built_on_others_is_captured_in_skb_mode() {
    let (lab, cl, sv) = udp_lab("link");
    sh(&format!("ip -n {sv} link set s0 down"));
    let err = refused_start(&sv, "s0");
    assert!(
        err.contains("interface s0 is down") && err.contains("ip link set s0 up"),
        "{err}"
    );
    sh(&format!("ip -n {sv} link set s0 up"));

    // A macvlan device on the server's end, with an address of its own
    // (this kernel has no VLAN or bonding driver).
    sh(&format!(
        "ip -n {sv} link add link s0 name s0m type macvlan mode bridge"
    ));
    sh(&format!("ip -n {sv} addr add 198.18.11.2/24 dev s0m"));
    sh(&format!("ip -n {sv} link set s0m up"));
    sh(&format!("ip -n {cl} addr add 198.18.11.1/24 dev c0"));
    let mac = mac_of(&lab, &sv, "s0m");
    sh(&format!(
        "ip -n {cl} neigh add 198.18.11.2 lladdr {mac} dev c0 nud permanent"
    ));
    let ft = LiveFlowtap::start(&sv, &["-i", "s0m"]);
    let log = ft.stderr.lock().unwrap().clone();
    assert!(
        log.contains("an interface built on others") && log.contains("lower=s0"),
        "{log}"
    );
    assert!(log.contains("xdp_mode=\"skb\""), "{log}");
    assert!(!log.contains("driver mode unavailable"), "{log}");
    send_datagrams_between(&lab, &cl, ("198.18.11.1", 40000), "198.18.11.2", 20, 50);
    wait::until_holds(Duration::from_secs(10), "the macvlan's datagrams", || {
        let body = ft.get_json("/mcp/flows?ip=198.18.11.1&format=full");
        body["flows"][0]["client_stats"]["tx_pkts"] == 20
    });
    let (status, stderr) = ft.stop();
    assert_eq!(status, 0, "{stderr}");
    lab.close();
}

/// A capture worker that stops answering (stuck in a loop or a syscall:
/// planted here after 5 frames) holds up every snapshot, which waits for
/// each worker. After `--stall-timeout` without one, flowtap exits with
/// status 1 saying so, XDP detached, for its supervisor to restart it,
/// instead of serving its last snapshot as if the traffic had stopped. An
/// idle capture, whose snapshots come all the same, is not stuck; one
/// stopped while stuck does not wait for the stuck worker.
#[test]
fn a_stuck_capture_worker_fails_loudly() {
    let (lab, cl, sv) = udp_lab("stall");
    let stuck_after_5_frames = |stall_timeout: &str| {
        LiveFlowtap::start_with(
            &sv,
            &[
                "env",
                "FLOWTAP_FAULT=hang-after-frames:5",
                env!("CARGO_BIN_EXE_flowtap"),
            ],
            &["-i", "s0", "--stall-timeout", stall_timeout],
        )
    };
    let mut ft = stuck_after_5_frames("3");
    assert!(ft.admin_text("/readyz").contains("ready"));
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        ft.try_exit().is_none(),
        "idle for longer than the timeout: {}",
        ft.stderr.lock().unwrap()
    );
    send_datagrams(&lab, &cl, 20);
    let stuck = Instant::now();
    let (status, stderr) = wait::until(
        Duration::from_secs(30),
        "flowtap's exit with a stuck worker",
        || ft.try_exit().ok_or_else(|| "still running".to_owned()),
    );
    assert_eq!(status, 1, "{stderr}");
    assert!(
        stderr.contains("capture failed: no snapshot for")
            && stderr.contains("a capture worker no longer answers"),
        "{stderr}"
    );
    assert!(stuck.elapsed() < Duration::from_secs(20), "{stderr}");
    assert_no_xdp(&lab, &sv, "s0");

    // Stopped while stuck, without a timeout (0: never), it leaves all the
    // same rather than wait for ever for the stuck worker's last snapshot:
    // stopped soon into the hang (it hung for good), once shutting down
    // has waited its patience (10 s) for the last snapshot. Twice: at once
    // (the merger may be resting between two snapshots) and 3 s in (it
    // waits for the stuck worker).
    for into_the_hang in [Duration::from_millis(300), Duration::from_secs(3)] {
        let ft = stuck_after_5_frames("0");
        send_datagrams(&lab, &cl, 20);
        std::thread::sleep(into_the_hang);
        let stopping = Instant::now();
        ft.terminate();
        // While it waits for the last snapshot, /readyz says it is
        // stopping (a Service sends it no more clients).
        wait::until_holds(Duration::from_secs(5), "/readyz: stopping", || {
            ft.admin_answer("/readyz") == (503, r#"{"status":"stopping"}"#.to_owned())
        });
        let (status, stderr) = ft.wait_exit();
        assert!(stopping.elapsed() < Duration::from_secs(15), "{stderr}");
        assert_eq!(status, 1, "{into_the_hang:?} into the hang: {stderr}");
        assert!(
            stderr
                .contains("a capture worker no longer answers; leaving without the last snapshot"),
            "{stderr}"
        );
        assert_no_xdp(&lab, &sv, "s0");
    }
    lab.close();
}

/// Two namespaces as two nodes, each with a flowtap in host mode, and a hub
/// pulling both over a management network: a connection between the nodes
/// is captured on both, and the hub reports it once, its packets and bytes
/// exact against tcpdump on a node's interface, its client leg from the
/// client's node and its server leg from the server's node.
#[test]
fn a_hub_over_two_nodes_counts_each_connection_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new("hub");
    let (a, b, hub_ns) = (lab.ns("a"), lab.ns("b"), lab.ns("hub"));
    sh(&format!(
        "ip -n {a} link add d0 type veth peer name d0 netns {b}"
    ));
    sh(&format!("ip -n {a} addr add 198.18.20.1/24 dev d0"));
    sh(&format!("ip -n {b} addr add 198.18.20.2/24 dev d0"));
    // The management network the hub pulls over, apart from the data
    // interfaces the agents capture.
    sh(&format!(
        "ip -n {a} link add m0 type veth peer name ha0 netns {hub_ns}"
    ));
    sh(&format!(
        "ip -n {b} link add m0 type veth peer name hb0 netns {hub_ns}"
    ));
    sh(&format!("ip -n {a} addr add 198.18.21.1/24 dev m0"));
    sh(&format!("ip -n {hub_ns} addr add 198.18.21.2/24 dev ha0"));
    sh(&format!("ip -n {b} addr add 198.18.22.1/24 dev m0"));
    sh(&format!("ip -n {hub_ns} addr add 198.18.22.2/24 dev hb0"));
    for (ns, dev) in [(&a, "d0"), (&b, "d0")] {
        sysctl(&lab, ns, &format!("net.ipv6.conf.{dev}.disable_ipv6=1"));
        lab.no_offloads(ns, dev);
    }
    for (ns, dev) in [
        (&a, "d0"),
        (&b, "d0"),
        (&a, "m0"),
        (&b, "m0"),
        (&hub_ns, "ha0"),
        (&hub_ns, "hb0"),
    ] {
        sh(&format!("ip -n {ns} link set {dev} up"));
    }
    // The Kubernetes names: which node each endpoint is on.
    let inventory = dir.path().join("inventory.json");
    let pod = |name: &str, ip: &str, node: &str| {
        serde_json::json!({"kind": "Pod", "metadata": {"name": name, "namespace": "lab"},
            "spec": {"nodeName": node, "containers": []}, "status": {"phase": "Running", "podIP": ip}})
    };
    let node = |name: &str| serde_json::json!({"kind": "Node", "metadata": {"name": name}, "status": {"addresses": []}});
    std::fs::write(
        &inventory,
        serde_json::json!({"kind": "List", "items": [
            pod("client-0", "198.18.20.1", "node-a"), pod("server-0", "198.18.20.2", "node-b"),
            node("node-a"), node("node-b")
        ]})
        .to_string(),
    )
    .unwrap();

    let agent = |ns: &str, node: &str, listen: &str| {
        LiveFlowtap::start_on(
            ns,
            &[
                "-i",
                "d0",
                "--mode",
                "host",
                "--node-name",
                node,
                "--insecure-listen",
            ],
            listen,
        )
    };
    let on_a = agent(&a, "node-a", "198.18.21.1:8898");
    let on_b = agent(&b, "node-b", "198.18.22.1:8898");
    let hub = LiveFlowtap::start(
        &hub_ns,
        &[
            "hub",
            "--agent",
            "http://198.18.21.1:8898,http://198.18.22.1:8898",
            "--k8s-inventory",
            inventory.to_str().unwrap(),
        ],
    );
    let pcap = dir.path().join("a.pcap");
    let dump = tcpdump(&mut lab, &a, "d0", &pcap);
    lab.traffic_servers(&b, "198.18.20.2", "8080,5432", "5353");
    let summary = lab.traffic_client(
        &a,
        &[
            "--addrs",
            "198.18.20.2",
            "--tcp-ports",
            "8080,5432",
            "--udp-ports",
            "5353",
            "--connections",
            "100",
            "--datagrams",
            "30",
        ],
    );
    assert_eq!(
        (summary["tcp_ok"].as_u64(), summary["udp_ok"].as_u64()),
        (Some(100), Some(30)),
        "{summary}"
    );
    std::thread::sleep(Duration::from_millis(500));
    stop_tcpdump(dump);
    let file = file_flows(&pcap);
    assert_eq!(file.len(), 3, "{:?}", file.keys().collect::<Vec<_>>());

    // Both nodes saw every packet; the hub counts each once.
    let frames = frames_of(&file);
    on_a.wait_for_frames(frames);
    on_b.wait_for_frames(frames);
    hub.wait_for_frames(frames);
    let merged = hub.flows();
    compare(&merged, &file, 1);
    compare(&on_a.flows(), &file, 1);
    compare(&on_b.flows(), &file, 1);
    let full = hub.get_json("/mcp/flows?format=full&limit=1000");
    for f in full["flows"].as_array().unwrap() {
        assert_eq!(f["seen_by"], serde_json::json!(["node-a", "node-b"]), "{f}");
        assert_eq!(f["client"]["node"], "node-a");
        assert_eq!(f["server"]["node"], "node-b");
    }
    assert_eq!(
        full["coverage"]["agents_answered"], 2,
        "{}",
        full["coverage"]
    );

    // The client leg as the client's node measured it, the server leg as
    // the server's node did (within 50 µs: digests travel whole).
    let (at_a, at_b) = (on_a.flows(), on_b.flows());
    for (key, f) in &merged {
        if key.0 != "tcp" {
            continue;
        }
        let close = |hub: Option<[u64; 3]>, node: Option<[u64; 3]>, leg: &str| {
            let (h, n) = (hub.expect(leg), node.expect(leg));
            for i in 0..3 {
                assert!(
                    h[i].abs_diff(n[i]) <= 50,
                    "{key:?} {leg}: hub {h:?}, node {n:?}"
                );
            }
        };
        close(
            f.client_handshake,
            at_a[key].client_handshake,
            "client leg from node-a",
        );
        close(
            f.server_handshake,
            at_b[key].server_handshake,
            "server leg from node-b",
        );
        // On a single node one leg is not the round trip: the server's node
        // sees SYN -> SYN-ACK as its own turnaround.
        assert!(
            at_b[key].client_handshake.unwrap()[0] < at_a[key].client_handshake.unwrap()[0],
            "{key:?}: the server's node sees a shorter client leg"
        );
    }
    for ft in [hub, on_a, on_b] {
        let (status, stderr) = ft.stop();
        assert_eq!(status, 0, "{stderr}");
    }
    lab.close();
}

/// An interface without a link header (a tun device here; IP-in-IP and GRE
/// tunnels, WireGuard and PPP alike) gives XDP IP packets, not Ethernet
/// frames: they are read as IP (they were all counted not IP, and no flow
/// came of them), IPv4 and IPv6; host mode, whose mirror is an Ethernet
/// veth, is refused with what to do instead.
#[test]
fn a_tunnel_interface_s_packets_are_read_as_ip() {
    let mut lab = Lab::new("tun");
    let ns = lab.ns("tn");
    sh(&format!("ip -n {ns} tuntap add dev t0 mode tun"));
    sh(&format!("ip -n {ns} link set t0 up"));
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    // Attached to the device (which then has a carrier) until it has
    // written, once told to: 10 UDP datagrams over IPv4 and 10 over IPv6,
    // 50 bytes each.
    let writer = format!(
        r#"
import fcntl, os, struct, time
fd = os.open('/dev/net/tun', os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', b't0', 0x0001 | 0x1000))
print('attached', flush=True)
while not os.path.exists('{go}'):
    time.sleep(0.05)
def checksum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
payload = b'x' * 50
udp = struct.pack('!HHHH', 40000, 9999, 8 + len(payload), 0) + payload
for _ in range(10):
    head = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                       bytes([198, 19, 0, 1]), bytes([198, 19, 0, 2]))
    head = head[:10] + struct.pack('!H', checksum(head)) + head[12:]
    os.write(fd, head + udp)
    v6 = struct.pack('!IHBB16s16s', 6 << 28, len(udp), 17, 64,
                     bytes.fromhex('20010db8000000000000000000000001'),
                     bytes.fromhex('20010db8000000000000000000000002'))
    os.write(fd, v6 + udp)
time.sleep(5)
"#,
        go = go.display()
    );
    let python = lab.spawn(&ns, &["python3", "-c", &writer]);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(python.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "attached");
    let ft = LiveFlowtap::start(&ns, &["-i", "t0"]);
    File::create(&go).unwrap();
    ft.wait_for_frames(20);
    let flows = ft.flows();
    for (client, server) in [("198.19.0.1", "198.19.0.2"), ("2001:db8::1", "2001:db8::2")] {
        let key = (
            "udp".to_owned(),
            client.parse().unwrap(),
            server.parse().unwrap(),
            9999,
        );
        let flow = flows
            .get(&key)
            .unwrap_or_else(|| panic!("{key:?} not in {:?}", flows.keys()));
        let ip_header = if client.contains(':') { 40 } else { 20 };
        assert_eq!(
            (flow.client_tx_pkts, flow.client_tx_bytes),
            (10, 10 * (ip_header + 8 + 50)),
            "{key:?}: the IP packets' own bytes, no link header"
        );
    }
    let metrics = ft.admin_text("/metrics");
    assert_eq!(
        sample(&metrics, "flowtap_frames_by_kind_total{kind=\"non_ip\"}"),
        0.0
    );
    ft.stop();
    let host = Command::new("ip")
        .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_flowtap")])
        .args(["-i", "t0", "--mode", "host"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&host.stderr);
    assert!(!host.status.success(), "{stderr}");
    assert!(
        stderr.contains("host mode on t0 needs an Ethernet interface")
            && stderr.contains("--mode span"),
        "{stderr}"
    );
    lab.close();
}

/// `-i default-route` captures on the interface of the host's default
/// route (one DaemonSet for node pools whose uplinks are named eth0, ens5
/// or ens4), and a host without one is refused, saying so.
#[test]
fn the_default_route_s_interface_is_captured() {
    let (lab, cl, sv) = udp_lab("defroute");
    let no_route = Command::new("ip")
        .args(["netns", "exec", &sv, env!("CARGO_BIN_EXE_flowtap")])
        .args(["-i", "default-route"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&no_route.stderr).into_owned();
    assert!(!no_route.status.success(), "{said}");
    assert!(said.contains("has no default route"), "{said}");
    sh(&format!(
        "ip -n {sv} route add default via 198.18.10.1 dev s0"
    ));
    let ft = LiveFlowtap::start(&sv, &["-i", "default-route"]);
    send_datagrams(&lab, &cl, 5);
    wait::until_holds(Duration::from_secs(10), "the datagrams counted", || {
        udp_flow_packets(&ft) == Some(5)
    });
    let (status, stderr) = ft.stop();
    assert_eq!(status, 0, "{stderr}");
    assert!(
        stderr.contains("the interface of the host's default route"),
        "{stderr}"
    );
    lab.close();
}
