//! Bad input to the image services: a clear 4xx with a JSON body, and
//! nothing recorded — no event, no client state.

use crate::support::{assert_error, events, image, start_with};
use stack::{Method, Service, StackOptions};

/// A PNG whose header declares `width`×`height` with almost no data: a
/// decompression bomb as far as the header goes.
fn bomb_png(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit gray
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    png
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
