//! What `make up` runs, where: the ports (fixed, or free ones chosen once
//! and recorded in `<stack dir>/ports.json`), each component's pid file,
//! health checks and logs, and the one way to start what is down
//! ([`start_missing`]), which `up` and the supervisor share.

use stack::daprd::SidecarPorts;
use stack::process::{live_pid, Mode};
use stack::{HttpClient, Runtime, Service, Stack, StackOptions, WebOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// daprd's log level under `make up` (and so in `stackctl daprd-args`).
pub const UP_LOG_LEVEL: &str = "info";

/// The ports of one `make up` stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub mariadb: u16,
    pub redis: u16,
    pub zipkin: u16,
    pub prometheus: u16,
    pub web: u16,
    pub grafana: u16,
    pub services: Vec<(Service, u16, SidecarPorts)>,
}

impl Layout {
    /// The documented ports (README): 3306, 6379, 9411, 9090, 8080, 9005-9007, …
    pub fn fixed() -> Self {
        Layout {
            mariadb: 3306,
            redis: 6379,
            zipkin: 9411,
            prometheus: 9090,
            web: stack::nginx::WEB_PORT,
            grafana: 3000,
            services: Service::ALL.iter().map(|s| (*s, s.app_port(), s.sidecar_ports())).collect(),
        }
    }

    /// Free ports on 127.0.0.1 now (a second stack beside `make up`'s: tests).
    pub fn free() -> Self {
        let p = stack::free_port;
        Layout {
            mariadb: p(),
            redis: p(),
            zipkin: p(),
            prometheus: p(),
            web: p(),
            grafana: p(),
            services: Service::ALL.iter().map(|s| (*s, p(), SidecarPorts::free())).collect(),
        }
    }

    fn file(dir: &Path) -> PathBuf {
        dir.join("ports.json")
    }

    /// The ports recorded in `dir`, if any.
    pub fn read(dir: &Path) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(Self::file(dir)).ok()?).ok()?;
        let port = |v: &serde_json::Value, k: &str| v[k].as_u64().and_then(|n| u16::try_from(n).ok());
        let mut services = Vec::new();
        for s in Service::ALL {
            let e = &v["services"][s.app_id()];
            let sidecar = SidecarPorts {
                http: port(e, "dapr_http")?,
                grpc: port(e, "dapr_grpc")?,
                internal_grpc: port(e, "dapr_internal_grpc")?,
                metrics: port(e, "metrics")?,
            };
            services.push((s, port(e, "app")?, sidecar));
        }
        Some(Layout {
            mariadb: port(&v, "mariadb")?,
            redis: port(&v, "redis")?,
            zipkin: port(&v, "zipkin")?,
            prometheus: port(&v, "prometheus")?,
            web: port(&v, "web")?,
            grafana: port(&v, "grafana")?,
            services,
        })
    }

    /// The recorded layout; else a new one (free ports when `free`), recorded.
    pub fn load_or_create(dir: &Path, free: bool) -> Result<Self, String> {
        if let Some(layout) = Self::read(dir) {
            return Ok(layout);
        }
        let layout = if free { Self::free() } else { Self::fixed() };
        let services: serde_json::Map<String, serde_json::Value> = layout
            .services
            .iter()
            .map(|(s, app, d)| {
                let v = serde_json::json!({"app": app, "dapr_http": d.http, "dapr_grpc": d.grpc,
                    "dapr_internal_grpc": d.internal_grpc, "metrics": d.metrics});
                (s.app_id().to_owned(), v)
            })
            .collect();
        let v = serde_json::json!({"mariadb": layout.mariadb, "redis": layout.redis, "zipkin": layout.zipkin,
            "prometheus": layout.prometheus, "web": layout.web, "grafana": layout.grafana, "services": services});
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = Self::file(dir);
        std::fs::write(&file, format!("{v:#}\n")).map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(layout)
    }

    pub fn ports(&self, service: Service) -> (u16, SidecarPorts) {
        self.services
            .iter()
            .find(|(s, _, _)| *s == service)
            .map(|(_, a, d)| (*a, *d))
            .unwrap_or_else(|| (service.app_port(), service.sidecar_ports()))
    }
}

/// How a component's liveness is checked.
#[derive(Debug, Clone)]
pub enum Health {
    Tcp(u16),
    Http(String),
}

/// One process of the stack, as status, the supervisor and logs see it.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    /// Where to reach it, for people (status).
    pub url: String,
    /// Liveness: the supervisor restarts it after `grace` of failing this.
    pub live: Health,
    /// Readiness as `make status` reports it (may depend on other
    /// components: an app's /readyz fails while its database is down).
    pub ready: Health,
    pub grace: Duration,
    pub log_files: Vec<PathBuf>,
    /// The service's own JSON log (printed readably by `make logs`).
    pub json_log: bool,
}

/// Every component of `make up`'s stack, in start order.
pub fn components(dir: &Path, layout: &Layout) -> Vec<Component> {
    let http = |port: u16, path: &str| Health::Http(format!("http://127.0.0.1:{port}{path}"));
    let one = |name: &str, url: String, live: Health, ready: Health, grace: u64, log: &str, json_log: bool| Component {
        name: name.to_owned(),
        url,
        live,
        ready,
        grace: Duration::from_secs(grace),
        log_files: vec![dir.join(log)],
        json_log,
    };
    let mut all = vec![
        one(
            "redis",
            format!("redis://127.0.0.1:{}", layout.redis),
            Health::Tcp(layout.redis),
            Health::Tcp(layout.redis),
            10,
            "redis/redis.log",
            false,
        ),
        one(
            "zipkin",
            format!("http://127.0.0.1:{}/zipkin/", layout.zipkin),
            http(layout.zipkin, "/health"),
            http(layout.zipkin, "/health"),
            30,
            "zipkin/zipkin.log",
            false,
        ),
        one(
            "mariadb",
            format!("mysql://127.0.0.1:{}", layout.mariadb),
            Health::Tcp(layout.mariadb),
            Health::Tcp(layout.mariadb),
            20,
            "mariadb/mariadb.log",
            false,
        ),
    ];
    let mut services = layout.services.clone();
    services.sort_by_key(|(s, _, _)| *s);
    for (s, app, d) in services {
        let id = s.app_id();
        all.push(one(
            &format!("daprd-{id}"),
            format!("http://127.0.0.1:{}", d.http),
            http(d.http, "/v1.0/healthz/outbound"),
            http(d.http, "/v1.0/healthz"),
            10,
            &format!("logs/daprd-{id}.log"),
            false,
        ));
        all.push(one(
            id,
            format!("http://127.0.0.1:{app}"),
            http(app, "/healthz"),
            http(app, "/readyz"),
            10,
            &format!("logs/{id}.log"),
            true,
        ));
    }
    all.push(one(
        "prometheus",
        format!("http://127.0.0.1:{}/", layout.prometheus),
        http(layout.prometheus, "/-/healthy"),
        http(layout.prometheus, "/-/ready"),
        30,
        "prometheus/prometheus.log",
        false,
    ));
    let mut nginx = one(
        "nginx",
        format!("http://127.0.0.1:{}", layout.web),
        http(layout.web, "/"),
        http(layout.web, "/"),
        10,
        "nginx/logs/nginx.log",
        false,
    );
    nginx.log_files.push(dir.join("nginx/logs/error.log"));
    all.push(nginx);
    all
}

pub fn pid_file(dir: &Path, name: &str) -> PathBuf {
    dir.join("run").join(format!("{name}.pid"))
}

/// Whether `health` answers now (TCP connect, or HTTP 2xx).
pub async fn check(client: &HttpClient, health: &Health) -> bool {
    match health {
        Health::Tcp(port) => {
            let connect = tokio::net::TcpStream::connect(("127.0.0.1", *port));
            matches!(tokio::time::timeout(Duration::from_secs(2), connect).await, Ok(Ok(_)))
        }
        Health::Http(url) => client.get(url).await.map(|r| r.status.is_success()).unwrap_or(false),
    }
}

/// The pid of every component that runs now, by name.
pub fn pids(dir: &Path, all: &[Component]) -> Vec<(String, Option<u32>)> {
    all.iter().map(|c| (c.name.clone(), live_pid(&pid_file(dir, &c.name)))).collect()
}

/// An exclusive lock on `<dir>/run/start.lock` while it lives, so `up` and
/// the supervisor never start the same component twice at once.
pub struct StartLock(std::fs::File);

impl StartLock {
    /// Waits for the lock without blocking the runtime's thread.
    pub async fn take_async(dir: &Path) -> Result<Self, String> {
        loop {
            if let Some(lock) = Self::lock(dir, false)? {
                return Ok(lock);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn take(dir: &Path) -> Result<Self, String> {
        Self::lock(dir, true)?.ok_or_else(|| "the start lock was not taken".to_owned())
    }

    fn lock(dir: &Path, wait: bool) -> Result<Option<Self>, String> {
        let path = dir.join("run/start.lock");
        std::fs::create_dir_all(dir.join("run")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let how = if wait { libc::LOCK_EX } else { libc::LOCK_EX | libc::LOCK_NB };
        // SAFETY: flock on a descriptor we own; with `wait`, blocks until the other holder is done.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::flock(file.as_raw_fd(), how) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if !wait && e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(format!("{}: {e}", path.display()));
        }
        Ok(Some(StartLock(file)))
    }
}

impl Drop for StartLock {
    fn drop(&mut self) {
        // SAFETY: unlocking the descriptor we locked.
        #[allow(unsafe_code)]
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Applies the migrations with the migrate CLI, as an operator would, so
/// the page works at once; it reads the URL from the secret store's file.
fn migrate_up(dir: &Path) -> Result<(), String> {
    let migrate = stack::paths::bin_dir().join("migrate");
    let out = std::process::Command::new(&migrate)
        .args(["--dir", &stack::paths::repo_root().join("migrations").display().to_string(), "up"])
        .env("SECRETS_FILE", dir.join("secrets.json"))
        .output()
        .map_err(|e| format!("{}: {e} (build it with `make build`)", migrate.display()))?;
    if !out.status.success() {
        return Err(format!("migrate up failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// Starts every component of the stack that is not running (the running
/// ones are adopted, as they are), in dependency order: stores, Zipkin,
/// MariaDB, then each sidecar and its service, Prometheus, nginx. The same
/// `Stack::start` the tests use. The caller holds the [`StartLock`].
pub async fn start_missing(dir: &Path, layout: &Layout, runtime: Runtime) -> Result<(), String> {
    let opts = StackOptions {
        services: Service::ALL.to_vec(),
        runtime,
        mode: Mode::Detached { pid_file: PathBuf::new() },
        fixed_ports: true,
        dir: dir.to_owned(),
        database: stack::stack::Database::Own { port: layout.mariadb },
        redis_port: layout.redis,
        service_env: vec![("LOG_FORMAT".into(), "json".into())],
        log_level: UP_LOG_LEVEL.into(),
        tracing: stack::Tracing::OwnZipkin { port: layout.zipkin },
        prometheus_port: Some(layout.prometheus),
        web: Some(WebOptions::new(Some(layout.web))),
        adopt_running: true,
        service_ports: layout.services.clone(),
        // `make up` is the development profile: loopback is the boundary.
        profile: stack::stack::Profile::Development,
    };
    let stack = Stack::start(opts).await.map_err(|e| e.to_string())?;
    let _ = std::fs::write(dir.join("runtime"), stack.runtime.name());
    migrate_up(dir)?;
    // Detached processes outlive their handles; `down` finds them by pid.
    drop(stack);
    Ok(())
}
