//! UDP header (RFC 768).

use super::{Layer, LenError, be16, check_len};

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const LENGTH: usize = 4;
}

pub const HEADER_LEN: usize = 8;

#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self, LenError> {
        check_len(Layer::Udp, buffer.as_ref(), HEADER_LEN)?;
        Ok(Packet { buffer })
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field; not validated, as tshark does not either.
    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn header(sport: u16, dport: u16) -> Vec<u8> {
        let mut h = vec![0u8; 8];
        h[0..2].copy_from_slice(&sport.to_be_bytes());
        h[2..4].copy_from_slice(&dport.to_be_bytes());
        h[4..6].copy_from_slice(&8u16.to_be_bytes());
        h
    }

    #[test]
    fn reads_fields() {
        let h = header(5353, 53);
        let p = Packet::new_checked(&h[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.length()), (5353, 53, 8));
        assert!(Packet::new_checked(&h[..7]).is_err());
    }
}
