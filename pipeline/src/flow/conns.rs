//! A shard's connections by 5-tuple, each also reachable through a small
//! handle ([`ConnRef`]) that the expiry wheel and the eviction queues hold
//! instead of the 38-byte key: with a million connections, each queue is a
//! million entries, so their size is a good share of a connection's memory
//! (see `Limits::connection_bytes`).

use super::chunked_vec::ChunkedVec;
use super::conn::Conn;
use super::key::ConnKey;
use crate::prefetch::prefetch;

/// One connection, by its key's hash and when it opened (to the 1024 ns
/// tick, modulo 2^32: which incarnation of the 5-tuple it is). Four-byte
/// words, so a queue of them packs at 12 bytes an entry.
///
/// Resolving a handle re-hashes each candidate's key and compares the full
/// hash: a handle names another connection only if two live 5-tuples hash
/// to the same 64 bits and opened on the same tick modulo 73 minutes. Every
/// decision taken through a handle (expire, evict) also checks the state of
/// the connection it finds, so even then nothing is done that the found
/// connection does not call for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ConnRef {
    hash: [u32; 2],
    opened: u32,
}

impl ConnRef {
    /// The handle of `conn`, whose key has this hash.
    pub(super) fn new(hash: u64, conn: &Conn) -> ConnRef {
        ConnRef {
            hash: [hash as u32, (hash >> 32) as u32],
            opened: conn.opened_tick(),
        }
    }

    fn hash(&self) -> u64 {
        u64::from(self.hash[0]) | (u64::from(self.hash[1]) << 32)
    }
}

/// A slot of the index: the low 32 bits of a connection's hash (which also
/// say where its probe starts) and where the connection is in the storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    tag: u32,
    index: u32,
}

const EMPTY: Slot = Slot {
    tag: 0,
    index: u32::MAX,
};

/// Slots of a new table (a power of two).
const MIN_SLOTS: usize = 16;

/// The connections by key: an open-addressing index of 8-byte slots
/// (linear probing, at most 3/4 full, deletion by backward shift) over a
/// dense storage that never moves what it holds as it grows.
///
/// A table of our own rather than hashbrown's, for two things a packet
/// path needs and hashbrown's API does not give: the address a lookup will
/// start at, to prefetch it for a whole batch of packets before any is
/// looked up ([`Conns::prefetch_slot`], [`Conns::prefetch_conn`]); and
/// growth that moves 8-byte slots, not 104-byte connections (rehashing a
/// hashbrown table of a million connections copied 100 MB into fresh,
/// kernel-zeroed memory).
#[derive(Debug)]
pub(super) struct Conns {
    /// A power-of-two count of slots.
    slots: Vec<Slot>,
    /// The connections, densely: a removed one's place takes the last.
    conns: ChunkedVec<Conn>,
    hasher: ahash::RandomState,
}

impl Conns {
    pub(super) fn new(hasher: ahash::RandomState) -> Conns {
        Conns {
            slots: vec![EMPTY; MIN_SLOTS],
            conns: ChunkedVec::default(),
            hasher,
        }
    }

    /// The hash a key is filed by; computed once per packet and passed to
    /// the `_hashed` lookups.
    #[inline]
    pub(super) fn hash(&self, key: &ConnKey) -> u64 {
        self.hasher.hash_one(key)
    }

    pub(super) fn len(&self) -> usize {
        self.conns.len()
    }

    /// The slot a probe for `hash` starts at.
    #[inline]
    fn home(&self, tag: u32) -> usize {
        tag as usize & (self.slots.len() - 1)
    }

    /// The slot and storage index of the first connection under `hash` that
    /// `is` accepts.
    #[inline]
    fn find(&self, hash: u64, is: impl Fn(&Conn) -> bool) -> Option<(usize, u32)> {
        let tag = hash as u32;
        let mask = self.slots.len() - 1;
        let mut at = self.home(tag);
        // Ends: a quarter of the slots at least is empty.
        loop {
            let slot = self.slots[at];
            if slot.index == EMPTY.index {
                return None;
            }
            if slot.tag == tag && is(&self.conns[slot.index as usize]) {
                return Some((at, slot.index));
            }
            at = (at + 1) & mask;
        }
    }

    /// Asks for the slot a lookup of `hash` starts at.
    #[inline]
    pub(super) fn prefetch_slot(&self, hash: u64) {
        prefetch(&self.slots[self.home(hash as u32)]);
    }

    /// Asks for the connection the first slot of `hash` names, when its
    /// tag matches (nearly always the one a lookup will find).
    #[inline]
    pub(super) fn prefetch_conn(&self, hash: u64) {
        let slot = self.slots[self.home(hash as u32)];
        if slot.tag == hash as u32
            && let Some(conn) = self.conns.get(slot.index as usize)
        {
            prefetch(conn);
        }
    }

    #[inline]
    pub(super) fn get_hashed(&self, hash: u64, key: &ConnKey) -> Option<&Conn> {
        let (_, index) = self.find(hash, |c| c.key == *key)?;
        Some(&self.conns[index as usize])
    }

    /// Where `key`'s connection is in the storage: valid until the next
    /// removal (which may move the last connection into a hole), so a
    /// position kept longer is checked with [`Conns::holds`].
    #[inline]
    pub(super) fn index_of(&self, hash: u64, key: &ConnKey) -> Option<u32> {
        self.find(hash, |c| c.key == *key).map(|(_, index)| index)
    }

    /// Whether the connection at `index` is `key`'s (keys are distinct in
    /// the table, so it is the one a lookup would find); not if a removal
    /// moved it or it is gone.
    #[inline]
    pub(super) fn holds(&self, index: u32, key: &ConnKey) -> bool {
        self.conns
            .get(index as usize)
            .is_some_and(|conn| conn.key == *key)
    }

    /// The connection at `index`, which [`Conns::index_of`] gave.
    #[inline]
    pub(super) fn at(&self, index: u32) -> &Conn {
        &self.conns[index as usize]
    }

    /// The connection at `index`, which [`Conns::index_of`] gave.
    #[inline]
    pub(super) fn at_mut(&mut self, index: u32) -> &mut Conn {
        &mut self.conns[index as usize]
    }

    pub(super) fn get(&self, key: &ConnKey) -> Option<&Conn> {
        self.get_hashed(self.hash(key), key)
    }

    /// Adds a connection whose key (with this hash) is not in the table;
    /// returns its handle.
    pub(super) fn insert(&mut self, hash: u64, conn: Conn) -> ConnRef {
        let handle = ConnRef::new(hash, &conn);
        if (self.conns.len() + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let index = u32::try_from(self.conns.len()).expect("fewer than 2^32 connections");
        self.conns.push(conn);
        self.place(Slot {
            tag: hash as u32,
            index,
        });
        handle
    }

    /// Files `slot` in the first empty slot from its home.
    fn place(&mut self, slot: Slot) {
        let mask = self.slots.len() - 1;
        let mut at = self.home(slot.tag);
        while self.slots[at] != EMPTY {
            at = (at + 1) & mask;
        }
        self.slots[at] = slot;
    }

    /// Twice the slots; the connections stay where they are.
    fn grow(&mut self) {
        let doubled = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        for slot in old.into_iter().filter(|s| *s != EMPTY) {
            self.place(slot);
        }
    }

    pub(super) fn remove(&mut self, key: &ConnKey) -> Option<Conn> {
        let (at, index) = self.find(self.hash(key), |c| c.key == *key)?;
        self.empty_slot(at);
        // The last connection moves into the hole: its slot follows it.
        let last = self.conns.len() - 1;
        if index as usize != last {
            let hash = self.hash(&self.conns[last].key);
            let mask = self.slots.len() - 1;
            let mut at = self.home(hash as u32);
            while self.slots[at].index as usize != last {
                at = (at + 1) & mask;
            }
            self.slots[at].index = index;
        }
        Some(self.conns.swap_remove(index as usize))
    }

    /// Empties slot `at`, moving back the slots after it that would
    /// otherwise be cut off from their home (linear probing's deletion:
    /// no tombstones, so probes stay as short as the table's fill).
    fn empty_slot(&mut self, mut at: usize) {
        let mask = self.slots.len() - 1;
        self.slots[at] = EMPTY;
        let mut next = at;
        loop {
            next = (next + 1) & mask;
            let slot = self.slots[next];
            if slot == EMPTY {
                return;
            }
            // A slot stays if its home is cyclically within (at, next].
            let home = self.home(slot.tag);
            let stays = if at <= next {
                at < home && home <= next
            } else {
                at < home || home <= next
            };
            if !stays {
                self.slots[at] = slot;
                self.slots[next] = EMPTY;
                at = next;
            }
        }
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Conn> {
        self.conns.iter_mut()
    }

    /// The connection a handle names, if it is still in the table.
    pub(super) fn resolve(&self, r: ConnRef) -> Option<&Conn> {
        let hash = r.hash();
        let (_, index) = self.find(hash, |c| {
            c.opened_tick() == r.opened && self.hasher.hash_one(c.key) == hash
        })?;
        Some(&self.conns[index as usize])
    }

    /// Bytes of memory the table holds per connection at most, beyond the
    /// connection itself: its slot when the index has just doubled (3/8
    /// full).
    pub(super) const SLOT_BYTES_WORST: usize = size_of::<Slot>() * 8 / 3 + 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::side::Side;
    use crate::packet::{Addr, L4Proto, Transport};

    fn conn(port: u16, ts_ns: u64) -> Conn {
        let t = Transport::new(
            L4Proto::Udp,
            (Addr::from_v4([198, 18, 0, 1]), port),
            (Addr::from_v4([198, 18, 0, 2]), 53),
            0,
        );
        let (_, from_lo) = ConnKey::of(&t);
        Conn::new(0, from_lo, &t, Side::Client, ts_ns).0
    }

    fn insert(conns: &mut Conns, conn: Conn) -> ConnRef {
        conns.insert(conns.hash(&conn.key), conn)
    }

    #[test]
    fn a_handle_names_one_incarnation() {
        let mut conns = Conns::new(ahash::RandomState::with_seeds(1, 2, 3, 4));
        let first = conn(40_000, 1_000_000);
        let a = first.key;
        let old = insert(&mut conns, first);
        insert(&mut conns, conn(40_001, 1_000_000));
        assert_eq!(conns.resolve(old).map(|c| c.key), Some(a));
        // The same 5-tuple opened again later: the old handle names nothing.
        conns.remove(&a).expect("filed");
        assert!(conns.resolve(old).is_none());
        let new = insert(&mut conns, conn(40_000, 9_000_000));
        assert!(conns.resolve(old).is_none());
        assert_eq!(conns.resolve(new).map(|c| c.key), Some(a));
        assert_eq!(conns.len(), 2);
    }

    /// Every filled slot is reachable from its home without crossing an
    /// empty one, and names a connection whose key has its tag.
    fn check_index(conns: &Conns) {
        let mask = conns.slots.len() - 1;
        let mut named = vec![false; conns.len()];
        for (at, slot) in conns.slots.iter().enumerate() {
            if *slot == EMPTY {
                continue;
            }
            let conn = &conns.conns[slot.index as usize];
            assert_eq!(conns.hash(&conn.key) as u32, slot.tag);
            let mut probe = conns.home(slot.tag);
            while probe != at {
                assert_ne!(conns.slots[probe], EMPTY, "slot {at} cut off from its home");
                probe = (probe + 1) & mask;
            }
            assert!(!std::mem::replace(&mut named[slot.index as usize], true));
        }
        assert!(named.iter().all(|n| *n), "every connection has one slot");
        assert!(conns.len() * 4 <= conns.slots.len() * 3);
    }

    #[test]
    fn opens_and_closes_in_any_order_agree_with_a_set() {
        // A small key space over a small, growing index: long runs of
        // neighbouring slots, wrapping around, and every deletion case.
        let mut conns = Conns::new(ahash::RandomState::with_seeds(5, 6, 7, 8));
        let mut model = std::collections::HashMap::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for step in 0..40_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // More opens than closes for the first half, then the reverse:
            // the table grows, then drains.
            let port = 1000 + (x % 600) as u16;
            let open = (x >> 32) % 8 < if step < 20_000 { 5 } else { 3 };
            let c = conn(port, step * 1024);
            let key = c.key;
            match (open, model.contains_key(&key)) {
                (true, false) => {
                    let handle = insert(&mut conns, c);
                    model.insert(key, handle);
                }
                (false, true) => {
                    let handle = model.remove(&key).expect("in the model");
                    let gone = conns.remove(&key).expect("in the table");
                    assert_eq!(gone.key, key);
                    assert!(conns.resolve(handle).is_none());
                }
                _ => assert_eq!(conns.get(&key).is_some(), model.contains_key(&key)),
            }
            if step % 997 == 0 {
                check_index(&conns);
                assert_eq!(conns.len(), model.len());
                for (key, handle) in &model {
                    assert_eq!(conns.get(key).map(|c| c.key), Some(*key));
                    assert_eq!(conns.resolve(*handle).map(|c| c.key), Some(*key));
                }
            }
        }
        for key in model.keys().copied().collect::<Vec<_>>() {
            conns.remove(&key).expect("in the table");
        }
        assert_eq!(conns.len(), 0);
        assert!(conns.slots.iter().all(|s| *s == EMPTY));
    }

    #[test]
    fn growing_moves_slots_not_connections() {
        let mut conns = Conns::new(ahash::RandomState::with_seeds(1, 2, 3, 4));
        insert(&mut conns, conn(1, 0));
        let first = conns.get(&conn(1, 0).key).expect("filed") as *const Conn;
        for port in 2..5000 {
            insert(&mut conns, conn(port, 0));
        }
        assert!(conns.slots.len() >= 5000 * 4 / 3);
        let after = conns.get(&conn(1, 0).key).expect("filed") as *const Conn;
        assert_eq!(first, after);
        check_index(&conns);
    }

    #[test]
    fn entries_are_small() {
        // What a connection costs in the table, and in each queue; see
        // Limits::connection_bytes and BENCHMARKS.md.
        assert_eq!(size_of::<Conn>(), 104);
        assert_eq!(size_of::<ConnRef>(), 12);
        assert_eq!(size_of::<Slot>(), 8);
    }
}
