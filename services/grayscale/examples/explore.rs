use std::time::Instant;
use image::ImageFormat;
use std::io::Cursor;
use miniz_oxide::deflate::core::*;
use zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};

fn med<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut ts = vec![]; let mut last = None;
    for _ in 0..n { let t = Instant::now(); let r = f(); ts.push(t.elapsed().as_secs_f64()*1e3); last = Some(r); }
    ts.sort_by(|a,b| a.partial_cmp(b).unwrap());
    (ts[n/2], last.unwrap())
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let (a16,b16,c16) = (a as i16, b as i16, c as i16);
    let p = a16 + b16 - c16; let pa = (p-a16).abs(); let pb = (p-b16).abs(); let pc = (p-c16).abs();
    if pa <= pb && pa <= pc { a } else if pb <= pc { b } else { c }
}
fn filter_row(ft: u8, cur: &[u8], prev: &[u8], out: &mut [u8]) {
    let n = cur.len();
    match ft {
        0 => out.copy_from_slice(cur),
        1 => { out[0]=cur[0]; for i in 1..n { out[i]=cur[i].wrapping_sub(cur[i-1]); } }
        2 => { for i in 0..n { out[i]=cur[i].wrapping_sub(prev[i]); } }
        3 => { out[0]=cur[0].wrapping_sub(prev[0]/2); for i in 1..n { out[i]=cur[i].wrapping_sub(((cur[i-1] as u16 + prev[i] as u16)/2) as u8); } }
        _ => { out[0]=cur[0].wrapping_sub(prev[0]); for i in 1..n { out[i]=cur[i].wrapping_sub(paeth(cur[i-1],prev[i],prev[i-1])); } }
    }
}
fn sad(r: &[u8]) -> u64 { r.iter().map(|&b| (b as i8).unsigned_abs() as u64).sum() }
/// mode 0..=4 fixed, 5 adaptive
fn filter(img: &[u8], w: usize, h: usize, mode: u8) -> Vec<u8> {
    let zero = vec![0u8; w];
    let mut out = vec![0u8; (w+1)*h];
    let mut tmp: Vec<Vec<u8>> = (0..5).map(|_| vec![0u8; w]).collect();
    for y in 0..h {
        let cur = &img[y*w..(y+1)*w];
        let prev = if y==0 { &zero[..] } else { &img[(y-1)*w..y*w] };
        let o = &mut out[y*(w+1)..(y+1)*(w+1)];
        if mode < 5 { o[0]=mode; filter_row(mode, cur, prev, &mut o[1..]); }
        else {
            let mut best=0; let mut bs=u64::MAX;
            for f in 0..5u8 { filter_row(f, cur, prev, &mut tmp[f as usize]); let s = sad(&tmp[f as usize]); if s<bs {bs=s;best=f;} }
            o[0]=best; o[1..].copy_from_slice(&tmp[best as usize]);
        }
    }
    out
}
fn miniz(data: &[u8], level: i32, strat: CompressionStrategy) -> Vec<u8> {
    let flags = create_comp_flags_from_zip_params(level, 15, strat as i32);
    let mut d = CompressorOxide::new(flags);
    let mut out = Vec::with_capacity(data.len()/2);
    let (st, _) = compress_to_output(&mut d, data, TDEFLFlush::Finish, |b| { out.extend_from_slice(b); true });
    assert_eq!(st, TDEFLStatus::Done);
    out
}
fn fdef(data: &[u8]) -> Vec<u8> { fdeflate::compress_to_vec(data) }

fn main() {
    for name in ["hot_dog.jpg", "cat_720p.jpg", "grace_hopper.jpg"] {
        let bytes = std::fs::read(format!("/work/shared/images/{name}")).unwrap();
        let n = 15;
        let (t_dec, img) = med(n, || image::load_from_memory(&bytes).unwrap());
        let (t_gray, g) = med(n, || img.grayscale());
        let (t_png, png) = med(n, || { let mut v = Vec::new(); g.write_to(&mut Cursor::new(&mut v), ImageFormat::Png).unwrap(); v });
        let (t_b64, _) = med(n, || { use base64::Engine; base64::engine::general_purpose::STANDARD.encode(&png) });
        println!("{name}: {}x{} baseline decode {t_dec:.2} gray {t_gray:.2} png {t_png:.2} b64 {t_b64:.3} => total {:.2} ms, png {} B", img.width(), img.height(), t_dec+t_gray+t_png+t_b64, png.len());
        for unsafe_ in [true, false] {
            let (t, (l, w, h)) = med(n, || {
                let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::Luma).set_strict_mode(true).set_use_unsafe(unsafe_);
                let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(&bytes[..]), opts);
                let px = d.decode().unwrap();
                let (w,h) = d.dimensions().unwrap();
                (px, w, h)
            });
            println!("  zune luma (simd={unsafe_}) {t:.2} ms");
            if !unsafe_ { continue }
            let g8 = g.to_luma8();
            let mad: f64 = l.iter().zip(g8.as_raw()).map(|(a,b)| (*a as i32 - *b as i32).abs() as f64).sum::<f64>() / l.len() as f64;
            let maxd = l.iter().zip(g8.as_raw()).map(|(a,b)| (*a as i32 - *b as i32).abs()).max().unwrap();
            println!("  luma601 vs baseline: MAD {mad:.3} max {maxd}");
            for mode in 0..6u8 {
                let (tf, f) = med(n, || filter(&l, w, h, mode));
                let mut line = format!("  filter {mode} {tf:.2}ms:");
                for (lbl, lvl, st) in [("L1",1,CompressionStrategy::Default),("L2",2,CompressionStrategy::Default),("L3",3,CompressionStrategy::Default),("L6",6,CompressionStrategy::Default),("huff",1,CompressionStrategy::HuffmanOnly),("rle",1,CompressionStrategy::RLE)] {
                    let (tc, c) = med(5, || miniz(&f, lvl, st));
                    line += &format!(" {lbl} {} {tc:.2}ms |", c.len());
                }
                let (tc, c) = med(5, || fdef(&f));
                line += &format!(" fdef {} {tc:.2}ms", c.len());
                println!("{line}");
            }
        }
    }
}
