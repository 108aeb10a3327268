//! Native: tokio's multi-threaded runtime, Unix signals, a blocking pool.

pub const RUNTIME: &str = "native";

pub fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

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

pub async fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

pub async fn cpu_steps<F, R>(mut step: F) -> Result<R, crate::ApiError>
where
    F: FnMut() -> std::ops::ControlFlow<R> + Send + 'static,
    R: Send + 'static,
{
    cpu(move || loop {
        if let std::ops::ControlFlow::Break(out) = step() {
            return out;
        }
    })
    .await
}

pub async fn cpu<F, R>(work: F) -> Result<R, crate::ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .map_err(|e| crate::ApiError::internal_error(format_args!("worker failed: {e}")))
}
