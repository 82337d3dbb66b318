//! See `pipeline::fuzzing::dissect_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pipeline::fuzzing::dissect_frame(data));
