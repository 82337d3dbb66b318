//! First fragments remembered for the later fragments of their datagram:
//! those carry no transport header, so they take what they need from here.
//! A shard remembers ports (`Fragments<(u16, u16)>`); the ingest path, for a
//! tunnel that rides on a fragmented datagram, the whole inner flow.

use hashbrown::HashMap;

use crate::wire::dissect::FragmentId;

#[derive(Clone, Copy, Debug)]
struct Entry<V> {
    value: V,
    first_ns: u64,
}

/// What became of a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Remembered {
    Yes,
    /// The table is full: a later fragment will not find it.
    TableFull,
}

#[derive(Debug)]
pub(crate) struct Fragments<V> {
    firsts: HashMap<FragmentId, Entry<V>, ahash::RandomState>,
    max: usize,
    timeout_ns: u64,
}

impl<V: Copy> Fragments<V> {
    pub(crate) fn new(max: usize, timeout_ns: u64, hasher: ahash::RandomState) -> Fragments<V> {
        Fragments {
            firsts: HashMap::with_hasher(hasher),
            max,
            timeout_ns,
        }
    }

    /// Remembers a first fragment's `value`.
    pub(crate) fn first(&mut self, id: FragmentId, value: V, ts_ns: u64) -> Remembered {
        if self.firsts.len() >= self.max && !self.firsts.contains_key(&id) {
            return Remembered::TableFull;
        }
        self.firsts.insert(
            id,
            Entry {
                value,
                first_ns: ts_ns,
            },
        );
        Remembered::Yes
    }

    /// What the first fragment of a later fragment's datagram left, if it
    /// was seen; the last fragment forgets it.
    pub(crate) fn later(&mut self, id: &FragmentId, last: bool) -> Option<V> {
        let first = if last {
            self.firsts.remove(id)
        } else {
            self.firsts.get(id).copied()
        };
        first.map(|f| f.value)
    }

    /// Forgets first fragments older than the fragment timeout.
    pub(crate) fn expire(&mut self, now_ns: u64) {
        let timeout = self.timeout_ns;
        self.firsts
            .retain(|_, f| now_ns.saturating_sub(f.first_ns) <= timeout);
    }
}
