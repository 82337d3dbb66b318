//! Exact duplicates: a SPAN session that mirrors both the client's and the
//! server's switch port delivers every packet twice, microseconds apart; a
//! cloud mirror of both ends (two ENIs' sessions to one target) delivers
//! them as far apart as the two hosts are. A packet is a duplicate when the
//! bytes from its innermost IP header on (as captured, with the original
//! length) equal those of a packet seen less than the window before, but
//! for what a router or switch between the two mirror points may change:
//! the TTL or hop limit, the DSCP and ECN bits, and the IPv4 header
//! checksum that covers them (RFC 1812 §5.3.1; RFC 3168 §5).
//!
//! The bytes are compared by a 64-bit hash of their first [`COMPARED`]
//! bytes and the length. That prefix holds the IP header (with its
//! identification) and the TCP or UDP header, whose checksum covers the
//! whole segment: two packets that differ anywhere differ there, so a
//! per-packet cost that does not grow with the payload still compares whole
//! packets. Memory is fixed: a table of slots indexed by the hash, each
//! holding the last hash and time seen there; a slot taken over by another
//! packet forgets the first, which can only miss a duplicate (about one in
//! `slots / packets per window`), never invent one (short of a 64-bit hash
//! collision).
//!
//! With `--dedup`, the workers of a pipeline share one table: the two
//! copies of a packet can arrive on two receive queues (a NIC spreads a
//! cloud mirror's copies by their outer addresses, one per source ENI),
//! read by two workers. Otherwise each worker has its own: duplicates are
//! then only found to keep a copy from reading as a retransmission, and a
//! table several cores write costs cache lines moving between them on
//! every packet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes from the IP header on that are hashed: an IPv4 or IPv6 header and
/// the TCP or UDP header after it, checksum included (IPv4 options longer
/// than 26 bytes, or any IPv6 extension header, push a TCP checksum past
/// it; the IP header's own identification is still in).
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

/// A slot keeps the time in microseconds in its low 32 bits, the hash's
/// tag in the rest (so 8 bytes hold a slot, and the table stays in the
/// CPU's caches). Sixteen bits of time wrapped every 65.536 ms: a packet
/// repeated a multiple of that later (an IPv6 retransmission, whose first
/// bytes are the original's) was taken for a copy. Thirty-two wrap every
/// 71.6 minutes. Two copies can be at most this far apart.
pub const MAX_WINDOW_NS: u64 = 65_535_000;
const TIME_BITS: u64 = 0xffff_ffff;

/// One table; clones share it.
#[derive(Clone)]
pub struct Duplicates {
    /// Each slot: the hash's upper 32 bits (the top one always set) and the
    /// time in µs (low 32 bits).
    slots: Arc<[AtomicU64]>,
    mask: usize,
    window_us: u64,
    hasher: ahash::RandomState,
}

impl Duplicates {
    pub fn new(config: &DedupConfig, hasher: ahash::RandomState) -> Duplicates {
        let len = config.slots.clamp(1, 1 << 24).next_power_of_two();
        Duplicates {
            slots: (0..len).map(|_| AtomicU64::new(0)).collect(),
            mask: len - 1,
            window_us: config.window_ns.min(MAX_WINDOW_NS) / 1_000,
            hasher,
        }
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The hash of a packet's first bytes and its length, but for what a
    /// router or switch between two mirror points may change: IPv4's
    /// DSCP/ECN byte, TTL and header checksum; IPv6's traffic class and hop
    /// limit. (Words masked: copying the bytes to zero those took 7 ns a
    /// packet in criterion `path/1k`, this 3.)
    #[inline]
    fn hash(&self, ip: &[u8], len: u32) -> u64 {
        let word = |at: usize| u64::from_be_bytes(ip[at..at + 8].try_into().expect("8 bytes"));
        match ip.first().map(|b| b >> 4) {
            Some(4) if ip.len() >= 16 => self.hasher.hash_one((
                len,
                // Version to the fragment offset, but DSCP/ECN (byte 1).
                word(0) & 0xff00_ffff_ffff_ffff,
                // TTL to the source address: the protocol (byte 9) and
                // the address.
                word(8) & 0x00ff_0000_ffff_ffff,
                &ip[16..],
            )),
            Some(6) if ip.len() >= 8 => self.hasher.hash_one((
                len,
                // But traffic class (bits 4-11) and hop limit (byte 7).
                word(0) & 0xf00f_ffff_ffff_ff00,
                &ip[8..],
            )),
            _ => self.hasher.hash_one((len, ip)),
        }
    }

    /// Whether `packet` (captured bytes from the IP header on, `len` bytes
    /// originally) repeats one seen within the window; remembers it.
    #[inline]
    pub fn seen(&self, packet: &[u8], len: u32, ts_ns: u64) -> bool {
        if self.window_us == 0 {
            return false;
        }
        let hash = self.hash(&packet[..packet.len().min(COMPARED)], len);
        // The upper bits tag the slot (never zero: zero is an empty slot);
        // the lower bits pick it.
        let tag = (hash | 1 << 63) & !TIME_BITS;
        let now_us = (ts_ns / 1_000) & TIME_BITS;
        // Read, then written: two workers that take a packet's two copies
        // within the same few nanoseconds can both miss the other's (a swap
        // would not, for 2 ns a packet in criterion `path/1k`); the copies
        // of a mirror of both ends arrive microseconds or more apart.
        let slot = &self.slots[hash as usize & self.mask];
        let then = slot.load(Ordering::Relaxed);
        slot.store(tag | now_us, Ordering::Relaxed);
        let then_us = then & TIME_BITS;
        // Copies may arrive in either order (two queues): the distance
        // either way, modulo the 32-bit clock.
        let apart = now_us.wrapping_sub(then_us) & TIME_BITS;
        let apart = apart.min(TIME_BITS + 1 - apart);
        then & !TIME_BITS == tag && apart <= self.window_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same bytes a multiple of 65.536 ms later (the old 16-bit clock's
    /// wrap) are no copy: a retransmission, not a duplicate.
    #[test]
    fn a_repeat_long_after_is_no_copy() {
        let d = Duplicates::new(
            &DedupConfig::default(),
            ahash::RandomState::with_seeds(1, 2, 3, 4),
        );
        let a = [0x60u8, 0, 0, 0, 0, 20, 6, 64];
        assert!(!d.seen(&a, 60, 1_000_000_000));
        for later_us in [65_536, 1_048_576, 3_145_728] {
            assert!(
                !d.seen(&a, 60, 1_000_000_000 + later_us * 1_000),
                "{later_us} µs later"
            );
        }
    }

    #[test]
    fn same_bytes_within_the_window() {
        let d = Duplicates::new(
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
        let off = Duplicates::new(
            &DedupConfig {
                window_ns: 0,
                ..DedupConfig::default()
            },
            ahash::RandomState::new(),
        );
        assert!(!off.seen(&a, 40, 1) && !off.seen(&a, 40, 1));
    }

    /// A routed copy (TTL one less, DSCP re-marked, ECN marked, so another
    /// header checksum) is a duplicate; a packet that differs in any other
    /// byte is not. IPv6 the same, by hop limit and traffic class.
    #[test]
    fn what_a_router_changes_is_left_out() {
        let d = Duplicates::new(
            &DedupConfig::default(),
            ahash::RandomState::with_seeds(1, 2, 3, 4),
        );
        let v4: [u8; 28] = [
            0x45, 0x00, 0, 28, 0x12, 0x34, 0x40, 0, 64, 17, 0xaa, 0xbb, 198, 18, 0, 1, 198, 19, 0,
            1, 0x30, 0x39, 0, 53, 0, 8, 0x11, 0x22,
        ];
        let mut routed = v4;
        routed[1] = 0xb8 | 0b11; // EF, CE
        routed[8] = 63;
        routed[10..12].copy_from_slice(&[0x01, 0x02]);
        assert!(!d.seen(&v4, 28, 1_000_000));
        assert!(d.seen(&routed, 28, 1_010_000), "routed copy");
        // Every other byte still tells packets apart (its lowest bit
        // flipped: byte 0 stays version 4, its header length changed).
        let mut ts = 1_020_000;
        for at in (0..v4.len()).filter(|at| ![1, 8, 10, 11].contains(at)) {
            let mut other = v4;
            other[at] ^= 0x01;
            ts += 1_000;
            assert!(!d.seen(&other, 28, ts), "byte {at}");
        }

        let mut v6 = [0u8; 48];
        v6[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
        v6[8..10].copy_from_slice(&[0x20, 0x01]);
        v6[40..48].copy_from_slice(&[0x30, 0x39, 0, 53, 0, 8, 0x11, 0x22]);
        let mut routed = v6;
        routed[0] = 0x6b; // traffic class 0xb8 ...
        routed[1] = 0x80; // ... of which these are the low bits
        routed[7] = 63;
        assert!(!d.seen(&v6, 48, 2_000_000));
        assert!(d.seen(&routed, 48, 2_010_000), "routed copy");
        // The version, the flow label, the payload length, the next header,
        // the addresses and what follows still tell packets apart.
        let mut ts = 2_020_000;
        for (at, bit) in (0..v6.len()).filter(|&at| at != 7).map(|at| match at {
            0 => (0, 0x10),
            1 => (1, 0x01),
            at => (at, 0x01),
        }) {
            let mut other = v6;
            other[at] ^= bit;
            ts += 1_000;
            assert!(!d.seen(&other, 48, ts), "byte {at}");
        }
    }

    /// Clones share one table: a copy read by another worker is found.
    #[test]
    fn clones_share_the_table() {
        let first = Duplicates::new(
            &DedupConfig::default(),
            ahash::RandomState::with_seeds(1, 2, 3, 4),
        );
        let second = first.clone();
        let a = [0x45u8, 0, 0, 40, 1, 2];
        assert!(!first.seen(&a, 40, 1_000_000));
        assert!(second.seen(&a, 40, 1_020_000));
    }
}
