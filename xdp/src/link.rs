//! The watched interface while capturing. Whether frames can arrive at all
//! (up, with a link: the start refuses an interface that is down, and one
//! that goes down later must not read as a quiet network), and in host
//! mode the mirror veth kept as wide as the watched interface (a veth drops
//! a frame longer than its MTU, so jumbo frames after an MTU change would
//! be lost) with what it dropped counted. The first queue's worker checks,
//! with its socket's counters, four times a second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{netdev, netlink, sys};

/// What the check finds, for readiness, metrics and the coverage.
#[derive(Debug)]
pub struct LinkState {
    /// The watched interface is up with a link (or says nothing of its
    /// link): frames can arrive.
    pub up: AtomicBool,
    /// Host mode: frames the mirror veth dropped before capture since it
    /// was made (counted in capture_drops).
    pub mirror_dropped: AtomicU64,
}

impl LinkState {
    pub(crate) fn new() -> LinkState {
        LinkState {
            up: AtomicBool::new(true),
            mirror_dropped: AtomicU64::new(0),
        }
    }
}

/// Host mode's pair, as the check keeps it.
#[derive(Debug)]
pub(crate) struct MirrorPair {
    /// The end the node's traffic is cloned into, and the end captured.
    pub mirror: String,
    pub capture: String,
    /// The MTU both ends have.
    pub mtu: u32,
}

/// The check, held by the first queue's source, which gives it the
/// watched interface's name at each check: the name it has then, looked up
/// by its index, as an operator may rename it while it is captured (the
/// sockets go on receiving; by its old name the check read nothing,
/// readiness stuck at what it was and the mirror veth no longer followed
/// the MTU).
#[derive(Debug)]
pub(crate) struct LinkWatch {
    mirror: Option<MirrorPair>,
    /// An MTU the pair could not take: said once, not tried again.
    refused_mtu: Option<u32>,
}

/// Whether frames can arrive on `iface`; `None` when it cannot be read
/// (gone, or renamed since its name was looked up: the sockets' failure
/// says the first, the next check reads the second).
fn can_receive(iface: &str) -> Option<bool> {
    let up = netdev::is_up(iface).ok()?;
    Some(up && netdev::has_carrier(iface) != Some(false))
}

impl LinkWatch {
    pub(crate) fn new(mirror: Option<MirrorPair>) -> LinkWatch {
        LinkWatch {
            mirror,
            refused_mtu: None,
        }
    }

    pub(crate) fn check(&mut self, iface: &str, state: &LinkState) {
        // In host mode frames reach capture through the pair as well: an
        // end set down (by an operator, a network manager) stops them.
        let pair = self.mirror.as_ref().map_or(Some(true), |pair| {
            Some(can_receive(&pair.mirror)? && can_receive(&pair.capture)?)
        });
        let up = match (can_receive(iface), pair) {
            (Some(watched), Some(pair)) => Some(watched && pair),
            _ => None,
        };
        if let Some(up) = up
            && state.up.swap(up, Ordering::Relaxed) != up
        {
            if up {
                tracing::info!(interface = %iface, "the interface is up with a link again: capturing");
            } else {
                tracing::warn!(
                    interface = %iface,
                    "the interface (or in host mode its mirror veth) went down or lost its link: \
                     nothing arrives until it is back, and /readyz answers 503 meanwhile \
                     (flowtap_interfaces_down)"
                );
            }
        }
        if let Some(pair) = &mut self.mirror {
            if let Some(dropped) = netdev::tx_dropped(&pair.mirror) {
                state.mirror_dropped.store(dropped, Ordering::Relaxed);
            }
            follow_mtu(iface, pair, &mut self.refused_mtu);
        }
    }
}

/// Gives the pair the watched interface's MTU when it changed.
fn follow_mtu(iface: &str, pair: &mut MirrorPair, refused: &mut Option<u32>) {
    let Ok(mtu) = netdev::mtu(iface).map(|mtu| mtu.min(netdev::VETH_MAX_MTU)) else {
        return;
    };
    if mtu == pair.mtu || *refused == Some(mtu) {
        return;
    }
    // The captured end first when widening (a frame the mirror end takes
    // must fit it), the mirror end first when narrowing.
    let order = if mtu > pair.mtu {
        [&pair.capture, &pair.mirror]
    } else {
        [&pair.mirror, &pair.capture]
    };
    let set_mtu = |name: &String, mtu: u32| {
        sys::if_index(name).and_then(|index| netlink::set_mtu(index, mtu))
    };
    let set = set_mtu(order[0], mtu).and_then(|()| {
        set_mtu(order[1], mtu).inspect_err(|_| {
            // Both ends or neither: a pair of two MTUs drops or passes
            // frames by the receiving end's, which no warning describes.
            let _ = set_mtu(order[0], pair.mtu);
        })
    });
    match set {
        Ok(()) => {
            tracing::info!(interface = %iface, mtu, was = pair.mtu, "the interface's MTU changed: the mirror veth follows");
            pair.mtu = mtu;
            *refused = None;
        }
        Err(e) => {
            tracing::warn!(
                interface = %iface,
                mtu,
                error = %e,
                "the interface's MTU changed and the mirror veth could not follow (an XDP program \
                 without multi-buffer caps it): frames longer than {} bytes are dropped there \
                 (flowtap_mirror_veth_dropped_frames, counted in capture_drops); tried again when \
                 the MTU changes",
                pair.mtu
            );
            *refused = Some(mtu);
        }
    }
}
