//! Timings of the classify domain, printed, never asserted: per backend
//! (litert, tract) model load, then per shared photo preprocess (decode +
//! resize + normalise), inference, and the two together (end to end), median
//! of several runs; beside them the reference, Python LiteRT (the same 2.1.4,
//! one thread) with Pillow, end to end (decode + resize + invoke) and invoke
//! alone, measured in the same run (reference/litert_reference.py).
//!
//! `make bench` runs it pinned to one core (taskset -c 1), Python included;
//! ITERATIONS=n overrides the count.

#![allow(clippy::expect_used, clippy::panic, reason = "a benchmark that cannot measure stops with the reason")]

use image_api_classify::{BackendKind, Classifier, ClassifierConfig, ImageLimits};
use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MODELS: [&str; 2] = ["mobilenet_v2_1.0_224_quant.tflite", "mobilenet_v1_0.75_192_quant.tflite"];
const PHOTOS: [&str; 3] = ["hot_dog.jpg", "cat_720p.jpg", "grace_hopper.jpg"];
const LOADS: usize = 3;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared").join(rel)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn time<T>(iterations: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..iterations)
            .map(|_| {
                let started = Instant::now();
                black_box(f());
                started.elapsed()
            })
            .collect(),
    )
}

/// Python LiteRT's (end to end, invoke) per photo, in ms.
fn reference(model: &Path, iterations: usize) -> Result<HashMap<String, (f64, f64)>, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("../../.cache/litert-py/bin/python");
    let out = Command::new(&python)
        .arg(root.join("reference/litert_reference.py"))
        .arg("bench")
        .arg(model)
        .arg(iterations.to_string())
        .args(PHOTOS.map(|p| shared(&format!("images/{p}"))))
        .output()
        .map_err(|e| format!("{}: {e} (run scripts/litert.sh)", python.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut figures = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let photo = v["photo"].as_str().and_then(|p| p.rsplit('/').next()).unwrap_or_default().to_owned();
        figures.insert(
            photo,
            (v["end_to_end_ms"].as_f64().unwrap_or(f64::NAN), v["invoke_ms"].as_f64().unwrap_or(f64::NAN)),
        );
    }
    Ok(figures)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: usize = std::env::var("ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let limits = ImageLimits::default();
    println!("classify bench: median of {iterations} runs per figure, one thread, ms\n");
    for model in MODELS {
        let model_path = shared(&format!("models/{model}"));
        let python = reference(&model_path, iterations);
        println!("{model}");
        if let Err(e) = &python {
            println!("  Python LiteRT reference unavailable: {e}");
        }
        println!(
            "  {:<8} {:<17} {:>10} {:>10} {:>10} {:>8}  {:>13} {:>10} {:>7} {:>7}  answer",
            "backend", "photo", "preprocess", "infer", "end2end", "load", "py end2end", "py invoke", "e2e ×", "inf ×"
        );
        for backend in [BackendKind::LiteRt, BackendKind::Tract] {
            let mut config = ClassifierConfig::new(&model_path, shared("models/labels_mobilenet_quant_v1_224.txt"));
            config.backend = backend;
            let mut loads = Vec::new();
            let mut classifier = None;
            for _ in 0..LOADS {
                let c = Classifier::load(&config)?;
                loads.push(c.load_duration());
                classifier = Some(c);
            }
            let classifier = classifier.ok_or("no load")?;
            let load = median(loads);
            // The bench runs on one thread: any more are the engine's own.
            let threads = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim().to_owned())))
                .unwrap_or_default();
            println!("  {}: threads in the process with {LOADS} models loaded: {threads}", backend.name());
            for photo in PHOTOS {
                let bytes = std::fs::read(shared(&format!("images/{photo}")))?;
                let input = classifier.preprocess(&bytes, &limits)?;
                let best = classifier.classify(&bytes, &limits)?.into_iter().next().ok_or("no prediction")?;
                let pre = time(iterations, || classifier.preprocess(&bytes, &limits));
                let inf = time(iterations, || classifier.infer(&input));
                let whole = time(iterations, || classifier.classify(&bytes, &limits));
                let (py_whole, py_invoke) =
                    python.as_ref().ok().and_then(|p| p.get(photo).copied()).unwrap_or((f64::NAN, f64::NAN));
                println!(
                    "  {:<8} {photo:<17} {:>10.2} {:>10.2} {:>10.2} {:>8.1}  {:>13.2} {:>10.2} {:>7.2} {:>7.2}  {}",
                    backend.name(),
                    ms(pre),
                    ms(inf),
                    ms(whole),
                    ms(load),
                    py_whole,
                    py_invoke,
                    ms(whole) / py_whole,
                    ms(inf) / py_invoke,
                    best.sentence()
                );
            }
        }
        println!();
    }
    Ok(())
}
