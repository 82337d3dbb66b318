//! Reading packets from capture files (pcap and pcapng), frame by frame.

pub mod file;
pub mod source;

pub use file::{CaptureError, CaptureFile, Frame, MAX_RECORD_BYTES};
pub use source::{FileOutcome, FileReport, FileSource};
