//! A whole stack: Redis, MariaDB (when events-service is in it), and each
//! service beside its own daprd, all on 127.0.0.1.

use crate::client::HttpClient;
use crate::daprd::{Sidecar, SidecarPorts, SidecarSpec};
use crate::mariadb::MariaDb;
use crate::nginx::{Nginx, NginxSpec};
use crate::process::{Mode, Proc};
use crate::prometheus::{Prometheus, Target};
use crate::redis::Redis;
use crate::sentry::Sentry;
use crate::service::{Runtime, Service};
use crate::zipkin::Zipkin;
use crate::{paths, wait_until, Error};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};

/// Where the events database lives.
#[derive(Debug, Clone)]
pub enum Database {
    /// One MariaDB per test binary, a fresh database per stack.
    Shared,
    /// A MariaDB of this stack's own, on `port` (fault tests stop it).
    Own { port: u16 },
}

/// Where the stack's spans go.
#[derive(Debug, Clone, PartialEq)]
pub enum Tracing {
    /// Not exported: daprd samples nothing, the apps export nothing (trace
    /// context still flows, and logs still carry trace ids).
    Off,
    /// The test binary's Zipkin ([`crate::zipkin::shared`]).
    SharedZipkin,
    /// A Zipkin of this stack's own on `port` (`make up`: 9411).
    OwnZipkin { port: u16 },
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub services: Vec<Service>,
    pub runtime: Runtime,
    pub mode: Mode,
    /// `make up` uses the documented ports; tests take free ones.
    pub fixed_ports: bool,
    pub dir: PathBuf,
    pub database: Database,
    pub redis_port: u16,
    /// Extra settings for every service (e.g. smaller limits in a test).
    pub service_env: Vec<(String, String)>,
    pub log_level: String,
    pub tracing: Tracing,
    /// A Prometheus scraping this stack, on this port.
    pub prometheus_port: Option<u16>,
    /// The web front (nginx) in front of the sidecars, when asked for.
    pub web: Option<WebOptions>,
    /// Detached only: keep every component whose pid file names a live
    /// process (adopt it) and start only the rest, in the usual order
    /// (`make up` on a partly-up stack, the supervisor's restarts).
    pub adopt_running: bool,
    /// Ports for these services instead of the fixed or free ones (a stack
    /// started on free ports keeps them across restarts).
    pub service_ports: Vec<(Service, u16, SidecarPorts)>,
    /// The production profile's protections (tokens, mTLS, access control).
    pub profile: Profile,
}

/// Which of the two profiles the stack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `make up`: loopback is the boundary, no tokens.
    Development,
    /// What compose and Kubernetes deploy: a Dapr API token per sidecar and
    /// an app API token per app (random per stack), Sentry and mTLS between
    /// sidecars, and events-service's access control from
    /// components/compose/events-config.yaml.
    Production,
}

/// One service's credentials in the production profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// What its daprd requires on its API (`dapr-api-token`).
    pub dapr: String,
    /// What its app requires from its daprd (`APP_API_TOKEN`).
    pub app: String,
}

impl Tokens {
    fn random() -> Result<Self, Error> {
        Ok(Self { dapr: crate::random_hex()?, app: crate::random_hex()? })
    }
}

#[derive(Debug, Clone)]
pub struct WebOptions {
    /// `None`: a free port.
    pub port: Option<u16>,
    /// The Zipkin the page links trace ids to.
    pub zipkin_url: String,
}

impl WebOptions {
    /// `ZIPKIN_URL` from the environment, else Zipkin's default port here.
    pub fn new(port: Option<u16>) -> Self {
        let zipkin_url = std::env::var("ZIPKIN_URL").ok().filter(|v| !v.is_empty());
        Self { port, zipkin_url: zipkin_url.unwrap_or_else(|| crate::nginx::DEFAULT_ZIPKIN_URL.into()) }
    }
}

impl StackOptions {
    /// A test stack: free ports, attached processes, a fresh scratch folder,
    /// the services under the runtime `STACK_RUNTIME` names (native by
    /// default), so one suite runs against each.
    #[expect(clippy::panic, reason = "a misspelt STACK_RUNTIME fails the test that asked for a stack")]
    pub fn test(services: &[Service]) -> Self {
        let runtime = Runtime::from_env().unwrap_or_else(|e| panic!("{e}"));
        Self {
            services: services.to_vec(),
            runtime,
            mode: Mode::Attached,
            fixed_ports: false,
            dir: paths::scratch_dir().join(format!("stack-{}", crate::unique_id())),
            database: Database::Shared,
            redis_port: crate::free_port(),
            service_env: Vec::new(),
            log_level: "info".into(),
            tracing: Tracing::Off,
            prometheus_port: None,
            web: None,
            adopt_running: false,
            service_ports: Vec::new(),
            profile: Profile::Development,
        }
    }

    /// The production profile (see [`Profile::Production`]).
    pub fn production(mut self) -> Self {
        self.profile = Profile::Production;
        self
    }

    /// Spans to the test binary's Zipkin.
    pub fn with_tracing(mut self) -> Self {
        self.tracing = Tracing::SharedZipkin;
        self
    }

    /// daprd's tracing on (sampling as in components/config.yaml, spans to
    /// the test binary's Zipkin) while the apps record no spans or metrics
    /// and export nothing: what daprd alone costs (`make bench-observability`).
    pub fn with_only_daprd_tracing(mut self) -> Self {
        self.tracing = Tracing::SharedZipkin;
        self.with_env("TRACING", "false").with_env("METRICS", "false").with_env("ZIPKIN_ENDPOINT", "")
    }

    /// A Prometheus of this stack's own, on a free port.
    pub fn with_prometheus(mut self) -> Self {
        self.prometheus_port = Some(crate::free_port());
        self
    }

    /// Adds the web front on a free port (needs all three services).
    pub fn with_web(mut self) -> Self {
        self.web = Some(WebOptions::new(None));
        self
    }

    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.service_env.push((name.into(), value.into()));
        self
    }

    pub fn with_runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = runtime;
        self
    }

    pub fn with_own_database(mut self) -> Self {
        self.database = Database::Own { port: crate::free_port() };
        self
    }
}

/// One service, running beside its sidecar.
#[derive(Debug)]
pub struct RunningService {
    pub service: Service,
    pub app_port: u16,
    pub sidecar: Sidecar,
    /// Its tokens, in the production profile.
    pub tokens: Option<Tokens>,
    env: Vec<(String, String)>,
    runtime: Runtime,
    mode: Mode,
    log: PathBuf,
    proc: Option<Proc>,
    /// The app runs inside the test process ([`Stack::add_in_process`]),
    /// not as a process of the harness's.
    in_process: bool,
}

impl RunningService {
    /// A URL on the app itself (bypassing the sidecar).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.app_port, path.trim_start_matches('/'))
    }

    /// A URL through the sidecar's invoke API, as other services call it.
    pub fn invoke_url(&self, path: &str) -> String {
        self.sidecar.invoke_url(path)
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last `lines` of the app's log and of its sidecar's, to explain
    /// a failed expectation.
    pub fn logs_tail(&self, lines: usize) -> String {
        let (app, sidecar) = (crate::process::tail(&self.log, lines), crate::process::tail(self.sidecar.log(), lines));
        format!("--- {} log ---\n{app}\n--- its daprd log ---\n{sidecar}", self.service.app_id())
    }

    /// The environment the service runs with (ports, model paths, …).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// kill -9 the app and start it again without waiting for it (to time
    /// its start-up); [`RunningService::restart`] also waits.
    pub fn respawn(&mut self) -> Result<(), Error> {
        self.kill();
        self.launch()
    }

    fn launch(&mut self) -> Result<(), Error> {
        let cmd = self.runtime.command(self.service, &self.env);
        self.proc = Some(Proc::spawn(self.service.app_id(), cmd, &self.log, self.mode.clone())?);
        Ok(())
    }

    /// kill -9 the app (its sidecar stays).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    pub async fn restart(&mut self, timeout: Duration) -> Result<(), Error> {
        self.kill();
        self.launch()?;
        self.wait_ready(timeout).await
    }

    /// Waits for `/healthz` on the app, then for daprd's own health.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let client = HttpClient::new(Duration::from_secs(2));
        let url = self.url("/healthz");
        let name = self.service.app_id();
        let log = self.log.clone();
        let (proc, in_process) = (&mut self.proc, self.in_process);
        wait_until(name, timeout, || {
            let running = in_process || proc.as_mut().map(|p| p.is_running()).unwrap_or(false);
            let (client, url) = (client.clone(), url.clone());
            async move {
                if !running {
                    return Err(Error::msg(format!("{name} exited")));
                }
                Ok(client.get(&url).await.map(|r| r.status.is_success()).unwrap_or(false))
            }
        })
        .await
        .map_err(|e| Error::msg(format!("{e}\n--- {name} log ---\n{}", crate::process::tail(&log, 25))))?;
        self.sidecar.wait_healthy(timeout).await
    }
}

/// A running stack. Attached stacks stop when dropped.
#[derive(Debug)]
pub struct Stack {
    pub dir: PathBuf,
    pub redis: Redis,
    /// Present when the stack has its own MariaDB.
    pub mariadb: Option<MariaDb>,
    /// The events database URL (what the secret store holds).
    pub database_url: Option<String>,
    pub services: Vec<RunningService>,
    pub client: HttpClient,
    pub runtime: Runtime,
    /// Where spans go, when the stack exports them.
    pub zipkin: Option<Arc<Zipkin>>,
    pub prometheus: Option<Prometheus>,
    /// Present when the options asked for the web front.
    pub web: Option<Nginx>,
    launch: Launch,
    /// Last, so it goes after every process above has stopped.
    _scratch: Option<ScratchDir>,
}

/// A test stack's folder under the scratch space: removed with the stack
/// after a passing test, kept with its logs after a failing one (the stack
/// is dropped while the test's panic unwinds).
#[derive(Debug)]
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// What starting a service (or one more replica of it) needs to know.
#[derive(Debug)]
struct Launch {
    opts: StackOptions,
    dir: PathBuf,
    redis_address: String,
    secrets_file: PathBuf,
    /// Where the services send spans ("" = nowhere), and the daprd
    /// Configuration rendered for this stack (render_dapr_config).
    spans_endpoint: String,
    dapr_config: PathBuf,
    /// The production profile's CA, and events-service's Configuration
    /// with access control.
    sentry: Option<Arc<Sentry>>,
    events_dapr_config: Option<PathBuf>,
}

impl Launch {
    fn pid_mode(&self, name: &str) -> Mode {
        match &self.opts.mode {
            Mode::Attached => Mode::Attached,
            _ => Mode::detached(self.dir.join("run").join(format!("{name}.pid")), self.opts.adopt_running),
        }
    }

    /// Starts `service` and its daprd, without waiting; `suffix` tells
    /// replicas' logs and pid files apart.
    fn service(&self, service: Service, suffix: &str, fixed_ports: bool) -> Result<RunningService, Error> {
        let mut running = self.sidecar_for(service, suffix, fixed_ports, self.opts.runtime)?;
        running.launch()?;
        Ok(running)
    }

    /// Starts the daprd of one instance of `service` and settles its app's
    /// port and environment (paths as `runtime` sees them); the app itself
    /// is not started.
    fn sidecar_for(
        &self,
        service: Service,
        suffix: &str,
        fixed_ports: bool,
        runtime: Runtime,
    ) -> Result<RunningService, Error> {
        let opts = &self.opts;
        let logs = self.dir.join("logs");
        let given = opts.service_ports.iter().find(|(s, _, _)| *s == service && suffix.is_empty());
        let (app_port, ports) = if let Some((_, app, sidecar)) = given {
            (*app, *sidecar)
        } else if fixed_ports {
            (service.app_port(), service.sidecar_ports())
        } else {
            (crate::free_port(), SidecarPorts::free())
        };
        let mut env: Vec<(String, String)> = vec![
            ("APP_ID".into(), service.app_id().into()),
            ("APP_PORT".into(), app_port.to_string()),
            ("DAPR_HTTP_PORT".into(), ports.http.to_string()),
            ("RUST_LOG".into(), std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())),
            ("ZIPKIN_ENDPOINT".into(), self.spans_endpoint.clone()),
        ];
        env.extend(service.env(runtime));
        let tokens = match opts.profile {
            Profile::Development => None,
            Profile::Production => Some(Tokens::random()?),
        };
        if let Some(t) = &tokens {
            env.extend([("DAPR_API_TOKEN".into(), t.dapr.clone()), ("APP_API_TOKEN".into(), t.app.clone())]);
        }
        // A test's setting replaces the default of the same name rather than
        // following it (WasmEdge's --env does not promise the last wins).
        env.retain(|(name, _)| !opts.service_env.iter().any(|(n, _)| n == name));
        env.extend(opts.service_env.iter().cloned());
        let name = format!("{}{suffix}", service.app_id());
        let config_file = match (&self.events_dapr_config, service) {
            (Some(events), Service::Events) => events.clone(),
            _ => self.dapr_config.clone(),
        };
        let mut sidecar_env = vec![
            ("REDIS_HOST".into(), self.redis_address.clone()),
            ("SECRETS_FILE".into(), self.secrets_file.display().to_string()),
        ];
        if let Some(t) = &tokens {
            sidecar_env.extend([("DAPR_API_TOKEN".into(), t.dapr.clone()), ("APP_API_TOKEN".into(), t.app.clone())]);
        }
        let mut spec = SidecarSpec {
            app_id: service.app_id().into(),
            app_port,
            ports,
            resources_dir: paths::components_dir(),
            config_file,
            workdir: self.dir.clone(),
            env: sidecar_env,
            log_level: opts.log_level.clone(),
            sentry_address: None,
        };
        if let Some(sentry) = &self.sentry {
            spec.sentry_address = Some(sentry.address());
            spec.env.push(("DAPR_TRUST_ANCHORS".into(), sentry.trust_anchors.clone()));
        }
        let sidecar =
            Sidecar::start(spec, &logs.join(format!("daprd-{name}.log")), self.pid_mode(&format!("daprd-{name}")))?;
        Ok(RunningService {
            service,
            app_port,
            sidecar,
            tokens,
            env,
            runtime,
            mode: self.pid_mode(&name),
            log: logs.join(format!("{name}.log")),
            proc: None,
            in_process: false,
        })
    }
}

static SHARED_MARIADB: OnceCell<Arc<Mutex<MariaDb>>> = OnceCell::const_new();

/// The test binary's MariaDB, started on first use.
pub async fn shared_mariadb() -> Result<Arc<Mutex<MariaDb>>, Error> {
    SHARED_MARIADB
        .get_or_try_init(|| async {
            let dir = paths::scratch_dir().join(format!("mariadb-{}", crate::unique_id()));
            let db = MariaDb::start(&dir, crate::free_port(), Mode::Attached).await?;
            Ok::<_, Error>(Arc::new(Mutex::new(db)))
        })
        .await
        .cloned()
}

const STARTUP: Duration = Duration::from_secs(90);

/// components/config.yaml as this stack's daprd reads it: the one file, with
/// the Zipkin endpoint pointed at this stack's Zipkin, or sampling at zero
/// when spans go nowhere. Everything else is untouched.
fn render_dapr_config(dir: &Path, spans_endpoint: Option<&str>) -> Result<PathBuf, Error> {
    let source = paths::components_dir().join("config.yaml");
    let text = std::fs::read_to_string(&source).map_err(|e| Error::io(&source, e))?;
    let mut found = (false, false);
    let rendered: Vec<String> = text
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            let key = line.trim_start();
            if key.starts_with("endpointAddress:") {
                found.0 = true;
                return format!(
                    "{indent}endpointAddress: \"{}\"",
                    spans_endpoint.unwrap_or("http://127.0.0.1:9/api/v2/spans")
                );
            }
            if key.starts_with("samplingRate:") {
                found.1 = true;
                if spans_endpoint.is_none() {
                    return format!("{indent}samplingRate: \"0\"");
                }
            }
            line.to_owned()
        })
        .collect();
    if found != (true, true) {
        return Err(Error::msg(format!(
            "{}: no tracing.samplingRate or zipkin.endpointAddress to set",
            source.display()
        )));
    }
    let out = dir.join("dapr-config.yaml");
    std::fs::write(&out, rendered.join("\n") + "\n").map_err(|e| Error::io(&out, e))?;
    Ok(out)
}

/// events-service's Configuration in the production profile: this stack's
/// rendered config plus the `accessControl` block of the one compose
/// deploys (components/compose/events-config.yaml), so the policy tested
/// is the policy shipped.
fn render_events_config(dir: &Path, dapr_config: &Path) -> Result<PathBuf, Error> {
    let source = paths::components_dir().join("compose/events-config.yaml");
    let shipped = std::fs::read_to_string(&source).map_err(|e| Error::io(&source, e))?;
    let block: Vec<&str> = shipped
        .lines()
        .skip_while(|l| *l != "  accessControl:")
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.is_empty() || l.starts_with("   ") || l.trim_start().starts_with('#'))
        .map(|(_, l)| l)
        .collect();
    if block.is_empty() {
        return Err(Error::msg(format!("{}: no spec.accessControl", source.display())));
    }
    let base = std::fs::read_to_string(dapr_config).map_err(|e| Error::io(dapr_config, e))?;
    let out = dir.join("dapr-config-events.yaml");
    let text = format!("{}\n{}\n", base.trim_end(), block.join("\n"));
    std::fs::write(&out, text).map_err(|e| Error::io(&out, e))?;
    Ok(out)
}

impl Stack {
    pub async fn start(opts: StackOptions) -> Result<Stack, Error> {
        opts.runtime.check(&opts.services)?;
        let dir = opts.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let dir = dir.canonicalize().map_err(|e| Error::io(&dir, e))?;
        let pid_file = |name: &str| match &opts.mode {
            Mode::Attached => Mode::Attached,
            _ => Mode::detached(dir.join("run").join(format!("{name}.pid")), opts.adopt_running),
        };

        let redis = Redis::start(&dir.join("redis"), opts.redis_port, pid_file("redis")).await?;
        let zipkin = match opts.tracing {
            Tracing::Off => None,
            Tracing::SharedZipkin => Some(crate::zipkin::shared().await?),
            Tracing::OwnZipkin { port } => {
                Some(Arc::new(Zipkin::start(&dir.join("zipkin"), port, pid_file("zipkin")).await?))
            }
        };
        let spans_endpoint = zipkin.as_ref().map(|z| z.spans_endpoint());
        let dapr_config = render_dapr_config(&dir, spans_endpoint.as_deref())?;
        let (sentry, events_dapr_config) = match opts.profile {
            Profile::Development => (None, None),
            Profile::Production => {
                let sentry = Sentry::start(&dir.join("sentry"), pid_file("sentry")).await?;
                (Some(Arc::new(sentry)), Some(render_events_config(&dir, &dapr_config)?))
            }
        };

        let (mariadb, database_url) = if opts.services.contains(&Service::Events) {
            match &opts.database {
                Database::Own { port } => {
                    let db = MariaDb::start(&dir.join("mariadb"), *port, pid_file("mariadb")).await?;
                    let url = db.create_database("events")?;
                    (Some(db), Some(url))
                }
                Database::Shared => {
                    let shared = shared_mariadb().await?;
                    let db = shared.lock().await;
                    let url = db.create_database(&format!("events_{}", crate::unique_id()))?;
                    (None, Some(url))
                }
            }
        } else {
            (None, None)
        };

        // The local-file secret store reads this; only events-service may.
        let secrets_file = dir.join("secrets.json");
        let secrets = serde_json::json!({ "DB_URL": { "MYSQL": database_url.clone().unwrap_or_default() } });
        crate::write_private(&secrets_file, secrets.to_string().as_bytes())?;

        let launch = Launch {
            opts: opts.clone(),
            dir: dir.clone(),
            redis_address: redis.address(),
            secrets_file,
            spans_endpoint: spans_endpoint.clone().unwrap_or_default(),
            dapr_config,
            sentry,
            events_dapr_config,
        };
        let mut services: Vec<RunningService> = Vec::new();
        let mut ordered = opts.services.clone();
        ordered.sort();
        for service in ordered {
            // The sidecars share one SQLite name-resolution file, which the
            // first daprd to open it sets up (WAL mode, tables); two doing
            // that at once can leave one without name resolution. So the
            // first service starts alone and the rest once it is ready.
            if let [first] = services.as_mut_slice() {
                first.wait_ready(STARTUP).await?;
            }
            services.push(launch.service(service, "", opts.fixed_ports)?);
        }
        for s in &mut services {
            s.wait_ready(STARTUP).await?;
        }
        let prometheus = match opts.prometheus_port {
            None => None,
            Some(port) => {
                let targets: Vec<Target> = services
                    .iter()
                    .flat_map(|s| {
                        let app_id = s.service.app_id().to_owned();
                        [
                            Target { app_id: app_id.clone(), port: s.app_port, job: "apps" },
                            Target { app_id, port: s.sidecar.spec.ports.metrics, job: "daprd" },
                        ]
                    })
                    .collect();
                Some(Prometheus::start(&dir.join("prometheus"), port, &targets, pid_file("prometheus")).await?)
            }
        };
        let web = match &opts.web {
            Some(web) => {
                // The page links each trace id to this stack's Zipkin, when it has one.
                let mut web = web.clone();
                if let Some(z) = &zipkin {
                    web.zipkin_url = z.url("");
                }
                Some(start_web(&dir, &web, &services, &opts.service_env, pid_file("nginx")).await?)
            }
            None => None,
        };
        let scratch = paths::scratch_dir()
            .canonicalize()
            .ok()
            .filter(|root| opts.mode == Mode::Attached && dir.starts_with(root));
        Ok(Stack {
            _scratch: scratch.map(|_| ScratchDir(dir.clone())),
            zipkin,
            prometheus,
            dir,
            redis,
            mariadb,
            database_url,
            services,
            client: HttpClient::default(),
            runtime: opts.runtime,
            web,
            launch,
        })
    }

    /// Starts one more replica of `service`: its own process and its own
    /// daprd on free ports, under the same app id, so it shares the state
    /// store's keys with the others (`keyPrefix: appid`). Returns it once
    /// ready.
    pub async fn add_replica(&mut self, service: Service) -> Result<&RunningService, Error> {
        let n = self.services.iter().filter(|s| s.service == service).count();
        let mut replica = self.launch.service(service, &format!("-{n}"), false)?;
        replica.wait_ready(STARTUP).await?;
        self.services.push(replica);
        Ok(&self.services[self.services.len() - 1])
    }

    /// One more instance of `service` whose app the caller runs in its own
    /// process: its daprd is started for a port chosen here, and the app is
    /// to be built from [`RunningService::env`] (its `APP_PORT` and
    /// `DAPR_HTTP_PORT`, as every service of the stack gets them) with the
    /// service's own `app::build`. Wait for it with
    /// [`RunningService::wait_ready`] once the app runs.
    pub fn add_in_process(&mut self, service: Service) -> Result<&mut RunningService, Error> {
        let n = self.services.iter().filter(|s| s.service == service).count();
        // The test process is native, whatever runs the stack's own services.
        let mut instance = self.launch.sidecar_for(service, &format!("-in-process-{n}"), false, Runtime::Native)?;
        instance.in_process = true;
        self.services.push(instance);
        let last = self.services.len() - 1;
        Ok(&mut self.services[last])
    }

    /// Every running replica of `service`, the first one first.
    pub fn replicas(&self, service: Service) -> Vec<&RunningService> {
        self.services.iter().filter(|s| s.service == service).collect()
    }

    /// The web front; panics when the stack was started without it.
    #[expect(clippy::panic, reason = "asking a stack for a part it was not started with is a bug in the test")]
    pub fn web(&self) -> &Nginx {
        self.web.as_ref().unwrap_or_else(|| panic!("this stack has no web front (StackOptions::with_web)"))
    }

    #[expect(clippy::panic, reason = "asking a stack for a part it was not started with is a bug in the test")]
    pub fn service(&self, service: Service) -> &RunningService {
        self.services
            .iter()
            .find(|s| s.service == service)
            .unwrap_or_else(|| panic!("{} is not part of this stack", service.app_id()))
    }

    #[expect(clippy::panic, reason = "asking a stack for a part it was not started with is a bug in the test")]
    pub fn service_mut(&mut self, service: Service) -> &mut RunningService {
        self.services
            .iter_mut()
            .find(|s| s.service == service)
            .unwrap_or_else(|| panic!("{} is not part of this stack", service.app_id()))
    }

    /// Waits until `f` holds, for checks that settle (recovery after a fault).
    pub async fn eventually<F, Fut>(&self, what: &str, timeout: Duration, f: F) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, Error>>,
    {
        wait_until(what, timeout, f).await
    }
}

/// nginx in front of the sidecars, its body limit the services' own.
async fn start_web(
    dir: &Path,
    web: &WebOptions,
    services: &[RunningService],
    env: &[(String, String)],
    mode: Mode,
) -> Result<Nginx, Error> {
    let sidecar = |service: Service| {
        services
            .iter()
            .find(|s| s.service == service)
            .map(|s| format!("127.0.0.1:{}", s.sidecar.ports().http))
            .ok_or_else(|| Error::msg(format!("the web front needs {} in the stack", service.app_id())))
    };
    let max_body_bytes = match env.iter().rev().find(|(k, _)| k == "MAX_BODY_BYTES") {
        Some((_, v)) => v.parse().map_err(|_| Error::msg(format!("MAX_BODY_BYTES={v:?} is not a number")))?,
        None => crate::nginx::DEFAULT_MAX_BODY,
    };
    let spec = NginxSpec {
        port: web.port.unwrap_or_else(crate::free_port),
        web_root: crate::nginx::static_dir(),
        grayscale_dapr: sidecar(Service::Grayscale)?,
        classify_dapr: sidecar(Service::Classify)?,
        events_dapr: sidecar(Service::Events)?,
        zipkin_url: web.zipkin_url.clone(),
        max_body_bytes,
    };
    Nginx::start(&dir.join("nginx"), &spec, mode).await
}
