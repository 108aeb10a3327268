//! The classify service: the model loaded once at start-up, inference on
//! the CPU pool, the record through Dapr.

use image_api_classify::{BackendKind, Classifier, ClassifierConfig, Prediction};
use kit::app::App;
use kit::config::{self, Source};
use kit::http::{self, HandlerResult, Req, Router};
use kit::hyper::{Method, StatusCode};
use kit::image_service::{self, ImageServiceConfig};
use kit::record::Recorder;
use kit::StartError;
use std::path::PathBuf;
use std::sync::Arc;

pub const APP_ID: &str = "image-api-classify";

pub struct Config {
    pub service: ImageServiceConfig,
    pub classifier: ClassifierConfig,
}

pub fn config(src: &dyn Source) -> Result<Config, StartError> {
    let model: PathBuf = config::var(
        src,
        "CLASSIFY_MODEL_PATH",
        PathBuf::from("../shared/models/mobilenet_v2_1.0_224_quant.tflite"),
    )?;
    let labels: PathBuf = config::var(
        src,
        "CLASSIFY_LABELS_PATH",
        PathBuf::from("../shared/models/labels_mobilenet_quant_v1_224.txt"),
    )?;
    let mut classifier = ClassifierConfig::new(model, labels);
    classifier.top_k = config::in_range(
        "CLASSIFY_TOP_K",
        config::var(src, "CLASSIFY_TOP_K", 5usize)?,
        1..=100,
    )?;
    let backend: String = config::var(
        src,
        "CLASSIFY_BACKEND",
        BackendKind::default().name().to_owned(),
    )?;
    classifier.backend = BackendKind::parse(&backend)
        .map_err(|reason| config::ConfigError::new("CLASSIFY_BACKEND", backend, reason))?;
    Ok(Config {
        service: ImageServiceConfig::from_source(src, APP_ID, 9006, 3504)?,
        classifier,
    })
}

struct State {
    recorder: Recorder,
    classifier: Arc<Classifier>,
    service: ImageServiceConfig,
}

pub async fn build(config: Config) -> Result<App, StartError> {
    // Load before waiting for the sidecar: a bad model path fails fast.
    let classifier =
        Classifier::load(&config.classifier).map_err(|e| StartError::Other(e.to_string()))?;
    tracing::info!(
        model = %config.classifier.model_path.display(),
        backend = config.classifier.backend.name(),
        load_ms = classifier.load_duration().as_secs_f64() * 1e3,
        "model loaded"
    );
    let (listener, recorder) = image_service::start(&config.service).await?;
    let limiter = image_service::rate_limiter(&config.service)?;
    let probes = vec![image_service::sidecar_probe(&recorder)];
    let server = config.service.server.clone();
    let state = Arc::new(State {
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
    App::with_limiter(listener, router, server, limiter)
}

/// `"<label> is detected with <n>/255 confidence"`, or the top-k as JSON
/// with `Accept: application/json`.
async fn classify(state: Arc<State>, req: Req) -> HandlerResult {
    let (body, limits, classifier) = (
        req.body.clone(),
        state.service.limits,
        state.classifier.clone(),
    );
    let predictions: Vec<Prediction> =
        kit::rt::cpu(move || classifier.classify(&body, &limits)).await??;
    let best = predictions
        .first()
        .ok_or_else(|| kit::ApiError::internal("the model gave no prediction"))?;
    state
        .recorder
        .success(&req.trace, "classify", req.body.len(), req.client_ip())
        .await?;
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
        config(&src)
            .map(|c| c.classifier.backend)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_backend_is_chosen_by_classify_backend() {
        assert_eq!(
            config(&HashMap::<&str, &str>::new())
                .map(|c| c.classifier.backend)
                .ok(),
            Some(BackendKind::Tract)
        );
        assert_eq!(backend("tract"), Ok(BackendKind::Tract));
        let e = backend("onnx").expect_err("refused");
        assert!(
            e.contains("CLASSIFY_BACKEND")
                && e.contains("\"onnx\"")
                && e.contains("tract or wasmedge-tflite"),
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
