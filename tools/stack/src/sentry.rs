//! Dapr's certificate authority for the production profile: Sentry on
//! 127.0.0.1, issuing every daprd its workload certificate, so sidecars
//! talk mTLS and the callee's access control can verify who calls (without
//! it, Dapr applies the default action to every caller).

use crate::process::{Mode, Proc};
use crate::{wait_until, Error};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[derive(Debug)]
pub struct Sentry {
    pub port: u16,
    /// The CA certificate (PEM) every daprd trusts (`DAPR_TRUST_ANCHORS`).
    pub trust_anchors: String,
    proc: Option<Proc>,
}

/// Sentry's own Configuration: mTLS on.
const SENTRY_CONFIG: &str = "apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: daprsystem
spec:
  mtls:
    enabled: true
    workloadCertTTL: 24h
    allowedClockSkew: 15m
";

impl Sentry {
    /// Starts Sentry in `dir`; it makes its own root and issuer there.
    pub async fn start(dir: &Path, mode: Mode) -> Result<Self, Error> {
        let binary = crate::paths::sentry();
        if !binary.exists() {
            return Err(Error::msg(format!("{} is missing: build it with `make daprd`", binary.display())));
        }
        let credentials = dir.join("credentials");
        std::fs::create_dir_all(&credentials).map_err(|e| Error::io(&credentials, e))?;
        let config = dir.join("sentry-config.yaml");
        std::fs::write(&config, SENTRY_CONFIG).map_err(|e| Error::io(&config, e))?;
        let (port, healthz, metrics) = (crate::free_port(), crate::free_port(), crate::free_port());
        let mut cmd = Command::new(binary);
        cmd.arg("--issuer-credentials")
            .arg(&credentials)
            .arg("--config")
            .arg(&config)
            .args(["--trust-domain", "localhost", "--listen-address", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--healthz-listen-address", "127.0.0.1"])
            .args(["--healthz-port", &healthz.to_string(), "--metrics-listen-address", "127.0.0.1"])
            .args(["--metrics-port", &metrics.to_string()]);
        let mut proc = Proc::spawn("sentry", cmd, &dir.join("sentry.log"), mode)?;
        let ca = credentials.join("ca.crt");
        let log = dir.join("sentry.log");
        wait_until("sentry", Duration::from_secs(30), || {
            let running = proc.is_running();
            let ca = ca.clone();
            async move {
                if !running {
                    return Err(Error::msg("sentry exited"));
                }
                Ok(ca.exists() && tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok())
            }
        })
        .await
        .map_err(|e| Error::msg(format!("{e}\n--- sentry log ---\n{}", crate::process::tail(&log, 25))))?;
        let trust_anchors = std::fs::read_to_string(&ca).map_err(|e| Error::io(&ca, e))?;
        Ok(Self { port, trust_anchors, proc: Some(proc) })
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}
