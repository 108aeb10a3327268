//! What grayscale and classify share beyond the request path: their
//! configuration, start-up (bind, wait for the sidecar, recorder) and the
//! readiness probe on the sidecar. Each service adds only its domain.

use crate::config::{self, DaprConfig, ServerConfig, Source};
use crate::dapr::DaprClient;
use crate::error::ApiError;
use crate::http::{probe, Probe};
use crate::http::{Hold, Req};
use crate::imaging::ImageLimits;
use crate::memory::{self, Baseline};
use crate::ratelimit::{RateLimitConfig, RateLimiter};
use crate::record::Recorder;
use crate::spool::Spool;
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
    /// Events not recorded at once wait in Dapr state (`EVENT_SPOOL`, on by
    /// default); off, such a request fails with 503 instead.
    pub spool: bool,
    /// `EVENT_SPOOL_SLOTS`, `EVENT_SPOOL_MAX_PER_SLOT`: the spool's shape and bound.
    pub spool_slots: u32,
    pub spool_max_per_slot: usize,
    /// How often spooled events are offered to events-service again (`EVENT_SPOOL_DRAIN_MS`).
    pub spool_drain_interval: std::time::Duration,
    /// With nothing known to be pending, how often the spool is looked at
    /// anyway (`EVENT_SPOOL_IDLE_CHECK_MS`): another replica, since gone, or
    /// a writer of the state store, may have left entries in it.
    pub spool_idle_check: std::time::Duration,
    /// Per-client rate limits (`RATE_LIMIT_*`).
    pub rate_limit: RateLimitConfig,
}

/// What an image service needs in memory: to run at all, and per pixel of
/// the heaviest image it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryProfile {
    /// Its VmRSS after warm-up, with headroom: what the budget leaves free.
    pub baseline: Baseline,
    /// Bytes a pixel of the heaviest decode it allows (decoder buffer at the
    /// widest depth plus its working copies): sets the default pixel limit.
    pub worst_bytes_per_pixel: u64,
}

impl ImageServiceConfig {
    /// `DECODE_MEMORY_BYTES` defaults to what [`memory::default_budget`]
    /// leaves beside `profile`'s baseline; `MAX_IMAGE_PIXELS` defaults to
    /// what fits that budget beside one largest body.
    pub fn from_source(
        src: &dyn Source,
        app_id: &str,
        app_port: u16,
        dapr_http_port: u16,
        profile: MemoryProfile,
    ) -> Result<Self, StartError> {
        let default_budget = memory::default_budget(memory::cgroup_limit(), profile.baseline.here());
        let server = ServerConfig::with_memory_default(src, app_port, default_budget)?;
        let d = ImageLimits::default();
        let fitting =
            ImageLimits::fitting(server.memory_budget, server.max_body_bytes as u64, profile.worst_bytes_per_pixel);
        let limits = ImageLimits {
            max_width: config::var_in(src, "MAX_IMAGE_WIDTH", d.max_width, 1..=65_535)?,
            max_height: config::var_in(src, "MAX_IMAGE_HEIGHT", d.max_height, 1..=65_535)?,
            max_pixels: config::var_in(src, "MAX_IMAGE_PIXELS", fitting.max_pixels, 1..=1_000_000_000)?,
        };
        Ok(Self {
            server,
            dapr: DaprConfig::from_source(src, app_id, dapr_http_port)?,
            limits,
            events_app_id: config::var(src, "EVENTS_APP_ID", "events-service".to_owned())?,
            client_ttl_seconds: config::var(src, "CLIENT_STATE_TTL_SECONDS", 86_400u64)?,
            spool: config::flag(src, "EVENT_SPOOL", true)?,
            spool_slots: config::var_in(src, "EVENT_SPOOL_SLOTS", 16u32, 1..=1024)?,
            spool_max_per_slot: config::var_in(src, "EVENT_SPOOL_MAX_PER_SLOT", 1000usize, 1..=100_000)?,
            spool_drain_interval: config::millis(src, "EVENT_SPOOL_DRAIN_MS", std::time::Duration::from_secs(2))?,
            spool_idle_check: config::millis(src, "EVENT_SPOOL_IDLE_CHECK_MS", std::time::Duration::from_secs(30))?,
            rate_limit: RateLimitConfig::from_source(src)?,
        })
    }
}

/// An image's decode, admitted: the request's permit and body memory, plus
/// what the decode will take, reserved against the memory budget, all held
/// by the CPU work until it returns, even if the request has timed out by
/// then.
pub struct ImageWork {
    hold: Hold,
}

impl ImageWork {
    /// Reserves `cost` bytes (what the header implies: the decoder's buffers
    /// and the service's working copies). An image that can never fit is a
    /// 413 `image_too_large`; one that does not fit within the wait, a 503.
    pub async fn admit(req: &mut Req, cost: u64) -> Result<Self, ApiError> {
        let hold = req.hold();
        let hold = match req.memory() {
            None => hold,
            Some(budget) => hold.with(budget.reserve(cost).await.map_err(|r| budget.image_refusal(r, cost))?),
        };
        Ok(Self { hold })
    }

    /// Runs the work in steps ([`crate::rt::cpu_steps`]: natively on the CPU
    /// pool; under WASI in place, the thread shared with probes and other
    /// connections between steps), holding everything until the last step
    /// returns.
    pub async fn run_steps<F, R>(self, mut step: F) -> Result<R, ApiError>
    where
        F: FnMut() -> std::ops::ControlFlow<R> + Send + 'static,
        R: Send + 'static,
    {
        let mut hold = Some(self.hold);
        crate::rt::cpu_steps(move || {
            let next = step();
            if next.is_break() {
                drop(hold.take());
            }
            next
        })
        .await
    }
}

/// Binds, waits for the sidecar, and returns the listener and the recorder.
pub async fn start(config: &ImageServiceConfig) -> Result<(TcpListener, Recorder), StartError> {
    static MAX_PIXELS: std::sync::OnceLock<prometheus::IntGauge> = std::sync::OnceLock::new();
    MAX_PIXELS
        .get_or_init(|| {
            crate::metrics::gauge("image_max_pixels", "The pixel limit images are checked against (MAX_IMAGE_PIXELS).")
        })
        .set(i64::try_from(config.limits.max_pixels).unwrap_or(i64::MAX));
    let listener = crate::http::bind(&config.server).await?;
    let dapr = DaprClient::new(&config.dapr)?;
    dapr.wait_for_sidecar(config.dapr.wait_timeout).await?;
    let mut recorder = Recorder::new(
        dapr.clone(),
        config.events_app_id.clone(),
        config.dapr.state_store.clone(),
        config.client_ttl_seconds,
    );
    if config.spool {
        let spool = Spool::new(dapr, config.dapr.state_store.clone(), config.spool_slots, config.spool_max_per_slot);
        recorder = recorder.with_spool(spool);
        drain_spool(recorder.clone(), config.spool_drain_interval, config.spool_idle_check);
    }
    Ok((listener, recorder))
}

/// Offers spooled events to events-service every `interval` while there are
/// some (every `idle_check` otherwise), for as long as the service runs.
/// Failures are logged once per outage.
fn drain_spool(recorder: Recorder, interval: std::time::Duration, idle_check: std::time::Duration) {
    tokio::spawn(async move {
        let Some(spool) = recorder.spool().cloned() else { return };
        let mut failing = false;
        let mut idle = idle_check;
        loop {
            tokio::time::sleep(interval).await;
            if !spool.pending() && !failing {
                idle = idle.saturating_sub(interval);
                if !idle.is_zero() {
                    continue;
                }
            }
            idle = idle_check;
            let deliver = |body| {
                let recorder = recorder.clone();
                async move { recorder.deliver(&crate::trace::TraceContext::default(), &body).await }
            };
            match spool.drain(deliver).await {
                Ok(drained) => {
                    if drained.delivered > 0 || drained.dead_lettered > 0 {
                        tracing::info!(
                            delivered = drained.delivered,
                            dead_lettered = drained.dead_lettered,
                            waiting = drained.waiting,
                            "spooled events delivered"
                        );
                    }
                    if drained.unreadable > 0 {
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(
                                unreadable = drained.unreadable,
                                "some event spool slots are unreadable (state store away?); retrying"
                            );
                        }
                    } else if std::mem::take(&mut failing) {
                        tracing::info!("the event spool is readable again");
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "cannot drain the event spool (state store away?); retrying");
                    }
                }
            }
        }
    });
}

/// The service's limiter over its Dapr state store (`None`: no policies).
pub fn rate_limiter(config: &ImageServiceConfig) -> Result<Option<std::sync::Arc<RateLimiter>>, StartError> {
    Ok(RateLimiter::over_dapr(config.rate_limit.clone(), &config.dapr)?)
}

/// Readiness probe: the sidecar answers.
pub fn sidecar_probe(recorder: &Recorder) -> (&'static str, Probe) {
    let dapr = recorder.dapr().clone();
    (
        "sidecar",
        probe(move || {
            let dapr = dapr.clone();
            async move { dapr.healthz().await }
        }),
    )
}
