//! `cargo run -- bench ...`: benchmarks under Bochs, counting deterministic things (VM exits,
//! Bochs ticks) rather than wall time.
