//! VXLAN header (RFC 7348): eight bytes after a UDP header, then a whole
//! Ethernet frame. AWS VPC Traffic Mirroring and Azure virtual network TAP
//! deliver mirrored packets in it (the session in the VNI), as do overlay
//! networks (Flannel, Cilium in tunnel mode).

use super::{Layer, LenError, be32, check_len};

mod field {
    pub(super) const FLAGS: usize = 0;
    pub(super) const VNI: usize = 4;
}

pub const HEADER_LEN: usize = 8;

/// The "VNI present" flag; RFC 7348 requires it, and Linux drops packets
/// without it, so a datagram without it is not taken for VXLAN.
pub const FLAG_VNI: u8 = 0x08;
/// VXLAN-GPE's "next protocol" flag (draft-ietf-nvo3-vxlan-gpe): the
/// fourth byte then says what follows; reserved (zero) in plain VXLAN.
pub const FLAG_NEXT_PROTOCOL: u8 = 0x04;
/// VXLAN-GPE's UDP port (IANA): the only one whose next-protocol flag is
/// read.
pub const GPE_PORT: u16 = 4790;
pub const NEXT_IPV4: u8 = 1;
pub const NEXT_IPV6: u8 = 2;
pub const NEXT_ETHERNET: u8 = 3;
/// An MPLS label stack (the draft's 0x5; 0x4, NSH, is not read).
pub const NEXT_MPLS: u8 = 5;

#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn new_checked(buffer: T) -> Result<Self, LenError> {
        check_len(Layer::Vxlan, buffer.as_ref(), HEADER_LEN)?;
        Ok(Header { buffer })
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn has_vni(&self) -> bool {
        self.flags() & FLAG_VNI != 0
    }

    /// What follows, when a VXLAN-GPE header says (else an Ethernet frame).
    pub fn next_protocol(&self) -> Option<u8> {
        (self.flags() & FLAG_NEXT_PROTOCOL != 0).then(|| self.buffer.as_ref()[3])
    }

    /// The 24-bit VXLAN network identifier.
    pub fn vni(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VNI) >> 8
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vni() {
        let buf = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0x00, 0xee];
        let h = Header::new_checked(&buf[..]).unwrap();
        assert!(h.has_vni());
        assert_eq!(h.vni(), 0x12_3456);
        assert_eq!(h.payload(), &[0xee]);
        assert!(Header::new_checked(&buf[..7]).is_err());
    }
}
