//! The grayscale service's PNG writer (Paeth filter + its own Huffman-only
//! DEFLATE) on arbitrary pixels, which a decoder would rarely produce:
//! whatever goes in must come back out of an independent PNG decoder.
#![no_main]

use image::{ColorType, ImageFormat};
use image_api_grayscale::{encode_png, LumaImage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // [alpha flag + width: 2 bytes][copies: 1 byte][rows...]. The rows are
    // stacked `copies % 64 + 1` times so that a few KiB of input (libFuzzer
    // keeps inputs that small for minutes) can span several 64 KiB DEFLATE
    // blocks; more copies made iterations too slow. Each copy's bytes are
    // remapped by an odd multiplier and an XOR of its index (a bijection),
    // so the blocks' statistics differ.
    let Some((&[a, b, copies], rows)) = data.split_first_chunk::<3>() else { return };
    let copies = copies % 64;
    let has_alpha = a & 0x80 != 0;
    let channels = if has_alpha { 2 } else { 1 };
    let width = u32::from(u16::from_be_bytes([a & 0x7f, b])) % 4096 + 1;
    let row = width as usize * channels;
    let rows = &rows[..rows.len() / row * row];
    if rows.is_empty() {
        return;
    }
    let pixels: Vec<u8> =
        (0..=copies).flat_map(|copy| rows.iter().map(move |&p| p.wrapping_mul(copy.wrapping_mul(2) | 1) ^ copy)).collect();
    let luma = LumaImage {
        width,
        height: (pixels.len() / row) as u32,
        has_alpha,
        pixels,
        source_format: ImageFormat::Png,
    };
    let png = encode_png(&luma).expect("well-formed pixels encode");
    let decoded = image::load_from_memory_with_format(&png, ImageFormat::Png)
        .unwrap_or_else(|e| panic!("our PNG does not decode: {e}"));
    assert_eq!((decoded.width(), decoded.height()), (luma.width, luma.height));
    assert_eq!(decoded.color(), if has_alpha { ColorType::La8 } else { ColorType::L8 });
    assert!(decoded.as_bytes() == luma.pixels.as_slice(), "pixels changed in the round trip");
});
