//! What grayscale and classify share beyond the request path: their
//! configuration, start-up (bind, wait for the sidecar, recorder) and the
//! readiness probe on the sidecar. Each service adds only its domain.

use crate::config::{self, DaprConfig, ServerConfig, Source};
use crate::dapr::DaprClient;
use crate::http::{probe, Probe};
use crate::imaging::ImageLimits;
use crate::ratelimit::{RateLimitConfig, RateLimiter};
use crate::record::Recorder;
use crate::StartError;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct ImageServiceConfig {
    pub server: ServerConfig,
    pub dapr: DaprConfig,
    /// `MAX_IMAGE_WIDTH`, `MAX_IMAGE_HEIGHT`, `MAX_IMAGE_PIXELS`.
    pub limits: ImageLimits,
    /// Where events are recorded (`EVENTS_APP_ID`).
    pub events_app_id: String,
    /// Expiry of the per-client last-request entry (`CLIENT_STATE_TTL_SECONDS`).
    pub client_ttl_seconds: u64,
    /// Per-client rate limits (`RATE_LIMIT_*`).
    pub rate_limit: RateLimitConfig,
}

impl ImageServiceConfig {
    pub fn from_source(src: &dyn Source, app_id: &str, app_port: u16, dapr_http_port: u16) -> Result<Self, StartError> {
        let d = ImageLimits::default();
        let limits = ImageLimits {
            max_width: config::in_range("MAX_IMAGE_WIDTH", config::var(src, "MAX_IMAGE_WIDTH", d.max_width)?, 1..=65_535)?,
            max_height: config::in_range("MAX_IMAGE_HEIGHT", config::var(src, "MAX_IMAGE_HEIGHT", d.max_height)?, 1..=65_535)?,
            max_pixels: config::in_range("MAX_IMAGE_PIXELS", config::var(src, "MAX_IMAGE_PIXELS", d.max_pixels)?, 1..=1_000_000_000)?,
        };
        Ok(Self {
            server: ServerConfig::from_source(src, app_port)?,
            dapr: DaprConfig::from_source(src, app_id, dapr_http_port)?,
            limits,
            events_app_id: config::var(src, "EVENTS_APP_ID", "events-service".to_owned())?,
            client_ttl_seconds: config::var(src, "CLIENT_STATE_TTL_SECONDS", 86_400u64)?,
            rate_limit: RateLimitConfig::from_source(src)?,
        })
    }
}

/// Binds, waits for the sidecar, and returns the listener and the recorder.
pub async fn start(config: &ImageServiceConfig) -> Result<(TcpListener, Recorder), StartError> {
    let listener = crate::http::bind(&config.server).await?;
    let dapr = DaprClient::new(&config.dapr)?;
    dapr.wait_for_sidecar(config.dapr.wait_timeout).await?;
    let recorder = Recorder::new(dapr, config.events_app_id.clone(), config.dapr.state_store.clone(), config.client_ttl_seconds);
    Ok((listener, recorder))
}

/// The service's limiter over its Dapr state store (`None`: no policies).
pub fn rate_limiter(config: &ImageServiceConfig) -> Result<Option<std::sync::Arc<RateLimiter>>, StartError> {
    Ok(RateLimiter::over_dapr(config.rate_limit.clone(), &config.dapr)?)
}

/// Readiness probe: the sidecar answers.
pub fn sidecar_probe(recorder: &Recorder) -> (&'static str, Probe) {
    let dapr = recorder.dapr().clone();
    ("sidecar", probe(move || {
        let dapr = dapr.clone();
        async move { dapr.healthz().await.map_err(|e| e.to_string()) }
    }))
}
