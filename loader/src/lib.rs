//! Guest loaders: what a level does to start an unmodified kernel as its guest, as pure
//! functions from the kernel's bytes and a memory map to the pieces to copy and where.
//! [`linux`]: the Linux x86 boot protocol for a bzImage.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod linux;

/// Proptest settings for the fuzz tests: `TURTLES_FUZZ_CASES=N` overrides the case count.
#[cfg(test)]
fn fuzz_config(default: u32) -> proptest::test_runner::Config {
    let n =
        std::env::var("TURTLES_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    proptest::test_runner::Config {
        cases: n,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}
