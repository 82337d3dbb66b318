//! A timer wheel: entries filed by the time they become due, in one-second
//! slots, so that expiry touches only the entries that are due, never the
//! whole table.
//!
//! Filing is lazy: an entry is filed once, by the deadline it had then.
//! When its slot comes up, the owner looks at the entry's current state: it
//! may be gone (dropped), due (expired), or seen since (filed again, by its
//! new deadline). So a packet never touches the wheel; an active entry is
//! refiled about once per timeout.

use std::collections::BTreeMap;

use crate::time::SECOND;

/// Entries in a list that grows by chunks of at most this many, so that a
/// slot or second holding hundreds of thousands of entries does not hold
/// up to as many again unused, as a vector grown by doubling does.
const MAX_CHUNK: usize = 4096;
const MIN_CHUNK: usize = 16;

/// A list grown by chunks: small lists by doubling, large ones by
/// [`MAX_CHUNK`] entries at a time. Order does not matter to its users.
#[derive(Debug)]
struct Chunks<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunks<T> {
    fn default() -> Self {
        Chunks {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunks<T> {
    fn push(&mut self, entry: T) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < chunk.capacity() => chunk.push(entry),
            _ => {
                let mut chunk = Vec::with_capacity(self.len.clamp(MIN_CHUNK, MAX_CHUNK));
                chunk.push(entry);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    fn pop(&mut self) -> Option<T> {
        let last = self.chunks.last_mut()?;
        let entry = last.pop();
        if last.is_empty() {
            self.chunks.pop();
        }
        self.len -= usize::from(entry.is_some());
        entry
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps what `keep` says, giving back the room of what it dropped.
    fn retain(&mut self, keep: &mut impl FnMut(&T) -> bool) {
        for chunk in &mut self.chunks {
            chunk.retain(&mut *keep);
            chunk.shrink_to_fit();
        }
        self.chunks.retain(|c| !c.is_empty());
        self.len = self.chunks.iter().map(Vec::len).sum();
    }

    fn into_iter(self) -> impl Iterator<Item = T> {
        self.chunks.into_iter().flatten()
    }
}

/// Slots in the ring: deadlines further ahead wait in the last slot and are
/// refiled when it comes up.
const SLOTS: u64 = 512;
/// Each slot covers this much time.
const SLOT_NS: u64 = SECOND;

#[derive(Debug)]
pub(crate) struct Wheel<T> {
    /// `slots[i]` holds entries due in slot `s` where `s % SLOTS == i`,
    /// for `s` from `cursor` to `cursor + SLOTS - 1`.
    slots: Vec<Chunks<T>>,
    /// The earliest slot not yet taken.
    cursor: u64,
    len: usize,
}

impl<T> Default for Wheel<T> {
    fn default() -> Self {
        Wheel {
            slots: (0..SLOTS).map(|_| Chunks::default()).collect(),
            cursor: 0,
            len: 0,
        }
    }
}

/// What the owner decides for an entry taken from the wheel.
pub(crate) enum Verdict<T> {
    /// Gone or replaced: forget the entry.
    Drop,
    /// Due: the owner expired (or evicted) it.
    Done,
    /// Not due yet: file it again, to come up at this deadline.
    Refile(T, u64),
}

impl<T> Wheel<T> {
    fn slot_of(deadline_ns: u64) -> u64 {
        deadline_ns / SLOT_NS
    }

    /// Files `entry` to come up at `deadline_ns` (at the next turn if that
    /// is already past); `now_ns` keeps an empty wheel's start near the
    /// present.
    pub(super) fn file(&mut self, entry: T, deadline_ns: u64, now_ns: u64) {
        if self.len == 0 {
            self.cursor = self.cursor.max(Self::slot_of(now_ns));
        }
        let slot = Self::slot_of(deadline_ns).clamp(self.cursor, self.cursor + SLOTS - 1);
        self.slots[(slot % SLOTS) as usize].push(entry);
        self.len += 1;
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Takes every entry whose slot has come up by `now_ns`, letting
    /// `decide` settle each.
    pub(super) fn turn(&mut self, now_ns: u64, mut decide: impl FnMut(T) -> Verdict<T>) {
        let now_slot = Self::slot_of(now_ns);
        if self.cursor == now_slot + 1 && self.len > 0 {
            // A second a turn has taken already: what that turn refiled,
            // due later in this second, waits in the next slot (with the
            // next second's entries), and some of it may be due now. Each
            // turn must expire all that is due by its time, whenever the
            // turn before it was (expiry brought forward by a packet, a
            // snapshot and a maintenance tick in one second).
            self.settle(self.cursor, now_ns, &mut decide);
            return;
        }
        while self.cursor <= now_slot && self.len > 0 {
            // Past the taken slot before refiling, so a refiled entry due
            // now lands in the next slot rather than this one.
            self.cursor += 1;
            self.settle(self.cursor - 1, now_ns, &mut decide);
        }
        if self.len == 0 {
            self.cursor = self.cursor.max(now_slot);
        }
    }

    /// Takes the entries of `slot`, letting `decide` settle each, and files
    /// again those it refiles.
    fn settle(&mut self, slot: u64, now_ns: u64, decide: &mut impl FnMut(T) -> Verdict<T>) {
        let taken = std::mem::take(&mut self.slots[(slot % SLOTS) as usize]);
        self.len -= taken.len;
        for entry in taken.into_iter() {
            if let Verdict::Refile(entry, deadline) = decide(entry) {
                self.file(entry, deadline, now_ns);
            }
        }
    }

    /// Keeps only the entries `keep` says are still live (compaction when
    /// stale entries pile up).
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut len = 0;
        for slot in &mut self.slots {
            slot.retain(&mut keep);
            len += slot.len;
        }
        self.len = len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = SECOND;

    /// A turn expires all that is due by its time, even in a second a turn
    /// has taken already (which refiled what was due later in it).
    #[test]
    fn a_second_turn_in_one_second_takes_what_came_due_since() {
        let mut w: Wheel<(u32, u64)> = Wheel::default();
        w.file((1, 100 * S + S / 2), 100 * S + S / 2, 90 * S);
        w.file((2, 101 * S + S / 2), 101 * S + S / 2, 90 * S);
        let mut expired = Vec::new();
        let mut turn = |w: &mut Wheel<(u32, u64)>, now: u64| {
            w.turn(now, |(id, deadline)| {
                if deadline < now {
                    expired.push(id);
                    Verdict::Done
                } else {
                    Verdict::Refile((id, deadline), deadline)
                }
            })
        };
        turn(&mut w, 100 * S + S / 4);
        turn(&mut w, 100 * S + 3 * S / 4);
        turn(&mut w, 100 * S + 7 * S / 8);
        assert_eq!(w.len(), 1);
        turn(&mut w, 101 * S + 3 * S / 4);
        assert_eq!((expired, w.len()), (vec![1, 2], 0));
    }

    #[test]
    fn entries_come_up_when_due_and_refile() {
        let mut w: Wheel<(u32, u64)> = Wheel::default();
        // (id, deadline); the owner's truth is `deadline` unless bumped.
        w.file((1, 100 * S), 100 * S, 90 * S);
        w.file((2, 105 * S), 105 * S, 90 * S);
        // Beyond the ring: waits in the last slot.
        w.file((3, 2000 * S), 2000 * S, 90 * S);
        let mut expired = Vec::new();
        let mut turn = |w: &mut Wheel<(u32, u64)>, now: u64, bump: Option<(u32, u64)>| {
            w.turn(now, |(id, deadline)| {
                let deadline = match bump {
                    Some((b, d)) if b == id => d,
                    _ => deadline,
                };
                if deadline <= now {
                    expired.push(id);
                    Verdict::Done
                } else {
                    Verdict::Refile((id, deadline), deadline)
                }
            });
        };
        turn(&mut w, 99 * S, None);
        turn(&mut w, 101 * S, Some((2, 103 * S)));
        turn(&mut w, 104 * S, None);
        turn(&mut w, 1000 * S, None);
        assert_eq!(w.len(), 1, "3 is refiled, not due");
        turn(&mut w, 2001 * S, None);
        assert_eq!(expired, vec![1, 2, 3]);
        assert_eq!(w.len(), 0);
    }
}

/// The second an entry was filed in (entries carry no time of their own,
/// to stay small).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Filed(u64);

impl Filed {
    /// Whether something seen at `seen_ns` was seen after the second it was
    /// filed in (then it is filed again, at a later second).
    pub(crate) fn is_before(self, seen_ns: u64) -> bool {
        seen_ns / SLOT_NS > self.0
    }
}

/// Entries in the order they were last seen, to one second: the oldest
/// comes out first. Filing is lazy as in the [`Wheel`]: an entry seen since
/// it was filed is filed again, by its new time, when it comes out.
#[derive(Debug)]
pub(crate) struct Recency<T> {
    by_second: BTreeMap<u64, Chunks<T>>,
    len: usize,
}

impl<T> Default for Recency<T> {
    fn default() -> Self {
        Recency {
            by_second: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T> Recency<T> {
    pub(crate) fn file(&mut self, entry: T, seen_ns: u64) {
        self.by_second
            .entry(seen_ns / SLOT_NS)
            .or_default()
            .push(entry);
        self.len += 1;
    }

    /// The entry filed longest ago, and when it was filed.
    pub(crate) fn pop_oldest(&mut self) -> Option<(T, Filed)> {
        let mut oldest = self.by_second.first_entry()?;
        let second = *oldest.key();
        let entry = oldest.get_mut().pop()?;
        if oldest.get().is_empty() {
            oldest.remove();
        }
        self.len -= 1;
        Some((entry, Filed(second)))
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut len = 0;
        self.by_second.retain(|_, entries| {
            entries.retain(&mut keep);
            len += entries.len;
            !entries.is_empty()
        });
        self.len = len;
    }
}

#[cfg(test)]
mod recency_tests {
    use super::*;

    #[test]
    fn chunks_hold_every_entry_and_little_more() {
        let mut c: Chunks<u32> = Chunks::default();
        let n = 3 * MAX_CHUNK as u32 + 5;
        for i in 0..n {
            c.push(i);
        }
        let capacity: usize = c.chunks.iter().map(Vec::capacity).sum();
        assert!(capacity < n as usize + MAX_CHUNK, "{capacity}");
        c.retain(&mut |&i| i % 2 == 0);
        assert_eq!(c.len, (n as usize).div_ceil(2));
        let mut seen: Vec<u32> = std::iter::from_fn(|| c.pop()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..n).filter(|i| i % 2 == 0).collect::<Vec<_>>());
        assert!(c.is_empty() && c.chunks.is_empty());
    }

    #[test]
    fn oldest_first_across_refiles() {
        let mut r: Recency<u32> = Recency::default();
        r.file(1, 10 * SECOND);
        r.file(2, 5 * SECOND);
        r.file(3, 7 * SECOND);
        let (two, filed) = r.pop_oldest().unwrap();
        assert_eq!(two, 2);
        assert!(!filed.is_before(5 * SECOND + 999_999_999));
        assert!(filed.is_before(6 * SECOND));
        // 2 was seen since: filed again by its new time, behind 3 and 1.
        r.file(2, 20 * SECOND);
        assert_eq!(r.pop_oldest().map(|e| e.0), Some(3));
        assert_eq!(r.pop_oldest().map(|e| e.0), Some(1));
        assert_eq!(r.len(), 1);
        r.retain(|_| false);
        assert_eq!((r.len(), r.pop_oldest()), (0, None));
    }
}
