//! events-service against a real MariaDB, its URL read from the Dapr secret store.

use crate::support::{assert_error, events, start, start_with};
use stack::{Service, StackOptions};
use std::time::Duration;

#[tokio::test]
async fn init_then_create_and_list_newest_first_with_paging() {
    let stack = start(&[Service::Events]).await;
    let ev = stack.service(Service::Events);
    let c = &stack.client;

    let r = c.get(&ev.url("/init")).await.expect("init");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json()["status"], true);
    assert_eq!(events(&stack).await, Vec::<serde_json::Value>::new());
    // A second /init applies nothing and still answers true.
    let r = c.get(&ev.url("/init")).await.expect("init again");
    assert_eq!(
        (r.json()["status"].clone(), r.json()["applied"].clone()),
        (serde_json::json!(true), serde_json::json!([]))
    );

    for i in 0..5u64 {
        let body =
            serde_json::json!({"event_ts": 1_700_000_000_000u64 + i, "op_type": "grayscale", "input_size": 100 + i});
        let r = c.post(&ev.url("/create_event"), body.to_string()).await.expect("create");
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        assert_eq!(r.json()["status"], true);
    }
    let all = events(&stack).await;
    assert_eq!(all.len(), 5);
    assert_eq!(all[0]["input_size"], 104, "newest first");
    assert_eq!(all[0].as_object().map(|o| o.len()), Some(4), "id, event_ts, op_type, input_size: {}", all[0]);

    let page = c.get(&ev.url("/events?limit=2")).await.expect("page 1");
    let first: Vec<serde_json::Value> = page.json().as_array().cloned().unwrap_or_default();
    assert_eq!(first.len(), 2);
    let next = page.header("link").expect("a full page links to the next").to_owned();
    let before = first[1]["id"].as_u64().expect("id");
    assert!(next.contains(&format!("before_id={before}")), "{next}");
    let page2 = c.get(&ev.url(&format!("/events?limit=2&before_id={before}"))).await.expect("page 2");
    let second = page2.json();
    assert_eq!(second.as_array().map(Vec::len), Some(2));
    assert!(second[0]["id"].as_u64() < Some(before));

    // Through the sidecar, as the image services call it.
    let r = c.get(&ev.invoke_url("/events?limit=1")).await.expect("invoke");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json().as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn bad_events_are_400_and_store_nothing() {
    let stack = start(&[Service::Events]).await;
    let ev = stack.service(Service::Events);
    let c = &stack.client;
    c.get(&ev.url("/init")).await.expect("init");
    let cases = [
        ("", "empty_body"),
        ("{not json", "invalid_json"),
        (r#"{"event_ts": 1700000000000, "op_type": "grayscale"}"#, "invalid_json"),
        (r#"{"event_ts": "soon", "op_type": "grayscale", "input_size": 1}"#, "invalid_json"),
        (r#"{"event_ts": 1700000000000, "op_type": "grayscale", "input_size": 1, "extra": 1}"#, "invalid_json"),
        (r#"{"event_ts": 1700000000, "op_type": "grayscale", "input_size": 1}"#, "invalid_event"),
        (r#"{"event_ts": 1700000000000, "op_type": "Robert'); DROP TABLE", "input_size": 1}"#, "invalid_event"),
        (r#"[1, 2, 3]"#, "invalid_json"),
    ];
    for (body, code) in cases {
        let r = c.post(&ev.url("/create_event"), body.to_owned()).await.expect("post");
        assert_error(&r, 400, code);
    }
    let r = c.get(&ev.url("/events?limit=0")).await.expect("get");
    assert_error(&r, 400, "invalid_query");
    let r = c.get(&ev.url("/events?before_id=abc")).await.expect("get");
    assert_error(&r, 400, "invalid_query");
    let r = c.get(&ev.url("/create_event")).await.expect("wrong method");
    assert_error(&r, 405, "method_not_allowed");
    let r = c.get(&ev.url("/nowhere")).await.expect("404");
    assert_error(&r, 404, "not_found");
    assert!(events(&stack).await.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn events_before_init_say_how_to_fix_it() {
    let stack = start(&[Service::Events]).await;
    let r = stack.client.get(&stack.service(Service::Events).url("/events")).await.expect("get");
    assert_error(&r, 503, "schema_not_migrated");
    assert!(r.text().contains("/init"), "{}", r.text());
}

#[tokio::test]
async fn the_database_url_comes_from_the_secret_store() {
    let stack = start(&[Service::Events]).await;
    let ev = stack.service(Service::Events);
    // The service's own environment holds no database URL…
    let environ = std::fs::read(format!("/proc/{}/environ", ev.pid().expect("pid"))).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    assert!(!environ.contains("mysql://"), "no DB URL in the service's environment");
    // …yet it reaches the database named in the secrets file daprd serves.
    let url = stack.database_url.clone().expect("url");
    let r = stack.client.get(&ev.url("/readyz")).await.expect("readyz");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json()["checks"]["database"], "ok");
    let secrets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(stack.dir.join("secrets.json")).expect("secrets")).expect("json");
    assert_eq!(secrets["DB_URL"]["MYSQL"], url.as_str());
    // And the secret store is scoped: only events-service may read it.
    let sidecar = &ev.sidecar;
    let r = stack
        .client
        .get(&format!("{}/v1.0/secrets/local-store/DB_URL:MYSQL", sidecar.http_url()))
        .await
        .expect("secret");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json()["DB_URL:MYSQL"], url.as_str());
}

#[tokio::test]
async fn a_database_outage_is_503_and_the_service_recovers_by_itself() {
    let mut stack = start_with(StackOptions::test(&[Service::Events]).with_own_database()).await;
    let url = stack.service(Service::Events).url("/create_event");
    let list = stack.service(Service::Events).url("/events");
    let c = stack.client.clone();
    c.get(&stack.service(Service::Events).url("/init")).await.expect("init");
    let event = r#"{"event_ts": 1700000000000, "op_type": "classify", "input_size": 7}"#;
    assert_eq!(c.post(&url, event).await.expect("create").status.as_u16(), 200);

    let db = stack.mariadb.as_mut().expect("own database");
    db.stop();
    let r = c.post(&url, event).await.expect("create while down");
    assert_error(&r, 503, "database_unavailable");
    assert!(r.header("retry-after").is_some());
    // The driver's text (the server's address, its error) stays in the log.
    let db_port = stack.database_url.as_deref().and_then(|u| u.rsplit(':').next()).and_then(|p| p.split('/').next());
    for internal in ["127.0.0.1", "mysql", "Connection", "refused", "os error"].into_iter().chain(db_port) {
        assert!(!r.text().contains(internal), "the answer leaks {internal:?}: {}", r.text());
    }
    let r = c.get(&list).await.expect("list while down");
    assert_error(&r, 503, "database_unavailable");
    let r = c.get(&stack.service(Service::Events).url("/readyz")).await.expect("readyz");
    assert_eq!(r.status.as_u16(), 503);

    stack.mariadb.as_mut().expect("own database").restart().await.expect("restart");
    stack
        .eventually("events-service recovers", Duration::from_secs(30), || {
            let (c, url) = (c.clone(), url.clone());
            async move { Ok(c.post(&url, event).await?.status.as_u16() == 200) }
        })
        .await
        .expect("recovery without a restart of the service");
    let all = crate::support::events(&stack).await;
    assert!(all.len() >= 2, "the event before and after the outage: {all:?}");
}

#[tokio::test]
async fn the_count_is_every_event_without_paging() {
    let stack = start(&[Service::Events]).await;
    let ev = stack.service(Service::Events);
    let c = &stack.client;
    let r = c.get(&ev.url("/events/count")).await.expect("count before init");
    assert_error(&r, 503, "schema_not_migrated");
    c.get(&ev.url("/init")).await.expect("init");
    let count = |url: String| async move {
        let r = c.get(&url).await.expect("count");
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        r.json()["count"].as_u64().expect("count is a number")
    };
    assert_eq!(count(ev.url("/events/count")).await, 0);
    for i in 0..3u64 {
        let body = serde_json::json!({"event_ts": 1_700_000_000_000u64 + i, "op_type": "classify", "input_size": 1});
        c.post(&ev.url("/create_event"), body.to_string()).await.expect("create");
    }
    // A refused event is not counted.
    c.post(&ev.url("/create_event"), "{}").await.expect("bad create");
    assert_eq!(count(ev.url("/events/count")).await, 3);
    // The same number through the sidecar, as loadgen --verify reads it.
    assert_eq!(count(ev.invoke_url("/events/count")).await, 3);
    assert_eq!(events(&stack).await.len(), 3);
}
