//! Keys: a connection is a 5-tuple, a flow is Kubeshark's L4 flow
//! (protocol, client IP, server IP, server port).

use std::hash::{BuildHasher, Hash, Hasher};

use crate::packet::{Addr, L4Proto, Transport};

/// A connection's 5-tuple with its endpoints in a canonical order (`lo` is
/// the smaller (address, port) pair), so both directions find one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub lo: Addr,
    pub hi: Addr,
    pub lo_port: u16,
    pub hi_port: u16,
    pub proto: L4Proto,
}

impl ConnKey {
    /// The key of a packet's connection and whether the packet was sent by
    /// the `lo` endpoint.
    #[inline]
    pub fn of(t: &Transport) -> (ConnKey, bool) {
        let from_lo = (t.src, t.src_port) <= (t.dst, t.dst_port);
        let (lo, lo_port, hi, hi_port) = if from_lo {
            (t.src, t.src_port, t.dst, t.dst_port)
        } else {
            (t.dst, t.dst_port, t.src, t.src_port)
        };
        let key = ConnKey {
            lo,
            hi,
            lo_port,
            hi_port,
            proto: t.proto,
        };
        (key, from_lo)
    }

    /// The key of the connection between two (address, port) endpoints.
    pub fn between(proto: L4Proto, a: (Addr, u16), b: (Addr, u16)) -> ConnKey {
        let ((lo, lo_port), (hi, hi_port)) = if a <= b { (a, b) } else { (b, a) };
        ConnKey {
            lo,
            hi,
            lo_port,
            hi_port,
            proto,
        }
    }

    /// The flow this connection belongs to, given which end is the client.
    pub fn flow_key(&self, client_is_lo: bool) -> FlowKey {
        if client_is_lo {
            FlowKey {
                proto: self.proto,
                client: self.lo,
                server: self.hi,
                server_port: self.hi_port,
            }
        } else {
            FlowKey {
                proto: self.proto,
                client: self.hi,
                server: self.lo,
                server_port: self.lo_port,
            }
        }
    }
}

/// Kubeshark's L4 flow: many connections from one client to one server port.
/// VLAN tags are deliberately not part of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub proto: L4Proto,
    pub client: Addr,
    pub server: Addr,
    pub server_port: u16,
}

/// Picks the shard for a packet: a seeded hash of (protocol, unordered IP
/// pair). That is the part of the flow key that does not depend on which side
/// is the client, so both directions of a connection, every connection of a
/// flow and every fragment of a datagram meet in one shard, and a shard's
/// flows are complete without a cross-shard merge. The seed is random per
/// process because the traffic, and so the keys, are attacker-controlled.
#[derive(Clone, Debug)]
pub struct ShardHasher {
    state: ahash::RandomState,
    /// Shard `i` takes the hashes that scale into `ends[i-1]..ends[i]` of
    /// `0..total`: its share of the traffic.
    ends: Vec<u64>,
    total: u64,
}

impl ShardHasher {
    /// `shards` shards with equal shares.
    pub fn new(shards: usize, seed: Option<u64>) -> ShardHasher {
        ShardHasher::with_shares(&vec![1; shards.max(1)], seed)
    }

    /// One shard per entry of `shares`, taking that share of the traffic.
    pub fn with_shares(shares: &[u64], seed: Option<u64>) -> ShardHasher {
        let ends: Vec<u64> = shares
            .iter()
            .scan(0, |end, share| {
                *end += share.max(&1);
                Some(*end)
            })
            .collect();
        let state = match seed {
            Some(seed) => ahash::RandomState::with_seeds(seed, seed ^ 0x9e37_79b9_7f4a_7c15, 7, 11),
            None => ahash::RandomState::new(),
        };
        ShardHasher {
            state,
            total: ends.last().copied().unwrap_or(1),
            ends: if ends.is_empty() { vec![1] } else { ends },
        }
    }

    #[inline]
    pub fn shard_of(&self, t: &Transport) -> usize {
        if self.ends.len() == 1 {
            return 0;
        }
        let (a, b) = if t.src <= t.dst {
            (t.src, t.dst)
        } else {
            (t.dst, t.src)
        };
        let mut h = self.state.build_hasher();
        (t.proto as u8).hash(&mut h);
        a.hash(&mut h);
        b.hash(&mut h);
        // Multiply-shift maps the hash onto 0..total without a division.
        let x = ((u128::from(h.finish()) * u128::from(self.total)) >> 64) as u64;
        self.ends.iter().take_while(|&&end| end <= x).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Fragment;

    fn t(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Transport {
        Transport {
            proto: L4Proto::Tcp,
            src: Addr::from_v4(src),
            dst: Addr::from_v4(dst),
            src_port: sport,
            dst_port: dport,
            tcp_flags: 0,
            tcp_seq: 0,
            tcp_ack: 0,
            tcp_window: 0,
            payload_len: 0,
            ip_len: 0,
            fragment: Fragment::Whole,
        }
    }

    #[test]
    fn both_directions_share_a_key_and_a_shard() {
        let a = t([198, 18, 0, 1], 40000, [198, 18, 0, 2], 80);
        let b = t([198, 18, 0, 2], 80, [198, 18, 0, 1], 40000);
        let (ka, from_lo_a) = ConnKey::of(&a);
        let (kb, from_lo_b) = ConnKey::of(&b);
        assert_eq!(ka, kb);
        assert_ne!(from_lo_a, from_lo_b);
        let hasher = ShardHasher::new(7, Some(1));
        assert_eq!(hasher.shard_of(&a), hasher.shard_of(&b));
        // Another connection between the same hosts lands in the same shard.
        let c = t([198, 18, 0, 1], 40001, [198, 18, 0, 2], 443);
        assert_eq!(hasher.shard_of(&a), hasher.shard_of(&c));
    }

    #[test]
    fn shards_are_all_used() {
        let hasher = ShardHasher::new(4, Some(3));
        let mut seen = [0usize; 4];
        for i in 0..400u16 {
            let [x, y] = i.to_be_bytes();
            seen[hasher.shard_of(&t([198, 18, x, y], 1, [198, 19, 0, 1], 2))] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn shards_take_their_shares() {
        let hasher = ShardHasher::with_shares(&[1, 2, 1], Some(5));
        let mut seen = [0usize; 3];
        for i in 0..4000u16 {
            let [x, y] = i.to_be_bytes();
            seen[hasher.shard_of(&t([198, 18, x, y], 1, [198, 19, 0, 1], 2))] += 1;
        }
        // Expected 1000, 2000, 1000.
        assert!((900..1100).contains(&seen[0]), "{seen:?}");
        assert!((1850..2150).contains(&seen[1]), "{seen:?}");
        assert!((900..1100).contains(&seen[2]), "{seen:?}");
    }
}
