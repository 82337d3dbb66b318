//! Cisco FabricPath (EtherType 0x8903): an outer header of switch
//! addresses, the EtherType, and a forwarding tag and TTL, wrapped around
//! the original Ethernet frame. The view starts after the EtherType.

use super::{Layer, LenError, check_len};

/// The FTag and TTL between the EtherType and the original frame.
pub const TAG_LEN: usize = 2;

#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn new_checked(buffer: T) -> Result<Self, LenError> {
        check_len(Layer::Tag, buffer.as_ref(), TAG_LEN)?;
        Ok(Header { buffer })
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[1] & 0x3f
    }

    /// The original Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[TAG_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ttl() {
        let h = Header::new_checked(&[0x00, 0x5f, 0xee][..]).unwrap();
        assert_eq!((h.ttl(), h.payload()), (0x1f, &[0xee][..]));
        assert!(Header::new_checked(&[0u8][..]).is_err());
    }
}
