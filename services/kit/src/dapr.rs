//! A thin client for the Dapr HTTP API v1.0, over the same hyper client on
//! native and WASI (no Dapr SDK builds for WASI).
//!
//! Every call takes the caller's [`TraceContext`] and forwards it, so daprd
//! continues the trace. Every error names the Dapr call and what went wrong.

use crate::config::DaprConfig;
use crate::trace::TraceContext;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, ETAG, IF_MATCH};
use http::{Method, StatusCode};
use hyper::client::HttpConnector;
use hyper::{Body, Client, Request};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tracing::Instrument;

const API_TOKEN: HeaderName = HeaderName::from_static("dapr-api-token");

/// A call to the sidecar, as errors, spans and metrics name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaprOp {
    Healthz,
    /// Start-up polling [`DaprOp::Healthz`] for this long.
    WaitForSidecar {
        within: Duration,
    },
    Invoke {
        app_id: String,
        method: String,
    },
    StateGet {
        store: String,
    },
    StateBulk {
        store: String,
    },
    StateSave {
        store: String,
    },
    StateDelete {
        store: String,
    },
    StateTransaction {
        store: String,
    },
    SecretGet {
        store: String,
        key: String,
    },
}

impl DaprOp {
    /// The kind of call: a bounded metric label (`invoke`, `state.get`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Healthz | Self::WaitForSidecar { .. } => "healthz",
            Self::Invoke { .. } => "invoke",
            Self::StateGet { .. } => "state.get",
            Self::StateBulk { .. } => "state.bulk",
            Self::StateSave { .. } => "state.save",
            Self::StateDelete { .. } => "state.delete",
            Self::StateTransaction { .. } => "state.transaction",
            Self::SecretGet { .. } => "secrets.get",
        }
    }
}

/// `invoke events-service/create_event`, `state.save statestore`, …
impl std::fmt::Display for DaprOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Healthz => f.write_str("healthz"),
            Self::WaitForSidecar { within } => write!(f, "wait for sidecar ({} s)", within.as_secs()),
            Self::Invoke { app_id, method } => write!(f, "invoke {app_id}/{method}"),
            Self::StateGet { store }
            | Self::StateBulk { store }
            | Self::StateSave { store }
            | Self::StateDelete { store }
            | Self::StateTransaction { store } => write!(f, "{} {store}", self.kind()),
            Self::SecretGet { store, key } => write!(f, "secrets.get {store}/{key}"),
        }
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum DaprError {
    #[error("dapr {op}: the sidecar at {url} is unreachable: {source}")]
    Unreachable { op: DaprOp, url: String, source: hyper::Error },
    #[error("dapr {op}: no answer within {} ms", .timeout.as_millis())]
    Timeout { op: DaprOp, timeout: Duration },
    #[error("dapr {op}: ETag mismatch (the item changed since it was read)")]
    EtagMismatch { op: DaprOp },
    /// Dapr (or the invoked app) answered with an error; `message` is what
    /// it said.
    #[error("dapr {op}: answered {status}: {message}")]
    Status { op: DaprOp, status: StatusCode, message: String },
    #[error("dapr {op}: cannot build the request: {source}")]
    Encode { op: DaprOp, source: Cause },
    #[error("dapr {op}: unexpected answer: {source}")]
    Decode { op: DaprOp, source: Cause },
}

impl DaprError {
    /// The Dapr operation that failed.
    pub fn op(&self) -> &DaprOp {
        match self {
            Self::Unreachable { op, .. }
            | Self::Timeout { op, .. }
            | Self::EtagMismatch { op }
            | Self::Status { op, .. }
            | Self::Encode { op, .. }
            | Self::Decode { op, .. } => op,
        }
    }

    /// A short outcome label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::EtagMismatch { .. } => "etag_mismatch",
            Self::Status { .. } => "status",
            Self::Encode { .. } => "encode",
            Self::Decode { .. } => "decode",
        }
    }

    fn encode(op: &DaprOp, source: impl Into<Cause>) -> Self {
        Self::Encode { op: op.clone(), source: source.into() }
    }

    fn decode(op: &DaprOp, source: impl Into<Cause>) -> Self {
        Self::Decode { op: op.clone(), source: source.into() }
    }
}

/// A fixed answer per code; the sidecar's URL and what it said go to the
/// log only.
impl From<DaprError> for crate::ApiError {
    fn from(e: DaprError) -> Self {
        match e {
            DaprError::Unreachable { .. } | DaprError::Timeout { .. } => crate::ApiError::unavailable(
                "dependency_unavailable",
                "a service this request needs is unavailable; retry shortly",
            ),
            _ => crate::ApiError::bad_gateway("dependency_failed", "a service this request needs failed"),
        }
        .with_detail(e)
    }
}

/// The answer of a service invocation, whatever its status.
#[derive(Debug, Clone)]
pub struct Invoked {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A state item as read, with the ETag to write it back with.
#[derive(Debug, Clone, PartialEq)]
pub struct StateItem {
    pub value: Value,
    pub etag: Option<String>,
}

/// One key of a bulk read: `value` is `None` when the key does not exist.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BulkItem {
    pub key: String,
    #[serde(rename = "data", default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Concurrency {
    FirstWrite,
    LastWrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    Eventual,
    Strong,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateOptions {
    pub concurrency: Concurrency,
    pub consistency: Consistency,
}

/// One item to save: with `etag` + first-write it only succeeds if the item
/// is unchanged since it was read (optimistic concurrency).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SaveItem {
    pub key: String,
    pub value: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<StateOptions>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl SaveItem {
    pub fn new(key: impl Into<String>, value: Value) -> Self {
        Self { key: key.into(), value, etag: None, options: None, metadata: BTreeMap::new() }
    }

    /// Write only if the stored ETag is still `etag` (`None`: only if absent
    /// is not expressible in Dapr; first-write without an etag always writes).
    pub fn if_match(mut self, etag: Option<String>) -> Self {
        self.etag = etag;
        self.options = Some(StateOptions { concurrency: Concurrency::FirstWrite, consistency: Consistency::Strong });
        self
    }

    /// The store deletes the item by itself after `seconds`.
    pub fn ttl(mut self, seconds: u64) -> Self {
        self.metadata.insert("ttlInSeconds".to_owned(), seconds.to_string());
        self
    }
}

/// One operation of a state transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TxOp {
    Upsert(SaveItem),
    Delete { key: String, etag: Option<String> },
}

#[derive(Clone)]
pub struct DaprClient {
    base: String,
    token: Option<HeaderValue>,
    timeout: Duration,
    http: Client<HttpConnector, Body>,
}

impl std::fmt::Debug for DaprClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaprClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl DaprClient {
    pub fn new(config: &DaprConfig) -> Result<Self, crate::config::ConfigError> {
        let token = match &config.api_token {
            None => None,
            Some(t) => Some(HeaderValue::from_str(t).map_err(|_| {
                crate::config::ConfigError::new("DAPR_API_TOKEN", "<hidden>", "not a valid header value")
            })?),
        };
        Ok(Self {
            base: format!("http://{}:{}", config.host, config.http_port),
            token,
            timeout: config.call_timeout,
            http: Client::builder().pool_idle_timeout(Duration::from_secs(30)).build_http(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        op: &DaprOp,
        method: Method,
        path: &str,
        trace: &TraceContext,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Invoked, DaprError> {
        let url = format!("{}{}", self.base, path);
        let kind = op.kind();
        // A client span per call, whose context daprd continues. Probes of
        // the sidecar's health and background calls outside any request
        // (start-up, the spool's rounds) would only be noise in the traces.
        let span = if matches!(op, DaprOp::Healthz | DaprOp::WaitForSidecar { .. })
            || tracing::Span::current().is_none()
        {
            tracing::Span::none()
        } else {
            tracing::info_span!("dapr", otel.name = %format!("dapr {op}"), otel.kind = "client", dapr.operation = kind, http.response.status_code = tracing::field::Empty, otel.status_code = tracing::field::Empty)
        };
        let mut builder = Request::builder().method(method).uri(&url);
        if let Some(h) = builder.headers_mut() {
            h.extend(headers);
            TraceContext::of_span(&span).as_ref().unwrap_or(trace).inject(h);
            if let Some(token) = &self.token {
                h.insert(API_TOKEN, token.clone());
            }
        }
        let req = builder.body(Body::from(body)).map_err(|e| DaprError::encode(op, e))?;
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, async {
            let res = self.http.request(req).await?;
            let (parts, body) = res.into_parts();
            let body = hyper::body::to_bytes(body).await?;
            Ok::<_, hyper::Error>(Invoked { status: parts.status, headers: parts.headers, body })
        })
        .instrument(span.clone())
        .await;
        let result = match outcome {
            Err(_) => Err(DaprError::Timeout { op: op.clone(), timeout: self.timeout }),
            Ok(Err(source)) => Err(DaprError::Unreachable { op: op.clone(), url, source }),
            Ok(Ok(invoked)) => Ok(invoked),
        };
        let outcome = match &result {
            Ok(r) if r.status.is_success() => "ok",
            Ok(r) if r.status.is_client_error() => "4xx",
            Ok(_) => "5xx",
            Err(e) => e.kind(),
        };
        if let Ok(r) = &result {
            span.record("http.response.status_code", r.status.as_u16());
        }
        if outcome != "ok" {
            span.record("otel.status_code", "error");
        }
        if crate::metrics::enabled() {
            crate::metrics::dapr()
                .call_duration
                .with_label_values(&[kind, outcome])
                .observe(started.elapsed().as_secs_f64());
        }
        tracing::debug!(%op, outcome, duration_ms = started.elapsed().as_secs_f64() * 1e3, "dapr call");
        result
    }

    /// Turns a non-success answer of Dapr's own API into an error, with
    /// Dapr's `message` when it sent its JSON error.
    fn expect_success(op: &DaprOp, res: Invoked) -> Result<Invoked, DaprError> {
        if res.status.is_success() {
            return Ok(res);
        }
        if res.status == StatusCode::CONFLICT {
            return Err(DaprError::EtagMismatch { op: op.clone() });
        }
        let message = serde_json::from_slice::<Value>(&res.body)
            .ok()
            .and_then(|v| {
                let code = v.get("errorCode").and_then(Value::as_str).unwrap_or_default().to_owned();
                v.get("message").and_then(Value::as_str).map(|m| format!("{code} {m}").trim().to_owned())
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&res.body).chars().take(300).collect());
        Err(DaprError::Status { op: op.clone(), status: res.status, message })
    }

    /// Ready when the sidecar's components are loaded (outbound health),
    /// which does not depend on this app being up.
    pub async fn healthz(&self) -> Result<(), DaprError> {
        let op = DaprOp::Healthz;
        let res = self
            .call(&op, Method::GET, "/v1.0/healthz/outbound", &TraceContext::default(), HeaderMap::new(), Bytes::new())
            .await?;
        Self::expect_success(&op, res).map(|_| ())
    }

    /// Polls the sidecar's health until it answers or `within` passes.
    pub async fn wait_for_sidecar(&self, within: Duration) -> Result<(), DaprError> {
        let deadline = Instant::now() + within;
        let mut last = None;
        while Instant::now() < deadline {
            match self.healthz().await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let op = DaprOp::WaitForSidecar { within };
        Err(match last {
            Some(DaprError::Unreachable { url, source, .. }) => DaprError::Unreachable { op, url, source },
            Some(e) => e,
            None => DaprError::Timeout { op, timeout: within },
        })
    }

    /// `POST|GET|… /v1.0/invoke/<app_id>/method/<method>`; any status of the
    /// target app comes back as it is.
    pub async fn invoke(
        &self,
        trace: &TraceContext,
        app_id: &str,
        http_method: Method,
        method: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<Invoked, DaprError> {
        let op = DaprOp::Invoke { app_id: app_id.to_owned(), method: method.to_owned() };
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        let path = format!("/v1.0/invoke/{}/method/{}", encode_segment(app_id), method.trim_start_matches('/'));
        let res = self.call(&op, http_method, &path, trace, headers, body).await?;
        // Dapr's own failures (target not found, app channel down) come as
        // its JSON error with ERR_DIRECT_INVOKE; surface them as errors.
        if res.status.is_server_error() && is_dapr_error(&res.body) {
            return Self::expect_success(&op, res);
        }
        Ok(res)
    }

    /// Invokes with a JSON body and expects a 2xx JSON answer.
    pub async fn invoke_json<T: Serialize>(
        &self,
        trace: &TraceContext,
        app_id: &str,
        method: &str,
        body: &T,
    ) -> Result<Value, DaprError> {
        let op = DaprOp::Invoke { app_id: app_id.to_owned(), method: method.to_owned() };
        let body = serde_json::to_vec(body).map_err(|e| DaprError::encode(&op, e))?;
        let res = self.invoke(trace, app_id, Method::POST, method, Some("application/json"), body.into()).await?;
        let res = Self::expect_success(&op, res)?;
        if res.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&res.body).map_err(|e| DaprError::decode(&op, e))
    }

    /// `GET /v1.0/state/<store>/<key>`: `None` when the key does not exist.
    pub async fn get_state(
        &self,
        trace: &TraceContext,
        store: &str,
        key: &str,
    ) -> Result<Option<StateItem>, DaprError> {
        let op = DaprOp::StateGet { store: store.to_owned() };
        let path = format!("/v1.0/state/{}/{}", encode_segment(store), encode_segment(key));
        let res = self.call(&op, Method::GET, &path, trace, HeaderMap::new(), Bytes::new()).await?;
        let res = Self::expect_success(&op, res)?;
        if res.status == StatusCode::NO_CONTENT || res.body.is_empty() {
            return Ok(None);
        }
        let value = serde_json::from_slice(&res.body).map_err(|e| DaprError::decode(&op, e))?;
        let etag = res.headers.get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Some(StateItem { value, etag }))
    }

    /// `POST /v1.0/state/<store>/bulk`.
    pub async fn get_bulk_state(
        &self,
        trace: &TraceContext,
        store: &str,
        keys: &[String],
    ) -> Result<Vec<BulkItem>, DaprError> {
        let op = DaprOp::StateBulk { store: store.to_owned() };
        let body = serde_json::json!({ "keys": keys, "parallelism": 10 });
        let res = self.post_json(&op, &format!("/v1.0/state/{}/bulk", encode_segment(store)), trace, &body).await?;
        serde_json::from_slice(&res.body).map_err(|e| DaprError::decode(&op, e))
    }

    /// `POST /v1.0/state/<store>`; an ETag conflict is [`DaprError::EtagMismatch`].
    pub async fn save_state(&self, trace: &TraceContext, store: &str, items: &[SaveItem]) -> Result<(), DaprError> {
        let op = DaprOp::StateSave { store: store.to_owned() };
        self.post_json(&op, &format!("/v1.0/state/{}", encode_segment(store)), trace, &items).await.map(|_| ())
    }

    /// `DELETE /v1.0/state/<store>/<key>`, with `If-Match` when `etag` is given.
    pub async fn delete_state(
        &self,
        trace: &TraceContext,
        store: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<(), DaprError> {
        let op = DaprOp::StateDelete { store: store.to_owned() };
        let mut headers = HeaderMap::new();
        if let Some(etag) = etag {
            let v = HeaderValue::from_str(etag).map_err(|e| DaprError::encode(&op, e))?;
            headers.insert(IF_MATCH, v);
        }
        let path = format!("/v1.0/state/{}/{}", encode_segment(store), encode_segment(key));
        let res = self.call(&op, Method::DELETE, &path, trace, headers, Bytes::new()).await?;
        Self::expect_success(&op, res).map(|_| ())
    }

    /// `POST /v1.0/state/<store>/transaction`: all or nothing.
    pub async fn transaction(&self, trace: &TraceContext, store: &str, ops: &[TxOp]) -> Result<(), DaprError> {
        let op = DaprOp::StateTransaction { store: store.to_owned() };
        let operations: Vec<Value> = ops
            .iter()
            .map(|o| match o {
                TxOp::Upsert(item) => serde_json::json!({ "operation": "upsert", "request": item }),
                TxOp::Delete { key, etag } => {
                    let mut request = serde_json::json!({ "key": key });
                    if let Some(etag) = etag {
                        request["etag"] = Value::from(etag.clone());
                    }
                    serde_json::json!({ "operation": "delete", "request": request })
                }
            })
            .collect();
        let body = serde_json::json!({ "operations": operations });
        self.post_json(&op, &format!("/v1.0/state/{}/transaction", encode_segment(store)), trace, &body)
            .await
            .map(|_| ())
    }

    /// `GET /v1.0/secrets/<store>/<key>`: the secret's name/value map.
    pub async fn get_secret(
        &self,
        trace: &TraceContext,
        store: &str,
        key: &str,
    ) -> Result<HashMap<String, String>, DaprError> {
        let op = DaprOp::SecretGet { store: store.to_owned(), key: key.to_owned() };
        let path = format!("/v1.0/secrets/{}/{}", encode_segment(store), encode_segment(key));
        let res = self.call(&op, Method::GET, &path, trace, HeaderMap::new(), Bytes::new()).await?;
        let res = Self::expect_success(&op, res)?;
        serde_json::from_slice(&res.body).map_err(|e| DaprError::decode(&op, e))
    }

    async fn post_json<T: Serialize + ?Sized>(
        &self,
        op: &DaprOp,
        path: &str,
        trace: &TraceContext,
        body: &T,
    ) -> Result<Invoked, DaprError> {
        let body = serde_json::to_vec(body).map_err(|e| DaprError::encode(op, e))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let res = self.call(op, Method::POST, path, trace, headers, body.into()).await?;
        Self::expect_success(op, res)
    }
}

fn is_dapr_error(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("errorCode").and_then(Value::as_str).map(|c| c.starts_with("ERR_")))
        .unwrap_or(false)
}

/// Percent-encodes one URL path segment (keys may hold `:` of IPv6, spaces…).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_items_serialise_as_dapr_expects() {
        let item = SaveItem::new("k", serde_json::json!({"a": 1})).if_match(Some("7".into())).ttl(30);
        let v = serde_json::to_value(&item).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "key": "k", "value": {"a": 1}, "etag": "7",
                "options": {"concurrency": "first-write", "consistency": "strong"},
                "metadata": {"ttlInSeconds": "30"}
            })
        );
        let plain = serde_json::to_value(SaveItem::new("k", Value::from(1))).expect("json");
        assert_eq!(plain, serde_json::json!({"key": "k", "value": 1}));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("last-seen:2001:db8::1"), "last-seen%3A2001%3Adb8%3A%3A1");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }
}
