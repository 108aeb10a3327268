//! Where native and WebAssembly differ: the async runtime, signals, and
//! where CPU-bound work runs. One facade, one `imp` per platform
//! ([`native`](native.rs), [`wasi`](wasi.rs)); everything else in the
//! services is the same source on both targets.

#[cfg(not(target_os = "wasi"))]
#[path = "native.rs"]
mod imp;
#[cfg(target_os = "wasi")]
#[path = "wasi.rs"]
mod imp;

/// Which runtime this binary was built for; reported by `build_info` and `/readyz`.
pub const RUNTIME: &str = imp::RUNTIME;

/// The async runtime a service runs on: multi-threaded natively, one
/// current thread under WASI (no threads there).
pub fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    imp::build_runtime()
}

/// Resolves on SIGTERM or SIGINT (native). Under WasmEdge there are no
/// signals to catch: the host stops the module, so it never resolves.
pub async fn shutdown_signal() {
    imp::shutdown_signal().await
}

/// A listener on `addr`. Natively with a backlog of 4096 (the usual
/// `somaxconn`), not tokio's 1024: a burst of a thousand connects while the
/// CPU is busy overflowed 1024 and the kernel dropped some (seen as resets
/// in `image_input::a_thousand_concurrent_uploads…`). Under WASI, the
/// socket library's own (1024, third_party/wasmedge_wasi_socket).
pub async fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    imp::listen(addr).await
}

/// Runs CPU-bound work (decoding, inference) off the async workers
/// natively, so slow images do not stall other connections; under WASI,
/// with one thread, in place. Spans the work opens are children of the
/// caller's.
pub async fn cpu<F, R>(work: F) -> Result<R, crate::ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    imp::cpu(work).await
}

/// Milliseconds since the Unix epoch: the events table's timestamps and the
/// rate-limit buckets' clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
