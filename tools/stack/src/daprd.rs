//! The Dapr sidecar beside each service: the daprd this project builds
//! (`tools/daprd`), standalone, on 127.0.0.1 only.

use crate::process::{Mode, Proc};
use crate::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SidecarPorts {
    pub http: u16,
    pub grpc: u16,
    pub internal_grpc: u16,
    /// Set explicitly: daprd's default, 9090, is Prometheus's.
    pub metrics: u16,
}

impl SidecarPorts {
    pub fn free() -> Self {
        Self {
            http: crate::free_port(),
            grpc: crate::free_port(),
            internal_grpc: crate::free_port(),
            metrics: crate::free_port(),
        }
    }
}

/// Everything that decides how one daprd runs.
#[derive(Debug, Clone)]
pub struct SidecarSpec {
    pub app_id: String,
    pub app_port: u16,
    pub ports: SidecarPorts,
    pub resources_dir: PathBuf,
    pub config_file: PathBuf,
    /// Working folder: the SQLite name-resolution file lives here, shared by
    /// every sidecar of one stack.
    pub workdir: PathBuf,
    /// Variables the component YAML reads with `envRef`.
    pub env: Vec<(String, String)>,
    pub log_level: String,
    /// The production profile: mTLS with certificates from this Sentry
    /// (the trust anchors go in `env` as `DAPR_TRUST_ANCHORS`).
    pub sentry_address: Option<String>,
}

/// daprd's command line for `spec`: the one place the flags are decided.
pub fn args(spec: &SidecarSpec) -> Vec<String> {
    let p = &spec.ports;
    [
        ("--app-id", spec.app_id.clone()),
        ("--app-port", spec.app_port.to_string()),
        ("--app-protocol", "http".into()),
        ("--app-channel-address", "127.0.0.1".into()),
        ("--dapr-listen-addresses", "127.0.0.1".into()),
        ("--dapr-http-port", p.http.to_string()),
        ("--dapr-grpc-port", p.grpc.to_string()),
        ("--dapr-internal-grpc-port", p.internal_grpc.to_string()),
        ("--metrics-port", p.metrics.to_string()),
        ("--resources-path", spec.resources_dir.display().to_string()),
        ("--config", spec.config_file.display().to_string()),
        // Images up to the services' own 16 MiB limit pass through invoke.
        ("--max-body-size", "32Mi".into()),
        ("--dapr-graceful-shutdown-seconds", "10".into()),
        ("--log-level", spec.log_level.clone()),
        ("--mode", "standalone".into()),
    ]
    .into_iter()
    .chain(spec.sentry_address.iter().map(|address| ("--sentry-address", address.clone())))
    .flat_map(|(k, v)| [k.to_owned(), v])
    .chain(spec.sentry_address.iter().map(|_| "--enable-mtls".to_owned()))
    .collect()
}

#[derive(Debug)]
pub struct Sidecar {
    pub spec: SidecarSpec,
    proc: Option<Proc>,
    mode: Mode,
    log: PathBuf,
}

impl Sidecar {
    pub fn start(spec: SidecarSpec, log: &Path, mode: Mode) -> Result<Self, Error> {
        let mut s = Sidecar { spec, proc: None, mode, log: log.to_owned() };
        s.launch()?;
        Ok(s)
    }

    fn launch(&mut self) -> Result<(), Error> {
        let daprd = crate::paths::daprd();
        if !daprd.exists() {
            return Err(Error::msg(format!("{} is missing: build it with `make daprd`", daprd.display())));
        }
        let mut cmd = Command::new(&daprd);
        cmd.args(args(&self.spec))
            .current_dir(&self.spec.workdir)
            .env("DAPR_HOST_IP", "127.0.0.1")
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.proc = Some(Proc::spawn(&format!("daprd-{}", self.spec.app_id), cmd, &self.log, self.mode.clone())?);
        Ok(())
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn ports(&self) -> SidecarPorts {
        self.spec.ports
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.ports.http)
    }

    /// The invoke URL of `method` on this sidecar's own app.
    pub fn invoke_url(&self, method: &str) -> String {
        format!("{}/v1.0/invoke/{}/method/{}", self.http_url(), self.spec.app_id, method.trim_start_matches('/'))
    }

    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.spec.ports.metrics)
    }

    /// Waits until daprd reports itself healthy, which includes its app.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<(), Error> {
        let url = format!("{}/v1.0/healthz", self.http_url());
        let name = format!("daprd {}", self.spec.app_id);
        let proc = &mut self.proc;
        let running = || proc.as_mut().map(|p| p.is_running()).unwrap_or(false);
        let result = crate::wait_for_http(&name, timeout, &url, running, "daprd exited").await;
        result.map_err(|e| Error::msg(format!("{e}\n--- {name} log ---\n{}", crate::process::tail(&self.log, 25))))?;
        // daprd stays healthy when its name resolution fails to start, but
        // then no other app can call this one ("no host found"): say so now.
        let log = crate::process::tail(&self.log, 400);
        if log.contains("initialization error occurred for nr") {
            return Err(Error::msg(format!(
                "{name} is up without name resolution (the shared nameresolution.db), so other apps cannot call it\n--- {name} log ---\n{}",
                crate::process::tail(&self.log, 25)
            )));
        }
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// kill -9, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(15));
        }
    }

    pub async fn restart(&mut self, timeout: Duration) -> Result<(), Error> {
        self.stop();
        self.launch()?;
        self.wait_healthy(timeout).await
    }
}
