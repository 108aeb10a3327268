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

/// One thread: the work runs in place.
pub async fn cpu<F, R>(work: F) -> Result<R, crate::ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    Ok(work())
}
