//! A shard's connections by 5-tuple, each also reachable through a small
//! handle ([`ConnRef`]) that the expiry wheel and the eviction queues hold
//! instead of the 38-byte key: with a million connections, each queue is a
//! million entries, so their size is a good share of a connection's memory
//! (see `Limits::connection_bytes`).

use hashbrown::HashTable;

use super::conn::Conn;
use super::key::ConnKey;

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

/// The table holds the connections themselves, each with its key.
#[derive(Debug)]
pub(super) struct Conns {
    table: HashTable<Conn>,
    hasher: ahash::RandomState,
}

impl Conns {
    pub(super) fn new(hasher: ahash::RandomState) -> Conns {
        Conns {
            table: HashTable::new(),
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
        self.table.len()
    }

    #[inline]
    pub(super) fn get_hashed(&self, hash: u64, key: &ConnKey) -> Option<&Conn> {
        self.table.find(hash, |c| c.key == *key)
    }

    #[inline]
    pub(super) fn get_mut_hashed(&mut self, hash: u64, key: &ConnKey) -> Option<&mut Conn> {
        self.table.find_mut(hash, |c| c.key == *key)
    }

    pub(super) fn get(&self, key: &ConnKey) -> Option<&Conn> {
        self.get_hashed(self.hash(key), key)
    }

    /// Adds a connection whose key (with this hash) is not in the table;
    /// returns its handle.
    pub(super) fn insert(&mut self, hash: u64, conn: Conn) -> ConnRef {
        let handle = ConnRef::new(hash, &conn);
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, conn, |c| hasher.hash_one(c.key));
        handle
    }

    pub(super) fn remove(&mut self, key: &ConnKey) -> Option<Conn> {
        let entry = self.table.find_entry(self.hash(key), |c| c.key == *key);
        entry.ok().map(|e| e.remove().0)
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Conn> {
        self.table.iter_mut()
    }

    /// The connection a handle names, if it is still in the table.
    pub(super) fn resolve(&self, r: ConnRef) -> Option<&Conn> {
        let hash = r.hash();
        self.table.find(hash, |c| {
            c.opened_tick() == r.opened && self.hasher.hash_one(c.key) == hash
        })
    }
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

    #[test]
    fn entries_are_small() {
        // What a connection costs in the table, and in each queue; see
        // Limits::connection_bytes and BENCHMARKS.md.
        assert_eq!(size_of::<Conn>(), 104);
        assert_eq!(size_of::<ConnRef>(), 12);
    }
}
