//! One test binary for the whole stack. Each test starts the components it
//! needs through the `stack` harness (free ports, its own folder, processes
//! that die with this binary), so tests run in parallel without sharing state.

#![allow(clippy::expect_used, clippy::panic, reason = "integration tests fail by panicking, with the reason")]

mod backends;
mod compose;
mod events;
mod faults;
mod flow;
mod hostile;
mod image_input;
mod in_process;
mod loadgen;
mod migrations;
mod observability;
mod ratelimit;
mod recording;
mod runtimes;
mod security;
mod supervise;
mod support;
mod web;
