//! Host mode's mirror: a veth pair flowtap creates next to the node's
//! interface. The node's traffic is cloned into one end; XDP and AF_XDP run
//! on the other. Built with iproute2's `ip`, so what flowtap does is what an
//! operator would type.
//!
//! Names derive from the watched interface's index (`ftm<ifindex>` for the
//! mirror end, `ftc<ifindex>` for the capture end), so a pair left behind by a
//! crashed run is recognised and replaced at the next start.

use std::process::Command;

use crate::error::LiveError;

fn ip(args: &[&str]) -> Result<(), LiveError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| LiveError::NetDev {
            what: format!("running `ip {}`", args.join(" ")),
            detail: format!("{e} (host mode needs iproute2's `ip`)"),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LiveError::NetDev {
            what: format!("`ip {}`", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

fn exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// The veth pair of host mode; removed on drop.
#[derive(Debug)]
pub struct MirrorVeth {
    /// The end the node's traffic is cloned into.
    pub mirror: String,
    /// The end flowtap captures on.
    pub capture: String,
    removed: bool,
}

impl MirrorVeth {
    pub fn names(watched_ifindex: u32) -> (String, String) {
        (
            format!("ftm{watched_ifindex}"),
            format!("ftc{watched_ifindex}"),
        )
    }

    /// Creates the pair with `queues` rx/tx queues, replacing a stale one.
    pub fn create(watched_ifindex: u32, queues: u32) -> Result<MirrorVeth, LiveError> {
        let (mirror, capture) = Self::names(watched_ifindex);
        if exists(&mirror) || exists(&capture) {
            tracing::warn!(%mirror, "removing a mirror veth left by an earlier run");
            let stale = if exists(&mirror) { &mirror } else { &capture };
            ip(&["link", "del", stale])?;
        }
        let q = queues.max(1).to_string();
        ip(&[
            "link",
            "add",
            &mirror,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &capture,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ])?;
        let pair = MirrorVeth {
            mirror,
            capture,
            removed: false,
        };
        for name in [&pair.mirror, &pair.capture] {
            // No addresses and no IPv6 autoconfiguration: the pair only
            // carries copies, it must never originate traffic.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
            ip(&["link", "set", "dev", name, "up"])?;
        }
        Ok(pair)
    }

    pub fn remove(&mut self) {
        if !self.removed {
            self.removed = true;
            // Deleting one end deletes both.
            if let Err(e) = ip(&["link", "del", &self.mirror]) {
                tracing::warn!(error = %e, "removing the mirror veth");
            }
        }
    }
}

impl Drop for MirrorVeth {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The rx queues of `iface` (from sysfs).
pub fn rx_queues(iface: &str) -> std::io::Result<u32> {
    let dir = std::path::Path::new("/sys/class/net")
        .join(iface)
        .join("queues");
    let n = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    Ok(n.max(1) as u32)
}
