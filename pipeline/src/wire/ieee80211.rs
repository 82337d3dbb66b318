//! IEEE 802.11 data frames (link type 105, and after radiotap or PPI): the
//! MAC header, then an LLC/SNAP header naming the payload's EtherType.
//! Management and control frames, frames without data, encrypted frames and
//! A-MSDU aggregates carry nothing flowtap can key.

use super::{Layer, LenError, check_len, llc};

mod field {
    pub(super) const FRAME_CONTROL: usize = 0;
    pub(super) const FLAGS: usize = 1;
}

pub const BASE_LEN: usize = 24;
const ADDRESS_4_LEN: usize = 6;
const QOS_LEN: usize = 2;
const HT_CONTROL_LEN: usize = 4;

const TYPE_DATA: u8 = 2;

mod flags {
    pub(super) const TO_DS: u8 = 0x01;
    pub(super) const FROM_DS: u8 = 0x02;
    pub(super) const PROTECTED: u8 = 0x40;
    pub(super) const ORDER: u8 = 0x80;
}

#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
    /// The body starts at a 4-byte boundary after the header (radiotap's
    /// "data pad" flag: some drivers pad a 26-byte QoS header to 28).
    padded: bool,
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub fn new_checked(buffer: T) -> Result<Self, LenError> {
        check_len(Layer::Link, buffer.as_ref(), 2)?;
        Ok(Frame {
            buffer,
            padded: false,
        })
    }

    /// The same frame, its body padded to a 4-byte boundary.
    pub fn padded(self) -> Self {
        Frame {
            padded: true,
            ..self
        }
    }

    fn fc(&self) -> u8 {
        self.buffer.as_ref()[field::FRAME_CONTROL]
    }

    fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    fn subtype(&self) -> u8 {
        self.fc() >> 4
    }

    /// A data frame with data in it: not management, control or null data.
    pub fn carries_data(&self) -> bool {
        (self.fc() >> 2) & 3 == TYPE_DATA && self.fc() & 3 == 0 && self.subtype() & 0x4 == 0
    }

    pub fn is_protected(&self) -> bool {
        self.flags() & flags::PROTECTED != 0
    }

    fn is_qos(&self) -> bool {
        self.subtype() & 0x8 != 0
    }

    /// The MAC header's length, by its flags and subtype.
    pub fn header_len(&self) -> usize {
        let mut len = BASE_LEN;
        if self.flags() & (flags::TO_DS | flags::FROM_DS) == flags::TO_DS | flags::FROM_DS {
            len += ADDRESS_4_LEN;
        }
        if self.is_qos() {
            len += QOS_LEN;
            if self.flags() & flags::ORDER != 0 {
                len += HT_CONTROL_LEN;
            }
        }
        len
    }

    /// The EtherType and payload of an unencrypted, unaggregated data frame
    /// with an LLC/SNAP header; `Ok(None)` for any other frame.
    pub fn snap_payload(&self) -> Result<Option<(u16, &[u8])>, LenError> {
        if !self.carries_data() || self.is_protected() {
            return Ok(None);
        }
        let buf = self.buffer.as_ref();
        let at = self.header_len();
        check_len(Layer::Link, buf, at)?;
        if self.is_qos() && buf[at - QOS_LEN - self.ht_len()] & 0x80 != 0 {
            return Ok(None); // A-MSDU
        }
        let body = if self.padded {
            at.next_multiple_of(4)
        } else {
            at
        };
        check_len(Layer::Link, buf, body + llc::SNAP_LEN)?;
        Ok(llc::snap(&buf[body..]).map(|s| (s.ethertype, s.payload)))
    }

    fn ht_len(&self) -> usize {
        if self.is_qos() && self.flags() & flags::ORDER != 0 {
            HT_CONTROL_LEN
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_data_with_snap() {
        // QoS data, to the DS, then LLC/SNAP for IPv4.
        let mut f = vec![0x88, 0x01];
        f.extend_from_slice(&[0; 22]);
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00, 0x45]);
        let frame = Frame::new_checked(&f[..]).unwrap();
        assert_eq!(frame.header_len(), 26);
        assert_eq!(frame.snap_payload().unwrap(), Some((0x0800, &[0x45][..])));
        assert!(
            Frame::new_checked(&f[..30])
                .unwrap()
                .snap_payload()
                .is_err()
        );
        f[1] |= 0x40;
        assert_eq!(
            Frame::new_checked(&f[..]).unwrap().snap_payload().unwrap(),
            None
        );
        // Padded to 28 bytes, as radiotap's "data pad" flag says.
        let mut padded = f[..26].to_vec();
        padded[1] &= !0x40;
        padded.extend_from_slice(&[0, 0]);
        padded.extend_from_slice(&f[26..]);
        let frame = Frame::new_checked(&padded[..]).unwrap();
        assert_eq!(frame.snap_payload().unwrap(), None, "not SNAP at 26");
        assert_eq!(
            frame.padded().snap_payload().unwrap(),
            Some((0x0800, &[0x45][..]))
        );
        let beacon = [0x80u8, 0x00];
        assert_eq!(
            Frame::new_checked(&beacon[..])
                .unwrap()
                .snap_payload()
                .unwrap(),
            None
        );
    }
}
