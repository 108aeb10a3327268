use super::*;
use crate::config::ServerConfig;
use crate::http::{text, Router, Server};
use http::Method;
use hyper::{Body, Request};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;

/// Buckets in memory with the same contract as the Dapr store: versions,
/// "only if absent" for a `None` ETag, 409 on a stale one; optionally
/// down, and optionally losing the first `conflicts` writes to a phantom
/// writer.
#[derive(Default)]
struct MemoryStore {
    items: Mutex<HashMap<String, (Bucket, u64, u64)>>,
    down: std::sync::atomic::AtomicBool,
    conflicts: AtomicUsize,
    saves: AtomicUsize,
}

impl BucketStore for MemoryStore {
    fn load(&self, key: String, _trace: TraceContext) -> crate::BoxFuture<Result<Option<Versioned>, StoreError>> {
        let out = if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("down".into()))
        } else {
            let items = self.items.lock().expect("lock");
            Ok(items.get(&key).map(|(b, v, _)| Versioned { bucket: Some(*b), etag: v.to_string() }))
        };
        Box::pin(async move { out })
    }

    fn save(
        &self,
        key: String,
        bucket: Bucket,
        etag: Option<String>,
        ttl_secs: u64,
        _trace: TraceContext,
    ) -> crate::BoxFuture<Result<(), StoreError>> {
        let out = if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("down".into()))
        } else if self.conflicts.load(Ordering::SeqCst) > 0 {
            self.conflicts.fetch_sub(1, Ordering::SeqCst);
            Err(StoreError::Conflict)
        } else {
            let mut items = self.items.lock().expect("lock");
            let current = items.get(&key).map(|(_, v, _)| v.to_string());
            if current != etag {
                Err(StoreError::Conflict)
            } else {
                let version = items.get(&key).map_or(1, |(_, v, _)| v + 1);
                items.insert(key, (bucket, version, ttl_secs));
                self.saves.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        };
        Box::pin(async move { out })
    }
}

fn config(pairs: &[(&str, &str)]) -> RateLimitConfig {
    let src: HashMap<&str, &str> = pairs.iter().copied().collect();
    RateLimitConfig::from_source(&src).expect("config")
}

fn limiter(pairs: &[(&str, &str)], store: Arc<MemoryStore>) -> Arc<RateLimiter> {
    RateLimiter::new("test-svc", config(pairs), store).expect("a limiter")
}

const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

/// The decision as the request path answers it: the headers of an allowed
/// request, or the reply of a refused one.
async fn check(
    l: &RateLimiter,
    route: &str,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Result<HeaderMap, crate::http::Reply> {
    match l.check(route, headers, peer).await {
        Decision::Allow(headers) => Ok(headers),
        Decision::Refuse(err, headers) => {
            let mut reply = crate::http::error_reply(&err);
            reply.headers_mut().extend(headers);
            Err(reply)
        }
    }
}

async fn admitted(l: &RateLimiter, route: &str, headers: &HeaderMap, peer: IpAddr, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        ok += usize::from(check(l, route, headers, peer).await.is_ok());
    }
    ok
}

#[test]
fn policies_parse_with_defaults() {
    let c = config(&[("RATE_LIMIT_POLICIES", " /grayscale=20/10, /metrics=off,*=100/0.5 ")]);
    assert_eq!(
        c.policies,
        vec![
            Policy { route: "/grayscale".into(), burst: 20, rate: 10.0 },
            Policy { route: "*".into(), burst: 100, rate: 0.5 }
        ]
    );
    assert_eq!(c.exempt, vec!["/metrics".to_owned()]);
    assert_eq!((c.fail_mode, c.ipv6_prefix, c.max_retries), (FailMode::Open, 64, 10));
    assert!(config(&[]).policies.is_empty());
}

#[test]
fn bad_settings_name_the_variable() {
    for (name, value) in [
        ("RATE_LIMIT_POLICIES", "/a=10"),
        ("RATE_LIMIT_POLICIES", "a=1/1"),
        ("RATE_LIMIT_POLICIES", "/a=0/1"),
        ("RATE_LIMIT_POLICIES", "/a=1/0"),
        ("RATE_LIMIT_POLICIES", "/a=1/x"),
        ("RATE_LIMIT_POLICIES", "/a=1/1,/a=off"),
        ("RATE_LIMIT_FAIL_MODE", "maybe"),
        ("RATE_LIMIT_IPV6_PREFIX", "129"),
        ("RATE_LIMIT_GUARD_FACTOR", "0.5"),
    ] {
        let src = HashMap::from([(name, value)]);
        let err = RateLimitConfig::from_source(&src).expect_err(value);
        assert_eq!(err.name, name, "{value}");
    }
}

#[tokio::test]
async fn exactly_the_burst_then_429_with_headers_and_nothing_stored_for_refusals() {
    let store = Arc::new(MemoryStore::default());
    let l = limiter(&[("RATE_LIMIT_POLICIES", "/a=3/0.01")], store.clone());
    let h = HeaderMap::new();
    let first = check(&l, "/a", &h, PEER).await.expect("allowed");
    assert_eq!(first.get(RATELIMIT_POLICY).and_then(|v| v.to_str().ok()), Some(r#""/a";q=3;w=300"#));
    assert_eq!(first.get(RATELIMIT).and_then(|v| v.to_str().ok()), Some(r#""/a";r=2;t=100"#));
    assert_eq!(admitted(&l, "/a", &h, PEER, 5).await, 2);
    assert_eq!(store.saves.load(Ordering::SeqCst), 3, "refusals write nothing");
    let refused = check(&l, "/a", &h, PEER).await.expect_err("refused");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("100"));
    assert!(refused.headers().contains_key(RATELIMIT_POLICY) && refused.headers().contains_key(RATELIMIT));
    let body = hyper::body::to_bytes(refused.into_body()).await.expect("body");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"]["code"], "rate_limited");
    // The TTL is the full refill time; the key names policy and client.
    let items = store.items.lock().expect("lock");
    assert_eq!(items.get("ratelimit:/a:192.0.2.1").map(|(_, _, ttl)| *ttl), Some(300));
}

#[tokio::test]
async fn clients_routes_and_exemptions_are_separate() {
    let store = Arc::new(MemoryStore::default());
    let l = limiter(&[("RATE_LIMIT_POLICIES", "/a=2/0.01,*=1/0.01,/healthz=off")], store);
    let h = HeaderMap::new();
    assert_eq!(admitted(&l, "/a", &h, PEER, 5).await, 2);
    assert_eq!(admitted(&l, "/a", &h, "192.0.2.2".parse().expect("ip"), 5).await, 2);
    assert_eq!(admitted(&l, "/other", &h, PEER, 5).await, 1, "* covers unlisted routes");
    assert_eq!(admitted(&l, "/healthz", &h, PEER, 5).await, 5);
    assert!(check(&l, "/healthz", &h, PEER).await.expect("ok").is_empty(), "no headers on an unlimited route");
    // Two addresses of one IPv6 /64 share a bucket.
    let (a, b): (IpAddr, IpAddr) = ("2001:db8::1".parse().expect("ip"), "2001:db8::2".parse().expect("ip"));
    assert_eq!(admitted(&l, "/a", &h, a, 1).await + admitted(&l, "/a", &h, b, 5).await, 2);
}

/// A server over `store` whose one route answers the client it saw.
fn client_echo_server(pairs: &[(&str, &str)], store: Option<Arc<MemoryStore>>) -> Arc<Server> {
    let router = Router::new().route(Method::POST, "/a", |req: crate::http::Req| async move {
        Ok(text(StatusCode::OK, req.client_ip().to_string()))
    });
    let src: HashMap<&str, &str> = pairs.iter().copied().collect();
    let server_config = ServerConfig::from_source(&src, 0).expect("config");
    Server::with_limiter(router, server_config, store.map(|store| limiter(pairs, store)))
}

async fn post_from(server: &Server, peer: &str, forwarded: Option<&'static str>) -> (u16, String) {
    let mut req = Request::post("/a");
    if let Some(xff) = forwarded {
        req = req.header("x-forwarded-for", xff);
    }
    let r = server.handle(req.body(Body::empty()).expect("req"), format!("{peer}:5000").parse().expect("addr")).await;
    let status = r.status().as_u16();
    let body = hyper::body::to_bytes(r.into_body()).await.expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_forwarded_client_counts_only_through_a_trusted_proxy() {
    let store = Arc::new(MemoryStore::default());
    let pairs = [("RATE_LIMIT_POLICIES", "/a=1/0.01"), ("RATE_LIMIT_TRUSTED_PROXIES", "127.0.0.1")];
    let server = client_echo_server(&pairs, Some(store.clone()));
    let xff = Some("6.6.6.6, 198.51.100.1");
    // An untrusted peer's header is ignored: the peer is the client, the
    // one its bucket and its handler see.
    assert_eq!(post_from(&server, "192.0.2.1", xff).await, (200, "192.0.2.1".into()));
    assert_eq!(post_from(&server, "192.0.2.1", xff).await.0, 429);
    // The trusted proxy's client has a bucket of its own, under its name,
    // and the handler sees that same client.
    assert_eq!(post_from(&server, "127.0.0.1", xff).await, (200, "198.51.100.1".into()));
    assert_eq!(post_from(&server, "127.0.0.1", xff).await.0, 429);
    let keys: Vec<String> = store.items.lock().expect("lock").keys().cloned().collect();
    assert!(keys.contains(&"ratelimit:/a:198.51.100.1".to_owned()), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains("6.6.6.6") || k.contains("127.0.0.1")), "{keys:?}");
    // And so has the proxy itself.
    assert_eq!(post_from(&server, "127.0.0.1", None).await, (200, "127.0.0.1".into()));
}

#[tokio::test]
async fn the_client_is_resolved_with_the_limiter_off_too() {
    let server = client_echo_server(&[("RATE_LIMIT_TRUSTED_PROXIES", "127.0.0.1")], None);
    assert_eq!(post_from(&server, "127.0.0.1", Some("203.0.113.7")).await, (200, "203.0.113.7".into()));
    assert_eq!(post_from(&server, "192.0.2.1", Some("203.0.113.7")).await, (200, "192.0.2.1".into()));
    let untrusting = client_echo_server(&[], None);
    assert_eq!(post_from(&untrusting, "127.0.0.1", Some("203.0.113.7")).await, (200, "127.0.0.1".into()));
}

#[tokio::test]
async fn a_bucket_written_out_of_range_into_the_store_is_clamped_and_repaired() {
    let store = Arc::new(MemoryStore::default());
    let l = limiter(&[("RATE_LIMIT_POLICIES", "/a=3/1")], store.clone());
    let plant = |client: IpAddr, bucket: Bucket| {
        store.items.lock().expect("lock").insert(format!("ratelimit:/a:{client}"), (bucket, 7, 0));
    };
    // Dated far in the future with no tokens: refused now, but written back
    // dated now (with a TTL), so the refill comes.
    let future: IpAddr = "192.0.2.10".parse().expect("ip");
    plant(future, Bucket { tokens: 0.0, updated_ms: i64::MAX });
    assert_eq!(admitted(&l, "/a", &HeaderMap::new(), future, 1).await, 0);
    let (repaired, version, ttl) = store.items.lock().expect("lock")[&format!("ratelimit:/a:{future}")];
    assert!(repaired.updated_ms <= crate::rt::now_ms() && version == 8 && ttl > 0, "{repaired:?} v{version} ttl {ttl}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(admitted(&l, "/a", &HeaderMap::new(), future, 3).await, 1, "1 s at 1/s");
    // Negative: an empty bucket, not a lock-out for as long as it would take to refill.
    let negative: IpAddr = "192.0.2.11".parse().expect("ip");
    plant(negative, Bucket { tokens: -1e12, updated_ms: crate::rt::now_ms() - 1_000 });
    assert_eq!(admitted(&l, "/a", &HeaderMap::new(), negative, 3).await, 1, "1 s at 1/s after empty");
}

#[tokio::test]
async fn a_conflict_is_decided_again_and_endless_ones_are_refused() {
    let store = Arc::new(MemoryStore::default());
    let l = limiter(&[("RATE_LIMIT_POLICIES", "/a=5/0.01"), ("RATE_LIMIT_MAX_RETRIES", "3")], store.clone());
    store.conflicts.store(3, Ordering::SeqCst);
    assert!(check(&l, "/a", &HeaderMap::new(), PEER).await.is_ok(), "the fourth attempt lands");
    store.conflicts.store(4, Ordering::SeqCst);
    let refused = check(&l, "/a", &HeaderMap::new(), PEER).await.expect_err("contended");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(store.saves.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_local_guard_sheds_without_a_state_call() {
    let store = Arc::new(MemoryStore::default());
    let l = limiter(&[("RATE_LIMIT_POLICIES", "/a=2/0.01"), ("RATE_LIMIT_GUARD_FACTOR", "1")], store.clone());
    assert_eq!(admitted(&l, "/a", &HeaderMap::new(), PEER, 2).await, 2);
    // The store is now down: the guard still refuses, and the store is not asked.
    store.down.store(true, Ordering::SeqCst);
    assert_eq!(admitted(&l, "/a", &HeaderMap::new(), PEER, 3).await, 0);
    assert!(l.outage.lock().expect("lock").is_none(), "no state call was made");
}

#[tokio::test]
async fn store_down_fails_open_to_the_local_policy_then_recovers() {
    let store = Arc::new(MemoryStore::default());
    let pairs = [("RATE_LIMIT_POLICIES", "/a=3/0.01"), ("RATE_LIMIT_OUTAGE_PROBE_MS", "0")];
    let l = limiter(&pairs, store.clone());
    store.down.store(true, Ordering::SeqCst);
    assert_eq!(admitted(&l, "/a", &HeaderMap::new(), PEER, 5).await, 3, "the local copy of the policy");
    assert!(l.outage.lock().expect("lock").is_some());
    store.down.store(false, Ordering::SeqCst);
    let other: IpAddr = "192.0.2.9".parse().expect("ip");
    assert!(check(&l, "/a", &HeaderMap::new(), other).await.is_ok());
    assert!(l.outage.lock().expect("lock").is_none(), "recovered by itself");
    assert_eq!(store.saves.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn store_down_fails_closed_with_503() {
    let store = Arc::new(MemoryStore::default());
    let l = limiter(&[("RATE_LIMIT_POLICIES", "/a=3/1"), ("RATE_LIMIT_FAIL_MODE", "closed")], store.clone());
    store.down.store(true, Ordering::SeqCst);
    let refused = check(&l, "/a", &HeaderMap::new(), PEER).await.expect_err("closed");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_refused_request_never_reaches_its_handler_and_allowed_answers_carry_headers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let router = Router::new().route(Method::POST, "/work", move |_req| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(text(StatusCode::OK, "done"))
        }
    });
    let server_config = ServerConfig::from_source(&HashMap::<&str, &str>::new(), 0).expect("config");
    let store = Arc::new(MemoryStore::default());
    let server =
        Server::with_limiter(router, server_config, Some(limiter(&[("RATE_LIMIT_POLICIES", "/work=2/0.01")], store)));
    let peer: SocketAddr = "192.0.2.1:5000".parse().expect("addr");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = server.handle(Request::post("/work").body(Body::from("x")).expect("req"), peer).await;
        assert!(r.headers().contains_key(RATELIMIT), "{:?}", r.headers());
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
