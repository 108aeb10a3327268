//! The load generator against the real stack, at a small rate: what its
//! report counts must be what the services counted in their own
//! `/metrics`, and `--verify` must hold (every acknowledged image request
//! left exactly one event).

use crate::support::{events, start};
use stack::{Service, Stack};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The binary `cargo build` put beside the services (`make test` builds
/// every binary first).
pub(crate) fn loadgen_binary() -> PathBuf {
    let bin = stack::paths::bin_dir().join("loadgen");
    assert!(bin.exists(), "{} is missing: build it with `cargo build -p loadgen`", bin.display());
    bin
}

/// The flags that aim loadgen at this stack's ports.
fn stack_flags(stack: &Stack) -> Vec<String> {
    let mut flags = Vec::new();
    for (service, name) in
        [(Service::Grayscale, "grayscale"), (Service::Classify, "classify"), (Service::Events, "events")]
    {
        let s = stack.service(service);
        flags.push(format!("--{name}-port={}", s.app_port));
        flags.push(format!("--{name}-dapr-port={}", s.sidecar.spec.ports.http));
    }
    flags.push(format!("--images={}", stack::paths::shared_dir().join("images").display()));
    flags.extend(["--json", "--quiet"].map(String::from));
    flags
}

/// Runs loadgen (blocking, off the test's runtime) and parses its JSON report.
async fn loadgen(stack: &Stack, args: &[&str]) -> (Output, serde_json::Value) {
    let mut cmd = Command::new(loadgen_binary());
    cmd.args(stack_flags(stack)).args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.expect("join").expect("run loadgen");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "loadgen printed no JSON report ({e}); status {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, report)
}

/// `route → status → count` from a service's
/// `http_server_request_duration_seconds_count` series.
async fn served(stack: &Stack, service: Service) -> BTreeMap<String, BTreeMap<String, u64>> {
    let r = stack.client.get(&stack.service(service).url("/metrics")).await.expect("GET /metrics");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for line in r.text().lines() {
        let Some(rest) = line.strip_prefix("http_server_request_duration_seconds_count{") else { continue };
        let Some((labels, value)) = rest.split_once("} ") else { continue };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
        };
        let (Some(route), Some(status)) = (label("route"), label("status")) else { continue };
        let value: f64 = value.trim().parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        *out.entry(route).or_default().entry(status).or_default() += value as u64;
    }
    out
}

/// The report's per-target status counts, keyed as the services' routes.
fn reported(report: &serde_json::Value) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for (target, summary) in report["targets"].as_object().expect("targets") {
        let counts: BTreeMap<String, u64> = summary["status"]
            .as_object()
            .expect("status")
            .iter()
            .map(|(s, n)| (s.clone(), n.as_u64().unwrap_or(0)))
            .collect();
        out.insert(format!("/{target}"), counts);
    }
    out
}

/// Asserts that, for each route loadgen aimed at, the service counted
/// exactly the statuses the report counted.
async fn assert_services_saw(stack: &Stack, report: &serde_json::Value) {
    let services = [("/grayscale", Service::Grayscale), ("/classify", Service::Classify), ("/events", Service::Events)];
    for (route, counts) in reported(report) {
        let service = services.iter().find(|(r, _)| *r == route).map(|(_, s)| *s).expect("a known route");
        let seen = served(stack, service).await.remove(&route).unwrap_or_default();
        assert_eq!(seen, counts, "{route}: the service's /metrics against loadgen's report");
    }
}

#[tokio::test]
async fn an_open_loop_mix_is_counted_as_the_services_count_it_and_verifies() {
    let stack = start(&Service::ALL).await;
    let r = stack.client.get(&stack.service(Service::Events).url("/init")).await.expect("init");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());

    let (out, report) =
        loadgen(&stack, &["--rate=8", "--duration=3s", "--mix=grayscale=2,classify=1,events=1", "--verify"]).await;
    assert!(out.status.success(), "exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    // 8/s for 3 s on a fixed timeline: exactly 24, in the mix's proportions.
    assert_eq!(report["sent"], 24, "{report}");
    assert_eq!(report["completed"], 24, "{report}");
    assert_eq!(report["run"]["mode"], "open");
    let requests = |t: &str| report["targets"][t]["requests"].as_u64();
    assert_eq!(
        (requests("grayscale"), requests("classify"), requests("events")),
        (Some(12), Some(6), Some(6)),
        "{report}"
    );
    assert_eq!(report["status"]["200"], 24, "every request answered 200 at this rate: {report}");
    assert!(report["latency_ms"]["p50"].as_f64().is_some_and(|p| p > 0.0), "{report}");
    assert_eq!(report["slowest"].as_array().map(Vec::len), Some(5), "{report}");
    assert_services_saw(&stack, &report).await;

    // The events grew by exactly the 18 acknowledged image requests.
    let verify = &report["verify"];
    assert_eq!(
        (verify["acknowledged"].as_u64(), verify["lost"].as_u64(), verify["extra"].as_u64()),
        (Some(18), Some(0), Some(0)),
        "{verify}"
    );
    assert_eq!(verify["passed"], true, "{verify}");
    assert_eq!(verify["after"].as_u64().map(|a| a - verify["before"].as_u64().unwrap_or(0)), Some(18), "{verify}");
    assert_eq!(events(&stack).await.len(), 18, "the events table itself");

    // Closed loop on the same stack: the service's count grows by exactly
    // the reads loadgen reports.
    let reads_before = served(&stack, Service::Events).await["/events"]["200"];
    let (out, closed) = loadgen(&stack, &["--concurrency=2", "--duration=1s", "--target=events"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(closed["run"]["mode"], "closed");
    let reads = closed["targets"]["events"]["status"]["200"].as_u64().expect("reads answered 200");
    assert!(reads > 0 && closed["sent"] == closed["completed"], "{closed}");
    let seen = served(&stack, Service::Events).await;
    assert_eq!(seen["/events"]["200"] - reads_before, reads, "closed-loop reads: {closed}");
}

#[tokio::test]
async fn through_the_sidecars_with_a_threshold_that_fails() {
    let stack = start(&Service::ALL).await;
    stack.client.get(&stack.service(Service::Events).url("/init")).await.expect("init");

    // No request answers within a microsecond: the run completes, reports,
    // and exits 3 naming the p99 check.
    let (out, report) = loadgen(
        &stack,
        &["--sidecar", "--rate=6", "--duration=2s", "--mix=grayscale=1,events=1", "--p99=1us", "--verify"],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("p99"), "which check failed: {stderr}");
    assert_eq!(report["passed"], false);
    assert_eq!(report["run"]["route"], "sidecar");
    let urls = report["run"]["urls"].to_string();
    assert!(urls.contains("/v1.0/invoke/image-api-grayscale/method/grayscale"), "{urls}");
    assert_eq!(report["sent"], 12);
    assert_eq!(report["status"]["200"], 12, "{report}");
    assert_services_saw(&stack, &report).await;
    assert_eq!(report["verify"]["passed"], true, "the load was fine, only its latency limit was not: {report}");
    assert_eq!(report["verify"]["acknowledged"], 6);
}
