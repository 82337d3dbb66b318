//! Planted faults, for the tests of what a failure does: with
//! `FLOWTAP_FAULT=panic-after-frames:N`, the worker reading a capture (a
//! file or a live queue) panics after N frames; with
//! `hang-after-frames:N`, it stops answering after N frames, as a worker
//! stuck in a loop or a syscall would. It lets those tests run the real
//! binary; unset (always, outside tests), sources are used as they are.
//! Only debug builds (the tests') read it: a release binary, as shipped,
//! ignores the variable, so that no environment can plant a fault in a
//! production capture.

use std::sync::Arc;
use std::time::Duration;

use pipeline::{Frame, PacketSource, Poll, SourceWaker};

#[derive(Clone, Copy)]
enum Fault {
    PanicAfter(u64),
    HangAfter(u64),
}

/// Wraps `source` in the fault the environment asks for, if any.
pub(crate) fn planted<S: PacketSource>(source: S) -> anyhow::Result<Faulty<S>> {
    let planted_by_tests = cfg!(debug_assertions);
    let fault = match std::env::var("FLOWTAP_FAULT") {
        _ if !planted_by_tests => None,
        Err(_) => None,
        Ok(fault) => {
            let after = |prefix: &str| fault.strip_prefix(prefix).and_then(|n| n.parse().ok());
            let planted = after("panic-after-frames:")
                .map(Fault::PanicAfter)
                .or_else(|| after("hang-after-frames:").map(Fault::HangAfter));
            Some(planted.ok_or_else(|| {
                anyhow::anyhow!(
                    "FLOWTAP_FAULT={fault:?}: the faults are panic-after-frames:N and \
                     hang-after-frames:N"
                )
            })?)
        }
    };
    Ok(Faulty {
        inner: source,
        fault,
        frames: 0,
    })
}

pub(crate) struct Faulty<S> {
    inner: S,
    fault: Option<Fault>,
    frames: u64,
}

impl<S: PacketSource> PacketSource for Faulty<S> {
    fn poll<F: FnMut(Frame<'_>)>(&mut self, mut on_frame: F) -> Poll {
        let Some(fault) = self.fault else {
            return self.inner.poll(on_frame);
        };
        if let Fault::HangAfter(limit) = fault
            && self.frames >= limit
        {
            // Stuck for good: the process ends around it.
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        let frames = &mut self.frames;
        self.inner.poll(|frame| {
            if let Fault::PanicAfter(limit) = fault {
                assert!(*frames < limit, "planted fault after {limit} frames");
            }
            *frames += 1;
            on_frame(frame);
        })
    }

    fn waker(&self) -> Option<Arc<dyn SourceWaker>> {
        self.inner.waker()
    }
}
