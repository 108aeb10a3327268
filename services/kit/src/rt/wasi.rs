//! WASI (WasmEdge): no threads, no signals.

pub const RUNTIME: &str = "wasmedge";

pub fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// The host stops the module; there is nothing to wait for.
pub async fn shutdown_signal() {
    std::future::pending::<()>().await;
}

pub async fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// One thread: the steps run in place, yielding every `SLICE`. tokio
/// defers a yielded task until its I/O driver has been polled, so what
/// arrived meanwhile (a probe) runs before the next slice.
pub async fn cpu_steps<F, R>(mut step: F) -> Result<R, crate::ApiError>
where
    F: FnMut() -> std::ops::ControlFlow<R> + Send + 'static,
    R: Send + 'static,
{
    let mut slice = std::time::Instant::now();
    loop {
        if let std::ops::ControlFlow::Break(out) = step() {
            return Ok(out);
        }
        if slice.elapsed() >= super::SLICE {
            tokio::task::yield_now().await;
            slice = std::time::Instant::now();
        }
    }
}

/// One thread: the work runs in place.
pub async fn cpu<F, R>(work: F) -> Result<R, crate::ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    Ok(work())
}
