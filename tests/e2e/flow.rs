//! The original template's curl flow, end to end through real sidecars:
//! /init, /events is [], grayscale and classify each shared photo, /events
//! lists what happened; per-client state sits in Redis through Dapr.

use crate::support::{events, shared_images, start};
use base64::Engine;
use stack::Service;

const EXPECTED_LABELS: [(&str, &str); 3] =
    [("hot_dog.jpg", "hotdog"), ("cat_720p.jpg", "Egyptian cat"), ("grace_hopper.jpg", "military uniform")];

#[tokio::test]
async fn the_original_curl_flow() {
    let stack = start(&Service::ALL).await;
    let c = &stack.client;
    let (gray, classify, ev) =
        (stack.service(Service::Grayscale), stack.service(Service::Classify), stack.service(Service::Events));

    let r = c.get(&ev.url("/init")).await.expect("init");
    assert_eq!((r.status.as_u16(), r.json()["status"].clone()), (200, serde_json::json!(true)), "{}", r.text());
    assert_eq!(events(&stack).await.len(), 0, "/events is [] after /init");

    let mut expected = Vec::new();
    for (name, bytes) in shared_images() {
        // grayscale: base64 PNG of the same size, every pixel gray.
        let r = c.post(&gray.url("/grayscale"), bytes.clone()).await.expect("grayscale");
        assert_eq!(r.status.as_u16(), 200, "{name}: {}", r.text());
        let png = base64::engine::general_purpose::STANDARD.decode(r.body.as_ref()).expect("base64 body");
        let out = image::load_from_memory(&png).expect("a PNG");
        let original = image::load_from_memory(&bytes).expect("the photo");
        assert_eq!((out.width(), out.height()), (original.width(), original.height()), "{name}");
        assert!(matches!(out.color(), image::ColorType::L8 | image::ColorType::La8), "{name}: {:?}", out.color());
        expected.push(("grayscale", bytes.len()));

        // classify: the original sentence, with the right label.
        let r = c.post(&classify.url("/classify"), bytes.clone()).await.expect("classify");
        assert_eq!(r.status.as_u16(), 200, "{name}: {}", r.text());
        let label = EXPECTED_LABELS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l).expect("label");
        let text = r.text();
        assert!(
            text.starts_with(&format!("{label} is detected with ")) && text.ends_with("/255 confidence"),
            "{name}: {text}"
        );
        expected.push(("classify", bytes.len()));
    }

    // Newest first: reverse to compare with the order we sent.
    let mut stored: Vec<(String, usize)> = events(&stack)
        .await
        .iter()
        .map(|e| (e["op_type"].as_str().unwrap_or_default().to_owned(), e["input_size"].as_u64().unwrap_or(0) as usize))
        .collect();
    stored.reverse();
    let expected: Vec<(String, usize)> = expected.into_iter().map(|(op, n)| (op.to_owned(), n)).collect();
    assert_eq!(stored, expected, "one event per request, in order, with the body size");

    // The client's last request, saved through Dapr into Redis under the
    // app id prefix, with a TTL so idle clients vanish.
    for app in [Service::Grayscale, Service::Classify] {
        let key = format!("{}||client:127.0.0.1", app.app_id());
        let data = stack.redis.cli(&["HGET", &key, "data"]).expect("redis");
        let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{key}: {data:?}: {e}"));
        assert_eq!(v["ip"], "127.0.0.1");
        assert!(v["last_request_ms"].as_i64().is_some_and(|t| t > 1_700_000_000_000), "{v}");
        let ttl: i64 = stack.redis.cli(&["TTL", &key]).expect("ttl").parse().expect("number");
        assert!(ttl > 0, "{key} has a TTL ({ttl})");
    }
}

#[tokio::test]
async fn through_the_sidecars_invoke_api_with_json_and_raw_png_answers() {
    let stack = start(&Service::ALL).await;
    let c = &stack.client;
    c.get(&stack.service(Service::Events).invoke_url("/init")).await.expect("init");
    let photo = crate::support::image("hot_dog.jpg");

    let r = c
        .request(
            stack::Method::POST,
            &stack.service(Service::Classify).invoke_url("/classify"),
            &[("accept", "application/json")],
            photo.clone().into(),
        )
        .await
        .expect("classify via sidecar");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["label"], "hotdog");
    assert_eq!(v["top"].as_array().map(Vec::len), Some(5));
    let score = v["score"].as_u64().expect("score");
    assert!(score > 128, "a confident hotdog: {score}/255");
    assert_eq!(v["confidence"], format!("{score}/255"));

    let r = c
        .request(
            stack::Method::POST,
            &stack.service(Service::Grayscale).invoke_url("/grayscale"),
            &[("accept", "image/png")],
            photo.into(),
        )
        .await
        .expect("grayscale via sidecar");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert!(r.body.starts_with(b"\x89PNG\r\n\x1a\n"));

    let ops: Vec<String> =
        events(&stack).await.iter().map(|e| e["op_type"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(ops, vec!["grayscale", "classify"]);
}
