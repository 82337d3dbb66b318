//! GRE header: RFC 2784 with RFC 2890's key and sequence number (version 0),
//! and the enhanced GRE of PPTP (RFC 2637, version 1). Optional fields are
//! present as the flags say; the header ends in the payload's EtherType.

use super::{Layer, LenError, be16, be32, check_len};

mod field {
    pub(super) const FLAGS_VERSION: usize = 0;
    pub(super) const PROTOCOL: usize = 2;
}

pub const BASE_LEN: usize = 4;

pub mod flags {
    pub const CHECKSUM: u16 = 0x8000;
    /// RFC 1701 source routing: deprecated by RFC 2784, not followed.
    pub const ROUTING: u16 = 0x4000;
    pub const KEY: u16 = 0x2000;
    pub const SEQUENCE: u16 = 0x1000;
    /// Version 1 only: an acknowledgment number follows.
    pub const ACK: u16 = 0x0080;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Len(LenError),
    /// A version other than 0 and 1, or routing present.
    Unsupported,
}

super::len_error!(Error);

#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        check_len(Layer::Gre, buffer.as_ref(), BASE_LEN)?;
        let h = Header { buffer };
        if h.version() > 1 || h.flags() & flags::ROUTING != 0 {
            return Err(Error::Unsupported);
        }
        check_len(Layer::Gre, h.buffer.as_ref(), h.header_len())?;
        Ok(h)
    }

    pub fn flags(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLAGS_VERSION) & 0xfff8
    }

    pub fn version(&self) -> u8 {
        (be16(self.buffer.as_ref(), field::FLAGS_VERSION) & 7) as u8
    }

    pub fn has(&self, flag: u16) -> bool {
        self.flags() & flag != 0
    }

    /// The payload's EtherType (0x880b, PPP, for version 1).
    pub fn protocol(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PROTOCOL)
    }

    fn key_at(&self) -> usize {
        BASE_LEN + if self.has(flags::CHECKSUM) { 4 } else { 0 }
    }

    /// The key (version 0: often a tunnel or mirror session id; version 1:
    /// payload length and call id).
    pub fn key(&self) -> Option<u32> {
        self.has(flags::KEY)
            .then(|| be32(self.buffer.as_ref(), self.key_at()))
    }

    pub fn header_len(&self) -> usize {
        let mut len = self.key_at();
        for flag in [flags::KEY, flags::SEQUENCE] {
            if self.has(flag) {
                len += 4;
            }
        }
        if self.version() == 1 && self.has(flags::ACK) {
            len += 4;
        }
        len
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A version 0 header with the given optional fields.
    pub(crate) fn header(protocol: u16, key: Option<u32>, seq: bool, checksum: bool) -> Vec<u8> {
        let mut f = 0u16;
        let mut rest = Vec::new();
        if checksum {
            f |= flags::CHECKSUM;
            rest.extend_from_slice(&[0; 4]);
        }
        if let Some(k) = key {
            f |= flags::KEY;
            rest.extend_from_slice(&k.to_be_bytes());
        }
        if seq {
            f |= flags::SEQUENCE;
            rest.extend_from_slice(&7u32.to_be_bytes());
        }
        let mut h = f.to_be_bytes().to_vec();
        h.extend_from_slice(&protocol.to_be_bytes());
        h.extend(rest);
        h
    }

    #[test]
    fn optional_fields_by_flags() {
        for (key, seq, checksum, len) in [
            (None, false, false, 4),
            (Some(9), false, false, 8),
            (Some(9), true, true, 16),
            (None, true, false, 8),
        ] {
            let mut buf = header(0x6558, key, seq, checksum);
            buf.push(0xee);
            let h = Header::new_checked(&buf[..]).unwrap();
            assert_eq!((h.header_len(), h.key(), h.protocol()), (len, key, 0x6558));
            assert_eq!(h.payload(), &[0xee]);
            assert!(Header::new_checked(&buf[..len - 1]).is_err());
        }
        let pptp = [
            0x30, 0x81, 0x88, 0x0b, 0, 4, 0, 1, 0, 0, 0, 5, 0, 0, 0, 4, 0xff,
        ];
        let h = Header::new_checked(&pptp[..]).unwrap();
        assert_eq!((h.version(), h.header_len()), (1, 16));
        let routed = [0x40, 0, 0x08, 0];
        assert_eq!(
            Header::new_checked(&routed[..]).unwrap_err(),
            Error::Unsupported
        );
    }
}
