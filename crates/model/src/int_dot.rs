//! Decoding's inner product in integers: a row of `W` unpacked to signed bytes (a scale per 16
//! values) against a row of activations quantized once per product to 16-bit integers (a scale
//! per 32, [`QuantizedRows`]). Each pair of products is summed exactly in 32-bit integers (one
//! `vpmaddwd` for 32 values with AVX-512, two with AVX2, four `i32x4.dot_i16x8_s` in wasm), turned
//! to f32 exactly (a pair sum is under 2^24) and scaled in 16 f32 lanes, summed in one order at the
//! end: the same bits on every CPU and in wasm.
//!
//! 16-bit activations, not llama.cpp's 8: the error a value carries is 1/65534 of its block's
//! largest, 256 times under a Q8_0 weight's own (and llama.cpp's 8-bit activations'), which
//! changed greedy answers a few dozen tokens in when tried here (docs/benchmarks.md).
//!
//! The one module of the library with `unsafe`: the integer multiply-adds have no safe form in
//! `std::arch` (and the compiler does not find them in the portable loop); each unsafe block
//! reads inside slices whose lengths [`IntDot::dot`] asserts, on features [`IntDot::here`] found.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::fold_sixteen;

/// Values per block of activations sharing a scale (a weight block's minimum spans the same 32).
pub(crate) const BLOCK: usize = 32;

/// Rows of activations quantized for [`IntDot::dot`]: per block of 32 values `x ≈ scale * q`, `q`
/// in `-32767..=32767`, and each block's f32 sum (for the weights' minimums, which need no product).
#[derive(Debug)]
pub(crate) struct QuantizedRows {
    pub q: Vec<i16>,
    pub scales: Vec<f32>,
    pub sums: Vec<f32>,
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
                let inverse = 32767.0 / largest;
                for (q, &v) in q.iter_mut().zip(block) {
                    // Half away from zero by hand: `round` is a call to libm, this a vector op.
                    *q = (v * inverse + 0.5f32.copysign(v)) as i16;
                }
            }
            scales.push(largest / 32767.0);
            sums.push(block.iter().sum());
        }
        Self { q, scales, sums }
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

    /// `sum_i w_i x_i` without the weights' minimums: `w` signed bytes with `lane_scales` (16 per
    /// block of 32: lanes 0-7 the first 16 values' scale, lanes 8-15 the second's), `x` and
    /// `x_scales` one row of [`QuantizedRows`], whole blocks of 32.
    #[inline]
    pub(crate) fn dot(self, w: &[i8], lane_scales: &[f32], x: &[i16], x_scales: &[f32]) -> f32 {
        assert!(w.len() == x.len() && lane_scales.len() * 2 == w.len() && x_scales.len() * BLOCK == x.len());
        match self {
            // SAFETY: `here` chose these only where the CPU reported the features they enable.
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => unsafe { x86::dot_avx512(w, lane_scales, x, x_scales) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => unsafe { x86::dot_avx2(w, lane_scales, x, x_scales) },
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Self::Simd128 => wasm::dot(w, lane_scales, x, x_scales),
            Self::Portable => dot_portable(w, lane_scales, x, x_scales),
        }
    }
}

/// What every path computes: lane `j` of 16 sums pair `j` of a block (values `2j`, `2j + 1`)
/// times its scale, even blocks and odd blocks in two sets of lanes (two chains of additions, so
/// a block need not wait for the last one's sum), added lane by lane, then halves folded onto
/// halves: 16 -> 8 -> 4 -> 2 -> 1.
fn dot_portable(w: &[i8], lane_scales: &[f32], x: &[i16], x_scales: &[f32]) -> f32 {
    let mut lanes = [[0.0f32; 16]; 2];
    let blocks = w.chunks_exact(BLOCK).zip(x.chunks_exact(BLOCK)).zip(lane_scales.chunks_exact(16)).zip(x_scales);
    for (b, (((w, x), lane_scales), &x_scale)) in blocks.enumerate() {
        for (j, lane) in lanes[b % 2].iter_mut().enumerate() {
            let pair = w[2 * j] as i32 * x[2 * j] as i32 + w[2 * j + 1] as i32 * x[2 * j + 1] as i32;
            *lane += pair as f32 * (lane_scales[j] * x_scale);
        }
    }
    let mut sum: [f32; 16] = std::array::from_fn(|j| lanes[0][j] + lanes[1][j]);
    for width in [8, 4, 2, 1] {
        for j in 0..width {
            sum[j] += sum[j + width];
        }
    }
    sum[0]
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::BLOCK;

    /// # Safety
    /// The CPU has AVX-512 F and BW; the slices are as [`super::IntDot::dot`] asserts.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn dot_avx512(w: &[i8], lane_scales: &[f32], x: &[i16], x_scales: &[f32]) -> f32 {
        // Block `b`'s 16 lanes: pairs of products, scaled.
        macro_rules! block {
            ($b:expr) => {{
                let b = $b;
                // SAFETY: block `b` is inside every slice (the caller's lengths).
                unsafe {
                    let w16 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(w.as_ptr().add(b * BLOCK).cast()));
                    let x16 = _mm512_loadu_si512(x.as_ptr().add(b * BLOCK).cast());
                    let pairs = _mm512_cvtepi32_ps(_mm512_madd_epi16(w16, x16));
                    let x_scale = _mm512_set1_ps(*x_scales.get_unchecked(b));
                    _mm512_mul_ps(pairs, _mm512_mul_ps(_mm512_loadu_ps(lane_scales.as_ptr().add(16 * b)), x_scale))
                }
            }};
        }
        // Two accumulators in registers: indexing an array of them by `b % 2` kept them in memory.
        let (mut even, mut odd) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let blocks = x_scales.len();
        for pair in 0..blocks / 2 {
            even = _mm512_add_ps(even, block!(2 * pair));
            odd = _mm512_add_ps(odd, block!(2 * pair + 1));
        }
        if blocks % 2 == 1 {
            even = _mm512_add_ps(even, block!(blocks - 1));
        }
        fold_sixteen(_mm512_add_ps(even, odd))
    }

    /// Lanes 16 -> 8 -> 4 -> 2 -> 1, halves onto halves.
    #[target_feature(enable = "avx512f")]
    pub(crate) fn fold_sixteen(sum: __m512) -> f32 {
        fold_eight(_mm256_add_ps(_mm512_castps512_ps256(sum), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sum), 1))))
    }

    /// # Safety
    /// The CPU has AVX2; the slices are as [`super::IntDot::dot`] asserts.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot_avx2(w: &[i8], lane_scales: &[f32], x: &[i16], x_scales: &[f32]) -> f32 {
        // Half `h` of block `b`: lanes `8h..8h + 8`.
        macro_rules! half {
            ($b:expr, $h:expr) => {{
                let (b, h) = ($b, $h);
                // SAFETY: block `b` is inside every slice (the caller's lengths).
                unsafe {
                    let at = b * BLOCK + 16 * h;
                    let w16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.as_ptr().add(at).cast()));
                    let x16 = _mm256_loadu_si256(x.as_ptr().add(at).cast());
                    let pairs = _mm256_cvtepi32_ps(_mm256_madd_epi16(w16, x16));
                    let x_scale = _mm256_set1_ps(*x_scales.get_unchecked(b));
                    _mm256_mul_ps(pairs, _mm256_mul_ps(_mm256_loadu_ps(lane_scales.as_ptr().add(16 * b + 8 * h)), x_scale))
                }
            }};
        }
        let zero = _mm256_setzero_ps();
        let (mut even_low, mut even_high, mut odd_low, mut odd_high) = (zero, zero, zero, zero);
        let blocks = x_scales.len();
        for pair in 0..blocks / 2 {
            even_low = _mm256_add_ps(even_low, half!(2 * pair, 0));
            even_high = _mm256_add_ps(even_high, half!(2 * pair, 1));
            odd_low = _mm256_add_ps(odd_low, half!(2 * pair + 1, 0));
            odd_high = _mm256_add_ps(odd_high, half!(2 * pair + 1, 1));
        }
        if blocks % 2 == 1 {
            even_low = _mm256_add_ps(even_low, half!(blocks - 1, 0));
            even_high = _mm256_add_ps(even_high, half!(blocks - 1, 1));
        }
        let (low, high) = (_mm256_add_ps(even_low, odd_low), _mm256_add_ps(even_high, odd_high));
        fold_eight(_mm256_add_ps(low, high))
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

    /// simd128 is on for the whole build (`.cargo/config.toml`), so this is safe to call.
    pub(super) fn dot(w: &[i8], lane_scales: &[f32], x: &[i16], x_scales: &[f32]) -> f32 {
        let mut lanes = [[f32x4_splat(0.0); 4]; 2]; // [even or odd block][lanes 4g..4g + 4]
        let blocks = w.chunks_exact(BLOCK).zip(x.chunks_exact(BLOCK)).zip(lane_scales.chunks_exact(16)).zip(x_scales);
        for (b, (((w, x), lane_scales), &x_scale)) in blocks.enumerate() {
            // SAFETY: each load reads 16 bytes inside the block's 32 bytes of `w`, 64 of `x` or 64 of scales.
            let (w_low, w_high) = unsafe { (v128_load(w.as_ptr().cast()), v128_load(w.as_ptr().add(16).cast())) };
            let w16 = [
                i16x8_extend_low_i8x16(w_low),
                i16x8_extend_high_i8x16(w_low),
                i16x8_extend_low_i8x16(w_high),
                i16x8_extend_high_i8x16(w_high),
            ];
            for (g, (lanes, w16)) in lanes[b % 2].iter_mut().zip(w16).enumerate() {
                // SAFETY: as above, values and scales `4g..` of the block.
                let (x16, scales) = unsafe { (v128_load(x.as_ptr().add(8 * g).cast()), v128_load(lane_scales.as_ptr().add(4 * g).cast())) };
                let pairs = f32x4_convert_i32x4(i32x4_dot_i16x8(w16, x16));
                *lanes = f32x4_add(*lanes, f32x4_mul(pairs, f32x4_mul(scales, f32x4_splat(x_scale))));
            }
        }
        let sum: [v128; 4] = std::array::from_fn(|g| f32x4_add(lanes[0][g], lanes[1][g]));
        let four = f32x4_add(f32x4_add(sum[0], sum[2]), f32x4_add(sum[1], sum[3]));
        let two = f32x4_add(four, i32x4_shuffle::<2, 3, 2, 3>(four, four));
        f32x4_extract_lane::<0>(two) + f32x4_extract_lane::<1>(two)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signed bytes, and a scale per 16 spread over its 8 lanes.
    fn weights(n: usize, seed: usize) -> (Vec<i8>, Vec<f32>) {
        let w = (0..n).map(|i| ((i * 37 + seed * 11) % 256) as u8 as i8).collect();
        let lane_scales = (0..n / 2).map(|lane| 0.01 + (lane / 8 % 5) as f32 * 0.003).collect();
        (w, lane_scales)
    }

    fn activations(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * if i % 97 == 0 { 30.0 } else { 1.0 }).collect()
    }

    /// Every path this CPU runs, `here`'s choice and the ones below it.
    fn paths_here() -> Vec<IntDot> {
        let mut paths = vec![IntDot::here()];
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            paths.push(IntDot::Avx2);
        }
        paths
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits_as_the_portable_loop() {
        for n in [32, 64, 576] {
            let (w, lane_scales) = weights(n, 3);
            let x = QuantizedRows::new(&activations(n));
            let expected = dot_portable(&w, &lane_scales, &x.q, &x.scales);
            for path in paths_here() {
                assert_eq!(path.dot(&w, &lane_scales, &x.q, &x.scales).to_bits(), expected.to_bits(), "{path:?}, {n} values");
            }
        }
    }

    #[test]
    fn the_integer_product_is_the_product_of_the_dequantized_values() {
        let n = 256;
        let (w, lane_scales) = weights(n, 5);
        let x = QuantizedRows::new(&activations(n));
        let expected: f64 =
            (0..n).map(|i| w[i] as f64 * lane_scales[i / 32 * 16 + i % 32 / 2] as f64 * x.q[i] as f64 * x.scales[i / 32] as f64).sum();
        let found = IntDot::here().dot(&w, &lane_scales, &x.q, &x.scales) as f64;
        assert!((found - expected).abs() <= 1e-5 * expected.abs().max(1.0), "{found} vs {expected}");
    }

    #[test]
    fn quantized_activations_stay_within_half_a_step_of_their_block_largest_value() {
        let x = activations(256);
        let q = QuantizedRows::new(&x);
        for ((block, q), &scale) in x.chunks_exact(BLOCK).zip(q.q.chunks_exact(BLOCK)).zip(&q.scales) {
            let largest = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (&v, &q) in block.iter().zip(q) {
                assert!((v - scale * q as f32).abs() <= largest / 65534.0 * 1.001, "{v} vs {}", scale * q as f32);
            }
        }
    }

    #[test]
    fn a_non_finite_activation_makes_its_products_non_finite() {
        let mut x = activations(64);
        x[40] = f32::INFINITY;
        let q = QuantizedRows::new(&x);
        let (w, lane_scales) = weights(64, 1);
        assert!(!IntDot::here().dot(&w, &lane_scales, &q.q, &q.scales).is_finite());
        assert!(q.scales[0].is_finite(), "the other block keeps its scale");
    }
}
