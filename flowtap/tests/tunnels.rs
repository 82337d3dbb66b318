//! Every capture of `../shared/corpus/tunnels/` (VXLAN, GENEVE, GRE,
//! ERSPAN, GTP-U, 6in4, Cisco HDLC, VN-Tag, E-Tag) read with `flowtap -r`
//! and compared flow by flow with its tshark truth.
//!
//! The truth keys the innermost conversation, as flowtap does, but counts
//! the outer frame's bytes. flowtap's counting rule (README, "What is
//! counted") counts a frame that arrived inside a mirror encapsulation
//! (VXLAN, GENEVE or GRE carrying Ethernet, ERSPAN) as the mirrored frame:
//! its own length, and a later fragment of a fragmented carrier adds its
//! bytes to the frame its first fragment began. The test derives that from
//! the capture itself, with tshark: where the innermost Ethernet header sits
//! in each frame (PDML, reassembly off) and which first fragment each later
//! fragment belongs to.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use common::truth::{self, Direction, Intended, Less};
use common::{corpus_dir, run_flowtap};

/// Differences from the tshark truth that flowtap makes on purpose.
const INTENDED: &[Intended] = &[Intended {
    capture: "t09_zeek_gtpu",
    flow: ("tcp", "10.131.47.185", "79.101.110.141", 80),
    from_client: false,
    extra_pkts: 4,
    extra_bytes: 4 * 1514,
    reason: "four GTP-U datagrams from the server are first fragments whose second \
             fragment is not in the capture (frames 30, 50, 52 and 93 have no later \
             fragment); tshark never reassembles them, so its truth leaves them out; \
             flowtap counts them: they were on the wire and carry the inner TCP header",
}];

fn tunnels_dir() -> std::path::PathBuf {
    corpus_dir().join("tunnels")
}

/// What tshark says about one frame, with reassembly off.
#[derive(Debug, Default)]
struct FrameFacts {
    len: u64,
    /// Protocol layers with their offsets, outermost first.
    protos: Vec<(String, u64)>,
    /// Every occurrence of the fields read, outermost first.
    fields: BTreeMap<String, Vec<String>>,
}

impl FrameFacts {
    fn field(&self, name: &str, occurrence: usize) -> Option<&str> {
        self.fields.get(name)?.get(occurrence).map(String::as_str)
    }

    fn last(&self, name: &str) -> Option<&str> {
        self.fields.get(name)?.last().map(String::as_str)
    }

    /// Where the frame a mirror encapsulation carried starts: the innermost
    /// Ethernet header that follows VXLAN, GENEVE, GRE or ERSPAN.
    fn mirrored_at(&self) -> Option<u64> {
        self.protos
            .windows(2)
            .rfind(|w| {
                w[1].0 == "eth" && ["vxlan", "geneve", "gre", "erspan"].contains(&w[0].0.as_str())
            })
            .map(|w| w[1].1)
    }

    /// The innermost transport conversation direction, if any.
    fn direction(&self) -> Option<Direction> {
        // The transport layer after the innermost IP header (not the UDP a
        // VXLAN or GENEVE header rides on).
        let inner_ip = self
            .protos
            .iter()
            .rposition(|(p, _)| p == "ip" || p == "ipv6")?;
        let inner_eth = self.protos.iter().rposition(|(p, _)| p == "eth");
        if inner_eth.is_some_and(|eth| eth > inner_ip) {
            return None; // ARP, LLC, ... inside a mirror session
        }
        let proto = self.protos[inner_ip..]
            .iter()
            .map(|(p, _)| p.as_str())
            .find(|p| *p == "tcp" || *p == "udp")?;
        let ip = |v4: &str, v6: &str| -> Option<IpAddr> {
            // The innermost address of either version: the later layer.
            let last_v4 = self.protos.iter().rposition(|(p, _)| p == "ip");
            let last_v6 = self.protos.iter().rposition(|(p, _)| p == "ipv6");
            match (last_v4, last_v6) {
                (Some(a), Some(b)) if b > a => self.last(v6)?.parse().ok(),
                (_, Some(_)) if last_v4.is_none() => self.last(v6)?.parse().ok(),
                _ => self.last(v4)?.parse().ok(),
            }
        };
        let port = |name: &str| self.last(&format!("{proto}.{name}"))?.parse().ok();
        Some((
            proto.to_owned(),
            ip("ip.src", "ipv6.src")?,
            port("srcport")?,
            ip("ip.dst", "ipv6.dst")?,
            port("dstport")?,
        ))
    }

    /// The outermost IPv4 header's fragment identity and offset.
    fn outer_fragment(&self) -> Option<((String, String, String), u64)> {
        let key = (
            self.field("ip.src", 0)?.to_owned(),
            self.field("ip.dst", 0)?.to_owned(),
            self.field("ip.id", 0)?.to_owned(),
        );
        Some((key, self.field("ip.frag_offset", 0)?.parse().ok()?))
    }
}

/// The value of attribute `name` in a PDML line.
fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = line[start..].find('"')? + start;
    Some(&line[start..end])
}

fn tshark_frames(capture: &Path) -> Vec<FrameFacts> {
    const FIELDS: &[&str] = &[
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
        "ip.id",
        "ip.frag_offset",
        "ip.len",
        "ip.hdr_len",
        "tcp.srcport",
        "tcp.dstport",
        "udp.srcport",
        "udp.dstport",
    ];
    let output = Command::new("tshark")
        .args(["-o", "ip.defragment:FALSE", "-T", "pdml", "-r"])
        .arg(capture)
        .output()
        .unwrap_or_else(|e| panic!("tshark (scripts/setup.sh installs it): {e}"));
    assert!(output.status.success(), "tshark on {}", capture.display());
    let mut frames = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let line = line.trim_start();
        if line.starts_with("<packet>") {
            frames.push(FrameFacts::default());
        }
        let Some(frame) = frames.last_mut() else {
            continue;
        };
        if line.starts_with("<proto ") {
            if let (Some(name), Some(pos)) = (attr(line, "name"), attr(line, "pos")) {
                frame.protos.push((name.to_owned(), pos.parse().unwrap()));
            }
        } else if line.starts_with("<field ") {
            let (Some(name), Some(show)) = (attr(line, "name"), attr(line, "show")) else {
                continue;
            };
            if name == "frame.len" {
                frame.len = show.parse().unwrap();
            } else if FIELDS.contains(&name) {
                frame
                    .fields
                    .entry(name.to_owned())
                    .or_default()
                    .push(show.to_owned());
            }
        }
    }
    frames.retain(|f| f.len > 0);
    frames
}

/// How much of each direction the truth counts beyond flowtap's rule: the
/// outer headers of mirrored frames, and the later fragments of mirrored
/// frames (which add bytes, not packets).
fn mirror_overhead(capture: &Path) -> (BTreeMap<Direction, Less>, u64) {
    let frames = tshark_frames(capture);
    let mut firsts: BTreeMap<(String, String, String), (Direction, bool)> = BTreeMap::new();
    let mut less: BTreeMap<Direction, Less> = BTreeMap::new();
    let mut mirrored = 0;
    for f in &frames {
        let fragment = f.outer_fragment();
        if let Some((id, offset)) = &fragment
            && *offset > 0
        {
            // A later fragment: counted like its first fragment's frame.
            if let Some((direction, true)) = firsts.get(id) {
                let ip_payload = f.field("ip.len", 0).unwrap().parse::<u64>().unwrap()
                    - f.field("ip.hdr_len", 0).unwrap().parse::<u64>().unwrap();
                let l = less.entry(direction.clone()).or_default();
                l.pkts += 1;
                l.bytes += f.len - ip_payload;
                mirrored += 1;
            }
            continue;
        }
        let Some(direction) = f.direction() else {
            continue;
        };
        let at = f.mirrored_at();
        if let Some((id, 0)) = fragment {
            firsts.insert(id, (direction.clone(), at.is_some()));
        }
        if let Some(at) = at {
            less.entry(direction).or_default().bytes += at;
            mirrored += 1;
        }
    }
    (less, mirrored)
}

fn check_capture(capture: &str, threads: usize) {
    let dir = tunnels_dir();
    let path = dir.join("captures").join(format!("{capture}.pcap"));
    let (less, mirrored) = mirror_overhead(&path);
    let (run, mut errors) = truth::check_run(&dir, capture, threads, &less, INTENDED);
    // A flow seen through a mirror session says which.
    for flow in &run.flows {
        let through_mirror = less.keys().any(|(proto, a, _, b, _)| {
            *proto == flow.key.0 && [a, b].contains(&&flow.key.1) && [a, b].contains(&&flow.key.2)
        });
        if through_mirror != flow.mirror.is_some() {
            errors.push(format!("{:?}: mirror {:?}", flow.key, flow.mirror));
        }
    }
    eprintln!("{capture}: {mirrored} frames counted as the frame they mirror");
    truth::assert_none(capture, threads, &errors);
}

capture_truth_tests! {
    tunnels_dir(), check_capture, every_tunnel_capture_is_checked;
    vxlan_icmp_only => "t01_zeek_vxlan",
    geneve_with_options => "t02_tcpdump_geneve",
    gre_carrying_ip => "t03_zeek_gre_sample",
    erspan_type_iii_dot1q => "t04_zeek_erspan3_dot1q",
    erspan_type_ii => "t05_suri_erspan2",
    cisco_hdlc => "t06_suri_cisco_hdlc",
    vn_tag => "t07_suri_vntag",
    e_tag => "t08_suri_etag",
    gtpu_fragmented_outer => "t09_zeek_gtpu",
    ipv6_in_ipv4 => "t10_zeek_6in4",
    gre_ethernet_fragmented => "t11_zeek_erspan1_tcp",
    vxlan_ipv6_gso => "t12_tcpdump_gso_vxlan_ipv6",
}

/// The encapsulation counters add up: every frame of the VXLAN and ERSPAN
/// captures is counted under its encapsulation, and its session.
#[test]
fn encapsulations_and_sessions_are_counted() {
    let dir = tunnels_dir().join("captures");
    for (capture, encap, frames) in [
        ("t01_zeek_vxlan", "vxlan", 10),
        ("t04_zeek_erspan3_dot1q", "erspan_iii", 2),
        ("t05_suri_erspan2", "erspan_ii", 6),
        ("t09_zeek_gtpu", "gtpu", 108),
    ] {
        let run = run_flowtap(&[&dir.join(format!("{capture}.pcap"))], 1, &[]);
        let counts = common::report_counts(&run.stderr, "flowtap: encapsulated frames: ");
        assert_eq!(counts.get(encap), Some(&frames), "{capture}: {counts:?}");
        assert_eq!(
            counts.values().sum::<u64>(),
            frames,
            "{capture}: {counts:?}"
        );
    }
}
