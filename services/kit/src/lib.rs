//! The one shared library every service is built on.
//!
//! A service crate holds its domain; everything about being a service in this
//! stack lives here, so a reader who knows one service knows all three:
//! - [`config`]: typed settings from the environment, validated at start-up;
//! - [`http`]: the request path (route, limits, deadlines, JSON errors) and
//!   the accept loop with graceful shutdown;
//! - [`dapr`]: the Dapr HTTP API client (invoke, state, secrets, health);
//! - [`metrics`]: Prometheus metrics in the default registry, `GET /metrics`;
//! - [`ratelimit`]: per-client token buckets in Dapr state, before the handler;
//! - [`trace`]: W3C trace context carried through Dapr;
//! - [`app`]: a bound, routed service ready to run;
//! - [`record`]: what image services record through Dapr after a success;
//! - [`spool`]: events not recorded at once, kept in Dapr state until delivered;
//! - [`memory`]: the memory budget bodies and decodes reserve from;
//! - [`rt`]: the few places native and WASI differ;
//! - [`imaging`] (feature `imaging`): image intake with pixel limits.

pub mod app;
pub mod config;
pub mod dapr;
pub mod error;
pub mod http;
#[cfg(feature = "imaging")]
pub mod image_service;
#[cfg(feature = "imaging")]
pub mod imaging;
pub mod memory;
pub mod metrics;
pub mod ratelimit;
pub mod record;
pub mod rt;
pub mod spool;
pub mod telemetry;
pub mod trace;

pub use app::StartError;
pub use error::ApiError;

/// A boxed, sendable future: handlers, probes and stores return these so
/// they can sit behind `dyn`.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

// Services use these through kit, so the native/WASI renaming lives in one
// Cargo.toml.
pub use hyper;
pub use prometheus;
pub use tokio;
