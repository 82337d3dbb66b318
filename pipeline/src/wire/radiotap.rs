//! The radiotap header (link type 127) in front of an 802.11 frame: a
//! little-endian header of its own length.

use super::{Layer, LenError, check_len, le16, le32};

mod field {
    pub(super) const VERSION: usize = 0;
    pub(super) const LENGTH: usize = 2;
    pub(super) const PRESENT: usize = 4;
}

pub const MIN_LEN: usize = 8;

/// Presence bits of the first word: fields follow in bit order, each
/// aligned to its own size.
mod present {
    pub(super) const TSFT: u32 = 1 << 0;
    pub(super) const FLAGS: u32 = 1 << 1;
    /// Another presence word follows.
    pub(super) const EXT: u32 = 1 << 31;
}
/// The Flags field's "data pad": the 802.11 header is padded to a 4-byte
/// boundary before the body.
pub const FLAG_DATA_PAD: u8 = 0x20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Len(LenError),
    Version(u8),
    HeaderLength(u16),
}

super::len_error!(Error);

#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        check_len(Layer::Link, buffer.as_ref(), MIN_LEN)?;
        let h = Header { buffer };
        let version = h.buffer.as_ref()[field::VERSION];
        if version != 0 {
            return Err(Error::Version(version));
        }
        let len = h.header_len();
        if len < MIN_LEN {
            return Err(Error::HeaderLength(len as u16));
        }
        check_len(Layer::Link, h.buffer.as_ref(), len)?;
        Ok(h)
    }

    pub fn header_len(&self) -> usize {
        usize::from(le16(self.buffer.as_ref(), field::LENGTH))
    }

    /// The Flags field, if present: after the presence words and the
    /// 8-byte, 8-aligned TSFT if that is present.
    pub fn flags(&self) -> Option<u8> {
        let b = &self.buffer.as_ref()[..self.header_len()];
        // A presence word, if the header holds it.
        let word = |at: usize| (at + 4 <= b.len()).then(|| le32(b, at));
        let first = word(field::PRESENT)?;
        let mut at = field::PRESENT;
        while word(at)? & present::EXT != 0 {
            at += 4;
        }
        at += 4;
        if first & present::FLAGS == 0 {
            return None;
        }
        if first & present::TSFT != 0 {
            at = at.next_multiple_of(8) + 8;
        }
        b.get(at).copied()
    }

    /// The 802.11 frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_its_own_length() {
        let buf = [0, 0, 10, 0, 0, 0, 0, 0, 1, 2, 0xee];
        let h = Header::new_checked(&buf[..]).unwrap();
        assert_eq!(h.payload(), &[0xee]);
        assert!(Header::new_checked(&buf[..9]).is_err());
        assert_eq!(
            Header::new_checked(&[0, 0, 4, 0, 0, 0, 0, 0][..]).unwrap_err(),
            Error::HeaderLength(4)
        );
    }

    #[test]
    fn finds_the_flags_field() {
        // Flags alone, then with a TSFT before it (aligned to 8), then after
        // a second presence word.
        let flags_only = [0, 0, 9, 0, 0x02, 0, 0, 0, 0x20];
        assert_eq!(
            Header::new_checked(&flags_only[..]).unwrap().flags(),
            Some(0x20)
        );
        let mut tsft = vec![0, 0, 17, 0, 0x03, 0, 0, 0];
        tsft.extend_from_slice(&[9; 8]);
        tsft.push(0x10);
        assert_eq!(Header::new_checked(&tsft[..]).unwrap().flags(), Some(0x10));
        let mut two_words = vec![0, 0, 25, 0, 0x03, 0, 0, 0x80, 0, 0, 0, 0];
        two_words.extend_from_slice(&[0; 4]); // to the 8-byte boundary
        two_words.extend_from_slice(&[9; 8]);
        two_words.push(0x20);
        assert_eq!(
            Header::new_checked(&two_words[..]).unwrap().flags(),
            Some(0x20)
        );
        let none = [0, 0, 8, 0, 0x04, 0, 0, 0];
        assert_eq!(Header::new_checked(&none[..]).unwrap().flags(), None);
        // Presence words running past the header: no flags read.
        let endless = [0, 0, 8, 0, 0x02, 0, 0, 0x80];
        assert_eq!(Header::new_checked(&endless[..]).unwrap().flags(), None);
    }
}
