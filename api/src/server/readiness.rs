//! What `/readyz` says: ready, or why not. A probe reads the status code
//! alone; an operator who asks by hand reads the reason, so each way of
//! not being ready says its own (a mirror port gone down is not a start).

use std::sync::atomic::{AtomicU8, Ordering};

/// Whether the service is ready for clients, and if not, why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Readiness {
    /// Live capture not attached yet, or capture files still being read.
    Starting = 0,
    Ready = 1,
    /// An interface of `-i` is down or without a link: nothing arrives
    /// from it.
    InterfaceDown = 2,
    /// Capture failed (a worker died, a socket broke, a worker stopped
    /// answering); flowtap is on its way out.
    CaptureFailed = 3,
    /// A stop signal came; flowtap is shutting down.
    Stopping = 4,
}

impl Readiness {
    /// The `status` of `/readyz`'s answer.
    pub fn says(self) -> &'static str {
        match self {
            Readiness::Starting => "starting",
            Readiness::Ready => "ready",
            Readiness::InterfaceDown => "interface down",
            Readiness::CaptureFailed => "capture failed",
            Readiness::Stopping => "stopping",
        }
    }

    fn from_u8(value: u8) -> Readiness {
        [
            Readiness::Starting,
            Readiness::Ready,
            Readiness::InterfaceDown,
            Readiness::CaptureFailed,
            Readiness::Stopping,
        ]
        .into_iter()
        .find(|r| *r as u8 == value)
        .unwrap_or(Readiness::Starting)
    }
}

/// The service's [`Readiness`], set by whoever runs capture and read by
/// `/readyz` and `flowtap_ready`.
#[derive(Debug, Default)]
pub struct ReadinessCell(AtomicU8);

impl ReadinessCell {
    pub fn set(&self, readiness: Readiness) {
        self.0.store(readiness as u8, Ordering::Release);
    }

    pub fn get(&self) -> Readiness {
        Readiness::from_u8(self.0.load(Ordering::Acquire))
    }

    pub fn is_ready(&self) -> bool {
        self.get() == Readiness::Ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_reads_back_as_set() {
        let cell = ReadinessCell::default();
        assert_eq!(cell.get(), Readiness::Starting);
        for r in [
            Readiness::Ready,
            Readiness::InterfaceDown,
            Readiness::CaptureFailed,
            Readiness::Stopping,
            Readiness::Starting,
        ] {
            cell.set(r);
            assert_eq!(cell.get(), r);
            assert_eq!(cell.is_ready(), r == Readiness::Ready);
        }
    }
}
