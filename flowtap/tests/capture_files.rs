//! Capture-file handling: every format and link type, several files in one
//! run, damaged files, and timestamps that run backwards.

mod common;

use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use capgen::frame::{self, Segment, tcp_flags};
use capgen::pcap::{Format, PcapWriter};
use capgen::{Generator, Spec};
use common::{Run, corpus_dir, run_flowtap};

fn corpus_capture(name: &str) -> PathBuf {
    corpus_dir().join("captures").join(format!("{name}.pcap"))
}

fn write_workload(dir: &Path, name: &str, format: Format) -> PathBuf {
    let path = dir.join(name);
    let spec = Spec {
        packets: 50_000,
        concurrent: 500,
        seed: 9,
        format,
        ..Spec::default()
    };
    Generator::new(spec)
        .write(File::create(&path).unwrap())
        .unwrap();
    path
}

/// A flow's key with its packets, bytes and connections.
type FlowCounts = ((String, IpAddr, IpAddr, u16), [u64; 5]);

fn counts(run: &Run) -> Vec<FlowCounts> {
    run.flows
        .iter()
        .map(|f| {
            let n = [
                f.client_tx_pkts,
                f.client_tx_bytes,
                f.server_tx_pkts,
                f.server_tx_bytes,
                f.connections,
            ];
            (f.key.clone(), n)
        })
        .collect()
}

#[test]
fn every_format_gives_the_same_flows() {
    let dir = tempfile::tempdir().unwrap();
    let reference = run_flowtap(
        &[&write_workload(dir.path(), "ns-le.pcap", Format::default())],
        1,
        &[],
    );
    assert_eq!(reference.status, 0);
    assert!(reference.flows.len() > 500);
    for (name, format, exact_time) in [
        (
            "ns-be.pcap",
            Format::Pcap {
                nanos: true,
                big_endian: true,
            },
            true,
        ),
        (
            "us-le.pcap",
            Format::Pcap {
                nanos: false,
                big_endian: false,
            },
            false,
        ),
        (
            "us-be.pcap",
            Format::Pcap {
                nanos: false,
                big_endian: true,
            },
            false,
        ),
        ("ng.pcapng", Format::PcapNg, true),
    ] {
        let run = run_flowtap(&[&write_workload(dir.path(), name, format)], 1, &[]);
        assert_eq!(run.status, 0, "{name}: {}", run.stderr);
        assert_eq!(run.frames_read, reference.frames_read, "{name}");
        assert_eq!(counts(&run), counts(&reference), "{name}: flows and counts");
        for (a, b) in run.flows.iter().zip(&reference.flows) {
            for (x, y) in [
                (a.client_handshake, b.client_handshake),
                (a.server_handshake, b.server_handshake),
            ] {
                match (x, y) {
                    (None, None) => {}
                    (Some(x), Some(y)) if exact_time => assert_eq!(x, y, "{name}"),
                    // Microsecond files lose the sub-microsecond part.
                    (Some(x), Some(y)) => {
                        for i in 0..3 {
                            assert!(x[i].abs_diff(y[i]) <= 1, "{name}: {x:?} vs {y:?}");
                        }
                    }
                    _ => panic!("{name}: handshake presence differs"),
                }
            }
        }
    }
}

/// Offsets of the records of a classic little-endian pcap, walked
/// independently of flowtap: (record start, record end).
fn pcap_records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        out.push((at, at + 16 + caplen));
        at += 16 + caplen;
    }
    out
}

/// Runs `command` with `bytes` on its standard input (written from another
/// thread, so that a large output cannot stall it): its output, and
/// whether every byte was written.
fn fed(command: &mut Command, bytes: Vec<u8>) -> (std::process::Output, std::io::Result<()>) {
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().unwrap();
    (out, writer.join().unwrap())
}

fn flowtap(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_file_cut_mid_record_names_the_offset_and_keeps_what_was_read() {
    let bytes = std::fs::read(corpus_capture("02_pcpp_example")).unwrap();
    let records = pcap_records(&bytes);
    let dir = tempfile::tempdir().unwrap();
    // Cut inside a record's data, and inside a record's header.
    for (nth, inside) in [(1000usize, 20usize), (3000, 5)] {
        let (start, _) = records[nth];
        let cut = dir.path().join(format!("cut-{nth}.pcap"));
        std::fs::write(&cut, &bytes[..start + inside]).unwrap();
        let (status, _, stderr) = flowtap(&["-r", cut.to_str().unwrap()]);
        assert_eq!(status, 2, "{stderr}");
        let want = format!(
            "cut off in the middle of a record at byte offset {start} ({nth} frames read before it)"
        );
        assert!(stderr.contains(&want), "expected {want:?} in:\n{stderr}");
        // Last, where a person looks for why the status is 2.
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.contains(&want), "not the last line:\n{stderr}");
        assert!(stderr.contains(cut.to_str().unwrap()), "names the file");
        assert!(
            stderr.contains(&format!("flowtap: read {nth} frames")),
            "counts what came before:\n{stderr}"
        );
    }
}

#[test]
fn an_unsupported_link_type_names_file_and_offset() {
    let mut bytes = std::fs::read(corpus_capture("02_pcpp_example")).unwrap();
    bytes[20..24].copy_from_slice(&147u32.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user0.pcap");
    std::fs::write(&path, &bytes).unwrap();
    let (status, _, stderr) = flowtap(&["-r", path.to_str().unwrap()]);
    assert_eq!(status, 2);
    assert!(
        stderr.contains("unsupported link type 147 at byte offset 20"),
        "{stderr}"
    );
}

/// A pcapng file with an interface of a link type flowtap cannot read
/// beside an Ethernet one: the file is read to its end, the other
/// interface's frames counted as non-IP, and the report says how many.
#[test]
fn a_pcapng_interface_flowtap_cannot_read_does_not_stop_the_file() {
    let pcap = std::fs::read(corpus_capture("02_pcpp_example")).unwrap();
    let block = |block_type: u32, body: &[u8]| {
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        let mut b = [&block_type.to_le_bytes()[..], &len.to_le_bytes(), body].concat();
        b.resize(8 + padded, 0);
        b.extend_from_slice(&len.to_le_bytes());
        b
    };
    let idb = |linktype: u16| [&linktype.to_le_bytes()[..], &[0; 2], &[0; 4]].concat();
    let shb = [&0x1a2b_3c4du32.to_le_bytes()[..], &[1, 0, 0, 0], &[0xff; 8]].concat();
    let mut file = [
        block(0x0a0d_0d0a, &shb),
        block(1, &idb(1)),
        block(1, &idb(147)),
    ]
    .concat();
    let records = pcap_records(&pcap);
    let mut on_unreadable = 0;
    for (i, &(start, end)) in records.iter().enumerate() {
        let interface = u32::from(i % 10 == 9);
        on_unreadable += interface;
        let r = &pcap[start..end];
        let (sec, usec) = (&r[0..4], &r[4..8]);
        let us = u64::from(u32::from_le_bytes(sec.try_into().unwrap())) * 1_000_000
            + u64::from(u32::from_le_bytes(usec.try_into().unwrap()));
        let body = [
            &interface.to_le_bytes()[..],
            &((us >> 32) as u32).to_le_bytes(),
            &(us as u32).to_le_bytes(),
            &r[8..16], // captured and original lengths
            &r[16..],
        ]
        .concat();
        file.extend(block(6, &body));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two-links.pcapng");
    std::fs::write(&path, &file).unwrap();
    let (status, _, stderr) = flowtap(&["-r", path.to_str().unwrap()]);
    assert_eq!(status, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("flowtap: read {} frames", records.len())),
        "{stderr}"
    );
    let warning = format!(
        "flowtap: warning: {}: {on_unreadable} frames on interface 1 (section 0) counted as non_ip: \
         flowtap cannot read link type 147",
        path.display()
    );
    assert!(
        stderr.contains(&warning),
        "expected {warning:?} in:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("non_ip {on_unreadable}")),
        "{stderr}"
    );
}

#[test]
fn files_that_are_not_captures_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "this is not a capture file at all, just text").unwrap();
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, "").unwrap();
    let missing = dir.path().join("missing.pcap");
    for (path, message) in [
        (&text, "not a pcap or pcapng file"),
        (&empty, "file is empty"),
        (&missing, "cannot open"),
        (&dir.path().to_path_buf(), "cannot open: it is a directory"),
    ] {
        let (status, _, stderr) = flowtap(&["-r", path.to_str().unwrap()]);
        assert_eq!(status, 2, "{stderr}");
        assert!(
            stderr.contains(message) && stderr.contains(path.to_str().unwrap()),
            "{stderr}"
        );
    }
}

#[test]
fn several_files_are_one_stream_and_a_bad_one_does_not_stop_the_rest() {
    let good = corpus_capture("19_tcpreplay_test");
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let once = run_flowtap(&[&good], 2, &[]);
    // The second copy replays earlier timestamps: out of order on purpose.
    let twice = run_flowtap(&[&good, &cut, &good], 2, &[]);
    assert_eq!(twice.status, 2, "the cut file makes the run fail");
    let records = pcap_records(&bytes).len() as u64;
    assert_eq!(twice.frames_read, 2 * once.frames_read + records - 1);
    let pkts = |r: &Run| {
        r.flows
            .iter()
            .map(|f| f.client_tx_pkts + f.server_tx_pkts)
            .sum::<u64>()
    };
    assert!(pkts(&twice) > 2 * pkts(&once));
    // Files are read in the order given, not merged by time: a file that
    // starts before the ones read ahead of it end is said (it was silent).
    const OUT_OF_ORDER: &str = "files are read in the order given, not merged by time";
    assert!(!once.stderr.contains(OUT_OF_ORDER), "{}", once.stderr);
    let late: Vec<&str> = twice
        .stderr
        .lines()
        .filter(|l| l.contains(OUT_OF_ORDER))
        .collect();
    assert_eq!(late.len(), 2, "{}", twice.stderr);
    assert!(late[0].contains("cut.pcap starts at"), "{}", late[0]);
    assert!(
        late[1].contains("19_tcpreplay_test.pcap starts at"),
        "{}",
        late[1]
    );

    // The file cut in two at a record: its halves in time order are the
    // file, unsaid; the other way round they are said.
    let spans = pcap_records(&bytes);
    let middle = spans[spans.len() / 2].0;
    let (early, later) = (dir.path().join("early.pcap"), dir.path().join("later.pcap"));
    std::fs::write(&early, &bytes[..middle]).unwrap();
    std::fs::write(&later, [&bytes[..24], &bytes[middle..]].concat()).unwrap();
    let in_order = run_flowtap(&[&early, &later], 2, &[]);
    assert_eq!(in_order.status, 0, "{}", in_order.stderr);
    assert_eq!(counts(&in_order), counts(&once));
    assert!(
        !in_order.stderr.contains(OUT_OF_ORDER),
        "{}",
        in_order.stderr
    );
    let reversed = run_flowtap(&[&later, &early], 2, &[]);
    assert!(
        reversed.stderr.contains("early.pcap starts at")
            && reversed.stderr.contains(OUT_OF_ORDER)
            && reversed.stderr.contains("mergecap"),
        "{}",
        reversed.stderr
    );
}

/// Writes `frames` (Ethernet frames built by capgen) under another link
/// type, re-framing each one as that link type carries it.
fn rewrite_link(
    path: &Path,
    linktype: u32,
    frames: &[(u64, Vec<u8>)],
    reframe: impl Fn(&[u8]) -> Vec<u8>,
) {
    let mut w = PcapWriter::new(File::create(path).unwrap(), linktype).unwrap();
    for (ts, f) in frames {
        let data = reframe(f);
        w.write(*ts, &data, data.len() as u32).unwrap();
    }
    w.finish().unwrap();
}

fn handshake(v6: bool) -> Vec<(u64, Vec<u8>)> {
    let (c, s): (IpAddr, IpAddr) = if v6 {
        (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
    } else {
        ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap())
    };
    let t0 = 1_767_225_600_000_000_000u64;
    let mut out = Vec::new();
    for (i, (from_client, flags)) in [
        (true, tcp_flags::SYN),
        (false, tcp_flags::SYN | tcp_flags::ACK),
        (true, tcp_flags::ACK),
    ]
    .into_iter()
    .enumerate()
    {
        let mut buf = Vec::new();
        frame::segment(
            &mut buf,
            &Segment {
                seq: 1,
                ..Segment::tcp(c, 40000, s, 443, from_client, flags)
            },
        );
        out.push((t0 + i as u64 * 5_000_000, buf));
    }
    out
}

/// Adds `secs` to the seconds of the classic pcap records `records`.
fn shift_records(bytes: &mut [u8], records: &[(usize, usize)], secs: u32) {
    for &(at, _) in records {
        let ts = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        bytes[at..at + 4].copy_from_slice(&(ts + secs).to_le_bytes());
    }
}

/// One frame stamped a year ahead moved the file's clock a year on: every
/// rate in the answer read 0 and every flow was a year idle. Such a frame
/// is counted at the time of the frame before it, and said; a gap the
/// frames after it confirm is the capture's own, and kept.
#[test]
fn a_frame_stamped_far_from_its_neighbours_leaves_the_file_s_time_alone() {
    let dir = tempfile::tempdir().unwrap();
    let format = Format::Pcap {
        nanos: false,
        big_endian: false,
    };
    let path = write_workload(dir.path(), "w.pcap", format);
    let bytes = std::fs::read(&path).unwrap();
    let records = pcap_records(&bytes);
    let middle = records.len() / 2;
    let mut wrong = bytes.clone();
    shift_records(&mut wrong, &records[middle..=middle], 365 * 86_400);
    let wrong_path = dir.path().join("wrong.pcap");
    std::fs::write(&wrong_path, &wrong).unwrap();
    let timeout = ["--tcp-timeout", "3600", "--udp-timeout", "3600"];
    let good = run_flowtap(&[&path], 2, &timeout);
    let run = run_flowtap(&[&wrong_path], 2, &timeout);
    assert_eq!(run.status, 0, "{}", run.stderr);
    // The frame's time differs by a millisecond at most: the same flows,
    // the same rates.
    assert_eq!(counts(&run), counts(&good));
    let rates = |r: &Run| -> Vec<f64> {
        r.bodies[0]["flows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["totals"]["pps"].as_f64().unwrap())
            .collect()
    };
    assert!(rates(&good).iter().all(|&pps| pps > 0.0));
    assert_eq!(rates(&run), rates(&good));
    let said = format!(
        "wrong.pcap: 1 frame(s) stamped more than 10 s from the time the capture was at, which \
         the frames after them did not confirm, counted at that time (the first: frame {}",
        middle + 1
    );
    assert!(run.stderr.contains(&said), "{}", run.stderr);
    assert!(
        !good.stderr.contains("stamped more than"),
        "{}",
        good.stderr
    );

    // The second half two hours later, in one file and as two files: the
    // same answer, its times two hours on, and nothing said.
    let mut gap = bytes.clone();
    shift_records(&mut gap, &records[middle..], 7_200);
    let gap_path = dir.path().join("gap.pcap");
    std::fs::write(&gap_path, &gap).unwrap();
    let split = records[middle].0;
    let (early, later) = (dir.path().join("early.pcap"), dir.path().join("later.pcap"));
    std::fs::write(&early, &gap[..split]).unwrap();
    std::fs::write(&later, [&gap[..24], &gap[split..]].concat()).unwrap();
    let one = run_flowtap(&[&gap_path], 2, &[]);
    let two = run_flowtap(&[&early, &later], 2, &[]);
    assert_eq!(one.status, 0, "{}", one.stderr);
    assert!(!one.stderr.contains("stamped more than"), "{}", one.stderr);
    // (Compared unprinted: a whole answer is megabytes.)
    assert!(
        one.bodies[0]["flows"] == two.bodies[0]["flows"],
        "one file and two differ"
    );
    let latest = |r: &Run| -> String {
        r.bodies[0]["flows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["client_stats"]["timestamp"].as_str().unwrap().to_owned())
            .max()
            .unwrap()
    };
    let (before, after) = (latest(&good), latest(&one));
    assert_eq!(after[..11], before[..11], "{before} {after}");
    let hour = |t: &str| t[11..13].parse::<u32>().unwrap();
    assert_eq!(hour(&after), hour(&before) + 2, "{before} {after}");
}

#[test]
fn raw_and_loopback_link_types() {
    let dir = tempfile::tempdir().unwrap();
    let strip = |f: &[u8]| f[14..].to_vec();
    type Reframe = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let cases: Vec<(&str, u32, bool, Reframe)> = vec![
        ("raw101", 101, false, Box::new(strip)),
        ("raw12", 12, true, Box::new(strip)),
        ("raw14", 14, false, Box::new(strip)),
        ("ipv4-228", 228, false, Box::new(strip)),
        ("ipv6-229", 229, true, Box::new(strip)),
        // LOOP: address family in network byte order (AF_INET6 = 24 on OpenBSD).
        (
            "loop108",
            108,
            true,
            Box::new(|f: &[u8]| [&[0, 0, 0, 24][..], &f[14..]].concat()),
        ),
        // NULL written on a big-endian host: AF_INET = 2 in big-endian.
        (
            "null0-be",
            0,
            false,
            Box::new(|f: &[u8]| [&[0, 0, 0, 2][..], &f[14..]].concat()),
        ),
    ];
    for (name, linktype, v6, reframe) in cases {
        let path = dir.path().join(format!("{name}.pcap"));
        rewrite_link(&path, linktype, &handshake(v6), reframe);
        let run = run_flowtap(&[&path], 1, &[]);
        assert_eq!(run.status, 0, "{name}: {}", run.stderr);
        assert_eq!(run.flows.len(), 1, "{name}");
        let f = &run.flows[0];
        assert_eq!(
            (f.key.3, f.client_tx_pkts, f.server_tx_pkts),
            (443, 2, 1),
            "{name}"
        );
        assert_eq!(f.client_handshake, Some([5000; 3]), "{name}");
        assert_eq!(f.server_handshake, Some([10000; 3]), "{name}");
    }
}

#[test]
fn timestamps_running_backwards_break_neither_rates_nor_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backwards.pcap");
    let mut frames = handshake(false);
    // The SYN-ACK carries a timestamp before the SYN's: its leg cannot be
    // measured, and that is counted; the server leg (the client's SYN to
    // its ACK, one clock's stamps) can.
    frames[1].0 = frames[0].0 - 3_000_000;
    rewrite_link(&path, 1, &frames, |f| f.to_vec());
    let run = run_flowtap(&[&path], 1, &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("out-of-order handshakes 1"),
        "{}",
        run.stderr
    );
    let f = &run.flows[0];
    assert_eq!(
        (f.client_handshake, f.server_handshake),
        (None, Some([10_000; 3])),
        "no negative leg is recorded"
    );
    assert_eq!((f.client_tx_pkts, f.server_tx_pkts), (2, 1));
    let totals = &run.bodies[0]["flows"][0]["totals"];
    for k in ["pps", "bps"] {
        let v = totals[k].as_f64().unwrap();
        assert!(v.is_finite() && v >= 0.0, "{k} = {v}");
    }
}

/// A file whose frames all carry one stamp (a tool that zeroed them) has
/// rates of 0 and handshakes of 0 µs: said, as no measurement.
#[test]
fn a_file_without_time_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let (zeroed, timed) = (
        dir.path().join("zeroed.pcap"),
        dir.path().join("timed.pcap"),
    );
    let frames = handshake(false);
    let zeroes: Vec<(u64, Vec<u8>)> = frames.iter().map(|(_, f)| (0, f.clone())).collect();
    rewrite_link(&zeroed, 1, &zeroes, |f| f.to_vec());
    rewrite_link(&timed, 1, &frames, |f| f.to_vec());
    let run = run_flowtap(&[&zeroed, &timed], 1, &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let said: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("is stamped after the first"))
        .collect();
    assert_eq!(said.len(), 1, "{}", run.stderr);
    assert!(
        said[0].contains(
            "zeroed.pcap: none of its 3 frames is stamped after the first (1970-01-01T00:00:00"
        ),
        "{}",
        said[0]
    );
}

/// A clock set back two hours inside a file: its frames stand as stamped
/// (confirmed by the frames after), but the clock that rates and idle
/// expiry go by never goes back, so the warning says what they read.
#[test]
fn a_step_back_of_the_stamps_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stepped.pcap");
    let frame = handshake(false)[0].1.clone();
    let (before, after) = (
        1_767_225_600_000_000_000u64,
        1_767_225_600_000_000_000 - 7_200_000_000_000,
    );
    let frames: Vec<(u64, Vec<u8>)> = (0..5)
        .map(|i| before + i * 1_000_000_000)
        .chain((0..10).map(|i| after + i * 1_000_000_000))
        .map(|ts| (ts, frame.clone()))
        .collect();
    rewrite_link(&path, 1, &frames, |f| f.to_vec());
    let run = run_flowtap(&[&path], 1, &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "stepped.pcap: its stamps step back 7204.0 s at frame 6 (stamped 2025-12-31T22:00:00"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn frames_out_of_time_order_still_pair_up_by_timestamp() {
    // The SYN-ACK is written before the SYN (as two rx queues may deliver a
    // connection's directions), with consistent timestamps.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reordered.pcap");
    let mut frames = handshake(false);
    frames.swap(0, 1);
    rewrite_link(&path, 1, &frames, |f| f.to_vec());
    let run = run_flowtap(&[&path], 1, &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("out-of-order handshakes 0"),
        "{}",
        run.stderr
    );
    let f = &run.flows[0];
    assert_eq!(f.key.3, 443, "the SYN-ACK sender is the server");
    assert_eq!(f.client_handshake, Some([5000; 3]));
    assert_eq!(f.server_handshake, Some([10000; 3]));
}

/// `-r -` reads standard input, as tcpdump and tshark do: the same flows
/// as the file itself. So do captures compressed with gzip or Zstandard,
/// as tshark reads them, from a file or a pipe, each written by its own
/// tool, one Zstandard file in two frames, another written by `pzstd` (a
/// skippable frame before each frame). One cut
/// short is an error that says so; another compression is named, with the
/// way to read it.
#[test]
fn standard_input_and_compressed_files_read_like_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_workload(dir.path(), "ng.pcapng", Format::PcapNg);
    let dump = |stdin: std::process::Stdio, file: &str| {
        let out = common::stdout_of(
            Command::new(env!("CARGO_BIN_EXE_flowtap"))
                .args(["-r", file, "--threads", "1"])
                .args(["--dump", "/mcp/flows?limit=1000000&format=full"])
                .stdin(stdin),
        );
        // Each run's coverage gives its own age of its data.
        common::without_ages(
            &serde_json::from_slice::<serde_json::Value>(&out)
                .unwrap()
                .to_string(),
        )
    };
    let direct = dump(std::process::Stdio::null(), path.to_str().unwrap());
    assert!(direct.matches("\"client\"").count() > 100, "{direct}");
    assert_eq!(dump(File::open(&path).unwrap().into(), "-"), direct);
    // Twice: refused before anything is read (the second read nothing and
    // said "file is empty").
    let (status, _, stderr) = flowtap(&["-r", "-", "-r", "-"]);
    assert_eq!(status, 1, "{stderr}");
    assert!(
        stderr.contains("-r - is given more than once: standard input is read once"),
        "{stderr}"
    );
    // So are standard input under another name, and one FIFO named twice
    // (a file named twice is read twice: below).
    let twice = |args: &[&str]| {
        // A pipe that holds the capture: read once, it would give flows
        // (refused before reading, flowtap may leave it unwritten).
        let bytes = std::fs::read(&path).unwrap();
        let (out, _) = fed(
            Command::new(env!("CARGO_BIN_EXE_flowtap")).args(args),
            bytes,
        );
        (out.status.code(), String::from_utf8(out.stderr).unwrap())
    };
    let (status, stderr) = twice(&["-r", "-", "-r", "/dev/stdin", "--json"]);
    assert_eq!(status, Some(1), "{stderr}");
    assert!(
        stderr.contains("-r - and -r /dev/stdin are one stream"),
        "{stderr}"
    );
    // A file as standard input and under its own name is read twice, and
    // said (it was silent).
    let out = Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .args(["-r", "-", "-r", path.to_str().unwrap(), "--json"])
        .stdin(File::open(&path).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "-r {} is given more than once (as -r - too)",
            path.display()
        )),
        "{stderr}"
    );
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let fifo = fifo.to_str().unwrap();
    let (status, stderr) = twice(&["-r", fifo, "-r", fifo, "--json"]);
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains("are one stream"), "{stderr}");

    let compress = |tool: &[&str], bytes: &[u8]| {
        let (out, written) = fed(Command::new(tool[0]).args(&tool[1..]), bytes.to_vec());
        written.unwrap();
        assert!(out.status.success(), "{tool:?}");
        out.stdout
    };
    let capture = std::fs::read(&path).unwrap();
    let compressed = |name: &str, bytes: Vec<u8>| {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        file
    };
    let gz = compressed("ng.pcapng.gz", compress(&["gzip", "-c"], &capture));
    let (first, second) = capture.split_at(capture.len() / 3);
    let zst = compressed(
        "ng.pcapng.zst",
        [
            compress(&["zstd", "-q", "-c"], first),
            compress(&["zstd", "-q", "-c"], second),
        ]
        .concat(),
    );
    let pzst = compressed("ng.pcapng.pzst", compress(&["pzstd", "-q", "-c"], &capture));
    assert_eq!(
        magic_of(&pzst),
        [0x50, 0x2a, 0x4d, 0x18],
        "pzstd's skippable frame first"
    );
    for file in [&gz, &zst, &pzst] {
        assert_eq!(
            dump(std::process::Stdio::null(), file.to_str().unwrap()),
            direct,
            "{file:?}"
        );
    }
    assert_eq!(dump(File::open(&zst).unwrap().into(), "-"), direct);

    let bytes = std::fs::read(&gz).unwrap();
    let cut = dir.path().join("cut.pcapng.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (status, _, stderr) = flowtap(&["-r", cut.to_str().unwrap()]);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} (decompressed from gzip): read error at byte offset ",
            cut.display()
        )) && stderr.contains("(the file is cut short)"),
        "{stderr}"
    );
    // Its table read by a reader that stops early (`| head`): still 2 (a
    // closed stdout made it 0, and `set -o pipefail` passed the file).
    let out = Command::new("bash")
        .args([
            "-c",
            &format!(
                "'{}' -r '{}' | true; exit ${{PIPESTATUS[0]}}",
                env!("CARGO_BIN_EXE_flowtap"),
                cut.display()
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let xz = compressed("ng.pcapng.xz", compress(&["xz", "-c"], &capture));
    let (status, _, stderr) = flowtap(&["-r", xz.to_str().unwrap()]);
    assert_eq!(status, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: compressed with xz: decompress it first (xzcat FILE | flowtap -r -)",
            xz.display()
        )),
        "{stderr}"
    );
}

/// `flowtap -r - --listen` on loopback, reading a pipe the test writes:
/// the child, its stderr as it comes, and where it serves, once it does.
/// The JSON answer to `GET target` from the server at `addr`.
fn ask(addr: std::net::SocketAddr, target: &str) -> serde_json::Value {
    let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    common::server::raw_request(addr, request.as_bytes()).json()
}

/// Sends `child` SIGINT and waits for it to end (10 s at most).
fn interrupt(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    common::wait::until(std::time::Duration::from_secs(10), "flowtap to end", || {
        child
            .try_wait()
            .unwrap()
            .ok_or_else(|| "running".to_owned())
    })
}

fn serve_a_pipe() -> (
    std::process::Child,
    std::sync::Arc<std::sync::Mutex<String>>,
    std::net::SocketAddr,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowtap"))
        .args([
            "-r",
            "-",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (log, lines) = common::follow_stderr(&mut child);
    let addr = common::wait_for_serving(&log, &lines).parse().unwrap();
    (child, log, addr)
}

/// A read waiting on a pipe that brings nothing does not see the first
/// stop signal (that stops it only once the pipe brings something): the
/// second ends flowtap at once, by the signal.
#[test]
fn a_second_stop_signal_ends_a_read_waiting_on_a_pipe() {
    use std::os::unix::process::ExitStatusExt;
    // Said once the signals are caught.
    let (mut child, log, _) = serve_a_pipe();
    let pid = child.id().to_string();
    // Its reader waiting on the pipe (a signal before it opened the pipe
    // would stop the reading before it began).
    common::wait::until_holds(
        std::time::Duration::from_secs(30),
        "a read waiting on the pipe",
        || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|task| {
                    std::fs::read_to_string(task.path().join("wchan"))
                        .is_ok_and(|wchan| wchan.contains("pipe_read"))
                })
        },
    );
    let interrupt = || Command::new("kill").args(["-INT", &pid]).status().unwrap();
    interrupt();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "the first one waits");
    interrupt();
    let status = common::wait::until(std::time::Duration::from_secs(10), "flowtap to end", || {
        child
            .try_wait()
            .unwrap()
            .ok_or_else(|| "running".to_owned())
    });
    assert_eq!(status.signal(), Some(2), "{}", log.lock().unwrap());
}

/// A pipe that brings nothing for a while (`tcpdump -U -w - | flowtap -r -
/// --listen` on a quiet link) holds nothing back: what it brought is
/// answered while it stays open (a worker waiting in its read held every
/// snapshot, and the answers stayed empty until the pipe brought more or
/// ended), and one stop signal ends the reading at once.
#[test]
fn a_quiet_pipe_is_answered_and_stopped_while_open() {
    let (mut child, log, addr) = serve_a_pipe();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/demo.pcap");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(&std::fs::read(demo).unwrap()).unwrap();
    pipe.flush().unwrap();
    common::wait::until_holds(
        std::time::Duration::from_secs(20),
        "the demo's flows answered while the pipe is open",
        || ask(addr, "/mcp/flows/summary")["total_flows"] == 140,
    );
    let status = interrupt(&mut child);
    assert_eq!(status.code(), Some(130), "{}", log.lock().unwrap());
    drop(pipe);
}

/// A frame far after the last (a sparse capture: a DNS query 12 s after
/// the demo, coming 3 s later) waits for frames after it to confirm its
/// time; a pipe that stays quiet brings none, and it is answered a second
/// or so later, its stamp trusted as far as the pipe was quiet (and 10 s)
/// (it was answered only once the pipe closed). One stamped an hour on
/// that comes at once, a stamp gone wrong, is counted at the time before.
#[test]
fn a_quiet_pipe_s_frame_far_after_the_last_is_answered_while_open() {
    let (mut child, log, addr) = serve_a_pipe();
    let demo =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/demo.pcap")).unwrap();
    // The demo's last stamp (a nanosecond pcap, little-endian).
    let (mut at, mut last_s) = (24, 0u32);
    while at + 16 <= demo.len() {
        last_s = u32::from_le_bytes(demo[at..at + 4].try_into().unwrap());
        at += 16 + u32::from_le_bytes(demo[at + 8..at + 12].try_into().unwrap()) as usize;
    }
    let mut frame_bytes = Vec::new();
    frame::segment(
        &mut frame_bytes,
        &Segment {
            proto: frame::Proto::Udp,
            payload: 40,
            ..Segment::tcp(
                "198.18.9.9".parse().unwrap(),
                40_000,
                "198.19.9.9".parse().unwrap(),
                53,
                true,
                0,
            )
        },
    );
    let record = |after_s: u32| {
        let len = frame_bytes.len() as u32;
        let mut record = Vec::new();
        for field in [last_s + after_s, 0, len, len] {
            record.extend(field.to_le_bytes());
        }
        record.extend(&frame_bytes);
        record
    };
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(&demo).unwrap();
    pipe.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    pipe.write_all(&record(12)).unwrap();
    pipe.flush().unwrap();
    common::wait::until_holds(
        std::time::Duration::from_secs(20),
        "the late datagram answered while the pipe is open",
        || ask(addr, "/mcp/flows/summary")["total_flows"] == 141,
    );
    let newest = || {
        ask(addr, "/mcp/flows?format=raw")["flows"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["last_seen_ns"].as_u64())
            .max()
            .unwrap()
    };
    let stood = newest();
    pipe.write_all(&record(3_600)).unwrap();
    pipe.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(newest(), stood, "a stamp an hour on, come at once, stood");
    interrupt(&mut child);
    drop(pipe);
    let log = log.lock().unwrap();
    assert!(log.contains("1 frame(s) stamped more than 10 s"), "{log}");
}

/// A pipe that pauses mid-record (a slow `ssh` or `curl`) is read whole,
/// plain or compressed: a zstd stream told mid-block that nothing came
/// lost what it had read of the block, and the capture was refused as
/// damaged part-way (`Blocksize was bigger than the absolute maximum`).
#[test]
fn a_pipe_that_pauses_mid_record_is_read_whole() {
    let demo =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/demo.pcap")).unwrap();
    let zstd = Command::new("sh")
        .args(["-c", "zstd -q -c < \"$0\"", "../demo/demo.pcap"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(zstd.status.success());
    let gzip = Command::new("sh")
        .args(["-c", "gzip -c < \"$0\"", "../demo/demo.pcap"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(gzip.status.success());
    for (what, bytes, step) in [
        ("plain", demo, 200_001),
        ("zstd", zstd.stdout, 40_001),
        ("gzip", gzip.stdout, 40_001),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowtap"))
            .args(["-r", "-", "--json"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || {
            for chunk in bytes.chunks(step) {
                pipe.write_all(chunk).unwrap();
                pipe.flush().unwrap();
                // Longer than a read of a pipe waits for more.
                std::thread::sleep(std::time::Duration::from_millis(60));
            }
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what}: {stderr}");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["total_flows"], 140, "{what}: {stderr}");
        assert!(stderr.contains("read 6000 frames"), "{what}: {stderr}");
    }
}

/// Once the files are read, a stop signal is no longer the reading's:
/// serving, two in a row stop flowtap cleanly (the reading's second-signal
/// rule had ended it at the second); not serving, one ends flowtap at once
/// as a signal's default action does (here a dump blocked on a pipe nobody
/// reads, which the reading's handler had left running).
#[test]
fn once_the_files_are_read_stop_signals_are_as_before() {
    use std::os::unix::process::ExitStatusExt;
    let capture = corpus_capture("02_pcpp_example");
    let spawn = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowtap"))
            .arg("-r")
            .arg(&capture)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (log, lines) = common::follow_stderr(&mut child);
        // Said once reading is done, and the signals handed on.
        common::wait::until(
            std::time::Duration::from_secs(30),
            "the files read",
            || match lines.recv_timeout(common::wait::EVERY) {
                Ok(line) if line.starts_with("flowtap: read ") => Ok(()),
                _ => Err(log.lock().unwrap().clone()),
            },
        );
        (child, log)
    };
    let signal = |child: &std::process::Child, name: &str| {
        let pid = child.id().to_string();
        Command::new("kill").args([name, &pid]).status().unwrap()
    };
    let ended = |child: &mut std::process::Child| {
        common::wait::until(std::time::Duration::from_secs(10), "flowtap to end", || {
            child
                .try_wait()
                .unwrap()
                .ok_or_else(|| "running".to_owned())
        })
    };
    let (mut serving, log) = spawn(&["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    signal(&serving, "-TERM");
    signal(&serving, "-TERM");
    let status = ended(&mut serving);
    assert_eq!(status.code(), Some(0), "{}", log.lock().unwrap());
    // Six dumps of every flow: more than a pipe holds.
    let dump = ["--dump", "/mcp/flows?format=full&limit=100000"];
    let (mut blocked, log) = spawn(&[dump; 6].concat());
    signal(&blocked, "-INT");
    let status = ended(&mut blocked);
    assert_eq!(status.signal(), Some(2), "{}", log.lock().unwrap());
}

/// The first four bytes of a file.
fn magic_of(path: &Path) -> [u8; 4] {
    std::fs::read(path).unwrap()[..4].try_into().unwrap()
}

/// A file with duplicates gives the same answer every run: which copies a
/// run found hung on a random seed (slots of the duplicate table collide
/// by the hash, and which worker a packet goes to decides its table):
/// 20,967, 20,997 or 20,970 packets.
#[test]
fn a_file_with_duplicates_gives_the_same_answer_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let original = write_workload(dir.path(), "w.pcap", Format::default());
    let shifted = dir.path().join("shifted.pcap");
    let doubled = dir.path().join("doubled.pcap");
    let tool = |name: &str, args: &[&std::ffi::OsStr]| {
        let status = Command::new(name).args(args).status().unwrap();
        assert!(status.success(), "{name}");
    };
    // Each packet again 1 ms later, as a mirror of both ends gives it.
    tool(
        "editcap",
        &[
            "-t".as_ref(),
            "0.001".as_ref(),
            original.as_os_str(),
            shifted.as_os_str(),
        ],
    );
    tool(
        "mergecap",
        &[
            "-F".as_ref(),
            "pcap".as_ref(),
            "-w".as_ref(),
            doubled.as_os_str(),
            original.as_os_str(),
            shifted.as_os_str(),
        ],
    );
    let summary_of = |file: &Path| {
        let (status, out, err) = flowtap(&[
            "-r",
            file.to_str().unwrap(),
            "--threads",
            "2",
            "--dedup",
            "--dedup-window-us",
            "2000",
            "--dump",
            "/mcp/flows/summary",
        ]);
        assert_eq!(status, 0, "{err}");
        let total = serde_json::from_str::<serde_json::Value>(&out).unwrap()["total_pkts"]
            .as_u64()
            .unwrap();
        (total, common::without_ages(&out))
    };
    // Every copy found, and nothing more: the packets the workload itself
    // repeats byte for byte within 2 ms go as they do without the copies.
    // (A table of one slot a key missed hundreds of the copies.)
    let (alone, _) = summary_of(&original);
    assert!(alone > 49_000, "{alone}");
    let first = summary_of(&doubled);
    assert_eq!(first.0, alone);
    for _ in 0..3 {
        assert_eq!(summary_of(&doubled), first);
    }
    // The same file twice is read twice, and said (it was silent).
    let (status, _, stderr) = flowtap(&[
        "-r",
        original.to_str().unwrap(),
        "-r",
        original.to_str().unwrap(),
        "--dump",
        "/mcp/flows/summary",
    ]);
    assert_eq!(status, 0, "{stderr}");
    assert!(
        stderr.contains("is given more than once: its packets are counted each time"),
        "{stderr}"
    );
}
