//! AF_XDP sockets over a UMEM, through xdpilone: an rx socket per queue for
//! capture, and a tx socket for replay. This module holds the unsafe code
//! that touches memory shared with the kernel.
//!
//! Memory layout: one anonymous mapping of `frame_count` frames of
//! `frame_size` bytes per socket. Every frame is either in the fill ring (the
//! kernel's to write), in the rx ring (received, ours to read), or briefly in
//! our hands while a packet is parsed; it goes back to the fill ring right
//! after, so the fill ring stays full.

use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use xdpilone::xdp::{XdpDesc, XdpStatisticsV2};
use xdpilone::{
    DeviceQueue, Errno, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User,
};

pub use pipeline::source::live::FRAME_SIZES;

use crate::sys::{self, Mapping};

/// Bind flag: the socket takes frames in several buffers (`XDP_USE_SG`,
/// Linux 6.6), which xdpilone does not name.
const XDP_USE_SG: u16 = 1 << 4;

/// Descriptor option: more buffers of this frame follow (`XDP_PKT_CONTD`).
const XDP_PKT_CONTD: u32 = 1;

/// The XDP program's timestamp, which it writes in front of each frame it
/// hands to a socket, as the first bytes of the frame's data (see
/// bpf/flowtap.bpf.c): `{u64 ktime_ns, u32 STAMP_MAGIC, u32 !STAMP_MAGIC}`.
pub const STAMP_LEN: u32 = 16;
/// "FTT1", the validity marker of that timestamp.
pub const STAMP_MAGIC: u32 = 0x4654_5431;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// Zero-copy where the driver supports it, else copy.
    Auto,
    Copy,
    ZeroCopy,
}

/// Bytes the kernel keeps free in front of every frame it writes into a UMEM
/// buffer (`XDP_PACKET_HEADROOM`), so a buffer holds a frame of its size
/// less this and the timestamp.
pub const KERNEL_HEADROOM: u32 = 256;

#[derive(Clone, Copy, Debug)]
pub struct XskConfig {
    /// Bytes per UMEM frame, one of [`FRAME_SIZES`]: a buffer receives a
    /// frame of up to [`XskConfig::max_frame_len`] bytes; a longer one takes
    /// several on a multi-buffer socket, else the kernel drops it
    /// (`rx_dropped`).
    pub frame_size: u32,
    /// Frames per socket; also the size of the fill and rx rings.
    pub frame_count: u32,
    pub bind: BindMode,
    /// Bind for frames in several buffers where the kernel can (6.6 on);
    /// false binds for one buffer a frame, as an older kernel does.
    pub multi_buffer: bool,
}

impl XskConfig {
    /// The longest frame a buffer receives in copy mode, where the kernel
    /// copies the stamp with the frame after its headroom (a zero-copy
    /// buffer takes 16 bytes more: the stamp goes in the headroom; the
    /// smaller figure is the one said and sized for).
    pub fn max_frame_len(&self) -> u32 {
        self.frame_size - KERNEL_HEADROOM - STAMP_LEN
    }

    /// Bytes of a socket's UMEM: its frames, locked in memory.
    pub fn umem_len(&self) -> usize {
        self.frame_size as usize * self.frame_count as usize
    }

    /// The smallest of [`FRAME_SIZES`] whose buffer receives a frame of
    /// `len` bytes (the largest if none does).
    pub fn frame_size_for(len: u32) -> u32 {
        FRAME_SIZES
            .into_iter()
            .find(|&size| len + KERNEL_HEADROOM + STAMP_LEN <= size)
            .unwrap_or(FRAME_SIZES[FRAME_SIZES.len() - 1])
    }
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            frame_size: 4096,
            frame_count: 4096,
            bind: BindMode::Auto,
            multi_buffer: true,
        }
    }
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.get_raw())
}

/// A socket's file descriptor, for the XSKMAP.
#[derive(Clone, Copy, Debug)]
pub struct XskFd(RawFd);

impl AsRawFd for XskFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// The parts every AF_XDP socket has. Fields drop in order: rings and
/// sockets close before the UMEM is released, and the mapping goes last.
struct Parts {
    device: DeviceQueue,
    user: User,
    _sock: Socket,
    _umem: Umem,
    area: Mapping,
    frame_size: u32,
    frame_count: u32,
    zero_copy: bool,
    /// Bound with `XDP_USE_SG`: a frame longer than a buffer arrives in
    /// several instead of being dropped.
    multi_buffer: bool,
}

impl Parts {
    /// The kernel's counters for this socket (XDP_STATISTICS).
    fn kernel_stats(&self) -> io::Result<XdpStatisticsV2> {
        self.user.statistics_v2().map_err(errno)
    }

    /// The start of the frame a descriptor's `addr` is in, and whether
    /// `[addr, addr + len)` lies inside the mapping and inside that frame.
    fn locate(&self, addr: u64, len: u32) -> (u64, bool) {
        let frame_size = u64::from(self.frame_size);
        let frame_start = addr - addr % frame_size;
        let end = addr.saturating_add(u64::from(len));
        let inside = end <= self.area.len() as u64 && end <= frame_start + frame_size;
        (frame_start, inside)
    }

    /// The bytes `[addr, addr + len)` of a received buffer, if they lie
    /// inside one frame (the kernel never says otherwise; refuse rather
    /// than read wild memory).
    fn data(&self, addr: u64, len: u32) -> Option<&[u8]> {
        if !self.locate(addr, len).1 {
            return None;
        }
        // SAFETY: the range lies inside the mapping and inside one frame
        // (checked above), which the kernel handed to us with its
        // descriptor and will not touch until it is back in the fill ring:
        // after the caller's callback, which the slice does not outlive.
        Some(unsafe {
            std::slice::from_raw_parts(self.area.base().as_ptr().add(addr as usize), len as usize)
        })
    }

    /// The XDP program's timestamp at the start of a received buffer at
    /// `addr` of `len` bytes, if its marker is there; clears the marker.
    fn take_stamp(&self, addr: u64, len: u32) -> Option<u64> {
        if len < STAMP_LEN || !self.locate(addr, STAMP_LEN).1 {
            return None;
        }
        // SAFETY: [addr, addr + 16) lies inside the mapping and inside the
        // buffer's frame (checked above), which the kernel handed to us
        // with the descriptor and will not touch until it is back in the
        // fill ring.
        unsafe {
            let p = self.area.base().as_ptr().add(addr as usize);
            let ts = p.cast::<u64>().read_unaligned();
            let magic = p.add(8).cast::<u32>().read_unaligned();
            let check = p.add(12).cast::<u32>().read_unaligned();
            if magic != STAMP_MAGIC || check != !STAMP_MAGIC {
                return None;
            }
            // Frames are reused: clear the marker so that a frame the
            // program could not stamp cannot pass for stamped.
            p.add(8).cast::<u32>().write_unaligned(0);
            Some(ts)
        }
    }
}

fn open_parts(
    ifindex: u32,
    queue: u32,
    config: &XskConfig,
    rx: bool,
    zero_copy: bool,
    multi_buffer: bool,
) -> io::Result<Parts> {
    let area = Mapping::anonymous(config.umem_len())?;
    let umem_config = UmemConfig {
        fill_size: config.frame_count,
        complete_size: config.frame_count,
        frame_size: config.frame_size,
        headroom: 0,
        flags: 0,
    };
    // SAFETY: `area` is a page-aligned mapping of exactly this size, and it
    // outlives the Umem: both move into `Parts`, where `area` drops last.
    let umem = unsafe { Umem::new(umem_config, area.as_slice_ptr()) }.map_err(errno)?;
    let mut info = IfInfo::invalid();
    info.from_ifindex(ifindex).map_err(errno)?;
    info.set_queue(queue);
    let sock = Socket::with_shared(&info, &umem).map_err(errno)?;
    let device = umem.fq_cq(&sock).map_err(errno)?;
    let mode = if zero_copy {
        SocketConfig::XDP_BIND_ZEROCOPY
    } else {
        SocketConfig::XDP_BIND_COPY
    };
    let ring = NonZeroU32::new(config.frame_count);
    let socket_config = SocketConfig {
        rx_size: if rx { ring } else { None },
        tx_size: if rx { None } else { ring },
        bind_flags: mode
            | SocketConfig::XDP_BIND_NEED_WAKEUP
            | if multi_buffer { XDP_USE_SG } else { 0 },
    };
    let user = umem.rx_tx(&sock, &socket_config).map_err(errno)?;
    Ok(Parts {
        device,
        user,
        _sock: sock,
        _umem: umem,
        area,
        frame_size: config.frame_size,
        frame_count: config.frame_count,
        zero_copy,
        multi_buffer,
    })
}

/// How long a bind waits for a queue's last socket to let go of it: the
/// kernel detaches a closed socket's buffer pool from its queue in deferred
/// work, so a bind right after a close (a restart, one replay after
/// another) finds the queue busy (`EBUSY`) for a moment.
const BUSY_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// Opens, maps the ring (`map`) and binds, trying zero-copy first in
/// `BindMode::Auto` and falling back to copy mode, and (unless the config
/// rules it out) multi-buffer first in each (a kernel before 6.6, or a
/// zero-copy driver without it, refuses). While the queue is busy, the
/// same combination is tried again for up to [`BUSY_QUEUE_WAIT`]: a busy
/// queue refuses every combination, and settling for the next one once it
/// is free would bind without multi-buffer (or without zero-copy) for no
/// reason (a restart right after a crash did).
fn open_bound<R>(
    ifindex: u32,
    queue: u32,
    config: &XskConfig,
    rx: bool,
    map: impl Fn(&User) -> Result<R, Errno>,
) -> io::Result<(Parts, R)> {
    let attempts: &[bool] = match config.bind {
        BindMode::Auto => &[true, false],
        BindMode::ZeroCopy => &[true],
        BindMode::Copy => &[false],
    };
    let buffers: &[bool] = if config.multi_buffer {
        &[true, false]
    } else {
        &[false]
    };
    let deadline = Instant::now() + BUSY_QUEUE_WAIT;
    let mut last = io::Error::other("no bind attempted");
    for &zero_copy in attempts {
        for &multi_buffer in buffers {
            loop {
                let parts = open_parts(ifindex, queue, config, rx, zero_copy, multi_buffer)?;
                let ring = map(&parts.user).map_err(errno)?;
                match parts.device.bind(&parts.user) {
                    Ok(()) => return Ok((parts, ring)),
                    Err(e) => {
                        last = errno(e);
                        tracing::debug!(queue, zero_copy, multi_buffer, error = %last, "AF_XDP bind failed");
                    }
                }
                if last.kind() != io::ErrorKind::ResourceBusy || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    Err(last)
}

/// A receiving AF_XDP socket on one rx queue.
pub struct RxSocket {
    rx: RingRx,
    parts: Parts,
    /// Frames read and not yet back in the fill ring.
    returning: Vec<u64>,
    pub queue: u32,
}

// SAFETY: an RxSocket exclusively owns its UMEM: the `Umem` value (whose raw
// pointer to the mapping is what keeps xdpilone from declaring it Send), the
// mapping itself, and every ring over it. Nothing outside the socket holds a
// pointer into that memory, so moving the whole socket to another thread
// moves every access with it.
unsafe impl Send for RxSocket {}

// SAFETY: as for RxSocket: the socket owns its UMEM, mapping and rings alone.
unsafe impl Send for TxSocket {}

/// The buffers one frame may take: a 64 KiB frame in 2 KiB buffers.
const MAX_BUFFERS_A_FRAME: u32 = 64;

/// The buffers a transmitted frame may take: in copy mode the kernel puts
/// the first in the socket buffer and each other in a page fragment of it,
/// at most `MAX_SKB_FRAGS` (17 in a default build) of them. 17 in all keeps
/// inside that and holds a 64 KiB frame in 4 KiB buffers.
const MAX_TX_BUFFERS_A_FRAME: usize = 17;

/// A frame's first buffer, while its others are read.
struct Head {
    addr: u64,
    first_len: u32,
    /// Every buffer's length so far.
    len: u32,
    ktime_ns: Option<u64>,
    /// Every buffer so far inside the mapping and one frame.
    valid: bool,
}

/// One received frame, valid until the callback returns.
pub struct RxFrame<'a> {
    /// Its first buffer: the whole frame, or what the first buffer holds of
    /// it (at least [`XskConfig::max_frame_len`] bytes) when it came in
    /// several.
    pub data: &'a [u8],
    /// Its length, every buffer counted.
    pub len: u32,
    /// `bpf_ktime_get_ns()` when the XDP program saw the frame, if its
    /// stamp was in front of it (taken off `data` and `len`).
    pub ktime_ns: Option<u64>,
}

impl RxSocket {
    pub fn open(ifindex: u32, queue: u32, config: &XskConfig) -> io::Result<RxSocket> {
        let (parts, rx) = open_bound(ifindex, queue, config, true, User::map_rx)?;
        let mut socket = RxSocket {
            rx,
            returning: Vec::with_capacity(parts.frame_count as usize),
            parts,
            queue,
        };
        let all: Vec<u64> = (0..socket.parts.frame_count)
            .map(|i| u64::from(i) * u64::from(socket.parts.frame_size))
            .collect();
        socket.returning = all;
        socket.refill();
        Ok(socket)
    }

    pub fn zero_copy(&self) -> bool {
        self.parts.zero_copy
    }

    /// Whether a frame longer than a buffer arrives in several.
    pub fn multi_buffer(&self) -> bool {
        self.parts.multi_buffer
    }

    pub fn fd(&self) -> XskFd {
        XskFd(self.rx.as_raw_fd())
    }

    /// Hands up to about `max` received frames to `on_frame`, then returns
    /// their buffers to the fill ring. Returns how many frames there were.
    pub fn receive(&mut self, max: u32, mut on_frame: impl FnMut(RxFrame<'_>)) -> u32 {
        let parts = &self.parts;
        let mut frames = 0;
        // The first buffer of a frame whose last is yet to be read.
        let mut head: Option<Head> = None;
        let mut deliver = |h: Head| {
            frames += 1;
            // A buffer outside its frame: the kernel never does this.
            if h.valid
                && let Some(data) = parts.data(h.addr, h.first_len)
            {
                on_frame(RxFrame {
                    data,
                    len: h.len,
                    ktime_ns: h.ktime_ns,
                });
            }
        };
        let mut budget = max;
        loop {
            let mut reader = self.rx.receive(budget);
            let mut read = 0;
            while let Some(XdpDesc { addr, len, options }) = reader.read() {
                read += 1;
                let (frame_start, in_frame) = parts.locate(addr, len);
                self.returning.push(frame_start);
                match head.as_mut() {
                    Some(h) => {
                        h.len = h.len.saturating_add(len);
                        h.valid &= in_frame;
                    }
                    None => {
                        // The frame after the stamp in front of it.
                        let ktime_ns = parts.take_stamp(addr, len);
                        let skip = if ktime_ns.is_some() { STAMP_LEN } else { 0 };
                        head = Some(Head {
                            addr: addr + u64::from(skip),
                            first_len: len - skip,
                            len: len - skip,
                            ktime_ns,
                            valid: in_frame,
                        });
                    }
                }
                if options & XDP_PKT_CONTD == 0
                    && let Some(h) = head.take()
                {
                    deliver(h);
                }
            }
            reader.release();
            drop(reader);
            // The kernel publishes a frame's buffers together: the rest of
            // one begun in this batch are in the ring already.
            if head.is_none() || read == 0 {
                break;
            }
            budget = MAX_BUFFERS_A_FRAME;
        }
        // Never left over (see above); if it were, what came is counted.
        if let Some(h) = head.take() {
            deliver(h);
        }
        self.refill();
        frames
    }

    fn refill(&mut self) {
        if self.returning.is_empty() {
            return;
        }
        let mut writer = self.parts.device.fill(self.returning.len() as u32);
        let taken = writer.insert(self.returning.iter().copied());
        writer.commit();
        drop(writer);
        self.returning.drain(..taken as usize);
        if self.parts.device.needs_wakeup() {
            self.parts.device.wake();
        }
    }

    /// Waits until frames arrive, `wake` is signalled, or `timeout` passes.
    pub fn wait(&self, wake: &sys::EventFd, timeout: Duration) -> io::Result<bool> {
        sys::wait_readable(self.rx.as_raw_fd(), wake, timeout)
    }

    /// The socket's pending error, if any (its device went away, say).
    pub fn pending_error(&self) -> io::Result<Option<io::Error>> {
        sys::socket_error(self.rx.as_raw_fd())
    }

    pub fn kernel_stats(&self) -> io::Result<XdpStatisticsV2> {
        self.parts.kernel_stats()
    }
}

/// A transmitting AF_XDP socket on one queue (for replaying captures).
pub struct TxSocket {
    tx: RingTx,
    parts: Parts,
    /// Frames not in the tx ring.
    free: Vec<u64>,
    /// Whether each frame is in the tx ring (handed to the kernel, not yet
    /// completed): a completion is taken back only for such a frame.
    sending: Vec<bool>,
    /// Completions that named no frame in the tx ring, ignored.
    bogus_completions: u64,
}

impl TxSocket {
    pub fn open(ifindex: u32, queue: u32, config: &XskConfig) -> io::Result<TxSocket> {
        let (parts, tx) = open_bound(ifindex, queue, config, false, User::map_tx)?;
        let free = (0..parts.frame_count)
            .map(|i| u64::from(i) * u64::from(parts.frame_size))
            .collect();
        let sending = vec![false; parts.frame_count as usize];
        Ok(TxSocket {
            tx,
            parts,
            free,
            sending,
            bogus_completions: 0,
        })
    }

    /// The longest frame it sends: a buffer's worth, or on a multi-buffer
    /// socket [`MAX_TX_BUFFERS_A_FRAME`] buffers' worth.
    pub fn max_frame(&self) -> usize {
        let buffers = if self.parts.multi_buffer {
            MAX_TX_BUFFERS_A_FRAME
        } else {
            1
        };
        self.parts.frame_size as usize * buffers
    }

    /// Queues `frame` for sending, in as many buffers as it needs (each but
    /// the last marked `XDP_PKT_CONTD`, all queued together or none).
    /// Returns false when not enough buffers or ring slots are free (call
    /// [`TxSocket::kick`] and retry).
    pub fn push(&mut self, frame: &[u8]) -> io::Result<bool> {
        if frame.len() > self.max_frame() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame larger than the socket's buffers",
            ));
        }
        let size = self.parts.frame_size as usize;
        let needed = frame.len().div_ceil(size).max(1);
        if self.free.len() < needed {
            self.reap();
        }
        let Some(first) = self.free.len().checked_sub(needed) else {
            return Ok(false);
        };
        let mut writer = self.tx.transmit(needed as u32);
        if (writer.capacity() as usize) < needed {
            // Dropped uncommitted: the reserved slots go back.
            return Ok(false);
        }
        let buffers = &self.free[first..];
        let pieces = (0..needed).map(|i| &frame[i * size..frame.len().min((i + 1) * size)]);
        for (piece, &addr) in pieces.clone().zip(buffers) {
            // SAFETY: `addr` is the start of a frame in our free list: not in
            // any ring, so neither the kernel nor another descriptor uses it,
            // and the frame is `frame_size` >= `piece.len()` bytes inside the
            // mapping.
            unsafe {
                let dst = self.parts.area.base().as_ptr().add(addr as usize);
                std::ptr::copy_nonoverlapping(piece.as_ptr(), dst, piece.len());
            }
        }
        let descriptors = pieces
            .zip(buffers)
            .enumerate()
            .map(|(i, (piece, &addr))| XdpDesc {
                addr,
                len: piece.len() as u32,
                options: if i + 1 < needed { XDP_PKT_CONTD } else { 0 },
            });
        let queued = writer.insert(descriptors) as usize;
        debug_assert_eq!(queued, needed, "capacity checked above");
        writer.commit();
        drop(writer);
        for &addr in &self.free[first..] {
            self.sending[(addr / u64::from(self.parts.frame_size)) as usize] = true;
        }
        self.free.truncate(first);
        Ok(true)
    }

    /// Asks the kernel to send what is queued and collects finished buffers.
    pub fn kick(&mut self) {
        if self.tx.needs_wakeup() {
            self.tx.wake();
        }
        self.reap();
    }

    /// Frames queued but not yet confirmed sent.
    pub fn in_flight(&self) -> usize {
        self.parts.frame_count as usize - self.free.len()
    }

    /// Completions naming no frame in the tx ring (a kernel's or driver's
    /// bug): ignored, so that no frame is written while the kernel may
    /// still send it, nor any address outside the mapping.
    pub fn bogus_completions(&self) -> u64 {
        self.bogus_completions
    }

    fn reap(&mut self) {
        let frame_size = u64::from(self.parts.frame_size);
        let mut reader = self.parts.device.complete(self.parts.frame_count);
        while let Some(addr) = reader.read() {
            if completed(&mut self.sending, frame_size, addr) {
                self.free.push(addr);
            } else {
                self.bogus_completions += 1;
            }
        }
        reader.release();
    }

    pub fn kernel_stats(&self) -> io::Result<XdpStatisticsV2> {
        self.parts.kernel_stats()
    }
}

/// Takes back the frame at `addr` from the tx ring, if it is a frame's
/// start that is there (`sending`, by frame): `push`'s copy trusts every
/// address on the free list, so a completion naming anything else (outside
/// the mapping, inside a frame, a frame completed already) is refused.
fn completed(sending: &mut [bool], frame_size: u64, addr: u64) -> bool {
    let frame = addr
        .is_multiple_of(frame_size)
        .then(|| sending.get_mut((addr / frame_size) as usize))
        .flatten()
        .filter(|sending| **sending);
    match frame {
        Some(sending) => {
            *sending = false;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_frames_being_sent_are_taken_back() {
        let mut sending = vec![false, true, true];
        assert!(completed(&mut sending, 2048, 2048));
        assert!(!completed(&mut sending, 2048, 2048), "completed twice");
        assert!(!completed(&mut sending, 2048, 0), "never sent");
        assert!(!completed(&mut sending, 2048, 4096 + 100), "inside a frame");
        assert!(!completed(&mut sending, 2048, 3 * 2048), "past the mapping");
        assert!(
            !completed(&mut sending, 2048, u64::MAX - 2047),
            "far past it"
        );
        assert!(completed(&mut sending, 2048, 4096));
        assert_eq!(sending, [false, false, false]);
    }

    #[test]
    fn a_frame_gets_the_smallest_buffer_that_holds_it() {
        assert_eq!(XskConfig::frame_size_for(1776), 2048);
        assert_eq!(XskConfig::frame_size_for(1777), 4096);
        // Longer than any buffer: the largest (the kernel drops the frame).
        assert_eq!(XskConfig::frame_size_for(9022), 4096);
        let config = XskConfig {
            frame_size: 2048,
            ..XskConfig::default()
        };
        assert_eq!(config.max_frame_len(), 1776);
    }
}
