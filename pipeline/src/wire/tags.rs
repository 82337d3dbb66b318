//! Switch tags between an Ethernet header and its payload, each ending in
//! the EtherType of what follows (the tag's own EtherType is in front of
//! it): Cisco VN-Tag (0x8926, 6 bytes), IEEE 802.1BR E-Tag (0x893f, 8 bytes)
//! and Cisco MetaData (0x8909, 8 bytes, carrying the TrustSec group tag).
//! 802.1Q tags have their own module ([`super::vlan`]), as does FabricPath,
//! which wraps a whole frame ([`super::fabricpath`]).

use super::{Layer, LenError, be16, check_len, ethertype};

/// A fixed-length tag ending in the next EtherType.
#[derive(Debug, Clone, Copy)]
pub struct Tag<T: AsRef<[u8]>> {
    buffer: T,
    len: usize,
}

/// The length of the tag a tag EtherType announces, if it is one of these.
pub const fn tag_len(tag_ethertype: u16) -> Option<usize> {
    match tag_ethertype {
        ethertype::VN_TAG => Some(6),
        ethertype::E_TAG => Some(8),
        ethertype::CISCO_METADATA => Some(8),
        _ => None,
    }
}

impl<T: AsRef<[u8]>> Tag<T> {
    /// The tag that `tag_ethertype` announces; `None` for other EtherTypes.
    pub fn new_checked(tag_ethertype: u16, buffer: T) -> Option<Result<Self, LenError>> {
        let len = tag_len(tag_ethertype)?;
        Some(check_len(Layer::Tag, buffer.as_ref(), len).map(|()| Tag { buffer, len }))
    }

    /// The EtherType of what follows the tag.
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), self.len - 2)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.len..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tag_by_its_length() {
        let buf = [1, 2, 3, 4, 5, 6, 0x08, 0x00, 0xee];
        let t = Tag::new_checked(ethertype::E_TAG, &buf[..])
            .unwrap()
            .unwrap();
        assert_eq!((t.ethertype(), t.payload()), (0x0800, &[0xee][..]));
        let t = Tag::new_checked(ethertype::VN_TAG, &buf[2..])
            .unwrap()
            .unwrap();
        assert_eq!(t.ethertype(), 0x0800);
        assert!(
            Tag::new_checked(ethertype::CISCO_METADATA, &buf[..7])
                .unwrap()
                .is_err()
        );
        assert!(Tag::new_checked(ethertype::IPV4, &buf[..]).is_none());
    }
}
