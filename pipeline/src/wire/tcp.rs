//! TCP header (RFC 9293): ports, flags and data offset.

use super::{Layer, LenError, be16, be32, check_len};

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const SEQ: usize = 4;
    pub(super) const ACK: usize = 8;
    pub(super) const DATA_OFFSET: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WINDOW: usize = 14;
}

/// The fixed header; options follow up to `header_len()`.
pub const MIN_HEADER_LEN: usize = 20;

pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Len(LenError),
    /// Data offset below 5 words, or larger than the segment it heads.
    HeaderLength {
        header: usize,
        segment: Option<usize>,
    },
}

super::len_error!(Error);

#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the fixed header is captured and the data offset is sane.
    ///
    /// `segment_len` is the segment length the IP header states, when it
    /// states one for a whole segment (not for a first fragment, whose header
    /// may legitimately continue in the next fragment). Options cut off by the
    /// capture length are fine: only the fixed header is needed for a flow.
    pub fn new_checked(buffer: T, segment_len: Option<usize>) -> Result<Self, Error> {
        // A segment the IP header says is shorter than any TCP header: its
        // header is longer than the segment, whatever was captured after.
        if let Some(segment) = segment_len
            && segment < MIN_HEADER_LEN
        {
            return Err(Error::HeaderLength {
                header: MIN_HEADER_LEN,
                segment: segment_len,
            });
        }
        check_len(Layer::Tcp, buffer.as_ref(), MIN_HEADER_LEN)?;
        let packet = Packet { buffer };
        let header = packet.header_len();
        if header < MIN_HEADER_LEN || segment_len.is_some_and(|len| header > len) {
            return Err(Error::HeaderLength {
                header,
                segment: segment_len,
            });
        }
        Ok(packet)
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ)
    }

    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    /// The low eight flag bits (CWR..FIN).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The window field as sent (before any window scaling).
    pub fn window(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn header(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[0..2].copy_from_slice(&sport.to_be_bytes());
        h[2..4].copy_from_slice(&dport.to_be_bytes());
        h[4..8].copy_from_slice(&1000u32.to_be_bytes());
        h[12] = 5 << 4;
        h[13] = flags;
        h
    }

    #[test]
    fn reads_fields() {
        let h = header(40000, 443, flags::SYN | flags::ACK);
        let p = Packet::new_checked(&h[..], Some(20)).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 443));
        assert_eq!(p.flags(), flags::SYN | flags::ACK);
        assert_eq!(p.seq_number(), 1000);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 20);
    }

    #[test]
    fn checks_data_offset() {
        let mut h = header(1, 2, 0);
        h[12] = 4 << 4;
        assert!(matches!(
            Packet::new_checked(&h[..], None),
            Err(Error::HeaderLength { .. })
        ));
        h[12] = 10 << 4;
        // 40-byte header in a 16-byte segment: malformed.
        assert!(matches!(
            Packet::new_checked(&h[..], Some(16)),
            Err(Error::HeaderLength { .. })
        ));
        // Options cut off by the snaplen but the segment is long enough: fine.
        assert!(Packet::new_checked(&h[..], Some(1000)).is_ok());
        // A first fragment: the header may continue in the next fragment.
        assert!(Packet::new_checked(&h[..], None).is_ok());
        assert!(matches!(
            Packet::new_checked(&h[..19], None),
            Err(Error::Len(_))
        ));
    }
}
