//! Start-up and routes. The database URL comes from the Dapr secret store,
//! never from this process's environment.

use crate::migrate::{self, Migrator, RunOptions};
use crate::store::{DbSettings, EventStore, Inserted, NewEvent};
use kit::app::App;
use kit::config::{self, DaprConfig, ServerConfig, Source};
use kit::dapr::DaprClient;
use kit::http::{self, probe, Req, Router};
use kit::hyper::{Method, StatusCode};
use kit::prometheus::IntGauge;
use kit::ratelimit::{RateLimitConfig, RateLimiter};
use kit::trace::TraceContext;
use kit::{ApiError, StartError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing::Instrument;

pub const APP_ID: &str = "events-service";

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub dapr: DaprConfig,
    /// Secret holding the MySQL URL (`DB_URL_SECRET`, nested with `:`).
    pub db_url_secret: String,
    pub db: DbSettings,
    /// How often the database is pinged for `events_db_up` (`DB_HEALTH_INTERVAL_MS`).
    pub db_health_interval: Duration,
    /// `GET /events` page size when `?limit=` is absent, and its ceiling.
    pub page_default: u32,
    pub page_max: u32,
    /// Per-client rate limits (`RATE_LIMIT_*`; none unless configured).
    pub rate_limit: RateLimitConfig,
}

impl Config {
    pub fn from_source(src: &dyn Source) -> Result<Self, StartError> {
        let page_max = config::var_in(src, "EVENTS_PAGE_MAX", 1000u32, 1..=100_000)?;
        Ok(Self {
            server: ServerConfig::from_source(src, 9007)?,
            dapr: DaprConfig::from_source(src, APP_ID, 3505)?,
            db_url_secret: config::var(src, "DB_URL_SECRET", "DB_URL:MYSQL".to_owned())?,
            db: DbSettings {
                pool_max: config::var_in(src, "DB_POOL_MAX", 10usize, 1..=1000)?,
                timeout: config::millis(src, "DB_TIMEOUT_MS", Duration::from_secs(5))?,
            },
            db_health_interval: config::millis(src, "DB_HEALTH_INTERVAL_MS", Duration::from_secs(5))?,
            page_default: config::var_in(src, "EVENTS_PAGE_DEFAULT", 100u32, 1..=page_max)?,
            page_max,
            rate_limit: RateLimitConfig::from_source(src)?,
        })
    }
}

struct State {
    store: EventStore,
    migrator: Migrator,
    dapr: DaprClient,
    config: Config,
}

/// Binds first (daprd waits for the app port), then waits for the sidecar
/// and reads the database URL through it.
pub async fn build(config: Config) -> Result<App, StartError> {
    let listener = http::bind(&config.server).await?;
    let dapr = DaprClient::new(&config.dapr)?;
    dapr.wait_for_sidecar(config.dapr.wait_timeout).await?;
    let secret = dapr.get_secret(&TraceContext::default(), &config.dapr.secret_store, &config.db_url_secret).await?;
    let url = secret.get(&config.db_url_secret).or_else(|| secret.values().next()).ok_or_else(|| {
        StartError::service(
            "cannot read the database URL",
            format!("secret {} in store {} is empty", config.db_url_secret, config.dapr.secret_store),
        )
    })?;
    let store =
        EventStore::new(url, &config.db).map_err(|e| StartError::service("cannot set up the database pool", e))?;
    let migrations = migrate::embedded().map_err(|e| StartError::service("cannot read the embedded migrations", e))?;
    let migrator = Migrator::new(migrations);
    tracing::info!(secret_store = %config.dapr.secret_store, "database URL read from the secret store");
    let server_config = config.server.clone();
    watch_database(store.clone(), config.db_health_interval);
    let limiter = RateLimiter::over_dapr(config.rate_limit.clone(), &config.dapr)?;
    let state = Arc::new(State { store, migrator, dapr, config });
    App::new(listener, routes(state), server_config, limiter)
}

struct Metrics {
    /// `events_db_up`: 1 when the last ping of the events database succeeded.
    db_up: IntGauge,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        db_up: kit::metrics::gauge("events_db_up", "1 when the last ping of the events database succeeded, else 0."),
    })
}

/// `events_db_up` (1 or 0) from a ping every `interval`, whether or not
/// requests come: the "events DB unreachable" alert needs a signal while the
/// service is idle too. Changes are logged once each way.
fn watch_database(store: EventStore, interval: Duration) {
    let up = &metrics().db_up;
    kit::tokio::spawn(async move {
        let mut last: Option<bool> = None;
        loop {
            let ok = store.ping().await;
            up.set(i64::from(ok.is_ok()));
            match (&ok, last) {
                (Err(e), Some(true) | None) => {
                    tracing::warn!(error = %e, "the events database is unreachable")
                }
                (Ok(()), Some(false)) => tracing::info!("the events database is reachable again"),
                _ => {}
            }
            last = Some(ok.is_ok());
            kit::tokio::time::sleep(interval).await;
        }
    });
}

fn routes(state: Arc<State>) -> Router {
    let (s1, s2, s3, s4, s5, s6) =
        (state.clone(), state.clone(), state.clone(), state.clone(), state.clone(), state.clone());
    Router::new()
        .route(Method::GET, "/", |_req| async {
            Ok(http::text(StatusCode::OK, "The valid endpoints are /init /create_event /events"))
        })
        .route(Method::GET, "/init", move |_req| init(s1.clone()))
        .route(Method::POST, "/create_event", move |req| create_event(s2.clone(), req))
        .route(Method::GET, "/events", move |req| events(s3.clone(), req))
        .route(Method::GET, "/events/count", move |_req| count(s6.clone()))
        .with_health(
            APP_ID,
            vec![
                (
                    "sidecar",
                    probe(move || {
                        let s = s4.clone();
                        async move { s.dapr.healthz().await }
                    }),
                ),
                (
                    "database",
                    probe(move || {
                        let s = s5.clone();
                        async move { s.store.ping().await }
                    }),
                ),
            ],
        )
}

/// Applies pending migrations, the same code as `migrate up`, in a task of
/// its own: a request cancelled half-way (the client gone, the request
/// timeout) drops its handler, and a run dropped between a migration's
/// dirty mark and its end would leave the schema dirty until an operator
/// repaired it by hand. The task runs to its end whoever still waits.
async fn init(state: Arc<State>) -> http::HandlerResult {
    let run = async move {
        let mut conn = state.store.conn().await?;
        state.migrator.up(&mut conn, RunOptions::default()).await.map_err(migrate_error)
    };
    let report =
        kit::tokio::spawn(run.instrument(tracing::Span::current())).await.map_err(ApiError::internal_error)??;
    let applied: Vec<_> = report.steps.iter().map(|(v, name, _)| format!("{v:04}_{name}")).collect();
    http::json(StatusCode::OK, &serde_json::json!({ "status": true, "applied": applied }))
}

fn migrate_error(e: migrate::MigrateError) -> ApiError {
    use migrate::MigrateError as M;
    match e {
        M::Db(db) => crate::store::classify(db).into(),
        M::Locked(_) => {
            ApiError::unavailable("migration_locked", "another migration run holds the lock; retry shortly")
                .with_detail(e)
        }
        M::Dirty { .. } | M::Drift { .. } | M::Missing { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "migration_conflict",
            "the recorded migrations need an operator (dirty, edited or missing): see `migrate status`",
        )
        .with_detail(e),
        _ => ApiError::internal_error(e),
    }
}

async fn create_event(state: Arc<State>, req: Req) -> http::HandlerResult {
    let event: NewEvent = req.json()?;
    event.validate()?;
    // A retry of a stored event answers like the first time, flagged.
    match state.store.insert(&event).await? {
        Inserted::New(id) => http::json(StatusCode::OK, &serde_json::json!({ "status": true, "id": id })),
        Inserted::Existing(id) => {
            http::json(StatusCode::OK, &serde_json::json!({ "status": true, "id": id, "duplicate": true }))
        }
    }
}

async fn events(state: Arc<State>, req: Req) -> http::HandlerResult {
    let limit = req.query_as::<u32>("limit")?.unwrap_or(state.config.page_default);
    if limit == 0 || limit > state.config.page_max {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {}", state.config.page_max),
        ));
    }
    let before_id = req.query_as::<u64>("before_id")?;
    let page = state.store.list(limit, before_id).await?;
    let mut reply = http::json(StatusCode::OK, &page)?;
    // A full page may have more behind it: say where the next one starts.
    if let (true, Some(last)) = (page.len() == limit as usize, page.last()) {
        let link = format!("</events?limit={limit}&before_id={}>; rel=\"next\"", last.id);
        if let Ok(v) = kit::hyper::header::HeaderValue::from_str(&link) {
            reply.headers_mut().insert(kit::hyper::header::LINK, v);
        }
    }
    Ok(reply)
}

/// `{"count": n}`: all events, without paging through them.
async fn count(state: Arc<State>) -> http::HandlerResult {
    let count = state.store.count().await?;
    http::json(StatusCode::OK, &serde_json::json!({ "count": count }))
}

/// The service's settings from `src` (the environment, in `main`).
pub fn config(src: &dyn Source) -> Result<Config, StartError> {
    Config::from_source(src)
}
