//! One request, start to finish, as named steps:
//! [`Server::handle`] resolves the client ([`Server::resolve_client`]) and
//! opens the server span, then
//! 1. [`Server::dispatch`]: authenticate (`APP_API_TOKEN`), route, rate-limit, receive the body (one of
//!    `MAX_BODY_READERS`, its bytes reserved against the memory budget),
//!    admit (in-flight permit), run the handler with its deadline →
//!    [`Dispatched`]. The permit and the body's memory go to the handler in
//!    [`Req`], which may hand them to its CPU work ([`Req::hold`]);
//! 2. [`answer`]: the outcome as a reply (errors as JSON), with the
//!    rate-limit headers, `Connection: close` if the body was left unread,
//!    and `traceparent`;
//! 3. [`count`] and [`log`]: the RED metrics and the access log line.
//!
//! Never fails: every error is an answer.

use super::body::{discard_body, read_body, BodyRead};
use super::operational::is_operational;
use super::reply::{error_reply, HandlerResult, Reply};
use super::request::{Hold, Req};
use super::router::{Found, Route};
use super::server::Server;
use crate::error::ApiError;
use crate::memory::Reservation;
use crate::ratelimit::Decision;
use crate::trace::{TraceContext, TRACEPARENT};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, ALLOW, CONNECTION};
use http::{Method, StatusCode};
use hyper::body::HttpBody;
use hyper::{Body, Request};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

/// What the pipeline keeps of a request's head once the request is taken apart.
struct Head {
    method: Method,
    path: String,
    /// `/healthz`, `/readyz`, `/metrics`: no span, no permit, debug-level log.
    operational: bool,
    has_body: bool,
    /// Whom the request is accounted to (the limiter's bucket, the
    /// last-seen entry, the span's `client.address`, the access log).
    client: IpAddr,
}

/// Whether a request's body was read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    Read,
    Unread,
}

/// How a request was dispatched.
struct Dispatched {
    /// The route template it counts under ("unmatched" when none).
    route: &'static str,
    result: HandlerResult,
    body: BodyState,
    /// Headers the answer carries whatever the outcome: the rate-limit state.
    headers: HeaderMap,
}

impl Dispatched {
    fn new(route: &'static str, result: HandlerResult, body: BodyState) -> Self {
        Self { route, result, body, headers: HeaderMap::new() }
    }
}

impl Server {
    /// One request, start to finish, in a server span that continues the
    /// caller's trace (daprd's `traceparent`); the answer carries
    /// `traceparent` naming that span, so a caller can open the trace.
    pub async fn handle(&self, req: Request<Body>, peer: SocketAddr) -> Reply {
        let path = req.uri().path();
        let head = Head {
            method: req.method().clone(),
            path: path.to_owned(),
            operational: is_operational(path),
            has_body: !req.body().is_end_stream(),
            client: self.resolve_client(&req, peer),
        };
        let span = self.request_span(&req, &head);
        let started = Instant::now();
        let in_flight = InFlight::start();
        let dispatched = self.dispatch(req, &head, peer, &span).instrument(span.clone()).await;
        let route = dispatched.route;
        let reply = span.in_scope(|| answer(dispatched, &head, &span));
        drop(in_flight);
        let elapsed = started.elapsed();
        count(&head, route, &reply, elapsed);
        span.in_scope(|| log(&head, route, &reply, elapsed, peer));
        reply
    }

    /// The one client identity of the request: the peer, or what a trusted
    /// proxy forwarded. Once, here, whether the limiter is on or not.
    fn resolve_client(&self, req: &Request<Body>, peer: SocketAddr) -> IpAddr {
        self.config.clients.resolve(peer.ip(), req.headers())
    }

    /// Named by route template, never the raw path (spans group by name).
    /// Probes and scrapes get none: they would bury the real traces.
    fn request_span(&self, req: &Request<Body>, head: &Head) -> tracing::Span {
        if head.operational {
            return tracing::Span::none();
        }
        let route = self.router.template(&head.method, &head.path);
        let span = tracing::info_span!(
            "request",
            otel.name = %format!("{} {route}", head.method),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %head.method,
            http.route = route,
            url.path = %head.path,
            http.response.status_code = tracing::field::Empty,
            client.address = %head.client,
        );
        crate::trace::continue_trace(&span, req.headers());
        span
    }

    async fn dispatch(&self, req: Request<Body>, head: &Head, peer: SocketAddr, span: &tracing::Span) -> Dispatched {
        if !self.authenticated(&req, head) {
            let (parts, body) = req.into_parts();
            let err = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this route needs the app API token in the dapr-api-token header",
            );
            let drained = self.drain(body, &parts.headers).await;
            return Dispatched::new(self.router.template(&head.method, &head.path), Err(err), drained);
        }
        let route = match self.router.find(&head.method, &head.path) {
            Found::Route(route) => route,
            Found::WrongMethod(allowed) => {
                return Dispatched::new("unmatched", Ok(wrong_method(&allowed)), BodyState::Unread)
            }
            Found::Nothing => {
                let err = ApiError::not_found(format!("no route {} {}", head.method, head.path));
                return Dispatched::new("unmatched", Err(err), BodyState::Unread);
            }
        };
        let (parts, body) = req.into_parts();
        // Decided before the body is read and the handler runs: a refused
        // request costs no body and records nothing.
        let rate_headers = match self.rate_limit(route, &parts.headers, head.client).await {
            Decision::Allow(headers) => headers,
            Decision::Refuse(err, headers) => return self.refuse(route, body, &parts.headers, err, headers).await,
        };
        let refused =
            |err, body| Dispatched { headers: rate_headers.clone(), ..Dispatched::new(route.path, Err(err), body) };
        // The body before the permit: a slow sender holds one of
        // `MAX_BODY_READERS`, never one of the `MAX_IN_FLIGHT` permits.
        let (body, body_memory) = match self.receive_body(body, &parts.headers, head).await {
            Received::Body(body, memory) => (body, memory),
            Received::Refused(err, state) => return refused(err, state),
        };
        let Ok(permit) = self.admit(head) else {
            let err = ApiError::unavailable("overloaded", "too many requests in flight; retry shortly");
            return refused(err, BodyState::Read);
        };
        if crate::metrics::enabled() {
            crate::metrics::http().request_size.with_label_values(&[route.path]).observe(body.len() as f64);
        }
        // Kept here until the handler ends, unless it hands them to its work.
        let held = Arc::new(Mutex::new(Hold { permit, memory: body_memory }));
        let req = Req {
            // What this request's own calls carry: this server span as their
            // parent, or (spans off) the caller's context passed through.
            trace: TraceContext::of_span(span).unwrap_or_else(|| TraceContext::from_headers(&parts.headers)),
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            peer,
            client: head.client,
            route: route.path,
            held: held.clone(),
            memory: self.memory.clone(),
        };
        let result = self.run_handler(route, req).await;
        drop(held);
        Dispatched { headers: rate_headers, ..Dispatched::new(route.path, result, BodyState::Read) }
    }

    /// With `APP_API_TOKEN` set, whether the request carries it (daprd
    /// sends it as `dapr-api-token`). Probes and scrapes need none.
    fn authenticated(&self, req: &Request<Body>, head: &Head) -> bool {
        match &self.config.app_api_token {
            None => true,
            Some(_) if head.operational => true,
            Some(token) => req.headers().get(APP_TOKEN_HEADER).is_some_and(|offered| token.matches(offered.as_bytes())),
        }
    }

    /// The body, read by one of `MAX_BODY_READERS` with its memory
    /// reserved. Past the readers, or refused, it is drained (read and
    /// dropped, holding nothing) before the answer.
    async fn receive_body(&self, body: Body, headers: &HeaderMap, head: &Head) -> Received {
        if !head.has_body {
            return Received::Body(Bytes::new(), Reservation::default());
        }
        let Ok(reader) = self.body_readers.clone().try_acquire_owned() else {
            let err = ApiError::unavailable("overloaded", "too many request bodies arriving at once; retry shortly");
            return Received::Refused(err, self.drain(body, headers).await);
        };
        match read_body(body, headers, &self.config, self.memory.as_ref()).await {
            BodyRead::Read(body, memory) => Received::Body(body, memory),
            BodyRead::Refused { err, rest } => {
                drop(reader);
                let state = match rest {
                    Some(rest) => self.drain(rest, headers).await,
                    None => BodyState::Unread,
                };
                Received::Refused(err, state)
            }
        }
    }

    /// Reads a refused body to its end within the limits, keeping none of it.
    async fn drain(&self, body: Body, headers: &HeaderMap) -> BodyState {
        if discard_body(body, headers, &self.config).await {
            BodyState::Read
        } else {
            BodyState::Unread
        }
    }

    /// Backpressure: past `MAX_IN_FLIGHT`, answer at once rather than queue.
    /// Probes and scrapes need no permit: they are cheap.
    fn admit(&self, head: &Head) -> Result<Option<OwnedSemaphorePermit>, Shed> {
        if head.operational {
            return Ok(None);
        }
        self.in_flight.clone().try_acquire_owned().map(Some).map_err(|_| Shed)
    }

    async fn rate_limit(&self, route: &Route, headers: &HeaderMap, client: IpAddr) -> Decision {
        match &self.limiter {
            None => Decision::Allow(HeaderMap::new()),
            Some(limiter) => limiter.check(route.path, headers, client).await,
        }
    }

    /// A request refused before its handler: its body is read and dropped
    /// (never held) within the same limits before answering. Answering first
    /// makes hyper close the connection on a client still sending: the
    /// kernel then resets it and the client loses the answer (seen under
    /// WasmEdge with 1,000 uploads at once), or daprd, proxying, reports its
    /// own 500 instead of our 429.
    async fn refuse(
        &self,
        route: &Route,
        body: Body,
        headers: &HeaderMap,
        err: ApiError,
        answer_headers: HeaderMap,
    ) -> Dispatched {
        let drained = self.drain(body, headers).await;
        Dispatched { headers: answer_headers, ..Dispatched::new(route.path, Err(err), drained) }
    }

    async fn run_handler(&self, route: &Route, req: Req) -> HandlerResult {
        let timeout = self.config.request_timeout;
        match tokio::time::timeout(timeout, (route.handler)(req)).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::unavailable(
                "timeout",
                format!("the request took longer than {} ms", timeout.as_millis()),
            )),
        }
    }
}

/// Where daprd puts the app API token on calls to the app.
const APP_TOKEN_HEADER: &str = "dapr-api-token";

/// No in-flight permit was free.
struct Shed;

/// What [`Server::receive_body`] got.
enum Received {
    Body(Bytes, Reservation),
    Refused(ApiError, BodyState),
}

/// 405 with `Allow`.
fn wrong_method(allowed: &str) -> Reply {
    let mut reply = error_reply(&ApiError::method_not_allowed(allowed));
    if let Ok(v) = HeaderValue::from_str(allowed) {
        reply.headers_mut().insert(ALLOW, v);
    }
    reply
}

/// The outcome as the reply that goes out.
fn answer(dispatched: Dispatched, head: &Head, span: &tracing::Span) -> Reply {
    let mut reply = match dispatched.result {
        Ok(reply) => reply,
        Err(err) => {
            // In the request's span: the line carries its trace id, which
            // the answer's `traceparent` gives the client to quote.
            let detail = err.detail.as_deref().unwrap_or_default();
            if err.status.is_server_error() {
                tracing::warn!(method = %head.method, route = dispatched.route, status = err.status.as_u16(), code = err.code, error = %err.message, detail, "request failed");
            } else if err.detail.is_some() {
                tracing::info!(method = %head.method, route = dispatched.route, status = err.status.as_u16(), code = err.code, detail, "request refused");
            }
            error_reply(&err)
        }
    };
    reply.headers_mut().extend(dispatched.headers);
    // Refused before its body was read (too large, wrong route, shed):
    // hyper closes the connection after this answer rather than read the
    // rest, so say so. Untold, a keep-alive client sends its next request
    // on a connection being closed and loses it ("connection closed before
    // message completed"); WasmEdge's slower close made that race happen in
    // the tests.
    if head.has_body && dispatched.body == BodyState::Unread {
        reply.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    let status = reply.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    if let Some(tp) = TraceContext::of_span(span).and_then(|t| t.traceparent) {
        reply.headers_mut().insert(TRACEPARENT, tp);
    }
    reply
}

/// `http_server_request_duration_seconds`, `http_server_requests_total` and the response size.
fn count(head: &Head, route: &'static str, reply: &Reply, elapsed: Duration) {
    if !crate::metrics::enabled() {
        return;
    }
    let m = crate::metrics::http();
    m.duration
        .with_label_values(&[crate::metrics::method_label(&head.method), route, reply.status().as_str()])
        .observe(elapsed.as_secs_f64());
    m.requests.with_label_values(&[route, crate::metrics::status_class(reply.status())]).inc();
    if let Some(size) = reply.body().size_hint().exact() {
        m.response_size.with_label_values(&[route]).observe(size as f64);
    }
}

/// The access log: one line a request, at debug for probes and scrapes.
fn log(head: &Head, route: &'static str, reply: &Reply, elapsed: Duration, peer: SocketAddr) {
    let status = reply.status().as_u16();
    if head.operational {
        tracing::debug!(method = %head.method, route, status, "request");
        return;
    }
    tracing::info!(
        method = %head.method,
        route,
        path = %head.path,
        status,
        duration_ms = elapsed.as_secs_f64() * 1e3,
        client = %head.client,
        peer = %peer.ip(),
        "request"
    );
}

/// `http_server_active_requests`, up while a request is handled; down on
/// drop, so a request whose connection went away mid-way is not left counted.
struct InFlight(bool);

impl InFlight {
    fn start() -> Self {
        let on = crate::metrics::enabled();
        if on {
            crate::metrics::http().in_flight.inc();
        }
        Self(on)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0 {
            crate::metrics::http().in_flight.dec();
        }
    }
}
