//! Prints, per image file given, the size and a digest of the grayscale PNG.
//! Run it natively and as wasm32-wasip1 to check that both give the same bytes:
//!
//! ```text
//! cargo run --release -p image-api-grayscale --example digest -- a.jpg b.png
//! cargo build --release -p image-api-grayscale --example digest --target wasm32-wasip1
//! ```
//! then run the .wasm under any WASI runtime with the files' directory preopened.

#![allow(clippy::expect_used, clippy::panic, reason = "an example: a failure stops it with the reason")]

use image_api_grayscale::grayscale_png;
use kit::imaging::ImageLimits;
use std::process::ExitCode;

/// FNV-1a, 64-bit: no dependency, same value on every target.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn main() -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for path in std::env::args().skip(1) {
        let result = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| grayscale_png(&b, &ImageLimits::default()).map_err(|e| e.to_string()));
        match result {
            Ok(out) => println!(
                "{path}: {}x{} png {} bytes fnv1a64 {:016x}",
                out.width,
                out.height,
                out.png.len(),
                fnv1a(&out.png)
            ),
            Err(e) => {
                println!("{path}: error: {e}");
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}
