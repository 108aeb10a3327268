//! Timings of the classify domain, printed, never asserted:
//! model load, then per shared photo preprocess (decode + resize +
//! normalise) and inference, median of several runs, for both models.
//!
//! `cargo bench -p image-api-classify`; ITERATIONS=n overrides the count.

#![allow(clippy::expect_used, clippy::panic, reason = "a benchmark that cannot measure stops with the reason")]

use image_api_classify::{Classifier, ClassifierConfig, ImageLimits};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MODELS: [&str; 2] = [
    "mobilenet_v2_1.0_224_quant.tflite",
    "mobilenet_v1_0.75_192_quant.tflite",
];
const PHOTOS: [&str; 3] = ["hot_dog.jpg", "cat_720p.jpg", "grace_hopper.jpg"];
const LOADS: usize = 3;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(rel)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:8.2} ms", d.as_secs_f64() * 1e3)
}

fn time<T>(iterations: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, Duration) {
    let samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let started = Instant::now();
            black_box(f());
            started.elapsed()
        })
        .collect();
    let min = samples.iter().min().copied().unwrap_or_default();
    let max = samples.iter().max().copied().unwrap_or_default();
    (median(samples), min, max)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: usize = std::env::var("ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let limits = ImageLimits::default();
    println!("classify bench: median (min..max) of {iterations} runs per figure, single thread\n");
    for model in MODELS {
        let config = ClassifierConfig::new(
            shared(&format!("models/{model}")),
            shared("models/labels_mobilenet_quant_v1_224.txt"),
        );
        let mut loads = Vec::new();
        let mut classifier = None;
        for _ in 0..LOADS {
            let c = Classifier::load(&config)?;
            loads.push(c.load_duration());
            classifier = Some(c);
        }
        let classifier = classifier.ok_or("no load")?;
        let (w, h) = classifier.input_size();
        println!("{model} (input {w}x{h})");
        println!(
            "  load (read, dequantize, parse, optimise): first {}, median of {LOADS} {}",
            ms(loads[0]),
            ms(median(loads.clone()))
        );
        for photo in PHOTOS {
            let bytes = std::fs::read(shared(&format!("images/{photo}")))?;
            let input = classifier.preprocess(&bytes, &limits)?;
            let probabilities = classifier.infer(&input)?;
            let best = classifier
                .top_k(&probabilities)
                .into_iter()
                .next()
                .ok_or("no prediction")?;
            let (pre, pre_min, pre_max) =
                time(iterations, || classifier.preprocess(&bytes, &limits));
            let (inf, inf_min, inf_max) = time(iterations, || classifier.infer(&input));
            let (top, _, _) = time(iterations, || classifier.top_k(&probabilities));
            println!(
                "  {photo:<17} preprocess {} ({}..{})  infer {} ({}..{})  top-k {:6.1} µs  → {}",
                ms(pre),
                ms(pre_min).trim(),
                ms(pre_max).trim(),
                ms(inf),
                ms(inf_min).trim(),
                ms(inf_max).trim(),
                top.as_secs_f64() * 1e6,
                best.sentence()
            );
        }
        println!();
    }
    Ok(())
}
