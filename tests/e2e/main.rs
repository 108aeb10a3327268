//! One test binary for the whole stack. Each test starts the components it
//! needs through the `stack` harness (free ports, its own folder, processes
//! that die with this binary), so tests run in parallel without sharing state.

mod backends;
mod events;
mod flow;
mod image_input;
mod migrations;
mod ratelimit;
mod runtimes;
mod support;
