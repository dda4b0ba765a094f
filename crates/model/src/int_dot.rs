//! Decoding's inner product in integers: a row of `W` unpacked to signed bytes (a scale per 16
//! values) against a row of activations quantized once per product to 16-bit integers (a scale
//! per 32, [`QuantizedRows`]). Each quad of products (values `4k..4k + 4` of a block) is summed
//! exactly in 32-bit integers and turned to f32 exactly (a quad's sum is under 2^24), scaled, and
//! added in 16 f32 lanes (quad `k` of an even block in lane `k`, of an odd block in `8 + k`),
//! summed in one order at the end: the same bits on every CPU and in wasm.
//!
//! Quads, not pairs, because AVX-512 VNNI's `vpdpbusd` sums four byte products a lane: a 16-bit
//! activation is two bytes (`x = 256 hi + lo`, `hi` signed, `lo` unsigned), so two `vpdpbusd` on
//! the weights' own bytes give a quad's exact sum with no widening (`block_dot.rs`). The other
//! paths add adjacent pairs of `vpmaddwd` / `i32x4.dot_i16x8_s` into the same quads.
//!
//! Blocks with one scale and no minimum (Q4_0 and Q8_0, [`one_scale`]) are summed otherwise: each
//! block's 32 products exact in one 32-bit integer, to f32, times the block's scale times the
//! activations', added to one sum in block order ([`add_block`]). Sixteen rows in the lanes of a
//! register (`block_dot/lanes.rs`) then need no conversion, scale or addition a quad, only a block:
//! four and eight answers 1.7-1.9x (docs/benchmarks.md).
//!
//! 16-bit activations, not llama.cpp's 8: the error a value carries is 1/65534 of its block's
//! largest, 256 times under a Q8_0 weight's own (and llama.cpp's 8-bit activations'), which
//! changed greedy answers a few dozen tokens in when tried here (docs/benchmarks.md).
//!
//! The one module of the library with `unsafe` besides `block_dot.rs`: the integer multiply-adds
//! have no safe form in `std::arch` (and the compiler does not find them in the portable loop);
//! each unsafe block reads inside slices whose lengths [`IntDot::dot`] asserts, on features
//! [`IntDot::here`] found.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::fold_sixteen;

/// Values per block of activations sharing a scale (a weight block's minimum spans the same 32).
pub(crate) const BLOCK: usize = 32;

/// Values per sum of products turned to f32: a lane of `vpdpbusd`.
pub(crate) const QUAD: usize = 4;

/// The largest quantized activation.
const LARGEST: f32 = 32767.0;

/// Whether rows of `ggml_type` are summed a block at a time ([`add_block`]) rather than a quad.
pub(crate) fn one_scale(ggml_type: crate::gguf_quants::GgmlType) -> bool {
    use crate::gguf_quants::GgmlType;
    matches!(ggml_type, GgmlType::Q4_0 | GgmlType::Q8_0)
}

/// `sum` with a block's value added: its exact integer sum of products `block_sum`, to f32, times
/// the block's scale `d` times the activations' scale. Every path adds a one-scale row's blocks so,
/// in order, from zero: the same bits.
#[inline(always)]
pub(crate) fn add_block(sum: f32, block_sum: i32, d: f32, x_scale: f32) -> f32 {
    sum + block_sum as f32 * (d * x_scale)
}

/// Rows of activations quantized for [`IntDot::dot`]: per block of 32 values `x ≈ scale * q`, `q`
/// in `-32767..=32767`, and each block's f32 sum (for the weights' minimums, which need no
/// product). On x86-64 the same `q` also laid out for the products straight from the blocks, only
/// the one this CPU's products read, made once before their jobs fork (`packed/cpu.rs`):
/// [`Self::bytes`] for `vpdpbusd` (`block_dot.rs`), [`Self::paired`] for `block_dot_avx2.rs`.
#[derive(Debug)]
pub(crate) struct QuantizedRows {
    pub q: Vec<i16>,
    pub scales: Vec<f32>,
    pub sums: Vec<f32>,
    #[cfg(target_arch = "x86_64")]
    bytes: std::sync::OnceLock<ByteHalves>,
    #[cfg(target_arch = "x86_64")]
    paired: std::sync::OnceLock<Vec<i16>>,
    #[cfg(target_arch = "x86_64")]
    minus_eight_sums: std::sync::OnceLock<Vec<i32>>,
}

/// `q = 256 * high + low` (`high` signed, `low` unsigned), and each quad's sum of `high` (for
/// weights stored with an offset), and each block's times -8 and -128 (Q4_0's offset and Q8_0's
/// as `vpdpbusd` reads it, where `block_dot/lanes.rs` starts each block's sum).
#[cfg(target_arch = "x86_64")]
#[derive(Debug)]
pub(crate) struct ByteHalves {
    pub high: Vec<i8>,
    pub low: Vec<u8>,
    pub high_sums: Vec<i32>,
    pub minus_eight_block_sums: Vec<i32>,
    pub minus_128_block_sums: Vec<i32>,
}

impl QuantizedRows {
    /// `x`: rows of whole blocks of 32. A block with a non-finite value gets a non-finite scale, so
    /// the products it meets are not finite either, as the f32 product's would be.
    pub(crate) fn new(x: &[f32]) -> Self {
        let blocks = x.len() / BLOCK;
        let (mut q, mut scales, mut sums) = (vec![0i16; x.len()], Vec::with_capacity(blocks), Vec::with_capacity(blocks));
        for (block, q) in x.chunks_exact(BLOCK).zip(q.chunks_exact_mut(BLOCK)) {
            let largest = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let largest = if block.iter().all(|v| v.is_finite()) { largest } else { f32::NAN };
            if largest > 0.0 {
                let inverse = LARGEST / largest;
                for (q, &v) in q.iter_mut().zip(block) {
                    // Half away from zero by hand: `round` is a call to libm, this a vector op.
                    *q = (v * inverse + 0.5f32.copysign(v)) as i16;
                }
            }
            scales.push(largest / LARGEST);
            sums.push(block.iter().sum());
        }
        #[cfg(target_arch = "x86_64")]
        return Self { q, scales, sums, bytes: Default::default(), paired: Default::default(), minus_eight_sums: Default::default() };
        #[cfg(not(target_arch = "x86_64"))]
        Self { q, scales, sums }
    }

    /// `q` as bytes for `vpdpbusd`.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn bytes(&self) -> &ByteHalves {
        self.bytes.get_or_init(|| {
            // Two passes the compiler vectorizes, where one `unzip` pushed a value at a time.
            let high: Vec<i8> = self.q.iter().map(|&q| (q >> 8) as i8).collect();
            let low: Vec<u8> = self.q.iter().map(|&q| q as u8).collect();
            let high_sums: Vec<i32> = high.chunks_exact(QUAD).map(|quad| quad.iter().map(|&h| h as i32).sum()).collect();
            let block_sums: Vec<i32> = high_sums.chunks_exact(BLOCK / QUAD).map(|quads| quads.iter().sum()).collect();
            let minus_eight_block_sums = block_sums.iter().map(|&sum| -8 * sum).collect();
            let minus_128_block_sums = block_sums.iter().map(|&sum| -128 * sum).collect();
            ByteHalves { high, low, high_sums, minus_eight_block_sums, minus_128_block_sums }
        })
    }

    /// Each block's sum of `q` times -8: where a Q4_0 block's sum starts when its values are read
    /// as nibbles, 0..16, without their offset (`block_dot_avx2/lanes.rs`).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn minus_eight_sums(&self) -> &[i32] {
        self.minus_eight_sums
            .get_or_init(|| self.q.chunks_exact(BLOCK).map(|block| -8 * block.iter().map(|&q| q as i32).sum::<i32>()).collect())
    }

    /// `q` with each block's values in the order `block_dot_avx2.rs`'s registers pair them
    /// (`block_dot_avx2::PAIRED`).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn paired(&self) -> &[i16] {
        self.paired.get_or_init(|| {
            let mut paired = vec![0i16; self.q.len()];
            for (to, block) in paired.chunks_exact_mut(BLOCK).zip(self.q.chunks_exact(BLOCK)) {
                for (to, &from) in to.iter_mut().zip(&crate::block_dot_avx2::PAIRED) {
                    *to = block[from];
                }
            }
            paired
        })
    }
}

/// The instructions [`IntDot::dot`] runs on, chosen once per product from what the CPU has.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IntDot {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
    Portable,
}

impl IntDot {
    pub(crate) fn here() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512bw") {
                return Self::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") {
                return Self::Avx2;
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        return Self::Simd128;
        #[allow(unreachable_code)]
        Self::Portable
    }

    /// [`Self::dot`] for a row of one-scale blocks ([`one_scale`]): each block's scale is its
    /// quads' (`quad_scales[8 b]`), its products summed a block at a time ([`add_block`]).
    #[inline]
    pub(crate) fn dot_blocks(self, w: &[i8], quad_scales: &[f32], x: &[i16], x_scales: &[f32]) -> f32 {
        assert!(w.len() == x.len() && quad_scales.len() * QUAD == w.len() && x_scales.len() * BLOCK == x.len());
        match self {
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Self::Simd128 => wasm::dot_blocks(w, quad_scales, x, x_scales),
            // Natively the blocks' own kernels take these rows (`block_dot/lanes.rs`,
            // `block_dot_avx2.rs`): the portable loop serves the tests and CPUs without AVX2.
            _ => dot_blocks_portable(w, quad_scales, x, x_scales),
        }
    }

    /// `sum_i w_i x_i` without the weights' minimums: `w` signed bytes with `quad_scales` (8 per
    /// block of 32: 0-3 the first 16 values' scale, 4-7 the second's), `x` and `x_scales` one row
    /// of [`QuantizedRows`], whole blocks of 32.
    #[inline]
    pub(crate) fn dot(self, w: &[i8], quad_scales: &[f32], x: &[i16], x_scales: &[f32]) -> f32 {
        assert!(w.len() == x.len() && quad_scales.len() * QUAD == w.len() && x_scales.len() * BLOCK == x.len());
        match self {
            // SAFETY: `here` chose these only where the CPU reported the features they enable.
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => unsafe { x86::dot_avx512(w, quad_scales, x, x_scales) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => unsafe { x86::dot_avx2(w, quad_scales, x, x_scales) },
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Self::Simd128 => wasm::dot(w, quad_scales, x, x_scales),
            Self::Portable => dot_portable(w, quad_scales, x, x_scales),
        }
    }
}

/// What every path computes: quad `k` of block `b` (values `4k..4k + 4`) summed in integers, times
/// its scale times the block's activation scale, into lane `8 (b % 2) + k` of 16, then halves
/// folded onto halves: 16 -> 8 -> 4 -> 2 -> 1.
fn dot_portable(w: &[i8], quad_scales: &[f32], x: &[i16], x_scales: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let blocks = w.chunks_exact(BLOCK).zip(x.chunks_exact(BLOCK)).zip(quad_scales.chunks_exact(BLOCK / QUAD)).zip(x_scales);
    for (b, (((w, x), quad_scales), &x_scale)) in blocks.enumerate() {
        for (k, ((w, x), &scale)) in w.chunks_exact(QUAD).zip(x.chunks_exact(QUAD)).zip(quad_scales).enumerate() {
            let quad: i32 = w.iter().zip(x).map(|(&w, &x)| w as i32 * x as i32).sum();
            lanes[8 * (b % 2) + k] += quad as f32 * (scale * x_scale);
        }
    }
    for width in [8, 4, 2, 1] {
        for j in 0..width {
            lanes[j] += lanes[j + width];
        }
    }
    lanes[0]
}

/// What every path computes for a row of one-scale blocks: [`add_block`] a block at a time.
#[inline(always)]
fn dot_blocks_portable(w: &[i8], quad_scales: &[f32], x: &[i16], x_scales: &[f32]) -> f32 {
    let blocks = w.chunks_exact(BLOCK).zip(x.chunks_exact(BLOCK)).zip(quad_scales.chunks_exact(BLOCK / QUAD)).zip(x_scales);
    blocks.fold(0.0, |sum, (((w, x), quad_scales), &x_scale)| {
        let block_sum: i32 = w.iter().zip(x).map(|(&w, &x)| w as i32 * x as i32).sum();
        add_block(sum, block_sum, quad_scales[0], x_scale)
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::BLOCK;

    /// # Safety
    /// The CPU has AVX-512 F and BW; the slices are as [`super::IntDot::dot`] asserts.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn dot_avx512(w: &[i8], quad_scales: &[f32], x: &[i16], x_scales: &[f32]) -> f32 {
        // Block `b`'s 16 sums of pairs.
        macro_rules! pairs {
            ($b:expr) => {{
                let b = $b;
                // SAFETY: block `b` is inside both slices (the caller's lengths).
                unsafe {
                    let w16 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(w.as_ptr().add(b * BLOCK).cast()));
                    _mm512_madd_epi16(w16, _mm512_loadu_si512(x.as_ptr().add(b * BLOCK).cast()))
                }
            }};
        }
        // Adjacent pairs of blocks `b` and `b + 1` (`odd`: zero where there is none) into quads,
        // `b`'s in lanes 0-7; `mask` the lanes that have a block.
        let (even_pairs, odd_pairs) = (
            _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0),
            _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1),
        );
        let mut sum = _mm512_setzero_ps();
        let blocks = x_scales.len();
        let mut b = 0;
        while b < blocks {
            let (second, mask) = if b + 1 < blocks { (pairs!(b + 1), 0xFFFF) } else { (_mm512_setzero_si512(), 0x00FF) };
            let first = pairs!(b);
            let quads =
                _mm512_add_epi32(_mm512_permutex2var_epi32(first, even_pairs, second), _mm512_permutex2var_epi32(first, odd_pairs, second));
            // SAFETY: the `mask` lanes' scales are inside `quad_scales` (8 a block); `b + 1` read only with them.
            let (scales, x_scale) = unsafe {
                let second_scale = if mask == 0xFFFF { *x_scales.get_unchecked(b + 1) } else { 0.0 };
                (
                    _mm512_maskz_loadu_ps(mask, quad_scales.as_ptr().add(8 * b)),
                    _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(*x_scales.get_unchecked(b)), _mm512_set1_ps(second_scale)),
                )
            };
            sum = _mm512_mask_add_ps(sum, mask, sum, _mm512_mul_ps(_mm512_cvtepi32_ps(quads), _mm512_mul_ps(scales, x_scale)));
            b += 2;
        }
        fold_sixteen(sum)
    }

    /// Lanes 16 -> 8 -> 4 -> 2 -> 1, halves onto halves.
    #[target_feature(enable = "avx512f")]
    pub(crate) fn fold_sixteen(sum: __m512) -> f32 {
        fold_eight(_mm256_add_ps(_mm512_castps512_ps256(sum), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sum), 1))))
    }

    /// # Safety
    /// The CPU has AVX2; the slices are as [`super::IntDot::dot`] asserts.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot_avx2(w: &[i8], quad_scales: &[f32], x: &[i16], x_scales: &[f32]) -> f32 {
        // Block `b`'s 8 quads, scaled.
        macro_rules! block {
            ($b:expr) => {{
                let b = $b;
                // SAFETY: block `b` is inside every slice (the caller's lengths).
                unsafe {
                    let (w, x) = (w.as_ptr().add(b * BLOCK), x.as_ptr().add(b * BLOCK));
                    let low = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(w.cast())), _mm256_loadu_si256(x.cast()));
                    let high =
                        _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(16).cast())), _mm256_loadu_si256(x.add(16).cast()));
                    // Pairs [0-3 | 4-7] and [8-11 | 12-15] add to quads [0 1 4 5 | 2 3 6 7]; reordered.
                    let quads = _mm256_permute4x64_epi64(_mm256_hadd_epi32(low, high), 0b11_01_10_00);
                    let x_scale = _mm256_set1_ps(*x_scales.get_unchecked(b));
                    _mm256_mul_ps(_mm256_cvtepi32_ps(quads), _mm256_mul_ps(_mm256_loadu_ps(quad_scales.as_ptr().add(8 * b)), x_scale))
                }
            }};
        }
        let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let blocks = x_scales.len();
        for pair in 0..blocks / 2 {
            even = _mm256_add_ps(even, block!(2 * pair));
            odd = _mm256_add_ps(odd, block!(2 * pair + 1));
        }
        if blocks % 2 == 1 {
            even = _mm256_add_ps(even, block!(blocks - 1));
        }
        fold_eight(_mm256_add_ps(even, odd))
    }
    /// Lanes 8 -> 4 -> 2 -> 1, halves onto halves.
    #[target_feature(enable = "avx2")]
    fn fold_eight(eight: __m256) -> f32 {
        let four = _mm_add_ps(_mm256_castps256_ps128(eight), _mm256_extractf128_ps(eight, 1));
        let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
        _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps(two, two, 1)))
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use std::arch::wasm32::*;

    use super::BLOCK;

    /// [`super::IntDot::dot_blocks`]: each block's 32 products in four lanes, then one sum.
    pub(super) fn dot_blocks(w: &[i8], quad_scales: &[f32], x: &[i16], x_scales: &[f32]) -> f32 {
        let blocks = w.chunks_exact(BLOCK).zip(x.chunks_exact(BLOCK)).zip(quad_scales.chunks_exact(8)).zip(x_scales);
        blocks.fold(0.0, |sum, (((w, x), quad_scales), &x_scale)| {
            // SAFETY: each load reads 16 bytes inside the block's 32 bytes of `w` or 64 of `x`.
            let lanes = unsafe {
                let (w_low, w_high) = (v128_load(w.as_ptr().cast()), v128_load(w.as_ptr().add(16).cast()));
                let x = x.as_ptr();
                let w16 = [
                    i16x8_extend_low_i8x16(w_low),
                    i16x8_extend_high_i8x16(w_low),
                    i16x8_extend_low_i8x16(w_high),
                    i16x8_extend_high_i8x16(w_high),
                ];
                let mut lanes = i32x4_dot_i16x8(w16[0], v128_load(x.cast()));
                for (h, w16) in w16.into_iter().enumerate().skip(1) {
                    lanes = i32x4_add(lanes, i32x4_dot_i16x8(w16, v128_load(x.add(8 * h).cast())));
                }
                lanes
            };
            let two = i32x4_add(lanes, i32x4_shuffle::<2, 3, 2, 3>(lanes, lanes));
            let block_sum = i32x4_extract_lane::<0>(two) + i32x4_extract_lane::<1>(two);
            super::add_block(sum, block_sum, quad_scales[0], x_scale)
        })
    }

    /// simd128 is on for the whole build (`.cargo/config.toml`), so this is safe to call.
    pub(super) fn dot(w: &[i8], quad_scales: &[f32], x: &[i16], x_scales: &[f32]) -> f32 {
        let mut lanes = [[f32x4_splat(0.0); 2]; 2]; // [even or odd block][lanes 4h..4h + 4 of the block's 8]
        let blocks = w.chunks_exact(BLOCK).zip(x.chunks_exact(BLOCK)).zip(quad_scales.chunks_exact(8)).zip(x_scales);
        for (b, (((w, x), quad_scales), &x_scale)) in blocks.enumerate() {
            // SAFETY: each load reads 16 bytes inside the block's 32 bytes of `w`, 64 of `x` or 32 of scales.
            let (w_low, w_high) = unsafe { (v128_load(w.as_ptr().cast()), v128_load(w.as_ptr().add(16).cast())) };
            let w16 = [w_low, w_high].map(|w| [i16x8_extend_low_i8x16(w), i16x8_extend_high_i8x16(w)]);
            for (h, (lanes, w16)) in lanes[b % 2].iter_mut().zip(w16).enumerate() {
                // SAFETY: as above, values `16h..16h + 16` and scales `4h..4h + 4` of the block.
                let (x_low, x_high, scales) = unsafe {
                    let x = x.as_ptr().add(16 * h);
                    (v128_load(x.cast()), v128_load(x.add(8).cast()), v128_load(quad_scales.as_ptr().add(4 * h).cast()))
                };
                // Pairs [0 1 2 3] and [4 5 6 7] of the 16 values, adjacent ones added: quads [0 1 2 3].
                let (first, second) = (i32x4_dot_i16x8(w16[0], x_low), i32x4_dot_i16x8(w16[1], x_high));
                let quads = i32x4_add(i32x4_shuffle::<0, 2, 4, 6>(first, second), i32x4_shuffle::<1, 3, 5, 7>(first, second));
                *lanes = f32x4_add(*lanes, f32x4_mul(f32x4_convert_i32x4(quads), f32x4_mul(scales, f32x4_splat(x_scale))));
            }
        }
        // 16 -> 8 (even and odd blocks' lanes), 8 -> 4, 4 -> 2 -> 1.
        let eight = [f32x4_add(lanes[0][0], lanes[1][0]), f32x4_add(lanes[0][1], lanes[1][1])];
        let four = f32x4_add(eight[0], eight[1]);
        let two = f32x4_add(four, i32x4_shuffle::<2, 3, 2, 3>(four, four));
        f32x4_extract_lane::<0>(two) + f32x4_extract_lane::<1>(two)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signed bytes, and a scale per 16 spread over its 4 quads.
    fn weights(n: usize, seed: usize) -> (Vec<i8>, Vec<f32>) {
        let w = (0..n).map(|i| ((i * 37 + seed * 11) % 256) as u8 as i8).collect();
        let quad_scales = (0..n / QUAD).map(|quad| 0.01 + (quad / 4 % 5) as f32 * 0.003).collect();
        (w, quad_scales)
    }

    fn activations(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * if i % 97 == 0 { 30.0 } else { 1.0 }).collect()
    }

    /// Every path this CPU runs, `here`'s choice and the ones below it.
    fn paths_here() -> Vec<IntDot> {
        // AVX-512 CPUs take their own path by default; the AVX2 one must still hold there.
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            return vec![IntDot::here(), IntDot::Avx2];
        }
        vec![IntDot::here()]
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits_as_the_portable_loop() {
        for n in [32, 64, 96, 576] {
            let (w, quad_scales) = weights(n, 3);
            let x = QuantizedRows::new(&activations(n));
            let expected = dot_portable(&w, &quad_scales, &x.q, &x.scales);
            for path in paths_here() {
                assert_eq!(path.dot(&w, &quad_scales, &x.q, &x.scales).to_bits(), expected.to_bits(), "{path:?}, {n} values");
            }
        }
    }

    /// A one-scale row's blocks (each quad's scale its block's) on every path, against the
    /// dequantized product and the portable loop's bits.
    #[test]
    fn rows_summed_a_block_at_a_time_give_the_same_bits_everywhere_and_the_dequantized_product() {
        for n in [32, 96, 576] {
            let (w, mut quad_scales) = weights(n, 7);
            for block in quad_scales.chunks_exact_mut(BLOCK / QUAD) {
                block.fill(block[0]);
            }
            let x = QuantizedRows::new(&activations(n));
            let expected = dot_blocks_portable(&w, &quad_scales, &x.q, &x.scales);
            for path in paths_here() {
                assert_eq!(path.dot_blocks(&w, &quad_scales, &x.q, &x.scales).to_bits(), expected.to_bits(), "{path:?}, {n} values");
            }
            let exact: f64 = (0..n).map(|i| w[i] as f64 * quad_scales[i / QUAD] as f64 * x.q[i] as f64 * x.scales[i / 32] as f64).sum();
            assert!((expected as f64 - exact).abs() <= 1e-5 * exact.abs().max(1.0), "{expected} vs {exact}");
        }
    }

    #[test]
    fn the_integer_product_is_the_product_of_the_dequantized_values() {
        let n = 256;
        let (w, quad_scales) = weights(n, 5);
        let x = QuantizedRows::new(&activations(n));
        let expected: f64 = (0..n).map(|i| w[i] as f64 * quad_scales[i / QUAD] as f64 * x.q[i] as f64 * x.scales[i / 32] as f64).sum();
        let found = IntDot::here().dot(&w, &quad_scales, &x.q, &x.scales) as f64;
        assert!((found - expected).abs() <= 1e-5 * expected.abs().max(1.0), "{found} vs {expected}");
    }

    #[test]
    fn quantized_activations_stay_within_half_a_step_of_their_block_largest_value() {
        let x = activations(256);
        let q = QuantizedRows::new(&x);
        for ((block, q), &scale) in x.chunks_exact(BLOCK).zip(q.q.chunks_exact(BLOCK)).zip(&q.scales) {
            let largest = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (&v, &q) in block.iter().zip(q) {
                assert!((v - scale * q as f32).abs() <= largest / (2.0 * LARGEST) * 1.001, "{v} vs {}", scale * q as f32);
            }
        }
    }

    /// The largest quads there are (four times -128 times the largest activation, just under 2^24)
    /// summed exactly on every path, and the bytes `vpdpbusd` reads make up each activation.
    #[test]
    fn the_largest_quads_are_summed_exactly_and_the_bytes_make_up_each_activation() {
        let x = QuantizedRows::new(&[-1.0f32, 1.0].repeat(32));
        assert!(x.q.iter().all(|&q| q.abs() == 32767));
        #[cfg(target_arch = "x86_64")]
        for ((&q, &high), &low) in x.q.iter().zip(&x.bytes().high).zip(&x.bytes().low) {
            assert_eq!(256 * high as i32 + low as i32, q as i32);
        }
        let largest = |w: Vec<i8>| {
            let expected: f64 = w.iter().zip(&x.q).map(|(&w, &q)| w as f64 * q as f64).sum();
            for path in paths_here().into_iter().chain([IntDot::Portable]) {
                assert_eq!(path.dot(&w, &[1.0; 16], &x.q, &[1.0; 2]) as f64, expected, "{path:?}");
            }
        };
        largest(x.q.iter().map(|&q| if q < 0 { -128 } else { 127 }).collect());
        largest(x.q.iter().map(|&q| if q < 0 { 127 } else { -128 }).collect());
    }

    #[test]
    fn a_non_finite_activation_makes_its_products_non_finite() {
        let mut x = activations(64);
        x[40] = f32::INFINITY;
        let q = QuantizedRows::new(&x);
        let (w, quad_scales) = weights(64, 1);
        assert!(!IntDot::here().dot(&w, &quad_scales, &q.q, &q.scales).is_finite());
        assert!(q.scales[0].is_finite(), "the other block keeps its scale");
    }
}
