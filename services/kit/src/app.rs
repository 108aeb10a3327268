//! A service as a value, and the entry point every service's `main` is.
//!
//! Each service's lib exports the same three things in its `app` module:
//! `APP_ID`, `config(&dyn Source)` and `build(config)`, which binds (port 0
//! picks a free one), waits for the sidecar and returns an [`App`]. Its
//! `main` is one line: `kit::app::run(app::APP_ID, app::config, app::build)`.

use crate::config::{ConfigError, ServerConfig, Source};
use crate::dapr::DaprError;
use crate::http::{BindError, Router, Server};
use crate::ratelimit::RateLimiter;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Why a service could not start (or stopped with an error). Printed once,
/// then the process exits 1.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Dapr(#[from] DaprError),
    #[error("cannot read the listener's address: {0}")]
    Address(#[source] std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("the server stopped with an error: {0}")]
    Serve(#[source] std::io::Error),
    /// A service's own start-up step failed (model load, database pool, …).
    #[error("{context}: {source}")]
    Service {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StartError {
    /// A service's own start-up failure, `context` saying which step.
    pub fn service(context: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Service { context: context.into(), source: source.into() }
    }
}

/// A bound, routed service, ready to run.
pub struct App {
    server: Arc<Server>,
    listener: TcpListener,
    addr: SocketAddr,
}

impl App {
    /// `listener` comes from [`crate::http::bind`], called before the slow
    /// parts of start-up so daprd, which waits for the app port, can start.
    /// Requests on limited routes are decided by `limiter` first.
    pub fn new(
        listener: TcpListener,
        router: Router,
        config: ServerConfig,
        limiter: Option<Arc<RateLimiter>>,
    ) -> Result<Self, StartError> {
        let addr = listener.local_addr().map_err(StartError::Address)?;
        Ok(Self { server: Server::with_limiter(router, config, limiter), listener, addr })
    }

    /// Where it listens: with `APP_PORT=0`, the port the system chose.
    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until SIGTERM/SIGINT, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> Result<(), StartError> {
        self.run_until(crate::rt::shutdown_signal()).await
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        if let Some(addr) = self.server.config().metrics_address {
            serve_metrics(addr, self.server.config()).await?;
        }
        tracing::info!(addr = %self.addr, "listening");
        self.server.serve(self.listener, shutdown).await.map_err(StartError::Serve)
    }
}

/// `METRICS_ADDRESS`: `/metrics` and `/healthz` on a listener of their own,
/// for as long as the process runs (scrapes need no drain on shutdown),
/// with the app's limits but no token and no memory budget.
async fn serve_metrics(addr: SocketAddr, app: &ServerConfig) -> Result<(), StartError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| BindError { addr, source })?;
    let router = Router::new().with_metrics_only();
    let config = ServerConfig { app_api_token: None, metrics_address: None, memory_budget: 0, ..app.clone() };
    let server = Server::new(router, config);
    tracing::info!(%addr, "serving /metrics");
    tokio::spawn(async move {
        if let Err(e) = server.serve(listener, std::future::pending()).await {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(())
}

/// A service's whole life: telemetry from the environment, the runtime,
/// `config` from the environment, `build`, serve until stopped; an error
/// becomes a message and exit code 1.
pub fn run<C, B, Fut>(service: &'static str, config: fn(&dyn Source) -> Result<C, StartError>, build: B) -> ExitCode
where
    B: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<App, StartError>>,
{
    let env = crate::config::Env;
    let settings = crate::telemetry::TelemetryConfig::from_source(&env, service)
        .and_then(|t| Ok((t, crate::config::flag(&env, "METRICS", true)?)));
    let (telemetry, metrics_on) = match settings {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{service}: {e}");
            return ExitCode::FAILURE;
        }
    };
    crate::metrics::set_enabled(metrics_on);
    crate::metrics::set_build_info(service);
    let mut telemetry = crate::telemetry::init(telemetry);
    let outcome = crate::rt::build_runtime().map_err(StartError::Runtime).and_then(|runtime| {
        runtime.block_on(async {
            let exporter = telemetry.start_export();
            let outcome = async { build(config(&env)?).await?.run_until_stopped().await }.await;
            // The last requests' spans, before the process ends.
            if let Some(exporter) = exporter {
                exporter.flush().await;
            }
            outcome
        })
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
