//! The classify service: the model loaded once at start-up, inference on
//! the CPU pool, the record through Dapr.

use crate::{BackendKind, Classifier, ClassifierConfig, Prediction};
use kit::app::App;
use kit::config::{self, Source};
use kit::http::{self, HandlerResult, Req, Router};
use kit::hyper::{Method, StatusCode};
use kit::image_service::{self, ImageServiceConfig, ImageWork, MemoryProfile};
use kit::memory::Baseline;
use kit::prometheus::{GaugeVec, HistogramVec};
use kit::record::Recorder;
use kit::StartError;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

pub const APP_ID: &str = "image-api-classify";

/// What classify needs besides its decode budget: the model and the
/// backend's arena (LiteRT natively; tract's float copy of the model under
/// Wasm), the runtime, pools and connection buffers, with headroom.
/// Measured by `hostile::` after warm-up: VmRSS 33 MiB natively (LiteRT),
/// 134 MiB under WasmEdge. tools/validate checks budget + baseline against
/// the container limits.
pub const MEMORY_BASELINE: Baseline = Baseline::mib(160, 192);

pub struct Config {
    pub service: ImageServiceConfig,
    pub classifier: ClassifierConfig,
}

pub fn config(src: &dyn Source) -> Result<Config, StartError> {
    let model: PathBuf =
        config::var(src, "CLASSIFY_MODEL_PATH", PathBuf::from("../shared/models/mobilenet_v2_1.0_224_quant.tflite"))?;
    let labels: PathBuf =
        config::var(src, "CLASSIFY_LABELS_PATH", PathBuf::from("../shared/models/labels_mobilenet_quant_v1_224.txt"))?;
    let mut classifier = ClassifierConfig::new(model, labels);
    classifier.top_k = config::var_in(src, "CLASSIFY_TOP_K", 5usize, 1..=100)?;
    let backend: String = config::var(src, "CLASSIFY_BACKEND", BackendKind::default().name().to_owned())?;
    classifier.backend =
        BackendKind::parse(&backend).map_err(|reason| config::ConfigError::new("CLASSIFY_BACKEND", backend, reason))?;
    classifier.threads = config::in_range("CLASSIFY_THREADS", config::var(src, "CLASSIFY_THREADS", 1usize)?, 1..=256)?;
    let profile =
        MemoryProfile { baseline: MEMORY_BASELINE, worst_bytes_per_pixel: crate::preprocess::WORST_BYTES_PER_PIXEL };
    Ok(Config { service: ImageServiceConfig::from_source(src, APP_ID, 9006, 3504, profile)?, classifier })
}

/// Domain metrics, beside the shared request metrics.
struct Metrics {
    stage: HistogramVec,
    model_load: GaugeVec,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        stage: kit::metrics::histogram(
            "classify_stage_duration_seconds",
            "Time per stage of a classification: preprocess (decode, resize) or inference.",
            &["stage", "backend"],
        ),
        model_load: kit::metrics::float_gauge_vec(
            "classify_model_load_seconds",
            "How long loading the model took at start-up.",
            &["backend"],
        ),
    })
}

struct State {
    backend: &'static str,
    recorder: Recorder,
    classifier: Arc<Classifier>,
    service: ImageServiceConfig,
}

pub async fn build(config: Config) -> Result<App, StartError> {
    // Load before waiting for the sidecar: a bad model path fails fast.
    let classifier =
        Classifier::load(&config.classifier).map_err(|e| StartError::service("cannot load the classifier", e))?;
    tracing::info!(
        model = %config.classifier.model_path.display(),
        backend = config.classifier.backend.name(),
        load_ms = classifier.load_duration().as_secs_f64() * 1e3,
        "model loaded"
    );
    metrics()
        .model_load
        .with_label_values(&[config.classifier.backend.name()])
        .set(classifier.load_duration().as_secs_f64());
    let (listener, recorder) = image_service::start(&config.service).await?;
    let limiter = image_service::rate_limiter(&config.service)?;
    let probes = vec![image_service::sidecar_probe(&recorder)];
    let server = config.service.server.clone();
    let state = Arc::new(State {
        backend: config.classifier.backend.name(),
        recorder,
        classifier: Arc::new(classifier),
        service: config.service,
    });
    let router = Router::new()
        .route(Method::GET, "/", |_req| async {
            Ok(http::text(
                StatusCode::OK,
                "Try POSTing data to /classify such as: `curl http://localhost:9006/classify -X POST --data-binary '@grace_hopper.jpg'`",
            ))
        })
        .route(Method::POST, "/classify", move |req| classify(state.clone(), req))
        .with_health(APP_ID, probes);
    App::new(listener, router, server, limiter)
}

/// A stage of the work under way: its span (entered for each slice of the
/// work) and when it began.
struct Stage {
    name: &'static str,
    span: tracing::Span,
    started: Instant,
}

impl State {
    /// One stage of the work, in its own span and timed.
    fn stage<T>(&self, name: &'static str, work: impl FnOnce() -> T) -> T {
        let stage = self.begin(name);
        let out = stage.span.in_scope(work);
        self.end(stage);
        out
    }

    fn begin(&self, name: &'static str) -> Stage {
        Stage {
            name,
            span: tracing::info_span!("classify", otel.name = name, backend = self.backend),
            started: Instant::now(),
        }
    }

    /// Closes the stage's span and records its time.
    fn end(&self, stage: Stage) {
        if kit::metrics::enabled() {
            metrics()
                .stage
                .with_label_values(&[stage.name, self.backend])
                .observe(stage.started.elapsed().as_secs_f64());
        }
    }
}

/// `"<label> is detected with <n>/255 confidence"`, or the top-k as JSON
/// with `Accept: application/json`.
async fn classify(state: Arc<State>, mut req: Req) -> HandlerResult {
    let (body, limits, worker_state) = (req.body.clone(), state.service.limits, state.clone());
    // The header alone, before any pixel: a bad or oversized upload is
    // answered here, and what the decode will hold is reserved.
    let (format, width, height) = kit::imaging::intake(&body, &limits).map_err(crate::ClassifyError::from)?;
    let work = ImageWork::admit(&mut req, state.classifier.decode_cost(&body, format, width, height)).await?;
    // Preprocessing in steps (under WASI the thread is shared with probes
    // and other connections between them), then inference, one call, in a
    // step of its own.
    let mut preprocess = Some((state.classifier.preprocess_steps(body, format, &limits), state.begin("preprocess")));
    let mut input: Option<Vec<u8>> = None;
    let predictions: Vec<Prediction> = work
        .run_steps(move || {
            let state = &worker_state;
            if let Some(input) = input.take() {
                return ControlFlow::Break(
                    state.stage("inference", || state.classifier.infer(&input)).map(|p| state.classifier.top_k(&p)),
                );
            }
            let Some((steps, stage)) = preprocess.as_mut() else {
                return ControlFlow::Break(Err(crate::ClassifyError::Inference("stepped after the end".into())));
            };
            let ControlFlow::Break(preprocessed) = stage.span.in_scope(|| steps.step()) else {
                return ControlFlow::Continue(());
            };
            if let Some((_, stage)) = preprocess.take() {
                state.end(stage);
            }
            match preprocessed {
                Ok(pixels) => {
                    input = Some(pixels);
                    ControlFlow::Continue(())
                }
                Err(e) => ControlFlow::Break(Err(e)),
            }
        })
        .await??;
    let best = predictions.first().ok_or_else(|| kit::ApiError::internal("the model gave no prediction"))?;
    state.recorder.success(&req.trace, "classify", req.body.len(), req.client_ip()).await?;
    if req.accepts("application/json") {
        let top: Vec<_> = predictions
            .iter()
            .map(|p| serde_json::json!({ "label": p.label, "index": p.index, "score": p.score, "probability": p.probability }))
            .collect();
        http::json(
            StatusCode::OK,
            &serde_json::json!({ "label": best.label, "score": best.score, "confidence": format!("{}/255", best.score), "top": top }),
        )
    } else {
        Ok(http::text(StatusCode::OK, best.sentence()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn backend(value: &str) -> Result<BackendKind, String> {
        let src: HashMap<&str, &str> = HashMap::from([("CLASSIFY_BACKEND", value)]);
        config(&src).map(|c| c.classifier.backend).map_err(|e| e.to_string())
    }

    #[test]
    fn the_backend_is_chosen_by_classify_backend() {
        assert_eq!(
            config(&HashMap::<&str, &str>::new()).map(|c| c.classifier.backend).ok(),
            Some(BackendKind::default())
        );
        assert_eq!(BackendKind::default(), BackendKind::LiteRt);
        assert_eq!(backend("litert"), Ok(BackendKind::LiteRt));
        assert_eq!(backend("tract"), Ok(BackendKind::Tract));
        let e = backend("onnx").expect_err("refused");
        assert!(
            e.contains("CLASSIFY_BACKEND") && e.contains("\"onnx\"") && e.contains("litert, tract, wasmedge-tflite"),
            "{e}"
        );
    }

    #[test]
    fn wasmedge_tflite_is_refused_at_start_up_when_not_compiled_in() {
        match BackendKind::WasmEdgeTflite.available() {
            Ok(()) => assert_eq!(backend("wasmedge-tflite"), Ok(BackendKind::WasmEdgeTflite)),
            Err(reason) => {
                let e = backend("wasmedge-tflite").expect_err("refused");
                assert!(e.contains("CLASSIFY_BACKEND") && e.contains(&reason), "{e}");
            }
        }
    }
}
