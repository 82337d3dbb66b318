//! Request bodies' bytes held at once (MCP messages, read whole before
//! they are handled): each takes a little before a byte is read and more
//! as it comes in (taken at its declared length, or the largest a body may
//! be, bodies sent slowly held the bound with nothing sent), and gives it
//! back once handled. Past the bound a request is answered 503:
//! clients that send bodies slowly, or large ones many at a time, cannot
//! hold more memory than the bound (512 connections of 1 MiB bodies each
//! held 550 MB before). One client (an address, an IPv6 /64) holds a
//! quarter of the bound at most (at least one largest body): sixteen slow
//! bodies declared at 1 MiB from one address held the whole bound, and
//! every other client's MCP requests were answered 503.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conns::Client;
use crate::metrics::ServiceStats;

pub struct Bodies {
    bytes: Arc<Semaphore>,
    /// Bytes one client holds at most, and what each holds now.
    per_client: usize,
    held: Arc<Mutex<HashMap<Client, usize>>>,
    stats: Arc<ServiceStats>,
}

/// A body's share of the bound (a byte a permit), given back when dropped.
pub struct BodyShare {
    permit: OwnedSemaphorePermit,
    client: Client,
    held: Arc<Mutex<HashMap<Client, usize>>>,
    stats: Arc<ServiceStats>,
}

impl BodyShare {
    /// Gives `bytes` of the share back.
    fn give_back(&self, bytes: usize) {
        let mut held = self.held.lock().expect("bodies lock");
        if let Some(own) = held.get_mut(&self.client) {
            *own = own.saturating_sub(bytes);
            if *own == 0 {
                held.remove(&self.client);
            }
        }
        self.stats
            .request_body_bytes_held
            .fetch_sub(bytes as u64, Ordering::Relaxed);
    }
}

impl BodyShare {
    /// Bytes it holds.
    pub fn len(&self) -> usize {
        self.permit.num_permits()
    }

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
            self.give_back(excess);
        }
    }
}

impl Drop for BodyShare {
    fn drop(&mut self) {
        self.give_back(self.permit.num_permits());
    }
}

/// Why a body found no room.
#[derive(Debug, PartialEq, Eq)]
pub enum NoRoom {
    /// Every client's bodies held at once are at the bound.
    All,
    /// The client's are at its quarter of it.
    Client,
}

impl Bodies {
    /// `max_bytes` held at once; `largest` is the largest a body may be.
    pub fn new(max_bytes: usize, largest: usize, stats: Arc<ServiceStats>) -> Bodies {
        // A share is taken in one go, at most `u32::MAX` permits: no more
        // bytes than that can be held (and at least one).
        let max_bytes = max_bytes.clamp(1, u32::MAX as usize);
        stats
            .request_body_bytes_capacity
            .store(max_bytes as u64, Ordering::Relaxed);
        Bodies {
            bytes: Arc::new(Semaphore::new(max_bytes)),
            per_client: (max_bytes / 4).max(largest),
            held: Arc::default(),
            stats,
        }
    }

    /// Takes `bytes` of the bound for `client`'s body, or says why not.
    pub fn take(&self, client: Client, bytes: usize) -> Result<BodyShare, NoRoom> {
        Ok(BodyShare {
            permit: self.reserve(client, bytes.max(1))?,
            client,
            held: self.held.clone(),
            stats: self.stats.clone(),
        })
    }

    /// Takes `bytes` more for `share` (its body came in past what it
    /// holds), or says why not.
    pub fn grow(&self, share: &mut BodyShare, bytes: usize) -> Result<(), NoRoom> {
        let more = self.reserve(share.client, bytes)?;
        share.permit.merge(more);
        Ok(())
    }

    fn reserve(&self, client: Client, bytes: usize) -> Result<OwnedSemaphorePermit, NoRoom> {
        // The bound itself is at most `u32::MAX` (a semaphore's count).
        let n = u32::try_from(bytes).unwrap_or(u32::MAX);
        let mut held = self.held.lock().expect("bodies lock");
        let own = held.get(&client).copied().unwrap_or(0);
        if own + n as usize > self.per_client {
            return Err(NoRoom::Client);
        }
        let permit = self
            .bytes
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| NoRoom::All)?;
        held.insert(client, own + n as usize);
        self.stats
            .request_body_bytes_held
            .fetch_add(u64::from(n), Ordering::Relaxed);
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_take_their_bytes_until_the_bound_and_give_them_back() {
        let stats = Arc::new(ServiceStats::default());
        // One client at most a quarter: here the largest body, 60.
        let bodies = Bodies::new(100, 60, stats.clone());
        let held = || stats.request_body_bytes_held.load(Ordering::Relaxed);
        let client = |last: u8| Client::of([198, 18, 0, last].into());
        let a = bodies.take(client(1), 60).unwrap();
        assert_eq!(bodies.take(client(2), 41).err(), Some(NoRoom::All));
        let b = bodies.take(client(2), 40).unwrap();
        assert_eq!(held(), 100);
        drop(a);
        assert_eq!(held(), 40);
        assert!(bodies.take(client(1), 60).is_ok());
        drop(b);
        assert_eq!(held(), 0);
        // A body takes more as it comes in, within the bounds, and keeps
        // what it was once read.
        let mut growing = bodies.take(client(1), 10).unwrap();
        bodies.grow(&mut growing, 50).unwrap();
        assert_eq!((growing.len(), held()), (60, 60));
        assert_eq!(bodies.grow(&mut growing, 1).err(), Some(NoRoom::Client));
        growing.shrink_to(30);
        assert_eq!(held(), 30);
        let other = bodies.take(client(2), 60).unwrap();
        let mut third = bodies.take(client(3), 5).unwrap();
        assert_eq!(bodies.grow(&mut third, 6).err(), Some(NoRoom::All));
        drop((growing, other, third));
        assert_eq!(held(), 0);
        // One client holds its quarter at most, however many bodies: the
        // others still find room.
        let first = bodies.take(client(3), 40).unwrap();
        assert_eq!(bodies.take(client(3), 21).err(), Some(NoRoom::Client));
        let _second = bodies.take(client(3), 20).unwrap();
        assert_eq!(bodies.take(client(3), 1).err(), Some(NoRoom::Client));
        assert!(bodies.take(client(4), 40).is_ok());
        drop(first);
        assert!(bodies.take(client(3), 40).is_ok());
        drop(_second);
        assert!(
            bodies.held.lock().unwrap().is_empty(),
            "no entry left behind"
        );
        assert_eq!(held(), 0);
        assert_eq!(
            stats.request_body_bytes_capacity.load(Ordering::Relaxed),
            100
        );
    }
}
