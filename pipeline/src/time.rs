//! Time in the pipeline: every timestamp is nanoseconds since the Unix
//! epoch in a `u64` (fields named `*_ns`), every duration nanoseconds too.
//! Conversions from and to seconds live here, once, and saturate instead of
//! overflowing (a timeout of `u64::MAX` seconds means "never").
//!
//! Packet timestamps stay plain `u64`s: they are in every hot structure, and
//! the `_ns` suffix plus these helpers keep units from mixing.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One second in nanoseconds.
pub const SECOND: u64 = 1_000_000_000;
/// One millisecond in nanoseconds.
pub const MILLISECOND: u64 = 1_000_000;
/// One microsecond in nanoseconds.
pub const MICROSECOND: u64 = 1_000;

/// Whole seconds as nanoseconds, saturating.
pub const fn from_secs(s: u64) -> u64 {
    s.saturating_mul(SECOND)
}

/// Seconds (possibly fractional) as nanoseconds: `None` for a negative or
/// not-a-number value; infinity and anything too large saturate.
pub fn from_secs_f64(s: f64) -> Option<u64> {
    if s.is_nan() || s < 0.0 {
        return None;
    }
    let ns = s * SECOND as f64;
    Some(if ns >= u64::MAX as f64 {
        u64::MAX
    } else {
        ns as u64
    })
}

/// The whole seconds of a timestamp, as the handshake digests keep them
/// (a `u32` lasts until 2106).
pub const fn whole_secs(ns: u64) -> u32 {
    let s = ns / SECOND;
    if s > u32::MAX as u64 {
        u32::MAX
    } else {
        s as u32
    }
}

/// A timestamp in units of 1024 ns, modulo 2^32 (73 minutes): where a
/// connection's state keeps times in four bytes, to compare times less
/// than that apart.
pub const fn ticks(ns: u64) -> u32 {
    (ns >> 10) as u32
}

/// Nanoseconds as seconds, for display and rates.
pub fn as_secs_f64(ns: u64) -> f64 {
    ns as f64 / SECOND as f64
}

/// Nanoseconds rounded to the nearest microsecond.
pub const fn round_to_micros(ns: u64) -> u64 {
    ns.saturating_add(MICROSECOND / 2) / MICROSECOND
}

/// A duration in nanoseconds, saturating (585 years and more).
pub fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The wall clock, in nanoseconds since the Unix epoch.
pub fn wall_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, duration_ns)
}

/// The clock a snapshot is taken at: what "now" is for rates, windows and
/// expiry. It is always the clock the packets were stamped with, so that a
/// step of the wall clock (NTP, a VM resumed) changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The newest capture timestamp seen (capture files: time is the file's).
    Capture,
    /// The clock live packets are stamped with (see [`LiveClock`]).
    Live(LiveClock),
}

impl Clock {
    /// Now, on this clock; `capture_ns` is the newest capture timestamp.
    pub fn now_ns(self, capture_ns: u64) -> u64 {
        match self {
            Clock::Capture => capture_ns,
            Clock::Live(live) => live.now_ns(),
        }
    }
}

/// Live time: the kernel's monotonic clock (what XDP stamps packets with,
/// and what [`Instant`] reads), shifted once, at start, to the wall clock's
/// epoch. Unlike the wall clock it never steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveClock {
    origin: Instant,
    origin_ns: u64,
}

impl LiveClock {
    /// A clock that reads `origin_ns` now.
    pub fn starting_at(origin_ns: u64) -> LiveClock {
        LiveClock {
            origin: Instant::now(),
            origin_ns,
        }
    }

    pub fn now_ns(self) -> u64 {
        let elapsed = duration_ns(self.origin.elapsed());
        self.origin_ns.saturating_add(elapsed)
    }
}

/// A log line said at most once every so often while what it reports goes
/// on, the first time at once; its callers count what happened between
/// two lines and say the count (late snapshots, failed accepts, a
/// collector's losses), so a condition that lasts is heard of without a
/// flood of lines.
#[derive(Clone, Copy, Debug)]
pub struct AtMostEvery {
    every: Duration,
    said: Option<Instant>,
}

impl AtMostEvery {
    pub const fn new(every: Duration) -> AtMostEvery {
        AtMostEvery { every, said: None }
    }

    /// Whether the line is to be said now; if it is, the wait starts again.
    pub fn due(&mut self) -> bool {
        if self.said.is_some_and(|t| t.elapsed() < self.every) {
            return false;
        }
        self.said = Some(Instant::now());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_saturate() {
        assert_eq!(from_secs(3), 3 * SECOND);
        assert_eq!(from_secs(u64::MAX), u64::MAX);
        assert_eq!(from_secs_f64(0.25), Some(SECOND / 4));
        assert_eq!(from_secs_f64(f64::INFINITY), Some(u64::MAX));
        assert_eq!(from_secs_f64(1e30), Some(u64::MAX));
        assert_eq!(from_secs_f64(-1.0), None);
        assert_eq!(from_secs_f64(f64::NAN), None);
        assert_eq!(whole_secs(5 * SECOND + 1), 5);
        assert_eq!(whole_secs(u64::MAX), u32::MAX);
        assert_eq!(round_to_micros(1_499), 1);
        assert_eq!(round_to_micros(1_500), 2);
        assert_eq!(Clock::Capture.now_ns(42), 42);
        let live = LiveClock::starting_at(1_000 * SECOND);
        let now = Clock::Live(live).now_ns(42);
        assert!((1_000 * SECOND..1_001 * SECOND).contains(&now), "{now}");
    }

    #[test]
    fn a_line_is_said_at_once_then_not_again_within_its_interval() {
        let mut minute = AtMostEvery::new(Duration::from_secs(60));
        assert!(minute.due());
        assert!(!minute.due() && !minute.due());
        let mut always = AtMostEvery::new(Duration::ZERO);
        assert!(always.due() && always.due());
    }
}
