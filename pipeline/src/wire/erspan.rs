//! ERSPAN, Cisco's encapsulated remote SPAN (draft-foschiano-erspan), in
//! GRE. Type I has no header of its own (GRE 0x88be without a sequence
//! number, then the mirrored frame); type II (GRE 0x88be) has 8 bytes, type
//! III (GRE 0x22eb) 12, plus an 8-byte platform-specific sub-header when its
//! O flag is set.

use super::{Layer, LenError, be16, check_len};

mod field {
    pub(super) const VERSION_VLAN: usize = 0;
    pub(super) const SESSION: usize = 2;
    /// Type III: P, frame type and the hardware id's high bits.
    pub(super) const FRAME_TYPE: usize = 10;
    /// Type III: the hardware id's low bits, D, granularity and O.
    pub(super) const OPTIONAL: usize = 11;
}

pub const TYPE_II_LEN: usize = 8;
pub const TYPE_III_LEN: usize = 12;
pub const PLATFORM_SUBHEADER_LEN: usize = 8;

/// The version field of each type.
pub const VERSION_II: u8 = 1;
pub const VERSION_III: u8 = 2;

/// What a type III header says the mirrored data is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    Ethernet,
    Ip,
    Other(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Len(LenError),
    /// The version field does not match the GRE protocol type.
    Version(u8),
}

super::len_error!(Error);

#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
    version: u8,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// A type II (`version` [`VERSION_II`]) or III header.
    pub fn new_checked(buffer: T, version: u8) -> Result<Self, Error> {
        let fixed = if version == VERSION_III {
            TYPE_III_LEN
        } else {
            TYPE_II_LEN
        };
        check_len(Layer::Erspan, buffer.as_ref(), fixed)?;
        let h = Header { buffer, version };
        let found = h.buffer.as_ref()[field::VERSION_VLAN] >> 4;
        if found != version {
            return Err(Error::Version(found));
        }
        check_len(Layer::Erspan, h.buffer.as_ref(), h.header_len())?;
        Ok(h)
    }

    /// The 10-bit session id the mirror was configured with.
    pub fn session_id(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SESSION) & 0x03ff
    }

    pub fn frame_type(&self) -> FrameType {
        if self.version != VERSION_III {
            return FrameType::Ethernet;
        }
        match (self.buffer.as_ref()[field::FRAME_TYPE] >> 2) & 0x1f {
            0 => FrameType::Ethernet,
            2 => FrameType::Ip,
            other => FrameType::Other(other),
        }
    }

    fn has_platform_subheader(&self) -> bool {
        self.version == VERSION_III && self.buffer.as_ref()[field::OPTIONAL] & 1 != 0
    }

    pub fn header_len(&self) -> usize {
        match (self.version == VERSION_III, self.has_platform_subheader()) {
            (false, _) => TYPE_II_LEN,
            (true, false) => TYPE_III_LEN,
            (true, true) => TYPE_III_LEN + PLATFORM_SUBHEADER_LEN,
        }
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A type II or III header for `session`, Ethernet payload.
    pub(crate) fn header(version: u8, session: u16, platform: bool) -> Vec<u8> {
        let mut h = vec![version << 4, 0];
        h.extend_from_slice(&session.to_be_bytes());
        h.extend_from_slice(&[0; 4]);
        if version == VERSION_III {
            h.extend_from_slice(&[0, 0, 0, u8::from(platform)]);
            if platform {
                h.extend_from_slice(&[0x55; PLATFORM_SUBHEADER_LEN]);
            }
        }
        h
    }

    #[test]
    fn both_types_and_the_platform_subheader() {
        let mut ii = header(VERSION_II, 0x123, false);
        ii.push(0xee);
        let h = Header::new_checked(&ii[..], VERSION_II).unwrap();
        assert_eq!((h.session_id(), h.header_len()), (0x123, 8));
        assert_eq!(h.payload(), &[0xee]);
        assert_eq!(
            Header::new_checked(&ii[..], VERSION_III).unwrap_err(),
            Error::Len(LenError {
                layer: Layer::Erspan,
                required: 12,
                available: 9
            })
        );

        let mut iii = header(VERSION_III, 7, true);
        iii.push(0xee);
        let h = Header::new_checked(&iii[..], VERSION_III).unwrap();
        assert_eq!((h.header_len(), h.frame_type()), (20, FrameType::Ethernet));
        assert_eq!(h.payload(), &[0xee]);
        assert!(Header::new_checked(&iii[..19], VERSION_III).is_err());
        iii[10] = 2 << 2;
        iii[11] = 0;
        let h = Header::new_checked(&iii[..], VERSION_III).unwrap();
        assert_eq!((h.header_len(), h.frame_type()), (12, FrameType::Ip));
        assert_eq!(
            Header::new_checked(&iii[..], VERSION_II).unwrap_err(),
            Error::Version(2)
        );
    }
}
