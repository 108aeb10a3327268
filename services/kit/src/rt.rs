//! Where native and WebAssembly differ: the runtime, signals, CPU-bound work.
//! Everything else in the services is the same source on both targets.

use std::future::Future;
use std::process::ExitCode;

/// Which runtime this binary was built for; reported by `build_info` and `/readyz`.
pub const RUNTIME: &str = if cfg!(target_os = "wasi") { "wasmedge" } else { "native" };

/// The entry point every service's `main` calls: sets up logging, builds the
/// runtime, runs `app`, and turns an error into a message and exit code 1.
pub fn main<F, Fut, E>(service: &'static str, app: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let settings = crate::telemetry::TelemetryConfig::from_source(&crate::config::Env, service)
        .and_then(|t| Ok((t, crate::config::flag(&crate::config::Env, "METRICS", true)?)));
    let (telemetry, metrics_on) = match settings {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{service}: {e}");
            return ExitCode::FAILURE;
        }
    };
    crate::metrics::set_enabled(metrics_on);
    let mut telemetry = crate::telemetry::init(telemetry);
    let runtime = match build_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{service}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let exporter = telemetry.start_export();
        let outcome = app().await;
        // The last requests' spans, before the process ends.
        if let Some(exporter) = exporter {
            exporter.flush().await;
        }
        outcome
    });
    match outcome {
        Ok(()) => {
            tracing::info!(service, "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(service, error = %e, "fatal");
            eprintln!("{service}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_os = "wasi"))]
fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

// WASI has no threads: one current-thread runtime serves everything.
#[cfg(target_os = "wasi")]
fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Resolves on SIGTERM or SIGINT (native). Under WasmEdge there are no
/// signals to catch: the host stops the module, so this never resolves.
#[cfg(not(target_os = "wasi"))]
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(target_os = "wasi")]
pub async fn shutdown_signal() {
    std::future::pending::<()>().await;
}

/// Run CPU-bound work (decoding, inference) off the async workers natively,
/// so slow images do not stall other connections. WASI has one thread, so
/// there it runs in place.
#[cfg(not(target_os = "wasi"))]
pub async fn cpu<F, R>(work: F) -> Result<R, crate::ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    // The span goes along, so spans the work opens are children of the request's.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .map_err(|e| crate::ApiError::internal(format!("worker failed: {e}")))
}

#[cfg(target_os = "wasi")]
pub async fn cpu<F, R>(work: F) -> Result<R, crate::ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    Ok(work())
}

/// Milliseconds since the Unix epoch, as the events table stores them.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
