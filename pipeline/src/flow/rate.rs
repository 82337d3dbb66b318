//! Per-flow packet and byte rates over a sliding window.
//!
//! The window is cut into [`SLOTS`] slots of `window / SLOTS`; a rate counts
//! what fell into the three slots before the current one plus the current,
//! partly elapsed slot, divided by the time they cover. So the figure is an
//! exact average over the last 75-100% of the window (7.5-10 s by default),
//! never an extrapolation, and it costs four small counters per direction.

/// Slots per window.
pub const SLOTS: usize = 4;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    pkts: [u32; 2],
    bytes: [u64; 2],
}

/// Direction index: client to server, server to client.
pub const C2S: usize = 0;
pub const S2C: usize = 1;

#[derive(Clone, Debug, Default)]
pub struct RateWindow {
    /// Absolute index of the newest slot written (time / slot length).
    newest: u64,
    slots: [Slot; SLOTS],
}

/// Rates per direction, per second.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub pps: [f64; 2],
    pub bps: [f64; 2],
}

/// The slot geometry shared by all flows of a table.
#[derive(Clone, Copy, Debug)]
pub struct SlotClock {
    slot_ns: u64,
}

impl SlotClock {
    pub fn new(window_ns: u64) -> SlotClock {
        SlotClock {
            slot_ns: (window_ns / SLOTS as u64).max(1),
        }
    }

    #[inline]
    pub fn slot_of(&self, ts_ns: u64) -> u64 {
        ts_ns / self.slot_ns
    }

    pub fn slot_ns(&self) -> u64 {
        self.slot_ns
    }
}

impl RateWindow {
    /// Counts one packet of `bytes` in direction `dir` at absolute slot `slot`.
    #[inline]
    pub fn record(&mut self, slot: u64, dir: usize, bytes: u32) {
        if slot > self.newest {
            let stale = (slot - self.newest).min(SLOTS as u64);
            for i in 0..stale {
                self.slots[((slot - i) % SLOTS as u64) as usize] = Slot::default();
            }
            self.newest = slot;
        } else if self.newest - slot >= SLOTS as u64 {
            // Older than the window (out-of-order timestamps): totals count
            // it, the rate does not.
            return;
        }
        let s = &mut self.slots[(slot % SLOTS as u64) as usize];
        s.pkts[dir] = s.pkts[dir].saturating_add(1);
        s.bytes[dir] += u64::from(bytes);
    }

    /// Rates at `as_of_ns`, averaged from the start of the oldest counted slot
    /// (or `since_ns`, when the observation began later) to `as_of_ns`.
    pub fn rates(&self, clock: SlotClock, as_of_ns: u64, since_ns: u64) -> Rates {
        let now_slot = clock.slot_of(as_of_ns);
        let oldest = now_slot.saturating_sub(SLOTS as u64 - 1);
        let start_ns = (oldest * clock.slot_ns()).max(since_ns);
        let span_s = as_of_ns.saturating_sub(start_ns) as f64 / 1e9;
        let mut rates = Rates::default();
        if span_s <= 0.0 {
            return rates;
        }
        for slot in oldest..=now_slot {
            if slot > self.newest || self.newest - slot >= SLOTS as u64 {
                continue;
            }
            let s = &self.slots[(slot % SLOTS as u64) as usize];
            for dir in [C2S, S2C] {
                rates.pps[dir] += f64::from(s.pkts[dir]);
                rates.bps[dir] += s.bytes[dir] as f64 * 8.0;
            }
        }
        for dir in [C2S, S2C] {
            rates.pps[dir] /= span_s;
            rates.bps[dir] /= span_s;
        }
        rates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn steady_traffic_gives_its_rate() {
        let clock = SlotClock::new(8 * S); // 2 s slots
        let mut w = RateWindow::default();
        // 10 packets/s of 100 bytes for 20 s, both directions at 1:2.
        for i in 0..200u64 {
            let ts = 100 * S + i * S / 10;
            w.record(clock.slot_of(ts), C2S, 100);
            if i % 2 == 0 {
                w.record(clock.slot_of(ts), S2C, 100);
            }
        }
        let r = w.rates(clock, 120 * S, 0);
        assert!((r.pps[C2S] - 10.0).abs() < 0.01, "{r:?}");
        assert!((r.pps[S2C] - 5.0).abs() < 0.01, "{r:?}");
        assert!((r.bps[C2S] - 8000.0).abs() < 1.0, "{r:?}");
    }

    #[test]
    fn idle_flows_decay_to_zero_and_late_packets_are_ignored() {
        let clock = SlotClock::new(8 * S);
        let mut w = RateWindow::default();
        w.record(clock.slot_of(100 * S), C2S, 60);
        assert!(w.rates(clock, 101 * S, 0).pps[C2S] > 0.0);
        assert_eq!(w.rates(clock, 200 * S, 0).pps[C2S], 0.0);
        // A packet far older than the newest slot changes nothing.
        w.record(clock.slot_of(10 * S), C2S, 60);
        // At 101 s the window starts at 94 s (slots of 2 s): one packet in 7 s.
        assert_eq!(w.rates(clock, 101 * S, 0).pps[C2S], 1.0 / 7.0);
    }

    #[test]
    fn observation_start_bounds_the_span() {
        let clock = SlotClock::new(8 * S);
        let mut w = RateWindow::default();
        for i in 0..10u64 {
            w.record(clock.slot_of(100 * S + i * S / 10), C2S, 1);
        }
        // Capture began at 100 s; at 101 s the 10 packets span one second.
        let r = w.rates(clock, 101 * S, 100 * S);
        assert!((r.pps[C2S] - 10.0).abs() < 1e-9, "{r:?}");
    }
}
