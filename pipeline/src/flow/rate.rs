//! Per-flow packet and byte rates over a sliding window.
//!
//! The window is cut into [`SLOTS`] slots of `window / SLOTS`; a rate counts
//! what fell into the three slots before the current one plus the current,
//! partly elapsed slot, divided by the time they cover. So the figure is an
//! exact average over the last 75-100% of the window (7.5-10 s by default),
//! never an extrapolation, and it costs four small counters per direction.

use super::side::{Counter, PerSide, Side};

/// Slots per window.
pub const SLOTS: usize = 4;

/// What every packet of a flow updates, alone in one cache line: with a
/// hundred thousand flows the table does not fit in cache, and each line a
/// packet touches is a trip to memory (the offline profile in BENCHMARKS.md).
/// The rate window's slots live elsewhere ([`RateWindow`]) and are touched
/// only when a packet opens a new slot, a few times per window per flow.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
pub struct Meter {
    /// Packets and bytes each side sent since the flow began.
    pub counts: PerSide<Counter>,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Absolute index of the newest slot a packet fell into.
    newest_slot: u64,
    /// Frame bytes that are not IP bytes (link headers, tags, padding)
    /// each side sent since the rate window last took them in
    /// ([`RateWindow::link_bytes`]): four bytes a side keep the meter in
    /// one cache line. A slot's worth past them (a long `--rate-window` of
    /// a fast flow, GSO frames captured short) goes to the window at once.
    link_bytes: PerSide<u32>,
}

/// The totals at the start of each of the last [`SLOTS`] slots: a slot's
/// traffic is the difference between its start and the next one's (or the
/// running totals, for the newest slot).
#[derive(Clone, Debug, Default)]
pub struct RateWindow {
    starts: [PerSide<Counter>; SLOTS],
    /// Frame bytes that are not IP bytes, each side, taken in from the
    /// meter whenever a packet opens a slot.
    link_bytes: PerSide<u64>,
}

/// Rates of what each side sent, per second.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub pps: PerSide<f64>,
    pub bps: PerSide<f64>,
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

impl Meter {
    /// A meter for a flow whose first packet is at `ts_ns` (not yet counted).
    pub fn new(clock: SlotClock, ts_ns: u64) -> Meter {
        Meter {
            counts: PerSide::default(),
            first_seen_ns: ts_ns,
            last_seen_ns: ts_ns,
            newest_slot: clock.slot_of(ts_ns),
            link_bytes: PerSide::default(),
        }
    }

    /// Whether a packet at `ts_ns` opens a new slot, and so touches the
    /// flow's rate window.
    #[inline]
    pub fn opens_slot(&self, clock: SlotClock, ts_ns: u64) -> bool {
        clock.slot_of(ts_ns) != self.newest_slot
    }

    /// IP bytes each side sent (frame bytes less link bytes), with the
    /// flow's rate window.
    pub fn ip_bytes(&self, window: &RateWindow) -> PerSide<u64> {
        PerSide::from_fn(|side| {
            let link = window.link_bytes[side] + u64::from(self.link_bytes[side]);
            self.counts[side].bytes.saturating_sub(link)
        })
    }

    /// Counts one packet, `ip_bytes` of its `bytes` IP bytes (at most all of
    /// them); `window` is fetched only when the packet is not in the newest
    /// slot.
    #[inline]
    pub fn record<'w>(
        &mut self,
        clock: SlotClock,
        ts_ns: u64,
        sender: Side,
        (pkts, bytes, ip_bytes): (u64, u32, u32),
        window: impl FnOnce() -> &'w mut RateWindow,
    ) {
        let mut window = Some(window);
        if self.opens_slot(clock, ts_ns) {
            let slot = clock.slot_of(ts_ns);
            let window = window.take().expect("the window is fetched once")();
            window.before_packet(
                &mut self.newest_slot,
                &self.counts,
                slot,
                sender,
                pkts,
                bytes,
            );
            for side in Side::BOTH {
                window.link_bytes[side] += u64::from(std::mem::take(&mut self.link_bytes[side]));
            }
        }
        let c = &mut self.counts[sender];
        c.pkts += pkts;
        c.bytes += u64::from(bytes);
        let link = bytes.saturating_sub(ip_bytes);
        match self.link_bytes[sender].checked_add(link) {
            Some(sum) => self.link_bytes[sender] = sum,
            // Not after opening a slot: the meter's were taken in then.
            None => {
                let window = window.take().expect("the window is fetched once")();
                let held = std::mem::take(&mut self.link_bytes[sender]);
                window.link_bytes[sender] += u64::from(held) + u64::from(link);
            }
        }
        self.first_seen_ns = self.first_seen_ns.min(ts_ns);
        self.last_seen_ns = self.last_seen_ns.max(ts_ns);
    }

    /// Rates at `as_of_ns`, averaged from the start of the oldest counted
    /// slot (or `since_ns`, when the observation began later) to `as_of_ns`.
    pub fn rates(
        &self,
        window: &RateWindow,
        clock: SlotClock,
        as_of_ns: u64,
        since_ns: u64,
    ) -> Rates {
        let now_slot = clock.slot_of(as_of_ns);
        let oldest = now_slot.saturating_sub(SLOTS as u64 - 1);
        // The counted slots that the window still remembers: all from
        // `oldest`, but where a packet after `as_of_ns` opened a slot (a
        // live worker counts a frame or two before it answers a snapshot)
        // that slot's start took the oldest one's place.
        let lo = oldest.max(self.newest_slot.saturating_sub(SLOTS as u64 - 1));
        let hi = now_slot.min(self.newest_slot);
        // The time of those slots only: the oldest one's time counted with
        // none of its packets read a busy flow a quarter low.
        let start_ns = (lo * clock.slot_ns()).max(since_ns);
        let span_s = as_of_ns.saturating_sub(start_ns) as f64 / 1e9;
        let mut rates = Rates::default();
        if span_s <= 0.0 || lo > hi {
            return rates;
        }
        let end = if hi == self.newest_slot {
            &self.counts
        } else {
            &window.starts[slot_index(hi + 1)]
        };
        let start = &window.starts[slot_index(lo)];
        for side in Side::BOTH {
            rates.pps[side] = (end[side].pkts - start[side].pkts) as f64 / span_s;
            rates.bps[side] = (end[side].bytes - start[side].bytes) as f64 * 8.0 / span_s;
        }
        rates
    }
}

impl RateWindow {
    /// Prepares the slots for a packet at `slot`, which is not the newest
    /// one, before it is added to `totals`.
    #[cold]
    fn before_packet(
        &mut self,
        newest: &mut u64,
        totals: &PerSide<Counter>,
        slot: u64,
        sender: Side,
        pkts: u64,
        bytes: u32,
    ) {
        if slot > *newest {
            // New slots start at the totals so far.
            let fresh = (slot - *newest).min(SLOTS as u64);
            for i in 0..fresh {
                self.starts[slot_index(slot - i)] = *totals;
            }
            *newest = slot;
            return;
        }
        // An older packet (out-of-order timestamps): the starts of the slots
        // after its own include it, so only its slot counts it; a packet
        // older than the window counts in no slot (the totals still count it).
        let first = if *newest - slot >= SLOTS as u64 {
            *newest + 1 - SLOTS as u64
        } else {
            slot + 1
        };
        for s in first..=*newest {
            let c = &mut self.starts[slot_index(s)][sender];
            c.pkts += pkts;
            c.bytes += u64::from(bytes);
        }
    }
}

fn slot_index(slot: u64) -> usize {
    (slot % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = crate::time::SECOND;

    struct Flow {
        meter: Option<Meter>,
        window: RateWindow,
    }

    impl Flow {
        fn new() -> Flow {
            Flow {
                meter: None,
                window: RateWindow::default(),
            }
        }

        fn record(&mut self, clock: SlotClock, ts: u64, sender: Side, bytes: u32) {
            let meter = self.meter.get_or_insert_with(|| Meter::new(clock, ts));
            // An Ethernet header in front of each IP packet.
            let ip = bytes.saturating_sub(14);
            meter.record(clock, ts, sender, (1, bytes, ip), || &mut self.window);
        }

        fn rates(&self, clock: SlotClock, as_of_ns: u64, since_ns: u64) -> Rates {
            self.meter
                .as_ref()
                .unwrap()
                .rates(&self.window, clock, as_of_ns, since_ns)
        }
    }

    /// Link bytes past 4 GiB within one slot (they wrapped: IPFIX's
    /// octetDeltaCount, the IP bytes, read 4 GiB too many).
    #[test]
    fn link_bytes_past_four_gib_in_a_slot_stay_exact() {
        let clock = SlotClock::new(3600 * S);
        let mut meter = Meter::new(clock, S);
        let mut window = RateWindow::default();
        let frame = u32::MAX / 2;
        for i in 0..5 {
            meter.record(clock, S + i, Side::Client, (1, frame, 50), || &mut window);
        }
        let link = 5 * u64::from(frame - 50);
        let bytes = 5 * u64::from(frame);
        assert_eq!(meter.ip_bytes(&window)[Side::Client], bytes - link);
        assert_eq!(meter.ip_bytes(&window)[Side::Client], 250);
    }

    #[test]
    fn steady_traffic_gives_its_rate() {
        let clock = SlotClock::new(8 * S); // 2 s slots
        let mut w = Flow::new();
        // 10 packets/s of 100 bytes for 20 s, both directions at 1:2.
        for i in 0..200u64 {
            let ts = 100 * S + i * S / 10;
            w.record(clock, ts, Side::Client, 100);
            if i % 2 == 0 {
                w.record(clock, ts, Side::Server, 100);
            }
        }
        let r = w.rates(clock, 120 * S, 0);
        assert!((r.pps[Side::Client] - 10.0).abs() < 0.01, "{r:?}");
        assert!((r.pps[Side::Server] - 5.0).abs() < 0.01, "{r:?}");
        assert!((r.bps[Side::Client] - 8000.0).abs() < 1.0, "{r:?}");
    }

    #[test]
    fn idle_flows_decay_to_zero_and_late_packets_are_ignored() {
        let clock = SlotClock::new(8 * S);
        let mut w = Flow::new();
        w.record(clock, 100 * S, Side::Client, 60);
        assert!(w.rates(clock, 101 * S, 0).pps[Side::Client] > 0.0);
        assert_eq!(w.rates(clock, 200 * S, 0).pps[Side::Client], 0.0);
        // A packet far older than the newest slot changes nothing.
        w.record(clock, 10 * S, Side::Client, 60);
        // At 101 s the window starts at 94 s (slots of 2 s): one packet in 7 s.
        assert_eq!(w.rates(clock, 101 * S, 0).pps[Side::Client], 1.0 / 7.0);
    }

    #[test]
    fn observation_start_bounds_the_span() {
        let clock = SlotClock::new(8 * S);
        let mut w = Flow::new();
        for i in 0..10u64 {
            w.record(clock, 100 * S + i * S / 10, Side::Client, 1);
        }
        // Capture began at 100 s; at 101 s the 10 packets span one second.
        let r = w.rates(clock, 101 * S, 100 * S);
        assert!((r.pps[Side::Client] - 10.0).abs() < 1e-9, "{r:?}");
    }

    /// A live snapshot is cut at `as_of`, but its worker may count a packet
    /// stamped just after it, in the next slot, before it answers: that
    /// slot's start replaces the oldest slot's, and the rate is of the
    /// three slots left, over their own time.
    #[test]
    fn a_packet_past_the_snapshot_leaves_the_rate_whole() {
        let clock = SlotClock::new(8 * S); // 2 s slots
        let mut w = Flow::new();
        // 10 packets/s from 100 s to just past 110 s (a slot boundary).
        for i in 0..=100u64 {
            w.record(clock, 100 * S + i * S / 10, Side::Client, 100);
        }
        w.record(clock, 110 * S + S / 1000, Side::Client, 100);
        let r = w.rates(clock, 110 * S - S / 1000, 0);
        assert!((r.pps[Side::Client] - 10.0).abs() < 0.1, "{r:?}");
    }

    #[test]
    fn a_meter_is_one_cache_line() {
        // What every packet touches: one line, not two.
        assert_eq!(size_of::<Meter>(), 64);
    }

    #[test]
    fn ip_bytes_are_frame_bytes_less_link_headers_across_slots() {
        let clock = SlotClock::new(10 * S);
        let mut f = Flow::new();
        let mut frames = PerSide::<u64>::default();
        // Over many slots, and some packets older than the newest slot.
        for i in 0..500u64 {
            let ts = 1_000 * S + i * S / 7 - (i % 5) * S / 3;
            let side = if i % 3 == 0 {
                Side::Server
            } else {
                Side::Client
            };
            let bytes = 60 + (i % 1400) as u32;
            f.record(clock, ts, side, bytes);
            frames[side] += u64::from(bytes);
        }
        let meter = f.meter.as_ref().unwrap();
        let ip = meter.ip_bytes(&f.window);
        for side in Side::BOTH {
            assert_eq!(ip[side], frames[side] - 14 * meter.counts[side].pkts);
        }
    }
}
