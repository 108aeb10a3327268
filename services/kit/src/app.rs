//! A service as a value: bound to its port, routes in place, ready to run.
//! `App::build` functions in the services return one; tests and `main` run it.

use crate::http::{Router, Server};
use crate::config::ServerConfig;
use crate::ratelimit::RateLimiter;
use crate::StartError;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub struct App {
    server: Arc<Server>,
    listener: TcpListener,
    addr: SocketAddr,
}

impl App {
    /// `listener` comes from [`crate::http::bind`], called before the slow
    /// parts of start-up so daprd, which waits for the app port, can start.
    pub fn new(listener: TcpListener, router: Router, config: ServerConfig) -> Result<Self, StartError> {
        Self::with_limiter(listener, router, config, None)
    }

    /// The same, with requests on limited routes decided by `limiter` first.
    pub fn with_limiter(
        listener: TcpListener,
        router: Router,
        config: ServerConfig,
        limiter: Option<Arc<RateLimiter>>,
    ) -> Result<Self, StartError> {
        let addr = listener.local_addr().map_err(|e| StartError::Other(format!("listener address: {e}")))?;
        Ok(Self { server: Server::with_limiter(router, config, limiter), listener, addr })
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until SIGTERM/SIGINT, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> Result<(), StartError> {
        tracing::info!(addr = %self.addr, "listening");
        self.server
            .serve(self.listener, crate::rt::shutdown_signal())
            .await
            .map_err(|e| StartError::Other(e.to_string()))
    }
}
