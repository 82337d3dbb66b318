//! Live capture set up end to end: the XDP program on the capture interface,
//! one AF_XDP socket per rx queue, each a pipeline source; in host mode, the
//! mirror veth and the TC programs that feed it. Dropping [`LiveCapture`]
//! detaches and removes everything it attached or created.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pipeline::source::live::{Mode, Unbound, XdpAttach};
use pipeline::source::{Frame, PacketSource, Poll, QueueStats, SourceWaker};
use pipeline::time::LiveClock;
use pipeline::wire::dissect::LinkType;
use xdpilone::xdp::XdpStatisticsV2;

use crate::error::LiveError;
use crate::link::{LinkState, LinkWatch, MirrorPair};
use crate::netdev::{self, MirrorVeth, mtu, rx_queues};
use crate::program::{Programs, UnboundFrames, mode_name};
use crate::sys;
use crate::xsk::{BindMode, RxSocket, XskConfig};

#[derive(Clone, Debug)]
pub struct LiveConfig {
    pub iface: String,
    pub mode: Mode,
    pub xdp_mode: XdpAttach,
    pub unbound: Unbound,
    /// Rx queues to capture (default: all of the capture interface's).
    pub queues: Option<u32>,
    /// Bytes per UMEM frame, one of [`crate::xsk::FRAME_SIZES`]; `None`:
    /// the smallest that holds the longest frame the interface's MTU
    /// admits ([`frame_size_for_mtu`]).
    pub frame_size: Option<u32>,
    /// Frames per socket (its fill and rx rings); `None`:
    /// [`DEFAULT_RING_BYTES`] of frames.
    pub ring_frames: Option<u32>,
    /// Spin on the rings instead of sleeping in poll(2) when idle.
    pub busy_poll: bool,
    /// Frames taken from the rx ring per poll.
    pub batch: u32,
    /// How long an idle worker sleeps on its socket before checking in
    /// (refreshing the socket's kernel counters, looking for its failure):
    /// anything else its worker must do ends the sleep at once.
    pub idle_wait: Duration,
    /// Queues of the mirror veth in host mode.
    pub host_queues: u32,
    /// Hold a span interface in promiscuous mode while capturing.
    pub promiscuous: bool,
    /// Receive a frame longer than a buffer in several, where the kernel
    /// can; false receives one buffer a frame, as before Linux 6.6.
    pub multi_buffer: bool,
    /// What turns the kernel's monotonic timestamps into Unix time
    /// ([`sys::realtime_offset_ns`]); `None`: read as the capture starts.
    /// Captures of several interfaces that are one stream share one, read
    /// once: each reading its own, a clock step between their starts would
    /// set one interface's frames apart from the other's.
    pub realtime_offset_ns: Option<i128>,
}

impl LiveConfig {
    pub fn new(iface: &str) -> LiveConfig {
        LiveConfig {
            iface: iface.to_owned(),
            mode: Mode::Span,
            xdp_mode: XdpAttach::Auto,
            unbound: Unbound::Pass,
            queues: None,
            frame_size: None,
            ring_frames: None,
            busy_poll: false,
            batch: 64,
            idle_wait: STATS_REFRESH,
            host_queues: 1,
            promiscuous: true,
            multi_buffer: true,
            realtime_offset_ns: None,
        }
    }
}

/// Locked memory per socket by default: 8192 frames of 2 KiB (Ethernet
/// MTUs), 4096 of 4 KiB (larger MTUs). How long a worker may fall behind
/// before the kernel drops is the ring's frames: 8192 frames hold 9 ms at
/// 900 kpps, the most this project's test host sends (BENCHMARKS.md, live).
pub const DEFAULT_RING_BYTES: u32 = 16 << 20;

/// What a frame adds to its MTU on the wire as a buffer receives it: the
/// Ethernet header and two VLAN tags (a mirror port's frames often keep
/// their QinQ tags).
const LINK_OVERHEAD: u32 = 14 + 2 * 4;

/// The UMEM frame size for an interface of `mtu`: the smallest whose
/// buffer holds the longest frame that MTU admits.
pub fn frame_size_for_mtu(mtu: u32) -> u32 {
    XskConfig::frame_size_for(mtu.saturating_add(LINK_OVERHEAD))
}

/// Refuses an interface that is down, as tcpdump does: nothing would
/// arrive, and answers would read as no traffic (netplan and
/// NetworkManager leave an interface they have no configuration for down,
/// as a dedicated mirror port often is). One that is up without a link is
/// warned of: the mirror's cable or session may come later.
fn check_link(iface: &str) -> Result<(), LiveError> {
    if netdev::is_up(iface).is_ok_and(|up| !up) {
        return Err(LiveError::InterfaceDown {
            iface: iface.to_owned(),
        });
    }
    if netdev::has_carrier(iface) == Some(false) {
        tracing::warn!(
            interface = iface,
            "no link (carrier down): nothing arrives until the mirror's cable, port or session is up"
        );
    }
    Ok(())
}

/// How the frames of an interface of ARP hardware type `arp_type` begin
/// where XDP sees them: an Ethernet header (Ethernet, and loopback's
/// zeroed one), or, on devices without a link header (IP-in-IP and GRE
/// tunnels, SIT, WireGuard and tun devices, PPP, a modem's raw IP), the
/// IP header. `None`
/// for the rest (InfiniBand, 802.11 monitors, ...), whose frames would
/// all be counted not IP: they are refused.
fn frames_begin_with(arp_type: u16) -> Option<LinkType> {
    // if_arp.h.
    const ETHER: u16 = 1;
    const PPP: u16 = 512;
    const RAWIP: u16 = 519;
    const TUNNEL: u16 = 768;
    const TUNNEL6: u16 = 769;
    const LOOPBACK: u16 = 772;
    const SIT: u16 = 776;
    const IPGRE: u16 = 778;
    const IP6GRE: u16 = 823;
    const NONE: u16 = 0xFFFE;
    match arp_type {
        ETHER | LOOPBACK => Some(LinkType::Ethernet),
        PPP | RAWIP | TUNNEL | TUNNEL6 | SIT | IPGRE | IP6GRE | NONE => Some(LinkType::Raw),
        _ => None,
    }
}

/// How to attach XDP to `iface`, built on the `lower` devices if any. A
/// bond, or an Azure NIC with accelerated networking (its VF under it),
/// takes a program in driver mode by installing it on the devices under
/// it, where frames arrive: an AF_XDP socket of the upper device cannot
/// take their frames, which the driver then drops, counted nowhere. SKB
/// (generic) mode runs the program as frames reach the upper device.
fn attach_choice(choice: XdpAttach, iface: &str, lower: &[String]) -> XdpAttach {
    if lower.is_empty() {
        return choice;
    }
    match choice {
        XdpAttach::Auto => {
            tracing::info!(
                interface = iface,
                lower = %lower.join(","),
                "an interface built on others: XDP in SKB (generic) mode, which sees their frames as they reach it"
            );
            XdpAttach::Skb
        }
        XdpAttach::Driver => {
            tracing::warn!(
                interface = iface,
                lower = %lower.join(","),
                "XDP driver mode on an interface built on others: where its driver installs the program on them \
                 (a bond, an Azure NIC's VF), their frames are dropped, not captured; --xdp-mode auto or skb \
                 captures them"
            );
            choice
        }
        XdpAttach::Skb => choice,
    }
}

/// Whether a kernel hands a frame in several buffers to an AF_XDP socket
/// (Linux 6.6 on, `XDP_USE_SG`), so that the XDP program taking frames in
/// parts may be attached. Linux 5.18 to 6.5 load that program, and it lets
/// a driver take a jumbo MTU in driver mode, but cannot redirect a frame in
/// parts to a socket: the driver drops it, counted nowhere flowtap reads.
/// With the single-buffer program such a driver refuses driver mode, and
/// SKB mode hands the socket the frame whole or counts it dropped. An
/// unknown kernel is taken for an old one.
fn takes_frames_in_parts(kernel: Option<aya::util::KernelVersion>) -> bool {
    kernel.is_some_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
}

/// Span mode takes every frame the interface receives: on an interface
/// that carries this host's own traffic (it has addresses), that traffic
/// stops reaching the host while flowtap runs. A mirror port has none; a
/// node's own interface is watched with `--mode host`. Said loudly, not
/// refused: a test network may address its mirror port.
fn warn_if_addressed(iface: &str) {
    let Ok(addresses) = sys::if_addresses(iface) else {
        return;
    };
    let own: Vec<String> = addresses
        .iter()
        .filter(|a| match a {
            // Link-local addresses every interface may carry.
            std::net::IpAddr::V4(v4) => !v4.is_link_local(),
            std::net::IpAddr::V6(v6) => !v6.is_unicast_link_local(),
        })
        .map(ToString::to_string)
        .collect();
    if !own.is_empty() {
        tracing::warn!(
            interface = iface,
            addresses = %own.join(","),
            "span mode on an interface with addresses of its own: every frame it receives goes to flowtap, \
             so this host's traffic on it stops while flowtap runs. Capture a mirror port, or watch a \
             node's own interface with --mode host"
        );
    }
}

/// Copies the kernel's counters for a socket into its queue's statistics.
fn store_kernel_stats(stats: &QueueStats<AtomicU64>, k: &XdpStatisticsV2) {
    stats.rx_dropped.store(k.rx_dropped, Ordering::Relaxed);
    stats.rx_ring_full.store(k.rx_ring_full, Ordering::Relaxed);
    stats
        .fill_ring_empty
        .store(k.rx_fill_ring_empty_descs, Ordering::Relaxed);
    stats
        .invalid
        .store(k.rx_invalid_descs + k.tx_invalid_descs, Ordering::Relaxed);
}

/// What was set up, for logs and metrics.
#[derive(Debug)]
pub struct LiveInfo {
    pub iface: String,
    /// Where XDP runs: `iface` itself (span) or the mirror veth (host).
    pub capture_iface: String,
    pub mode: Mode,
    pub xdp_mode: &'static str,
    pub zero_copy: bool,
    /// Bytes per UMEM frame and frames per socket, as chosen.
    pub frame_size: u32,
    pub ring_frames: u32,
    /// Bytes of every socket's UMEM, locked in memory at start.
    pub buffer_bytes: u64,
    /// Whether a frame longer than a buffer arrives in several (the
    /// multi-buffer XDP program and sockets: Linux 6.6 on), its headers
    /// read from the first and every byte counted; else the kernel drops it
    /// (`rx_dropped`).
    pub multi_buffer: bool,
    /// Per rx queue: what was received, and the kernel's counters.
    pub queues: Vec<QueueStats<AtomicU64>>,
    /// Added to kernel monotonic timestamps to get Unix time.
    pub realtime_offset_ns: i128,
    /// The clock the packets are stamped with, for snapshots and expiry.
    pub clock: LiveClock,
    /// Whether flowtap holds the span interface in promiscuous mode.
    pub promiscuous: bool,
    /// Frames on rx queues flowtap has no socket on (the XDP program's
    /// count, as last read): they got `--unbound` and never reached it.
    pub unbound_frames: AtomicU64,
    /// Frames the NIC of `iface` missed since flowtap started (its
    /// `rx_missed_errors`, as last read; 0 where the driver does not say):
    /// in span mode the mirror's frames, in host mode the node's.
    pub nic_missed: AtomicU64,
    /// Frames the NIC of `iface` dropped as too long for its MTU or damaged
    /// since flowtap started ([`netdev::rx_refused`], as last read).
    pub nic_refused: AtomicU64,
    /// Host mode: the watched interface's index. Its TC programs go with
    /// it, while the capture veth lives on: the workers look for it.
    pub watched_ifindex: Option<u32>,
    /// The interface of `capture_iface`, by index (a name can change).
    pub capture_ifindex: u32,
    /// What its frames begin with: an Ethernet header, or an IP header
    /// (an interface without a link header).
    pub link_type: LinkType,
    /// Whether the watched interface can receive, and host mode's mirror
    /// drops (the first queue's worker keeps them up to date).
    pub link: LinkState,
}

pub struct LiveCapture {
    // Drop order matters: programs (XDP, TC links) go first, then the veth.
    /// `None` once detached ([`LiveCapture::detach_programs`]).
    programs: Option<Programs>,
    veth: Option<MirrorVeth>,
    /// The packet socket whose membership keeps a span port promiscuous.
    promiscuous: Option<OwnedFd>,
    pub info: Arc<LiveInfo>,
}

impl LiveCapture {
    /// Sets up capture on `config.iface`; returns the capture and one packet
    /// source per rx queue, to run on the pipeline's workers.
    pub fn start(config: &LiveConfig) -> Result<(LiveCapture, Vec<XskSource>), LiveError> {
        if let Err(e) = sys::raise_memlock_limit() {
            tracing::debug!(error = %e, "could not raise RLIMIT_MEMLOCK");
        }
        let iface_err = |iface: &str| {
            let iface = iface.to_owned();
            move |source| LiveError::Interface { iface, source }
        };
        let watched = sys::if_index(&config.iface).map_err(iface_err(&config.iface))?;
        check_link(&config.iface)?;
        let arp_type = netdev::arp_type(&config.iface).map_err(iface_err(&config.iface))?;
        let link_type = frames_begin_with(arp_type).ok_or_else(|| LiveError::LinkType {
            iface: config.iface.clone(),
            arp_type,
        })?;
        // Host mode's mirror is an Ethernet veth: an IP packet cloned onto
        // it would be read as an Ethernet frame.
        if config.mode == Mode::Host && link_type != LinkType::Ethernet {
            return Err(LiveError::HostModeNeedsEthernet {
                iface: config.iface.clone(),
            });
        }
        if config.mode == Mode::Span {
            warn_if_addressed(&config.iface);
        }
        let (veth, capture_iface, mirror_ifindex) = match config.mode {
            Mode::Span => (None, config.iface.clone(), 0),
            Mode::Host => {
                let watched_mtu = mtu(&config.iface)
                    .map_err(iface_err(&config.iface))?
                    .min(netdev::VETH_MAX_MTU);
                let veth = MirrorVeth::create(watched, config.host_queues, watched_mtu)?;
                let mirror = sys::if_index(&veth.mirror).map_err(iface_err(&veth.mirror))?;
                let capture = veth.capture.clone();
                (Some(veth), capture, mirror)
            }
        };
        let capture_index = sys::if_index(&capture_iface).map_err(iface_err(&capture_iface))?;
        // A mirror port's frames carry other hosts' MACs: without
        // promiscuous mode the NIC drops them before XDP runs. Host mode
        // captures its own veth, which delivers every frame.
        let promiscuous = match config.mode {
            Mode::Span if config.promiscuous => Some(
                sys::promiscuous_membership(capture_index).map_err(|source| {
                    LiveError::Promiscuous {
                        iface: capture_iface.clone(),
                        source,
                    }
                })?,
            ),
            _ => None,
        };
        // In host mode the veth has the watched interface's MTU, and
        // segments what the node's offloads merged to it.
        let mtu = mtu(&capture_iface).map_err(iface_err(&capture_iface))?;
        let frame_size = config.frame_size.unwrap_or_else(|| frame_size_for_mtu(mtu));
        let xsk = XskConfig {
            frame_size,
            frame_count: config
                .ring_frames
                .unwrap_or(DEFAULT_RING_BYTES / frame_size),
            bind: BindMode::Auto,
            multi_buffer: config.multi_buffer,
        };
        let available = rx_queues(&capture_iface).map_err(iface_err(&capture_iface))?;
        let queues = config.queues.unwrap_or(available).clamp(1, available);
        // Said, not only counted: on an RSS NIC of 16 queues, --queues 2
        // leaves seven eighths of the mirror to the other queues (XDP
        // passes or drops them, --unbound) while readiness stays green.
        match config.queues {
            Some(asked) if asked != queues => tracing::warn!(
                iface = %capture_iface,
                asked,
                queues,
                available,
                "--queues {asked}: the interface has {available} rx queues; capturing {queues}"
            ),
            _ => {}
        }
        if queues < available {
            tracing::warn!(
                iface = %capture_iface,
                queues,
                available,
                "capturing {queues} of {available} rx queues: frames the NIC puts on the others are \
                 not counted in flows (flowtap_xdp_unbound_frames_total counts them)"
            );
        }

        let mut programs = Programs::load(config.unbound, mirror_ifindex)?;
        let mut sockets = Vec::new();
        for queue in 0..queues {
            let socket_err = |source: std::io::Error| {
                // EBUSY: the queue is bound to another socket already.
                if source.raw_os_error() == Some(libc::EBUSY) {
                    LiveError::QueueBusy {
                        iface: capture_iface.clone(),
                        queue,
                    }
                } else {
                    LiveError::Socket {
                        iface: capture_iface.clone(),
                        queue,
                        source,
                    }
                }
            };
            let socket = RxSocket::open(capture_index, queue, &xsk).map_err(socket_err)?;
            let wake = SocketWake::new().map_err(socket_err)?;
            sockets.push((socket, Arc::new(wake)));
        }
        let xdp_choice = attach_choice(
            config.xdp_mode,
            &capture_iface,
            &netdev::lower_devices(&capture_iface),
        );
        let (xdp_mode, multi_buffer_program) = programs.attach_xdp(
            &capture_iface,
            xdp_choice,
            config.multi_buffer && takes_frames_in_parts(aya::util::KernelVersion::current().ok()),
        )?;
        for (s, _) in &sockets {
            programs.bind_queue(s.queue, s.fd())?;
        }
        if config.mode == Mode::Host {
            programs.attach_mirror(&config.iface)?;
        }
        let realtime_offset_ns = config
            .realtime_offset_ns
            .unwrap_or_else(sys::realtime_offset_ns);
        let info = Arc::new(LiveInfo {
            iface: config.iface.clone(),
            capture_iface,
            mode: config.mode,
            xdp_mode: mode_name(xdp_mode),
            zero_copy: sockets.iter().all(|(s, _)| s.zero_copy()),
            multi_buffer: multi_buffer_program && sockets.iter().all(|(s, _)| s.multi_buffer()),
            frame_size: xsk.frame_size,
            ring_frames: xsk.frame_count,
            buffer_bytes: u64::from(queues) * xsk.umem_len() as u64,
            queues: (0..queues)
                .map(|queue| {
                    QueueStats::new(
                        &config.iface,
                        queue,
                        u64::from(xsk.frame_count),
                        u64::from(xsk.max_frame_len()),
                    )
                })
                .collect(),
            realtime_offset_ns,
            clock: LiveClock::starting_at(
                (i128::from(sys::monotonic_ns()) + realtime_offset_ns).max(0) as u64,
            ),
            promiscuous: promiscuous.is_some(),
            watched_ifindex: (config.mode == Mode::Host).then_some(watched),
            unbound_frames: AtomicU64::new(0),
            nic_missed: AtomicU64::new(0),
            nic_refused: AtomicU64::new(0),
            capture_ifindex: capture_index,
            link_type,
            link: LinkState::new(),
        });
        // Read by the first queue's worker, with its socket's counters.
        let mut unbound = Some(programs.unbound_frames()?);
        let mut nic_missed = netdev::rx_missed(&config.iface).map(netdev::CountSince::new);
        let mut nic_refused = netdev::rx_refused(&config.iface).map(netdev::CountSince::new);
        let mirror = veth.as_ref().map(|v| MirrorPair {
            mirror: v.mirror.clone(),
            capture: v.capture.clone(),
            mtu,
        });
        let mut link = Some(LinkWatch::new(mirror));
        let sources = sockets
            .into_iter()
            .enumerate()
            .map(|(i, (socket, wake))| XskSource {
                unbound: if i == 0 { unbound.take() } else { None },
                nic_missed: if i == 0 { nic_missed.take() } else { None },
                nic_refused: if i == 0 { nic_refused.take() } else { None },
                link: if i == 0 { link.take() } else { None },
                socket,
                wake,
                info: info.clone(),
                index: i,
                busy_poll: config.busy_poll,
                batch: config.batch.max(1),
                idle_wait: config.idle_wait,
                next_refresh: Instant::now(),
            })
            .collect();
        Ok((
            LiveCapture {
                programs: Some(programs),
                veth,
                promiscuous,
                info,
            },
            sources,
        ))
    }

    /// Detaches the programs now: no frame reaches the sockets after it
    /// (host mode's mirror veth stays, its sockets bound to it, until
    /// [`LiveCapture::stop`]).
    pub fn detach_programs(&mut self) {
        drop(self.programs.take());
    }

    /// Detaches the programs and removes the mirror veth now (also done on drop).
    pub fn stop(self) {
        let LiveCapture {
            programs,
            veth,
            promiscuous,
            ..
        } = self;
        drop(programs);
        drop(veth);
        drop(promiscuous);
    }
}

/// How often a worker re-reads its socket's kernel counters.
const STATS_REFRESH: Duration = Duration::from_millis(250);

/// A poll that finds fewer frames than this is a trickle: the worker naps
/// for [`COALESCE`] before the next one, so that frames gather in the ring
/// and one wake-up serves several (in user space what interrupt moderation
/// does in a NIC). At low rates a wake-up per frame was most of the receive
/// cost (BENCHMARKS.md, live). Timestamps come from the XDP program, so
/// the nap delays counting, never the times counted.
const COALESCE_BELOW: u32 = 16;
/// Long enough to gather a few frames at tens of thousands per second;
/// short enough that the 4096-frame ring holds what line rate on 10 GbE
/// (14.9 Mpps) brings meanwhile.
const COALESCE: Duration = Duration::from_micros(200);

/// Ends an idle [`XskSource`]'s sleep in poll(2) when its worker has other
/// work. The eventfd is signalled once until the source clears it, so a
/// busy source (not sleeping, not clearing) costs its wakers no system call.
#[derive(Debug)]
struct SocketWake {
    fd: sys::EventFd,
    signalled: AtomicBool,
}

impl SocketWake {
    fn new() -> std::io::Result<SocketWake> {
        Ok(SocketWake {
            fd: sys::EventFd::new()?,
            signalled: AtomicBool::new(false),
        })
    }

    /// After a sleep: ready for the next wake-up. The eventfd is drained
    /// first, then the flag reset (acquiring what the wakers did before they
    /// set it). In the other order a wake-up landing between the two would
    /// be drained while its flag stayed set, and the next wake-up would not
    /// signal: that sleep would run to its timeout. In this order a wake-up
    /// in between is seen by the reset, or signals again and at worst ends
    /// the next sleep early.
    fn clear(&self) {
        self.fd.clear();
        self.signalled.swap(false, Ordering::AcqRel);
    }
}

impl SourceWaker for SocketWake {
    fn wake(&self) {
        if !self.signalled.swap(true, Ordering::AcqRel) {
            self.fd.signal();
        }
    }
}

/// One rx queue's AF_XDP socket as a pipeline source.
pub struct XskSource {
    /// The XDP program's count of frames without a socket (the first
    /// queue's source reads it).
    unbound: Option<UnboundFrames>,
    /// The NIC's missed frames since flowtap started (the first queue's
    /// source reads them; `None` where the driver does not count them).
    nic_missed: Option<netdev::CountSince>,
    /// The NIC's frames refused as too long or damaged since flowtap
    /// started, likewise; the first one is said once in the log.
    nic_refused: Option<netdev::CountSince>,
    /// The watched interface's state (the first queue's source checks it).
    link: Option<LinkWatch>,
    socket: RxSocket,
    wake: Arc<SocketWake>,
    info: Arc<LiveInfo>,
    index: usize,
    busy_poll: bool,
    batch: u32,
    idle_wait: Duration,
    next_refresh: Instant,
}

impl XskSource {
    fn refresh_stats(&mut self) {
        if let Ok(k) = self.socket.kernel_stats() {
            store_kernel_stats(&self.info.queues[self.index], &k);
        }
        if let Some(unbound) = &self.unbound {
            self.info
                .unbound_frames
                .store(unbound.read(), Ordering::Relaxed);
        }
        // The watched interface's own counters and link: the first queue's
        // source reads them, by the name the interface has now (an
        // operator may rename it).
        if self.link.is_none() && self.nic_missed.is_none() && self.nic_refused.is_none() {
            return;
        }
        let watched = self
            .info
            .watched_ifindex
            .unwrap_or(self.info.capture_ifindex);
        let Ok(iface) = sys::if_name(watched) else {
            // Gone: the sockets' failure says so.
            return;
        };
        if let Some(missed) = &mut self.nic_missed
            && let Some(now) = netdev::rx_missed(&iface)
        {
            self.info
                .nic_missed
                .store(missed.read(now), Ordering::Relaxed);
        }
        if let Some(refused) = &mut self.nic_refused
            && let Some(now) = netdev::rx_refused(&iface)
        {
            let count = refused.read(now);
            if self.info.nic_refused.swap(count, Ordering::Relaxed) == 0 && count > 0 {
                let port_mtu = mtu(&iface).ok();
                tracing::warn!(
                    interface = %iface,
                    mtu = port_mtu,
                    frames = count,
                    "the NIC dropped frames too long for the interface's MTU, or damaged, before \
                     capture (its rx_length_errors, rx_crc_errors and rx_frame_errors; \
                     flowtap_nic_rx_refused_frames_total, in capture_drops): a mirror of jumbo \
                     frames needs the port's MTU raised (ip link set IFACE mtu 9000); CRC errors \
                     point at the mirror's link"
                );
            }
        }
        if let Some(link) = &mut self.link {
            link.check(&iface, &self.info.link);
        }
    }

    /// Why the socket is broken, if it is: an error poll(2) reported, or
    /// one pending on the socket (poll reports none once its device is gone).
    fn failure(&self, waited: std::io::Result<bool>) -> Option<String> {
        // In host mode the socket is on the capture veth, which outlives
        // the watched interface: its removal would leave a capture that
        // sees nothing and says it is ready.
        if let Some(index) = self.info.watched_ifindex
            && !sys::if_exists(index)
        {
            return Some(format!(
                "the watched interface {} is gone (its mirror went with it)",
                self.info.iface
            ));
        }
        let error = match waited {
            Err(e) => e,
            Ok(_) => match self.socket.pending_error() {
                Ok(None) => return None,
                Ok(Some(e)) | Err(e) => e,
            },
        };
        let queue = self.info.queues[self.index].queue;
        if !sys::if_exists(self.info.capture_ifindex) {
            // Deleted, or moved to another network namespace: the socket
            // says only that its network is down.
            return Some(format!("the interface {} is gone", self.info.capture_iface));
        }
        Some(format!(
            "the AF_XDP socket of {} queue {queue} failed: {error}",
            self.info.capture_iface
        ))
    }
}

impl PacketSource for XskSource {
    fn poll<F: FnMut(Frame<'_>)>(&mut self, mut on_frame: F) -> Poll {
        let offset = self.info.realtime_offset_ns;
        let link = self.info.link_type;
        let mut bytes = 0u64;
        let mut missing = 0u64;
        let n = self.socket.receive(self.batch, |f| {
            let ktime = f.ktime_ns.unwrap_or_else(|| {
                missing += 1;
                sys::monotonic_ns()
            });
            bytes += u64::from(f.len);
            on_frame(Frame {
                ts_ns: (i128::from(ktime) + offset).max(0) as u64,
                wire_len: f.len,
                link,
                data: f.data,
            });
        });
        let stats = &self.info.queues[self.index];
        if n > 0 {
            stats.frames.fetch_add(u64::from(n), Ordering::Relaxed);
            stats.bytes.fetch_add(bytes, Ordering::Relaxed);
            if missing > 0 {
                let before = stats
                    .without_timestamp
                    .fetch_add(missing, Ordering::Relaxed);
                if before == 0 {
                    // Said once a queue: the counter alone goes unseen.
                    tracing::warn!(
                        interface = %self.info.capture_iface,
                        queue = stats.queue,
                        xdp_mode = self.info.xdp_mode,
                        "frames arrive without the XDP program's timestamp (it found no room in front of them): \
                         their times are taken in user space after the ring, so handshake times include queueing; \
                         --xdp-mode skb stamps them in the kernel (flowtap_xdp_frames_without_timestamp_total counts them)"
                    );
                }
            }
        }
        let now = Instant::now();
        if now >= self.next_refresh {
            self.next_refresh = now + STATS_REFRESH;
            self.refresh_stats();
            if let Some(why) = self.failure(Ok(true)) {
                return Poll::Failed(why);
            }
        }
        if n > 0 {
            if n < COALESCE_BELOW && !self.busy_poll {
                std::thread::sleep(COALESCE);
            }
            return Poll::Busy;
        }
        // (An error pending on the socket is looked for with the stats, four
        // times a second; poll(2) reports only its own.)
        if !self.busy_poll {
            let waited = self.socket.wait(&self.wake.fd, self.idle_wait);
            self.wake.clear();
            if let Err(e) = waited {
                return Poll::Failed(self.failure(Err(e)).unwrap_or_default());
            }
        }
        Poll::Idle
    }

    fn waker(&self) -> Option<Arc<dyn SourceWaker>> {
        // A busy-polling source never sleeps.
        (!self.busy_poll).then(|| self.wake.clone() as Arc<dyn SourceWaker>)
    }

    fn settle(&mut self) {
        self.refresh_stats();
    }
}

impl Drop for XskSource {
    fn drop(&mut self) {
        self.refresh_stats();
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn buffers_follow_the_mtu() {
        // 1500 + Ethernet + two VLAN tags = 1522: 2 KiB (1776 usable).
        assert_eq!(frame_size_for_mtu(1500), 2048);
        assert_eq!(frame_size_for_mtu(1754), 2048);
        assert_eq!(frame_size_for_mtu(1755), 4096);
        assert_eq!(frame_size_for_mtu(9001), 4096);
        // 16 MiB: rings of a power of two either way.
        assert_eq!(DEFAULT_RING_BYTES / 2048, 8192);
        assert_eq!(DEFAULT_RING_BYTES / 4096, 4096);
    }

    #[test]
    fn an_interface_built_on_others_takes_xdp_in_skb_mode_unless_told() {
        let lower = ["eth1".to_owned(), "eth2".to_owned()];
        assert_eq!(
            attach_choice(XdpAttach::Auto, "bond0", &lower),
            XdpAttach::Skb
        );
        assert_eq!(attach_choice(XdpAttach::Auto, "eth0", &[]), XdpAttach::Auto);
        assert_eq!(
            attach_choice(XdpAttach::Driver, "bond0", &lower),
            XdpAttach::Driver
        );
        assert_eq!(
            attach_choice(XdpAttach::Skb, "bond0", &lower),
            XdpAttach::Skb
        );
    }

    #[test]
    fn frames_in_parts_from_linux_6_6() {
        use aya::util::KernelVersion;
        for (kernel, takes) in [
            (Some(KernelVersion::new(5, 15, 0)), false),
            (Some(KernelVersion::new(6, 5, 13)), false),
            (Some(KernelVersion::new(6, 6, 0)), true),
            (Some(KernelVersion::new(6, 18, 2)), true),
            (None, false),
        ] {
            assert_eq!(takes_frames_in_parts(kernel), takes, "{kernel:?}");
        }
    }

    /// How long one sleep on a socket that never becomes readable lasted.
    fn sleep_on(idle: &UnixStream, wake: &SocketWake, timeout: Duration) -> Duration {
        let started = Instant::now();
        let readable = sys::wait_readable(idle.as_raw_fd(), &wake.fd, timeout).expect("poll");
        assert!(!readable, "nothing was ever sent on the socket");
        wake.clear();
        started.elapsed()
    }

    #[test]
    fn a_wake_ends_the_sleep_and_none_is_lost() {
        // A socket that never becomes readable: every sleep on it ends by a
        // wake-up or by its timeout. Timeouts are far apart (30 s against
        // 0.2 s) so that a loaded machine cannot blur which one it was.
        let (idle, _peer) = UnixStream::pair().expect("socketpair");
        let long = Duration::from_secs(30);
        let short = Duration::from_millis(200);
        let wake = Arc::new(SocketWake::new().expect("eventfd"));

        // Woken before it sleeps (the worker was busy): the sleep ends at once.
        wake.wake();
        assert!(sleep_on(&idle, &wake, long) < Duration::from_secs(10));
        // Cleared: the next sleep lasts its timeout.
        assert!(sleep_on(&idle, &wake, short) >= short);

        // Woken by another thread while it sleeps.
        let waker = wake.clone();
        let other = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            waker.wake();
        });
        assert!(sleep_on(&idle, &wake, long) < Duration::from_secs(10));
        other.join().unwrap();

        // Woken twice before it looks: one clear takes both, and the sleep
        // after it lasts its timeout again.
        wake.wake();
        wake.wake();
        assert!(sleep_on(&idle, &wake, long) < Duration::from_secs(10));
        assert!(sleep_on(&idle, &wake, short) >= short);
    }
}
