//! The one request path every service shares: route, shed load, limit and
//! time the body, carry the trace context, call the handler with a deadline,
//! turn errors into JSON, log the outcome. Plus the accept loop with graceful
//! shutdown, the same on native and WASI.
//!
//! [`Server::handle`] takes a `hyper::Request` and needs no socket, so routers
//! are testable in-process; [`Server::serve`] puts it on a listener.

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::trace::TraceContext;
use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderValue, ACCEPT, ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, StatusCode, Uri};
use hyper::body::HttpBody;
use hyper::server::conn::Http;
use hyper::service::service_fn;
use hyper::{Body, Request, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::Instrument;

pub type Reply = Response<Body>;

/// Probed and scraped every few seconds: no spans, debug-level logs.
const OPERATIONAL_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];
pub type HandlerResult = Result<Reply, ApiError>;
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Arc<dyn Fn(Req) -> BoxFuture<HandlerResult> + Send + Sync>;

/// A request as handlers see it: the body already read within the limits.
#[derive(Debug)]
pub struct Req {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: SocketAddr,
    /// The matched route template (never the raw path: safe as a label).
    pub route: &'static str,
    pub trace: TraceContext,
}

impl Req {
    /// The first value of query parameter `name`, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        self.uri.query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// A query parameter parsed as `T`; a malformed value is a 400.
    pub fn query_as<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.query(name) {
            None => Ok(None),
            Some(raw) => raw.parse().map(Some).map_err(|_| {
                ApiError::bad_request("invalid_query", format!("query parameter {name}={raw:?} is not valid"))
            }),
        }
    }

    /// The body as JSON of type `T`; anything else is a 400 saying why.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(&self.body)
    }

    /// Whether the `Accept` header names `mime` (exactly, ignoring parameters).
    pub fn accepts(&self, mime: &str) -> bool {
        self.headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|item| item.split(';').next().map(str::trim) == Some(mime))
    }

    /// The client this request is accounted to: the TCP peer.
    pub fn client_ip(&self) -> IpAddr {
        self.peer.ip()
    }
}

/// A request body as JSON of type `T`, as [`Req::json`] reads it: empty is
/// a 400 `empty_body`, anything serde refuses a 400 `invalid_json`. Public
/// so the fuzz target runs exactly this.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("empty_body", "the request body is empty; send JSON"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid JSON for this route: {e}")))
}

/// A JSON answer.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> HandlerResult {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(format!("cannot encode the answer: {e}")))?;
    Ok(with_body(status, "application/json", body))
}

/// A plain-text answer.
pub fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    with_body(status, "text/plain; charset=utf-8", body.into().into_bytes())
}

/// An answer with `content_type`.
pub fn with_body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Reply {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// The JSON error answer for `err`.
pub fn error_reply(err: &ApiError) -> Reply {
    let mut res = with_body(err.status, "application/json", err.body_json().into_bytes());
    if let Some(secs) = err.retry_after {
        res.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

struct Route {
    method: Method,
    path: &'static str,
    handler: Handler,
}

enum Found<'a> {
    Route(&'a Route),
    WrongMethod(String),
    Nothing,
}

/// Exact-path routes: the services have few, fixed paths.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn route<F, Fut>(mut self, method: Method, path: &'static str, handler: F) -> Self
    where
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        self.routes.push(Route { method, path, handler });
        self
    }

    /// The route template `path` matches, or "unmatched".
    fn template(&self, method: &Method, path: &str) -> &'static str {
        match self.find(method, path) {
            Found::Route(route) => route.path,
            _ => "unmatched",
        }
    }

    fn find(&self, method: &Method, path: &str) -> Found<'_> {
        let mut allowed = Vec::new();
        for route in self.routes.iter().filter(|r| r.path == path) {
            if route.method == method || (method == Method::HEAD && route.method == Method::GET) {
                return Found::Route(route);
            }
            allowed.push(route.method.as_str());
        }
        if allowed.is_empty() {
            Found::Nothing
        } else {
            Found::WrongMethod(allowed.join(", "))
        }
    }
}

/// A router with the server's limits applied.
pub struct Server {
    router: Router,
    config: ServerConfig,
    in_flight: Arc<Semaphore>,
    limiter: Option<Arc<crate::ratelimit::RateLimiter>>,
}

impl Server {
    pub fn new(router: Router, config: ServerConfig) -> Arc<Self> {
        Self::with_limiter(router, config, None)
    }

    /// A server that asks `limiter` about each request before reading its body.
    pub fn with_limiter(router: Router, config: ServerConfig, limiter: Option<Arc<crate::ratelimit::RateLimiter>>) -> Arc<Self> {
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
        Arc::new(Self { router, config, in_flight, limiter })
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// One request, start to finish. Never fails: every error is an answer.
    ///
    /// It runs in a server span that continues the caller's trace (daprd's
    /// `traceparent`); the answer carries `traceparent` naming that span, so
    /// a caller can open the trace. Health, readiness and metrics scrapes get
    /// no span: they would bury the real traces.
    pub async fn handle(&self, req: Request<Body>, peer: SocketAddr) -> Reply {
        let span = if OPERATIONAL_PATHS.contains(&req.uri().path()) {
            tracing::Span::none()
        } else {
            // Named by route template, never the raw path (spans group by name).
            let route = self.router.template(req.method(), req.uri().path());
            let span = tracing::info_span!(
                "request",
                otel.name = %format!("{} {route}", req.method()),
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                http.request.method = %req.method(),
                http.route = route,
                url.path = %req.uri().path(),
                http.response.status_code = tracing::field::Empty,
                client.address = %peer.ip(),
            );
            crate::trace::continue_trace(&span, req.headers());
            span
        };
        self.handle_in_span(req, peer, &span).instrument(span.clone()).await
    }

    async fn handle_in_span(&self, req: Request<Body>, peer: SocketAddr, span: &tracing::Span) -> Reply {
        let started = Instant::now();
        let metrics = crate::metrics::enabled().then(crate::metrics::http);
        if let Some(m) = metrics {
            m.in_flight.inc();
        }
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let has_body = !req.body().is_end_stream();
        let (route, result, body_read, rate_limit) = self.dispatch(req, peer, span).await;
        let mut reply = match result {
            Ok(reply) => reply,
            Err(err) => {
                if err.status.is_server_error() {
                    tracing::warn!(%method, route, status = err.status.as_u16(), code = err.code, error = %err.message, "request failed");
                }
                error_reply(&err)
            }
        };
        reply.headers_mut().extend(rate_limit);
        // Refused before its body was read (too large, wrong route, shed):
        // hyper closes the connection after this answer rather than read the
        // rest, so say so. Untold, a keep-alive client sends its next request
        // on a connection being closed and loses it ("connection closed
        // before message completed"); WasmEdge's slower close made that race
        // happen in the tests.
        if has_body && !body_read {
            reply.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let elapsed = started.elapsed();
        let status = reply.status();
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
        if let Some(tp) = crate::trace::TraceContext::of_span(span).and_then(|t| t.traceparent) {
            reply.headers_mut().insert(crate::trace::TRACEPARENT, tp);
        }
        if let Some(m) = metrics {
            m.in_flight.dec();
            m.duration
                .with_label_values(&[crate::metrics::method_label(&method), route, status.as_str()])
                .observe(elapsed.as_secs_f64());
            if let Some(size) = reply.body().size_hint().exact() {
                m.response_size.with_label_values(&[route]).observe(size as f64);
            }
        }
        if span.is_none() {
            tracing::debug!(%method, route, status = status.as_u16(), "request");
            return reply;
        }
        tracing::info!(
            %method,
            route,
            path = %path,
            status = status.as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1e3,
            client = %peer.ip(),
            "request"
        );
        reply
    }

    /// The route, the outcome, whether the request body was read to its end,
    /// and the rate-limit headers the answer carries.
    async fn dispatch(&self, req: Request<Body>, peer: SocketAddr, span: &tracing::Span) -> (&'static str, HandlerResult, bool, HeaderMap) {
        let route = match self.router.find(req.method(), req.uri().path()) {
            Found::Route(route) => route,
            Found::WrongMethod(allowed) => {
                let mut reply = error_reply(&ApiError::method_not_allowed(&allowed));
                if let Ok(v) = HeaderValue::from_str(&allowed) {
                    reply.headers_mut().insert(ALLOW, v);
                }
                return ("unmatched", Ok(reply), false, HeaderMap::new());
            }
            Found::Nothing => {
                let err = ApiError::not_found(format!("no route {} {}", req.method(), req.uri().path()));
                return ("unmatched", Err(err), false, HeaderMap::new());
            }
        };
        // Backpressure: past the limit, answer at once rather than queue.
        // Probes and scrapes are exempt: they are cheap, and a liveness
        // probe refused under load would get a busy pod restarted.
        let _permit = if OPERATIONAL_PATHS.contains(&route.path) {
            None
        } else {
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                // The body is read and dropped (never held), as for a 429
                // below: a socket closed with unread upload makes the kernel
                // send a reset, and the client loses the 503 with it (seen
                // under WasmEdge with 1,000 uploads at once).
                let (parts, body) = req.into_parts();
                let drained = discard_body(body, &parts.headers, &self.config).await;
                return (route.path, Err(ApiError::unavailable("overloaded", "too many requests in flight; retry shortly")), drained, HeaderMap::new());
            };
            Some(permit)
        };
        let (parts, body) = req.into_parts();
        // Decided before the body is read and the handler runs: a refused
        // request costs no body and records nothing.
        let rate_limit = match &self.limiter {
            None => HeaderMap::new(),
            Some(limiter) => match limiter.check(route.path, &parts.headers, peer.ip()).await {
                Ok(headers) => headers,
                Err(refused) => {
                    // Read (and drop) the body before answering, within the
                    // same limits: answering first makes hyper close the
                    // connection under a proxy still sending, and daprd then
                    // reports its own 500 instead of this 429 (seen under
                    // WasmEdge). The handler still never runs.
                    let drained = discard_body(body, &parts.headers, &self.config).await;
                    return (route.path, Ok(refused), drained, HeaderMap::new());
                }
            },
        };
        let body = match read_body(body, &parts.headers, &self.config).await {
            Ok(body) => body,
            Err(err) => return (route.path, Err(err), false, rate_limit),
        };
        if crate::metrics::enabled() {
            crate::metrics::http().request_size.with_label_values(&[route.path]).observe(body.len() as f64);
        }
        let req = Req {
            // What this request's own calls carry: this server span as their
            // parent, or (spans off) the caller's context passed through.
            trace: TraceContext::of_span(span).unwrap_or_else(|| TraceContext::from_headers(&parts.headers)),
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            peer,
            route: route.path,
        };
        let result = match tokio::time::timeout(self.config.request_timeout, (route.handler)(req)).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::unavailable(
                "timeout",
                format!("the request took longer than {} ms", self.config.request_timeout.as_millis()),
            )),
        };
        (route.path, result, true, rate_limit)
    }

    /// Accepts connections until `shutdown` resolves, then stops accepting,
    /// lets in-flight requests finish within the grace period, and returns.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        // Every connection task holds a sender; when all are dropped, all are done.
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let server = self.clone();
                        let stop = stop_rx.clone();
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            server.connection(stream, peer, stop).await;
                            drop(done);
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors or similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        drop(done_tx);
        let grace = self.config.shutdown_grace;
        if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "in-flight requests still running after the grace period");
        }
        Ok(())
    }

    async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream, peer: SocketAddr, mut stop: watch::Receiver<bool>) {
        let server = self.clone();
        let service = service_fn(move |req| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.handle(req, peer).await) }
        });
        let mut http = Http::new();
        http.http1_only(true).http1_header_read_timeout(self.config.header_read_timeout);
        let conn = http.serve_connection(stream, service);
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, client = %peer, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed() => conn.as_mut().graceful_shutdown(),
        }
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, client = %peer, "connection ended with an error during shutdown");
        }
    }
}

/// Reads the body within the size limit and the body deadline. A declared
/// length over the limit is refused before reading anything.
async fn read_body(mut body: Body, headers: &HeaderMap, config: &ServerConfig) -> Result<Bytes, ApiError> {
    let limit = config.max_body_bytes;
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let read = async {
        let mut buf = BytesMut::with_capacity(declared.map_or(0, |n| n as usize));
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request("body_read_failed", format!("the request body could not be read: {e}")))?;
            if buf.len() + chunk.len() > limit {
                return Err(ApiError::payload_too_large(limit));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(config.body_read_timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the request body did not arrive within {} ms", config.body_read_timeout.as_millis()),
        )),
    }
}

/// The body length the request declares (`Content-Length`), if readable.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// Reads a refused request's body to its end, keeping none of it, within
/// the size limit and the body deadline; whether it got to the end.
async fn discard_body(mut body: Body, headers: &HeaderMap, config: &ServerConfig) -> bool {
    let limit = config.max_body_bytes as u64;
    if declared_length(headers).is_some_and(|n| n > limit) {
        return false;
    }
    let read = async {
        let mut seen = 0u64;
        while let Some(chunk) = body.data().await {
            let Ok(chunk) = chunk else { return false };
            seen += chunk.len() as u64;
            if seen > limit {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(config.body_read_timeout, read).await.unwrap_or(false)
}

/// Binds the service's listener; port 0 picks a free one (tests).
pub async fn bind(config: &ServerConfig) -> Result<TcpListener, crate::StartError> {
    let addr = SocketAddr::new(config.host, config.port);
    TcpListener::bind(addr).await.map_err(|source| crate::StartError::Bind { addr, source })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Liveness and readiness: `GET /healthz` answers as long as the process
/// serves; `GET /readyz` runs every probe and answers 503 naming the failing
/// ones. Plus `GET /metrics`, the Prometheus text of everything registered.
pub type Probe = Arc<dyn Fn() -> BoxFuture<Result<(), String>> + Send + Sync>;

pub fn probe<F, Fut>(f: F) -> Probe
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

impl Router {
    pub fn with_health(self, service: &'static str, probes: Vec<(&'static str, Probe)>) -> Self {
        let probes = Arc::new(probes);
        crate::metrics::set_build_info(service);
        self.route(Method::GET, "/metrics", |_req| async {
            let body = crate::metrics::render().map_err(ApiError::internal)?;
            Ok(with_body(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body))
        })
        .route(Method::GET, "/healthz", move |_req| async move {
            json(StatusCode::OK, &serde_json::json!({"status": "ok", "service": service, "runtime": crate::rt::RUNTIME}))
        })
        .route(Method::GET, "/readyz", move |_req| {
            let probes = probes.clone();
            async move {
                let mut checks = serde_json::Map::new();
                let mut failing = Vec::new();
                for (name, probe) in probes.iter() {
                    let outcome = probe().await;
                    checks.insert((*name).to_owned(), serde_json::Value::from(match &outcome {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => e.clone(),
                    }));
                    if let Err(e) = outcome {
                        failing.push(format!("{name}: {e}"));
                    }
                }
                let status = if failing.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                let mut body = serde_json::json!({
                    "status": if failing.is_empty() { "ready" } else { "not_ready" },
                    "service": service,
                    "runtime": crate::rt::RUNTIME,
                    "checks": checks,
                });
                if !failing.is_empty() {
                    body["error"] = serde_json::json!({"code": "not_ready", "message": failing.join("; ")});
                }
                json(status, &body)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
            .handle(Request::post("/echo").body(Body::wrap_stream(futures_util::stream::iter(chunks))).expect("req"), peer())
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
            json(StatusCode::OK, &serde_json::json!({
                "limit": limit, "name": req.query("name"), "json": req.accepts("application/json")
            }))
        });
        let s = server(router, &[]);
        let req = Request::get("/q?limit=5&name=a%20b").header(ACCEPT, "text/html, application/json;q=0.9").body(Body::empty()).expect("req");
        let v = body_json(s.handle(req, peer()).await).await;
        assert_eq!(v, serde_json::json!({"limit": 5, "name": "a b", "json": true}));
        let r = s.handle(Request::get("/q?limit=x").body(Body::empty()).expect("req"), peer()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn readiness_names_the_failing_probe() {
        let router = Router::new().with_health(
            "svc",
            vec![("sidecar", probe(|| async { Ok(()) })), ("database", probe(|| async { Err("refused".to_owned()) }))],
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
        let serving = tokio::spawn(s.serve(listener, async { let _ = stop_rx.await; }));
        let client = hyper::Client::new();
        let request = tokio::spawn(client.get(format!("http://{addr}/slow").parse().expect("uri")));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop_tx.send(());
        let res = request.await.expect("join").expect("the in-flight request completes");
        assert_eq!(res.status(), StatusCode::OK);
        serving.await.expect("join").expect("serve");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed");
    }
}
