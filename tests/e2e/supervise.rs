//! `make up` as `docker compose up` behaves, through the real `stackctl`
//! binary on a stack folder and free ports of its own (STACK_DIR,
//! STACK_FREE_PORTS=1), so a `make up` on this machine is left alone:
//! a second `up` on a healthy stack changes no pid; after one component
//! was stopped, `up` starts only that one; the supervisor brings back a
//! service, a sidecar, MariaDB and Redis killed with kill -9 under load,
//! other components keep their pids, and nothing acknowledged is lost;
//! `down` stops the supervisor first, so nothing comes back. Loopback
//! only, bounded in time; kill→healthy times and failed requests printed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;
const SIGSTOP: i32 = 19;

/// A `stackctl up` stack in its own folder; `stackctl down` when dropped,
/// so a failing test leaves nothing running.
struct UpStack {
    dir: PathBuf,
}

impl UpStack {
    fn new() -> Self {
        let dir = stack::paths::scratch_dir().join(format!("up-{}", stack::unique_id()));
        std::fs::create_dir_all(&dir).expect("stack dir");
        UpStack { dir }
    }

    fn stackctl(&self, args: &[&str]) -> Output {
        let bin = stack::paths::bin_dir().join("stackctl");
        assert!(bin.exists(), "{} is missing: build it with `cargo build -p stack`", bin.display());
        Command::new(bin)
            .args(args)
            .env("STACK_DIR", &self.dir)
            .env("STACK_FREE_PORTS", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run stackctl")
    }

    /// `stackctl up`, which must succeed; its stdout.
    fn up(&self) -> String {
        let out = self.stackctl(&["up"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "stackctl up failed\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// The recorded pid of every component (the supervisor apart).
    fn pids(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for entry in std::fs::read_dir(self.dir.join("run")).expect("run dir").flatten() {
            let path = entry.path();
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else { continue };
            if path.extension().is_some_and(|e| e == "pid") && name != "supervisor" {
                if let Some(pid) = stack::process::read_pid_file(&path) {
                    out.insert(name.to_owned(), pid);
                }
            }
        }
        out
    }

    fn pid(&self, name: &str) -> u32 {
        *self.pids().get(name).unwrap_or_else(|| panic!("no pid recorded for {name}"))
    }

    fn ports(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join("ports.json")).expect("ports.json");
        serde_json::from_str(&text).expect("ports.json is JSON")
    }

    fn supervisor_pid(&self) -> Option<u32> {
        stack::process::read_pid_file(&self.dir.join("run/supervisor.pid")).filter(|p| stack::process::pid_alive(*p))
    }

    fn supervisor_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/supervisor.log")).unwrap_or_default()
    }
}

impl Drop for UpStack {
    fn drop(&mut self) {
        let _ = self.stackctl(&["down"]);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack::process::pid_alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} still runs 30 s after it was stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pids that changed between `before` and `after`.
fn changed(before: &BTreeMap<String, u32>, after: &BTreeMap<String, u32>) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names.into_iter().filter(|n| before.get(*n) != after.get(*n)).cloned().collect()
}

#[test]
fn a_second_up_restarts_nothing_healthy_and_only_what_was_stopped() {
    let stack = UpStack::new();
    stack.up();
    let first = stack.pids();
    assert_eq!(first.len(), 11, "every component recorded: {first:?}");

    let again = stack.up();
    assert!(again.contains("nothing restarted"), "{again}");
    assert_eq!(changed(&first, &stack.pids()), Vec::<String>::new(), "a second up on a healthy stack changes no pid");

    // Without the supervisor (it would bring it back first), stop one
    // component as an operator would; `up` starts that one alone.
    let supervisor = stack.supervisor_pid().expect("the supervisor runs after up");
    stack::process::signal(supervisor, SIGTERM);
    wait_gone(supervisor);
    let grayscale = stack.pid("image-api-grayscale");
    stack::process::signal(grayscale, SIGTERM);
    wait_gone(grayscale);
    let out = stack.up();
    assert!(out.contains("started what was down") && out.contains("image-api-grayscale"), "{out}");
    assert_eq!(
        changed(&first, &stack.pids()),
        vec!["image-api-grayscale".to_owned()],
        "only the stopped one restarted\n{out}"
    );
    assert!(stack.supervisor_pid().is_some(), "up started the supervisor again");

    // down stops the supervisor first: nothing comes back.
    let all = stack.pids();
    let down = stack.stackctl(&["down"]);
    assert!(down.status.success());
    std::thread::sleep(Duration::from_secs(3));
    assert!(all.values().all(|p| !stack::process::pid_alive(*p)), "everything stopped: {all:?}");
    assert!(stack.pids().is_empty() && stack.supervisor_pid().is_none(), "nothing came back: {:?}", stack.pids());
}

/// Whether the component answers its liveness check.
fn healthy(ports: &serde_json::Value, name: &str) -> bool {
    let port = |v: &serde_json::Value| v.as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
    let http = |port: u16, path: &str| {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        s.write_all(req.as_bytes()).is_ok()
            && s.read_to_string(&mut answer).is_ok()
            && (answer.starts_with("HTTP/1.1 2"))
    };
    match name {
        "mariadb" | "redis" => std::net::TcpStream::connect(("127.0.0.1", port(&ports[name]))).is_ok(),
        _ => match name.strip_prefix("daprd-") {
            Some(app) => http(port(&ports["services"][app]["dapr_http"]), "/v1.0/healthz"),
            None => http(port(&ports["services"][name]["app"]), "/healthz"),
        },
    }
}

const RATE: u32 = 5;
const LOAD_SECS: u64 = 14;

#[test]
fn the_supervisor_brings_back_what_was_killed_under_load() {
    let stack = UpStack::new();
    stack.up();
    let ports = stack.ports();
    let app = |id: &str, k: &str| ports["services"][id][k].as_u64().unwrap_or(0);
    let init = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{}/init", app("events-service", "app"))])
        .output()
        .expect("curl");
    assert!(init.status.success(), "events /init: {}", String::from_utf8_lossy(&init.stderr));

    let mut figures = Vec::new();
    for victim in ["events-service", "daprd-image-api-grayscale", "mariadb", "redis"] {
        let before = stack.pids();
        // Grayscale through its sidecar, as other apps call it; every 2xx
        // must have its event (--verify), spooled or not.
        let mut load = Command::new(crate::loadgen::loadgen_binary());
        load.args([
            format!("--grayscale-port={}", app("image-api-grayscale", "app")),
            format!("--grayscale-dapr-port={}", app("image-api-grayscale", "dapr_http")),
            format!("--events-port={}", app("events-service", "app")),
            format!("--events-dapr-port={}", app("events-service", "dapr_http")),
            format!("--images={}", stack::paths::shared_dir().join("images").display()),
            "--sidecar".into(),
            "--target=grayscale".into(),
            format!("--rate={RATE}"),
            format!("--duration={LOAD_SECS}s"),
            "--timeout=20s".into(),
            "--verify".into(),
            "--verify-wait=60s".into(),
            "--json".into(),
            "--quiet".into(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let child = load.spawn().expect("loadgen");
        std::thread::sleep(Duration::from_secs(3));
        let pid = before[victim];
        stack::process::signal(pid, SIGKILL);
        let killed = Instant::now();
        let back = loop {
            let now = stack.pids().get(victim).copied();
            if now.is_some_and(|p| p != pid && stack::process::pid_alive(p)) && healthy(&ports, victim) {
                break killed.elapsed();
            }
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "{victim} not back 60 s after kill -9\n{}",
                stack.supervisor_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = child.wait_with_output().expect("loadgen output");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "no JSON report ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let sent = report["sent"].as_u64().unwrap_or(0);
        let ok: u64 = report["status"]
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.starts_with('2')).map(|(_, v)| v.as_u64().unwrap_or(0)).sum())
            .unwrap_or(0);
        let v = &report["verify"];
        figures.push(format!(
            "  kill -9 {victim:<26} healthy again after {:>5.2} s; grayscale via its sidecar: {sent} sent, {} failed {}, lost {}",
            back.as_secs_f64(),
            sent - ok,
            report["status"],
            v["lost"]
        ));
        assert!(back < Duration::from_secs(30), "{victim} back within its first backoff and a start: {back:?}");
        assert_eq!(v["lost"], 0, "kill -9 {victim}: every acknowledged request has its event: {report}");
        assert_eq!(v["settled"], true, "kill -9 {victim}: the count settled: {v}");
        assert_eq!(
            changed(&before, &stack.pids()),
            vec![victim.to_owned()],
            "kill -9 {victim}: the others keep their pids"
        );
    }
    println!("supervisor restarts under load ({RATE} req/s for {LOAD_SECS} s each):\n{}", figures.join("\n"));

    let status = String::from_utf8_lossy(&stack.stackctl(&["status"]).stdout).into_owned();
    println!("{status}");
    for victim in ["events-service", "mariadb", "redis"] {
        let row = status.lines().find(|l| l.starts_with(&format!("{victim} "))).unwrap_or_default();
        // The supervisor started them, so it read how they ended.
        assert!(
            row.contains(" running ") && row.contains(" 1 ") && row.contains("exited: killed by signal 9"),
            "status shows the restart: {row:?}"
        );
    }
    let log = stack.supervisor_log();
    assert!(log.contains("restarted events-service"), "{log}");

    // A restarted component is the supervisor's child: its exit status is known.
    let pid = stack.pid("events-service");
    stack::process::signal(pid, SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stack.supervisor_log().contains(&format!("events-service (pid {pid}) exited: killed by signal 9")) {
        assert!(Instant::now() < deadline, "no exit status logged\n{}", stack.supervisor_log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(stack.pids().get("events-service").is_some_and(|p| *p != pid) && healthy(&ports, "events-service")) {
        assert!(Instant::now() < deadline, "events-service not back\n{}", stack.supervisor_log());
        std::thread::sleep(Duration::from_millis(100));
    }

    // Liveness: a service that stops answering (SIGSTOP) is killed and
    // started again once its grace period (10 s) is over.
    let frozen = stack.pid("image-api-classify");
    stack::process::signal(frozen, SIGSTOP);
    let stopped = Instant::now();
    loop {
        let now = stack.pids().get("image-api-classify").copied();
        if now.is_some_and(|p| p != frozen) && healthy(&ports, "image-api-classify") {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(60),
            "a frozen classify not replaced within 60 s\n{}",
            stack.supervisor_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = stopped.elapsed();
    println!("  SIGSTOP image-api-classify: replaced and healthy after {:.1} s (grace 10 s)", took.as_secs_f64());
    assert!(took >= Duration::from_secs(10), "not before its grace period: {took:?}");
    assert!(stack.supervisor_log().contains("image-api-classify (pid"), "{}", stack.supervisor_log());
    assert!(stack.supervisor_log().contains("unhealthy: no answer to its health check"), "{}", stack.supervisor_log());

    let logs = String::from_utf8_lossy(&stack.stackctl(&["logs", "events-service"]).stdout).into_owned();
    assert!(
        logs.lines().any(|l| l.starts_with("events-service | ") && l.contains(" INFO ")),
        "readable, prefixed lines: {logs}"
    );
}
