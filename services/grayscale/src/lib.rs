//! image-api-grayscale domain: image bytes in, grayscale PNG bytes out.
//!
//! Two pure steps, public so the service can time and trace each:
//! [`decode_luma`] (limit-checked intake, then straight to 8-bit luma) and
//! [`encode_png`]; [`grayscale_png`] runs both. No I/O, no clocks, no threads.
//!
//! What "grayscale" means here:
//! - JPEG: the image's own luma channel Y (BT.601 weights), decoded without
//!   ever building RGB. RGB/CMYK JPEGs get the same BT.601 weights.
//! - PNG, GIF, WebP, BMP: the `image` crate's luma (BT.709), as the original
//!   template's `grayscale()` did.
//!
//! Both are standard. They differ by up to 33 levels on fully saturated
//! colours, and by 1.5-4.3 levels on average on the shared photos.
//! Output is always 8-bit. Transparency is kept (gray + alpha PNG) unless
//! every pixel is opaque. An animated GIF gives its first frame.
//!
//! Determinism: decoding and encoding are integer code, so a given input
//! gives the same PNG bytes natively and in `wasm32-wasip1` (zune-jpeg's
//! AVX2 and scalar IDCTs are bit-exact by design; `examples/digest.rs`
//! prints output digests to compare the two targets).

pub mod app;
mod deflate;
mod jpeg;
mod png;
mod png_luma;
pub mod stepped;

use image::{DynamicImage, ImageFormat};
use kit::imaging::{self, ImageError, ImageLimits};
use kit::ApiError;

/// An 8-bit grayscale image, optionally with alpha.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LumaImage {
    pub width: u32,
    pub height: u32,
    /// `pixels` interleaves gray and alpha (2 bytes a pixel) when true.
    pub has_alpha: bool,
    /// Row-major, no padding.
    pub pixels: Vec<u8>,
    /// What the bytes were, for metrics and logs.
    pub source_format: ImageFormat,
}

impl LumaImage {
    /// Bytes a pixel: 1 (gray) or 2 (gray, alpha).
    pub fn channels(&self) -> u8 {
        if self.has_alpha {
            2
        } else {
            1
        }
    }
}

/// The answer: a grayscale PNG and what is worth recording about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrayPng {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
    pub source_format: ImageFormat,
}

impl GrayPng {
    /// The PNG as standard base64, the template's response body.
    pub fn base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&self.png)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrayscaleError {
    /// The upload: empty, not an accepted format, too large, or corrupt.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Our side: the image could not be written as PNG.
    #[error("the grayscale PNG could not be encoded: {0}")]
    Encode(String),
}

impl From<GrayscaleError> for ApiError {
    fn from(e: GrayscaleError) -> Self {
        match e {
            // Keeps kit's statuses: 400 empty/invalid, 413 too large, 415 format.
            GrayscaleError::Image(e) => e.into(),
            GrayscaleError::Encode(_) => ApiError::internal_error(e),
        }
    }
}

/// Decode `bytes` to grayscale and encode that as PNG.
pub fn grayscale_png(bytes: &[u8], limits: &ImageLimits) -> Result<GrayPng, GrayscaleError> {
    let checked = imaging::intake(bytes, limits)?;
    grayscale_png_checked(bytes, checked, limits)
}

/// [`grayscale_png`] for `bytes` already through [`imaging::intake`]
/// (`checked`: its format, width and height), without repeating it.
pub fn grayscale_png_checked(
    bytes: &[u8],
    checked: (ImageFormat, u32, u32),
    limits: &ImageLimits,
) -> Result<GrayPng, GrayscaleError> {
    stepped::Grayscale::new(bytes, checked, limits).run()
}

/// kit's intake (sniff the format, refuse a too-large declared size before
/// decoding anything, refuse a cut JPEG), then decode to 8-bit luma (see the
/// crate docs for the maths).
pub fn decode_luma(bytes: &[u8], limits: &ImageLimits) -> Result<LumaImage, GrayscaleError> {
    let checked = imaging::intake(bytes, limits)?;
    decode_luma_checked(bytes, checked, limits)
}

/// [`decode_luma`] for `bytes` already through [`imaging::intake`].
pub(crate) fn decode_luma_checked(
    bytes: &[u8],
    (format, width, height): (ImageFormat, u32, u32),
    limits: &ImageLimits,
) -> Result<LumaImage, GrayscaleError> {
    if format == ImageFormat::Jpeg {
        let pixels = jpeg::decode_luma(bytes, limits)?;
        return luma_image(width, height, false, pixels, format);
    }
    if format == ImageFormat::Png {
        let (has_alpha, pixels) = png_luma::decode_luma(bytes, limits)?;
        return luma_image(width, height, has_alpha, pixels, format);
    }
    let decoded = imaging::decode_checked(bytes, format, limits)?;
    let (w, h) = (decoded.width(), decoded.height());
    let (has_alpha, pixels) = to_luma(decoded);
    luma_image(w, h, has_alpha, pixels, format)
}

/// Bytes turning `bytes` (through [`imaging::intake`]: `format`, `width` x
/// `height`) into the answer holds at its peak, from the header alone: the
/// decoder's own buffers on the path [`decode_luma`] takes, the luma, and
/// the PNG and its base64 beside it. What the request reserves before the
/// work starts.
pub fn decode_cost(bytes: &[u8], format: ImageFormat, width: u32, height: u32) -> u64 {
    let pixels = u64::from(width) * u64::from(height);
    let (decoder, luma_channels) = match format {
        ImageFormat::Jpeg => match imaging::JpegLayout::read(bytes) {
            // Y alone, unless its colours are not YCbCr (then RGB first);
            // counted as if they never were, the rare case priced in.
            Some(jpeg) => {
                let colour = if jpeg.sampling.len() > 1 { pixels * u64::from(jpeg.output_channels()) } else { 0 };
                (jpeg.coefficient_bytes(width, height) + colour, 1)
            }
            None => (imaging::decode_cost(bytes, format, width, height), 1),
        },
        ImageFormat::Png => match imaging::PngLayout::read(bytes) {
            Some(png) => (png_luma::decode_cost(&png, width, height), 2),
            None => (imaging::decode_cost(bytes, format, width, height), 2),
        },
        _ => (imaging::decode_cost(bytes, format, width, height), 2),
    };
    let luma = pixels * luma_channels;
    decoder + luma + encoded_bytes(luma)
}

/// The heaviest [`decode_cost`] a pixel can have: a GIF or WebP (the
/// canvas twice at RGBA, its luma and alpha, the answer). Sets the default
/// pixel limit beside the memory budget.
pub const WORST_BYTES_PER_PIXEL: u64 = 2 * 4 + 2 + 6;

/// The PNG (Huffman-only coding grows incompressible rows by at most a
/// tenth) and its base64 (4/3 of it), both held while the answer is made.
fn encoded_bytes(luma: u64) -> u64 {
    let png = luma + luma / 10 + 1024;
    png + png.div_ceil(3) * 4
}

/// PNG bytes for `luma` (8-bit gray or gray + alpha).
pub fn encode_png(luma: &LumaImage) -> Result<Vec<u8>, GrayscaleError> {
    check_luma(luma)?;
    Ok(png::encode(&luma.pixels, luma.width, luma.height, luma.channels()))
}

/// Whether `luma`'s pixels make the image it says, as the PNG writer needs.
pub(crate) fn check_luma(luma: &LumaImage) -> Result<(), GrayscaleError> {
    let expected = u64::from(luma.width) * u64::from(luma.height) * u64::from(luma.channels());
    if luma.width == 0 || luma.height == 0 || expected != luma.pixels.len() as u64 {
        return Err(GrayscaleError::Encode(format!(
            "{} bytes do not make a {}x{} image of {} byte(s) a pixel",
            luma.pixels.len(),
            luma.width,
            luma.height,
            luma.channels()
        )));
    }
    Ok(())
}

/// `image` as PNG by the `image` crate, for the tests.
#[cfg(test)]
pub(crate) fn png_of(image: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut out), ImageFormat::Png).expect("encode");
    out
}

/// The decoder's pixel count must match the header we checked the limits on.
pub(crate) fn luma_image(
    width: u32,
    height: u32,
    has_alpha: bool,
    pixels: Vec<u8>,
    source_format: ImageFormat,
) -> Result<LumaImage, GrayscaleError> {
    let channels = if has_alpha { 2 } else { 1 };
    if pixels.len() as u64 != u64::from(width) * u64::from(height) * channels {
        return Err(ImageError::Corrupt(format!("decoded {} bytes for a {width}x{height} image", pixels.len())).into());
    }
    Ok(LumaImage { width, height, has_alpha, pixels, source_format })
}

/// `image`'s luma (BT.709), with alpha only if some pixel is not opaque.
fn to_luma(img: DynamicImage) -> (bool, Vec<u8>) {
    if !img.color().has_alpha() {
        return (false, img.into_luma8().into_raw());
    }
    let la = img.into_luma_alpha8().into_raw();
    if la.chunks_exact(2).all(|p| p[1] == u8::MAX) {
        // GIF frames always come as RGBA: do not pay 2 bytes a pixel for nothing.
        (false, la.chunks_exact(2).map(|p| p[0]).collect())
    } else {
        (true, la)
    }
}
