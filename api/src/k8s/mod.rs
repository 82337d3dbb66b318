//! Kubernetes enrichment: which pod, service, namespace, node and container
//! an IP address belongs to, from an inventory file.

pub mod inventory;
pub mod objects;
pub mod reload;

pub use inventory::{ContainerRef, Identity, IdentityKind, Inventory, ServiceRef};
pub use reload::InventoryFile;
