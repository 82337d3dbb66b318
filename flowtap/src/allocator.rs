//! The allocator: mimalloc rather than glibc's malloc (a hub rebuilds
//! millions of flow records a second, and glibc spent a quarter of that
//! time freeing and consolidating, and kept freed memory mapped;
//! BENCHMARKS.md, hub), and what each role changes in its use of memory:
//! the hub gives freed memory back at once, a capture and a hub go
//! without transparent huge pages.
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
/// `PR_SET_THP_DISABLE`), for a capture (`-r`, `-i`) and a hub.
///
/// mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), so each
/// first touch of 2 MiB of a capture's growing tables is a fault that
/// zeroes all of it, and where those faults are slow a worker stalls (its
/// ring fills meanwhile). On this host, a VM whose balloon reports freed
/// memory to the hypervisor (free page reporting hands back whole 2 MiB
/// blocks, which the hypervisor must fault in again), a third of a slow
/// run's samples were that zeroing (`clear_page_erms` under
/// `do_huge_pmd_anonymous_page`; no compaction stalls counted). `-r` on one
/// thread, alternated (BENCHMARKS.md, memory): synthetic-3M 1.14-1.31 s
/// with huge pages in three of five runs, 2.87 and 4.99 s in two (1.4 and
/// 4.2 s of system time), against 1.23-1.56 s without; synthetic-10M
/// 6.95-7.73 s, and 13.8 and 17.0 s in two of five, against 6.05-8.25;
/// realistic-3.2M 1.49-2.52 s (one run 5.5) against 1.67-1.77. Without
/// them a run takes 5-15% more user time (more TLB misses) and 8-15% less
/// peak RSS. On hosts whose kernel compacts memory to find huge pages
/// (`defrag` set so), the same faults wait for that instead (not measured
/// here). A hub, which builds hundreds of MB of records a round, went
/// from 3.0-4.9 s rounds to 1.8-2.0 s without them on that host, peak RSS
/// 1544-1564 -> 1507-1512 MiB (32 agents x 50,000 flows, alternated;
/// BENCHMARKS.md, hub: "Chunks reused by the merge"); on a host without
/// that balloon an earlier session measured its rounds 10-20% faster with
/// them, a smaller stake than the stalls. `MIMALLOC_ALLOW_THP` in the
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
