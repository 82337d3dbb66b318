//! Planted faults, for the tests of what a failure does: with
//! `FLOWTAP_FAULT=panic-after-frames:N`, the worker reading the capture
//! panics after N frames. It lets those tests run the real binary; unset
//! (always, outside tests), sources are used as they are.

use std::sync::Arc;

use pipeline::{Frame, PacketSource, Poll, SourceWaker};

/// Wraps `source` in the fault the environment asks for, if any.
pub(crate) fn planted<S: PacketSource>(source: S) -> anyhow::Result<Faulty<S>> {
    let panic_after = match std::env::var("FLOWTAP_FAULT") {
        Err(_) => None,
        Ok(fault) => Some(
            fault
                .strip_prefix("panic-after-frames:")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "FLOWTAP_FAULT={fault:?}: the one fault is panic-after-frames:N"
                    )
                })?,
        ),
    };
    Ok(Faulty {
        inner: source,
        panic_after,
        frames: 0,
    })
}

pub(crate) struct Faulty<S> {
    inner: S,
    panic_after: Option<u64>,
    frames: u64,
}

impl<S: PacketSource> PacketSource for Faulty<S> {
    fn poll<F: FnMut(Frame<'_>)>(&mut self, mut on_frame: F) -> Poll {
        let Some(limit) = self.panic_after else {
            return self.inner.poll(on_frame);
        };
        let frames = &mut self.frames;
        self.inner.poll(|frame| {
            assert!(*frames < limit, "planted fault after {limit} frames");
            *frames += 1;
            on_frame(frame);
        })
    }

    fn waker(&self) -> Option<Arc<dyn SourceWaker>> {
        self.inner.waker()
    }
}
