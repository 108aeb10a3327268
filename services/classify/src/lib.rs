//! image-api-classify domain: an ImageNet classifier (a quantized MobileNet
//! TensorFlow Lite model) run in pure Rust, so the same code serves natively
//! and inside `wasm32-wasip1` under WasmEdge with no plugin.
//!
//! Load once with [`Classifier::load`], then per request
//! [`Classifier::classify`] = [`Classifier::preprocess`] (decode, resize
//! to RGB8) → [`Classifier::infer`] → [`Classifier::top_k`]; the steps are
//! public so the service can time or trace them one by one.

pub mod app;
pub mod backend;
#[cfg(feature = "tract")]
pub mod dequantize;
mod error;
#[cfg(all(feature = "litert", not(target_family = "wasm")))]
pub mod litert_backend;
pub mod plugin;
pub mod preprocess;
pub mod stepped;
pub mod tflite_file;
#[cfg(feature = "tract")]
mod tract_backend;

pub use backend::{BackendKind, InferenceBackend};
pub use error::ClassifyError;
pub use kit::imaging::ImageLimits;
#[cfg(all(feature = "litert", not(target_family = "wasm")))]
pub use litert_backend::LiteRtBackend;
#[cfg(feature = "tract")]
pub use tract_backend::TractBackend;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the model and its labels are, and how many answers to give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifierConfig {
    pub model_path: PathBuf,
    pub labels_path: PathBuf,
    /// How many predictions [`Classifier::classify`] returns.
    pub top_k: usize,
    pub backend: BackendKind,
    /// Threads one inference may use (`CLASSIFY_THREADS`). 1: concurrency
    /// comes from requests running in parallel, each on its own CPU worker.
    pub threads: usize,
}

impl ClassifierConfig {
    /// Top 5 with the default backend.
    pub fn new(model_path: impl Into<PathBuf>, labels_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            labels_path: labels_path.into(),
            top_k: 5,
            backend: BackendKind::default(),
            threads: 1,
        }
    }
}

/// One class the image was recognised as.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub label: String,
    /// Class index in the model's output (0 is "background").
    pub index: usize,
    /// `n` of "n/255": the uint8 the quantized model's softmax output would
    /// hold for this class, `clamp(round(p * 256), 0, 255)` (scale 1/256).
    pub score: u8,
    /// The float model's softmax probability.
    pub probability: f32,
}

impl Prediction {
    /// The one-line answer the original demo gave.
    pub fn sentence(&self) -> String {
        format!("{} is detected with {}/255 confidence", self.label, self.score)
    }
}

/// `n` of "n/255" for a probability, as the quantized output would be.
pub fn score_of(probability: f32) -> u8 {
    // `as` saturates and maps NaN to 0.
    (probability * 256.0).round().clamp(0.0, 255.0) as u8
}

/// A loaded model with its labels; shared by every request.
pub struct Classifier {
    backend: Box<dyn InferenceBackend>,
    labels: Vec<String>,
    top_k: usize,
    load_duration: Duration,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("input_size", &self.backend.input_size())
            .field("labels", &self.labels.len())
            .field("top_k", &self.top_k)
            .field("load_duration", &self.load_duration)
            .finish_non_exhaustive()
    }
}

impl Classifier {
    /// Read the labels, load and prepare the model, check they agree.
    pub fn load(config: &ClassifierConfig) -> Result<Self, ClassifyError> {
        let started = Instant::now();
        let _span =
            tracing::info_span!("model load", model = %config.model_path.display(), backend = config.backend.name())
                .entered();
        // Labels first: cheap, and a wrong path fails before the slow part.
        let labels = read_labels(&config.labels_path)?;
        backend::check_threads(config.backend, config.threads)?;
        let backend = backend::load_backend(config.backend, &config.model_path)?;
        Self::with_backend(backend, labels, &config.labels_path, config.top_k, started)
    }

    /// A classifier over an already loaded backend (another backend, tests).
    pub fn from_backend(
        backend: Box<dyn InferenceBackend>,
        labels: Vec<String>,
        top_k: usize,
    ) -> Result<Self, ClassifyError> {
        Self::with_backend(backend, labels, Path::new("<labels>"), top_k, Instant::now())
    }

    fn with_backend(
        backend: Box<dyn InferenceBackend>,
        labels: Vec<String>,
        labels_path: &Path,
        top_k: usize,
        started: Instant,
    ) -> Result<Self, ClassifyError> {
        if labels.len() != backend.output_len() {
            return Err(ClassifyError::LabelCountMismatch {
                path: labels_path.to_owned(),
                labels: labels.len(),
                outputs: backend.output_len(),
            });
        }
        Ok(Self { backend, labels, top_k, load_duration: started.elapsed() })
    }

    /// How long [`Classifier::load`] took (labels, model parse, dequantize,
    /// optimise).
    pub fn load_duration(&self) -> Duration {
        self.load_duration
    }

    /// (width, height) images are resized to.
    pub fn input_size(&self) -> (u32, u32) {
        self.backend.input_size()
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The whole request: image bytes to the best `top_k` predictions.
    pub fn classify(&self, image_bytes: &[u8], limits: &ImageLimits) -> Result<Vec<Prediction>, ClassifyError> {
        let input = self.preprocess(image_bytes, limits)?;
        let probabilities = self.infer(&input)?;
        Ok(self.top_k(&probabilities))
    }

    /// Decode (limit-checked) and resize to the model's input: RGB8, which
    /// is the quantized model's input as it is (see [`InferenceBackend::infer`]).
    pub fn preprocess(&self, image_bytes: &[u8], limits: &ImageLimits) -> Result<Vec<u8>, ClassifyError> {
        let (width, height) = self.input_size();
        preprocess::decode_to_input(image_bytes, limits, width, height)
    }

    /// [`Classifier::preprocess`] for bytes already through
    /// `kit::imaging::intake` (which found `format`), without repeating it.
    pub fn preprocess_checked(
        &self,
        image_bytes: &[u8],
        format: image::ImageFormat,
        limits: &ImageLimits,
    ) -> Result<Vec<u8>, ClassifyError> {
        let (width, height) = self.input_size();
        preprocess::checked_to_input(image_bytes, format, limits, width, height)
    }

    /// [`Classifier::preprocess_checked`] in steps, for a caller that
    /// shares its thread (see [`stepped`]).
    pub fn preprocess_steps<B: AsRef<[u8]>>(
        &self,
        image_bytes: B,
        format: image::ImageFormat,
        limits: &ImageLimits,
    ) -> stepped::Preprocess<B> {
        stepped::Preprocess::new(image_bytes, format, limits, self.input_size())
    }

    /// What [`Classifier::preprocess`] holds for an image at its peak
    /// (see [`stepped::decode_cost`]).
    pub fn decode_cost(&self, image_bytes: &[u8], format: image::ImageFormat, width: u32, height: u32) -> u64 {
        stepped::decode_cost(image_bytes, format, width, height, self.input_size())
    }

    /// Run the model on [`Classifier::preprocess`]'s pixels: one probability
    /// per label.
    pub fn infer(&self, pixels: &[u8]) -> Result<Vec<f32>, ClassifyError> {
        self.backend.infer(pixels)
    }

    /// The configured number of best predictions, best first.
    pub fn top_k(&self, probabilities: &[f32]) -> Vec<Prediction> {
        top_k(probabilities, &self.labels, self.top_k)
    }
}

/// The `k` best of `probabilities`, best first; ties keep the lower index.
pub fn top_k(probabilities: &[f32], labels: &[String], k: usize) -> Vec<Prediction> {
    let mut order: Vec<usize> = (0..probabilities.len().min(labels.len())).collect();
    // total_cmp: a NaN cannot break the sort.
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|index| Prediction {
            label: labels[index].clone(),
            index,
            score: score_of(probabilities[index]),
            probability: probabilities[index],
        })
        .collect()
}

/// One label per line; a trailing newline or CR is not a label.
pub fn read_labels(path: &Path) -> Result<Vec<String>, ClassifyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ClassifyError::LabelsUnreadable { path: path.to_owned(), source })?;
    Ok(text.lines().map(|l| l.trim_end().to_owned()).collect())
}

#[cfg(all(test, feature = "tract", feature = "litert", not(target_family = "wasm")))]
mod litert_tests;
#[cfg(all(test, feature = "tract"))]
mod tests;
