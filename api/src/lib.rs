//! flowtap's HTTP side: the Kubeshark-compatible MCP L4 endpoints
//! (`/mcp/flows`, `/mcp/flows/summary`) answered from prepared snapshot
//! views, with Kubernetes enrichment from an inventory file, and a Model
//! Context Protocol server (`/mcp`) offering the same data as tools.
#![forbid(unsafe_code)]

pub mod access;
pub mod cluster;
pub mod demand;
pub mod feed;
pub mod mcp;
pub mod metrics;
pub mod pairs;
pub mod publish;
pub mod rest;
pub mod server;
pub mod service_map;
pub mod view;

pub use publish::{Publisher, SharedView};
pub use rest::{ApiResponse, respond};
pub use view::View;
