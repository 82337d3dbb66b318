//! What a thread that needs no privilege gives up.
//!
//! A live capture holds capabilities (BPF, NET_ADMIN, NET_RAW, IPC_LOCK:
//! from root, the file's, or systemd's ambient ones) for as long as it
//! runs: the thread that set the capture up detaches it at the end, and
//! follows its interface meanwhile. Capabilities are a thread's, and a new
//! thread takes its creator's; the threads that read what others send (a
//! client's HTTP request, an API server's answers, an inventory file) and
//! those that only count need none, and give them up as they start, so
//! that a flaw in them cannot use what the capture holds.

/// Gives up every capability of the calling thread (effective, permitted,
/// inheritable; the ambient ones go with them) and any gained by a later
/// `exec`. Nothing to give up is no error; a failure is logged (the thread
/// runs on, as it did before).
pub fn give_up_for_this_thread() {
    use rustix::thread::{CapabilitySet, CapabilitySets, set_capabilities, set_no_new_privs};
    let none = CapabilitySets {
        effective: CapabilitySet::empty(),
        permitted: CapabilitySet::empty(),
        inheritable: CapabilitySet::empty(),
    };
    if let Err(e) = set_capabilities(None, none) {
        tracing::warn!(error = %e, "a thread could not give up its capabilities");
    }
    if let Err(e) = set_no_new_privs(true) {
        tracing::warn!(error = %e, "a thread could not refuse new privileges");
    }
}
