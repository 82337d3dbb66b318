//! Where packets come from: a [`PacketSource`] (a capture file, an AF_XDP
//! socket) hands [`Frame`]s to the worker that owns it, and live sources
//! count what they received and lost per queue in [`QueueStats`].

mod files;
pub mod live;
mod stamps;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use files::{FileOutcome, FileReport, FileSource, ReadProgress};
pub use stamps::{Restamped, STAMP_JUMP_NS};

use crate::wire::dissect::LinkType;

/// One captured frame, borrowed from the source's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Length on the wire (a file record's original length).
    pub wire_len: u32,
    pub link: LinkType,
    /// The captured bytes (possibly fewer than `wire_len`).
    pub data: &'a [u8],
}

/// What a source did in one poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Poll {
    /// Delivered frames; poll again soon.
    Busy,
    /// Nothing available right now (the source may have waited briefly).
    Idle,
    /// No more frames, ever.
    Finished,
    /// The source broke (its socket reported an error): no more frames, and
    /// the pipeline is failed, so that nobody mistakes silence for no traffic.
    Failed(String),
}

/// Something that yields captured frames to a worker.
pub trait PacketSource: Send + 'static {
    /// Delivers a batch of frames to `on_frame`.
    fn poll<F: FnMut(Frame<'_>)>(&mut self, on_frame: F) -> Poll;

    /// What ends the wait of an idle `poll` early, for a source that waits
    /// in the kernel for frames: its worker then has other work (a snapshot
    /// asked for, packets handed over by another worker, stopping). A
    /// source that never waits long (a file) has none.
    fn waker(&self) -> Option<Arc<dyn SourceWaker>> {
        None
    }

    /// Brings what the source counts of its losses up to date (a live
    /// queue reads the kernel's and the NIC's counters every 250 ms): its
    /// capture has stopped and its rings are read, and the last snapshot
    /// reports them.
    fn settle(&mut self) {}
}

/// Interrupts a source's wait for frames (see [`PacketSource::waker`]).
pub trait SourceWaker: Send + Sync {
    fn wake(&self);
}

/// What one live capture queue received and lost. The same named fields
/// serve as the live counters (`QueueStats<AtomicU64>`, updated by the
/// queue's worker, read by anyone) and as a copy taken of them
/// (`QueueStats<u64>`, for `/metrics` and the end-of-run report).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueueStats<C = u64> {
    /// The interface the queue is one of (flowtap captures several at once
    /// where it is told to: a passive TAP's two ports).
    pub interface: Arc<str>,
    pub queue: u32,
    /// Frames flowtap received on the queue's socket.
    pub frames: C,
    /// Their bytes.
    pub bytes: C,
    /// Frames whose XDP timestamp was missing (user-space time was used).
    pub without_timestamp: C,
    /// The kernel's XDP_STATISTICS for the socket (as last read): frames it
    /// dropped for any reason (no free buffer: the worker too slow, in
    /// copy mode; a frame too large for a buffer).
    pub rx_dropped: C,
    /// Drops because the rx ring was full: none with flowtap's rings, whose
    /// rx ring has a place for every buffer of the UMEM.
    pub rx_ring_full: C,
    /// Times the kernel found no free buffer to fill.
    pub fill_ring_empty: C,
    /// Invalid descriptors, received or sent (a bug if ever non-zero).
    pub invalid: C,
    /// The size of the socket's rings, in frames.
    pub ring_entries: C,
    /// The longest frame one buffer of the socket receives; a longer one
    /// takes several (multi-buffer) or the kernel drops it (`rx_dropped`).
    pub max_frame_bytes: C,
}

impl QueueStats<AtomicU64> {
    pub fn new(
        interface: &str,
        queue: u32,
        ring_entries: u64,
        max_frame_bytes: u64,
    ) -> QueueStats<AtomicU64> {
        QueueStats {
            interface: interface.into(),
            queue,
            ring_entries: AtomicU64::new(ring_entries),
            max_frame_bytes: AtomicU64::new(max_frame_bytes),
            ..QueueStats::default()
        }
    }

    /// A copy of the counters as they are now.
    pub fn sample(&self) -> QueueStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        QueueStats {
            interface: self.interface.clone(),
            queue: self.queue,
            frames: load(&self.frames),
            bytes: load(&self.bytes),
            without_timestamp: load(&self.without_timestamp),
            rx_dropped: load(&self.rx_dropped),
            rx_ring_full: load(&self.rx_ring_full),
            fill_ring_empty: load(&self.fill_ring_empty),
            invalid: load(&self.invalid),
            ring_entries: load(&self.ring_entries),
            max_frame_bytes: load(&self.max_frame_bytes),
        }
    }
}
