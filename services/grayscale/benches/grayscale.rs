//! Ours against two baselines, per shared photo, in the same run:
//! - template: the original template's pipeline as it was written, on the
//!   image crate it used (0.23): `load_from_memory` -> `.grayscale()` ->
//!   `write_to(.., Png)` (zlib at the default level) -> base64;
//! - naive 0.25: the same steps on today's image crate, whose default PNG
//!   encoder is already the fast one (fdeflate), so most of its time is JPEG
//!   decoding.
//!
//! Ours: `grayscale_png` -> base64. All run in the same loop, alternating,
//! so machine noise hits them alike. Prints figures only; asserts nothing.
//!
//! `GRAYSCALE_BENCH_ITERS` (default 41) sets iterations per photo.

#![allow(clippy::expect_used, clippy::panic, reason = "a benchmark that cannot measure stops with the reason")]

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

fn template(bytes: &[u8]) -> (usize, String) {
    let img = image_template::load_from_memory(bytes).expect("template decodes");
    let gray = img.grayscale();
    let mut png = Vec::new();
    gray.write_to(&mut png, image_template::ImageOutputFormat::Png).expect("template encodes");
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
    std::env::var_os("GRAYSCALE_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images"))
}

fn main() {
    let iters: usize = std::env::var("GRAYSCALE_BENCH_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(41);
    let limits = ImageLimits::default();
    let dir = images_dir();

    println!("grayscale pipeline, median of {iters} runs per photo (after 3 warm-up runs)");
    println!(
        "{:<18} {:>9} | {:>11} {:>9} {:>8} | {:>8} {:>8} {:>6} | {:>10} {:>10} {:>10} | ours: {:>6} {:>6} {:>6}",
        "photo",
        "size",
        "template ms",
        "0.25 ms",
        "ours ms",
        "vs templ",
        "vs 0.25",
        "",
        "templ PNG",
        "0.25 PNG",
        "ours PNG",
        "decode",
        "encode",
        "base64"
    );
    let (mut base_total, mut ours_total, mut templ_total) = (0.0, 0.0, 0.0);
    let (mut log_ratio_sum, mut log_templ_sum) = (0.0, 0.0);
    for name in PHOTOS {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for _ in 0..3 {
            black_box(template(&bytes));
            black_box(baseline(&bytes));
            black_box(ours(&bytes, &limits));
        }
        let (mut tt, mut tb, mut to) = (Vec::new(), Vec::new(), Vec::new());
        let mut templ_len = 0;
        let (mut t_dec, mut t_enc, mut t_b64) = (Vec::new(), Vec::new(), Vec::new());
        let (mut base_len, mut ours_len) = (0, 0);
        for _ in 0..iters {
            let (t, (len, _)) = time(|| template(&bytes));
            tt.push(t);
            templ_len = len;
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
        let (tm, b, o) = (median(tt), median(tb), median(to));
        templ_total += tm;
        base_total += b;
        ours_total += o;
        log_ratio_sum += (b / o).ln();
        log_templ_sum += (tm / o).ln();
        let dims = image::ImageReader::new(Cursor::new(&bytes))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok())
            .map_or_else(String::new, |(w, h)| format!("{w}x{h}"));
        println!(
            "{:<18} {:>9} | {:>11.3} {:>9.3} {:>8.3} | {:>7.2}x {:>7.2}x {:>6} | {:>10} {:>10} {:>10} |       {:>6.3} {:>6.3} {:>6.3}",
            name,
            dims,
            tm,
            b,
            o,
            tm / o,
            b / o,
            if ours_len <= base_len.min(templ_len) { "" } else { "BIGGER" },
            templ_len,
            base_len,
            ours_len,
            median(t_dec),
            median(t_enc),
            median(t_b64),
        );
    }
    let n = PHOTOS.len() as f64;
    println!(
        "overall vs the template's pipeline (image 0.23): {templ_total:.3} ms vs ours {ours_total:.3} ms for the set -> {:.2}x (geometric mean {:.2}x)",
        templ_total / ours_total,
        (log_templ_sum / n).exp()
    );
    println!(
        "overall vs the naive pipeline on image 0.25:     {base_total:.3} ms vs ours {ours_total:.3} ms for the set -> {:.2}x (geometric mean {:.2}x)",
        base_total / ours_total,
        (log_ratio_sum / n).exp()
    );
}
