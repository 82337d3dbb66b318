//! Synthetic captures with exact ground truth, for flowtap's tests and
//! benchmarks: a frame builder ([`frame`]), tunnels and mirror sessions to
//! carry frames in ([`tunnel`]), a pcap writer ([`pcap`]), and a workload
//! generator ([`workload`]) that records, for every flow it writes,
//! what a correct flow meter must report.
#![forbid(unsafe_code)]

pub mod flood;
pub mod frame;
pub mod pcap;
pub mod tunnel;
pub mod workload;

pub use workload::{FlowTruth, Generator, Spec, Truth};
