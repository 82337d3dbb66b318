//! Vantage-aware merging: every agent's flows into one list, each flow once.
//!
//! In host mode a connection between pods on two nodes is captured on both
//! nodes; a flow seen by several agents is one flow, never summed (as
//! Kubeshark does). The rule:
//!
//! - **Packets and bytes**, per direction: the agent that counted the most
//!   packets in that direction (ties: the most bytes) is taken, with its
//!   rates. Each vantage point sees the same packets less what it lost, so
//!   the fullest count is the closest to the wire; a packet one node lost
//!   is still counted if the other saw it in that direction.
//! - **Connections**: the most any agent counted; first seen the earliest,
//!   last seen the latest. Their outcomes (TCP health) from the agent that
//!   counted the most; each side's retransmissions, RSTs and zero windows
//!   from the agent whose count of that direction is taken.
//! - **Handshake legs**: each node sees the handshake from its own side, so
//!   the client leg (SYN to SYN-ACK) is taken from the agent on the client's
//!   node and the server leg (SYN to the completing ACK) from the agent on
//!   the server's node, when the Kubernetes names say which nodes those are
//!   and those agents saw the flow. Otherwise from the agent with the most
//!   samples in that leg. Digests are taken whole, never averaged (with
//!   the client leg's its tally of every handshake, `/metrics`' per-pair
//!   histogram).
//!
//! Flows seen by one agent (the usual case) pass through unchanged.

use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::{HashTable, hash_table};
use pipeline::flow::{FlowRecord, PerSide, Side, TcpHealth, Window};
use pipeline::snapshot::Flows;
use pipeline::snapshot::flows::{CHUNK, Chunk};

/// One agent's flows, with its index in the coverage and its node.
pub struct AgentFlows {
    pub agent: u16,
    pub node: Option<Arc<str>>,
    pub flows: Chunked,
}

/// Every flow of every agent, each once, in the API's order
/// ([`pipeline::snapshot::api_rank`]). `node_of` says which node an
/// address belongs to (from the Kubernetes names) at a time, if known.
///
/// An agent's feed comes in that order already (its snapshot's), so the
/// lists are merged as they are, smallest rank first, rather than
/// gathered and then sorted: no pass over every flow's rank and no
/// permutation of the records. A list out of order is sorted first.
pub fn merge(
    mut agents: Vec<AgentFlows>,
    node_of: impl Fn(IpAddr, u64) -> Option<Arc<str>>,
) -> Flows {
    // Where the merge's time goes, for the debug log.
    let started = std::time::Instant::now();
    for a in &mut agents {
        if !a.flows.in_api_order() {
            let mut flows = std::mem::take(&mut a.flows).into_vec();
            pipeline::snapshot::sort_flows(&mut flows);
            a.flows = flows.into();
        }
    }
    let total: usize = agents.iter().map(|a| a.flows.len()).sum();
    // Where each flow was first seen (list, position), and where it was
    // seen again. The index of first sightings holds positions only (8
    // bytes an entry, not the 40-byte key beside them): a lookup compares
    // with the key of the record a position names. A sighting again is a
    // pair (first sighting, this one), in a list rather than a map of
    // lists: one allocation for all, not one a flow.
    let hasher = ahash::RandomState::new();
    let key_at = |(l, p): (u32, u32)| &agents[l as usize].flows.get(p as usize).key;
    let mut first: HashTable<(u32, u32)> = HashTable::with_capacity(total);
    let mut again: Vec<((u32, u32), (u32, u32))> = Vec::new();
    for (l, a) in agents.iter().enumerate() {
        // Nothing is taken yet: positions are the records' own.
        for (p, r) in a.flows.iter().enumerate() {
            let at = (l as u32, p as u32);
            let found = first.entry(
                hasher.hash_one(r.key),
                |&o| *key_at(o) == r.key,
                |&o| hasher.hash_one(key_at(o)),
            );
            match found {
                hash_table::Entry::Occupied(o) => again.push((*o.get(), at)),
                hash_table::Entry::Vacant(v) => {
                    v.insert(at);
                }
            }
        }
    }
    drop(first);
    let indexed = started.elapsed();
    let nodes: std::collections::HashMap<u16, Option<Arc<str>>> =
        agents.iter().map(|a| (a.agent, a.node.clone())).collect();
    let node_by_agent = |agent: u16| nodes.get(&agent).cloned().flatten();
    let ids: Vec<u16> = agents.iter().map(|a| a.agent).collect();
    let mut lists: Vec<Chunked> = agents.into_iter().map(|a| a.flows).collect();
    let mut sets = SeenBy::default();
    // Flows seen more than once become one record each here, ranked among
    // the others below as one more list. Grouped by first sighting, whose
    // order (by list, then position) takes the records in the order they
    // lie in memory; each flow's sightings in the order they were found.
    again.sort_unstable();
    let mut combined = Vec::with_capacity(again.len());
    for sightings in again.chunk_by(|a, b| a.0 == b.0) {
        let (l, p) = sightings[0].0;
        let first = lists[l as usize].take_early(p as usize);
        let all: Vec<Sighting> = std::iter::once((l, first))
            .chain(
                sightings
                    .iter()
                    .map(|&(_, (ol, op))| (ol, lists[ol as usize].take_early(op as usize))),
            )
            .map(|(l, record)| Sighting {
                agent: ids[l as usize],
                record,
            })
            .collect();
        combined.push(combine(all, &node_of, &node_by_agent, &mut sets));
    }
    pipeline::snapshot::sort_flows(&mut combined);
    lists.push(combined.into());
    let seen_alone: Vec<Option<Arc<[u16]>>> = (0..lists.len())
        .map(|l| ids.get(l).map(|&id| sets.of(&[id])))
        .collect();

    let combined_at = started.elapsed();
    // The merged flows go into the chunks the merge has passed, emptied
    // (each chunk a list gives up is the next one filled), not into a
    // fresh list: fresh memory is pages the kernel zeroes, and a round
    // asks for hundreds of MB of it (BENCHMARKS.md, hub: "Chunks reused by
    // the merge").
    let mut spares: Vec<Chunk> = Vec::new();
    let mut out = Flows::new();
    // Each list's next flow, smallest rank on top.
    let mut heads = std::collections::BinaryHeap::with_capacity(lists.len());
    for (l, list) in lists.iter_mut().enumerate() {
        if let Some((rank, p)) = list.next_from(0, &mut spares) {
            heads.push(std::cmp::Reverse((rank, l, p)));
        }
    }
    while let Some(mut head) = heads.peek_mut() {
        let std::cmp::Reverse((_, l, p)) = *head;
        let list = &mut lists[l];
        let mut record = list.take(p);
        if let Some(alone) = &seen_alone[l] {
            record.seen_by = Some(alone.clone());
        }
        out.push_reusing(record, &mut spares);
        // The list's next flow replaces its last in place (one sift
        // down, not a pop and a push: two passes over the heap a flow).
        match list.next_from(p + 1, &mut spares) {
            Some((rank, p)) => *head = std::cmp::Reverse((rank, l, p)),
            None => drop(std::collections::binary_heap::PeekMut::pop(head)),
        }
    }
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    tracing::debug!(
        checked_and_indexed_ms = ms(indexed),
        combined_ms = ms(combined_at - indexed),
        ordered_ms = ms(started.elapsed() - combined_at),
        "merged"
    );
    out
}

/// One list of flows to merge, in chunks of [`CHUNK`] records (as a
/// snapshot's flows are): filled as a feed is decoded (on the decoding
/// threads: the merge does not copy every record into chunks itself), then
/// taken out one by one, each chunk emptied once the merge has passed it,
/// to hold merged flows.
#[derive(Default)]
pub struct Chunked {
    chunks: Vec<Chunk>,
    len: usize,
    /// How many records are coming: the last chunk is sized for the rest,
    /// not for a whole chunk (a thousand agents of a few flows each).
    expected: usize,
    /// The positions taken before the merge reaches them, a bit each (made
    /// at the first): flows seen by several agents, combined first.
    taken_early: Vec<u64>,
}

impl Chunked {
    /// An empty list for about `expected` records.
    pub fn with_capacity(expected: usize) -> Chunked {
        Chunked {
            chunks: Vec::with_capacity(expected.div_ceil(CHUNK)),
            expected,
            ..Chunked::default()
        }
    }

    pub fn push(&mut self, record: FlowRecord) {
        if self.len.is_multiple_of(CHUNK) {
            let room = self.expected.saturating_sub(self.len).clamp(1, CHUNK);
            self.chunks.push(Vec::with_capacity(room));
        }
        self.chunks
            .last_mut()
            .expect("a chunk was just made")
            .push(record);
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records, in order, before any is taken.
    pub fn iter(&self) -> impl Iterator<Item = &FlowRecord> {
        self.chunks.iter().flatten()
    }

    /// The records, in order, in one list, before any is taken.
    pub fn into_vec(self) -> Vec<FlowRecord> {
        let mut all = Vec::with_capacity(self.len);
        all.extend(self.chunks.into_iter().flatten());
        all
    }

    /// Whether the records are in the API's order already (an agent's feed
    /// is).
    fn in_api_order(&self) -> bool {
        self.iter().is_sorted_by_key(pipeline::snapshot::api_rank)
    }

    /// The record at `p`, which is not taken.
    fn get(&self, p: usize) -> &FlowRecord {
        &self.chunks[p / CHUNK][p % CHUNK]
    }

    fn taken_early(&self, p: usize) -> bool {
        self.taken_early
            .get(p / 64)
            .is_some_and(|bits| bits & (1 << (p % 64)) != 0)
    }

    /// The record at `p`, taken before the merge reaches it: marked, so
    /// that the merge passes over its place.
    fn take_early(&mut self, p: usize) -> FlowRecord {
        if self.taken_early.is_empty() {
            self.taken_early = vec![0; self.len.div_ceil(64)];
        }
        debug_assert!(!self.taken_early(p), "each position is taken once");
        self.taken_early[p / 64] |= 1 << (p % 64);
        self.take(p)
    }

    /// The record at `p`, which is not taken yet (the merge takes in
    /// order, so it marks nothing). What is left in its place holds no
    /// memory of its own (its key only).
    fn take(&mut self, p: usize) -> FlowRecord {
        let slot = &mut self.chunks[p / CHUNK][p % CHUNK];
        let key = slot.key;
        std::mem::replace(slot, FlowRecord::new(key))
    }

    /// The first record not taken at or after `p`, and its rank. Chunks
    /// before it are done with (everything before `p` was taken): each
    /// whole one is emptied into `spares`, to hold merged flows.
    fn next_from(
        &mut self,
        mut p: usize,
        spares: &mut Vec<Chunk>,
    ) -> Option<(pipeline::snapshot::ApiRank, usize)> {
        loop {
            if p > 0 && p.is_multiple_of(CHUNK) && p <= self.len {
                let mut passed = std::mem::take(&mut self.chunks[p / CHUNK - 1]);
                passed.clear();
                spares.push(passed);
            }
            if p >= self.len {
                return None;
            }
            if !self.taken_early(p) {
                return Some((pipeline::snapshot::api_rank(self.get(p)), p));
            }
            p += 1;
        }
    }
}

impl Extend<FlowRecord> for Chunked {
    fn extend<I: IntoIterator<Item = FlowRecord>>(&mut self, records: I) {
        for record in records {
            self.push(record);
        }
    }
}

impl From<Vec<FlowRecord>> for Chunked {
    fn from(records: Vec<FlowRecord>) -> Chunked {
        let mut chunked = Chunked::with_capacity(records.len());
        chunked.extend(records);
        chunked
    }
}

struct Sighting {
    agent: u16,
    record: FlowRecord,
}

fn combine(
    all: Vec<Sighting>,
    node_of: &impl Fn(IpAddr, u64) -> Option<Arc<str>>,
    node_by_agent: &impl Fn(u16) -> Option<Arc<str>>,
    sets: &mut SeenBy,
) -> FlowRecord {
    // A direction's counts, and what it says of them (retransmissions,
    // resets, rates), from the agent that saw most of it; of as many, the
    // one that saw most of the flow (a vantage that missed the other
    // direction takes segments whose ACKs it never saw for
    // retransmissions), then the first agent: never the order the
    // sightings came in.
    let fullest = |side: Side| {
        all.iter()
            .max_by_key(|s| {
                let sent = s.record.sent[side];
                (
                    sent.pkts,
                    sent.bytes,
                    s.record.total_pkts(),
                    std::cmp::Reverse(s.agent),
                )
            })
            .expect("at least two sightings")
    };
    let (by_client, by_server) = (fullest(Side::Client), fullest(Side::Server));
    let key = all[0].record.key;
    let last_seen_ns = all.iter().map(|s| s.record.last_seen_ns).max().unwrap_or(0);
    let leg = |side: Side| {
        let ip = match side {
            Side::Client => key.client.to_ip(),
            Side::Server => key.server.to_ip(),
        };
        // Where the address was when the flow was last seen (an address
        // given to a new pod on another node since).
        let home = node_of(ip, last_seen_ns);
        // The most samples; between as many, the longest median: a leg is
        // longest seen from its own end (SYN to SYN-ACK from the client's
        // side; from the server's node it is the server's turnaround).
        let best = |s: &&Sighting| {
            let samples = s.record.handshake[side]
                .as_ref()
                .map_or(0, |d| d.count(0, Window::Unbounded));
            (samples, s.record.percentiles[side].map_or(0, |p| p.p50))
        };
        let with_leg = || all.iter().filter(|s| s.record.handshake[side].is_some());
        let at_home: Option<Vec<&Sighting>> = home.as_ref().map(|home| {
            all.iter()
                .filter(|s| node_by_agent(s.agent).as_ref() == Some(home))
                .collect()
        });
        let chosen = match at_home {
            // The endpoint's own node saw the flow: its leg, or none (it
            // joined after the handshake); another vantage's would be a
            // different quantity, not a worse measure of this one.
            Some(home) if !home.is_empty() => home
                .into_iter()
                .filter(|s| s.record.handshake[side].is_some())
                .max_by_key(|s| best(s)),
            _ => with_leg().max_by_key(best),
        };
        chosen
            .map(|s| (s.record.handshake[side].clone(), s.record.percentiles[side]))
            .unwrap_or((None, None))
    };
    let (client_digest, client_percentiles) = leg(Side::Client);
    let (server_digest, server_percentiles) = leg(Side::Server);
    let mut agents: Vec<u16> = all.iter().map(|s| s.agent).collect();
    agents.sort_unstable();
    agents.dedup();
    let mut record = FlowRecord {
        key,
        sent: PerSide::new(
            by_client.record.sent[Side::Client],
            by_server.record.sent[Side::Server],
        ),
        ip_bytes: PerSide::new(
            by_client.record.ip_bytes[Side::Client],
            by_server.record.ip_bytes[Side::Server],
        ),
        rates: by_client.record.rates,
        first_seen_ns: all
            .iter()
            .map(|s| s.record.first_seen_ns)
            .min()
            .unwrap_or(0),
        last_seen_ns: all.iter().map(|s| s.record.last_seen_ns).max().unwrap_or(0),
        connections: all.iter().map(|s| s.record.connections).max().unwrap_or(0),
        handshake: PerSide::new(client_digest, server_digest),
        percentiles: PerSide::new(client_percentiles, server_percentiles),
        mirror: all.iter().find_map(|s| s.record.mirror),
        tcp: TcpHealth::new(
            PerSide::new(
                by_client.record.tcp.sent(Side::Client),
                by_server.record.tcp.sent(Side::Server),
            ),
            // The outcomes of the sighting with the most connections; of
            // as many, the one that saw most of them established (an agent
            // that joined mid-stream counts a connection it never saw open).
            all.iter()
                .max_by_key(|s| {
                    (
                        s.record.connections,
                        s.record.tcp.connections.established,
                        s.record.total_pkts(),
                    )
                })
                .map(|s| s.record.tcp.connections)
                .unwrap_or_default(),
        ),
        seen_by: Some(sets.of(&agents)),
    };
    record.rates.pps[Side::Server] = by_server.record.rates.pps[Side::Server];
    record.rates.bps[Side::Server] = by_server.record.rates.bps[Side::Server];
    record
}

/// The sets of agents flows were seen by, shared: most flows have one of
/// a few (each agent alone, each pair of nodes).
#[derive(Default)]
struct SeenBy {
    interned: std::collections::HashMap<Vec<u16>, Arc<[u16]>>,
}

impl SeenBy {
    fn of(&mut self, agents: &[u16]) -> Arc<[u16]> {
        if let Some(set) = self.interned.get(agents) {
            return set.clone();
        }
        let set: Arc<[u16]> = agents.into();
        self.interned.insert(agents.to_vec(), set.clone());
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::flow::{Counter, FlowKey, HandshakeDigest, Rates, SideHealth};
    use pipeline::packet::{Addr, L4Proto};

    fn flow(c2s: (u64, u64), s2c: (u64, u64), legs: [Option<u64>; 2]) -> FlowRecord {
        let digest = |us: Option<u64>| {
            us.map(|us| {
                let mut d = HandshakeDigest::default();
                d.record(0, us, Window::Unbounded, true);
                d.tally(us);
                Arc::new(d)
            })
        };
        let handshake = PerSide::new(digest(legs[0]), digest(legs[1]));
        FlowRecord {
            ip_bytes: Default::default(),
            key: FlowKey {
                proto: L4Proto::Tcp,
                client: Addr::from_v4([198, 18, 0, 1]),
                server: Addr::from_v4([198, 18, 0, 2]),
                server_port: 80,
            },
            sent: PerSide::new(
                Counter {
                    pkts: c2s.0,
                    bytes: c2s.1,
                },
                Counter {
                    pkts: s2c.0,
                    bytes: s2c.1,
                },
            ),
            rates: Rates::default(),
            first_seen_ns: 10,
            last_seen_ns: 20,
            connections: 1,
            percentiles: PerSide::from_fn(|s| {
                handshake[s]
                    .as_ref()
                    .and_then(|d| d.percentiles(0, Window::Unbounded))
            }),
            handshake,
            mirror: None,
            tcp: TcpHealth::default(),
            seen_by: None,
        }
    }

    #[test]
    fn a_flow_seen_on_both_nodes_counts_once_with_each_leg_from_its_node() {
        let node = |n: &str| Some(Arc::<str>::from(n));
        // The client's node measures the true round trip on the client leg
        // (300 µs); the server's node on the server leg (310 µs).
        let on_client = AgentFlows {
            agent: 0,
            node: node("a"),
            flows: vec![flow((10, 1000), (8, 900), [Some(300), Some(305)])].into(),
        };
        let on_server = AgentFlows {
            agent: 1,
            node: node("b"),
            // The server's node lost one client packet.
            flows: vec![flow((9, 940), (8, 900), [Some(4), Some(310)])].into(),
        };
        let nodes = |ip: IpAddr, _| match ip.to_string().as_str() {
            "198.18.0.1" => node("a"),
            "198.18.0.2" => node("b"),
            _ => None,
        };
        let merged = merge(vec![on_client, on_server], nodes);
        assert_eq!(merged.len(), 1);
        let f = &merged[0];
        assert_eq!(
            (f.sent[Side::Client].pkts, f.sent[Side::Client].bytes),
            (10, 1000)
        );
        assert_eq!(
            (f.sent[Side::Server].pkts, f.sent[Side::Server].bytes),
            (8, 900)
        );
        assert_eq!(f.percentiles[Side::Client].unwrap().p50, 300);
        assert_eq!(f.percentiles[Side::Server].unwrap().p50, 310);
        let tally = f.handshake[Side::Client].as_ref().unwrap().tallied();
        assert_eq!(tally.sum_us, 300, "the client's node's tally");
        assert_eq!(f.seen_by.as_deref(), Some(&[0u16, 1][..]));

        // The client's address given since to a pod on the server's node
        // (the flows last seen at 20 ns): its node at the flow's time.
        let moved = |ip: IpAddr, at_ns: u64| match ip.to_string().as_str() {
            "198.18.0.1" if at_ns <= 20 => node("a"),
            _ => node("b"),
        };
        let sightings = || {
            vec![
                AgentFlows {
                    agent: 0,
                    node: node("a"),
                    flows: vec![flow((10, 1000), (8, 900), [Some(300), Some(305)])].into(),
                },
                AgentFlows {
                    agent: 1,
                    node: node("b"),
                    flows: vec![flow((9, 940), (8, 900), [Some(4), Some(310)])].into(),
                },
            ]
        };
        let merged = merge(sightings(), moved);
        assert_eq!(merged[0].percentiles[Side::Client].unwrap().p50, 300);
        let merged = merge(sightings(), |ip, _| moved(ip, 21));
        assert_eq!(
            merged[0].percentiles[Side::Client].unwrap().p50,
            4,
            "named by who has the address now, the client leg is node b's"
        );

        // Without names: the leg with the most samples (here: the first).
        let again = merge(
            vec![
                AgentFlows {
                    agent: 0,
                    node: None,
                    flows: vec![flow((1, 60), (1, 60), [Some(7), None])].into(),
                },
                AgentFlows {
                    agent: 1,
                    node: None,
                    flows: vec![flow((1, 60), (1, 60), [None, Some(9)])].into(),
                },
            ],
            |_, _| None,
        );
        assert_eq!(again[0].percentiles[Side::Client].unwrap().p50, 7);
        assert_eq!(again[0].percentiles[Side::Server].unwrap().p50, 9);

        // Without names, as many samples each: the longer leg, as seen
        // nearer its own end (the client leg measured on the server's node
        // is the server's turnaround, 20 µs), whatever the agents' order.
        for order in [[0, 1], [1, 0]] {
            let sightings = [
                flow((1, 60), (1, 60), [Some(1020), Some(30)]),
                flow((1, 60), (1, 60), [Some(20), Some(1030)]),
            ];
            let agents = order
                .iter()
                .enumerate()
                .map(|(i, &which)| AgentFlows {
                    agent: i as u16,
                    node: None,
                    flows: vec![sightings[which].clone()].into(),
                })
                .collect();
            let tied = merge(agents, |_, _| None);
            assert_eq!(tied[0].percentiles[Side::Client].unwrap().p50, 1020);
            assert_eq!(tied[0].percentiles[Side::Server].unwrap().p50, 1030);
        }

        // The client's node saw the flow but not its handshake (its agent
        // started after it): no client leg, rather than the server node's
        // view of a different quantity.
        let joined_late = merge(
            vec![
                AgentFlows {
                    agent: 0,
                    node: node("a"),
                    flows: vec![flow((9, 900), (8, 900), [None, None])].into(),
                },
                AgentFlows {
                    agent: 1,
                    node: node("b"),
                    flows: vec![flow((10, 1000), (8, 900), [Some(4), Some(310)])].into(),
                },
            ],
            nodes,
        );
        assert_eq!(joined_late[0].percentiles[Side::Client], None);
        assert_eq!(joined_late[0].percentiles[Side::Server].unwrap().p50, 310);
    }

    /// Two agents that counted a direction alike: its TCP counters come
    /// from the one that saw both directions (the other, missing the
    /// ACKs, counts one more retransmission), whatever their order.
    #[test]
    fn a_tied_direction_is_taken_from_the_agent_that_saw_more_of_the_flow() {
        let with_retransmits = |mut f: FlowRecord, server_retransmits: u64| {
            let sent = PerSide::new(
                SideHealth::default(),
                SideHealth {
                    retransmits: server_retransmits,
                    ..SideHealth::default()
                },
            );
            f.tcp = TcpHealth::new(sent, f.tcp.connections);
            f
        };
        let both_ways = with_retransmits(flow((10, 1000), (8, 900), [None, None]), 10);
        let one_way = with_retransmits(flow((0, 0), (8, 900), [None, None]), 11);
        for (first, second) in [(&both_ways, &one_way), (&one_way, &both_ways)] {
            let merged = merge(
                vec![
                    AgentFlows {
                        agent: 0,
                        node: None,
                        flows: vec![first.clone()].into(),
                    },
                    AgentFlows {
                        agent: 1,
                        node: None,
                        flows: vec![second.clone()].into(),
                    },
                ],
                |_, _| None,
            );
            assert_eq!(merged[0].tcp.sent(Side::Server).retransmits, 10);
            assert_eq!(merged[0].sent[Side::Server].pkts, 8);
        }
    }

    /// The merge as first written, kept as the reference: every flow
    /// gathered with its sightings (each list in the API's order, lists in
    /// turn), combined, then the whole sorted.
    fn gathered_then_sorted(agents: Vec<AgentFlows>) -> Vec<FlowRecord> {
        let mut groups: Vec<Vec<Sighting>> = Vec::new();
        let mut group_of = std::collections::HashMap::new();
        for a in agents {
            let mut flows = a.flows.into_vec();
            pipeline::snapshot::sort_flows(&mut flows);
            for record in flows {
                let g = *group_of.entry(record.key).or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len() - 1
                });
                groups[g].push(Sighting {
                    agent: a.agent,
                    record,
                });
            }
        }
        let mut sets = SeenBy::default();
        let mut out: Vec<FlowRecord> = groups
            .into_iter()
            .map(|mut g| {
                if g.len() == 1 {
                    let alone = g.pop().unwrap();
                    let mut record = alone.record;
                    record.seen_by = Some(sets.of(&[alone.agent]));
                    record
                } else {
                    combine(g, &|_, _| None, &|_| None, &mut sets)
                }
            })
            .collect();
        pipeline::snapshot::sort_flows(&mut out);
        out
    }

    /// Lists longer than a chunk, each sharing flows with the next agent's
    /// (a fifth of them) or with the next two's (flows seen three times),
    /// with other counts, many ties of bytes and packets, one list out of
    /// order: the merge gives what gathering and sorting gives.
    #[test]
    fn merging_ordered_lists_equals_gathering_and_sorting() {
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        const AGENTS: u32 = 5;
        const FLOWS: u32 = 10_000;
        // Agent `a` has the flows of ids a * stride .. a * stride + FLOWS.
        for stride in [8_000u32, 4_000] {
            let agents = || {
                let mut next = next;
                (0..AGENTS as u16)
                    .map(|agent| {
                        let mut flows: Vec<FlowRecord> = (0..FLOWS)
                            .map(|i| {
                                let id = u32::from(agent) * stride + i;
                                let pkts = 1 + next() % 40;
                                let leg = (next() % 3 == 0).then(|| 100 + next() % 50);
                                let mut f = flow((pkts, pkts * 100), (next() % 5, 0), [leg, None]);
                                f.key.client = Addr::from_v4([198, 18, (id >> 8) as u8, id as u8]);
                                f
                            })
                            .collect();
                        if agent == 2 {
                            flows.reverse();
                        } else {
                            pipeline::snapshot::sort_flows(&mut flows);
                        }
                        AgentFlows {
                            agent,
                            node: None,
                            flows: flows.into(),
                        }
                    })
                    .collect::<Vec<_>>()
            };
            let merged = merge(agents(), |_, _| None);
            // Flows by how many agents saw them: from the ids' ranges, and
            // from the merged flows' lists of agents.
            let mut expected = [0usize; AGENTS as usize + 1];
            for id in 0..(AGENTS - 1) * stride + FLOWS {
                let by = (0..AGENTS)
                    .filter(|a| (a * stride..a * stride + FLOWS).contains(&id))
                    .count();
                expected[by] += 1;
            }
            let mut seen = [0usize; AGENTS as usize + 1];
            for f in &merged {
                seen[f.seen_by.as_ref().map_or(0, |s| s.len())] += 1;
            }
            assert_eq!(seen, expected, "stride {stride}");
            assert!(expected[if stride == 8_000 { 2 } else { 3 }] > 0);
            assert_eq!(
                format!("{merged:?}"),
                format!("{:?}", gathered_then_sorted(agents())),
                "stride {stride}"
            );
        }
    }

    #[test]
    fn flows_of_one_agent_pass_through() {
        let merged = merge(
            vec![AgentFlows {
                agent: 3,
                node: None,
                flows: vec![flow((2, 120), (0, 0), [None, None])].into(),
            }],
            |_, _| None,
        );
        assert_eq!(merged[0].sent[Side::Client].pkts, 2);
        assert_eq!(merged[0].seen_by.as_deref(), Some(&[3u16][..]));
    }
}
