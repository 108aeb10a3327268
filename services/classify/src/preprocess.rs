//! Image to model input, as the reference (Python LiteRT fed by Pillow) does
//! for a uint8 model: RGB8, Pillow's bilinear resize ([`resize_like_pillow`]:
//! antialiased, a triangle filter widened by the downscale factor, in
//! Pillow's own fixed point, so its bytes exactly). Those bytes are the
//! quantized model's input as they are; a float backend takes their real
//! value under the input quantization ([`normalise`]: zero point 128, scale
//! 1/128). Kept as bytes to the engine: LiteRT takes them without a copy,
//! where a float detour cost two image-sized conversions per request.
//!
//! Why Pillow's resize: the scores are the reference's only with its input.
//! On hot_dog LiteRT answers 227/255 after Pillow's bilinear and 248/255 after
//! a plain (sampling, not averaging) bilinear such as TFLite's
//! `RESIZE_BILINEAR`; every photo here is downscaled, and sampling 224 of
//! 1280 columns aliases. [`resize_bilinear`] (TFLite's `label_image`, what
//! classify used before) stays for comparison.

use crate::ClassifyError;
use image::RgbImage;
use kit::imaging::ImageLimits;

/// The model input for an uploaded image: limit-checked decode (kit's
/// intake), RGB8, then [`to_input`] at the model's `width` x `height`.
pub fn decode_to_input(
    image_bytes: &[u8],
    limits: &ImageLimits,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, ClassifyError> {
    let (format, _, _) = kit::imaging::intake(image_bytes, limits)?;
    checked_to_input(image_bytes, format, limits, width, height)
}

/// [`decode_to_input`] for bytes already through `kit::imaging::intake`
/// (which found `format`), without repeating it.
pub fn checked_to_input(
    image_bytes: &[u8],
    format: image::ImageFormat,
    limits: &ImageLimits,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, ClassifyError> {
    crate::stepped::Preprocess::new(image_bytes, format, limits, (width, height)).run()
}

/// The heaviest pixel `stepped::decode_cost` can see: a progressive JPEG (RGB out,
/// three components of 2-byte coefficients) or a GIF/WebP (the canvas twice
/// at RGBA), plus the RGB8 copy. Sets the default pixel limit.
pub const WORST_BYTES_PER_PIXEL: u64 = 3 + 3 * 2 + 3;

/// The float the quantized model's input zero point and scale give `q`.
#[inline]
pub fn normalise(q: u8) -> f32 {
    (f32::from(q) - 128.0) / 128.0
}

/// `image` resized to `width` x `height` with TFLite's legacy bilinear
/// sampling, as interleaved RGB8 (NHWC without the batch dimension).
pub fn resize_bilinear(image: &RgbImage, width: u32, height: u32) -> Vec<u8> {
    let (in_w, in_h) = (image.width() as usize, image.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let mut out = Vec::with_capacity(out_w * out_h * 3);
    if in_w == 0 || in_h == 0 {
        out.resize(out_w * out_h * 3, 0);
        return out;
    }
    let pixels = image.as_raw();
    let scale_y = in_h as f32 / out_h as f32;
    let scale_x = in_w as f32 / out_w as f32;
    // Source columns and weights are the same for every row: compute once.
    let columns: Vec<(usize, usize, f32)> = (0..out_w)
        .map(|x| {
            let src = x as f32 * scale_x;
            let x0 = (src.floor() as usize).min(in_w - 1);
            (x0, (x0 + 1).min(in_w - 1), src - x0 as f32)
        })
        .collect();
    for y in 0..out_h {
        let src = y as f32 * scale_y;
        let y0 = (src.floor() as usize).min(in_h - 1);
        let y1 = (y0 + 1).min(in_h - 1);
        let dy = src - y0 as f32;
        let (row0, row1) = (y0 * in_w * 3, y1 * in_w * 3);
        for &(x0, x1, dx) in &columns {
            for c in 0..3 {
                let p = |row: usize, x: usize| f32::from(pixels[row + x * 3 + c]);
                let value = p(row0, x0) * (1.0 - dy) * (1.0 - dx)
                    + p(row1, x0) * dy * (1.0 - dx)
                    + p(row0, x1) * (1.0 - dy) * dx
                    + p(row1, x1) * dy * dx;
                // label_image's static_cast<uint8_t>: truncation.
                out.push(value.clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

/// Pillow's fixed point: 32 bits less 8 for the pixel and 2 for the sign
/// and headroom (Pillow's `PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One output pixel's source span along an axis and its weights.
struct Taps {
    /// (first source index, weights), the weights in Pillow's fixed point.
    spans: Vec<(usize, Vec<i32>)>,
    /// In and out the same size: Pillow does not resample that axis.
    same_size: bool,
}

impl Taps {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the
    /// bilinear (triangle, support 1) filter, `in_size` to `out_size`.
    fn bilinear(in_size: usize, out_size: usize) -> Taps {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = filter_scale; // the triangle's support is 1
        let triangle = |x: f64| (1.0 - x.abs()).max(0.0);
        let spans = (0..out_size)
            .map(|out| {
                let center = (out as f64 + 0.5) * scale;
                // Pillow rounds with (int)(x + 0.5), which truncates toward 0.
                let min = ((center - support + 0.5) as i64).max(0) as usize;
                let max = ((center + support + 0.5) as i64).clamp(0, in_size as i64) as usize;
                let weights: Vec<f64> =
                    (min..max).map(|x| triangle((x as f64 - center + 0.5) / filter_scale)).collect();
                let total: f64 = weights.iter().sum();
                let fixed = weights
                    .iter()
                    .map(|&w| {
                        let w = if total != 0.0 { w / total } else { w } * f64::from(1u32 << PRECISION_BITS);
                        // Pillow: (int)(w ± 0.5), away from zero.
                        (if w < 0.0 { w - 0.5 } else { w + 0.5 }) as i32
                    })
                    .collect();
                (min, fixed)
            })
            .collect();
        Taps { spans, same_size: in_size == out_size }
    }

    /// Rows `[first, last)` of the source that the output needs.
    fn range(&self) -> (usize, usize) {
        let first = self.spans.first().map_or(0, |s| s.0);
        let last = self.spans.last().map_or(0, |s| s.0 + s.1.len());
        (first, last)
    }
}

/// Pillow's rounding back to a byte: the half added up front, then shift
/// and clamp (`clip8`).
#[inline]
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `image` resized to `width` x `height` exactly as Pillow's
/// `Image.resize(size, Image.BILINEAR)` does (its `ImagingResample`:
/// horizontal pass over the rows needed, then vertical, each a convolution
/// with fixed-point weights), as interleaved RGB8. An axis already at its
/// size is not resampled, as in Pillow. [`RowResize`] fed every row.
pub fn resize_like_pillow(image: &RgbImage, width: u32, height: u32) -> Vec<u8> {
    let mut resize = RowResize::new(image.width(), image.height(), width, height);
    for row in image.as_raw().chunks_exact((image.width() as usize * 3).max(1)) {
        resize.push_row(row);
    }
    resize.finish()
}

/// [`resize_like_pillow`] fed a row at a time, top to bottom: each row
/// goes through the horizontal pass as it comes (or is dropped if the
/// vertical pass never reads it), so what is held is the model's width
/// times the image's height, never the image. The same arithmetic in the
/// same order as Pillow, so the same bytes.
pub struct RowResize {
    in_w: usize,
    out_w: usize,
    out_h: usize,
    /// None when the width is already right (Pillow skips the pass).
    horizontal: Option<Taps>,
    vertical: Taps,
    /// Source rows `[first_row, last_row)` are the ones the vertical pass reads.
    first_row: usize,
    last_row: usize,
    /// Those rows after the horizontal pass.
    rows: Vec<u8>,
    /// The next source row [`RowResize::push_row`] takes.
    next_row: usize,
}

impl RowResize {
    pub fn new(in_w: u32, in_h: u32, width: u32, height: u32) -> Self {
        let (in_w, in_h, out_w, out_h) = (in_w as usize, in_h as usize, width as usize, height as usize);
        let vertical = Taps::bilinear(in_h, out_h);
        let (first_row, last_row) = vertical.range();
        let horizontal = (out_w != in_w).then(|| Taps::bilinear(in_w, out_w));
        let row_width = if horizontal.is_some() { out_w } else { in_w };
        Self {
            in_w,
            out_w,
            out_h,
            horizontal,
            vertical,
            first_row,
            last_row,
            rows: Vec::with_capacity((last_row - first_row) * row_width * 3),
            next_row: 0,
        }
    }

    /// Bytes it holds at most: the rows the vertical pass reads, after the
    /// horizontal one, and its output.
    pub fn held_bytes(in_w: u32, in_h: u32, width: u32, height: u32) -> u64 {
        let row_width = u64::from(if width != in_w { width } else { in_w });
        (u64::from(in_h) * row_width + u64::from(width) * u64::from(height)) * 3
    }

    /// Source rows still to come.
    pub fn rows_left(&self) -> usize {
        self.last_row.saturating_sub(self.next_row)
    }

    /// The next source row, RGB8 (`in_w` pixels).
    pub fn push_row(&mut self, row: &[u8]) {
        let y = self.next_row;
        self.next_row += 1;
        if y < self.first_row || y >= self.last_row || row.len() < self.in_w * 3 {
            return;
        }
        let Some(horizontal) = &self.horizontal else {
            self.rows.extend_from_slice(&row[..self.in_w * 3]);
            return;
        };
        let start = self.rows.len();
        self.rows.resize(start + self.out_w * 3, 0);
        for ((min, weights), out) in horizontal.spans.iter().zip(self.rows[start..].chunks_exact_mut(3)) {
            let mut sum = [1i32 << (PRECISION_BITS - 1); 3];
            for (p, &k) in row[min * 3..].chunks_exact(3).zip(weights) {
                sum[0] += i32::from(p[0]) * k;
                sum[1] += i32::from(p[1]) * k;
                sum[2] += i32::from(p[2]) * k;
            }
            out.copy_from_slice(&[clip8(sum[0]), clip8(sum[1]), clip8(sum[2])]);
        }
    }

    /// The vertical pass over the rows given: the resized image, RGB8. Rows
    /// never given count as black.
    pub fn finish(mut self) -> Vec<u8> {
        let row_width = if self.horizontal.is_some() { self.out_w } else { self.in_w };
        let stride = row_width * 3;
        if self.in_w == 0 || self.out_w == 0 || self.out_h == 0 || stride == 0 {
            return vec![0; self.out_w * self.out_h * 3];
        }
        self.rows.resize((self.last_row - self.first_row) * stride, 0);
        if self.vertical.same_size {
            // Pillow skips the vertical pass; the rows are then all of them.
            return self.rows;
        }
        // Each output row a weighted sum of whole rows.
        let mut out = vec![0u8; self.out_h * stride];
        let mut sums = vec![0i32; stride];
        for ((min, weights), out_row) in self.vertical.spans.iter().zip(out.chunks_exact_mut(stride)) {
            sums.fill(1 << (PRECISION_BITS - 1));
            for (y, &k) in (min - self.first_row..).zip(weights) {
                for (s, &p) in sums.iter_mut().zip(&self.rows[y * stride..(y + 1) * stride]) {
                    *s += i32::from(p) * k;
                }
            }
            for (o, &s) in out_row.iter_mut().zip(&sums) {
                *o = clip8(s);
            }
        }
        out
    }
}

/// The model input for `image`: resized as Pillow does, RGB8.
pub fn to_input(image: &RgbImage, width: u32, height: u32) -> Vec<u8> {
    resize_like_pillow(image, width, height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity() {
        let img = RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 7]));
        assert_eq!(resize_bilinear(&img, 3, 2), img.as_raw().clone());
    }

    #[test]
    fn upscale_interpolates_then_truncates() {
        // 2x1 → 4x1: source x = 0, 0.5, 1, 1.5 (clamped to the last column).
        let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([if x == 0 { 0 } else { 255 }; 3]));
        let out = resize_bilinear(&img, 4, 1);
        let reds: Vec<u8> = out.chunks(3).map(|p| p[0]).collect();
        assert_eq!(reds, vec![0, 127, 255, 255]);
    }

    #[test]
    fn downscale_samples_without_averaging() {
        // 4x1 → 2x1 samples source columns 0 and 2, like TFLite.
        let img = RgbImage::from_fn(4, 1, |x, _| image::Rgb([x as u8 * 50; 3]));
        let out = resize_bilinear(&img, 2, 1);
        assert_eq!(out.chunks(3).map(|p| p[0]).collect::<Vec<_>>(), vec![0, 100]);
    }

    #[test]
    fn pillow_resize_keeps_a_flat_image_flat_and_same_size_as_is() {
        let flat = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 99]));
        let out = resize_like_pillow(&flat, 5, 4);
        assert_eq!(out.len(), 5 * 4 * 3);
        assert!(out.chunks(3).all(|p| p == [200, 10, 99]), "{out:?}");
        let img = RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 7]));
        assert_eq!(resize_like_pillow(&img, 3, 2), img.as_raw().clone());
    }

    #[test]
    fn pillow_resize_averages_when_downscaling() {
        // 4x1 → 2x1: each output pixel is the mean of its two source pixels
        // (triangle of support 2 centred between them: weights 1/4 3/4 3/4 1/4
        // cut to the image give (0·3 + 50·3 + 100·1)/7 ≈ 36 for the first).
        let img = RgbImage::from_fn(4, 1, |x, _| image::Rgb([x as u8 * 50; 3]));
        let reds: Vec<u8> = resize_like_pillow(&img, 2, 1).chunks(3).map(|p| p[0]).collect();
        assert_eq!(reds, vec![36, 114]);
    }

    #[test]
    fn normalisation_matches_the_input_quantization() {
        assert_eq!(normalise(128), 0.0);
        assert_eq!(normalise(0), -1.0);
        assert_eq!(normalise(255), 127.0 / 128.0);
    }
}
