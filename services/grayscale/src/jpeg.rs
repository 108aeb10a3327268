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
//! a truncated upload is missing grey (128) and reports success. Strict mode
//! turns that into an error, but zune-jpeg only checks for overread at the
//! start of each MCU row, so a cut inside the last row still "succeeds";
//! `reaches_end_of_image` closes that gap by walking the marker structure.

use kit::imaging::{ImageError, ImageLimits};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// Luma pixels of a JPEG whose dimensions the caller has already checked.
pub fn decode_luma(bytes: &[u8], limits: &ImageLimits) -> Result<Vec<u8>, ImageError> {
    if !reaches_end_of_image(bytes) {
        return Err(ImageError::Corrupt(
            "the JPEG data stops before its end-of-image marker (truncated?)".into(),
        ));
    }
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
            let mut decoder = JpegDecoder::new_with_options(
                ZCursor::new(bytes),
                options.jpeg_set_out_colorspace(ColorSpace::RGB),
            );
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

/// Whether the marker structure of `bytes` runs from SOI to an EOI marker.
///
/// Segments are skipped by their declared length, entropy-coded data by
/// looking for the next marker (0xFF not followed by a stuffed 0x00 or a
/// restart marker). Data after EOI is ignored, as decoders do. This does not
/// validate the contents; the decoder does that.
pub fn reaches_end_of_image(bytes: &[u8]) -> bool {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return false;
    }
    let mut i = 2;
    let mut in_scan = false;
    loop {
        if in_scan {
            // Entropy-coded data: skip to the next real marker.
            match next_marker(bytes, i) {
                Some(at) => {
                    i = at;
                    in_scan = false;
                }
                None => return false,
            }
        }
        // Between segments: a marker, possibly after 0xFF fill bytes.
        // Lenient about stray bytes, like the decoder: search for 0xFF.
        let Some(ff) = memchr::memchr(0xFF, &bytes[i..]) else { return false };
        i += ff;
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else { return false };
        i += 1;
        match marker {
            0xD9 => return true, // EOI
            0x00 | 0x01 | 0xD0..=0xD7 => {} // no payload
            _ => {
                let Some(len) = bytes.get(i..i + 2) else { return false };
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                if len < 2 || i + len > bytes.len() {
                    return false;
                }
                i += len;
                in_scan = marker == 0xDA; // SOS: entropy data follows
            }
        }
    }
}

/// Index of the 0xFF of the next marker at or after `from` in entropy-coded
/// data, or `None` if the data ends first.
fn next_marker(bytes: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + memchr::memchr(0xFF, &bytes[from..])?;
        match bytes.get(at + 1)? {
            // Stuffed zero, restart marker, or fill byte: still in the scan.
            0x00 | 0xD0..=0xD7 => from = at + 2,
            0xFF => from = at + 1,
            _ => return Some(at),
        }
    }
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

    #[test]
    fn marker_walk_accepts_complete_and_refuses_cut_streams() {
        // SOI, APP0 (len 4), SOS (len 3), entropy data with stuffing and
        // a restart marker, EOI, then trailing junk.
        let ok = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, 0xFF, 0xDA, 0x00, 0x03, 0x01, 0x12,
            0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xD9, 0x00, 0x42,
        ];
        assert!(reaches_end_of_image(&ok));
        for cut in 0..22 {
            assert!(!reaches_end_of_image(&ok[..cut]), "cut at {cut}");
        }
        // A segment that claims more bytes than there are.
        assert!(!reaches_end_of_image(&[0xFF, 0xD8, 0xFF, 0xE1, 0x10, 0x00, 0xFF, 0xD9]));
    }
}
