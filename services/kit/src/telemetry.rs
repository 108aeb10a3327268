//! Logging set-up, once per process: one JSON object per line by default
//! (machines read these), `LOG_FORMAT=pretty` for people; level from `RUST_LOG`.

use tracing_subscriber::{fmt, EnvFilter};

pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let pretty = std::env::var("LOG_FORMAT").map(|v| v == "pretty").unwrap_or(false);
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests start several apps in one process) is harmless.
    let _ = if pretty {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).with_current_span(false).try_init()
    };
    tracing::info!(service, runtime = crate::rt::RUNTIME, version = env!("CARGO_PKG_VERSION"), "starting");
}
