//! Connections and flows: keys, roles, handshake timing, rates, and the
//! per-shard table that holds them.

mod chunked_vec;
pub mod conn;
pub mod conn_records;
mod conns;
pub mod counters;
mod eviction;
pub(crate) mod fragments;
pub mod handshake;
pub mod health;
pub mod key;
pub mod limits;
pub mod rate;
pub mod record;
mod refusals;
pub mod services;
pub mod side;
pub mod sketch;
mod slab;
pub mod table;
mod wheel;

pub use conn_records::{ConnEnd, ConnRecord, ConnRecordConfig, ConnSent};
pub use counters::TableCounters;
pub use handshake::{HandshakeDigest, HandshakeTally, Percentiles, Window};
pub use health::{Outcomes, SideHealth, TcpHealth};
pub use key::{ConnKey, FlowKey, ShardHasher};
pub use limits::{Limits, NEVER, Share, TableConfig, Timeouts};
pub use rate::Rates;
pub use record::{EndedFlow, FlowEnd, FlowRecord};
pub use side::{Counter, PerSide, Side};
pub use table::FlowTable;
