//! The few raw system calls live capture needs, each behind a safe function.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::time::Duration;

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clocks always exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    debug_assert_eq!(rc, 0);
    i128::from(ts.tv_sec) * i128::from(pipeline::time::SECOND) + i128::from(ts.tv_nsec)
}

/// CLOCK_MONOTONIC now, the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// Wall-clock time minus monotonic time: add it to a kernel timestamp to get
/// Unix time. Measured once, taking the tightest of a few samples.
pub fn realtime_offset_ns() -> i128 {
    (0..5)
        .map(|_| {
            let a = clock_ns(libc::CLOCK_MONOTONIC);
            let r = clock_ns(libc::CLOCK_REALTIME);
            let b = clock_ns(libc::CLOCK_MONOTONIC);
            (b - a, r - (a + b) / 2)
        })
        .min_by_key(|(spread, _)| *spread)
        .map(|(_, offset)| offset)
        .unwrap_or(0)
}

/// Lifts RLIMIT_MEMLOCK as far as allowed: AF_XDP pins its buffers, and
/// without CAP_IPC_LOCK they count against this limit.
pub fn raise_memlock_limit() -> io::Result<()> {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit struct for a valid resource.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } == 0 {
        return Ok(());
    }
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid, writable rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut current) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let raised = libc::rlimit {
        rlim_cur: current.rlim_max,
        rlim_max: current.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `fd` is readable, `wake` is signalled, or `timeout` passes.
/// Returns whether `fd` is readable (a signalled `wake` is left for its
/// owner to clear).
pub fn wait_readable(fd: RawFd, wake: &EventFd, timeout: Duration) -> io::Result<bool> {
    let mut pfds = [fd, wake.fd.as_raw_fd()].map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: a valid array of two pollfds, its length given.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    let revents = pfds[0].revents;
    match n {
        -1 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        // An error, a hang-up or a bad descriptor is not "idle": the socket
        // is broken (its device gone, say), and its caller must know.
        _ if revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 => {
            Err(io::Error::other(format!(
                "poll reported {} on the socket",
                [
                    (libc::POLLERR, "POLLERR"),
                    (libc::POLLHUP, "POLLHUP"),
                    (libc::POLLNVAL, "POLLNVAL"),
                ]
                .iter()
                .filter(|(bit, _)| revents & bit != 0)
                .map(|(_, name)| *name)
                .collect::<Vec<_>>()
                .join("|")
            )))
        }
        _ => Ok(revents & libc::POLLIN != 0),
    }
}

/// A Linux eventfd: a counter another thread signals to end a
/// [`wait_readable`] early. Reads and writes go through `File`.
#[derive(Debug)]
pub struct EventFd {
    fd: std::fs::File,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new
        // descriptor that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd { fd: fd.into() })
    }

    /// Makes the descriptor readable until [`EventFd::clear`].
    pub fn signal(&self) {
        use std::io::Write;
        // Fails only when the counter would overflow: it is signalled anyway.
        let _ = (&self.fd).write(&1u64.to_ne_bytes());
    }

    /// Unsignals it.
    pub fn clear(&self) {
        use std::io::Read;
        // Non-blocking: an unsignalled eventfd reads as WouldBlock.
        let _ = (&self.fd).read(&mut [0u8; 8]);
    }
}

/// A socket's pending error (SO_ERROR), cleared by reading it. An AF_XDP
/// socket whose device went away reports ENETDOWN here, and nothing to
/// poll(2).
pub fn socket_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let mut err: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut err).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

/// The index of network interface `name`, in the current network namespace.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface named {name}"),
        )),
        i => Ok(i),
    }
}

/// The name network interface `index` has now (a rename keeps its
/// index; an alternative name resolves to the primary one), in the current
/// network namespace.
pub fn if_name(index: u32) -> io::Result<String> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has room for IF_NAMESIZE bytes, as if_indextoname(3)
    // requires; it returns NULL (ENXIO) for an index that names nothing.
    if unsafe { libc::if_indextoname(index, name.as_mut_ptr()) }.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success `name` holds a NUL-terminated string within it.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// Whether network interface `index` still exists (under any name: a
/// rename keeps its index), in the current network namespace.
pub fn if_exists(index: u32) -> bool {
    if_name(index).is_ok()
}

/// The IP addresses configured on interface `name` (getifaddrs(3)).
pub fn if_addresses(name: &str) -> io::Result<Vec<std::net::IpAddr>> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes the head of a list it allocates; it is
    // freed below with freeifaddrs, once.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut addresses = Vec::new();
    let mut node = head;
    while !node.is_null() {
        // SAFETY: `node` is an entry of the list, which lives until freed.
        let entry = unsafe { &*node };
        node = entry.ifa_next;
        // SAFETY: every entry's name is a NUL-terminated string of the list.
        let entry_name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) };
        if entry_name.to_bytes() != name.as_bytes() || entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: a non-null `ifa_addr` points to a socket address whose
        // family says which one it is, read as that type.
        let address = unsafe {
            match i32::from((*entry.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let v4 = &*entry.ifa_addr.cast::<libc::sockaddr_in>();
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let v6 = &*entry.ifa_addr.cast::<libc::sockaddr_in6>();
                    IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr))
                }
                _ => continue,
            }
        };
        addresses.push(address);
    }
    // SAFETY: `head` came from getifaddrs and is freed once, after its last use.
    unsafe { libc::freeifaddrs(head) };
    Ok(addresses)
}

/// An anonymous, page-aligned, private mapping, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; whoever owns the `Mapping` decides who
// touches it (the AF_XDP socket that owns it, on one thread).
unsafe impl Send for Mapping {}

impl Mapping {
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh anonymous mapping with no address hint; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
            len,
        })
    }

    pub fn as_slice_ptr(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    pub fn base(&self) -> NonNull<u8> {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; nothing borrows
        // the memory once its owner is dropped.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// A NETLINK_ROUTE socket, closed on drop.
#[derive(Debug)]
pub struct NetlinkSocket {
    fd: RawFd,
}

impl NetlinkSocket {
    pub fn open() -> io::Result<NetlinkSocket> {
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = NetlinkSocket { fd };
        // SAFETY: a zeroed sockaddr_nl is valid; we set the family.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `addr` is a valid sockaddr_nl of the size given.
        let rc = unsafe {
            libc::bind(
                sock.fd,
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }

    /// Sends one request and waits for its acknowledgement; returns the
    /// kernel's error, if any.
    pub fn request(&self, message: &[u8]) -> io::Result<()> {
        // SAFETY: `message` is a valid buffer of its length.
        let sent = unsafe { libc::send(self.fd, message.as_ptr().cast(), message.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if let Some(result) = crate::netlink::ack(&buf[..n as usize]) {
                return result;
            }
        }
    }
}

impl Drop for NetlinkSocket {
    fn drop(&mut self) {
        // SAFETY: `fd` is ours and closed once.
        unsafe {
            libc::close(self.fd);
        }
    }
}

/// Puts interface `ifindex` in promiscuous mode for as long as the returned
/// socket stays open. It is a membership of a packet socket (as tcpdump's),
/// not the interface flag: the kernel counts memberships and drops this one
/// when the socket closes, also when the process is killed, so a crashed
/// flowtap never leaves a port promiscuous, and an administrator's own
/// setting is left alone. The socket receives nothing (protocol 0).
pub fn promiscuous_membership(ifindex: u32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor socket(2) just returned, owned by no one else.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let request = libc::packet_mreq {
        mr_ifindex: ifindex as libc::c_int,
        mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    // SAFETY: a valid packet_mreq, passed with its own size, on an open socket.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&raw const request).cast(),
            size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}
