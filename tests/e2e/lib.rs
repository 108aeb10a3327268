//! The integration tests live in `e2e/main.rs` (one test binary); the
//! harness they share is the `stack` crate.

#![allow(clippy::expect_used, clippy::panic, reason = "integration tests fail by panicking, with the reason")]

pub mod bench;
