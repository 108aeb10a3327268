//! A MariaDB server of our own: its own data folder, port and socket, so it
//! never touches a system installation. Stoppable and restartable in place
//! (fault tests), with the data kept.

use crate::process::{Mode, Proc};
use crate::{wait_until, Error};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The account services use; created on first start with full rights on
/// the instance (it is ours alone, on loopback).
pub const USER: &str = "stack";

#[derive(Debug)]
pub struct MariaDb {
    dir: PathBuf,
    pub port: u16,
    password: String,
    mode: Mode,
    proc: Option<Proc>,
}

fn bin(name: &str) -> String {
    for dir in ["/usr/sbin", "/usr/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p.display().to_string();
        }
    }
    name.to_owned()
}

impl MariaDb {
    /// Initialises `dir` if it is new, starts the server, creates the user.
    pub async fn start(dir: &Path, port: u16, mode: Mode) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let password_file = dir.join("password");
        // 128 random bits, kept 0600 beside the data, never in an argv.
        let password = match std::fs::read_to_string(&password_file) {
            Ok(p) => {
                crate::write_private(&password_file, p.as_bytes())?;
                p.trim().to_owned()
            }
            Err(_) => {
                let p = crate::random_hex()?;
                crate::write_private(&password_file, p.as_bytes())?;
                p
            }
        };
        let data = dir.join("data");
        // A temp folder of its own: bootstraps running side by side in the
        // shared /tmp trip over each other's temporary tables.
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let fresh = !data.join("mysql").exists();
        if fresh {
            let out = Command::new(bin("mariadb-install-db"))
                .args(["--no-defaults", "--user=root", "--skip-test-db", "--auth-root-authentication-method=socket"])
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--tmpdir={}", tmp.display()))
                .output()
                .map_err(|e| {
                    Error::msg(format!("mariadb-install-db: {e} (is mariadb-server installed? run `make deps`)"))
                })?;
            if !out.status.success() {
                return Err(Error::msg(format!("mariadb-install-db failed: {}", String::from_utf8_lossy(&out.stderr))));
            }
        }
        let mut db = MariaDb { dir: dir.to_owned(), port, password, mode, proc: None };
        db.launch().await?;
        if fresh {
            db.root_sql(&format!(
                "CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1' IDENTIFIED BY '{pw}';\
                 CREATE USER IF NOT EXISTS '{USER}'@'localhost' IDENTIFIED BY '{pw}';\
                 GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1' WITH GRANT OPTION;\
                 GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'localhost' WITH GRANT OPTION;",
                pw = db.password
            ))?;
        }
        Ok(db)
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    async fn launch(&mut self) -> Result<(), Error> {
        let mut cmd = Command::new(bin("mariadbd"));
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={}", self.dir.join("mysqld.pid").display()))
            .arg(format!("--tmpdir={}", self.dir.join("tmp").display()))
            .arg(format!("--port={}", self.port))
            .args(["--bind-address=127.0.0.1", "--user=root", "--skip-name-resolve", "--log-error="])
            .args(["--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M", "--max-connections=500"]);
        let proc = Proc::spawn("mariadb", cmd, &self.dir.join("mariadb.log"), self.mode.clone())?;
        self.proc = Some(proc);
        let port = self.port;
        let result = wait_until("mariadb", Duration::from_secs(60), || {
            let running = self.proc.as_mut().map(|p| p.is_running()).unwrap_or(false);
            async move {
                if !running {
                    return Err(Error::msg("mariadbd exited"));
                }
                Ok(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok())
            }
        })
        .await;
        if let Err(e) = result {
            let tail = self.proc.as_ref().map(|p| p.log_tail(20)).unwrap_or_default();
            return Err(Error::msg(format!("{e}\n--- mariadb log ---\n{tail}")));
        }
        Ok(())
    }

    /// Runs SQL as root over the socket (set-up only). The SQL goes in on
    /// stdin: it may hold a password, which an argv would show to `ps`.
    pub fn root_sql(&self, sql: &str) -> Result<String, Error> {
        use std::io::Write;
        let mut child = Command::new(bin("mariadb"))
            .args(["--no-defaults", "--protocol=socket", "-uroot", "-N", "-B"])
            .arg(format!("--socket={}", self.socket().display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Error::msg(format!("mariadb client: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(sql.as_bytes()).map_err(|e| Error::msg(format!("mariadb client: {e}")))?;
        }
        let out = child.wait_with_output().map_err(|e| Error::msg(format!("mariadb client: {e}")))?;
        if !out.status.success() {
            return Err(Error::msg(format!("SQL failed: {}: {}", sql, String::from_utf8_lossy(&out.stderr))));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A new, empty database, and the URL services use to reach it.
    pub fn create_database(&self, name: &str) -> Result<String, Error> {
        self.root_sql(&format!("CREATE DATABASE IF NOT EXISTS `{name}`"))?;
        Ok(self.url(name))
    }

    pub fn url(&self, database: &str) -> String {
        format!("mysql://{USER}:{}@127.0.0.1:{}/{database}", self.password, self.port)
    }

    /// Stops the server (data kept): SIGTERM, as an operator would.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(30));
        }
    }

    /// Starts it again on the same port and data.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.stop();
        self.launch().await
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}
