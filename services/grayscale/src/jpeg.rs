//! JPEG straight to luma with zune-jpeg, strictly.
//!
//! Why not `image`'s JPEG path: it decodes all three components, upsamples
//! chroma and converts to RGB, then `grayscale()` mixes RGB back into one
//! channel. A YCbCr JPEG already *stores* luma: asking zune-jpeg for `Luma`
//! keeps Y and only entropy-skips the chroma blocks (no dequantisation, IDCT,
//! upsampling or colour conversion for them). The grayscale is therefore
//! JPEG's own Y, i.e. BT.601 weights (0.299 R + 0.587 G + 0.114 B), where
//! `image`'s `grayscale()` uses BT.709 (0.2126/0.7152/0.0722).
//!
//! Why strict: `image` runs zune-jpeg in lenient mode, which paints whatever
//! a truncated upload is missing gray (128) and reports success; so does
//! zune-jpeg by default. Strict mode turns that (and corrupt entropy data)
//! into an error, but zune-jpeg only checks for overread at the start of each
//! MCU row, so a cut inside the last row would still "succeed". kit's intake
//! closes that gap (`kit::imaging::jpeg_reaches_end_of_image`), and must run
//! before this. (Not covered: an EOI marker *inside* the scan, which
//! zune-jpeg takes as the end even when strict, zero-filling the rest. That
//! is a damaged file, not a cut upload.)

use kit::imaging::{ImageError, ImageLimits};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// Luma pixels of a JPEG that has been through `kit::imaging::intake`.
pub fn decode_luma(bytes: &[u8], limits: &ImageLimits) -> Result<Vec<u8>, ImageError> {
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(limits.max_width as usize)
        .set_max_height(limits.max_height as usize);

    let mut decoder =
        JpegDecoder::new_with_options(ZCursor::new(bytes), options.jpeg_set_out_colorspace(ColorSpace::Luma));
    decoder.decode_headers().map_err(corrupt)?;
    match decoder.input_colorspace() {
        // Y is the luma we want (a grayscale JPEG has only Y).
        Some(ColorSpace::YCbCr | ColorSpace::Luma) => decoder.decode().map_err(corrupt),
        // RGB, CMYK and YCCK JPEGs are rare: let zune-jpeg make RGB, then
        // apply the same BT.601 weights so every JPEG means the same gray.
        _ => {
            let mut decoder =
                JpegDecoder::new_with_options(ZCursor::new(bytes), options.jpeg_set_out_colorspace(ColorSpace::RGB));
            let rgb = decoder.decode().map_err(corrupt)?;
            Ok(rgb.chunks_exact(3).map(|p| bt601(p[0], p[1], p[2])).collect())
        }
    }
}

fn corrupt(e: zune_jpeg::errors::DecodeErrors) -> ImageError {
    ImageError::Corrupt(e.to_string())
}

/// JPEG's own RGB -> Y (JFIF, BT.601) in 16-bit fixed point, rounded.
fn bt601(r: u8, g: u8, b: u8) -> u8 {
    // 19595 + 38470 + 7471 = 65536, so the result is at most 255.
    let y = 19_595 * u32::from(r) + 38_470 * u32::from(g) + 7_471 * u32::from(b) + 32_768;
    (y >> 16) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bt601_keeps_grays_and_extremes() {
        for v in [0u8, 1, 127, 128, 254, 255] {
            assert_eq!(bt601(v, v, v), v);
        }
        assert_eq!(bt601(255, 0, 0), 76);
        assert_eq!(bt601(0, 255, 0), 150);
        assert_eq!(bt601(0, 0, 255), 29);
    }
}
