//! A router with the server's limits, bound to a listener: the accept loop,
//! one task per connection, and graceful shutdown.

use super::router::Router;
use crate::config::ServerConfig;
use crate::memory::MemoryBudget;
use crate::ratelimit::RateLimiter;
use hyper::server::conn::Http;
use hyper::service::service_fn;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

pub struct Server {
    pub(super) router: Router,
    pub(super) config: ServerConfig,
    /// One permit per request being handled (`MAX_IN_FLIGHT`).
    pub(super) in_flight: Arc<Semaphore>,
    /// One permit per body being read (`MAX_BODY_READERS`).
    pub(super) body_readers: Arc<Semaphore>,
    /// Bodies and decodes held at once (`DECODE_MEMORY_BYTES`).
    pub(super) memory: Option<MemoryBudget>,
    pub(super) limiter: Option<Arc<RateLimiter>>,
}

/// The service's port could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds the service's listener; port 0 picks a free one (tests).
pub async fn bind(config: &ServerConfig) -> Result<TcpListener, BindError> {
    let addr = SocketAddr::new(config.host, config.port);
    crate::rt::listen(addr).await.map_err(|source| BindError { addr, source })
}

impl Server {
    pub fn new(router: Router, config: ServerConfig) -> Arc<Self> {
        Self::with_limiter(router, config, None)
    }

    /// A server that asks `limiter` about each request before reading its body.
    pub fn with_limiter(router: Router, config: ServerConfig, limiter: Option<Arc<RateLimiter>>) -> Arc<Self> {
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
        let body_readers = Arc::new(Semaphore::new(config.max_body_readers));
        let memory = MemoryBudget::new(config.memory_budget, config.memory_wait);
        crate::metrics::http().register_routes(router.templates());
        Arc::new(Self { router, config, in_flight, body_readers, memory, limiter })
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Accepts connections until `shutdown` resolves, then stops accepting,
    /// lets in-flight requests finish within the grace period, and returns.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        // Every connection task holds a sender; when all are dropped, all are done.
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let server = self.clone();
                        let stop = stop_rx.clone();
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            server.connection(stream, peer, stop).await;
                            drop(done);
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors or similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        drop(done_tx);
        let grace = self.config.shutdown_grace;
        if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "in-flight requests still running after the grace period"
            );
        }
        Ok(())
    }

    async fn connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        mut stop: watch::Receiver<bool>,
    ) {
        let server = self.clone();
        let service = service_fn(move |req| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.handle(req, peer).await) }
        });
        let mut http = Http::new();
        http.http1_only(true).http1_header_read_timeout(self.config.header_read_timeout);
        let conn = http.serve_connection(stream, service);
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, client = %peer, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed() => conn.as_mut().graceful_shutdown(),
        }
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, client = %peer, "connection ended with an error during shutdown");
        }
    }
}
