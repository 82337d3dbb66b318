//! Software prefetch: asking for the cache lines of something a few steps
//! before it is read, so that the misses of a batch's packets overlap
//! instead of each waiting its turn ([`crate::flow::FlowTable::update_batch`]).
//!
//! The one `unsafe` of this crate: `_mm_prefetch` is an intrinsic that Rust
//! still wants called in an `unsafe` block. A prefetch is a hint: it reads
//! nothing into the program, changes no state it can observe, and cannot
//! fault, whatever the address. Elsewhere than x86-64 it does nothing.

/// Bytes of a cache line on the machines flowtap runs on.
const LINE: usize = 64;

/// Asks for every cache line `value` occupies.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    let start = (value as *const T).cast::<u8>();
    // The lines of the first and the last byte, and every one between
    // (a constant count: the loop unrolls).
    let lines = size_of::<T>().div_ceil(LINE);
    for i in 0..lines {
        line(start.wrapping_add(i * LINE));
    }
    if size_of::<T>() > 1 {
        line(start.wrapping_add(size_of::<T>() - 1));
    }
}

#[inline(always)]
fn line(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` dereferences nothing: an address it cannot
    // translate is ignored, and the addresses given here are inside (or one
    // byte short of the end of) a live reference anyway. SSE, which it
    // needs, is part of the x86-64 baseline.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
