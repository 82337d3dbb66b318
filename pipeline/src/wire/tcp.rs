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

/// What flowtap reads of a header (ports to window): all a first fragment
/// must hold. Its checksum and urgent pointer may be in the next fragment
/// (`nmap -ff` sends 16 bytes a fragment); a first fragment without the
/// flags is RFC 1858's tiny-fragment attack, which filters drop.
pub const FIRST_FRAGMENT_LEN: usize = field::WINDOW + 2;

/// How much of a segment a packet holds, as its IP header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// A whole segment, of the length the IP header states where it states
    /// one (not a segmentation offload's zero).
    Whole(Option<usize>),
    /// The start of a fragmented datagram: the header may continue in the
    /// next fragment.
    FirstFragment,
}

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
    /// Checks the fixed header is captured (of a first fragment, what
    /// flowtap reads of it) and the data offset is sane. Options cut off by
    /// the capture length are fine: only the fixed header is needed for a
    /// flow.
    pub fn new_checked(buffer: T, extent: Extent) -> Result<Self, Error> {
        let (needed, segment_len) = match extent {
            Extent::Whole(segment_len) => (MIN_HEADER_LEN, segment_len),
            Extent::FirstFragment => (FIRST_FRAGMENT_LEN, None),
        };
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
        check_len(Layer::Tcp, buffer.as_ref(), needed)?;
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
        let p = Packet::new_checked(&h[..], Extent::Whole(Some(20))).unwrap();
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
        for extent in [Extent::Whole(None), Extent::FirstFragment] {
            assert!(matches!(
                Packet::new_checked(&h[..], extent),
                Err(Error::HeaderLength { .. })
            ));
        }
        h[12] = 10 << 4;
        // 40-byte header in a 16-byte segment: malformed.
        assert!(matches!(
            Packet::new_checked(&h[..], Extent::Whole(Some(16))),
            Err(Error::HeaderLength { .. })
        ));
        // Options cut off by the snaplen but the segment is long enough: fine.
        assert!(Packet::new_checked(&h[..], Extent::Whole(Some(1000))).is_ok());
        // A whole segment needs its fixed header captured.
        assert!(matches!(
            Packet::new_checked(&h[..19], Extent::Whole(None)),
            Err(Error::Len(_))
        ));
    }

    #[test]
    fn a_first_fragment_needs_the_header_up_to_the_window() {
        let mut h = header(40000, 443, flags::SYN);
        h[14..16].copy_from_slice(&64240u16.to_be_bytes());
        // The header may continue in the next fragment, options or not.
        for data_offset in [5, 10] {
            h[12] = data_offset << 4;
            let p = Packet::new_checked(&h[..16], Extent::FirstFragment).unwrap();
            assert_eq!((p.src_port(), p.dst_port()), (40000, 443));
            assert_eq!((p.flags(), p.window()), (flags::SYN, 64240));
            assert_eq!(p.header_len(), usize::from(data_offset) * 4);
        }
        // Eight bytes (ports and sequence, no flags): a tiny fragment.
        assert!(matches!(
            Packet::new_checked(&h[..8], Extent::FirstFragment),
            Err(Error::Len(_))
        ));
    }
}
