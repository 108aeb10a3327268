//! The LiteRT backend: the quantized model as it is, run by LiteRT (TensorFlow
//! Lite's runtime, its C API in libLiteRt.so; XNNPACK on the CPU) through the
//! `litert` crate. The reference's engine, so the reference's answers: the
//! uint8 output is the score. Native only, the cargo feature `litert`
//! (default); libLiteRt.so 2.1.4 comes from scripts/litert.sh.
//!
//! Sharing: a LiteRT compiled model is `Send` but not `Sync` (a run writes
//! its own tensors), so requests cannot share one. The backend keeps a pool
//! of interpreters (compiled model + its input and output buffers), each
//! used by one request at a time: a request takes one, or compiles a new one
//! when all are busy, and gives it back. So there are as many as requests
//! ever ran at once (the CPU pool's concurrency), built only when needed,
//! rather than one per blocking thread (tokio's pool has up to 512, most of
//! them idle), and no request waits for another's interpreter.

use crate::backend::InferenceBackend;
use crate::plugin::{Element, ModelIo, TensorInfo};
use crate::ClassifyError;
use litert::{CompilationOptions, CompiledModel, ElementType, Environment, Model, TensorBuffer, TensorShape};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What the backend is called in `CLASSIFY_BACKEND` and in errors.
pub const NAME: &str = "litert";

/// The library version the `litert` crate's headers are (litert-sys 0.2.1).
pub const LITERT_VERSION: &str = "2.1.4";

/// One model ready to run, with its own buffers: one request at a time.
struct Interpreter {
    compiled: CompiledModel,
    input: TensorBuffer,
    output: TensorBuffer,
}

/// The model loaded for LiteRT, shared by all requests.
pub struct LiteRtBackend {
    /// The model file, for compiling more interpreters when busy.
    model: Arc<[u8]>,
    io: ModelIo,
    idle: Mutex<Vec<Interpreter>>,
}

impl std::fmt::Debug for LiteRtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteRtBackend").field("io", &self.io).finish_non_exhaustive()
    }
}

/// What to say when LiteRT itself fails at start-up: with the right library
/// that only happens to a bad model, and with another version's library
/// (an ABI the headers do not describe) it is the first symptom, seen as
/// "Could not open ''".
fn start_up_failure(what: &str, e: &litert::Error) -> String {
    format!(
        "LiteRT failed to {what} ({e}). The libLiteRt.so this binary loaded must be LiteRT {LITERT_VERSION}'s \
         (the `litert` crate's headers): run scripts/litert.sh (or `make deps`), which unpacks it from the PyPI \
         wheel ai-edge-litert=={LITERT_VERSION} into .cache/litert/{LITERT_VERSION}, or use CLASSIFY_BACKEND=tract"
    )
}

fn element_type(tensor: &TensorInfo) -> ElementType {
    match tensor.element {
        Element::F32 => ElementType::Float32,
        Element::U8 => ElementType::UInt8,
        Element::I8 => ElementType::Int8,
    }
}

fn shape(tensor: &TensorInfo) -> Result<TensorShape, String> {
    let dims = tensor
        .shape
        .iter()
        .map(|&d| i32::try_from(d).map_err(|_| format!("tensor {:?} has a dimension {d}", tensor.name)))
        .collect::<Result<_, _>>()?;
    Ok(TensorShape { element_type: element_type(tensor), dims })
}

impl LiteRtBackend {
    /// Read the model, check its input and output, and compile a first
    /// interpreter: a model LiteRT refuses (or a wrong library) fails here.
    pub fn load(path: &Path) -> Result<Self, ClassifyError> {
        let bytes =
            std::fs::read(path).map_err(|source| ClassifyError::ModelUnreadable { path: path.to_owned(), source })?;
        let invalid = |reason: String| ClassifyError::InvalidModel { path: path.to_owned(), reason };
        let io = ModelIo::read(&bytes).map_err(invalid)?;
        let backend = Self { model: bytes.into(), io, idle: Mutex::new(Vec::new()) };
        let first = backend.compile().map_err(invalid)?;
        backend.give_back(first);
        Ok(backend)
    }

    /// The model's input and output tensors.
    pub fn io(&self) -> &ModelIo {
        &self.io
    }

    fn compile(&self) -> Result<Interpreter, String> {
        let input_shape = shape(&self.io.input)?;
        let output_shape = shape(&self.io.output)?;
        let env = Environment::new().map_err(|e| start_up_failure("create its environment", &e))?;
        let model = Model::from_bytes(self.model.to_vec()).map_err(|e| start_up_failure("read the model", &e))?;
        let input = TensorBuffer::managed_host(&env, &input_shape)
            .map_err(|e| start_up_failure("allocate the input tensor", &e))?;
        let output = TensorBuffer::managed_host(&env, &output_shape)
            .map_err(|e| start_up_failure("allocate the output tensor", &e))?;
        let options = CompilationOptions::new().map_err(|e| start_up_failure("create compilation options", &e))?;
        let compiled =
            CompiledModel::new(env, model, &options).map_err(|e| start_up_failure("compile the model", &e))?;
        Ok(Interpreter { compiled, input, output })
    }

    fn take(&self) -> Result<Interpreter, ClassifyError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(interpreter) => Ok(interpreter),
            None => self.compile().map_err(ClassifyError::Inference),
        }
    }

    fn give_back(&self, interpreter: Interpreter) {
        // A poisoned lock only loses the interpreter: the next request compiles one.
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(interpreter);
        }
    }

    /// Run the model on its input tensor's raw bytes (uint8 for MobileNet),
    /// answering the output tensor's raw bytes: what LiteRT computed, as it
    /// computed it (the tests compare these with Python LiteRT's).
    pub fn infer_raw(&self, input: &[u8]) -> Result<Vec<u8>, ClassifyError> {
        if self.io.input.element != Element::U8 || self.io.output.element != Element::U8 {
            return Err(ClassifyError::Inference("infer_raw takes a uint8 model".into()));
        }
        self.io.check_input_len(input.len())?;
        let mut interpreter = self.take()?;
        let answer = run(&mut interpreter, input);
        self.give_back(interpreter);
        answer
    }
}

fn run(interpreter: &mut Interpreter, input: &[u8]) -> Result<Vec<u8>, ClassifyError> {
    let failed = |e: litert::Error| ClassifyError::Inference(format!("LiteRT: {e}"));
    {
        let mut tensor = interpreter.input.lock_for_write::<u8>().map_err(failed)?;
        if tensor.len() != input.len() {
            return Err(ClassifyError::Inference(format!(
                "the input tensor holds {} values, given {}",
                tensor.len(),
                input.len()
            )));
        }
        tensor.copy_from_slice(input);
    }
    interpreter
        .compiled
        .run(std::slice::from_mut(&mut interpreter.input), std::slice::from_mut(&mut interpreter.output))
        .map_err(failed)?;
    let output = interpreter.output.lock_for_read::<u8>().map_err(failed)?;
    Ok(output.to_vec())
}

impl InferenceBackend for LiteRtBackend {
    fn input_size(&self) -> (u32, u32) {
        self.io.input_size()
    }

    fn output_len(&self) -> usize {
        self.io.output.len()
    }

    fn infer(&self, pixels: &[u8]) -> Result<Vec<f32>, ClassifyError> {
        self.io.check_input_len(pixels.len())?;
        // MobileNet's uint8 input is the pixels themselves: no copy.
        let raw = self.io.input.encode_pixels(pixels);
        let mut interpreter = self.take()?;
        let answer = run_bytes(&mut interpreter, &raw, &self.io);
        self.give_back(interpreter);
        Ok(self.io.output.decode(&answer?))
    }
}

/// [`run`] for any element type: the buffers are locked as bytes' owners.
fn run_bytes(interpreter: &mut Interpreter, raw: &[u8], io: &ModelIo) -> Result<Vec<u8>, ClassifyError> {
    match (io.input.element, io.output.element) {
        (Element::U8, Element::U8) => run(interpreter, raw),
        _ => Err(ClassifyError::Inference(format!(
            "the litert backend runs uint8 models; this one takes {:?} and answers {:?}",
            io.input.element, io.output.element
        ))),
    }
}
