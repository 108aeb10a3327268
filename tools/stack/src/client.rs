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

/// `workers` clients, each sending its next request once the last one is
/// answered (a closed loop), for as long as `more(n)` holds, `n` counting
/// the requests started by all of them. Worker `w` sends requests
/// `w, w + 1, …` through `send`. Gives the latencies of the 2xx answers and
/// the count of the others: what a benchmark's round measures.
pub async fn closed_loop<More, Send, Sent>(
    workers: usize,
    timeout: Duration,
    more: More,
    send: Send,
) -> (Vec<Duration>, usize)
where
    More: Fn(usize) -> bool + std::marker::Send + Sync + 'static,
    Send: Fn(HttpClient, usize) -> Sent + std::marker::Send + Sync + 'static,
    Sent: std::future::Future<Output = Result<Reply, Error>> + std::marker::Send,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let started_so_far = Arc::new(AtomicUsize::new(0));
    let (more, send) = (Arc::new(more), Arc::new(send));
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (started_so_far, more, send) = (started_so_far.clone(), more.clone(), send.clone());
            tokio::spawn(async move {
                let client = HttpClient::new(timeout);
                let (mut ok, mut failed) = (Vec::new(), 0usize);
                for i in w.. {
                    if !more(started_so_far.fetch_add(1, Ordering::Relaxed)) {
                        break;
                    }
                    let started = std::time::Instant::now();
                    match send(client.clone(), i).await {
                        Ok(r) if r.status.is_success() => ok.push(started.elapsed()),
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut all, mut failed) = (Vec::new(), 0);
    for task in tasks {
        if let Ok((ok, f)) = task.await {
            all.extend(ok);
            failed += f;
        }
    }
    (all, failed)
}
