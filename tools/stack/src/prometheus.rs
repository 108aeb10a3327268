//! Prometheus with the repository's configuration (`observability/`): the
//! same `prometheus.yml` and rules `docker compose` mounts, and target files
//! written here for this stack's ports (compose has its own, by host name).

use crate::client::HttpClient;
use crate::process::{Mode, Proc};
use crate::{paths, Error};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What Prometheus scrapes: one app's `/metrics` or one sidecar's.
#[derive(Debug, Clone)]
pub struct Target {
    pub app_id: String,
    pub port: u16,
    /// `apps` or `daprd`: the job, and its target file.
    pub job: &'static str,
}

#[derive(Debug)]
pub struct Prometheus {
    pub port: u16,
    pub dir: PathBuf,
    proc: Option<Proc>,
}

impl Prometheus {
    /// Lays out `dir` as Prometheus expects relative paths to resolve:
    /// `prometheus.yml` and `rules/` linked from the repository, `targets/`
    /// written for `targets`.
    pub async fn start(dir: &Path, port: u16, targets: &[Target], mode: Mode) -> Result<Self, Error> {
        let source = paths::repo_root().join("observability");
        let targets_dir = dir.join("targets");
        std::fs::create_dir_all(&targets_dir).map_err(|e| Error::io(&targets_dir, e))?;
        for name in ["prometheus.yml", "rules"] {
            let link = dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(source.join(name), &link).map_err(|e| Error::io(&link, e))?;
        }
        for job in ["apps", "daprd"] {
            let groups: Vec<_> = targets
                .iter()
                .filter(|t| t.job == job)
                .map(|t| json!({"targets": [format!("127.0.0.1:{}", t.port)], "labels": {"app_id": t.app_id}}))
                .collect();
            let file = targets_dir.join(format!("{job}.json"));
            std::fs::write(&file, serde_json::to_vec_pretty(&groups).unwrap_or_default())
                .map_err(|e| Error::io(&file, e))?;
        }
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg("--storage.tsdb.retention.time=2d")
            .current_dir(dir);
        let log = dir.join("prometheus.log");
        let mut proc = Proc::spawn("prometheus", cmd, &log, mode)?;
        let mut prom = Prometheus { port, dir: dir.to_owned(), proc: None };
        let url = prom.url("/-/ready");
        crate::wait_for_http(
            "prometheus",
            Duration::from_secs(60),
            &url,
            || proc.is_running(),
            "prometheus exited (is it installed? run `make deps`)",
        )
        .await
        .map_err(|e| Error::msg(format!("{e}\n--- prometheus log ---\n{}", crate::process::tail(&log, 25))))?;
        prom.proc = Some(proc);
        Ok(prom)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, path.trim_start_matches('/'))
    }

    /// An instant query; the `data.result` array.
    pub async fn query(&self, client: &HttpClient, promql: &str) -> Result<Vec<serde_json::Value>, Error> {
        query_at(client, &self.url(""), promql).await
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}

/// An instant query to the Prometheus at `base` (`http://host:port/`, any
/// Prometheus, this harness's or another's); the `data.result` array.
pub async fn query_at(client: &HttpClient, base: &str, promql: &str) -> Result<Vec<serde_json::Value>, Error> {
    let url = format!("{}/api/v1/query?query={}", base.trim_end_matches('/'), encode(promql));
    let reply = client.get(&url).await?;
    let body = reply.json();
    if body["status"] != "success" {
        return Err(Error::msg(format!("query {promql:?}: {}", reply.text())));
    }
    Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Percent-encoding for a query-string value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
