//! Inference backends: something that runs the model on a preprocessed
//! NHWC float image and returns one probability per class.

use crate::dequantize::{dequantize_tflite, DequantizeError};
use crate::ClassifyError;
use std::path::Path;
use tract_tflite::internal::*;

/// Which backend runs the model (`CLASSIFY_BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BackendKind {
    /// tract, on the model dequantized to float32 at load time. Pure Rust,
    /// so it runs natively and in `wasm32-wasip1` without any host plugin.
    #[default]
    Tract,
    /// WasmEdge's TensorFlow Lite plugin on the quantized model, as the
    /// original template ran it (see [`crate::plugin`]). Only in a
    /// `wasm32-wasip1` build with the cargo feature `wasmedge-tflite`, and
    /// only on a WasmEdge that has the plugin.
    WasmEdgeTflite,
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
            cfg!(feature = "wasmedge-tflite"),
            cfg!(target_os = "wasi"),
        )
    }
}

/// [`BackendKind::available`] for a build with or without the cargo feature
/// `wasmedge-tflite`, for `wasm32-wasip1` or not (a function of both, so
/// every case is tested in any build).
fn availability(kind: BackendKind, feature: bool, wasi: bool) -> Result<(), String> {
    match kind {
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
        BackendKind::Tract => Ok(Box::new(TractBackend::load(path)?)),
        BackendKind::WasmEdgeTflite => load_plugin(path),
    }
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

/// tract on the float32 version of the model.
pub struct TractBackend {
    plan: Arc<TypedRunnableModel>,
    /// Input shape [1, H, W, 3].
    input_shape: [usize; 4],
    output_len: usize,
}

impl std::fmt::Debug for TractBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractBackend")
            .field("input_shape", &self.input_shape)
            .field("output_len", &self.output_len)
            .finish_non_exhaustive()
    }
}

impl TractBackend {
    pub fn load(path: &Path) -> Result<Self, ClassifyError> {
        let bytes = std::fs::read(path).map_err(|source| ClassifyError::ModelUnreadable {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|reason| ClassifyError::InvalidModel {
            path: path.to_owned(),
            reason,
        })
    }

    /// Dequantize, parse, type-check and optimise the model in `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let float_model = dequantize_tflite(bytes).map_err(|e: DequantizeError| e.to_string())?;
        let tract_err = |e: TractError| format!("{e:#}");
        let model = tract_tflite::tflite()
            .model_for_read(&mut float_model.as_slice())
            .map_err(tract_err)?;
        let input_shape = image_input_shape(&model).map_err(tract_err)?;
        let output_len = output_len(&model).map_err(tract_err)?;
        let plan = model
            .into_optimized()
            .map_err(tract_err)?
            .into_runnable()
            .map_err(tract_err)?;
        Ok(Self {
            plan,
            input_shape,
            output_len,
        })
    }
}

/// The model's single input must be a float 1xHxWx3 image.
fn image_input_shape(model: &TypedModel) -> TractResult<[usize; 4]> {
    ensure!(
        model.inputs.len() == 1,
        "expected one input, the model has {}",
        model.inputs.len()
    );
    let fact = model.input_fact(0)?;
    ensure!(
        fact.datum_type == f32::datum_type(),
        "input is {:?}, expected f32",
        fact.datum_type
    );
    let shape = fact
        .shape
        .as_concrete()
        .context("the input shape is not fixed")?;
    match *shape {
        [1, h, w, 3] if h > 0 && w > 0 && u32::try_from(h.max(w)).is_ok() => Ok([1, h, w, 3]),
        _ => bail!("input shape {shape:?} is not 1xHxWx3"),
    }
}

/// The model's single output must be a float 1xN (or N) class vector.
fn output_len(model: &TypedModel) -> TractResult<usize> {
    ensure!(
        model.outputs.len() == 1,
        "expected one output, the model has {}",
        model.outputs.len()
    );
    let fact = model.output_fact(0)?;
    ensure!(
        fact.datum_type == f32::datum_type(),
        "output is {:?}, expected f32",
        fact.datum_type
    );
    let shape = fact
        .shape
        .as_concrete()
        .context("the output shape is not fixed")?;
    let len: usize = shape.iter().product();
    ensure!(
        len > 0 && shape.iter().filter(|&&d| d != 1).count() <= 1,
        "output shape {shape:?} is not a class vector"
    );
    Ok(len)
}

impl InferenceBackend for TractBackend {
    fn input_size(&self) -> (u32, u32) {
        // Both fit in u32: checked when the model was loaded.
        let [_, h, w, _] = self.input_shape;
        (
            u32::try_from(w).unwrap_or(u32::MAX),
            u32::try_from(h).unwrap_or(u32::MAX),
        )
    }

    fn output_len(&self) -> usize {
        self.output_len
    }

    fn infer(&self, input: &[f32]) -> Result<Vec<f32>, ClassifyError> {
        let failed = |e: TractError| ClassifyError::Inference(format!("{e:#}"));
        let tensor = Tensor::from_shape(&self.input_shape, input).map_err(failed)?;
        let outputs = self.plan.run(tvec!(tensor.into_tvalue())).map_err(failed)?;
        let output = outputs
            .first()
            .ok_or_else(|| ClassifyError::Inference("no output".into()))?;
        let probabilities = output
            .try_as_plain_ram()
            .and_then(|p| p.as_slice::<f32>().map(<[f32]>::to_vec))
            .map_err(failed)?;
        if probabilities.len() != self.output_len {
            return Err(ClassifyError::Inference(format!(
                "the model answered {} values, expected {}",
                probabilities.len(),
                self.output_len
            )));
        }
        Ok(probabilities)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(BackendKind::parse("tract"), Ok(BackendKind::Tract));
        assert_eq!(BackendKind::parse(" tract "), Ok(BackendKind::Tract));
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
        let no_feature = availability(kind, false, true).expect_err("refused");
        assert!(
            no_feature.contains("--features wasmedge-tflite"),
            "{no_feature}"
        );
        assert_eq!(availability(kind, false, false), Err(no_feature));
        let native = availability(kind, true, false).expect_err("refused");
        assert!(native.contains("native build"), "{native}");
        assert_eq!(availability(kind, true, true), Ok(()));
        assert_eq!(availability(BackendKind::Tract, false, false), Ok(()));
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
