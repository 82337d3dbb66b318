//! Connections and flows: keys, roles, handshake timing, rates, and the
//! per-shard table that holds them.

pub mod conn;
pub mod handshake;
pub mod key;
pub mod rate;
pub mod table;

pub use handshake::{HandshakeDigest, Percentiles, Window};
pub use key::{ConnKey, FlowKey, ShardHasher};
pub use table::{Counter, FlowRecord, FlowTable, Limits, TableConfig, TableCounters, Timeouts};
