fn main() {
    let a: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&a[1]).unwrap();
    let limits = kit::imaging::ImageLimits::default();
    let luma = image_api_grayscale::decode_luma(&bytes, &limits).unwrap();
    let mut s = 0usize;
    for _ in 0..a[3].parse::<usize>().unwrap() {
        match a[2].as_str() {
            "enc" => s += image_api_grayscale::encode_png(&luma).unwrap().len(),
            _ => s += image_api_grayscale::decode_luma(&bytes, &limits).unwrap().pixels.len(),
        }
    }
    println!("{s}");
}
