//! A zlib stream of Huffman-only DEFLATE blocks, tuned for PNG-filtered photos.
//!
//! Why not a general compressor: after the Paeth filter a photo's residuals
//! are close to noise around zero, so LZ77 matching finds almost nothing and
//! costs most of a general compressor's time. Measured on the shared photos'
//! Paeth-filtered rows, Huffman-only coding was *smaller* than zlib level 6
//! (miniz_oxide; cat_720p 400.6 KB vs 408.3 KB, hot_dog 81 KB vs 91 KB) at a
//! small fraction of its time. `fdeflate` (behind the `image` crate's default
//! PNG encoder) is about as fast as this, but with one fixed table it coded
//! the same rows 0.5-5 % larger.
//!
//! Every block gets its own code and falls back to stored blocks if coding
//! would not pay. Pure integer code: the same bytes on every target.

/// Bytes of filtered data per DEFLATE block. One table for the whole image
/// coded cat_720p 3.7 % larger (its statistics change across the frame);
/// 16-64 KiB blocks were within 0.3 % of each other on the set, and the
/// largest has the fewest ~150-byte headers and fits in cache between
/// filtering and coding.
pub const BLOCK: usize = STORED_MAX;
/// DEFLATE's longest literal/length code. (Capping at 12 to put four codes
/// in one buffer step instead of three measured within noise in speed and
/// 0.3 % larger on the photos.)
const MAX_LIT_BITS: u8 = 15;
/// DEFLATE's longest code-length code.
const MAX_CL_BITS: u8 = 7;
/// Literals 0..=255 plus end-of-block; no length symbols are ever used.
const NUM_LIT: usize = 257;
const END_OF_BLOCK: usize = 256;
/// Order in which code-length code lengths are sent (RFC 1951, 3.2.7).
const CL_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
/// Largest stored block.
const STORED_MAX: usize = 65_535;

/// A zlib stream being written block by block at the end of a byte vector
/// it owns until [`ZlibWriter::into_inner`] (so the writing can pause
/// between blocks).
pub struct ZlibWriter {
    bits: BitWriter,
    adler: simd_adler32::Adler32,
}

impl ZlibWriter {
    pub fn new(mut out: Vec<u8>) -> Self {
        // CMF 0x78 = deflate with a 32 KiB window; FLG 0x01 makes the check
        // (0x7801 % 31 == 0) and says "fastest", which is true.
        out.extend_from_slice(&[0x78, 0x01]);
        Self { bits: BitWriter::new(out), adler: simd_adler32::Adler32::new() }
    }

    /// The vector, with the stream as far as written (whole once the last
    /// block was).
    pub fn into_inner(self) -> Vec<u8> {
        self.bits.out
    }

    /// Compress `data` as one block (more if it must be stored); `last`
    /// closes the stream. Call with `last` exactly once, at the end.
    pub fn block(&mut self, data: &[u8], last: bool) {
        self.adler.write(data);
        if data.is_empty() {
            // An empty fixed block: 3 header bits + the 7-bit EOB code 0.
            self.bits.put(u64::from(last) | 0b010, 3);
            self.bits.put(0, 7);
        } else {
            write_block(&mut self.bits, data, last);
        }
        if last {
            self.bits.align();
            let adler = self.adler.finish();
            self.bits.out.extend_from_slice(&adler.to_be_bytes());
        }
    }
}

/// `data` as a complete zlib stream, appended to `out`, in blocks of [`BLOCK`].
#[cfg(test)]
pub fn zlib_compress(data: &[u8], out: &mut Vec<u8>) {
    let mut z = ZlibWriter::new(std::mem::take(out));
    let mut blocks = data.chunks(BLOCK).peekable();
    if blocks.peek().is_none() {
        z.block(&[], true);
    }
    while let Some(block) = blocks.next() {
        z.block(block, blocks.peek().is_none());
    }
    *out = z.into_inner();
}

/// One dynamic Huffman block for `block`, or stored blocks if that is smaller.
fn write_block(w: &mut BitWriter, block: &[u8], last: bool) {
    let freqs = histogram(block);
    let lit_lens = code_lengths(&freqs, MAX_LIT_BITS);
    let header = DynamicHeader::new(&lit_lens);
    let coded_bits: u64 =
        freqs.iter().zip(&lit_lens).map(|(&f, &l)| u64::from(f) * u64::from(l)).sum::<u64>() + header.bits();
    // A stored block costs 3 header bits, padding to a byte, then LEN/NLEN.
    let stored_bits = 8 * (block.len() as u64 + 5) + 7;
    if coded_bits >= stored_bits {
        write_stored(w, block, last);
        return;
    }
    w.put(u64::from(last), 1);
    w.put(0b10, 2);
    header.write(w);
    let codes = canonical_codes(&lit_lens);
    // Packed as (code << 8 | length) so the hot loop does one load a byte.
    let mut table = [0u32; 256];
    for (t, (&c, &l)) in table.iter_mut().zip(codes.iter().zip(&lit_lens)) {
        *t = (u32::from(c) << 8) | u32::from(l);
    }
    w.put_literals(block, &table);
    w.put(u64::from(codes[END_OF_BLOCK]), u32::from(lit_lens[END_OF_BLOCK]));
}

fn write_stored(w: &mut BitWriter, block: &[u8], last: bool) {
    let mut parts = block.chunks(STORED_MAX).peekable();
    while let Some(part) = parts.next() {
        let final_part = last && parts.peek().is_none();
        w.put(u64::from(final_part), 1);
        w.put(0b00, 2);
        w.align();
        // Chunks of STORED_MAX bytes or fewer always fit in u16.
        let len = part.len() as u16;
        w.put(u64::from(len), 16);
        w.put(u64::from(!len), 16);
        w.put_bytes(part);
    }
}

/// Literal frequencies of `block`, with one end-of-block.
fn histogram(block: &[u8]) -> [u32; NUM_LIT] {
    // Four tables so consecutive equal bytes do not serialise on one counter.
    let mut h = [[0u32; 256]; 4];
    let mut quads = block.chunks_exact(4);
    for q in &mut quads {
        h[0][usize::from(q[0])] += 1;
        h[1][usize::from(q[1])] += 1;
        h[2][usize::from(q[2])] += 1;
        h[3][usize::from(q[3])] += 1;
    }
    for &b in quads.remainder() {
        h[0][usize::from(b)] += 1;
    }
    let mut freqs = [0u32; NUM_LIT];
    for (i, f) in freqs.iter_mut().take(256).enumerate() {
        *f = h[0][i] + h[1][i] + h[2][i] + h[3][i];
    }
    freqs[END_OF_BLOCK] = 1;
    freqs
}

/// Huffman code lengths for `freqs`, none longer than `max_bits`.
///
/// Plain Huffman; if the tree is too deep (rare with 15 bits: it needs
/// Fibonacci-like counts), frequencies are halved, kept non-zero, and the
/// tree rebuilt, which flattens it within a few rounds. (Tried the
/// clamp-and-repair of miniz/zlib instead: it coded the photos 0.2 % larger
/// when it had to act.) Ties break by symbol, so the result is deterministic.
/// A lone used symbol gets a partner, as zlib does, so every code is complete.
pub(crate) fn code_lengths(freqs: &[u32], max_bits: u8) -> Vec<u8> {
    let mut f: Vec<u32> = freqs.to_vec();
    let used = f.iter().filter(|&&x| x > 0).count();
    if used < 2 {
        for x in f.iter_mut().filter(|x| **x == 0).take(2 - used) {
            *x = 1;
        }
    }
    loop {
        let lens = huffman_lengths(&f);
        if lens.iter().all(|&l| l <= max_bits) {
            return lens;
        }
        for x in f.iter_mut().filter(|x| **x > 0) {
            *x = (*x).div_ceil(2);
        }
    }
}

/// Unlimited Huffman code lengths (0 for unused symbols), two-queue method.
fn huffman_lengths(freqs: &[u32]) -> Vec<u8> {
    let mut leaves: Vec<(u64, usize)> =
        freqs.iter().enumerate().filter(|(_, &f)| f > 0).map(|(s, &f)| (u64::from(f), s)).collect();
    leaves.sort_unstable();
    let n = leaves.len();
    let mut lens = vec![0u8; freqs.len()];
    if n == 1 {
        lens[leaves[0].1] = 1;
        return lens;
    }
    // Nodes 0..n are leaves, n.. are internal, created in nondecreasing weight.
    let mut weight: Vec<u64> = leaves.iter().map(|l| l.0).collect();
    let mut parent = vec![0usize; 2 * n - 1];
    let (mut next_leaf, mut next_node) = (0usize, n);
    for new in n..2 * n - 1 {
        let mut pick = |weight: &Vec<u64>| {
            let take_leaf = next_leaf < n && (next_node >= new || weight[next_leaf] <= weight[next_node]);
            if take_leaf {
                next_leaf += 1;
                next_leaf - 1
            } else {
                next_node += 1;
                next_node - 1
            }
        };
        let a = pick(&weight);
        let b = pick(&weight);
        weight.push(weight[a] + weight[b]);
        parent[a] = new;
        parent[b] = new;
    }
    // Depths top-down: the root is the last node, parents come after children.
    let mut depth = vec![0u8; 2 * n - 1];
    for node in (0..2 * n - 2).rev() {
        depth[node] = depth[parent[node]].saturating_add(1);
    }
    for (i, &(_, sym)) in leaves.iter().enumerate() {
        lens[sym] = depth[i];
    }
    lens
}

/// Canonical codes for `lens` (RFC 1951, 3.2.2), bit-reversed because
/// DEFLATE sends Huffman codes most significant bit first into an LSB-first stream.
pub(crate) fn canonical_codes(lens: &[u8]) -> Vec<u16> {
    let mut count = [0u16; 16];
    for &l in lens {
        count[usize::from(l)] += 1;
    }
    count[0] = 0;
    let mut next = [0u16; 16];
    let mut code = 0u16;
    for bits in 1..16 {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
    }
    lens.iter()
        .map(|&l| {
            if l == 0 {
                return 0;
            }
            let c = next[usize::from(l)];
            next[usize::from(l)] += 1;
            c.reverse_bits() >> (16 - l)
        })
        .collect()
}

/// The header of a dynamic block whose literal code is `lit_lens` and whose
/// distance code is never used.
struct DynamicHeader {
    /// Run-length coded code lengths: (symbol, extra bits value, extra bit count).
    rle: Vec<(u8, u8, u8)>,
    cl_lens: Vec<u8>,
    cl_codes: Vec<u16>,
    /// Code-length code lengths sent (HCLEN + 4).
    num_cl: usize,
}

impl DynamicHeader {
    fn new(lit_lens: &[u8]) -> Self {
        // Two distance codes of one bit each, never used: a complete code,
        // which every inflater accepts (zlib's own encoder does the same).
        let mut all = lit_lens.to_vec();
        all.extend_from_slice(&[1, 1]);
        let rle = rle_lengths(&all);
        let mut cl_freqs = [0u32; 19];
        for &(sym, _, _) in &rle {
            cl_freqs[usize::from(sym)] += 1;
        }
        let cl_lens = code_lengths(&cl_freqs, MAX_CL_BITS);
        let cl_codes = canonical_codes(&cl_lens);
        let num_cl = CL_ORDER.iter().rposition(|&s| cl_lens[s] != 0).map_or(4, |p| (p + 1).max(4));
        Self { rle, cl_lens, cl_codes, num_cl }
    }

    fn bits(&self) -> u64 {
        let rle: u64 =
            self.rle.iter().map(|&(s, _, extra)| u64::from(self.cl_lens[usize::from(s)]) + u64::from(extra)).sum();
        3 + 5 + 5 + 4 + 3 * self.num_cl as u64 + rle
    }

    fn write(&self, w: &mut BitWriter) {
        w.put((NUM_LIT - 257) as u64, 5); // HLIT
        w.put(2 - 1, 5); // HDIST
        w.put((self.num_cl - 4) as u64, 4); // HCLEN
        for &s in &CL_ORDER[..self.num_cl] {
            w.put(u64::from(self.cl_lens[s]), 3);
        }
        for &(s, extra, extra_bits) in &self.rle {
            let s = usize::from(s);
            w.put(u64::from(self.cl_codes[s]), u32::from(self.cl_lens[s]));
            if extra_bits > 0 {
                w.put(u64::from(extra), u32::from(extra_bits));
            }
        }
    }
}

/// Code lengths as code-length symbols: 0-15 literal, 16 = repeat previous
/// 3-6 times, 17 = 3-10 zeros, 18 = 11-138 zeros.
fn rle_lengths(lens: &[u8]) -> Vec<(u8, u8, u8)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lens.len() {
        let l = lens[i];
        let run = lens[i..].iter().take_while(|&&x| x == l).count();
        if l == 0 && run >= 3 {
            let n = run.min(138);
            // `n` is at most 138, so the extra-bits values fit in u8.
            if n <= 10 {
                out.push((17, (n - 3) as u8, 3));
            } else {
                out.push((18, (n - 11) as u8, 7));
            }
            i += n;
        } else if l != 0 && run >= 4 {
            // Send the length once, then repeat it.
            out.push((l, 0, 0));
            let n = (run - 1).min(6);
            out.push((16, (n - 3) as u8, 2));
            i += 1 + n;
        } else {
            out.push((l, 0, 0));
            i += 1;
        }
    }
    out
}

/// LSB-first bit packing into a byte vector.
struct BitWriter {
    out: Vec<u8>,
    buf: u64,
    nbits: u32,
}

impl BitWriter {
    fn new(out: Vec<u8>) -> Self {
        Self { out, buf: 0, nbits: 0 }
    }

    /// Append the low `n` bits of `bits` (n <= 32).
    #[inline(always)]
    fn put(&mut self, bits: u64, n: u32) {
        self.buf |= bits << self.nbits;
        self.nbits += n;
        if self.nbits >= 32 {
            self.out.extend_from_slice(&(self.buf as u32).to_le_bytes());
            self.buf >>= 32;
            self.nbits -= 32;
        }
    }

    /// The hot loop: Huffman-code every byte of `data` with `table`
    /// (code << 8 | length, lengths at most [`MAX_LIT_BITS`] = 15).
    fn put_literals(&mut self, data: &[u8], table: &[u32; 256]) {
        // Reserve the worst case once, then fill a plain slice: no capacity
        // check per byte. Three codes are at most 45 bits; with fewer than 8
        // bits pending after each flush they always fit the 64-bit buffer,
        // so each step stores all 8 buffer bytes and advances by the whole
        // bytes it filled (at most 6).
        while self.nbits >= 8 {
            // Enter with fewer than 8 bits pending (the header may leave 31).
            self.out.push(self.buf as u8);
            self.buf >>= 8;
            self.nbits -= 8;
        }
        let start = self.out.len();
        self.out.resize(start + data.len() * 2 + 16, 0);
        let dst = &mut self.out[start..];
        let mut pos = 0usize;
        let (mut buf, mut nbits) = (self.buf, self.nbits);
        let mut triples = data.chunks_exact(3);
        for q in &mut triples {
            let [a, b, c] = [q[0], q[1], q[2]].map(|x| table[usize::from(x)]);
            let (la, lb, lc) = (a & 0xff, b & 0xff, c & 0xff);
            let ab = u64::from(a >> 8) | (u64::from(b >> 8) << la);
            buf |= (ab | (u64::from(c >> 8) << (la + lb))) << nbits;
            nbits += la + lb + lc;
            let bytes = nbits / 8;
            dst[pos..pos + 8].copy_from_slice(&buf.to_le_bytes());
            pos += bytes as usize;
            buf >>= bytes * 8;
            nbits &= 7;
        }
        for &x in triples.remainder() {
            let a = table[usize::from(x)];
            buf |= u64::from(a >> 8) << nbits;
            nbits += a & 0xff;
        }
        self.out.truncate(start + pos);
        self.buf = buf;
        self.nbits = nbits;
        while self.nbits >= 32 {
            // Only reachable through the remainder; restores `put`'s invariant.
            self.out.extend_from_slice(&(self.buf as u32).to_le_bytes());
            self.buf >>= 32;
            self.nbits -= 32;
        }
    }

    /// Pad with zero bits to a byte boundary.
    fn align(&mut self) {
        let pad = (8 - self.nbits % 8) % 8;
        self.put(0, pad);
        while self.nbits >= 8 {
            self.out.push(self.buf as u8);
            self.buf >>= 8;
            self.nbits -= 8;
        }
    }

    /// Raw bytes; only valid when byte-aligned with nothing pending.
    fn put_bytes(&mut self, bytes: &[u8]) {
        debug_assert_eq!(self.nbits, 0);
        self.out.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate(z: &[u8]) -> Vec<u8> {
        miniz_oxide::inflate::decompress_to_vec_zlib(z).expect("valid zlib stream")
    }

    fn roundtrip(data: &[u8]) -> Vec<u8> {
        let mut z = Vec::new();
        zlib_compress(data, &mut z);
        assert_eq!(inflate(&z), data);
        z
    }

    #[test]
    fn empty_and_tiny_inputs_roundtrip() {
        roundtrip(b"");
        roundtrip(b"a");
        roundtrip(b"ab");
        roundtrip(&[0u8; 1000]);
    }

    #[test]
    fn skewed_data_compresses_and_roundtrips() {
        // Residual-like data: mostly small values around zero.
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| {
                let x = i.wrapping_mul(2_654_435_761) >> 27; // 0..32, pseudo-random
                (x as u8).wrapping_sub(16) / 3
            })
            .collect();
        let z = roundtrip(&data);
        assert!(z.len() < data.len() * 3 / 4, "{} of {}", z.len(), data.len());
    }

    #[test]
    fn incompressible_data_falls_back_to_stored_blocks() {
        let mut x = 0x1234_5678u32;
        let data: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let z = roundtrip(&data);
        // Stored overhead: 5 bytes a 64 KiB block, plus zlib's 6.
        assert!(z.len() <= data.len() + 5 * 4 + 6, "{}", z.len());
    }

    #[test]
    fn lengths_are_limited_even_for_fibonacci_frequencies() {
        // Fibonacci counts make the deepest possible Huffman tree.
        let mut freqs = vec![0u32; 257];
        let (mut a, mut b) = (1u32, 1u32);
        for f in freqs.iter_mut().take(40) {
            *f = a;
            (a, b) = (b, a.saturating_add(b));
        }
        let lens = code_lengths(&freqs, 15);
        assert!(lens.iter().all(|&l| l <= 15));
        // Kraft equality: a complete prefix code.
        let kraft: u64 = lens.iter().filter(|&&l| l > 0).map(|&l| 1u64 << (15 - l)).sum();
        assert_eq!(kraft, 1 << 15);
        let data: Vec<u8> = (0..40u8).flat_map(|s| std::iter::repeat_n(s, 1 << (s / 3))).collect();
        roundtrip(&data);
    }

    #[test]
    fn a_single_symbol_still_gets_a_complete_code() {
        let mut freqs = vec![0u32; 19];
        freqs[5] = 10;
        let lens = code_lengths(&freqs, 7);
        assert_eq!(lens.iter().filter(|&&l| l == 1).count(), 2);
    }
}
