//! Damaged capture files: every corpus capture cut at every offset (or at
//! hundreds, for large ones), bytes flipped, length fields made absurd, and
//! hand-made bad headers. Each read must end, without a panic, either with
//! the frames that were whole or with an error naming the file and the
//! byte offset.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Instant;

use pipeline::capture::{CaptureError, CaptureFile, MAX_RECORD_BYTES, MAX_UNREADABLE_LISTED};

fn corpus_captures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/captures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

/// How a read ended.
struct Outcome {
    frames: u64,
    error: Option<CaptureError>,
}

fn read_all(name: &str, bytes: Vec<u8>) -> Outcome {
    let path = Path::new(name);
    let mut file = match CaptureFile::from_reader(path, Cursor::new(bytes)) {
        Ok(f) => f,
        Err(e) => {
            return Outcome {
                frames: 0,
                error: Some(e),
            };
        }
    };
    loop {
        match file.read_frames(1024, |f| {
            assert!(f.data.len() <= MAX_RECORD_BYTES);
        }) {
            Ok(0) => {
                return Outcome {
                    frames: file.frames(),
                    error: None,
                };
            }
            Ok(_) => {}
            Err(e) => {
                return Outcome {
                    frames: file.frames(),
                    error: Some(e),
                };
            }
        }
    }
}

/// An error must say which file, and where (except the ones about the
/// whole file).
fn check_error(name: &str, e: &CaptureError) {
    let text = e.to_string();
    assert!(text.starts_with(name), "{text}");
    match e {
        CaptureError::Empty { .. } | CaptureError::NotACapture { .. } => {}
        _ => assert!(text.contains("byte offset"), "{text}"),
    }
}

/// Cut points: every offset in the headers (the first 128 bytes), then 256
/// spread over the rest, at varying positions within records.
fn cuts(len: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..len.min(128)).collect();
    if len > 128 {
        v.extend((0..256).map(|i| 128 + (i * (len - 128) + i * 7) / 256 % (len - 128)));
    }
    v
}

/// A big-endian field's bytes in a file of the given byte order.
fn in_order<const N: usize>(mut be_bytes: [u8; N], big_endian: bool) -> [u8; N] {
    if !big_endian {
        be_bytes.reverse();
    }
    be_bytes
}

#[test]
fn every_capture_cut_anywhere_reads_what_is_whole_or_says_where() {
    let started = Instant::now();
    let mut reads = 0u64;
    for path in corpus_captures() {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let whole = read_all(&name, bytes.clone());
        for cut in cuts(bytes.len()) {
            let got = read_all(&name, bytes[..cut].to_vec());
            reads += 1;
            assert!(got.frames <= whole.frames, "{name} cut at {cut}");
            if let Some(e) = &got.error {
                check_error(&name, e);
            }
        }
    }
    eprintln!(
        "cut captures: {reads} reads in {:.1} s, no panic",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn flipped_bytes_and_absurd_lengths_never_panic() {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut reads = 0u64;
    let mut errors = 0u64;
    for path in corpus_captures() {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for _ in 0..300 {
            let mut damaged = bytes.clone();
            for _ in 0..rng.usize(1..8) {
                let at = rng.usize(..damaged.len());
                match rng.u8(..4) {
                    // A random byte.
                    0 => damaged[at] = rng.u8(..),
                    // An absurd 32-bit length (either byte order).
                    1 => {
                        let v: u32 = [0xffff_ffff, 0x8000_0000, 0x0400_0001, 0][rng.usize(..4)];
                        let b = if rng.bool() {
                            v.to_le_bytes()
                        } else {
                            v.to_be_bytes()
                        };
                        let end = (at + 4).min(damaged.len());
                        damaged[at..end].copy_from_slice(&b[..end - at]);
                    }
                    // A chunk removed or duplicated.
                    2 => {
                        let end = (at + rng.usize(1..64)).min(damaged.len());
                        damaged.drain(at..end);
                    }
                    _ => {
                        let end = (at + rng.usize(1..64)).min(damaged.len());
                        let chunk = damaged[at..end].to_vec();
                        damaged.splice(at..at, chunk);
                    }
                }
                if damaged.is_empty() {
                    break;
                }
            }
            let got = read_all(&name, damaged);
            reads += 1;
            if let Some(e) = &got.error {
                errors += 1;
                check_error(&name, e);
            }
        }
    }
    eprintln!("damaged captures: {reads} reads, {errors} ended in a clear error, no panic");
}

fn pcap_header(magic: u32, snaplen: u32, linktype: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&magic.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&snaplen.to_le_bytes());
    v.extend_from_slice(&linktype.to_le_bytes());
    v
}

fn record(caplen: u32, origlen: u32, data: &[u8]) -> Vec<u8> {
    record_at((1, 2), caplen, origlen, data)
}

/// A record captured at (seconds, microseconds).
fn record_at((sec, usec): (u32, u32), caplen: u32, origlen: u32, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&sec.to_le_bytes());
    v.extend_from_slice(&usec.to_le_bytes());
    v.extend_from_slice(&caplen.to_le_bytes());
    v.extend_from_slice(&origlen.to_le_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn hand_made_bad_files_get_clear_errors() {
    let frame = [0u8; 60];
    let ok = [pcap_header(0xa1b2_c3d4, 65535, 1), record(60, 60, &frame)].concat();
    assert_eq!(read_all("ok.pcap", ok.clone()).frames, 1);

    // Snaplen 0 in the header: records say their own length.
    let snap0 = [pcap_header(0xa1b2_c3d4, 0, 1), record(60, 60, &frame)].concat();
    let got = read_all("snap0.pcap", snap0);
    assert_eq!((got.frames, got.error.is_none()), (1, true));

    for (name, bytes, expect) in [
        ("empty.pcap", Vec::new(), "empty"),
        (
            "magic.pcap",
            b"GIF89a not a capture at all".to_vec(),
            "not a pcap or pcapng",
        ),
        (
            "linktype.pcap",
            [
                pcap_header(0xa1b2_c3d4, 65535, 9999),
                record(60, 60, &frame),
            ]
            .concat(),
            "unsupported link type 9999",
        ),
        (
            // A record claiming 4 GiB: refused, not allocated.
            "huge.pcap",
            [ok.clone(), record(0xffff_fff0, 0xffff_fff0, &frame)].concat(),
            "byte offset 100",
        ),
        (
            // A record of 8 MiB, really there and within the file's snap
            // length: refused once the buffer reaches the limit, with its
            // offset.
            "big.pcap",
            [
                pcap_header(0xa1b2_c3d4, 16 << 20, 1),
                record(60, 60, &frame),
                record(8 << 20, 8 << 20, &vec![0; 8 << 20]),
            ]
            .concat(),
            "larger than 8388608 bytes",
        ),
        (
            "cut.pcap",
            [ok.clone(), record(60, 60, &frame[..10])].concat(),
            "byte offset 100",
        ),
        (
            // pcapng: a section header whose block length is absurd.
            "shb.pcapng",
            [
                &0x0a0d_0d0au32.to_le_bytes()[..],
                &0xffff_fff0u32.to_le_bytes(),
                &0x1a2b_3c4du32.to_le_bytes(),
                &[0; 16],
            ]
            .concat(),
            "flowtap",
        ),
    ] {
        let started = Instant::now();
        let got = read_all(name, bytes);
        let e = got.error.unwrap_or_else(|| panic!("{name}: no error"));
        check_error(name, &e);
        let text = e.to_string();
        assert!(
            text.contains(expect) || expect == "flowtap",
            "{name}: {text}"
        );
        assert!(started.elapsed().as_secs() < 5, "{name} took too long");
        eprintln!("{text}");
    }

    // A capture's header cut short is a truncated capture, not another kind
    // of file.
    let got = read_all(
        "shb-cut.pcapng",
        ng_block(0x0a0d_0d0a, &shb_body(false), false)[..16].to_vec(),
    );
    assert!(
        matches!(got.error, Some(CaptureError::Truncated { offset: 0, .. })),
        "{:?}",
        got.error
    );
    // Said as its header, not as a record.
    let said = got.error.unwrap().to_string();
    assert!(
        said.ends_with(
            "cut off in the middle of its file header at byte offset 0 (0 frames read before it)"
        ),
        "{said}"
    );
    let dir = std::env::temp_dir();
    let text = CaptureFile::open(&dir).unwrap_err().to_string();
    assert!(text.contains("it is a directory"), "{text}");

    // pcapng: a packet naming an interface that was never described.
    let shb = {
        let mut b = Vec::new();
        b.extend_from_slice(&0x0a0d_0d0au32.to_le_bytes());
        b.extend_from_slice(&28u32.to_le_bytes());
        b.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(-1i64).to_le_bytes());
        b.extend_from_slice(&28u32.to_le_bytes());
        b
    };
    let epb = {
        let mut b = Vec::new();
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&(32u32 + 60).to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes()); // interface 3
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&60u32.to_le_bytes());
        b.extend_from_slice(&60u32.to_le_bytes());
        b.extend_from_slice(&frame);
        b.extend_from_slice(&(32u32 + 60).to_le_bytes());
        b
    };
    let got = read_all("iface.pcapng", [shb.clone(), epb].concat());
    let text = got.error.unwrap().to_string();
    assert!(
        text.contains("interface 3") && text.contains("byte offset 28"),
        "{text}"
    );

    // pcapng: a section describing interface after interface: the list is
    // bounded, and the file refused where it passes the bound.
    let idb = {
        let mut b = Vec::new();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&20u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes()); // Ethernet
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // snaplen
        b.extend_from_slice(&20u32.to_le_bytes());
        b
    };
    let max = pipeline::capture::MAX_INTERFACES;
    let mut bytes = shb;
    for _ in 0..max + 10 {
        bytes.extend_from_slice(&idb);
    }
    let got = read_all("interfaces.pcapng", bytes);
    let e = got.error.expect("refused past the bound");
    check_error("interfaces.pcapng", &e);
    let text = e.to_string();
    let at = 28 + max * 20;
    assert!(
        text.contains(&format!("more than {max} interfaces"))
            && text.contains(&format!("byte offset {at}")),
        "{text}"
    );
}

/// Records of many sizes, a few larger than the reader's first buffer (1
/// MiB), fall across the read buffer's edges everywhere: each comes out
/// whole and in order, and the file's end is its end, not a truncation.
#[test]
fn records_across_the_buffers_edges_come_out_whole() {
    const MIB: usize = 1 << 20;
    let mut rng = fastrand::Rng::with_seed(5);
    let records: Vec<(u64, Vec<u8>)> = (0..6_000u64)
        .map(|i| {
            let len = if i % 1_000 == 999 {
                MIB + rng.usize(..MIB)
            } else {
                rng.usize(14..1_600)
            };
            (i * 10, vec![i as u8; len])
        })
        .collect();
    let mut bytes = pcap_header(0xa1b2_c3d4, MAX_RECORD_BYTES as u32, 1);
    for (us, data) in &records {
        let at = ((us / 1_000_000) as u32, (us % 1_000_000) as u32);
        let len = data.len() as u32;
        bytes.extend(record_at(at, len, len, data));
    }
    let total = bytes.len() as u64;
    let mut file = CaptureFile::from_reader(Path::new("edges.pcap"), Cursor::new(bytes)).unwrap();
    let mut seen = 0;
    while file
        .read_frames(64, |frame| {
            let (us, data) = &records[seen];
            assert_eq!(frame.ts_ns, us * 1_000, "record {seen}");
            assert_eq!(frame.data, &data[..], "record {seen}");
            seen += 1;
        })
        .unwrap()
        > 0
    {}
    assert_eq!(seen, records.len());
    assert_eq!(file.offset(), total);
}

/// A pcapng block of `block_type` around `body`, padded to 32 bits.
fn ng_block(block_type: u32, body: &[u8], big_endian: bool) -> Vec<u8> {
    let word = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let padded = body.len().div_ceil(4) * 4;
    let len = (12 + padded) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(&word(block_type));
    b.extend_from_slice(&word(len));
    b.extend_from_slice(body);
    b.resize(8 + padded, 0);
    b.extend_from_slice(&word(len));
    b
}

/// A section header block's body: byte-order magic, version 1.0, length
/// unknown.
fn shb_body(big_endian: bool) -> Vec<u8> {
    let mut b = Vec::new();
    if big_endian {
        b.extend_from_slice(&0x1a2b_3c4du32.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
    } else {
        b.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
    }
    b.extend_from_slice(&(-1i64).to_le_bytes());
    b
}

/// Every frame of `file`: link type, time, length on the wire, bytes.
fn every_frame(
    file: &mut CaptureFile,
) -> Vec<(pipeline::wire::dissect::LinkType, u64, u32, Vec<u8>)> {
    let mut frames = Vec::new();
    while file
        .read_frames(16, |f| {
            frames.push((f.link, f.ts_ns, f.wire_len, f.data.to_vec()))
        })
        .unwrap()
        > 0
    {}
    frames
}

/// A pcapng file may describe interfaces of link types flowtap cannot read
/// beside ones it can: the others' packets are read, and the unreadable
/// interface's counted and named. Packets may come in the obsolete Packet
/// Block that writers used before the Enhanced one: read as packets, in
/// either byte order.
#[test]
fn pcapng_packets_of_every_block_and_interface_are_read_or_counted() {
    use pipeline::capture::UnreadableInterface;
    use pipeline::wire::dissect::LinkType;
    for big_endian in [false, true] {
        let (u16b, u32b) = (
            |v: u16| {
                if big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }
            },
            |v: u32| {
                if big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }
            },
        );
        let idb = |linktype: u16| [&u16b(linktype)[..], &u16b(0), &u32b(0)].concat();
        let frame = |marker: u8| vec![marker; 61];
        // Timestamps in microseconds (no if_tsresol): 1.5 s, 2.5 s, 3.5 s.
        let packet = |obsolete: bool, interface: u16, us: u64, data: &[u8]| {
            let len = data.len() as u32;
            let head = if obsolete {
                [&u16b(interface)[..], &u16b(0)].concat()
            } else {
                u32b(u32::from(interface)).to_vec()
            };
            let body = [
                &head[..],
                &u32b((us >> 32) as u32),
                &u32b(us as u32),
                &u32b(len),
                &u32b(len),
                data,
            ]
            .concat();
            ng_block(if obsolete { 2 } else { 6 }, &body, big_endian)
        };
        let bytes = [
            ng_block(0x0a0d_0d0a, &shb_body(big_endian), big_endian),
            ng_block(1, &idb(1), big_endian),
            ng_block(1, &idb(147), big_endian),
            packet(true, 0, 1_500_000, &frame(1)),
            packet(false, 1, 2_500_000, &frame(2)),
            packet(false, 0, 3_500_000, &frame(3)),
        ]
        .concat();
        let mut file =
            CaptureFile::from_reader(Path::new("mixed.pcapng"), Cursor::new(bytes)).unwrap();
        let frames = every_frame(&mut file);
        let second = 1_000_000_000;
        assert_eq!(
            frames,
            vec![
                (LinkType::Ethernet, second * 3 / 2, 61, frame(1)),
                (LinkType::Unreadable, second * 5 / 2, 61, frame(2)),
                (LinkType::Ethernet, second * 7 / 2, 61, frame(3)),
            ],
            "big endian: {big_endian}"
        );
        assert_eq!(
            file.unreadable(),
            [UnreadableInterface {
                interface: 1,
                section: 0,
                linktype: 147,
                frames: 1,
                further: 0,
            }]
        );
    }
}

/// A section header larger than the reader's first buffer (a capture
/// comment of 2 MiB) is read whole, and the packets after it: it was said
/// to be cut off at byte offset 0.
#[test]
fn a_section_header_past_the_first_buffer_is_read() {
    let mut shb = shb_body(false);
    // An option's length is 16 bits: 2 MiB of comments are many options.
    let comment = vec![b'c'; 2 << 20];
    for chunk in comment.chunks(60_000) {
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
        shb.extend_from_slice(chunk);
        shb.resize(shb.len().div_ceil(4) * 4, 0);
    }
    shb.extend_from_slice(&[0; 4]);
    let idb = [1u16.to_le_bytes(), 0u16.to_le_bytes()].concat();
    let epb = [0u32, 0, 7, 4, 4].map(u32::to_le_bytes).concat();
    let bytes = [
        ng_block(0x0a0d_0d0a, &shb, false),
        ng_block(1, &[&idb[..], &65535u32.to_le_bytes()].concat(), false),
        ng_block(6, &[&epb[..], b"abcd"].concat(), false),
    ]
    .concat();
    assert!(bytes.len() > 2 << 20);
    let mut file =
        CaptureFile::from_reader(Path::new("commented.pcapng"), Cursor::new(bytes)).unwrap();
    let frames = every_frame(&mut file);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].3, b"abcd");
    // Past the largest record read, refused as such a record is (it was
    // said to be cut off).
    let mut huge = shb_body(false);
    huge.resize(9 << 20, 0);
    let error = CaptureFile::from_reader(
        Path::new("huge.pcapng"),
        Cursor::new(ng_block(0x0a0d_0d0a, &huge, false)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("byte offset 0 is larger than 8388608 bytes"),
        "{error}"
    );
}

/// A block holding no packet too large to read (a Decryption Secrets
/// Block of a 9 MiB TLS key log, as `editcap --inject-secrets` writes it)
/// is passed over, and the packets on either side of it read: the whole
/// capture was refused as corrupt. One cut off inside it says so.
#[test]
fn a_block_too_large_to_read_that_holds_no_packet_is_passed_over() {
    let idb = [1u16.to_le_bytes(), 0u16.to_le_bytes()].concat();
    let epb = |marker: &[u8]| {
        let head = [0u32, 0, 7, 4, 4].map(u32::to_le_bytes).concat();
        ng_block(6, &[&head[..], marker].concat(), false)
    };
    // Secrets type (TLS key log), its length, the key log.
    let mut dsb = [0x544c_534bu32, 9 << 20].map(u32::to_le_bytes).concat();
    dsb.resize(8 + (9 << 20), b'k');
    let bytes = [
        ng_block(0x0a0d_0d0a, &shb_body(false), false),
        ng_block(1, &[&idb[..], &65535u32.to_le_bytes()].concat(), false),
        epb(b"abcd"),
        ng_block(0x0000_000a, &dsb, false),
        epb(b"efgh"),
    ]
    .concat();
    let total = bytes.len() as u64;
    let mut file =
        CaptureFile::from_reader(Path::new("secrets.pcapng"), Cursor::new(bytes.clone())).unwrap();
    let frames = every_frame(&mut file);
    let data: Vec<&[u8]> = frames.iter().map(|f| &f.3[..]).collect();
    assert_eq!(data, [&b"abcd"[..], b"efgh"]);
    assert_eq!(file.offset(), total);
    // Cut inside the block passed over: the frame before it counts, and
    // the error says the file is cut short.
    let cut = bytes[..bytes.len() - 100].to_vec();
    let mut file = CaptureFile::from_reader(Path::new("cut.pcapng"), Cursor::new(cut)).unwrap();
    let mut seen = 0;
    let error = loop {
        match file.read_frames(16, |_| seen += 1) {
            Ok(0) => panic!("read to the end without an error"),
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
    };
    assert_eq!(seen, 1);
    assert!(error.contains("cut short"), "{error}");
    // Where reading got to, inside the file (it said the block's end).
    let at: u64 = error
        .split("byte offset ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{error}"));
    assert!(at <= total - 100, "{error}");
    // A packet block that large is still refused, as before.
    let huge = [0u32, 0, 7, 9 << 20, 9 << 20]
        .map(u32::to_le_bytes)
        .concat();
    let bytes = [
        ng_block(0x0a0d_0d0a, &shb_body(false), false),
        ng_block(1, &[&idb[..], &65535u32.to_le_bytes()].concat(), false),
        ng_block(6, &[&huge[..], &vec![0; 9 << 20]].concat(), false),
    ]
    .concat();
    let mut file = CaptureFile::from_reader(Path::new("huge.pcapng"), Cursor::new(bytes)).unwrap();
    let error = file.read_frames(16, |_| {}).unwrap_err().to_string();
    assert!(error.contains("larger than 8388608 bytes"), "{error}");
}

/// Sections of 4096 interfaces of a link type flowtap cannot read, each
/// with a frame: the list stays bounded, its last entry standing for the
/// rest, and every frame is counted (a search of the list per frame made
/// such a file quadratic: 300 sections, 69 MB, 431 s; and a warning line
/// per interface).
#[test]
fn interfaces_flowtap_cannot_read_are_listed_within_a_bound() {
    const SECTIONS: u64 = 8;
    const PER_SECTION: u64 = 4096;
    let block = |kind: u32, body: &[u8]| ng_block(kind, body, false);
    let mut bytes = Vec::new();
    for _ in 0..SECTIONS {
        bytes.extend(block(0x0a0d_0d0a, &shb_body(false)));
        for _ in 0..PER_SECTION {
            let idb = [147u16.to_le_bytes(), 0u16.to_le_bytes()].concat();
            bytes.extend(block(1, &[&idb[..], &65535u32.to_le_bytes()].concat()));
        }
        for i in 0..PER_SECTION as u32 {
            let epb = [i, 0, i, 4, 4].map(u32::to_le_bytes).concat();
            bytes.extend(block(6, &[&epb[..], b"abcd"].concat()));
        }
    }
    let mut file = CaptureFile::from_reader(Path::new("many.pcapng"), Cursor::new(bytes)).unwrap();
    let frames = every_frame(&mut file);
    assert_eq!(frames.len() as u64, SECTIONS * PER_SECTION);
    let listed = file.unreadable();
    assert_eq!(listed.len(), MAX_UNREADABLE_LISTED);
    let last = listed.last().unwrap();
    assert_eq!(
        last.further,
        SECTIONS * PER_SECTION - MAX_UNREADABLE_LISTED as u64
    );
    assert_eq!(
        listed.iter().map(|u| u.frames).sum::<u64>(),
        SECTIONS * PER_SECTION
    );
    assert_eq!(listed[0].frames, 1);
    assert!(last.to_string().contains("further interfaces"), "{last}");
}

/// An IDB's options as pcapng defines them (draft-ietf-opsawg-pcapng
/// §4.2): a resolution of 2^-20 s (`if_tsresol` with its top bit set,
/// which pcap-parser 0.17 refused), an offset in seconds in the section's
/// byte order (read little-endian in a big-endian section, it put
/// timestamps in 2554), and the FCS each frame keeps (`if_fcslen`, or an
/// EPB's `epb_flags`), which bytes are counted without. A section of
/// another major version is refused, as tshark refuses it.
#[test]
fn pcapng_interface_options_as_the_specification_defines_them() {
    for big_endian in [false, true] {
        let u16b = |v: u16| in_order(v.to_be_bytes(), big_endian);
        let u32b = |v: u32| in_order(v.to_be_bytes(), big_endian);
        let option = |code: u16, value: &[u8]| {
            let mut o = [&u16b(code)[..], &u16b(value.len() as u16), value].concat();
            o.resize(o.len().div_ceil(4) * 4, 0);
            o
        };
        let end = option(0, &[]);
        let offset_s: i64 = 1_700_000_000;
        let offset = if big_endian {
            offset_s.to_be_bytes()
        } else {
            offset_s.to_le_bytes()
        };
        let binary = [
            &u16b(1)[..],
            &u16b(0),
            &u32b(0),
            &option(9, &[0x94]),
            &option(14, &offset),
            // Its FCS length in bytes (Wireshark), or in bits (the draft).
            &option(13, &[if big_endian { 32 } else { 4 }]),
            &end,
        ]
        .concat();
        let nanos = [&u16b(1)[..], &u16b(0), &u32b(0), &option(9, &[9]), &end].concat();
        let frame = |marker: u8| vec![marker; 64];
        let epb = |interface: u32, units: u64, data: &[u8], options: &[u8]| {
            let len = data.len() as u32;
            let body = [
                &u32b(interface)[..],
                &u32b((units >> 32) as u32),
                &u32b(units as u32),
                &u32b(len),
                &u32b(len),
                data,
                options,
            ]
            .concat();
            ng_block(6, &body, big_endian)
        };
        // epb_flags: an FCS of 4 bytes (bits 5-8).
        let fcs_flags = [option(2, &u32b(4 << 5)), end.clone()].concat();
        let section = ng_block(0x0a0d_0d0a, &shb_body(big_endian), big_endian);
        let bytes = [
            section.clone(),
            ng_block(1, &binary, big_endian),
            ng_block(1, &nanos, big_endian),
            // 2.5 s in units of 2^-20 s, after the interface's offset.
            epb(0, 5 << 19, &frame(1), &[]),
            epb(1, 3_000_000_123, &frame(2), &fcs_flags),
            epb(1, 4_000_000_000, &frame(3), &[]),
        ]
        .concat();
        let mut file =
            CaptureFile::from_reader(Path::new("options.pcapng"), Cursor::new(bytes.clone()))
                .unwrap();
        let frames: Vec<_> = every_frame(&mut file)
            .into_iter()
            .map(|(_, ts_ns, wire_len, data)| (ts_ns, wire_len, data))
            .collect();
        let second = 1_000_000_000;
        assert_eq!(
            frames,
            vec![
                (offset_s as u64 * second + second * 5 / 2, 60, vec![1; 60]),
                (3_000_000_123, 60, vec![2; 60]),
                (4 * second, 64, frame(3)),
            ],
            "big endian: {big_endian}"
        );
        // A second section of version 2.0.
        let mut v2 = shb_body(big_endian);
        v2[4..6].copy_from_slice(&u16b(2));
        let later = [bytes, ng_block(0x0a0d_0d0a, &v2, big_endian)].concat();
        let got = read_all("v2.pcapng", later);
        let error = got.error.expect("a section of version 2 is refused");
        check_error("v2.pcapng", &error);
        let error = error.to_string();
        assert_eq!(got.frames, 3);
        assert!(error.contains("version 2.0"), "{error}");
    }
}

/// A pcap header's link type field carries, above the link type, whether
/// and how long an FCS each frame keeps (pcap, draft-ietf-opsawg-pcap §4:
/// the P bit and the top 4 bits, in 16-bit words): such files were
/// refused as an unknown link type; bytes are counted without the FCS. A
/// reserved bit set is still refused, as tshark refuses it. The
/// "modified" pcap format's magic reads as pcap (it was "cut off at byte
/// offset 0"), and a compressed capture is named as such.
#[test]
fn pcap_link_type_bits_modified_pcap_and_compressed_files() {
    let frame = [7u8; 64];
    let fcs = [
        pcap_header(0xa1b2_c3d4, 65535, 0x2400_0001),
        record(64, 64, &frame),
    ]
    .concat();
    let mut file = CaptureFile::from_reader(Path::new("fcs.pcap"), Cursor::new(fcs)).unwrap();
    let mut frames = Vec::new();
    while file
        .read_frames(16, |f| frames.push((f.wire_len, f.data.len())))
        .unwrap()
        > 0
    {}
    assert_eq!(frames, [(60, 60)]);

    let reserved = [
        pcap_header(0xa1b2_c3d4, 65535, 0x0001_0001),
        record(64, 64, &frame),
    ]
    .concat();
    let error = read_all("reserved.pcap", reserved)
        .error
        .unwrap()
        .to_string();
    assert!(error.contains("unsupported link type 65537"), "{error}");

    // A modified pcap record header: the usual 16 bytes, then the interface
    // index (4), protocol (2), packet type (1) and a pad byte.
    let modified = [
        pcap_header(0xa1b2_cd34, 65535, 1),
        record(64, 64, &[])[..16].to_vec(),
        vec![0; 8],
        frame.to_vec(),
    ]
    .concat();
    let got = read_all("modified.pcap", modified);
    assert_eq!((got.frames, got.error.map(|e| e.to_string())), (1, None));
    // Written on a big-endian host, which pcap-parser does not read: said
    // so, with what converts it, rather than "not a pcap file".
    let big_endian = [&[0xa1, 0xb2, 0xcd, 0x34][..], &[0; 40]].concat();
    let error = read_all("modified-be.pcap", big_endian)
        .error
        .unwrap()
        .to_string();
    assert!(
        error.starts_with("modified-be.pcap: a big-endian \"modified\" pcap")
            && error.ends_with("(editcap -F pcap modified-be.pcap OUT.pcap)"),
        "{error}"
    );

    // gzip and Zstandard are read through (capture_files.rs); others named.
    for (magic, compressor) in [
        (&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00][..], "xz"),
        (&[0x42, 0x5a, 0x68], "bzip2"),
        (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
    ] {
        let bytes = [magic, &[0; 40]].concat();
        let error = read_all("c.pcap.gz", bytes).error.unwrap().to_string();
        assert!(
            error.starts_with(&format!(
                "c.pcap.gz: compressed with {compressor}: decompress it first"
            )),
            "{error}"
        );
    }
    // Compressed twice: the inner layer is named, with both tools.
    let gzip = |data: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, data).unwrap();
        encoder.finish().unwrap()
    };
    let twice = gzip(&gzip(&pcap_header(0xa1b2_c3d4, 65535, 1)));
    let error = read_all("c.pcap.gz", twice).error.unwrap().to_string();
    assert_eq!(
        error,
        "c.pcap.gz (decompressed from gzip): compressed with gzip: decompress it first (zcat FILE | zcat | flowtap -r -)"
    );
    // A gzip header and then nothing that inflates: the decompressor's
    // complaint, with the compression named.
    let error = read_all("c.pcap.gz", [&[0x1f, 0x8b, 8, 0][..], &[0; 40]].concat())
        .error
        .unwrap();
    assert!(
        matches!(error, CaptureError::Read { offset: 0, .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("c.pcap.gz (decompressed from gzip): read error at byte offset 0: "),
        "{error}"
    );
}

/// The offset of the `Corrupt` error a read of `bytes` ends with, and the
/// frames read before it.
fn corrupt_at(name: &str, bytes: Vec<u8>) -> (u64, u64) {
    let got = read_all(name, bytes);
    match got.error {
        Some(CaptureError::Corrupt {
            offset, ref detail, ..
        }) => {
            check_error(name, got.error.as_ref().unwrap());
            eprintln!("{name}: {detail}");
            (offset, got.frames)
        }
        other => panic!("{name}: {other:?} after {} frames", got.frames),
    }
}

/// A pcapng block's total length is checked at both ends, and to be at
/// least 12 and a multiple of 4, whatever the block's type: pcap-parser
/// checks it for some types only, so that a simple packet block one word
/// too long swallowed the next block's type and reading went astray, and
/// a process information block shorter than its fields made it panic.
#[test]
fn pcapng_block_total_lengths_are_checked_at_both_ends() {
    for big_endian in [false, true] {
        let u32b = |v: u32| in_order(v.to_be_bytes(), big_endian);
        let shb = ng_block(0x0a0d_0d0a, &shb_body(big_endian), big_endian);
        let idb = ng_block(1, &[&u32b(1)[..], &u32b(0)].concat(), big_endian);
        let spb = ng_block(3, &[&u32b(60)[..], &[5; 60]].concat(), big_endian);
        let opb = ng_block(
            2,
            &[
                &u32b(0)[..],
                &u32b(0),
                &u32b(0),
                &u32b(60),
                &u32b(60),
                &[6; 60],
            ]
            .concat(),
            big_endian,
        );
        let unknown = ng_block(0x0000_0f00, &[7; 16], big_endian);
        let head = [shb.clone(), idb.clone(), spb.clone()].concat();
        let at = head.len() as u64;
        // The block at `at` with its length at its start (or end) made
        // `length`.
        let with_length = |block: &[u8], at_end: bool, length: u32| {
            let mut b = block.to_vec();
            let field = if at_end { b.len() - 4 } else { 4 };
            b[field..field + 4].copy_from_slice(&u32b(length));
            [head.clone(), b, spb.clone(), spb.clone()].concat()
        };
        let order = if big_endian { "be" } else { "le" };
        for (what, block) in [
            ("spb", &spb),
            ("opb", &opb),
            ("shb", &shb),
            ("unknown", &unknown),
        ] {
            let len = block.len() as u32;
            for (how, bytes) in [
                ("long", with_length(block, false, len + 4)),
                ("short", with_length(block, false, len - 4)),
                ("end", with_length(block, true, len + 8)),
                ("odd", with_length(block, false, len + 1)),
                ("tiny", with_length(block, false, 8)),
            ] {
                let name = format!("{what}-{how}-{order}.pcapng");
                assert_eq!(corrupt_at(&name, bytes), (at, 1), "{name}");
            }
        }
        // The same blocks whole are read.
        let whole = [head.clone(), opb, unknown, shb, idb, spb].concat();
        let got = read_all("whole.pcapng", whole);
        assert_eq!((got.frames, got.error.map(|e| e.to_string())), (3, None));
    }
    // A process information block of 8 bytes, which pcap-parser took 12
    // from.
    let pib = [0x01, 0x00, 0x00, 0x80, 0x08, 0x00, 0x00, 0x00];
    let bytes = [
        &ng_block(0x0a0d_0d0a, &shb_body(false), false)[..],
        &pib,
        &[0; 32],
    ]
    .concat();
    assert_eq!(corrupt_at("pib.pcapng", bytes), (28, 0));
}

/// A field inside a whole pcapng block running past its end (an EPB's
/// captured length) made pcap-parser ask for more bytes: the buffer grew
/// to its limit and the block was called too large, or the file cut off.
/// It is corrupt, where the block begins.
#[test]
fn pcapng_field_past_its_blocks_end_is_corrupt() {
    let shb = ng_block(0x0a0d_0d0a, &shb_body(false), false);
    let idb = ng_block(
        1,
        &[&1u32.to_le_bytes()[..], &0u32.to_le_bytes()].concat(),
        false,
    );
    let epb = |caplen: u32| {
        let body = [
            &0u32.to_le_bytes()[..],
            &0u32.to_le_bytes(),
            &0u32.to_le_bytes(),
            &caplen.to_le_bytes(),
            &60u32.to_le_bytes(),
            &[8; 60],
        ]
        .concat();
        ng_block(6, &body, false)
    };
    let head = [shb, idb, epb(60)].concat();
    let at = head.len() as u64;
    for caplen in [64, 1_000, 2 << 20, 0xffff_fff0] {
        // Last in the file, and followed by blocks (some megabytes of
        // them, so that the buffer could grow).
        for tail in [0, 1, 40_000] {
            let mut bytes = [head.clone(), epb(caplen)].concat();
            for _ in 0..tail {
                bytes.extend(epb(60));
            }
            let name = format!("caplen-{caplen}-{tail}.pcapng");
            assert_eq!(corrupt_at(&name, bytes), (at, 1), "{name}");
        }
    }
}

/// A classic pcap record longer than the file's snap length, and than
/// libpcap's largest (262144 bytes, which libpcap and Wireshark refuse
/// past), is corrupt, though its bytes be there: it was read as a frame,
/// and a length field damaged anywhere made the reader take whatever
/// followed as one record.
#[test]
fn pcap_record_longer_than_any_snap_length_is_corrupt() {
    let frame = [9u8; 60];
    for big_endian in [false, true] {
        let u32b = |v: u32| in_order(v.to_be_bytes(), big_endian);
        let header = |snaplen: u32| {
            let mut h = pcap_header(0xa1b2_c3d4, snaplen, 1);
            if big_endian {
                for field in [0..4, 16..20, 20..24] {
                    h[field.clone()].reverse();
                }
                h[4..8].copy_from_slice(&[0, 2, 0, 4]);
            }
            h
        };
        let record = |caplen: u32| {
            let data = vec![1; caplen as usize];
            [&u32b(1)[..], &u32b(2), &u32b(caplen), &u32b(caplen), &data].concat()
        };
        let head = |snaplen: u32| [header(snaplen), record(60)].concat();
        let at = (24 + 16 + frame.len()) as u64;
        for (snaplen, caplen, fits) in [
            (65_535, 262_144, true),
            (65_535, 262_145, false),
            (0, 262_144, true),
            (0, 262_145, false),
            (1 << 20, 1 << 20, true),
            (1 << 20, (1 << 20) + 1, false),
        ] {
            let bytes = [head(snaplen), record(caplen), record(60)].concat();
            let name = format!("snap-{snaplen}-{caplen}-{big_endian}.pcap");
            if fits {
                let got = read_all(&name, bytes);
                assert_eq!((got.frames, got.error.map(|e| e.to_string())), (3, None));
            } else {
                assert_eq!(corrupt_at(&name, bytes), (at, 1), "{name}");
            }
        }
    }
}
