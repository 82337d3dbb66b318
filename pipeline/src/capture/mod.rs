//! Reading packets from capture files (pcap and pcapng), frame by frame.

pub mod compressed;
pub mod file;
pub mod pipe;

pub use file::{
    CaptureError, CaptureFile, MAX_INTERFACES, MAX_RECORD_BYTES, MAX_UNREADABLE_LISTED,
    UnreadableInterface,
};
