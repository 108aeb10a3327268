//! Inference backends: something that runs the model on a preprocessed
//! NHWC float image and returns one probability per class.

use crate::ClassifyError;
use std::path::Path;

/// Which backend runs the model (`CLASSIFY_BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
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

/// tract when the build has it; otherwise the plugin, the only backend a
/// `--no-default-features --features wasmedge-tflite` build has.
impl Default for BackendKind {
    fn default() -> Self {
        if cfg!(feature = "tract") {
            BackendKind::Tract
        } else {
            BackendKind::WasmEdgeTflite
        }
    }
}

impl BackendKind {
    pub const ALL: [BackendKind; 2] = [BackendKind::Tract, BackendKind::WasmEdgeTflite];

    /// Its `CLASSIFY_BACKEND` value.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Tract => "tract",
            BackendKind::WasmEdgeTflite => crate::plugin::NAME,
        }
    }

    /// The backend `CLASSIFY_BACKEND` names, if this build can run it;
    /// otherwise why not (for the configuration error).
    pub fn parse(name: &str) -> Result<BackendKind, String> {
        let kind = BackendKind::ALL
            .into_iter()
            .find(|k| k.name() == name.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = BackendKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown backend: expected {}", names.join(" or "))
            })?;
        kind.available()?;
        Ok(kind)
    }

    /// Whether this build has the backend; if not, why.
    pub fn available(self) -> Result<(), String> {
        availability(
            self,
            Build {
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
    tract: bool,
    plugin: bool,
    wasi: bool,
}

/// [`BackendKind::available`] for any [`Build`] (a function of all three, so
/// every case is tested in any build).
fn availability(kind: BackendKind, build: Build) -> Result<(), String> {
    let Build { tract, plugin: feature, wasi } = build;
    match kind {
        BackendKind::Tract if !tract => Err(
            "this build of image-api-classify has no tract backend: it was built without the \
             default cargo feature `tract` (a wasmedge-tflite-only module); use wasmedge-tflite"
                .into(),
        ),
        BackendKind::Tract => Ok(()),
        BackendKind::WasmEdgeTflite if !feature => Err(
            "this build of image-api-classify has no wasmedge-tflite backend: it is compiled in only \
             for wasm32-wasip1 with `--features wasmedge-tflite`, and runs only on a WasmEdge with \
             its TensorFlow Lite plugin; use tract"
                .into(),
        ),
        BackendKind::WasmEdgeTflite if !wasi => Err(
            "the wasmedge-tflite backend calls WasmEdge's TensorFlow Lite plugin, so it runs only in \
             the wasm32-wasip1 build under WasmEdge, and this is a native build; use tract"
                .into(),
        ),
        BackendKind::WasmEdgeTflite => Ok(()),
    }
}

/// A loaded model. Shared by all requests, hence `Send + Sync` and `&self`.
pub trait InferenceBackend: Send + Sync {
    /// (width, height) of the image the model takes.
    fn input_size(&self) -> (u32, u32);
    /// Number of classes in the model's output.
    fn output_len(&self) -> usize;
    /// Run the model. `input` is 1xHxWx3 NHWC in `[-1, 1)`, i.e.
    /// `(u8 - 128) / 128`, exactly the real value of the quantized model's
    /// uint8 input; the answer is `output_len()` softmax probabilities.
    fn infer(&self, input: &[f32]) -> Result<Vec<f32>, ClassifyError>;
}

/// Load the model at `path` with the backend `kind`.
pub fn load_backend(
    kind: BackendKind,
    path: &Path,
) -> Result<Box<dyn InferenceBackend>, ClassifyError> {
    kind.available()
        .map_err(|reason| ClassifyError::BackendUnavailable {
            backend: kind.name(),
            reason,
        })?;
    match kind {
        BackendKind::Tract => load_tract(path),
        BackendKind::WasmEdgeTflite => load_plugin(path),
    }
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
        reason: BackendKind::WasmEdgeTflite
            .available()
            .err()
            .unwrap_or_default(),
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
            assert_eq!(
                BackendKind::ALL
                    .iter()
                    .filter(|k| k.name() == kind.name())
                    .count(),
                1
            );
        }
    }

    #[test]
    fn an_unknown_backend_lists_the_known_ones() {
        let e = BackendKind::parse("onnx").expect_err("refused");
        assert!(e.contains("tract") && e.contains("wasmedge-tflite"), "{e}");
    }

    #[test]
    fn wasmedge_tflite_needs_the_feature_and_wasm() {
        let kind = BackendKind::WasmEdgeTflite;
        let build = |tract, plugin, wasi| Build { tract, plugin, wasi };
        let no_feature = availability(kind, build(true, false, true)).expect_err("refused");
        assert!(
            no_feature.contains("--features wasmedge-tflite"),
            "{no_feature}"
        );
        assert_eq!(availability(kind, build(true, false, false)), Err(no_feature));
        let native = availability(kind, build(true, true, false)).expect_err("refused");
        assert!(native.contains("native build"), "{native}");
        assert_eq!(availability(kind, build(true, true, true)), Ok(()));
        assert_eq!(availability(kind, build(false, true, true)), Ok(()));
    }

    #[test]
    fn tract_needs_its_feature() {
        let build = |tract| Build { tract, plugin: true, wasi: true };
        assert_eq!(availability(BackendKind::Tract, build(true)), Ok(()));
        let without = availability(BackendKind::Tract, build(false)).expect_err("refused");
        assert!(without.contains("feature `tract`"), "{without}");
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
