//! Live capture: the XDP program (bpf/flowtap.bpf.c, compiled by build.rs and
//! embedded), loaded with aya ([`program`]); AF_XDP sockets per rx queue
//! through xdpilone ([`xsk`]); host mode's mirror veth ([`netdev`], over
//! [`netlink`]); the watched interface's state while capturing ([`link`]);
//! and the whole set-up as pipeline sources ([`live`]). Unsafe code lives only in
//! [`sys`] (raw system calls) and [`xsk`] (memory shared with the kernel).
#![deny(unsafe_code)]

pub mod error;
pub mod link;
pub mod live;
pub mod netdev;
pub mod netlink;
pub mod program;
#[allow(unsafe_code)]
pub mod sys;
#[allow(unsafe_code)]
pub mod xsk;

pub use error::LiveError;
pub use live::{LiveCapture, LiveConfig, LiveInfo, XskSource};
pub use pipeline::source::live::{Mode, Unbound, XdpAttach};
