//! Nothing acknowledged is lost: events carry the caller's id, so recording
//! is idempotent, and an image answered while events-service is away is
//! spooled in Dapr state and recorded, once, when it is back.

use crate::support::{assert_error, events, image, start, start_with};
use stack::{Service, StackOptions};
use std::time::Duration;

#[tokio::test]
async fn create_event_is_idempotent_by_event_id() {
    let stack = start(&[Service::Events]).await;
    let ev = stack.service(Service::Events);
    let c = &stack.client;
    let r = c.get(&ev.url("/init")).await.expect("init");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());

    let body = serde_json::json!({"event_id": "0193a7b2-7c1e-7d3a-9f00-0123456789ab", "event_ts": 1_700_000_000_000u64, "op_type": "grayscale", "input_size": 42});
    let first = c.post(&ev.url("/create_event"), body.to_string()).await.expect("create");
    assert_eq!(first.status.as_u16(), 200, "{}", first.text());
    assert_eq!(first.json().get("duplicate"), None, "{}", first.text());
    // The same event again (a retry): the same row, flagged, nothing added.
    let again = c.post(&ev.invoke_url("create_event"), body.to_string()).await.expect("again");
    assert_eq!(again.status.as_u16(), 200, "{}", again.text());
    assert_eq!(
        (again.json()["id"].clone(), again.json()["duplicate"].clone()),
        (first.json()["id"].clone(), serde_json::json!(true))
    );
    assert_eq!(events(&stack).await.len(), 1);

    // The same id with other content is a conflict, not a silent overwrite.
    let mut other = body.clone();
    other["input_size"] = serde_json::json!(43);
    let r = c.post(&ev.url("/create_event"), other.to_string()).await.expect("conflict");
    assert_error(&r, 409, "event_id_conflict");
    let mut bad = body.clone();
    bad["event_id"] = serde_json::json!("not-a-uuid");
    let r = c.post(&ev.url("/create_event"), bad.to_string()).await.expect("bad id");
    assert_error(&r, 400, "invalid_event");
    // Without an id (the original template's body) it still works.
    let plain = serde_json::json!({"event_ts": 1_700_000_000_001u64, "op_type": "classify", "input_size": 7});
    let r = c.post(&ev.url("/create_event"), plain.to_string()).await.expect("plain");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(events(&stack).await.len(), 2);
}

/// The counter `name{outcome}` in `metrics` text.
pub(crate) fn counter(metrics: &str, name: &str, outcome: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("outcome=\"{outcome}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn an_image_answered_while_events_is_down_is_recorded_once_when_it_is_back_even_across_a_redis_restart() {
    let mut stack =
        start_with(StackOptions::test(&[Service::Events, Service::Grayscale]).with_env("EVENT_SPOOL_DRAIN_MS", "300"))
            .await;
    let c = stack.client.clone();
    let r = c.get(&stack.service(Service::Events).url("/init")).await.expect("init");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());

    stack.service_mut(Service::Events).kill();
    let (gray, gray_metrics) =
        (stack.service(Service::Grayscale).url("/grayscale"), stack.service(Service::Grayscale).url("/metrics"));
    let mut answered = 0;
    for _ in 0..3 {
        let r = c.post(&gray, image("hot_dog.jpg")).await.expect("grayscale");
        assert_eq!(r.status.as_u16(), 200, "the image work is done and answered: {}", r.text());
        answered += 1;
    }
    let metrics = c.get(&gray_metrics).await.expect("metrics").text();
    assert_eq!(counter(&metrics, "events_spool_total", "spooled"), answered, "{metrics}");
    // One slot the store cannot read (a Redis list where Dapr keeps a hash):
    // the drain must not take it for empty.
    let unreadable_slot = unused_spool_key(&stack.redis, Service::Grayscale.app_id());
    stack.redis.cli(&["RPUSH", &unreadable_slot, "not a Dapr state entry"]).expect("RPUSH");
    // The spool is in the state store: a Redis outage meanwhile loses none.
    // Long enough for several drains to find the slots unreadable (Dapr's
    // bulk read still answers 200, with an error per key): those are
    // unknown, not empty, so the drainer keeps coming back at its busy pace.
    stack.redis.restart_after(Duration::from_secs(3)).await.expect("Redis back");

    stack.service_mut(Service::Events).restart(Duration::from_secs(60)).await.expect("events back");
    // The sidecar's circuit breaker (components/resiliency.yaml) may hold
    // calls for up to 10 s after its last failed trial; the drainer's idle
    // pace (30 s) would miss this deadline.
    let within = Duration::from_secs(20);
    let deadline = std::time::Instant::now() + within;
    loop {
        let n = events(&stack).await.len() as u64;
        if n == answered {
            break;
        }
        assert!(n < answered, "more rows than answers: {n} > {answered}");
        if std::time::Instant::now() >= deadline {
            let slots = stack.redis.cli(&["--scan", "--pattern", "*event-spool*"]).unwrap_or_else(|e| e.to_string());
            let grayscale = stack.service(Service::Grayscale).logs_tail(40);
            panic!("after {within:?}, {n} of {answered} spooled events recorded; spool keys in Redis:\n{slots}\n{grayscale}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Further drains add nothing: one row per answered request.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(events(&stack).await.len() as u64, answered);
    let metrics = c.get(&gray_metrics).await.expect("metrics").text();
    assert_eq!(counter(&metrics, "events_spool_total", "delivered"), answered, "{metrics}");
    assert_eq!(gauge(&metrics, "events_spool_unreadable_slots"), Some(1), "{metrics}");
    // Unknown is not empty: the drainer stays at its busy pace (300 ms),
    // not its idle one (30 s), so the slot is read again soon after repair.
    stack.redis.cli(&["DEL", &unreadable_slot]).expect("DEL");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = c.get(&gray_metrics).await.expect("metrics").text();
        if gauge(&metrics, "events_spool_unreadable_slots") == Some(0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "5 s after the repair the slot still counts as unreadable:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The gauge `name` (no labels) in `metrics` text.
pub(crate) fn gauge(metrics: &str, name: &str) -> Option<i64> {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A spool slot key of `app_id` in Redis that holds nothing, after checking
/// that the spool's keys are where Dapr's `keyPrefix: appid` puts them.
fn unused_spool_key(redis: &stack::redis::Redis, app_id: &str) -> String {
    let used = redis.cli(&["--scan", "--pattern", &format!("{app_id}||event-spool:*")]).expect("SCAN");
    let used: Vec<&str> = used.lines().collect();
    assert!(!used.is_empty(), "the spooled events are in Redis under {app_id}||event-spool:<n>");
    (0..16).map(|n| format!("{app_id}||event-spool:{n}")).find(|k| !used.contains(&k.as_str())).expect("a free slot")
}

/// A dependency failure answers a fixed message per code: what daprd said
/// (its URL, the app id it could not reach, its error code) goes to the
/// log with the trace id, never to the client.
#[tokio::test]
async fn a_dependency_failure_answer_carries_no_internal_text() {
    let stack = start_with(StackOptions::test(&[Service::Grayscale]).with_env("EVENT_SPOOL", "false")).await;
    let gray = stack.service(Service::Grayscale);
    let r = stack.client.post(&gray.url("/grayscale"), image("hot_dog.jpg")).await.expect("grayscale");
    assert!(r.status.is_server_error(), "events-service is not running: {}", r.text());
    let code = r.json()["error"]["code"].as_str().unwrap_or_default().to_owned();
    assert!(["dependency_failed", "dependency_unavailable"].contains(&code.as_str()), "{}", r.text());
    assert_error(&r, r.status.as_u16(), &code);
    let body = r.text();
    let sidecar_port = gray.sidecar.ports().http.to_string();
    for internal in ["127.0.0.1", sidecar_port.as_str(), "dapr", "events-service", "ERR_", "invoke"] {
        assert!(!body.contains(internal), "the answer leaks {internal:?}: {body}");
    }
    // The detail is in the log, on the line of the failed request, with its trace id.
    let log = std::fs::read_to_string(gray.log()).expect("log");
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "request failed" && l["route"] == "/grayscale")
        .unwrap_or_else(|| panic!("no 'request failed' line:\n{log}"));
    assert!(line["detail"].as_str().is_some_and(|d| d.contains("events-service")), "{line}");
    // With tracing on, the answer's traceparent names the trace the line is under.
    if let Some(trace_id) = r.header("traceparent").and_then(|tp| tp.split('-').nth(1)) {
        assert_eq!(line["trace_id"].as_str(), Some(trace_id), "{line}");
    }
}
