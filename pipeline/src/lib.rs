//! flowtap's packet-to-flow pipeline. A packet's path: a [`source`] (a
//! capture file read by [`capture`], or a live socket) hands frames to a
//! worker ([`engine`]) that parses them ([`ingest`], with [`wire`]) and
//! counts them into its shard of the flow tables ([`flow`]); the [`merger`] gathers every shard's
//! flows into an immutable [`snapshot`] that the API reads.
//!
//! No `unsafe` but in [`prefetch`] (a cache hint).
#![deny(unsafe_code)]

pub mod capture;
pub mod engine;
pub mod flow;
pub mod follow;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub mod memory;
pub mod merger;
pub mod packet;
// The crate's one `unsafe`: a hint to the cache, see the module.
#[allow(unsafe_code)]
pub mod prefetch;
pub mod privileges;
pub mod snapshot;
pub mod source;
pub mod time;
pub mod wire;

pub use engine::{Backpressure, Pipeline, PipelineConfig};
pub use merger::Merger;
pub use snapshot::Snapshot;
pub use source::{Frame, PacketSource, Poll, SourceWaker};
pub use time::Clock;
