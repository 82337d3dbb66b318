//! Request bodies' bytes held at once (MCP messages, read whole before
//! they are handled): each takes its declared length, or the largest a
//! body may be when it comes in chunks, before a byte is read, and gives
//! it back once handled. Past the bound a request is answered 503 at once:
//! clients that send bodies slowly, or large ones many at a time, cannot
//! hold more memory than the bound (512 connections of 1 MiB bodies each
//! held 550 MB before).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::ServiceStats;

pub struct Bodies {
    bytes: Arc<Semaphore>,
    stats: Arc<ServiceStats>,
}

/// A body's share of the bound (a byte a permit), given back when dropped.
pub struct BodyShare {
    permit: OwnedSemaphorePermit,
    stats: Arc<ServiceStats>,
}

impl BodyShare {
    /// Keeps `bytes` of the share (a body sent in chunks took the largest
    /// a body may be; once read, it holds what it is), giving the rest
    /// back.
    pub fn shrink_to(&mut self, bytes: usize) {
        let excess = self.permit.num_permits().saturating_sub(bytes.max(1));
        // Within the share: `split` takes no more than it holds.
        if excess > 0
            && let Some(given_back) = self.permit.split(excess)
        {
            drop(given_back);
            self.stats
                .request_body_bytes_held
                .fetch_sub(excess as u64, Ordering::Relaxed);
        }
    }
}

impl Drop for BodyShare {
    fn drop(&mut self) {
        self.stats
            .request_body_bytes_held
            .fetch_sub(self.permit.num_permits() as u64, Ordering::Relaxed);
    }
}

impl Bodies {
    pub fn new(max_bytes: usize, stats: Arc<ServiceStats>) -> Bodies {
        // A share is taken in one go, at most `u32::MAX` permits: no more
        // bytes than that can be held (and at least one).
        let max_bytes = max_bytes.clamp(1, u32::MAX as usize);
        stats
            .request_body_bytes_capacity
            .store(max_bytes as u64, Ordering::Relaxed);
        Bodies {
            bytes: Arc::new(Semaphore::new(max_bytes)),
            stats,
        }
    }

    /// Takes `bytes` of the bound, or None when that many are not free.
    pub fn take(&self, bytes: usize) -> Option<BodyShare> {
        // The bound itself is at most `u32::MAX` (a semaphore's count).
        let n = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
        let permit = self.bytes.clone().try_acquire_many_owned(n).ok()?;
        self.stats
            .request_body_bytes_held
            .fetch_add(u64::from(n), Ordering::Relaxed);
        Some(BodyShare {
            permit,
            stats: self.stats.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_take_their_bytes_until_the_bound_and_give_them_back() {
        let stats = Arc::new(ServiceStats::default());
        let bodies = Bodies::new(100, stats.clone());
        let held = || stats.request_body_bytes_held.load(Ordering::Relaxed);
        let a = bodies.take(60).unwrap();
        assert!(bodies.take(41).is_none());
        let b = bodies.take(40).unwrap();
        assert_eq!(held(), 100);
        drop(a);
        assert_eq!(held(), 40);
        assert!(bodies.take(60).is_some());
        drop(b);
        assert_eq!(held(), 0);
        // A body sent in chunks takes the most, and keeps what it was.
        let mut chunked = bodies.take(100).unwrap();
        assert!(bodies.take(1).is_none());
        chunked.shrink_to(30);
        assert_eq!(held(), 30);
        assert!(bodies.take(70).is_some());
        drop(chunked);
        assert_eq!(held(), 0);
        assert_eq!(
            stats.request_body_bytes_capacity.load(Ordering::Relaxed),
            100
        );
    }
}
