//! First fragments remembered for the later fragments of their datagram:
//! those carry no transport header, so they take their ports from here.

use hashbrown::HashMap;

use crate::packet::{Addr, L4Proto};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FragKey {
    src: Addr,
    dst: Addr,
    ident: u32,
    proto: L4Proto,
}

#[derive(Clone, Copy, Debug)]
struct FragEntry {
    src_port: u16,
    dst_port: u16,
    first_ns: u64,
}

/// What became of a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Remembered {
    Yes,
    /// The table is full: a later fragment will not find its ports.
    TableFull,
}

#[derive(Debug)]
pub(crate) struct Fragments {
    firsts: HashMap<FragKey, FragEntry, ahash::RandomState>,
    max: usize,
    timeout_ns: u64,
}

impl Fragments {
    pub(super) fn new(max: usize, timeout_ns: u64, hasher: ahash::RandomState) -> Fragments {
        Fragments {
            firsts: HashMap::with_hasher(hasher),
            max,
            timeout_ns,
        }
    }

    /// Remembers a first fragment's ports.
    pub(super) fn first(
        &mut self,
        src: Addr,
        dst: Addr,
        proto: L4Proto,
        ident: u32,
        ports: (u16, u16),
        ts_ns: u64,
    ) -> Remembered {
        let key = FragKey {
            src,
            dst,
            ident,
            proto,
        };
        if self.firsts.len() >= self.max && !self.firsts.contains_key(&key) {
            return Remembered::TableFull;
        }
        self.firsts.insert(
            key,
            FragEntry {
                src_port: ports.0,
                dst_port: ports.1,
                first_ns: ts_ns,
            },
        );
        Remembered::Yes
    }

    /// The ports of a later fragment's datagram, if its first fragment was
    /// seen; the last fragment forgets it.
    pub(super) fn later(
        &mut self,
        src: Addr,
        dst: Addr,
        proto: L4Proto,
        ident: u32,
        last: bool,
    ) -> Option<(u16, u16)> {
        let key = FragKey {
            src,
            dst,
            ident,
            proto,
        };
        let first = if last {
            self.firsts.remove(&key)
        } else {
            self.firsts.get(&key).copied()
        };
        first.map(|f| (f.src_port, f.dst_port))
    }

    /// Forgets first fragments older than the fragment timeout.
    pub(super) fn expire(&mut self, now_ns: u64) {
        let timeout = self.timeout_ns;
        self.firsts
            .retain(|_, f| now_ns.saturating_sub(f.first_ns) <= timeout);
    }
}
