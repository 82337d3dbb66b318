//! BSD loopback headers: NULL (link type 0, address family in the capturing
//! host's byte order) and LOOP (link type 108, network byte order).

use super::{Layer, LenError, check_len};

pub const HEADER_LEN: usize = 4;

/// What the four-byte family value says the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
    Other(u32),
}

#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn new_checked(buffer: T) -> Result<Self, LenError> {
        check_len(Layer::Link, buffer.as_ref(), HEADER_LEN)?;
        Ok(Header { buffer })
    }

    /// Decodes the family. For NULL the byte order is that of the machine that
    /// wrote the file, so a value that only makes sense swapped is swapped:
    /// every family number fits in the low 16 bits.
    pub fn family(&self, network_order: bool) -> Family {
        let b = self.buffer.as_ref();
        let raw = [b[0], b[1], b[2], b[3]];
        let value = if network_order {
            u32::from_be_bytes(raw)
        } else {
            let le = u32::from_le_bytes(raw);
            if le & 0xffff_0000 != 0 {
                le.swap_bytes()
            } else {
                le
            }
        };
        match value {
            2 => Family::Ipv4,
            // AF_INET6 differs per OS: Linux 10, NetBSD/OpenBSD 24, FreeBSD 28, Darwin 30.
            10 | 24 | 28 | 30 => Family::Ipv6,
            other => Family::Other(other),
        }
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_in_either_byte_order() {
        let le = Header::new_checked(&[30u8, 0, 0, 0][..]).unwrap();
        assert_eq!(le.family(false), Family::Ipv6);
        let be = Header::new_checked(&[0u8, 0, 0, 2][..]).unwrap();
        assert_eq!(be.family(false), Family::Ipv4);
        assert_eq!(be.family(true), Family::Ipv4);
        let odd = Header::new_checked(&[7u8, 0, 0, 0][..]).unwrap();
        assert_eq!(odd.family(false), Family::Other(7));
    }
}
