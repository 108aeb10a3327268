//! One error type for every HTTP answer that is not a success.
//!
//! Handlers return `Result<Response, ApiError>`; the server turns an
//! `ApiError` into `{"error": {"code", "message"}}` with its status. Domain
//! crates keep their own error enums and convert into this one at the edge.
//!
//! What the client reads is fixed per error code: an internal error's own
//! text (a sidecar URL, a driver's message, a dependency's answer) goes in
//! [`ApiError::detail`], which the server logs with the request's trace id
//! and never sends.

use http::StatusCode;
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable: clients branch on this, never on `message`.
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429 and 503 answers.
    pub retry_after: Option<u64>,
    /// What went wrong inside, for the log (with the trace id), never for
    /// the answer.
    pub detail: Option<String>,
}

/// The message of every `internal` answer whose cause is only logged.
pub const INTERNAL_MESSAGE: &str =
    "the service failed on its side; the log has the details under this request's trace id";

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, detail: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn method_not_allowed(allowed: &str) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("this route accepts {allowed}"))
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message).with_retry_after(1)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// A failure on our side whose cause is for the log only: the client
    /// reads a fixed message.
    pub fn internal_error(cause: impl fmt::Display) -> Self {
        Self::internal(INTERNAL_MESSAGE).with_detail(cause)
    }

    pub fn bad_gateway(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, code, message)
    }

    /// Keeps `cause` for the log; the answer's message stays as it is.
    pub fn with_detail(mut self, cause: impl fmt::Display) -> Self {
        self.detail = Some(cause.to_string());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The JSON body: `{"error": {"code": ..., "message": ...}}`.
    pub fn body_json(&self) -> String {
        let body = Body { error: Inner { code: self.code, message: &self.message } };
        // Serialising two strings cannot fail; fall back to a fixed body anyway.
        serde_json::to_string(&body).unwrap_or_else(|_| r#"{"error":{"code":"internal","message":"error"}}"#.to_owned())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_documented_shape() {
        let e = ApiError::bad_request("invalid_json", "expected \"value\"");
        let v: serde_json::Value = serde_json::from_str(&e.body_json()).expect("json");
        assert_eq!(v["error"]["code"], "invalid_json");
        assert_eq!(v["error"]["message"], "expected \"value\"");
    }

    #[test]
    fn the_detail_is_kept_out_of_the_body() {
        let e = ApiError::internal_error("mysql://events:hunter2@10.0.0.5:3306/events: Access denied");
        assert_eq!(e.detail.as_deref(), Some("mysql://events:hunter2@10.0.0.5:3306/events: Access denied"));
        let body = e.body_json();
        assert!(!body.contains("hunter2") && !body.contains("10.0.0.5"), "{body}");
        assert!(body.contains(INTERNAL_MESSAGE), "{body}");
        assert!(!e.to_string().contains("hunter2"), "Display is the answer's, not the detail's");
    }
}
