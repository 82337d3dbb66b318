//! The radiotap header (link type 127) in front of an 802.11 frame: a
//! little-endian header of its own length.

use super::{Layer, LenError, check_len};

mod field {
    pub(super) const VERSION: usize = 0;
    pub(super) const LENGTH: usize = 2;
}

pub const MIN_LEN: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Len(LenError),
    Version(u8),
    HeaderLength(u16),
}

super::len_error!(Error);

#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        check_len(Layer::Link, buffer.as_ref(), MIN_LEN)?;
        let h = Header { buffer };
        let version = h.buffer.as_ref()[field::VERSION];
        if version != 0 {
            return Err(Error::Version(version));
        }
        let len = h.header_len();
        if len < MIN_LEN {
            return Err(Error::HeaderLength(len as u16));
        }
        check_len(Layer::Link, h.buffer.as_ref(), len)?;
        Ok(h)
    }

    pub fn header_len(&self) -> usize {
        let b = self.buffer.as_ref();
        usize::from(u16::from_le_bytes([b[field::LENGTH], b[field::LENGTH + 1]]))
    }

    /// The 802.11 frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_its_own_length() {
        let buf = [0, 0, 10, 0, 0, 0, 0, 0, 1, 2, 0xee];
        let h = Header::new_checked(&buf[..]).unwrap();
        assert_eq!(h.payload(), &[0xee]);
        assert!(Header::new_checked(&buf[..9]).is_err());
        assert_eq!(
            Header::new_checked(&[0, 0, 4, 0, 0, 0, 0, 0][..]).unwrap_err(),
            Error::HeaderLength(4)
        );
    }
}
