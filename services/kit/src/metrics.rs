//! Prometheus metrics. Every metric lives in the process's default registry
//! (`prometheus::default_registry()`), so `GET /metrics` shows it with no
//! wiring. Label values are always from a fixed set (route templates, method
//! names, status codes, outcomes): never raw paths, IPs or ids.
//!
//! One way to define them, here and in every service: a module's metrics are
//! a `Metrics` struct built once in a `OnceLock` by a `metrics()` function,
//! from the constructors below. Registered once per process, so building an
//! app twice in one process (tests) is safe.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, TextEncoder,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// `METRICS=false` stops recording (the observability-tax benchmark
/// measures with and without); `/metrics` still answers.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Seconds, from 1 ms to 30 s: image work is milliseconds, a cold model load
/// or a Dapr retry is seconds.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Bytes, 64 B to 64 MiB in powers of four.
pub const SIZE_BUCKETS: &[f64] =
    &[64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0];

/// Registers `metric` in the default registry. A duplicate name is a
/// programming error (two modules claiming one name, or a `Metrics` built
/// outside its `OnceLock`), caught by the first test that touches it.
#[expect(clippy::expect_used, reason = "a duplicate metric name is a bug; this runs once per metric per process")]
fn registered<M: prometheus::core::Collector + Clone + 'static>(metric: prometheus::Result<M>) -> M {
    metric.and_then(|m| prometheus::register(Box::new(m.clone())).map(|()| m)).expect("metric registration")
}

/// A histogram with `buckets`, by `labels`.
pub fn histogram_with(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    registered(HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels))
}

/// A histogram of seconds with [`LATENCY_BUCKETS`], by `labels`.
pub fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    histogram_with(name, help, labels, LATENCY_BUCKETS.to_vec())
}

pub fn counter(name: &str, help: &str) -> IntCounter {
    registered(IntCounter::new(name, help))
}

pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(IntCounterVec::new(Opts::new(name, help), labels))
}

pub fn gauge(name: &str, help: &str) -> IntGauge {
    registered(IntGauge::new(name, help))
}

pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(IntGaugeVec::new(Opts::new(name, help), labels))
}

/// A gauge of fractional values (seconds, ratios), by `labels`.
pub fn float_gauge_vec(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    registered(GaugeVec::new(Opts::new(name, help), labels))
}

/// The RED metrics of the shared request path.
pub struct HttpMetrics {
    pub duration: HistogramVec,
    /// `http_server_requests_total{route, status_class}`: what the
    /// availability SLIs count. Its label values are known in advance (the
    /// router's routes, [`STATUS_CLASSES`]), so every series exists at 0
    /// from start-up ([`HttpMetrics::register_routes`]) and a route's first
    /// 5xx is an increase `rate()` sees, not the birth of a series (which
    /// `rate()` reads as nothing).
    pub requests: IntCounterVec,
    pub in_flight: IntGauge,
    pub request_size: HistogramVec,
    pub response_size: HistogramVec,
}

pub fn http() -> &'static HttpMetrics {
    static METRICS: OnceLock<HttpMetrics> = OnceLock::new();
    METRICS.get_or_init(|| HttpMetrics {
        duration: histogram(
            "http_server_request_duration_seconds",
            "Time from request head to response head, by method, route template and status.",
            &["method", "route", "status"],
        ),
        requests: counter_vec(
            "http_server_requests_total",
            "Answers by route template and status class (2xx, 3xx, 4xx, 5xx); every series exists at 0 from start-up.",
            &["route", "status_class"],
        ),
        in_flight: gauge("http_server_active_requests", "Requests being handled now."),
        request_size: histogram_with(
            "http_server_request_body_size_bytes",
            "Request body sizes, by route template.",
            &["route"],
            SIZE_BUCKETS.to_vec(),
        ),
        response_size: histogram_with(
            "http_server_response_body_size_bytes",
            "Response body sizes, by route template.",
            &["route"],
            SIZE_BUCKETS.to_vec(),
        ),
    })
}

/// The values of `http_server_requests_total`'s `status_class`.
pub const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// A status as its class label; a 1xx (never a final answer here) counts as 2xx.
pub fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        500.. => "5xx",
        400..=499 => "4xx",
        300..=399 => "3xx",
        _ => "2xx",
    }
}

impl HttpMetrics {
    /// Creates `http_server_requests_total` at 0 for every route and class.
    pub fn register_routes<'a>(&self, routes: impl IntoIterator<Item = &'a str>) {
        for route in routes {
            for class in STATUS_CLASSES {
                self.requests.with_label_values(&[route, class]);
            }
        }
    }
}

/// The calls a service makes to its sidecar.
pub struct DaprMetrics {
    /// `dapr_client_call_duration_seconds{operation, outcome}`: operation
    /// `invoke`, `state.get`, `state.save`, `secrets.get`, …; outcome `ok`,
    /// `4xx`, `5xx`, `timeout` or `unreachable`.
    pub call_duration: HistogramVec,
}

pub fn dapr() -> &'static DaprMetrics {
    static METRICS: OnceLock<DaprMetrics> = OnceLock::new();
    METRICS.get_or_init(|| DaprMetrics {
        call_duration: histogram(
            "dapr_client_call_duration_seconds",
            "Calls from the service to its Dapr sidecar, by operation and outcome.",
            &["operation", "outcome"],
        ),
    })
}

/// A method as a label: the standard ones by name, anything else "other".
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        M::PATCH => "PATCH",
        _ => "other",
    }
}

/// `build_info{service, version, runtime} 1`: which build runs where. Set by
/// [`crate::app::run`] at start-up.
pub fn set_build_info(service: &str) {
    static BUILD_INFO: OnceLock<IntGaugeVec> = OnceLock::new();
    let gauge = BUILD_INFO.get_or_init(|| {
        gauge_vec(
            "build_info",
            "Always 1; the labels say which service, version and runtime (native or wasmedge) runs.",
            &["service", "version", "runtime"],
        )
    });
    gauge.with_label_values(&[service, env!("CARGO_PKG_VERSION"), crate::rt::RUNTIME]).set(1);
}

/// Everything registered, in the Prometheus text format.
pub fn render() -> Result<Vec<u8>, prometheus::Error> {
    let mut out = Vec::with_capacity(16 * 1024);
    TextEncoder::new().encode(&prometheus::gather(), &mut out)?;
    Ok(out)
}
