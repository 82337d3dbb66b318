//! The options of a live source (XDP and AF_XDP, in the `xdp` crate),
//! defined here, in the crate everything depends on, so that the command
//! line and configuration file know them even in builds without live
//! capture. With the `clap` feature they are also command-line values.

/// The AF_XDP buffer (UMEM frame) sizes flowtap uses, smallest first: the
/// kernel takes any power of two from 2048 to the page size for aligned
/// frames, and keeps 256 bytes of each in front of the frame it writes. 2048
/// receives a frame of an Ethernet MTU (1776 bytes, the XDP program's
/// 16-byte stamp in front: 1500 and two VLAN tags fit) at half the locked
/// memory of a page.
pub const FRAME_SIZES: [u32; 2] = [2048, 4096];

/// Where flowtap sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Mode {
    /// The interface is a dedicated mirror (SPAN/TAP) port; its frames are
    /// consumed.
    Span,
    /// The interface carries the node's own traffic, which must flow on
    /// untouched: it is mirrored to a veth pair and captured there.
    Host,
}

/// How to attach XDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum XdpAttach {
    /// Driver mode, falling back to SKB (generic) mode; SKB mode on an
    /// interface built on others (a bond, an Azure NIC's VF under it).
    Auto,
    Driver,
    Skb,
}

/// What XDP does with frames of rx queues that have no socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Unbound {
    Pass,
    Drop,
}
