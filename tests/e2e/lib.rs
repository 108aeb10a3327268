//! The integration tests live in `e2e/main.rs` (one test binary); the
//! harness they share is the `stack` crate.

pub mod bench;
