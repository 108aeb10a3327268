//! `stackctl supervise`: the small detached process `make up` leaves
//! running (pid in `run/supervisor.pid`, log in `logs/supervisor.log`).
//! Every half second it looks at each component's pid and liveness check;
//! one that exited, or failed its check for longer than its grace period
//! (then it is killed), is started again through [`start_missing`] (the
//! code `make up` uses) after an exponential backoff (0.5 s, doubling,
//! capped at 30 s). After more than [`MAX_FAILURES`] failures within
//! [`WINDOW`] it gives up on that component. What it saw goes to
//! `run/supervisor.json`, which `make status` reads.
//!
//! What it restarts is its own child, so it reads the exit status of those;
//! of the processes `stackctl up` started (whose parent is gone) it can
//! only say that they are gone.

use crate::components::{check, components, pid_file, start_missing, Component, Layout, StartLock};
use stack::process::{exit_of, live_pid, read_pid_file, signal, Exit};
use stack::{HttpClient, Runtime};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(300);
const TICK: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct Watch {
    restarts: u32,
    last_exit: Option<String>,
    /// When it failed, within [`WINDOW`].
    failures: Vec<Instant>,
    unhealthy_since: Option<Instant>,
    /// The pid whose end was already counted (pending restart).
    counted_pid: Option<u32>,
    /// When its restart is due.
    due: Option<Instant>,
    gave_up: bool,
}

/// The backoff before the `n`th restart in the window (n from 1).
pub fn backoff(n: usize) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

fn log(line: &str) {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    println!("{h:02}:{m:02}:{s:02}.{:03} {line}", now.subsec_millis());
    let _ = std::io::stdout().flush();
}

fn write_state(dir: &Path, watches: &BTreeMap<String, Watch>) {
    let v: serde_json::Map<String, serde_json::Value> = watches
        .iter()
        .map(|(name, w)| {
            let state = serde_json::json!({"restarts": w.restarts, "last_exit": w.last_exit, "gave_up": w.gave_up});
            (name.clone(), state)
        })
        .collect();
    let tmp = dir.join("run/supervisor.json.tmp");
    if std::fs::write(&tmp, serde_json::Value::Object(v).to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join("run/supervisor.json"));
    }
}

/// What the supervisor recorded: name → (restarts, last exit, gave up).
pub fn read_state(dir: &Path) -> BTreeMap<String, (u64, Option<String>, bool)> {
    let text = std::fs::read_to_string(dir.join("run/supervisor.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, s)| {
                    let last = s["last_exit"].as_str().map(str::to_owned);
                    (k.clone(), (s["restarts"].as_u64().unwrap_or(0), last, s["gave_up"].as_bool().unwrap_or(false)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Why `c` is down now, if it is: exited (with status when it was our
/// child), or failing its liveness check for longer than its grace (then
/// it is killed here first).
async fn down_reason(dir: &Path, client: &HttpClient, c: &Component, w: &mut Watch) -> Option<(Option<u32>, String)> {
    let Some(pid) = read_pid_file(&pid_file(dir, &c.name)) else {
        return Some((None, "not running (no pid file)".into()));
    };
    if w.counted_pid == Some(pid) {
        return None;
    }
    match exit_of(pid) {
        Exit::Exited(status) => return Some((Some(pid), format!("exited: {status}"))),
        Exit::GoneNotOurChild => return Some((Some(pid), "exited (status unknown: not our child)".into())),
        Exit::Running if live_pid(&pid_file(dir, &c.name)).is_none() => return Some(dying(pid).await),
        Exit::Running => {}
    }
    if check(client, &c.live).await {
        w.unhealthy_since = None;
        return None;
    }
    let since = *w.unhealthy_since.get_or_insert_with(Instant::now);
    if since.elapsed() < c.grace {
        return None;
    }
    signal(pid, libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while matches!(exit_of(pid), Exit::Running) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some((Some(pid), format!("unhealthy: no answer to its health check for {} s, killed", since.elapsed().as_secs())))
}

/// A pid whose command line is gone: a process being torn down after a
/// kill -9 shows an empty one for a moment before `waitpid` can reap it,
/// so wait that moment for its status; a pid that stays unreapable was
/// reused by something else.
async fn dying(pid: u32) -> (Option<u32>, String) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match exit_of(pid) {
            Exit::Exited(status) => return (Some(pid), format!("exited: {status}")),
            Exit::GoneNotOurChild => return (Some(pid), "exited (status unknown: not our child)".into()),
            Exit::Running => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    (Some(pid), "exited (its pid now runs something else)".into())
}

/// Watches the stack in `dir` until killed; with `start`, first starts
/// what is down and writes the outcome to `run/start-result` (`stackctl up`
/// waits for it).
pub async fn run(dir: &Path, runtime: Runtime, start: bool) -> Result<(), String> {
    let layout =
        Layout::read(dir).ok_or_else(|| format!("{}: no ports.json (run stackctl up first)", dir.display()))?;
    if start {
        let started = match StartLock::take(dir) {
            Ok(_lock) => start_missing(dir, &layout, runtime).await,
            Err(e) => Err(e),
        };
        let result = match &started {
            Ok(()) => "ok\n".to_owned(),
            Err(e) => format!("{e}\n"),
        };
        let _ = std::fs::write(dir.join("run/start-result"), result);
        started?;
    }
    let all = components(dir, &layout);
    let client = HttpClient::new(Duration::from_secs(2));
    let mut watches: BTreeMap<String, Watch> = all.iter().map(|c| (c.name.clone(), Watch::default())).collect();
    log(&format!("supervising {} components in {} (backoff {:?} doubling to {:?}, give up after {MAX_FAILURES} failures in {:?})",
        all.len(), dir.display(), FIRST_BACKOFF, MAX_BACKOFF, WINDOW));
    write_state(dir, &watches);
    // The restart under way: the components it is for, since when, the task.
    type Restart = (Vec<String>, Instant, tokio::task::JoinHandle<Result<(), String>>);
    let mut restart: Option<Restart> = None;
    loop {
        let mut changed = false;
        for c in &all {
            let Some(w) = watches.get_mut(&c.name) else { continue };
            if w.gave_up || restart.as_ref().is_some_and(|(names, _, _)| names.contains(&c.name)) {
                continue;
            }
            let Some((pid, reason)) = down_reason(dir, &client, c, w).await else { continue };
            if w.due.is_some() && pid.is_none() {
                continue;
            }
            w.unhealthy_since = None;
            w.counted_pid = pid;
            w.last_exit = Some(reason.clone());
            w.failures.retain(|t| t.elapsed() < WINDOW);
            w.failures.push(Instant::now());
            changed = true;
            if w.failures.len() > MAX_FAILURES {
                w.gave_up = true;
                w.due = None;
                log(&format!(
                    "{} {reason}; {} failures in {} s: giving up on it",
                    c.name,
                    w.failures.len(),
                    WINDOW.as_secs()
                ));
                continue;
            }
            let wait = backoff(w.failures.len());
            w.due = Some(Instant::now() + wait);
            log(&format!(
                "{} {}{reason}; restart {} in {:.1} s",
                c.name,
                pid.map_or(String::new(), |p| format!("(pid {p}) ")),
                w.failures.len(),
                wait.as_secs_f64()
            ));
        }
        if let Some((names, started, handle)) = restart.take_if(|(_, _, h)| h.is_finished()) {
            let result = handle.await.unwrap_or_else(|e| Err(format!("the restart task failed: {e}")));
            for name in &names {
                let Some(w) = watches.get_mut(name) else { continue };
                let pid = live_pid(&pid_file(dir, name));
                w.counted_pid = None;
                w.unhealthy_since = None;
                match &result {
                    Ok(()) => {
                        w.restarts += 1;
                        log(&format!(
                            "restarted {name} (pid {}) in {:.1} s",
                            pid.map_or("-".into(), |p| p.to_string()),
                            started.elapsed().as_secs_f64()
                        ));
                    }
                    // Counted as one more failure on the next tick (a pid
                    // that is not live, or no pid file).
                    Err(e) => log(&format!("restarting {name} failed: {e}")),
                }
            }
            changed = true;
        }
        let now = Instant::now();
        let due: Vec<String> =
            watches.iter().filter(|(_, w)| w.due.is_some_and(|t| t <= now)).map(|(n, _)| n.clone()).collect();
        if restart.is_none() && !due.is_empty() {
            for name in &due {
                if let Some(w) = watches.get_mut(name) {
                    w.due = None;
                }
            }
            // In a task of its own, so the checks go on meanwhile: a
            // component that hangs while this start waits for it is still
            // killed after its grace, and the start then fails fast.
            let (task_dir, task_layout) = (dir.to_owned(), layout.clone());
            let handle = tokio::spawn(async move {
                let _lock = StartLock::take_async(&task_dir).await?;
                start_missing(&task_dir, &task_layout, runtime).await
            });
            restart = Some((due, Instant::now(), handle));
        }
        if changed {
            write_state(dir, &watches);
        }
        tokio::time::sleep(TICK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(7), Duration::from_secs(30));
        assert_eq!(backoff(100), Duration::from_secs(30));
    }
}
