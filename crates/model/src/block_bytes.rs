//! What the products straight from the blocks (`block_dot.rs`, `block_dot_avx2.rs`) read from a
//! GGUF block's bytes besides its weights: halves, u32s and the K-quants' packed scales, on AVX2
//! and F16C (which every CPU those products run on has).
#![allow(unsafe_code)]

use std::arch::x86_64::*;

/// The bits of the f16 at `at`.
///
/// # Safety
/// Two readable bytes at `at`.
#[inline]
pub(crate) unsafe fn half_bits(at: *const u8) -> u32 {
    // SAFETY: the caller's bytes.
    unsafe { at.cast::<u16>().read_unaligned() as u32 }
}

/// The f16 at `at`, exactly.
///
/// # Safety
/// Two readable bytes at `at`; F16C.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn half(at: *const u8) -> f32 {
    // SAFETY: the caller's bytes.
    let bits = unsafe { half_bits(at) };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// The f16 at `at` in every lane, exactly. Where a product's sums take the value, this, not
/// [`half`]: of `half`'s vector only the lowest 16 bits count, and the compiler reads them into
/// whichever register is at hand, keeping its other lanes; when that was a running sum, each
/// block's scale waited on the block before's sums, a chain through the whole row.
///
/// # Safety
/// Two readable bytes at `at`; F16C.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn half_lanes(at: *const u8) -> __m256 {
    // SAFETY: the caller's bytes.
    _mm256_cvtph_ps(_mm_set1_epi16(unsafe { half_bits(at) } as i16))
}

/// The u32 at `at`.
///
/// # Safety
/// Four readable bytes at `at`.
#[inline]
pub(crate) unsafe fn u32_at(at: *const u8) -> u32 {
    // SAFETY: the caller's bytes.
    unsafe { at.cast::<u32>().read_unaligned() }
}

/// Q4_K's and Q5_K's 8 scales `d * sc` of their blocks of 32, a lane each, and minimums `-dmin * m`.
#[derive(Clone, Copy)]
pub(crate) struct KScales {
    pub scales: __m256,
    pub mins: [f32; 8],
}

impl KScales {
    // SAFETY: all-zero bits are eight zeros.
    pub const ZERO: Self = unsafe { std::mem::zeroed() };
}

/// The [`KScales`] of the Q4_K or Q5_K block at `at`: its 12 bytes of 6-bit scales and minimums
/// rearranged as 8 bytes of each in four u32 (as llama.cpp's own products do), then to floats; the
/// same values `scale_min_k4` gives.
///
/// # Safety
/// 16 readable bytes at `at`; F16C.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn k_scales(at: *const u8) -> KScales {
    const LOW_SIX: u32 = 0x3f3f_3f3f;
    const LOW_FOUR: u32 = 0x0f0f_0f0f;
    const LOW_TWO: u32 = 0x0303_0303;
    // SAFETY: `d`, `dmin` and 12 bytes of scales are the block's first 16 bytes.
    let (d, dmin, [a, b, c]) = unsafe { (half_lanes(at), half_lanes(at.add(2)), [4, 8, 12].map(|i| u32_at(at.add(i)))) };
    let scales = [a & LOW_SIX, (c & LOW_FOUR) | (((a >> 6) & LOW_TWO) << 4)];
    let mins = [b & LOW_SIX, ((c >> 4) & LOW_FOUR) | (((b >> 6) & LOW_TWO) << 4)];
    let floats = |[low, high]: [u32; 2]| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, high as i32, low as i32)));
    let mut k = KScales { scales: _mm256_mul_ps(d, floats(scales)), mins: [0.0; 8] };
    // `-dmin` by its sign bit: the same value as negating the scalar.
    let minus_dmin = _mm256_xor_ps(dmin, _mm256_set1_ps(-0.0));
    // SAFETY: 8 floats into 8.
    unsafe { _mm256_storeu_ps(k.mins.as_mut_ptr(), _mm256_mul_ps(minus_dmin, floats(mins))) };
    k
}
