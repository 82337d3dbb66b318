//! PPI, the Per-Packet Information header (link type 192): a little-endian
//! header of its own length that names the link type of what follows.

use super::{Layer, LenError, check_len, le16, le32};

mod field {
    pub(super) const VERSION: usize = 0;
    pub(super) const LENGTH: usize = 2;
    pub(super) const DLT: usize = 4;
}

pub const MIN_LEN: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Len(LenError),
    Version(u8),
    /// The header length is below its own fixed part.
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
        usize::from(le16(self.buffer.as_ref(), field::LENGTH))
    }

    /// The pcap link type of the payload.
    pub fn dlt(&self) -> u32 {
        le32(self.buffer.as_ref(), field::DLT)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_length_and_link_type() {
        let mut buf = vec![0, 0, 12, 0, 1, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd];
        buf.push(0xee);
        let h = Header::new_checked(&buf[..]).unwrap();
        assert_eq!((h.header_len(), h.dlt(), h.payload()), (12, 1, &[0xee][..]));
        assert!(Header::new_checked(&buf[..11]).is_err());
        buf[2] = 4;
        assert_eq!(
            Header::new_checked(&buf[..]).unwrap_err(),
            Error::HeaderLength(4)
        );
        buf[0] = 2;
        assert_eq!(
            Header::new_checked(&buf[..]).unwrap_err(),
            Error::Version(2)
        );
    }
}
