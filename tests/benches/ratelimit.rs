//! `make bench-ratelimit`: what the rate limiter adds to a request, in one
//! run. Prints figures, asserts nothing.
//!
//! Two grayscale stacks (each: the service beside its daprd, Redis): one
//! with `/grayscale` limited by a policy no client reaches (every request is
//! admitted, so every request pays the full decision: local guard, state
//! read, state write), one with limiting off. The same empty POST
//! /grayscale (the handler answers 400 at once, so the request is nearly
//! all path) goes to each in turn, `BENCH_REQUESTS` times (default 2000),
//! alternating so both see the same machine. Then a flood the local guard
//! sheds (no state call).

#![allow(clippy::expect_used, clippy::panic, reason = "a benchmark that cannot measure stops with the reason")]

use stack::{HttpClient, Method, Service, Stack, StackOptions};
use stack_tests::bench::{self, env_usize, percentile};
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Figures {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Figures {
    fn p(&self, q: f64) -> Duration {
        let mut s = self.samples.clone();
        s.sort();
        percentile(&s, q)
    }
}

async fn timed(client: &HttpClient, url: &str, expect: u16) -> Result<Duration, String> {
    let started = Instant::now();
    let r = client.request(Method::POST, url, &[], Default::default()).await.map_err(|e| e.to_string())?;
    let took = started.elapsed();
    if r.status.as_u16() != expect {
        return Err(format!("{url}: expected {expect}, got {}: {}", r.status, r.text()));
    }
    Ok(took)
}

async fn run() -> Result<(), String> {
    let requests = env_usize("BENCH_REQUESTS", 2000);
    let opts = |policies: &str| StackOptions::test(&[Service::Grayscale]).with_env("RATE_LIMIT_POLICIES", policies);
    eprintln!("starting two grayscale stacks (limited, not limited) …");
    let (limited, off) = tokio::join!(
        // A burst of a million, and a guard that never sheds it.
        Stack::start(opts("/grayscale=1000000/1000000,/=1/0.001")),
        Stack::start(opts("*=off"))
    );
    let (limited, off) = (limited.map_err(|e| e.to_string())?, off.map_err(|e| e.to_string())?);
    let url = |s: &Stack, path: &str| s.service(Service::Grayscale).url(path);
    let client = HttpClient::new(Duration::from_secs(30));

    // Warm up connections, daprd and Redis.
    for _ in 0..100 {
        timed(&client, &url(&limited, "/grayscale"), 400).await?;
        timed(&client, &url(&off, "/grayscale"), 400).await?;
    }
    let mut on = Figures { name: "limited, admitted (guard + state get + save)", samples: Vec::new() };
    let mut base = Figures { name: "limiting off", samples: Vec::new() };
    for _ in 0..requests {
        on.samples.push(timed(&client, &url(&limited, "/grayscale"), 400).await?);
        base.samples.push(timed(&client, &url(&off, "/grayscale"), 400).await?);
    }

    // "/" allows 1 at once then one per 1000 s: after the first request
    // the local guard (burst 1 too) sheds every other one in process.
    let root = url(&limited, "/");
    client.request(Method::GET, &root, &[], Default::default()).await.map_err(|e| e.to_string())?;
    let mut shed = Figures { name: "limited, shed by the local guard (no state call)", samples: Vec::new() };
    for _ in 0..requests {
        let started = Instant::now();
        let r = client.request(Method::GET, &root, &[], Default::default()).await.map_err(|e| e.to_string())?;
        if r.status.as_u16() != 429 {
            return Err(format!("GET / expected 429, got {}", r.status));
        }
        shed.samples.push(started.elapsed());
    }

    println!("\nrate limiter, {requests} sequential requests each, straight to the app (empty POST /grayscale → 400):");
    println!("{:<52} {:>10} {:>10}", "", "p50", "p99");
    for f in [&base, &on, &shed] {
        println!("{:<52} {:>8.3}ms {:>8.3}ms", f.name, f.p(0.5).as_secs_f64() * 1e3, f.p(0.99).as_secs_f64() * 1e3);
    }
    let added = |q: f64| (on.p(q).as_secs_f64() - base.p(q).as_secs_f64()) * 1e3;
    println!(
        "added by the limiter (admitted): p50 {:+.3} ms ({:.2}x), p99 {:+.3} ms ({:.2}x)",
        added(0.5),
        on.p(0.5).as_secs_f64() / base.p(0.5).as_secs_f64(),
        added(0.99),
        on.p(0.99).as_secs_f64() / base.p(0.99).as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    bench::exit("bench-ratelimit", runtime.block_on(run()))
}
