//! Where buckets live: the Dapr state store, read with its ETag and written
//! back with that ETag and `concurrency: first-write`, so of two replicas
//! that read the same bucket only one write lands; the other gets 409 and
//! decides again on what is now stored.

use super::bucket::Bucket;
use crate::dapr::{DaprClient, DaprError, SaveItem};
use crate::trace::TraceContext;
use crate::BoxFuture;
use std::time::Instant;

/// A bucket as read, with the version to write it back against.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// `None` when the stored value is not a bucket: it starts afresh.
    pub bucket: Option<Bucket>,
    pub etag: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote the bucket since it was read (HTTP 409).
    #[error("the bucket changed since it was read")]
    Conflict,
    /// The store (or the sidecar) cannot answer: the fallback decides.
    #[error("the bucket store cannot answer: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A bucket store with optimistic concurrency; a trait so the decision logic
/// runs in unit tests against an in-memory one.
pub trait BucketStore: Send + Sync {
    fn load(&self, key: String, trace: TraceContext) -> BoxFuture<Result<Option<Versioned>, StoreError>>;
    /// Writes `bucket` only if the stored version is still `etag`, or, for
    /// `None`, only if there is no bucket yet. Expires after `ttl_secs`.
    fn save(
        &self,
        key: String,
        bucket: Bucket,
        etag: Option<String>,
        ttl_secs: u64,
        trace: TraceContext,
    ) -> BoxFuture<Result<(), StoreError>>;
}

/// The ETag that means "only if absent" for Dapr's Redis state store
/// (components-contrib v1.16.5, state/redis `setDefaultQuery`): versions
/// start at 1, so "0" never matches a stored bucket, and a key that is
/// missing is written whatever the ETag. An empty ETag would not do: with
/// first-write it only fails against keys written without first-write, and
/// then as a 500, not a 409.
const ABSENT_ETAG: &str = "0";

/// The buckets in Dapr state (`STATE_STORE`), through the sidecar.
pub struct DaprStore {
    dapr: DaprClient,
    store: String,
}

impl DaprStore {
    pub fn new(dapr: DaprClient, store: String) -> Self {
        Self { dapr, store }
    }
}

fn unavailable(e: DaprError) -> StoreError {
    match e {
        DaprError::EtagMismatch { .. } => StoreError::Conflict,
        other => StoreError::Unavailable(Box::new(other)),
    }
}

fn observe(op: &'static str, started: Instant) {
    super::metrics().state_call.with_label_values(&[op]).observe(started.elapsed().as_secs_f64());
}

impl BucketStore for DaprStore {
    fn load(&self, key: String, trace: TraceContext) -> BoxFuture<Result<Option<Versioned>, StoreError>> {
        let (dapr, store) = (self.dapr.clone(), self.store.clone());
        Box::pin(async move {
            let started = Instant::now();
            let item = dapr.get_state(&trace, &store, &key).await;
            observe("get", started);
            let Some(item) = item.map_err(unavailable)? else { return Ok(None) };
            // A value this code did not write (or an older shape) starts
            // afresh and is overwritten against its ETag.
            let etag = item.etag.unwrap_or_default();
            let bucket = serde_json::from_value::<Bucket>(item.value)
                .map_err(|e| tracing::warn!(key, error = %e, "rate-limit bucket unreadable; starting it afresh"))
                .ok()
                .filter(|b| b.tokens.is_finite());
            Ok(Some(Versioned { bucket, etag }))
        })
    }

    fn save(
        &self,
        key: String,
        bucket: Bucket,
        etag: Option<String>,
        ttl_secs: u64,
        trace: TraceContext,
    ) -> BoxFuture<Result<(), StoreError>> {
        let (dapr, store) = (self.dapr.clone(), self.store.clone());
        Box::pin(async move {
            let value = serde_json::to_value(bucket).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
            let item = SaveItem::new(key, value)
                .if_match(Some(etag.unwrap_or_else(|| ABSENT_ETAG.to_owned())))
                .ttl(ttl_secs.max(1));
            let started = Instant::now();
            let saved = dapr.save_state(&trace, &store, &[item]).await;
            observe("save", started);
            saved.map_err(unavailable)
        })
    }
}
