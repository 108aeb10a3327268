//! A Redis server of our own (the Dapr state store), no persistence: state
//! here is per-IP bookkeeping and limiter buckets, which may be lost.

use crate::process::{Mode, Proc};
use crate::{wait_until, Error};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Debug)]
pub struct Redis {
    dir: PathBuf,
    pub port: u16,
    mode: Mode,
    proc: Option<Proc>,
}

impl Redis {
    pub async fn start(dir: &Path, port: u16, mode: Mode) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut r = Redis { dir: dir.to_owned(), port, mode, proc: None };
        r.launch().await?;
        Ok(r)
    }

    async fn launch(&mut self) -> Result<(), Error> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            // Durable across a stop and start: the event spool (kit::spool)
            // holds acknowledged events here. The append-only file is
            // fsynced every second and flushed on shutdown.
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(&self.dir);
        self.proc = Some(Proc::spawn("redis", cmd, &self.dir.join("redis.log"), self.mode.clone())?);
        let port = self.port;
        wait_until("redis", Duration::from_secs(20), || {
            let running = self.proc.as_mut().map(|p| p.is_running()).unwrap_or(false);
            async move {
                if !running {
                    return Err(Error::msg("redis-server exited (is redis-server installed? run `make deps`)"));
                }
                Ok(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok())
            }
        })
        .await
    }

    /// `host:port`, as the state store component's `redisHost` wants it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs one `redis-cli` command and returns its raw output (tests).
    pub fn cli(&self, args: &[&str]) -> Result<String, Error> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--raw"])
            .args(args)
            .output()
            .map_err(|e| Error::msg(format!("redis-cli: {e}")))?;
        if !out.status.success() {
            return Err(Error::msg(format!("redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr))));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    pub async fn restart(&mut self) -> Result<(), Error> {
        self.restart_after(Duration::ZERO).await
    }

    /// Stops Redis, leaves it away for `down` (clients meanwhile see an
    /// outage), and starts it again on the same data.
    pub async fn restart_after(&mut self, down: Duration) -> Result<(), Error> {
        self.stop();
        tokio::time::sleep(down).await;
        self.launch().await
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}
