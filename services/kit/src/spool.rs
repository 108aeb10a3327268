//! Events that could not be recorded, kept in Dapr state until events-service
//! takes them: the image work is done and answered, so its record must not
//! be lost (at-least-once; events-service keeps one row per event id).
//!
//! The spool is a fixed set of slots (`event-spool:<n>`), each a JSON array
//! of event bodies, written with the ETag read (first-write): concurrent
//! pushes and drains, from any replica of the service (they share keys:
//! `keyPrefix: appid`), never overwrite each other; a 409 means read again.
//! A fixed set, unlike a key per event, can be found again without listing
//! keys, which Dapr's state API cannot do, so any replica drains what any
//! other spooled, even one that has since died.
//!
//! The slots are Dapr state, which whoever reaches a sidecar can write: an
//! entry that is not an event, or that events-service refuses for good (a
//! 4xx other than 429 and 408), would wait at its slot's head for ever and
//! hold back every event behind it. Such an entry moves to the dead-letter
//! key (`event-spool:dead`, the last [`MAX_DEAD_LETTERS`] kept for an
//! operator), is counted (`events_spool_dead_letters_total`, alert
//! `EventsSpoolDeadLetters`), and the drain goes on.

use crate::dapr::{DaprClient, DaprError, SaveItem};
use crate::trace::TraceContext;
use prometheus::{IntCounterVec, IntGauge};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The ETag Dapr's Redis store never has (versions start at 1): with
/// first-write, "write only if absent".
const ABSENT_ETAG: &str = "0";
const ATTEMPTS: u32 = 10;
/// Where poison entries go.
pub const DEAD_LETTER_KEY: &str = "event-spool:dead";
/// The dead-letter list keeps this many, the oldest dropped first.
pub const MAX_DEAD_LETTERS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the event spool is full ({0} events in its slot)")]
    Full(usize),
    #[error("the event spool is busy: {0} conflicting writes in a row")]
    Contended(u32),
    #[error(transparent)]
    Dapr(#[from] DaprError),
}

struct Metrics {
    events: IntCounterVec,
    depth: IntGauge,
    unreadable: IntGauge,
    dead_letters: IntCounterVec,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        events: crate::metrics::counter_vec(
            "events_spool_total",
            "Events that could not be recorded at once: spooled (kept in Dapr state), delivered later, or refused (spool unavailable: the request failed instead).",
            &["outcome"],
        ),
        depth: crate::metrics::gauge("events_spool_depth", "Events waiting in the spool at the last drain."),
        unreadable: crate::metrics::gauge(
            "events_spool_unreadable_slots",
            "Spool slots the state store could not read at the last drain (their events are unknown, not gone).",
        ),
        dead_letters: crate::metrics::counter_vec(
            "events_spool_dead_letters_total",
            "Spool entries moved to the dead-letter key (event-spool:dead) instead of delivered: not_an_event (not an event's shape) or refused (events-service answered a 4xx other than 429/408).",
            &["reason"],
        ),
    })
}

#[derive(Debug, Clone)]
pub struct Spool {
    dapr: DaprClient,
    store: String,
    slots: u32,
    max_per_slot: usize,
    /// Set when this process spooled or the last drain left events behind:
    /// the drainer then comes back soon rather than at its idle pace.
    pending: Arc<AtomicBool>,
    /// Pushes so far: a drain that finds the spool empty clears `pending`
    /// only if no push landed while it ran (it may have read before it).
    pushes: Arc<AtomicU64>,
}

fn slot_key(n: u32) -> String {
    format!("event-spool:{n}")
}

/// FNV-1a: a stable slot for an event id, the same on every replica.
fn slot_of(event_id: &str, slots: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in event_id.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h % slots.max(1)
}

/// Why an entry cannot be delivered, ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Poison {
    /// Not what [`Spool::push`] writes: an object with a string `event_id`
    /// and `op_type` and whole-number `event_ts` and `input_size`.
    NotAnEvent,
    /// events-service refused it for good.
    Refused,
}

impl Poison {
    fn label(self) -> &'static str {
        match self {
            Self::NotAnEvent => "not_an_event",
            Self::Refused => "refused",
        }
    }
}

/// Whether `entry` has the shape of an event this code spools.
fn is_event(entry: &Value) -> bool {
    let field = |name| entry.get(name);
    field("event_id").is_some_and(Value::is_string)
        && field("op_type").is_some_and(Value::is_string)
        && field("event_ts").is_some_and(|v| v.is_i64() || v.is_u64())
        && field("input_size").is_some_and(Value::is_u64)
}

/// A 4xx says the event itself is wrong: retrying cannot help. Not 429
/// (too many: later) nor 408 (too slow: later).
fn refused_for_good(e: &DaprError) -> bool {
    match e {
        DaprError::Status { status, .. } => {
            status.is_client_error()
                && *status != http::StatusCode::TOO_MANY_REQUESTS
                && *status != http::StatusCode::REQUEST_TIMEOUT
        }
        _ => false,
    }
}

/// What the dead-letter list holds per entry: the entry as it was, why, and
/// from where.
fn dead_letter(entry: &Value, reason: Poison, slot: &str, error: Option<&DaprError>) -> Value {
    let mut record = serde_json::json!({
        "entry": entry,
        "reason": reason.label(),
        "slot": slot,
        "at_ms": crate::rt::now_ms(),
    });
    if let Some(e) = error {
        record["error"] = Value::String(e.to_string().chars().take(500).collect());
    }
    record
}

fn as_list(value: Option<Value>) -> Vec<Value> {
    match value {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

impl Spool {
    pub fn new(dapr: DaprClient, store: impl Into<String>, slots: u32, max_per_slot: usize) -> Self {
        // Registered now, so the depth and every outcome read 0 from the start rather than nothing.
        for outcome in ["spooled", "delivered", "refused"] {
            metrics().events.with_label_values(&[outcome]);
        }
        for reason in [Poison::NotAnEvent, Poison::Refused] {
            metrics().dead_letters.with_label_values(&[reason.label()]);
        }
        Self {
            dapr,
            store: store.into(),
            slots: slots.max(1),
            max_per_slot,
            pending: Default::default(),
            pushes: Default::default(),
        }
    }

    /// Whether there is (probably) something to drain.
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    /// Adds `event` (which carries `event_id`) to its slot.
    pub async fn push(&self, trace: &TraceContext, event_id: &str, event: &Value) -> Result<(), SpoolError> {
        let key = slot_key(slot_of(event_id, self.slots));
        let result = self
            .update(trace, &key, |list| {
                if list.len() >= self.max_per_slot {
                    return Err(SpoolError::Full(list.len()));
                }
                list.push(event.clone());
                Ok(())
            })
            .await;
        if result.is_ok() {
            self.pushes.fetch_add(1, Ordering::SeqCst);
            self.pending.store(true, Ordering::SeqCst);
        }
        let outcome = if result.is_ok() { "spooled" } else { "refused" };
        metrics().events.with_label_values(&[outcome]).inc();
        result
    }

    /// Read, change, write back against the ETag read; again on a 409.
    async fn update<F>(&self, trace: &TraceContext, key: &str, mut change: F) -> Result<(), SpoolError>
    where
        F: FnMut(&mut Vec<Value>) -> Result<(), SpoolError>,
    {
        for attempt in 0..ATTEMPTS {
            let current = self.dapr.get_state(trace, &self.store, key).await?;
            let etag = current.as_ref().and_then(|c| c.etag.clone()).unwrap_or_else(|| ABSENT_ETAG.to_owned());
            let mut list = as_list(current.map(|c| c.value));
            change(&mut list)?;
            let item = SaveItem::new(key, Value::Array(list)).if_match(Some(etag));
            match self.dapr.save_state(trace, &self.store, &[item]).await {
                Ok(()) => return Ok(()),
                Err(DaprError::EtagMismatch { .. }) => {
                    // Someone else wrote the slot: back off a little, by attempt.
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt + 1) * 5)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(SpoolError::Contended(ATTEMPTS))
    }

    /// One pass over every slot: each spooled event is offered to
    /// `deliver`; the delivered ones leave the slot.
    pub async fn drain<F, Fut>(&self, deliver: F) -> Result<Drained, SpoolError>
    where
        F: Fn(Value) -> Fut,
        Fut: std::future::Future<Output = Result<(), DaprError>>,
    {
        let trace = TraceContext::default();
        let pushes_before = self.pushes.load(Ordering::SeqCst);
        let keys: Vec<String> = (0..self.slots).map(slot_key).collect();
        let slots = self.dapr.get_bulk_state(&trace, &self.store, &keys).await?;
        let mut drained = Drained::default();
        for slot in slots {
            // Dapr answers a bulk read 200 even when the store failed some
            // keys (say, just after a Redis restart): such a slot is
            // unknown, not empty, and must be read again soon.
            if let Some(error) = &slot.error {
                tracing::debug!(key = %slot.key, %error, "spool slot unreadable");
                drained.unreadable += 1;
                continue;
            }
            let events = as_list(slot.value);
            if events.is_empty() {
                continue;
            }
            let mut delivered: Vec<Value> = Vec::new();
            let mut poisoned: Vec<(Value, Poison)> = Vec::new();
            let mut dead: Vec<Value> = Vec::new();
            for event in &events {
                if !is_event(event) {
                    dead.push(dead_letter(event, Poison::NotAnEvent, &slot.key, None));
                    poisoned.push((event.clone(), Poison::NotAnEvent));
                    continue;
                }
                match deliver(event.clone()).await {
                    Ok(()) => delivered.push(event.clone()),
                    Err(e) if refused_for_good(&e) => {
                        dead.push(dead_letter(event, Poison::Refused, &slot.key, Some(&e)));
                        poisoned.push((event.clone(), Poison::Refused));
                    }
                    // Stop at the first other failure: events-service is still away.
                    Err(_) => break,
                }
            }
            if !dead.is_empty() {
                // Kept first, removed after: a failure in between leaves an
                // entry in both places, never in neither.
                self.update(&trace, DEAD_LETTER_KEY, |list| {
                    list.extend(dead.iter().cloned());
                    let excess = list.len().saturating_sub(MAX_DEAD_LETTERS);
                    if excess > 0 {
                        tracing::warn!(
                            dropped = excess,
                            "the spool's dead-letter list is full: its oldest entries dropped"
                        );
                        list.drain(..excess);
                    }
                    Ok(())
                })
                .await?;
                for (entry, reason) in &poisoned {
                    metrics().dead_letters.with_label_values(&[reason.label()]).inc();
                    let shown: String = entry.to_string().chars().take(200).collect();
                    tracing::warn!(key = %slot.key, reason = reason.label(), entry = %shown, dead_letters = DEAD_LETTER_KEY, "spool entry cannot be delivered: moved to the dead letters");
                }
            }
            if !delivered.is_empty() || !poisoned.is_empty() {
                // Remove exactly what was handled; what others pushed meanwhile stays.
                self.update(&trace, &slot.key, |list| {
                    list.retain(|e| !delivered.contains(e) && !poisoned.iter().any(|(p, _)| p == e));
                    Ok(())
                })
                .await?;
                metrics().events.with_label_values(&["delivered"]).inc_by(delivered.len() as u64);
            }
            drained.delivered += delivered.len();
            drained.dead_lettered += poisoned.len();
            drained.waiting += events.len() - delivered.len() - poisoned.len();
        }
        metrics().depth.set(drained.waiting as i64);
        metrics().unreadable.set(drained.unreadable as i64);
        self.pending.store(drained.waiting > 0 || drained.unreadable > 0, Ordering::SeqCst);
        if self.pushes.load(Ordering::SeqCst) != pushes_before {
            self.pending.store(true, Ordering::SeqCst);
        }
        Ok(drained)
    }
}

/// What one drain pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Events recorded by events-service and removed from the spool.
    pub delivered: usize,
    /// Events still spooled (events-service did not take them).
    pub waiting: usize,
    /// Slots the state store could not read this time: what they hold is
    /// unknown, so the drainer comes back soon.
    pub unreadable: usize,
    /// Entries that can never be delivered, moved to [`DEAD_LETTER_KEY`].
    pub dead_lettered: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_event_s_shape_is_offered_to_events_service() {
        let event = serde_json::json!({"event_id": "0193a7b2-7c1e-7d3a-9f00-0123456789ab", "event_ts": 1_700_000_000_000i64, "op_type": "grayscale", "input_size": 42});
        assert!(is_event(&event));
        for junk in [
            serde_json::json!({"junk": 1}),
            serde_json::json!(1),
            serde_json::json!("event"),
            serde_json::json!(null),
            serde_json::json!([event.clone()]),
            serde_json::json!({"event_id": 5, "event_ts": 1, "op_type": "grayscale", "input_size": 1}),
            serde_json::json!({"event_id": "x", "event_ts": 1, "op_type": "grayscale", "input_size": -1}),
            serde_json::json!({"event_id": "x", "event_ts": 1.5, "op_type": "grayscale", "input_size": 1}),
        ] {
            assert!(!is_event(&junk), "{junk}");
        }
    }

    #[test]
    fn only_a_4xx_but_429_and_408_is_refused_for_good() {
        use http::StatusCode;
        let status = |code: u16| DaprError::Status {
            op: crate::dapr::DaprOp::Invoke { app_id: "events-service".into(), method: "create_event".into() },
            status: StatusCode::from_u16(code).expect("status"),
            message: String::new(),
        };
        for (code, for_good) in
            [(400, true), (409, true), (422, true), (429, false), (408, false), (500, false), (503, false)]
        {
            assert_eq!(refused_for_good(&status(code)), for_good, "{code}");
        }
        let timeout = DaprError::Timeout { op: crate::dapr::DaprOp::Healthz, timeout: Duration::from_secs(1) };
        assert!(!refused_for_good(&timeout));
    }

    #[test]
    fn an_event_id_always_lands_in_the_same_slot() {
        let id = "0193a7b2-7c1e-7d3a-9f00-0123456789ab";
        assert_eq!(slot_of(id, 16), slot_of(id, 16));
        assert!(slot_of(id, 16) < 16);
        let spread: std::collections::HashSet<u32> = (0..200).map(|i| slot_of(&format!("id-{i}"), 16)).collect();
        assert!(spread.len() > 12, "ids spread over the slots: {spread:?}");
        assert_eq!(slot_of(id, 0), 0, "no slots is one slot");
    }
}
