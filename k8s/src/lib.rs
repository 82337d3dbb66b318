//! Kubernetes names for flowtap: which pod, service, namespace, node and
//! container an IP address belongs to.
//!
//! The names come from a [`Source`]: an inventory file (`kubectl get ... -o
//! json`, re-read when it changes; [`file`]) or, with the `watch` feature,
//! the Kubernetes API itself, followed through watches ([`watch`]). Either
//! way the objects are reduced to the few fields flowtap reads
//! ([`objects`]) and turned into an address map ([`inventory`]).
#![forbid(unsafe_code)]

#[cfg(feature = "watch")]
mod answer_limit;
pub mod file;
pub mod inventory;
pub mod objects;
#[cfg(feature = "watch")]
mod opened;
#[cfg(feature = "watch")]
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

pub use file::InventoryFile;
pub use inventory::{
    ContainerRef, EndpointState, Identity, IdentityKind, Inventory, ServiceEndpoint, ServiceRef,
    Workload, WorkloadKind,
};

/// How long a watch keeps a pod deleted or finished to name its old
/// address (its flows from before a new pod had it, or while none has),
/// unless told otherwise: flowtap's default TCP idle timeout, so that its
/// flows keep their names for as long as they stay in answers (a rolling
/// update, a CronJob's pods).
pub const GONE_PODS_KEPT: std::time::Duration = std::time::Duration::from_secs(300);

/// Where the names come from.
pub enum Source {
    File(InventoryFile),
    #[cfg(feature = "watch")]
    Watch(watch::Watch),
}

impl Source {
    /// The mapping in force.
    pub fn current(&self) -> Arc<Inventory> {
        match self {
            Source::File(f) => f.current().clone(),
            #[cfg(feature = "watch")]
            Source::Watch(w) => w.current(),
        }
    }

    /// Takes in what changed since the last call; true when a new mapping
    /// took effect, an error when the change could not be read (the old
    /// mapping stays in force).
    pub fn refresh(&mut self) -> Result<bool, String> {
        match self {
            Source::File(f) => f.refresh().map_err(|e| e.to_string()),
            #[cfg(feature = "watch")]
            Source::Watch(w) => Ok(w.refresh()),
        }
    }

    /// Whether the mapping follows the API, where it changes with every pod
    /// that comes or goes (a file changes when someone writes it).
    pub fn follows_the_api(&self) -> bool {
        match self {
            Source::File(_) => false,
            #[cfg(feature = "watch")]
            Source::Watch(_) => true,
        }
    }
}

/// The kinds a watch follows, in [`WatchStats::objects`] order.
pub const KINDS: [&str; 4] = ["pod", "service", "endpointslice", "node"];

/// What a watch of the Kubernetes API counts (for `/metrics`; all zero when
/// names come from a file, or from nowhere).
#[derive(Debug, Default)]
pub struct WatchStats {
    /// Objects held now, by kind ([`KINDS`]).
    pub objects: [AtomicU64; 4],
    /// Objects left out because the most objects allowed were held.
    pub dropped: AtomicU64,
    /// Errors the watchers met (each is retried with backoff).
    pub errors: AtomicU64,
    /// Full lists: the first of each kind, and one after every `410 Gone`.
    pub relists: AtomicU64,
    /// Times the address mapping was rebuilt.
    pub rebuilds: AtomicU64,
    /// Every kind has been listed once: names are complete.
    pub synced: AtomicBool,
    /// A kind's watch has failed for a minute without getting through:
    /// names may be stale.
    pub stale: AtomicBool,
    /// A kind has left objects out at the bound since it was last listed:
    /// names are incomplete.
    pub left_out: AtomicBool,
    /// Pods deleted or finished, kept a while to name their old addresses.
    pub gone_pods: AtomicU64,
    /// Answers cut off for a list's page or a watch event larger than
    /// the watch's `max_answer_bytes`.
    pub answers_too_large: AtomicU64,
}
