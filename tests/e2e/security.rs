//! The production profile on real daprd (`StackOptions::production`): a
//! Dapr API token on every sidecar, an app API token on every app, Sentry
//! and mTLS between sidecars, and events-service's access control as
//! components/compose/events-config.yaml ships it.

use crate::recording::{counter, gauge};
use crate::support::{events, image, start_with};
use bytes::Bytes;
use stack::{Method, Reply, Service, Stack, StackOptions};
use std::time::Duration;

async fn production() -> Stack {
    start_with(StackOptions::test(&Service::ALL).production().with_own_database()).await
}

fn tokens(stack: &Stack, service: Service) -> stack::stack::Tokens {
    stack.service(service).tokens.clone().expect("the production profile gives every service tokens")
}

/// One call as `headers`, its answer and a line for the figures.
async fn call(stack: &Stack, method: Method, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let r = stack.client.request(method.clone(), url, headers, Bytes::copy_from_slice(body)).await;
    r.unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

fn database_tables(stack: &Stack) -> String {
    let db = stack.mariadb.as_ref().expect("the stack's own MariaDB");
    db.root_sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'events'").expect("SQL")
}

/// Every Dapr API and every app route, called without credentials or with
/// a wrong token, is refused with 401, and nothing was read or changed:
/// no tables, no spool or last-seen key, no event.
#[tokio::test]
async fn without_credentials_every_call_is_refused_and_changes_nothing() {
    let stack = production().await;
    let wrong = [("dapr-api-token", "not-the-token")];
    let junk = br#"[{"key":"event-spool:0","value":[{"junk":1}]}]"#;
    let event = br#"{"event_ts":1700000000000,"op_type":"grayscale","input_size":1}"#;
    let photo = image("grace_hopper.jpg");
    let mut tried = Vec::new();
    for service in Service::ALL {
        let sidecar = stack.service(service).sidecar.http_url();
        let app = stack.service(service);
        let dapr_calls: [(Method, String, &[u8]); 5] = [
            (Method::GET, format!("{sidecar}/v1.0/secrets/local-store/DB_URL:MYSQL"), b""),
            (Method::POST, format!("{sidecar}/v1.0/state/statestore"), junk),
            (Method::GET, format!("{sidecar}/v1.0/invoke/events-service/method/init"), b""),
            (Method::POST, format!("{sidecar}/v1.0/invoke/events-service/method/create_event"), event),
            (Method::POST, format!("{sidecar}/v1.0/invoke/{}/method/{}", service.app_id(), route(service)), &photo),
        ];
        let app_calls: Vec<(Method, String, &[u8])> = match service {
            Service::Events => vec![
                (Method::GET, app.url("/init"), b""),
                (Method::GET, app.url("/events"), b""),
                (Method::POST, app.url("/create_event"), event),
            ],
            _ => vec![(Method::POST, app.url(route(service)), &photo)],
        };
        for (method, url, body) in dapr_calls.into_iter().chain(app_calls) {
            for headers in [&[][..], &wrong[..]] {
                let r = call(&stack, method.clone(), &url, headers, body).await;
                let with = if headers.is_empty() { "no token" } else { "a wrong token" };
                tried.push(format!("  {method} {url} ({with}) -> {} {}", r.status.as_u16(), r.text().trim()));
                assert_eq!(r.status.as_u16(), 401, "{method} {url} with {with}: {}", r.text());
            }
        }
    }
    println!("calls without credentials (production profile, {} runtime):\n{}", stack.runtime.name(), tried.join("\n"));
    assert_eq!(database_tables(&stack).trim(), "", "no migration ran");
    let keys = stack.redis.cli(&["KEYS", "*"]).expect("redis");
    assert!(!keys.contains("event-spool") && !keys.contains("client:"), "nothing written to state: {keys}");
}

fn route(service: Service) -> &'static str {
    match service {
        Service::Grayscale => "grayscale",
        Service::Classify => "classify",
        Service::Events => "events",
    }
}

/// With grayscale's own valid token, its sidecar may invoke only
/// `POST create_event` on events-service: `init` and `events` are denied by
/// access control (403), which only mTLS identities make meaningful. The
/// whole flow works with the tokens, and the last-seen entry names the
/// client behind the trusted front.
#[tokio::test]
async fn access_control_lets_the_image_services_only_create_events() {
    let stack = production().await;
    let events = tokens(&stack, Service::Events);
    let gray = tokens(&stack, Service::Grayscale);
    // The migrate CLI's job, here done by events-service's own app token.
    let init = [("dapr-api-token", events.app.as_str())];
    let r = call(&stack, Method::GET, &stack.service(Service::Events).url("/init"), &init, b"").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());

    let sidecar = stack.service(Service::Grayscale).sidecar.http_url();
    let with_token = [("dapr-api-token", gray.dapr.as_str())];
    for method in ["init", "events"] {
        let url = format!("{sidecar}/v1.0/invoke/events-service/method/{method}");
        let r = call(&stack, Method::GET, &url, &with_token, b"").await;
        println!("grayscale's sidecar, its token: GET {method} -> {} {}", r.status.as_u16(), r.text().trim());
        assert_eq!(r.status.as_u16(), 403, "{method} is denied: {}", r.text());
    }
    let url = format!("{sidecar}/v1.0/invoke/events-service/method/create_event");
    let event = br#"{"event_ts":1700000000000,"op_type":"grayscale","input_size":1}"#;
    let r = call(&stack, Method::POST, &url, &with_token, event).await;
    assert_eq!(r.status.as_u16(), 200, "create_event is allowed: {}", r.text());

    // The whole flow: a photo through grayscale's sidecar, from a client
    // behind the trusted front, records its event over mTLS.
    let headers = [("dapr-api-token", gray.dapr.as_str()), ("x-forwarded-for", "203.0.113.7")];
    let url = stack.service(Service::Grayscale).invoke_url("/grayscale");
    let r = call(&stack, Method::POST, &url, &headers, &image("grace_hopper.jpg")).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let listed = call(&stack, Method::GET, &stack.service(Service::Events).url("/events"), &init, b"").await;
    let listed = listed.json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "both events stored: {listed}");
    let last_seen = format!("{}||client:203.0.113.7", Service::Grayscale.app_id());
    assert_eq!(stack.redis.cli(&["EXISTS", &last_seen]).expect("redis"), "1", "{last_seen}");
}

/// Spool poison: entries written straight into a spool slot through
/// grayscale's sidecar state API, junk and an event events-service refuses
/// (400), ahead of a valid event in the same slot. The valid one is
/// delivered to MariaDB, the other two move to the dead-letter key, counted
/// by reason, and the slot is left empty.
#[tokio::test]
async fn junk_in_a_spool_slot_is_dead_lettered_and_the_valid_event_behind_it_delivered() {
    let opts = StackOptions::test(&[Service::Events, Service::Grayscale])
        .with_env("EVENT_SPOOL_DRAIN_MS", "200")
        .with_env("EVENT_SPOOL_IDLE_CHECK_MS", "400");
    let stack = start_with(opts).await;
    let c = stack.client.clone();
    let r = c.get(&stack.service(Service::Events).url("/init")).await.expect("init");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let gray = stack.service(Service::Grayscale);
    let metrics_url = gray.url("/metrics");
    let metrics = c.get(&metrics_url).await.expect("metrics").text();
    for reason in ["not_an_event", "refused"] {
        assert!(
            metrics.lines().any(|l| l.starts_with("events_spool_dead_letters_total{")
                && l.contains(&format!("reason=\"{reason}\""))
                && l.ends_with(" 0")),
            "events_spool_dead_letters_total{{reason={reason}}} exists at 0 from start-up:\n{metrics}"
        );
    }

    let valid_id = "0193a7b2-7c1e-7d3a-9f00-0123456789ac";
    let valid = serde_json::json!({"event_id": valid_id, "event_ts": 1_700_000_000_000i64, "op_type": "grayscale", "input_size": 42});
    let refused = serde_json::json!({"event_id": "not-a-uuid", "event_ts": 1_700_000_000_000i64, "op_type": "grayscale", "input_size": 1});
    let state_url = format!("http://127.0.0.1:{}/v1.0/state/statestore", gray.sidecar.ports().http);
    let write = serde_json::json!([{"key": "event-spool:0", "value": [{"junk": 1}, refused, valid]}]);
    let r = c.post(&state_url, write.to_string()).await.expect("state write");
    assert_eq!(r.status.as_u16(), 204, "the sidecar's state API took the junk: {}", r.text());

    stack
        .eventually("the valid event behind the junk recorded", Duration::from_secs(20), || {
            let stack = &stack;
            // `/events` lists no event_id: the valid one is the only one of 42 bytes.
            async move { Ok(events(stack).await.iter().any(|e| e["input_size"] == 42 && e["op_type"] == "grayscale")) }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.service(Service::Grayscale).logs_tail(30)));
    assert_eq!(events(&stack).await.len(), 1, "only the valid event is stored");

    let read = |key: &str| {
        let url = format!("{state_url}/{key}");
        let c = c.clone();
        async move { c.get(&url).await.expect("state read") }
    };
    stack
        .eventually("the slot emptied", Duration::from_secs(10), || {
            let slot = read("event-spool:0");
            async move { Ok(slot.await.json() == serde_json::json!([])) }
        })
        .await
        .expect("the slot holds nothing any more");
    let dead = read("event-spool:dead").await.json();
    let dead = dead.as_array().cloned().unwrap_or_default();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(
        (dead[0]["entry"].clone(), dead[0]["reason"].clone()),
        (serde_json::json!({"junk": 1}), "not_an_event".into())
    );
    assert_eq!((dead[1]["entry"].clone(), dead[1]["reason"].clone()), (refused, "refused".into()));
    assert!(dead[1]["error"].as_str().is_some_and(|e| e.contains("400")), "events-service's answer kept: {}", dead[1]);
    assert_eq!(dead[0]["slot"], "event-spool:0");

    let metrics = c.get(&metrics_url).await.expect("metrics").text();
    let dead_letters = |reason: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("events_spool_dead_letters_total{") && l.contains(&format!("reason=\"{reason}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!((dead_letters("not_an_event"), dead_letters("refused")), (Some(1), Some(1)), "{metrics}");
    assert_eq!(counter(&metrics, "events_spool_total", "delivered"), 1, "{metrics}");
    assert_eq!(gauge(&metrics, "events_spool_depth"), Some(0), "{metrics}");
}
