//! Timings of the classify domain, printed, never asserted: per backend
//! (litert, tract) model load, then per shared photo preprocess (decode +
//! resize + normalise), inference, and the two together (end to end), median
//! of several runs; beside them the reference, Python LiteRT (the same 2.1.4,
//! one thread) with Pillow, end to end (decode + resize + invoke) and invoke
//! alone, measured in the same run (reference/litert_reference.py).
//!
//! `make bench` runs it pinned to one core (taskset -c 1), Python included;
//! ITERATIONS=n overrides the count.
//!
//! Then the service itself, before (CLASSIFY_BACKEND=tract, the backend
//! classify had) and after (litert), through the harness: two stacks
//! (classify and events-service, each beside its daprd; Redis, MariaDB),
//! on both cores (the pin is widened for this part: the figure is
//! "at concurrency 2 on this 2-core machine"). Printed for each: classify's
//! VmRSS idle (started, no request yet) and after 100 requests, and
//! requests/s through its sidecar with 2 closed-loop clients, in
//! `BENCH_ROUNDS` (default 3) alternating rounds of `BENCH_ROUND_SECS`
//! (default 5), the median round; the ratios after/before beside them.
//! `BENCH_SERVICE=0` skips this part.

#![allow(clippy::expect_used, clippy::panic, reason = "a benchmark that cannot measure stops with the reason")]

use image_api_classify::{BackendKind, Classifier, ClassifierConfig, ImageLimits};
use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MODELS: [&str; 2] = ["mobilenet_v2_1.0_224_quant.tflite", "mobilenet_v1_0.75_192_quant.tflite"];
const PHOTOS: [&str; 3] = ["hot_dog.jpg", "cat_720p.jpg", "grace_hopper.jpg"];
const LOADS: usize = 3;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared").join(rel)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn time<T>(iterations: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..iterations)
            .map(|_| {
                let started = Instant::now();
                black_box(f());
                started.elapsed()
            })
            .collect(),
    )
}

/// Python LiteRT's (end to end, invoke) per photo, in ms.
fn reference(model: &Path, iterations: usize) -> Result<HashMap<String, (f64, f64)>, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("../../.cache/litert-py/bin/python");
    let out = Command::new(&python)
        .arg(root.join("reference/litert_reference.py"))
        .arg("bench")
        .arg(model)
        .arg(iterations.to_string())
        .args(PHOTOS.map(|p| shared(&format!("images/{p}"))))
        .output()
        .map_err(|e| format!("{}: {e} (run scripts/litert.sh)", python.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut figures = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let photo = v["photo"].as_str().and_then(|p| p.rsplit('/').next()).unwrap_or_default().to_owned();
        figures.insert(
            photo,
            (v["end_to_end_ms"].as_f64().unwrap_or(f64::NAN), v["invoke_ms"].as_f64().unwrap_or(f64::NAN)),
        );
    }
    Ok(figures)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    in_process()?;
    if std::env::var("BENCH_SERVICE").is_ok_and(|v| v == "0") {
        return Ok(());
    }
    widen_to_all_cores();
    tokio::runtime::Runtime::new()?.block_on(service::run())
}

/// `make bench` pins the process to one core; the service part runs on the
/// whole machine, as production would. Children inherit the affinity they
/// are spawned with, so this comes before any stack starts.
fn widen_to_all_cores() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let _ = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &format!("0-{}", cores.saturating_sub(1)), &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status();
}

fn in_process() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: usize = std::env::var("ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let limits = ImageLimits::default();
    println!("classify bench: median of {iterations} runs per figure, one thread, ms\n");
    for model in MODELS {
        let model_path = shared(&format!("models/{model}"));
        let python = reference(&model_path, iterations);
        println!("{model}");
        if let Err(e) = &python {
            println!("  Python LiteRT reference unavailable: {e}");
        }
        println!(
            "  {:<8} {:<17} {:>10} {:>10} {:>10} {:>8}  {:>13} {:>10} {:>7} {:>7}  answer",
            "backend", "photo", "preprocess", "infer", "end2end", "load", "py end2end", "py invoke", "e2e ×", "inf ×"
        );
        for backend in [BackendKind::LiteRt, BackendKind::Tract] {
            let mut config = ClassifierConfig::new(&model_path, shared("models/labels_mobilenet_quant_v1_224.txt"));
            config.backend = backend;
            let mut loads = Vec::new();
            let mut classifier = None;
            for _ in 0..LOADS {
                let c = Classifier::load(&config)?;
                loads.push(c.load_duration());
                classifier = Some(c);
            }
            let classifier = classifier.ok_or("no load")?;
            let load = median(loads);
            // The bench runs on one thread: any more are the engine's own.
            let threads = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim().to_owned())))
                .unwrap_or_default();
            println!("  {}: threads in the process with {LOADS} models loaded: {threads}", backend.name());
            for photo in PHOTOS {
                let bytes = std::fs::read(shared(&format!("images/{photo}")))?;
                let input = classifier.preprocess(&bytes, &limits)?;
                let best = classifier.classify(&bytes, &limits)?.into_iter().next().ok_or("no prediction")?;
                let pre = time(iterations, || classifier.preprocess(&bytes, &limits));
                let inf = time(iterations, || classifier.infer(&input));
                let whole = time(iterations, || classifier.classify(&bytes, &limits));
                let (py_whole, py_invoke) =
                    python.as_ref().ok().and_then(|p| p.get(photo).copied()).unwrap_or((f64::NAN, f64::NAN));
                println!(
                    "  {:<8} {photo:<17} {:>10.2} {:>10.2} {:>10.2} {:>8.1}  {:>13.2} {:>10.2} {:>7.2} {:>7.2}  {}",
                    backend.name(),
                    ms(pre),
                    ms(inf),
                    ms(whole),
                    ms(load),
                    py_whole,
                    py_invoke,
                    ms(whole) / py_whole,
                    ms(inf) / py_invoke,
                    best.sentence()
                );
            }
        }
        println!();
    }
    Ok(())
}

/// classify as a service, tract (before) against litert (after).
mod service {
    use stack::{HttpClient, Service, Stack, StackOptions};
    use std::time::{Duration, Instant};

    type Failure = Box<dyn std::error::Error>;

    const PHOTOS: [&str; 3] = ["hot_dog.jpg", "cat_720p.jpg", "grace_hopper.jpg"];
    const CONCURRENCY: usize = 2;
    const WARM_REQUESTS: usize = 100;

    fn env_usize(name: &str, default: usize) -> usize {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
    }

    struct Backend {
        name: &'static str,
        stack: Stack,
        url: String,
        /// VmRSS (KiB) idle and after the warm requests.
        rss_idle: u64,
        rss_after: u64,
        /// Requests/s of each round, and every round's latencies.
        rounds: Vec<f64>,
        latencies: Vec<Duration>,
        failed: usize,
    }

    fn rss_kib(stack: &Stack) -> u64 {
        stack.service(Service::Classify).pid().map(|p| stack::process::memory(p).rss_kib).unwrap_or(0)
    }

    /// `CONCURRENCY` clients, closed loop: either `count` requests in all or
    /// for `secs`; the 2xx latencies and the count of the others.
    async fn load(url: &str, photos: &[Vec<u8>], count: Option<usize>, secs: u64) -> (Vec<Duration>, usize) {
        let until = Instant::now() + Duration::from_secs(secs);
        let more = move |n: usize| count.map_or(Instant::now() < until, |c| n < c);
        let (url, photos) = (url.to_owned(), photos.to_vec());
        stack::client::closed_loop(CONCURRENCY, Duration::from_secs(60), more, move |client: HttpClient, i| {
            let (url, photo) = (url.clone(), photos[i % photos.len()].clone());
            async move { client.post(&url, photo).await }
        })
        .await
    }

    async fn start(backend: &'static str) -> Result<Stack, Failure> {
        let opts = StackOptions::test(&[Service::Classify, Service::Events])
            .with_env("CLASSIFY_BACKEND", backend)
            // Two clients from one address would be limited: off.
            .with_env("RATE_LIMIT_POLICIES", "*=off");
        let stack = Stack::start(opts).await?;
        let r = stack.client.get(&stack.service(Service::Events).url("/init")).await?;
        if !r.status.is_success() {
            return Err(format!("{backend}: /init: {}", r.text()).into());
        }
        Ok(stack)
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }

    fn mib(kib: u64) -> f64 {
        kib as f64 / 1024.0
    }

    pub async fn run() -> Result<(), Failure> {
        let rounds = env_usize("BENCH_ROUNDS", 3);
        let secs = env_usize("BENCH_ROUND_SECS", 5) as u64;
        let images = stack::paths::shared_dir().join("images");
        let photos: Vec<Vec<u8>> = PHOTOS
            .iter()
            .map(|p| std::fs::read(images.join(p)).map_err(|e| format!("{p}: {e}")))
            .collect::<Result<_, _>>()?;
        check_binaries()?;
        eprintln!("starting classify twice (tract, litert), each beside its daprd …");
        let (tract, litert) = tokio::join!(start("tract"), start("litert"));
        let mut backends = Vec::new();
        for (name, stack) in [("tract", tract?), ("litert", litert?)] {
            let url = stack.service(Service::Classify).invoke_url("classify");
            backends.push(Backend {
                name,
                stack,
                url,
                rss_idle: 0,
                rss_after: 0,
                rounds: Vec::new(),
                latencies: Vec::new(),
                failed: 0,
            });
        }
        // Idle: started and ready, not one request yet.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for b in &mut backends {
            b.rss_idle = rss_kib(&b.stack);
        }
        for b in &mut backends {
            let (_, failed) = load(&b.url, &photos, Some(WARM_REQUESTS), 0).await;
            if failed > 0 {
                return Err(format!("{}: {failed} of the first {WARM_REQUESTS} requests failed", b.name).into());
            }
            b.rss_after = rss_kib(&b.stack);
        }
        for r in 0..rounds {
            // Alternating order, so neither always runs first.
            for k in 0..backends.len() {
                let b = &mut backends[(k + r) % 2];
                let started = Instant::now();
                let (lat, failed) = load(&b.url, &photos, None, secs).await;
                b.rounds.push(lat.len() as f64 / started.elapsed().as_secs_f64());
                b.latencies.extend(lat);
                b.failed += failed;
            }
        }
        let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "classify as a service, through its sidecar, {CONCURRENCY} clients closed loop, {rounds} alternating rounds \
             of {secs} s each (median round), photos {PHOTOS:?}; load average at the end: {}",
            load_avg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
        println!(
            "  {:<22} {:>10} {:>9} {:>8} {:>16} {:>16}",
            "backend", "requests/s", "p50", "failed", "VmRSS idle", "VmRSS after 100"
        );
        for b in &backends {
            let mut lat = b.latencies.clone();
            lat.sort();
            let p50 = lat.get(lat.len() / 2).copied().unwrap_or_default();
            println!(
                "  {:<22} {:>10.1} {:>7.1}ms {:>8} {:>12.1} MiB {:>12.1} MiB",
                if b.name == "tract" { "tract (before)" } else { "litert (after)" },
                median(b.rounds.clone()),
                p50.as_secs_f64() * 1e3,
                b.failed,
                mib(b.rss_idle),
                mib(b.rss_after)
            );
        }
        let (before, after) = (&backends[0], &backends[1]);
        println!(
            "  after/before: requests/s {:.2}x, VmRSS idle {:.2}x, VmRSS after 100 requests {:.2}x",
            median(after.rounds.clone()) / median(before.rounds.clone()),
            mib(after.rss_idle) / mib(before.rss_idle),
            mib(after.rss_after) / mib(before.rss_after)
        );
        println!(
            "  per round, requests/s: tract {:?}, litert {:?}",
            before.rounds.iter().map(|r| (r * 10.0).round() / 10.0).collect::<Vec<_>>(),
            after.rounds.iter().map(|r| (r * 10.0).round() / 10.0).collect::<Vec<_>>()
        );
        Ok(())
    }

    /// The service binaries this part runs, as one clear error.
    fn check_binaries() -> Result<(), Failure> {
        stack::Runtime::Native.check(&[Service::Classify, Service::Events]).map_err(|e| {
            format!("{e} (make bench builds them: cargo build --release -p image-api-classify -p events-service)")
                .into()
        })
    }
}
