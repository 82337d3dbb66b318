//! TZSP, the TaZmen Sniffer Protocol: how MikroTik RouterOS streams what
//! its packet sniffer (`/tool sniffer`) and the firewall's `sniff-tzsp`
//! action capture, to UDP port 37008 by default. Four bytes (version 1, a
//! type, the encapsulation of what follows), tagged fields ending with an
//! END tag, then the captured frame (the protocol's description by Network
//! Chemistry, as Wireshark's `packet-tzsp.c` reads it).

use super::{Layer, LenError, be16, check_len};

mod field {
    pub(super) const VERSION: usize = 0;
    pub(super) const TYPE: usize = 1;
    pub(super) const ENCAPSULATION: usize = 2;
    pub(super) const TAGS: usize = 4;
}

/// The fixed part, before the tags.
pub const FIXED_LEN: usize = 4;
/// The default UDP port (0x9090; not assigned by IANA).
pub const PORT: u16 = 37008;

/// Types that carry a captured frame: received and to be sent. The others
/// (configuration, keep-alive, port opener) carry none.
pub const TYPE_RECEIVED: u8 = 0;
pub const TYPE_TRANSMIT: u8 = 1;

/// Encapsulations flowtap reads: an Ethernet frame, or an IP packet alone.
pub const ENCAP_ETHERNET: u16 = 1;
pub const ENCAP_RAW_IP: u16 = 7;

/// A tag of one byte and nothing else.
const TAG_PADDING: u8 = 0;
/// The last tag: the frame follows.
const TAG_END: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Len(LenError),
    /// Only version 1 is defined.
    Version(u8),
}

super::len_error!(Error);

#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
    /// The fixed part and the tags, through END.
    header_len: usize,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Checks the version and, for a type that carries a frame, that the
    /// tags through END were captured (a keep-alive or port opener is the
    /// four bytes alone).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let bytes = buffer.as_ref();
        check_len(Layer::Tzsp, bytes, FIXED_LEN)?;
        if bytes[field::VERSION] != 1 {
            return Err(Error::Version(bytes[field::VERSION]));
        }
        if !matches!(bytes[field::TYPE], TYPE_RECEIVED | TYPE_TRANSMIT) {
            return Ok(Header {
                buffer,
                header_len: FIXED_LEN,
            });
        }
        // Each tag takes at least a byte: the walk ends.
        let mut at = field::TAGS;
        loop {
            check_len(Layer::Tzsp, bytes, at + 1)?;
            match bytes[at] {
                TAG_END => break,
                TAG_PADDING => at += 1,
                _ => {
                    check_len(Layer::Tzsp, bytes, at + 2)?;
                    at += 2 + usize::from(bytes[at + 1]);
                }
            }
        }
        Ok(Header {
            buffer,
            header_len: at + 1,
        })
    }

    pub fn packet_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Whether it carries a captured frame.
    pub fn carries_a_frame(&self) -> bool {
        matches!(self.packet_type(), TYPE_RECEIVED | TYPE_TRANSMIT)
    }

    /// What the frame is: [`ENCAP_ETHERNET`], [`ENCAP_RAW_IP`], 802.11 (18)...
    pub fn encapsulation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ENCAPSULATION)
    }

    /// The fixed part and the tags.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The captured frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_the_tags_to_the_frame() {
        // As RouterOS sends it: received, Ethernet, no tags but END.
        let plain = [1, 0, 0, 1, 1, 0xee];
        let h = Header::new_checked(&plain[..]).unwrap();
        assert!(h.carries_a_frame());
        assert_eq!((h.encapsulation(), h.header_len()), (ENCAP_ETHERNET, 5));
        assert_eq!(h.payload(), &[0xee]);

        // Padding, a signal-to-noise tag of one byte, a timestamp of four.
        let tagged = [1, 0, 0, 18, 0, 11, 1, 0x20, 13, 4, 1, 2, 3, 4, 1, 0xee];
        let h = Header::new_checked(&tagged[..]).unwrap();
        assert_eq!((h.encapsulation(), h.header_len()), (18, 15));
        assert_eq!(h.payload(), &[0xee]);

        // A keep-alive and a port opener carry no frame, nor tags.
        for alone in [[1, 4, 0, 1], [1, 5, 0, 1]] {
            let h = Header::new_checked(&alone[..]).unwrap();
            assert!(!h.carries_a_frame() && h.payload().is_empty());
        }

        // Cut before END, or in a tag's length: too short.
        for cut in [3, 4, 9, 12, 14] {
            assert!(
                matches!(Header::new_checked(&tagged[..cut]), Err(Error::Len(_))),
                "{cut}"
            );
        }
        assert_eq!(
            Header::new_checked(&[2, 0, 0, 1, 1][..]).unwrap_err(),
            Error::Version(2)
        );
    }
}
