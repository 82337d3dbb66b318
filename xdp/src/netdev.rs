//! Host mode's mirror: a veth pair flowtap creates next to the node's
//! interface. The node's traffic is cloned into one end; XDP and AF_XDP run
//! on the other. Created over rtnetlink from flowtap itself (see
//! [`crate::netlink`]); `ip link show ftm<ifindex>` shows it.
//!
//! Names derive from the watched interface's index (`ftm<ifindex>` for the
//! mirror end, `ftc<ifindex>` for the capture end), so a pair left behind by a
//! crashed run is recognised and replaced at the next start. A running
//! flowtap holds a lock on the pair (an abstract unix socket, named in the
//! network namespace and released by the kernel when the process ends, even
//! by SIGKILL), so a second one refuses instead of deleting a live pair.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};

use crate::error::LiveError;
use crate::{netlink, sys};

fn netdev_error(what: String) -> impl FnOnce(std::io::Error) -> LiveError {
    move |e| {
        // The capability named only where it is what is missing: an
        // invalid argument sent operators looking at their permissions.
        let hint = match e.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => " (needs CAP_NET_ADMIN)",
            _ => "",
        };
        LiveError::NetDev {
            what,
            detail: format!("{e}{hint}"),
        }
    }
}

/// The largest MTU a veth takes (the kernel's ETH_MAX_MTU): the mirror
/// pair of an interface with a larger one (the loopback's 65,536) takes
/// this.
pub(crate) const VETH_MAX_MTU: u32 = 65_535;

/// Where sysfs describes interface `name`.
fn sysfs(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/sys/class/net").join(name)
}

fn exists(name: &str) -> bool {
    sysfs(name).exists()
}

/// The veth pair of host mode; removed on drop.
#[derive(Debug)]
pub struct MirrorVeth {
    /// The end the node's traffic is cloned into.
    pub mirror: String,
    /// The end flowtap captures on.
    pub capture: String,
    removed: bool,
    /// Held while the pair is ours (see the module's documentation).
    _lock: UnixListener,
}

/// Takes the lock on the mirror of interface `watched_ifindex`.
fn lock(watched_ifindex: u32, mirror: &str) -> Result<UnixListener, LiveError> {
    let name = format!("flowtap-host-mode-{watched_ifindex}");
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(|e| LiveError::NetDev {
        what: format!("locking {mirror}"),
        detail: e.to_string(),
    })?;
    UnixListener::bind_addr(&addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => LiveError::NetDev {
            what: format!("host mode on interface index {watched_ifindex}"),
            detail: format!(
                "another flowtap is capturing this interface in host mode (it holds {mirror}); \
                 stop it first"
            ),
        },
        _ => LiveError::NetDev {
            what: format!("locking {mirror}"),
            detail: e.to_string(),
        },
    })
}

impl MirrorVeth {
    pub fn names(watched_ifindex: u32) -> (String, String) {
        (
            format!("ftm{watched_ifindex}"),
            format!("ftc{watched_ifindex}"),
        )
    }

    /// Creates the pair with `queues` rx/tx queues, replacing a stale one.
    /// Its MTU is `mtu`, the watched interface's: a veth drops a frame
    /// longer than its MTU allows, so a narrower pair would lose a jumbo
    /// node's long frames without a count flowtap sees.
    pub fn create(watched_ifindex: u32, queues: u32, mtu: u32) -> Result<MirrorVeth, LiveError> {
        let (mirror, capture) = Self::names(watched_ifindex);
        let lock = lock(watched_ifindex, &mirror)?;
        if exists(&mirror) || exists(&capture) {
            tracing::warn!(%mirror, "removing a mirror veth left by an earlier run");
            let stale = if exists(&mirror) { &mirror } else { &capture };
            netlink::delete_link(stale).map_err(netdev_error(format!("removing {stale}")))?;
        }
        netlink::create_veth(&mirror, &capture, queues.max(1), mtu)
            .map_err(netdev_error(format!("creating veth {mirror}/{capture}")))?;
        let pair = MirrorVeth {
            mirror,
            capture,
            removed: false,
            _lock: lock,
        };
        for name in [&pair.mirror, &pair.capture] {
            // No addresses and no IPv6 autoconfiguration: the pair only
            // carries copies, it must never originate traffic. The sysctl
            // needs write access to /proc/sys (root, outside a container):
            // best effort; without a link-local address the pair sends
            // nothing over IPv6 either (a kernel without IPv6 refuses it).
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
            let index = sys::if_index(name).map_err(netdev_error(format!("finding {name}")))?;
            if let Err(e) = netlink::without_ipv6_address(index) {
                tracing::debug!(error = %e, veth = %name, "IPv6 address generation left on");
            }
            netlink::set_up(index).map_err(netdev_error(format!("setting {name} up")))?;
        }
        Ok(pair)
    }

    pub fn remove(&mut self) {
        if !self.removed {
            self.removed = true;
            // Deleting one end deletes both.
            if let Err(e) = netlink::delete_link(&self.mirror) {
                tracing::warn!(error = %e, mirror = %self.mirror, "removing the mirror veth");
            }
        }
    }
}

impl Drop for MirrorVeth {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The MTU of `iface` (from sysfs).
pub fn mtu(iface: &str) -> std::io::Result<u32> {
    read_number(iface, "mtu")
}

/// The ARP hardware type of `iface` (`/sys/class/net/IF/type`, if_arp.h's
/// `ARPHRD_*`): what its frames begin with.
pub fn arp_type(iface: &str) -> std::io::Result<u16> {
    read_number(iface, "type")
}

/// The number in `iface`'s sysfs file `name`.
fn read_number<T>(iface: &str, name: &str) -> std::io::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let path = sysfs(iface).join(name);
    let text = std::fs::read_to_string(&path)?;
    text.trim().parse().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {text:?}: {e}", path.display()),
        )
    })
}

/// Frames the NIC of `iface` missed since it came up: no room in its
/// receive rings, so the host never saw them (`rx_missed_errors`, the
/// kernel's "host is not keeping up" counter; not `rx_dropped`, which also
/// counts frames the stack had no use for, as a mirror port's STP and LLDP).
/// `None` where the driver does not say (the file unreadable).
pub fn rx_missed(iface: &str) -> Option<u64> {
    read_counter(&sysfs(iface).join("statistics/rx_missed_errors"))
}

/// The receive error counters of a NIC that count frames it dropped as too
/// long or damaged (`struct rtnl_link_stats64`): `rx_length_errors` (IEEE
/// 802.3's aFrameTooLongErrors among them: longer than the MTU allows),
/// `rx_crc_errors` and `rx_frame_errors` (a bad checksum, misaligned).
const REFUSED: [&str; 3] = ["rx_length_errors", "rx_crc_errors", "rx_frame_errors"];

/// Frames the NIC of `iface` received and dropped before the host saw them,
/// too long for its MTU or damaged (the sum of [`REFUSED`]): a mirror
/// carrying jumbo frames to a port left at MTU 1500 loses them here, where
/// no XDP program sees them. `None` where the driver counts none of them.
pub fn rx_refused(iface: &str) -> Option<u64> {
    refused_in(&sysfs(iface).join("statistics"))
}

fn refused_in(statistics: &std::path::Path) -> Option<u64> {
    REFUSED
        .iter()
        .filter_map(|name| read_counter(&statistics.join(name)))
        .reduce(u64::saturating_add)
}

/// A NIC counter's count since flowtap started, from its readings: a
/// driver that resets its counters (on a reconfiguration, a link flap on
/// some) starts again from 0, and what it counts from then on adds to what
/// was counted before.
#[derive(Debug)]
pub struct CountSince {
    last: u64,
    total: u64,
}

impl CountSince {
    /// Counting from the reading at start.
    pub fn new(at_start: u64) -> CountSince {
        CountSince {
            last: at_start,
            total: 0,
        }
    }

    /// Takes in a reading; gives the count since the start.
    pub fn read(&mut self, now: u64) -> u64 {
        // Below the last reading, the counter was reset: `now` is new.
        self.total += if now >= self.last {
            now - self.last
        } else {
            now
        };
        self.last = now;
        self.total
    }
}

fn read_counter(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Frames `iface` dropped on sending (its `tx_dropped`): for a veth, those
/// its peer could not take (longer than the peer's MTU, or no room).
pub fn tx_dropped(iface: &str) -> Option<u64> {
    read_counter(&sysfs(iface).join("statistics/tx_dropped"))
}

/// Whether `iface` is administratively up (IFF_UP in its sysfs `flags`).
pub fn is_up(iface: &str) -> std::io::Result<bool> {
    let flags = std::fs::read_to_string(sysfs(iface).join("flags"))?;
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(flags & libc::IFF_UP as u32 != 0)
}

/// Whether `iface` has a link (its sysfs `carrier`); `None` where the
/// kernel does not say.
pub fn has_carrier(iface: &str) -> Option<bool> {
    read_counter(&sysfs(iface).join("carrier")).map(|c| c != 0)
}

/// The devices under `iface`, when it is built on others (a bond's slaves,
/// an Azure NIC's accelerated-networking VF, a VLAN device's parent):
/// sysfs links `lower_<name>`.
pub fn lower_devices(iface: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(sysfs(iface)) else {
        return Vec::new();
    };
    let mut lower: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|name| name.strip_prefix("lower_"))
                .map(str::to_owned)
        })
        .collect();
    lower.sort();
    lower
}

/// The rx queues of `iface` (from sysfs).
pub fn rx_queues(iface: &str) -> std::io::Result<u32> {
    let dir = sysfs(iface).join("queues");
    let n = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    Ok(n.max(1) as u32)
}

/// What `-i` may say instead of a name: the interface of the host's
/// default route, which node images name differently (`eth0`, `ens5` on
/// EKS's AL2023, `ens4` on GKE's Ubuntu), so that one DaemonSet serves
/// every node pool.
pub const DEFAULT_ROUTE: &str = "default-route";

/// The interface of the host's default route, from the kernel's main
/// routing table (`/proc/net/route`, else `/proc/net/ipv6_route`): the one
/// of lowest metric, up.
pub fn default_route_interface() -> std::io::Result<String> {
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    default_route_in(&v4, &v6).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "this host has no default route (/proc/net/route, /proc/net/ipv6_route)",
        )
    })
}

/// [`default_route_interface`] of the two tables' text.
fn default_route_in(v4: &str, v6: &str) -> Option<String> {
    const RTF_UP: u32 = 0x1;
    let hex = |field: &str| u32::from_str_radix(field, 16).ok();
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
    let ipv4 = v4.lines().skip(1).filter_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (iface, dest, flags, metric, mask) =
            (f.first()?, f.get(1)?, f.get(3)?, f.get(6)?, f.get(7)?);
        let default = hex(dest)? == 0 && hex(mask)? == 0 && hex(flags)? & RTF_UP != 0;
        default.then(|| {
            (
                metric.parse::<u32>().ok().unwrap_or(u32::MAX),
                iface.to_string(),
            )
        })
    });
    // Destination, its prefix length, source, its prefix length, next hop,
    // metric, refcount, use, flags, device; an unreachable default is lo's.
    let ipv6 = v6.lines().filter_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dest, len, metric, flags, iface) =
            (f.first()?, f.get(1)?, f.get(5)?, f.get(8)?, f.get(9)?);
        let default = dest.chars().all(|c| c == '0')
            && hex(len)? == 0
            && hex(flags)? & RTF_UP != 0
            && *iface != "lo";
        if !default {
            return None;
        }
        Some((hex(metric)?, iface.to_string()))
    });
    ipv4.min_by_key(|(metric, _)| *metric)
        .or_else(|| ipv6.min_by_key(|(metric, _)| *metric))
        .map(|(_, iface)| iface)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default route's interface, as the kernel writes its tables:
    /// the lowest metric of IPv4's, else of IPv6's (not an unreachable
    /// route's `lo`).
    #[test]
    fn the_default_route_s_interface() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  ens5\t000012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                  ens6\t00000000\t010012C6\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
                  ens5\t00000000\t010012C6\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
                  fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth9\n";
        assert_eq!(default_route_in(v4, v6).as_deref(), Some("ens5"));
        // No IPv4 default: IPv6's.
        let no_default = v4.lines().take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(default_route_in(&no_default, v6).as_deref(), Some("eth9"));
        // An unreachable default (lo), and none at all.
        let unreachable = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
                           00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert_eq!(default_route_in(&no_default, unreachable), None);
        assert_eq!(default_route_in("", ""), None);
    }

    #[test]
    fn counters_read_as_sysfs_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rx_missed_errors");
        std::fs::write(&path, "4242\n").unwrap();
        assert_eq!(read_counter(&path), Some(4242));
        std::fs::write(&path, "").unwrap();
        assert_eq!(read_counter(&path), None);
        assert_eq!(read_counter(&dir.path().join("absent")), None);
        // Loopback has the file (its count is 0 or more).
        assert!(rx_missed("lo").is_some());
        assert_eq!(rx_missed("no-such-interface"), None);
    }

    #[test]
    fn refused_frames_are_the_sum_of_the_counters_the_driver_keeps() {
        let dir = tempfile::tempdir().unwrap();
        // A driver that keeps none of them.
        assert_eq!(refused_in(dir.path()), None);
        std::fs::write(dir.path().join("rx_length_errors"), "7\n").unwrap();
        assert_eq!(refused_in(dir.path()), Some(7));
        std::fs::write(dir.path().join("rx_crc_errors"), "3\n").unwrap();
        std::fs::write(dir.path().join("rx_frame_errors"), "2\n").unwrap();
        // Counters of other losses are not among them.
        std::fs::write(dir.path().join("rx_missed_errors"), "100\n").unwrap();
        std::fs::write(dir.path().join("rx_dropped"), "100\n").unwrap();
        assert_eq!(refused_in(dir.path()), Some(12));
        assert!(rx_refused("lo").is_some());
        assert_eq!(rx_refused("no-such-interface"), None);
    }

    #[test]
    fn missed_frames_add_up_across_a_counter_reset() {
        let mut missed = CountSince::new(1000);
        assert_eq!(missed.read(1000), 0);
        assert_eq!(missed.read(1250), 250);
        // The driver reset its counters, then missed 40 more.
        assert_eq!(missed.read(40), 290);
        assert_eq!(missed.read(100), 350);
    }
}
