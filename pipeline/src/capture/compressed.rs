//! Compressed capture files, decompressed as they are read (never whole),
//! as tshark reads them: gzip, the way MAWI, CAIDA and Wireshark's sample
//! captures are published and Wireshark's tools can write them, and
//! Zstandard. Pure-Rust decoders (flate2's miniz_oxide, ruzstd), so the
//! build needs no C library. Other compressors are named and refused
//! ([`CaptureError::Compressed`](super::CaptureError::Compressed)).

use std::io::{self, BufRead, BufReader, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// Compressions flowtap does not read through, by how their files begin:
/// the compressor's name and the tool that writes the file decompressed.
const REFUSED: [(&[u8], &str, &str); 3] = [
    (&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], "xz", "xzcat"),
    (&[0x42, 0x5a, 0x68], "bzip2", "bzcat"),
    (&[0x04, 0x22, 0x4d, 0x18], "lz4", "lz4cat"),
];

/// The compression flowtap does not read through that a stream beginning
/// with `start` is in: its name and the tool that decompresses it.
pub fn refused(start: &[u8]) -> Option<(&'static str, &'static str)> {
    REFUSED
        .iter()
        .find(|(magic, _, _)| start.starts_with(magic))
        .map(|&(_, name, tool)| (name, tool))
}

/// A compression flowtap reads through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression a stream beginning with `start` is in, by its magic.
    /// A Zstandard stream may begin with a skippable frame (`pzstd` writes
    /// one before each frame; its magics are 0x184D2A50 to 0x184D2A5F).
    pub fn of(start: &[u8]) -> Option<Compression> {
        match start {
            [0x1f, 0x8b, ..] => Some(Compression::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Compression::Zstd),
            [0x50..=0x5f, 0x2a, 0x4d, 0x18, ..] => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The tool that writes a file of this compression to standard output.
    pub fn tool(self) -> &'static str {
        match self {
            Compression::Gzip => "zcat",
            Compression::Zstd => "zstdcat",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// `input` decompressed. Every member of a gzip file and every frame
    /// of a Zstandard one is read in turn, as `zcat` and `zstdcat` read
    /// them; each one's checksum is checked, and input that ends inside
    /// one is an error ([`io::ErrorKind::UnexpectedEof`]), never a quiet
    /// end: a download cut short must not read as a shorter capture.
    pub fn decoder(self, input: impl Read + Send + 'static) -> Box<dyn Read + Send> {
        let input = BufReader::new(input);
        match self {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
            Compression::Zstd => Box::new(ZstdFrames {
                source: input,
                decoder: FrameDecoder::new(),
                in_frame: false,
                decoded: 0,
            }),
        }
    }
}

/// The frames of a Zstandard stream, one after another, skippable frames
/// skipped (RFC 8878 §3). ruzstd's own reader stops after one frame, and
/// `pzstd` writes many (each after a skippable frame), as does `cat` of
/// two files.
struct ZstdFrames<R> {
    source: R,
    decoder: FrameDecoder,
    /// Whether a frame has begun and not been read to its end.
    in_frame: bool,
    /// Bytes the frame has given so far.
    decoded: u64,
}

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {error}"))
}

fn cut_short(inside: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("zstd: the input ends inside {inside}"),
    )
}

impl<R: BufRead> ZstdFrames<R> {
    /// Whether the input has ended: an error reading a frame then means it
    /// was cut short, whatever ruzstd calls it.
    fn at_end(&mut self) -> bool {
        self.source.fill_buf().is_ok_and(|b| b.is_empty())
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                // The stream may end between frames only.
                if self.source.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                match self.decoder.reset(&mut self.source) {
                    Ok(()) => {
                        self.in_frame = true;
                        self.decoded = 0;
                    }
                    Err(FrameDecoderError::ReadFrameHeaderError(
                        ReadFrameHeaderError::SkipFrame { length, .. },
                    )) => {
                        let skipped =
                            io::copy(&mut (&mut self.source).take(length.into()), &mut io::sink())?;
                        if skipped < u64::from(length) {
                            return Err(cut_short("a skippable frame"));
                        }
                    }
                    Err(FrameDecoderError::WindowSizeTooBig { requested, max }) => {
                        return Err(invalid(format!(
                            "a frame needs a window of {requested} bytes, more than the {max} \
                             decoders allow without being told (zstd --long=31 -dc FILE | flowtap -r -)"
                        )));
                    }
                    Err(_) if self.at_end() => return Err(cut_short("a frame's header")),
                    Err(e) => return Err(invalid(e)),
                }
                continue;
            }
            while self.decoder.can_collect() == 0 && !self.decoder.is_finished() {
                let decoded = self
                    .decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1));
                match decoded {
                    Ok(_) => {}
                    // Reading a block or the checksum failed at the input's end.
                    Err(
                        FrameDecoderError::FailedToReadBlockHeader(_)
                        | FrameDecoderError::FailedToReadBlockBody(_)
                        | FrameDecoderError::FailedToReadChecksum(_),
                    ) if self.at_end() => return Err(cut_short("a frame")),
                    Err(e) => return Err(invalid(e)),
                }
            }
            let read = self.decoder.read(buf)?;
            if read > 0 {
                self.decoded += read as u64;
                return Ok(read);
            }
            // A frame that says how much it holds must hold that (0: it
            // does not say, or holds nothing).
            let declared = self.decoder.content_size();
            if declared > 0 && declared != self.decoded {
                return Err(invalid(format!(
                    "a frame says it holds {declared} bytes and gives {}",
                    self.decoded
                )));
            }
            // The frame is decoded and drained.
            let (written, computed) = (
                self.decoder.get_checksum_from_data(),
                self.decoder.get_calculated_checksum(),
            );
            if let (Some(written), Some(computed)) = (written, computed)
                && written != computed
            {
                return Err(invalid("a frame's checksum does not match its content"));
            }
            self.in_frame = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decompressed(compression: Compression, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        compression
            .decoder(io::Cursor::new(bytes))
            .read_to_end(&mut out)?;
        Ok(out)
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut encoder, data).unwrap();
        encoder.finish().unwrap()
    }

    /// Some bytes that compress, long enough for several blocks.
    fn data(seed: u8) -> Vec<u8> {
        (0..300_000u32)
            .map(|i| (i / 7) as u8 ^ seed)
            .collect::<Vec<u8>>()
    }

    #[test]
    fn every_frame_and_member_is_read_in_turn() {
        let (a, b) = (data(1), data(2));
        let whole = [a.clone(), b.clone()].concat();
        for (compression, compress) in [
            (Compression::Gzip, gzip as fn(&[u8]) -> Vec<u8>),
            (Compression::Zstd, zstd),
        ] {
            let mut stream = compress(&a);
            assert_eq!(Compression::of(&stream), Some(compression));
            if compression == Compression::Zstd {
                // A skippable frame between the two (magic 0x184D2A50,
                // little endian, then its length) and one first, as pzstd
                // writes them.
                stream.extend(SKIPPABLE);
                stream = [&SKIPPABLE[..], &stream].concat();
                assert_eq!(Compression::of(&stream), Some(compression));
            }
            stream.extend(compress(&b));
            assert_eq!(decompressed(compression, stream).unwrap(), whole);
        }
        assert_eq!(Compression::of(&[0xd4, 0xc3, 0xb2, 0xa1]), None);
    }

    /// A skippable frame of three bytes.
    const SKIPPABLE: [u8; 11] = [0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9];

    /// A zstd frame of one raw block holding `content`, saying it holds
    /// `declared` bytes (single segment, a one-byte content size).
    fn raw_frame(declared: u8, content: &[u8]) -> Vec<u8> {
        let block = 1 | (content.len() as u32) << 3; // last, raw
        [
            &[0x28, 0xb5, 0x2f, 0xfd, 0x20, declared][..],
            &block.to_le_bytes()[..3],
            content,
        ]
        .concat()
    }

    #[test]
    fn a_frame_holds_what_it_says_within_a_window_decoders_allow() {
        let z = Compression::Zstd;
        assert_eq!(decompressed(z, raw_frame(5, b"hello")).unwrap(), b"hello");
        let error = decompressed(z, raw_frame(6, b"hello")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("says it holds 6 bytes and gives 5"),
            "{error}"
        );
        // A 1 GiB window (descriptor exponent 20: 2^(10+20)), past the
        // 128 MiB zstd itself decodes without --long.
        let error = decompressed(z, vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 20 << 3]).unwrap_err();
        assert!(
            error.to_string().contains("zstd --long=31 -dc FILE"),
            "{error}"
        );
    }

    #[test]
    fn a_stream_cut_short_or_damaged_is_an_error() {
        let a = data(3);
        for (compression, compress) in [
            (Compression::Gzip, gzip as fn(&[u8]) -> Vec<u8>),
            (Compression::Zstd, zstd),
        ] {
            let stream = compress(&a);
            // Inside the header, inside the data, before the last byte.
            for cut in [5, stream.len() / 2, stream.len() - 1] {
                let error = decompressed(compression, stream[..cut].to_vec()).unwrap_err();
                assert_eq!(
                    error.kind(),
                    io::ErrorKind::UnexpectedEof,
                    "{compression:?} cut at {cut}: {error}"
                );
            }
            if compression == Compression::Zstd {
                let skipped = [&SKIPPABLE[..], &stream].concat();
                let error = decompressed(compression, skipped[..6].to_vec()).unwrap_err();
                assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
            }
            let mut damaged = stream.clone();
            let middle = damaged.len() / 2;
            damaged[middle] ^= 0x55;
            assert!(
                decompressed(compression, damaged).is_err(),
                "{compression:?}"
            );
            // Something after the last frame that is not a frame.
            let mut trailing = stream;
            trailing.extend(b"junk");
            assert!(
                decompressed(compression, trailing).is_err(),
                "{compression:?}"
            );
        }
    }
}
