//! `make bench-budget`: what the decode memory budget costs ordinary photos
//! (issue 15's row; target: at most 2 %). Two stacks of grayscale and
//! classify in one run: "off" (`DECODE_MEMORY_BYTES=0`: no reservations)
//! and "on" (both services at grayscale's deployed budget, 152 MiB, the
//! stricter of the two compose and Kubernetes set). The shared photos to both services, straight at the
//! apps, closed loop with `BENCH_CONCURRENCY` workers (default 2), in
//! alternating rounds of `BENCH_ROUND_SECS` (5) per stack, `BENCH_ROUNDS`
//! (4) each. Prints requests/s, p50 and p99 and the on/off ratios; not
//! asserted.

#![allow(clippy::expect_used, clippy::panic, reason = "a benchmark that cannot measure stops with the reason")]

use stack::{Service, Stack, StackOptions};
use stack_tests::bench::{self, env_usize, round, Figures, Request};
use std::process::ExitCode;
use std::time::Instant;

/// A stack whose image services have a budget of `bytes` (0: none).
async fn start(bytes: &str) -> Result<Stack, String> {
    // Limiting off: one client would be refused most of the mix.
    let opts = StackOptions::test(&[Service::Grayscale, Service::Classify, Service::Events])
        .with_env("RATE_LIMIT_POLICIES", "")
        .with_env("DECODE_MEMORY_BYTES", bytes);
    Stack::start(opts).await.map_err(|e| e.to_string())
}

fn mix(stack: &Stack) -> Result<Vec<Request>, String> {
    let images = stack::paths::shared_dir().join("images");
    let mut out = Vec::new();
    for photo in ["hot_dog.jpg", "cat_720p.jpg", "grace_hopper.jpg"] {
        let bytes = std::fs::read(images.join(photo)).map_err(|e| format!("{photo}: {e}"))?;
        out.push((stack.service(Service::Grayscale).url("/grayscale"), Some(bytes.clone())));
        out.push((stack.service(Service::Classify).url("/classify"), Some(bytes)));
    }
    Ok(out)
}

async fn run() -> Result<(), String> {
    let workers = env_usize("BENCH_CONCURRENCY", 2);
    let secs = env_usize("BENCH_ROUND_SECS", 5) as u64;
    let rounds = env_usize("BENCH_ROUNDS", 4);
    let off = start("0").await?;
    let on = start("159383552").await?;
    let mixes = [mix(&off)?, mix(&on)?];
    for m in &mixes {
        round(m, workers, 2).await;
    }
    let mut figures = [Figures::default(), Figures::default()];
    for r in 0..rounds {
        for k in 0..2 {
            let i = (k + r) % 2;
            let started = Instant::now();
            figures[i].add(started, round(&mixes[i], workers, secs).await);
        }
    }
    println!("\ndecode memory budget: {rounds} alternating rounds of {secs} s per stack, {workers} workers, grayscale + classify of 3 photos, straight at the apps\n");
    println!("{:<4} {:>9} {:>9} {:>9} {:>12} {:>8}", "", "requests", "p50", "p99", "throughput", "failed");
    for (name, f) in [("off", &figures[0]), ("on", &figures[1])] {
        println!(
            "{name:<4} {:>9} {:>7.1}ms {:>7.1}ms {:>8.1} r/s {:>8}",
            f.latencies.len(),
            f.percentile(0.5).as_secs_f64() * 1e3,
            f.percentile(0.99).as_secs_f64() * 1e3,
            f.throughput(),
            f.failed
        );
    }
    let (off, on) = (&figures[0], &figures[1]);
    println!(
        "\non/off: throughput {:.3}x (target >= 0.98), p99 {:.3}x, p50 {:.3}x",
        on.throughput() / off.throughput().max(1e-9),
        on.percentile(0.99).as_secs_f64() / off.percentile(0.99).as_secs_f64().max(1e-9),
        on.percentile(0.5).as_secs_f64() / off.percentile(0.5).as_secs_f64().max(1e-9),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    bench::exit("bench-budget", run().await)
}
