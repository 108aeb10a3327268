//! The web front: Debian's nginx serving `web/static` and reverse-proxying
//! `/api/*` to the services through their sidecars, configured from
//! `web/nginx/default.conf.template` (the same file the official nginx image
//! renders) and `web/nginx/nginx.conf` (the main context for an nginx of our
//! own, run with `-p <prefix>`, everything under the stack's folder).

use crate::process::{Mode, Proc};
use crate::{paths, Error};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The port `make up` serves the page on.
pub const WEB_PORT: u16 = 8080;
/// Where the page links trace ids when nothing else is said (`ZIPKIN_URL`).
pub const DEFAULT_ZIPKIN_URL: &str = "http://127.0.0.1:9411";
/// The services' default `MAX_BODY_BYTES` (kit::config), which nginx mirrors.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// nginx's per-address `limit_req` on /api/ under `make up`, where loopback
/// is the boundary: high enough that no bench or test meets it (compose
/// sets its own, docker-compose.yml). `WEB_RATE` / `WEB_BURST` override.
pub const DEFAULT_WEB_RATE: &str = "1000r/s";
pub const DEFAULT_WEB_BURST: &str = "2000";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

/// Everything the config template needs.
#[derive(Debug, Clone)]
pub struct NginxSpec {
    pub port: u16,
    pub web_root: PathBuf,
    /// `host:port` of each sidecar's HTTP API.
    pub grayscale_dapr: String,
    pub classify_dapr: String,
    pub events_dapr: String,
    pub zipkin_url: String,
    pub max_body_bytes: usize,
}

impl NginxSpec {
    /// The template's variables, by the names the template uses.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WEB_PORT", self.port.to_string()),
            ("WEB_ROOT", self.web_root.display().to_string()),
            ("GRAYSCALE_DAPR", self.grayscale_dapr.clone()),
            ("CLASSIFY_DAPR", self.classify_dapr.clone()),
            ("EVENTS_DAPR", self.events_dapr.clone()),
            // The upstreams are 127.0.0.1 addresses, which nginx never looks
            // up; its resolver directive still needs a server.
            ("WEB_RESOLVER", "127.0.0.1".to_owned()),
            ("ZIPKIN_URL", self.zipkin_url.trim_end_matches('/').to_owned()),
            ("WEB_MAX_BODY", self.max_body_bytes.to_string()),
            ("WEB_RATE", env_or("WEB_RATE", DEFAULT_WEB_RATE)),
            ("WEB_BURST", env_or("WEB_BURST", DEFAULT_WEB_BURST)),
            // Each sidecar's Dapr API token: none under make up (an empty
            // proxy_set_header sends no header); compose sets them.
            ("GRAYSCALE_DAPR_TOKEN", env_or("GRAYSCALE_DAPR_TOKEN", "")),
            ("CLASSIFY_DAPR_TOKEN", env_or("CLASSIFY_DAPR_TOKEN", "")),
            ("EVENTS_DAPR_TOKEN", env_or("EVENTS_DAPR_TOKEN", "")),
        ]
    }
}

/// `web/nginx` in the repository.
pub fn config_dir() -> PathBuf {
    paths::repo_root().join("web/nginx")
}

/// `web/static` in the repository.
pub fn static_dir() -> PathBuf {
    paths::repo_root().join("web/static")
}

/// The nginx binary (`NGINX`, else `nginx` on PATH, else Debian's /usr/sbin/nginx).
fn nginx_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NGINX").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("nginx")).find(|c| c.is_file()))
        .unwrap_or_default();
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

/// Replaces each `${NAME}` of `vars` in `template`, as envsubst does with a
/// list of names. A `${…}` left over is a variable nobody defined: an error
/// here rather than an nginx that fails to parse, or worse, parses it.
pub fn render(template: &str, vars: &[(&str, String)]) -> Result<String, Error> {
    let mut out = template.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    if let Some(at) = out.find("${") {
        let rest = &out[at..];
        let end = rest.find('}').map_or(rest.len(), |i| i + 1);
        return Err(Error::msg(format!("nginx template: {} is not defined", &rest[..end])));
    }
    Ok(out)
}

#[derive(Debug)]
pub struct Nginx {
    pub port: u16,
    /// nginx's prefix: rendered config, logs, temp files, pid.
    pub dir: PathBuf,
    proc: Option<Proc>,
}

impl Nginx {
    /// Renders the config into `dir` and starts nginx on it. Attached (test)
    /// runs use one process (`master_process off`), so the death signal the
    /// harness sets reaches everything that serves; `make up` keeps the
    /// master and its worker.
    pub async fn start(dir: &Path, spec: &NginxSpec, mode: Mode) -> Result<Nginx, Error> {
        for sub in ["logs", "temp"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        let src = config_dir();
        let read = |name: &str| {
            let p = src.join(name);
            std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))
        };
        let server = render(&read("default.conf.template")?, &spec.vars())?;
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| Error::io(&p, e))
        };
        write("default.conf", &server)?;
        write("nginx.conf", &read("nginx.conf")?)?;

        let log = dir.join("logs/nginx.log");
        let mut cmd = Command::new(nginx_binary());
        cmd.arg("-p").arg(dir).arg("-e").arg(dir.join("logs/error.log")).arg("-c").arg(dir.join("nginx.conf"));
        if mode == Mode::Attached {
            cmd.args(["-g", "master_process off;"]);
        }
        let mut proc = Proc::spawn("nginx", cmd, &log, mode)?;
        let url = format!("http://127.0.0.1:{}/", spec.port);
        let error_log = dir.join("logs/error.log");
        let exited = "nginx exited (is nginx installed? run `make deps`)";
        let ready = crate::wait_for_http("nginx", Duration::from_secs(20), &url, || proc.is_running(), exited).await;
        if let Err(e) = ready {
            let tail = format!("{}\n{}", crate::process::tail(&log, 10), crate::process::tail(&error_log, 10));
            return Err(Error::msg(format!("{e}\n--- nginx log ---\n{tail}")));
        }
        Ok(Nginx { port: spec.port, dir: dir.to_owned(), proc: Some(proc) })
    }

    /// A URL on the web front.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, path.trim_start_matches('/'))
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_replaces_braced_names_and_leaves_nginx_variables() {
        let out = render("listen ${WEB_PORT}; set $x $remote_addr;", &[("WEB_PORT", "8080".into())]);
        assert_eq!(out.ok().as_deref(), Some("listen 8080; set $x $remote_addr;"));
    }

    #[test]
    fn render_refuses_an_undefined_variable() {
        let err = render("proxy_pass http://${EVENTS_DAPR}/;", &[("WEB_PORT", "1".into())]).expect_err("undefined");
        assert!(err.to_string().contains("${EVENTS_DAPR}"), "{err}");
    }

    #[test]
    fn the_repository_template_uses_only_the_spec_variables() {
        let spec = NginxSpec {
            port: 1,
            web_root: static_dir(),
            grayscale_dapr: "127.0.0.1:2".into(),
            classify_dapr: "127.0.0.1:3".into(),
            events_dapr: "127.0.0.1:4".into(),
            zipkin_url: DEFAULT_ZIPKIN_URL.into(),
            max_body_bytes: DEFAULT_MAX_BODY,
        };
        let text = std::fs::read_to_string(config_dir().join("default.conf.template")).expect("template");
        let out = render(&text, &spec.vars()).expect("every variable is defined");
        assert!(out.contains("set $upstream \"127.0.0.1:4\";"), "{out}");
        assert!(
            out.contains("proxy_pass http://$upstream/v1.0/invoke/events-service/method/events$is_args$args;"),
            "{out}"
        );
    }
}
