//! Building answers: JSON, text, any body, and the JSON error answer every
//! failure becomes.

use crate::error::ApiError;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::StatusCode;
use hyper::{Body, Response};
use serde::Serialize;

pub type Reply = Response<Body>;
pub type HandlerResult = Result<Reply, ApiError>;

/// A JSON answer.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> HandlerResult {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::internal_error(format_args!("cannot encode the answer: {e}")))?;
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

/// The JSON error answer for `err`: `{"error": {"code", "message"}}`, its
/// status, and `Retry-After` when it has one.
pub fn error_reply(err: &ApiError) -> Reply {
    let mut res = with_body(err.status, "application/json", err.body_json().into_bytes());
    if let Some(secs) = err.retry_after {
        res.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}
