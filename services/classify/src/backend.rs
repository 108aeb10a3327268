//! Inference backends: something that runs the model on a preprocessed
//! image (RGB8 at the model's input size, NHWC) and returns one probability
//! per class.

use crate::ClassifyError;
use std::path::Path;

/// Which backend runs the model (`CLASSIFY_BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// LiteRT (TensorFlow Lite's runtime, libLiteRt.so) on the quantized
    /// model as it is: the reference's engine and scores. Native only, the
    /// cargo feature `litert` (default); see [`crate::litert_backend`].
    LiteRt,
    /// tract, on the model dequantized to float32 at load time. Pure Rust,
    /// so it runs natively and in `wasm32-wasip1` without any host plugin.
    /// The cargo feature `tract` (default).
    Tract,
    /// WasmEdge's TensorFlow Lite plugin on the quantized model, as the
    /// original template ran it (see [`crate::plugin`]). Only in a
    /// `wasm32-wasip1` build with the cargo feature `wasmedge-tflite`, and
    /// only on a WasmEdge that has the plugin.
    WasmEdgeTflite,
}

/// LiteRT natively, tract in wasm32 (and natively without `litert`);
/// otherwise the plugin, the only backend a `--no-default-features
/// --features wasmedge-tflite` build has.
impl Default for BackendKind {
    fn default() -> Self {
        if cfg!(all(feature = "litert", not(target_family = "wasm"))) {
            BackendKind::LiteRt
        } else if cfg!(feature = "tract") {
            BackendKind::Tract
        } else {
            BackendKind::WasmEdgeTflite
        }
    }
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [BackendKind::LiteRt, BackendKind::Tract, BackendKind::WasmEdgeTflite];

    /// Its `CLASSIFY_BACKEND` value.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::LiteRt => "litert",
            BackendKind::Tract => "tract",
            BackendKind::WasmEdgeTflite => crate::plugin::NAME,
        }
    }

    /// The backend `CLASSIFY_BACKEND` names, if this build can run it;
    /// otherwise why not (for the configuration error).
    pub fn parse(name: &str) -> Result<BackendKind, String> {
        let kind = BackendKind::ALL.into_iter().find(|k| k.name() == name.trim()).ok_or_else(|| {
            let names: Vec<&str> = BackendKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown backend: expected one of {}", names.join(", "))
        })?;
        kind.available()?;
        Ok(kind)
    }

    /// Whether this build has the backend; if not, why.
    pub fn available(self) -> Result<(), String> {
        availability(
            self,
            Build {
                litert: cfg!(feature = "litert"),
                tract: cfg!(feature = "tract"),
                plugin: cfg!(feature = "wasmedge-tflite"),
                wasi: cfg!(target_os = "wasi"),
            },
        )
    }
}

/// What a build has: the cargo features `tract` and `wasmedge-tflite`, and
/// whether it is for `wasm32-wasip1`.
#[derive(Debug, Clone, Copy)]
struct Build {
    litert: bool,
    tract: bool,
    plugin: bool,
    wasi: bool,
}

/// [`BackendKind::available`] for any [`Build`] (a function of all three, so
/// every case is tested in any build).
fn availability(kind: BackendKind, build: Build) -> Result<(), String> {
    let Build { litert, tract, plugin: feature, wasi } = build;
    match kind {
        BackendKind::LiteRt if wasi => {
            Err("the litert backend runs libLiteRt.so, a native library, so it is not in the wasm32-wasip1 build; \
             use tract"
                .into())
        }
        BackendKind::LiteRt if !litert => {
            Err("this build of image-api-classify has no litert backend: it was built without the default cargo \
             feature `litert`; use tract"
                .into())
        }
        BackendKind::LiteRt => Ok(()),
        BackendKind::Tract if !tract => {
            Err("this build of image-api-classify has no tract backend: it was built without the \
             default cargo feature `tract` (a wasmedge-tflite-only module); use wasmedge-tflite"
                .into())
        }
        BackendKind::Tract => Ok(()),
        BackendKind::WasmEdgeTflite if !feature => {
            Err("this build of image-api-classify has no wasmedge-tflite backend: it is compiled in only \
             for wasm32-wasip1 with `--features wasmedge-tflite`, and runs only on a WasmEdge with \
             its TensorFlow Lite plugin; use tract"
                .into())
        }
        BackendKind::WasmEdgeTflite if !wasi => {
            Err("the wasmedge-tflite backend calls WasmEdge's TensorFlow Lite plugin, so it runs only in \
             the wasm32-wasip1 build under WasmEdge, and this is a native build; use tract"
                .into())
        }
        BackendKind::WasmEdgeTflite => Ok(()),
    }
}

/// A loaded model. Shared by all requests, hence `Send + Sync` and `&self`.
pub trait InferenceBackend: Send + Sync {
    /// (width, height) of the image the model takes.
    fn input_size(&self) -> (u32, u32);
    /// Number of classes in the model's output.
    fn output_len(&self) -> usize;
    /// Run the model. `pixels` is the image at the model's input size, 1xHxWx3
    /// NHWC RGB8: for the quantized model exactly its uint8 input, whose real
    /// value is `(q - 128) / 128` (`preprocess::normalise`), what a float
    /// backend computes from it. The answer is `output_len()` softmax
    /// probabilities.
    fn infer(&self, pixels: &[u8]) -> Result<Vec<f32>, ClassifyError>;
}

/// Whether `kind` can run one inference on `threads` threads. Every backend
/// here runs one: tract is built without rayon (so it runs in wasm32), the
/// plugin runs as WasmEdge's TFLite does, and LiteRT 2.1.4's C library (the
/// wheel's libLiteRt.so) exports no CPU options (`LiteRtCreateCpuOptions` is
/// not in it), so its XNNPACK keeps its default of one thread.
pub fn check_threads(kind: BackendKind, threads: usize) -> Result<(), ClassifyError> {
    if threads == 1 {
        return Ok(());
    }
    Err(ClassifyError::BackendUnavailable {
        backend: kind.name(),
        reason: format!(
            "{threads} threads per inference: every backend of this build runs one (LiteRT {}'s libLiteRt.so has no \
             CPU options to ask for more); concurrency comes from requests in parallel, so use CLASSIFY_THREADS=1",
            "2.1.4"
        ),
    })
}

/// Load the model at `path` with the backend `kind`.
pub fn load_backend(kind: BackendKind, path: &Path) -> Result<Box<dyn InferenceBackend>, ClassifyError> {
    kind.available().map_err(|reason| ClassifyError::BackendUnavailable { backend: kind.name(), reason })?;
    match kind {
        BackendKind::LiteRt => load_litert(path),
        BackendKind::Tract => load_tract(path),
        BackendKind::WasmEdgeTflite => load_plugin(path),
    }
}

#[cfg(all(feature = "litert", not(target_family = "wasm")))]
fn load_litert(path: &Path) -> Result<Box<dyn InferenceBackend>, ClassifyError> {
    Ok(Box::new(crate::litert_backend::LiteRtBackend::load(path)?))
}

#[cfg(not(all(feature = "litert", not(target_family = "wasm"))))]
fn load_litert(_path: &Path) -> Result<Box<dyn InferenceBackend>, ClassifyError> {
    // available() said no already; this keeps the match total.
    Err(ClassifyError::BackendUnavailable {
        backend: "litert",
        reason: BackendKind::LiteRt.available().err().unwrap_or_default(),
    })
}

#[cfg(feature = "tract")]
fn load_tract(path: &Path) -> Result<Box<dyn InferenceBackend>, ClassifyError> {
    Ok(Box::new(crate::tract_backend::TractBackend::load(path)?))
}

#[cfg(not(feature = "tract"))]
fn load_tract(_path: &Path) -> Result<Box<dyn InferenceBackend>, ClassifyError> {
    // available() said no already; this keeps the match total.
    Err(ClassifyError::BackendUnavailable {
        backend: "tract",
        reason: BackendKind::Tract.available().err().unwrap_or_default(),
    })
}

#[cfg(all(feature = "wasmedge-tflite", target_os = "wasi"))]
fn load_plugin(path: &Path) -> Result<Box<dyn InferenceBackend>, ClassifyError> {
    use crate::plugin::{wasmedge::WasmEdgePlugin, PluginBackend};
    Ok(Box::new(PluginBackend::load(path, WasmEdgePlugin)?))
}

#[cfg(not(all(feature = "wasmedge-tflite", target_os = "wasi")))]
fn load_plugin(_path: &Path) -> Result<Box<dyn InferenceBackend>, ClassifyError> {
    // available() said no already; this keeps the match total.
    Err(ClassifyError::BackendUnavailable {
        backend: crate::plugin::NAME,
        reason: BackendKind::WasmEdgeTflite.available().err().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        if cfg!(feature = "tract") {
            assert_eq!(BackendKind::parse("tract"), Ok(BackendKind::Tract));
            assert_eq!(BackendKind::parse(" tract "), Ok(BackendKind::Tract));
        } else {
            let without = BackendKind::parse("tract").expect_err("no tract in this build");
            assert!(without.contains("feature `tract`"), "{without}");
        }
        for kind in BackendKind::ALL {
            assert_eq!(BackendKind::ALL.iter().filter(|k| k.name() == kind.name()).count(), 1);
        }
    }

    #[test]
    fn an_unknown_backend_lists_the_known_ones() {
        let e = BackendKind::parse("onnx").expect_err("refused");
        assert!(e.contains("litert") && e.contains("tract") && e.contains("wasmedge-tflite"), "{e}");
    }

    #[test]
    fn wasmedge_tflite_needs_the_feature_and_wasm() {
        let kind = BackendKind::WasmEdgeTflite;
        let build = |tract, plugin, wasi| Build { litert: true, tract, plugin, wasi };
        let no_feature = availability(kind, build(true, false, true)).expect_err("refused");
        assert!(no_feature.contains("--features wasmedge-tflite"), "{no_feature}");
        assert_eq!(availability(kind, build(true, false, false)), Err(no_feature));
        let native = availability(kind, build(true, true, false)).expect_err("refused");
        assert!(native.contains("native build"), "{native}");
        assert_eq!(availability(kind, build(true, true, true)), Ok(()));
        assert_eq!(availability(kind, build(false, true, true)), Ok(()));
    }

    #[test]
    fn tract_needs_its_feature() {
        let build = |tract| Build { litert: false, tract, plugin: true, wasi: true };
        assert_eq!(availability(BackendKind::Tract, build(true)), Ok(()));
        let without = availability(BackendKind::Tract, build(false)).expect_err("refused");
        assert!(without.contains("feature `tract`"), "{without}");
    }

    #[test]
    fn litert_needs_its_feature_and_a_native_build() {
        let build = |litert, wasi| Build { litert, tract: true, plugin: false, wasi };
        assert_eq!(availability(BackendKind::LiteRt, build(true, false)), Ok(()));
        let without = availability(BackendKind::LiteRt, build(false, false)).expect_err("refused");
        assert!(without.contains("feature `litert`"), "{without}");
        let wasm = availability(BackendKind::LiteRt, build(true, true)).expect_err("refused");
        assert!(wasm.contains("wasm32-wasip1"), "{wasm}");
    }

    #[test]
    fn the_default_is_litert_natively_and_tract_in_wasm() {
        let expected = if cfg!(all(feature = "litert", not(target_family = "wasm"))) {
            BackendKind::LiteRt
        } else if cfg!(feature = "tract") {
            BackendKind::Tract
        } else {
            BackendKind::WasmEdgeTflite
        };
        assert_eq!(BackendKind::default(), expected);
        assert_eq!(BackendKind::default().available(), Ok(()));
    }

    #[test]
    fn this_build_says_why_it_has_no_wasmedge_tflite() {
        // Natively (any feature) or in a wasm build without the feature.
        if cfg!(all(feature = "wasmedge-tflite", target_os = "wasi")) {
            return;
        }
        let reason = BackendKind::parse("wasmedge-tflite").expect_err("refused");
        let Err(e) = load_backend(BackendKind::WasmEdgeTflite, Path::new("/no/model")) else {
            panic!("loaded a backend this build does not have");
        };
        assert!(matches!(e, ClassifyError::BackendUnavailable { .. }), "{e}");
        assert!(e.to_string().contains(&reason), "{e}");
    }
}
