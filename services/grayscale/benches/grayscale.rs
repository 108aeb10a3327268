//! Baseline (the original template's pipeline) against ours, per shared photo.
//!
//! Baseline: `image::load_from_memory` -> `.grayscale()` -> PNG with the
//! `image` crate's default encoder -> base64. Ours: `grayscale_png` -> base64.
//! Both run in the same loop, alternating, so machine noise hits both alike.
//! Prints figures only; asserts nothing about time.
//!
//! `GRAYSCALE_BENCH_ITERS` (default 41) sets iterations per photo.

use base64::Engine;
use image::ImageFormat;
use image_api_grayscale::{decode_luma, encode_png, grayscale_png};
use kit::imaging::ImageLimits;
use std::hint::black_box;
use std::io::Cursor;
use std::path::PathBuf;
use std::time::Instant;

const PHOTOS: [&str; 3] = ["hot_dog.jpg", "cat_720p.jpg", "grace_hopper.jpg"];

fn baseline(bytes: &[u8]) -> (usize, String) {
    let img = image::load_from_memory(bytes).expect("baseline decodes");
    let gray = img.grayscale();
    let mut png = Vec::new();
    gray.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).expect("baseline encodes");
    (png.len(), base64::engine::general_purpose::STANDARD.encode(&png))
}

fn ours(bytes: &[u8], limits: &ImageLimits) -> (usize, String) {
    let out = grayscale_png(bytes, limits).expect("ours");
    (out.png.len(), out.base64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Milliseconds of one call.
fn time<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let r = black_box(f());
    (t.elapsed().as_secs_f64() * 1e3, r)
}

fn images_dir() -> PathBuf {
    // Workspace layout: <root>/services/grayscale; photos in <root>/../shared/images.
    std::env::var_os("GRAYSCALE_IMAGES").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images")
    })
}

fn main() {
    let iters: usize =
        std::env::var("GRAYSCALE_BENCH_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(41);
    let limits = ImageLimits::default();
    let dir = images_dir();

    println!("grayscale pipeline, median of {iters} runs per photo (after 3 warm-up runs)");
    println!(
        "{:<18} {:>9} {:>11} {:>13} {:>10} {:>8} {:>12} {:>10} | {:>8} {:>8} {:>8}",
        "photo", "size", "base ms", "ours ms", "speedup", "", "base PNG B", "ours PNG B",
        "decode", "encode", "base64"
    );
    let (mut base_total, mut ours_total) = (0.0, 0.0);
    let mut log_ratio_sum = 0.0;
    for name in PHOTOS {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for _ in 0..3 {
            black_box(baseline(&bytes));
            black_box(ours(&bytes, &limits));
        }
        let (mut tb, mut to) = (Vec::new(), Vec::new());
        let (mut t_dec, mut t_enc, mut t_b64) = (Vec::new(), Vec::new(), Vec::new());
        let (mut base_len, mut ours_len) = (0, 0);
        for _ in 0..iters {
            let (t, (len, _)) = time(|| baseline(&bytes));
            tb.push(t);
            base_len = len;
            let (t, (len, _)) = time(|| ours(&bytes, &limits));
            to.push(t);
            ours_len = len;
            // The same steps again, separately, for the breakdown.
            let (t, luma) = time(|| decode_luma(&bytes, &limits).expect("decode"));
            t_dec.push(t);
            let (t, png) = time(|| encode_png(&luma).expect("encode"));
            t_enc.push(t);
            let (t, _) = time(|| base64::engine::general_purpose::STANDARD.encode(&png));
            t_b64.push(t);
        }
        let (b, o) = (median(tb), median(to));
        base_total += b;
        ours_total += o;
        log_ratio_sum += (b / o).ln();
        let dims = image::ImageReader::new(Cursor::new(&bytes))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok())
            .map_or_else(String::new, |(w, h)| format!("{w}x{h}"));
        println!(
            "{:<18} {:>9} {:>11.3} {:>13.3} {:>9.2}x {:>8} {:>12} {:>10} | {:>8.3} {:>8.3} {:>8.3}",
            name,
            dims,
            b,
            o,
            b / o,
            if ours_len <= base_len { "" } else { "BIGGER" },
            base_len,
            ours_len,
            median(t_dec),
            median(t_enc),
            median(t_b64),
        );
    }
    let n = PHOTOS.len() as f64;
    println!(
        "overall: baseline {base_total:.3} ms, ours {ours_total:.3} ms for the set -> {:.2}x (geometric mean of per-photo ratios {:.2}x)",
        base_total / ours_total,
        (log_ratio_sum / n).exp()
    );
}
