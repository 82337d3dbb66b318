//! Benchmarks of flowtap against peer flow tools
