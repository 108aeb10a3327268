//! Logs and traces, set up once per process.
//!
//! - Logs: one JSON object per line on stderr (machines read these), each
//!   carrying the `trace_id` and `span_id` of the span it was logged in, so a
//!   log line leads to its trace; `LOG_FORMAT=pretty` for people; level from
//!   `RUST_LOG`.
//! - Traces: `tracing` spans become OpenTelemetry spans (tracing-opentelemetry)
//!   and are exported to Zipkin by a task on the service's own runtime
//!   ([`zipkin`]). The SDK's batch processor spawns a thread (WASI has none)
//!   and its simple processor blocks a current-thread runtime, so finished
//!   spans go into a channel here and the task posts them in batches.

mod logs;
pub mod zipkin;

use crate::config::{self, ConfigError, Source};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::sync::OnceLock;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, Layer};

/// Telemetry settings, from the environment like everything else.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The name spans and logs carry: the Dapr app id.
    pub service: String,
    /// `ZIPKIN_ENDPOINT`: where spans go; empty turns exporting off.
    pub zipkin_endpoint: Option<String>,
    /// `TRACING`: `false` turns spans off entirely (the observability-tax
    /// benchmark measures with and without).
    pub tracing: bool,
    /// `TRACE_SAMPLING_RATIO` for traces that start here; a trace that
    /// arrives with `traceparent` keeps the caller's decision.
    pub sampling_ratio: f64,
    /// `LOG_FORMAT`: `json` (default) or `pretty`.
    pub pretty_logs: bool,
}

impl TelemetryConfig {
    pub fn from_source(src: &dyn Source, service: &str) -> Result<Self, ConfigError> {
        let endpoint: String = config::var(src, "ZIPKIN_ENDPOINT", "http://127.0.0.1:9411/api/v2/spans".to_owned())?;
        let sampling_ratio: f64 = config::var(src, "TRACE_SAMPLING_RATIO", 1.0)?;
        if !(0.0..=1.0).contains(&sampling_ratio) {
            return Err(ConfigError::new(
                "TRACE_SAMPLING_RATIO",
                sampling_ratio.to_string(),
                "must be between 0 and 1",
            ));
        }
        let format: String = config::var(src, "LOG_FORMAT", "json".to_owned())?;
        let pretty_logs = match format.as_str() {
            "json" => false,
            "pretty" => true,
            other => return Err(ConfigError::new("LOG_FORMAT", other, "must be json or pretty")),
        };
        Ok(Self {
            service: service.to_owned(),
            zipkin_endpoint: Some(endpoint).filter(|e| !e.trim().is_empty()),
            tracing: config::flag(src, "TRACING", true)?,
            sampling_ratio,
            pretty_logs,
        })
    }
}

/// What [`init`] set up; [`Telemetry::start_export`] needs the runtime.
pub struct Telemetry {
    spans: Option<zipkin::SpanQueue>,
    config: TelemetryConfig,
}

/// The tracer provider lives as long as the process: dropping it would stop
/// spans from being recorded.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber. A second call in one process (tests that
/// start several apps) keeps the first set-up.
pub fn init(config: TelemetryConfig) -> Telemetry {
    let filter = || log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let logs = if config.pretty_logs {
        fmt::layer().with_writer(std::io::stderr).boxed()
    } else {
        logs::JsonLogs::new(config.service.clone()).boxed()
    };
    let (otel, spans) = if config.tracing && PROVIDER.get().is_none() {
        let (processor, queue) = zipkin::ChannelProcessor::new(zipkin::QUEUE_CAPACITY);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sampling_ratio))))
            .with_resource(Resource::builder_empty().with_service_name(config.service.clone()).build())
            .build();
        let tracer = provider.tracer("kit");
        let _ = PROVIDER.set(provider);
        (Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(filter())), Some(queue))
    } else {
        (None, None)
    };
    let installed = tracing_subscriber::registry().with(logs.with_filter(filter())).with(otel).try_init().is_ok();
    tracing::info!(
        service = %config.service,
        runtime = crate::rt::RUNTIME,
        version = env!("CARGO_PKG_VERSION"),
        tracing = config.tracing,
        zipkin = config.zipkin_endpoint.as_deref().unwrap_or("off"),
        "starting"
    );
    Telemetry { spans: if installed { spans } else { None }, config }
}

/// `RUST_LOG` as `level` or `target=level` directives, comma-separated
/// (`info,kit=debug,hyper=warn`); unset or unreadable means `info`.
/// `Targets` rather than `EnvFilter`: no span or field directives, but no
/// regex engine either, which is a third of a megabyte of every `.wasm`.
fn log_filter(directives: Option<&str>) -> Targets {
    let info = || Targets::new().with_default(tracing::Level::INFO);
    match directives.map(str::trim).filter(|d| !d.is_empty()) {
        None => info(),
        Some(d) => d.parse().unwrap_or_else(|e| {
            eprintln!("RUST_LOG={d:?} is not a list of target=level directives ({e}); logging at info");
            info()
        }),
    }
}

impl Telemetry {
    /// Starts exporting spans from a task on the current runtime. The handle
    /// flushes what is left when the service stops.
    pub fn start_export(&mut self) -> Option<zipkin::Exporter> {
        let queue = self.spans.take()?;
        match &self.config.zipkin_endpoint {
            Some(endpoint) => Some(zipkin::Exporter::spawn(queue, endpoint.clone(), self.config.service.clone())),
            None => {
                tracing::info!("ZIPKIN_ENDPOINT is empty: spans are not exported");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn rust_log_directives_set_levels_per_target_and_default_to_info() {
        let f = log_filter(Some("warn,kit=debug"));
        assert!(f.would_enable("kit::http", &Level::DEBUG));
        assert!(!f.would_enable("hyper", &Level::INFO));
        assert!(f.would_enable("hyper", &Level::WARN));
        for unset in [None, Some(""), Some("kit=nonsense")] {
            let f = log_filter(unset);
            assert!(f.would_enable("kit", &Level::INFO), "{unset:?}");
            assert!(!f.would_enable("kit", &Level::DEBUG), "{unset:?}");
        }
    }
}
