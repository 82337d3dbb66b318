//! The allocator: mimalloc rather than glibc's malloc (a hub rebuilds
//! millions of flow records a second, and glibc spent a quarter of that
//! time freeing and consolidating, and kept freed memory mapped;
//! BENCHMARKS.md, hub), and what each role changes in its use of memory:
//! the hub gives freed memory back at once, a capture goes without
//! transparent huge pages.
//!
//! This module holds the binary's only `unsafe`: mimalloc's option setter,
//! which the `mimalloc` crate does not wrap.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_long};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`: its place in mimalloc 3's `mi_option_t`, as
/// libmimalloc-sys builds it (the crate names only some options, not this
/// one). The test below checks it against the library.
const PURGE_DELAY: c_int = 15;

// The functions of mimalloc's option table, in the library the `mimalloc`
// crate links.
unsafe extern "C" {
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// Gives memory back to the system as soon as it is freed, rather than a
/// second later (mimalloc 3's default). A hub frees one merged snapshot and
/// builds the next every round, and with the delay both stay resident:
/// 32 agents x 50,000 flows, peak RSS 2.97 -> 2.29 GiB, rounds no slower
/// (BENCHMARKS.md, hub). Not for an agent, whose tables live on. An
/// explicit `MIMALLOC_PURGE_DELAY` in the environment is left alone.
///
/// Call it before any thread is started.
pub(crate) fn return_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` writes two integers of one entry of
    // mimalloc's option table (no pointers; an out-of-range option is
    // ignored). It is not thread safe: this runs on the main thread before
    // the hub starts any other.
    unsafe { mi_option_set(PURGE_DELAY, 0) }
}

/// Turns transparent huge pages off for this process (`prctl(2)`
/// `PR_SET_THP_DISABLE`), for a capture (`-r`, `-i`).
///
/// mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), and with
/// the kernel's default `defrag` setting (`madvise`) a page fault in such
/// an arena waits while the kernel compacts memory to find 2 MiB free: on
/// a host whose memory other work has fragmented, a capture's growing
/// tables spent most of their time there. `-r` on one thread, this host,
/// alternated: synthetic-3M 1.30 and 4.99 s (0.54 and 4.15 s of system
/// time) with them against 1.29-1.31 s without; synthetic-10M 7.73 and
/// 16.98 s against 6.05-6.35; realistic-3.2M 1.49-2.23 s against
/// 1.70-1.71, and peak RSS 12-20% lower without (BENCHMARKS.md, memory).
/// A capture worker must not stall so (its ring fills meanwhile); the
/// fewer TLB misses of huge pages were worth 0.15 s of user time a run,
/// less than the stalls cost. The hub keeps them: its rounds are a little
/// faster with them (BENCHMARKS.md, hub). `MIMALLOC_ALLOW_THP` in the
/// environment (mimalloc's own switch) is left to decide.
pub(crate) fn without_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        // Kernels before 3.15 have no such flag: huge pages as before.
        tracing::debug!(error = %e, "transparent huge pages left on");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option at `PURGE_DELAY` is the purge delay: mimalloc 3 defaults
    /// it to 1000 ms, and no neighbouring option to that (a libmimalloc-sys
    /// upgrade that moves the table fails here, not in a hub's memory).
    #[test]
    fn purge_delay_is_the_option_it_names() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            panic!("unset MIMALLOC_PURGE_DELAY to run this test: it reads the default");
        }
        // SAFETY: reads one integer of mimalloc's option table; the index
        // is in range (checked by the library too).
        let default = unsafe { mi_option_get(PURGE_DELAY) };
        assert_eq!(default, 1000, "mimalloc's option {PURGE_DELAY}");
        // SAFETY: as above.
        let neighbours = unsafe {
            [
                mi_option_get(PURGE_DELAY - 1),
                mi_option_get(PURGE_DELAY + 1),
            ]
        };
        assert!(!neighbours.contains(&1000), "{neighbours:?}");
    }
}
