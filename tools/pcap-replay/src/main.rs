//! Replays capture files onto an interface

fn main() {}
