//! The operational routes every service has: `GET /healthz` answers as long
//! as the process serves; `GET /readyz` runs every probe and answers 503
//! naming the failing ones; `GET /metrics` is the Prometheus text of
//! everything registered.

use super::reply::{json, with_body};
use super::router::Router;
use crate::error::ApiError;
use crate::BoxFuture;
use http::{Method, StatusCode};
use std::future::Future;
use std::sync::Arc;

/// Probed and scraped every few seconds: no spans, debug-level logs, no
/// in-flight permit (a liveness probe refused under load would get a busy
/// pod restarted).
const OPERATIONAL_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

pub fn is_operational(path: &str) -> bool {
    OPERATIONAL_PATHS.contains(&path)
}

/// Why a readiness probe failed, with its cause kept.
pub type ProbeError = Box<dyn std::error::Error + Send + Sync>;
pub type Probe = Arc<dyn Fn() -> BoxFuture<Result<(), ProbeError>> + Send + Sync>;

pub fn probe<F, Fut, E>(f: F) -> Probe
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<ProbeError>,
{
    Arc::new(move || {
        let check = f();
        Box::pin(async move { check.await.map_err(Into::into) })
    })
}

impl Router {
    /// `/metrics` alone, and a `/healthz` for the listener's own check: the
    /// router of `METRICS_ADDRESS`.
    pub fn with_metrics_only(self) -> Self {
        self.route(Method::GET, "/metrics", |_req| metrics()).route(Method::GET, "/healthz", |_req| async {
            json(StatusCode::OK, &serde_json::json!({"status": "ok", "runtime": crate::rt::RUNTIME}))
        })
    }

    /// Adds `/metrics`, `/healthz` and `/readyz` (running `probes`).
    pub fn with_health(self, service: &'static str, probes: Vec<(&'static str, Probe)>) -> Self {
        let probes = Arc::new(probes);
        self.route(Method::GET, "/metrics", |_req| metrics())
            .route(Method::GET, "/healthz", move |_req| async move {
                json(
                    StatusCode::OK,
                    &serde_json::json!({"status": "ok", "service": service, "runtime": crate::rt::RUNTIME}),
                )
            })
            .route(Method::GET, "/readyz", move |_req| {
                let probes = probes.clone();
                async move { readiness(service, &probes).await }
            })
    }
}

async fn metrics() -> super::HandlerResult {
    let body =
        crate::metrics::render().map_err(|e| ApiError::internal_error(format_args!("cannot encode metrics: {e}")))?;
    Ok(with_body(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body))
}

async fn readiness(service: &'static str, probes: &[(&'static str, Probe)]) -> super::HandlerResult {
    let mut checks = serde_json::Map::new();
    let mut failing = Vec::new();
    for (name, probe) in probes {
        let outcome = match probe().await {
            Ok(()) => "ok".to_owned(),
            Err(e) => {
                failing.push(format!("{name}: {e}"));
                e.to_string()
            }
        };
        checks.insert((*name).to_owned(), serde_json::Value::from(outcome));
    }
    let status = if failing.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = serde_json::json!({
        "status": if failing.is_empty() { "ready" } else { "not_ready" },
        "service": service,
        "runtime": crate::rt::RUNTIME,
        "checks": checks,
    });
    if !failing.is_empty() {
        body["error"] = serde_json::json!({"code": "not_ready", "message": failing.join("; ")});
    }
    json(status, &body)
}
