//! Request bodies, read or discarded within the size limit and the body
//! deadline.

use crate::config::ServerConfig;
use crate::error::ApiError;
use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, CONTENT_LENGTH};
use http::StatusCode;
use hyper::body::HttpBody;
use hyper::Body;

/// Reads the body within the size limit and the body deadline. A declared
/// length over the limit is refused before reading anything.
pub(super) async fn read_body(mut body: Body, headers: &HeaderMap, config: &ServerConfig) -> Result<Bytes, ApiError> {
    let limit = config.max_body_bytes;
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let read = async {
        let mut buf = BytesMut::with_capacity(declared.map_or(0, |n| n as usize));
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request("body_read_failed", format!("the request body could not be read: {e}"))
            })?;
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
