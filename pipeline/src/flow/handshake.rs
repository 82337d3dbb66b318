//! Handshake-time samples of one flow leg (SYN -> SYN-ACK or SYN -> ACK) over
//! the RTT window, with percentiles.
//!
//! Most flows see a handful of connections, so a digest keeps its first
//! samples exactly (percentiles are then exact), and only a flow with more
//! than [`EXACT_SAMPLES`] handshakes in the window moves to a [`Sketch`]
//! (within 1%, under a kilobyte however many handshakes it counts). With a
//! finite window the sketch is kept as two generations of half a window
//! each, so old samples age out; percentiles then cover between half a
//! window and a whole one.

use super::sketch::{MAX_BUCKETS, Sketch};
use crate::time::whole_secs;

/// Samples kept exactly before switching to a sketch.
pub const EXACT_SAMPLES: usize = 16;

/// Largest handshake time tracked, in microseconds (one minute); longer legs
/// are clamped and counted there.
pub const MAX_TRACKED_US: u64 = 60_000_000;

/// Bytes one digest in sketch form holds at most: its two generations
/// share [`MAX_BUCKETS`].
pub fn sketch_bytes() -> usize {
    size_of::<Generations>() + Sketch::MAX_BYTES
}

/// The sketches of a digest over `window`: a whole capture's takes all the
/// buckets, a window's two generations half each.
fn new_sketch(window: Window) -> Sketch {
    match window {
        Window::Unbounded => Sketch::with_max_buckets(MAX_BUCKETS),
        Window::Seconds(_) => Sketch::with_max_buckets(MAX_BUCKETS / 2),
    }
}

/// Upper bounds (µs) of [`HandshakeTally`]'s buckets, above which one more
/// bucket counts the rest: from a same-rack round trip to a SYN
/// retransmitted once (1 s, then 3 s).
pub const TALLY_BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// Every handshake time a leg measured since its flow began, in fixed
/// buckets: unlike a digest's samples, which age out of the RTT window, it
/// only grows, as a Prometheus histogram must. A digest keeps one (boxed:
/// only the client leg's is filled) beside its samples, so that snapshots
/// share it with the digest instead of copying it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeTally {
    /// Handshakes per bucket: `counts[i]` those at most `TALLY_BOUNDS_US[i]`
    /// (and above the bound before), the last those above every bound.
    pub counts: [u32; TALLY_BOUNDS_US.len() + 1],
    /// Sum of the handshake times, µs.
    pub sum_us: u64,
}

impl HandshakeTally {
    pub fn observe(&mut self, us: u64) {
        let bucket = TALLY_BOUNDS_US.partition_point(|&le| le < us);
        self.counts[bucket] = self.counts[bucket].saturating_add(1);
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// What `self` (the same leg, later) tallied since `before`.
    pub fn since(&self, before: &HandshakeTally) -> HandshakeTally {
        HandshakeTally {
            counts: std::array::from_fn(|i| self.counts[i].saturating_sub(before.counts[i])),
            sum_us: self.sum_us.saturating_sub(before.sum_us),
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|&n| u64::from(n)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }
}

/// p50/p90/p99 in microseconds. `u32`, as the samples are: a leg is
/// clamped at [`MAX_TRACKED_US`], and every flow of a snapshot keeps two of
/// these (half the size in `u32`: 32 bytes a flow less).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percentiles {
    pub p50: u32,
    pub p90: u32,
    pub p99: u32,
}

/// The RTT window: how long a handshake sample counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Window {
    /// Every sample counts (the default when reading capture files).
    #[default]
    Unbounded,
    /// Samples older than this many seconds before the query time are dropped.
    Seconds(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sample {
    at_s: u32,
    us: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Repr {
    Exact(Vec<Sample>),
    Sketch(Box<Generations>),
}

/// Two half-window sketches; `current` covers `generation`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Generations {
    generation: u64,
    current: Sketch,
    previous: Sketch,
}

/// Equal digests hold the same samples (or sketches) and tally: they
/// answer every query alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeDigest {
    repr: Repr,
    /// Every handshake of this leg since the flow began, when tallied.
    tally: Option<Box<HandshakeTally>>,
}

impl Default for HandshakeDigest {
    fn default() -> Self {
        HandshakeDigest {
            repr: Repr::Exact(Vec::new()),
            tally: None,
        }
    }
}

/// What recording a sample did to a digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Sample,
    /// The digest outgrew its exact samples and is now a sketch.
    BecameSketch,
    /// It could not grow (the owner's sketch limit): the sample replaced
    /// the oldest of its exact ones.
    ReplacedOldest,
}

/// A digest's samples that count at some moment, in a form that travels
/// (from an agent to its hub) and merges exactly: the samples themselves,
/// or the sketch's buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DigestExport {
    /// Handshake times in µs.
    Exact(Vec<u32>),
    /// (bucket, count) pairs, as [`Sketch::buckets`] gives them.
    Sketch(Vec<(u16, u32)>),
}

impl HandshakeDigest {
    /// The samples that count at `as_of_ns`.
    pub fn export(&self, as_of_ns: u64, window: Window) -> DigestExport {
        let at_s = whole_secs(as_of_ns);
        match &self.repr {
            Repr::Exact(samples) => DigestExport::Exact(
                samples
                    .iter()
                    .filter(|s| in_window(s, at_s, window))
                    .map(|s| s.us)
                    .collect(),
            ),
            Repr::Sketch(gens) => {
                let mut merged = Sketch::default();
                for sketch in gens.live(generation_of(at_s, window)) {
                    merged.merge(sketch);
                }
                DigestExport::Sketch(merged.buckets().collect())
            }
        }
    }

    /// A digest holding exactly what `export` gave: every sample counts
    /// (read it with [`Window::Unbounded`]).
    pub fn import(export: &DigestExport) -> HandshakeDigest {
        match export {
            DigestExport::Exact(samples) if samples.len() <= EXACT_SAMPLES => HandshakeDigest {
                repr: Repr::Exact(samples.iter().map(|&us| Sample { at_s: 0, us }).collect()),
                tally: None,
            },
            DigestExport::Exact(samples) => {
                let mut sketch = Sketch::default();
                for &us in samples {
                    sketch.add(u64::from(us));
                }
                HandshakeDigest::of_sketch(sketch)
            }
            DigestExport::Sketch(buckets) => {
                HandshakeDigest::of_sketch(Sketch::from_buckets(buckets.iter().copied()))
            }
        }
    }

    /// A hub's copy of an agent's leg: [`HandshakeDigest::import`] of
    /// `export` (an empty digest without one), with `tally` as its tally.
    pub fn imported(
        export: Option<&DigestExport>,
        tally: Option<HandshakeTally>,
    ) -> HandshakeDigest {
        export
            .map_or_else(HandshakeDigest::default, HandshakeDigest::import)
            .with_tally(tally.unwrap_or_default())
    }

    /// Whether `self` equals [`HandshakeDigest::imported`]`(export, tally)`.
    /// A hub asks it of its last snapshot's leg for every leg it decodes,
    /// and most are unchanged: for exact samples (all an agent sends but
    /// for its busiest flows) it answers without building that digest.
    pub fn is_import_of(
        &self,
        export: Option<&DigestExport>,
        tally: Option<&HandshakeTally>,
    ) -> bool {
        let tally = tally.filter(|t| !t.is_empty());
        if self.tally.as_deref() != tally {
            return false;
        }
        match (&self.repr, export) {
            (Repr::Exact(samples), None) => samples.is_empty(),
            (Repr::Exact(samples), Some(DigestExport::Exact(us))) if us.len() <= EXACT_SAMPLES => {
                samples.len() == us.len()
                    && samples
                        .iter()
                        .zip(us)
                        .all(|(s, &us)| *s == Sample { at_s: 0, us })
            }
            (Repr::Sketch(_), None) => false,
            (_, Some(export)) => self.repr == HandshakeDigest::import(export).repr,
        }
    }

    fn of_sketch(sketch: Sketch) -> HandshakeDigest {
        HandshakeDigest {
            tally: None,
            repr: Repr::Sketch(Box::new(Generations {
                generation: 0,
                current: sketch,
                previous: new_sketch(Window::Unbounded),
            })),
        }
    }

    /// Records one handshake time measured at `at_ns` (capture time). A
    /// digest full of exact samples becomes a sketch if `may_grow`.
    pub fn record(&mut self, at_ns: u64, us: u64, window: Window, may_grow: bool) -> Recorded {
        let us = us.min(MAX_TRACKED_US);
        let at_s = whole_secs(at_ns);
        match &mut self.repr {
            Repr::Exact(samples) => {
                if let Window::Seconds(w) = window {
                    samples.retain(|s| at_s.saturating_sub(s.at_s) <= w);
                }
                let sample = Sample {
                    at_s,
                    us: us as u32,
                };
                if samples.len() < EXACT_SAMPLES {
                    if samples.len() == samples.capacity() {
                        // Doubling from one sample rather than `Vec`'s
                        // four: most flows see a handshake or two, and
                        // every flow holds a digest per leg.
                        samples.reserve_exact(samples.len().max(1));
                    }
                    samples.push(sample);
                    return Recorded::Sample;
                }
                if !may_grow {
                    let oldest = (0..samples.len())
                        .min_by_key(|&i| samples[i].at_s)
                        .expect("the digest is full");
                    samples[oldest] = sample;
                    return Recorded::ReplacedOldest;
                }
                let mut gens = Generations {
                    generation: generation_of(at_s, window),
                    current: new_sketch(window),
                    previous: new_sketch(window),
                };
                for s in samples.iter() {
                    gens.record(generation_of(s.at_s, window), u64::from(s.us));
                }
                gens.record(generation_of(at_s, window), us);
                self.repr = Repr::Sketch(Box::new(gens));
                Recorded::BecameSketch
            }
            Repr::Sketch(gens) => {
                gens.record(generation_of(at_s, window), us);
                Recorded::Sample
            }
        }
    }

    /// Whether the digest is in sketch form (the larger one).
    pub fn is_sketch(&self) -> bool {
        matches!(self.repr, Repr::Sketch(_))
    }

    /// Number of samples that count at `as_of_ns`.
    pub fn count(&self, as_of_ns: u64, window: Window) -> u64 {
        let at_s = whole_secs(as_of_ns);
        match &self.repr {
            Repr::Exact(samples) => samples
                .iter()
                .filter(|s| in_window(s, at_s, window))
                .count() as u64,
            Repr::Sketch(gens) => gens
                .live(generation_of(at_s, window))
                .map(Sketch::count)
                .sum(),
        }
    }

    /// Percentiles of the samples that count at `as_of_ns`, if there are any.
    pub fn percentiles(&self, as_of_ns: u64, window: Window) -> Option<Percentiles> {
        let at_s = whole_secs(as_of_ns);
        match &self.repr {
            Repr::Exact(samples) => {
                let mut live = [0u32; EXACT_SAMPLES];
                let mut n = 0;
                for s in samples.iter().filter(|s| in_window(s, at_s, window)) {
                    live[n] = s.us;
                    n += 1;
                }
                exact_percentiles(&mut live[..n])
            }
            Repr::Sketch(gens) => {
                let mut live = gens.live(generation_of(at_s, window));
                let first = live.next()?;
                match live.next() {
                    None => sketch_percentiles(first),
                    Some(second) => {
                        let mut merged = first.clone();
                        merged.merge(second);
                        sketch_percentiles(&merged)
                    }
                }
            }
        }
    }

    /// Adds the samples that count at `as_of_ns` into `into` (which counts
    /// everything it is given): how aggregation merges flows' handshakes
    /// without ever averaging percentiles.
    pub fn merge_into(&self, into: &mut HandshakeDigest, as_of_ns: u64, window: Window) {
        let at_s = whole_secs(as_of_ns);
        match &self.repr {
            Repr::Exact(samples) => {
                for s in samples.iter().filter(|s| in_window(s, at_s, window)) {
                    into.record(as_of_ns, u64::from(s.us), Window::Unbounded, true);
                }
            }
            Repr::Sketch(gens) => {
                let target = into.force_sketch();
                for sketch in gens.live(generation_of(at_s, window)) {
                    target.current.merge(sketch);
                }
            }
        }
    }

    /// Drops samples that no longer count; returns true when none is left, so
    /// the owner can free the digest.
    pub fn age(&mut self, now_ns: u64, window: Window) -> bool {
        let Window::Seconds(_) = window else {
            return self.is_empty();
        };
        let at_s = whole_secs(now_ns);
        match &mut self.repr {
            Repr::Exact(samples) => samples.retain(|s| in_window(s, at_s, window)),
            Repr::Sketch(gens) => {
                gens.rotate_to(generation_of(at_s, window));
                if gens.current.is_empty() && gens.previous.is_empty() {
                    self.repr = Repr::Exact(Vec::new());
                }
            }
        }
        self.is_empty()
    }

    /// Counts a handshake time in the leg's tally (which
    /// [`HandshakeDigest::record`] does not: only the client leg is tallied).
    pub fn tally(&mut self, us: u64) {
        self.tally.get_or_insert_default().observe(us);
    }

    /// Every handshake tallied since the flow began.
    pub fn tallied(&self) -> HandshakeTally {
        self.tally.as_deref().copied().unwrap_or_default()
    }

    /// The digest with `tally` as its tally (a hub's copy of an agent's).
    pub fn with_tally(mut self, tally: HandshakeTally) -> HandshakeDigest {
        self.tally = (!tally.is_empty()).then(|| Box::new(tally));
        self
    }

    pub fn is_empty(&self) -> bool {
        match &self.repr {
            Repr::Exact(samples) => samples.is_empty(),
            Repr::Sketch(gens) => gens.current.is_empty() && gens.previous.is_empty(),
        }
    }

    /// Heap bytes held, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        let tally = self
            .tally
            .as_ref()
            .map_or(0, |_| size_of::<HandshakeTally>());
        tally
            + match &self.repr {
                Repr::Exact(samples) => samples.capacity() * size_of::<Sample>(),
                Repr::Sketch(gens) => {
                    size_of::<Generations>()
                        + gens.current.heap_bytes()
                        + gens.previous.heap_bytes()
                }
            }
    }

    fn force_sketch(&mut self) -> &mut Generations {
        if let Repr::Exact(samples) = &self.repr {
            // A merge target counts everything it is given: no window.
            let mut gens = Generations {
                generation: 0,
                current: new_sketch(Window::Unbounded),
                previous: new_sketch(Window::Unbounded),
            };
            for s in samples {
                gens.current.add(u64::from(s.us));
            }
            self.repr = Repr::Sketch(Box::new(gens));
        }
        match &mut self.repr {
            Repr::Sketch(gens) => gens,
            Repr::Exact(_) => unreachable!("converted above"),
        }
    }
}

impl Generations {
    fn record(&mut self, generation: u64, us: u64) {
        if generation > self.generation {
            self.rotate_to(generation);
        }
        if generation == self.generation {
            self.current.add(us);
        } else if generation + 1 == self.generation {
            self.previous.add(us);
        }
        // Older than the window (a late, out-of-order packet): not counted.
    }

    fn rotate_to(&mut self, generation: u64) {
        let max_buckets = self.current.max_buckets();
        let empty = || Sketch::with_max_buckets(max_buckets);
        if generation == self.generation + 1 {
            self.previous = std::mem::replace(&mut self.current, empty());
        } else if generation > self.generation + 1 {
            self.current = empty();
            self.previous = empty();
        } else {
            return;
        }
        self.generation = generation;
    }

    /// The generations that still count at generation `at`.
    fn live(&self, at: u64) -> impl Iterator<Item = &Sketch> {
        let current =
            (self.generation + 1 >= at && !self.current.is_empty()).then_some(&self.current);
        let previous =
            (self.generation >= at && !self.previous.is_empty()).then_some(&self.previous);
        current.into_iter().chain(previous)
    }
}

fn generation_of(at_s: u32, window: Window) -> u64 {
    match window {
        Window::Unbounded => 0,
        Window::Seconds(w) => u64::from(at_s) / u64::from((w / 2).max(1)),
    }
}

fn in_window(s: &Sample, at_s: u32, window: Window) -> bool {
    match window {
        Window::Unbounded => true,
        Window::Seconds(w) => at_s.saturating_sub(s.at_s) <= w,
    }
}

/// Nearest-rank percentiles, the rule the sketch uses, so that exact and
/// sketch digests agree.
fn exact_percentiles(values: &mut [u32]) -> Option<Percentiles> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = |q: f64| {
        let n = values.len();
        let idx = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        values[idx]
    };
    Some(Percentiles {
        p50: rank(0.50),
        p90: rank(0.90),
        p99: rank(0.99),
    })
}

fn sketch_percentiles(s: &Sketch) -> Option<Percentiles> {
    // A bucket's value is at most about MAX_TRACKED_US, as recorded; a
    // bucket no recorder makes (from a hub's feed) is held to it too.
    let quantile = |q| {
        s.quantile(q)
            .map(|us| u32::try_from(us.min(MAX_TRACKED_US)).unwrap_or(u32::MAX))
    };
    Some(Percentiles {
        p50: quantile(0.50)?,
        p90: quantile(0.90)?,
        p99: quantile(0.99)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leg's exact samples take what they hold, doubling from one: most
    /// flows see a handshake or two (BENCHMARKS.md, Memory).
    #[test]
    fn exact_samples_grow_from_one() {
        let mut d = HandshakeDigest::default();
        let mut capacities = Vec::new();
        for i in 0..EXACT_SAMPLES as u64 {
            d.record(i * 1_000_000_000, 100 + i, Window::Unbounded, true);
            capacities.push(d.heap_bytes() / size_of::<Sample>());
        }
        assert_eq!(&capacities[..5], [1, 2, 4, 4, 8]);
        assert_eq!(capacities.last(), Some(&EXACT_SAMPLES));
        assert!(!d.is_sketch());
    }

    const S: u64 = crate::time::SECOND;

    #[test]
    fn tally_buckets_are_upper_bounds() {
        let mut t = HandshakeTally::default();
        for us in [0, 100, 101, 1_000_000, 1_000_001, u64::MAX / 2] {
            t.observe(us);
        }
        // 0 and 100 µs in the first bucket (le 100), 101 in the second,
        // 1 s in the last bounded one, the rest above every bound.
        assert_eq!(t.counts[0], 2);
        assert_eq!(t.counts[1], 1);
        assert_eq!(t.counts[TALLY_BOUNDS_US.len() - 1], 1);
        assert_eq!(t.counts[TALLY_BOUNDS_US.len()], 2);
        assert_eq!(t.count(), 6);
        let mut later = t;
        later.observe(300);
        let gained = later.since(&t);
        assert_eq!(
            (gained.count(), gained.counts[2], gained.sum_us),
            (1, 1, 300)
        );
    }

    #[test]
    fn single_sample_is_exact() {
        let mut d = HandshakeDigest::default();
        d.record(100 * S, 16_882, Window::Unbounded, true);
        let p = d.percentiles(200 * S, Window::Unbounded).unwrap();
        assert_eq!(
            p,
            Percentiles {
                p50: 16_882,
                p90: 16_882,
                p99: 16_882
            }
        );
    }

    #[test]
    fn exact_nearest_rank() {
        let mut d = HandshakeDigest::default();
        for us in 1..=10 {
            d.record(S, us * 100, Window::Unbounded, true);
        }
        let p = d.percentiles(S, Window::Unbounded).unwrap();
        assert_eq!(
            p,
            Percentiles {
                p50: 500,
                p90: 900,
                p99: 1000
            }
        );
    }

    #[test]
    fn many_samples_switch_to_a_sketch_within_one_percent() {
        let mut d = HandshakeDigest::default();
        for us in 1..=1000u64 {
            d.record(S, us * 37, Window::Unbounded, true);
        }
        assert_eq!(d.count(S, Window::Unbounded), 1000);
        let p = d.percentiles(S, Window::Unbounded).unwrap();
        for (got, want) in [(p.p50, 500 * 37), (p.p90, 900 * 37), (p.p99, 990 * 37)] {
            let err = (got as f64 - want as f64).abs() / want as f64;
            assert!(err <= 0.01, "got {got} want {want}");
        }
    }

    #[test]
    fn window_drops_old_samples_exact_and_sketch() {
        let w = Window::Seconds(120);
        let mut d = HandshakeDigest::default();
        d.record(1000 * S, 5000, w, true);
        d.record(1100 * S, 7000, w, true);
        assert_eq!(d.count(1100 * S, w), 2);
        assert_eq!(d.percentiles(1200 * S, w).unwrap().p50, 7000);
        assert!(d.percentiles(1300 * S, w).is_none());
        assert!(d.age(1300 * S, w));

        let mut d = HandshakeDigest::default();
        for i in 0..100 {
            d.record(1000 * S + i, 1000, w, true);
        }
        for i in 0..100 {
            d.record(1050 * S + i, 3000, w, true);
        }
        // Generations are 60 s (1000 s is in generation 16, 1050 s in 17); a
        // query covers its own generation and the one before.
        assert_eq!(d.count(1050 * S, w), 200);
        assert_eq!(d.count(1130 * S, w), 100);
        let p = d.percentiles(1130 * S, w).unwrap();
        assert!((2970..=3030).contains(&p.p50), "{p:?}");
        assert!(d.percentiles(1400 * S, w).is_none());
        assert!(d.age(1400 * S, w));
        assert!(matches!(d.repr, Repr::Exact(_)));
    }

    #[test]
    fn merge_adds_samples_never_percentiles() {
        let mut a = HandshakeDigest::default();
        let mut b = HandshakeDigest::default();
        for _ in 0..9 {
            a.record(S, 100, Window::Unbounded, true);
        }
        b.record(S, 10_000, Window::Unbounded, true);
        let mut merged = HandshakeDigest::default();
        a.merge_into(&mut merged, S, Window::Unbounded);
        b.merge_into(&mut merged, S, Window::Unbounded);
        let p = merged.percentiles(S, Window::Unbounded).unwrap();
        assert_eq!((p.p50, p.p90, p.p99), (100, 100, 10_000));

        let mut big = HandshakeDigest::default();
        for _ in 0..100 {
            big.record(S, 200, Window::Unbounded, true);
        }
        big.merge_into(&mut merged, S, Window::Unbounded);
        assert_eq!(merged.count(S, Window::Unbounded), 110);
    }

    #[test]
    fn without_room_to_grow_the_latest_samples_are_kept_exactly() {
        let mut d = HandshakeDigest::default();
        for i in 0..EXACT_SAMPLES as u64 {
            assert_eq!(
                d.record(i * S, 1000, Window::Unbounded, false),
                Recorded::Sample
            );
        }
        // Newer samples replace the oldest, and the digest stays small.
        for i in 0..EXACT_SAMPLES as u64 {
            let r = d.record((100 + i) * S, 5000, Window::Unbounded, false);
            assert_eq!(r, Recorded::ReplacedOldest);
        }
        assert!(!d.is_sketch());
        let p = d.percentiles(200 * S, Window::Unbounded).unwrap();
        assert_eq!((p.p50, p.p99), (5000, 5000));
        assert_eq!(
            d.record(300 * S, 7000, Window::Unbounded, true),
            Recorded::BecameSketch
        );
        assert!(d.is_sketch());
    }

    /// A feed's sketch may name a bucket no recorder makes (the last, whose
    /// value overflows): its percentile is held to what is tracked.
    #[test]
    fn an_imported_bucket_beyond_the_tracked_range_is_held_to_it() {
        let sketch = Sketch::from_buckets([(u16::MAX, 3)]);
        let p = sketch_percentiles(&sketch).unwrap();
        assert_eq!(p.p99, MAX_TRACKED_US as u32);
    }

    #[test]
    fn clamps_huge_values() {
        let mut d = HandshakeDigest::default();
        d.record(S, u64::MAX, Window::Unbounded, true);
        assert_eq!(
            d.percentiles(S, Window::Unbounded).unwrap().p99,
            MAX_TRACKED_US as u32
        );
    }

    mod import {
        use super::*;
        use proptest::prelude::*;

        /// Exports and tallies drawn from few values, so that equal ones
        /// are frequent.
        fn export() -> impl Strategy<Value = Option<DigestExport>> {
            prop_oneof![
                Just(None),
                prop::collection::vec(1u32..4, 0..=EXACT_SAMPLES + 2)
                    .prop_map(|v| Some(DigestExport::Exact(v))),
                prop::collection::vec((200u16..203, 0u32..3), 0..4)
                    .prop_map(|v| Some(DigestExport::Sketch(v))),
            ]
        }

        fn tally() -> impl Strategy<Value = Option<HandshakeTally>> {
            prop::option::of((0u32..2, 0u64..2).prop_map(|(n, sum_us)| HandshakeTally {
                counts: std::array::from_fn(|i| if i == 4 { n } else { 0 }),
                sum_us,
            }))
        }

        proptest! {
            /// `is_import_of` answers what building the digest and comparing
            /// would: for a digest built from the same export and tally, from
            /// others, and for digests that recorded samples themselves.
            #[test]
            fn telling_an_import_equals_building_it(
                export in export(),
                tally in tally(),
                other in (export(), tally()),
                recorded in prop::collection::vec((0u64..3, 1u64..4), 0..=EXACT_SAMPLES + 2),
            ) {
                let mut own = HandshakeDigest::default();
                for &(at_s, us) in &recorded {
                    own.record(at_s * S, us, Window::Unbounded, true);
                }
                // The agent's own digest of those samples: recorded at a
                // time of its own, where an import's samples have none.
                let mut agents = HandshakeDigest::default().with_tally(tally.unwrap_or_default());
                if let Some(DigestExport::Exact(samples)) = &export {
                    for &us in samples {
                        agents.record(5 * S, u64::from(us), Window::Unbounded, true);
                    }
                }
                let built = HandshakeDigest::imported(export.as_ref(), tally);
                let others = [HandshakeDigest::imported(other.0.as_ref(), other.1), own, agents];
                for d in std::iter::once(built.clone()).chain(others) {
                    prop_assert_eq!(d.is_import_of(export.as_ref(), tally.as_ref()), d == built);
                }
            }
        }
    }
}
