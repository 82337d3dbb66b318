//! Exact duplicates: a SPAN session that mirrors both the client's and the
//! server's switch port delivers every packet twice, microseconds apart.
//! A packet is a duplicate when the bytes from its IP header on (as
//! captured, with the original length) equal those of a packet seen less
//! than the window before. Memory is fixed: a table of slots indexed by the
//! bytes' hash, each holding the last hash and time seen there; a slot
//! taken over by another packet forgets the first, which can only miss a
//! duplicate, never invent one (short of a 64-bit hash collision).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupConfig {
    /// Drop duplicates (`--dedup`); they are detected and counted either way.
    pub drop: bool,
    /// How far apart two copies may be (`--dedup-window`).
    pub window_ns: u64,
    /// Slots in the table, rounded up to a power of two (`--dedup-slots`).
    pub slots: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            drop: false,
            window_ns: 100_000,
            slots: 1 << 16,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Slot {
    hash: u64,
    ts_ns: u64,
}

pub struct Duplicates {
    slots: Vec<Slot>,
    mask: usize,
    window_ns: u64,
    hasher: ahash::RandomState,
}

impl Duplicates {
    pub fn new(config: &DedupConfig, hasher: ahash::RandomState) -> Duplicates {
        let len = config.slots.clamp(1, 1 << 24).next_power_of_two();
        Duplicates {
            slots: vec![Slot::default(); len],
            mask: len - 1,
            window_ns: config.window_ns,
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
        if self.window_ns == 0 {
            return false;
        }
        // Zero marks an empty slot.
        let hash = self.hasher.hash_one((len, packet)) | 1;
        let slot = &mut self.slots[hash as usize & self.mask];
        let duplicate = slot.hash == hash && slot.ts_ns.abs_diff(ts_ns) <= self.window_ns;
        *slot = Slot { hash, ts_ns };
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
