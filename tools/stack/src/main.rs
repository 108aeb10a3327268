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
    let ours = ["mariadbd", "redis-server", "redis-check-rdb", "daprd", "nginx"].contains(&exe.as_str())
        || Service::ALL.iter().any(|s| s.binary() == exe)
        || exe.starts_with("wasmedge");
    ours.then_some(pid)
}

fn down(dir: &Path) -> usize {
    let mut stopped = 0;
    // Services and sidecars first, then the stores they use.
    let mut all = recorded(dir);
    all.sort_by_key(|(name, _)| matches!(name.as_str(), "mariadb" | "redis"));
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
        log_level: "info".into(),
        web: Some(WebOptions::new(Some(WEB_PORT))),
    };
    let started = Instant::now();
    let stack = Stack::start(opts).await.map_err(|e| e.to_string())?;
    let _ = std::fs::write(dir.join("runtime"), stack.runtime.name());
    // Detached processes outlive their handles; `down` finds them by pid.
    drop(stack);
    println!("the stack is up in {:.1} s\n", started.elapsed().as_secs_f64());
    status(dir).await;
    println!(
        "\nlogs:  {0}/logs/ (one file per service and sidecar), {0}/mariadb/mariadb.log, {0}/redis/redis.log, {0}/nginx/logs/\n\
         page:  http://127.0.0.1:{WEB_PORT}/ (after the /init below)\n\
         try:   curl http://localhost:9007/init\n       \
         curl http://localhost:9005/grayscale -X POST --data-binary '@../shared/images/hot_dog.jpg'\n\
         stop:  make down",
        dir.display()
    );
    Ok(())
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
        Some("status") => {
            if status(&dir).await {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        _ => {
            eprintln!("usage: stackctl up [--runtime native|wasmedge] | down | status   (data, logs and pids under {})", dir.display());
            ExitCode::from(2)
        }
    }
}
