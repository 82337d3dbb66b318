//! IEEE 802.1Q / 802.1ad VLAN tag. The tag's TPID is the EtherType field in
//! front of it, so the view starts at the tag control information.

use super::{Layer, LenError, be16, check_len};

mod field {
    pub(super) const TCI: usize = 0;
    pub(super) const ETHERTYPE: usize = 2;
}

pub const TAG_LEN: usize = 4;

#[derive(Debug, Clone, Copy)]
pub struct Tag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Tag<T> {
    pub fn new_checked(buffer: T) -> Result<Self, LenError> {
        check_len(Layer::Vlan, buffer.as_ref(), TAG_LEN)?;
        Ok(Tag { buffer })
    }

    /// The 12-bit VLAN identifier.
    pub fn vlan_id(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TCI) & 0x0fff
    }

    /// The EtherType of what follows the tag (possibly another tag).
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[TAG_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_id_and_inner_type() {
        let buf = [0x20, 0x4d, 0x08, 0x00, 0xaa];
        let tag = Tag::new_checked(&buf[..]).unwrap();
        assert_eq!(tag.vlan_id(), 77);
        assert_eq!(tag.ethertype(), 0x0800);
        assert_eq!(tag.payload(), &[0xaa]);
        assert!(Tag::new_checked(&buf[..3]).is_err());
    }
}
