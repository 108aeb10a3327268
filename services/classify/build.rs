//! The `litert` backend links libLiteRt.so (litert-sys); this gives the
//! package's binaries, tests and benches an rpath to it, so nobody sets
//! LD_LIBRARY_PATH: `$ORIGIN` (the image copies the library next to the
//! binary) and the folder the build linked against (LITERT_LIB_DIR, set in
//! .cargo/config.toml to the repository's .cache/litert/<version>).

#![allow(clippy::panic, reason = "a build script fails the build loudly, with the reason")]

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=LITERT_LIB_DIR");
    let litert = std::env::var_os("CARGO_FEATURE_LITERT").is_some();
    let wasm = std::env::var("CARGO_CFG_TARGET_FAMILY").is_ok_and(|f| f.split(',').any(|f| f == "wasm"));
    if !litert || wasm {
        return;
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
    let Some(dir) = std::env::var_os("LITERT_LIB_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    if !dir.join("libLiteRt.so").is_file() {
        panic!(
            "{} has no libLiteRt.so: run scripts/litert.sh (make deps) to install LiteRT 2.1.4 there, \
             or build without the `litert` feature",
            dir.display()
        );
    }
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
}
