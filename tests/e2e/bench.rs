//! What the benchmarks (`tests/benches/`) share: their settings from the
//! environment, order statistics, and how a bench ends.

use std::fmt::Display;
use std::process::ExitCode;
use std::time::Duration;

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
