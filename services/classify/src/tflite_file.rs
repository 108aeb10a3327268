//! Just enough of the TensorFlow Lite file format (a flatbuffer) to find a
//! model's input and output tensors: their name, element type, shape and
//! quantization. The plugin backend needs no more.
//!
//! Why not tract-tflite's generated schema: tract registers its operators
//! and kernels with `inventory`, whose static constructors keep all of tract
//! linked into any module that depends on it, so a plugin-only classify.wasm
//! would carry ~3.5 MB of an inference engine it never runs. This reader is
//! plain safe Rust over the bytes, every offset bounds-checked.
//!
//! Layout, from the flatbuffers format: a table starts with an i32 offset
//! back to its vtable; the vtable is u16s — its own size, the table's size,
//! then per field the field's offset in the table (0: absent). References
//! to tables, vectors and strings are u32 offsets forward from where they
//! are stored; a vector is a u32 length, then its elements.

/// Field slots (vtable byte offsets: 4 + 2 × field index) of the TFLite
/// schema tables read here.
mod slot {
    pub const MODEL_SUBGRAPHS: u16 = 8;
    pub const SUBGRAPH_TENSORS: u16 = 4;
    pub const SUBGRAPH_INPUTS: u16 = 6;
    pub const SUBGRAPH_OUTPUTS: u16 = 8;
    pub const TENSOR_SHAPE: u16 = 4;
    pub const TENSOR_TYPE: u16 = 6;
    pub const TENSOR_NAME: u16 = 10;
    pub const TENSOR_QUANTIZATION: u16 = 12;
    pub const QUANTIZATION_SCALE: u16 = 8;
    pub const QUANTIZATION_ZERO_POINT: u16 = 10;
}

/// The file identifier every TFLite model carries at bytes 4..8.
pub const IDENTIFIER: &[u8; 4] = b"TFL3";

/// A TFLite `TensorType` (the schema's byte enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorType(pub u8);

impl TensorType {
    pub const FLOAT32: TensorType = TensorType(0);
    pub const UINT8: TensorType = TensorType(3);
    pub const INT8: TensorType = TensorType(9);

    /// The schema's name for the type, for messages.
    pub fn name(self) -> String {
        const NAMES: [&str; 18] = [
            "FLOAT32",
            "FLOAT16",
            "INT32",
            "UINT8",
            "INT64",
            "STRING",
            "BOOL",
            "INT16",
            "COMPLEX64",
            "INT8",
            "FLOAT64",
            "COMPLEX128",
            "UINT64",
            "RESOURCE",
            "VARIANT",
            "UINT32",
            "UINT16",
            "INT4",
        ];
        NAMES.get(usize::from(self.0)).map_or_else(|| format!("type {}", self.0), |n| (*n).to_owned())
    }
}

/// A tensor as the model file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: Option<String>,
    pub type_: TensorType,
    pub shape: Option<Vec<i32>>,
    /// First scale and zero point, when the tensor is quantized.
    pub quantization: Option<(f32, i64)>,
}

/// The first subgraph's tensors and which of them are its inputs and outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub tensors: Vec<Tensor>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
}

/// The first subgraph of the model in `bytes`.
pub fn first_graph(bytes: &[u8]) -> Result<Graph, String> {
    if bytes.get(4..8) != Some(&IDENTIFIER[..]) {
        return Err("not a TensorFlow Lite model (no TFL3 file identifier)".into());
    }
    let invalid = |what: &str| format!("not a valid TensorFlow Lite flatbuffer: {what}");
    let model = Table::root(bytes).ok_or_else(|| invalid("bad root table"))?;
    let graph = model
        .vector(slot::MODEL_SUBGRAPHS)
        .ok_or_else(|| invalid("bad subgraph list"))?
        .and_then(|graphs| graphs.table(0))
        .ok_or("the model has no subgraph")?;
    let tensors = graph
        .vector(slot::SUBGRAPH_TENSORS)
        .ok_or_else(|| invalid("bad tensor list"))?
        .ok_or("the subgraph has no tensors")?;
    let tensors = (0..tensors.len)
        .map(|i| tensors.table(i).and_then(|t| read_tensor(&t)).ok_or_else(|| invalid(&format!("bad tensor {i}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let indices = |slot: u16, what: &str| -> Result<Vec<i32>, String> {
        match graph.vector(slot) {
            None => Err(invalid(&format!("bad {what} list"))),
            Some(None) => Ok(Vec::new()),
            Some(Some(v)) => v.i32s().ok_or_else(|| invalid(&format!("bad {what} list"))),
        }
    };
    Ok(Graph {
        tensors,
        inputs: indices(slot::SUBGRAPH_INPUTS, "input")?,
        outputs: indices(slot::SUBGRAPH_OUTPUTS, "output")?,
    })
}

fn read_tensor(t: &Table<'_>) -> Option<Tensor> {
    let shape = match t.vector(slot::TENSOR_SHAPE)? {
        Some(v) => Some(v.i32s()?),
        None => None,
    };
    // An absent type is the schema default, FLOAT32.
    let type_ = TensorType(t.scalar::<1>(slot::TENSOR_TYPE)?.map_or(0, |[b]| b));
    let name = t.string(slot::TENSOR_NAME)?.map(str::to_owned);
    let quantization = match t.table(slot::TENSOR_QUANTIZATION)? {
        None => None,
        Some(q) => {
            let scale = q.vector(slot::QUANTIZATION_SCALE)?.map(|v| v.f32s()).unwrap_or(Some(Vec::new()))?;
            let zero = q.vector(slot::QUANTIZATION_ZERO_POINT)?.map(|v| v.i64s()).unwrap_or(Some(Vec::new()))?;
            scale.first().map(|&s| (s, zero.first().copied().unwrap_or(0)))
        }
    };
    Some(Tensor { name, type_, shape, quantization })
}

fn bytes_at<const N: usize>(buf: &[u8], pos: usize) -> Option<[u8; N]> {
    buf.get(pos..pos.checked_add(N)?)?.try_into().ok()
}

fn u32_at(buf: &[u8], pos: usize) -> Option<usize> {
    usize::try_from(u32::from_le_bytes(bytes_at(buf, pos)?)).ok()
}

/// Follows the forward u32 offset stored at `pos`.
fn follow(buf: &[u8], pos: usize) -> Option<usize> {
    pos.checked_add(u32_at(buf, pos)?)
}

#[derive(Debug, Clone, Copy)]
struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

impl<'a> Table<'a> {
    fn root(buf: &'a [u8]) -> Option<Self> {
        Self::at(buf, u32_at(buf, 0)?)
    }

    fn at(buf: &'a [u8], pos: usize) -> Option<Self> {
        let back = i64::from(i32::from_le_bytes(bytes_at(buf, pos)?));
        let vtable = usize::try_from(i64::try_from(pos).ok()? - back).ok()?;
        let vtable_len = usize::from(u16::from_le_bytes(bytes_at(buf, vtable)?));
        buf.get(vtable..vtable.checked_add(vtable_len)?)?;
        Some(Self { buf, pos, vtable, vtable_len })
    }

    /// Where field `slot` is stored, if present. `None` inside `Some`: absent.
    fn field(&self, slot: u16) -> Option<Option<usize>> {
        let slot = usize::from(slot);
        if slot + 2 > self.vtable_len {
            return Some(None);
        }
        match u16::from_le_bytes(bytes_at(self.buf, self.vtable + slot)?) {
            0 => Some(None),
            offset => Some(Some(self.pos.checked_add(usize::from(offset))?)),
        }
    }

    fn scalar<const N: usize>(&self, slot: u16) -> Option<Option<[u8; N]>> {
        match self.field(slot)? {
            None => Some(None),
            Some(pos) => Some(Some(bytes_at(self.buf, pos)?)),
        }
    }

    fn table(&self, slot: u16) -> Option<Option<Table<'a>>> {
        match self.field(slot)? {
            None => Some(None),
            Some(pos) => Some(Some(Table::at(self.buf, follow(self.buf, pos)?)?)),
        }
    }

    fn vector(&self, slot: u16) -> Option<Option<Vector<'a>>> {
        match self.field(slot)? {
            None => Some(None),
            Some(pos) => {
                let at = follow(self.buf, pos)?;
                Some(Some(Vector { buf: self.buf, start: at.checked_add(4)?, len: u32_at(self.buf, at)? }))
            }
        }
    }

    fn string(&self, slot: u16) -> Option<Option<&'a str>> {
        match self.vector(slot)? {
            None => Some(None),
            Some(v) => Some(Some(std::str::from_utf8(v.bytes(1)?).ok()?)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Vector<'a> {
    buf: &'a [u8],
    start: usize,
    len: usize,
}

impl<'a> Vector<'a> {
    /// The elements' bytes, `size` bytes each, bounds-checked.
    fn bytes(&self, size: usize) -> Option<&'a [u8]> {
        self.buf.get(self.start..self.start.checked_add(self.len.checked_mul(size)?)?)
    }

    /// Element `i` of a vector of tables.
    fn table(&self, i: usize) -> Option<Table<'a>> {
        if i >= self.len {
            return None;
        }
        Table::at(self.buf, follow(self.buf, self.start.checked_add(i.checked_mul(4)?)?)?)
    }

    fn i32s(&self) -> Option<Vec<i32>> {
        Some(self.bytes(4)?.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    fn f32s(&self) -> Option<Vec<f32>> {
        Some(self.bytes(4)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    fn i64s(&self) -> Option<Vec<i64>> {
        Some(self.bytes(8)?.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models").join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The same tensors as tract-tflite's generated schema reads.
    #[cfg(feature = "tract")]
    #[test]
    fn agrees_with_the_generated_schema_on_the_shared_models() {
        for name in ["mobilenet_v2_1.0_224_quant.tflite", "mobilenet_v1_0.75_192_quant.tflite"] {
            let bytes = model(name);
            let ours = first_graph(&bytes).expect("read");
            let theirs = tract_tflite::tflite::root_as_model(&bytes).expect("schema");
            let graph = theirs.subgraphs().and_then(|g| g.iter().next()).expect("subgraph");
            let tensors = graph.tensors().expect("tensors");
            assert_eq!(ours.tensors.len(), tensors.len(), "{name}");
            for (mine, t) in ours.tensors.iter().zip(tensors.iter()) {
                assert_eq!(mine.name.as_deref(), t.name(), "{name}");
                assert_eq!(mine.type_.0, t.type_().0 as u8, "{name}");
                assert_eq!(mine.shape, t.shape().map(|s| s.iter().collect::<Vec<_>>()), "{name}");
                let q = t
                    .quantization()
                    .and_then(|q| Some((q.scale()?.iter().next()?, q.zero_point()?.iter().next().unwrap_or(0))));
                assert_eq!(mine.quantization, q, "{name}");
            }
            assert_eq!(Some(ours.inputs), graph.inputs().map(|v| v.iter().collect()), "{name}");
            assert_eq!(Some(ours.outputs), graph.outputs().map(|v| v.iter().collect()), "{name}");
        }
    }

    #[test]
    fn a_cut_or_corrupted_model_is_an_error_never_a_panic() {
        let bytes = model("mobilenet_v2_1.0_224_quant.tflite");
        assert!(first_graph(&bytes).is_ok());
        // Cut anywhere in the part that holds the tables (the weights come
        // after them in this file, so most cuts still leave a readable
        // graph), and with every byte of the header flipped.
        for cut in (0..bytes.len()).step_by(997).chain([3, 7, 8, 9, 15]) {
            let _ = first_graph(&bytes[..cut]);
        }
        for i in 0..64 {
            let mut bad = bytes.clone();
            bad[i] ^= 0xff;
            let _ = first_graph(&bad);
        }
        assert!(first_graph(b"not a model").expect_err("refused").contains("TFL3"));
        assert!(first_graph(b"\0\0\0\0TFL3\0\0").is_err());
    }
}
