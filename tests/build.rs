//! in_process:: links classify's lib, and with it libLiteRt.so (classify's
//! `litert` backend): the test binary gets the same rpath to it that
//! services/classify/build.rs gives classify's own binaries, so it runs
//! without LD_LIBRARY_PATH.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=LITERT_LIB_DIR");
    if let Some(dir) = std::env::var_os("LITERT_LIB_DIR").filter(|d| Path::new(d).join("libLiteRt.so").is_file()) {
        let dir = Path::new(&dir).canonicalize().unwrap_or_else(|_| Path::new(&dir).to_owned());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
