//! The hub's last snapshot, its flows found by key while the next round
//! decodes the agents' feeds: a handshake digest that has not changed
//! since (most of them: a flow's handshakes change only with its new
//! connections) is shared with the last snapshot rather than allocated
//! again ([`api::feed::FeedFlow::into_record_sharing`]). The hub holds the
//! last snapshot while it builds the next, so each unchanged digest is
//! held once instead of twice, and each round allocates and frees only
//! the digests that changed (at 32 x 50k flows: 1.2M digests a round,
//! about 240 MB, when nothing changed).

use std::sync::Arc;

use hashbrown::HashTable;
use pipeline::Snapshot;
use pipeline::flow::{FlowKey, FlowRecord};

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
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn every_flow_is_found_by_its_key_and_no_other() {
        let flows: Vec<FlowRecord> = (0..1000).map(|p| FlowRecord::new(key(p))).collect();
        let previous = Previous::new(Arc::new(Snapshot {
            flows,
            ..Snapshot::default()
        }));
        for p in 0..1000 {
            assert_eq!(previous.flow(&key(p)).map(|f| f.key), Some(key(p)));
        }
        assert!(previous.flow(&key(1000)).is_none());
    }
}
