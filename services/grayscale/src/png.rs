//! 8-bit grayscale (optionally with alpha) PNG writer: Paeth filter on every
//! row, one IDAT holding a Huffman-only zlib stream (see `deflate`).
//!
//! Why Paeth everywhere: on the shared photos, with Huffman-only coding,
//! Paeth alone came within 3 % of per-row adaptive selection (smaller on
//! cat_720p) at a fifth of the filtering work; Sub, Up and Avg were up to
//! 18 % larger, which would lose to the template's PNG on cat_720p.

use crate::deflate;

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
const PAETH: u8 = 4;

/// PNG bytes for `height` rows of `width` pixels, `channels` bytes each
/// (1 = gray, 2 = gray + alpha), row-major in `pixels`: [`PngWriter`] to
/// its end.
///
/// The caller guarantees `pixels.len() == width * height * channels` and
/// non-zero dimensions; `crate::encode_png` checks that.
pub fn encode(pixels: &[u8], width: u32, height: u32, channels: u8) -> Vec<u8> {
    let mut writer = PngWriter::new(pixels, width, height, channels);
    loop {
        if let Some(png) = writer.step() {
            return png;
        }
    }
}

/// The PNG written a DEFLATE block at a time ([`PngWriter::step`]), so that
/// the work can pause between blocks (grayscale's steps under WASI).
pub struct PngWriter<P: AsRef<[u8]>> {
    pixels: P,
    /// Bytes a row.
    row: usize,
    channels: u8,
    rows_per_block: usize,
    /// The next row to filter.
    next_row: usize,
    /// Where the IDAT chunk starts in the output (its length patched last).
    idat_at: usize,
    z: Option<deflate::ZlibWriter>,
    filtered: Vec<u8>,
}

impl<P: AsRef<[u8]>> PngWriter<P> {
    pub fn new(pixels: P, width: u32, height: u32, channels: u8) -> Self {
        let row = width as usize * usize::from(channels);
        // Filter a group of rows into a small buffer, then code it as one
        // DEFLATE block while it is still in cache: no image-sized
        // intermediate.
        let rows_per_block = (deflate::BLOCK / (row + 1)).max(1);
        // Photos code to roughly half their size; reserve that much once.
        let mut png = Vec::with_capacity(pixels.as_ref().len() / 2 + 1024);
        png.extend_from_slice(&SIGNATURE);
        let mut ihdr = [0u8; 13];
        ihdr[..4].copy_from_slice(&width.to_be_bytes());
        ihdr[4..8].copy_from_slice(&height.to_be_bytes());
        ihdr[8] = 8; // bit depth
        ihdr[9] = if channels == 2 { 4 } else { 0 }; // colour type: gray(+alpha)
                                                     // [10..13]: deflate, adaptive filtering method 0, no interlace
        chunk(&mut png, b"IHDR", |out| out.extend_from_slice(&ihdr));
        // One IDAT: written in place, so the compressed stream is never copied.
        let idat_at = png.len();
        png.extend_from_slice(&[0; 4]);
        png.extend_from_slice(b"IDAT");
        Self {
            pixels,
            row,
            channels,
            rows_per_block,
            next_row: 0,
            idat_at,
            z: Some(deflate::ZlibWriter::new(png)),
            filtered: Vec::with_capacity(rows_per_block * (row + 1)),
        }
    }

    /// Filters and codes the next block of rows; the PNG once the last is.
    pub fn step(&mut self) -> Option<Vec<u8>> {
        let pixels = self.pixels.as_ref();
        let rows = pixels.len() / self.row.max(1);
        let end = (self.next_row + self.rows_per_block).min(rows);
        self.filtered.clear();
        for y in self.next_row..end {
            let cur = &pixels[y * self.row..(y + 1) * self.row];
            // The row above the first is zeros (PNG's rule).
            let zero_row;
            let prev = if y == 0 {
                zero_row = vec![0u8; self.row];
                &zero_row[..]
            } else {
                &pixels[(y - 1) * self.row..y * self.row]
            };
            let start = self.filtered.len();
            self.filtered.resize(start + self.row + 1, PAETH);
            let out = &mut self.filtered[start + 1..];
            if self.channels == 2 {
                paeth_row::<2>(cur, prev, out);
            } else {
                paeth_row::<1>(cur, prev, out);
            }
        }
        self.next_row = end;
        let last = end >= rows;
        self.z.as_mut()?.block(&self.filtered, last);
        if !last {
            return None;
        }
        let mut png = self.z.take()?.into_inner();
        // Our largest image (16384², 2 channels, stored) stays far below 2^31.
        let len = (png.len() - self.idat_at - 8) as u32;
        png[self.idat_at..self.idat_at + 4].copy_from_slice(&len.to_be_bytes());
        let crc = crc32fast::hash(&png[self.idat_at + 4..]);
        png.extend_from_slice(&crc.to_be_bytes());
        chunk(&mut png, b"IEND", |_| {});
        Some(png)
    }
}

/// Append a chunk whose data `fill` writes; length and CRC are patched after.
fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], fill: impl FnOnce(&mut Vec<u8>)) {
    let len_at = png.len();
    png.extend_from_slice(&[0; 4]);
    png.extend_from_slice(kind);
    fill(png);
    // Our largest image (16384², 2 channels, stored) stays far below 2^31.
    let len = (png.len() - len_at - 8) as u32;
    png[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32fast::hash(&png[len_at + 4..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// Paeth-filter one row (`BPP` bytes a pixel) against the row above.
///
/// Encoding reads only original pixels, so unlike decoding there is no
/// dependency between neighbours: written branch-free over whole rows so the
/// compiler can vectorise it where the target has SIMD.
fn paeth_row<const BPP: usize>(cur: &[u8], prev: &[u8], out: &mut [u8]) {
    // The first pixel has no left neighbour: predictor is the byte above.
    for i in 0..BPP.min(cur.len()) {
        out[i] = cur[i].wrapping_sub(prev[i]);
    }
    if cur.len() <= BPP {
        return;
    }
    let left = &cur[..cur.len() - BPP];
    let up_left = &prev[..prev.len() - BPP];
    let up = &prev[BPP..];
    let here = &cur[BPP..];
    for ((((o, &x), &a), &b), &c) in out[BPP..].iter_mut().zip(here).zip(left).zip(up).zip(up_left) {
        *o = x.wrapping_sub(paeth(a, b, c));
    }
}

/// The PNG Paeth predictor (PNG spec 9.4), branch-free.
#[inline(always)]
fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let (a16, b16, c16) = (i16::from(a), i16::from(b), i16::from(c));
    let pa = (b16 - c16).abs(); // |p - a| with p = a + b - c
    let pb = (a16 - c16).abs(); // |p - b|
    let pc = (a16 + b16 - 2 * c16).abs(); // |p - c|
    let b_or_c = if pb <= pc { b } else { c };
    if pa <= pb && pa <= pc {
        a
    } else {
        b_or_c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straight from the spec, with branches, to check the branch-free one.
    fn paeth_reference(a: u8, b: u8, c: u8) -> u8 {
        let p = i32::from(a) + i32::from(b) - i32::from(c);
        let (pa, pb, pc) = ((p - i32::from(a)).abs(), (p - i32::from(b)).abs(), (p - i32::from(c)).abs());
        if pa <= pb && pa <= pc {
            a
        } else if pb <= pc {
            b
        } else {
            c
        }
    }

    #[test]
    fn paeth_matches_the_spec_everywhere() {
        for a in (0..=255u8).step_by(3) {
            for b in (0..=255u8).step_by(5) {
                for c in 0..=255u8 {
                    assert_eq!(paeth(a, b, c), paeth_reference(a, b, c), "{a} {b} {c}");
                }
            }
        }
    }

    #[test]
    fn gray_and_gray_alpha_roundtrip_through_the_png_crate() {
        for (w, h, ch) in [(1u32, 1u32, 1u8), (7, 5, 1), (300, 17, 1), (1, 9, 2), (33, 21, 2)] {
            let n = (w * h) as usize * usize::from(ch);
            let px: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8 ^ (i / 13) as u8).collect();
            let png = encode(&px, w, h, ch);
            let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png).expect("decodes");
            assert_eq!((img.width(), img.height()), (w, h));
            let got = if ch == 1 {
                img.as_luma8().expect("L8").as_raw().clone()
            } else {
                img.as_luma_alpha8().expect("La8").as_raw().clone()
            };
            assert_eq!(got, px, "{w}x{h}x{ch}");
        }
    }
}
