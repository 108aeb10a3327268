//! The second backend: WasmEdge's TensorFlow Lite plugin, as the original
//! template used it (`wasmedge_tensorflow_interface`, host functions of the
//! `wasmedge_tensorflowlite` module), on the quantized model as it is.
//!
//! Compiled in with the cargo feature `wasmedge-tflite` for `wasm32-wasip1`
//! only, and chosen with `CLASSIFY_BACKEND=wasmedge-tflite`. What a missing
//! plugin does there, seen with Debian's WasmEdge 0.14.1 (no plugins): the
//! module still instantiates, because WasmEdge registers a placeholder
//! `wasmedge_tensorflowlite` module whose every function logs
//! "WasmEdge-TensorflowLite plugin not installed" and returns 1. So the
//! first call, `create_session` at start-up, fails with 1 and the service
//! stops with [`PluginError`]'s message before it listens. (An import from a
//! module WasmEdge does not know at all would fail instantiation instead,
//! with WasmEdge's own "unknown import" error.)
//!
//! Everything but the host calls is plain Rust over [`TfliteHost`], so the
//! model inspection, the tensor conversions and the error paths are tested
//! natively with a fake host.

use crate::backend::InferenceBackend;
use crate::tflite_file::{self, Tensor, TensorType};
use crate::ClassifyError;
use std::path::Path;
use std::sync::Mutex;

/// What the backend is called in `CLASSIFY_BACKEND` and in errors.
pub const NAME: &str = "wasmedge-tflite";

/// A `wasmedge_tensorflowlite` error number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub u32);

impl Errno {
    /// What WasmEdge's placeholder answers when the plugin is not installed
    /// (and what the plugin itself answers to a bad argument).
    pub const INVALID_ARGUMENT: Errno = Errno(1);

    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "SUCCESS",
            1 => "INVALID_ARGUMENT",
            2 => "INVALID_ENCODING",
            3 => "MISSING_MEMORY",
            4 => "BUSY",
            5 => "RUNTIME_ERROR",
            _ => "unknown error",
        }
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error {} {}", self.0, self.name())
    }
}

/// The plugin's host functions, one method each (see
/// `wasmedge_tensorflow_interface::wasmedge_tensorflowlite`).
pub trait TfliteHost: Send + Sync {
    fn create_session(&self, model: &[u8]) -> Result<u32, Errno>;
    fn append_input(&self, session: u32, name: &str, data: &[u8]) -> Result<(), Errno>;
    fn run_session(&self, session: u32) -> Result<(), Errno>;
    fn get_output_tensor(&self, session: u32, name: &str) -> Result<u32, Errno>;
    fn get_tensor_len(&self, session: u32, tensor: u32) -> Result<u32, Errno>;
    /// Copies the tensor into `buf`; how many bytes it wrote.
    fn get_tensor_data(&self, session: u32, tensor: u32, buf: &mut [u8]) -> Result<u32, Errno>;
    fn delete_session(&self, session: u32) -> Result<(), Errno>;
}

/// Why the plugin backend could not load or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error(
        "WasmEdge's TensorFlow Lite plugin did not load the model ({0}). A WasmEdge without the \
         plugin answers every wasmedge_tensorflowlite call so (it logs \"WasmEdge-TensorflowLite \
         plugin not installed\" just before this): install the plugin \
         (libwasmedgePluginWasmEdgeTensorflowLite.so in WasmEdge's plugin path), or run a build \
         with tract (the default) and CLASSIFY_BACKEND=tract"
    )]
    NoSession(Errno),
    #[error("WasmEdge's TensorFlow Lite plugin failed in {call} ({errno})")]
    Call { call: &'static str, errno: Errno },
    #[error("the plugin answered {got} bytes for tensor {tensor:?}, expected {expected}")]
    Size { tensor: String, got: usize, expected: usize },
}

impl From<PluginError> for ClassifyError {
    fn from(e: PluginError) -> Self {
        ClassifyError::Inference(e.to_string())
    }
}

/// The element types the backend converts to and from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    F32,
    U8,
    I8,
}

impl Element {
    fn size(self) -> usize {
        match self {
            Element::F32 => 4,
            Element::U8 | Element::I8 => 1,
        }
    }
}

/// One input or output tensor as the model file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub element: Element,
    pub shape: Vec<usize>,
    /// (scale, zero point) of a quantized tensor.
    pub quantization: Option<(f32, i64)>,
}

impl TensorInfo {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bytes(&self) -> usize {
        self.len() * self.element.size()
    }

    fn read(tensor: &Tensor) -> Result<TensorInfo, String> {
        let name = tensor.name.clone().ok_or("a tensor has no name")?;
        let element = match tensor.type_ {
            TensorType::FLOAT32 => Element::F32,
            TensorType::UINT8 => Element::U8,
            TensorType::INT8 => Element::I8,
            other => return Err(format!("tensor {name:?} is {}; expected FLOAT32, UINT8 or INT8", other.name())),
        };
        let shape = tensor
            .shape
            .as_ref()
            .ok_or_else(|| format!("tensor {name:?} has no shape"))?
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("tensor {name:?} has a dimension {d}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TensorInfo { name, element, shape, quantization: tensor.quantization })
    }

    /// The model's input from the image's RGB8 bytes at its size: the bytes
    /// themselves for a uint8 input quantized as MobileNet's (scale 1/128,
    /// zero point 128: a byte's real value is [`normalise`]d, exactly), so
    /// nothing is computed or copied; otherwise [`TensorInfo::encode`] of
    /// their real values.
    ///
    /// [`normalise`]: crate::preprocess::normalise
    pub fn encode_pixels<'a>(&self, pixels: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if self.element == Element::U8 && self.quantization.is_none_or(|q| q == (1.0 / 128.0, 128)) {
            return std::borrow::Cow::Borrowed(pixels);
        }
        let real: Vec<f32> = pixels.iter().map(|&q| crate::preprocess::normalise(q)).collect();
        std::borrow::Cow::Owned(self.encode(&real))
    }

    /// The model's input from this backend's float image: `input` is
    /// `(q - 128) / 128` of the image's bytes, so a uint8 input quantized
    /// with scale 1/128 and zero point 128 (MobileNet's) gets those bytes
    /// back exactly.
    pub fn encode(&self, input: &[f32]) -> Vec<u8> {
        let quantize = |x: f32, min: f32, max: f32| -> f32 {
            let (scale, zero_point) = self.quantization.unwrap_or((1.0 / 128.0, 128));
            (x / scale + zero_point as f32).round().clamp(min, max)
        };
        match self.element {
            Element::F32 => input.iter().flat_map(|x| x.to_le_bytes()).collect(),
            // In range by the clamp; `as` truncates nothing then.
            Element::U8 => input.iter().map(|&x| quantize(x, 0.0, 255.0) as u8).collect(),
            Element::I8 => input.iter().map(|&x| (quantize(x, -128.0, 127.0) as i8).to_le_bytes()[0]).collect(),
        }
    }

    /// The output's real values (probabilities) from its raw bytes.
    pub fn decode(&self, raw: &[u8]) -> Vec<f32> {
        let (scale, zero_point) = self.quantization.unwrap_or((1.0, 0));
        let real = |q: f32| scale * (q - zero_point as f32);
        match self.element {
            Element::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Element::U8 => raw.iter().map(|&q| real(f32::from(q))).collect(),
            Element::I8 => raw.iter().map(|&q| real(f32::from(i8::from_le_bytes([q])))).collect(),
        }
    }
}

/// The input and output the plugin is fed and read by name.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelIo {
    pub input: TensorInfo,
    pub output: TensorInfo,
}

impl ModelIo {
    /// The single 1xHxWx3 image input and single class-vector output of a
    /// TFLite image classifier.
    pub fn read(model: &[u8]) -> Result<ModelIo, String> {
        let graph = tflite_file::first_graph(model)?;
        let one = |list: &[i32], what: &str| -> Result<TensorInfo, String> {
            let [index] = list[..] else {
                return Err(format!("expected one {what}, the model has {}", list.len()));
            };
            let tensor = usize::try_from(index)
                .ok()
                .and_then(|i| graph.tensors.get(i))
                .ok_or_else(|| format!("bad {what} tensor index {index}"))?;
            TensorInfo::read(tensor)
        };
        let input = one(&graph.inputs, "input")?;
        let output = one(&graph.outputs, "output")?;
        if !matches!(input.shape[..], [1, h, w, 3] if h > 0 && w > 0 && u32::try_from(h.max(w)).is_ok()) {
            return Err(format!("input shape {:?} is not 1xHxWx3", input.shape));
        }
        if output.is_empty() || output.shape.iter().filter(|&&d| d != 1).count() > 1 {
            return Err(format!("output shape {:?} is not a class vector", output.shape));
        }
        Ok(ModelIo { input, output })
    }

    /// The input image's (width, height); both fit in u32 (checked by [`ModelIo::read`]).
    pub fn input_size(&self) -> (u32, u32) {
        let (h, w) = (self.input.shape[1], self.input.shape[2]);
        (u32::try_from(w).unwrap_or(u32::MAX), u32::try_from(h).unwrap_or(u32::MAX))
    }

    /// Refuses an input tensor of any other length than the model's.
    pub fn check_input_len(&self, len: usize) -> Result<(), ClassifyError> {
        if len == self.input.len() {
            return Ok(());
        }
        Err(ClassifyError::Inference(format!("the input has {len} values, the model takes {}", self.input.len())))
    }
}

/// The model loaded into one plugin session, shared by all requests.
pub struct PluginBackend<H: TfliteHost> {
    host: H,
    io: ModelIo,
    /// The session id; the lock makes input, run and output one step.
    session: Mutex<u32>,
}

impl<H: TfliteHost> std::fmt::Debug for PluginBackend<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginBackend").field("io", &self.io).finish_non_exhaustive()
    }
}

impl<H: TfliteHost> PluginBackend<H> {
    /// Read the model at `path` and hand it to the plugin: a plugin that is
    /// missing (or refuses the model) fails here, at start-up.
    pub fn load(path: &Path, host: H) -> Result<Self, ClassifyError> {
        let bytes =
            std::fs::read(path).map_err(|source| ClassifyError::ModelUnreadable { path: path.to_owned(), source })?;
        let io =
            ModelIo::read(&bytes).map_err(|reason| ClassifyError::InvalidModel { path: path.to_owned(), reason })?;
        let session = host.create_session(&bytes).map_err(|errno| ClassifyError::BackendUnavailable {
            backend: NAME,
            reason: PluginError::NoSession(errno).to_string(),
        })?;
        Ok(Self { host, io, session: Mutex::new(session) })
    }

    pub fn io(&self) -> &ModelIo {
        &self.io
    }

    fn run(&self, session: u32, pixels: &[u8]) -> Result<Vec<f32>, PluginError> {
        let call = |call: &'static str| move |errno| PluginError::Call { call, errno };
        let (inp, out) = (&self.io.input, &self.io.output);
        self.host.append_input(session, &inp.name, &inp.encode_pixels(pixels)).map_err(call("append_input"))?;
        self.host.run_session(session).map_err(call("run_session"))?;
        let tensor = self.host.get_output_tensor(session, &out.name).map_err(call("get_output_tensor"))?;
        let len = self.host.get_tensor_len(session, tensor).map_err(call("get_tensor_len"))? as usize;
        let size = |got| PluginError::Size { tensor: out.name.clone(), got, expected: out.bytes() };
        if len != out.bytes() {
            return Err(size(len));
        }
        let mut raw = vec![0u8; len];
        let written = self.host.get_tensor_data(session, tensor, &mut raw).map_err(call("get_tensor_data"))? as usize;
        if written != len {
            return Err(size(written));
        }
        Ok(out.decode(&raw))
    }
}

impl<H: TfliteHost> InferenceBackend for PluginBackend<H> {
    fn input_size(&self) -> (u32, u32) {
        self.io.input_size()
    }

    fn output_len(&self) -> usize {
        self.io.output.len()
    }

    fn infer(&self, pixels: &[u8]) -> Result<Vec<f32>, ClassifyError> {
        self.io.check_input_len(pixels.len())?;
        let session =
            self.session.lock().map_err(|_| ClassifyError::Inference("the plugin session lock is poisoned".into()))?;
        Ok(self.run(*session, pixels)?)
    }
}

impl<H: TfliteHost> Drop for PluginBackend<H> {
    fn drop(&mut self) {
        let session = *self.session.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Err(errno) = self.host.delete_session(session) {
            tracing::warn!(%errno, "the TensorFlow Lite plugin did not delete its session");
        }
    }
}

/// The real host functions, WasmEdge's `wasmedge_tensorflowlite` module.
#[cfg(all(feature = "wasmedge-tflite", target_os = "wasi"))]
pub mod wasmedge {
    #![allow(unsafe_code)] // calls into the host: pointers and lengths into our own memory.

    use super::{Errno, TfliteHost};
    use wasmedge_tensorflow_interface::wasmedge_tensorflowlite as host;

    /// The plugin as WasmEdge provides it (or its placeholder, without it).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct WasmEdgePlugin;

    fn check(ret: i32) -> Result<(), Errno> {
        match ret {
            0 => Ok(()),
            e => Err(Errno(e as u32)),
        }
    }

    // Wasm32 pointers and lengths are 32 bits: the `as i32` casts are the
    // ABI (the plugin reads them as u32), exactly what the crate's own
    // wrappers do.
    fn ptr<T>(p: *const T) -> i32 {
        p as usize as i32
    }

    /// An out-parameter the host writes: a pointer with write provenance
    /// (the bug PATCH.md in third_party/wasmedge_wasi_socket fixes came from
    /// handing the host read-only pointers to write through).
    fn out<T>(p: &mut T) -> i32 {
        p as *mut T as usize as i32
    }

    fn len(n: usize) -> i32 {
        n as i32
    }

    impl TfliteHost for WasmEdgePlugin {
        fn create_session(&self, model: &[u8]) -> Result<u32, Errno> {
            let mut session = 0u32;
            // SAFETY: model and session are live for the call; the host
            // reads model[..len] and writes one u32 into session.
            check(unsafe { host::create_session(ptr(model.as_ptr()), len(model.len()), out(&mut session)) })?;
            Ok(session)
        }

        fn append_input(&self, session: u32, name: &str, data: &[u8]) -> Result<(), Errno> {
            // SAFETY: name and data are live for the call and only read.
            check(unsafe {
                host::append_input(
                    session as i32,
                    ptr(name.as_ptr()),
                    len(name.len()),
                    ptr(data.as_ptr()),
                    len(data.len()),
                )
            })
        }

        fn run_session(&self, session: u32) -> Result<(), Errno> {
            // SAFETY: no memory is passed.
            check(unsafe { host::run_session(session as i32) })
        }

        fn get_output_tensor(&self, session: u32, name: &str) -> Result<u32, Errno> {
            let mut tensor = 0u32;
            // SAFETY: name is read, tensor written, both live for the call.
            check(unsafe {
                host::get_output_tensor(session as i32, ptr(name.as_ptr()), len(name.len()), out(&mut tensor))
            })?;
            Ok(tensor)
        }

        fn get_tensor_len(&self, session: u32, tensor: u32) -> Result<u32, Errno> {
            let mut n = 0u32;
            // SAFETY: one u32 written into n, live for the call.
            check(unsafe { host::get_tensor_len(session as i32, tensor as i32, out(&mut n)) })?;
            Ok(n)
        }

        fn get_tensor_data(&self, session: u32, tensor: u32, buf: &mut [u8]) -> Result<u32, Errno> {
            let mut written = 0u32;
            // SAFETY: the host writes at most buf.len() bytes into buf and
            // one u32 into written, both live for the call.
            check(unsafe {
                host::get_tensor_data(
                    session as i32,
                    tensor as i32,
                    buf.as_mut_ptr() as usize as i32,
                    len(buf.len()),
                    out(&mut written),
                )
            })?;
            Ok(written)
        }

        fn delete_session(&self, session: u32) -> Result<(), Errno> {
            // SAFETY: no memory is passed.
            check(unsafe { host::delete_session(session as i32) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::normalise;
    use crate::{score_of, Classifier};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn shared(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared").join(rel)
    }

    const V2: &str = "models/mobilenet_v2_1.0_224_quant.tflite";

    /// WasmEdge without the plugin: every call logs and answers 1.
    struct Placeholder;

    impl TfliteHost for Placeholder {
        fn create_session(&self, _: &[u8]) -> Result<u32, Errno> {
            Err(Errno::INVALID_ARGUMENT)
        }
        fn append_input(&self, _: u32, _: &str, _: &[u8]) -> Result<(), Errno> {
            Err(Errno::INVALID_ARGUMENT)
        }
        fn run_session(&self, _: u32) -> Result<(), Errno> {
            Err(Errno::INVALID_ARGUMENT)
        }
        fn get_output_tensor(&self, _: u32, _: &str) -> Result<u32, Errno> {
            Err(Errno::INVALID_ARGUMENT)
        }
        fn get_tensor_len(&self, _: u32, _: u32) -> Result<u32, Errno> {
            Err(Errno::INVALID_ARGUMENT)
        }
        fn get_tensor_data(&self, _: u32, _: u32, _: &mut [u8]) -> Result<u32, Errno> {
            Err(Errno::INVALID_ARGUMENT)
        }
        fn delete_session(&self, _: u32) -> Result<(), Errno> {
            Err(Errno::INVALID_ARGUMENT)
        }
    }

    /// A plugin that checks what it is handed and answers `output`.
    struct Fake {
        input_name: String,
        output_name: String,
        expected_input: Vec<u8>,
        output: Vec<u8>,
        deleted: std::sync::Arc<AtomicU32>,
    }

    impl TfliteHost for Fake {
        fn create_session(&self, model: &[u8]) -> Result<u32, Errno> {
            assert_eq!(&model[4..8], b"TFL3");
            Ok(7)
        }
        fn append_input(&self, session: u32, name: &str, data: &[u8]) -> Result<(), Errno> {
            assert_eq!((session, name), (7, self.input_name.as_str()));
            assert!(data == self.expected_input, "the input bytes differ");
            Ok(())
        }
        fn run_session(&self, session: u32) -> Result<(), Errno> {
            assert_eq!(session, 7);
            Ok(())
        }
        fn get_output_tensor(&self, _: u32, name: &str) -> Result<u32, Errno> {
            assert_eq!(name, self.output_name);
            Ok(3)
        }
        fn get_tensor_len(&self, _: u32, tensor: u32) -> Result<u32, Errno> {
            assert_eq!(tensor, 3);
            Ok(self.output.len() as u32)
        }
        fn get_tensor_data(&self, _: u32, _: u32, buf: &mut [u8]) -> Result<u32, Errno> {
            let n = buf.len().min(self.output.len());
            buf[..n].copy_from_slice(&self.output[..n]);
            Ok(n as u32)
        }
        fn delete_session(&self, session: u32) -> Result<(), Errno> {
            self.deleted.store(session, Ordering::SeqCst);
            Ok(())
        }
    }

    fn v2_io() -> ModelIo {
        ModelIo::read(&std::fs::read(shared(V2)).expect("read model")).expect("model io")
    }

    #[test]
    fn reads_the_quantized_mobilenet_input_and_output() {
        let io = v2_io();
        assert_eq!(io.input.name, "input");
        assert_eq!((io.input.element, io.input.shape.as_slice()), (Element::U8, &[1, 224, 224, 3][..]));
        assert_eq!(io.input.quantization, Some((1.0 / 128.0, 128)));
        // The original template hard-coded "MobilenetV2/Predictions/Reshape_1"
        // (its model file); this one's output is the softmax itself.
        assert_eq!(io.output.name, "MobilenetV2/Predictions/Softmax");
        assert_eq!((io.output.element, io.output.len()), (Element::U8, 1001));
        assert_eq!(io.output.quantization, Some((1.0 / 256.0, 0)));
    }

    #[test]
    fn refuses_what_is_not_an_image_classifier() {
        assert!(ModelIo::read(b"not a model at all").expect_err("refused").contains("TFL3"));
        assert!(ModelIo::read(b"\0\0\0\0TFL3\0\0").is_err());
    }

    #[test]
    fn uint8_input_gets_the_image_bytes_back_exactly() {
        let io = v2_io();
        let bytes: Vec<u8> = (0..=255).collect();
        let floats: Vec<f32> = bytes.iter().map(|&b| normalise(b)).collect();
        assert_eq!(io.input.encode(&floats), bytes);
        // The pixels are that input as they are: borrowed, not converted.
        assert!(matches!(io.input.encode_pixels(&bytes), std::borrow::Cow::Borrowed(b) if b == bytes.as_slice()));
        // Another quantization gets its own bytes, through the real values.
        let other = TensorInfo { quantization: Some((1.0 / 64.0, 100)), ..io.input.clone() };
        assert_eq!(other.encode_pixels(&bytes).into_owned(), other.encode(&floats));
        assert_ne!(other.encode(&floats), bytes);
    }

    #[test]
    fn uint8_output_gives_the_same_n_of_255() {
        let io = v2_io();
        let raw: Vec<u8> = (0..=255).collect();
        let scores: Vec<u8> = io.output.decode(&raw).into_iter().map(score_of).collect();
        assert_eq!(scores, raw);
    }

    #[test]
    fn float_and_int8_tensors_convert_too() {
        let f = TensorInfo { name: "x".into(), element: Element::F32, shape: vec![2], quantization: None };
        assert_eq!(f.decode(&f.encode(&[0.5, -1.0])), vec![0.5, -1.0]);
        let i =
            TensorInfo { name: "x".into(), element: Element::I8, shape: vec![3], quantization: Some((1.0 / 128.0, 0)) };
        assert_eq!(i.encode(&[-1.0, 0.0, 2.0]), vec![0x80, 0, 0x7f], "saturates");
        assert_eq!(i.decode(&[0x80, 0x40]), vec![-1.0, 0.5]);
    }

    #[test]
    fn without_the_plugin_the_service_stops_at_start_up_saying_why() {
        let Err(e) = PluginBackend::load(&shared(V2), Placeholder) else {
            panic!("loaded without a plugin");
        };
        assert!(matches!(e, ClassifyError::BackendUnavailable { backend: NAME, .. }), "{e:?}");
        let message = e.to_string();
        for needle in ["wasmedge-tflite", "error 1 INVALID_ARGUMENT", "plugin not installed", "CLASSIFY_BACKEND=tract"]
        {
            assert!(message.contains(needle), "{needle:?} missing from: {message}");
        }
    }

    #[test]
    fn a_bad_model_fails_before_the_plugin_is_asked() {
        let Err(e) = PluginBackend::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"), Placeholder) else {
            panic!("loaded a source file as a model");
        };
        assert!(matches!(e, ClassifyError::InvalidModel { .. }), "{e:?}");
        let Err(e) = PluginBackend::load(Path::new("/no/such/model.tflite"), Placeholder) else {
            panic!("loaded a missing file");
        };
        assert!(matches!(e, ClassifyError::ModelUnreadable { .. }), "{e:?}");
    }

    #[test]
    fn a_session_feeds_the_image_bytes_and_reads_the_scores() {
        let io = v2_io();
        let pixels: Vec<u8> = (0..io.input.len()).map(|i| (i * 7 % 256) as u8).collect();
        let mut output = vec![0u8; 1001];
        output[935] = 249;
        output[934] = 3;
        let deleted = std::sync::Arc::new(AtomicU32::new(0));
        let fake = Fake {
            input_name: io.input.name.clone(),
            output_name: io.output.name.clone(),
            expected_input: pixels.clone(),
            output,
            deleted: deleted.clone(),
        };
        let backend = PluginBackend::load(&shared(V2), fake).expect("load");
        assert_eq!((backend.input_size(), backend.output_len()), ((224, 224), 1001));
        let labels: Vec<String> = (0..1001).map(|i| format!("class {i}")).collect();
        let classifier = Classifier::from_backend(Box::new(backend), labels, 2).expect("classifier");
        let probabilities = classifier.infer(&pixels).expect("infer");
        let top = classifier.top_k(&probabilities);
        assert_eq!((top[0].index, top[0].score, top[1].index, top[1].score), (935, 249, 934, 3));
        assert!(matches!(classifier.infer(&pixels[1..]), Err(ClassifyError::Inference(_))), "a short input is refused");
        drop(classifier);
        assert_eq!(deleted.load(Ordering::SeqCst), 7, "the session is deleted with the backend");
    }

    #[test]
    fn a_plugin_error_while_serving_is_an_inference_error() {
        let io = v2_io();
        let fake = Fake {
            input_name: io.input.name.clone(),
            output_name: io.output.name.clone(),
            expected_input: vec![128; io.input.len()],
            output: vec![0; 10],
            deleted: Default::default(),
        };
        let backend = PluginBackend::load(&shared(V2), fake).expect("load");
        let e = backend.infer(&vec![128; io.input.len()]).expect_err("refused");
        assert!(e.to_string().contains("expected 1001"), "{e}");
    }
}
