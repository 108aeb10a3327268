//! Zipkin (the `io.zipkin:zipkin-server` exec jar that scripts/zipkin.sh
//! fetches), in-memory storage, on 127.0.0.1.

use crate::process::{Mode, Proc};
use crate::{paths, Error};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

pub const VERSION: &str = "3.6.1";

#[derive(Debug)]
pub struct Zipkin {
    pub port: u16,
    proc: Option<Proc>,
}

/// The jar scripts/zipkin.sh put in `.cache/zipkin/` (`ZIPKIN_JAR` overrides).
pub fn jar() -> PathBuf {
    std::env::var_os("ZIPKIN_JAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::repo_root().join(format!(".cache/zipkin/zipkin-server-{VERSION}-exec.jar")))
}

impl Zipkin {
    pub async fn start(dir: &Path, port: u16, mode: Mode) -> Result<Self, Error> {
        let jar = jar();
        if !jar.is_file() {
            return Err(Error::msg(format!(
                "{} is missing: run scripts/zipkin.sh (make test and make up do)",
                jar.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut cmd = Command::new("java");
        // A small heap and the C1 compiler only: Zipkin here holds one test
        // run's spans, and starts faster on two cores.
        cmd.args(["-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-jar"])
            .arg(&jar)
            .arg("--armeria.ports[0].ip=127.0.0.1")
            .arg(format!("--armeria.ports[0].port={port}"))
            .arg("--armeria.ports[0].protocols=http")
            .env("STORAGE_TYPE", "mem")
            .env("MEM_MAX_SPANS", "500000")
            .env("QUERY_PORT", port.to_string())
            .current_dir(dir);
        let log = dir.join("zipkin.log");
        let mut proc = Proc::spawn("zipkin", cmd, &log, mode)?;
        let mut zipkin = Zipkin { port, proc: None };
        let url = zipkin.url("/health");
        crate::wait_for_http(
            "zipkin",
            Duration::from_secs(120),
            &url,
            || proc.is_running(),
            "zipkin exited (is java installed? run `make deps`)",
        )
        .await
        .map_err(|e| Error::msg(format!("{e}\n--- zipkin log ---\n{}", crate::process::tail(&log, 25))))?;
        zipkin.proc = Some(proc);
        Ok(zipkin)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, path.trim_start_matches('/'))
    }

    /// Where daprd and the services send spans.
    pub fn spans_endpoint(&self) -> String {
        self.url("/api/v2/spans")
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}

static SHARED_ZIPKIN: OnceCell<Arc<Zipkin>> = OnceCell::const_new();

/// The test binary's Zipkin, started on first use (a JVM: once is enough;
/// tests tell their traces apart by trace id).
pub async fn shared() -> Result<Arc<Zipkin>, Error> {
    SHARED_ZIPKIN
        .get_or_try_init(|| async {
            let dir = paths::scratch_dir().join(format!("zipkin-{}", crate::unique_id()));
            Ok::<_, Error>(Arc::new(Zipkin::start(&dir, crate::free_port(), Mode::Attached).await?))
        })
        .await
        .cloned()
}
