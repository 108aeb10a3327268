//! PNG straight to 8-bit luma, a row at a time.
//!
//! Why not `image`'s PNG path: it decodes the whole image at its own depth
//! first (a 16-bit RGBA PNG is 8 bytes a pixel), then `into_luma8` makes a
//! second, luma copy. Here png strips 16-bit samples to 8 and expands
//! palettes and low depths as it goes (`Transformations::normalize_to_color8`),
//! and each row is turned into luma at once: the only image-sized buffer
//! is the output. An interlaced PNG's rows arrive pass by pass, so it is
//! decoded whole at 8 bits first (its cost counts that frame).
//!
//! The luma is `image`'s own conversion, applied to batches of rows, so an
//! 8-bit PNG gives exactly what `image`'s `into_luma8` gives. A 16-bit PNG
//! is stripped to its high byte first, which can differ from `image`'s
//! 16-bit luma narrowed afterwards by one level.

use image::DynamicImage;
use kit::imaging::{png_error as corrupt, ImageError, ImageLimits, PngLayout};
use png::ColorType;
use std::io::Cursor;

/// Gray (and alpha, if any pixel is not opaque) pixels of a PNG that has
/// been through `kit::imaging::intake`: `(has_alpha, pixels)`. [`LumaRows`]
/// to its end.
pub fn decode_luma(bytes: &[u8], limits: &ImageLimits) -> Result<(bool, Vec<u8>), ImageError> {
    let mut rows = LumaRows::new(bytes, limits)?;
    loop {
        if let Some(done) = rows.step()? {
            return Ok(done);
        }
    }
}

/// A PNG decoded to luma a batch of rows at a time ([`LumaRows::step`]), so
/// that the work can pause between batches (grayscale's steps under WASI).
pub struct LumaRows<B: AsRef<[u8]>> {
    reader: png::Reader<Cursor<B>>,
    color: ColorType,
    width: usize,
    height: usize,
    has_alpha: bool,
    out: Vec<u8>,
    batch: RowBatch,
    /// An interlaced PNG's 8-bit frame, filled pass by pass, and the next
    /// of its rows to turn into luma once the passes are read.
    frame: Option<(Vec<u8>, Option<usize>)>,
}

impl<B: AsRef<[u8]>> LumaRows<B> {
    pub fn new(bytes: B, limits: &ImageLimits) -> Result<Self, ImageError> {
        let reader = kit::imaging::png_rows(Cursor::new(bytes), limits)?;
        let (color, _) = reader.output_color_type();
        let info = reader.info();
        let (width, height, interlaced) = (info.width as usize, info.height as usize, info.interlaced);
        let has_alpha = matches!(color, ColorType::GrayscaleAlpha | ColorType::Rgba);
        let out_channels = if has_alpha { 2 } else { 1 };
        let frame = interlaced.then(|| (vec![0u8; width * height * color.samples()], None));
        Ok(Self {
            reader,
            color,
            width,
            height,
            has_alpha,
            out: Vec::with_capacity(width * height * out_channels),
            batch: RowBatch::new(width, color),
            frame,
        })
    }

    /// About a [`RowBatch`] of rows; `(has_alpha, pixels)` after the last.
    pub fn step(&mut self) -> Result<Option<(bool, Vec<u8>)>, ImageError> {
        let row_bytes = (self.width * self.color.samples()).max(1);
        let mut read = 0;
        while read < RowBatch::BYTES {
            match &mut self.frame {
                None => match self.reader.next_row().map_err(corrupt)? {
                    Some(row) => {
                        read += row.data().len().max(1);
                        self.batch.push(row.data(), &mut self.out);
                    }
                    None => return self.finish().map(Some),
                },
                Some((frame, None)) => match self.reader.next_interlaced_row().map_err(corrupt)? {
                    Some(row) => {
                        read += row.data().len().max(1);
                        if let png::InterlaceInfo::Adam7(pass) = row.interlace() {
                            let bits = u8::try_from(self.color.samples() * 8).unwrap_or(32);
                            png::expand_interlaced_row(frame, row_bytes, row.data(), pass, bits);
                        }
                    }
                    None => self.frame = Some((std::mem::take(frame), Some(0))),
                },
                Some((frame, Some(next))) => match frame.get(*next * row_bytes..(*next + 1) * row_bytes) {
                    Some(row) if *next < self.height => {
                        self.batch.push(row, &mut self.out);
                        (*next, read) = (*next + 1, read + row_bytes);
                    }
                    _ => return self.finish().map(Some),
                },
            }
        }
        Ok(None)
    }

    fn finish(&mut self) -> Result<(bool, Vec<u8>), ImageError> {
        self.batch.flush(&mut self.out);
        let (width, height) = (self.width, self.height);
        let mut out = std::mem::take(&mut self.out);
        let out_channels = if self.has_alpha { 2 } else { 1 };
        if out.len() != width * height * out_channels {
            return Err(ImageError::Corrupt(format!("the PNG has {} bytes of pixels for {width}x{height}", out.len())));
        }
        if self.has_alpha && out.chunks_exact(2).all(|p| p[1] == u8::MAX) {
            // Opaque after all: keep gray only, in place.
            for i in 0..width * height {
                out[i] = out[2 * i];
            }
            out.truncate(width * height);
            return Ok((false, out));
        }
        Ok((self.has_alpha, out))
    }
}

/// Bytes the row decode holds beside the luma it produces: one decoded
/// row (and png's own row buffers), or, interlaced, the whole 8-bit frame.
pub fn decode_cost(png: &PngLayout, width: u32, height: u32) -> u64 {
    let row = u64::from(width) * png.channels();
    // A batch of rows and its luma (RowBatch).
    let batch = 2 * RowBatch::BYTES as u64 + 4 * row;
    if png.interlaced {
        row * u64::from(height) + batch
    } else {
        // The raw row at full depth, the previous one for unfiltering.
        batch + 2 * row * if png.bit_depth == 16 { 2 } else { 1 }
    }
}

/// Rows gathered up to [`RowBatch::BYTES`], then turned into luma by
/// `image`'s own conversion (so the gray is exactly what `into_luma8` gives
/// a whole image), a batch at a time.
struct RowBatch {
    width: u32,
    color: ColorType,
    rows: Vec<u8>,
}

impl RowBatch {
    const BYTES: usize = 1 << 20;

    fn new(width: usize, color: ColorType) -> Self {
        Self { width: u32::try_from(width).unwrap_or(u32::MAX), color, rows: Vec::new() }
    }

    fn push(&mut self, row: &[u8], out: &mut Vec<u8>) {
        if self.rows.len() + row.len() > Self::BYTES {
            self.flush(out);
        }
        self.rows.extend_from_slice(row);
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        if self.rows.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.rows);
        let row_bytes = (self.width as usize * self.color.samples()).max(1);
        let (w, h) = (self.width, u32::try_from(rows.len() / row_bytes).unwrap_or(0));
        match self.color {
            // normalize_to_color8 expands palettes, so Indexed never comes.
            ColorType::Grayscale | ColorType::GrayscaleAlpha | ColorType::Indexed => out.extend_from_slice(&rows),
            ColorType::Rgb => {
                if let Some(rgb) = image::RgbImage::from_raw(w, h, rows) {
                    out.extend_from_slice(DynamicImage::ImageRgb8(rgb).into_luma8().as_raw());
                }
            }
            ColorType::Rgba => {
                if let Some(rgba) = image::RgbaImage::from_raw(w, h, rows) {
                    out.extend_from_slice(DynamicImage::ImageRgba8(rgba).into_luma_alpha8().as_raw());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgba};

    #[test]
    fn eight_bit_rows_give_images_own_luma() {
        let rgb = image::RgbImage::from_fn(37, 11, |x, y| image::Rgb([(x * 7) as u8, (y * 23) as u8, (x * y) as u8]));
        let png = crate::png_of(&DynamicImage::ImageRgb8(rgb.clone()));
        let (alpha, luma) = decode_luma(&png, &ImageLimits::default()).expect("decodes");
        assert!(!alpha);
        assert_eq!(luma, DynamicImage::ImageRgb8(rgb).into_luma8().into_raw());
    }

    #[test]
    fn sixteen_bit_rgba_is_stripped_to_eight_and_keeps_its_alpha() {
        let img: ImageBuffer<Rgba<u16>, Vec<u16>> = ImageBuffer::from_fn(9, 5, |x, y| {
            Rgba([(x * 7000) as u16, (y * 9000) as u16, 300, if x == 0 { 0 } else { 65535 }])
        });
        let png = crate::png_of(&DynamicImage::ImageRgba16(img.clone()));
        let (alpha, la) = decode_luma(&png, &ImageLimits::default()).expect("decodes");
        assert!(alpha);
        assert_eq!(la.len(), 9 * 5 * 2);
        let stripped = image::RgbaImage::from_fn(9, 5, |x, y| Rgba(img.get_pixel(x, y).0.map(|v| (v >> 8) as u8)));
        assert_eq!(la, DynamicImage::ImageRgba8(stripped).into_luma_alpha8().into_raw());
    }
}
