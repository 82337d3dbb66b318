//! GTP-U header (3GPP TS 29.281): the user-plane tunnel of mobile networks,
//! on UDP 2152. A G-PDU (message type 255) carries an IP packet after the
//! header, its optional fields and its chain of extension headers; the other
//! messages (echo, error indication, end marker) are the tunnel's own.

use super::{Layer, LenError, check_len};

mod field {
    pub(super) const FLAGS: usize = 0;
    pub(super) const MESSAGE_TYPE: usize = 1;
    /// The next extension header type, when the optional fields are present.
    pub(super) const NEXT_EXTENSION: usize = 11;
}

pub const FIXED_LEN: usize = 8;
/// Sequence number, N-PDU number and next extension type, present when any
/// of the E, S or PN flags is set.
pub const OPTIONAL_LEN: usize = 4;

pub const MESSAGE_G_PDU: u8 = 255;

mod flags {
    pub(super) const EXTENSION: u8 = 0x04;
    pub(super) const SEQUENCE: u8 = 0x02;
    pub(super) const N_PDU: u8 = 0x01;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Len(LenError),
    /// Not GTP version 1 (or GTP' rather than GTP).
    Version(u8),
    /// An extension header of length zero (which would never end).
    ExtensionLength,
}

super::len_error!(Error);

#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
    header_len: usize,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Checks the version and walks the extension headers (each at least 4
    /// bytes, so the walk ends with the buffer).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let buf = buffer.as_ref();
        check_len(Layer::Gtpu, buf, FIXED_LEN)?;
        let flags = buf[field::FLAGS];
        // Version 1 in the top three bits, protocol type 1 (GTP).
        if flags >> 4 != 0x3 {
            return Err(Error::Version(flags >> 5));
        }
        let mut len = FIXED_LEN;
        if flags & (flags::EXTENSION | flags::SEQUENCE | flags::N_PDU) != 0 {
            len += OPTIONAL_LEN;
            check_len(Layer::Gtpu, buf, len)?;
            let mut next = if flags & flags::EXTENSION != 0 {
                buf[field::NEXT_EXTENSION]
            } else {
                0
            };
            while next != 0 {
                check_len(Layer::Gtpu, buf, len + 1)?;
                let ext_len = usize::from(buf[len]) * 4;
                if ext_len == 0 {
                    return Err(Error::ExtensionLength);
                }
                check_len(Layer::Gtpu, buf, len + ext_len)?;
                next = buf[len + ext_len - 1];
                len += ext_len;
            }
        }
        Ok(Header {
            buffer,
            header_len: len,
        })
    }

    pub fn message_type(&self) -> u8 {
        self.buffer.as_ref()[field::MESSAGE_TYPE]
    }

    pub fn header_len(&self) -> usize {
        self.header_len
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len..]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A G-PDU header, with one PDU-session extension header when `extended`.
    pub(crate) fn header(extended: bool) -> Vec<u8> {
        if extended {
            vec![
                0x34, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x85, 1, 0x10, 0x01, 0x00,
            ]
        } else {
            vec![0x30, 0xff, 0, 0, 0, 0, 0, 1]
        }
    }

    #[test]
    fn walks_extension_headers() {
        let mut buf = header(true);
        buf.push(0x45);
        let h = Header::new_checked(&buf[..]).unwrap();
        assert_eq!((h.message_type(), h.header_len()), (MESSAGE_G_PDU, 16));
        assert_eq!(h.payload(), &[0x45]);
        assert!(matches!(
            Header::new_checked(&buf[..15]),
            Err(Error::Len(_))
        ));
        buf[12] = 0;
        assert_eq!(
            Header::new_checked(&buf[..]).unwrap_err(),
            Error::ExtensionLength
        );
        let plain = header(false);
        assert_eq!(Header::new_checked(&plain[..]).unwrap().header_len(), 8);
        assert_eq!(
            Header::new_checked(&[0x20, 0xff, 0, 0, 0, 0, 0, 0][..]).unwrap_err(),
            Error::Version(1)
        );
    }
}
