//! An indexed array that grows without moving what it holds: fixed-size
//! chunks, each allocated once at its full size.
//!
//! A `Vec` that doubles copies everything it holds into fresh memory each
//! time, and the kernel zeroes every page of that fresh memory first: for
//! a shard's flows that was about a fifth of the time of reading a capture
//! with a quarter of a million connections open (the copies, and twice the
//! page faults the flows themselves need). Here an element stays where it
//! was put, and a chunk's pages are faulted in only as elements reach them.
//!
//! Fixed chunks rather than chunks of doubling size (which start smaller):
//! indexing is then a shift and a mask, and measured as fast as a `Vec`'s
//! in criterion's `path/*`, where doubling chunks' leading-zero count cost
//! 8–20% per packet. A chunk's untouched tail is address space, not memory.
//!
//! The expiry wheel's `Chunks` also grows by pieces, but is a bag (popped
//! and thinned, never indexed); this is the indexed storage of the flow
//! slab and of the connections (`Conns`).

const CHUNK_LOG2: u32 = 12;
/// Elements per chunk.
const CHUNK: usize = 1 << CHUNK_LOG2;

#[derive(Debug)]
pub(super) struct ChunkedVec<T> {
    /// Every chunk before the one the next element goes to holds exactly
    /// [`CHUNK`] elements; at most one empty chunk follows that one.
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkedVec<T> {
    fn default() -> Self {
        ChunkedVec {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

/// The chunk and the offset in it of element `index`.
#[inline]
fn locate(index: usize) -> (usize, usize) {
    (index >> CHUNK_LOG2, index & (CHUNK - 1))
}

impl<T> ChunkedVec<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push(&mut self, value: T) {
        let (chunk, _) = locate(self.len);
        if chunk == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        // Never beyond the capacity asked for: `locate` moves to the next
        // chunk exactly when this one holds `CHUNK`.
        self.chunks[chunk].push(value);
        self.len += 1;
    }

    /// Removes element `index` and puts the last in its place (order is
    /// not kept; nothing else moves).
    pub(super) fn swap_remove(&mut self, index: usize) -> T {
        assert!(
            index < self.len,
            "index {index} out of {} elements",
            self.len
        );
        let (chunk, _) = locate(self.len - 1);
        let last = self.chunks[chunk]
            .pop()
            .expect("the last chunk holds the last element");
        self.len -= 1;
        // One empty chunk is kept for the next push; more are given back.
        self.chunks.truncate(locate(self.len).0 + 2);
        if index == self.len {
            last
        } else {
            std::mem::replace(&mut self[index], last)
        }
    }

    #[inline]
    pub(super) fn get(&self, index: usize) -> Option<&T> {
        let (chunk, offset) = locate(index);
        self.chunks.get(chunk)?.get(offset)
    }

    #[inline]
    pub(super) fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        let (chunk, offset) = locate(index);
        self.chunks.get_mut(chunk)?.get_mut(offset)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }
}

impl<T> std::ops::Index<usize> for ChunkedVec<T> {
    type Output = T;

    #[inline]
    fn index(&self, index: usize) -> &T {
        match self.get(index) {
            Some(value) => value,
            None => panic!("index {index} out of {} elements", self.len),
        }
    }
}

impl<T> std::ops::IndexMut<usize> for ChunkedVec<T> {
    #[inline]
    fn index_mut(&mut self, index: usize) -> &mut T {
        let len = self.len;
        match self.get_mut(index) {
            Some(value) => value,
            None => panic!("index {index} out of {len} elements"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_stay_where_they_were_put() {
        let n = 3 * CHUNK + 100;
        let mut v = ChunkedVec::default();
        let mut first = std::ptr::null();
        for i in 0..n {
            v.push(i as u32);
            if i == 0 {
                first = &v[0] as *const u32;
            }
        }
        // Growing never moved the first element (a Vec's doubling would).
        assert_eq!(&v[0] as *const u32, first);
        assert_eq!(v.len(), n);
        for i in 0..n {
            assert_eq!(v[i], i as u32);
        }
        assert!(v.get(n).is_none());
        assert!(v.get(4 * CHUNK).is_none());
        assert!(v.get(u32::MAX as usize).is_none());
        assert!(v.iter().copied().eq(0..n as u32));
        for x in v.iter_mut() {
            *x += 1;
        }
        v[n - 1] = 0;
        assert_eq!(v[n - 2], n as u32 - 1);
        assert_eq!(v[n - 1], 0);
        // Four chunks, each allocated once at its full size.
        assert_eq!(v.chunks.len(), 4);
        assert!(v.chunks.iter().all(|c| c.capacity() == CHUNK));
    }

    #[test]
    fn swap_remove_fills_the_hole_with_the_last() {
        let n = 2 * CHUNK + 1;
        let mut v = ChunkedVec::default();
        for i in 0..n {
            v.push(i);
        }
        assert_eq!(v.swap_remove(3), 3);
        assert_eq!(v[3], n - 1);
        assert_eq!(v.len(), n - 1);
        assert_eq!(v.swap_remove(n - 2), n - 2);
        // Emptied down to one chunk: one spare chunk is kept, not more.
        while v.len() > 10 {
            v.swap_remove(0);
        }
        assert_eq!(v.chunks.len(), 2);
        let mut left: Vec<usize> = v.iter().copied().collect();
        left.sort_unstable();
        left.dedup();
        assert_eq!(left.len(), 10);
        // Grows again into the kept chunk and new ones.
        for i in 0..CHUNK {
            v.push(i);
        }
        assert_eq!(v.len(), CHUNK + 10);
        assert!(v.chunks.iter().all(|c| c.capacity() == CHUNK));
    }

    #[test]
    #[should_panic(expected = "index 5 out of 5 elements")]
    fn indexing_past_the_end_names_the_index() {
        let mut v = ChunkedVec::default();
        for i in 0..5 {
            v.push(i);
        }
        let _ = v[5];
    }
}
