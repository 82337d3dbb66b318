//! NFLOG (link type 239): packets logged by Linux netfilter's NFLOG target
//! (`tcpdump -i nflog`). A 4-byte header, then type-length-value attributes
//! in the capturing host's byte order, each padded to 4 bytes; the packet
//! is the payload attribute, starting at its IP header. The file does not
//! say which host wrote it (a big-endian MIPS router's capture read here):
//! attribute types are small numbers, so the first one's tells.

use super::{Layer, LenError, be16, check_len, le16};

mod field {
    pub(super) const FAMILY: usize = 0;
}

pub const HEADER_LEN: usize = 4;
const TLV_HEADER_LEN: usize = 4;
/// NFULA_PAYLOAD.
const TYPE_PAYLOAD: u16 = 9;
/// An attribute type's number, without netlink's nested and byte-order
/// flags.
const TYPE_MASK: u16 = 0x3fff;
/// Above every NFULA type.
const TYPE_MAX: u16 = 0xff;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Len(LenError),
    /// An attribute shorter than its own header (which would never end).
    AttributeLength(u16),
}

super::len_error!(Error);

#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn new_checked(buffer: T) -> Result<Self, LenError> {
        check_len(Layer::Link, buffer.as_ref(), HEADER_LEN)?;
        Ok(Header { buffer })
    }

    /// The address family (AF_INET 2, AF_INET6 10).
    pub fn family(&self) -> u8 {
        self.buffer.as_ref()[field::FAMILY]
    }

    /// The logged packet; `Ok(None)` when no payload attribute was logged.
    pub fn packet(&self) -> Result<Option<&[u8]>, Error> {
        let buf = self.buffer.as_ref();
        let read = |at: usize, big_endian: bool| {
            if big_endian {
                be16(buf, at)
            } else {
                le16(buf, at)
            }
        };
        let big_endian = buf.len() >= HEADER_LEN + TLV_HEADER_LEN
            && read(HEADER_LEN + 2, false) & TYPE_MASK > TYPE_MAX
            && read(HEADER_LEN + 2, true) & TYPE_MASK <= TYPE_MAX;
        let mut at = HEADER_LEN;
        // Each attribute is at least 4 bytes long, so the walk ends.
        while at + TLV_HEADER_LEN <= buf.len() {
            let len = read(at, big_endian);
            let kind = read(at + 2, big_endian) & TYPE_MASK;
            if usize::from(len) < TLV_HEADER_LEN {
                return Err(Error::AttributeLength(len));
            }
            if kind == TYPE_PAYLOAD {
                let end = (at + usize::from(len)).min(buf.len());
                return Ok(Some(&buf[at + TLV_HEADER_LEN..end]));
            }
            at += usize::from(len).next_multiple_of(4);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_payload_attribute() {
        let mut buf = vec![2, 0, 0, 0];
        buf.extend_from_slice(&[6, 0, 1, 0, 0xaa, 0xbb, 0, 0]); // padded
        buf.extend_from_slice(&[5, 0, 9, 0, 0x45]);
        let h = Header::new_checked(&buf[..]).unwrap();
        assert_eq!((h.family(), h.packet().unwrap()), (2, Some(&[0x45][..])));
        let none = [2, 0, 0, 0, 4, 0, 1, 0];
        assert_eq!(
            Header::new_checked(&none[..]).unwrap().packet().unwrap(),
            None
        );
        // From a big-endian host.
        let mut big = vec![2, 0, 0, 0];
        big.extend_from_slice(&[0, 6, 0, 1, 0xaa, 0xbb, 0, 0]);
        big.extend_from_slice(&[0, 5, 0, 9, 0x45]);
        let h = Header::new_checked(&big[..]).unwrap();
        assert_eq!(h.packet().unwrap(), Some(&[0x45][..]));
        let bad = [2, 0, 0, 0, 2, 0, 1, 0];
        assert_eq!(
            Header::new_checked(&bad[..]).unwrap().packet().unwrap_err(),
            Error::AttributeLength(2)
        );
    }
}
