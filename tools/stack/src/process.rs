//! Child processes we start and stop by pid, never by name.
//!
//! Two lifetimes: `Attached` processes (tests) die with the process that
//! started them, even when it is killed, because they are spawned from a
//! thread that lives as long as the process and carry PR_SET_PDEATHSIG;
//! `Detached` processes (`make up`) get their own session and a pid file, and
//! `stackctl down` stops them by that pid.
#![allow(unsafe_code)] // pre_exec hooks: prctl and setsid, async-signal-safe.

use crate::Error;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Dies with this process (tests).
    Attached,
    /// Outlives this process; its pid is written to `pid_file` (`make up`).
    Detached { pid_file: PathBuf },
    /// Already running detached as `pid` (a healthy component a second
    /// `make up` keeps): [`Proc::spawn`] starts nothing and hands back a
    /// handle on it, so the start code runs unchanged (its readiness wait
    /// passes at once) and only what is down gets started.
    Adopt { pid_file: PathBuf, pid: u32 },
}

impl Mode {
    /// `Detached` on `pid_file`, or `Adopt` when `adopt` and it names a
    /// live process of ours.
    pub fn detached(pid_file: PathBuf, adopt: bool) -> Mode {
        match live_pid(&pid_file).filter(|_| adopt) {
            Some(pid) => Mode::Adopt { pid_file, pid },
            None => Mode::Detached { pid_file },
        }
    }
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so
/// attached children are forked from one thread that never does.
#[expect(clippy::expect_used, reason = "without its spawner thread the harness can start nothing")]
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("stack-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("cannot start the spawner thread");
        Mutex::new(tx)
    })
}

/// A process this crate started.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pid: u32,
    child: Option<Child>,
    pub log: PathBuf,
    mode: Mode,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path, mode: Mode) -> Result<Proc, Error> {
        if let Mode::Adopt { pid_file, pid } = &mode {
            let mode = Mode::Detached { pid_file: pid_file.clone() };
            return Ok(Proc { name: name.to_owned(), pid: *pid, child: None, log: log.to_owned(), mode });
        }
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let out = OpenOptions::new().create(true).append(true).open(log).map_err(|e| Error::io(log, e))?;
        let err = out.try_clone().map_err(|e| Error::io(log, e))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let program = format!("{:?}", cmd.get_program());
        let child = match &mode {
            Mode::Attached => {
                // SAFETY: prctl is async-signal-safe; it touches no memory of ours.
                unsafe {
                    cmd.pre_exec(|| {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                let (tx, rx) = mpsc::channel();
                let sent = spawner().lock().map_err(|_| Error::msg("spawner lock poisoned"))?.send((cmd, tx));
                sent.map_err(|_| Error::msg("the spawner thread is gone"))?;
                rx.recv().map_err(|_| Error::msg("the spawner thread is gone"))?
            }
            Mode::Detached { .. } | Mode::Adopt { .. } => {
                // SAFETY: setsid is async-signal-safe.
                unsafe {
                    cmd.pre_exec(|| {
                        if libc::setsid() < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                cmd.spawn()
            }
        }
        .map_err(|e| Error::msg(format!("cannot start {name} ({program}): {e}")))?;
        let pid = child.id();
        if let Mode::Detached { pid_file } = &mode {
            write_pid_file(pid_file, pid)?;
        }
        Ok(Proc { name: name.to_owned(), pid, child: Some(child), log: log.to_owned(), mode })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it still runs (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => pid_alive(self.pid),
        }
    }

    /// SIGTERM, then SIGKILL after `grace`. Waits until it is gone.
    pub fn stop(&mut self, grace: Duration) {
        if self.is_running() {
            signal(self.pid, libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while self.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(25));
            }
            if self.is_running() {
                signal(self.pid, libc::SIGKILL);
            }
        }
        self.reap();
    }

    /// SIGKILL at once, as a crash would (fault tests).
    pub fn kill(&mut self) {
        if self.is_running() {
            signal(self.pid, libc::SIGKILL);
        }
        self.reap();
    }

    fn reap(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.wait();
        }
        if let Mode::Detached { pid_file } = &self.mode {
            let _ = std::fs::remove_file(pid_file);
        }
    }

    /// The last `lines` lines of its log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Proc {
    /// Attached processes go with their handle; detached ones stay up until
    /// `stackctl down` stops them by their pid file.
    fn drop(&mut self) {
        if self.pid != 0 && self.mode == Mode::Attached {
            self.stop(Duration::from_secs(5));
        }
    }
}

pub fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        if pid > 0 {
            // SAFETY: kill(2) with a pid we started; no memory involved.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }
}

/// The pid in `pid_file`, if that process is alive and still runs one of
/// our executables (a recycled pid is not ours to stop or keep).
pub fn live_pid(pid_file: &Path) -> Option<u32> {
    let pid = read_pid_file(pid_file)?;
    if !pid_alive(pid) {
        return None;
    }
    // A binary rebuilt while it runs shows as "<name> (deleted)".
    let exe = pid_exe(pid)?.file_name()?.to_str()?.trim_end_matches(" (deleted)").to_owned();
    // Debian's redis-server is a link to redis-check-rdb.
    let ours = [
        "mariadbd",
        "redis-server",
        "redis-check-rdb",
        "daprd",
        "nginx",
        "java",
        "prometheus",
        "grafana",
        "grafana-server",
        "stackctl",
    ]
    .contains(&exe.as_str())
        || crate::Service::ALL.iter().any(|s| s.binary() == exe)
        || exe.starts_with("wasmedge");
    ours.then_some(pid)
}

/// What became of a process, seen from the process that may be its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Running,
    /// Our child, and it exited: "exit status 1", "killed by signal 9".
    Exited(String),
    /// Gone, but another process was its parent: only that one could read
    /// its exit status.
    GoneNotOurChild,
}

/// Reaps `pid` if it is our child and has exited (waitpid, WNOHANG).
pub fn exit_of(pid: u32) -> Exit {
    let Ok(raw) = libc::pid_t::try_from(pid) else { return Exit::GoneNotOurChild };
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid with a valid out-pointer to a local.
    let got = unsafe { libc::waitpid(raw, &mut status, libc::WNOHANG) };
    if got == raw {
        if libc::WIFEXITED(status) {
            return Exit::Exited(format!("exit status {}", libc::WEXITSTATUS(status)));
        }
        if libc::WIFSIGNALED(status) {
            return Exit::Exited(format!("killed by signal {}", libc::WTERMSIG(status)));
        }
        return Exit::Exited(format!("wait status {status}"));
    }
    if got == 0 || pid_alive(pid) {
        return Exit::Running;
    }
    Exit::GoneNotOurChild
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie still "exists" for kill(0); /proc tells the truth.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().map(|rest| !rest.trim_start().starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

/// Memory of a process from `/proc/<pid>/status`, in KiB (0 when unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss_kib: u64,
    /// Of which anonymous: heap and stacks, not mapped files (`RssAnon`).
    pub anon_kib: u64,
    /// The most ever resident (`VmHWM`): the peak a memory cap must hold.
    pub peak_kib: u64,
}

pub fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Memory { rss_kib: field("VmRSS:"), anon_kib: field("RssAnon:"), peak_kib: field("VmHWM:") }
}

/// CPU time `pid` has used so far, user + system, all its threads
/// (`/proc/<pid>/stat` utime + stime, in clock ticks); zero once it is gone.
/// Deltas of this over a bench round tell which process the work went to.
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // After ')': state is index 0, so utime (field 14) is 11 and stime 12.
    let total = ticks(11) + ticks(12);
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = if per_second > 0 { per_second as u64 } else { 100 };
    std::time::Duration::from_secs_f64(total as f64 / per_second as f64)
}

/// The executable path of `pid`, to check a recorded pid is still ours.
pub fn pid_exe(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

fn write_pid_file(path: &Path, pid: u32) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::write(path, format!("{pid}\n")).map_err(|e| Error::io(path, e))
}

pub fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
