//! A small HTTP client for readiness checks and tests (hyper, no TLS).

use crate::Error;
use bytes::Bytes;
use hyper::client::HttpConnector;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Body, Client, Method, Request, StatusCode};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| serde_json::Value::String(self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpConnector, Body>,
    timeout: Duration,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new(Duration::from_secs(60))
    }
}

impl HttpClient {
    pub fn new(timeout: Duration) -> Self {
        Self { inner: Client::builder().pool_max_idle_per_host(8).build_http(), timeout }
    }

    /// A client whose connections come from `local` (any 127.x.y.z reaches
    /// a server on 127.0.0.1): a second client IP for tests.
    pub fn from_address(local: std::net::IpAddr, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        Self { inner: Client::builder().pool_max_idle_per_host(8).build(connector), timeout }
    }

    pub async fn get(&self, url: &str) -> Result<Reply, Error> {
        self.request(Method::GET, url, &[], Bytes::new()).await
    }

    pub async fn post(&self, url: &str, body: impl Into<Bytes>) -> Result<Reply, Error> {
        self.request(Method::POST, url, &[], body.into()).await
    }

    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, Error> {
        let mut req = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| Error::msg(e.to_string()))?;
            let value = HeaderValue::from_str(value).map_err(|e| Error::msg(e.to_string()))?;
            req = req.header(name, value);
        }
        let req = req.body(Body::from(body)).map_err(|e| Error::msg(e.to_string()))?;
        let fut = async {
            let res = self.inner.request(req).await?;
            let (parts, body) = res.into_parts();
            let body = hyper::body::to_bytes(body).await?;
            Ok::<_, hyper::Error>(Reply { status: parts.status, headers: parts.headers, body })
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(Error::msg(format!("{method} {url}: {e}"))),
            Err(_) => Err(Error::msg(format!("{method} {url}: no answer within {} s", self.timeout.as_secs()))),
        }
    }
}
