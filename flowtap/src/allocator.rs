//! The allocator: mimalloc rather than glibc's malloc (a hub rebuilds
//! millions of flow records a second, and glibc spent a quarter of that
//! time freeing and consolidating, and kept freed memory mapped;
//! BENCHMARKS.md, hub), and the one setting the hub changes in it.
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
