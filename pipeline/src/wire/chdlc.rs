//! Cisco HDLC (link type 104, and 50 when it starts with 0x0f or 0x8f): an
//! address byte, a control byte and an EtherType.

use super::{Layer, LenError, be16, check_len};

mod field {
    pub(super) const ADDRESS: usize = 0;
    pub(super) const PROTOCOL: usize = 2;
}

pub const HEADER_LEN: usize = 4;

/// The unicast and broadcast address values.
pub const ADDRESS_UNICAST: u8 = 0x0f;
pub const ADDRESS_BROADCAST: u8 = 0x8f;

#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn new_checked(buffer: T) -> Result<Self, LenError> {
        check_len(Layer::Link, buffer.as_ref(), HEADER_LEN)?;
        Ok(Header { buffer })
    }

    pub fn address(&self) -> u8 {
        self.buffer.as_ref()[field::ADDRESS]
    }

    /// An EtherType (0x8035 is Cisco's SLARP keepalive).
    pub fn protocol(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PROTOCOL)
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
        let buf = [0x0f, 0x00, 0x08, 0x00, 0x45];
        let h = Header::new_checked(&buf[..]).unwrap();
        assert_eq!((h.address(), h.protocol()), (ADDRESS_UNICAST, 0x0800));
        assert_eq!(h.payload(), &[0x45]);
        assert!(Header::new_checked(&buf[..3]).is_err());
    }
}
