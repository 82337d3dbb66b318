//! Live capture where a mirror port differs from a veth: a SPAN session
//! delivered inside VXLAN (as AWS VPC Traffic Mirroring and Azure vTAP
//! deliver it), a passive TAP's two ports (one direction each), and
//! promiscuous mode held only while flowtap runs. Root only, in namespaces
//! the tests make and remove (as in `live.rs`).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::metrics::sample;
use common::netns::{Lab, LiveFlowtap, run, sh};
use common::{FlowSummary, Key, TcpCounts};

fn total_frames(flows: &BTreeMap<Key, FlowSummary>) -> u64 {
    flows
        .values()
        .map(|f| f.client_tx_pkts + f.server_tx_pkts)
        .sum()
}

/// What two captures of the same frames must count alike for a flow.
fn counts(f: &FlowSummary) -> (u64, u64, u64, u64, u64, Option<TcpCounts>) {
    (
        f.client_tx_pkts,
        f.client_tx_bytes,
        f.server_tx_pkts,
        f.server_tx_bytes,
        f.connections,
        f.tcp,
    )
}

/// A client namespace and a server namespace joined by a veth (c0, s0),
/// 198.18.`subnet`.1 and .2; the links are left down.
fn client_and_server(lab: &mut Lab, subnet: u8) -> (String, String) {
    let (cl, sv) = (lab.ns("cl"), lab.ns("sv"));
    sh(&format!(
        "ip -n {cl} link add c0 type veth peer name s0 netns {sv}"
    ));
    sh(&format!("ip -n {cl} addr add 198.18.{subnet}.1/24 dev c0"));
    sh(&format!("ip -n {sv} addr add 198.18.{subnet}.2/24 dev s0"));
    (cl, sv)
}

/// A mirror port: a veth from `from` (where a SPAN session sends copies out
/// of `near`) to `to` (where flowtap reads `far`), both ends up, IPv6 off on
/// the port's end (its own router solicitations would be traffic).
fn mirror_port(lab: &Lab, from: &str, (near, far): (&str, &str), to: &str) {
    sh(&format!(
        "ip -n {from} link add {near} type veth peer name {far} netns {to}"
    ));
    sh(&format!("ip -n {from} link set {near} up"));
    sh(&format!("ip -n {to} link set {far} up"));
    lab.exec(
        to,
        &[
            "sysctl",
            "-q",
            &format!("net.ipv6.conf.{far}.disable_ipv6=1"),
        ],
    );
}

/// Serves TCP on 8080 and 5432 and UDP on 5353 at `addr` in `sv`, runs 120
/// connections and 40 datagrams from `cl`, and returns `reference`'s flows
/// once two of its snapshots agree (bounded: 20 s).
fn traffic_and_settled_flows(
    lab: &mut Lab,
    (cl, sv): (&str, &str),
    addr: &str,
    reference: &LiveFlowtap,
) -> BTreeMap<Key, FlowSummary> {
    lab.traffic_servers(sv, addr, "8080,5432", "5353");
    let summary = lab.traffic_client(
        cl,
        &[
            "--addrs",
            addr,
            "--tcp-ports",
            "8080,5432",
            "--udp-ports",
            "5353",
            "--connections",
            "120",
            "--datagrams",
            "40",
        ],
    );
    assert_eq!(
        (summary["tcp_ok"].as_u64(), summary["udp_ok"].as_u64()),
        (Some(120), Some(40)),
        "{summary}"
    );
    (0..30)
        .find_map(|_| {
            let a = reference.flows();
            std::thread::sleep(Duration::from_millis(700));
            (!a.is_empty() && reference.flows() == a).then_some(a)
        })
        .expect("the reference port's flows settle")
}

/// The interface's promiscuity count as `ip -d link show` reports it.
fn promiscuity(ns: &str, dev: &str) -> u64 {
    let out = run(&["ip", "-n", ns, "-d", "link", "show", "dev", dev]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|w| *w != "promiscuity")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no promiscuity in: {text}"))
}

#[test]
fn a_span_session_in_vxlan_gives_the_flows_of_the_plain_mirror() {
    let mut lab = Lab::new("vxm");
    let (cl, sv) = client_and_server(&mut lab, 8);
    let (plain, tunnel) = (lab.ns("plain"), lab.ns("vxlan"));
    // The plain mirror port, and an underlay to the VXLAN collector.
    sh(&format!(
        "ip -n {sv} link add m0 type veth peer name m1 netns {plain}"
    ));
    sh(&format!(
        "ip -n {sv} link add u0 mtu 1600 type veth peer name u1 mtu 1600 netns {tunnel}"
    ));
    sh(&format!("ip -n {sv} addr add 198.18.9.1/24 dev u0"));
    sh(&format!("ip -n {tunnel} addr add 198.18.9.2/24 dev u1"));
    for (ns, dev) in [
        (&cl, "c0"),
        (&sv, "s0"),
        (&sv, "m0"),
        (&plain, "m1"),
        (&sv, "u0"),
        (&tunnel, "u1"),
    ] {
        sh(&format!("ip -n {ns} link set {dev} up"));
    }
    for (ns, dev) in [(&cl, "c0"), (&sv, "s0")] {
        // One frame per packet, as a switch port carries them.
        lab.no_offloads(ns, dev);
    }
    for (ns, dev) in [(&sv, "m0"), (&plain, "m1"), (&sv, "u0"), (&tunnel, "u1")] {
        lab.exec(
            ns,
            &[
                "sysctl",
                "-q",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
            ],
        );
    }
    // The collector consumes every frame, ARP included: a static neighbour.
    let mac =
        String::from_utf8(run(&["ip", "-n", &tunnel, "-br", "link", "show", "dev", "u1"]).stdout)
            .unwrap();
    let mac = mac.split_whitespace().nth(2).expect("u1's MAC").to_owned();
    sh(&format!(
        "ip -n {sv} neigh add 198.18.9.2 lladdr {mac} dev u0 nud permanent"
    ));
    sh(&format!(
        "ip -n {sv} link add vx0 type vxlan id 42 local 198.18.9.1 remote 198.18.9.2 dstport 4789 dev u0"
    ));
    sh(&format!("ip -n {sv} link set vx0 up"));
    // One SPAN session, two destinations: plainly, and in VXLAN.
    sh(&format!("tc -n {sv} qdisc add dev s0 clsact"));
    for dir in ["ingress", "egress"] {
        sh(&format!(
            "tc -n {sv} filter add dev s0 {dir} protocol all u32 match u32 0 0 \
             action mirred egress mirror dev m0 action mirred egress mirror dev vx0"
        ));
    }
    let plain_ft = LiveFlowtap::start(&plain, &["-i", "m1"]);
    let vxlan_ft = LiveFlowtap::start(&tunnel, &["-i", "u1"]);
    // The plain mirror's flows.
    let expected = traffic_and_settled_flows(&mut lab, (&cl, &sv), "198.18.8.2", &plain_ft);
    vxlan_ft.wait_for_frames(total_frames(&expected));
    let got = vxlan_ft.flows();
    assert_eq!(
        expected.len(),
        3,
        "{:?}",
        expected.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the conversations inside, not the VXLAN datagrams"
    );
    for (key, want) in &expected {
        let have = &got[key];
        assert_eq!(
            counts(have),
            counts(want),
            "{key:?}: counted as the mirrored frames"
        );
        assert_eq!(want.mirror, None);
        let mirror = have.mirror.as_ref().expect("seen through the session");
        assert_eq!(
            (mirror["encap"].as_str(), mirror["vni"].as_u64()),
            (Some("vxlan"), Some(42))
        );
    }
    let metrics = vxlan_ft.admin_text("/metrics");
    let frames = sample(
        &metrics,
        "flowtap_encapsulated_frames_total{encap=\"vxlan\"}",
    );
    assert!(frames >= total_frames(&expected) as f64, "{frames}");
    assert_eq!(
        sample(
            &metrics,
            "flowtap_mirror_session_frames_total{encap=\"vxlan\",id=\"42\"}"
        ),
        frames
    );
    assert_eq!(sample(&metrics, "flowtap_interface_promiscuous"), 1.0);
    let (status, stderr) = vxlan_ft.stop();
    assert_eq!(status, 0, "{stderr}");
    assert!(
        stderr.contains("flowtap: mirror session vxlan 42: frames "),
        "{stderr}"
    );
    plain_ft.stop();
    lab.close();
}

#[test]
fn the_span_port_is_promiscuous_only_while_flowtap_runs() {
    let mut lab = Lab::new("prm");
    let tap = lab.ns("tap");
    sh(&format!("ip -n {tap} link add m1 type veth peer name m2"));
    sh(&format!("ip -n {tap} link set m1 up"));
    sh(&format!("ip -n {tap} link set m2 up"));
    assert_eq!(promiscuity(&tap, "m1"), 0);

    let ft = LiveFlowtap::start(&tap, &["-i", "m1"]);
    assert_eq!(promiscuity(&tap, "m1"), 1, "span mode: promiscuous");
    assert!(ft.stderr.lock().unwrap().contains("promiscuous=true"));
    let (status, stderr) = ft.stop();
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(promiscuity(&tap, "m1"), 0, "dropped on exit");

    // Killed: the kernel drops the membership with the socket.
    let ft = LiveFlowtap::start(&tap, &["-i", "m1"]);
    assert_eq!(promiscuity(&tap, "m1"), 1);
    ft.kill();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(promiscuity(&tap, "m1"), 0, "dropped on SIGKILL");

    // An administrator's own setting is left as it is.
    sh(&format!("ip -n {tap} link set m1 promisc on"));
    let ft = LiveFlowtap::start(&tap, &["-i", "m1"]);
    assert_eq!(promiscuity(&tap, "m1"), 2);
    ft.kill();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(promiscuity(&tap, "m1"), 1);
    sh(&format!("ip -n {tap} link set m1 promisc off"));

    let ft = LiveFlowtap::start(&tap, &["-i", "m1", "--no-promiscuous"]);
    assert_eq!(promiscuity(&tap, "m1"), 0, "--no-promiscuous");
    assert_eq!(
        sample(&ft.admin_text("/metrics"), "flowtap_interface_promiscuous"),
        0.0
    );
    ft.stop();
    lab.close();
}

/// A SPAN of both ends of a routed path on two ports: a router's port
/// towards the client mirrored (both directions) to one SPAN port, its port
/// towards the server to another, so every packet comes in twice (before
/// and after it is routed: TTL one less), on two ports read by two workers,
/// some microseconds apart. With `--dedup` the flows, connections and TCP
/// health are those of one port mirroring one side; without it every
/// packet counts twice, but its copy is still found: no retransmission,
/// every handshake established. (A copy was kept where a worker read it
/// first and handed to the connection's worker after later packets it read
/// itself: 20-52% of connections taken as joined mid-stream, 5-7% of
/// segments as retransmissions; without `--dedup`, copies on two ports were
/// not found.) A router, not a veth pair's two ends: what a host sends
/// leaves it segmented, where a mirror of its own egress takes the stack's
/// unsegmented packets.
#[test]
fn a_span_of_both_ends_on_two_ports_gives_the_flows_of_one() {
    let mut lab = Lab::new("span2");
    let (cl, rt, sv) = (lab.ns("cl"), lab.ns("rt"), lab.ns("sv"));
    sh(&format!(
        "ip -n {cl} link add c0 type veth peer name r0 netns {rt}"
    ));
    sh(&format!(
        "ip -n {sv} link add s0 type veth peer name r1 netns {rt}"
    ));
    for (ns, dev, addr) in [
        (&cl, "c0", "198.18.11.1/24"),
        (&rt, "r0", "198.18.11.254/24"),
        (&rt, "r1", "198.18.12.254/24"),
        (&sv, "s0", "198.18.12.2/24"),
    ] {
        sh(&format!("ip -n {ns} addr add {addr} dev {dev}"));
    }
    lab.exec(&rt, &["sysctl", "-q", "net.ipv4.ip_forward=1"]);
    // One side's SPAN port (the reference), both sides on two ports with
    // --dedup, and the same again without it: each in a namespace of its
    // own, read by its own flowtap.
    let (one, two, plain) = (lab.ns("one"), lab.ns("two"), lab.ns("plain"));
    for (port, ns) in [
        (("m0", "m1"), &one),
        (("a0", "a1"), &two),
        (("b0", "b1"), &two),
        (("x0", "x1"), &plain),
        (("y0", "y1"), &plain),
    ] {
        mirror_port(&lab, &rt, port, ns);
    }
    for (ns, dev) in [(&cl, "c0"), (&rt, "r0"), (&rt, "r1"), (&sv, "s0")] {
        sh(&format!("ip -n {ns} link set {dev} up"));
        lab.no_offloads(ns, dev);
    }
    sh(&format!("ip -n {cl} route add default via 198.18.11.254"));
    sh(&format!("ip -n {sv} route add default via 198.18.12.254"));
    for (dev, ports) in [("r0", "a0 x0"), ("r1", "m0 b0 y0")] {
        sh(&format!("tc -n {rt} qdisc add dev {dev} clsact"));
        let mirrors: String = ports
            .split(' ')
            .map(|port| format!(" action mirred egress mirror dev {port}"))
            .collect();
        for dir in ["ingress", "egress"] {
            sh(&format!(
                "tc -n {rt} filter add dev {dev} {dir} protocol all u32 match u32 0 0{mirrors}"
            ));
        }
    }
    // Copies are stamped where each port's receive runs, which a loaded
    // host can put a millisecond apart.
    let window = ["--dedup-window-us", "2000"];
    let one_ft = LiveFlowtap::start(&one, &["-i", "m1"]);
    let two_ft = LiveFlowtap::start(
        &two,
        &[&["-i", "a1", "-i", "b1", "--dedup"], &window[..]].concat(),
    );
    let plain_ft = LiveFlowtap::start(&plain, &[&["-i", "x1", "-i", "y1"], &window[..]].concat());
    let expected = traffic_and_settled_flows(&mut lab, (&cl, &sv), "198.18.12.2", &one_ft);
    assert_eq!(
        expected.len(),
        3,
        "{:?}",
        expected.keys().collect::<Vec<_>>()
    );
    let frames = total_frames(&expected);
    two_ft.wait_for_frames(frames);
    plain_ft.wait_for_frames(2 * frames);
    let (deduped, doubled) = (two_ft.flows(), plain_ft.flows());
    assert_eq!(
        deduped.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        doubled.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, want) in &expected {
        let have = &deduped[key];
        assert_eq!(counts(have), counts(want), "{key:?} with --dedup");
        assert_eq!(
            (
                have.client_handshake.is_some(),
                have.server_handshake.is_some()
            ),
            (
                want.client_handshake.is_some(),
                want.server_handshake.is_some()
            ),
            "{key:?}: the handshake's legs"
        );
        let twice = &doubled[key];
        assert_eq!(
            (
                twice.client_tx_pkts,
                twice.server_tx_pkts,
                twice.client_tx_bytes
            ),
            (
                2 * want.client_tx_pkts,
                2 * want.server_tx_pkts,
                2 * want.client_tx_bytes
            ),
            "{key:?} without --dedup: every packet twice"
        );
        assert_eq!(
            (twice.connections, twice.tcp),
            (want.connections, want.tcp),
            "{key:?} without --dedup: the copies are not retransmissions"
        );
    }
    let tcp = expected
        .values()
        .filter_map(|f| f.tcp)
        .map(|t| t.connections[0])
        .sum::<u64>();
    assert_eq!(tcp, 120, "every connection established on one port");
    // Every flow packet's second copy found, by the worker counting its
    // connection (frames that are no flow's, ARP here, go to no connection's
    // worker: their copies on two ports are not looked for).
    for (ft, dropped) in [(&two_ft, frames as f64), (&plain_ft, 0.0)] {
        let metrics = ft.admin_text("/metrics");
        assert_eq!(
            sample(&metrics, "flowtap_duplicate_frames_total"),
            frames as f64
        );
        assert_eq!(
            sample(&metrics, "flowtap_duplicate_frames_dropped_total"),
            dropped
        );
    }
    for ft in [one_ft, two_ft, plain_ft] {
        let (status, stderr) = ft.stop();
        assert_eq!(status, 0, "{stderr}");
    }
    lab.close();
}

/// A passive TAP copies each direction of a link to a port of its own:
/// `-i a -i b` captures both as one stream. Its flows, handshakes and TCP
/// health are those a SPAN port of both directions gives, where either
/// port alone sees half of every conversation.
#[test]
fn a_passive_tap_s_two_ports_give_the_flows_of_a_span_port() {
    let mut lab = Lab::new("ptap");
    let (cl, sv) = client_and_server(&mut lab, 10);
    let (span, tap) = (lab.ns("span"), lab.ns("tap"));
    // The SPAN port (both directions), and the TAP's two ports.
    for (near, far) in [("m0", "m1"), ("a0", "a1"), ("b0", "b1")] {
        let ns = if near == "m0" { &span } else { &tap };
        mirror_port(&lab, &sv, (near, far), ns);
    }
    for (ns, dev) in [(&cl, "c0"), (&sv, "s0")] {
        sh(&format!("ip -n {ns} link set {dev} up"));
        lab.no_offloads(ns, dev);
    }
    // What arrives at the server (client to server) to the TAP's port a,
    // what it sends (server to client) to port b; both to the SPAN port.
    sh(&format!("tc -n {sv} qdisc add dev s0 clsact"));
    for (dir, port) in [("ingress", "a0"), ("egress", "b0")] {
        sh(&format!(
            "tc -n {sv} filter add dev s0 {dir} protocol all u32 match u32 0 0 \
             action mirred egress mirror dev m0 action mirred egress mirror dev {port}"
        ));
    }
    let span_ft = LiveFlowtap::start(&span, &["-i", "m1"]);
    let tap_ft = LiveFlowtap::start(&tap, &["-i", "a1", "-i", "b1"]);
    // The SPAN port's flows.
    let expected = traffic_and_settled_flows(&mut lab, (&cl, &sv), "198.18.10.2", &span_ft);
    assert_eq!(
        expected.len(),
        3,
        "{:?}",
        expected.keys().collect::<Vec<_>>()
    );
    tap_ft.wait_for_frames(total_frames(&expected));
    let got = tap_ft.flows();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, want) in &expected {
        let have = &got[key];
        assert_eq!(counts(have), counts(want), "{key:?}");
        assert_eq!(
            have.client_handshake.is_some(),
            want.client_handshake.is_some(),
            "{key:?}: the handshake's legs, the SYN on one port and the SYN-ACK on the other"
        );
        assert_eq!(
            have.server_handshake.is_some(),
            want.server_handshake.is_some(),
            "{key:?}"
        );
        // The same SYN and SYN-ACK, stamped as they reach each port: a
        // leg timed across the TAP's ports is the SPAN port's, within the
        // jitter of three veths' receive paths.
        if let (Some(tap), Some(span)) = (have.client_handshake, want.client_handshake) {
            assert!(
                tap.iter().zip(span).all(|(t, s)| t.abs_diff(s) <= 1000),
                "{key:?}: client leg {tap:?} µs across the TAP's ports, {span:?} on the SPAN port"
            );
        }
    }
    assert!(
        got.values().any(|f| f.client_handshake.is_some()),
        "TCP handshakes are measured"
    );
    // Each port's queue is counted under its interface.
    let metrics = tap_ft.admin_text("/metrics");
    let port = |iface: &str| {
        sample(
            &metrics,
            &format!("flowtap_xdp_frames_total{{interface=\"{iface}\",queue=\"0\"}}"),
        )
    };
    let (a, b) = (port("a1"), port("b1"));
    assert!(a > 0.0 && b > 0.0, "a1 {a}, b1 {b}");
    assert!(a + b >= total_frames(&expected) as f64);
    assert_eq!(sample(&metrics, "flowtap_interface_promiscuous"), 1.0);
    let (status, stderr) = tap_ft.stop();
    assert_eq!(status, 0, "{stderr}");
    assert!(stderr.contains("flowtap: detached from a1, b1"), "{stderr}");
    assert!(stderr.contains("flowtap: queue a1 0: frames "), "{stderr}");
    span_ft.stop();

    // The same interface twice is refused before anything is attached; an
    // interface that cannot be captured (down) after one that was undoes
    // the first: host mode's mirror veth is removed.
    let refused = |ns: &str, args: &[&str]| {
        let out = std::process::Command::new("timeout")
            .args([
                "20",
                "ip",
                "netns",
                "exec",
                ns,
                env!("CARGO_BIN_EXE_flowtap"),
            ])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        stderr
    };
    let stderr = refused(&tap, &["-i", "a1,a1"]);
    assert!(stderr.contains("-i a1 is given twice"), "{stderr}");
    sh(&format!("ip -n {sv} link add d0 type veth peer name d1"));
    let stderr = refused(&sv, &["--mode", "host", "-i", "s0", "-i", "d0"]);
    assert!(stderr.contains("d0"), "{stderr}");
    let links =
        String::from_utf8_lossy(&run(&["ip", "-n", &sv, "-br", "link"]).stdout).into_owned();
    assert!(
        !links.contains("ftm") && !links.contains("ftc"),
        "s0's mirror veth removed: {links}"
    );
    lab.close();
}
