//! The grayscale service's PNG writer (Paeth filter + its own Huffman-only
//! DEFLATE) on arbitrary pixels, which a decoder would rarely produce:
//! whatever goes in must come back out of an independent PNG decoder.
#![no_main]

use image::{ColorType, ImageFormat};
use image_api_grayscale::{encode_png, LumaImage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // [channels-and-width: 2 bytes][pixels...]; height is what fits.
    let Some((&[a, b], pixels)) = data.split_first_chunk::<2>() else { return };
    let has_alpha = a & 0x80 != 0;
    let channels = if has_alpha { 2 } else { 1 };
    let width = u32::from(u16::from_be_bytes([a & 0x7f, b])) % 4096 + 1;
    let row = width as usize * channels;
    let height = pixels.len() / row;
    if height == 0 {
        return;
    }
    let luma = LumaImage {
        width,
        height: height as u32,
        has_alpha,
        pixels: pixels[..row * height].to_vec(),
        source_format: ImageFormat::Png,
    };
    let png = encode_png(&luma).expect("well-formed pixels encode");
    let decoded = image::load_from_memory_with_format(&png, ImageFormat::Png)
        .unwrap_or_else(|e| panic!("our PNG does not decode: {e}"));
    assert_eq!((decoded.width(), decoded.height()), (luma.width, luma.height));
    assert_eq!(decoded.color(), if has_alpha { ColorType::La8 } else { ColorType::L8 });
    assert!(decoded.as_bytes() == luma.pixels.as_slice(), "pixels changed in the round trip");
});
