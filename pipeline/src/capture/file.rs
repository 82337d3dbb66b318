//! A streaming reader over one pcap or pcapng file, built on pcap-parser.
//!
//! The file is read through a bounded circular buffer, never loaded whole.
//! Every error names the file and the byte offset of the record at fault.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pcap_parser::pcapng::{Block, PcapNGOption};
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};

use super::compressed::{self, Compression};
use super::pipe::{self, Pipe, Waiting};
use crate::source::Frame;
use crate::time::SECOND;
use crate::wire::dissect::LinkType;

/// Initial read buffer; large enough for any ordinary record.
const BUFFER_BYTES: usize = 1 << 20;

/// Largest record accepted, with its header: the read buffer grows to it
/// and no further. pcap writers cap snaplen at 256 KiB; pcapng blocks add
/// options. Anything larger is corrupt, and refusing it bounds the memory a
/// hostile file can make us allocate.
pub const MAX_RECORD_BYTES: usize = 8 << 20;

/// How classic pcap files begin: the magic in either byte order, with
/// micro- or nanosecond timestamps; then the little-endian magic of the
/// "modified" pcap format (Alexey Kuznetzov's patches, longer record
/// headers), which pcap-parser reads in that byte order only.
const PCAP_MAGICS: [[u8; 4]; 5] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
    [0x34, 0xcd, 0xb2, 0xa1],
];
/// The "modified" format's magic written on a big-endian host, which
/// pcap-parser does not read: refused, saying what converts it.
const PCAP_MODIFIED_BIG_ENDIAN_MAGIC: [u8; 4] = [0xa1, 0xb2, 0xcd, 0x34];
/// A classic pcap file's header.
const PCAP_HEADER_BYTES: usize = 24;
/// The largest record a classic pcap file may hold whatever its snap
/// length: libpcap's maximum snapshot length, above which libpcap and
/// Wireshark refuse a record as corrupt.
const PCAP_MAX_SNAPLEN: u32 = 262_144;
/// How pcapng files begin: the section header block's type.
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// The 32-bit word at `at` in `buf`, in the given byte order.
fn u32_at(buf: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let b: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

/// The byte order a section header block (at the start of `block`) says
/// its section is in, by its byte-order magic; `None` if it says neither.
fn section_big_endian(block: &[u8]) -> Option<bool> {
    match block.get(8..12)? {
        [0x1a, 0x2b, 0x3c, 0x4d] => Some(true),
        [0x4d, 0x3c, 0x2b, 0x1a] => Some(false),
        _ => None,
    }
}

/// The file's header, read whole (or to the input's end): pcap's 24
/// bytes, or pcapng's first section header block (its length from its own
/// fields, at most [`MAX_RECORD_BYTES`]), or just the first 12 bytes of
/// anything else.
fn read_header(input: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut fill = |head: &mut Vec<u8>, upto: usize| -> std::io::Result<()> {
        let missing = upto.saturating_sub(head.len());
        input.take(missing as u64).read_to_end(head).map(drop)
    };
    fill(&mut head, 12)?;
    let whole = match head.get(..12) {
        Some(h) if h[..4] == PCAPNG_MAGIC => {
            let big_endian = section_big_endian(h).unwrap_or(false);
            let length = u32_at(h, 4, big_endian).unwrap_or(0);
            (length as usize).min(MAX_RECORD_BYTES)
        }
        Some(h) if PCAP_MAGICS.iter().any(|m| h[..4] == *m) => PCAP_HEADER_BYTES,
        _ => 0,
    };
    fill(&mut head, whole)?;
    Ok(head)
}

/// Interfaces one pcapng section may describe: far more than any capture
/// has, few enough that a hostile file cannot grow the list without bound.
pub const MAX_INTERFACES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: DisplayPath,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file (unrecognised header at byte offset 0)")]
    NotACapture { path: DisplayPath },
    #[error(
        "{path}: a big-endian \"modified\" pcap (Kuznetzov's format), which flowtap does not read: \
         convert it first ({command})"
    )]
    ModifiedBigEndian {
        path: DisplayPath,
        /// What converts it.
        command: String,
    },
    #[error("{path}: compressed with {compressor}: decompress it first ({command} | flowtap -r -)")]
    Compressed {
        path: DisplayPath,
        compressor: &'static str,
        /// What writes the capture to standard output.
        command: String,
    },
    #[error("{path}: file is empty")]
    Empty { path: DisplayPath },
    /// At offset 0 what is cut is the file's header (a pcap's, a pcapng
    /// section header): said so, not as a record.
    #[error(
        "{path}: cut off in the middle of {} at byte offset {offset} ({frames} frames read before it)",
        if *offset == 0 { "its file header" } else { "a record" }
    )]
    Truncated {
        path: DisplayPath,
        offset: u64,
        frames: u64,
    },
    #[error("{path}: unsupported link type {linktype} at byte offset {offset}")]
    UnsupportedLinkType {
        path: DisplayPath,
        offset: u64,
        linktype: i32,
    },
    #[error(
        "{path}: record at byte offset {offset} is larger than {limit} bytes; the file is corrupt"
    )]
    RecordTooLarge {
        path: DisplayPath,
        offset: u64,
        limit: usize,
    },
    #[error("{path}: corrupt data at byte offset {offset}: {detail}")]
    Corrupt {
        path: DisplayPath,
        offset: u64,
        detail: String,
    },
    #[error("{path}: read error at byte offset {offset}: {cause}")]
    Read {
        path: DisplayPath,
        offset: u64,
        cause: String,
    },
    /// Not an error of the file's: reading was asked to stop (a stop
    /// signal, [`crate::source::FileSource::stop_when`]).
    #[error("{path}: read up to byte offset {offset} ({frames} frames), the rest not read")]
    Stopped {
        path: DisplayPath,
        offset: u64,
        frames: u64,
    },
}

/// A path shown the way a user typed it, and the compression its bytes
/// are read through: an error's byte offset is then one of the
/// decompressed data, as tshark's are.
#[derive(Debug, Clone)]
pub struct DisplayPath {
    pub path: PathBuf,
    pub through: Option<Compression>,
}

impl fmt::Display for DisplayPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.display().fmt(f)?;
        match self.through {
            Some(c) => write!(f, " (decompressed from {})", c.name()),
            None => Ok(()),
        }
    }
}

impl DisplayPath {
    /// The command that writes the file to standard output through `tool`,
    /// after the decompression flowtap read it through, if any.
    /// What converts a big-endian modified pcap here into one flowtap
    /// reads.
    fn convert_command(&self) -> String {
        match self.through {
            // editcap reads this format from a file only, not a pipe.
            Some(c) => format!(
                "{} FILE > IN.pcap; editcap -F pcap IN.pcap OUT.pcap",
                c.tool()
            ),
            None => format!("editcap -F pcap {} OUT.pcap", self.path.display()),
        }
    }

    fn decompress_command(&self, tool: &str) -> String {
        match self.through {
            Some(outer) => format!("{} FILE | {tool}", outer.tool()),
            None => format!("{tool} FILE"),
        }
    }
}

/// The last error reading the input met: pcap-parser reports that a read
/// failed, not why, and why (a damaged or cut-short compressed stream, a
/// disk error) is what the user needs.
#[derive(Clone, Default)]
struct ReadFailure(Arc<Mutex<Option<String>>>);

impl ReadFailure {
    /// `input`, its errors remembered here.
    fn watch(&self, input: impl Read + Send + 'static) -> impl Read + Send + 'static {
        struct Watched<R> {
            input: R,
            failure: ReadFailure,
        }
        impl<R: Read> Read for Watched<R> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.input.read(buf).inspect_err(|e| {
                    let cause = match e.kind() {
                        std::io::ErrorKind::UnexpectedEof => {
                            format!("{e} (the file is cut short)")
                        }
                        _ => e.to_string(),
                    };
                    *self.failure.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(cause);
                })
            }
        }
        Watched {
            input,
            failure: self.clone(),
        }
    }

    /// Forgets why the last read failed (it found nothing yet).
    fn clear(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The error of a read of `path` that failed at `offset`, with why.
    fn error(&self, path: DisplayPath, offset: u64) -> CaptureError {
        let last = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        CaptureError::Read {
            path,
            offset,
            cause: last.unwrap_or_else(|| "the input could not be read".to_string()),
        }
    }
}

/// A pcapng interface, as its description block defines it.
#[derive(Clone, Copy, Debug)]
struct Interface {
    /// [`LinkType::Unreadable`] for a type flowtap cannot read: the file's
    /// other interfaces are read, and its frames counted in
    /// [`CaptureFile::unreadable`].
    link: LinkType,
    /// Timestamp units per second.
    resolution: u64,
    offset_s: i64,
    snaplen: u32,
    /// The FCS each frame keeps, in bytes (`if_fcslen`).
    fcs_bytes: u32,
    /// For an unreadable link type: its entry in
    /// [`CaptureFile::unreadable`], where its frames are counted.
    unreadable: Option<usize>,
}

/// Frames on a pcapng interface whose link type flowtap cannot read; the
/// last of [`MAX_UNREADABLE_LISTED`] entries also stands for every further
/// such interface (`further`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadableInterface {
    /// The interface's number in its section.
    pub interface: u32,
    /// The section's number in the file, from 0.
    pub section: u32,
    pub linktype: i32,
    pub frames: u64,
    /// Interfaces after it, beyond the list's bound, whose frames are
    /// counted here too.
    pub further: u64,
}

/// Unreadable interfaces listed one by one in a file's outcome. Sections
/// are unbounded: a few megabytes of sections of 4096 such interfaces made
/// a list without end (and a warning line each).
pub const MAX_UNREADABLE_LISTED: usize = 64;

impl fmt::Display for UnreadableInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} frames on interface {} (section {}) ",
            self.frames, self.interface, self.section
        )?;
        if self.further > 0 {
            write!(f, "and {} further interfaces ", self.further)?;
        }
        write!(
            f,
            "counted as non_ip: flowtap cannot read link type {}",
            self.linktype
        )?;
        if self.further > 0 {
            write!(f, " (nor theirs)")?;
        }
        Ok(())
    }
}

/// What the file's header says about its packets.
#[derive(Debug)]
enum Format {
    /// Classic pcap: one link type, micro- or nanosecond timestamps, the
    /// FCS each frame keeps, in bytes, the byte order of record headers,
    /// and the largest record length believed.
    Legacy {
        link: LinkType,
        nanos: bool,
        fcs_bytes: u32,
        big_endian: bool,
        max_caplen: u32,
    },
    /// pcapng: per-interface link types and resolutions, and the
    /// section's byte order (for blocks pcap-parser leaves unparsed).
    Ng {
        interfaces: Vec<Interface>,
        big_endian: bool,
    },
}

impl Format {
    /// Whether this is a big-endian pcapng section: the byte order of the
    /// fields pcap-parser leaves to flowtap (options, unknown blocks).
    fn big_endian(&self) -> bool {
        matches!(
            self,
            Format::Ng {
                big_endian: true,
                ..
            }
        )
    }

    /// An unknown pcapng block's type, which pcap-parser reads as little
    /// endian whatever the section's byte order.
    fn block_type(&self, as_read: u32) -> u32 {
        if self.big_endian() {
            as_read.swap_bytes()
        } else {
            as_read
        }
    }
}

pub struct CaptureFile {
    path: DisplayPath,
    reader: Box<dyn PcapReaderIterator + Send>,
    read_failure: ReadFailure,
    /// Bytes the reader's input is to pass over unread ([`Passing`]).
    pass: Arc<AtomicU64>,
    /// Bytes passed over so far, which the reader's count of bytes
    /// consumed does not hold (counted as [`Passing`] reads them, so that
    /// an offset inside a block passed over is where reading got to).
    passed: Arc<AtomicU64>,
    /// A stream's: whether a read found nothing yet ([`pipe`]).
    waiting: Option<Waiting>,
    /// The last [`CaptureFile::read_frames`] stopped because the stream
    /// brought nothing yet, not at its end.
    nothing_yet: bool,
    format: Format,
    buffer_bytes: usize,
    frames: u64,
    last_ts_ns: u64,
    done: bool,
    /// Sections begun so far.
    sections: u32,
    unreadable: Vec<UnreadableInterface>,
}

impl fmt::Debug for CaptureFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureFile")
            .field("path", &self.path)
            .field("frames", &self.frames)
            .finish()
    }
}

impl CaptureFile {
    /// Opens the capture file at `path`; `-` is standard input, as
    /// tcpdump and tshark read it (`zcat F.pcap.gz | flowtap -r -`).
    pub fn open(path: &Path) -> Result<CaptureFile, CaptureError> {
        if path == Path::new("-") {
            return CaptureFile::from_pipe(path, std::io::stdin());
        }
        let open_error = |source| CaptureError::Open {
            path: DisplayPath {
                path: path.to_path_buf(),
                through: None,
            },
            source,
        };
        let file = File::open(path).map_err(open_error)?;
        // Opening a directory succeeds; reading it fails with an error that
        // pcap-parser does not pass on.
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(open_error(std::io::Error::other("it is a directory")));
        }
        if file
            .metadata()
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()))
        {
            return CaptureFile::from_pipe(path, file);
        }
        CaptureFile::from_reader(path, file)
    }

    /// Reads a stream (standard input, a FIFO) on a thread of its own
    /// ([`pipe`]): a read that finds nothing yet returns what it read, and
    /// [`CaptureFile::nothing_yet`] says so, rather than wait.
    pub fn from_pipe(
        path: &Path,
        input: impl Read + Send + 'static,
    ) -> Result<CaptureFile, CaptureError> {
        let pipe = Pipe::new(input).map_err(|source| CaptureError::Open {
            path: DisplayPath {
                path: path.to_path_buf(),
                through: None,
            },
            source,
        })?;
        let (waiting, blocking) = (pipe.waiting(), pipe.blocking());
        // The header is waited for; then reads stop waiting, but for a
        // compressed stream's: a decompressor told mid-block that nothing
        // came loses what it read of the block (ruzstd reads a block
        // whole), and the stream read on was misread.
        let mut file = CaptureFile::from_reader(path, pipe)?;
        if file.path.through.is_none() {
            pipe::stop_blocking(&blocking);
            file.waiting = Some(waiting);
        }
        Ok(file)
    }

    /// Whether the last [`CaptureFile::read_frames`] stopped because its
    /// stream brought nothing yet (it is not at its end: read again later).
    pub fn nothing_yet(&self) -> bool {
        self.nothing_yet
    }

    /// Refills the read buffer; `true` where its stream brought nothing
    /// yet ([`Self::from_pipe`]: [`Self::nothing_yet`] then says so), the
    /// read's error at `offset` where it failed.
    fn refill_or_wait(&mut self, offset: u64) -> Result<bool, CaptureError> {
        if self.reader.refill().is_ok() {
            return Ok(false);
        }
        if self.waiting.as_ref().is_some_and(Waiting::take) {
            self.read_failure.clear();
            self.nothing_yet = true;
            return Ok(true);
        }
        Err(self.read_error(offset))
    }

    /// Reads a capture from any byte stream (a pipe, memory), named `path`
    /// in errors.
    pub fn from_reader(
        path: &Path,
        input: impl Read + Send + 'static,
    ) -> Result<CaptureFile, CaptureError> {
        let display = DisplayPath {
            path: path.to_path_buf(),
            through: None,
        };
        CaptureFile::from_stream(display, Box::new(input))
    }

    fn from_stream(
        display: DisplayPath,
        input: Box<dyn Read + Send>,
    ) -> Result<CaptureFile, CaptureError> {
        let read_failure = ReadFailure::default();
        let mut input = read_failure.watch(input);
        let read_error = |display: DisplayPath| read_failure.error(display, 0);
        // pcap-parser recognises the file from what its first read brings,
        // which from a pipe may be a few bytes: the file's header is read
        // whole first (and no more: a pipe fed slowly is read as it comes),
        // and its magic tells a capture whose header is cut short from a
        // file that is not a capture.
        let head = read_header(&mut input).map_err(|_| read_error(display.clone()))?;
        // A compressed capture is read through its decompressor; once only,
        // so that a compressed file inside is refused.
        match (display.through, Compression::of(&head)) {
            (None, Some(compression)) => {
                let decompressed = compression.decoder(std::io::Cursor::new(head).chain(input));
                let display = DisplayPath {
                    through: Some(compression),
                    ..display
                };
                return CaptureFile::from_stream(display, decompressed);
            }
            (Some(_), Some(inner)) => {
                let command = display.decompress_command(inner.tool());
                return Err(CaptureError::Compressed {
                    path: display,
                    compressor: inner.name(),
                    command,
                });
            }
            _ => {}
        }
        let magic = head.get(..4).map(<[u8]>::to_vec);
        // A section header past the largest record read (its length from
        // its own fields): refused as any record that large is.
        if let Some(h) = head.get(..12)
            && h[..4] == PCAPNG_MAGIC
            && u32_at(h, 4, section_big_endian(h).unwrap_or(false))
                .is_some_and(|length| length as usize > MAX_RECORD_BYTES)
        {
            return Err(CaptureError::RecordTooLarge {
                path: display,
                offset: 0,
                limit: MAX_RECORD_BYTES,
            });
        }
        // Enough to tell the compressors apart.
        let start: Vec<u8> = head.iter().take(6).copied().collect();
        // The reader parses the first block whole from its buffer: one as
        // large as it (a long capture comment in a section header) was
        // said to be cut off at offset 0.
        let buffer_bytes = head.len().next_power_of_two().max(BUFFER_BYTES);
        let (pass, passed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let input = Passing {
            input: std::io::Cursor::new(head).chain(input),
            pass: pass.clone(),
            passed: passed.clone(),
            failure: read_failure.clone(),
        };
        let reader = match pcap_parser::create_reader(buffer_bytes, input) {
            Ok(reader) => reader,
            Err(PcapError::Eof) => return Err(CaptureError::Empty { path: display }),
            Err(PcapError::Incomplete(_)) => {
                return Err(CaptureError::Truncated {
                    path: display,
                    offset: 0,
                    frames: 0,
                });
            }
            Err(PcapError::ReadError) => return Err(read_error(display)),
            Err(_)
                if PCAP_MAGICS
                    .iter()
                    .chain([&PCAPNG_MAGIC])
                    .any(|m| magic.as_deref() == Some(m)) =>
            {
                return Err(CaptureError::Truncated {
                    path: display,
                    offset: 0,
                    frames: 0,
                });
            }
            Err(_) => {
                return Err(match compressed::refused(&start) {
                    Some((compressor, tool)) => CaptureError::Compressed {
                        command: display.decompress_command(tool),
                        path: display,
                        compressor,
                    },
                    None if magic.as_deref() == Some(&PCAP_MODIFIED_BIG_ENDIAN_MAGIC) => {
                        CaptureError::ModifiedBigEndian {
                            command: display.convert_command(),
                            path: display,
                        }
                    }
                    None => CaptureError::NotACapture { path: display },
                });
            }
        };
        Ok(CaptureFile {
            path: display,
            reader,
            read_failure,
            pass,
            passed,
            waiting: None,
            nothing_yet: false,
            format: Format::Ng {
                interfaces: Vec::new(),
                big_endian: false,
            },
            buffer_bytes,
            frames: 0,
            last_ts_ns: 0,
            done: false,
            sections: 0,
            unreadable: Vec::new(),
        })
    }

    /// The pcapng interfaces whose link type flowtap cannot read, with the
    /// frames on each (delivered as [`LinkType::Unreadable`]).
    pub fn unreadable(&self) -> &[UnreadableInterface] {
        &self.unreadable
    }

    pub fn path(&self) -> &Path {
        &self.path.path
    }

    /// Why reading ends here when it is asked to stop.
    pub fn stopped(&self) -> CaptureError {
        CaptureError::Stopped {
            path: self.path.clone(),
            offset: self.offset(),
            frames: self.frames,
        }
    }

    fn read_error(&self, offset: u64) -> CaptureError {
        self.read_failure.error(self.path.clone(), offset)
    }

    /// Frames delivered so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes of the capture consumed so far (of the decompressed data, for
    /// a compressed file).
    pub fn offset(&self) -> u64 {
        self.reader.consumed() as u64 + self.passed.load(Ordering::Relaxed)
    }

    /// Passes over the pcapng block at the head of the buffer, too large
    /// to read whole, where it holds no packet (a Decryption Secrets Block
    /// of a large TLS key log, which `editcap --inject-secrets` writes; a
    /// custom block): the packets after it are read, where the whole
    /// capture was refused. Returns whether it did. Its length at its end
    /// goes unchecked.
    fn pass_over(&mut self) -> bool {
        let Format::Ng { big_endian, .. } = self.format else {
            return false;
        };
        let data = self.reader.data();
        let (Some(kind), Some(length)) = (u32_at(data, 0, big_endian), u32_at(data, 4, big_endian))
        else {
            return false;
        };
        let buffered = data.len();
        let holds_packets = matches!(
            kind,
            SECTION_HEADER_BLOCK
                | INTERFACE_DESCRIPTION_BLOCK
                | OBSOLETE_PACKET_BLOCK
                | SIMPLE_PACKET_BLOCK
                | ENHANCED_PACKET_BLOCK
        );
        if self.sections == 0 || holds_packets || length as usize <= buffered {
            return false;
        }
        let unread = u64::from(length) - buffered as u64;
        self.reader.consume_noshift(buffered);
        self.pass.store(unread, Ordering::Relaxed);
        true
    }

    /// Checks the lengths the record at the head of the read buffer (at
    /// `offset` in the file) declares, before pcap-parser reads it.
    /// pcap-parser checks a pcapng block's total length at both ends for
    /// some block types only (one a word too long swallowed the next
    /// block's type and reading went astray; one shorter than a block's
    /// fixed fields made it panic), and a classic pcap record's length not
    /// at all (the buffer grew to whatever a damaged header claimed).
    /// Returns whether the buffer holds the whole pcapng block, as long as
    /// its total length says: pcap-parser asking for more then means a
    /// field inside the block runs past its end.
    fn check_lengths(&self, offset: u64) -> Result<bool, CaptureError> {
        let head = self.reader.data();
        let word = |at: usize, big_endian: bool| u32_at(head, at, big_endian);
        let big_endian = match &self.format {
            Format::Legacy {
                big_endian,
                max_caplen,
                ..
            } => {
                // Every record header, modified or not, has the captured
                // length at byte 8.
                return match word(8, *big_endian) {
                    Some(caplen) if caplen > *max_caplen => Err(corrupt(
                        &self.path,
                        offset,
                        &format!(
                            "record of {caplen} captured bytes, more than the file's snap length or libpcap's largest ({max_caplen})"
                        ),
                    )),
                    _ => Ok(false),
                };
            }
            // A section header block says its own byte order; pcap-parser
            // refuses one that says neither.
            Format::Ng { .. } if head.starts_with(&PCAPNG_MAGIC) => {
                match section_big_endian(head) {
                    Some(big_endian) => big_endian,
                    None => return Ok(false),
                }
            }
            // Before any header: a classic pcap file's, which pcap-parser
            // checks.
            Format::Ng { .. } if self.sections == 0 => return Ok(false),
            Format::Ng { big_endian, .. } => *big_endian,
        };
        let Some(length) = word(4, big_endian) else {
            return Ok(false);
        };
        // pcapng §3.1: type, length, body padded to 32 bits, length.
        let fault = if length < 12 || length % 4 != 0 {
            format!("block total length {length} (at least 12, a multiple of 4)")
        } else {
            match word(length as usize - 4, big_endian) {
                None => return Ok(false),
                Some(end) if end != length => {
                    format!("block total length {length} at its start, {end} at its end")
                }
                Some(_) => return Ok(true),
            }
        };
        Err(corrupt(&self.path, offset, &fault))
    }

    /// Calls `on_frame` for up to `max` frames. Returns how many were
    /// delivered; zero means the end of the file.
    pub fn read_frames(
        &mut self,
        max: usize,
        mut on_frame: impl FnMut(Frame<'_>),
    ) -> Result<usize, CaptureError> {
        let mut delivered = 0;
        self.nothing_yet = false;
        while delivered < max && !self.done {
            let offset = self.offset();
            let whole_block = self.check_lengths(offset)?;
            match self.reader.next() {
                Ok((len, block)) => {
                    let frame = match block {
                        PcapBlockOwned::LegacyHeader(header) => {
                            let (link, fcs_bytes) = legacy_link(&self.path, header.network.0, 20)?;
                            self.format = Format::Legacy {
                                link,
                                nanos: header.is_nanosecond_precision(),
                                fcs_bytes,
                                big_endian: header.is_bigendian(),
                                // A snap length of 0 means none.
                                max_caplen: header.snaplen.max(PCAP_MAX_SNAPLEN),
                            };
                            None
                        }
                        PcapBlockOwned::Legacy(record) => {
                            let Format::Legacy {
                                link,
                                nanos,
                                fcs_bytes,
                                ..
                            } = self.format
                            else {
                                return Err(corrupt(
                                    &self.path,
                                    offset,
                                    "pcap record before the file header",
                                ));
                            };
                            let frac = if nanos { 1 } else { 1_000 };
                            let ts_ns = u64::from(record.ts_sec) * SECOND
                                + u64::from(record.ts_usec) * frac;
                            let data = record.data;
                            let frame = Frame {
                                ts_ns,
                                wire_len: record.origlen.max(data.len() as u32),
                                link,
                                data,
                            };
                            Some((without_fcs(frame, fcs_bytes), 0))
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                            // A new major version is a format this reader
                            // does not know (pcapng, Section Header Block).
                            if shb.major_version != 1 {
                                return Err(corrupt(
                                    &self.path,
                                    offset,
                                    &format!(
                                        "pcapng section of version {}.{} (this reader knows 1.x)",
                                        shb.major_version, shb.minor_version
                                    ),
                                ));
                            }
                            // A new section redefines its interfaces.
                            self.format = Format::Ng {
                                interfaces: Vec::new(),
                                big_endian: shb.big_endian(),
                            };
                            self.sections += 1;
                            None
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            let code = idb.linktype.0;
                            let link = u32::try_from(code)
                                .ok()
                                .and_then(LinkType::from_pcap)
                                .unwrap_or(LinkType::Unreadable);
                            let Some(mut iface) = Interface::described(
                                link,
                                idb.snaplen,
                                &idb.options,
                                self.format.big_endian(),
                            ) else {
                                return Err(corrupt(
                                    &self.path,
                                    offset,
                                    "invalid interface timestamp resolution",
                                ));
                            };
                            match &mut self.format {
                                Format::Ng { interfaces, .. }
                                    if interfaces.len() >= MAX_INTERFACES =>
                                {
                                    return Err(corrupt(
                                        &self.path,
                                        offset,
                                        &format!(
                                            "more than {MAX_INTERFACES} interfaces described in one section"
                                        ),
                                    ));
                                }
                                Format::Ng { interfaces, .. } => {
                                    if link == LinkType::Unreadable {
                                        if self.unreadable.len() < MAX_UNREADABLE_LISTED {
                                            self.unreadable.push(UnreadableInterface {
                                                interface: interfaces.len() as u32,
                                                section: self.sections.saturating_sub(1),
                                                linktype: code,
                                                frames: 0,
                                                further: 0,
                                            });
                                        } else if let Some(last) = self.unreadable.last_mut() {
                                            last.further += 1;
                                        }
                                        iface.unreadable = Some(self.unreadable.len() - 1);
                                    }
                                    interfaces.push(iface)
                                }
                                Format::Legacy { .. } => {
                                    unreachable!("pcap-parser reads one format per file")
                                }
                            }
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            let iface = interface(&self.format, epb.if_id, &self.path, offset)?;
                            let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let caplen = (epb.caplen as usize).min(epb.data.len());
                            let frame = Frame {
                                ts_ns: ng_timestamp(units, iface),
                                wire_len: epb.origlen.max(caplen as u32),
                                link: iface.link,
                                data: &epb.data[..caplen],
                            };
                            let fcs_bytes = epb_fcs_bytes(&epb.options, self.format.big_endian())
                                .unwrap_or(iface.fcs_bytes);
                            Some((without_fcs(frame, fcs_bytes), epb.if_id))
                        }
                        PcapBlockOwned::NG(Block::Unknown(block))
                            if self.format.block_type(block.block_type)
                                == OBSOLETE_PACKET_BLOCK =>
                        {
                            let Format::Ng { big_endian, .. } = self.format else {
                                unreachable!("pcap-parser reads one format per file")
                            };
                            let Some(packet) = ObsoletePacket::parse(block.data, big_endian) else {
                                return Err(corrupt(
                                    &self.path,
                                    offset,
                                    "packet block shorter than its fields",
                                ));
                            };
                            let iface = interface(
                                &self.format,
                                u32::from(packet.if_id),
                                &self.path,
                                offset,
                            )?;
                            let frame = Frame {
                                ts_ns: ng_timestamp(packet.units, iface),
                                wire_len: packet.origlen.max(packet.data.len() as u32),
                                link: iface.link,
                                data: packet.data,
                            };
                            Some((without_fcs(frame, iface.fcs_bytes), u32::from(packet.if_id)))
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            let iface = interface(&self.format, 0, &self.path, offset)?;
                            let mut caplen = (spb.origlen as usize).min(spb.data.len());
                            if iface.snaplen != 0 {
                                caplen = caplen.min(iface.snaplen as usize);
                            }
                            // Simple packet blocks carry no timestamp.
                            let frame = Frame {
                                ts_ns: self.last_ts_ns,
                                wire_len: spb.origlen,
                                link: iface.link,
                                data: &spb.data[..caplen],
                            };
                            Some((without_fcs(frame, iface.fcs_bytes), 0))
                        }
                        PcapBlockOwned::NG(_) => None,
                    };
                    if let Some((frame, if_id)) = frame {
                        // Its entry at once (a search of the list made a
                        // file of many such interfaces quadratic).
                        if frame.link == LinkType::Unreadable
                            && let Format::Ng { interfaces, .. } = &self.format
                            && let Some(at) =
                                interfaces.get(if_id as usize).and_then(|i| i.unreadable)
                            && let Some(u) = self.unreadable.get_mut(at)
                        {
                            u.frames += 1;
                        }
                        self.last_ts_ns = frame.ts_ns;
                        self.frames += 1;
                        delivered += 1;
                        on_frame(frame);
                    }
                    // Without the shift `consume` makes whenever half the
                    // buffer is consumed (moving the other half to the
                    // front, only for the next read to fill half): the
                    // buffer is read to its end, and `refill` moves just
                    // the partial record left there before reading it full.
                    self.reader.consume_noshift(len);
                }
                Err(PcapError::Eof) => self.done = true,
                // pcap-parser asks for more than the block holds when a
                // field inside it (an EPB's captured length, an option's
                // length) runs past its end: more bytes would only be the
                // next block's.
                Err(
                    PcapError::Incomplete(_) | PcapError::BufferTooSmall | PcapError::UnexpectedEof,
                ) if whole_block => {
                    return Err(corrupt(
                        &self.path,
                        offset,
                        "a field runs past the end of its block",
                    ));
                }
                Err(PcapError::Incomplete(_)) => {
                    if self.refill_or_wait(offset)? {
                        return Ok(delivered);
                    }
                }
                Err(PcapError::BufferTooSmall) => {
                    if self.buffer_bytes >= MAX_RECORD_BYTES {
                        if self.pass_over() {
                            continue;
                        }
                        return Err(CaptureError::RecordTooLarge {
                            path: self.path.clone(),
                            offset,
                            limit: MAX_RECORD_BYTES,
                        });
                    }
                    self.buffer_bytes *= 2;
                    self.reader.grow(self.buffer_bytes);
                    if self.refill_or_wait(offset)? {
                        return Ok(delivered);
                    }
                }
                Err(PcapError::UnexpectedEof) => {
                    return Err(CaptureError::Truncated {
                        path: self.path.clone(),
                        offset,
                        frames: self.frames,
                    });
                }
                Err(PcapError::ReadError) => return Err(self.read_error(offset)),
                Err(e) => {
                    let detail = match e {
                        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
                            format!("unparseable block ({kind:?})")
                        }
                        other => format!("{other:?}"),
                    };
                    return Err(CaptureError::Corrupt {
                        path: self.path.clone(),
                        offset,
                        detail,
                    });
                }
            }
        }
        Ok(delivered)
    }
}

/// A pcap file header's "LinkType and additional information" (pcap,
/// draft-ietf-opsawg-pcap §4): the link type in the low 16 bits; above
/// them 10 reserved bits, the P bit (0x0400_0000) saying the top 4 bits
/// are the length of the FCS each frame keeps, in 16-bit words, and a
/// reserved R bit. Returns the link type and that FCS's length in bytes. A
/// reserved bit set is refused, as tshark refuses it.
fn legacy_link(
    path: &DisplayPath,
    field: i32,
    offset: u64,
) -> Result<(LinkType, u32), CaptureError> {
    const RESERVED: u32 = 0x0bff_0000;
    const FCS_LEN_VALID: u32 = 0x0400_0000;
    let bits = field as u32;
    let fcs_bytes = if bits & FCS_LEN_VALID != 0 {
        (bits >> 28) * 2
    } else {
        0
    };
    Some(bits & 0xffff)
        .filter(|_| bits & RESERVED == 0)
        .and_then(LinkType::from_pcap)
        .map(|link| (link, fcs_bytes))
        .ok_or_else(|| CaptureError::UnsupportedLinkType {
            path: path.clone(),
            offset,
            linktype: field,
        })
}

/// pcapng option codes read here rather than by pcap-parser (pcapng,
/// draft-ietf-opsawg-pcapng §4.2 and §4.3).
const IF_TSRESOL: u16 = 9;
const IF_FCSLEN: u16 = 13;
const IF_TSOFFSET: u16 = 14;
const EPB_FLAGS: u16 = 2;

/// The value of the first option of `code` (its declared length, without
/// the padding).
fn option_value<'o>(options: &'o [PcapNGOption<'_>], code: u16) -> Option<&'o [u8]> {
    let option = options.iter().find(|o| o.code.0 == code)?;
    option.value().get(..usize::from(option.len))
}

impl Interface {
    /// The interface an IDB describes, or `None` for a timestamp resolution
    /// beyond what 64 bits hold. Read here rather than by pcap-parser 0.17,
    /// which refuses every power-of-two resolution (`if_tsresol` with its
    /// top bit set: it checks the bound before taking the bit off) and
    /// reads `if_tsoffset` little-endian in a big-endian section too.
    fn described(
        link: LinkType,
        snaplen: u32,
        options: &[PcapNGOption<'_>],
        big_endian: bool,
    ) -> Option<Interface> {
        // Without the option, microseconds. The resolution is 10^-n, or
        // 2^-n with the top bit set.
        let tsresol = option_value(options, IF_TSRESOL)
            .and_then(|v| v.first().copied())
            .unwrap_or(6);
        let n = u32::from(tsresol & 0x7f);
        let resolution = if tsresol & 0x80 == 0 {
            10u64.checked_pow(n)?
        } else {
            1u64.checked_shl(n)?
        };
        let offset_s = option_value(options, IF_TSOFFSET)
            .and_then(|v| <[u8; 8]>::try_from(v.get(..8)?).ok())
            .map_or(0, |b| {
                if big_endian {
                    i64::from_be_bytes(b)
                } else {
                    i64::from_le_bytes(b)
                }
            });
        // In bits by the draft, in bytes as Wireshark writes and reads it
        // (an open question upstream): 2 and 4 are bytes, 16 and 32 bits;
        // any other length is not believed.
        let fcs_bytes = match option_value(options, IF_FCSLEN).and_then(|v| v.first()) {
            Some(&n @ (2 | 4)) => u32::from(n),
            Some(&n @ (16 | 32)) => u32::from(n) / 8,
            _ => 0,
        };
        Some(Interface {
            link,
            resolution,
            offset_s,
            snaplen,
            fcs_bytes,
            unreadable: None,
        })
    }
}

/// The FCS length an EPB's `epb_flags` give (bits 5-8, in bytes; it
/// overrides the interface's `if_fcslen`), if they give one.
fn epb_fcs_bytes(options: &[PcapNGOption<'_>], big_endian: bool) -> Option<u32> {
    let flags = <[u8; 4]>::try_from(option_value(options, EPB_FLAGS)?.get(..4)?).ok()?;
    let flags = if big_endian {
        u32::from_be_bytes(flags)
    } else {
        u32::from_le_bytes(flags)
    };
    Some((flags >> 5) & 0xf).filter(|&n| n != 0)
}

/// `frame` without the FCS the capture says each frame keeps: bytes are
/// counted without it (README, Flows), whether or not the capturing device
/// kept it. A frame cut by a snap length may hold none of it.
fn without_fcs(frame: Frame<'_>, fcs_bytes: u32) -> Frame<'_> {
    if fcs_bytes == 0 {
        return frame;
    }
    let wire_len = frame.wire_len.saturating_sub(fcs_bytes);
    Frame {
        wire_len,
        data: &frame.data[..frame.data.len().min(wire_len as usize)],
        ..frame
    }
}

fn corrupt(path: &DisplayPath, offset: u64, detail: &str) -> CaptureError {
    CaptureError::Corrupt {
        path: path.clone(),
        offset,
        detail: detail.to_owned(),
    }
}

fn interface(
    format: &Format,
    id: u32,
    path: &DisplayPath,
    offset: u64,
) -> Result<Interface, CaptureError> {
    match format {
        Format::Ng { interfaces, .. } => interfaces.get(id as usize).copied().ok_or_else(|| {
            corrupt(
                path,
                offset,
                &format!(
                    "packet refers to interface {id}, but {} are described",
                    interfaces.len()
                ),
            )
        }),
        Format::Legacy { .. } => Err(corrupt(path, offset, "pcapng block in a pcap file")),
    }
}

/// The block type of pcapng's obsolete Packet Block, which writers before
/// the Enhanced Packet Block used and readers still read (pcap-parser
/// leaves it unparsed).
const OBSOLETE_PACKET_BLOCK: u32 = 2;

/// pcapng's other block types that hold or describe packets, which are
/// never passed over unread ([`CaptureFile::pass_over`]).
const SECTION_HEADER_BLOCK: u32 = u32::from_le_bytes(PCAPNG_MAGIC);
const INTERFACE_DESCRIPTION_BLOCK: u32 = 1;
const SIMPLE_PACKET_BLOCK: u32 = 3;
const ENHANCED_PACKET_BLOCK: u32 = 6;

/// The reader's input, which passes over as many bytes as it is told
/// before its next read, unread (a block too large to read that holds no
/// packet).
struct Passing<R> {
    input: R,
    pass: Arc<AtomicU64>,
    /// Bytes passed over so far ([`CaptureFile::offset`]).
    passed: Arc<AtomicU64>,
    failure: ReadFailure,
}

impl<R: Read> Read for Passing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut pass = self.pass.swap(0, Ordering::Relaxed);
        let mut scratch = [0u8; 8192];
        while pass > 0 {
            let want = scratch
                .len()
                .min(usize::try_from(pass).unwrap_or(usize::MAX));
            let read = match self.input.read(&mut scratch[..want]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // What is left is passed over at the next read (a
                    // pipe that brought nothing yet).
                    self.pass.store(pass, Ordering::Relaxed);
                    return Err(e);
                }
                Ok(read) => read as u64,
            };
            if read == 0 {
                let cause = "the file is cut short inside a block passed over";
                *self.failure.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(cause.into());
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    cause,
                ));
            }
            pass -= read;
            self.passed.fetch_add(read, Ordering::Relaxed);
        }
        self.input.read(buf)
    }
}

/// The fields of an obsolete Packet Block's body: interface id (16 bits),
/// drops count (16), timestamp high and low (32 each), captured and
/// original length (32 each), then the data, padded to 32 bits, and options.
struct ObsoletePacket<'a> {
    if_id: u16,
    units: u64,
    origlen: u32,
    data: &'a [u8],
}

impl<'a> ObsoletePacket<'a> {
    const HEADER: usize = 20;

    /// `None` when the body is shorter than its fields say.
    fn parse(body: &'a [u8], big_endian: bool) -> Option<ObsoletePacket<'a>> {
        let u16_at = |at: usize| {
            let b = [*body.get(at)?, *body.get(at + 1)?];
            Some(if big_endian {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            })
        };
        let u32_at = |at: usize| u32_at(body, at, big_endian);
        let caplen = u32_at(12)? as usize;
        Some(ObsoletePacket {
            if_id: u16_at(0)?,
            units: (u64::from(u32_at(4)?) << 32) | u64::from(u32_at(8)?),
            origlen: u32_at(16)?,
            data: body.get(Self::HEADER..Self::HEADER.checked_add(caplen)?)?,
        })
    }
}

fn ng_timestamp(units: u64, iface: Interface) -> u64 {
    let ns = u128::from(units) * u128::from(SECOND) / u128::from(iface.resolution.max(1));
    let offset_ns = i128::from(iface.offset_s) * i128::from(SECOND);
    (ns as i128 + offset_ns).clamp(0, i128::from(u64::MAX)) as u64
}
