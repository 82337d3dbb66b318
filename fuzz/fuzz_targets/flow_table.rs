//! See `pipeline::fuzzing::flow_table`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pipeline::fuzzing::flow_table(data));
