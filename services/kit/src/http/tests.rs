//! The request path in-process: `Server::handle` needs no socket.

use super::*;
use crate::config::ServerConfig;
use http::header::{ACCEPT, ALLOW, CONNECTION, CONTENT_LENGTH, RETRY_AFTER};
use http::{Method, StatusCode};
use hyper::{Body, Request};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

fn server(router: Router, env: &[(&str, &str)]) -> Arc<Server> {
    let src: HashMap<&str, &str> = env.iter().copied().collect();
    Server::new(router, ServerConfig::from_source(&src, 0).expect("config"))
}

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000))
}

async fn body_json(reply: Reply) -> serde_json::Value {
    let bytes = hyper::body::to_bytes(reply.into_body()).await.expect("body");
    serde_json::from_slice(&bytes).expect("json body")
}

fn echo() -> Router {
    Router::new().route(Method::POST, "/echo", |req: Req| async move {
        Ok(with_body(StatusCode::OK, "application/octet-stream", req.body.to_vec()))
    })
}

#[tokio::test]
async fn unknown_route_and_wrong_method_are_json_errors() {
    let s = server(echo(), &[]);
    let r = s.handle(Request::get("/nope").body(Body::empty()).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(body_json(r).await["error"]["code"], "not_found");
    let r = s.handle(Request::get("/echo").body(Body::empty()).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers().get(ALLOW).map(|v| v.as_bytes()), Some(&b"POST"[..]));
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_whether_declared_or_streamed() {
    let s = server(echo(), &[("MAX_BODY_BYTES", "10")]);
    let r = s.handle(Request::post("/echo").body(Body::from("0123456789")).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get(CONNECTION), None, "a body read to its end keeps the connection");
    let r = s.handle(Request::post("/echo").body(Body::from("0123456789a")).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Its body is left unread, so the connection closes and the client is told.
    assert_eq!(r.headers().get(CONNECTION).map(|v| v.as_bytes()), Some(&b"close"[..]));
    assert_eq!(body_json(r).await["error"]["code"], "payload_too_large");
    // Streamed with no Content-Length: counted as it arrives.
    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("012345"), Ok("678901")];
    let r = s
        .handle(
            Request::post("/echo").body(Body::wrap_stream(futures_util::stream::iter(chunks))).expect("req"),
            peer(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_body_that_stalls_gets_408() {
    let s = server(echo(), &[("BODY_READ_TIMEOUT_MS", "50")]);
    let (_sender, body) = Body::channel();
    let req = Request::post("/echo").header(CONTENT_LENGTH, "5").body(body).expect("req");
    let r = s.handle(req, peer()).await;
    assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn a_slow_handler_gets_503_with_retry_after() {
    let router = Router::new().route(Method::GET, "/slow", |_req| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(text(StatusCode::OK, "late"))
    });
    let s = server(router, &[("REQUEST_TIMEOUT_MS", "30")]);
    let r = s.handle(Request::get("/slow").body(Body::empty()).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key(RETRY_AFTER));
}

#[tokio::test]
async fn query_and_accept_helpers() {
    let router = Router::new().route(Method::GET, "/q", |req: Req| async move {
        let limit: Option<u32> = req.query_as("limit")?;
        json(
            StatusCode::OK,
            &serde_json::json!({
                "limit": limit, "name": req.query("name"), "json": req.accepts("application/json")
            }),
        )
    });
    let s = server(router, &[]);
    let req = Request::get("/q?limit=5&name=a%20b")
        .header(ACCEPT, "text/html, application/json;q=0.9")
        .body(Body::empty())
        .expect("req");
    let v = body_json(s.handle(req, peer()).await).await;
    assert_eq!(v, serde_json::json!({"limit": 5, "name": "a b", "json": true}));
    let r = s.handle(Request::get("/q?limit=x").body(Body::empty()).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn readiness_names_the_failing_probe() {
    let router = Router::new().with_health(
        "svc",
        vec![
            ("sidecar", probe(|| async { Ok::<(), String>(()) })),
            ("database", probe(|| async { Err("refused".to_owned()) })),
        ],
    );
    let s = server(router, &[]);
    let r = s.handle(Request::get("/healthz").body(Body::empty()).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.handle(Request::get("/readyz").body(Body::empty()).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v = body_json(r).await;
    assert_eq!(v["checks"]["database"], "refused");
    assert_eq!(v["checks"]["sidecar"], "ok");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_not_path() {
    crate::metrics::set_build_info("svc");
    let router = echo().with_health("svc", vec![]);
    let s = server(router, &[]);
    for path in ["/echo", "/nope/123"] {
        s.handle(Request::post(path).body(Body::from("abc")).expect("req"), peer()).await;
    }
    let r = s.handle(Request::get("/metrics").body(Body::empty()).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = String::from_utf8(hyper::body::to_bytes(r.into_body()).await.expect("body").to_vec()).expect("utf-8");
    let count = |labels: &str| {
        text.lines()
            .find(|l| l.starts_with("http_server_request_duration_seconds_count{") && l.contains(labels))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    assert!(count(r#"method="POST",route="/echo",status="200""#) >= Some(1), "{text}");
    assert!(count(r#"route="unmatched",status="404""#) >= Some(1), "{text}");
    assert!(!text.contains("/nope/123"), "raw paths never become labels");
    assert!(text.contains(r#"build_info{runtime="native",service="svc""#), "{text}");
}

/// The availability SLIs divide `http_server_requests_total`'s 5xx by all of
/// it: each route's series must exist at 0 before its first 5xx, or that
/// first error is the birth of a series and `rate()` never sees it.
#[tokio::test]
async fn every_routes_answer_classes_exist_at_0_before_the_first_request() {
    let router = Router::new()
        .route(Method::POST, "/always-fails", |_req| async {
            Err(crate::error::ApiError::unavailable("down", "the dependency is down"))
        })
        .with_health("svc", vec![]);
    let s = server(router, &[]);
    let metrics = |s: Arc<Server>| async move {
        let r = s.handle(Request::get("/metrics").body(Body::empty()).expect("req"), peer()).await;
        String::from_utf8(hyper::body::to_bytes(r.into_body()).await.expect("body").to_vec()).expect("utf-8")
    };
    let value = |text: &str, labels: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("http_server_requests_total{{{labels}}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let before = metrics(s.clone()).await;
    for class in crate::metrics::STATUS_CLASSES {
        let labels = format!(r#"route="/always-fails",status_class="{class}""#);
        assert_eq!(value(&before, &labels), Some(0), "{labels} at 0 from start-up:\n{before}");
        // Other tests in this process answer unmatched requests: there, only that it exists.
        let labels = format!(r#"route="unmatched",status_class="{class}""#);
        assert!(value(&before, &labels).is_some(), "{labels} exists from start-up:\n{before}");
    }
    let r = s.handle(Request::post("/always-fails").body(Body::from("x")).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let after = metrics(s).await;
    assert_eq!(value(&after, r#"route="/always-fails",status_class="5xx""#), Some(1), "{after}");
    assert_eq!(value(&after, r#"route="/always-fails",status_class="2xx""#), Some(0), "{after}");
}

#[tokio::test]
async fn past_max_in_flight_requests_get_503_overloaded_but_probes_still_answer() {
    let (release, wait) = tokio::sync::watch::channel(false);
    let router = Router::new()
        .route(Method::GET, "/busy", move |_req| {
            let mut wait = wait.clone();
            async move {
                let _ = wait.wait_for(|done| *done).await;
                Ok(text(StatusCode::OK, "done"))
            }
        })
        .with_health("svc", vec![]);
    let s = server(router, &[("MAX_IN_FLIGHT", "1")]);
    let busy = tokio::spawn({
        let s = s.clone();
        async move { s.handle(Request::get("/busy").body(Body::empty()).expect("req"), peer()).await }
    });
    while s.in_flight.available_permits() > 0 {
        tokio::task::yield_now().await;
    }
    let r = s.handle(Request::get("/busy").body(Body::from("an upload")).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Its body was read and dropped, so the connection may stay open.
    assert_eq!(r.headers().get(CONNECTION), None);
    assert_eq!(body_json(r).await["error"]["code"], "overloaded");
    for probe in ["/healthz", "/metrics"] {
        let r = s.handle(Request::get(probe).body(Body::empty()).expect("req"), peer()).await;
        assert_eq!(r.status(), StatusCode::OK, "{probe} answers while the server is full");
    }
    let _ = release.send(true);
    assert_eq!(busy.await.expect("join").status(), StatusCode::OK);
}

#[tokio::test]
async fn serve_stops_on_shutdown_and_lets_the_request_in_flight_finish() {
    let router = Router::new().route(Method::GET, "/slow", |_req| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(text(StatusCode::OK, "done"))
    });
    let s = server(router, &[]);
    let listener = bind(s.config()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(s.serve(listener, async {
        let _ = stop_rx.await;
    }));
    let client = hyper::Client::new();
    let request = tokio::spawn(client.get(format!("http://{addr}/slow").parse().expect("uri")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop_tx.send(());
    let res = request.await.expect("join").expect("the in-flight request completes");
    assert_eq!(res.status(), StatusCode::OK);
    serving.await.expect("join").expect("serve");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn a_dependency_failure_answers_a_fixed_message_without_the_internal_text() {
    use crate::dapr::{DaprError, DaprOp};
    let router = Router::new()
        .route(Method::GET, "/status", |_req: Req| async move {
            let op = DaprOp::Invoke { app_id: "events-service".into(), method: "create_event".into() };
            let said = "ERR_DIRECT_INVOKE: http://127.0.0.1:3507/v1.0/invoke: dial tcp 10.0.0.9:9007: refused".into();
            Err(DaprError::Status { op, status: StatusCode::INTERNAL_SERVER_ERROR, message: said }.into())
        })
        .route(Method::GET, "/timeout", |_req: Req| async move {
            let op = DaprOp::StateGet { store: "statestore-secret-name".into() };
            Err(DaprError::Timeout { op, timeout: Duration::from_millis(1234) }.into())
        })
        .route(Method::GET, "/internal", |_req: Req| async move {
            Err(crate::ApiError::internal_error("mysql://events:pw_123@db:3306/events: Access denied"))
        });
    let s = server(router, &[]);
    for (path, status, code) in [
        ("/status", 502, "dependency_failed"),
        ("/timeout", 503, "dependency_unavailable"),
        ("/internal", 500, "internal"),
    ] {
        let r = s.handle(Request::get(path).body(Body::empty()).expect("req"), peer()).await;
        assert_eq!(r.status().as_u16(), status, "{path}");
        let body = body_json(r).await;
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        let text = body.to_string();
        for internal in
            ["127.0.0.1", "3507", "10.0.0.9", "ERR_", "statestore-secret-name", "1234", "pw_123", "mysql", "dapr"]
        {
            assert!(!text.contains(internal), "{path} leaks {internal:?}: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_work_keeps_its_permit_after_its_request_timed_out() {
    let router = Router::new().route(Method::GET, "/work", |mut req: Req| async move {
        let hold = req.hold();
        crate::rt::cpu(move || {
            std::thread::sleep(Duration::from_millis(400));
            drop(hold);
        })
        .await?;
        Ok(text(StatusCode::OK, "done"))
    });
    let s = server(router, &[("MAX_IN_FLIGHT", "1"), ("REQUEST_TIMEOUT_MS", "50")]);
    let get = || Request::get("/work").body(Body::empty()).expect("req");
    let r = s.handle(get(), peer()).await;
    assert_eq!(body_json(r).await["error"]["code"], "timeout");
    // The work still runs, holding the only permit: the next request is shed.
    let r = s.handle(get(), peer()).await;
    assert_eq!(body_json(r).await["error"]["code"], "overloaded");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.in_flight.available_permits(), 1, "released when the work returned");
}

#[tokio::test]
async fn a_body_still_arriving_holds_a_reader_not_a_permit() {
    let s = server(echo(), &[("MAX_IN_FLIGHT", "1"), ("MAX_BODY_READERS", "1")]);
    let (mut sender, body) = Body::channel();
    let slow = tokio::spawn({
        let s = s.clone();
        async move { s.handle(Request::post("/echo").header(CONTENT_LENGTH, "2").body(body).expect("req"), peer()).await }
    });
    while s.body_readers.available_permits() > 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(s.in_flight.available_permits(), 1, "the slow sender holds no in-flight permit");
    // A request without a body is served meanwhile; one with a body finds
    // no reader free, and is drained and answered 503.
    let r = s.handle(Request::post("/echo").body(Body::empty()).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.handle(Request::post("/echo").body(Body::from("xy")).expect("req"), peer()).await;
    assert_eq!(r.headers().get(CONNECTION), None, "drained, so the connection may stay");
    assert_eq!(body_json(r).await["error"]["code"], "overloaded");
    sender.send_data("ab".into()).await.expect("send");
    drop(sender);
    let r = slow.await.expect("join");
    assert_eq!(hyper::body::to_bytes(r.into_body()).await.expect("body").as_ref(), b"ab");
}

#[tokio::test]
async fn bodies_reserve_the_memory_budget() {
    let s = server(echo(), &[("DECODE_MEMORY_BYTES", "4096"), ("DECODE_MEMORY_WAIT_MS", "20")]);
    let r = s.handle(Request::post("/echo").body(Body::from(vec![7u8; 5000])).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body_json(r).await["error"]["code"], "payload_too_large");
    let memory = s.memory.clone().expect("a budget");
    let held = memory.reserve(3000).await.expect("room");
    let r = s.handle(Request::post("/echo").body(Body::from(vec![7u8; 2000])).expect("req"), peer()).await;
    assert_eq!(r.headers().get(RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
    assert_eq!(body_json(r).await["error"]["code"], "overloaded");
    drop(held);
    let r = s.handle(Request::post("/echo").body(Body::from(vec![7u8; 2000])).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(memory.available(), 4096, "given back with the body");
}

#[tokio::test]
async fn with_an_app_token_every_route_but_probes_needs_it() {
    let router = echo().with_health("svc", vec![]);
    let s = server(router, &[("APP_API_TOKEN", "t0ken")]);
    let post = |token: Option<&str>| {
        let mut req = Request::post("/echo");
        if let Some(token) = token {
            req = req.header("dapr-api-token", token);
        }
        req.body(Body::from("hi")).expect("req")
    };
    for token in [None, Some("wrong"), Some("t0ke")] {
        let r = s.handle(post(token), peer()).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(body_json(r).await["error"]["code"], "unauthorized");
    }
    let r = s.handle(Request::get("/nope").body(Body::empty()).expect("req"), peer()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no route is revealed without the token");
    assert_eq!(s.handle(post(Some("t0ken")), peer()).await.status(), StatusCode::OK);
    for probe in ["/healthz", "/readyz", "/metrics"] {
        let r = s.handle(Request::get(probe).body(Body::empty()).expect("req"), peer()).await;
        assert_eq!(r.status(), StatusCode::OK, "{probe} needs no token");
    }
}
