//! `make bench-runtimes`: the services natively against the same source as
//! WebAssembly under WasmEdge, in one run. Prints figures, asserts nothing.
//!
//! Starts two whole stacks (grayscale, classify, events, each beside its
//! daprd; Redis; MariaDB): one native, one under WasmEdge with the
//! AOT-compiled `.so` modules. Then, one runtime at a time so they do not
//! compete for the CPU:
//! - start-up to ready: each service killed and spawned again, timed from the
//!   spawn to its first `/healthz` 200 (median of `BENCH_STARTS`, default 3);
//! - resident memory (VmRSS of the service process) once idle;
//! - `BENCH_REQUESTS` (default 100) requests to grayscale and to classify,
//!   straight to the app port, rotating through the shared photos; the first
//!   request of each photo warms up and is not timed; the median per photo;
//! - resident memory again, after those requests.
//!
//! Then the WasmEdge interpreter (the plain `.wasm`, `--force-interpreter`)
//! for one photo, and the size of every module.
//!
//! Each image request also records its event through Dapr (events-service,
//! MariaDB) and saves the client's last request in Redis, as in production:
//! that part costs the same on both runtimes but for the service's own share.

#![allow(clippy::expect_used, clippy::panic, reason = "a benchmark that cannot measure stops with the reason")]

use stack::process::{pid_alive, Proc};
use stack::service::{native_binary, wasmedge_interpreter_command, wasmedge_modules};
use stack::{HttpClient, Method, Mode, Runtime, Service, Stack, StackOptions};
use stack_tests::bench::{self, env_usize, median};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const PHOTOS: [&str; 3] = ["hot_dog.jpg", "cat_720p.jpg", "grace_hopper.jpg"];
const INTERPRETER_PHOTO: &str = "hot_dog.jpg";
/// The targets.
const MAX_RATIO: f64 = 1.5;
const MAX_WASM_BYTES: u64 = 5_000_000;
const READY_TIMEOUT: Duration = Duration::from_secs(300);

type Failure = Box<dyn std::error::Error>;

#[derive(Default)]
struct Figures {
    /// (service, photo) → request times.
    requests: BTreeMap<(Service, &'static str), Vec<Duration>>,
    /// service → start-up times.
    starts: BTreeMap<Service, Vec<Duration>>,
    /// service → (VmRSS, RssAnon) in KiB, idle and after the requests.
    rss_idle: BTreeMap<Service, (u64, u64)>,
    rss_after: BTreeMap<Service, (u64, u64)>,
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// (VmRSS, RssAnon) of `pid` in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let m = stack::process::memory(pid);
    (m.rss_kib, m.anon_kib)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn photo(name: &str) -> Result<Vec<u8>, Failure> {
    let path = stack::paths::shared_dir().join("images").join(name);
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// One image request straight to the app; its time, or why it failed.
async fn request(client: &HttpClient, url: &str, body: &[u8]) -> Result<Duration, Failure> {
    let started = Instant::now();
    let reply = client.request(Method::POST, url, &[], body.to_vec().into()).await?;
    let took = started.elapsed();
    if !reply.status.is_success() {
        return Err(format!("POST {url}: {} {}", reply.status, reply.text()).into());
    }
    Ok(took)
}

/// Polls `url` until it answers 200; the time since `spawned`.
async fn ready(url: &str, pid: Option<u32>, spawned: Instant, every: Duration) -> Result<Duration, Failure> {
    let client = HttpClient::new(Duration::from_secs(5));
    loop {
        if let Ok(r) = client.get(url).await {
            if r.status.is_success() {
                return Ok(spawned.elapsed());
            }
        }
        if pid.is_some_and(|p| !pid_alive(p)) {
            return Err(format!("{url}: the service exited while starting").into());
        }
        if spawned.elapsed() > READY_TIMEOUT {
            return Err(format!("{url}: not ready within {} s", READY_TIMEOUT.as_secs()).into());
        }
        tokio::time::sleep(every).await;
    }
}

async fn measure(
    stack: &mut Stack,
    photos: &[(&'static str, Vec<u8>)],
    requests: usize,
    starts: usize,
) -> Result<Figures, Failure> {
    let mut f = Figures::default();
    let name = stack.runtime.name();
    for service in Service::ALL {
        for _ in 0..starts {
            let running = stack.service_mut(service);
            running.respawn()?;
            let spawned = Instant::now();
            let took = ready(&running.url("/healthz"), running.pid(), spawned, Duration::from_millis(2)).await?;
            f.starts.entry(service).or_default().push(took);
        }
        eprintln!("  {name}: {} ready in {}", service.app_id(), ms(median(&f.starts[&service])));
    }
    // The sidecars notice their apps came back before we go on.
    for s in &mut stack.services {
        s.sidecar.wait_healthy(READY_TIMEOUT).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for s in &stack.services {
        f.rss_idle.insert(s.service, rss(s.pid().unwrap_or(0)));
    }
    for service in [Service::Grayscale, Service::Classify] {
        let url = stack.service(service).url(service.route());
        for i in 0..requests {
            let (photo, body) = &photos[i % photos.len()];
            let took = request(&stack.client, &url, body).await?;
            if i >= photos.len() {
                f.requests.entry((service, *photo)).or_default().push(took);
            }
        }
        eprintln!("  {name}: {requests} requests to {} done", service.app_id());
    }
    for s in &stack.services {
        f.rss_after.insert(s.service, rss(s.pid().unwrap_or(0)));
    }
    Ok(f)
}

/// `service` under the interpreter, beside the WasmEdge stack's own (it
/// uses that stack's sidecar to record its events): start-up time, the time
/// of one request on `photo`, VmRSS after it.
async fn interpreter(
    stack: &Stack,
    service: Service,
    photo: &[u8],
) -> Result<(Duration, Duration, (u64, u64)), Failure> {
    let running = stack.service(service);
    let port = stack::free_port();
    let env: Vec<(String, String)> = running
        .env()
        .iter()
        .map(|(k, v)| if k == "APP_PORT" { (k.clone(), port.to_string()) } else { (k.clone(), v.clone()) })
        .collect();
    let log = stack.dir.join("logs").join(format!("{}-interpreter.log", service.app_id()));
    let spawned = Instant::now();
    let proc = Proc::spawn(service.app_id(), wasmedge_interpreter_command(service, &env), &log, Mode::Attached)?;
    let base = format!("http://127.0.0.1:{port}");
    let start = ready(&format!("{base}/healthz"), Some(proc.pid()), spawned, Duration::from_millis(50))
        .await
        .map_err(|e| format!("{e}\n--- log ---\n{}", proc.log_tail(20)))?;
    let client = HttpClient::new(READY_TIMEOUT);
    let took = request(&client, &format!("{base}{}", service.route()), photo).await?;
    let memory = rss(proc.pid());
    drop(proc);
    Ok((start, took, memory))
}

async fn run() -> Result<(), Failure> {
    let requests = env_usize("BENCH_REQUESTS", 100);
    let starts = env_usize("BENCH_STARTS", 3);
    for runtime in Runtime::ALL {
        runtime.check(&Service::ALL)?;
    }
    let photos: Vec<(&'static str, Vec<u8>)> =
        PHOTOS.iter().map(|&n| photo(n).map(|b| (n, b))).collect::<Result<_, _>>()?;

    eprintln!("starting a native and a WasmEdge stack …");
    // Back-to-back requests from one client would hit the rate limits: off.
    let opts =
        |runtime| StackOptions::test(&Service::ALL).with_runtime(runtime).with_env("RATE_LIMIT_POLICIES", "*=off");
    let (native, wasm) = tokio::join!(Stack::start(opts(Runtime::Native)), Stack::start(opts(Runtime::WasmEdge)));
    let (mut native, mut wasm) = (native?, wasm?);
    for stack in [&native, &wasm] {
        let r = stack.client.get(&stack.service(Service::Events).url("/init")).await?;
        if !r.status.is_success() {
            return Err(format!("{} /init: {}", stack.runtime.name(), r.text()).into());
        }
    }
    let n = measure(&mut native, &photos, requests, starts).await?;
    let w = measure(&mut wasm, &photos, requests, starts).await?;
    eprintln!("  the interpreter (slow) …");
    let (_, interp_photo) = photos.iter().find(|(n, _)| *n == INTERPRETER_PHOTO).ok_or("no photo")?;
    let mut interp = BTreeMap::new();
    for service in [Service::Grayscale, Service::Classify] {
        interp.insert(service, interpreter(&wasm, service, interp_photo).await?);
    }

    let version = std::process::Command::new("/usr/sbin/chroot")
        .arg(stack::paths::wasmedge_root())
        .args(["/usr/bin/wasmedge", "--version"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines().next().and_then(|l| l.split("version ").nth(1)).map(|v| format!("WasmEdge {}", v.trim()))
        })
        .unwrap_or_else(|| "WasmEdge".into());
    println!();
    println!("native vs {version} (AOT .so), one run; requests straight to the app port");
    println!(
        "({requests} requests per service and runtime rotating {} photos, the first of each untimed; each request",
        photos.len()
    );
    println!(" also records its event through Dapr, as in production)");

    println!("\nper request, median");
    println!("{:<10} {:<17} {:>10} {:>14} {:>11}", "service", "photo", "native", "WasmEdge AOT", "AOT/native");
    let mut worst: Option<(f64, String)> = None;
    for service in [Service::Grayscale, Service::Classify] {
        for (photo, _) in &photos {
            let (a, b) = (median(&n.requests[&(service, *photo)]), median(&w.requests[&(service, *photo)]));
            let ratio = b.as_secs_f64() / a.as_secs_f64();
            println!("{:<10} {:<17} {:>10} {:>14} {:>10.2}×", service.name(), photo, ms(a), ms(b), ratio);
            if worst.as_ref().is_none_or(|(r, _)| ratio > *r) {
                worst = Some((ratio, format!("{} on {photo}", service.name())));
            }
        }
    }
    if let Some((ratio, what)) = worst {
        let verdict = if ratio <= MAX_RATIO { "met" } else { "NOT met" };
        println!("target AOT ≤ {MAX_RATIO}× native per request: {verdict} (worst {ratio:.2}×, {what})");
    }

    println!("\nWasmEdge interpreter (plain .wasm, --force-interpreter), {INTERPRETER_PHOTO}, one request");
    println!(
        "{:<10} {:>12} {:>11} {:>9} {:>14} {:>12}",
        "service", "request", "×AOT", "×native", "start-up", "VmRSS after"
    );
    for (service, (start, took, memory)) in &interp {
        let aot = median(&w.requests[&(*service, INTERPRETER_PHOTO)]);
        let native = median(&n.requests[&(*service, INTERPRETER_PHOTO)]);
        println!(
            "{:<10} {:>12} {:>10.0}× {:>8.0}× {:>14} {:>12}",
            service.name(),
            ms(*took),
            took.as_secs_f64() / aot.as_secs_f64(),
            took.as_secs_f64() / native.as_secs_f64(),
            ms(*start),
            mib(memory.0)
        );
    }

    println!("\nmodule sizes");
    println!("{:<10} {:>14} {:>10} {:>10}", "service", "native binary", ".wasm", "AOT .so");
    let mut too_big = Vec::new();
    for service in Service::ALL {
        let (wasm_file, so) = wasmedge_modules(service);
        let size = |p: &Path| file_size(p).map(mb).unwrap_or_else(|| "-".into());
        if file_size(&wasm_file).is_some_and(|b| b > MAX_WASM_BYTES) {
            too_big.push(service.name());
        }
        println!(
            "{:<10} {:>14} {:>10} {:>10}",
            service.name(),
            size(&native_binary(service)),
            size(&wasm_file),
            size(&so)
        );
    }
    // classify with only the TFLite plugin backend (no tract): the original
    // template's shape; it cannot run here (no plugin), but its size shows
    // what the 5 MB target costs classify.
    let tflite =
        wasmedge_modules(Service::Classify).0.with_file_name(format!("{}.wasm", stack::service::TFLITE_CLASSIFY));
    println!(
        "{:<10} {:>14} {:>10} {:>10}  (plugin backend only, not runnable here)",
        "classify",
        "-",
        file_size(&tflite).map(mb).unwrap_or_else(|| "-".into()),
        "-"
    );
    if too_big.is_empty() {
        println!("target each .wasm ≤ {}: met", mb(MAX_WASM_BYTES));
    } else {
        println!("target each .wasm ≤ {}: NOT met ({})", mb(MAX_WASM_BYTES), too_big.join(", "));
    }

    println!("\nresident memory of the service process, VmRSS (of which anonymous)");
    println!(
        "{:<10} {:>22} {:>22} {:>22} {:>22}",
        "service", "native idle", "native after", "WasmEdge idle", "WasmEdge after"
    );
    let cell = |(rss, anon): (u64, u64)| format!("{} ({})", mib(rss), mib(anon));
    for service in Service::ALL {
        println!(
            "{:<10} {:>22} {:>22} {:>22} {:>22}",
            service.name(),
            cell(n.rss_idle[&service]),
            cell(n.rss_after[&service]),
            cell(w.rss_idle[&service]),
            cell(w.rss_after[&service])
        );
    }
    println!("(\"after\": grayscale and classify after their {requests} requests; events after recording the {} events they made)", 2 * requests);

    println!("\nstart-up to ready (spawn → first /healthz 200), median of {starts}");
    println!("{:<10} {:>10} {:>14} {:>11}", "service", "native", "WasmEdge AOT", "AOT/native");
    for service in Service::ALL {
        let (a, b) = (median(&n.starts[&service]), median(&w.starts[&service]));
        println!("{:<10} {:>10} {:>14} {:>10.1}×", service.name(), ms(a), ms(b), b.as_secs_f64() / a.as_secs_f64());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    bench::exit("bench-runtimes", run().await)
}
