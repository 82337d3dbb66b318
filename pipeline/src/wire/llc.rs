//! An 802.2 LLC header with a SNAP extension (LLC `AA AA 03`, then a
//! three-byte organisation code and a two-byte protocol id): how 802.11
//! data frames and 802.3 frames (a length where Ethernet II has its type)
//! name an EtherType. RFC 1042 encapsulates IP in it with organisation 0.

use super::be16;

/// LLC (AA AA 03) and SNAP (organisation, EtherType).
pub const SNAP_LEN: usize = 8;

/// The LLC bytes that announce a SNAP header.
const SNAP_LLC: [u8; 3] = [0xaa, 0xaa, 0x03];

/// A SNAP header's organisation code and EtherType, and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snap<'a> {
    pub organisation: u32,
    pub ethertype: u16,
    pub payload: &'a [u8],
}

/// The SNAP header `buf` starts with, if it starts with one (whole).
pub fn snap(buf: &[u8]) -> Option<Snap<'_>> {
    if buf.len() < SNAP_LEN || buf[..3] != SNAP_LLC {
        return None;
    }
    Some(Snap {
        organisation: u32::from_be_bytes([0, buf[3], buf[4], buf[5]]),
        ethertype: be16(buf, 6),
        payload: &buf[SNAP_LEN..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_snap_and_nothing_else() {
        let buf = [0xaa, 0xaa, 0x03, 0, 0, 0x0c, 0x08, 0x00, 0x45];
        assert_eq!(
            snap(&buf),
            Some(Snap {
                organisation: 0x0c,
                ethertype: 0x0800,
                payload: &[0x45],
            })
        );
        assert_eq!(snap(&buf[..7]), None, "cut short");
        assert_eq!(
            snap(&[0x42, 0x42, 0x03, 0, 0, 0, 0, 0]),
            None,
            "spanning tree"
        );
    }
}
