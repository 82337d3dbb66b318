//! See `pipeline::fuzzing::read_capture`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pipeline::fuzzing::read_capture(data));
