//! The events table behind a connection pool. Every database failure is
//! classified once here: the database being away is 503 (retry), a broken
//! query is 500, a schema not migrated yet is 503 naming the fix.

use kit::prometheus::{HistogramVec, IntCounter, IntGauge};
use kit::ApiError;
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::Duration;
use tracing::Instrument;

/// An event as stored and listed (the original template's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    pub event_ts: i64,
    pub op_type: String,
    pub input_size: u32,
}

/// The body of `POST /create_event`. (Serialize: the fuzz target checks an
/// accepted event survives a round trip.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// The caller's id for this event (a UUID): sending it again is safe,
    /// the second create_event finds the first row. Optional, as in the
    /// original template's body.
    #[serde(default)]
    pub event_id: Option<String>,
    pub event_ts: i64,
    pub op_type: String,
    pub input_size: u64,
}

impl NewEvent {
    /// Checks what JSON types cannot: a plausible timestamp, a short
    /// lower-case operation name, a size the column holds.
    pub fn validate(&self) -> Result<(), ApiError> {
        let invalid = |m: String| Err(ApiError::bad_request("invalid_event", m));
        // 2000-01-01 .. 2100-01-01, in ms: catches seconds sent for ms.
        if !(946_684_800_000..=4_102_444_800_000).contains(&self.event_ts) {
            return invalid(format!("event_ts {} is not milliseconds since the epoch", self.event_ts));
        }
        let op_ok = (1..=20).contains(&self.op_type.len())
            && self.op_type.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !op_ok {
            return invalid(format!("op_type {:?} must be 1 to 20 characters of a-z, 0-9, _ or -", self.op_type));
        }
        if self.input_size > u64::from(u32::MAX) {
            return invalid(format!("input_size {} is too large", self.input_size));
        }
        if let Some(id) = &self.event_id {
            if !is_uuid(id) {
                return invalid(format!("event_id {id:?} is not a UUID (8-4-4-4-12 lower-case hex digits)"));
            }
        }
        Ok(())
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower-case hex: what the column holds.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New(u64),
    /// The event id was stored already, with the same content: that row.
    Existing(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("event_id {0} is already stored with different content")]
    IdConflict(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] mysql_async::Error),
    #[error("the database gave no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the events table does not exist yet: call GET /init (or run `migrate up`)")]
    NotMigrated,
    #[error("database query failed: {0}")]
    Query(#[source] mysql_async::Error),
    #[error("the database settings are invalid: {0}")]
    Settings(String),
    /// A unique key refused the row (handled inside the store).
    #[error("duplicate key")]
    Duplicate,
}

/// A fixed answer per code; the driver's text (and the server it names)
/// goes to the log only.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::Timeout(_) => {
                ApiError::unavailable("database_unavailable", "the events database is unavailable; retry shortly")
            }
            StoreError::NotMigrated => ApiError::unavailable(
                "schema_not_migrated",
                "the events table does not exist yet: call GET /init (or run `migrate up`)",
            ),
            StoreError::Query(_) | StoreError::Settings(_) | StoreError::Duplicate => {
                ApiError::internal(kit::error::INTERNAL_MESSAGE)
            }
            StoreError::IdConflict(_) => ApiError::new(
                kit::hyper::StatusCode::CONFLICT,
                "event_id_conflict",
                "this event_id is already stored with different content",
            ),
        }
        .with_detail(e)
    }
}

/// MySQL server error codes that mean "the server is away or refusing", not
/// "the query is wrong".
const UNAVAILABLE_CODES: [u16; 6] = [
    1040, // too many connections
    1053, // server shutdown in progress
    1205, // lock wait timeout
    1927, // connection was killed
    2006, // server has gone away
    2013, // lost connection during query
];

pub fn classify(e: mysql_async::Error) -> StoreError {
    match e {
        mysql_async::Error::Server(ref s) if s.code == 1146 => StoreError::NotMigrated,
        // ER_DUP_ENTRY: only event_id is unique besides the key.
        mysql_async::Error::Server(ref s) if s.code == 1062 => StoreError::Duplicate,
        // ER_BAD_FIELD_ERROR on event_id: 0002 not applied yet.
        mysql_async::Error::Server(ref s) if s.code == 1054 => StoreError::NotMigrated,
        mysql_async::Error::Server(ref s) if UNAVAILABLE_CODES.contains(&s.code) => StoreError::Unavailable(e),
        mysql_async::Error::Server(_) | mysql_async::Error::Url(_) => StoreError::Query(e),
        // I/O, driver (closed connection, pool gone) and the rest: the database is away.
        _ => StoreError::Unavailable(e),
    }
}

/// A statement the store runs: its text, and names for spans and metrics.
pub struct Statement {
    pub name: &'static str,
    pub operation: &'static str,
    pub sql: &'static str,
}

const INSERT: Statement = Statement {
    name: "INSERT image_evts",
    operation: "insert",
    sql: "INSERT INTO image_evts (event_id, event_ts, op_type, input_size) VALUES (?, ?, ?, ?)",
};
const BY_EVENT_ID: Statement = Statement {
    name: "SELECT image_evts by event_id",
    operation: "select",
    sql: "SELECT id, event_ts, op_type, input_size FROM image_evts WHERE event_id = ?",
};
const LIST: Statement = Statement {
    name: "SELECT image_evts",
    operation: "select",
    sql: "SELECT id, event_ts, op_type, input_size FROM image_evts WHERE id < ? ORDER BY id DESC LIMIT ?",
};
const COUNT: Statement =
    Statement { name: "SELECT COUNT image_evts", operation: "count", sql: "SELECT COUNT(*) FROM image_evts" };
const PING: Statement = Statement { name: "PING", operation: "ping", sql: "PING" };

struct StoreMetrics {
    query: HistogramVec,
    pool_wait: HistogramVec,
    in_use: IntGauge,
    inserted: IntCounter,
    duplicates: IntCounter,
}

fn metrics() -> &'static StoreMetrics {
    static METRICS: OnceLock<StoreMetrics> = OnceLock::new();
    METRICS.get_or_init(|| StoreMetrics {
        query: kit::metrics::histogram(
            "db_query_duration_seconds",
            "Statements against the events database, by operation and outcome.",
            &["operation", "outcome"],
        ),
        pool_wait: kit::metrics::histogram(
            "db_pool_wait_seconds",
            "Time to get a connection from the pool, by outcome.",
            &["outcome"],
        ),
        in_use: kit::metrics::gauge("db_pool_connections_in_use", "Connections running a statement now."),
        inserted: kit::metrics::counter("events_inserted_total", "Events stored."),
        duplicates: kit::metrics::counter(
            "events_duplicates_total",
            "create_event calls for an event_id already stored (a retry): answered with the existing row, nothing added.",
        ),
    })
}

#[derive(Debug, Clone)]
pub struct DbSettings {
    pub pool_max: usize,
    /// Bound on getting a connection plus running one statement.
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct EventStore {
    pool: Pool,
    timeout: Duration,
}

impl EventStore {
    /// A lazy pool: nothing connects until the first query, so the service
    /// starts (and answers 503) while the database is away.
    pub fn new(url: &str, settings: &DbSettings) -> Result<Self, StoreError> {
        let opts = Opts::from_url(url).map_err(|e| StoreError::Query(e.into()))?;
        let constraints = PoolConstraints::new(0, settings.pool_max.max(1))
            .ok_or_else(|| StoreError::Settings(format!("pool size {} is not valid", settings.pool_max)))?;
        let pool_opts =
            PoolOpts::default().with_constraints(constraints).with_inactive_connection_ttl(Duration::from_secs(30));
        let builder = OptsBuilder::from_opts(opts).pool_opts(pool_opts).prefer_socket(false);
        Ok(Self { pool: Pool::new(builder), timeout: settings.timeout })
    }

    /// A pooled connection, within the timeout; the wait is measured (a
    /// long wait means the pool is too small or the database slow).
    pub async fn conn(&self) -> Result<Conn, StoreError> {
        let started = std::time::Instant::now();
        let got = match kit::tokio::time::timeout(self.timeout, self.pool.get_conn()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        };
        if kit::metrics::enabled() {
            let outcome = if got.is_ok() { "ok" } else { "error" };
            metrics().pool_wait.with_label_values(&[outcome]).observe(started.elapsed().as_secs_f64());
        }
        got
    }

    /// One statement: bounded in time, in its own client span, timed by
    /// operation and outcome, counted while it holds a connection.
    async fn bounded<T>(
        &self,
        statement: &'static Statement,
        f: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
    ) -> Result<T, StoreError> {
        // Pings (health checks every few seconds) would bury the real traces.
        let span = if statement.operation == "ping" {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "sql",
                otel.name = statement.name,
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                db.system = "mysql",
                db.operation = statement.operation,
                db.statement = statement.sql,
            )
        };
        let m = metrics();
        m.in_use.inc();
        let started = std::time::Instant::now();
        let result = match kit::tokio::time::timeout(self.timeout, f).instrument(span.clone()).await {
            Ok(r) => r.map_err(classify),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        };
        m.in_use.dec();
        let outcome = match &result {
            Ok(_) => "ok",
            Err(StoreError::Unavailable(_) | StoreError::Timeout(_)) => "unavailable",
            Err(StoreError::NotMigrated) => "not_migrated",
            Err(StoreError::Query(_) | StoreError::Settings(_) | StoreError::IdConflict(_)) => "error",
            Err(StoreError::Duplicate) => "duplicate",
        };
        if outcome != "ok" {
            span.record("otel.status_code", "error");
        }
        if kit::metrics::enabled() {
            m.query.with_label_values(&[statement.operation, outcome]).observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// Stores `e` once: with an `event_id` already stored, the existing row
    /// is the answer when it holds the same event, a conflict when not.
    pub async fn insert(&self, e: &NewEvent) -> Result<Inserted, StoreError> {
        let mut conn = self.conn().await?;
        let params = (e.event_id.as_deref(), e.event_ts, &e.op_type, e.input_size);
        match self.bounded(&INSERT, conn.exec_drop(INSERT.sql, params)).await {
            Ok(()) => {
                if kit::metrics::enabled() {
                    metrics().inserted.inc();
                }
                Ok(Inserted::New(conn.last_insert_id().unwrap_or(0)))
            }
            Err(StoreError::Duplicate) => {
                let id = e.event_id.clone().unwrap_or_default();
                let row: Option<(u64, i64, String, u32)> =
                    self.bounded(&BY_EVENT_ID, conn.exec_first(BY_EVENT_ID.sql, (&id,))).await?;
                match row {
                    Some((row_id, ts, op, size))
                        if ts == e.event_ts && op == e.op_type && u64::from(size) == e.input_size =>
                    {
                        if kit::metrics::enabled() {
                            metrics().duplicates.inc();
                        }
                        Ok(Inserted::Existing(row_id))
                    }
                    _ => Err(StoreError::IdConflict(id)),
                }
            }
            Err(other) => Err(other),
        }
    }

    /// Newest first; `before_id` continues a previous page.
    pub async fn list(&self, limit: u32, before_id: Option<u64>) -> Result<Vec<Event>, StoreError> {
        let before = before_id.unwrap_or(u64::MAX);
        let rows: Vec<(u64, i64, String, u32)> =
            self.read(&LIST, |mut conn| async move { conn.exec(LIST.sql, (before, limit)).await }).await?;
        Ok(rows
            .into_iter()
            .map(|(id, event_ts, op_type, input_size)| Event { id, event_ts, op_type, input_size })
            .collect())
    }

    /// How many events are stored: what a load test compares with the
    /// requests it saw acknowledged (one event each, none twice).
    pub async fn count(&self) -> Result<u64, StoreError> {
        let count: Option<u64> = self.read(&COUNT, |mut conn| async move { conn.query_first(COUNT.sql).await }).await?;
        Ok(count.unwrap_or(0))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(&PING, |mut conn| async move { conn.ping().await }).await
    }

    /// A read, retried once on a fresh connection when the pooled one turns
    /// out dead (after a database restart every idle connection is).
    async fn read<T, F, Fut>(&self, statement: &'static Statement, query: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, mysql_async::Error>>,
    {
        let first = self.bounded(statement, query(self.conn().await?)).await;
        match first {
            Err(StoreError::Unavailable(_) | StoreError::Timeout(_)) => {
                self.bounded(statement, query(self.conn().await?)).await
            }
            other => other,
        }
    }

    pub async fn disconnect(self) {
        if let Err(e) = self.pool.disconnect().await {
            tracing::debug!(error = %e, "closing the pool");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_never_carries_the_driver_text() {
        let driver = mysql_async::Error::Driver(mysql_async::DriverError::CantParseServerVersion {
            version_string: "mysql://events:pw_4f2a@db.internal:3306".into(),
        });
        for (e, status, code) in [
            (StoreError::Unavailable(driver), 503, "database_unavailable"),
            (StoreError::Settings("DB_URL mysql://events:pw_4f2a@db.internal:3306 is bad".into()), 500, "internal"),
            (StoreError::Timeout(Duration::from_millis(4321)), 503, "database_unavailable"),
        ] {
            let internal = e.to_string();
            let answer = ApiError::from(e);
            assert_eq!((answer.status.as_u16(), answer.code), (status, code));
            let body = answer.body_json();
            for secret in ["pw_4f2a", "db.internal", "3306", "4321"] {
                assert!(!body.contains(secret), "{body}");
            }
            assert_eq!(answer.detail.as_deref(), Some(internal.as_str()), "the detail goes to the log");
        }
    }

    fn event(ts: i64, op: &str, size: u64) -> NewEvent {
        NewEvent { event_id: None, event_ts: ts, op_type: op.into(), input_size: size }
    }

    #[test]
    fn validation_catches_what_types_cannot() {
        assert!(event(1_700_000_000_000, "grayscale", 10).validate().is_ok());
        assert!(event(1_700_000_000, "grayscale", 10).validate().is_err(), "seconds, not ms");
        assert!(event(1_700_000_000_000, "", 10).validate().is_err());
        assert!(event(1_700_000_000_000, "DROP TABLE", 10).validate().is_err());
        assert!(event(1_700_000_000_000, "a_very_long_operation_name", 10).validate().is_err());
        assert!(event(1_700_000_000_000, "classify", u64::from(u32::MAX) + 1).validate().is_err());
    }

    #[test]
    fn event_ids_must_be_lower_case_uuids() {
        let with_id = |id: &str| NewEvent { event_id: Some(id.into()), ..event(1_700_000_000_000, "grayscale", 10) };
        assert!(with_id("0193a7b2-7c1e-7d3a-9f00-0123456789ab").validate().is_ok());
        for bad in [
            "",
            "0193a7b2",
            "0193A7B2-7C1E-7D3A-9F00-0123456789AB",
            "0193a7b2-7c1e-7d3a-9f00-0123456789ab0",
            "0193a7b2x7c1e-7d3a-9f00-0123456789ab",
        ] {
            assert!(with_id(bad).validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_rejected() {
        assert!(serde_json::from_str::<NewEvent>(r#"{"event_ts":1,"op_type":"a","input_size":1,"x":1}"#).is_err());
        assert!(serde_json::from_str::<NewEvent>(r#"{"event_ts":"1","op_type":"a","input_size":1}"#).is_err());
        assert!(serde_json::from_str::<NewEvent>(r#"{"event_ts":1,"op_type":"a","input_size":-1}"#).is_err());
    }
}
