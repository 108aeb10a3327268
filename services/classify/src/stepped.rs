//! Preprocessing in steps: an upload to the model's input a slice at a
//! time ([`Preprocess::step`]), so that under WASI, where the one thread
//! runs it in place, the service can answer a probe or another connection
//! between slices (`kit::rt::cpu_steps`); natively the steps simply run one
//! after the other on the CPU pool. The bytes are those of
//! [`crate::preprocess::resize_like_pillow`] over a whole decode.
//!
//! A PNG is read a row at a time at 8 bits a sample (`kit::imaging::png_rows`)
//! and each row goes straight through the resize's horizontal pass: no
//! image-sized buffer at all, and a step every few rows. An interlaced PNG
//! arrives pass by pass, so its 8-bit frame is assembled first (still a
//! few rows a step). Other formats are decoded whole in one step by
//! `image` (zune-jpeg has no row API), then resized a few rows a step.
//!
//! A 16-bit PNG is taken at its high byte, where `image` rounds to the
//! nearest 8-bit level: the two can differ by one level.

use crate::preprocess::RowResize;
use crate::ClassifyError;
use image::ImageFormat;
use kit::imaging::{png_error, ImageError, ImageLimits};
use std::io::Cursor;
use std::ops::ControlFlow;

/// Source bytes a step goes through before it returns: rows of a 16384
/// pixel wide RGB image are 48 KiB, so about five such rows.
const STEP_BYTES: usize = 256 * 1024;

/// The model input for one upload, computed by [`Preprocess::step`] until
/// it breaks with the answer.
pub struct Preprocess<B: AsRef<[u8]>> {
    stage: Stage<B>,
    /// The model's input size.
    size: (u32, u32),
}

enum Stage<B: AsRef<[u8]>> {
    /// Nothing decoded yet.
    Start {
        bytes: B,
        format: ImageFormat,
        limits: ImageLimits,
    },
    /// A PNG, row after row into the resize.
    PngRows {
        reader: png::Reader<Cursor<B>>,
        samples: usize,
        resize: RowResize,
        rgb: Vec<u8>,
    },
    /// An interlaced PNG, its passes into an 8-bit frame.
    PngPasses {
        reader: png::Reader<Cursor<B>>,
        frame: Frame,
    },
    /// A whole decoded image, its rows into the resize.
    FrameRows {
        frame: Frame,
        next: usize,
        resize: RowResize,
        rgb: Vec<u8>,
    },
    Done,
}

/// Decoded pixels at 8 bits a sample, `samples` a pixel (1 to 4).
struct Frame {
    pixels: Vec<u8>,
    width: u32,
    height: u32,
    samples: usize,
}

impl Frame {
    fn stride(&self) -> usize {
        self.width as usize * self.samples
    }
}

impl<B: AsRef<[u8]>> Preprocess<B> {
    /// `bytes` have been through `kit::imaging::intake`, which found `format`.
    pub fn new(bytes: B, format: ImageFormat, limits: &ImageLimits, size: (u32, u32)) -> Self {
        Self { stage: Stage::Start { bytes, format, limits: *limits }, size }
    }

    /// One slice of the work: continue, or the model input (RGB8 at the
    /// model's size) or why there is none.
    pub fn step(&mut self) -> ControlFlow<Result<Vec<u8>, ClassifyError>> {
        match self.advance() {
            Ok(None) => ControlFlow::Continue(()),
            Ok(Some(input)) => ControlFlow::Break(Ok(input)),
            Err(e) => {
                self.stage = Stage::Done;
                ControlFlow::Break(Err(e))
            }
        }
    }

    /// All the steps at once.
    pub fn run(mut self) -> Result<Vec<u8>, ClassifyError> {
        loop {
            if let ControlFlow::Break(out) = self.step() {
                return out;
            }
        }
    }

    fn advance(&mut self) -> Result<Option<Vec<u8>>, ClassifyError> {
        let (width, height) = self.size;
        self.stage = match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Start { bytes, format: ImageFormat::Png, limits } => {
                let reader = kit::imaging::png_rows(Cursor::new(bytes), &limits)?;
                let (color, _) = reader.output_color_type();
                let (w, h, interlaced) = (reader.info().width, reader.info().height, reader.info().interlaced);
                let samples = color.samples();
                if interlaced {
                    let pixels = vec![0; w as usize * h as usize * samples];
                    Stage::PngPasses { reader, frame: Frame { pixels, width: w, height: h, samples } }
                } else {
                    let resize = RowResize::new(w, h, width, height);
                    Stage::PngRows { reader, samples, resize, rgb: Vec::new() }
                }
            }
            Stage::Start { bytes, format, limits } => {
                let image = kit::imaging::decode_checked(bytes.as_ref(), format, &limits)?.into_rgb8();
                let (w, h) = image.dimensions();
                let frame = Frame { pixels: image.into_raw(), width: w, height: h, samples: 3 };
                let resize = RowResize::new(w, h, width, height);
                Stage::FrameRows { frame, next: 0, resize, rgb: Vec::new() }
            }
            Stage::PngRows { mut reader, samples, mut resize, mut rgb } => {
                let mut read = 0;
                while read < STEP_BYTES && resize.rows_left() > 0 {
                    let Some(row) = reader.next_row().map_err(png_error)? else {
                        return Err(corrupt("the PNG ends before its last row"));
                    };
                    read += row.data().len();
                    resize.push_row(as_rgb(row.data(), samples, &mut rgb));
                }
                if resize.rows_left() == 0 {
                    return Ok(Some(resize.finish()));
                }
                Stage::PngRows { reader, samples, resize, rgb }
            }
            Stage::PngPasses { mut reader, mut frame } => {
                let (stride, bits) = (frame.stride(), u8::try_from(frame.samples * 8).unwrap_or(32));
                let mut read = 0;
                loop {
                    if read >= STEP_BYTES {
                        break Stage::PngPasses { reader, frame };
                    }
                    let Some(row) = reader.next_interlaced_row().map_err(png_error)? else {
                        let resize = RowResize::new(frame.width, frame.height, width, height);
                        break Stage::FrameRows { frame, next: 0, resize, rgb: Vec::new() };
                    };
                    read += row.data().len().max(1);
                    if let png::InterlaceInfo::Adam7(pass) = row.interlace() {
                        png::expand_interlaced_row(&mut frame.pixels, stride, row.data(), pass, bits);
                    }
                }
            }
            Stage::FrameRows { frame, mut next, mut resize, mut rgb } => {
                let stride = frame.stride().max(1);
                let mut read = 0;
                while read < STEP_BYTES && resize.rows_left() > 0 {
                    let Some(row) = frame.pixels.get(next * stride..(next + 1) * stride) else {
                        return Err(corrupt("the decoded image has fewer rows than its header says"));
                    };
                    resize.push_row(as_rgb(row, frame.samples, &mut rgb));
                    (next, read) = (next + 1, read + stride);
                }
                if resize.rows_left() == 0 {
                    return Ok(Some(resize.finish()));
                }
                Stage::FrameRows { frame, next, resize, rgb }
            }
            Stage::Done => return Err(ClassifyError::Inference("preprocessing stepped after its end".into())),
        };
        Ok(None)
    }
}

fn corrupt(why: &str) -> ClassifyError {
    ClassifyError::Image(ImageError::Corrupt(why.into()))
}

/// An 8-bit row of `samples` a pixel as RGB8, as `image`'s `into_rgb8`
/// makes it: gray repeated, alpha dropped. RGB is the row itself.
fn as_rgb<'a>(row: &'a [u8], samples: usize, rgb: &'a mut Vec<u8>) -> &'a [u8] {
    if samples == 3 {
        return row;
    }
    rgb.clear();
    match samples {
        1 => rgb.extend(row.iter().flat_map(|&g| [g, g, g])),
        2 => rgb.extend(row.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]])),
        _ => rgb.extend(row.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]])),
    }
    rgb
}

/// What [`Preprocess`] holds at its peak beside the body, from the header
/// (through `kit::imaging::intake`): for a PNG, png's rows at full depth
/// (the current and previous, for unfiltering) and one RGB row, or for an
/// interlaced one its 8-bit frame; otherwise what `image` holds for a whole
/// decode (`kit::imaging::decode_cost`) and the RGB8 copy. Then the
/// resize's rows and the model input (with a float copy, for tract).
pub fn decode_cost(bytes: &[u8], format: ImageFormat, width: u32, height: u32, input: (u32, u32)) -> u64 {
    let pixels = u64::from(width) * u64::from(height);
    let decoder = match (format, kit::imaging::PngLayout::read(bytes)) {
        (ImageFormat::Png, Some(png)) if png.interlaced => pixels * png.channels() + u64::from(width) * 8 * 3,
        (ImageFormat::Png, Some(png)) => u64::from(width) * (2 * png.decoded_bytes_per_pixel() + 4 + 3),
        _ => kit::imaging::decode_cost(bytes, format, width, height) + pixels * 3,
    };
    let (in_w, in_h) = (u64::from(input.0), u64::from(input.1));
    decoder + RowResize::held_bytes(width, height, input.0, input.1) + in_w * in_h * 3 * 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::resize_like_pillow;
    use image::{DynamicImage, ImageBuffer, Rgb, Rgba};

    fn png(image: &DynamicImage, interlaced: bool) -> Vec<u8> {
        if !interlaced {
            let mut out = Vec::new();
            image.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).expect("encode");
            return out;
        }
        let rgba = image.to_rgba8();
        kit::imaging::test_images::interlaced_rgba_png(rgba.as_raw(), rgba.width(), rgba.height())
    }

    fn stepped(bytes: &[u8], size: (u32, u32)) -> (Result<Vec<u8>, ClassifyError>, usize) {
        let (format, _, _) = kit::imaging::intake(bytes, &ImageLimits::default()).expect("intake");
        let mut p = Preprocess::new(bytes, format, &ImageLimits::default(), size);
        let mut steps = 1;
        loop {
            match p.step() {
                ControlFlow::Break(out) => return (out, steps),
                ControlFlow::Continue(()) => steps += 1,
            }
        }
    }

    fn gradient(width: u32, height: u32) -> image::RgbImage {
        ImageBuffer::from_fn(width, height, |x, y| {
            Rgb([(x * 7 % 256) as u8, (y * 13 % 256) as u8, ((x ^ y) % 256) as u8])
        })
    }

    #[test]
    fn rows_give_the_bytes_of_a_whole_resize_for_every_png_kind() {
        let rgb = gradient(900, 700);
        let expected = resize_like_pillow(&rgb, 224, 224);
        for interlaced in [false, true] {
            let (out, steps) = stepped(&png(&DynamicImage::ImageRgb8(rgb.clone()), interlaced), (224, 224));
            assert_eq!(out.expect("decodes"), expected, "interlaced {interlaced}");
            assert!(steps > 2, "{steps} steps: a large PNG is not one slice");
        }
        // Gray, gray + alpha and RGBA become RGB as image's into_rgb8 does.
        let gray = DynamicImage::ImageRgb8(rgb.clone()).into_luma8();
        let rgba = ImageBuffer::from_fn(300, 200, |x, y| Rgba([x as u8, y as u8, 9, (x + y) as u8]));
        for image in [
            DynamicImage::ImageLuma8(gray.clone()),
            DynamicImage::ImageLumaA8(DynamicImage::ImageLuma8(gray).into_luma_alpha8()),
            DynamicImage::ImageRgba8(rgba),
        ] {
            let expected = resize_like_pillow(&image.to_rgb8(), 224, 224);
            assert_eq!(stepped(&png(&image, false), (224, 224)).0.expect("decodes"), expected, "{:?}", image.color());
        }
    }

    #[test]
    fn a_jpeg_is_decoded_whole_then_resized_in_steps() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images/cat_720p.jpg");
        let bytes = std::fs::read(path).expect("photo");
        let whole = kit::imaging::decode(&bytes, &ImageLimits::default()).expect("decode").into_rgb8();
        let (out, steps) = stepped(&bytes, (224, 224));
        assert_eq!(out.expect("decodes"), resize_like_pillow(&whole, 224, 224));
        assert!(steps > 2, "{steps} steps");
    }

    #[test]
    fn a_png_cut_short_is_an_image_error() {
        let bytes = png(&DynamicImage::ImageRgb8(gradient(400, 300)), false);
        // Intake accepts it (PNG has no end marker to check); the rows run out.
        let cut = &bytes[..bytes.len() / 2];
        let mut p = Preprocess::new(cut, ImageFormat::Png, &ImageLimits::default(), (224, 224));
        let err = loop {
            if let ControlFlow::Break(out) = p.step() {
                break out.expect_err("a cut PNG");
            }
        };
        assert!(matches!(err, ClassifyError::Image(ImageError::Corrupt(_))), "{err}");
    }
}
