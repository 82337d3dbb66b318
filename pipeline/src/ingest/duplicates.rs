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
//! packets. Memory is fixed: a table of buckets of [`WAYS`] slots indexed
//! by the hash, each slot holding a tag of the hash and the time it was
//! seen; a bucket full of newer packets forgets its oldest, which can only
//! miss a duplicate, never invent one (short of two packets meeting in a
//! bucket with the same 30-bit tag within the window).
//!
//! A packet is compared where it is counted, not where it is read: the
//! worker that reads a frame computes its key ([`Duplicates::key`], carried
//! in [`crate::packet::PacketMeta::copy_key`]), and the worker that owns
//! its connection looks the key up in its own table as it counts the
//! packet ([`crate::ingest::Ingest::drops_copy`]). The two copies of a
//! packet have the same addresses and ports, so they meet at that worker
//! wherever they were read: two interfaces (`-i a,b`, a SPAN of each end)
//! or two receive queues (a NIC spreads a cloud mirror's copies by their
//! outer addresses, one per source ENI). And the copy kept is the first to
//! reach the connection's counting: each port's copies reach it in the
//! order that port saw them, so the copies kept are in that order too, and
//! a connection's SYN is counted before its SYN-ACK. (Decided where they
//! were read, the kept copy could be one read on another worker and handed
//! on, counted after later packets the owner read itself: a handshake taken
//! for a connection joined mid-stream.) No table is written by two cores.

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

/// A slot keeps the time in microseconds in its low 32 bits, whether the
/// copy kept came in fragments in the next, the hash's tag in the rest (so
/// 8 bytes hold a slot, and the table stays in the CPU's caches). Sixteen
/// bits of time wrapped every 65.536 ms: a packet
/// repeated a multiple of that later (an IPv6 retransmission, whose first
/// bytes are the original's) was taken for a copy. Thirty-two wrap every
/// 71.6 minutes. Two copies can be at most this far apart.
pub const MAX_WINDOW_NS: u64 = 65_535_000;
const TIME_BITS: u64 = 0xffff_ffff;
const IN_FRAGMENTS: u64 = 1 << 32;
const TAG_BITS: u64 = !(TIME_BITS | IN_FRAGMENTS);
/// Slots a key may take (a bucket: 32 bytes, within one cache line). A
/// packet's copies meet where its connection is counted, which a copy read
/// by another worker reaches through a hand-off: hundreds of other packets
/// may be looked up between the two. One slot a key lost a copy each time
/// one of them took its slot (8% at 350 between, 4096 slots); a bucket
/// loses one only when four of them fall in it.
const WAYS: usize = 4;

/// One worker's table, and the hash that keys it: every worker's is built
/// with the same hasher, so a key computed where a frame is read is looked
/// up where its connection is counted.
pub struct Duplicates {
    /// Buckets of [`WAYS`] slots. Each slot: the key's upper 31 bits (the
    /// top one always set: zero is an empty slot), whether the copy kept
    /// came in fragments (bit 32), and the time in µs (low 32 bits).
    slots: Box<[u64]>,
    /// Buckets less one (a power of two).
    mask: usize,
    /// The newest time seen, in µs (the low 32 bits).
    newest_us: u64,
    window_us: u64,
    hasher: ahash::RandomState,
}

impl Duplicates {
    pub fn new(config: &DedupConfig, hasher: ahash::RandomState) -> Duplicates {
        let len = config.slots.clamp(WAYS, 1 << 24).next_power_of_two();
        Duplicates {
            slots: vec![0; len].into_boxed_slice(),
            mask: len / WAYS - 1,
            newest_us: 0,
            window_us: config.window_ns.min(MAX_WINDOW_NS) / 1_000,
            hasher,
        }
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Whether duplicates are looked for at all (`--dedup-window-us 0`
    /// turns it off).
    pub fn compares(&self) -> bool {
        self.window_us != 0
    }

    /// The key of a packet (captured bytes from the IP header on, `len`
    /// bytes originally): its copies have the same. Never zero, which
    /// [`crate::packet::PacketMeta::copy_key`] keeps for "not compared".
    #[inline]
    pub fn key(&self, packet: &[u8], len: u32) -> u64 {
        self.hash(&packet[..packet.len().min(COMPARED)], len) | 1 << 63
    }

    /// Which part of its packet a later fragment of a tunnelled datagram
    /// carries: `payload_len` bytes from `offset` in its datagram's
    /// payload, starting with `payload` (as captured; a snap length may
    /// have cut it). Two mirror sessions' copies of one fragmented datagram
    /// differ in their outer headers and carry the same bytes after them;
    /// two parts of one packet differ in where they start.
    #[inline]
    pub fn later_part(&self, offset: u32, payload: &[u8], payload_len: u32) -> CopyPart {
        let compared = &payload[..payload.len().min(COMPARED)];
        let hash = self.hasher.hash_one((offset, payload_len, compared));
        CopyPart((hash >> 32) as u32 | 1 << 31)
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

    /// Whether `part` of the packet with `key` ([`Duplicates::key`])
    /// repeats one seen within the window; remembers it.
    ///
    /// A later fragment repeats one where its packet was kept whole (its
    /// copy, carried in fragments, was a copy of that one: a SPAN port's
    /// and a mirror session's), or where another copy's fragment carried
    /// the same part (two sessions' copies, each in fragments).
    #[inline]
    pub fn seen(&mut self, key: u64, part: CopyPart, ts_ns: u64) -> bool {
        if self.window_us == 0 {
            return false;
        }
        let now_us = (ts_ns / 1_000) & TIME_BITS;
        if part.is_later() {
            let window = self.window_us;
            let bucket = self.bucket(key);
            let kept_whole = bucket
                .iter()
                .any(|&slot| holds(slot, key, now_us, window) && slot & IN_FRAGMENTS == 0);
            if kept_whole {
                return true;
            }
            let key = self.hasher.hash_one((key, part.0)) | 1 << 63;
            return self.remember(key, false, now_us);
        }
        self.remember(key, part == CopyPart::FIRST, now_us)
    }

    /// Whether the packet with `key` was seen within the window; leaves it
    /// in its bucket, as whole or `in_fragments`, or, a copy, as the copy
    /// kept was. A new one takes its key's earlier slot, else an empty one,
    /// else the one seen longest before the newest time this table has
    /// seen (not the farthest from its own: a packet handed over from
    /// another worker comes later than newer ones read here, and must not
    /// push out those still waiting for their copies).
    #[inline]
    fn remember(&mut self, key: u64, in_fragments: bool, now_us: u64) -> bool {
        // Ahead of the newest (modulo the 32-bit clock): the newest now.
        if now_us.wrapping_sub(self.newest_us) & TIME_BITS < 1 << 31 {
            self.newest_us = now_us;
        }
        let (tag, window, newest) = (key & TAG_BITS, self.window_us, self.newest_us);
        let bucket = self.bucket(key);
        let mut taken = 0;
        let mut oldest = 0;
        for (at, &slot) in bucket.iter().enumerate() {
            if holds(slot, key, now_us, window) {
                bucket[at] = tag | slot & IN_FRAGMENTS | now_us;
                return true;
            }
            // Its key's, past the window: taken again.
            if slot & TAG_BITS == tag {
                taken = at;
                break;
            }
            let age = if slot == 0 {
                u64::MAX
            } else {
                newest.wrapping_sub(slot & TIME_BITS) & TIME_BITS
            };
            if age > oldest {
                (taken, oldest) = (at, age);
            }
        }
        let form = if in_fragments { IN_FRAGMENTS } else { 0 };
        bucket[taken] = tag | form | now_us;
        false
    }

    /// The slots `key` may take.
    #[inline]
    fn bucket(&mut self, key: u64) -> &mut [u64] {
        let at = (key as usize & self.mask) * WAYS;
        &mut self.slots[at..at + WAYS]
    }
}

/// Whether `slot` holds the packet with `key`, seen within `window_us` of
/// `now_us` either way (copies may arrive in either order: two ports, two
/// queues), modulo the 32-bit clock.
#[inline]
fn holds(slot: u64, key: u64, now_us: u64, window_us: u64) -> bool {
    let apart = now_us.wrapping_sub(slot & TIME_BITS) & TIME_BITS;
    slot & TAG_BITS == key & TAG_BITS && apart.min(TIME_BITS + 1 - apart) <= window_us
}

/// Which part of its packet a frame carries, for finding its copies: the
/// whole packet, the first fragment of a tunnelled datagram (the rest in
/// later ones), or a later fragment ([`Duplicates::later_part`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyPart(u32);

impl CopyPart {
    pub const WHOLE: CopyPart = CopyPart(0);
    pub const FIRST: CopyPart = CopyPart(1);

    fn is_later(self) -> bool {
        self.0 & 1 << 31 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of one bucket: every key falls in it.
    fn one_bucket() -> Duplicates {
        Duplicates::new(
            &DedupConfig {
                slots: 1,
                ..DedupConfig::default()
            },
            ahash::RandomState::with_seeds(1, 2, 3, 4),
        )
    }

    /// Keyed and looked up in one table, as one worker does.
    fn seen(d: &mut Duplicates, packet: &[u8], len: u32, ts_ns: u64) -> bool {
        let key = d.key(packet, len);
        d.seen(key, CopyPart::WHOLE, ts_ns)
    }

    /// The same bytes a multiple of 65.536 ms later (the old 16-bit clock's
    /// wrap) are no copy: a retransmission, not a duplicate.
    #[test]
    fn a_repeat_long_after_is_no_copy() {
        let mut d = Duplicates::new(
            &DedupConfig::default(),
            ahash::RandomState::with_seeds(1, 2, 3, 4),
        );
        let a = [0x60u8, 0, 0, 0, 0, 20, 6, 64];
        assert!(!seen(&mut d, &a, 60, 1_000_000_000));
        for later_us in [65_536, 1_048_576, 3_145_728] {
            assert!(
                !seen(&mut d, &a, 60, 1_000_000_000 + later_us * 1_000),
                "{later_us} µs later"
            );
        }
    }

    #[test]
    fn same_bytes_within_the_window() {
        let mut d = Duplicates::new(
            &DedupConfig::default(),
            ahash::RandomState::with_seeds(1, 2, 3, 4),
        );
        let a = [0x45u8, 0, 0, 40, 1, 2];
        let b = [0x45u8, 0, 0, 40, 1, 3];
        assert!(!seen(&mut d, &a, 40, 1_000_000));
        assert!(seen(&mut d, &a, 40, 1_050_000), "50 µs later");
        assert!(!seen(&mut d, &b, 40, 1_060_000), "other bytes");
        assert!(!seen(&mut d, &a, 41, 1_070_000), "other length");
        assert!(!seen(&mut d, &a, 41, 1_300_000), "past the window");
        assert!(seen(&mut d, &a, 41, 1_250_000), "either order");
        let mut off = Duplicates::new(
            &DedupConfig {
                window_ns: 0,
                ..DedupConfig::default()
            },
            ahash::RandomState::new(),
        );
        assert!(!seen(&mut off, &a, 40, 1) && !seen(&mut off, &a, 40, 1));
    }

    /// A routed copy (TTL one less, DSCP re-marked, ECN marked, so another
    /// header checksum) is a duplicate; a packet that differs in any other
    /// byte is not. IPv6 the same, by hop limit and traffic class.
    #[test]
    fn what_a_router_changes_is_left_out() {
        let mut d = Duplicates::new(
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
        assert!(!seen(&mut d, &v4, 28, 1_000_000));
        assert!(seen(&mut d, &routed, 28, 1_010_000), "routed copy");
        // Every other byte still tells packets apart (its lowest bit
        // flipped: byte 0 stays version 4, its header length changed).
        let mut ts = 1_020_000;
        for at in (0..v4.len()).filter(|at| ![1, 8, 10, 11].contains(at)) {
            let mut other = v4;
            other[at] ^= 0x01;
            ts += 1_000;
            assert!(!seen(&mut d, &other, 28, ts), "byte {at}");
        }

        let mut v6 = [0u8; 48];
        v6[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
        v6[8..10].copy_from_slice(&[0x20, 0x01]);
        v6[40..48].copy_from_slice(&[0x30, 0x39, 0, 53, 0, 8, 0x11, 0x22]);
        let mut routed = v6;
        routed[0] = 0x6b; // traffic class 0xb8 ...
        routed[1] = 0x80; // ... of which these are the low bits
        routed[7] = 63;
        assert!(!seen(&mut d, &v6, 48, 2_000_000));
        assert!(seen(&mut d, &routed, 48, 2_010_000), "routed copy");
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
            assert!(!seen(&mut d, &other, 48, ts), "byte {at}");
        }
    }

    /// A copy counted after other packets were looked up (its twin came
    /// through another worker's hand-off) is still found while fewer than
    /// four of them took its bucket; a fourth takes the slot seen longest
    /// ago. (One bucket here: every key falls in it.)
    #[test]
    fn a_copy_is_found_after_others_took_its_bucket() {
        let mut d = one_bucket();
        assert_eq!(d.slots(), WAYS);
        let packets: Vec<[u8; 6]> = (0..5).map(|i| [0x45, 0, 0, 40, 1, i]).collect();
        assert!(!seen(&mut d, &packets[0], 40, 1_000_000));
        for (i, p) in packets[1..4].iter().enumerate() {
            assert!(!seen(&mut d, p, 40, 1_001_000 + i as u64 * 1_000));
        }
        assert!(
            seen(&mut d, &packets[0], 40, 1_010_000),
            "after three others"
        );
        // A fifth takes the slot seen longest ago: the second packet's.
        assert!(!seen(&mut d, &packets[4], 40, 1_020_000));
        assert!(seen(&mut d, &packets[0], 40, 1_021_000));
        assert!(seen(&mut d, &packets[2], 40, 1_022_000));
        assert!(!seen(&mut d, &packets[1], 40, 1_023_000), "its slot taken");
    }

    /// A packet handed over late (stamped before newer ones read here)
    /// takes the slot seen longest ago, not a newer one still waiting for
    /// its copy (the slot farthest from its own time).
    #[test]
    fn a_late_packet_gives_up_the_oldest_slot() {
        let mut d = one_bucket();
        let packets: Vec<[u8; 6]> = (0..5).map(|i| [0x45, 0, 0, 40, 1, i]).collect();
        for (p, us) in packets[..4].iter().zip([1_000, 5_000, 5_100, 5_200]) {
            assert!(!seen(&mut d, p, 40, us * 1_000));
        }
        assert!(
            !seen(&mut d, &packets[4], 40, 3_000_000),
            "handed over late"
        );
        assert!(seen(&mut d, &packets[3], 40, 5_250_000), "the newest kept");
        assert!(
            !seen(&mut d, &packets[0], 40, 1_050_000),
            "the oldest given up"
        );
    }

    /// A key made where a frame is read is found in the table of the
    /// worker that counts its connection: every worker's is built with the
    /// same hasher.
    #[test]
    fn a_key_made_on_one_worker_is_found_on_another() {
        let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let reader = Duplicates::new(&DedupConfig::default(), hasher.clone());
        let mut owner = Duplicates::new(&DedupConfig::default(), hasher);
        let a = [0x45u8, 0, 0, 40, 1, 2];
        assert!(!owner.seen(reader.key(&a, 40), CopyPart::WHOLE, 1_000_000));
        assert!(owner.seen(reader.key(&a, 40), CopyPart::WHOLE, 1_020_000));
        assert_ne!(reader.key(&a, 40), 0);
    }

    /// A packet's copies, one whole and one carried in fragments (a SPAN
    /// port's and a mirror session's whose datagram was fragmented): the
    /// later fragments of the copy are copies too, in either order. Two
    /// copies each in fragments: each later part is found once, and so are
    /// the parts of a copy that came in fragments before the whole one.
    #[test]
    fn a_later_fragment_is_a_copy_of_its_part_or_of_its_whole_packet() {
        let mut d = Duplicates::new(
            &DedupConfig::default(),
            ahash::RandomState::with_seeds(1, 2, 3, 4),
        );
        let (packet, other) = (
            d.key(&[0x45, 0, 0, 40, 1, 2], 1500),
            d.key(&[0x45, 0, 0, 40, 1, 3], 1500),
        );
        // Two parts of one packet with the same bytes (zeros, a repeating
        // pattern) and the same length are two parts, by where they start;
        // so are two cut short by a snap length.
        let (second, third) = (
            d.later_part(1480, &[0u8; 100], 100),
            d.later_part(1580, &[0u8; 100], 100),
        );
        assert_ne!(second, third);
        assert_ne!(d.later_part(1480, &[], 100), d.later_part(1580, &[], 100));
        assert!(second.is_later() && !CopyPart::FIRST.is_later() && !CopyPart::WHOLE.is_later());
        // Whole, then in fragments.
        assert!(!d.seen(packet, CopyPart::WHOLE, 1_000_000));
        assert!(d.seen(packet, CopyPart::FIRST, 1_010_000));
        assert!(d.seen(packet, second, 1_011_000));
        assert!(d.seen(packet, third, 1_012_000));
        // In fragments twice: the first copy's parts kept.
        let mut ts = 2_000_000;
        let mut step = || {
            ts += 1_000;
            ts
        };
        assert!(!d.seen(other, CopyPart::FIRST, step()));
        assert!(!d.seen(other, second, step()));
        assert!(d.seen(other, CopyPart::FIRST, step()));
        assert!(!d.seen(other, third, step()));
        assert!(d.seen(other, second, step()));
        assert!(d.seen(other, third, step()));
        // In fragments, then whole: the whole one is the copy.
        let late = d.key(&[0x45, 0, 0, 40, 1, 4], 1500);
        assert!(!d.seen(late, CopyPart::FIRST, 3_000_000));
        assert!(!d.seen(late, second, 3_001_000));
        assert!(d.seen(late, CopyPart::WHOLE, 3_010_000));
    }
}
