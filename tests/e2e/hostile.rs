//! Input an attacker would send, against the budgets the deployment files
//! set: decompression bombs at the pixel limit must stay inside the decode
//! memory budget (VmHWM), and slow senders must not lock anyone out.

use crate::support::{image, start_with};
use bytes::Bytes;
use stack::{HttpClient, Reply, Service, Stack, StackOptions};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const MIB: u64 = 1024 * 1024;

/// What docker-compose.yml and deploy/kubernetes give each service
/// (tools/validate checks them against the container limits).
fn deployed_budget(service: Service) -> u64 {
    match service {
        Service::Classify => 288 * MIB,
        _ => 152 * MIB,
    }
}

fn route(service: Service) -> &'static str {
    match service {
        Service::Classify => "/classify",
        _ => "/grayscale",
    }
}

/// A stack with `service` at its deployed budget, rate limits off (the
/// bombs come from one client, and a 429 would hide what memory does).
async fn bomb_target(service: Service) -> Stack {
    let budget = deployed_budget(service).to_string();
    start_with(
        StackOptions::test(&[service, Service::Events])
            .with_env("DECODE_MEMORY_BYTES", &budget)
            .with_env("RATE_LIMIT_POLICIES", "")
            // The flood's client waits 120 s: so may the handler. At 30 s, a
            // debug build's 16 classify bombs beside the rest of the suite on
            // 2 cores had one admitted decode answer 503 timeout (CI-like run,
            // stop 24), which says nothing about memory or the probe.
            .with_env("REQUEST_TIMEOUT_MS", "120000"),
    )
    .await
}

/// `image_max_pixels` from the service's own /metrics: the pixel limit it
/// derived from its budget.
async fn max_pixels(stack: &Stack, service: Service) -> u64 {
    let r = stack.client.get(&stack.service(service).url("/metrics")).await.expect("metrics");
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix("image_max_pixels "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no image_max_pixels in /metrics"))
}

/// Width and height for `pixels` at most, as wide as allowed.
fn shape(pixels: u64) -> (u32, u32) {
    let width = 16_384u32.min(u32::try_from(pixels).unwrap_or(u32::MAX));
    (width, u32::try_from(pixels / u64::from(width)).unwrap_or(u32::MAX).min(16_384))
}

/// An all-zero 16-bit RGBA PNG of `width`x`height`: a few hundred KB
/// that decode, at full depth, to 8 bytes a pixel.
fn png16_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Sixteen);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header().expect("PNG header");
    let mut stream = writer.stream_writer().expect("PNG stream");
    let row = vec![0u8; width as usize * 8];
    for _ in 0..height {
        std::io::Write::write_all(&mut stream, &row).expect("PNG row");
    }
    stream.finish().expect("PNG data");
    writer.finish().expect("PNG end");
    out
}

/// A valid progressive JPEG of `width`x`height`, three components at full
/// resolution, with only its first (DC) scan, every DC difference 0: one
/// bit a block, so ~3 bits a 64-pixel MCU, yet a decoder holds every
/// component's coefficients (2 bytes each) before the first pixel.
fn progressive_jpeg_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    let segment = |out: &mut Vec<u8>, marker: u8, body: &[u8]| {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&u16::try_from(body.len() + 2).expect("segment length").to_be_bytes());
        out.extend_from_slice(body);
    };
    let mut dqt = vec![0x00];
    dqt.extend_from_slice(&[1u8; 64]);
    segment(&mut out, 0xDB, &dqt);
    let (w, h) = (u16::try_from(width).expect("width"), u16::try_from(height).expect("height"));
    let mut sof = vec![8];
    sof.extend_from_slice(&h.to_be_bytes());
    sof.extend_from_slice(&w.to_be_bytes());
    sof.extend_from_slice(&[3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]);
    segment(&mut out, 0xC2, &sof);
    // DC table 0: one code, "0", for category 0 (a difference of 0).
    let mut dht = vec![0x00, 1];
    dht.extend_from_slice(&[0u8; 15]);
    dht.push(0x00);
    segment(&mut out, 0xC4, &dht);
    segment(&mut out, 0xDA, &[3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 0, 0]);
    let blocks = u64::from(width.div_ceil(8)) * u64::from(height.div_ceil(8)) * 3;
    let bytes = usize::try_from(blocks.div_ceil(8)).expect("scan size");
    out.resize(out.len() + bytes, 0);
    // The last byte's unused bits are padding: ones.
    let pad = (8 - blocks % 8) % 8;
    if let Some(last) = out.last_mut() {
        *last = (1u8 << pad).wrapping_sub(1);
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// `uploads` copies of `body` at once; while they run, `/healthz` every
/// 50 ms. Returns the answers and the slowest probe.
async fn flood(stack: &Stack, service: Service, body: Bytes, uploads: usize) -> (Vec<Reply>, Duration) {
    let app = stack.service(service);
    let (url, health) = (app.url(route(service)), app.url("/healthz"));
    let client = HttpClient::new(Duration::from_secs(120));
    let tasks: Vec<_> = (0..uploads)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tokio::spawn(async move { client.post(&url, body).await })
        })
        .collect();
    let prober = HttpClient::from_address("127.0.0.2".parse().expect("ip"), Duration::from_secs(30));
    let mut slowest = Duration::ZERO;
    while tasks.iter().any(|t| !t.is_finished()) {
        let t = Instant::now();
        let r = prober.get(&health).await.expect("healthz during the bombs");
        assert_eq!(r.status.as_u16(), 200, "healthz: {}", r.text());
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("task").unwrap_or_else(|e| panic!("a bomb got no answer: {e}")));
    }
    (replies, slowest)
}

/// Every answer 200, 413 or 503 (the JSON error, Retry-After on 503).
fn tally(replies: &[Reply]) -> std::collections::BTreeMap<String, usize> {
    let mut by = std::collections::BTreeMap::new();
    for r in replies {
        let key = match r.status.as_u16() {
            200 => "200".to_owned(),
            status @ (413 | 503) => {
                let code = r.json()["error"]["code"].as_str().unwrap_or_default().to_owned();
                assert!(
                    (status == 413 && code == "image_too_large") || (status == 503 && code == "overloaded"),
                    "{status}: {}",
                    r.text()
                );
                if status == 503 {
                    assert!(r.header("retry-after").is_some(), "503 without Retry-After");
                }
                format!("{status} {code}")
            }
            other => panic!("unexpected {other}: {}", r.text()),
        };
        *by.entry(key).or_default() += 1;
    }
    by
}

fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM (clear_refs)");
}

/// 16 concurrent 16-bit bombs, then 8 concurrent progressive-JPEG bombs,
/// each at the service's pixel limit: VmHWM stays within the budget plus
/// 64 MiB over what the process held before, every answer is a clear one,
/// and /healthz answers within 1 s throughout, on both runtimes.
async fn bombs_stay_within_the_budget(service: Service) {
    let stack = bomb_target(service).await;
    let app = stack.service(service);
    let pid = app.pid().expect("the app's pid");
    let budget = deployed_budget(service);
    let (width, height) = shape(max_pixels(&stack, service).await);
    let warm = stack.client.post(&app.url(route(service)), image("cat_720p.jpg")).await.expect("warm-up");
    assert_eq!(warm.status.as_u16(), 200, "{}", warm.text());

    let mut figures = Vec::new();
    for (what, body, uploads) in [
        ("16-bit RGBA PNG", png16_bomb(width, height), 16),
        ("progressive JPEG", progressive_jpeg_bomb(width, height), 8),
    ] {
        let before = stack::process::memory(pid);
        reset_peak(pid);
        let size = body.len();
        let started = Instant::now();
        let (replies, slowest_probe) = flood(&stack, service, Bytes::from(body), uploads).await;
        let took = started.elapsed();
        let peak = stack::process::memory(pid).peak_kib * 1024;
        let by = tally(&replies);
        let growth = peak.saturating_sub(before.rss_kib * 1024);
        figures.push(format!(
            "  {uploads} x {what} {width}x{height} ({size} B): {by:?} in {:.1} s; VmRSS before {} MiB, \
             VmHWM after {} MiB (+{} MiB; budget {} MiB); slowest /healthz {} ms",
            took.as_secs_f64(),
            before.rss_kib / 1024,
            peak / MIB,
            growth / MIB,
            budget / MIB,
            slowest_probe.as_millis()
        ));
        assert!(growth <= budget + 64 * MIB, "{what}: VmHWM grew {} MiB, over budget + 64 MiB", growth / MIB);
        // Under WasmEdge too: the module has one thread and runs CPU work
        // in place, but the image work is in steps that yield to the
        // probe (kit::rt::cpu_steps).
        let probe_bound = Duration::from_secs(1);
        assert!(slowest_probe < probe_bound, "{what}: /healthz took {slowest_probe:?}");
    }
    println!(
        "decompression bombs at {} ({} runtime, DECODE_MEMORY_BYTES {} MiB, pixel limit {}):\n{}",
        service.app_id(),
        stack.runtime.name(),
        budget / MIB,
        u64::from(width) * u64::from(height),
        figures.join("\n")
    );
    let after = stack.client.post(&app.url(route(service)), image("cat_720p.jpg")).await.expect("a photo after");
    assert_eq!(after.status.as_u16(), 200, "{}", after.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grayscale_bombs_stay_within_the_decode_budget() {
    bombs_stay_within_the_budget(Service::Grayscale).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_bombs_stay_within_the_decode_budget() {
    bombs_stay_within_the_budget(Service::Classify).await;
}

/// 100 uploads sending one byte a second hold body readers, not the
/// in-flight permits: a normal client is served meanwhile within its usual
/// time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_slow_uploads_do_not_lock_out_a_normal_client() {
    const SLOW: usize = 100;
    let stack = start_with(StackOptions::test(&[Service::Grayscale, Service::Events])).await;
    let app = stack.service(Service::Grayscale);
    let url = app.url("/grayscale");
    let photo = Bytes::from(image("grace_hopper.jpg"));
    let normal = HttpClient::from_address("127.0.0.2".parse().expect("ip"), Duration::from_secs(30));
    let timed = |n: usize| {
        let (normal, url, photo) = (normal.clone(), url.clone(), photo.clone());
        async move {
            let mut times = Vec::new();
            for _ in 0..n {
                let t = Instant::now();
                let r = normal.post(&url, photo.clone()).await.expect("a normal upload");
                assert_eq!(r.status.as_u16(), 200, "{}", r.text());
                times.push(t.elapsed());
            }
            times
        }
    };
    let usual = timed(5).await;

    let addr = format!("127.0.0.1:{}", app.app_port);
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let head = format!(
            "POST /grayscale HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/octet-stream\r\ncontent-length: 100000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("head");
        slow.push(stream);
    }
    let dribble = tokio::spawn(async move {
        for _ in 0..8 {
            for stream in &mut slow {
                let _ = stream.write_all(b"\xFF").await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        slow
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = timed(5).await;
    let slow = dribble.await.expect("dribble");
    let worst_usual = usual.iter().max().copied().unwrap_or_default();
    let worst_during = during.iter().max().copied().unwrap_or_default();
    println!(
        "{SLOW} uploads at 1 byte/s ({} runtime): a normal grace_hopper.jpg took {:?} before, {:?} meanwhile",
        stack.runtime.name(),
        usual,
        during
    );
    assert!(
        worst_during <= worst_usual * 3 + Duration::from_millis(500),
        "a normal client was slowed: {worst_during:?} against {worst_usual:?} before"
    );
    drop(slow);
}
