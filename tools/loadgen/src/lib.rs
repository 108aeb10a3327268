//! A load generator for the image services. See `loadgen --help` and the
//! README's "Load" section.
//!
//! - [`cli`]: the arguments, checked into a [`cli::Plan`].
//! - [`schedule`]: the open-loop timeline (rate, ramp).
//! - [`target`]: endpoints, the weighted mix, addressing, request building.
//! - [`run`]: the engine (open and closed loop, in-flight cap, progress).
//! - [`stats`]: histograms, counts, the report (text and JSON), checks.
//! - [`verify`]: the events count before and after.

pub mod cli;
pub mod error;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod target;
pub mod verify;

pub use error::Error;
