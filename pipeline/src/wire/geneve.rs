//! GENEVE header (RFC 8926): eight bytes and variable options after a UDP
//! header, then the payload its protocol type names (Ethernet, IPv4, IPv6).

use super::{Layer, LenError, be16, be32, check_len};

mod field {
    pub(super) const VERSION_OPTIONS: usize = 0;
    pub(super) const PROTOCOL: usize = 2;
    pub(super) const VNI: usize = 4;
}

/// The fixed part, before the options.
pub const FIXED_LEN: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Len(LenError),
    /// Only version 0 is defined.
    Version(u8),
}

super::len_error!(Error);

#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Checks the version and that the options were captured.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        check_len(Layer::Geneve, buffer.as_ref(), FIXED_LEN)?;
        let h = Header { buffer };
        if h.version() != 0 {
            return Err(Error::Version(h.version()));
        }
        check_len(Layer::Geneve, h.buffer.as_ref(), h.header_len())?;
        Ok(h)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_OPTIONS] >> 6
    }

    /// Fixed part plus options (the option length counts 4-byte words).
    pub fn header_len(&self) -> usize {
        FIXED_LEN + usize::from(self.buffer.as_ref()[field::VERSION_OPTIONS] & 0x3f) * 4
    }

    /// An EtherType: 0x6558 for Ethernet, 0x0800, 0x86dd for IP.
    pub fn protocol(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PROTOCOL)
    }

    pub fn vni(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VNI) >> 8
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_options() {
        let mut buf = vec![0x02, 0x00, 0x65, 0x58, 0, 0, 7, 0];
        buf.extend_from_slice(&[0xaa; 8]);
        buf.push(0xee);
        let h = Header::new_checked(&buf[..]).unwrap();
        assert_eq!((h.header_len(), h.protocol(), h.vni()), (16, 0x6558, 7));
        assert_eq!(h.payload(), &[0xee]);
        assert!(matches!(
            Header::new_checked(&buf[..12]),
            Err(Error::Len(_))
        ));
        buf[0] = 0x40;
        assert_eq!(
            Header::new_checked(&buf[..]).unwrap_err(),
            Error::Version(1)
        );
    }
}
