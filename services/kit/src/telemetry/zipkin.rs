//! Finished spans to Zipkin (`POST /api/v2/spans`, JSON v2), from a task on
//! the service's own runtime.
//!
//! Why not `opentelemetry-zipkin`: its 0.33 local endpoint has no
//! `serviceName` (Zipkin would list every service as "unknown"), it needs an
//! `http` 1.x client while hyper 0.14 / hyper_wasi speak `http` 0.2, and it is
//! deprecated. The JSON v2 model is small; writing it here keeps the app id
//! on every span and one HTTP client in kit.

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use prometheus::IntCounterVec;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Spans waiting for the exporter; past this, new spans are dropped and
/// counted rather than grow memory without bound.
pub const QUEUE_CAPACITY: usize = 8192;
const BATCH_MAX: usize = 512;
/// How long a batch waits for more spans: short, so a trace shows up in
/// Zipkin within a second of the request.
const BATCH_LINGER: Duration = Duration::from_millis(200);
const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// At shutdown, how long flushing may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

struct Metrics {
    spans: IntCounterVec,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        spans: crate::metrics::counter_vec(
            "trace_spans_total",
            "Finished spans by what became of them: exported, dropped (queue full) or failed (Zipkin unreachable).",
            &["outcome"],
        ),
    })
}

pub type SpanQueue = mpsc::Receiver<SpanData>;

/// The SDK's side: puts each finished, sampled span in the queue. Never
/// blocks the thread that ended the span.
#[derive(Debug)]
pub struct ChannelProcessor {
    tx: mpsc::Sender<SpanData>,
}

impl ChannelProcessor {
    pub fn new(capacity: usize) -> (Self, SpanQueue) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx }, rx)
    }
}

impl SpanProcessor for ChannelProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(span).is_err() {
            metrics().spans.with_label_values(&["dropped"]).inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The running export task.
pub struct Exporter {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    pub fn spawn(queue: SpanQueue, endpoint: String, service: String) -> Self {
        // Every outcome at 0 from start-up: a healthy export shows 0 dropped, not "No data".
        for outcome in ["exported", "dropped", "failed"] {
            metrics().spans.with_label_values(&[outcome]);
        }
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(export_loop(queue, Poster::new(endpoint, service), stopped));
        Self { stop, task }
    }

    /// Sends what is still queued, within a bound, and ends the task.
    pub async fn flush(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(FLUSH_TIMEOUT + POST_TIMEOUT, self.task).await.is_err() {
            tracing::warn!("spans still unsent after the flush deadline");
        }
    }
}

async fn export_loop(mut queue: SpanQueue, mut poster: Poster, mut stopped: oneshot::Receiver<()>) {
    loop {
        let first = tokio::select! {
            span = queue.recv() => match span { Some(span) => span, None => return },
            _ = &mut stopped => break,
        };
        let mut batch = vec![first];
        let linger = tokio::time::sleep(BATCH_LINGER);
        tokio::pin!(linger);
        while batch.len() < BATCH_MAX {
            tokio::select! {
                span = queue.recv() => match span { Some(span) => batch.push(span), None => break },
                _ = &mut linger => break,
            }
        }
        poster.post(batch).await;
    }
    // Shutting down: whatever is queued now, in batches, within the deadline.
    let flush = async {
        let mut batch = Vec::new();
        while let Ok(span) = queue.try_recv() {
            batch.push(span);
            if batch.len() == BATCH_MAX {
                poster.post(std::mem::take(&mut batch)).await;
            }
        }
        if !batch.is_empty() {
            poster.post(batch).await;
        }
    };
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, flush).await;
}

struct Poster {
    endpoint: String,
    service: String,
    http: hyper::Client<hyper::client::HttpConnector>,
    /// Logged once per outage, not once per batch.
    failing: bool,
}

impl Poster {
    fn new(endpoint: String, service: String) -> Self {
        Self { endpoint, service, http: hyper::Client::new(), failing: false }
    }

    async fn post(&mut self, batch: Vec<SpanData>) {
        let count = batch.len() as u64;
        let body = zipkin_body(&self.service, &batch);
        let request = hyper::Request::post(&self.endpoint)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(hyper::Body::from(body));
        let outcome = match request {
            Err(e) => Err(format!("cannot build the request: {e}")),
            Ok(request) => match tokio::time::timeout(POST_TIMEOUT, self.http.request(request)).await {
                Err(_) => Err(format!("no answer within {} s", POST_TIMEOUT.as_secs())),
                Ok(Err(e)) => Err(e.to_string()),
                Ok(Ok(res)) if res.status().is_success() => Ok(()),
                Ok(Ok(res)) => Err(format!("Zipkin answered {}", res.status())),
            },
        };
        match outcome {
            Ok(()) => {
                metrics().spans.with_label_values(&["exported"]).inc_by(count);
                if std::mem::take(&mut self.failing) {
                    tracing::info!(endpoint = %self.endpoint, "span export recovered");
                }
            }
            Err(reason) => {
                metrics().spans.with_label_values(&["failed"]).inc_by(count);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(endpoint = %self.endpoint, %reason, "span export failed; spans are dropped until Zipkin is back");
                }
            }
        }
    }
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// A batch of spans as the body of `POST /api/v2/spans`: serialized
/// straight from the spans into one buffer, with no `serde_json::Value`
/// tree built per span in between (a request makes 5-9 spans).
pub fn zipkin_body(service: &str, spans: &[SpanData]) -> Vec<u8> {
    let spans: Vec<ZipkinSpan<'_>> = spans.iter().map(|span| ZipkinSpan { service, span }).collect();
    serde_json::to_vec(&spans).unwrap_or_else(|_| b"[]".to_vec())
}

/// One span in Zipkin's JSON v2 model.
struct ZipkinSpan<'a> {
    service: &'a str,
    span: &'a SpanData,
}

impl Serialize for ZipkinSpan<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let span = self.span;
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("traceId", &span.span_context.trace_id().to_string())?;
        out.serialize_entry("id", &span.span_context.span_id().to_string())?;
        if span.parent_span_id != SpanId::INVALID {
            out.serialize_entry("parentId", &span.parent_span_id.to_string())?;
        }
        out.serialize_entry("name", span.name.as_ref())?;
        let kind = match span.span_kind {
            SpanKind::Server => Some("SERVER"),
            SpanKind::Client => Some("CLIENT"),
            SpanKind::Producer => Some("PRODUCER"),
            SpanKind::Consumer => Some("CONSUMER"),
            SpanKind::Internal => None,
        };
        if let Some(kind) = kind {
            out.serialize_entry("kind", kind)?;
        }
        let start = micros(span.start_time);
        out.serialize_entry("timestamp", &start)?;
        // Zipkin drops a zero duration: a span always took at least 1 µs.
        out.serialize_entry("duration", &micros(span.end_time).saturating_sub(start).max(1))?;
        out.serialize_entry("localEndpoint", &LocalEndpoint { service_name: self.service })?;
        out.serialize_entry("tags", &Tags(span))?;
        if !span.events.is_empty() {
            out.serialize_entry("annotations", &Annotations(span))?;
        }
        out.end()
    }
}

#[derive(Serialize)]
struct LocalEndpoint<'a> {
    #[serde(rename = "serviceName")]
    service_name: &'a str,
}

/// The span's attributes as strings, its instrumentation scope (tells the
/// services' own spans from daprd's, same service name, at a glance) and
/// `error` when its status is one.
struct Tags<'a>(&'a SpanData);

impl Serialize for Tags<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let span = self.0;
        let mut tags = serializer.serialize_map(None)?;
        for kv in &span.attributes {
            tags.serialize_entry(kv.key.as_str(), kv.value.as_str().as_ref())?;
        }
        tags.serialize_entry("otel.scope.name", span.instrumentation_scope.name())?;
        if let Status::Error { description } = &span.status {
            let error: &str = if description.is_empty() { "true" } else { description };
            tags.serialize_entry("error", error)?;
        }
        tags.end()
    }
}

struct Annotations<'a>(&'a SpanData);

impl Serialize for Annotations<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut list = serializer.serialize_seq(Some(self.0.events.len()))?;
        for e in self.0.events.iter() {
            list.serialize_element(&Annotation { timestamp: micros(e.timestamp), value: e.name.as_ref() })?;
        }
        list.end()
    }
}

#[derive(Serialize)]
struct Annotation<'a> {
    timestamp: u64,
    value: &'a str,
}
