//! Typed configuration from the environment, with defaults, validated at
//! start-up: a bad value stops the service with a message naming the
//! variable, never a panic later.
//!
//! Values are read through [`Source`] so tests can hand in a map instead of
//! mutating the process environment.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

/// Where configuration values come from.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct Env;

impl Source for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl Source for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).map(|v| (*v).to_owned())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration {}={:?}: {}", self.name, self.value, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn new(name: &str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { name: name.to_owned(), value: value.into(), reason: reason.into() }
    }
}

/// `name` parsed as `T`, or `default` when unset.
pub fn var<T>(src: &dyn Source, name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    Ok(var_opt(src, name)?.unwrap_or(default))
}

/// `name` parsed as `T`, or `None` when unset.
pub fn var_opt<T>(src: &dyn Source, name: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match src.get(name) {
        None => Ok(None),
        Some(raw) => raw.trim().parse::<T>().map(Some).map_err(|e| ConfigError::new(name, raw, e.to_string())),
    }
}

/// A duration given in milliseconds (`*_MS` variables).
pub fn millis(src: &dyn Source, name: &str, default: Duration) -> Result<Duration, ConfigError> {
    let ms: u64 = var(src, name, u64::try_from(default.as_millis()).unwrap_or(u64::MAX))?;
    Ok(Duration::from_millis(ms))
}

/// A boolean: `true/false/1/0/yes/no/on/off`.
pub fn flag(src: &dyn Source, name: &str, default: bool) -> Result<bool, ConfigError> {
    match src.get(name) {
        None => Ok(default),
        Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::new(name, raw, "expected true or false")),
        },
    }
}

/// A value that must lie in `range`.
pub fn in_range<T>(name: &str, value: T, range: std::ops::RangeInclusive<T>) -> Result<T, ConfigError>
where
    T: PartialOrd + fmt::Display + Copy,
{
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(name, value.to_string(), format!("must be between {} and {}", range.start(), range.end())))
    }
}

/// `name` parsed as `T` (or `default` when unset), which must lie in `range`.
pub fn var_in<T>(src: &dyn Source, name: &str, default: T, range: std::ops::RangeInclusive<T>) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
    T::Err: fmt::Display,
{
    in_range(name, var(src, name, default)?, range)
}

/// How the HTTP server of every service behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Interface to listen on (`APP_HOST`, default 127.0.0.1: the sidecar is local).
    pub host: IpAddr,
    /// `APP_PORT`; 0 binds a free port (tests).
    pub port: u16,
    /// Larger request bodies get 413 (`MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// A client that has not sent its headers by then is dropped (`HEADER_READ_TIMEOUT_MS`).
    pub header_read_timeout: Duration,
    /// The whole body must arrive within this (`BODY_READ_TIMEOUT_MS`), else 408.
    pub body_read_timeout: Duration,
    /// A handler running longer answers 503 (`REQUEST_TIMEOUT_MS`).
    pub request_timeout: Duration,
    /// More requests at once than this answer 503 at once (`MAX_IN_FLIGHT`).
    pub max_in_flight: usize,
    /// On SIGTERM, in-flight requests get this long to finish (`SHUTDOWN_GRACE_MS`).
    pub shutdown_grace: Duration,
    /// Whom a request is accounted to: the peer, or what a trusted proxy
    /// forwarded. Read whether or not rate limiting is on: the last-seen
    /// entry and the access log name the same client as the limiter.
    pub clients: crate::ratelimit::ClientConfig,
    /// Bodies read at once (`MAX_BODY_READERS`): a body is read before the
    /// request takes an in-flight permit, so slow senders hold a reader,
    /// not a permit; past this, bodies are drained and answered 503.
    pub max_body_readers: usize,
    /// Bytes of bodies and decodes held at once (`DECODE_MEMORY_BYTES`;
    /// 0: no budget). Set by the image services from their baseline and the
    /// cgroup limit (`kit::memory`); 0 for the others.
    pub memory_budget: u64,
    /// How long a reservation waits for room (`DECODE_MEMORY_WAIT_MS`).
    pub memory_wait: Duration,
    /// When set (`APP_API_TOKEN`), every route but `/healthz`, `/readyz`
    /// and `/metrics` needs it in `dapr-api-token`, as daprd sends it.
    pub app_api_token: Option<Secret>,
    /// A second listener serving only `/metrics` and `/healthz`
    /// (`METRICS_ADDRESS`, e.g. `0.0.0.0:9100`): the app port stays where
    /// only its sidecar reaches it, Prometheus scrapes this one.
    pub metrics_address: Option<std::net::SocketAddr>,
}

/// A token or password from the configuration: never printed, compared in
/// constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Whether `offered` is this secret, in time that depends only on the
    /// lengths (no early exit on the first differing byte).
    pub fn matches(&self, offered: &[u8]) -> bool {
        let mine = self.0.as_bytes();
        let differ = mine.iter().zip(offered).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        differ == 0 && mine.len() == offered.len()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl ServerConfig {
    /// With no memory budget unless `DECODE_MEMORY_BYTES` sets one.
    pub fn from_source(src: &dyn Source, default_port: u16) -> Result<Self, ConfigError> {
        Self::with_memory_default(src, default_port, 0)
    }

    /// `DECODE_MEMORY_BYTES` defaulting to `memory_budget` (the image
    /// services derive theirs from the cgroup limit).
    pub fn with_memory_default(src: &dyn Source, default_port: u16, memory_budget: u64) -> Result<Self, ConfigError> {
        Ok(Self {
            host: var(src, "APP_HOST", IpAddr::from([127, 0, 0, 1]))?,
            port: var(src, "APP_PORT", default_port)?,
            max_body_bytes: var_in(src, "MAX_BODY_BYTES", 16 * 1024 * 1024usize, 1..=1024 * 1024 * 1024)?,
            header_read_timeout: millis(src, "HEADER_READ_TIMEOUT_MS", Duration::from_secs(10))?,
            body_read_timeout: millis(src, "BODY_READ_TIMEOUT_MS", Duration::from_secs(30))?,
            request_timeout: millis(src, "REQUEST_TIMEOUT_MS", Duration::from_secs(30))?,
            max_in_flight: var_in(src, "MAX_IN_FLIGHT", 64usize, 1..=100_000)?,
            shutdown_grace: millis(src, "SHUTDOWN_GRACE_MS", Duration::from_secs(10))?,
            clients: crate::ratelimit::ClientConfig::from_source(src)?,
            max_body_readers: var_in(src, "MAX_BODY_READERS", 256usize, 1..=100_000)?,
            memory_budget: var(src, "DECODE_MEMORY_BYTES", memory_budget)?,
            memory_wait: millis(src, "DECODE_MEMORY_WAIT_MS", Duration::from_secs(1))?,
            app_api_token: src.get("APP_API_TOKEN").map(|t| Secret::new(t.trim())),
            metrics_address: var_opt(src, "METRICS_ADDRESS")?,
        })
    }
}

/// Where the sidecar is and how to talk to it, named as the official Dapr
/// SDKs name it.
#[derive(Debug, Clone, PartialEq)]
pub struct DaprConfig {
    /// This app's id (`APP_ID`), used in logs and metrics.
    pub app_id: String,
    /// `DAPR_HOST`, default 127.0.0.1.
    pub host: String,
    /// `DAPR_HTTP_PORT`.
    pub http_port: u16,
    /// Sent as `dapr-api-token` when set (`DAPR_API_TOKEN`).
    pub api_token: Option<String>,
    /// Each call to the sidecar gives up after this (`DAPR_CALL_TIMEOUT_MS`).
    pub call_timeout: Duration,
    /// How long start-up waits for the sidecar (`DAPR_WAIT_TIMEOUT_MS`).
    pub wait_timeout: Duration,
    /// The state store component (`STATE_STORE`).
    pub state_store: String,
    /// The secret store component (`SECRET_STORE`).
    pub secret_store: String,
}

impl DaprConfig {
    pub fn from_source(src: &dyn Source, default_app_id: &str, default_http_port: u16) -> Result<Self, ConfigError> {
        Ok(Self {
            app_id: var(src, "APP_ID", default_app_id.to_owned())?,
            host: var(src, "DAPR_HOST", "127.0.0.1".to_owned())?,
            http_port: var(src, "DAPR_HTTP_PORT", default_http_port)?,
            api_token: var_opt(src, "DAPR_API_TOKEN")?,
            call_timeout: millis(src, "DAPR_CALL_TIMEOUT_MS", Duration::from_secs(5))?,
            wait_timeout: millis(src, "DAPR_WAIT_TIMEOUT_MS", Duration::from_secs(60))?,
            state_store: var(src, "STATE_STORE", "statestore".to_owned())?,
            secret_store: var(src, "SECRET_STORE", "local-store".to_owned())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset() {
        let src: HashMap<&str, &str> = HashMap::new();
        let s = ServerConfig::from_source(&src, 9005).expect("config");
        assert_eq!(s.port, 9005);
        let d = DaprConfig::from_source(&src, "image-api-grayscale", 3503).expect("config");
        assert_eq!((d.http_port, d.app_id.as_str()), (3503, "image-api-grayscale"));
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let src = HashMap::from([("APP_PORT", "ninety")]);
        let err = ServerConfig::from_source(&src, 9005).expect_err("must fail");
        assert_eq!(err.name, "APP_PORT");
        assert!(err.to_string().contains("APP_PORT=\"ninety\""), "{err}");
        let src = HashMap::from([("MAX_IN_FLIGHT", "0")]);
        assert!(ServerConfig::from_source(&src, 1).is_err());
    }

    #[test]
    fn a_secret_matches_only_itself_and_never_prints() {
        let token = Secret::new("s3cr3t-token");
        assert!(token.matches(b"s3cr3t-token"));
        assert!(!token.matches(b"s3cr3t-tokem") && !token.matches(b"s3cr3t") && !token.matches(b""));
        assert_eq!(format!("{token:?}"), "Secret(..)");
        let src = HashMap::from([("APP_API_TOKEN", "abc"), ("METRICS_ADDRESS", "0.0.0.0:9100")]);
        let s = ServerConfig::from_source(&src, 9005).expect("config");
        assert!(s.app_api_token.is_some_and(|t| t.matches(b"abc")));
        assert_eq!(s.metrics_address.map(|a| a.port()), Some(9100));
    }

    #[test]
    fn flags_and_millis_parse() {
        let src = HashMap::from([("A", "yes"), ("B", "250"), ("C", "maybe")]);
        assert!(flag(&src, "A", false).expect("flag"));
        assert_eq!(millis(&src, "B", Duration::ZERO).expect("ms"), Duration::from_millis(250));
        assert!(flag(&src, "C", false).is_err());
    }
}
