//! UDP header (RFC 768).

use super::{Layer, LenError, be16, check_len};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Len(LenError),
    /// A length field under 8 (0 over IPv6 aside), or a datagram the IP
    /// header says is shorter than the 8-byte header: no room for the
    /// header it heads.
    HeaderLength {
        length: usize,
    },
}

super::len_error!(Error);

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
    /// A header whose fixed 8 bytes were captured and whose lengths leave
    /// it room: the IP header's (`datagram_len`, where it states one for
    /// a whole datagram) and its own length field, which RFC 768 counts
    /// from the header's first byte. A length field of 0 stands over IPv6
    /// (`zero_length_allowed`: a jumbogram's, RFC 2675, or a segmentation
    /// offload's), as tshark has it; one larger than the datagram stands
    /// too, as tshark counts such a datagram.
    pub fn new_checked(
        buffer: T,
        datagram_len: Option<usize>,
        zero_length_allowed: bool,
    ) -> Result<Self, Error> {
        if let Some(length) = datagram_len.filter(|&len| len < HEADER_LEN) {
            return Err(Error::HeaderLength { length });
        }
        check_len(Layer::Udp, buffer.as_ref(), HEADER_LEN)?;
        let packet = Packet { buffer };
        let length = usize::from(packet.length());
        if length < HEADER_LEN && !(length == 0 && zero_length_allowed) {
            return Err(Error::HeaderLength { length });
        }
        Ok(packet)
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field, checked only for room for the header.
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
        let p = Packet::new_checked(&h[..], Some(8), false).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.length()), (5353, 53, 8));
        assert!(Packet::new_checked(&h[..7], None, false).is_err());
    }

    #[test]
    fn a_length_with_no_room_for_the_header_is_refused() {
        let mut h = header(5353, 53);
        assert_eq!(
            Packet::new_checked(&h[..], Some(4), true).err(),
            Some(Error::HeaderLength { length: 4 })
        );
        h[4..6].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&h[..], None, true).err(),
            Some(Error::HeaderLength { length: 4 })
        );
        // A length past the datagram stands; a zero over IPv6 only (a
        // jumbogram's or an offload's).
        h[4..6].copy_from_slice(&9000u16.to_be_bytes());
        assert!(Packet::new_checked(&h[..], Some(8), false).is_ok());
        h[4..6].copy_from_slice(&0u16.to_be_bytes());
        assert!(Packet::new_checked(&h[..], Some(8), true).is_ok());
        assert_eq!(
            Packet::new_checked(&h[..], Some(8), false).err(),
            Some(Error::HeaderLength { length: 0 })
        );
    }
}
