//! An inventory file that is re-read when it changes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::inventory::Inventory;

/// What identifies a version of the file: a rewrite changes the modification
/// time or size, a replace-by-rename changes the inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * i128::from(pipeline::time::SECOND)
            + i128::from(m.mtime_nsec()),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: super::inventory::InventoryError,
    },
}

#[derive(Debug)]
pub struct InventoryFile {
    path: PathBuf,
    /// `None` while the file does not exist (yet).
    stamp: Option<Stamp>,
    current: Arc<Inventory>,
    /// Successful reloads after the first load.
    pub reloads: u64,
    /// Failed reloads (the previous mapping stays in force).
    pub reload_errors: u64,
}

impl InventoryFile {
    /// Loads the file. A file that does not exist yet (a sidecar has not
    /// written it) means no names until it appears; an unreadable or invalid
    /// file is an error at start.
    pub fn open(path: &Path) -> Result<InventoryFile, LoadError> {
        let (stamp, inventory) = match load(path) {
            Ok((stamp, inventory)) => (Some(stamp), inventory),
            Err(LoadError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                tracing::warn!(path = %path.display(), "inventory file not found yet; serving IPs only until it appears");
                (None, Inventory::default())
            }
            Err(e) => return Err(e),
        };
        Ok(InventoryFile {
            path: path.to_path_buf(),
            stamp,
            current: Arc::new(inventory),
            reloads: 0,
            reload_errors: 0,
        })
    }

    pub fn current(&self) -> &Arc<Inventory> {
        &self.current
    }

    /// Re-reads the file if it changed. Returns true when a new mapping took
    /// effect; on a bad file the old mapping stays and the error is returned.
    pub fn refresh(&mut self) -> Result<bool, LoadError> {
        let seen = match stamp(&self.path) {
            Ok(s) if Some(s) == self.stamp => return Ok(false),
            // Absent: keep what we have, and say so once when a file that
            // was read goes away (a sidecar that stopped writing, a
            // ConfigMap unmounted): the names may be going stale.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.stamp.take().is_some() {
                    tracing::warn!(
                        path = %self.path.display(),
                        "inventory file removed: the names last read stay until it appears again"
                    );
                }
                return Ok(false);
            }
            Ok(s) => Some(s),
            Err(_) => None,
        };
        match load(&self.path) {
            Ok((stamp, inventory)) => {
                self.stamp = Some(stamp);
                self.current = Arc::new(inventory);
                self.reloads += 1;
                Ok(true)
            }
            Err(e) => {
                // The same broken version is not read again on every call:
                // the stamp it had before it was read is remembered, not
                // the one it has now. A file read half written (rewritten
                // in place, as `kubectl get ... > FILE` does) has a new
                // stamp once the writer is done, even if that was while it
                // was read, and is read again then.
                if let Some(s) = seen {
                    self.stamp = Some(s);
                }
                self.reload_errors += 1;
                Err(e)
            }
        }
    }
}

fn load(path: &Path) -> Result<(Stamp, Inventory), LoadError> {
    let shown = || path.display().to_string();
    let before = stamp(path).map_err(|source| LoadError::Read {
        path: shown(),
        source,
    })?;
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: shown(),
        source,
    })?;
    let inventory = Inventory::from_json(&bytes).map_err(|source| LoadError::Parse {
        path: shown(),
        source,
    })?;
    Ok((before, inventory))
}
