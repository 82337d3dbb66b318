//! PPPoE session header (RFC 2516) followed by the PPP protocol field.

use super::{Layer, LenError, be16, check_len};

mod field {
    pub(super) const VERSION_TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const SESSION_ID: usize = 2;
    pub(super) const LENGTH: usize = 4;
    pub(super) const PPP_PROTOCOL: usize = 6;
}

/// Session header (6 bytes) plus the two-byte PPP protocol.
pub const HEADER_LEN: usize = 8;

#[derive(Debug, Clone, Copy)]
pub struct Session<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Session<T> {
    pub fn new_checked(buffer: T) -> Result<Self, LenError> {
        check_len(Layer::Pppoe, buffer.as_ref(), HEADER_LEN)?;
        Ok(Session { buffer })
    }

    pub fn version_type(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn session_id(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SESSION_ID)
    }

    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn ppp_protocol(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PPP_PROTOCOL)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_session_fields() {
        let buf = [0x11, 0x00, 0x12, 0x34, 0x00, 0x30, 0x00, 0x57, 0x60];
        let s = Session::new_checked(&buf[..]).unwrap();
        assert_eq!(s.version_type(), 0x11);
        assert_eq!(s.code(), 0);
        assert_eq!(s.session_id(), 0x1234);
        assert_eq!(s.length(), 0x30);
        assert_eq!(s.ppp_protocol(), super::super::ppp::protocol::IPV6);
        assert_eq!(s.payload(), &[0x60]);
        assert!(Session::new_checked(&buf[..7]).is_err());
    }
}
