//! Reading packets from capture files (pcap and pcapng), frame by frame.

pub mod file;
pub mod source;

pub use file::{CaptureError, CaptureFile, Frame};
pub use source::{FileOutcome, FileReport, FileSource};
