//! The grayscale work in steps ([`Grayscale::step`]), so that under WASI,
//! where the one thread runs it in place, the service answers a probe or
//! another connection between them (`kit::rt::cpu_steps`); natively the
//! steps run one after the other on the CPU pool. A PNG is decoded a batch
//! of rows a step ([`LumaRows`]); other formats in one step (zune-jpeg and
//! `image` have no row API). The answer is then written a DEFLATE block a
//! step ([`PngWriter`]). The bytes are those of the whole pipeline: it is
//! this, run to its end.

use crate::png::PngWriter;
use crate::png_luma::LumaRows;
use crate::{GrayPng, GrayscaleError, LumaImage};
use image::ImageFormat;
use kit::imaging::ImageLimits;
use std::ops::ControlFlow;
use tracing::Span;

/// One upload's grayscale PNG, computed by [`Grayscale::step`] until it
/// breaks with the answer.
pub struct Grayscale<B: AsRef<[u8]>> {
    stage: Stage<B>,
    /// Spans for traces: "grayscale" around the work; "decode" takes the
    /// bytes to luma (a JPEG is decoded straight to Y, no colour step),
    /// "encode" writes the PNG. Entered for each step.
    work: Span,
    phase: Span,
}

enum Stage<B: AsRef<[u8]>> {
    Start {
        bytes: B,
        checked: (ImageFormat, u32, u32),
        limits: ImageLimits,
    },
    /// Boxed: png's reader is most of a kilobyte, the other stages small.
    PngRows {
        rows: Box<LumaRows<B>>,
        width: u32,
        height: u32,
    },
    Encode {
        writer: PngWriter<Vec<u8>>,
        width: u32,
        height: u32,
        has_alpha: bool,
        format: ImageFormat,
    },
    Done,
}

impl<B: AsRef<[u8]>> Grayscale<B> {
    /// `bytes` have been through `kit::imaging::intake`, which found `checked`
    /// (format, width, height).
    pub fn new(bytes: B, checked: (ImageFormat, u32, u32), limits: &ImageLimits) -> Self {
        let work = tracing::info_span!("grayscale", input_bytes = bytes.as_ref().len());
        let phase = tracing::info_span!(parent: &work, "decode");
        Self { stage: Stage::Start { bytes, checked, limits: *limits }, work, phase }
    }

    /// One slice of the work: continue, or the answer.
    pub fn step(&mut self) -> ControlFlow<Result<GrayPng, GrayscaleError>> {
        let (work, phase) = (self.work.clone(), self.phase.clone());
        let advanced = work.in_scope(|| phase.in_scope(|| self.advance()));
        match advanced {
            Ok(None) => ControlFlow::Continue(()),
            Ok(Some(png)) => ControlFlow::Break(Ok(png)),
            Err(e) => {
                self.stage = Stage::Done;
                ControlFlow::Break(Err(e))
            }
        }
    }

    /// All the steps at once.
    pub fn run(mut self) -> Result<GrayPng, GrayscaleError> {
        loop {
            if let ControlFlow::Break(out) = self.step() {
                return out;
            }
        }
    }

    fn advance(&mut self) -> Result<Option<GrayPng>, GrayscaleError> {
        self.stage = match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Start { bytes, checked: (ImageFormat::Png, width, height), limits } => {
                Stage::PngRows { rows: Box::new(LumaRows::new(bytes, &limits)?), width, height }
            }
            Stage::Start { bytes, checked, limits } => {
                let luma = crate::decode_luma_checked(bytes.as_ref(), checked, &limits)?;
                self.encode(luma)?
            }
            Stage::PngRows { mut rows, width, height } => match rows.step()? {
                None => Stage::PngRows { rows, width, height },
                Some((has_alpha, pixels)) => {
                    self.encode(crate::luma_image(width, height, has_alpha, pixels, ImageFormat::Png)?)?
                }
            },
            Stage::Encode { mut writer, width, height, has_alpha, format } => match writer.step() {
                None => Stage::Encode { writer, width, height, has_alpha, format },
                Some(png) => return Ok(Some(GrayPng { png, width, height, has_alpha, source_format: format })),
            },
            Stage::Done => return Err(GrayscaleError::Encode("the work stepped after its end".into())),
        };
        Ok(None)
    }

    /// From the luma to writing it: the "encode" span from here on.
    fn encode(&mut self, luma: LumaImage) -> Result<Stage<B>, GrayscaleError> {
        crate::check_luma(&luma)?;
        self.phase = tracing::info_span!(parent: &self.work, "encode", width = luma.width, height = luma.height);
        let (width, height, has_alpha, format, channels) =
            (luma.width, luma.height, luma.has_alpha, luma.source_format, luma.channels());
        Ok(Stage::Encode {
            writer: PngWriter::new(luma.pixels, width, height, channels),
            width,
            height,
            has_alpha,
            format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, Rgba, RgbaImage};

    fn steps_of(bytes: &[u8]) -> (Result<GrayPng, GrayscaleError>, usize) {
        let checked = kit::imaging::intake(bytes, &ImageLimits::default()).expect("intake");
        let mut work = Grayscale::new(bytes, checked, &ImageLimits::default());
        let mut steps = 1;
        loop {
            match work.step() {
                ControlFlow::Break(out) => return (out, steps),
                ControlFlow::Continue(()) => steps += 1,
            }
        }
    }

    #[test]
    fn an_interlaced_png_gives_the_same_answer_as_its_plain_twin() {
        // Some pixels translucent, so the answer keeps alpha.
        let rgba =
            RgbaImage::from_fn(1100, 700, |x, y| Rgba([(x * 3) as u8, (y * 5) as u8, (x ^ y) as u8, (x + y) as u8]));
        let plain = crate::png_of(&DynamicImage::ImageRgba8(rgba.clone()));
        let interlaced = kit::imaging::test_images::interlaced_rgba_png(rgba.as_raw(), 1100, 700);
        let (from_plain, plain_steps) = steps_of(&plain);
        let (from_interlaced, interlaced_steps) = steps_of(&interlaced);
        let from_plain = from_plain.expect("plain decodes");
        assert!(from_plain.has_alpha);
        assert_eq!(from_interlaced.expect("interlaced decodes"), from_plain);
        // 3 MB of RGBA rows: several decode steps, then encode steps.
        assert!(plain_steps > 4 && interlaced_steps > 4, "{plain_steps} and {interlaced_steps} steps");
    }

    #[test]
    fn a_jpeg_is_one_decode_step_then_encode_steps() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images/cat_720p.jpg");
        let bytes = std::fs::read(path).expect("photo");
        let (out, steps) = steps_of(&bytes);
        let out = out.expect("decodes");
        assert_eq!((out.width, out.height, out.source_format), (1280, 720, ImageFormat::Jpeg));
        // 1280 x 720 luma in blocks of 64 KiB of filtered rows.
        assert!(steps > 10, "{steps} steps");
    }

    #[test]
    fn a_png_cut_short_is_an_image_error_and_the_work_ends() {
        let rgba = RgbaImage::from_fn(600, 400, |x, y| Rgba([x as u8, y as u8, 7, 200]));
        let bytes = crate::png_of(&DynamicImage::ImageRgba8(rgba));
        let cut = &bytes[..bytes.len() / 2];
        let mut work = Grayscale::new(cut, (ImageFormat::Png, 600, 400), &ImageLimits::default());
        let err = loop {
            if let ControlFlow::Break(out) = work.step() {
                break out.expect_err("a cut PNG");
            }
        };
        assert!(matches!(err, GrayscaleError::Image(_)), "{err}");
        assert!(matches!(work.step(), ControlFlow::Break(Err(_))), "stepping past the end is an error, not a panic");
    }
}
