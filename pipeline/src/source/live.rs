//! The options of a live source (XDP and AF_XDP, in the `xdp` crate),
//! defined here, in the crate everything depends on, so that the command
//! line and configuration file know them even in builds without live
//! capture. With the `clap` feature they are also command-line values.

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
    /// Driver mode, falling back to SKB (generic) mode.
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
