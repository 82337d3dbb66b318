//! A snapshot's flows, in chunks of [`CHUNK`] records.
//!
//! A hub builds a snapshot of every agent's flows each round (1.5M records,
//! about 400 MB, at its benchmark's size) out of as many decoded records,
//! and memory freed and asked for again comes back from the kernel as
//! fresh pages, zeroed on first touch (most of a hub's system time on the
//! host measured; BENCHMARKS.md, hub: "Chunks reused by the merge"). In
//! chunks of one size, the merged flows go into the chunks of decoded
//! records the merge has just passed ([`Flows::push_reusing`]) rather than
//! into one fresh list. An appliance's snapshot is one list, sorted where it
//! was gathered ([`Flows::from`] a `Vec`, no copy).

use crate::flow::FlowRecord;

/// Records per chunk: a power of two, so a position's chunk is a shift.
pub const CHUNK: usize = 4096;

/// A chunk of records.
pub type Chunk = Vec<FlowRecord>;

/// A snapshot's flows, in order: either one list (an appliance's) or
/// chunks of exactly [`CHUNK`] records but the last (a hub's, built by
/// [`Flows::push_reusing`]).
#[derive(Default)]
pub struct Flows {
    chunks: Vec<Chunk>,
    len: usize,
}

impl Flows {
    pub fn new() -> Flows {
        Flows::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `record` at the end, in a new chunk when the last is full.
    pub fn push(&mut self, record: FlowRecord) {
        self.push_reusing(record, &mut Vec::new());
    }

    /// Adds `record` at the end; when the last chunk is full, the next is
    /// one of `spares` (empty chunks with room for [`CHUNK`]) if any.
    pub fn push_reusing(&mut self, record: FlowRecord, spares: &mut Vec<Chunk>) {
        match self.chunks.last_mut() {
            // A last chunk is full at CHUNK; a single list longer than
            // that grows as a list.
            Some(last) if last.len() != CHUNK => last.push(record),
            _ => {
                let mut chunk = spares.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK));
                debug_assert!(chunk.is_empty() && chunk.capacity() >= CHUNK);
                chunk.push(record);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    pub fn get(&self, i: usize) -> Option<&FlowRecord> {
        let (chunk, at) = self.place(i);
        self.chunks.get(chunk)?.get(at)
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            records: self.chunks.iter().flatten(),
            left: self.len,
        }
    }

    /// The chunk and the place in it of position `i`.
    fn place(&self, i: usize) -> (usize, usize) {
        if self.chunks.len() == 1 {
            (0, i)
        } else {
            (i / CHUNK, i % CHUNK)
        }
    }
}

impl From<Vec<FlowRecord>> for Flows {
    /// One list, as it is: no copy.
    fn from(records: Vec<FlowRecord>) -> Flows {
        Flows {
            len: records.len(),
            chunks: if records.is_empty() {
                Vec::new()
            } else {
                vec![records]
            },
        }
    }
}

impl FromIterator<FlowRecord> for Flows {
    fn from_iter<I: IntoIterator<Item = FlowRecord>>(records: I) -> Flows {
        let mut flows = Flows::new();
        records.into_iter().for_each(|r| flows.push(r));
        flows
    }
}

impl std::ops::Index<usize> for Flows {
    type Output = FlowRecord;

    fn index(&self, i: usize) -> &FlowRecord {
        let (chunk, at) = self.place(i);
        &self.chunks[chunk][at]
    }
}

impl std::fmt::Debug for Flows {
    /// As a list, wherever its chunks begin.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Flows {
    type Item = &'a FlowRecord;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The records of [`Flows`] in order, with their count known (so that a
/// list collected from them is allocated once).
pub struct Iter<'a> {
    records: std::iter::Flatten<std::slice::Iter<'a, Chunk>>,
    left: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a FlowRecord;

    fn next(&mut self) -> Option<&'a FlowRecord> {
        let record = self.records.next()?;
        self.left -= 1;
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowKey;
    use crate::packet::{Addr, L4Proto};

    fn record(n: usize) -> FlowRecord {
        let mut r = FlowRecord::new(FlowKey {
            proto: L4Proto::Udp,
            client: Addr::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(n as u32))),
            server: Addr::from(std::net::IpAddr::from([198, 18, 0, 1])),
            server_port: 53,
        });
        r.connections = n as u64;
        r
    }

    #[test]
    fn positions_are_the_same_in_chunks_and_in_one_list() {
        let n = 3 * CHUNK + 17;
        let chunked: Flows = (0..n).map(record).collect();
        let one = Flows::from((0..n).map(record).collect::<Vec<_>>());
        assert_eq!(chunked.chunks.len(), 4);
        assert_eq!(one.chunks.len(), 1);
        for flows in [&chunked, &one] {
            assert_eq!(flows.len(), n);
            assert_eq!(flows.iter().len(), n);
            for i in [0, 1, CHUNK - 1, CHUNK, 2 * CHUNK + 5, n - 1] {
                assert_eq!(flows[i].connections, i as u64);
                assert_eq!(flows.get(i).map(|r| r.connections), Some(i as u64));
            }
            assert!(flows.get(n).is_none());
            let seen: Vec<u64> = flows.iter().map(|r| r.connections).collect();
            assert_eq!(seen, (0..n as u64).collect::<Vec<_>>());
        }
        // A single list longer than a chunk grows as one list.
        let mut one = one;
        one.push(record(n));
        assert_eq!((one.chunks.len(), one[n].connections), (1, n as u64));
    }

    #[test]
    fn chunks_are_reused_where_given() {
        let mut spare = Vec::with_capacity(CHUNK);
        spare.push(record(7));
        spare.clear();
        let address = spare.as_ptr();
        let mut spares = vec![spare];
        let mut flows = Flows::new();
        for n in 0..CHUNK + 1 {
            flows.push_reusing(record(n), &mut spares);
        }
        // The first chunk is the spare, the second new.
        assert!(spares.is_empty());
        assert_eq!(flows.chunks[0].as_ptr(), address);
        assert_eq!(flows.chunks.len(), 2);
        assert_eq!(flows[CHUNK].connections, CHUNK as u64);
    }
}
