//! The hub's last snapshot, its flows found by key while the next round
//! decodes the agents' feeds: a handshake digest that has not changed
//! since (most of them: a flow's handshakes change only with its new
//! connections) is shared with the last snapshot rather than allocated
//! again ([`api::feed::FeedFlow::into_record_sharing`]). The hub holds the
//! last snapshot while it builds the next, so each unchanged digest is
//! held once instead of twice, and each round allocates and frees only
//! the digests that changed (at 32 x 50k flows: 1.2M digests a round,
//! about 240 MB, when nothing changed). Where most digests change every
//! round, trying costs more than it saves, and a feed stops trying
//! ([`Sharer`]).

use std::sync::Arc;

use api::feed::{FeedFlow, FeedFlows};
use hashbrown::HashTable;
use pipeline::Snapshot;
use pipeline::flow::{FlowKey, FlowRecord, Side};
use pipeline::prefetch::prefetch;

use crate::merge::Chunked;

pub struct Previous {
    snapshot: Arc<Snapshot>,
    hasher: ahash::RandomState,
    /// Positions in `snapshot.flows`, by their key's hash: 4 bytes an
    /// entry, a lookup comparing with the record's key.
    by_key: HashTable<u32>,
}

impl Previous {
    /// Indexes `snapshot`'s flows by key (a pass over every flow: the hub
    /// does it off the reactor, once a round).
    pub fn new(snapshot: Arc<Snapshot>) -> Previous {
        let hasher = ahash::RandomState::new();
        let flows = &snapshot.flows;
        let mut by_key = HashTable::with_capacity(flows.len());
        for (i, f) in flows.iter().enumerate() {
            // A snapshot's keys are distinct: no lookup before inserting.
            by_key.insert_unique(hasher.hash_one(f.key), i as u32, |&j| {
                hasher.hash_one(flows[j as usize].key)
            });
        }
        Previous {
            snapshot,
            hasher,
            by_key,
        }
    }

    /// The last snapshot's flow under `key`, if it had one.
    pub fn flow(&self, key: &FlowKey) -> Option<&FlowRecord> {
        let flows = &self.snapshot.flows;
        self.by_key
            .find(self.hasher.hash_one(key), |&i| {
                flows[i as usize].key == *key
            })
            .map(|&i| &flows[i as usize])
    }

    /// Where `key`'s flow probably is: the first position whose hash tag
    /// matches, its record not read ([`Previous::flow_at`] compares the
    /// key). `None`: no position matches, so the snapshot has no such
    /// flow. Lookups that do not read records do not wait for one another,
    /// so a feed's run of them overlaps its trips to memory.
    fn candidate(&self, key: &FlowKey) -> Option<u32> {
        self.by_key
            .find(self.hasher.hash_one(key), |_| true)
            .copied()
    }

    /// [`Previous::flow`], given where [`Previous::candidate`] said it
    /// probably is.
    fn flow_at(&self, candidate: Option<u32>, key: &FlowKey) -> Option<&FlowRecord> {
        match self.snapshot.flows.get(candidate? as usize) {
            Some(f) if f.key == *key => Some(f),
            // Another key with the same tag: the flow may be further on.
            _ => self.flow(key),
        }
    }

    /// Asks for the lines of a candidate's record that sharing reads.
    fn prefetch(&self, candidate: Option<u32>) {
        if let Some(f) = candidate.and_then(|c| self.snapshot.flows.get(c as usize)) {
            prefetch(&f.key);
            prefetch(&f.handshake);
            prefetch(&f.percentiles);
        }
    }
}

/// Flows of a feed tried before deciding whether sharing pays for the rest.
const PROBE: u32 = 1024;

/// Flows whose candidates in the last snapshot are looked up together.
const RUN: usize = 256;

/// How many flows ahead a candidate's record is asked for.
const AHEAD: usize = 8;

/// Rounds between tries once sharing paid for no feed.
pub const RETRY_EVERY: u32 = 8;

/// Whether a round indexes the last snapshot. Where sharing paid for no
/// feed (every digest changing every round), the index is a pass over
/// every flow for nothing, on a core the decoding wants, and the decoding
/// waits for it: it is skipped, and tried again every [`RETRY_EVERY`]
/// rounds in case that changed.
#[derive(Debug, Default)]
pub struct Sharing {
    /// Rounds since the last try, once a try paid for no feed (0: trying).
    skipped: u32,
}

impl Sharing {
    /// `last`, if this round indexes it.
    pub fn to_index(&mut self, last: Option<Arc<Snapshot>>) -> Option<Arc<Snapshot>> {
        let last = last?;
        if self.skipped == 0 || self.skipped >= RETRY_EVERY {
            self.skipped = 0;
            Some(last)
        } else {
            self.skipped += 1;
            tracing::debug!("sharing paid for no feed last time: the last snapshot not indexed");
            None
        }
    }

    /// After a round that indexed: whether sharing paid for any feed.
    pub fn paid(&mut self, any: bool) {
        if !any {
            self.skipped = 1;
        }
    }
}

/// Decodes one feed's flows, sharing unchanged digests with the last
/// snapshot while that pays: a feed whose first [`PROBE`] flows with
/// handshakes shared fewer than half is decoded plainly from there on.
/// Looking a flow up and comparing its digests costs a few trips to
/// memory; where every digest changed each round, that was a sixth more
/// CPU a round for nothing (BENCHMARKS.md, hub).
pub struct Sharer<'p> {
    previous: Option<&'p Previous>,
    tried: u32,
    shared: u32,
}

impl<'p> Sharer<'p> {
    pub fn new(previous: Option<&'p Previous>) -> Sharer<'p> {
        Sharer {
            previous,
            tried: 0,
            shared: 0,
        }
    }

    /// Whether this feed shares with the last snapshot still: it had one,
    /// and sharing did not stop paying.
    pub fn paid(&self) -> bool {
        self.previous.is_some()
    }

    /// A feed's flows as records ([`FeedFlow::into_record`]), in chunks
    /// ready for the merge ([`Chunked`]), unchanged digests shared while
    /// sharing pays. Flows are taken in runs of [`RUN`]: the last
    /// snapshot's candidates for a whole run are found first, then each
    /// record is asked for [`AHEAD`] flows before it is read (a lookup
    /// waiting for each trip to memory in turn was a tenth of a hub's
    /// CPU). A run at a time, so that a feed that stops sharing after its
    /// probe stops looking up too.
    ///
    /// The flows are decoded a run at a time too ([`FeedFlows`]), so that
    /// a feed's flows are never all decoded at once: a run's memory serves
    /// the next, where a feed decoded whole was fresh memory each feed,
    /// which the kernel zeroes first. A flow that does not decode is the
    /// feed's error.
    pub fn records(&mut self, mut flows: FeedFlows<'_>) -> Result<Chunked, String> {
        // Sized for every flow up front: collected through a filter, the
        // list would grow by doubling (a third more memory at 50k flows).
        let mut records = Chunked::with_capacity(flows.room());
        let mut run: Vec<FeedFlow> = Vec::with_capacity(RUN);
        let mut candidates = Vec::with_capacity(RUN);
        loop {
            for flow in flows.by_ref().take(RUN) {
                run.push(flow?);
            }
            if run.is_empty() {
                return Ok(records);
            }
            candidates.clear();
            if let Some(previous) = self.previous {
                candidates.extend(run.iter().map(|f| {
                    f.key()
                        .filter(|_| f.has_handshake())
                        .and_then(|key| previous.candidate(&key))
                }));
            }
            for (i, flow) in run.drain(..).enumerate() {
                if let (Some(previous), Some(&ahead)) = (self.previous, candidates.get(i + AHEAD)) {
                    previous.prefetch(ahead);
                }
                let candidate = candidates.get(i).copied().flatten();
                records.extend(self.record(flow, candidate));
            }
        }
    }

    /// `flow` as a record, `candidate` where the last snapshot probably
    /// has it ([`Previous::candidate`]).
    fn record(&mut self, flow: FeedFlow, candidate: Option<u32>) -> Option<FlowRecord> {
        let Some(previous) = self.previous else {
            return flow.into_record();
        };
        let mut before = None;
        let record = flow.into_record_sharing(|key| {
            before = previous.flow_at(candidate, key);
            before
        })?;
        // Found only for a flow with a handshake leg (the only ones looked
        // up): each counts towards whether sharing pays.
        if let Some(before) = before {
            self.tried += 1;
            let shared = |side: Side| match (&record.handshake[side], &before.handshake[side]) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            self.shared += u32::from(Side::BOTH.into_iter().any(shared));
            if self.tried == PROBE && self.shared < PROBE / 2 {
                self.previous = None;
            }
        }
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::feed::{Feed, FeedHead, VERSION, WireLosses};
    use pipeline::flow::{HandshakeDigest, PerSide, Window};
    use pipeline::packet::{Addr, L4Proto};

    fn key(port: u16) -> FlowKey {
        FlowKey {
            proto: L4Proto::Tcp,
            client: Addr::from_v4([198, 18, 0, 1]),
            server: Addr::from_v4([198, 19, 0, 1]),
            server_port: port,
        }
    }

    #[test]
    fn the_last_snapshot_is_indexed_while_sharing_pays_and_tried_again_when_it_did_not() {
        let last = || Some(Arc::new(Snapshot::default()));
        let mut sharing = Sharing::default();
        // The first round has nothing to index; the next ones do while a
        // feed shares.
        assert!(sharing.to_index(None).is_none());
        for _ in 0..3 {
            assert!(sharing.to_index(last()).is_some());
            sharing.paid(true);
        }
        // No feed shared: skipped, then tried again after RETRY_EVERY
        // rounds, and again after as many when that try did not pay.
        sharing.paid(false);
        for _ in 0..2 {
            let tried: Vec<bool> = (0..RETRY_EVERY)
                .map(|_| sharing.to_index(last()).is_some())
                .collect();
            assert_eq!(tried.iter().filter(|&&t| t).count(), 1, "{tried:?}");
            assert!(tried[RETRY_EVERY as usize - 1]);
            sharing.paid(false);
        }
        // A try that pays: indexed every round again.
        assert!((1..RETRY_EVERY).all(|_| sharing.to_index(last()).is_none()));
        assert!(sharing.to_index(last()).is_some());
        sharing.paid(true);
        assert!((0..RETRY_EVERY).all(|_| sharing.to_index(last()).is_some()));
    }

    #[test]
    fn every_flow_is_found_by_its_key_and_no_other() {
        let flows: Vec<FlowRecord> = (0..1000).map(|p| FlowRecord::new(key(p))).collect();
        let previous = Previous::new(Arc::new(Snapshot {
            flows: flows.into(),
            ..Snapshot::default()
        }));
        for p in 0..1000 {
            assert_eq!(previous.flow(&key(p)).map(|f| f.key), Some(key(p)));
        }
        assert!(previous.flow(&key(1000)).is_none());
    }

    #[test]
    fn a_candidate_leads_to_the_flow_or_to_none_as_the_full_lookup_does() {
        let key = |i: u32| FlowKey {
            client: Addr::from_v4([198, 18, (i >> 8) as u8, i as u8]),
            ..key(443)
        };
        let flows: Vec<FlowRecord> = (0..20_000).map(|i| FlowRecord::new(key(i))).collect();
        let previous = Previous::new(Arc::new(Snapshot {
            flows: flows.into(),
            ..Snapshot::default()
        }));
        let mut other_keys = 0;
        // Half the keys in the snapshot, half not.
        for i in 0..40_000 {
            let candidate = previous.candidate(&key(i));
            let found = previous.flow_at(candidate, &key(i)).map(|f| f.key);
            assert_eq!(found, previous.flow(&key(i)).map(|f| f.key));
            assert_eq!(found.is_some(), i < 20_000);
            let at = candidate.map(|c| previous.snapshot.flows[c as usize].key);
            other_keys += usize::from(at.is_some_and(|k| k != key(i)));
        }
        // Tags collide (7 bits): some candidates name another flow, and
        // those were looked up further.
        assert!(other_keys > 0);
    }

    /// A feed of `n` TCP flows, each with a client leg of one handshake of
    /// `us` µs.
    fn feed(n: u16, us: u64) -> Vec<FeedFlow> {
        (0..n)
            .map(|p| {
                let mut digest = HandshakeDigest::default();
                digest.record(1_000_000_000, us, Window::Unbounded, true);
                let record = FlowRecord {
                    handshake: PerSide::new(Some(Arc::new(digest)), None),
                    ..FlowRecord::new(key(p))
                };
                FeedFlow::of(&record, 2_000_000_000, Window::Unbounded)
            })
            .collect()
    }

    #[test]
    fn unchanged_digests_are_shared_until_sharing_stops_paying() {
        let n = 2 * PROBE as u16;
        let flows: Vec<FlowRecord> = feed(n, 100)
            .into_iter()
            .filter_map(FeedFlow::into_record)
            .collect();
        let previous = Previous::new(Arc::new(Snapshot {
            flows: flows.into(),
            ..Snapshot::default()
        }));
        let leg = |f: &FlowRecord| f.handshake[Side::Client].clone().unwrap();
        let last = |i: usize| leg(&previous.snapshot.flows[i]);

        // Nothing changed: every digest shared.
        let mut sharer = Sharer::new(Some(&previous));
        // Through a feed's bytes, as a hub decodes them.
        let decoded = |sharer: &mut Sharer<'_>, flows: Vec<FeedFlow>| {
            let head = FeedHead {
                version: VERSION,
                name: "agent".into(),
                instance: 1,
                node: None,
                sequence: 1,
                as_of_ns: 2_000_000_000,
                since_ns: None,
                losses: WireLosses::default(),
            };
            let bytes = Feed { head, flows }.encode();
            let (_, flows) = Feed::open(&bytes).unwrap();
            sharer.records(flows).unwrap().into_vec()
        };
        let same = decoded(&mut sharer, feed(n, 100));
        assert!((0..n as usize).all(|i| Arc::ptr_eq(&leg(&same[i]), &last(i))));
        assert!(sharer.paid());

        // Every digest changed: none shared, and after the probe none tried.
        let mut sharer = Sharer::new(Some(&previous));
        let changed = decoded(&mut sharer, feed(n, 200));
        assert!(!sharer.paid());
        assert_eq!(sharer.tried, PROBE);
        assert!(!Sharer::new(None).paid(), "nothing to share with");
        for (i, f) in changed.iter().enumerate() {
            assert!(!Arc::ptr_eq(&leg(f), &last(i)));
            assert_eq!(f.percentiles[Side::Client].unwrap().p50, 200);
        }
    }
}
