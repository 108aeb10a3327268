//! Where things are: the repository, `../shared`, the built binaries.
//! Each can be overridden by an environment variable.

use std::path::PathBuf;

fn from_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The repository root (`STACK_REPO_ROOT`).
pub fn repo_root() -> PathBuf {
    from_env("STACK_REPO_ROOT").unwrap_or_else(|| {
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        here.canonicalize().unwrap_or(here)
    })
}

/// The shared data beside the repository (`STACK_SHARED_DIR`, default `../shared`).
pub fn shared_dir() -> PathBuf {
    from_env("STACK_SHARED_DIR").unwrap_or_else(|| {
        let p = repo_root().join("../shared");
        p.canonicalize().unwrap_or(p)
    })
}

pub fn components_dir() -> PathBuf {
    repo_root().join("components")
}

/// The daprd this project builds (`DAPRD`, default `.cache/bin/daprd`).
pub fn daprd() -> PathBuf {
    from_env("DAPRD").unwrap_or_else(|| repo_root().join(".cache/bin/daprd"))
}

/// Dapr's Sentry, built beside daprd (`SENTRY`, default `.cache/bin/sentry`).
pub fn sentry() -> PathBuf {
    from_env("SENTRY").unwrap_or_else(|| repo_root().join(".cache/bin/sentry"))
}

/// Where cargo put the service binaries (`STACK_BIN_DIR`): beside the
/// running executable, or its parent when that is a test in `deps/`.
pub fn bin_dir() -> PathBuf {
    from_env("STACK_BIN_DIR").unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap_or_default();
        let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
        if dir.ends_with("deps") {
            dir.parent().map(PathBuf::from).unwrap_or(dir)
        } else {
            dir
        }
    })
}

/// Scratch space for test stacks (`STACK_TMP`, default `target/stack-tmp`).
pub fn scratch_dir() -> PathBuf {
    from_env("STACK_TMP").unwrap_or_else(|| repo_root().join("target/stack-tmp"))
}

/// The Debian trixie root WasmEdge runs in, chrooted (`WASMEDGE_ROOT`,
/// default `.cache/wasmedge-root`); `make wasmedge` builds and fills it.
pub fn wasmedge_root() -> PathBuf {
    from_env("WASMEDGE_ROOT").unwrap_or_else(|| repo_root().join(".cache/wasmedge-root"))
}

/// Where cargo puts the services built for `wasm32-wasip1` (profile `wasm`).
pub fn wasm_build_dir() -> PathBuf {
    from_env("CARGO_TARGET_DIR").unwrap_or_else(|| repo_root().join("target")).join("wasm32-wasip1/wasm")
}
