//! The grayscale service's whole request: body bytes to a grayscale PNG
//! (`image_api_grayscale::grayscale_png`, what its handler runs).
#![no_main]

use image::{ColorType, ImageFormat};
use image_api_grayscale::{decode_luma, grayscale_png};
use kit::ApiError;
use libfuzzer_sys::fuzz_target;
use services_fuzz::{assert_client_error, assert_within_limits, LIMITS};

fuzz_target!(|bytes: &[u8]| {
    match grayscale_png(bytes, &LIMITS) {
        // Includes GrayscaleError::Encode, a 500: our encoder must never
        // refuse what our decoder produced.
        Err(err) => assert_client_error(&ApiError::from(err)),
        Ok(out) => {
            assert_within_limits(out.width, out.height);
            // Our own PNG writer, read back by an independent decoder.
            let png = image::load_from_memory_with_format(&out.png, ImageFormat::Png)
                .unwrap_or_else(|e| panic!("our PNG does not decode: {e}"));
            assert_eq!((png.width(), png.height()), (out.width, out.height));
            let expected_color = if out.has_alpha { ColorType::La8 } else { ColorType::L8 };
            assert_eq!(png.color(), expected_color);
            // Same pixels as the decode step gave (pure, so it can be rerun).
            let luma = decode_luma(bytes, &LIMITS).expect("decoded once, decodes again");
            assert_eq!(luma.source_format, out.source_format);
            assert!(png.as_bytes() == luma.pixels.as_slice(), "the PNG's pixels differ from the decoded luma");
        }
    }
});
