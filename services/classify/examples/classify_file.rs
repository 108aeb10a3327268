//! Classify image files from the command line; also the quickest check that
//! the library works inside a Wasm runtime:
//!
//! `classify_file <model.tflite> <labels.txt> <image>...`

#![allow(clippy::expect_used, clippy::panic, reason = "an example: a failure stops it with the reason")]

use image_api_classify::{Classifier, ClassifierConfig, ImageLimits};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, labels, images @ ..] = args.as_slice() else {
        return Err("usage: classify_file <model.tflite> <labels.txt> <image>...".into());
    };
    let classifier = Classifier::load(&ClassifierConfig::new(model, labels))?;
    println!("loaded {model} in {:?}, input {:?}", classifier.load_duration(), classifier.input_size());
    for image in images {
        let bytes = std::fs::read(image)?;
        let started = Instant::now();
        let input = classifier.preprocess(&bytes, &ImageLimits::default())?;
        let preprocessed = started.elapsed();
        let probabilities = classifier.infer(&input)?;
        let inferred = started.elapsed() - preprocessed;
        let predictions = classifier.top_k(&probabilities);
        println!("{image}: preprocess {preprocessed:?}, infer {inferred:?}");
        for p in &predictions {
            println!("  {:>4} {:<24} {:>3}/255  p={:.4}", p.index, p.label, p.score, p.probability);
        }
    }
    Ok(())
}
