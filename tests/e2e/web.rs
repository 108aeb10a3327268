//! The web front: nginx's config checked from Rust against an upstream that
//! records what nginx forwards, and the page itself in Debian's Chromium
//! (web/tests/page.test.mjs through playwright-core) against a real stack.

use crate::support::{repo_path, start_with};
use stack::nginx::{Nginx, NginxSpec};
use stack::{Method, Mode, Service, StackOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

/// Small enough that a test file crosses it quickly, large enough for
/// hot_dog.jpg (200,930 bytes).
const TEST_MAX_BODY: usize = 256 * 1024;

/// One request as the upstream saw it.
#[derive(Debug)]
struct Seen {
    target: String,
    headers: Vec<(String, String)>,
    body_len: usize,
}

impl Seen {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

/// An HTTP/1.1 upstream on a free port that answers 200 "ok" and sends
/// each request it read to the returned channel.
fn recording_upstream() -> (u16, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(match stream.try_clone() {
                Ok(s) => s,
                Err(_) => continue,
            });
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let target = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).map(|n| n == 0).unwrap_or(true) || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim_end().split_once(':') {
                    headers.push((k.trim().to_owned(), v.trim().to_owned()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let body_len = reader.read_exact(&mut body).map(|_| len).unwrap_or(0);
            let mut stream = reader.into_inner();
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            );
            let _ = tx.send(Seen { target, headers, body_len });
        }
    });
    (port, rx)
}

async fn nginx_before(upstream: u16, max_body_bytes: usize) -> Nginx {
    let dir = stack::paths::scratch_dir().join(format!("nginx-{}", stack::unique_id()));
    let addr = format!("127.0.0.1:{upstream}");
    let spec = NginxSpec {
        port: stack::free_port(),
        web_root: stack::nginx::static_dir(),
        grayscale_dapr: addr.clone(),
        classify_dapr: addr.clone(),
        events_dapr: addr,
        zipkin_url: "http://zipkin.test:9411/".into(),
        max_body_bytes,
    };
    Nginx::start(&dir, &spec, Mode::Attached).await.unwrap_or_else(|e| panic!("nginx did not start: {e}"))
}

#[track_caller]
fn assert_security_headers(reply: &stack::Reply, what: &str) {
    let csp = reply.header("content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP"));
    for directive in
        ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"]
    {
        assert!(csp.contains(directive), "{what}: CSP {csp:?} lacks {directive}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{what}: {csp}");
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{what}");
}

#[tokio::test]
async fn nginx_serves_the_page_with_security_headers_on_every_answer() {
    let (upstream, _seen) = recording_upstream();
    let web = nginx_before(upstream, TEST_MAX_BODY).await;
    let c = stack::HttpClient::default();

    let page = c.get(&web.url("/")).await.expect("GET /");
    assert_eq!(page.status.as_u16(), 200);
    assert!(
        page.header("content-type").is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.header("content-type")
    );
    assert!(page.text().contains("<script src=\"app.js\""), "the page: {}", page.text());
    assert_security_headers(&page, "GET /");

    for asset in ["app.js", "style.css"] {
        let r = c.get(&web.url(asset)).await.expect(asset);
        assert_eq!(r.status.as_u16(), 200, "{asset}");
        assert_security_headers(&r, asset);
    }

    // The Zipkin base URL the page links to, rendered from the config (the
    // trailing slash trimmed so links are <base>/zipkin/traces/<id>).
    let cfg = c.get(&web.url("/config.js")).await.expect("config.js");
    assert_eq!(cfg.status.as_u16(), 200);
    assert!(cfg.header("content-type").is_some_and(|t| t.starts_with("application/javascript")));
    assert!(cfg.text().contains("zipkinUrl: \"http://zipkin.test:9411\""), "{}", cfg.text());

    // Error answers carry the headers too (`always`), in the services' JSON shape.
    let missing = c.get(&web.url("/no-such-page")).await.expect("404");
    assert_eq!(missing.status.as_u16(), 404);
    assert_security_headers(&missing, "404");
    let api = c.get(&web.url("/api/nothing")).await.expect("api 404");
    crate::support::assert_error(&api, 404, "not_found");
    assert_security_headers(&api, "api 404");
    let wrong = c.get(&web.url("/api/grayscale")).await.expect("GET /api/grayscale");
    crate::support::assert_error(&wrong, 405, "method_not_allowed");
    assert_security_headers(&wrong, "405");
}

#[tokio::test]
async fn nginx_forwards_to_the_sidecars_invoke_api_and_overwrites_x_forwarded_for() {
    let (upstream, seen) = recording_upstream();
    let web = nginx_before(upstream, TEST_MAX_BODY).await;
    let c = stack::HttpClient::default();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let next = |what: &str| {
        seen.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| panic!("{what} did not reach the upstream"))
    };

    let r = c
        .request(
            Method::GET,
            &web.url("/api/events?limit=5&before_id=9"),
            &[("x-forwarded-for", "6.6.6.6"), ("traceparent", tp)],
            Default::default(),
        )
        .await
        .expect("events");
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
    let s = next("GET /api/events");
    assert_eq!(s.target, "/v1.0/invoke/events-service/method/events?limit=5&before_id=9");
    // The client's own claim is gone: the limiter sees the address nginx saw.
    assert_eq!(s.header("x-forwarded-for"), vec!["127.0.0.1"], "{s:?}");
    assert_eq!(s.header("traceparent"), vec![tp], "{s:?}");

    let photo = crate::support::image("hot_dog.jpg");
    for (route, app) in [("grayscale", "image-api-grayscale"), ("classify", "image-api-classify")] {
        let r = c
            .request(
                Method::POST,
                &web.url(&format!("/api/{route}")),
                &[("x-forwarded-for", "10.0.0.1, 10.0.0.2")],
                photo.clone().into(),
            )
            .await
            .expect(route);
        assert_eq!(r.status.as_u16(), 200, "{route}: {}", r.text());
        let s = next(route);
        assert_eq!(s.target, format!("/v1.0/invoke/{app}/method/{route}"));
        assert_eq!(s.header("x-forwarded-for"), vec!["127.0.0.1"], "{s:?}");
        assert_eq!(s.body_len, photo.len(), "{route}: the whole body went upstream");
    }

    // Over the limit: nginx answers 413 itself, in the services' error
    // shape, and nothing reaches the sidecar.
    let r = c.post(&web.url("/api/grayscale"), vec![0u8; TEST_MAX_BODY + 1]).await.expect("oversized");
    crate::support::assert_error(&r, 413, "payload_too_large");
    assert_security_headers(&r, "413");
    assert!(seen.recv_timeout(Duration::from_millis(500)).is_err(), "an oversized body must not reach the upstream");
    let r = c.post(&web.url("/api/grayscale"), vec![0u8; TEST_MAX_BODY]).await.expect("at the limit");
    assert_eq!(r.status.as_u16(), 200, "a body of exactly the limit passes");
    assert_eq!(next("at the limit").body_len, TEST_MAX_BODY);
}

/// `npm ci` in web/, only when node_modules is missing or the lock file
/// changed since the last install (a copy of the lock marks what was
/// installed). Once per test binary.
fn npm_ci(web: &Path) {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if *done {
        return;
    }
    let lock = std::fs::read(web.join("package-lock.json")).expect("web/package-lock.json");
    let stamp = web.join("node_modules/.installed-package-lock.json");
    if std::fs::read(&stamp).ok().as_deref() != Some(lock.as_slice()) {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(web)
            .output()
            .expect("npm (Node 20 + npm must be installed)");
        assert!(
            out.status.success(),
            "npm ci failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&stamp, &lock).expect("npm stamp");
    }
    *done = true;
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_path("target"));
    target.join("web-screenshots")
}

#[tokio::test]
async fn the_page_in_chromium() {
    let stack = start_with(
        StackOptions::test(&Service::ALL)
            .with_web()
            .with_tracing()
            .with_env("MAX_BODY_BYTES", &TEST_MAX_BODY.to_string())
            // classify: a burst of 2 and one token in 100 s, so the page's
            // third classify meets the real limiter's 429.
            .with_env("RATE_LIMIT_POLICIES", "/classify=2/0.01"),
    )
    .await;
    let zipkin = stack.zipkin.as_ref().expect("zipkin").url("");
    let init = stack.client.get(&stack.service(Service::Events).url("/init")).await.expect("init");
    assert_eq!(init.status.as_u16(), 200, "{}", init.text());

    let web_dir = repo_path("web");
    let npm_dir = web_dir.clone();
    tokio::task::spawn_blocking(move || npm_ci(&npm_dir)).await.expect("npm ci");

    let mut cmd = Command::new("node");
    cmd.arg(web_dir.join("tests/page.test.mjs"))
        .current_dir(&web_dir)
        .env("WEB_URL", stack.web().url("/"))
        .env("IMAGES_DIR", stack::paths::shared_dir().join("images"))
        .env("SCREENSHOT_DIR", screenshot_dir())
        .env("WEB_MAX_BODY", TEST_MAX_BODY.to_string())
        // The test follows each trace link into this Zipkin (findTracesInZipkin).
        .env("ZIPKIN_URL", zipkin.trim_end_matches('/'));
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("node (Node 20 must be installed)");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{log}");
    assert!(
        out.status.success(),
        "the browser test failed:\n{log}\n--- nginx error log ---\n{}",
        stack::process::tail(&stack.web().dir.join("logs/error.log"), 20)
    );
}
