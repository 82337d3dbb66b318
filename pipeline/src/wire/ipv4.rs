//! IPv4 header (RFC 791), options and fragments.

use super::{Layer, LenError, be16, check_len};

mod field {
    use std::ops::Range;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const TOTAL_LENGTH: usize = 2;
    pub(super) const IDENT: usize = 4;
    pub(super) const FLAGS_FRAG_OFFSET: usize = 6;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const SOURCE: Range<usize> = 12..16;
    pub(super) const DESTINATION: Range<usize> = 16..20;
}

/// The fixed part of the header; options follow up to `header_len()`.
pub const MIN_HEADER_LEN: usize = 20;

/// What can be wrong with an IPv4 header beyond its captured length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Len(LenError),
    /// The version nibble is not 4.
    Version(u8),
    /// IHL below 5 words.
    HeaderLength(u8),
    /// Total length smaller than the header itself.
    TotalLength {
        total: u16,
        header: usize,
    },
}

super::len_error!(Error);

#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the fixed header is captured and its length fields are sane,
    /// and that the options (the whole `header_len()`) are captured too.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let buf = buffer.as_ref();
        check_len(Layer::Ipv4, buf, MIN_HEADER_LEN)?;
        let packet = Packet { buffer };
        if packet.version() != 4 {
            return Err(Error::Version(packet.version()));
        }
        let header = packet.header_len();
        if header < MIN_HEADER_LEN {
            return Err(Error::HeaderLength(
                packet.buffer.as_ref()[field::VER_IHL] & 0x0f,
            ));
        }
        let total = packet.total_len();
        // A total length of 0 is what TSO/GSO super-packets show when captured
        // on the sending host; treat it as "unknown" rather than malformed.
        if total != 0 && usize::from(total) < header {
            return Err(Error::TotalLength { total, header });
        }
        check_len(Layer::Ipv4, packet.buffer.as_ref(), header)?;
        Ok(packet)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TOTAL_LENGTH)
    }

    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    pub fn more_fragments(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG_OFFSET) & 0x2000 != 0
    }

    /// Fragment offset in bytes.
    pub fn fragment_offset(&self) -> u32 {
        u32::from(be16(self.buffer.as_ref(), field::FLAGS_FRAG_OFFSET) & 0x1fff) * 8
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Whether the header checksum (RFC 791, RFC 1071) holds. Not checked
    /// on the common path (a mirror delivers what the wire carried, and
    /// a receiver's checksum offload leaves some unchecked); it tells an
    /// IPv4 header from bytes that only look like the start of one.
    pub fn checksum_holds(&self) -> bool {
        header_checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }

    pub fn source(&self) -> [u8; 4] {
        let mut a = [0; 4];
        a.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        a
    }

    pub fn destination(&self) -> [u8; 4] {
        let mut a = [0; 4];
        a.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        a
    }

    /// Length of the payload according to the header, if the header says.
    pub fn payload_len(&self) -> Option<usize> {
        match self.total_len() {
            0 => None,
            total => Some(usize::from(total) - self.header_len()),
        }
    }

    /// The captured payload (may be shorter than `payload_len()` under a snaplen).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

/// The Internet checksum (RFC 1071) of an IPv4 header: the value its
/// checksum field holds when that field is zero, and 0 over a header whose
/// checksum holds.
pub fn header_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 20-byte header with the given protocol, lengths and fragment word.
    pub(crate) fn header(proto: u8, total: u16, frag_word: u16) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, proto, 0, 0];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[6..8].copy_from_slice(&frag_word.to_be_bytes());
        h.extend_from_slice(&[198, 18, 0, 1, 198, 19, 0, 2]);
        h
    }

    #[test]
    fn reads_fields() {
        let h = header(6, 40, 0x2000 | 3);
        let p = Packet::new_checked(&h[..]).unwrap();
        assert_eq!(p.protocol(), 6);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.more_fragments());
        assert_eq!(p.fragment_offset(), 24);
        assert_eq!(p.source(), [198, 18, 0, 1]);
        assert_eq!(p.destination(), [198, 19, 0, 2]);
        assert_eq!(p.payload_len(), Some(20));
    }

    #[test]
    fn checks_the_header_checksum() {
        // Wikipedia's example header (checksum 0xb861).
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(Packet::new_checked(&h[..]).unwrap().checksum_holds());
        h[10..12].fill(0);
        assert_eq!(header_checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        h[15] = 2;
        assert!(!Packet::new_checked(&h[..]).unwrap().checksum_holds());
    }

    #[test]
    fn rejects_bad_headers() {
        let mut h = header(6, 40, 0);
        h[0] = 0x65;
        assert_eq!(Packet::new_checked(&h[..]).unwrap_err(), Error::Version(6));
        h[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&h[..]).unwrap_err(),
            Error::HeaderLength(4)
        );
        let mut h = header(6, 100, 0);
        h[0] = 0x4f; // 60-byte header, only 20 captured
        assert!(matches!(Packet::new_checked(&h[..]), Err(Error::Len(_))));
        let h = header(6, 12, 0);
        assert_eq!(
            Packet::new_checked(&h[..]).unwrap_err(),
            Error::TotalLength {
                total: 12,
                header: 20
            }
        );
        let h = header(6, 0, 0);
        assert_eq!(Packet::new_checked(&h[..]).unwrap().payload_len(), None);
    }
}
