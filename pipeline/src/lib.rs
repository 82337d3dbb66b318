//! flowtap's packet-to-flow pipeline: parse frames ([`wire`]), read capture
//! files ([`capture`]), track connections and aggregate them into L4 flows in
//! sharded tables ([`flow`]) owned by worker threads ([`engine`]), and
//! publish immutable snapshots ([`snapshot`]) that the HTTP API reads.
#![forbid(unsafe_code)]

pub mod capture;
pub mod counters;
pub mod engine;
pub mod flow;
#[doc(hidden)]
pub mod fuzzing;
pub mod memory;
pub mod merger;
pub mod packet;
pub mod snapshot;
pub mod wire;

pub use engine::{AsOf, Backpressure, PacketSource, Pipeline, PipelineConfig, Poll};
pub use merger::{Clock, Merger};
pub use snapshot::Snapshot;
