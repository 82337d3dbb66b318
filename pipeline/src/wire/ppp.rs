//! PPP (RFC 1661) as captured: link type 9 (PPP, with or without the
//! RFC 1662 address and control bytes) and 50 (PPP in HDLC-like framing),
//! PPTP's enhanced GRE, and after a PPPoE session header. The protocol field
//! may be compressed to one byte (RFC 1661 §6.5).

use super::{Layer, LenError, check_len};

/// RFC 1662's all-stations address and unnumbered-information control.
pub const HDLC_ADDRESS: u8 = 0xff;
pub const HDLC_CONTROL: u8 = 0x03;

pub mod protocol {
    pub const IPV4: u16 = 0x0021;
    pub const IPV6: u16 = 0x0057;
    pub const MPLS_UNICAST: u16 = 0x0281;
}

#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
    /// Where the protocol field starts (after address and control, if any).
    protocol_at: usize,
    protocol_len: usize,
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub fn new_checked(buffer: T) -> Result<Self, LenError> {
        let buf = buffer.as_ref();
        let protocol_at = if buf.starts_with(&[HDLC_ADDRESS, HDLC_CONTROL]) {
            2
        } else {
            0
        };
        check_len(Layer::Ppp, buf, protocol_at + 1)?;
        // A protocol's low byte is odd and its high byte even: an odd first
        // byte is a compressed one-byte field.
        let protocol_len = if buf[protocol_at] & 1 == 1 { 1 } else { 2 };
        check_len(Layer::Ppp, buf, protocol_at + protocol_len)?;
        Ok(Frame {
            buffer,
            protocol_at,
            protocol_len,
        })
    }

    pub fn protocol(&self) -> u16 {
        let buf = self.buffer.as_ref();
        match self.protocol_len {
            1 => u16::from(buf[self.protocol_at]),
            _ => u16::from_be_bytes([buf[self.protocol_at], buf[self.protocol_at + 1]]),
        }
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.protocol_at + self.protocol_len..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_and_compression() {
        for (buf, protocol) in [
            (&[0xff, 0x03, 0x00, 0x21, 0x45][..], protocol::IPV4),
            (&[0x00, 0x57, 0x45][..], protocol::IPV6),
            (&[0x21, 0x45][..], protocol::IPV4),
            (&[0xff, 0x03, 0x21, 0x45][..], protocol::IPV4),
        ] {
            let f = Frame::new_checked(buf).unwrap();
            assert_eq!((f.protocol(), f.payload()), (protocol, &[0x45][..]));
        }
        assert!(Frame::new_checked(&[0xff, 0x03, 0x00][..]).is_err());
        assert!(Frame::new_checked(&[][..]).is_err());
    }
}
