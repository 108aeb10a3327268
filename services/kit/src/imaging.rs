//! Image intake shared by the services that take images: sniff the format
//! from the bytes, read the declared dimensions from the header, refuse a
//! decompression bomb before a single pixel is decoded, then decode with the
//! decoder's own allocation limit as a second fence.

use crate::error::ApiError;
use http::StatusCode;
use image::{DynamicImage, ImageFormat, ImageReader};
use std::io::Cursor;

/// Formats the services accept, as the original template did.
pub const ACCEPTED: [ImageFormat; 5] =
    [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Gif, ImageFormat::WebP, ImageFormat::Bmp];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// Declared width × height above this is refused before decoding.
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        // 40 MP covers any phone photo; at 4 bytes a pixel that is 160 MB decoded.
        Self { max_width: 16_384, max_height: 16_384, max_pixels: 40_000_000 }
    }
}

impl ImageLimits {
    /// The default limits, the pixel limit lowered so that the heaviest
    /// allowed image (`bytes_per_pixel`) fits a memory `budget` beside one
    /// body of `max_body` bytes. A budget of 0 (none) keeps the default.
    pub fn fitting(budget: u64, max_body: u64, bytes_per_pixel: u64) -> Self {
        let d = Self::default();
        if budget == 0 || bytes_per_pixel == 0 {
            return d;
        }
        let pixels = budget.saturating_sub(max_body) / bytes_per_pixel;
        Self { max_pixels: pixels.clamp(1, d.max_pixels), ..d }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("the request body is empty; send an image")]
    Empty,
    #[error("the body is not a JPEG, PNG, GIF, WebP or BMP image")]
    UnsupportedFormat,
    #[error("the image declares {width}x{height} pixels, over the limit of {max_pixels} pixels (at most {max_width}x{max_height})")]
    TooLarge { width: u32, height: u32, max_pixels: u64, max_width: u32, max_height: u32 },
    /// The decoder refused the header on its declared size alone, before
    /// reporting the dimensions (png refuses an image whose decoded size
    /// overflows `usize`: over 4 GiB on wasm32).
    #[error("the image declares more pixels than can be decoded ({0})")]
    DeclaredTooLarge(String),
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        let (status, code) = match e {
            ImageError::Empty => (StatusCode::BAD_REQUEST, "empty_body"),
            ImageError::UnsupportedFormat => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_image_format"),
            ImageError::TooLarge { .. } | ImageError::DeclaredTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "image_too_large")
            }
            // The decoder's own words are for the log.
            ImageError::Corrupt(_) => {
                return ApiError::bad_request("invalid_image", "the image could not be decoded").with_detail(e)
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// The format of `bytes`, judged by magic numbers only.
pub fn sniff(bytes: &[u8]) -> Result<ImageFormat, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let format = image::guess_format(bytes).map_err(|_| ImageError::UnsupportedFormat)?;
    if ACCEPTED.contains(&format) {
        Ok(format)
    } else {
        Err(ImageError::UnsupportedFormat)
    }
}

/// Declared dimensions, read from the header alone, checked against `limits`.
pub fn checked_dimensions(bytes: &[u8], format: ImageFormat, limits: &ImageLimits) -> Result<(u32, u32), ImageError> {
    let (width, height) =
        ImageReader::with_format(Cursor::new(bytes), format).into_dimensions().map_err(|e| match e {
            // A bomb all the same, only refused one step earlier: too large, not corrupt.
            image::ImageError::Limits(_) => ImageError::DeclaredTooLarge(e.to_string()),
            e => ImageError::Corrupt(e.to_string()),
        })?;
    let too_large = width > limits.max_width
        || height > limits.max_height
        || u64::from(width) * u64::from(height) > limits.max_pixels;
    if too_large {
        return Err(ImageError::TooLarge {
            width,
            height,
            max_pixels: limits.max_pixels,
            max_width: limits.max_width,
            max_height: limits.max_height,
        });
    }
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt("the image has no pixels".into()));
    }
    Ok((width, height))
}

/// Sniff and check the declared size: everything to know before decoding.
/// A JPEG must also run to its end-of-image marker: decoders paint a
/// truncated upload's missing part gray and call it a success. A PNG's
/// palette must hold whole RGB entries: the decoder panics on one that does not.
pub fn intake(bytes: &[u8], limits: &ImageLimits) -> Result<(ImageFormat, u32, u32), ImageError> {
    let format = sniff(bytes)?;
    let (width, height) = checked_dimensions(bytes, format, limits)?;
    if format == ImageFormat::Jpeg && !jpeg_reaches_end_of_image(bytes) {
        return Err(ImageError::Corrupt("the JPEG data stops before its end-of-image marker (truncated?)".into()));
    }
    if format == ImageFormat::Png && !png_palette_is_whole(bytes) {
        return Err(ImageError::Corrupt("the PNG palette (PLTE) is not a whole number of RGB entries".into()));
    }
    Ok((format, width, height))
}

/// [`intake`], then decode. The decoder also gets an allocation cap, in
/// case a format lies in its header.
pub fn decode(bytes: &[u8], limits: &ImageLimits) -> Result<DynamicImage, ImageError> {
    let (format, _, _) = intake(bytes, limits)?;
    decode_checked(bytes, format, limits)
}

/// Decode `bytes` that have been through [`intake`] (which found `format`),
/// with the decoder's allocation cap, without repeating the intake.
pub fn decode_checked(bytes: &[u8], format: ImageFormat, limits: &ImageLimits) -> Result<DynamicImage, ImageError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(decoder_limits(limits));
    reader.decode().map_err(|e| ImageError::Corrupt(e.to_string()))
}

/// A PNG that has been through [`intake`], opened to be read a row at a
/// time at 8 bits a sample: png strips 16-bit samples to their high byte
/// and expands palettes and low depths as it goes
/// (`normalize_to_color8`), so no row is ever wider than 4 bytes a pixel.
/// The decoder's allocation cap is the same as [`decoder_limits`]'.
pub fn png_rows<R: std::io::BufRead + std::io::Seek>(
    source: R,
    limits: &ImageLimits,
) -> Result<png::Reader<R>, ImageError> {
    let png_limits = png::Limits { bytes: usize::try_from(limits.max_pixels.saturating_mul(8)).unwrap_or(usize::MAX) };
    let mut decoder = png::Decoder::new_with_limits(source, png_limits);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    decoder.read_info().map_err(png_error)
}

/// png's error as ours: its allocation cap is a declared size too large.
pub fn png_error(e: png::DecodingError) -> ImageError {
    match e {
        png::DecodingError::LimitsExceeded => ImageError::DeclaredTooLarge(e.to_string()),
        e => ImageError::Corrupt(e.to_string()),
    }
}

/// The `image` crate's own limits for `limits`: dimensions, and an
/// allocation budget of 8 bytes a pixel (RGBA16, the widest we decode).
pub fn decoder_limits(limits: &ImageLimits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_width);
    l.max_image_height = Some(limits.max_height);
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    l
}

/// What decoding `bytes` with [`decode`] (the `image` crate) holds at its
/// peak, from the header alone: the decoded image at its real depth (16-bit
/// samples, alpha, a palette expanded to RGB or RGBA), plus what the decoder
/// keeps beside it: a progressive or multi-scan JPEG's coefficients (2
/// bytes each, every component, padded to whole MCUs: zune-jpeg holds them
/// all before the first pixel), the canvas a GIF or WebP frame is composed
/// on. `width` and `height` are the checked dimensions from [`intake`].
pub fn decode_cost(bytes: &[u8], format: ImageFormat, width: u32, height: u32) -> u64 {
    let pixels = u64::from(width) * u64::from(height);
    match format {
        ImageFormat::Png => {
            let Some(png) = PngLayout::read(bytes) else { return pixels * 8 };
            pixels * png.decoded_bytes_per_pixel()
        }
        ImageFormat::Jpeg => {
            let Some(jpeg) = JpegLayout::read(bytes) else { return pixels * 4 };
            pixels * u64::from(jpeg.output_channels()) + jpeg.coefficient_bytes(width, height)
        }
        ImageFormat::Gif | ImageFormat::WebP => 2 * pixels * 4,
        _ => pixels * 4,
    }
}

/// A PNG's IHDR, and whether a tRNS chunk comes before its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PngLayout {
    pub bit_depth: u8,
    /// 0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA.
    pub color_type: u8,
    pub interlaced: bool,
    pub transparency: bool,
}

impl PngLayout {
    pub fn read(bytes: &[u8]) -> Option<Self> {
        if bytes.get(..8)? != PNG_SIGNATURE || bytes.get(12..16)? != b"IHDR" {
            return None;
        }
        let ihdr = bytes.get(16..29)?;
        let mut layout =
            Self { bit_depth: ihdr[8], color_type: ihdr[9], interlaced: ihdr[12] != 0, transparency: false };
        layout.transparency = png_chunk_types(bytes).take_while(|t| t != b"IDAT").any(|t| &t == b"tRNS");
        Some(layout)
    }

    /// Samples a pixel once decoded (a palette expands to RGB, RGBA with tRNS).
    pub fn channels(&self) -> u64 {
        let alpha = u64::from(self.transparency);
        match self.color_type {
            0 => 1 + alpha,
            2 | 3 => 3 + alpha,
            4 => 2,
            _ => 4,
        }
    }

    /// Bytes a pixel the `image` crate's decode holds: 16-bit stays 16-bit.
    pub fn decoded_bytes_per_pixel(&self) -> u64 {
        self.channels() * if self.bit_depth == 16 { 2 } else { 1 }
    }
}

/// The chunk types of a PNG, in order, as far as its structure holds.
fn png_chunk_types(bytes: &[u8]) -> impl Iterator<Item = [u8; 4]> + '_ {
    let mut at = Some(PNG_SIGNATURE.len());
    std::iter::from_fn(move || {
        let header = bytes.get(at?..at? + 8)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let kind = [header[4], header[5], header[6], header[7]];
        // Length, type, data, CRC; checked: a declared 4 GiB overflows usize on wasm32.
        at = usize::try_from(len).ok().and_then(|len| at?.checked_add(12)?.checked_add(len));
        Some(kind)
    })
}

/// A JPEG's frame header (SOFn) and how many scans it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JpegLayout {
    /// SOF2 (or any progressive SOF), or more than one scan.
    pub multi_scan: bool,
    /// Each component's horizontal and vertical sampling factors.
    pub sampling: Vec<(u8, u8)>,
}

impl JpegLayout {
    pub fn read(bytes: &[u8]) -> Option<Self> {
        let (mut sampling, mut progressive, mut scans) = (None, false, 0u32);
        let mut i = 2;
        while i + 4 <= bytes.len() {
            if bytes[i] != 0xFF {
                return None;
            }
            let marker = bytes[i + 1];
            if marker == 0xFF {
                i += 1;
                continue;
            }
            if marker == 0xD9 {
                break;
            }
            let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
            let segment = bytes.get(i + 4..i + 2 + len)?;
            match marker {
                // SOF0-3, 5-7, 9-11, 13-15 (not DHT C4, JPG C8, DAC CC).
                0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                    progressive = matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE);
                    let count = usize::from(*segment.get(5)?);
                    let components = segment.get(6..6 + 3 * count)?;
                    sampling = Some(components.chunks_exact(3).map(|c| (c[1] >> 4, c[1] & 0x0F)).collect());
                }
                0xDA => {
                    scans += 1;
                    // Past the entropy-coded data to the next marker.
                    i = next_marker(bytes, i + 2 + len).unwrap_or(bytes.len());
                    continue;
                }
                _ => {}
            }
            i += 2 + len;
        }
        Some(Self { multi_scan: progressive || scans > 1, sampling: sampling? })
    }

    /// What the `image` crate decodes to: gray, RGB, or (CMYK) four.
    pub fn output_channels(&self) -> u8 {
        match self.sampling.len() {
            1 => 1,
            4 => 4,
            _ => 3,
        }
    }

    /// A multi-scan JPEG's coefficient buffers: every component, padded to
    /// whole MCUs, 2 bytes a coefficient. 0 for one interleaved scan, which
    /// is decoded an MCU row at a time.
    pub fn coefficient_bytes(&self, width: u32, height: u32) -> u64 {
        if !self.multi_scan {
            return 0;
        }
        let h_max = u64::from(self.sampling.iter().map(|s| s.0).max().unwrap_or(1).max(1));
        let v_max = u64::from(self.sampling.iter().map(|s| s.1).max().unwrap_or(1).max(1));
        let mcus_x = u64::from(width).div_ceil(8 * h_max);
        let mcus_y = u64::from(height).div_ceil(8 * v_max);
        self.sampling.iter().map(|&(h, v)| (mcus_x * u64::from(h) * 8) * (mcus_y * u64::from(v) * 8) * 2).sum()
    }
}

/// Whether the marker structure of `bytes` runs from SOI to an EOI marker.
///
/// Segments are skipped by their declared length, entropy-coded data by
/// looking for the next marker (0xFF not followed by a stuffed 0x00, a
/// restart marker or fill). Data after EOI is ignored, as decoders do. This
/// checks the structure only; the decoder checks the contents.
pub fn jpeg_reaches_end_of_image(bytes: &[u8]) -> bool {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return false;
    }
    let mut i = 2;
    let mut in_scan = false;
    loop {
        if in_scan {
            match next_marker(bytes, i) {
                Some(at) => {
                    i = at;
                    in_scan = false;
                }
                None => return false,
            }
        }
        // Between segments: a marker, possibly after 0xFF fill bytes.
        let Some(ff) = memchr::memchr(0xFF, &bytes[i..]) else { return false };
        i += ff;
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else { return false };
        i += 1;
        match marker {
            0xD9 => return true,            // EOI
            0x00 | 0x01 | 0xD0..=0xD7 => {} // no payload
            _ => {
                let Some(len) = bytes.get(i..i + 2) else { return false };
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                if len < 2 || i + len > bytes.len() {
                    return false;
                }
                i += len;
                in_scan = marker == 0xDA; // SOS: entropy-coded data follows
            }
        }
    }
}

const PNG_SIGNATURE: [u8; 8] = *b"\x89PNG\r\n\x1a\n";

/// Whether no PLTE chunk of the PNG `bytes` has a length that is not a
/// multiple of 3 (whole RGB entries, as the PNG spec requires).
///
/// png 0.18.1 accepts any PLTE of 3 to 768 bytes and then panics building
/// its palette table from a partial entry (image-rs/image-png#694, fixed
/// upstream, unreleased). Natively that fails the request; in wasm32 a
/// panic aborts, taking the whole service down. Chunks are walked by their
/// declared lengths up to IEND; where the structure breaks, the walk stops
/// and the decoder judges the rest (it fails before any palette there).
fn png_palette_is_whole(bytes: &[u8]) -> bool {
    let mut at = PNG_SIGNATURE.len();
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        match &header[4..8] {
            b"PLTE" if len % 3 != 0 => return false,
            b"IEND" => return true,
            _ => {}
        }
        // Length, type, data, CRC; checked: a declared 4 GiB overflows usize on wasm32.
        let Some(next) = usize::try_from(len).ok().and_then(|len| at.checked_add(12)?.checked_add(len)) else {
            return true;
        };
        at = next;
    }
    true
}

/// Index of the next marker's 0xFF at or after `from` in entropy-coded data.
fn next_marker(bytes: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + memchr::memchr(0xFF, bytes.get(from..)?)?;
        match bytes.get(at + 1)? {
            0x00 | 0xD0..=0xD7 => from = at + 2,
            0xFF => from = at + 1,
            _ => return Some(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::GrayImage::new(width, height);
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).expect("encode");
        out
    }

    #[test]
    fn empty_and_unknown_bodies_are_refused() {
        assert_eq!(sniff(b""), Err(ImageError::Empty));
        assert_eq!(sniff(b"hello, not an image"), Err(ImageError::UnsupportedFormat));
    }

    #[test]
    fn declared_size_over_the_pixel_limit_is_refused_before_decoding() {
        let limits = ImageLimits { max_width: 100, max_height: 100, max_pixels: 50 * 50 };
        let bytes = png(60, 60);
        assert!(matches!(decode(&bytes, &limits), Err(ImageError::TooLarge { width: 60, .. })));
        assert!(decode(&png(50, 50), &limits).is_ok());
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    /// One PNG chunk: length, type, data, CRC.
    fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut typed = kind.to_vec();
        typed.extend_from_slice(data);
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&typed);
        out.extend_from_slice(&crc32(&typed).to_be_bytes());
        out
    }

    /// The PNG signature and an IHDR: `width`x`height`, `depth` bits, colour type `color`.
    fn png_start(width: u32, height: u32, depth: u8, color: u8) -> Vec<u8> {
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[depth, color, 0, 0, 0]);
        let mut out = PNG_SIGNATURE.to_vec();
        out.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
        out
    }

    /// A PNG header declaring `width`x`height` RGBA16, with no pixel data.
    fn png_header(width: u32, height: u32) -> Vec<u8> {
        png_start(width, height, 16, 6)
    }

    #[test]
    fn a_header_the_decoder_refuses_for_its_size_is_too_large_not_corrupt() {
        // 2^31-1 squared RGBA16 overflows usize even on 64 bits, so png
        // refuses it before reporting the dimensions, as it does far
        // smaller images on wasm32.
        let bomb = png_header(0x7fff_ffff, 0x7fff_ffff);
        let err = decode(&bomb, &ImageLimits::default()).expect_err("refused");
        assert!(matches!(err, ImageError::DeclaredTooLarge(_)), "{err:?}");
        assert_eq!(ApiError::from(err).status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn a_jpeg_cut_anywhere_is_refused_and_a_whole_one_is_not() {
        let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
        let mut jpeg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg).expect("encode");
        assert!(intake(&jpeg, &ImageLimits::default()).is_ok());
        let mut with_trailer = jpeg.clone();
        with_trailer.extend_from_slice(b"\0\0trailing");
        assert!(jpeg_reaches_end_of_image(&with_trailer));
        for cut in [jpeg.len() - 1, jpeg.len() - 2, jpeg.len() / 2, 200] {
            assert!(!jpeg_reaches_end_of_image(&jpeg[..cut]), "cut at {cut}");
        }
        assert!(matches!(decode(&jpeg[..jpeg.len() / 2], &ImageLimits::default()), Err(ImageError::Corrupt(_))));
    }

    /// Found by fuzzing (fuzz/, `image_intake` and `grayscale`): png 0.18.1
    /// panics building its palette table when PLTE is not whole RGB
    /// triples, which natively fails the request with a 500 and under
    /// WasmEdge (wasm32 panics abort) kills the service.
    #[test]
    fn a_png_palette_of_partial_rgb_entries_is_corrupt_not_a_panic() {
        // 1x1, 8-bit indexed, one pixel of index 0; the palette is 4 bytes.
        let mut png = png_start(1, 1, 8, 3);
        png.extend_from_slice(&png_chunk(b"PLTE", &[200, 10, 10, 99]));
        // zlib: one stored block holding the row (filter 0, index 0), then Adler-32.
        let idat = [0x78, 0x01, 0x01, 0x02, 0x00, 0xfd, 0xff, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01];
        png.extend_from_slice(&png_chunk(b"IDAT", &idat));
        png.extend_from_slice(&png_chunk(b"IEND", &[]));
        let err = decode(&png, &ImageLimits::default()).expect_err("refused");
        assert!(matches!(err, ImageError::Corrupt(_)), "{err:?}");
        assert_eq!(ApiError::from(err).status, StatusCode::BAD_REQUEST);

        // The same image with a whole palette entry decodes.
        let mut whole = png_start(1, 1, 8, 3);
        whole.extend_from_slice(&png_chunk(b"PLTE", &[200, 10, 10]));
        whole.extend_from_slice(&png_chunk(b"IDAT", &idat));
        whole.extend_from_slice(&png_chunk(b"IEND", &[]));
        let image = decode(&whole, &ImageLimits::default()).expect("decodes");
        assert_eq!(image.into_rgb8().as_raw().as_slice(), &[200, 10, 10]);
    }

    #[test]
    fn a_pngs_cost_is_its_decoded_size_at_its_real_depth() {
        let rgba16 = png_header(100, 10);
        assert_eq!(decode_cost(&rgba16, ImageFormat::Png, 100, 10), 100 * 10 * 8);
        let gray8 = png(100, 10);
        assert_eq!(decode_cost(&gray8, ImageFormat::Png, 100, 10), 100 * 10);
        // A palette expands to RGB, and to RGBA with tRNS before IDAT.
        let mut palette = png_start(4, 4, 8, 3);
        palette.extend_from_slice(&png_chunk(b"PLTE", &[0, 0, 0]));
        assert_eq!(PngLayout::read(&palette).map(|l| l.channels()), Some(3));
        palette.extend_from_slice(&png_chunk(b"tRNS", &[0]));
        palette.extend_from_slice(&png_chunk(b"IDAT", &[]));
        assert_eq!(PngLayout::read(&palette).map(|l| l.channels()), Some(4));
    }

    #[test]
    fn a_progressive_jpeg_costs_its_coefficients_too() {
        let fixture = |name: &str| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/images").join(name);
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        for (name, progressive) in [("jpeg_progressive.jpg", true), ("jpeg_420.jpg", false), ("jpeg_444.jpg", false)] {
            let bytes = fixture(name);
            let (format, w, h) = intake(&bytes, &ImageLimits::default()).expect("intake");
            let layout = JpegLayout::read(&bytes).expect("a frame header");
            assert_eq!(layout.multi_scan, progressive, "{name}");
            let output = u64::from(w) * u64::from(h) * u64::from(layout.output_channels());
            let cost = decode_cost(&bytes, format, w, h);
            if progressive {
                // Every component's blocks, 2 bytes a coefficient: at least
                // the luma plane's 2 bytes a pixel.
                assert!(cost >= output + 2 * u64::from(w) * u64::from(h), "{name}: {cost}");
            } else {
                assert_eq!(cost, output, "{name}");
            }
        }
        let l = JpegLayout { multi_scan: true, sampling: vec![(2, 2), (1, 1), (1, 1)] };
        // 4:2:0, 33x17: MCUs of 16x16, 3x2 of them; luma 48x32, chroma 24x16 each.
        assert_eq!(l.coefficient_bytes(33, 17), (48 * 32 + 2 * 24 * 16) * 2);
    }

    #[test]
    fn the_pixel_limit_fits_the_budget() {
        let limits = ImageLimits::fitting(152 << 20, 16 << 20, 16);
        assert_eq!(limits.max_pixels, (136u64 << 20) / 16);
        assert_eq!(ImageLimits::fitting(0, 16 << 20, 16), ImageLimits::default());
        assert_eq!(ImageLimits::fitting(u64::MAX, 0, 1).max_pixels, ImageLimits::default().max_pixels);
    }

    #[test]
    fn a_truncated_png_is_corrupt() {
        let bytes = png(64, 64);
        let cut = &bytes[..bytes.len() / 2];
        assert!(matches!(decode(cut, &ImageLimits::default()), Err(ImageError::Corrupt(_))));
    }
}

/// Images for the services' tests that the encoders at hand cannot make
/// (the feature `test-images`; never in a service binary).
#[cfg(feature = "test-images")]
pub mod test_images {
    /// An interlaced (Adam7) 8-bit RGBA PNG of `width` x `height` pixels:
    /// neither `image` nor `png` writes one. Filter 0, stored zlib blocks.
    pub fn interlaced_rgba_png(rgba: &[u8], width: u32, height: u32) -> Vec<u8> {
        let pixel = |x: u32, y: u32| {
            let at = (y as usize * width as usize + x as usize) * 4;
            &rgba[at..at + 4]
        };
        let mut raw = Vec::new();
        for (x0, y0, dx, dy) in
            [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        {
            if x0 >= width {
                continue;
            }
            for y in (y0..height).step_by(dy) {
                raw.push(0);
                for x in (x0..width).step_by(dx) {
                    raw.extend_from_slice(pixel(x, y));
                }
            }
        }
        let mut ihdr = [width.to_be_bytes(), height.to_be_bytes()].concat();
        ihdr.extend_from_slice(&[8, 6, 0, 0, 1]);
        let mut png = super::PNG_SIGNATURE.to_vec();
        for (kind, data) in [(&b"IHDR"[..], ihdr), (b"IDAT", stored_zlib(&raw)), (b"IEND", Vec::new())] {
            png.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
            let body = [kind, &data].concat();
            png.extend_from_slice(&body);
            png.extend_from_slice(&crc32(&body).to_be_bytes());
        }
        png
    }

    /// `data` as a zlib stream of stored (uncompressed) blocks.
    fn stored_zlib(data: &[u8]) -> Vec<u8> {
        let mut z = vec![0x78, 0x01];
        let mut blocks = data.chunks(65_535).peekable();
        if blocks.peek().is_none() {
            z.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        }
        while let Some(block) = blocks.next() {
            let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
            z.push(u8::from(blocks.peek().is_none()));
            z.extend_from_slice(&len.to_le_bytes());
            z.extend_from_slice(&(!len).to_le_bytes());
            z.extend_from_slice(block);
        }
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65_521;
            b = (b + a) % 65_521;
        }
        z.extend_from_slice(&((b << 16) | a).to_be_bytes());
        z
    }

    /// PNG's CRC-32 (ISO 3309), bit by bit: test images are small.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
}
