//! Image to model input, as TensorFlow Lite's reference `label_image` does
//! for a uint8 model: RGB8, bilinear resize (TFLite `RESIZE_BILINEAR`,
//! `align_corners = false`, `half_pixel_centers = false`) computed in float
//! and truncated back to u8, then the real value of that u8 under the
//! input quantization (zero point 128, scale 1/128).

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
) -> Result<Vec<f32>, ClassifyError> {
    let image = kit::imaging::decode(image_bytes, limits)?.into_rgb8();
    Ok(to_input(&image, width, height))
}

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

/// The model input for `image`: resized, then normalised.
pub fn to_input(image: &RgbImage, width: u32, height: u32) -> Vec<f32> {
    resize_bilinear(image, width, height)
        .into_iter()
        .map(normalise)
        .collect()
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
        assert_eq!(
            out.chunks(3).map(|p| p[0]).collect::<Vec<_>>(),
            vec![0, 100]
        );
    }

    #[test]
    fn normalisation_matches_the_input_quantization() {
        assert_eq!(normalise(128), 0.0);
        assert_eq!(normalise(0), -1.0);
        assert_eq!(normalise(255), 127.0 / 128.0);
    }
}
