//! Bad input to the image services: a clear 4xx with a JSON body, and
//! nothing recorded — no event, no client state.

use crate::support::{assert_error, events, image, start_with};
use bytes::Bytes;
use stack::{HttpClient, Method, Service, StackOptions};
use std::time::{Duration, Instant};

/// A PNG whose header declares `width`×`height` (8-bit gray) with almost
/// no data: a decompression bomb as far as the header goes.
fn bomb_png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("PNG header");
    // One empty zlib stream: nowhere near the pixels the header promises.
    writer.write_chunk(png::chunk::IDAT, &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]).expect("IDAT");
    writer.finish().expect("IEND");
    out
}

#[tokio::test]
async fn bad_images_get_a_clear_4xx_and_record_nothing() {
    // A body limit below hot_dog.jpg's 200,930 bytes, to see 413.
    let stack = start_with(StackOptions::test(&Service::ALL).with_env("MAX_BODY_BYTES", "150000")).await;
    let c = &stack.client;
    c.get(&stack.service(Service::Events).url("/init")).await.expect("init");
    let cat = image("cat_720p.jpg");
    let truncated = cat[..cat.len() / 2].to_vec();
    let oversized = image("hot_dog.jpg");

    for (app, route) in [(Service::Grayscale, "/grayscale"), (Service::Classify, "/classify")] {
        let url = stack.service(app).url(route);
        let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
            ("empty body", Vec::new(), 400, "empty_body"),
            ("not an image", b"GIF? no, just some text".to_vec(), 415, "unsupported_image_format"),
            ("truncated JPEG", truncated.clone(), 400, "invalid_image"),
            ("oversized body", oversized.clone(), 413, "payload_too_large"),
            ("decompression bomb", bomb_png(100_000, 100_000), 413, "image_too_large"),
            ("1x100000 strip", bomb_png(1, 100_000), 413, "image_too_large"),
        ];
        for (what, body, status, code) in cases {
            let r = c.post(&url, body).await.unwrap_or_else(|e| panic!("{route} {what}: {e}"));
            assert_eq!(r.status.as_u16(), status, "{route} {what}: {}", r.text());
            assert_error(&r, status, code);
        }
        let r = c.request(Method::GET, &url, &[], Default::default()).await.expect("GET");
        assert_error(&r, 405, "method_not_allowed");
        assert_eq!(r.header("allow"), Some("POST"));
        // Through the sidecar too: daprd passes the app's status and body on.
        let r = c.post(&stack.service(app).invoke_url(route), b"not an image".to_vec()).await.expect("invoke");
        assert_error(&r, 415, "unsupported_image_format");
    }

    assert!(events(&stack).await.is_empty(), "no event for a refused image");
    let keys = stack.redis.cli(&["KEYS", "*client:*"]).expect("redis");
    assert!(keys.is_empty(), "no client state for a refused image: {keys}");

    // The same service still serves a good image afterwards.
    let r = c.post(&stack.service(Service::Grayscale).url("/grayscale"), cat).await.expect("good image");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(events(&stack).await.len(), 1);
}

#[tokio::test]
async fn readiness_reports_the_runtime_and_the_sidecar() {
    let stack = start_with(StackOptions::test(&[Service::Grayscale])).await;
    let r = stack.client.get(&stack.service(Service::Grayscale).url("/readyz")).await.expect("readyz");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["checks"]["sidecar"], "ok");
    assert_eq!(v["runtime"], stack.runtime.name());
}

/// 1,000 uploads at once, straight at the app (no sidecar in front to queue
/// them): every one gets a clear answer — 200, or 503 `overloaded` past
/// `MAX_IN_FLIGHT` — the process stays under a memory cap, and another
/// client is served while they run and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_uploads_get_clear_answers_within_a_memory_cap() {
    const UPLOADS: usize = 1000;
    // MAX_IN_FLIGHT (64) decodes at most; each 1280×720 photo needs a few
    // MiB (the body, its luma plane, the PNG, its base64). 512 MiB leaves
    // room for the runtime's own heap, and is far below what 1,000
    // unbounded decodes would take.
    const CAP_MIB: u64 = 512;
    let stack =
        start_with(StackOptions::test(&[Service::Grayscale, Service::Events]).with_env("RATE_LIMIT_POLICIES", ""))
            .await;
    let app = stack.service(Service::Grayscale);
    let pid = app.pid().expect("the grayscale app's pid");
    let url = app.url("/grayscale");
    let photo = Bytes::from(image("cat_720p.jpg"));
    // Warm: the first request loads what every request uses.
    let r = stack.client.post(&url, photo.clone()).await.expect("warm-up");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let idle = stack::process::memory(pid);

    let flood = HttpClient::new(Duration::from_secs(120));
    let started = Instant::now();
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|_| {
            let (client, url, photo) = (flood.clone(), url.clone(), photo.clone());
            tokio::spawn(async move { client.post(&url, photo).await })
        })
        .collect();
    // Another client meanwhile: its probes and its own image.
    let other = HttpClient::from_address("127.0.0.2".parse().expect("ip"), Duration::from_secs(30));
    let health = app.url("/healthz");
    let mut probes = Vec::new();
    while uploads.iter().any(|u| !u.is_finished()) {
        let t = Instant::now();
        let r = other.get(&health).await.expect("healthz during the flood");
        probes.push((r.status.as_u16(), t.elapsed()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flood_took = started.elapsed();
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for upload in uploads {
        let r = upload.await.expect("task").unwrap_or_else(|e| panic!("an upload got no answer: {e}"));
        match r.status.as_u16() {
            200 => assert!(r.body.len() > 1000, "a 200 carries the image"),
            // Shed here, or (the event neither recorded nor spooled while
            // events-service's breaker is open) told to retry.
            503 if r.json()["error"]["code"] == "dependency_unavailable" => {
                assert_error(&r, 503, "dependency_unavailable")
            }
            503 => assert_error(&r, 503, "overloaded"),
            other => panic!("unexpected {other}: {}", r.text()),
        }
        *by_status.entry(r.status.as_u16()).or_default() += 1;
    }
    let peak = stack::process::memory(pid);
    let after = other.post(&url, photo.clone()).await.expect("an image after the flood");
    assert_eq!(after.status.as_u16(), 200, "{}", after.text());

    let worst_probe = probes.iter().map(|(_, t)| *t).max().unwrap_or_default();
    println!(
        "{UPLOADS} concurrent uploads of cat_720p.jpg ({} runtime): {by_status:?} in {:.1} s\n\
         VmRSS idle {} MiB, peak (VmHWM) {} MiB, cap {CAP_MIB} MiB\n\
         /healthz from another client during the flood: {} probes, all {:?}, slowest {} ms",
        stack.runtime.name(),
        flood_took.as_secs_f64(),
        idle.rss_kib / 1024,
        peak.peak_kib / 1024,
        probes.len(),
        probes.iter().map(|(s, _)| *s).collect::<std::collections::BTreeSet<_>>(),
        worst_probe.as_millis(),
    );
    assert!(by_status.get(&200).copied().unwrap_or(0) > 0, "some uploads were served");
    assert!(probes.iter().all(|(s, _)| *s == 200), "health answered 200 throughout: {probes:?}");
    assert!(peak.peak_kib / 1024 < CAP_MIB, "peak RSS {} MiB over the {CAP_MIB} MiB cap", peak.peak_kib / 1024);
}
