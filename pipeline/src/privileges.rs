//! What a thread that needs no privilege gives up.
//!
//! A live capture holds capabilities (BPF, NET_ADMIN, NET_RAW, IPC_LOCK:
//! from root, the file's, or systemd's ambient ones) for as long as it
//! runs: the thread that set the capture up detaches it at the end, and
//! the capture workers follow the interface (its MTU) meanwhile.
//! Capabilities are a thread's, and a new thread takes its creator's; the
//! threads that read what others send (a client's HTTP request, an API
//! server's answers, an inventory file) and those that only count need
//! none but reading the files an operator names, and give the rest up as
//! they start, so that a flaw in them cannot use what the capture holds.

use rustix::thread::{CapabilitySet, CapabilitySets, capabilities, set_capabilities};

/// Gives up every capability of the calling thread (effective, permitted,
/// inheritable; the ambient ones go with them) and any gained by a later
/// `exec`.
pub fn give_up_for_this_thread() {
    keep_only(CapabilitySet::empty());
}

/// [`give_up_for_this_thread`], but reading any file (DAC_READ_SEARCH),
/// where the thread had it: a thread that reads files an operator names
/// (a kubeconfig, an inventory) reads them as the process could at start
/// (root reads a file of another user's).
pub fn give_up_all_but_reading_files() {
    keep_only(CapabilitySet::DAC_READ_SEARCH);
}

/// For a capture worker: the capture's own capabilities (its interface
/// followed: the mirror's MTU set, NET_ADMIN) and reading files, none
/// else (as root, it held every one).
pub fn keep_only_the_capture_s() {
    keep_only(
        CapabilitySet::BPF
            | CapabilitySet::NET_ADMIN
            | CapabilitySet::NET_RAW
            | CapabilitySet::IPC_LOCK
            | CapabilitySet::DAC_READ_SEARCH,
    );
}

/// Keeps of the calling thread's capabilities those in `kept` it has.
/// Nothing to give up is no error; a failure is logged (the thread runs
/// on, as it did before).
fn keep_only(kept: CapabilitySet) {
    let held = capabilities(None).map_or(CapabilitySet::empty(), |sets| sets.permitted);
    let sets = CapabilitySets {
        effective: held & kept,
        permitted: held & kept,
        inheritable: CapabilitySet::empty(),
    };
    if let Err(e) = set_capabilities(None, sets) {
        tracing::warn!(error = %e, "a thread could not give up its capabilities");
    }
    if let Err(e) = rustix::thread::set_no_new_privs(true) {
        tracing::warn!(error = %e, "a thread could not refuse new privileges");
    }
}
