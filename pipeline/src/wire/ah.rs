//! The IP Authentication Header (RFC 4302), after an IPv4 header or in an
//! IPv6 extension chain: its next header, then its length in 32-bit words
//! less two.

use super::{Layer, LenError, check_len};

/// The length of the Authentication Header `buf` starts with, checked to
/// be all there (`layer` names where a short one was found).
pub fn header_len(buf: &[u8], layer: Layer) -> Result<usize, LenError> {
    check_len(layer, buf, 2)?;
    let len = (usize::from(buf[1]) + 2) * 4;
    check_len(layer, buf, len)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_in_words_less_two() {
        let ah = [
            6u8, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(header_len(&ah, Layer::Ipv4), Ok(24));
        assert!(header_len(&ah[..23], Layer::Ipv4).is_err());
        assert!(header_len(&ah[..1], Layer::Ipv4).is_err());
    }
}
