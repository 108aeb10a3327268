//! One launcher for the real components, used by `make up` (through
//! `stackctl`) and by every integration test (through [`Stack`]).
//!
//! Everything listens on 127.0.0.1. Tests take free ports chosen at run time
//! and attached processes that die with the test binary; `make up` takes the
//! documented fixed ports and detached processes recorded by pid.

pub mod client;
pub mod daprd;
pub mod mariadb;
pub mod nginx;
pub mod paths;
pub mod process;
pub mod prometheus;
pub mod redis;
pub mod sentry;
pub mod service;
pub mod stack;
pub mod zipkin;

pub use client::{HttpClient, Reply};
/// HTTP methods for [`HttpClient::request`].
pub use hyper::Method;
pub use process::Mode;
pub use service::{Runtime, Service};
pub use stack::{RunningService, Stack, StackOptions, Tracing, WebOptions};

use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Msg(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl Error {
    pub fn msg(m: impl Into<String>) -> Self {
        Error::Msg(m.into())
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.display().to_string(), source }
    }
}

/// A port free on 127.0.0.1 now, never handed out twice by this process.
///
/// Taken below the kernel's ephemeral range (ip_local_port_range), not from
/// a bind to port 0: a port from that range, free when checked, can be taken
/// by any outgoing connection before the component binds it (daprd then
/// dies with "could not listen on any endpoint"). Below the range, only a
/// listener can take it.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let ceiling = ephemeral_floor().clamp(12_000, 65_535);
    let floor = 10_000u16;
    // Start somewhere that differs between test processes, then walk.
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    let span = u64::from(ceiling - floor);
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for step in 0..span {
        let port = floor + ((seed + step * 7) % span) as u16;
        if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.push(port);
        return port;
    }
    // Everything below the range is busy: fall back to the kernel's choice.
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0);
    given.push(port);
    port
}

/// The first port the kernel hands to outgoing connections (32768 on Linux
/// by default).
fn ephemeral_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(32_768)
}

/// Polls `check` until it returns `Ok(true)` or `timeout` passes; `Err` from
/// `check` aborts at once (the process died, say).
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, Error>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::msg(format!("{what}: not ready within {} s", timeout.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until GET `url` answers 2xx, while `running` says the process that
/// should answer is alive (else fails at once with `exited`).
pub async fn wait_for_http(
    what: &str,
    timeout: Duration,
    url: &str,
    mut running: impl FnMut() -> bool,
    exited: &str,
) -> Result<(), Error> {
    let client = HttpClient::new(Duration::from_secs(2));
    wait_until(what, timeout, || {
        let alive = running();
        let client = client.clone();
        async move {
            if !alive {
                return Err(Error::msg(exited));
            }
            Ok(client.get(url).await.map(|r| r.status.is_success()).unwrap_or(false))
        }
    })
    .await
}

/// A fresh id for names of databases, folders and the like.
/// 128 random bits as hex, from the kernel: passwords and tokens.
pub fn random_hex() -> Result<String, Error> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let path = std::path::Path::new("/dev/urandom");
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut bytes)).map_err(|e| Error::io(path, e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `contents` to `path`, readable by this user only (0600), for
/// passwords and the secret store's file.
pub fn write_private(path: &std::path::Path, contents: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    // An older file keeps its mode through open: tighten it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| Error::io(path, e))?;
    file.write_all(contents).map_err(|e| Error::io(path, e))
}

pub fn unique_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}_{n}_{:x}", std::process::id(), nanos & 0xffff)
}
