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
            for event in &events {
                // Stop at the first failure: events-service is still away.
                if deliver(event.clone()).await.is_err() {
                    break;
                }
                delivered.push(event.clone());
            }
            if !delivered.is_empty() {
                // Remove exactly what was delivered; what others pushed meanwhile stays.
                self.update(&trace, &slot.key, |list| {
                    list.retain(|e| !delivered.contains(e));
                    Ok(())
                })
                .await?;
                metrics().events.with_label_values(&["delivered"]).inc_by(delivered.len() as u64);
            }
            drained.delivered += delivered.len();
            drained.waiting += events.len() - delivered.len();
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
