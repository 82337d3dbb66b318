//! MPLS label stack entry (RFC 3032). Carrier mirror ports often carry
//! labelled traffic; the dissector pops entries until bottom-of-stack.

use super::{Layer, LenError, be32, check_len};

pub const ENTRY_LEN: usize = 4;

#[derive(Debug, Clone, Copy)]
pub struct Entry<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Entry<T> {
    pub fn new_checked(buffer: T) -> Result<Self, LenError> {
        check_len(Layer::Mpls, buffer.as_ref(), ENTRY_LEN)?;
        Ok(Entry { buffer })
    }

    fn word(&self) -> u32 {
        be32(self.buffer.as_ref(), 0)
    }

    pub fn label(&self) -> u32 {
        self.word() >> 12
    }

    pub fn bottom_of_stack(&self) -> bool {
        self.word() & 0x100 != 0
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[ENTRY_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_label_and_bottom_flag() {
        // label 16, tc 0, S=1, ttl 64
        let buf = [0x00, 0x01, 0x01, 0x40, 0x45];
        let e = Entry::new_checked(&buf[..]).unwrap();
        assert_eq!(e.label(), 16);
        assert!(e.bottom_of_stack());
        assert_eq!(e.payload(), &[0x45]);
    }
}
