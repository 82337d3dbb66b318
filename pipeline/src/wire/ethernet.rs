//! Ethernet II frame header.

use super::{Layer, LenError, be16, check_len};

mod field {
    use std::ops::Range;
    pub(super) const DESTINATION: Range<usize> = 0..6;
    pub(super) const SOURCE: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: usize = 12;
}

pub const HEADER_LEN: usize = 14;

/// Type-field values up to this are IEEE 802.3 lengths (LLC frames), not EtherTypes.
pub const MAX_8023_LENGTH: u16 = 1500;

/// A read-only view of an Ethernet II header and what follows it.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub fn new_checked(buffer: T) -> Result<Self, LenError> {
        check_len(Layer::Link, buffer.as_ref(), HEADER_LEN)?;
        Ok(Frame { buffer })
    }

    pub fn destination(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        mac
    }

    pub fn source(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        mac
    }

    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields() {
        let mut buf = [0u8; 20];
        buf[..6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        buf[6..12].copy_from_slice(&[7, 8, 9, 10, 11, 12]);
        buf[12..14].copy_from_slice(&[0x86, 0xdd]);
        let frame = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(frame.destination(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(frame.source(), [7, 8, 9, 10, 11, 12]);
        assert_eq!(frame.ethertype(), 0x86dd);
        assert_eq!(frame.payload().len(), 6);
    }

    #[test]
    fn short_frame_is_a_length_error() {
        let err = Frame::new_checked(&[0u8; 13][..]).unwrap_err();
        assert_eq!((err.required, err.available), (14, 13));
    }
}
