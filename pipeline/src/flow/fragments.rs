//! First fragments remembered for the later fragments of their datagram:
//! those carry no transport header, so they take what they need from here.
//! A shard remembers ports (`Fragments<(u16, u16)>`); the ingest path, for a
//! tunnel that rides on a fragmented datagram, the whole inner flow.
//!
//! A datagram is remembered a while after its last fragment too: a SPAN of
//! both ends delivers every fragment twice, and fragments may come out of
//! order (the last before a middle one); those still find their flow
//! (RFC 791 and RFC 8200 reassemble fragments in any order, copies
//! included). Datagrams already ended are the first given up when the
//! table needs room, then the one waiting longest for its fragments: a
//! datagram's fragments come within microseconds of each other, so one
//! waiting while the whole table filled has most likely lost its last,
//! and a flood of first fragments that never end (anyone on a mirrored
//! network can send them) cannot keep every real datagram out.
//!
//! Whether a datagram is still remembered is judged by the time of the
//! fragment that asks, not by when expiry last ran: expiry runs on a
//! worker's own clock, every so often, and how often depended on the
//! number of workers and the hash seed (a straggler 4 s late was counted
//! in its flow with two workers and not with one).

use std::collections::VecDeque;

use hashbrown::HashMap;

use crate::time::SECOND;
use crate::wire::dissect::FragmentId;

/// How long a datagram is remembered after its last fragment, in capture
/// time: copies and stragglers come within microseconds to milliseconds.
const AFTER_LAST_NS: u64 = SECOND;

#[derive(Clone, Copy, Debug)]
struct Entry<V> {
    value: V,
    first_ns: u64,
    /// When its last fragment came, if it has.
    last: Option<u64>,
    /// The number it was last filed under: its place in
    /// [`Fragments::ended`] once its last fragment came, in
    /// [`Fragments::started`] before.
    place: u64,
}

type Firsts<V> = HashMap<FragmentId, Entry<V>, ahash::RandomState>;

/// Datagrams in the order they were filed in it (waiting for fragments,
/// or ended), each with the number it was filed under. A place names its
/// datagram only while that is still filed under that number (each filing,
/// in either order, takes a number of its own): one expired, ended, or
/// started anew since is passed over, and such places are swept out once
/// they outnumber the table by more than 64 (one IP id started or ended
/// again and again within one expiry: a copy of its first fragment between
/// each, as a SPAN of both ends delivers them).
#[derive(Debug, Default)]
struct Order {
    places: VecDeque<(FragmentId, u64)>,
}

/// Whether `place` still names datagram `id`: it was filed last under it.
fn names<V>(firsts: &Firsts<V>, id: &FragmentId, place: u64) -> bool {
    firsts.get(id).is_some_and(|e| e.place == place)
}

impl Order {
    fn file<V>(&mut self, firsts: &Firsts<V>, id: FragmentId, place: u64) {
        self.places.push_back((id, place));
        if self.places.len() > 2 * firsts.len() + 64 {
            self.sweep(firsts);
        }
    }

    /// Forgets the datagram filed first, if any.
    fn give_up_first<V>(&mut self, firsts: &mut Firsts<V>) -> bool {
        while let Some((id, place)) = self.places.pop_front() {
            if names(firsts, &id, place) {
                firsts.remove(&id);
                return true;
            }
        }
        false
    }

    /// Keeps only the places that name their datagram.
    fn sweep<V>(&mut self, firsts: &Firsts<V>) {
        self.places.retain(|(id, place)| names(firsts, id, *place));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.places.len()
    }
}

impl<V> Entry<V> {
    /// When it is forgotten: the fragment timeout after its first
    /// fragment, or a straggler's time after its last, whichever is first.
    fn deadline_ns(&self, timeout_ns: u64) -> u64 {
        let by_first = self.first_ns.saturating_add(timeout_ns);
        match self.last {
            Some(last) => by_first.min(last.saturating_add(AFTER_LAST_NS)),
            None => by_first,
        }
    }
}

/// What became of a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Remembered {
    Yes,
    /// Remembered in place of the datagram waiting longest for its
    /// fragments (the table was full of datagrams waiting): that one's
    /// later fragments will not find it.
    InPlaceOfOldest,
    /// The table holds nothing (`--max-fragments 0`): a later fragment
    /// will not find it.
    TableFull,
}

impl Remembered {
    /// Whether a datagram was lost to the table's size.
    pub(crate) fn lost_one(self) -> bool {
        self != Remembered::Yes
    }
}

#[derive(Debug)]
pub(crate) struct Fragments<V> {
    firsts: Firsts<V>,
    /// Datagrams whose last fragment came, in the order it came: given up
    /// first when room is needed.
    ended: Order,
    /// Datagrams in the order their (latest) first fragment came: the one
    /// waiting longest is given up when no ended one can be.
    started: Order,
    /// The number the next datagram started or ended is filed under: a
    /// datagram ended twice in the same nanosecond (a copy of its first
    /// fragment between) is still one.
    filings: u64,
    max: usize,
    timeout_ns: u64,
    /// No entry is due before this (a sweep of a full table before it
    /// would find nothing).
    next_due_ns: u64,
    /// A full table is swept for what is due at most once a
    /// [`SWEEPS_A_TIMEOUT`]th of the timeout, in capture time: each sweep
    /// visits every entry, and first fragments that never end, coming
    /// just faster than the table's size a timeout, made every one of
    /// them sweep it (a file of them read 50 times slower).
    next_sweep_ns: u64,
}

/// How many times a full table may be swept for what is due within one
/// fragment timeout.
const SWEEPS_A_TIMEOUT: u64 = 64;

impl<V: Copy> Fragments<V> {
    pub(crate) fn new(max: usize, timeout_ns: u64, hasher: ahash::RandomState) -> Fragments<V> {
        Fragments {
            firsts: HashMap::with_hasher(hasher),
            ended: Order::default(),
            started: Order::default(),
            filings: 0,
            max,
            timeout_ns,
            next_due_ns: u64::MAX,
            next_sweep_ns: 0,
        }
    }

    /// Remembers a first fragment's `value`. A copy of one, or a new
    /// datagram reusing an ended one's IP id (a 16-bit id wraps within a
    /// second at 65,536 fragmented datagrams a second), starts it anew:
    /// its later fragments, copies included, end it again.
    pub(crate) fn first(&mut self, id: FragmentId, value: V, ts_ns: u64) -> Remembered {
        let timeout = self.timeout_ns;
        if let Some(entry) = self.firsts.get_mut(&id) {
            let due = entry.deadline_ns(timeout) < ts_ns;
            let restarted = entry.last.take().is_some() || due;
            if restarted {
                entry.first_ns = ts_ns;
                entry.place = self.filings;
            }
            entry.value = value;
            self.next_due_ns = self.next_due_ns.min(entry.deadline_ns(timeout));
            if restarted {
                self.started.file(&self.firsts, id, self.filings);
                self.filings += 1;
            }
            return Remembered::Yes;
        }
        let mut remembered = Remembered::Yes;
        if self.firsts.len() >= self.max {
            // Those due by now go first, as they would have had expiry
            // just run; then datagrams ended; then the one waiting longest.
            if self.next_due_ns < ts_ns && self.next_sweep_ns <= ts_ns {
                self.expire(ts_ns);
                self.next_sweep_ns = ts_ns.saturating_add(timeout / SWEEPS_A_TIMEOUT);
            }
            if self.firsts.len() >= self.max && !self.ended.give_up_first(&mut self.firsts) {
                if !self.started.give_up_first(&mut self.firsts) {
                    return Remembered::TableFull;
                }
                remembered = Remembered::InPlaceOfOldest;
            }
        }
        self.firsts.insert(
            id,
            Entry {
                value,
                first_ns: ts_ns,
                last: None,
                place: self.filings,
            },
        );
        self.started.file(&self.firsts, id, self.filings);
        self.filings += 1;
        self.next_due_ns = self.next_due_ns.min(ts_ns.saturating_add(timeout));
        remembered
    }

    /// What the first fragment of a later fragment's datagram left, if it
    /// was seen.
    pub(crate) fn later(&mut self, id: &FragmentId, last: bool, ts_ns: u64) -> Option<V> {
        let entry = self.firsts.get_mut(id)?;
        if entry.deadline_ns(self.timeout_ns) < ts_ns {
            // Forgotten by now, swept or not.
            self.firsts.remove(id);
            return None;
        }
        let value = entry.value;
        if last && entry.last.is_none() {
            entry.last = Some(ts_ns);
            entry.place = self.filings;
            self.next_due_ns = self.next_due_ns.min(ts_ns.saturating_add(AFTER_LAST_NS));
            self.ended.file(&self.firsts, *id, self.filings);
            self.filings += 1;
        }
        Some(value)
    }

    /// Forgets first fragments older than the fragment timeout, and
    /// datagrams whose last fragment came longer ago than a straggler
    /// would.
    pub(crate) fn expire(&mut self, now_ns: u64) {
        let timeout = self.timeout_ns;
        let mut next_due = u64::MAX;
        self.firsts.retain(|_, f| {
            let deadline = f.deadline_ns(timeout);
            let kept = deadline >= now_ns;
            if kept {
                next_due = next_due.min(deadline);
            }
            kept
        });
        self.next_due_ns = next_due;
        // Only the places of datagrams still remembered so: never more
        // than the table holds.
        self.ended.sweep(&self.firsts);
        self.started.sweep(&self.firsts);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.firsts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Addr;

    fn id(ident: u32) -> FragmentId {
        FragmentId {
            src: Addr::from_v4([198, 18, 0, 1]),
            dst: Addr::from_v4([198, 18, 0, 2]),
            ident,
            protocol: 17,
        }
    }

    fn table(max: usize) -> Fragments<u16> {
        Fragments::new(max, 30 * SECOND, ahash::RandomState::new())
    }

    #[test]
    fn copies_and_stragglers_after_the_last_fragment_find_their_datagram() {
        let mut f = table(16);
        assert_eq!(f.first(id(1), 53, 0), Remembered::Yes);
        // The last fragment, then its copy (a SPAN of both ends), then a
        // middle fragment that came late.
        assert_eq!(f.later(&id(1), true, 10), Some(53));
        assert_eq!(f.later(&id(1), true, 11), Some(53));
        assert_eq!(f.later(&id(1), false, 12), Some(53));
        // A copy of the first fragment starts it anew; its last fragment's
        // copy ends it again.
        assert_eq!(f.first(id(1), 53, 13), Remembered::Yes);
        assert_eq!(f.later(&id(1), true, 14), Some(53));
        // Forgotten a while after its last fragment, long before the
        // timeout.
        f.expire(14 + AFTER_LAST_NS);
        assert_eq!(f.later(&id(1), false, 14 + AFTER_LAST_NS), Some(53));
        f.expire(15 + AFTER_LAST_NS);
        assert_eq!(f.later(&id(1), false, 15 + AFTER_LAST_NS), None);
        assert_eq!((f.len(), f.ended.len()), (0, 0));
    }

    /// An IP id used again for a new datagram after the last ended: the
    /// new one is remembered from its own first fragment, not given up as
    /// ended, and the table's record of ended datagrams stays within it.
    #[test]
    fn a_datagram_reusing_an_ended_one_s_id_starts_anew() {
        let mut f = table(2);
        f.first(id(1), 1, 0);
        f.later(&id(1), true, 1);
        f.first(id(2), 3, 400);
        f.first(id(1), 2, 500);
        // The table is full of datagrams waiting for fragments: the one
        // waiting longest goes, datagram 2 (datagram 1 waits from 500).
        assert_eq!(f.first(id(3), 4, 600), Remembered::InPlaceOfOldest);
        assert_eq!(f.later(&id(2), false, 700), None);
        assert_eq!(f.later(&id(1), false, 700), Some(2));
        // Its first fragment's time counts from the new datagram.
        f.expire(30 * SECOND + 1);
        assert_eq!(f.later(&id(1), false, 30 * SECOND + 1), Some(2));
        f.expire(30 * SECOND + 601);
        assert_eq!(f.len(), 0);
        assert_eq!((f.ended.len(), f.started.len()), (0, 0));
    }

    /// One IP id's datagram started and ended over and over within one
    /// expiry (every frame with the same stamp, so expiry never runs): the
    /// order of ended datagrams holds no more than the table does, and the
    /// datagram, ended last, is still the one given up for room.
    #[test]
    fn one_id_ended_again_and_again_holds_no_more_places() {
        let mut f = table(2);
        for _ in 0..100_000 {
            f.first(id(1), 1, 7);
            f.later(&id(1), true, 7);
        }
        assert!(f.ended.len() <= 2 + 64, "{} places", f.ended.len());
        assert!(f.started.len() <= 2 + 64, "{} places", f.started.len());
        f.first(id(2), 2, 7);
        assert_eq!(f.first(id(3), 3, 7), Remembered::Yes);
        assert_eq!(f.later(&id(1), false, 7), None);
        assert_eq!(f.later(&id(2), false, 7), Some(2));
        // None ended: the one waiting longest goes.
        assert_eq!(f.first(id(4), 4, 7), Remembered::InPlaceOfOldest);
        assert_eq!(f.later(&id(2), false, 7), None);
        assert_eq!(f.later(&id(3), false, 7), Some(3));
    }

    /// What is remembered is judged by the asking fragment's time, not by
    /// when expiry last ran (which hung on the number of workers): a
    /// straggler past its time, a fragment past the timeout, find nothing
    /// with no expiry run, and a full table's due datagrams make room.
    #[test]
    fn a_fragment_past_its_datagram_s_time_finds_nothing_unswept() {
        let mut f = table(2);
        f.first(id(1), 53, 0);
        f.later(&id(1), true, 10);
        assert_eq!(f.later(&id(1), true, 10 + AFTER_LAST_NS), Some(53));
        assert_eq!(f.later(&id(1), true, 11 + AFTER_LAST_NS), None);
        f.first(id(2), 54, 0);
        assert_eq!(f.later(&id(2), false, 30 * SECOND), Some(54));
        assert_eq!(f.later(&id(2), false, 30 * SECOND + 1), None);
        // A first fragment under an id whose datagram timed out starts
        // anew, its time from now.
        f.first(id(3), 1, 0);
        f.first(id(3), 2, 40 * SECOND);
        assert_eq!(f.later(&id(3), false, 60 * SECOND), Some(2));
        // Full of datagrams waiting (ids 3 and 4), none ended, none due:
        // the one waiting longest makes room.
        f.first(id(4), 3, 41 * SECOND);
        assert_eq!(f.first(id(5), 4, 60 * SECOND), Remembered::InPlaceOfOldest);
        assert_eq!(f.later(&id(3), false, 60 * SECOND), None);
        // One due by the new first fragment's time makes room: no loss.
        assert_eq!(f.first(id(6), 5, 71 * SECOND + 1), Remembered::Yes);
        assert_eq!(f.later(&id(4), false, 71 * SECOND + 1), None);
        assert_eq!(f.later(&id(5), false, 71 * SECOND + 1), Some(4));
    }

    #[test]
    fn datagrams_without_their_last_fragment_wait_for_the_timeout() {
        let mut f = table(16);
        f.first(id(1), 53, 0);
        assert_eq!(f.later(&id(1), false, 5), Some(53));
        f.expire(30 * SECOND);
        assert_eq!(f.later(&id(1), false, 30 * SECOND), Some(53));
        f.expire(30 * SECOND + 1);
        assert_eq!(f.later(&id(1), true, 30 * SECOND + 1), None);
    }

    #[test]
    fn ended_datagrams_make_room_first_then_the_one_waiting_longest() {
        let mut f = table(2);
        f.first(id(1), 1, 0);
        f.first(id(2), 2, 1);
        // Full of datagrams still waiting for fragments: the one waiting
        // longest goes.
        assert_eq!(f.first(id(3), 3, 2), Remembered::InPlaceOfOldest);
        assert_eq!(f.later(&id(1), false, 3), None);
        // Ended ones go first, the earliest ended first, though datagram
        // 2 waits longer.
        f.later(&id(3), true, 4);
        assert_eq!(f.first(id(4), 4, 5), Remembered::Yes);
        assert_eq!(f.later(&id(3), false, 6), None);
        assert_eq!(f.later(&id(2), false, 6), Some(2));
        f.later(&id(2), true, 7);
        f.later(&id(4), true, 8);
        assert_eq!(f.first(id(5), 5, 9), Remembered::Yes);
        assert_eq!(f.later(&id(2), false, 10), None);
        assert_eq!(f.later(&id(4), false, 10), Some(4));
        assert_eq!(f.len(), 2);
        assert_eq!(table(0).first(id(1), 1, 0), Remembered::TableFull);
    }

    /// A flood of first fragments that never end (anyone on a mirrored
    /// network can send them) does not keep a real datagram out: its
    /// fragments come within microseconds, the flood's firsts waited
    /// longer. (Refusing the newcomer at a full table lost every real
    /// datagram until the flood's timed out.)
    #[test]
    fn first_fragments_that_never_end_keep_no_real_datagram_out() {
        let mut f = table(64);
        let mut lost = 0;
        for i in 0..10_000 {
            lost += u32::from(f.first(id(1_000 + i), 0, u64::from(i)).lost_one());
            if i % 1_000 == 999 {
                let (ts, real) = (u64::from(i), id(100_000 + i));
                assert!(f.first(real, 53, ts).lost_one());
                assert_eq!(f.later(&real, false, ts + 1), Some(53));
                assert_eq!(f.later(&real, true, ts + 2), Some(53));
            }
        }
        // The flood's firsts beyond the table each took the place of one
        // waiting, but nine: those took a real datagram's, ended, instead
        // (all real ones but the last).
        assert_eq!(lost, 10_000 - 64 - 9);
        assert!(f.started.len() <= 2 * 64 + 64, "{}", f.started.len());
    }

    #[test]
    fn an_expired_datagram_s_place_in_the_ended_order_is_passed_over() {
        let mut f = table(2);
        f.first(id(1), 1, 0);
        f.later(&id(1), true, 1);
        f.first(id(2), 2, 2 * AFTER_LAST_NS);
        // Expiry forgot datagram 1 and its place in the order.
        f.expire(2 * AFTER_LAST_NS);
        f.first(id(3), 3, 2 * AFTER_LAST_NS);
        f.later(&id(3), true, 2 * AFTER_LAST_NS);
        assert_eq!(f.first(id(4), 4, 2 * AFTER_LAST_NS), Remembered::Yes);
        assert_eq!(f.later(&id(2), false, 2 * AFTER_LAST_NS), Some(2));
    }
}
