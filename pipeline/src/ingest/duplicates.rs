//! Exact duplicates: a SPAN session that mirrors both the client's and the
//! server's switch port delivers every packet twice, microseconds apart.
//! A packet is a duplicate when the bytes from its innermost IP header on
//! (as captured, with the original length) equal those of a packet seen
//! less than the window before.
//!
//! The bytes are compared by a 64-bit hash of their first [`COMPARED`]
//! bytes and the length. That prefix holds the IP header (with its
//! identification and checksum) and the TCP or UDP header, whose checksum
//! covers the whole segment: two packets that differ anywhere differ there,
//! so a per-packet cost that does not grow with the payload still compares
//! whole packets. Memory is fixed: a table of slots indexed by the hash,
//! each holding the last hash and time seen there; a slot taken over by
//! another packet forgets the first, which can only miss a duplicate (about
//! one in `slots / packets per window`), never invent one (short of a 64-bit
//! hash collision).

/// Bytes from the IP header on that are hashed: an IPv4 or IPv6 header and
/// the TCP or UDP header after it, checksum included (only IPv4 options
/// longer than 4 bytes push a TCP checksum past it; the IP header's own
/// identification and checksum are still in).
pub const COMPARED: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupConfig {
    /// Drop duplicates (`--dedup`); they are detected and counted either way.
    pub drop: bool,
    /// How far apart two copies may be (`--dedup-window-us`), at most
    /// [`MAX_WINDOW_NS`].
    pub window_ns: u64,
    /// Slots in the table, rounded up to a power of two (`--dedup-slots`).
    pub slots: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            drop: false,
            window_ns: 100_000,
            slots: 4096,
        }
    }
}

/// A slot keeps the time in microseconds in its low 16 bits (so 8 bytes
/// hold a slot, and the table stays in the CPU's caches): two copies can be
/// at most this far apart.
pub const MAX_WINDOW_NS: u64 = 65_535_000;
const TIME_BITS: u64 = 0xffff;

pub struct Duplicates {
    /// Each slot: the hash's upper 48 bits and the time in µs (low 16 bits).
    slots: Vec<u64>,
    mask: usize,
    window_us: u64,
    hasher: ahash::RandomState,
}

impl Duplicates {
    pub fn new(config: &DedupConfig, hasher: ahash::RandomState) -> Duplicates {
        let len = config.slots.clamp(1, 1 << 24).next_power_of_two();
        Duplicates {
            slots: vec![0; len],
            mask: len - 1,
            window_us: config.window_ns.min(MAX_WINDOW_NS) / 1_000,
            hasher,
        }
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Whether `packet` (captured bytes from the IP header on, `len` bytes
    /// originally) repeats one seen within the window; remembers it.
    #[inline]
    pub fn seen(&mut self, packet: &[u8], len: u32, ts_ns: u64) -> bool {
        if self.window_us == 0 {
            return false;
        }
        let compared = &packet[..packet.len().min(COMPARED)];
        let hash = self.hasher.hash_one((len, compared));
        // The upper bits tag the slot (never zero: zero is an empty slot);
        // the lower bits pick it.
        let tag = (hash | 1 << 63) & !TIME_BITS;
        let now_us = (ts_ns / 1_000) & TIME_BITS;
        let slot = &mut self.slots[hash as usize & self.mask];
        let then_us = *slot & TIME_BITS;
        // Copies may arrive in either order (two queues): the distance
        // either way, modulo the 16-bit clock.
        let apart = now_us.wrapping_sub(then_us) & TIME_BITS;
        let apart = apart.min(TIME_BITS + 1 - apart);
        let duplicate = *slot & !TIME_BITS == tag && apart <= self.window_us;
        *slot = tag | now_us;
        duplicate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_within_the_window() {
        let mut d = Duplicates::new(
            &DedupConfig::default(),
            ahash::RandomState::with_seeds(1, 2, 3, 4),
        );
        let a = [0x45u8, 0, 0, 40, 1, 2];
        let b = [0x45u8, 0, 0, 40, 1, 3];
        assert!(!d.seen(&a, 40, 1_000_000));
        assert!(d.seen(&a, 40, 1_050_000), "50 µs later");
        assert!(!d.seen(&b, 40, 1_060_000), "other bytes");
        assert!(!d.seen(&a, 41, 1_070_000), "other length");
        assert!(!d.seen(&a, 41, 1_300_000), "past the window");
        assert!(d.seen(&a, 41, 1_250_000), "either order");
        let mut off = Duplicates::new(
            &DedupConfig {
                window_ns: 0,
                ..DedupConfig::default()
            },
            ahash::RandomState::new(),
        );
        assert!(!off.seen(&a, 40, 1) && !off.seen(&a, 40, 1));
    }
}
