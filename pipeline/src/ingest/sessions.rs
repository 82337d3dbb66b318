//! Frames and bytes per mirror session (an encapsulation and its VNI,
//! ERSPAN session or GRE key), so an operator can see which sessions
//! deliver. The number of sessions is bounded (`--max-mirror-sessions`):
//! at the bound a new session takes the place of one that delivered
//! nothing for [`IDLE_NS`] of capture time (sessions come and go: AWS
//! picks a new VNI for each session made again as instances churn), and
//! frames of sessions past the bound otherwise are counted together.

use std::collections::HashMap;

use crate::flow::Counter;
use crate::time::SECOND;
use crate::wire::decap::Mirror;

/// A session that delivered nothing for this long gives its place up to a
/// new one at the bound (its counts start again from 0 if it comes back).
pub const IDLE_NS: u64 = 600 * SECOND;

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
    counts: HashMap<Mirror, Seen, ahash::RandomState>,
    max: usize,
    /// Frames of sessions beyond the bound.
    pub over_limit: Counter,
    /// Sessions that gave their place up to a new one.
    pub reclaimed: u64,
    /// No idle session is looked for before this capture time: at the
    /// bound, with none idle, every frame of a new session would look.
    next_reclaim_ns: u64,
}

/// A session's counts, and the capture time of its last frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    frames: Counter,
    last_ns: u64,
}

impl MirrorSessions {
    pub fn new(max: usize) -> MirrorSessions {
        MirrorSessions {
            max,
            ..MirrorSessions::default()
        }
    }

    /// Counts a frame of `mirror`, `wire_len` bytes, captured at `ts_ns`.
    #[inline]
    pub fn count(&mut self, mirror: Mirror, wire_len: u32, ts_ns: u64) {
        let frame = Counter {
            pkts: 1,
            bytes: u64::from(wire_len),
        };
        if let Some(seen) = self.counts.get_mut(&mirror) {
            seen.frames.add(frame);
            seen.last_ns = seen.last_ns.max(ts_ns);
            return;
        }
        if self.counts.len() >= self.max && !self.reclaim_an_idle_session(ts_ns) {
            self.over_limit.add(frame);
            return;
        }
        self.counts.insert(
            mirror,
            Seen {
                frames: frame,
                last_ns: ts_ns,
            },
        );
    }

    /// Forgets the session idle longest, if it was idle [`IDLE_NS`] at
    /// `now_ns`; whether one went. Looked for once a second at most.
    #[cold]
    fn reclaim_an_idle_session(&mut self, now_ns: u64) -> bool {
        if now_ns < self.next_reclaim_ns {
            return false;
        }
        self.next_reclaim_ns = now_ns.saturating_add(SECOND);
        let idlest = self
            .counts
            .iter()
            .min_by_key(|(_, seen)| seen.last_ns)
            .map(|(mirror, seen)| (*mirror, seen.last_ns));
        match idlest {
            Some((mirror, last_ns)) if now_ns.saturating_sub(last_ns) >= IDLE_NS => {
                self.counts.remove(&mirror);
                self.reclaimed += 1;
                self.next_reclaim_ns = 0;
                true
            }
            _ => false,
        }
    }

    /// Adds another shard's sessions (a snapshot may hold more than the
    /// bound of one shard, at most the bound per shard).
    pub fn add(&mut self, other: &MirrorSessions) {
        for (mirror, seen) in &other.counts {
            let held = self.counts.entry(*mirror).or_default();
            held.frames.add(seen.frames);
            held.last_ns = held.last_ns.max(seen.last_ns);
        }
        self.over_limit.add(other.over_limit);
        self.reclaimed += other.reclaimed;
        self.max = self.max.max(other.max);
    }

    /// The sessions in a stable order.
    pub fn sorted(&self) -> Vec<SessionCount> {
        let mut out: Vec<_> = self
            .counts
            .iter()
            .map(|(mirror, seen)| SessionCount {
                mirror: *mirror,
                frames: seen.frames,
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
                SECOND,
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

    /// At the bound a new session takes the place of one idle for
    /// [`IDLE_NS`] (sessions made again get new VNIs: the dead ones held
    /// every place until a restart), never one that still delivers.
    #[test]
    fn a_session_idle_long_gives_its_place_up() {
        let vni = |id| Mirror {
            encap: Encap::Vxlan,
            id: Some(id),
        };
        let mut s = MirrorSessions::new(2);
        s.count(vni(1), 100, SECOND);
        s.count(vni(2), 100, SECOND);
        // Session 2 still delivers; 1 went quiet.
        s.count(vni(2), 100, IDLE_NS);
        s.count(vni(3), 100, IDLE_NS);
        assert_eq!(s.over_limit.pkts, 1, "1 idle for less than IDLE_NS");
        let later = SECOND + IDLE_NS + SECOND;
        s.count(vni(3), 100, later);
        let ids: Vec<_> = s.sorted().iter().map(|c| c.mirror.id).collect();
        assert_eq!(ids, [Some(2), Some(3)]);
        assert_eq!((s.reclaimed, s.over_limit.pkts), (1, 1));
        // None idle: the next new one is counted with the rest.
        s.count(vni(4), 100, later);
        assert_eq!((s.len(), s.over_limit.pkts), (2, 2));
    }
}
