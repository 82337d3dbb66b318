//! Linux "cooked" capture headers: LINUX_SLL (link type 113, 16 bytes) and
//! LINUX_SLL2 (link type 276, 20 bytes), written by `tcpdump -i any`.

use super::{Layer, LenError, be16, check_len};

pub const SLL_HEADER_LEN: usize = 16;
pub const SLL2_HEADER_LEN: usize = 20;

mod field {
    pub(super) const SLL_ARPHRD: usize = 2;
    pub(super) const SLL_PROTOCOL: usize = 14;
    pub(super) const SLL2_PROTOCOL: usize = 0;
    pub(super) const SLL2_ARPHRD: usize = 8;
}

/// A cooked header of either version; both carry an EtherType.
#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
    v2: bool,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn new_checked_v1(buffer: T) -> Result<Self, LenError> {
        check_len(Layer::Link, buffer.as_ref(), SLL_HEADER_LEN)?;
        Ok(Header { buffer, v2: false })
    }

    pub fn new_checked_v2(buffer: T) -> Result<Self, LenError> {
        check_len(Layer::Link, buffer.as_ref(), SLL2_HEADER_LEN)?;
        Ok(Header { buffer, v2: true })
    }

    /// The EtherType of the payload.
    pub fn protocol(&self) -> u16 {
        let at = if self.v2 {
            field::SLL2_PROTOCOL
        } else {
            field::SLL_PROTOCOL
        };
        be16(self.buffer.as_ref(), at)
    }

    /// The ARPHRD_* device type of the capturing interface.
    pub fn arphrd(&self) -> u16 {
        let at = if self.v2 {
            field::SLL2_ARPHRD
        } else {
            field::SLL_ARPHRD
        };
        be16(self.buffer.as_ref(), at)
    }

    pub fn payload(&self) -> &[u8] {
        let len = if self.v2 {
            SLL2_HEADER_LEN
        } else {
            SLL_HEADER_LEN
        };
        &self.buffer.as_ref()[len..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_versions() {
        let mut v1 = [0u8; 17];
        v1[2..4].copy_from_slice(&1u16.to_be_bytes());
        v1[14..16].copy_from_slice(&0x0800u16.to_be_bytes());
        let h = Header::new_checked_v1(&v1[..]).unwrap();
        assert_eq!(
            (h.protocol(), h.arphrd(), h.payload().len()),
            (0x0800, 1, 1)
        );

        let mut v2 = [0u8; 20];
        v2[0..2].copy_from_slice(&0x86ddu16.to_be_bytes());
        v2[8..10].copy_from_slice(&772u16.to_be_bytes());
        let h = Header::new_checked_v2(&v2[..]).unwrap();
        assert_eq!(
            (h.protocol(), h.arphrd(), h.payload().len()),
            (0x86dd, 772, 0)
        );
        assert!(Header::new_checked_v2(&v2[..19]).is_err());
    }
}
