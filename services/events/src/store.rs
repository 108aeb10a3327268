//! The events table behind a connection pool. Every database failure is
//! classified once here: the database being away is 503 (retry), a broken
//! query is 500, a schema not migrated yet is 503 naming the fix.

use kit::ApiError;
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An event as stored and listed (the original template's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    pub event_ts: i64,
    pub op_type: String,
    pub input_size: u32,
}

/// The body of `POST /create_event`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
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
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("the events table does not exist yet: call GET /init (or run `migrate up`)")]
    NotMigrated,
    #[error("database query failed: {0}")]
    Query(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ApiError::unavailable("database_unavailable", e.to_string()),
            StoreError::NotMigrated => ApiError::unavailable("schema_not_migrated", e.to_string()),
            StoreError::Query(_) => ApiError::internal(e.to_string()),
        }
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
        mysql_async::Error::Server(ref s) if UNAVAILABLE_CODES.contains(&s.code) => StoreError::Unavailable(e.to_string()),
        mysql_async::Error::Server(_) | mysql_async::Error::Url(_) => StoreError::Query(e.to_string()),
        // I/O, driver (closed connection, pool gone) and the rest: the database is away.
        _ => StoreError::Unavailable(e.to_string()),
    }
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
        let opts = Opts::from_url(url).map_err(|e| StoreError::Query(format!("bad database URL: {e}")))?;
        let constraints = PoolConstraints::new(0, settings.pool_max.max(1))
            .ok_or_else(|| StoreError::Query("bad pool size".into()))?;
        let pool_opts = PoolOpts::default()
            .with_constraints(constraints)
            .with_inactive_connection_ttl(Duration::from_secs(30));
        let builder = OptsBuilder::from_opts(opts).pool_opts(pool_opts).prefer_socket(false);
        Ok(Self { pool: Pool::new(builder), timeout: settings.timeout })
    }

    /// A pooled connection, within the timeout.
    pub async fn conn(&self) -> Result<Conn, StoreError> {
        match kit::tokio::time::timeout(self.timeout, self.pool.get_conn()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(StoreError::Unavailable(format!("no connection within {} ms", self.timeout.as_millis()))),
        }
    }

    async fn bounded<T>(&self, f: impl std::future::Future<Output = Result<T, mysql_async::Error>>) -> Result<T, StoreError> {
        match kit::tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(classify),
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {} ms", self.timeout.as_millis()))),
        }
    }

    pub async fn insert(&self, e: &NewEvent) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        self.bounded(conn.exec_drop(
            "INSERT INTO image_evts (event_ts, op_type, input_size) VALUES (?, ?, ?)",
            (e.event_ts, &e.op_type, e.input_size),
        ))
        .await?;
        Ok(conn.last_insert_id().unwrap_or(0))
    }

    /// Newest first; `before_id` continues a previous page.
    pub async fn list(&self, limit: u32, before_id: Option<u64>) -> Result<Vec<Event>, StoreError> {
        let before = before_id.unwrap_or(u64::MAX);
        let rows: Vec<(u64, i64, String, u32)> = self
            .read(|mut conn| async move {
                conn.exec(
                    "SELECT id, event_ts, op_type, input_size FROM image_evts WHERE id < ? ORDER BY id DESC LIMIT ?",
                    (before, limit),
                )
                .await
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, event_ts, op_type, input_size)| Event { id, event_ts, op_type, input_size })
            .collect())
    }

    /// How many events are stored: what a load test compares with the
    /// requests it saw acknowledged (one event each, none twice).
    pub async fn count(&self) -> Result<u64, StoreError> {
        let count: Option<u64> = self
            .read(|mut conn| async move { conn.query_first("SELECT COUNT(*) FROM image_evts").await })
            .await?;
        Ok(count.unwrap_or(0))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|mut conn| async move { conn.ping().await }).await
    }

    /// A read, retried once on a fresh connection when the pooled one turns
    /// out dead (after a database restart every idle connection is).
    async fn read<T, F, Fut>(&self, query: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, mysql_async::Error>>,
    {
        let first = self.bounded(query(self.conn().await?)).await;
        match first {
            Err(StoreError::Unavailable(_)) => self.bounded(query(self.conn().await?)).await,
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

    fn event(ts: i64, op: &str, size: u64) -> NewEvent {
        NewEvent { event_ts: ts, op_type: op.into(), input_size: size }
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
    fn unknown_fields_and_wrong_types_are_rejected() {
        assert!(serde_json::from_str::<NewEvent>(r#"{"event_ts":1,"op_type":"a","input_size":1,"x":1}"#).is_err());
        assert!(serde_json::from_str::<NewEvent>(r#"{"event_ts":"1","op_type":"a","input_size":1}"#).is_err());
        assert!(serde_json::from_str::<NewEvent>(r#"{"event_ts":1,"op_type":"a","input_size":-1}"#).is_err());
    }
}
