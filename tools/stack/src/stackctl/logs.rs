//! `stackctl logs [<name>] [--follow]`: one component's log, or all of
//! them, each line prefixed with the component's name, as `docker compose
//! logs` does. The services' JSON lines are printed readably (time, level,
//! message, trace id, other fields); the files stay as they are.

use crate::components::Component;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

/// The components `name` picks: the one of that name, else every one whose
/// name contains it (`grayscale`: the service and its sidecar).
pub fn select(all: Vec<Component>, name: Option<&str>) -> Result<Vec<Component>, String> {
    let Some(name) = name else { return Ok(all) };
    if let Some(c) = all.iter().find(|c| c.name == name) {
        return Ok(vec![c.clone()]);
    }
    let names: Vec<String> = all.iter().map(|c| c.name.clone()).collect();
    let picked: Vec<Component> = all.into_iter().filter(|c| c.name.contains(name)).collect();
    if picked.is_empty() {
        return Err(format!("no component named {name:?}; there are: {}", names.join(", ")));
    }
    Ok(picked)
}

/// A service's JSON log line as `time level message trace_id=… k=v`; any
/// other line unchanged.
pub fn readable(line: &str) -> String {
    let Ok(serde_json::Value::Object(mut v)) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.to_owned();
    };
    let mut take = |k: &str| match v.remove(k) {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let (time, level, message, trace) = (take("timestamp"), take("level"), take("message"), take("trace_id"));
    for k in ["target", "service", "span", "span_id"] {
        v.remove(k);
    }
    let mut out = format!("{time} {level:<5} {message}");
    if !trace.is_empty() {
        out.push_str(&format!(" trace_id={trace}"));
    }
    for (k, val) in v {
        match val {
            serde_json::Value::String(s) => out.push_str(&format!(" {k}={s}")),
            other => out.push_str(&format!(" {k}={other}")),
        }
    }
    out
}

struct Followed {
    prefix: String,
    file: PathBuf,
    json: bool,
    offset: u64,
    partial: String,
}

impl Followed {
    /// Prints the complete lines added since the last call.
    fn print_new(&mut self, out: &mut impl Write) {
        let Ok(mut f) = std::fs::File::open(&self.file) else { return };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            // Truncated or replaced: start over.
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset || f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        let Ok(n) = f.take(len - self.offset).read_to_end(&mut buf) else { return };
        self.offset += n as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            let text = if self.json { readable(line) } else { line.to_owned() };
            let _ = writeln!(out, "{} | {text}", self.prefix);
        }
    }
}

/// Prints the logs of `picked`, then, with `follow`, what they add until
/// interrupted.
pub async fn run(picked: &[Component], follow: bool) {
    let width = picked.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut files: Vec<Followed> = picked
        .iter()
        .flat_map(|c| {
            c.log_files.iter().map(move |f| Followed {
                prefix: format!("{:<width$}", c.name),
                file: f.clone(),
                json: c.json_log,
                offset: 0,
                partial: String::new(),
            })
        })
        .collect();
    let stdout = std::io::stdout();
    for f in &mut files {
        f.print_new(&mut stdout.lock());
    }
    if !follow {
        return;
    }
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        for f in &mut files {
            f.print_new(&mut stdout.lock());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_become_readable_and_others_stay() {
        let line = r#"{"timestamp":"2026-12-02T12:00:00Z","level":"INFO","target":"kit","service":"events","message":"request","status":200,"trace_id":"abc","span_id":"1"}"#;
        assert_eq!(readable(line), "2026-12-02T12:00:00Z INFO  request trace_id=abc status=200");
        assert_eq!(readable("time=\"x\" level=info msg=\"daprd\""), "time=\"x\" level=info msg=\"daprd\"");
    }
}
