//! The shipped docker-compose.yml, running for real in Docker's engine:
//! `make test-compose` (part of `make test`) brings it up with
//! deploy/compose/local.yml, runs these one at a time (some restart parts
//! of the stack), then takes it down. Ignored in the ordinary passes, which
//! have no compose stack; everything goes through what a user reaches: the
//! published ports on 127.0.0.1, and containers on the compose network.

use crate::observability::{assert_every_dashboard_query_answers, check_trace, fresh_traceparent, wait_for_trace};
use crate::support::{image, repo_path};
use base64::Engine;
use stack::{HttpClient, Method, Reply};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The running compose project, as the Makefile started it.
struct Compose {
    project: String,
    web: String,
    zipkin: String,
    prometheus: String,
    client: HttpClient,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

impl Compose {
    fn from_env() -> Self {
        let url = |var: &str, default: &str| format!("http://127.0.0.1:{}", env_or(var, default));
        Compose {
            project: env_or("COMPOSE_PROJECT_NAME", "dapr-wasm-stack"),
            web: url("WEB_PORT", "8080"),
            zipkin: url("ZIPKIN_PORT", "9411"),
            prometheus: url("PROMETHEUS_PORT", "9090"),
            client: HttpClient::new(Duration::from_secs(30)),
        }
    }

    /// `docker compose -f docker-compose.yml -f deploy/compose/local.yml <args>`.
    fn compose(&self, args: &[&str]) -> Output {
        let mut all = vec!["compose", "-f", "docker-compose.yml", "-f", "deploy/compose/local.yml"];
        all.extend_from_slice(args);
        docker(&all)
    }

    /// The one container of a compose service.
    fn container(&self, service: &str) -> String {
        let out = self.compose(&["ps", "--quiet", service]);
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(!id.is_empty() && !id.contains('\n'), "one container for {service}: {}", text(&out));
        id
    }

    /// A throwaway busybox container on the compose network, as `user`.
    fn on_network(&self, user: &str, extra: &[&str], cmd: &[&str]) -> Output {
        let network = format!("{}_default", self.project);
        let mut args = vec!["run", "--rm", "--network", &network, "--user", user];
        args.extend_from_slice(extra);
        args.push(BUSYBOX);
        args.extend_from_slice(cmd);
        docker(&args)
    }

    async fn post(&self, route: &str, body: Vec<u8>) -> Reply {
        self.post_with(route, &[], body).await
    }

    async fn post_with(&self, route: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let url = format!("{}/api/{route}", self.web);
        self.client
            .request(Method::POST, &url, headers, body.into())
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"))
    }

    /// The stored events through the web front, newest first.
    async fn events(&self) -> Vec<serde_json::Value> {
        let r = self.client.get(&format!("{}/api/events?limit=1000", self.web)).await.expect("GET /api/events");
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        r.json().as_array().cloned().unwrap_or_default()
    }

    /// Waits until every container of the project that should run runs
    /// and, where it has a healthcheck, is healthy.
    async fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let out = self.compose(&["ps", "--format", "{{.Service}} {{.State}} {{.Health}}"]);
            let rows = String::from_utf8_lossy(&out.stdout).into_owned();
            let pending: Vec<&str> = rows
                .lines()
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.get(1) != Some(&"running") || f.get(2).is_some_and(|h| *h != "healthy")
                })
                .collect();
            if !rows.trim().is_empty() && pending.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "not healthy after {within:?}: {pending:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

const BUSYBOX: &str = "dapr-wasm-stack-local/busybox:latest";

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .current_dir(repo_path(""))
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e}"))
}

/// A value of a generated env file in deploy/compose/secrets.
fn secret_env(file: &str, name: &str) -> String {
    let path = repo_path("deploy/compose/secrets").join(file);
    let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    raw.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("{name} in {}", path.display()))
}

/// The first line of an HTTP status `wget -S` printed (busybox prints the
/// response headers to stderr).
fn wget_status(out: &Output) -> String {
    let all = text(out);
    all.lines().find(|l| l.trim_start().starts_with("HTTP/")).map(|l| l.trim().to_owned()).unwrap_or(all)
}

#[tokio::test]
#[ignore = "needs the compose stack: make test-compose"]
async fn the_seed_flow_through_the_web_front() {
    let c = Compose::from_env();
    let photo = image("hot_dog.jpg");

    let r = c.post("grayscale", photo.clone()).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let png = base64::engine::general_purpose::STANDARD.decode(r.body.as_ref()).expect("a base64 body");
    let gray = image::load_from_memory(&png).expect("a PNG");
    let original = image::load_from_memory(&photo).expect("the photo");
    assert_eq!((gray.width(), gray.height()), (original.width(), original.height()));
    assert!(matches!(gray.color(), image::ColorType::L8 | image::ColorType::La8), "{:?}", gray.color());

    let r = c.post("classify", photo.clone()).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let answer = r.text();
    assert!(answer.starts_with("hotdog is detected with ") && answer.ends_with("/255 confidence"), "{answer}");

    // Newest first: the two just made, each with the photo's size.
    let events = c.events().await;
    let newest: Vec<(String, u64)> = events
        .iter()
        .take(2)
        .map(|e| (e["op_type"].as_str().unwrap_or_default().to_owned(), e["input_size"].as_u64().unwrap_or(0)))
        .collect();
    let size = photo.len() as u64;
    assert_eq!(newest, vec![("classify".to_owned(), size), ("grayscale".to_owned(), size)], "{events:?}");
}

#[tokio::test]
#[ignore = "needs the compose stack: make test-compose"]
async fn one_request_is_one_trace_from_the_web_front_to_the_database() {
    let c = Compose::from_env();
    let (traceparent, trace_id, client_span) = fresh_traceparent();
    let r = c.post_with("grayscale", &[("traceparent", &traceparent)], image("hot_dog.jpg")).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let work = [("grayscale", ""), ("decode", "grayscale"), ("encode", "grayscale")];
    let mut expect = vec![
        ("image-api-grayscale", "dapr invoke events-service/create_event"),
        ("events-service", "insert image_evts"),
    ];
    expect.extend(work.iter().map(|(name, _)| ("image-api-grayscale", *name)));
    let spans = wait_for_trace(&c.zipkin, &trace_id, &expect).await;
    check_trace(&spans, &trace_id, &client_span, "image-api-grayscale", "/grayscale", &work);
}

#[tokio::test]
#[ignore = "needs the compose stack: make test-compose"]
async fn every_target_is_up_every_rule_group_loaded_and_every_dashboard_query_answered() {
    let c = Compose::from_env();
    let files: Vec<_> = std::fs::read_dir(repo_path("observability/targets/compose"))
        .expect("observability/targets/compose")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let expected_targets: usize = files
        .iter()
        .map(|p| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).expect("targets file")).expect("JSON");
            v.as_array().map_or(0, |groups| groups.iter().map(|g| g["targets"].as_array().map_or(0, Vec::len)).sum())
        })
        .sum();
    assert_eq!(expected_targets, 6, "three apps and three sidecars in {files:?}");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.client.get(&format!("{}/api/v1/targets?state=active", c.prometheus)).await.expect("targets");
        let active = r.json()["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
        let up = active.iter().filter(|t| t["health"] == "up").count();
        if active.len() == expected_targets && up == expected_targets {
            break;
        }
        let down: Vec<String> = active
            .iter()
            .filter(|t| t["health"] != "up")
            .map(|t| format!("{} {} {}", t["scrapeUrl"], t["health"], t["lastError"]))
            .collect();
        assert!(
            Instant::now() < deadline,
            "{up} of {} targets up ({expected_targets} expected): {down:?}",
            active.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Every group of every rule file, loaded (Prometheus names them as the files do).
    let mut groups = Vec::new();
    for entry in std::fs::read_dir(repo_path("observability/rules")).expect("rules").flatten() {
        let raw = std::fs::read_to_string(entry.path()).expect("rule file");
        groups.extend(
            raw.lines()
                .filter_map(|l| l.strip_prefix("- name:").or_else(|| l.strip_prefix("  - name:")))
                .map(|n| n.trim().trim_matches('"').to_owned()),
        );
    }
    assert!(groups.len() >= 2, "rule groups in observability/rules: {groups:?}");
    let r = c.client.get(&format!("{}/api/v1/rules", c.prometheus)).await.expect("rules");
    let loaded: Vec<String> = r.json()["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|g| g["name"].as_str().map(str::to_owned))
        .collect();
    for g in &groups {
        assert!(loaded.contains(g), "rule group {g} is loaded: {loaded:?}");
    }

    // Light traffic through the web front between rounds, inside the limits.
    let traffic = || async {
        for route in ["grayscale", "classify"] {
            let r = c.post(route, image("hot_dog.jpg")).await;
            assert!(matches!(r.status.as_u16(), 200 | 429), "{route}: {}", r.text());
            let r = c.post(route, b"not an image".to_vec()).await;
            assert!(matches!(r.status.as_u16(), 415 | 429), "{route}: {}", r.text());
        }
        let r = c.client.get(&format!("{}/api/events?limit=5", c.web)).await.expect("events");
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    };
    traffic().await;
    assert_every_dashboard_query_answers(&c.prometheus, traffic).await;
}

#[tokio::test]
#[ignore = "needs the compose stack: make test-compose"]
async fn the_production_promises_hold_on_the_compose_network() {
    let c = Compose::from_env();
    // busybox wget prints the status line with -S (and Debian's busybox
    // crashes on -T, so no timeout flag: everything here answers at once).
    let fetch = |url: &str| -> Vec<String> { ["wget", "-S", "-O", "/dev/null", url].map(str::to_owned).to_vec() };

    // A sidecar's Dapr API without its token.
    let cmd = fetch("http://grayscale:3503/v1.0/metadata");
    let out = c.on_network("65532:65532", &[], &cmd.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(wget_status(&out).contains(" 401"), "the Dapr API without a token: {}", text(&out));

    // The apps listen only inside their pod: their ports are closed to the
    // network (the metrics listener is the one that is open, for Prometheus).
    for (host, port) in [("grayscale", 9005), ("classify", 9006), ("events", 9007)] {
        let cmd = fetch(&format!("http://{host}:{port}/healthz"));
        let out = c.on_network("65532:65532", &[], &cmd.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            !out.status.success() && text(&out).contains("refused"),
            "{host}:{port} from the network: {}",
            text(&out)
        );
    }

    // grayscale's identity (its sidecar, its token) may record events but
    // not run events-service's /init: access control over mTLS says 403.
    let token = secret_env("grayscale.env", "DAPR_API_TOKEN");
    let pod = format!("container:{}", c.container("grayscale-pod"));
    let header = format!("dapr-api-token: {token}");
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        &pod,
        "--user",
        "65532:65532",
        BUSYBOX,
        "wget",
        "-S",
        "-O",
        "/dev/null",
        "--header",
        &header,
        "http://127.0.0.1:3503/v1.0/invoke/events-service/method/init",
    ]);
    assert!(wget_status(&out).contains(" 403"), "grayscale -> events /init: {}", text(&out));

    // Each secret file is readable by the container user that needs it and
    // by no other (compose mounts the file as it is on the host).
    let secrets = repo_path("deploy/compose/secrets");
    for (file, reader, other) in [
        ("redis.conf", "999:1000", "65532:65532"),
        ("sentry/issuer.key", "65533:65533", "65532:65532"),
        ("dapr-secrets.json", "65532:65532", "65531:65531"),
        ("migrate-secrets.json", "65531:65531", "65532:65532"),
        ("db_password", "999:999", "65532:65532"),
    ] {
        let mount = format!("{}:/secret:ro", secrets.join(file).display());
        let read = |user: &str| c.on_network(user, &["-v", &mount], &["cat", "/secret"]);
        let out = read(reader);
        assert!(out.status.success() && !out.stdout.is_empty(), "{file} as {reader}: {}", text(&out));
        let out = read(other);
        assert!(!out.status.success() && text(&out).contains("Permission denied"), "{file} as {other}: {}", text(&out));
    }
}

#[tokio::test]
#[ignore = "needs the compose stack: make test-compose"]
async fn recreated_services_are_reached_again_through_the_web_front() {
    let c = Compose::from_env();
    let out = c.compose(&["up", "--detach", "--wait", "--force-recreate", "--no-deps", "grayscale", "events"]);
    assert!(out.status.success(), "recreate: {}", text(&out));
    let recreated = Instant::now();
    let deadline = recreated + Duration::from_secs(10);
    loop {
        let r = c.post("grayscale", image("hot_dog.jpg")).await;
        if r.status.as_u16() == 200 {
            println!("the web front answered 200 {:?} after the recreate", recreated.elapsed());
            break;
        }
        assert!(Instant::now() < deadline, "the web front after the recreate: {} {}", r.status, r.text());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
#[ignore = "needs the compose stack: make test-compose"]
async fn a_killed_service_comes_back_and_nothing_acknowledged_is_lost() {
    let c = Compose::from_env();
    let before = c.events().await.len();
    let events = c.container("events");

    let mut acknowledged = 0;
    for i in 0..12 {
        if i == 4 {
            // A crash: the container's process dies of SIGKILL, and the
            // restart policy, not the test, starts it again. (`docker kill`
            // would not do: Docker takes it for a manual stop, which
            // unless-stopped leaves stopped.)
            let out = docker(&["inspect", "--format", "{{.State.Pid}}", &events]);
            let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert!(pid.parse::<u32>().is_ok_and(|p| p > 1), "events' pid: {}", text(&out));
            let out = Command::new("kill").args(["-KILL", &pid]).output().expect("kill");
            assert!(out.status.success(), "kill {pid}: {}", text(&out));
        }
        let r = c.post("grayscale", image("grace_hopper.jpg")).await;
        match r.status.as_u16() {
            200 => acknowledged += 1,
            // Refused, not acknowledged: the client knows to retry.
            429 | 502 | 503 => {}
            s => panic!("grayscale while events restarts: {s} {}", r.text()),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(acknowledged >= 4, "{acknowledged} of 12 acknowledged");
    c.wait_healthy(Duration::from_secs(90)).await;

    // Every acknowledged request's event is stored, if only after the
    // spool has replayed it.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let stored = c.events().await.len() - before;
        if stored >= acknowledged {
            assert_eq!(stored, acknowledged, "one event per acknowledged request, none twice");
            break;
        }
        assert!(Instant::now() < deadline, "{stored} of {acknowledged} acknowledged events stored");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
#[ignore = "needs the compose stack: make test-compose"]
async fn down_and_up_again_keeps_the_events() {
    let c = Compose::from_env();
    let r = c.post("grayscale", image("hot_dog.jpg")).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let before = c.events().await;
    assert!(!before.is_empty());

    let out = c.compose(&["down"]);
    assert!(out.status.success(), "down: {}", text(&out));
    let out = c.compose(&["up", "--detach", "--wait", "--wait-timeout", "300"]);
    assert!(out.status.success(), "up: {}", text(&out));

    // A client of its own: the old one's pooled connection went with `down`.
    let after = Compose::from_env().events().await;
    assert_eq!(after, before, "the events outlive down and up (the volumes)");
}
