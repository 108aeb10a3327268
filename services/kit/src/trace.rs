//! W3C trace context (`traceparent`, `tracestate`) carried from the request
//! daprd delivered to every call the service makes back through daprd, so
//! daprd continues the caller's trace instead of starting a new one.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: Option<HeaderValue>,
    pub tracestate: Option<HeaderValue>,
}

impl TraceContext {
    /// The context of an inbound request; an ill-formed `traceparent` is
    /// dropped (the spec says to start afresh), and `tracestate` with it.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let traceparent =
            headers.get(TRACEPARENT).filter(|v| v.to_str().map(is_valid_traceparent).unwrap_or(false)).cloned();
        let tracestate = traceparent.as_ref().and_then(|_| headers.get(TRACESTATE).cloned());
        Self { traceparent, tracestate }
    }

    /// Adds this context to outbound headers.
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Some(tp) = &self.traceparent {
            headers.insert(TRACEPARENT, tp.clone());
            if let Some(ts) = &self.tracestate {
                headers.insert(TRACESTATE, ts.clone());
            }
        }
    }

    /// The context of `span` (its trace id, its own span id as the parent of
    /// what it calls), or `None` when spans are not being recorded
    /// (`TRACING=false`, or no subscriber as in unit tests).
    pub fn of_span(span: &tracing::Span) -> Option<Self> {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if !sc.is_valid() {
            return None;
        }
        let traceparent = format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8());
        let state = sc.trace_state().header();
        Some(Self {
            traceparent: HeaderValue::from_str(&traceparent).ok(),
            tracestate: Some(state).filter(|s| !s.is_empty()).and_then(|s| HeaderValue::from_str(&s).ok()),
        })
    }

    /// The 32-hex-digit trace id, when there is a context.
    pub fn trace_id(&self) -> Option<&str> {
        self.traceparent.as_ref().and_then(|v| v.to_str().ok()).and_then(|s| s.get(3..35))
    }
}

/// Makes `span` a child of the trace the inbound `headers` carry (W3C trace
/// context); with none, `span` starts a new trace. Call it before anything
/// reads the span's context.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// `http` 0.2 headers as OpenTelemetry's extractor (its own adapter speaks `http` 1.x).
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// `version-traceid-parentid-flags`, lower-case hex, ids not all zero,
/// version not `ff` (W3C Trace Context, level 1).
pub fn is_valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.trim().split('-').collect();
    if parts.len() < 4 {
        return false;
    }
    let hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let (version, trace_id, parent_id, flags) = (parts[0], parts[1], parts[2], parts[3]);
    hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.len() == 4)
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_context_is_kept_and_forwarded() {
        let mut inbound = HeaderMap::new();
        inbound.insert(TRACEPARENT, HeaderValue::from_static(TP));
        inbound.insert(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        let ctx = TraceContext::from_headers(&inbound);
        assert_eq!(ctx.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let mut out = HeaderMap::new();
        ctx.inject(&mut out);
        assert_eq!(out.get(TRACEPARENT).map(|v| v.as_bytes()), Some(TP.as_bytes()));
        assert!(out.contains_key(TRACESTATE));
    }

    #[test]
    fn ill_formed_contexts_are_dropped() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert!(!is_valid_traceparent(bad), "{bad}");
        }
    }
}
