//! Frames and bytes per mirror session (an encapsulation and its VNI,
//! ERSPAN session or GRE key), so an operator can see which sessions
//! deliver. The number of sessions is bounded (`--max-mirror-sessions`):
//! frames of sessions past the bound are counted together.

use std::collections::HashMap;

use crate::flow::Counter;
use crate::wire::decap::Mirror;

/// One session's count, as exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionCount {
    pub mirror: Mirror,
    /// Frames and wire bytes (outer headers included) it delivered.
    pub frames: Counter,
}

/// Every session a shard or snapshot has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorSessions {
    counts: HashMap<Mirror, Counter, ahash::RandomState>,
    max: usize,
    /// Frames of sessions beyond the bound.
    pub over_limit: Counter,
}

impl MirrorSessions {
    pub fn new(max: usize) -> MirrorSessions {
        MirrorSessions {
            max,
            ..MirrorSessions::default()
        }
    }

    #[inline]
    pub fn count(&mut self, mirror: Mirror, wire_len: u32) {
        let full = self.counts.len() >= self.max;
        let counter = match self.counts.get_mut(&mirror) {
            Some(c) => c,
            None if full => &mut self.over_limit,
            None => self.counts.entry(mirror).or_default(),
        };
        counter.add(Counter {
            pkts: 1,
            bytes: u64::from(wire_len),
        });
    }

    /// Adds another shard's sessions (a snapshot may hold more than the
    /// bound of one shard, at most the bound per shard).
    pub fn add(&mut self, other: &MirrorSessions) {
        for (mirror, c) in &other.counts {
            self.counts.entry(*mirror).or_default().add(*c);
        }
        self.over_limit.add(other.over_limit);
        self.max = self.max.max(other.max);
    }

    /// The sessions in a stable order.
    pub fn sorted(&self) -> Vec<SessionCount> {
        let mut out: Vec<_> = self
            .counts
            .iter()
            .map(|(mirror, frames)| SessionCount {
                mirror: *mirror,
                frames: *frames,
            })
            .collect();
        out.sort_by_key(|s| s.mirror);
        out
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// The bound (per worker).
    pub fn capacity(&self) -> usize {
        self.max
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::decap::Encap;

    #[test]
    fn bounded_with_the_rest_together() {
        let mut s = MirrorSessions::new(2);
        for id in [1, 2, 3, 1, 4] {
            s.count(
                Mirror {
                    encap: Encap::Vxlan,
                    id: Some(id),
                },
                100,
            );
        }
        assert_eq!(s.len(), 2);
        assert_eq!(s.over_limit.pkts, 2);
        let sorted = s.sorted();
        assert_eq!((sorted[0].mirror.id, sorted[0].frames.pkts), (Some(1), 2));
        let mut total = MirrorSessions::new(2);
        total.add(&s);
        total.add(&s);
        assert_eq!(total.sorted()[1].frames.bytes, 200);
    }
}
