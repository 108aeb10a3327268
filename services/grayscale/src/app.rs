//! The grayscale service: one route, the shared request path, the domain
//! function on the CPU pool, the record through Dapr.

use kit::app::App;
use kit::config::Source;
use kit::http::{self, HandlerResult, Req, Router};
use kit::hyper::{Method, StatusCode};
use kit::image_service::{self, ImageServiceConfig, ImageWork, MemoryProfile};
use kit::imaging::ImageLimits;
use kit::memory::Baseline;
use kit::prometheus::HistogramVec;
use kit::record::Recorder;
use kit::StartError;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

pub const APP_ID: &str = "image-api-grayscale";

/// What grayscale needs besides its decode budget, natively and under
/// WasmEdge. Measured by `hostile::` after warm-up: VmRSS 9 MiB natively,
/// 64 MiB under WasmEdge (its AOT code and runtime); the rest is headroom
/// for the allocator, the sidecar client's pools and connection buffers.
/// tools/validate checks budget + baseline against the container limits.
pub const MEMORY_BASELINE: Baseline = Baseline::mib(64, 96);

pub fn config(src: &dyn Source) -> Result<ImageServiceConfig, StartError> {
    let profile = MemoryProfile { baseline: MEMORY_BASELINE, worst_bytes_per_pixel: crate::WORST_BYTES_PER_PIXEL };
    ImageServiceConfig::from_source(src, APP_ID, 9005, 3503, profile)
}

struct State {
    recorder: Recorder,
    limits: ImageLimits,
}

struct Metrics {
    /// `grayscale_duration_seconds{format}`: decode + convert + encode.
    duration: HistogramVec,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        duration: kit::metrics::histogram(
            "grayscale_duration_seconds",
            "Time to turn an image into a grayscale PNG (decode, convert, encode), by input format.",
            &["format"],
        ),
    })
}

pub async fn build(config: ImageServiceConfig) -> Result<App, StartError> {
    let (listener, recorder) = image_service::start(&config).await?;
    let limiter = image_service::rate_limiter(&config)?;
    let probes = vec![image_service::sidecar_probe(&recorder)];
    let state = Arc::new(State { recorder, limits: config.limits });
    let router = Router::new()
        .route(Method::GET, "/", |_req| async {
            Ok(http::text(
                StatusCode::OK,
                "Try POSTing data to /grayscale such as: `curl http://localhost:9005/grayscale -X POST --data-binary '@my_img.png'`",
            ))
        })
        .route(Method::POST, "/grayscale", move |req| grayscale(state.clone(), req))
        .with_health(APP_ID, probes);
    App::new(listener, router, config.server, limiter)
}

/// The grayscale PNG, base64-encoded as the original template answered
/// (kept for its clients), or raw with
/// `Accept: image/png`.
async fn grayscale(state: Arc<State>, mut req: Req) -> HandlerResult {
    let (body, limits) = (req.body.clone(), state.limits);
    // The header alone, before any pixel: a bad or oversized upload is
    // answered here, and what the decode will hold is reserved.
    let checked = kit::imaging::intake(&body, &limits).map_err(crate::GrayscaleError::from)?;
    let (format, width, height) = checked;
    let work = ImageWork::admit(&mut req, crate::decode_cost(&body, format, width, height)).await?;
    let started = Instant::now();
    // In steps: under WASI the thread is shared with probes and other
    // connections between them.
    let mut steps = crate::stepped::Grayscale::new(body, checked, &limits);
    let png = work.run_steps(move || steps.step()).await??;
    if kit::metrics::enabled() {
        let format = format!("{:?}", png.source_format).to_ascii_lowercase();
        metrics().duration.with_label_values(&[&format]).observe(started.elapsed().as_secs_f64());
    }
    state.recorder.success(&req.trace, "grayscale", req.body.len(), req.client_ip()).await?;
    if req.accepts("image/png") {
        Ok(http::with_body(StatusCode::OK, "image/png", png.png))
    } else {
        Ok(http::with_body(StatusCode::OK, "text/plain; charset=utf-8", png.base64().into_bytes()))
    }
}
