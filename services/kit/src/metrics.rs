//! Prometheus metrics. Every metric lives in the process's default registry
//! (`prometheus::default_registry()`), so a module anywhere in a service adds
//! its own with the `register_*` macros and `GET /metrics` shows it with no
//! wiring. Label values are always from a fixed set (route templates, method
//! names, status codes, outcomes): never raw paths, IPs or ids.

use prometheus::{
    register_histogram_vec, register_int_gauge, register_int_gauge_vec, Encoder, HistogramVec, IntGauge, TextEncoder,
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
pub const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Bytes, 64 B to 64 MiB in powers of four.
pub const SIZE_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];

/// The RED metrics of the shared request path.
pub struct HttpMetrics {
    pub duration: HistogramVec,
    pub in_flight: IntGauge,
    pub request_size: HistogramVec,
    pub response_size: HistogramVec,
}

/// Registration only fails on a duplicate name, a programming error caught by
/// the first test that touches the metric.
pub fn registered<T>(result: prometheus::Result<T>) -> T {
    match result {
        Ok(metric) => metric,
        Err(e) => panic!("metric registration: {e}"),
    }
}

pub fn http() -> &'static HttpMetrics {
    static METRICS: OnceLock<HttpMetrics> = OnceLock::new();
    METRICS.get_or_init(|| HttpMetrics {
        duration: registered(register_histogram_vec!(
            "http_server_request_duration_seconds",
            "Time from request head to response head, by method, route template and status.",
            &["method", "route", "status"],
            LATENCY_BUCKETS.to_vec()
        )),
        in_flight: registered(register_int_gauge!("http_server_active_requests", "Requests being handled now.")),
        request_size: registered(register_histogram_vec!(
            "http_server_request_body_size_bytes",
            "Request body sizes, by route template.",
            &["route"],
            SIZE_BUCKETS.to_vec()
        )),
        response_size: registered(register_histogram_vec!(
            "http_server_response_body_size_bytes",
            "Response body sizes, by route template.",
            &["route"],
            SIZE_BUCKETS.to_vec()
        )),
    })
}

/// `dapr_client_call_duration_seconds{operation, outcome}`: every call a
/// service makes to its sidecar (invoke, state.get, state.save, secrets.get,
/// ...), outcome `ok`, `4xx`, `5xx`, `timeout` or `unreachable`.
pub fn dapr_call_duration() -> &'static HistogramVec {
    static METRIC: OnceLock<HistogramVec> = OnceLock::new();
    METRIC.get_or_init(|| {
        registered(register_histogram_vec!(
            "dapr_client_call_duration_seconds",
            "Calls from the service to its Dapr sidecar, by operation and outcome.",
            &["operation", "outcome"],
            LATENCY_BUCKETS.to_vec()
        ))
    })
}

/// A histogram of seconds with the standard buckets, registered once; for
/// the services' domain metrics (decode, inference, queries).
/// Asking twice for one name (an app built twice in one test process) gives
/// the same metric.
pub fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    static MADE: std::sync::Mutex<Vec<(String, HistogramVec)>> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, h)) = made.iter().find(|(n, _)| n == name) {
        return h.clone();
    }
    let h = registered(register_histogram_vec!(name, help, labels, LATENCY_BUCKETS.to_vec()));
    made.push((name.to_owned(), h.clone()));
    h
}

/// A gauge registered once (a second call with the same name panics: call
/// it from a `OnceLock`).
pub fn gauge(name: &str, help: &str) -> IntGauge {
    registered(register_int_gauge!(name, help))
}

/// A counter registered once (same rule as [`gauge`]).
pub fn counter(name: &str, help: &str) -> prometheus::IntCounter {
    registered(prometheus::register_int_counter!(name, help))
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

/// `build_info{service, version, runtime} 1`: which build runs where.
pub fn set_build_info(service: &str) {
    static BUILD_INFO: OnceLock<prometheus::IntGaugeVec> = OnceLock::new();
    let gauge = BUILD_INFO.get_or_init(|| {
        registered(register_int_gauge_vec!(
            "build_info",
            "Always 1; the labels say which service, version and runtime (native or wasmedge) runs.",
            &["service", "version", "runtime"]
        ))
    });
    gauge.with_label_values(&[service, env!("CARGO_PKG_VERSION"), crate::rt::RUNTIME]).set(1);
}

/// Everything registered, in the Prometheus text format.
pub fn render() -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(16 * 1024);
    TextEncoder::new()
        .encode(&prometheus::gather(), &mut out)
        .map_err(|e| format!("cannot encode metrics: {e}"))?;
    Ok(out)
}
