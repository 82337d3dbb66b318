//! See `hub::fuzzing::hub_feed`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hub::fuzzing::hub_feed(data));
