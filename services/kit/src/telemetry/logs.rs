//! JSON log lines that carry the trace: `{"timestamp", "level", "target",
//! "service", "message", ...fields, "span", "trace_id", "span_id"}`, one per
//! line on stderr. tracing-subscriber's own JSON format cannot add the
//! OpenTelemetry ids, so this small layer writes the lines itself.

use opentelemetry::trace::TraceContextExt;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::fmt::Debug;
use std::io::Write;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

pub struct JsonLogs {
    service: String,
}

impl JsonLogs {
    pub fn new(service: String) -> Self {
        Self { service }
    }
}

/// A `Debug` value as a JSON string, formatted straight into the line.
struct DebugStr<'a>(&'a dyn Debug);

impl Serialize for DebugStr<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{:?}", self.0))
    }
}

/// The event's fields, written as entries of the line's object as they are
/// visited: no map is built per line (one line per request at least, the
/// access log). A write error cannot happen on a `Vec`; it would only cut
/// the line, which the reader then skips.
struct Fields<'a, M: SerializeMap>(&'a mut M);

impl<M: SerializeMap> Visit for Fields<'_, M> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let _ = self.0.serialize_entry(field.name(), &DebugStr(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = self.0.serialize_entry(field.name(), value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        let _ = self.0.serialize_entry(field.name(), &value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        let _ = self.0.serialize_entry(field.name(), &value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        let _ = self.0.serialize_entry(field.name(), &value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        let _ = self.0.serialize_entry(field.name(), &value);
    }
}

impl<S> Layer<S> for JsonLogs
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut bytes = Vec::with_capacity(256);
        let _ = write_line(&mut bytes, &self.service, event, &ctx);
        bytes.push(b'\n');
        // One write per line, so lines from several threads never interleave.
        let _ = std::io::stderr().lock().write_all(&bytes);
    }
}

fn write_line<S>(out: &mut Vec<u8>, service: &str, event: &Event<'_>, ctx: &Context<'_, S>) -> serde_json::Result<()>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let meta = event.metadata();
    let mut serializer = serde_json::Serializer::new(out);
    let mut line = serializer.serialize_map(None)?;
    line.serialize_entry("timestamp", &rfc3339_now())?;
    line.serialize_entry("level", meta.level().as_str())?;
    line.serialize_entry("target", meta.target())?;
    line.serialize_entry("service", service)?;
    event.record(&mut Fields(&mut line));
    if let Some(span) = ctx.event_span(event) {
        line.serialize_entry("span", span.name())?;
        let otel =
            tracing::dispatcher::get_default(|dispatch| tracing_opentelemetry::get_otel_context(&span.id(), dispatch));
        if let Some(cx) = otel {
            let span = cx.span();
            let sc = span.span_context();
            if sc.is_valid() {
                line.serialize_entry("trace_id", &sc.trace_id().to_string())?;
                line.serialize_entry("span_id", &sc.span_id().to_string())?;
            }
        }
    }
    line.end()
}

/// `2026-11-24T23:05:01.123Z`, without a date library.
fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, now.subsec_millis())
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
    }
}
