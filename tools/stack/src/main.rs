//! `stackctl up|down|status`: the local stack behind `make up`, `make down`
//! and `make status`. Processes are detached, recorded by pid under
//! `.stack/run/`, logs under `.stack/logs/`, data under `.stack/`.
//! `up --runtime wasmedge` runs the services under WasmEdge (`make wasmedge`
//! first); `.stack/runtime` records which runtime is up.

use stack::process::{pid_alive, pid_exe, read_pid_file, signal};
use stack::nginx::WEB_PORT;
use stack::{paths, HttpClient, Mode, Runtime, Service, Stack, StackOptions, WebOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const MARIADB_PORT: u16 = 3306;
const REDIS_PORT: u16 = 6379;
const ZIPKIN_PORT: u16 = 9411;
const PROMETHEUS_PORT: u16 = 9090;
const GRAFANA_PORT: u16 = 3000;
/// daprd's log level under `make up` (and so in `stackctl daprd-args`).
const UP_LOG_LEVEL: &str = "info";

fn stack_dir() -> PathBuf {
    std::env::var_os("STACK_DIR").map(PathBuf::from).unwrap_or_else(|| paths::repo_root().join(".stack"))
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

/// The pid in `pid_file`, if that process is alive and still runs one of
/// our executables (a recycled pid is not ours to stop).
fn live_pid(pid_file: &Path) -> Option<u32> {
    let pid = read_pid_file(pid_file)?;
    if !pid_alive(pid) {
        return None;
    }
    // A binary rebuilt while it runs shows as "<name> (deleted)".
    let exe = pid_exe(pid)?.file_name()?.to_str()?.trim_end_matches(" (deleted)").to_owned();
    // Debian's redis-server is a link to redis-check-rdb.
    let ours = [
        "mariadbd", "redis-server", "redis-check-rdb", "daprd", "nginx", "java", "prometheus", "grafana", "grafana-server",
    ]
    .contains(&exe.as_str())
        || Service::ALL.iter().any(|s| s.binary() == exe)
        || exe.starts_with("wasmedge");
    ours.then_some(pid)
}

fn down(dir: &Path) -> usize {
    let mut stopped = 0;
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
            signal(pid, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while pid_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if pid_alive(pid) {
                signal(pid, libc::SIGKILL);
            }
            println!("stopped {name} (pid {pid})");
            stopped += 1;
        }
        let _ = std::fs::remove_file(&pid_file);
    }
    stopped
}

async fn status(dir: &Path) -> bool {
    let client = HttpClient::new(Duration::from_secs(2));
    let mut all_up = true;
    println!("{:<28} {:<8} {:<9} {:<9} URL", "COMPONENT", "PID", "STATE", "RUNTIME");
    let runtime = std::fs::read_to_string(dir.join("runtime")).unwrap_or_else(|_| "native".into());
    let line = |name: &str, url: String, healthy: Option<bool>, runtime: &str| {
        let pid = live_pid(&dir.join("run").join(format!("{name}.pid")));
        let state = match (pid, healthy) {
            (None, _) => "stopped",
            (Some(_), Some(false)) => "unhealthy",
            _ => "running",
        };
        println!("{:<28} {:<8} {:<9} {:<9} {url}", name, pid.map_or("-".into(), |p| p.to_string()), state, runtime);
        state == "running"
    };
    all_up &= line("mariadb", format!("mysql://127.0.0.1:{MARIADB_PORT}"), None, "-");
    all_up &= line("redis", format!("redis://127.0.0.1:{REDIS_PORT}"), None, "-");
    for (name, url, health) in [
        ("zipkin", format!("http://127.0.0.1:{ZIPKIN_PORT}/zipkin/"), "/health"),
        ("prometheus", format!("http://127.0.0.1:{PROMETHEUS_PORT}/"), "/-/ready"),
    ] {
        let base = url.trim_end_matches('/').trim_end_matches("/zipkin");
        let healthy = client.get(&format!("{base}{health}")).await.map(|r| r.status.is_success()).ok();
        all_up &= line(name, url, Some(healthy.unwrap_or(false)), "-");
    }
    if grafana_binary().is_some() {
        let url = format!("http://127.0.0.1:{GRAFANA_PORT}/");
        let healthy = client.get(&format!("{url}api/health")).await.map(|r| r.status.is_success()).ok();
        all_up &= line("grafana", url, Some(healthy.unwrap_or(false)), "-");
    }
    for s in Service::ALL {
        let url = format!("http://127.0.0.1:{}", s.app_port());
        let healthy = client.get(&format!("{url}/readyz")).await.map(|r| r.status.is_success()).ok();
        all_up &= line(s.app_id(), url, Some(healthy.unwrap_or(false)), runtime.trim());
        let sidecar = format!("http://127.0.0.1:{}", s.sidecar_ports().http);
        let healthy = client.get(&format!("{sidecar}/v1.0/healthz")).await.map(|r| r.status.is_success()).ok();
        all_up &= line(&format!("daprd-{}", s.app_id()), sidecar, Some(healthy.unwrap_or(false)), "-");
    }
    let web = format!("http://127.0.0.1:{WEB_PORT}");
    let healthy = client.get(&format!("{web}/")).await.map(|r| r.status.is_success()).ok();
    all_up &= line("nginx", web, Some(healthy.unwrap_or(false)), "-");
    all_up
}

async fn up(dir: &Path, runtime: Runtime) -> Result<(), String> {
    let running = std::fs::read_to_string(dir.join("runtime")).unwrap_or_default();
    if running.trim() == runtime.name()
        && !recorded(dir).is_empty()
        && recorded(dir).iter().all(|(_, p)| live_pid(p).is_some())
        && status(dir).await
    {
        println!("\nthe stack is already up");
        return Ok(());
    }
    // A half-up stack, or one under the other runtime: stop what is left of
    // it, then start everything.
    down(dir);
    let _ = std::fs::remove_file(dir.join("runtime"));
    runtime.check(&Service::ALL).map_err(|e| format!("{e}\n(for `make up`, the native binaries come from `cargo build --release --bins`)"))?;
    let opts = StackOptions {
        services: Service::ALL.to_vec(),
        runtime,
        mode: Mode::Detached { pid_file: PathBuf::new() },
        fixed_ports: true,
        dir: dir.to_owned(),
        database: stack::stack::Database::Own { port: MARIADB_PORT },
        redis_port: REDIS_PORT,
        service_env: vec![("LOG_FORMAT".into(), "json".into())],
        log_level: UP_LOG_LEVEL.into(),
        tracing: stack::Tracing::OwnZipkin { port: ZIPKIN_PORT },
        prometheus_port: Some(PROMETHEUS_PORT),
        web: Some(WebOptions::new(Some(WEB_PORT))),
    };
    let started = Instant::now();
    let stack = Stack::start(opts).await.map_err(|e| e.to_string())?;
    let _ = std::fs::write(dir.join("runtime"), stack.runtime.name());
    // Detached processes outlive their handles; `down` finds them by pid.
    drop(stack);
    start_grafana(dir)?;
    println!("the stack is up in {:.1} s\n", started.elapsed().as_secs_f64());
    status(dir).await;
    println!(
        "\nlogs:  {0}/logs/ (one file per service and sidecar), {0}/mariadb/mariadb.log, {0}/redis/redis.log, {0}/nginx/logs/\n\
         page:  http://127.0.0.1:{WEB_PORT}/ (after the /init below)\n\
         look:  Zipkin http://127.0.0.1:{ZIPKIN_PORT}/zipkin/  Prometheus http://127.0.0.1:{PROMETHEUS_PORT}/  metrics: GET /metrics on every app\n\
         try:   curl http://localhost:9007/init\n       \
         curl http://localhost:9005/grayscale -X POST --data-binary '@../shared/images/hot_dog.jpg'\n\
         stop:  make down",
        dir.display()
    );
    Ok(())
}

/// Grafana, when one is installed (it is not packaged for this machine:
/// `docker compose up` runs it); otherwise say so and go on.
fn grafana_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| [dir.join("grafana-server"), dir.join("grafana")])
        .find(|p| p.is_file())
}

fn start_grafana(dir: &Path) -> Result<(), String> {
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
        .env("GF_SERVER_HTTP_PORT", GRAFANA_PORT.to_string())
        .env("GF_PATHS_DATA", dir.join("grafana/data"))
        .env("GF_PATHS_LOGS", dir.join("grafana/logs"))
        .env("GF_PATHS_PROVISIONING", repo.join("grafana/provisioning"))
        .env("GF_AUTH_ANONYMOUS_ENABLED", "true")
        .env("GF_AUTH_ANONYMOUS_ORG_ROLE", "Viewer")
        .env("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", repo.join("grafana/dashboards/service-overview.json"))
        .env("GRAFANA_DASHBOARDS_DIR", repo.join("grafana/dashboards"))
        .env("PROMETHEUS_URL", format!("http://127.0.0.1:{PROMETHEUS_PORT}"))
        .env("ZIPKIN_URL", format!("http://127.0.0.1:{ZIPKIN_PORT}"));
    let mode = Mode::Detached { pid_file: dir.join("run/grafana.pid") };
    stack::process::Proc::spawn("grafana", cmd, &dir.join("logs/grafana.log"), mode).map_err(|e| e.to_string())?;
    Ok(())
}

/// `daprd-args [<app-id>]`: the sidecars `make up` starts (all, or the one
/// named), as a JSON array: app id, ports, and daprd's flags from
/// `daprd::args`, so deployment files that run daprd elsewhere
/// (docker-compose.yml, dapr.yaml) are checked against the one place the
/// flags are decided (tools/validate).
fn daprd_args(dir: &Path, args: &[String]) -> ExitCode {
    let services: Vec<Service> = match args {
        [] => Service::ALL.to_vec(),
        [id] if Service::ALL.iter().any(|s| s.app_id() == id) => Service::ALL.into_iter().filter(|s| s.app_id() == id).collect(),
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
                    eprintln!("stopping what was started");
                    down(&dir);
                    ExitCode::FAILURE
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
            eprintln!("usage: stackctl up [--runtime native|wasmedge] | down | status | daprd-args [<app-id>]   (data, logs and pids under {})", dir.display());
            ExitCode::from(2)
        }
    }
}
