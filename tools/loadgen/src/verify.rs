//! `--verify`: the events count before the run and after it has settled,
//! judged against what the run saw acknowledged (see
//! [`Verification::judge`]). Assumes nothing else records events meanwhile.

use crate::error::Error;
use crate::stats::{Stats, Verification};
use hyper::client::HttpConnector;
use hyper::{Body, Client};
use std::time::Duration;
use tokio::time::Instant;

/// The count must hold still this long before it is taken as final: an
/// event recorded twice (a retried invoke) may land after the answer.
const QUIET: Duration = Duration::from_millis(500);
const POLL: Duration = Duration::from_millis(100);
const COUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /events/count` → `{"count": n}`.
pub async fn count(client: &Client<HttpConnector, Body>, url: &str) -> Result<u64, Error> {
    let fail = |message: String| Error::Count { url: url.to_owned(), message };
    let uri: hyper::Uri = url.parse().map_err(|e| fail(format!("bad URL: {e}")))?;
    let exchange = async {
        let answer = client.get(uri).await?;
        let status = answer.status();
        let body = hyper::body::to_bytes(answer.into_body()).await?;
        Ok::<_, hyper::Error>((status, body))
    };
    let (status, body) = match tokio::time::timeout(COUNT_TIMEOUT, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return Err(fail(e.to_string())),
        Err(_) => return Err(fail(format!("no answer within {} s", COUNT_TIMEOUT.as_secs()))),
    };
    if !status.is_success() {
        return Err(fail(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).chars().take(300).collect::<String>()
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON: {e}")))?;
    value["count"].as_u64().ok_or_else(|| fail(format!("no \"count\" in {value}")))
}

/// Polls the count until it reaches what was acknowledged and holds still,
/// or `wait` runs out; then judges it.
pub async fn settle(
    client: &Client<HttpConnector, Body>,
    url: &str,
    before: u64,
    stats: &Stats,
    wait: Duration,
) -> Result<Verification, Error> {
    let expected = before + stats.image_acked();
    let deadline = Instant::now() + wait;
    let mut last = count(client, url).await?;
    let mut last_change = Instant::now();
    let settled = loop {
        let now = Instant::now();
        if last >= expected && now.duration_since(last_change) >= QUIET.min(wait) {
            break true;
        }
        if now >= deadline {
            break false;
        }
        tokio::time::sleep(POLL).await;
        let current = count(client, url).await?;
        if current != last {
            last = current;
            last_change = Instant::now();
        }
    };
    Ok(Verification::judge(before, last, stats.image_acked(), stats.image_unknown(), settled))
}
