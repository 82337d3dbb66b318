//! The embedded BPF object (bpf/flowtap.bpf.c), loaded and attached with aya.
//! Attachments are BPF links: they disappear with the process, even when it
//! is killed, so a crash never leaves an XDP or TC program behind.

use std::io;

use aya::maps::{MapData, PerCpuArray, XskMap};
use aya::programs::links::LinkOrder;
use aya::programs::tc::TcAttachOptions;
use aya::programs::{ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader, include_bytes_aligned};

use pipeline::source::live::{Unbound, XdpAttach};

use crate::error::LiveError;
use crate::xsk::XskFd;

static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowtap.bpf.o"));

const XDP_PROGRAM: &str = "flowtap_xdp";
/// The same program, for frames in several buffers (multi-buffer XDP).
const XDP_FRAGS_PROGRAM: &str = "flowtap_xdp_frags";
const TC_PROGRAM: &str = "flowtap_mirror";
const XSK_MAP: &str = "flowtap_xsks";
const UNBOUND_MAP: &str = "flowtap_unbound_frames";

/// The XDP program's count of frames on rx queues without a socket.
pub struct UnboundFrames(PerCpuArray<MapData, u64>);

impl UnboundFrames {
    /// The count, summed over the CPUs (0 if it cannot be read).
    pub fn read(&self) -> u64 {
        self.0.get(&0, 0).map_or(0, |per_cpu| per_cpu.iter().sum())
    }
}

pub fn mode_name(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Driver => "driver",
        XdpMode::Skb => "skb",
        XdpMode::Hardware => "hardware",
        XdpMode::Default => "default",
    }
}

pub struct Programs {
    ebpf: Ebpf,
}

fn busy(e: &ProgramError) -> bool {
    // EBUSY from a driver-mode link, EEXIST from SKB mode.
    let raw =
        |err: &io::Error| matches!(err.raw_os_error(), Some(libc::EBUSY) | Some(libc::EEXIST));
    match e {
        ProgramError::SyscallError(s) => raw(&s.io_error),
        ProgramError::XdpError(aya::programs::xdp::XdpError::NetlinkError(n)) => {
            let text = n.to_string();
            text.contains("busy") || text.contains("exists")
        }
        _ => false,
    }
}

impl Programs {
    /// Loads the object with its constants set (before the verifier runs).
    pub fn load(unbound: Unbound, mirror_ifindex: u32) -> Result<Programs, LiveError> {
        let action: u32 = match unbound {
            Unbound::Pass => 2, // XDP_PASS
            Unbound::Drop => 1, // XDP_DROP
        };
        let ebpf = EbpfLoader::new()
            .override_global("flowtap_unbound_action", &action, true)
            .override_global("flowtap_mirror_ifindex", &mirror_ifindex, true)
            .load(OBJECT)
            .map_err(|e| LiveError::Load(Box::new(e)))?;
        Ok(Programs { ebpf })
    }

    /// The object's XDP program `name`.
    fn xdp(&mut self, name: &'static str) -> Result<&mut Xdp, LiveError> {
        self.ebpf
            .program_mut(name)
            .ok_or(LiveError::Missing(name))?
            .try_into()
            .map_err(|e| LiveError::Program {
                program: name,
                source: Box::new(e),
            })
    }

    /// Loads the XDP program: the multi-buffer one where the kernel takes
    /// it (5.18 on) and `multi_buffer` allows it, else the single-buffer
    /// one. Returns its name.
    fn load_xdp(&mut self, multi_buffer: bool) -> Result<&'static str, LiveError> {
        let mut last = None;
        let names: &[&'static str] = if multi_buffer {
            &[XDP_FRAGS_PROGRAM, XDP_PROGRAM]
        } else {
            &[XDP_PROGRAM]
        };
        for &name in names {
            let loaded = self.xdp(name).and_then(|program| {
                program.load().map_err(|e| LiveError::Program {
                    program: name,
                    source: Box::new(e),
                })
            });
            match loaded {
                Ok(()) => return Ok(name),
                Err(e) => {
                    tracing::debug!(program = name, error = %e, "XDP program not loaded");
                    last = Some(e);
                }
            }
        }
        Err(last.expect("a program was tried"))
    }

    /// Attaches the XDP program to `iface` (the multi-buffer one if
    /// `allow_multi_buffer` and the kernel takes it); returns the mode used
    /// and whether the program takes frames in several buffers.
    pub fn attach_xdp(
        &mut self,
        iface: &str,
        choice: XdpAttach,
        allow_multi_buffer: bool,
    ) -> Result<(XdpMode, bool), LiveError> {
        let name = self.load_xdp(allow_multi_buffer)?;
        let multi_buffer = name == XDP_FRAGS_PROGRAM;
        let program = self.xdp(name)?;
        let modes: &[XdpMode] = match choice {
            XdpAttach::Auto => &[XdpMode::Driver, XdpMode::Skb],
            XdpAttach::Driver => &[XdpMode::Driver],
            XdpAttach::Skb => &[XdpMode::Skb],
        };
        let mut last = None;
        for &mode in modes {
            match program.attach(iface, mode) {
                Ok(_) => return Ok((mode, multi_buffer)),
                Err(e) if busy(&e) => {
                    return Err(LiveError::XdpBusy {
                        iface: iface.to_owned(),
                    });
                }
                Err(e) => {
                    if choice == XdpAttach::Auto && mode == XdpMode::Driver {
                        tracing::warn!(%iface, error = %e, "XDP driver mode unavailable; falling back to SKB (generic) mode");
                    }
                    last = Some(LiveError::XdpAttach {
                        iface: iface.to_owned(),
                        mode: mode_name(mode),
                        source: Box::new(e),
                    });
                }
            }
        }
        Err(last.expect("at least one mode was tried"))
    }

    /// The count of frames on rx queues without a socket, taken out of the
    /// object (to be read by a worker while the programs stay here).
    pub fn unbound_frames(&mut self) -> Result<UnboundFrames, LiveError> {
        let map = self
            .ebpf
            .take_map(UNBOUND_MAP)
            .ok_or(LiveError::Missing(UNBOUND_MAP))?;
        PerCpuArray::try_from(map)
            .map(UnboundFrames)
            .map_err(|e| LiveError::Map {
                map: UNBOUND_MAP,
                source: Box::new(e),
            })
    }

    /// Sends frames of rx queue `queue` to the socket `fd`.
    pub fn bind_queue(&mut self, queue: u32, fd: XskFd) -> Result<(), LiveError> {
        let map = self
            .ebpf
            .map_mut(XSK_MAP)
            .ok_or(LiveError::Missing(XSK_MAP))?;
        let mut xsks: XskMap<_> = XskMap::try_from(map).map_err(|e| LiveError::XskMap {
            queue,
            source: Box::new(e),
        })?;
        xsks.set(queue, fd, 0).map_err(|e| LiveError::XskMap {
            queue,
            source: Box::new(e),
        })
    }

    /// Host mode: mirrors `iface`'s ingress and egress to the interface
    /// given at load time, first in each TCX chain. TCX ends a chain at any
    /// verdict but TCX_NEXT, and a CNI's programs (Cilium's) end it with
    /// TC_ACT_OK or redirect: a mirror placed after them would never see
    /// what they let go. First, it sees each packet as the node's stack
    /// sends it, before a CNI's program rewrites it (masquerading).
    pub fn attach_mirror(&mut self, iface: &str) -> Result<(), LiveError> {
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(TC_PROGRAM)
            .ok_or(LiveError::Missing(TC_PROGRAM))?
            .try_into()
            .map_err(|e| LiveError::Program {
                program: TC_PROGRAM,
                source: Box::new(e),
            })?;
        program.load().map_err(|e| LiveError::Program {
            program: TC_PROGRAM,
            source: Box::new(e),
        })?;
        for (attach, order, direction) in [
            (TcAttachType::Ingress, LinkOrder::first(), "ingress"),
            (TcAttachType::Egress, LinkOrder::first(), "egress"),
        ] {
            program
                .attach_with_options(iface, attach, TcAttachOptions::TcxOrder(order))
                .map_err(|e| {
                    // TCX links came with Linux 6.6; on an older kernel the
                    // attach fails with EINVAL, which says nothing of that.
                    let before_tcx = aya::util::KernelVersion::current()
                        .is_ok_and(|v| v < aya::util::KernelVersion::new(6, 6, 0));
                    if before_tcx {
                        LiveError::HostModeNeedsTcx {
                            iface: iface.to_owned(),
                        }
                    } else {
                        LiveError::TcAttach {
                            iface: iface.to_owned(),
                            direction,
                            source: Box::new(e),
                        }
                    }
                })?;
        }
        Ok(())
    }
}
