//! Turn a quantized TensorFlow Lite model into the float model it stands for,
//! by editing the flatbuffer before tract ever sees it.
//!
//! Why: tract-tflite's quantized path is unreliable on these models
//! (MobileNet v2 quant fails on ADD with unequal scales; v1 quant computes
//! a wrong softmax). Its float path is the well-trodden one. Every
//! quantized tensor (uint8/int8/int32 with scale and zero point) becomes a
//! FLOAT32 tensor, its constant data dequantized (`real = scale * (q - zp)`,
//! per channel where the quantization has several scales), its quantization
//! dropped. The graph, operators and options are left byte for byte.
//!
//! How, without a full flatbuffer re-encode: a flatbuffer references tables
//! and vectors by unsigned offsets that always point forward. So the float
//! data, and one empty `QuantizationParameters` table, are appended at the
//! end of a copy of the file and the fields that referenced the quantized
//! data are re-pointed there; the tensor type, a scalar stored in the
//! table, is overwritten in place. The old bytes stay, unreferenced. tract
//! re-verifies the result when it loads it.

use std::collections::HashMap;
use tract_tflite::tflite::{root_as_model, Buffer, Model, QuantizationDetails, Tensor, TensorType};

/// Why a model could not be dequantized; the caller attaches the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DequantizeError {
    #[error("not a TensorFlow Lite model (no TFL3 file identifier)")]
    NotTflite,
    #[error("not a valid TensorFlow Lite flatbuffer: {0}")]
    Invalid(String),
    #[error("unsupported TensorFlow Lite model: {0}")]
    Unsupported(String),
}

/// What a quantized buffer was rewritten as, to catch two tensors sharing
/// one buffer under different quantizations (the rewrite would be wrong for
/// one of them).
#[derive(Debug, Clone, PartialEq)]
struct Rewrite {
    ty: TensorType,
    shape: Vec<i32>,
    scales: Vec<f32>,
    zero_points: Vec<i64>,
    axis: i32,
}

/// The float model for `original`, a TFLite flatbuffer. A model with no
/// quantized tensor comes back unchanged (as a copy).
pub fn dequantize_tflite(original: &[u8]) -> Result<Vec<u8>, DequantizeError> {
    // By hand: the generated `model_buffer_has_identifier` panics on a
    // buffer shorter than 8 bytes.
    if original.get(4..8) != Some(tract_tflite::tflite::MODEL_IDENTIFIER.as_bytes()) {
        return Err(DequantizeError::NotTflite);
    }
    let model = root_as_model(original).map_err(|e| DequantizeError::Invalid(e.to_string()))?;
    let mut out = original.to_vec();
    // Where the shared empty QuantizationParameters table went, once written.
    let mut empty_quantization: Option<usize> = None;
    let mut rewritten: HashMap<u32, Rewrite> = HashMap::new();

    let subgraphs = model.subgraphs().ok_or_else(|| invalid("the model has no subgraphs"))?;
    for subgraph in subgraphs {
        let tensors = subgraph.tensors().ok_or_else(|| invalid("a subgraph has no tensors"))?;
        for tensor in tensors {
            // tract unwraps these two; refuse here rather than panic there.
            if tensor.shape().is_none() || tensor.name().is_none() {
                return Err(invalid("a tensor has no shape or no name"));
            }
            let Some(rewrite) = quantized(&tensor)? else {
                continue;
            };
            if tensor.buffer() != 0 {
                rewrite_buffer(&model, &tensor, &rewrite, &mut rewritten, &mut out)?;
            }
            set_float32(&tensor, &mut out)?;
            let table = match empty_quantization {
                Some(pos) => pos,
                None => {
                    let pos = append_empty_table(&mut out);
                    empty_quantization = Some(pos);
                    pos
                }
            };
            let field = field_pos(&tensor._tab, Tensor::VT_QUANTIZATION)
                .ok_or_else(|| invalid("quantization field vanished"))?;
            point_to(&mut out, field, table)?;
        }
    }
    Ok(out)
}

fn invalid(what: &str) -> DequantizeError {
    DequantizeError::Invalid(what.to_owned())
}

fn unsupported(what: impl Into<String>) -> DequantizeError {
    DequantizeError::Unsupported(what.into())
}

/// The quantization of `tensor` if it is one this module rewrites.
fn quantized(tensor: &Tensor<'_>) -> Result<Option<Rewrite>, DequantizeError> {
    let ty = tensor.type_();
    let Some(q) = tensor.quantization() else {
        return Ok(None);
    };
    let (Some(scale), Some(zero_point)) = (q.scale(), q.zero_point()) else {
        return Ok(None);
    };
    if scale.is_empty() {
        // min/max only (a calibration leftover): tract ignores it too.
        return Ok(None);
    }
    let name = tensor.name().unwrap_or("?");
    if !matches!(ty, TensorType::UINT8 | TensorType::INT8 | TensorType::INT32) {
        return Err(unsupported(format!("tensor {name:?}: quantized {ty:?} tensors")));
    }
    if q.details_type() != QuantizationDetails::NONE {
        return Err(unsupported(format!("tensor {name:?}: custom quantization")));
    }
    if tensor.sparsity().is_some() {
        return Err(unsupported(format!("tensor {name:?}: sparse tensors")));
    }
    let scales: Vec<f32> = scale.iter().collect();
    let zero_points: Vec<i64> = zero_point.iter().collect();
    let shape: Vec<i32> = tensor.shape().map(|s| s.iter().collect()).unwrap_or_default();
    let axis = q.quantized_dimension();
    let channels = scales.len().max(zero_points.len());
    let fits = |n: usize| n == 1 || n == channels;
    if zero_points.is_empty() || !fits(scales.len()) || !fits(zero_points.len()) {
        return Err(invalid("scale and zero point counts disagree"));
    }
    if channels > 1 {
        let dim = usize::try_from(axis).ok().and_then(|a| shape.get(a));
        if dim.and_then(|&d| usize::try_from(d).ok()) != Some(channels) {
            return Err(invalid("per-channel quantization does not match the tensor shape"));
        }
    }
    Ok(Some(Rewrite { ty, shape, scales, zero_points, axis }))
}

/// Append the float data of `tensor`'s buffer and point the buffer at it.
fn rewrite_buffer(
    model: &Model<'_>,
    tensor: &Tensor<'_>,
    rewrite: &Rewrite,
    done: &mut HashMap<u32, Rewrite>,
    out: &mut Vec<u8>,
) -> Result<(), DequantizeError> {
    let index = tensor.buffer();
    let buffers = model.buffers().ok_or_else(|| invalid("the model has no buffers"))?;
    if index as usize >= buffers.len() {
        return Err(invalid("a tensor names a buffer that does not exist"));
    }
    let buffer = buffers.get(index as usize);
    let Some(data) = buffer.data().filter(|d| !d.is_empty()) else {
        return Ok(()); // A computed tensor: nothing stored.
    };
    if let Some(previous) = done.get(&index) {
        return if previous == rewrite {
            Ok(())
        } else {
            Err(unsupported("one buffer shared by differently quantized tensors"))
        };
    }
    let floats = dequantize_values(data.bytes(), rewrite)?;
    let vector = append_f32_vector(out, &floats);
    let field = field_pos(&buffer._tab, Buffer::VT_DATA).ok_or_else(|| invalid("buffer data field vanished"))?;
    point_to(out, field, vector)?;
    done.insert(index, rewrite.clone());
    Ok(())
}

/// `scale * (q - zero_point)` for every element of `raw`, the little-endian
/// bytes of a `rewrite.ty` tensor of `rewrite.shape`.
fn dequantize_values(raw: &[u8], rewrite: &Rewrite) -> Result<Vec<f32>, DequantizeError> {
    let values: Vec<i64> = match rewrite.ty {
        TensorType::UINT8 => raw.iter().map(|&b| i64::from(b)).collect(),
        TensorType::INT8 => raw.iter().map(|&b| i64::from(b as i8)).collect(),
        TensorType::INT32 => {
            if raw.len() % 4 != 0 {
                return Err(invalid("int32 buffer length is not a multiple of 4"));
            }
            raw.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect()
        }
        other => return Err(unsupported(format!("quantized {other:?} data"))),
    };
    let dims: Vec<usize> = rewrite
        .shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| invalid("negative dimension")))
        .collect::<Result<_, _>>()?;
    if dims.iter().product::<usize>() != values.len() {
        return Err(invalid("buffer size does not match the tensor shape"));
    }
    // Per channel: element i belongs to channel (i / stride) % channels,
    // stride being the product of the dimensions after the quantized axis.
    let channels = rewrite.scales.len().max(rewrite.zero_points.len());
    let stride: usize = match usize::try_from(rewrite.axis) {
        Ok(axis) if channels > 1 => dims.iter().skip(axis + 1).product(),
        _ => 1,
    };
    let pick = |params_len: usize, channel: usize| if params_len == 1 { 0 } else { channel };
    Ok(values
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let channel = if channels > 1 { (i / stride) % channels } else { 0 };
            let scale = f64::from(rewrite.scales[pick(rewrite.scales.len(), channel)]);
            let zero_point = rewrite.zero_points[pick(rewrite.zero_points.len(), channel)];
            // f64 so large int32 biases keep their precision until the end.
            (scale * (q - zero_point) as f64) as f32
        })
        .collect())
}

/// Byte position of a present field of `table`, by vtable slot.
fn field_pos(table: &flatbuffers::Table<'_>, slot: u16) -> Option<usize> {
    match table.vtable().get(slot) {
        0 => None,
        offset => Some(table.loc() + usize::from(offset)),
    }
}

/// Overwrite the tensor's type byte with FLOAT32.
fn set_float32(tensor: &Tensor<'_>, out: &mut [u8]) -> Result<(), DequantizeError> {
    // A non-FLOAT32 type (the schema default) is always stored, so present.
    let pos = field_pos(&tensor._tab, Tensor::VT_TYPE_).ok_or_else(|| invalid("tensor type field missing"))?;
    let byte = out.get_mut(pos).ok_or_else(|| invalid("tensor type out of bounds"))?;
    *byte = TensorType::FLOAT32.0 as u8;
    Ok(())
}

/// Write at `field` the forward offset to `target`.
fn point_to(out: &mut [u8], field: usize, target: usize) -> Result<(), DequantizeError> {
    let offset = target
        .checked_sub(field)
        .and_then(|d| u32::try_from(d).ok())
        .ok_or_else(|| unsupported("the float model would exceed the 2 GB flatbuffer limit"))?;
    let slot = out.get_mut(field..field + 4).ok_or_else(|| invalid("offset field out of bounds"))?;
    slot.copy_from_slice(&offset.to_le_bytes());
    Ok(())
}

fn pad_to(out: &mut Vec<u8>, align: usize, after: usize) {
    while (out.len() + after) % align != 0 {
        out.push(0);
    }
}

/// Append a flatbuffer `[ubyte]` vector holding `values` as little-endian
/// f32; returns the position of its length prefix. The data starts on a
/// 16-byte boundary, as TFLite's own writer aligns buffers.
fn append_f32_vector(out: &mut Vec<u8>, values: &[f32]) -> usize {
    pad_to(out, 16, 4);
    let pos = out.len();
    let len = u32::try_from(values.len() * 4).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    pos
}

/// Append a table with no fields (a vtable of 4 bytes, then the table,
/// whose only content is the signed offset back to that vtable); returns
/// the table's position.
fn append_empty_table(out: &mut Vec<u8>) -> usize {
    pad_to(out, 4, 0);
    // vtable: its own size (4), the table's inline size (4), no field slots.
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    let table = out.len();
    // vtable position = table position - soffset.
    out.extend_from_slice(&4i32.to_le_bytes());
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(ty: TensorType, shape: &[i32], scales: &[f32], zps: &[i64], axis: i32) -> Rewrite {
        Rewrite { ty, shape: shape.to_vec(), scales: scales.to_vec(), zero_points: zps.to_vec(), axis }
    }

    #[test]
    fn per_tensor_uint8() {
        let r = rewrite(TensorType::UINT8, &[4], &[0.5], &[128], 0);
        let v = dequantize_values(&[128, 130, 0, 255], &r).expect("dequantize");
        assert_eq!(v, vec![0.0, 1.0, -64.0, 63.5]);
    }

    #[test]
    fn int32_bias() {
        let r = rewrite(TensorType::INT32, &[2], &[0.25], &[0], 0);
        let raw: Vec<u8> = [-8i32, 100_000].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(dequantize_values(&raw, &r).expect("dequantize"), vec![-2.0, 25_000.0]);
    }

    #[test]
    fn per_channel_on_the_first_axis() {
        // OHWI kernel, 2 output channels of 1x1x3: channel = i / 3.
        let r = rewrite(TensorType::INT8, &[2, 1, 1, 3], &[1.0, 0.5], &[0, 2], 0);
        let raw = [1u8, 2, 3, 4, 6, 255];
        let v = dequantize_values(&raw, &r).expect("dequantize");
        assert_eq!(v, vec![1.0, 2.0, 3.0, 1.0, 2.0, -1.5]);
    }

    #[test]
    fn per_channel_on_the_last_axis() {
        // Depthwise 1HWC kernel, quantized on C=2: channel = i % 2.
        let r = rewrite(TensorType::UINT8, &[1, 1, 2, 2], &[1.0, 2.0], &[0, 1], 3);
        let v = dequantize_values(&[1, 1, 2, 2], &r).expect("dequantize");
        assert_eq!(v, vec![1.0, 0.0, 2.0, 2.0]);
    }

    #[test]
    fn size_mismatch_is_an_error_not_a_panic() {
        let r = rewrite(TensorType::UINT8, &[3], &[1.0], &[0], 0);
        assert!(matches!(dequantize_values(&[1, 2], &r), Err(DequantizeError::Invalid(_))));
    }

    #[test]
    fn garbage_is_not_tflite() {
        assert_eq!(dequantize_tflite(b""), Err(DequantizeError::NotTflite));
        assert_eq!(dequantize_tflite(b"hello"), Err(DequantizeError::NotTflite));
        assert!(matches!(dequantize_tflite(b"\0\0\0\0TFL3"), Err(DequantizeError::Invalid(_))));
        let mut fake = vec![0u8; 64];
        fake[4..8].copy_from_slice(b"TFL3");
        assert!(matches!(dequantize_tflite(&fake), Err(DequantizeError::Invalid(_))));
    }
}
