//! Per-client token-bucket rate limiting, exact across replicas.
//!
//! A request on a limited route is decided before its body is read and
//! before its handler runs, so a refused request records nothing and invokes
//! nothing:
//! 1. the client, resolved by the server's pipeline ([`client_ip`]: the TCP
//!    peer, or what a trusted proxy forwarded), is keyed (IPv6 per /64 by
//!    default);
//! 2. a local GCRA ([`governor`]), looser than the policy, sheds floods
//!    before they cost a state round trip;
//! 3. the bucket in the Dapr state store ([`store`]) decides: read with its
//!    ETag, one token taken ([`bucket`]), written back first-write against
//!    that ETag; a 409 means another replica got there first, so read and
//!    decide again (bounded, with jitter). Every replica of a service shares
//!    the key (the component's `keyPrefix: appid`), so the limit holds for
//!    the service as a whole;
//! 4. when the store cannot answer, a second local GCRA with the policy's own
//!    numbers decides (fail open) or every request is refused (fail closed),
//!    counted in metrics and logged once per outage.

pub mod bucket;
pub mod client_ip;
pub mod store;

pub use bucket::{Bucket, Policy, Quota};
pub use client_ip::{ClientConfig, ForwardedHeader};
pub use store::{BucketStore, DaprStore, StoreError, Versioned};

use crate::config::{self, ConfigError, DaprConfig, Source};
use crate::dapr::DaprClient;
use crate::error::ApiError;
use crate::trace::TraceContext;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use prometheus::{HistogramVec, IntCounterVec};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The limiter's answer on one request; the request path turns a refusal
/// into the JSON error answer.
#[derive(Debug)]
pub enum Decision {
    /// Go on; the answer carries these headers (none when not limited).
    Allow(HeaderMap),
    /// Answer with this error and these headers; the handler never runs.
    Refuse(ApiError, HeaderMap),
}

/// What happens when the state store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Admit what this replica's local copy of the policy admits.
    Open,
    /// Refuse every limited request with 503 until the store is back.
    Closed,
}

impl FailMode {
    fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

impl std::str::FromStr for FailMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            _ => Err("expected open or closed".into()),
        }
    }
}

/// The limiter's settings (`RATE_LIMIT_*`, see the README).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// `RATE_LIMIT_POLICIES`: `route=burst/rate` items, comma-separated.
    pub policies: Vec<Policy>,
    /// Routes listed as `route=off`: never limited, even under `*`.
    pub exempt: Vec<String>,
    pub fail_mode: FailMode,
    pub ipv6_prefix: u8,
    /// Re-reads after a 409 before the request is refused as contended.
    pub max_retries: u32,
    /// Each state call gives up after this; then the fallback decides.
    pub state_timeout: Duration,
    /// The local guard admits this many times the policy's rate.
    pub guard_factor: f64,
    /// During an outage the store is tried again this often, not per request.
    pub outage_probe: Duration,
}

impl RateLimitConfig {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let (policies, exempt) = match src.get("RATE_LIMIT_POLICIES") {
            None => (Vec::new(), Vec::new()),
            Some(raw) => parse_policies(&raw).map_err(|reason| ConfigError::new("RATE_LIMIT_POLICIES", raw, reason))?,
        };
        let guard_factor = config::var(src, "RATE_LIMIT_GUARD_FACTOR", 2.0f64)?;
        if !(1.0..=1000.0).contains(&guard_factor) {
            return Err(ConfigError::new(
                "RATE_LIMIT_GUARD_FACTOR",
                guard_factor.to_string(),
                "must be between 1 and 1000",
            ));
        }
        Ok(Self {
            policies,
            exempt,
            fail_mode: config::var(src, "RATE_LIMIT_FAIL_MODE", FailMode::Open)?,
            ipv6_prefix: config::var_in(src, "RATE_LIMIT_IPV6_PREFIX", 64u8, 1..=128)?,
            max_retries: config::var_in(src, "RATE_LIMIT_MAX_RETRIES", 10u32, 0..=100)?,
            state_timeout: config::millis(src, "RATE_LIMIT_STATE_TIMEOUT_MS", Duration::from_millis(500))?,
            guard_factor,
            outage_probe: config::millis(src, "RATE_LIMIT_OUTAGE_PROBE_MS", Duration::from_secs(1))?,
        })
    }
}

/// `/grayscale=20/10, /metrics=off, *=100/50`: route, `=`, burst, `/`,
/// tokens per second (a decimal: `0.5` is one every two seconds).
fn parse_policies(raw: &str) -> Result<(Vec<Policy>, Vec<String>), String> {
    let (mut policies, mut exempt) = (Vec::new(), Vec::<String>::new());
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (route, limit) =
            item.split_once('=').ok_or_else(|| format!("{item:?}: expected route=burst/rate or route=off"))?;
        let route = route.trim();
        if route != "*" && !route.starts_with('/') {
            return Err(format!("{item:?}: a route starts with / (or is * for every other route)"));
        }
        if policies.iter().any(|p: &Policy| p.route == route) || exempt.iter().any(|r| r == route) {
            return Err(format!("{route} is listed twice"));
        }
        let limit = limit.trim();
        if limit.eq_ignore_ascii_case("off") {
            exempt.push(route.to_owned());
            continue;
        }
        let (burst, rate) =
            limit.split_once('/').ok_or_else(|| format!("{item:?}: expected burst/rate, e.g. 20/10"))?;
        let burst: u32 = burst.trim().parse().map_err(|_| format!("{item:?}: the burst must be a whole number"))?;
        let rate: f64 =
            rate.trim().parse().map_err(|_| format!("{item:?}: the rate must be a number of requests per second"))?;
        if !(1..=1_000_000).contains(&burst) {
            return Err(format!("{item:?}: the burst must be between 1 and 1000000"));
        }
        if !(rate.is_finite() && (0.001..=1_000_000.0).contains(&rate)) {
            return Err(format!("{item:?}: the rate must be between 0.001 and 1000000 per second"));
        }
        policies.push(Policy { route: route.to_owned(), burst, rate });
    }
    Ok((policies, exempt))
}

type Guard = governor::RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;
type Fallback = governor::RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

struct Limited {
    policy: Policy,
    guard: Guard,
    fallback: Fallback,
}

fn gcra_quota(policy: &Policy, factor: f64) -> governor::Quota {
    let burst = NonZeroU32::new(policy.burst).unwrap_or(NonZeroU32::MIN);
    let period = Duration::from_secs_f64(1.0 / (policy.rate * factor)).max(Duration::from_nanos(1));
    governor::Quota::with_period(period).unwrap_or_else(|| governor::Quota::per_second(burst)).allow_burst(burst)
}

/// Since when the store has been unreachable, and when it was last tried.
#[derive(Debug, Clone, Copy)]
struct Outage {
    since: Instant,
    last_try: Instant,
}

/// The limiter of one service.
pub struct RateLimiter {
    service: String,
    config: RateLimitConfig,
    limited: Vec<Limited>,
    store: Arc<dyn BucketStore>,
    outage: Mutex<Option<Outage>>,
    checks: AtomicU64,
}

/// Why the store could not decide.
enum Undecided {
    Unavailable(StoreError),
    /// Every attempt lost to another writer.
    Contended,
}

impl RateLimiter {
    /// `None` when no route has a policy: then nothing is limited.
    pub fn new(service: &str, config: RateLimitConfig, store: Arc<dyn BucketStore>) -> Option<Arc<Self>> {
        if config.policies.is_empty() {
            return None;
        }
        let limited = config
            .policies
            .iter()
            .map(|p| Limited {
                policy: p.clone(),
                guard: governor::RateLimiter::keyed(gcra_quota(p, config.guard_factor)),
                fallback: governor::RateLimiter::keyed(gcra_quota(p, 1.0))
                    .with_middleware::<StateInformationMiddleware>(),
            })
            .collect();
        metrics().touch(service, &config);
        Some(Arc::new(Self {
            service: service.to_owned(),
            config,
            limited,
            store,
            outage: Mutex::new(None),
            checks: AtomicU64::new(0),
        }))
    }

    /// The limiter over the Dapr state store of `dapr` (`STATE_STORE`), with
    /// a client of its own whose calls give up after `state_timeout`.
    pub fn over_dapr(config: RateLimitConfig, dapr: &DaprConfig) -> Result<Option<Arc<Self>>, ConfigError> {
        let client = DaprClient::new(&DaprConfig { call_timeout: config.state_timeout, ..dapr.clone() })?;
        let store = Arc::new(DaprStore::new(client, dapr.state_store.clone()));
        let limiter = Self::new(&dapr.app_id, config, store);
        if let Some(l) = &limiter {
            let routes: Vec<String> =
                l.limited.iter().map(|p| format!("{}={}/{}", p.policy.route, p.policy.burst, p.policy.rate)).collect();
            tracing::info!(policies = %routes.join(","), fail_mode = l.config.fail_mode.name(), "rate limiting on");
        }
        Ok(limiter)
    }

    fn policy_for(&self, route: &str) -> Option<&Limited> {
        if self.config.exempt.iter().any(|r| r == route) {
            return None;
        }
        let exact = self.limited.iter().find(|l| l.policy.route == route);
        exact.or_else(|| self.limited.iter().find(|l| l.policy.route == "*"))
    }

    /// Decides a request on `route` from `client` (resolved by the caller:
    /// [`ClientConfig::resolve`]); `headers` carry the trace.
    pub async fn check(&self, route: &str, headers: &HeaderMap, client: IpAddr) -> Decision {
        let Some(limited) = self.policy_for(route) else { return Decision::Allow(HeaderMap::new()) };
        let policy = &limited.policy;
        self.sweep();
        let client_key = client_ip::bucket_key(client, self.config.ipv6_prefix);

        if limited.guard.check_key(&client_key).is_err() {
            // The guard runs ahead of the policy, so its own wait says
            // little; the shared bucket is about empty: a token's time.
            return self.refuse(policy, "shed", bucket::quota_of(policy, 0.0));
        }
        if self.store_worth_trying() {
            let trace = TraceContext::from_headers(headers);
            match self.take_from_store(policy, &format!("ratelimit:{}:{client_key}", policy.route), &trace).await {
                Ok(taken) => {
                    self.store_answered();
                    return if taken.allowed {
                        self.count(policy, "allowed");
                        Decision::Allow(rate_headers(policy, &taken.quota))
                    } else {
                        self.refuse(policy, "limited", taken.quota)
                    };
                }
                Err(Undecided::Contended) => {
                    self.store_answered();
                    return self.refuse(policy, "contended", bucket::quota_of(policy, 0.0));
                }
                Err(Undecided::Unavailable(e)) => self.store_failed(&e),
            }
        }
        self.fallback(limited, &client_key)
    }

    /// Reads, takes a token, writes back against the ETag; on a conflict,
    /// again with what the winner stored.
    async fn take_from_store(
        &self,
        policy: &Policy,
        key: &str,
        trace: &TraceContext,
    ) -> Result<bucket::Taken, Undecided> {
        // A conflict on a read is the store misbehaving: as good as away.
        let unavailable = Undecided::Unavailable;
        let mut attempt = 0;
        loop {
            let stored = self.store.load(key.to_owned(), trace.clone()).await.map_err(unavailable)?;
            let bucket = stored.as_ref().and_then(|v| v.bucket);
            if bucket.is_some_and(|b| b.tokens_out_of_range(policy)) {
                // Never written by this code: someone wrote the state store.
                tracing::warn!(
                    key,
                    tokens = bucket.map(|b| b.tokens),
                    burst = policy.burst,
                    "rate-limit bucket out of range in the state store; clamped"
                );
            }
            let taken = bucket::take(policy, bucket, crate::rt::now_ms());
            if !taken.store {
                // Nothing changed that the next reader could not recompute.
                return Ok(taken);
            }
            let etag = stored.map(|v| v.etag);
            match self.store.save(key.to_owned(), taken.bucket, etag, policy.full_refill_secs(), trace.clone()).await {
                Ok(()) => return Ok(taken),
                Err(StoreError::Conflict) => {
                    metrics().conflicts.with_label_values(&[&self.service, &policy.route]).inc();
                    if attempt >= self.config.max_retries {
                        return Err(Undecided::Contended);
                    }
                    attempt += 1;
                    metrics().retries.with_label_values(&[&self.service, &policy.route]).inc();
                    tokio::time::sleep(jitter(attempt)).await;
                }
                Err(e @ StoreError::Unavailable(_)) => return Err(Undecided::Unavailable(e)),
            }
        }
    }

    fn fallback(&self, limited: &Limited, client_key: &str) -> Decision {
        let policy = &limited.policy;
        let mode = self.config.fail_mode;
        metrics().fallbacks.with_label_values(&[&self.service, &policy.route, mode.name()]).inc();
        match mode {
            FailMode::Closed => {
                self.count(policy, "fallback_refused");
                let err = ApiError::unavailable(
                    "rate_limit_unavailable",
                    "the rate limiter's state store is unreachable; retry shortly",
                );
                let mut headers = HeaderMap::new();
                insert(&mut headers, RATELIMIT_POLICY, bucket::policy_header(policy));
                Decision::Refuse(err, headers)
            }
            FailMode::Open => match limited.fallback.check_key(&client_key.to_owned()) {
                Ok(snapshot) => {
                    self.count(policy, "fallback_allowed");
                    let remaining = f64::from(snapshot.remaining_burst_capacity());
                    Decision::Allow(rate_headers(policy, &bucket::quota_of(policy, remaining)))
                }
                Err(not_until) => {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    self.refuse(policy, "fallback_limited", quota_after_wait(policy, wait))
                }
            },
        }
    }

    /// 429 with the policy, its state and Retry-After.
    fn refuse(&self, policy: &Policy, outcome: &'static str, quota: Quota) -> Decision {
        self.count(policy, outcome);
        let retry = quota.retry_after_secs.max(1);
        let err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many requests on {}: {} at once, then {} per second; retry in {retry} s",
                policy.route, policy.burst, policy.rate
            ),
        )
        .with_retry_after(retry);
        Decision::Refuse(err, rate_headers(policy, &quota))
    }

    fn count(&self, policy: &Policy, outcome: &'static str) {
        metrics().decisions.with_label_values(&[&self.service, &policy.route, outcome]).inc();
    }

    fn store_worth_trying(&self) -> bool {
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        match outage.as_mut() {
            None => true,
            Some(o) if o.last_try.elapsed() >= self.config.outage_probe => {
                o.last_try = Instant::now();
                true
            }
            Some(_) => false,
        }
    }

    /// Logs the start of an outage once, not per request.
    fn store_failed(&self, reason: &StoreError) {
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        if outage.is_none() {
            tracing::warn!(
                error = %reason,
                fail_mode = self.config.fail_mode.name(),
                "rate limiter: the state store is unreachable; deciding locally until it is back"
            );
            let now = Instant::now();
            *outage = Some(Outage { since: now, last_try: now });
        }
    }

    fn store_answered(&self) {
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = outage.take() {
            tracing::info!(outage_ms = o.since.elapsed().as_millis() as u64, "rate limiter: the state store is back");
        }
    }

    /// The local limiters keep one entry per client seen; now and then,
    /// forget the ones whose state is back to full.
    fn sweep(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            for l in &self.limited {
                l.guard.retain_recent();
                l.fallback.retain_recent();
            }
        }
    }
}

/// What the fallback limiter that says "not for `wait`" shows: nothing
/// left, the next token after `wait`.
fn quota_after_wait(policy: &Policy, wait: Duration) -> Quota {
    let tokens = (1.0 - wait.as_secs_f64() * policy.rate).clamp(0.0, 1.0);
    // Below one whole token, or it would read as available.
    bucket::quota_of(policy, tokens.min(1.0 - 1e-6))
}

fn rate_headers(policy: &Policy, quota: &Quota) -> HeaderMap {
    let mut headers = HeaderMap::new();
    insert(&mut headers, RATELIMIT_POLICY, bucket::policy_header(policy));
    insert(&mut headers, RATELIMIT, bucket::state_header(policy, quota));
    headers
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: String) {
    // The values are built from a validated policy: always valid.
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

/// 1-2 ms, then up to twice that per attempt (capped at 50 ms), spread at
/// random so replicas that collided do not collide again in step.
fn jitter(attempt: u32) -> Duration {
    let ceiling_us = (1000u64 << attempt.min(6)).min(50_000);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    // A cheap mix of the clock's low bits: spread is all this needs.
    let spread = u64::from(nanos.wrapping_mul(2_654_435_761)) % ceiling_us;
    Duration::from_micros(ceiling_us / 2 + spread / 2)
}

/// The limiter's metrics, in the default registry.
pub struct Metrics {
    pub decisions: IntCounterVec,
    pub conflicts: IntCounterVec,
    pub retries: IntCounterVec,
    pub state_call: HistogramVec,
    pub fallbacks: IntCounterVec,
}

/// Every decision outcome, for the series to exist from start-up.
const OUTCOMES: &[&str] =
    &["allowed", "limited", "shed", "contended", "fallback_allowed", "fallback_limited", "fallback_refused"];

impl Metrics {
    /// Creates every series whose labels are known from the config at 0, so
    /// dashboards and rate() see a healthy 0, not "No data", before the first
    /// conflict or outage.
    fn touch(&self, service: &str, config: &RateLimitConfig) {
        for policy in &config.policies {
            let route = policy.route.as_str();
            for outcome in OUTCOMES {
                self.decisions.with_label_values(&[service, route, outcome]);
            }
            self.conflicts.with_label_values(&[service, route]);
            self.retries.with_label_values(&[service, route]);
            self.fallbacks.with_label_values(&[service, route, config.fail_mode.name()]);
        }
        for op in ["get", "save"] {
            self.state_call.with_label_values(&[op]);
        }
    }
}

#[cfg(test)]
mod tests;

pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    use crate::metrics::{counter_vec, histogram_with};
    METRICS.get_or_init(|| Metrics {
        decisions: counter_vec(
            "ratelimit_decisions_total",
            "Rate-limit decisions by service, policy (route) and outcome: allowed, limited (bucket empty), shed (local guard), contended (lost every ETag race), fallback_allowed, fallback_limited, fallback_refused.",
            &["service", "policy", "outcome"],
        ),
        conflicts: counter_vec(
            "ratelimit_state_conflicts_total",
            "Bucket writes refused because another replica wrote first (ETag mismatch, 409).",
            &["service", "policy"],
        ),
        retries: counter_vec("ratelimit_state_retries_total", "Bucket decisions taken again after a conflict.", &["service", "policy"]),
        state_call: histogram_with(
            "ratelimit_state_call_duration_seconds",
            "Time of the limiter's Dapr state calls, by operation (get, save).",
            &["op"],
            // 0.1 ms to 3.3 s: a state call on loopback is about a millisecond.
            prometheus::exponential_buckets(0.0001, 2.0, 16).unwrap_or_default(),
        ),
        fallbacks: counter_vec(
            "ratelimit_fallbacks_total",
            "Decisions taken without the state store (unreachable), by fail mode.",
            &["service", "policy", "mode"],
        ),
    })
}
