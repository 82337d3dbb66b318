//! flowtap's HTTP side: the Kubeshark-compatible MCP L4 endpoints
//! (`/mcp/flows`, `/mcp/flows/summary`) answered from prepared snapshot
//! views.
#![forbid(unsafe_code)]

pub mod api;
pub mod view;

pub use api::{ApiResponse, respond};
pub use view::View;
