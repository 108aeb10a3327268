use zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&a[1]).unwrap();
    let mode = a[2].as_str();
    let mut s = 0usize;
    for _ in 0..a[3].parse::<usize>().unwrap() {
        match mode {
            "luma" => {
                let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::Luma).set_strict_mode(true);
                let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(&bytes[..]), opts);
                s += d.decode().unwrap().len();
            }
            _ => { s += image::load_from_memory(&bytes).unwrap().grayscale().as_bytes().len(); }
        }
    }
    println!("{s}");
}
