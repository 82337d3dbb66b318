//! A small, mergeable quantile sketch for handshake times: logarithmic
//! buckets as in DDSketch, so that every quantile it returns is within 1%
//! of the true one, kept sparse (only buckets that hold a sample), so that
//! it stays well under a kilobyte however many samples it counts.
//!
//! Bucket `k` holds the values in (γ^(k-1), γ^k] µs with γ = 1.0202, and
//! answers with 2γ^k/(γ+1): off by at most (γ-1)/(γ+1) = 1% of the value.
//! Values from 1 µs to a minute need about 900 buckets; a flow's handshakes
//! cluster around its round trip, with a few far outliers (retransmitted
//! SYNs), and fill a few dozen to a hundred. Past its bucket limit the
//! lowest buckets merge into the next (DDSketch's collapse): the high
//! quantiles, the ones that tell of trouble, stay exact to 1%, and the
//! median does while the half of the samples above it fall in fewer
//! buckets than the limit (a spread of 5x at 80 buckets, 24x at 160).
//!
//! Two sketches merge by adding counts bucket by bucket: a merged quantile
//! is as precise as a single sketch's, never an average of quantiles.

/// γ: the ratio between bucket bounds, for a relative error of 1%.
const GAMMA: f64 = 1.020_202_020_2;
/// Buckets a sketch keeps at most, 6 bytes each: one sketch (a digest over
/// a whole capture) or two (a windowed digest's generations, with half as
/// many each) stay under a kilobyte.
pub const MAX_BUCKETS: u16 = 160;

/// Counts per bucket, sorted by bucket. Bucket 0 counts zeros.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sketch {
    /// One allocation of 6-byte cells: a sketch lives in every busy flow's
    /// digest (two in a windowed one), where a second vector's 24 bytes and
    /// a `(u16, u32)`'s 2 bytes of padding are a tenth of the flow.
    cells: Vec<Cell>,
    max_buckets: u16,
}

/// A bucket and its count, without padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cell {
    bucket: [u8; 2],
    count: [u8; 4],
}

impl Cell {
    fn new(bucket: u16, count: u32) -> Cell {
        Cell {
            bucket: bucket.to_le_bytes(),
            count: count.to_le_bytes(),
        }
    }

    fn bucket(&self) -> u16 {
        u16::from_le_bytes(self.bucket)
    }

    fn count(&self) -> u32 {
        u32::from_le_bytes(self.count)
    }

    fn add(&mut self, n: u32) {
        self.count = self.count().saturating_add(n).to_le_bytes();
    }
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::with_max_buckets(MAX_BUCKETS)
    }
}

fn bucket_of(us: u64) -> u16 {
    if us == 0 {
        return 0;
    }
    // ceil(log_γ(us)) + 1, so that 1 µs lands in bucket 1.
    let k = ((us as f64).ln() / GAMMA.ln()).ceil() as i64 + 1;
    k.clamp(1, i64::from(u16::MAX)) as u16
}

fn value_of(bucket: u16) -> u64 {
    if bucket == 0 {
        return 0;
    }
    let upper = GAMMA.powi(i32::from(bucket) - 1);
    (2.0 * upper / (GAMMA + 1.0)).round().max(1.0) as u64
}

impl Sketch {
    /// Bytes held at most, on the heap (for memory accounting).
    pub const MAX_BYTES: usize = MAX_BUCKETS as usize * size_of::<Cell>();

    pub fn with_max_buckets(max_buckets: u16) -> Sketch {
        Sketch {
            cells: Vec::new(),
            max_buckets: max_buckets.max(2),
        }
    }

    pub fn add(&mut self, us: u64) {
        self.add_to_bucket(bucket_of(us), 1);
    }

    fn add_to_bucket(&mut self, bucket: u16, n: u32) {
        let full = self.cells.len() >= usize::from(self.max_buckets);
        match self.cells.binary_search_by_key(&bucket, Cell::bucket) {
            Ok(i) => self.cells[i].add(n),
            // Below every bucket of a full sketch: into the lowest.
            Err(0) if full => self.cells[0].add(n),
            Err(mut i) => {
                if full {
                    // The lowest bucket merges into the next one up.
                    let low = self.cells.remove(0);
                    self.cells[0].add(low.count());
                    i -= 1;
                }
                // Exact growth: a sketch stays as small as its buckets.
                self.cells.reserve_exact(1);
                self.cells.insert(i, Cell::new(bucket, n));
            }
        }
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Sketch) {
        for (b, n) in other.buckets() {
            self.add_to_bucket(b, n);
        }
    }

    pub fn max_buckets(&self) -> u16 {
        self.max_buckets
    }

    pub fn count(&self) -> u64 {
        self.cells.iter().map(|c| u64::from(c.count())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The nearest-rank quantile `q` (0 < q <= 1), to within 1%.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (b, c) in self.buckets() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(value_of(b));
            }
        }
        self.cells.last().map(|c| value_of(c.bucket()))
    }

    /// (bucket, count) pairs, ascending: the sketch's whole content (for
    /// sending to a hub).
    pub fn buckets(&self) -> impl Iterator<Item = (u16, u32)> + '_ {
        self.cells.iter().map(|c| (c.bucket(), c.count()))
    }

    /// A sketch from (bucket, count) pairs as [`Sketch::buckets`] gives them.
    pub fn from_buckets(pairs: impl IntoIterator<Item = (u16, u32)>) -> Sketch {
        let mut s = Sketch::default();
        for (b, n) in pairs {
            s.add_to_bucket(b, n);
        }
        s
    }

    pub fn heap_bytes(&self) -> usize {
        self.cells.capacity() * size_of::<Cell>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(values: &mut [u64], q: f64) -> u64 {
        values.sort_unstable();
        let n = values.len();
        values[((q * n as f64).ceil() as usize).clamp(1, n) - 1]
    }

    /// A normal deviate (Box-Muller), for log-normal handshake times.
    fn normal(rng: &mut fastrand::Rng) -> f64 {
        let (u, v) = (rng.f64().max(1e-12), rng.f64());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Handshake times as flows have them: log-normal around a median (a
    /// LAN, a WAN path), and a LAN path with SYNs retransmitted after 1 s
    /// and 3 s.
    #[test]
    fn percentiles_within_one_percent_in_under_a_kilobyte() {
        let mut rng = fastrand::Rng::with_seed(7);
        let lognormal = |rng: &mut fastrand::Rng, median: f64, sigma: f64| {
            (median * (sigma * normal(rng)).exp()) as u64
        };
        type Draw = Box<dyn Fn(&mut fastrand::Rng) -> u64>;
        let cases: [(&str, Draw); 4] = [
            ("LAN", Box::new(move |r| lognormal(r, 250.0, 0.3))),
            ("WAN", Box::new(move |r| lognormal(r, 40_000.0, 0.5))),
            ("cross-zone", Box::new(move |r| lognormal(r, 1_500.0, 0.4))),
            (
                "retransmitted SYNs",
                Box::new(move |r| match r.u32(..100) {
                    0..4 => 1_000_000 + lognormal(r, 250.0, 0.3),
                    4..5 => 3_000_000 + lognormal(r, 250.0, 0.3),
                    _ => lognormal(r, 250.0, 0.3),
                }),
            ),
        ];
        // A whole capture's digest (one sketch), and a window's generation
        // (half the buckets, a minute of handshakes).
        for (max_buckets, samples) in [(MAX_BUCKETS, 50_000), (MAX_BUCKETS / 2, 3_000)] {
            for (name, draw) in &cases {
                let mut values: Vec<u64> = (0..samples).map(|_| draw(&mut rng)).collect();
                let mut s = Sketch::with_max_buckets(max_buckets);
                values.iter().for_each(|&v| s.add(v));
                for q in [0.5, 0.9, 0.99] {
                    let want = exact(&mut values, q) as f64;
                    let got = s.quantile(q).unwrap() as f64;
                    assert!(
                        (got - want).abs() <= want * 0.01 + 0.5,
                        "{name}, {samples} samples in {max_buckets} buckets, q {q}: {got} vs {want}"
                    );
                }
                assert!(
                    s.heap_bytes() <= usize::from(max_buckets) * 6,
                    "{}",
                    s.heap_bytes()
                );
            }
        }
    }

    /// A sketch is one vector of 6-byte cells and its limit: two of them
    /// sit in each busy flow's digest (BENCHMARKS.md, Memory).
    #[test]
    fn a_sketch_is_one_vector_of_unpadded_cells() {
        assert_eq!(size_of::<Cell>(), 6);
        assert!(size_of::<Sketch>() <= 32);
        let mut s = Sketch::default();
        (1..=40u64).for_each(|v| s.add(v * 1000));
        assert_eq!(s.heap_bytes(), s.cells.len() * 6);
        assert_eq!(Sketch::MAX_BYTES, usize::from(MAX_BUCKETS) * 6);
    }

    #[test]
    fn merging_is_adding_samples() {
        let mut a = Sketch::default();
        let mut b = Sketch::default();
        (0..900).for_each(|_| a.add(100));
        (0..100).for_each(|_| b.add(10_000));
        let mut both = a.clone();
        both.merge(&b);
        assert_eq!(both.count(), 1000);
        assert_eq!(both.quantile(0.5), a.quantile(0.5));
        assert_eq!(both.quantile(0.99), b.quantile(0.99));
        assert_eq!(Sketch::from_buckets(both.buckets()), both);
    }

    #[test]
    fn past_its_buckets_the_low_end_merges_and_the_top_stays_exact() {
        let mut s = Sketch::default();
        for v in 1..=100_000u64 {
            s.add(v);
        }
        assert!(s.cells.len() <= usize::from(MAX_BUCKETS));
        let p99 = s.quantile(0.99).unwrap() as f64;
        assert!((p99 - 99_000.0).abs() <= 990.5, "{p99}");
        assert_eq!(s.quantile(0.5).map(|v| v > 0), Some(true));
        assert_eq!(bucket_of(0), 0);
        assert_eq!(value_of(0), 0);
        assert_eq!(value_of(bucket_of(1)), 1);
    }
}
