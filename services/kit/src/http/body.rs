//! Request bodies, read or discarded within the size limit, the body
//! deadline and the memory budget.

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::memory::{MemoryBudget, Refusal, Reservation};
use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, CONTENT_LENGTH};
use http::StatusCode;
use hyper::body::HttpBody;
use hyper::Body;

/// A body read, or why not.
pub(super) enum BodyRead {
    /// The whole body, and its memory, reserved against the budget.
    Read(Bytes, Reservation),
    /// Refused; `rest` is the body still to drain when the refusal came
    /// before it was read to its end and it can be drained (no memory for
    /// it now), `None` when it cannot (too large, broken, too slow).
    Refused { err: ApiError, rest: Option<Body> },
}

/// Step in which a body of unknown length reserves memory as it grows.
const GROW_STEP: u64 = 256 * 1024;

/// Reads the body within the size limit and the body deadline, its bytes
/// reserved against `memory` before they are held: a declared length at
/// once (before reading anything), a chunked body as it grows. A declared
/// length over the limit is refused before reading anything.
pub(super) async fn read_body(
    mut body: Body,
    headers: &HeaderMap,
    config: &ServerConfig,
    memory: Option<&MemoryBudget>,
) -> BodyRead {
    let limit = config.max_body_bytes;
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit as u64) {
        return BodyRead::Refused { err: ApiError::payload_too_large(limit), rest: None };
    }
    let mut reserved = Reservation::default();
    if let (Some(memory), Some(n)) = (memory, declared) {
        match memory.reserve(n).await {
            Ok(r) => reserved = r,
            Err(refusal) => return BodyRead::Refused { err: memory.body_refusal(refusal, n), rest: Some(body) },
        }
    }
    let read = async {
        let mut buf = BytesMut::with_capacity(declared.map_or(0, |n| n as usize));
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| {
                (ApiError::bad_request("body_read_failed", "the request body could not be read").with_detail(e), false)
            })?;
            let len = (buf.len() + chunk.len()) as u64;
            if len > limit as u64 {
                return Err((ApiError::payload_too_large(limit), false));
            }
            if let Some(memory) = memory {
                if len > reserved.bytes() {
                    let refused = |r| (memory.body_refusal(r, len), true);
                    if len > memory.total() {
                        return Err(refused(Refusal::NeverFits));
                    }
                    // Ahead of need by a step, never past the body limit or the budget.
                    let step = GROW_STEP.min(memory.total() / 8);
                    let room = (limit as u64).min(memory.total()) - reserved.bytes();
                    let more = (len - reserved.bytes()).max(step).min(room);
                    reserved.merge(memory.reserve(more).await.map_err(refused)?);
                }
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    let outcome = tokio::time::timeout(config.body_read_timeout, read).await;
    match outcome {
        Ok(Ok(bytes)) => BodyRead::Read(bytes, reserved),
        Ok(Err((err, drainable))) => BodyRead::Refused { err, rest: drainable.then_some(body) },
        Err(_) => BodyRead::Refused {
            err: ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the request body did not arrive within {} ms", config.body_read_timeout.as_millis()),
            ),
            rest: None,
        },
    }
}

/// Reads a refused request's body to its end, keeping none of it, within
/// the size limit and the body deadline; whether it got to the end.
pub(super) async fn discard_body(mut body: Body, headers: &HeaderMap, config: &ServerConfig) -> bool {
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

/// The body length the request declares (`Content-Length`), if readable.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}
