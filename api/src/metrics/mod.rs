//! What flowtap reports about itself, defined once ([`catalog`]): each
//! metric's name, type, meaning, how its value is read and where the
//! end-of-run report shows it. `GET /metrics` ([`exposition`]), the stderr
//! report ([`report`]) and `flowtap docs metrics` all read that one list,
//! as vector's `internal_events` keep an event's counter and its log line
//! in one type.
//!
//! The values come from a [`Sources`]: the published snapshot's counters,
//! the server's own counters ([`ServiceStats`]), the live capture's queues.

pub mod catalog;
pub mod exposition;
pub mod report;
mod stats;

use pipeline::Snapshot;
use pipeline::source::QueueStats;

pub use catalog::{CATALOG, Kind, Metric, reference_markdown};
pub use exposition::{Exposition, render};
pub use stats::{FixedHistogram, MERGE_BUCKETS, ServiceStats};

/// Everything a metric's value is read from.
pub struct Sources<'a> {
    pub snapshot: &'a Snapshot,
    pub stats: &'a ServiceStats,
    /// The live capture's queues (none when reading files).
    pub queues: &'a [QueueStats],
    pub ready: bool,
    pub version: &'a str,
    pub commit: &'a str,
}
