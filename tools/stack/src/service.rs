//! The three services: their app ids, ports and what each needs to run.

use crate::daprd::SidecarPorts;
use crate::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Events,
    Grayscale,
    Classify,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Events, Service::Grayscale, Service::Classify];

    pub fn app_id(self) -> &'static str {
        match self {
            Service::Grayscale => "image-api-grayscale",
            Service::Classify => "image-api-classify",
            Service::Events => "events-service",
        }
    }

    /// The short name people and tables use: grayscale, classify, events.
    pub fn name(self) -> &'static str {
        match self {
            Service::Grayscale => "grayscale",
            Service::Classify => "classify",
            Service::Events => "events",
        }
    }

    /// Its main route: the image route, or the events listing.
    pub fn route(self) -> &'static str {
        match self {
            Service::Grayscale => "/grayscale",
            Service::Classify => "/classify",
            Service::Events => "/events",
        }
    }

    /// Whether its main route takes an image (and records an event).
    pub fn sends_image(self) -> bool {
        self != Service::Events
    }

    /// The cargo binary (and `.wasm`) name.
    pub fn binary(self) -> &'static str {
        self.app_id()
    }

    /// The original template's ports, used by `make up`.
    pub fn app_port(self) -> u16 {
        match self {
            Service::Grayscale => 9005,
            Service::Classify => 9006,
            Service::Events => 9007,
        }
    }

    /// Fixed sidecar ports for `make up`: HTTP 3503-3505 as the original,
    /// gRPC 50003-5, internal gRPC 50103-5, metrics 9803-5.
    pub fn sidecar_ports(self) -> SidecarPorts {
        let n = match self {
            Service::Grayscale => 3,
            Service::Classify => 4,
            Service::Events => 5,
        };
        SidecarPorts { http: 3500 + n, grpc: 50000 + n, internal_grpc: 50100 + n, metrics: 9800 + n }
    }

    /// Whether it reads the shared models (so WasmEdge must preopen them).
    fn uses_models(self) -> bool {
        self == Service::Classify
    }

    /// Per-client rate limits for `make up` and every test stack (tests
    /// replace them with `StackOptions::with_env`): per IP, a burst of 20
    /// grayscale or 10 classify requests, then 10/s or 5/s (classify costs
    /// five times the CPU). Everything here listens on 127.0.0.1, so the
    /// loopback hops (daprd, a web front) are the trusted proxies.
    fn rate_limits(self) -> Vec<(String, String)> {
        let policies = match self {
            Service::Grayscale => "/grayscale=20/10",
            Service::Classify => "/classify=10/5",
            Service::Events => return Vec::new(),
        };
        vec![
            ("RATE_LIMIT_POLICIES".into(), policies.into()),
            ("RATE_LIMIT_FAIL_MODE".into(), "open".into()),
            ("RATE_LIMIT_TRUSTED_PROXIES".into(), "127.0.0.1/32,::1/128".into()),
        ]
    }

    /// Settings this service needs beyond ports: its rate limits and the
    /// model files, as `runtime` sees them.
    pub fn env(self, runtime: Runtime) -> Vec<(String, String)> {
        let mut env = self.rate_limits();
        if !self.uses_models() {
            return env;
        }
        let models = runtime.models_dir();
        env.extend([
            ("CLASSIFY_MODEL_PATH".into(), models.join("mobilenet_v2_1.0_224_quant.tflite").display().to_string()),
            ("CLASSIFY_LABELS_PATH".into(), models.join("labels_mobilenet_quant_v1_224.txt").display().to_string()),
        ]);
        env
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Inside the WasmEdge root, where `make wasmedge` (scripts/wasmedge-aot.sh)
/// puts the AOT-compiled modules and a copy of the shared models: a chrooted
/// wasmedge sees nothing outside the root.
const ROOT_WASM_DIR: &str = "/srv/wasm";
const ROOT_MODELS_DIR: &str = "/srv/models";
/// Where a module sees the models (a read-only WASI preopen of ROOT_MODELS_DIR).
const GUEST_MODELS_DIR: &str = "/models";
/// Marks a complete root (scripts/wasmedge.sh writes it last).
const ROOT_STAMP: &str = ".wasmedge-ready";

/// What runs the service's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// The native binary cargo built.
    Native,
    /// The `wasm32-wasip1` module, AOT-compiled, under Debian trixie's
    /// WasmEdge in a chroot (bookworm has no WasmEdge package).
    WasmEdge,
}

impl Runtime {
    pub const ALL: [Runtime; 2] = [Runtime::Native, Runtime::WasmEdge];

    /// Also what the services report as `runtime` in `/healthz` and `/readyz`.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Native => "native",
            Runtime::WasmEdge => "wasmedge",
        }
    }

    pub fn parse(name: &str) -> Result<Runtime, Error> {
        Runtime::ALL
            .into_iter()
            .find(|r| r.name() == name.trim())
            .ok_or_else(|| Error::msg(format!("unknown runtime {name:?}: expected native or wasmedge")))
    }

    /// `STACK_RUNTIME` (native or wasmedge), native when unset: how the
    /// same test suite runs against either.
    pub fn from_env() -> Result<Runtime, Error> {
        match std::env::var("STACK_RUNTIME") {
            Ok(name) if !name.is_empty() => {
                Runtime::parse(&name).map_err(|e| Error::msg(format!("STACK_RUNTIME: {e}")))
            }
            _ => Ok(Runtime::Native),
        }
    }

    /// The models folder as the service sees it.
    fn models_dir(self) -> PathBuf {
        match self {
            Runtime::Native => crate::paths::shared_dir().join("models"),
            Runtime::WasmEdge => PathBuf::from(GUEST_MODELS_DIR),
        }
    }

    /// Whether what `services` need to run is in place; if not, says how to
    /// get it. Called before anything starts, so a missing build is one clear
    /// error rather than a service that "exited" with a cryptic log.
    pub fn check(self, services: &[Service]) -> Result<(), Error> {
        match self {
            Runtime::Native => {
                for s in services {
                    let bin = native_binary(*s);
                    if !bin.exists() {
                        return Err(Error::msg(format!(
                            "{} is missing: build the services (`cargo build --bins`)",
                            bin.display()
                        )));
                    }
                    missing_libraries(&bin)?;
                }
                Ok(())
            }
            Runtime::WasmEdge => {
                let root = crate::paths::wasmedge_root();
                if !root.join(ROOT_STAMP).exists() {
                    return Err(Error::msg(format!(
                        "no WasmEdge root at {}: run `make wasmedge` (builds it and AOT-compiles the services)",
                        root.display()
                    )));
                }
                let in_root = |p: &str| root.join(p.trim_start_matches('/'));
                for s in services {
                    let aot = in_root(&aot_module(*s));
                    if !aot.exists() {
                        return Err(Error::msg(format!("{} is missing: run `make wasmedge`", aot.display())));
                    }
                    // The AOT module must come from the .wasm cargo built last,
                    // or the tests would run yesterday's code.
                    let built = crate::paths::wasm_build_dir().join(format!("{}.wasm", s.binary()));
                    let copied = in_root(&format!("{ROOT_WASM_DIR}/{}.wasm", s.binary()));
                    if built.exists() && std::fs::read(&built).ok() != std::fs::read(&copied).ok() {
                        return Err(Error::msg(format!(
                            "{} is older than {}: run `make wasmedge` to AOT-compile it again",
                            aot.display(),
                            built.display()
                        )));
                    }
                    if s.uses_models() && !in_root(ROOT_MODELS_DIR).join("mobilenet_v2_1.0_224_quant.tflite").exists() {
                        return Err(Error::msg(format!(
                            "no models in {}: run `make wasmedge`",
                            in_root(ROOT_MODELS_DIR).display()
                        )));
                    }
                }
                Ok(())
            }
        }
    }

    /// The command that runs `service` with `env`.
    pub fn command(self, service: Service, env: &[(String, String)]) -> Command {
        match self {
            Runtime::Native => {
                let host_path = std::env::var_os("PATH").unwrap_or_default();
                let mut cmd = Command::new(native_binary(service));
                cmd.env_clear().env("PATH", host_path).envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                cmd
            }
            Runtime::WasmEdge => wasmedge_command(service, env, &aot_module(service), &[]),
        }
    }
}

/// The same service under WasmEdge's interpreter: the plain `.wasm` that
/// `make wasmedge` copies beside the AOT `.so`, run with
/// `--force-interpreter`. Only to show what AOT buys (`make bench-runtimes`);
/// it is far too slow to serve.
pub fn wasmedge_interpreter_command(service: Service, env: &[(String, String)]) -> Command {
    wasmedge_command(service, env, &format!("{ROOT_WASM_DIR}/{}.wasm", service.binary()), &["--force-interpreter"])
}

/// classify built with only the WasmEdge TensorFlow Lite plugin backend
/// (`make wasm` keeps it as `image-api-classify-tflite.wasm`; `make
/// wasmedge` copies it into the root), under the interpreter, with `env`
/// beside the model paths. Debian's WasmEdge has no plugin, so all it can do
/// here is refuse to start; the tests check that it says why.
pub fn wasmedge_tflite_classify_command(env: &[(String, String)]) -> Command {
    let mut all = Service::Classify.env(Runtime::WasmEdge);
    all.extend_from_slice(env);
    wasmedge_command(
        Service::Classify,
        &all,
        &format!("{ROOT_WASM_DIR}/{TFLITE_CLASSIFY}.wasm"),
        &["--force-interpreter"],
    )
}

/// The name `make wasm` gives the plugin-only classify module.
pub const TFLITE_CLASSIFY: &str = "image-api-classify-tflite";

/// `chroot <root> wasmedge [flags] --dir … --env … -- <module>`. chroot execs
/// wasmedge, so the pid we record is wasmedge's and PR_SET_PDEATHSIG (set
/// before exec) still applies to it. The module's environment is only what
/// --env hands it.
fn wasmedge_command(service: Service, env: &[(String, String)], module: &str, flags: &[&str]) -> Command {
    let host_path = std::env::var_os("PATH").unwrap_or_default();
    let mut cmd = Command::new("/usr/sbin/chroot");
    cmd.env_clear().env("PATH", host_path).arg(crate::paths::wasmedge_root()).arg("/usr/bin/wasmedge").args(flags);
    if service.uses_models() {
        cmd.arg("--dir").arg(format!("{GUEST_MODELS_DIR}:{ROOT_MODELS_DIR}:readonly"));
    }
    for (k, v) in env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    cmd.arg("--").arg(module);
    cmd
}

/// Where `make wasmedge` put the modules of `service`, as host paths: the
/// plain `.wasm` cargo built and its AOT-compiled `.so`.
pub fn wasmedge_modules(service: Service) -> (PathBuf, PathBuf) {
    let dir = crate::paths::wasmedge_root().join(ROOT_WASM_DIR.trim_start_matches('/'));
    (dir.join(format!("{}.wasm", service.binary())), dir.join(format!("{}.so", service.binary())))
}

/// The AOT-compiled module of `service` (a WasmEdge shared library, see
/// scripts/wasmedge-aot.sh), as a path inside the WasmEdge root.
fn aot_module(service: Service) -> String {
    format!("{ROOT_WASM_DIR}/{}.so", service.binary())
}

/// The shared libraries `bin` needs that the dynamic loader cannot find, as
/// one clear error before anything starts. Native classify links
/// libLiteRt.so (its `litert` backend): without it the loader, not the
/// service, would speak first ("error while loading shared libraries"),
/// before classify's own start-up checks run. `ldd` is glibc's; where it
/// cannot run, the service's own start is the check.
fn missing_libraries(bin: &Path) -> Result<(), Error> {
    let Ok(out) = Command::new("ldd").arg(bin).output() else {
        return Ok(());
    };
    let listing = String::from_utf8_lossy(&out.stdout);
    let missing = not_found(&listing);
    if missing.is_empty() {
        return Ok(());
    }
    let litert = if missing.iter().any(|l| l.starts_with("libLiteRt")) {
        " libLiteRt.so is LiteRT 2.1.4's C API, which classify's native `litert` backend links: run \
         scripts/litert.sh (or `make deps`), which unpacks it from the PyPI wheel ai-edge-litert==2.1.4 into \
         .cache/litert/2.1.4 (the binary's rpath), then rebuild; or build classify without the `litert` feature."
    } else {
        ""
    };
    Err(Error::msg(format!("{} cannot start: {} not found.{litert}", bin.display(), missing.join(", "))))
}

/// The libraries an `ldd` listing says the loader cannot find.
fn not_found(ldd_listing: &str) -> Vec<&str> {
    ldd_listing.lines().filter(|l| l.contains("=> not found")).filter_map(|l| l.split_whitespace().next()).collect()
}

pub fn native_binary(service: Service) -> PathBuf {
    crate::paths::bin_dir().join(service.binary())
}

#[cfg(test)]
mod tests {
    use super::not_found;

    #[test]
    fn an_ldd_listing_names_the_libraries_not_found() {
        let listing = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibLiteRt.so => not found\n\
                       \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\tlibfoo.so.2 => not found\n";
        assert_eq!(not_found(listing), ["libLiteRt.so", "libfoo.so.2"]);
        assert!(not_found("\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n").is_empty());
    }
}
