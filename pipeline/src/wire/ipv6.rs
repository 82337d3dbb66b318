//! IPv6 fixed header (RFC 8200) and the extension headers in front of the
//! upper-layer header.

use super::{Layer, LenError, ah, be16, be32, check_len, ip_proto};

mod field {
    use std::ops::Range;
    pub(super) const PAYLOAD_LENGTH: usize = 4;
    pub(super) const NEXT_HEADER: usize = 6;
    pub(super) const SOURCE: Range<usize> = 8..24;
    pub(super) const DESTINATION: Range<usize> = 24..40;
}

pub const HEADER_LEN: usize = 40;

/// The longest extension chain followed before giving up. Real traffic rarely
/// has more than three; a bound keeps a crafted chain from costing more.
pub const MAX_EXTENSION_HEADERS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Len(LenError),
    Version(u8),
    /// More than [`MAX_EXTENSION_HEADERS`] extension headers.
    ChainTooLong,
    /// The extension headers run past the payload length.
    PayloadLength {
        payload: u16,
        extensions: usize,
    },
}

super::len_error!(Error);

#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        check_len(Layer::Ipv6, buffer.as_ref(), HEADER_LEN)?;
        let packet = Packet { buffer };
        if packet.version() != 6 {
            return Err(Error::Version(packet.version()));
        }
        Ok(packet)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LENGTH)
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    pub fn source(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        a
    }

    pub fn destination(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        a
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Walks the extension headers to the upper-layer header.
    pub fn upper_layer(&self) -> Result<UpperLayer<'_>, Error> {
        let payload = self.payload();
        let mut next = self.next_header();
        let mut offset = 0usize;
        let mut fragment = None;
        for _ in 0..=MAX_EXTENSION_HEADERS {
            let len = match next {
                ip_proto::HOP_BY_HOP
                | ip_proto::IPV6_ROUTING
                | ip_proto::IPV6_DEST_OPTS
                | ip_proto::MOBILITY
                | ip_proto::HIP
                | ip_proto::SHIM6 => {
                    let ext = &payload[offset.min(payload.len())..];
                    check_len(Layer::Ipv6Extension, ext, 2)?;
                    (usize::from(ext[1]) + 1) * 8
                }
                ip_proto::AH => {
                    let ext = &payload[offset.min(payload.len())..];
                    ah::header_len(ext, Layer::Ipv6Extension)?
                }
                ip_proto::IPV6_FRAGMENT => {
                    let ext = &payload[offset.min(payload.len())..];
                    check_len(Layer::Ipv6Extension, ext, FRAGMENT_HEADER_LEN)?;
                    let word = be16(ext, 2);
                    fragment = Some(FragmentHeader {
                        offset: u32::from(word >> 3) * 8,
                        more: word & 1 != 0,
                        ident: be32(ext, 4),
                    });
                    FRAGMENT_HEADER_LEN
                }
                _ => return self.finish(next, offset, fragment),
            };
            // The header must be captured whole before we step over it.
            check_len(Layer::Ipv6Extension, payload, offset + len)?;
            next = payload[offset];
            offset += len;
            if fragment.is_some_and(|f| f.offset != 0) {
                // Later fragments carry no further headers of ours.
                return self.finish(next, offset, fragment);
            }
        }
        Err(Error::ChainTooLong)
    }

    fn finish(
        &self,
        protocol: u8,
        offset: usize,
        fragment: Option<FragmentHeader>,
    ) -> Result<UpperLayer<'_>, Error> {
        let payload_len = match self.payload_len() {
            // Zero means a jumbogram or a GSO super-packet: length unknown.
            0 => None,
            len if usize::from(len) < offset => {
                return Err(Error::PayloadLength {
                    payload: len,
                    extensions: offset,
                });
            }
            len => Some(usize::from(len) - offset),
        };
        Ok(UpperLayer {
            protocol,
            payload: &self.payload()[offset..],
            payload_len,
            fragment,
        })
    }
}

pub const FRAGMENT_HEADER_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader {
    /// Offset in bytes.
    pub offset: u32,
    pub more: bool,
    pub ident: u32,
}

/// Where the extension walk ended.
#[derive(Debug, Clone, Copy)]
pub struct UpperLayer<'a> {
    pub protocol: u8,
    /// Captured bytes of the upper-layer header and payload.
    pub payload: &'a [u8],
    /// Their length according to the header, when it says.
    pub payload_len: Option<usize>,
    pub fragment: Option<FragmentHeader>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn header(next: u8, payload_len: u16) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0, 0, 0, next, 64];
        h[4..6].copy_from_slice(&payload_len.to_be_bytes());
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        src[15] = 1;
        let mut dst = src;
        dst[15] = 2;
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h
    }

    #[test]
    fn walks_extensions_to_tcp() {
        let mut p = header(ip_proto::HOP_BY_HOP, 8 + 16 + 20);
        p.extend_from_slice(&[ip_proto::IPV6_DEST_OPTS, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&[ip_proto::TCP, 1]);
        p.extend_from_slice(&[0; 14]);
        p.extend_from_slice(&[0xaa; 20]);
        let packet = Packet::new_checked(&p[..]).unwrap();
        let upper = packet.upper_layer().unwrap();
        assert_eq!(upper.protocol, ip_proto::TCP);
        assert_eq!(upper.payload.len(), 20);
        assert_eq!(upper.payload_len, Some(20));
        assert_eq!(upper.fragment, None);
    }

    #[test]
    fn reads_fragment_header() {
        let mut p = header(ip_proto::IPV6_FRAGMENT, 8 + 8);
        p.extend_from_slice(&[ip_proto::UDP, 0, 0x00, 0x11, 0, 0, 0, 42]);
        p.extend_from_slice(&[0; 8]);
        let packet = Packet::new_checked(&p[..]).unwrap();
        let upper = packet.upper_layer().unwrap();
        assert_eq!(upper.protocol, ip_proto::UDP);
        assert_eq!(
            upper.fragment,
            Some(FragmentHeader {
                offset: 16,
                more: true,
                ident: 42
            })
        );
    }

    #[test]
    fn bounds_the_chain_and_checks_lengths() {
        let mut p = header(ip_proto::IPV6_DEST_OPTS, 200);
        for _ in 0..12 {
            p.extend_from_slice(&[ip_proto::IPV6_DEST_OPTS, 0, 0, 0, 0, 0, 0, 0]);
        }
        let packet = Packet::new_checked(&p[..]).unwrap();
        assert_eq!(packet.upper_layer().unwrap_err(), Error::ChainTooLong);

        let p = header(ip_proto::HOP_BY_HOP, 8);
        let packet = Packet::new_checked(&p[..]).unwrap();
        assert!(matches!(packet.upper_layer(), Err(Error::Len(_))));

        let mut p = header(ip_proto::HOP_BY_HOP, 4);
        p.extend_from_slice(&[ip_proto::UDP, 0, 0, 0, 0, 0, 0, 0]);
        let packet = Packet::new_checked(&p[..]).unwrap();
        assert!(matches!(
            packet.upper_layer(),
            Err(Error::PayloadLength { .. })
        ));

        let mut p = header(ip_proto::TCP, 0);
        p[0] = 0x40;
        assert_eq!(Packet::new_checked(&p[..]).unwrap_err(), Error::Version(4));
    }
}
