//! What the benchmarks (`tests/benches/`) share: their settings from the
//! environment, order statistics, and how a bench ends.

use stack::HttpClient;
use std::fmt::Display;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// One request of a bench's mix: a URL, and a body to POST (`None`: GET).
pub type Request = (String, Option<Vec<u8>>);

/// The mix `requests` in turn, closed loop, by `workers` for `secs`: the
/// latencies of the 2xx answers, and the count of the others.
pub async fn round(requests: &[Request], workers: usize, secs: u64) -> (Vec<Duration>, usize) {
    let until = Instant::now() + Duration::from_secs(secs);
    let requests = requests.to_vec();
    stack::client::closed_loop(
        workers,
        Duration::from_secs(30),
        move |_| Instant::now() < until,
        move |client: HttpClient, i| {
            let (url, body) = requests[i % requests.len()].clone();
            async move {
                match body {
                    Some(b) => client.post(&url, b).await,
                    None => client.get(&url).await,
                }
            }
        },
    )
    .await
}

/// What a stack's rounds measured: the 2xx latencies, the other answers,
/// and the time the rounds took.
#[derive(Debug, Default)]
pub struct Figures {
    pub latencies: Vec<Duration>,
    pub failed: usize,
    pub elapsed: Duration,
}

impl Figures {
    /// Adds one [`round`] that started at `started`.
    pub fn add(&mut self, started: Instant, (latencies, failed): (Vec<Duration>, usize)) {
        self.elapsed += started.elapsed();
        self.latencies.extend(latencies);
        self.failed += failed;
    }

    pub fn percentile(&self, p: f64) -> Duration {
        let mut s = self.latencies.clone();
        s.sort();
        percentile(&s, p)
    }

    /// 2xx answers a second.
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A positive count from the environment (`BENCH_REQUESTS=500`), or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
}

/// The `p` quantile (0 to 1) of samples already sorted, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// The median of unsorted samples.
pub fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s.get(s.len() / 2).copied().unwrap_or_default()
}

/// A bench's exit: figures were printed, or it says why it could not.
pub fn exit<E: Display>(bench: &str, outcome: Result<(), E>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{bench}: {e}");
            ExitCode::FAILURE
        }
    }
}
