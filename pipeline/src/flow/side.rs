//! The two ends of a flow, and values kept per end.
//!
//! Every per-direction value (packets, bytes, rates) is indexed by the side
//! that *sent* it: `counts[Side::Client]` is what the client sent, which is
//! also what the server received. Handshake legs are indexed by the side
//! whose view of the round trip they are: the client's leg is SYN -> SYN-ACK,
//! the server's SYN -> completing ACK.

use std::ops::{Index, IndexMut};

/// Which end of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Client, Side::Server];

    pub const fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }

    /// The sender of a packet going client-to-server (`c2s`) or back.
    #[inline]
    pub const fn sender(c2s: bool) -> Side {
        if c2s { Side::Client } else { Side::Server }
    }
}

/// One value for each side, indexed by [`Side`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PerSide<T>(pub [T; 2]);

impl<T> PerSide<T> {
    pub const fn new(client: T, server: T) -> PerSide<T> {
        PerSide([client, server])
    }

    /// A value for each side from `f(side)`.
    pub fn from_fn(mut f: impl FnMut(Side) -> T) -> PerSide<T> {
        PerSide([f(Side::Client), f(Side::Server)])
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> PerSide<U> {
        PerSide(self.0.map(f))
    }

    /// `(side, value)` for both sides, client first.
    pub fn iter(&self) -> impl Iterator<Item = (Side, &T)> {
        Side::BOTH.into_iter().zip(self.0.iter())
    }
}

impl<T> Index<Side> for PerSide<T> {
    type Output = T;

    #[inline]
    fn index(&self, side: Side) -> &T {
        &self.0[side as usize]
    }
}

impl<T> IndexMut<Side> for PerSide<T> {
    #[inline]
    fn index_mut(&mut self, side: Side) -> &mut T {
        &mut self.0[side as usize]
    }
}

/// Packets and bytes one side sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub pkts: u64,
    pub bytes: u64,
}

impl Counter {
    /// Saturating, as every sum of counts is: a hub adds what its agents
    /// say, and one that lies must not wrap a total.
    pub fn add(&mut self, other: Counter) {
        self.pkts = self.pkts.saturating_add(other.pkts);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

impl PerSide<Counter> {
    /// Both sides together: every packet counted once.
    pub fn total(&self) -> Counter {
        Counter {
            pkts: self[Side::Client]
                .pkts
                .saturating_add(self[Side::Server].pkts),
            bytes: self[Side::Client]
                .bytes
                .saturating_add(self[Side::Server].bytes),
        }
    }
}

impl PerSide<f64> {
    pub fn total(&self) -> f64 {
        self[Side::Client] + self[Side::Server]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_by_side() {
        let mut v = PerSide::new(1, 2);
        v[Side::Server] += 10;
        assert_eq!((v[Side::Client], v[Side::Server]), (1, 12));
        assert_eq!(Side::sender(true), Side::Client);
        assert_eq!(Side::Client.other(), Side::Server);
        let c = PerSide::new(
            Counter { pkts: 1, bytes: 60 },
            Counter { pkts: 2, bytes: 90 },
        );
        assert_eq!(
            c.total(),
            Counter {
                pkts: 3,
                bytes: 150
            }
        );
    }
}
