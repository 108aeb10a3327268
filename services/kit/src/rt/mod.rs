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

/// CPU work that can pause: each call of `step` does a bounded slice (a
/// batch of rows) and breaks with the result when done. Natively the steps
/// run one after the other on the blocking pool, as [`cpu`]. Under WASI the
/// one thread runs them in place and, at least every [`SLICE`], yields to
/// the other tasks: a probe or another connection is then answered within
/// a slice, not after the whole decode (there are no threads to run it
/// beside: WasmEdge has no wasi-threads).
pub async fn cpu_steps<F, R>(step: F) -> Result<R, crate::ApiError>
where
    F: FnMut() -> std::ops::ControlFlow<R> + Send + 'static,
    R: Send + 'static,
{
    imp::cpu_steps(step).await
}

/// How long [`cpu_steps`] runs under WASI before it lets other tasks run.
pub const SLICE: std::time::Duration = std::time::Duration::from_millis(20);

/// Milliseconds since the Unix epoch: the events table's timestamps and the
/// rate-limit buckets' clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
