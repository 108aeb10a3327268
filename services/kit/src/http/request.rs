//! A request as handlers see it: routed, admitted, its body read within the
//! limits, its trace context resolved.

use crate::error::ApiError;
use crate::memory::{MemoryBudget, Reservation};
use crate::trace::TraceContext;
use bytes::Bytes;
use http::header::{HeaderMap, ACCEPT};
use http::{Method, Uri};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedSemaphorePermit;

#[derive(Debug)]
pub struct Req {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: SocketAddr,
    /// The client it is accounted to, resolved once by the pipeline: the
    /// peer, or what a trusted proxy forwarded (`RATE_LIMIT_TRUSTED_PROXIES`).
    /// The limiter, the last-seen entry and the access log all use it.
    pub client: IpAddr,
    /// The matched route template (never the raw path: safe as a label).
    pub route: &'static str,
    pub trace: TraceContext,
    /// What the request holds while it runs: its in-flight permit and its
    /// body's memory. Shared with the pipeline, which keeps them until the
    /// handler ends (a handler may drop its `Req` early); [`Req::hold`]
    /// moves them into work that may outlive both.
    pub(super) held: Arc<Mutex<Hold>>,
    /// The service's memory budget, for work to reserve from.
    pub(super) memory: Option<MemoryBudget>,
}

/// A request's in-flight permit and memory, held by whoever holds this:
/// the request, or the CPU work it handed them to, so that work which
/// outlives its request (a timed-out decode) still counts against
/// `MAX_IN_FLIGHT` and the memory budget until it returns.
#[derive(Debug, Default)]
pub struct Hold {
    #[expect(dead_code, reason = "held for its drop: the permit goes back when the holder ends")]
    pub(super) permit: Option<OwnedSemaphorePermit>,
    pub(super) memory: Reservation,
}

impl Hold {
    /// Adds `memory` to what is held.
    pub fn with(mut self, memory: Reservation) -> Self {
        self.memory.merge(memory);
        self
    }
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

    /// Takes what the request holds (its permit, its body's memory), to move
    /// into work that must keep it until it returns.
    pub fn hold(&mut self) -> Hold {
        self.held.lock().map(|mut held| std::mem::take(&mut *held)).unwrap_or_default()
    }

    /// The service's memory budget (`DECODE_MEMORY_BYTES`), if it has one.
    pub fn memory(&self) -> Option<&MemoryBudget> {
        self.memory.as_ref()
    }

    /// The client this request is accounted to (see [`Req::client`]).
    pub fn client_ip(&self) -> IpAddr {
        self.client
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
