//! Following flows from one snapshot to the next, for what turns snapshots
//! into things that only grow or that report each flow once (Prometheus
//! counters, IPFIX records).
//!
//! A snapshot holds the flows alive at one moment; between two snapshots a
//! flow may grow, leave (expired or evicted), or leave and come back under
//! the same key. A flow is the same flow as before when it started no later
//! and has no fewer packets; otherwise the key's earlier flow ended and a
//! new one started (it cannot lose packets, nor start later, and stay the
//! same flow). Each consumer keeps a state of its own per flow.

use std::hash::{Hash, Hasher};

use hashbrown::hash_map::Entry;
use hashbrown::{Equivalent, HashMap};

use crate::flow::{FlowKey, FlowRecord};
use crate::prefetch::prefetch;
use crate::snapshot::Flows;

/// What became of a flow since the previous snapshot, with the state its
/// consumer kept for it there.
#[derive(Debug, PartialEq, Eq)]
pub enum Change<T> {
    /// Not in the previous snapshot.
    Started,
    /// The same flow as before.
    Continued(T),
    /// The key's earlier flow ended (its state given back) and this one
    /// started since.
    Restarted(T),
}

/// Flows whose entries are asked for at once ([`FlowFollower::observe`]).
const RUN: usize = 64;

/// A lookup that takes the first entry whose hash tag matches `key`'s,
/// comparing no key: where `key`'s entry probably is, found without
/// waiting for an entry to be read, to be asked for early. (An entry of
/// another key with the same tag is asked for in vain, and harmlessly.)
struct AnyWithHashOf<'k>(&'k FlowKey);

impl Hash for AnyWithHashOf<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Equivalent<FlowKey> for AnyWithHashOf<'_> {
    fn equivalent(&self, _: &FlowKey) -> bool {
        true
    }
}

/// Which flow a key had: when it started and how many packets it had.
#[derive(Clone, Copy, Debug)]
struct Incarnation {
    first_seen_ns: u64,
    pkts: u64,
}

impl Incarnation {
    fn of(f: &FlowRecord) -> Incarnation {
        Incarnation {
            first_seen_ns: f.first_seen_ns,
            pkts: f.sent.total().pkts,
        }
    }

    fn continues(self, before: Incarnation) -> bool {
        self.first_seen_ns <= before.first_seen_ns && self.pkts >= before.pkts
    }
}

/// A followed flow: which it is, whether the last snapshot had it (the
/// follower's `parity` then), and its consumer's state.
#[derive(Debug)]
struct Followed<T> {
    incarnation: Incarnation,
    parity: bool,
    state: T,
}

/// The flows of the last snapshot followed, each with a consumer's `T`.
///
/// One map, updated in place: a snapshot's flow is looked up once, and
/// those the snapshot did not have are the entries it did not mark (a
/// million-flow hub follows every round; a fresh map each time cost a
/// removal and an insertion per flow, and page faults for the new table).
#[derive(Debug)]
pub struct FlowFollower<T> {
    flows: HashMap<FlowKey, Followed<T>, ahash::RandomState>,
    /// The mark of the flows the last snapshot had; flips every snapshot.
    parity: bool,
}

impl<T> Default for FlowFollower<T> {
    fn default() -> Self {
        FlowFollower {
            flows: HashMap::default(),
            parity: false,
        }
    }
}

impl<T> FlowFollower<T> {
    /// Walks the flows of a snapshot in order: `each(index, flow, change)`
    /// returns the state to keep for the flow; then every flow of the
    /// previous snapshot that is not in this one goes to `left`.
    pub fn observe(
        &mut self,
        flows: &Flows,
        mut each: impl FnMut(usize, &FlowRecord, Change<T>) -> T,
        mut left: impl FnMut(FlowKey, T),
    ) {
        let parity = !self.parity;
        self.flows
            .reserve(flows.len().saturating_sub(self.flows.len()));
        for (i, f) in flows.iter().enumerate() {
            // The entries of a run of flows asked for before the first of
            // them is followed: looked up one after another, each flow
            // waited for its entry's trip to memory alone.
            if i % RUN == 0 {
                for ahead in (i..flows.len().min(i + RUN)).map(|j| &flows[j]) {
                    if let Some((key, followed)) =
                        self.flows.get_key_value(&AnyWithHashOf(&ahead.key))
                    {
                        prefetch(key);
                        prefetch(followed);
                    }
                }
            }
            let incarnation = Incarnation::of(f);
            let mut follow = |change| Followed {
                incarnation,
                parity,
                state: each(i, f, change),
            };
            match self.flows.entry(f.key) {
                Entry::Vacant(v) => {
                    v.insert(follow(Change::Started));
                }
                Entry::Occupied(o) => {
                    o.replace_entry_with(|_, before| {
                        Some(follow(if incarnation.continues(before.incarnation) {
                            Change::Continued(before.state)
                        } else {
                            Change::Restarted(before.state)
                        }))
                    });
                }
            }
        }
        for (key, gone) in self.flows.extract_if(|_, f| f.parity != parity) {
            left(key, gone.state);
        }
        self.parity = parity;
    }

    /// Stops following the flow `ended` (its last record: it left the
    /// table between two snapshots), giving back its state if it is the
    /// flow followed under its key; `None` if it started since the last
    /// snapshot.
    pub fn take_ended(&mut self, ended: &FlowRecord) -> Option<T> {
        let before = self.flows.get(&ended.key)?;
        if !Incarnation::of(ended).continues(before.incarnation) {
            return None;
        }
        self.flows.remove(&ended.key).map(|f| f.state)
    }

    /// The states of the flows followed, as the capture ends.
    pub fn states_mut(&mut self) -> impl Iterator<Item = (&FlowKey, &mut T)> {
        self.flows.iter_mut().map(|(k, f)| (k, &mut f.state))
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Counter, PerSide};
    use crate::packet::{Addr, L4Proto};

    fn flow(port: u16, first_seen_ns: u64, pkts: u64) -> FlowRecord {
        FlowRecord {
            ip_bytes: Default::default(),
            sent: PerSide::new(Counter { pkts, bytes: 0 }, Counter::default()),
            first_seen_ns,
            last_seen_ns: first_seen_ns,
            connections: 1,
            ..FlowRecord::new(FlowKey {
                proto: L4Proto::Tcp,
                client: Addr::from_v4([198, 18, 0, 1]),
                server: Addr::from_v4([198, 19, 0, 1]),
                server_port: port,
            })
        }
    }

    /// Per flow of a snapshot, by server port: what happened to it.
    type Seen = Vec<(u16, Change<u64>)>;
    /// The flows that left, by server port, with their last state.
    type Left = Vec<(u16, u64)>;

    fn observe(follower: &mut FlowFollower<u64>, flows: &[FlowRecord]) -> (Seen, Left) {
        let (mut seen, mut left) = (Vec::new(), Vec::new());
        follower.observe(
            // In chunks, as a hub's are.
            &flows.iter().cloned().collect::<Flows>(),
            |_, f, change| {
                seen.push((f.key.server_port, change));
                f.sent.total().pkts
            },
            |key, state| left.push((key.server_port, state)),
        );
        (seen, left)
    }

    #[test]
    fn every_flow_of_a_long_snapshot_is_followed() {
        // Runs of entries asked for ahead, a last run cut short, and
        // several chunks.
        let mut follower = FlowFollower::default();
        let first: Vec<FlowRecord> = (0..10_000).map(|p| flow(p, 100, 1)).collect();
        observe(&mut follower, &first);
        let later: Vec<FlowRecord> = (0..10_001).map(|p| flow(p, 100, 2)).collect();
        let (seen, left) = observe(&mut follower, &later);
        assert!(left.is_empty());
        for (p, change) in &seen[..10_000] {
            assert_eq!(*change, Change::Continued(1), "port {p}");
        }
        assert_eq!(seen[10_000], (10_000, Change::Started));
    }

    #[test]
    fn flows_continue_restart_and_leave() {
        let mut follower = FlowFollower::default();
        let (seen, left) = observe(&mut follower, &[flow(1, 100, 5), flow(2, 100, 5)]);
        assert_eq!(seen, [(1, Change::Started), (2, Change::Started)]);
        assert!(left.is_empty());
        // 1 grew; 2 left and came back (later start, fewer packets); 3 is new.
        let (seen, left) = observe(
            &mut follower,
            &[flow(1, 100, 9), flow(2, 500, 2), flow(3, 600, 1)],
        );
        assert_eq!(
            seen,
            [
                (1, Change::Continued(5)),
                (2, Change::Restarted(5)),
                (3, Change::Started)
            ]
        );
        assert!(left.is_empty());
        // A later start with more packets is a new flow too; 1 and 3 left.
        let (seen, mut left) = observe(&mut follower, &[flow(2, 700, 4)]);
        assert_eq!(seen, [(2, Change::Restarted(2))]);
        left.sort();
        assert_eq!(left, [(1, 9), (3, 1)]);
        assert_eq!(follower.len(), 1);
    }
}
