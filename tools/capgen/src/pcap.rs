//! Capture writers: classic pcap (micro- or nanosecond, either byte order)
//! and pcapng, so tests can feed flowtap the same packets in every format.

use std::io::{self, BufWriter, Write};

pub const LINKTYPE_ETHERNET: u32 = 1;

/// The file formats the writer can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap {
        nanos: bool,
        big_endian: bool,
    },
    /// pcapng with one Ethernet interface (nanosecond resolution) and a
    /// second, unused one at microsecond resolution, as multi-interface
    /// captures have.
    PcapNg,
}

impl Default for Format {
    fn default() -> Self {
        Format::Pcap {
            nanos: true,
            big_endian: false,
        }
    }
}

const SNAPLEN: u32 = 262_144;

pub struct PcapWriter<W: Write> {
    out: BufWriter<W>,
    format: Format,
    snaplen: usize,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(inner: W, linktype: u32) -> io::Result<PcapWriter<W>> {
        PcapWriter::with_format(inner, linktype, Format::default())
    }

    pub fn with_format(inner: W, linktype: u32, format: Format) -> io::Result<PcapWriter<W>> {
        let mut w = PcapWriter {
            out: BufWriter::with_capacity(1 << 20, inner),
            format,
            snaplen: SNAPLEN as usize,
        };
        match format {
            Format::Pcap { nanos, .. } => {
                let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
                w.u32(magic)?;
                w.u16(2)?;
                w.u16(4)?;
                w.u32(0)?;
                w.u32(0)?;
                w.u32(SNAPLEN)?;
                w.u32(linktype)?;
            }
            Format::PcapNg => {
                // Section header block: byte-order magic, version 1.0, unknown length.
                w.u32(0x0a0d_0d0a)?;
                w.u32(28)?;
                w.u32(0x1a2b_3c4d)?;
                w.u16(1)?;
                w.u16(0)?;
                w.out.write_all(&(-1i64).to_le_bytes())?;
                w.u32(28)?;
                w.interface(linktype, 9)?;
                w.interface(linktype, 6)?;
            }
        }
        Ok(w)
    }

    /// An interface description block with `if_tsresol` = 10^-`exponent`.
    fn interface(&mut self, linktype: u32, exponent: u8) -> io::Result<()> {
        self.u32(1)?;
        self.u32(32)?;
        self.u16(linktype as u16)?;
        self.u16(0)?;
        self.u32(SNAPLEN)?;
        // Option if_tsresol (code 9, length 1, padded), then opt_endofopt.
        self.u16(9)?;
        self.u16(1)?;
        self.out.write_all(&[exponent, 0, 0, 0])?;
        self.u32(0)?;
        self.u32(32)
    }

    /// Stores at most `snaplen` bytes of each frame from now on (the header
    /// keeps announcing the format's maximum).
    pub fn set_snaplen(&mut self, snaplen: u32) {
        self.snaplen = snaplen as usize;
    }

    /// Writes one record: `data` as captured (cut to the snaplen), `orig_len`
    /// as on the wire.
    pub fn write(&mut self, ts_ns: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
        let data = &data[..data.len().min(self.snaplen)];
        match self.format {
            Format::Pcap { nanos, .. } => {
                let frac = ts_ns % 1_000_000_000;
                self.u32((ts_ns / 1_000_000_000) as u32)?;
                self.u32(if nanos { frac } else { frac / 1000 } as u32)?;
                self.u32(data.len() as u32)?;
                self.u32(orig_len)?;
                self.out.write_all(data)
            }
            Format::PcapNg => {
                let padded = data.len().div_ceil(4) * 4;
                let block_len = (32 + padded) as u32;
                self.u32(6)?;
                self.u32(block_len)?;
                self.u32(0)?;
                self.u32((ts_ns >> 32) as u32)?;
                self.u32(ts_ns as u32)?;
                self.u32(data.len() as u32)?;
                self.u32(orig_len)?;
                self.out.write_all(data)?;
                self.out.write_all(&[0; 3][..padded - data.len()])?;
                self.u32(block_len)
            }
        }
    }

    pub fn finish(self) -> io::Result<W> {
        self.out.into_inner().map_err(|e| e.into_error())
    }

    fn big_endian(&self) -> bool {
        matches!(
            self.format,
            Format::Pcap {
                big_endian: true,
                ..
            }
        )
    }

    fn u32(&mut self, v: u32) -> io::Result<()> {
        let bytes = if self.big_endian() {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.write_all(&bytes)
    }

    fn u16(&mut self, v: u16) -> io::Result<()> {
        let bytes = if self.big_endian() {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.write_all(&bytes)
    }
}
