//! A shard's flows in a slab, so that a connection reaches its flow by
//! index rather than by a second hash lookup, with each flow's per-packet
//! counters ([`Meter`]) kept apart from the rest of it.

use std::sync::Arc;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use super::chunked_vec::ChunkedVec;
use super::handshake::HandshakeDigest;
use super::health::TcpHealth;
use super::key::FlowKey;
use super::rate::{Meter, RateWindow, SlotClock};
use super::side::{PerSide, Side};
use crate::wire::decap::Mirror;

#[derive(Clone, Debug)]
pub(crate) struct FlowEntry {
    pub key: FlowKey,
    /// The rate window's slots; the per-packet counters are the flow's
    /// [`Meter`], kept apart in [`FlowSlab::meters`].
    pub rate: RateWindow,
    pub connections: u64,
    pub live_connections: u32,
    /// One of its connections was answered (see `Conn::is_answered`).
    pub answered: bool,
    /// The client port of the newest connection: with the flow key, the
    /// 5-tuple of a flow's only connection, so a full table can evict an
    /// unanswered flow together with it.
    pub last_client_port: u16,
    /// Shared with snapshots; copied on write only while a snapshot holds it.
    pub handshake: PerSide<Option<Arc<HandshakeDigest>>>,
    /// The mirror session its first connection came through.
    pub mirror: Option<Mirror>,
}

#[derive(Debug)]
pub(crate) struct FlowSlab {
    /// Chunked rather than `Vec`s: a growing shard never copies its flows
    /// (see [`ChunkedVec`]).
    pub entries: ChunkedVec<Option<FlowEntry>>,
    /// Each flow's per-packet counters, by the same index: a packet touches
    /// its flow's meter alone (one cache line), not the whole entry.
    pub meters: ChunkedVec<Meter>,
    /// Each flow's TCP health, by the same index, apart from the entry:
    /// touched only when a packet is a retransmission, a RST or a zero
    /// window, or settles a connection's outcome, so the entry that rate
    /// slots roll into stays as small as it was.
    pub health: ChunkedVec<TcpHealth>,
    /// Bumped each time a slot is freed, so a remembered (index, generation)
    /// names one flow and never a later occupant of its slot.
    pub generations: ChunkedVec<u32>,
    free: Vec<u32>,
    /// Each flow's (slab index, low half of its key's hash), found by key.
    /// Not keyed by the 36-byte key itself (9 bytes a bucket rather than
    /// 41): a lookup compares with the key in the slab's entry, which a
    /// new connection touches next anyway, and growing rehashes from the
    /// stored half.
    index: HashTable<(u32, u32)>,
    hasher: ahash::RandomState,
}

/// The index's hash from the stored half: in both halves, so the bits
/// hashbrown takes for the bucket (the low ones) and for the tag (the top
/// seven) are different ones up to 2^25 buckets.
fn spread(half: u32) -> u64 {
    u64::from(half) << 32 | u64::from(half)
}

/// Whether an index entry names the flow of `key`, whose half hash is
/// `half`: the stored half first, then the key in the slab's entry.
fn names<'a>(
    entries: &'a ChunkedVec<Option<FlowEntry>>,
    half: u32,
    key: &'a FlowKey,
) -> impl Fn(&(u32, u32)) -> bool + 'a {
    move |&(idx, h)| {
        h == half
            && entries[idx as usize]
                .as_ref()
                .is_some_and(|e| e.key == *key)
    }
}

impl FlowSlab {
    pub(super) fn new(hasher: ahash::RandomState) -> FlowSlab {
        FlowSlab {
            entries: ChunkedVec::default(),
            meters: ChunkedVec::default(),
            health: ChunkedVec::default(),
            generations: ChunkedVec::default(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher,
        }
    }

    fn half_hash(&self, key: &FlowKey) -> u32 {
        self.hasher.hash_one(key) as u32
    }

    /// Where the flow of `key` is in the slab, if it is.
    pub(super) fn index_of(&self, key: &FlowKey) -> Option<u32> {
        let half = self.half_hash(key);
        self.index
            .find(spread(half), names(&self.entries, half, key))
            .map(|&(idx, _)| idx)
    }

    /// Finds or creates a flow; counts a connection in it when `connection`.
    /// Returns its index and whether it was created.
    pub(super) fn attach(
        &mut self,
        key: FlowKey,
        ts_ns: u64,
        clock: SlotClock,
        connection: Option<u16>,
    ) -> (u32, bool) {
        let half = self.half_hash(&key);
        let found = self
            .index
            .entry(spread(half), names(&self.entries, half, &key), |&(_, h)| {
                spread(h)
            });
        let (idx, created) = match found {
            Entry::Occupied(o) => (o.get().0, false),
            Entry::Vacant(v) => {
                let entry = FlowEntry {
                    key,
                    rate: RateWindow::default(),
                    connections: 0,
                    live_connections: 0,
                    answered: false,
                    last_client_port: 0,
                    handshake: PerSide::default(),
                    mirror: None,
                };
                let idx = match self.free.pop() {
                    Some(idx) => {
                        self.entries[idx as usize] = Some(entry);
                        self.meters[idx as usize] = Meter::new(clock, ts_ns);
                        self.health[idx as usize] = TcpHealth::default();
                        idx
                    }
                    None => {
                        self.entries.push(Some(entry));
                        self.meters.push(Meter::new(clock, ts_ns));
                        self.health.push(TcpHealth::default());
                        self.generations.push(0);
                        (self.entries.len() - 1) as u32
                    }
                };
                v.insert((idx, half));
                (idx, true)
            }
        };
        if let Some(client_port) = connection {
            let flow = self.get_mut(idx);
            flow.connections += 1;
            flow.live_connections += 1;
            flow.last_client_port = client_port;
        }
        (idx, created)
    }

    /// A connection of the flow ended; returns how many remain.
    pub(super) fn detach(&mut self, idx: u32) -> u32 {
        let flow = self.get_mut(idx);
        flow.live_connections = flow.live_connections.saturating_sub(1);
        flow.live_connections
    }

    pub(super) fn get_mut(&mut self, idx: u32) -> &mut FlowEntry {
        self.entries[idx as usize]
            .as_mut()
            .expect("connections only point at live flows")
    }

    /// The flow at `idx` if it is still the one of `generation`.
    pub(super) fn live(&self, idx: u32, generation: u32) -> Option<&FlowEntry> {
        if self.generations.get(idx as usize) != Some(&generation) {
            return None;
        }
        self.entries[idx as usize].as_ref()
    }

    /// Counts `pkts` packets (one, or none for bytes alone) of `bytes`
    /// sent by `sender` into the flow at `idx`.
    #[inline]
    pub(super) fn count(
        &mut self,
        idx: u32,
        clock: SlotClock,
        sender: Side,
        counts: (u64, u32, u32),
        ts: u64,
    ) {
        let entries = &mut self.entries;
        self.meters[idx as usize].record(clock, ts, sender, counts, || {
            &mut entries[idx as usize]
                .as_mut()
                .expect("connections only point at live flows")
                .rate
        });
    }

    pub(super) fn remove(&mut self, idx: u32) -> FlowEntry {
        let flow = self.entries[idx as usize]
            .take()
            .expect("only live flows are removed");
        let found = self
            .index
            .find_entry(spread(self.half_hash(&flow.key)), |&(i, _)| i == idx);
        found.expect("a live flow is in the index").remove();
        self.generations[idx as usize] = self.generations[idx as usize].wrapping_add(1);
        self.free.push(idx);
        flow
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Addr, L4Proto};

    fn key(i: u32) -> FlowKey {
        let [a, b, c, d] = i.to_be_bytes();
        FlowKey {
            proto: L4Proto::Tcp,
            client: Addr::from_v4([198, 18 + (a & 1), b, c]),
            server: Addr::from_v4([198, 19, d, 1]),
            server_port: 443,
        }
    }

    /// Enough flows that keys share the half hash the index keeps (about
    /// ten pairs expected at 300k; 17 with this seed): each key still finds
    /// its own flow, before and after others leave and their places are
    /// reused.
    #[test]
    fn every_flow_is_found_by_its_key_and_no_other() {
        const N: u32 = 300_000;
        let mut slab = FlowSlab::new(ahash::RandomState::with_seeds(1, 2, 3, 4));
        let clock = SlotClock::new(10_000_000_000);
        let mut halves: Vec<u32> = (0..N).map(|i| slab.half_hash(&key(i))).collect();
        halves.sort_unstable();
        let shared = halves.windows(2).filter(|w| w[0] == w[1]).count();
        assert!(
            shared > 0,
            "no two keys share a half hash: the test shows nothing"
        );

        let idx: Vec<u32> = (0..N)
            .map(|i| {
                let (idx, created) = slab.attach(key(i), 0, clock, None);
                assert!(created);
                idx
            })
            .collect();
        assert_eq!(slab.len(), N as usize);
        for i in 0..N {
            assert_eq!(
                slab.attach(key(i), 0, clock, None),
                (idx[i as usize], false)
            );
        }
        // Every other flow leaves; new ones take their places.
        for i in (0..N).step_by(2) {
            assert_eq!(slab.remove(idx[i as usize]).key, key(i));
            assert!(slab.index_of(&key(i)).is_none());
        }
        assert_eq!(slab.len(), (N / 2) as usize);
        for i in (0..N).step_by(2) {
            let (_, created) = slab.attach(key(N + i), 0, clock, None);
            assert!(created);
        }
        for i in 0..N {
            if i % 2 == 1 {
                assert!(slab.index_of(&key(i)).is_some());
                assert_eq!(
                    slab.attach(key(i), 0, clock, None),
                    (idx[i as usize], false)
                );
            } else {
                assert!(slab.index_of(&key(N + i)).is_some());
                let (at, created) = slab.attach(key(N + i), 0, clock, None);
                assert!(!created);
                assert_eq!(
                    slab.live(at, slab.generations[at as usize]).map(|e| e.key),
                    Some(key(N + i))
                );
            }
        }
        assert_eq!(slab.len(), N as usize);
    }
}
