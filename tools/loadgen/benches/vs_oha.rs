//! `make bench-loadgen`: loadgen beside oha on the same trivial endpoint in
//! one run — how close each gets to the requested arrival rate, the p50 each
//! measures, and the CPU each burns per request (its own overhead). Figures,
//! no assertions: both tools and the server share this machine's cores.
//!
//! The endpoint is a tiny hyper server inside this process (one thread)
//! that answers every request `200 ok`, so what is measured is the
//! generators, not a service. oha runs open loop with `-q` and
//! `--latency-correction` (latency from the intended send time, as loadgen
//! does); the last row of each pair is closed loop at fixed concurrency.

#![allow(clippy::expect_used, clippy::panic, reason = "a benchmark that cannot measure stops with the reason")]

use hyper::service::{make_service_fn, service_fn};
use hyper::{Body, Response, Server};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The run length of each row (`LOADGEN_BENCH_SECONDS`).
fn seconds() -> u64 {
    std::env::var("LOADGEN_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).filter(|s| *s > 0).unwrap_or(5)
}

/// oha as `make bench-loadgen` installs it (`OHA` overrides).
fn oha() -> PathBuf {
    std::env::var_os("OHA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/oha/bin/oha"))
}

/// The trivial endpoint, on its own single-threaded runtime in a thread
/// (so the generators' runtimes are not shared with it).
fn start_server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("server runtime");
        runtime.block_on(async move {
            let make = make_service_fn(|_conn| async {
                Ok::<_, Infallible>(service_fn(|_req| async { Ok::<_, Infallible>(Response::new(Body::from("ok"))) }))
            });
            let server = Server::bind(&SocketAddr::from(([127, 0, 0, 1], 0))).tcp_nodelay(true).serve(make);
            tx.send(server.local_addr()).expect("hand back the address");
            if let Err(e) = server.await {
                eprintln!("bench server: {e}");
            }
        });
    });
    rx.recv().expect("the server's address")
}

/// CPU seconds (user + system) of this process's waited-for children:
/// `cutime` + `cstime` in /proc/self/stat, in USER_HZ (100 on Linux).
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // cutime and cstime are fields 16 and 17 of the whole line, 14 and 15 here.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(13) + ticks(14)) / 100.0
}

struct Row {
    tool: &'static str,
    load: String,
    requested: Option<f64>,
    requests: f64,
    achieved: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_s: f64,
}

/// Runs `cmd` to its end; its JSON report and the CPU it used.
fn measured(mut cmd: Command) -> (serde_json::Value, f64) {
    let cpu_before = children_cpu();
    let started = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let cpu = children_cpu() - cpu_before;
    if !out.status.success() {
        panic!("{cmd:?} exited {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{cmd:?} printed no JSON ({e}) after {:?}: {}", started.elapsed(), String::from_utf8_lossy(&out.stdout))
    });
    (json, cpu)
}

fn loadgen(addr: SocketAddr, load: &[String], secs: u64) -> (serde_json::Value, f64) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    cmd.args(["--target=events", "--json", "--quiet", "--slowest=0"])
        .arg(format!("--host={}", addr.ip()))
        .arg(format!("--events-port={}", addr.port()))
        .arg(format!("--duration={secs}s"))
        .args(load);
    measured(cmd)
}

fn oha_run(addr: SocketAddr, load: &[String], secs: u64) -> (serde_json::Value, f64) {
    let mut cmd = Command::new(oha());
    cmd.args(["--no-tui", "--output-format", "json", "-z"])
        .arg(format!("{secs}s"))
        .args(load)
        .arg(format!("http://{addr}/events?limit=20"));
    measured(cmd)
}

fn main() {
    let oha_bin = oha();
    if !oha_bin.exists() {
        eprintln!(
            "{} is missing: `make bench-loadgen` installs it (cargo install oha --locked --root .cache/oha)",
            oha_bin.display()
        );
        std::process::exit(1);
    }
    let addr = start_server();
    let secs = seconds();
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let mut rows = Vec::new();
    // Open loop at three rates, then closed loop flat out.
    let loads: [(Option<u32>, usize); 4] = [(Some(200), 64), (Some(1000), 64), (Some(4000), 64), (None, 16)];
    for (rate, conns) in loads {
        let label = match rate {
            Some(r) => format!("{r}/s"),
            None => format!("{conns} closed"),
        };
        let (lg_load, oha_load): (Vec<String>, Vec<String>) = match rate {
            Some(r) => (
                vec![format!("--rate={r}")],
                vec!["-q".into(), r.to_string(), "--latency-correction".into(), "-c".into(), conns.to_string()],
            ),
            None => (vec![format!("--concurrency={conns}")], vec!["-c".into(), conns.to_string()]),
        };
        let (lg, cpu) = loadgen(addr, &lg_load, secs);
        rows.push(Row {
            tool: "loadgen",
            load: label.clone(),
            requested: rate.map(f64::from),
            requests: f(&lg["completed"]),
            achieved: f(&lg["throughput_rps"]),
            p50_ms: f(&lg["latency_ms"]["p50"]),
            p99_ms: f(&lg["latency_ms"]["p99"]),
            cpu_s: cpu,
        });
        let (oh, cpu) = oha_run(addr, &oha_load, secs);
        let summary = &oh["summary"];
        rows.push(Row {
            tool: "oha",
            load: label,
            requested: rate.map(f64::from),
            requests: oh["statusCodeDistribution"]
                .as_object()
                .map(|m| m.values().filter_map(|v| v.as_f64()).sum())
                .unwrap_or(f64::NAN),
            achieved: f(&summary["requestsPerSec"]),
            p50_ms: f(&oh["latencyPercentiles"]["p50"]) * 1000.0,
            p99_ms: f(&oh["latencyPercentiles"]["p99"]) * 1000.0,
            cpu_s: cpu,
        });
    }

    println!("loadgen vs oha, {secs} s per row, GET on a trivial in-process endpoint ({addr})");
    println!(
        "{:<8} {:<10} {:>9} {:>10} {:>9} {:>9} {:>9} {:>13}",
        "tool", "load", "requests", "req/s", "of asked", "p50 ms", "p99 ms", "CPU µs / req"
    );
    for r in &rows {
        let of_asked = r.requested.map(|q| format!("{:.1}%", r.achieved / q * 100.0)).unwrap_or_else(|| "-".into());
        let cpu_per = if r.requests > 0.0 { r.cpu_s / r.requests * 1e6 } else { f64::NAN };
        println!(
            "{:<8} {:<10} {:>9.0} {:>10.1} {:>9} {:>9.3} {:>9.3} {:>13.1}",
            r.tool, r.load, r.requests, r.achieved, of_asked, r.p50_ms, r.p99_ms, cpu_per
        );
    }
    println!(
        "(of asked: achieved over requested rate; CPU: user+system of the generator process; closed rows are flat out)"
    );
    // Give a stray connection time to close before the server thread dies with the process.
    std::thread::sleep(Duration::from_millis(50));
}
