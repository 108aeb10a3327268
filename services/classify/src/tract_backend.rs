//! The tract backend: the model dequantized to float32 at load time, then
//! parsed, optimised and run by tract. Pure Rust, so it runs natively and
//! in `wasm32-wasip1` without any host plugin. The cargo feature `tract`
//! (default); without it the module carries no tract code at all.

use crate::backend::InferenceBackend;
use crate::dequantize::{dequantize_tflite, DequantizeError};
use crate::ClassifyError;
use std::path::Path;
use tract_tflite::internal::*;

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
        let bytes =
            std::fs::read(path).map_err(|source| ClassifyError::ModelUnreadable { path: path.to_owned(), source })?;
        Self::from_bytes(&bytes).map_err(|reason| ClassifyError::InvalidModel { path: path.to_owned(), reason })
    }

    /// Dequantize, parse, type-check and optimise the model in `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let float_model = dequantize_tflite(bytes).map_err(|e: DequantizeError| e.to_string())?;
        let tract_err = |e: TractError| format!("{e:#}");
        let model = tract_tflite::tflite().model_for_read(&mut float_model.as_slice()).map_err(tract_err)?;
        let input_shape = image_input_shape(&model).map_err(tract_err)?;
        let output_len = output_len(&model).map_err(tract_err)?;
        let plan = model.into_optimized().map_err(tract_err)?.into_runnable().map_err(tract_err)?;
        Ok(Self { plan, input_shape, output_len })
    }
}

/// The model's single input must be a float 1xHxWx3 image.
fn image_input_shape(model: &TypedModel) -> TractResult<[usize; 4]> {
    ensure!(model.inputs.len() == 1, "expected one input, the model has {}", model.inputs.len());
    let fact = model.input_fact(0)?;
    ensure!(fact.datum_type == f32::datum_type(), "input is {:?}, expected f32", fact.datum_type);
    let shape = fact.shape.as_concrete().context("the input shape is not fixed")?;
    match *shape {
        [1, h, w, 3] if h > 0 && w > 0 && u32::try_from(h.max(w)).is_ok() => Ok([1, h, w, 3]),
        _ => bail!("input shape {shape:?} is not 1xHxWx3"),
    }
}

/// The model's single output must be a float 1xN (or N) class vector.
fn output_len(model: &TypedModel) -> TractResult<usize> {
    ensure!(model.outputs.len() == 1, "expected one output, the model has {}", model.outputs.len());
    let fact = model.output_fact(0)?;
    ensure!(fact.datum_type == f32::datum_type(), "output is {:?}, expected f32", fact.datum_type);
    let shape = fact.shape.as_concrete().context("the output shape is not fixed")?;
    let len: usize = shape.iter().product();
    ensure!(len > 0 && shape.iter().filter(|&&d| d != 1).count() <= 1, "output shape {shape:?} is not a class vector");
    Ok(len)
}

impl InferenceBackend for TractBackend {
    fn input_size(&self) -> (u32, u32) {
        // Both fit in u32: checked when the model was loaded.
        let [_, h, w, _] = self.input_shape;
        (u32::try_from(w).unwrap_or(u32::MAX), u32::try_from(h).unwrap_or(u32::MAX))
    }

    fn output_len(&self) -> usize {
        self.output_len
    }

    fn infer(&self, pixels: &[u8]) -> Result<Vec<f32>, ClassifyError> {
        let failed = |e: TractError| ClassifyError::Inference(format!("{e:#}"));
        // The float model takes the quantized input's real values.
        let input: Vec<f32> = pixels.iter().map(|&q| crate::preprocess::normalise(q)).collect();
        let tensor = Tensor::from_shape(&self.input_shape, &input).map_err(failed)?;
        let outputs = self.plan.run(tvec!(tensor.into_tvalue())).map_err(failed)?;
        let output = outputs.first().ok_or_else(|| ClassifyError::Inference("no output".into()))?;
        let probabilities =
            output.try_as_plain_ram().and_then(|p| p.as_slice::<f32>().map(<[f32]>::to_vec)).map_err(failed)?;
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
