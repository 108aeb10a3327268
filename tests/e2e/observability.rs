//! Observability end to end, against a real Zipkin and a real Prometheus:
//! one request is one trace across every hop, logs carry its id, every
//! dashboard query returns data, and the alerts fire when things break.

use crate::support::{image, start_with};
use stack::{HttpClient, Method, Service, Stack, StackOptions};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// A W3C trace context of our own, so the test knows the trace id before
/// the request goes out.
pub(crate) fn fresh_traceparent() -> (String, String, String) {
    let id = stack::unique_id();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(1);
    let seed = format!("{id}{nanos}");
    let hex = |salt: &str, len: usize| -> String {
        // FNV-1a over the seed: distinct, non-zero ids without a rand dependency.
        let mut out = String::new();
        let mut h: u64 = 0xcbf29ce484222325;
        while out.len() < len {
            for b in salt.bytes().chain(seed.bytes()).chain(out.bytes()) {
                h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
            }
            out.push_str(&format!("{h:016x}"));
        }
        out.truncate(len);
        out
    };
    let (trace_id, parent) = (hex("trace", 32), hex("span", 16));
    (format!("00-{trace_id}-{parent}-01"), trace_id, parent)
}

pub(crate) type Span = serde_json::Value;

fn service_of(span: &Span) -> &str {
    span["localEndpoint"]["serviceName"].as_str().unwrap_or("")
}

fn is_app_span(span: &Span) -> bool {
    span["tags"]["otel.scope.name"] == "kit"
}

/// Spans whose parent is not in `spans`.
fn orphans(spans: &[Span]) -> Vec<String> {
    let ids: HashSet<&str> = spans.iter().filter_map(|s| s["id"].as_str()).collect();
    spans
        .iter()
        .filter(|s| s["parentId"].as_str().is_some_and(|p| !ids.contains(p)))
        .map(|s| format!("{}:{} (parent {})", service_of(s), s["name"], s["parentId"]))
        .collect()
}

/// The trace's spans once every one of `expect` (service, app span name) is
/// there and the tree is whole (daprd exports in batches, seconds later).
pub(crate) async fn wait_for_trace(zipkin: &str, trace_id: &str, expect: &[(&str, &str)]) -> Vec<Span> {
    let client = HttpClient::new(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    loop {
        if let Ok(r) = client.get(&format!("{zipkin}/api/v2/trace/{trace_id}")).await {
            if r.status.is_success() {
                let spans = r.json().as_array().cloned().unwrap_or_default();
                let have =
                    |(svc, name): &(&str, &str)| spans.iter().any(|s| service_of(s) == *svc && s["name"] == *name);
                if expect.iter().all(have) && orphans(&spans).len() == 1 && spans.len() == last.len() {
                    return spans;
                }
                last = spans;
            }
        }
        if Instant::now() > deadline {
            let names: Vec<String> = last.iter().map(|s| format!("{}:{}", service_of(s), s["name"])).collect();
            panic!(
                "trace {trace_id}: expected {expect:?} in one tree, Zipkin has {names:?}, orphans {:?}",
                orphans(&last)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The one span named `name` in `service`'s own (app) spans.
fn app_span<'a>(spans: &'a [Span], service: &str, name: &str) -> &'a Span {
    let found: Vec<&Span> =
        spans.iter().filter(|s| is_app_span(s) && service_of(s) == service && s["name"] == name).collect();
    assert_eq!(found.len(), 1, "{service}: one {name:?} span, got {}", found.len());
    found[0]
}

fn parent<'a>(spans: &'a [Span], span: &Span) -> Option<&'a Span> {
    spans.iter().find(|s| s["id"] == span["parentId"])
}

/// The assertions the issue names: one trace, every hop, parented right.
pub(crate) fn check_trace(
    spans: &[Span],
    trace_id: &str,
    client_span: &str,
    service: &str,
    route: &str,
    work: &[(&str, &str)],
) {
    assert!(spans.iter().all(|s| s["traceId"] == trace_id), "one trace id throughout");
    // A tree: every span's parent is in the trace, except the root, whose
    // parent is the test's own client span.
    let orphans = orphans(spans);
    assert_eq!(orphans.len(), 1, "exactly one root: {orphans:?}");
    let root = spans.iter().find(|s| s["parentId"] == client_span).expect("the root continues our traceparent");
    assert!(
        !is_app_span(root) && service_of(root) == service,
        "the service's sidecar received the request first: {root}"
    );

    // The app's server span is a child of its sidecar's span.
    let server = app_span(spans, service, &format!("post {route}"));
    assert_eq!(server["kind"], "SERVER");
    let server_parent = parent(spans, server).expect("server span's parent");
    assert!(!is_app_span(server_parent) && service_of(server_parent) == service, "parent is daprd's: {server_parent}");
    for (child, of) in work {
        let span = app_span(spans, service, child);
        let expected_parent = if of.is_empty() { server } else { app_span(spans, service, of) };
        assert_eq!(span["parentId"], expected_parent["id"], "{child} is a child of {}", expected_parent["name"]);
    }

    // The event: the app's Dapr call, through both sidecars, to the events app and its INSERT.
    let invoke = app_span(spans, service, "dapr invoke events-service/create_event");
    assert_eq!((invoke["kind"].as_str(), invoke["parentId"].as_str()), (Some("CLIENT"), server["id"].as_str()));
    let create = app_span(spans, "events-service", "post /create_event");
    let mut hop = parent(spans, create).expect("create_event's parent");
    let mut hops = vec![format!("{}:{}", service_of(hop), hop["name"])];
    while hop["id"] != invoke["id"] {
        assert!(!is_app_span(hop), "between the two apps only daprd spans: {hops:?}");
        hop = parent(spans, hop)
            .unwrap_or_else(|| panic!("the chain from create_event back to the invoke breaks: {hops:?}"));
        hops.push(format!("{}:{}", service_of(hop), hop["name"]));
    }
    assert!(hops.iter().any(|h| h.starts_with("events-service:")), "the events sidecar is a hop: {hops:?}");
    let insert = app_span(spans, "events-service", "insert image_evts");
    assert_eq!(insert["parentId"], create["id"], "the INSERT is a child of create_event");
    assert_eq!(insert["tags"]["db.system"], "mysql");
}

/// Log lines (JSON, one per line) in `log` that carry `trace_id`.
fn log_lines_with(log: &Path, trace_id: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["trace_id"] == trace_id)
        .collect()
}

#[tokio::test]
async fn one_request_is_one_trace_across_every_hop() {
    let stack = start_with(StackOptions::test(&Service::ALL).with_tracing()).await;
    let zipkin = stack.zipkin.as_ref().expect("zipkin").url("");
    let zipkin = zipkin.trim_end_matches('/');
    let c = &stack.client;
    let r = c.get(&stack.service(Service::Events).url("/init")).await.expect("init");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());

    // (service, route, its work spans as (name, parent name; "" = the server span))
    type Case = (Service, &'static str, &'static [(&'static str, &'static str)]);
    let cases: [Case; 2] = [
        (Service::Grayscale, "/grayscale", &[("grayscale", ""), ("decode", "grayscale"), ("encode", "grayscale")]),
        (Service::Classify, "/classify", &[("preprocess", ""), ("inference", "")]),
    ];
    for (service, route, work) in cases {
        let app_id = service.app_id();
        let (traceparent, trace_id, client_span) = fresh_traceparent();
        let url = stack.service(service).invoke_url(route.trim_start_matches('/'));
        let r = c
            .request(Method::POST, &url, &[("traceparent", &traceparent)], image("hot_dog.jpg").into())
            .await
            .expect("POST through the sidecar");
        assert_eq!(r.status.as_u16(), 200, "{app_id}: {}", r.text());
        let answered = r.header("traceparent").unwrap_or_default();
        assert!(answered.contains(&trace_id), "{app_id} answers with a traceparent of the same trace: {answered:?}");

        let mut expect: Vec<(&str, &str)> =
            vec![(app_id, "dapr invoke events-service/create_event"), ("events-service", "insert image_evts")];
        expect.extend(work.iter().map(|(name, _)| (app_id, *name)));
        let spans = wait_for_trace(zipkin, &trace_id, &expect).await;
        check_trace(&spans, &trace_id, &client_span, app_id, route, work);

        // The logs of both apps carry the same trace id.
        for s in [service, Service::Events] {
            let lines = log_lines_with(stack.service(s).log(), &trace_id);
            assert!(
                lines.iter().any(|l| l["message"] == "request" && l["span_id"].is_string()),
                "{}: request log line with trace_id {trace_id}",
                s.app_id()
            );
        }
    }

    // Zipkin derives the service graph from the traces.
    let end =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0) + 60_000;
    let r = c.get(&format!("{zipkin}/api/v2/dependencies?endTs={end}&lookback=3600000")).await.expect("dependencies");
    let links: HashSet<(String, String)> = r
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| (l["parent"].as_str().unwrap_or("").to_owned(), l["child"].as_str().unwrap_or("").to_owned()))
        .collect();
    for from in ["image-api-grayscale", "image-api-classify"] {
        assert!(
            links.contains(&(from.to_owned(), "events-service".to_owned())),
            "{from} -> events-service in {links:?}"
        );
    }
}

/// Every `expr` in a dashboard (panels nested in rows too), with Grafana's
/// variables replaced by what selects everything.
fn dashboard_queries(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut stack: Vec<serde_json::Value> = dash["panels"].as_array().cloned().unwrap_or_default();
    while let Some(panel) = stack.pop() {
        stack.extend(panel["panels"].as_array().cloned().unwrap_or_default());
        for target in panel["targets"].as_array().cloned().unwrap_or_default() {
            if let Some(expr) = target["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or("?").to_owned();
                let expr = expr
                    .replace("$__rate_interval", "1m")
                    .replace("$__interval", "15s")
                    .replace("$__range", "1h")
                    .replace("${app_id:regex}", ".+")
                    .replace("$app_id", ".+");
                out.push((title, expr));
            }
        }
    }
    out
}

fn dashboards() -> Vec<std::path::PathBuf> {
    let dir = crate::support::repo_path("grafana/dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// Light, healthy traffic: images both ways (200 and 415) and event reads,
/// nothing refused, no fault.
async fn light_traffic(stack: &Stack) {
    let c = &stack.client;
    let r = c.get(&stack.service(Service::Events).url("/init")).await.expect("init");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    for _ in 0..3 {
        for (service, route) in [(Service::Grayscale, "grayscale"), (Service::Classify, "classify")] {
            let r = c.post(&stack.service(service).invoke_url(route), image("hot_dog.jpg")).await.expect("post");
            assert_eq!(r.status.as_u16(), 200, "{}", r.text());
            let r = c.post(&stack.service(service).invoke_url(route), b"not an image".to_vec()).await.expect("post");
            assert_eq!(r.status.as_u16(), 415, "{}", r.text());
        }
        let r = c.get(&stack.service(Service::Events).invoke_url("events?limit=5")).await.expect("events");
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    }
}

/// Some of everything: light traffic, then a flood past the grayscale
/// limit, all at once: 429s, and replicas' worth of ETag races on the one bucket.
async fn traffic(stack: &Stack) {
    light_traffic(stack).await;
    let c = &stack.client;
    let url = stack.service(Service::Grayscale).invoke_url("grayscale");
    let flood: Vec<_> = (0..30)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { c.post(&url, b"not an image".to_vec()).await.map(|r| r.status.as_u16()) })
        })
        .collect();
    for t in flood {
        let status = t.await.expect("join").expect("post");
        assert!(status == 415 || status == 429, "flood answer {status}");
    }
}

/// Runs every dashboard query against the stack's Prometheus until each
/// returns a series, sending `more` traffic between rounds; fails naming the
/// empty ones after 90 s.
async fn assert_every_dashboard_query_has_data<F, Fut>(stack: &Stack, more: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let prom = stack.prometheus.as_ref().expect("prometheus");
    assert_every_dashboard_query_answers(&prom.url(""), more).await;
}

/// The same against any Prometheus (`base`: `http://host:port/`): the
/// compose stack's too.
pub(crate) async fn assert_every_dashboard_query_answers<F, Fut>(base: &str, more: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let queries: Vec<(String, String, String)> = dashboards()
        .iter()
        .flat_map(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            dashboard_queries(p).into_iter().map(move |(title, expr)| (name.clone(), title, expr))
        })
        .collect();
    assert!(queries.len() >= 20, "the dashboards have queries: {}", queries.len());
    // Scrapes every 5 s and rate() needs two samples: allow a minute.
    let client = HttpClient::new(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut empty = Vec::new();
        for (file, title, expr) in &queries {
            match stack::prometheus::query_at(&client, base, expr).await {
                Ok(series) if !series.is_empty() => {}
                Ok(_) => empty.push(format!("{file} / {title}: {expr}")),
                Err(e) => panic!("{file} / {title}: {e}"),
            }
        }
        if empty.is_empty() {
            println!("{} dashboard queries, every one with data", queries.len());
            break;
        }
        if Instant::now() > deadline {
            panic!("{} of {} queries return no series:\n{}", empty.len(), queries.len(), empty.join("\n"));
        }
        // A scrape interval first: it lets the limiter's buckets refill too,
        // so the second round of traffic is not refused (classify's burst
        // is 10; two rounds back to back are 12 within a second).
        tokio::time::sleep(Duration::from_secs(5)).await;
        more().await;
    }
}

#[tokio::test]
async fn every_dashboard_query_returns_data_from_the_real_prometheus() {
    let mut stack = start_with(StackOptions::test(&Service::ALL).with_prometheus()).await;
    traffic(&stack).await;
    // A short state-store outage: the limiter's fallback decides meanwhile.
    stack.redis.stop();
    for _ in 0..5 {
        let r = stack
            .client
            .post(&stack.service(Service::Grayscale).url("/grayscale"), b"not an image".to_vec())
            .await
            .expect("post");
        assert!([415, 429, 503].contains(&r.status.as_u16()), "{}", r.text());
    }
    stack.redis.restart().await.expect("redis back");
    assert_every_dashboard_query_has_data(&stack, || traffic(&stack)).await;
}

/// A person opening Grafana on a healthy stack that has served a little
/// traffic sees no "No data": no flood, no conflict, no outage. Series whose
/// labels are known in advance exist at 0 from start-up (kit's metrics
/// modules touch them), and the queries of things that did not happen read 0.
#[tokio::test]
async fn every_dashboard_query_returns_data_after_light_healthy_traffic() {
    let stack = start_with(StackOptions::test(&Service::ALL).with_prometheus()).await;
    light_traffic(&stack).await;
    assert_every_dashboard_query_has_data(&stack, || light_traffic(&stack)).await;
}

fn promtool(args: &[&str]) -> String {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(crate::support::repo_path("observability"))
        .output()
        .expect("promtool (make deps installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// `promtool <command> rules <every file in observability/<folder>>`.
fn promtool_on_folder(command: &str, folder: &str) -> String {
    let files: Vec<String> = std::fs::read_dir(crate::support::repo_path(&format!("observability/{folder}")))
        .unwrap_or_else(|e| panic!("observability/{folder}: {e}"))
        .filter_map(|e| e.ok().map(|e| format!("{folder}/{}", e.file_name().to_string_lossy())))
        .collect();
    assert!(!files.is_empty(), "observability/{folder} is empty");
    let mut args = vec![command, "rules"];
    args.extend(files.iter().map(String::as_str));
    promtool(&args)
}

#[test]
fn alert_rules_are_valid_and_their_unit_tests_pass() {
    promtool_on_folder("check", "rules");
    let out = promtool_on_folder("test", "tests");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The alerts Prometheus has firing now, by name, with their labels.
async fn firing(stack: &Stack, client: &HttpClient) -> HashMap<String, Vec<serde_json::Value>> {
    let prom = stack.prometheus.as_ref().expect("prometheus");
    let r = client.get(&prom.url("/api/v1/alerts")).await.expect("alerts");
    let mut out: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for alert in r.json()["data"]["alerts"].as_array().cloned().unwrap_or_default() {
        if alert["state"] == "firing" {
            out.entry(alert["labels"]["alertname"].as_str().unwrap_or("").to_owned())
                .or_default()
                .push(alert["labels"].clone());
        }
    }
    out
}

#[tokio::test]
async fn sidecar_down_and_database_unreachable_alerts_fire() {
    let mut stack =
        start_with(StackOptions::test(&[Service::Events, Service::Grayscale]).with_own_database().with_prometheus())
            .await;
    let client = HttpClient::new(Duration::from_secs(5));
    let r = stack.client.get(&stack.service(Service::Events).url("/init")).await.expect("init");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    // Healthy first: nothing of ours fires.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let now = firing(&stack, &client).await;
    assert!(!now.contains_key("DaprSidecarDown") && !now.contains_key("EventsDatabaseUnreachable"), "{now:?}");

    stack.service_mut(Service::Grayscale).sidecar.kill();
    stack.mariadb.as_mut().expect("own MariaDB").stop();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(150);
    loop {
        let now = firing(&stack, &client).await;
        let sidecar =
            now.get("DaprSidecarDown").is_some_and(|a| a.iter().any(|l| l["app_id"] == "image-api-grayscale"));
        let database = now.contains_key("EventsDatabaseUnreachable");
        if sidecar && database {
            println!("both alerts firing {:.0} s after the faults", started.elapsed().as_secs_f64());
            break;
        }
        assert!(Instant::now() < deadline, "after {:.0} s firing: {now:?}", started.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// What Grafana would refuse or show wrong, checked from the files: every
/// panel names its unit and a provisioned datasource, every dashboard has the
/// app_id variable and a unique uid, and the schema is one Grafana 11 reads.
#[test]
fn dashboards_are_well_formed_for_the_provisioned_grafana() {
    let provisioning =
        std::fs::read_to_string(crate::support::repo_path("grafana/provisioning/datasources/datasources.yml"))
            .expect("datasources.yml");
    let uids: HashSet<&str> = provisioning.lines().filter_map(|l| l.trim().strip_prefix("uid: ")).collect();
    assert_eq!(uids, HashSet::from(["prometheus", "zipkin"]), "{provisioning}");
    let mut seen = HashSet::new();
    for path in dashboards() {
        let name = path.display().to_string();
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
        assert!(dash["uid"].as_str().is_some_and(|u| seen.insert(u.to_owned())), "{name}: unique uid");
        assert!(dash["schemaVersion"].as_u64().is_some_and(|v| (36..=40).contains(&v)), "{name}: schemaVersion");
        let vars = dash["templating"]["list"].as_array().cloned().unwrap_or_default();
        assert!(vars.iter().any(|v| v["name"] == "app_id"), "{name}: app_id variable");
        let panels = dash["panels"].as_array().cloned().unwrap_or_default();
        assert!(!panels.is_empty(), "{name}: panels");
        for p in panels {
            let title = p["title"].as_str().unwrap_or("?");
            assert!(
                p["fieldConfig"]["defaults"]["unit"].as_str().is_some_and(|u| !u.is_empty()),
                "{name} / {title}: unit"
            );
            assert!(
                p["datasource"]["uid"].as_str().is_some_and(|u| uids.contains(u)),
                "{name} / {title}: datasource uid"
            );
            for t in p["targets"].as_array().cloned().unwrap_or_default() {
                assert!(
                    t["datasource"]["uid"].as_str().is_some_and(|u| uids.contains(u)),
                    "{name} / {title}: target datasource"
                );
                assert!(
                    t["expr"].as_str().is_some_and(|e| e.contains("$app_id")),
                    "{name} / {title}: filtered by $app_id"
                );
            }
        }
    }
    assert!(seen.contains("service-overview"), "the home dashboard exists");
}

/// (alert name, annotation name → value) of every alert in
/// observability/rules/alerts.yml. The file is ours and regular: each rule
/// starts with `- alert: <name>`; annotations are `key: "value"` lines.
fn alert_rules() -> Vec<(String, String, HashMap<String, String>)> {
    let path = crate::support::repo_path("observability/rules/alerts.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    for block in text.split("- alert: ").skip(1) {
        let name = block.lines().next().unwrap_or("").trim().to_owned();
        let expr: String = block.split("annotations:").next().unwrap_or("").to_owned();
        let annotations = block
            .split("annotations:")
            .nth(1)
            .unwrap_or("")
            .lines()
            .filter_map(|l| l.trim().split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        out.push((name, expr, annotations));
    }
    out
}

/// Every panel of every dashboard by (uid, panel id): its queries.
fn panels_by_id() -> HashMap<(String, u64), Vec<String>> {
    let mut out = HashMap::new();
    for path in dashboards() {
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
        let uid = dash["uid"].as_str().unwrap_or("").to_owned();
        let mut stack: Vec<serde_json::Value> = dash["panels"].as_array().cloned().unwrap_or_default();
        while let Some(panel) = stack.pop() {
            stack.extend(panel["panels"].as_array().cloned().unwrap_or_default());
            let exprs = panel["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|t| t["expr"].as_str().map(str::to_owned))
                .collect();
            out.insert((uid.clone(), panel["id"].as_u64().unwrap_or(0)), exprs);
        }
    }
    out
}

/// Every alert says what to do (a runbook in the repository with the four
/// sections) and where to look (the dashboard panel that plots its own
/// query: every metric of the alert's expression is in that panel's queries).
#[test]
fn every_alert_has_a_runbook_and_a_dashboard_panel_of_its_query() {
    let rules = alert_rules();
    assert!(rules.len() >= 9, "{} alerts", rules.len());
    let panels = panels_by_id();
    let labels = ["app_id", "sloth_id", "sloth_window", "sloth_service", "sloth_slo", "group_left"];
    for (name, expr, annotations) in &rules {
        let runbook = annotations.get("runbook_url").unwrap_or_else(|| panic!("{name}: no runbook_url"));
        assert_eq!(runbook, &format!("docs/runbooks/{name}.md"), "{name}: runbook_url");
        let text = std::fs::read_to_string(crate::support::repo_path(runbook))
            .unwrap_or_else(|e| panic!("{name}: {runbook}: {e}"));
        for section in [
            "## What it means for users",
            "## First three things to look at",
            "## How to mitigate",
            "## How to tell it has cleared",
        ] {
            assert!(text.contains(section), "{runbook}: no {section:?}");
        }
        assert!(text.contains("Zipkin") && text.contains("/d/"), "{runbook}: names a dashboard panel and Zipkin");

        let url = annotations.get("dashboard_url").unwrap_or_else(|| panic!("{name}: no dashboard_url"));
        let (path, query) =
            url.split_once("/d/").and_then(|(_, rest)| rest.split_once('?')).unwrap_or_else(|| panic!("{name}: {url}"));
        let uid = path.split('/').next().unwrap_or("").to_owned();
        let id: u64 = query
            .strip_prefix("viewPanel=")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name}: {url}: viewPanel"));
        let exprs =
            panels.get(&(uid.clone(), id)).unwrap_or_else(|| panic!("{name}: {url}: no panel {id} in dashboard {uid}"));
        // The expression ends where the rule's next key starts (`for:` is optional).
        let rule_expr = expr.split("expr:").nth(1).unwrap_or("");
        let rule_expr =
            ["\n        for:", "\n        labels:"].iter().fold(rule_expr, |e, key| e.split(key).next().unwrap_or(""));
        let metrics: HashSet<&str> = rule_expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|t| (t.contains('_') || t.contains(':')) && !labels.contains(t))
            .collect();
        // A bare selector (`up{job="apps"} == 0`): the panel selects the same, maybe narrowed by app_id.
        let selector = rule_expr.trim().split('}').next().unwrap_or("").to_owned();
        let needles: Vec<&str> =
            if metrics.is_empty() { vec![selector.as_str()] } else { metrics.into_iter().collect() };
        for m in needles {
            assert!(exprs.iter().any(|e| e.contains(m)), "{name}: {url} does not plot {m}: {exprs:?}");
        }
    }
}
