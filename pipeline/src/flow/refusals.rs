//! ICMP errors that refused a SYN before its connection was seen.
//!
//! With several receive queues, a connection's SYN and the ICMP error that
//! refuses it (port unreachable, administratively prohibited) can be read
//! by different workers. The SYN reaches its connection's worker through
//! the hand-off, which gathers packets for up to a few milliseconds; the
//! ICMP error, sent a round trip later, may be read by that worker itself
//! and so reach the table first when the round trip is shorter than the
//! hand-off's wait. A refusal that finds no connection therefore waits
//! here, briefly and in a bounded list, for its SYN: the connection is
//! then refused as if the two had come in order.

use std::collections::VecDeque;

use hashbrown::HashMap;

use super::key::ConnKey;
use crate::time::SECOND;

/// How long, in capture time, a refusal waits for its SYN at the least
/// (it is given up at the table's next maintenance after that, about a
/// second later): well past the hand-off's wait for a batch (5 ms) and a
/// backed-up hand-off queue's, so a refusal this late quotes a segment
/// whose connection was not captured.
pub(crate) const WAIT_NS: u64 = SECOND;

/// Refusals waiting at once at most, the oldest given up first: a flood of
/// ICMP errors quoting unknown connections costs no more than this, and
/// a new connection one hash lookup while any wait.
pub(crate) const MAX_WAITING: usize = 256;

/// The refusals of one table still waiting for their SYN.
#[derive(Debug)]
pub(crate) struct PendingRefusals {
    /// The latest refusal of each connection.
    by_key: HashMap<ConnKey, Waiting, ahash::RandomState>,
    /// Connections in the order their refusals came, with each refusal's
    /// time and number, to give up the oldest; an entry whose refusal was
    /// taken or replaced since is skipped.
    order: VecDeque<(ConnKey, u64, u64)>,
    /// The number the next refusal kept gets.
    next: u64,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    /// Whether the refused segment was sent from the key's `lo` end.
    from_lo: bool,
    seq: u32,
    ts_ns: u64,
    number: u64,
}

impl PendingRefusals {
    pub(crate) fn new(hasher: ahash::RandomState) -> PendingRefusals {
        PendingRefusals {
            by_key: HashMap::with_hasher(hasher),
            order: VecDeque::new(),
            next: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Keeps the refusal, at `ts_ns`, of the segment with `seq` sent on
    /// `key` from its `from_lo` end, which refused no connection. Returns
    /// how many waiting refusals it gave up: too old by then, the oldest
    /// for room, or an earlier one of the same connection that refused
    /// another segment. A copy of one waiting (a mirror that sent the ICMP
    /// error twice, or the answer to a retransmitted SYN) keeps the first.
    pub(crate) fn wait(&mut self, key: ConnKey, from_lo: bool, seq: u32, ts_ns: u64) -> u64 {
        let mut given_up = self.expire(ts_ns);
        if let Some(w) = self.by_key.get(&key)
            && w.from_lo == from_lo
            && w.seq == seq
        {
            return given_up;
        }
        if self.order.len() >= MAX_WAITING {
            given_up += self.give_up_oldest();
        }
        let number = self.next;
        self.next += 1;
        let waiting = Waiting {
            from_lo,
            seq,
            ts_ns,
            number,
        };
        if self.by_key.insert(key, waiting).is_some() {
            given_up += 1;
        }
        self.order.push_back((key, ts_ns, number));
        given_up
    }

    /// Gives up the refusals that have waited longer than [`WAIT_NS`] at
    /// `now_ns`; returns how many.
    pub(crate) fn expire(&mut self, now_ns: u64) -> u64 {
        let mut given_up = 0;
        // In the order they came, which is their times' order but for the
        // hand-off's reordering: at most a late one waits a little longer
        // behind an earlier one.
        while self
            .order
            .front()
            .is_some_and(|&(_, ts, _)| ts.saturating_add(WAIT_NS) < now_ns)
        {
            given_up += self.give_up_oldest();
        }
        given_up
    }

    /// Forgets the oldest entry of the order; 1 if its refusal was still
    /// waiting.
    fn give_up_oldest(&mut self) -> u64 {
        let Some((key, _, number)) = self.order.pop_front() else {
            return 0;
        };
        match self.by_key.get(&key) {
            Some(w) if w.number == number => {
                self.by_key.remove(&key);
                1
            }
            _ => 0,
        }
    }

    /// Takes out the time of a refusal waiting for the SYN with `seq`,
    /// sent on `key` from its `from_lo` end at `syn_ns`, if one came after
    /// it (an earlier one refused another attempt).
    pub(crate) fn take(
        &mut self,
        key: &ConnKey,
        from_lo: bool,
        seq: u32,
        syn_ns: u64,
    ) -> Option<u64> {
        let w = self.by_key.get(key)?;
        if w.from_lo != from_lo || w.seq != seq || w.ts_ns < syn_ns {
            return None;
        }
        let ts = w.ts_ns;
        self.by_key.remove(key);
        Some(ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Addr, L4Proto};

    fn key(port: u16) -> ConnKey {
        let a = Addr::from(std::net::IpAddr::from([198, 18, 0, 1]));
        let b = Addr::from(std::net::IpAddr::from([198, 18, 0, 2]));
        ConnKey::between(L4Proto::Tcp, (a, port), (b, 80))
    }

    #[test]
    fn a_refusal_waits_for_its_syn_then_leaves() {
        let mut p = PendingRefusals::new(ahash::RandomState::with_seeds(1, 2, 3, 4));
        assert_eq!(p.wait(key(1), true, 7, 1_000), 0);
        // Not another connection's, another side's, another SYN's, nor
        // one sent after the refusal.
        assert_eq!(p.take(&key(2), true, 7, 900), None);
        assert_eq!(p.take(&key(1), false, 7, 900), None);
        assert_eq!(p.take(&key(1), true, 8, 900), None);
        assert_eq!(p.take(&key(1), true, 7, 1_001), None);
        assert_eq!(p.take(&key(1), true, 7, 900), Some(1_000));
        assert_eq!(p.take(&key(1), true, 7, 900), None);
        assert!(p.is_empty());
    }

    #[test]
    fn refusals_wait_a_while_and_a_bounded_number() {
        let mut p = PendingRefusals::new(ahash::RandomState::with_seeds(1, 2, 3, 4));
        p.wait(key(1), true, 1, 0);
        assert_eq!(p.expire(WAIT_NS), 0);
        assert_eq!(p.expire(WAIT_NS + 1), 1);
        assert!(p.is_empty());
        for i in 0..MAX_WAITING as u16 {
            assert_eq!(p.wait(key(i), true, 1, 10), 0);
        }
        // The oldest goes for room.
        assert_eq!(p.wait(key(9999), true, 1, 10), 1);
        assert_eq!(p.take(&key(0), true, 1, 0), None);
        assert_eq!(p.take(&key(1), true, 1, 0), Some(10));
        assert_eq!(p.by_key.len(), MAX_WAITING - 1);
        // A taken one's place in the order is no refusal given up, and a
        // second refusal of one connection replaces the first; a copy of
        // a waiting one changes nothing.
        assert_eq!(p.expire(10 + WAIT_NS + 1), MAX_WAITING as u64 - 1);
        assert!(p.is_empty() && p.order.is_empty());
        assert_eq!(p.wait(key(5), true, 1, 20), 0);
        assert_eq!(p.wait(key(5), true, 1, 25), 0, "a copy");
        assert_eq!(p.order.len(), 1);
        assert_eq!(p.wait(key(5), true, 2, 30), 1, "another segment's");
        assert_eq!(p.take(&key(5), true, 1, 0), None);
        assert_eq!(p.expire(20 + WAIT_NS + 1), 0, "its first entry is stale");
        assert_eq!(p.take(&key(5), true, 2, 0), Some(30));
    }
}
