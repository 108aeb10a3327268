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
///
/// One stepped work at a time (the thread's turn): interleaving sixteen
/// decodes on one thread finishes none sooner, and it puts sixteen slices
/// in the run queue ahead of a probe. With the turn, a probe waits for at
/// most one step of one work; the others wait without running.
pub async fn cpu_steps<F, R>(mut step: F) -> Result<R, crate::ApiError>
where
    F: FnMut() -> std::ops::ControlFlow<R> + Send + 'static,
    R: Send + 'static,
{
    static TURN: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let _turn = TURN
        .get_or_init(|| tokio::sync::Semaphore::new(1))
        .acquire()
        .await
        .map_err(|e| crate::ApiError::internal_error(format_args!("the CPU turn is closed: {e}")))?;
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
