//! `stackctl up|down|status|logs`: the local stack behind `make up`, `make
//! down`, `make status` and `make logs`. Processes are detached, recorded by
//! pid under `.stack/run/`, logs under `.stack/logs/`, data under `.stack/`
//! (`STACK_DIR` elsewhere; `STACK_FREE_PORTS=1` for free ports). `up` starts
//! only what is down and leaves `stackctl supervise` running (supervise.rs).
//! `up --runtime wasmedge` runs the services under WasmEdge (`make wasmedge`
//! first); `.stack/runtime` records which runtime is up.

mod components;
mod logs;
mod supervise;

use components::{check, components, pid_file, pids, start_missing, Layout, StartLock, UP_LOG_LEVEL};
use stack::process::{live_pid, signal, Mode};
use stack::{paths, HttpClient, Runtime, Service};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn stack_dir() -> PathBuf {
    std::env::var_os("STACK_DIR").map(PathBuf::from).unwrap_or_else(|| paths::repo_root().join(".stack"))
}

/// `STACK_FREE_PORTS=1`: a new stack takes free ports (recorded in
/// `ports.json`) instead of the documented ones, so it can run beside
/// another `make up` (the e2e tests).
fn free_ports() -> bool {
    std::env::var("STACK_FREE_PORTS").is_ok_and(|v| v == "1")
}

fn layout(dir: &Path) -> Layout {
    Layout::read(dir).unwrap_or_else(Layout::fixed)
}

/// Every pid file under `.stack/run`, as (component name, pid file).
fn recorded(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir.join("run"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pid"))
                .filter_map(|p| Some((p.file_stem()?.to_str()?.to_owned(), p)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// SIGTERM, then SIGKILL after `grace`; waits until it is gone.
fn stop_pid(pid: u32, grace: Duration) {
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while stack::process::pid_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if stack::process::pid_alive(pid) {
        signal(pid, libc::SIGKILL);
    }
}

fn down(dir: &Path) -> usize {
    let mut stopped = 0;
    // The supervisor first, so nothing it watches comes back.
    let supervisor = pid_file(dir, "supervisor");
    if let Some(pid) = live_pid(&supervisor) {
        stop_pid(pid, Duration::from_secs(5));
        println!("stopped supervisor (pid {pid})");
        stopped += 1;
    }
    let _ = std::fs::remove_file(&supervisor);
    // Services and sidecars first, then the stores they use.
    let mut all = recorded(dir);
    // Zipkin last, so the spans of the last requests still reach it.
    all.sort_by_key(|(name, _)| match name.as_str() {
        "mariadb" | "redis" => 1,
        "zipkin" | "prometheus" | "grafana" => 2,
        _ => 0,
    });
    for (name, pid_file) in all {
        if let Some(pid) = live_pid(&pid_file) {
            stop_pid(pid, Duration::from_secs(20));
            println!("stopped {name} (pid {pid})");
            stopped += 1;
        }
        let _ = std::fs::remove_file(&pid_file);
    }
    stopped
}

async fn status(dir: &Path) -> bool {
    let client = HttpClient::new(Duration::from_secs(2));
    let layout = layout(dir);
    let runtime = std::fs::read_to_string(dir.join("runtime")).unwrap_or_else(|_| "native".into());
    let supervised = supervise::read_state(dir);
    let mut all_up = true;
    println!(
        "{:<28} {:<8} {:<9} {:<8} {:<8} {:<34} LAST EXIT",
        "COMPONENT", "PID", "STATE", "RUNTIME", "RESTARTS", "URL"
    );
    let line = |name: &str, url: &str, pid: Option<u32>, healthy: bool, runtime: &str| {
        let (restarts, last_exit, gave_up) = supervised.get(name).cloned().unwrap_or((0, None, false));
        let state = match (pid, healthy) {
            (None, _) if gave_up => "given up",
            (None, _) => "stopped",
            (Some(_), false) => "unhealthy",
            _ => "running",
        };
        let pid = pid.map_or("-".into(), |p| p.to_string());
        println!(
            "{name:<28} {pid:<8} {state:<9} {runtime:<8} {restarts:<8} {url:<34} {}",
            last_exit.as_deref().unwrap_or("-")
        );
        state == "running"
    };
    for c in components(dir, &layout) {
        let pid = live_pid(&pid_file(dir, &c.name));
        let healthy = pid.is_some() && check(&client, &c.ready).await;
        let rt = if Service::ALL.iter().any(|s| s.app_id() == c.name) { runtime.trim() } else { "-" };
        all_up &= line(&c.name, &c.url, pid, healthy, rt);
    }
    if grafana_binary().is_some() {
        let url = format!("http://127.0.0.1:{}/", layout.grafana);
        let healthy = client.get(&format!("{url}api/health")).await.map(|r| r.status.is_success()).unwrap_or(false);
        all_up &= line("grafana", &url, live_pid(&pid_file(dir, "grafana")), healthy, "-");
    }
    let supervisor = live_pid(&pid_file(dir, "supervisor"));
    line("supervisor", "-", supervisor, true, "-");
    all_up
}

/// Starts the supervisor, this same binary detached, with `supervise
/// --start`: it first starts what is down (so it is their parent and reads
/// their exit status later), and says how that went in `run/start-result`.
/// Waits for that result.
async fn start_supervisor(dir: &Path, runtime: Runtime) -> Result<u32, String> {
    let result_file = dir.join("run/start-result");
    let _ = std::fs::remove_file(&result_file);
    let exe = std::env::current_exe().map_err(|e| format!("this executable: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["supervise", "--start"]).env("STACK_DIR", dir).env("STACK_RUNTIME", runtime.name());
    let log = dir.join("logs/supervisor.log");
    let pid_file = pid_file(dir, "supervisor");
    let mut proc =
        stack::process::Proc::spawn("supervisor", cmd, &log, Mode::Detached { pid_file }).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(result) = std::fs::read_to_string(&result_file) {
            return match result.strip_prefix("ok") {
                Some(_) => Ok(proc.pid()),
                None => Err(result.trim().to_owned()),
            };
        }
        if !proc.is_running() || Instant::now() > deadline {
            return Err(format!(
                "the supervisor did not start the stack\n--- {} ---\n{}",
                log.display(),
                stack::process::tail(&log, 25)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `make up`: starts what is down or unhealthy, in dependency order, keeps
/// what is healthy (same pid), and leaves the supervisor running.
async fn up(dir: &Path, runtime: Runtime) -> Result<(), String> {
    let running = std::fs::read_to_string(dir.join("runtime")).unwrap_or_default();
    if !running.trim().is_empty()
        && running.trim() != runtime.name()
        && recorded(dir).iter().any(|(_, p)| live_pid(p).is_some())
    {
        println!("the stack runs under {}: stopping it to start it under {}", running.trim(), runtime.name());
        down(dir);
    }
    runtime
        .check(&Service::ALL)
        .map_err(|e| format!("{e}\n(for `make up`, the native binaries come from `cargo build --release --bins`)"))?;
    let layout = Layout::load_or_create(dir, free_ports())?;
    let all = components(dir, &layout);
    let client = HttpClient::new(Duration::from_secs(2));
    let started = Instant::now();
    let lock = StartLock::take(dir)?;
    // Alive but not answering: stopped here, so it is started again below.
    for c in &all {
        if let Some(pid) = live_pid(&pid_file(dir, &c.name)) {
            if !check(&client, &c.live).await {
                println!("{} (pid {pid}) does not answer its health check: restarting it", c.name);
                stop_pid(pid, Duration::from_secs(10));
            }
        }
    }
    let before = pids(dir, &all);
    let fresh = before.iter().all(|(_, pid)| pid.is_none());
    // Without a supervisor, a new one starts what is down; with one, here.
    let supervisor = if live_pid(&pid_file(dir, "supervisor")).is_none() {
        drop(lock);
        start_supervisor(dir, runtime).await.map(Some)
    } else {
        let started = start_missing(dir, &layout, runtime).await;
        drop(lock);
        started.map(|()| None)
    };
    let supervisor = match supervisor {
        Ok(pid) => pid,
        Err(e) => {
            // A stack that was not up goes down again; a partly-up one stays as it is.
            if fresh {
                eprintln!("stopping what was started");
                down(dir);
            }
            return Err(e);
        }
    };
    let after = pids(dir, &all);
    let restarted: Vec<&str> =
        before.iter().zip(&after).filter(|(b, a)| b.1 != a.1).map(|(b, _)| b.0.as_str()).collect();
    start_grafana(dir, &layout)?;
    if restarted.is_empty() {
        println!("the stack is already up: nothing restarted");
    } else if fresh {
        println!("the stack is up in {:.1} s", started.elapsed().as_secs_f64());
    } else {
        println!("started what was down, in {:.1} s: {}", started.elapsed().as_secs_f64(), restarted.join(", "));
    }
    if let Some(pid) = supervisor {
        println!(
            "supervisor started (pid {pid}): restarts what exits or stops answering; log {}/logs/supervisor.log",
            dir.display()
        );
    }
    println!();
    status(dir).await;
    println!(
        "\nlogs:  make logs [SERVICE=<component>] [FOLLOW=1]   (files under {0}/logs/, {0}/mariadb/, {0}/redis/, {0}/nginx/logs/)\n\
         page:  http://127.0.0.1:{web}/ (the migrations are applied: `make up` ran the migrate CLI)\n\
         look:  Zipkin http://127.0.0.1:{zipkin}/zipkin/  Prometheus http://127.0.0.1:{prom}/  metrics: GET /metrics on every app\n\
         try:   curl http://localhost:{events}/init   (the original flow; applies nothing new)\n       \
         curl http://localhost:{gray}/grayscale -X POST --data-binary '@../shared/images/hot_dog.jpg'\n\
         stop:  make down",
        dir.display(),
        web = layout.web,
        zipkin = layout.zipkin,
        prom = layout.prometheus,
        events = layout.ports(Service::Events).0,
        gray = layout.ports(Service::Grayscale).0,
    );
    Ok(())
}

/// Grafana, when one is installed (it is not packaged for this machine:
/// `docker compose up` runs it); otherwise say so and go on.
fn grafana_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| [dir.join("grafana-server"), dir.join("grafana")]).find(|p| p.is_file())
}

fn start_grafana(dir: &Path, layout: &Layout) -> Result<(), String> {
    if live_pid(&pid_file(dir, "grafana")).is_some() {
        return Ok(());
    }
    let Some(binary) = grafana_binary() else {
        println!("grafana: no grafana-server installed here, so no dashboards locally; `docker compose up` runs Grafana with grafana/");
        return Ok(());
    };
    let repo = paths::repo_root();
    let mut cmd = std::process::Command::new(&binary);
    if binary.file_name().is_some_and(|n| n == "grafana") {
        cmd.arg("server");
    }
    // Debian-style packages keep their static files here; GF_PATHS_HOME overrides.
    let home = std::env::var("GF_PATHS_HOME").unwrap_or_else(|_| "/usr/share/grafana".into());
    cmd.arg("--homepath")
        .arg(home)
        .env("GF_SERVER_HTTP_ADDR", "127.0.0.1")
        .env("GF_SERVER_HTTP_PORT", layout.grafana.to_string())
        .env("GF_PATHS_DATA", dir.join("grafana/data"))
        .env("GF_PATHS_LOGS", dir.join("grafana/logs"))
        .env("GF_PATHS_PROVISIONING", repo.join("grafana/provisioning"))
        .env("GF_AUTH_ANONYMOUS_ENABLED", "true")
        .env("GF_AUTH_ANONYMOUS_ORG_ROLE", "Viewer")
        .env("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", repo.join("grafana/dashboards/service-overview.json"))
        .env("GRAFANA_DASHBOARDS_DIR", repo.join("grafana/dashboards"))
        .env("PROMETHEUS_URL", format!("http://127.0.0.1:{}", layout.prometheus))
        .env("ZIPKIN_URL", format!("http://127.0.0.1:{}", layout.zipkin));
    let mode = Mode::Detached { pid_file: pid_file(dir, "grafana") };
    stack::process::Proc::spawn("grafana", cmd, &dir.join("logs/grafana.log"), mode).map_err(|e| e.to_string())?;
    Ok(())
}

/// `daprd-args [<app-id>]`: the sidecars `make up` starts (all, or the one
/// named), as a JSON array: app id, ports, daprd's flags from
/// `daprd::args` and the app's rate limits, so deployment files that run daprd elsewhere
/// (docker-compose.yml, dapr.yaml) are checked against the one place the
/// flags are decided (tools/validate).
fn daprd_args(dir: &Path, args: &[String]) -> ExitCode {
    let services: Vec<Service> = match args {
        [] => Service::ALL.to_vec(),
        [id] if Service::ALL.iter().any(|s| s.app_id() == id) => {
            Service::ALL.into_iter().filter(|s| s.app_id() == id).collect()
        }
        _ => {
            let ids: Vec<&str> = Service::ALL.iter().map(|s| s.app_id()).collect();
            eprintln!("usage: stackctl daprd-args [<app-id>]   (one of {})", ids.join(", "));
            return ExitCode::from(2);
        }
    };
    let sidecars: Vec<serde_json::Value> = services
        .into_iter()
        .map(|service| {
            let ports = service.sidecar_ports();
            let spec = stack::daprd::SidecarSpec {
                app_id: service.app_id().into(),
                app_port: service.app_port(),
                ports,
                resources_dir: paths::components_dir(),
                config_file: paths::components_dir().join("config.yaml"),
                workdir: dir.to_owned(),
                env: Vec::new(),
                log_level: UP_LOG_LEVEL.into(),
                sentry_address: None,
            };
            serde_json::json!({
                "app_id": service.app_id(),
                "binary": service.binary(),
                "app_port": service.app_port(),
                "dapr_http_port": ports.http,
                "dapr_grpc_port": ports.grpc,
                "dapr_internal_grpc_port": ports.internal_grpc,
                "metrics_port": ports.metrics,
                "args": stack::daprd::args(&spec),
                // The app's RATE_LIMIT_* settings under make up, which the
                // production profile repeats (tools/validate).
                "rate_limits": service
                    .env(Runtime::Native)
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("RATE_LIMIT_"))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            })
        })
        .collect();
    println!("{}", serde_json::Value::Array(sidecars));
    ExitCode::SUCCESS
}

/// `up [--runtime native|wasmedge]`; without the flag, `STACK_RUNTIME`, else native.
fn up_runtime(args: &[String]) -> Result<Runtime, String> {
    match args {
        [] => Runtime::from_env().map_err(|e| e.to_string()),
        [flag, name] if flag == "--runtime" => Runtime::parse(name).map_err(|e| e.to_string()),
        _ => Err(format!("unexpected arguments {args:?}")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let dir = stack_dir();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("up") => {
            let runtime = match up_runtime(&args[1..]) {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("stackctl up: {e}\nusage: stackctl up [--runtime native|wasmedge]");
                    return ExitCode::from(2);
                }
            };
            match up(&dir, runtime).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("stackctl up: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("supervise") => {
            let start = args[1..].iter().any(|a| a == "--start");
            let result = match up_runtime(&[]) {
                Ok(runtime) => supervise::run(&dir, runtime, start).await,
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = result {
                eprintln!("stackctl supervise: {e}");
            }
            ExitCode::FAILURE
        }
        Some("logs") => {
            let follow = args[1..].iter().any(|a| a == "-f" || a == "--follow");
            let name = args[1..].iter().find(|a| !a.starts_with('-')).map(String::as_str);
            let mut all = components(&dir, &layout(&dir));
            let mut supervisor = all[0].clone();
            supervisor.name = "supervisor".into();
            supervisor.log_files = vec![dir.join("logs/supervisor.log")];
            supervisor.json_log = false;
            all.push(supervisor);
            match logs::select(all, name) {
                Ok(picked) => {
                    logs::run(&picked, follow).await;
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("stackctl logs: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Some("down") => {
            if down(&dir) == 0 {
                println!("nothing was running");
            }
            ExitCode::SUCCESS
        }
        Some("daprd-args") => daprd_args(&dir, &args[1..]),
        Some("status") => {
            if status(&dir).await {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        _ => {
            eprintln!("usage: stackctl up [--runtime native|wasmedge] | down | status | logs [<component>] [--follow] | supervise | daprd-args [<app-id>]   (data, logs and pids under {})", dir.display());
            ExitCode::from(2)
        }
    }
}
