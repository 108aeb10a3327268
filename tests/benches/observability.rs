//! `make bench-observability`: the observability tax. Three whole stacks in
//! one run, the same request mix against each:
//! - "off": TRACING=false and METRICS=false in the services, daprd sampling 0;
//! - "daprd": daprd's tracing on (sampling "1" from components/config.yaml,
//!   spans to a real Zipkin), the services still without spans or metrics;
//! - "on": spans from every service and sidecar exported to a real Zipkin,
//!   metrics recorded and scraped every 5 s by a real Prometheus.
//!
//! "daprd" against "off" is daprd's share; "on" against "daprd" is the apps'
//! own (their spans, span export, metrics; the access log is in all three).
//!
//! The mix (through each service's sidecar, as production callers do):
//! grayscale and classify of the shared photos, and event reads. Closed loop,
//! `BENCH_CONCURRENCY` workers (default 2: the machine's cores), in
//! alternating rounds of `BENCH_ROUND_SECS` (default 5) per stack,
//! `BENCH_ROUNDS` each (default 4), so drift in the machine's load hits all
//! alike. Prints p50, p99 and throughput for each and the ratios beside the
//! targets (total: p50 within 5 %, throughput within 10 %; the apps' share:
//! p50 within 3 %, throughput within 5 %), printed, not asserted.
//!
//! Beside them, where the CPU went: each process's CPU time (utime + stime)
//! over the rounds, per 2xx request: the three services, their three
//! sidecars, the Zipkin server (shared, so counted in the rounds of the
//! stack that ran), and Prometheus. On this 2-core machine the closed loop
//! keeps the CPU busy, so CPU per request is what throughput pays, and it is
//! far less noisy than the latencies on a shared machine.

#![allow(clippy::expect_used, clippy::panic, reason = "a benchmark that cannot measure stops with the reason")]

use stack::{HttpClient, Service, Stack, StackOptions};
use stack_tests::bench::{self, env_usize, round, Request};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn mix(stack: &Stack) -> Result<Vec<Request>, String> {
    let images = stack::paths::shared_dir().join("images");
    let mut out = Vec::new();
    for photo in ["hot_dog.jpg", "cat_720p.jpg", "grace_hopper.jpg"] {
        let bytes = std::fs::read(images.join(photo)).map_err(|e| format!("{photo}: {e}"))?;
        out.push((stack.service(Service::Grayscale).invoke_url("grayscale"), Some(bytes.clone())));
        out.push((stack.service(Service::Classify).invoke_url("classify"), Some(bytes)));
        out.push((stack.service(Service::Events).invoke_url("events?limit=20"), None));
    }
    Ok(out)
}

/// A stack's figures and the CPU its processes used meanwhile.
struct Figures {
    run: bench::Figures,
    cpu: Cpu,
}

impl std::ops::Deref for Figures {
    type Target = bench::Figures;
    fn deref(&self) -> &bench::Figures {
        &self.run
    }
}

/// CPU time by kind of process, summed over a stack's rounds.
#[derive(Default, Clone, Copy)]
struct Cpu {
    services: Duration,
    sidecars: Duration,
    zipkin: Duration,
    prometheus: Duration,
}

impl Cpu {
    /// The CPU each kind of `stack`'s processes has used so far.
    fn of(stack: &Stack) -> Cpu {
        let sum = |pids: Vec<Option<u32>>| pids.into_iter().flatten().map(stack::process::cpu_time).sum();
        Cpu {
            services: sum(stack.services.iter().map(|s| s.pid()).collect()),
            sidecars: sum(stack.services.iter().map(|s| s.sidecar.pid()).collect()),
            zipkin: sum(vec![stack.zipkin.as_ref().and_then(|z| z.pid())]),
            prometheus: sum(vec![stack.prometheus.as_ref().and_then(|p| p.pid())]),
        }
    }

    fn add_delta(&mut self, before: Cpu, after: Cpu) {
        self.services += after.services.saturating_sub(before.services);
        self.sidecars += after.sidecars.saturating_sub(before.sidecars);
        self.zipkin += after.zipkin.saturating_sub(before.zipkin);
        self.prometheus += after.prometheus.saturating_sub(before.prometheus);
    }
}

impl Figures {
    /// µs of CPU per 2xx request.
    fn per_request(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e6 / (self.latencies.len() as f64).max(1.0)
    }
}

async fn start(opts: StackOptions) -> Result<Stack, String> {
    let stack = Stack::start(opts).await.map_err(|e| e.to_string())?;
    let r = stack.client.get(&stack.service(Service::Events).url("/init")).await.map_err(|e| e.to_string())?;
    if !r.status.is_success() {
        return Err(format!("/init: {}", r.text()));
    }
    Ok(stack)
}

async fn run() -> Result<(), String> {
    let workers = env_usize("BENCH_CONCURRENCY", 2);
    let secs = env_usize("BENCH_ROUND_SECS", 5) as u64;
    let rounds = env_usize("BENCH_ROUNDS", 4);
    // Limiting off in both: one client here would be refused most of the mix.
    let off = start(
        StackOptions::test(&Service::ALL)
            .with_env("TRACING", "false")
            .with_env("METRICS", "false")
            .with_env("RATE_LIMIT_POLICIES", ""),
    )
    .await?;
    let daprd =
        start(StackOptions::test(&Service::ALL).with_only_daprd_tracing().with_env("RATE_LIMIT_POLICIES", "")).await?;
    let on =
        start(StackOptions::test(&Service::ALL).with_tracing().with_prometheus().with_env("RATE_LIMIT_POLICIES", ""))
            .await?;
    let mixes = [mix(&off)?, mix(&daprd)?, mix(&on)?];
    // Warm-up: connection pools, the model's first run, the page cache.
    for m in &mixes {
        round(m, workers, 2).await;
    }
    let stacks = [&off, &daprd, &on];
    let mut figures: Vec<Figures> =
        (0..3).map(|_| Figures { run: bench::Figures::default(), cpu: Cpu::default() }).collect();
    for r in 0..rounds {
        // Each round in a different order, so no stack always follows the same one.
        for k in 0..mixes.len() {
            let i = (k + r) % mixes.len();
            let started = Instant::now();
            let cpu_before = Cpu::of(stacks[i]);
            let outcome = round(&mixes[i], workers, secs).await;
            figures[i].cpu.add_delta(cpu_before, Cpu::of(stacks[i]));
            figures[i].run.add(started, outcome);
        }
    }
    let (off_f, daprd_f, on_f) = (&figures[0], &figures[1], &figures[2]);
    println!("\nobservability tax: {rounds} alternating rounds of {secs} s per stack, {workers} workers, mix = grayscale + classify of 3 photos + event reads, through the sidecars\n");
    println!("{:<6} {:>9} {:>9} {:>9} {:>12} {:>8}", "", "requests", "p50", "p99", "throughput", "failed");
    for (name, f) in [("off", off_f), ("daprd", daprd_f), ("on", on_f)] {
        println!(
            "{name:<6} {:>9} {:>7.1}ms {:>7.1}ms {:>8.1} r/s {:>8}",
            f.latencies.len(),
            f.percentile(0.5).as_secs_f64() * 1e3,
            f.percentile(0.99).as_secs_f64() * 1e3,
            f.throughput(),
            f.failed
        );
    }
    let ratio = |a: &Figures, b: &Figures| {
        let p50 = a.percentile(0.5).as_secs_f64() / b.percentile(0.5).as_secs_f64().max(1e-9);
        let p99 = a.percentile(0.99).as_secs_f64() / b.percentile(0.99).as_secs_f64().max(1e-9);
        (p50, p99, a.throughput() / b.throughput().max(1e-9))
    };
    let (p50, p99, tput) = ratio(daprd_f, off_f);
    println!("\ndaprd's tracing (daprd/off): p50 {p50:.3}x, p99 {p99:.3}x, throughput {tput:.3}x (sampling rate as configured, not lowered)");
    let (p50, p99, tput) = ratio(on_f, daprd_f);
    println!("the apps' own (on/daprd):    p50 {p50:.3}x (target <= 1.03), p99 {p99:.3}x, throughput {tput:.3}x (target >= 0.95)");
    let (p50, p99, tput) = ratio(on_f, off_f);
    println!("total (on/off):              p50 {p50:.3}x (target <= 1.05), p99 {p99:.3}x, throughput {tput:.3}x (target >= 0.90)");
    println!("\nCPU per 2xx request (µs; utime + stime of each process over its stack's rounds)");
    println!("{:<6} {:>9} {:>9} {:>9} {:>11} {:>9}", "", "services", "sidecars", "zipkin", "prometheus", "all");
    let all = |f: &Figures| f.per_request(f.cpu.services + f.cpu.sidecars + f.cpu.zipkin + f.cpu.prometheus);
    for (name, f) in [("off", off_f), ("daprd", daprd_f), ("on", on_f)] {
        println!(
            "{name:<6} {:>9.0} {:>9.0} {:>9.0} {:>11.0} {:>9.0}",
            f.per_request(f.cpu.services),
            f.per_request(f.cpu.sidecars),
            f.per_request(f.cpu.zipkin),
            f.per_request(f.cpu.prometheus),
            all(f)
        );
    }
    let apps = on_f.per_request(on_f.cpu.services) - daprd_f.per_request(daprd_f.cpu.services);
    let collectors = (on_f.per_request(on_f.cpu.zipkin) - daprd_f.per_request(daprd_f.cpu.zipkin))
        + on_f.per_request(on_f.cpu.prometheus);
    let daprd_share = all(daprd_f) - all(off_f);
    println!(
        "the apps' own telemetry in the services: {apps:+.0} µs a request ({:+.1} % of all CPU with everything off); \
         Zipkin and Prometheus taking the apps' spans and metrics: {collectors:+.0} µs ({:+.1} %); \
         daprd's tracing (daprd/off, all processes): {daprd_share:+.0} µs ({:+.1} %)",
        100.0 * apps / all(off_f),
        100.0 * collectors / all(off_f),
        100.0 * daprd_share / all(off_f)
    );
    let client = HttpClient::new(Duration::from_secs(5));
    if let Some(prom) = &on.prometheus {
        let spans = prom.query(&client, "sum(trace_spans_total)").await.map_err(|e| e.to_string())?;
        println!(
            "spans the services exported during the run (Prometheus): {}",
            spans.first().map(|s| s["value"][1].to_string()).unwrap_or_default()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    bench::exit("bench-observability", run().await)
}
