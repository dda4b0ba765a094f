//! How each GGUF type's blocks become [`Block`]s for `block_dot_avx2.rs`: a block of 32 weights as
//! two registers of 16 signed 16-bit values, its quads' scales and its minimum, read straight from
//! the row's bytes as `quant_dot.rs` unpacks them (the same values).

use std::arch::x86_64::*;

use crate::block_bytes::{KScales, half, k_scales, u32_at};

/// A block of 32 weights `w = scale * q + min` in registers: `w` the values 0-15 and 16-31 as
/// signed 16-bit lanes, the scale of each quad in the order `block_dot_avx2.rs` sums them,
/// `[0 1 4 5 | 2 3 6 7]` (for [`Blocks::ONE_SCALE`] types the block's one scale `d` instead), the
/// minimum.
pub(super) struct Block {
    pub w: [__m256i; 2],
    pub scales: __m256,
    pub d: f32,
    pub min: f32,
}

/// A GGUF type read a block of 32 at a time, as `quant_dot.rs` unpacks it.
pub(super) trait Blocks {
    /// Bytes of one of the type's blocks (a K-quant's super-block of 256 values).
    const BYTES: usize;
    /// Blocks of 32 values in it.
    const SUBS: usize;
    /// Whether the blocks have minimums (`quant_dot::has_minimums`).
    const HAS_MINS: bool = true;
    /// Whether a block of 32 has one scale, [`Block::d`].
    const ONE_SCALE: bool = true;

    /// What a type block's blocks of 32 share, read once for all of them (a K-quant's scales and
    /// minimums, in registers).
    type Meta: Copy;

    /// A [`Self::Meta`] to overwrite.
    fn no_meta() -> Self::Meta;

    /// The [`Self::Meta`] of the type's block at `at`.
    ///
    /// # Safety
    /// `at` starts [`Self::BYTES`] readable bytes; the CPU has AVX2 and F16C.
    unsafe fn meta(at: *const u8) -> Self::Meta;

    /// Block `s` of the type's block at `at`, whose [`Self::Meta`] is `meta`.
    ///
    /// # Safety
    /// As [`Self::meta`].
    unsafe fn block(at: *const u8, meta: Self::Meta, s: usize) -> Block;
}

/// The 16 bytes at `at` as 16-bit lanes.
///
/// # Safety
/// 16 readable bytes at `at`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn widened(at: *const u8) -> __m256i {
    // SAFETY: the caller's bytes.
    _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(at.cast()) })
}

/// Widened bytes' low nibbles.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn low_nibbles(v: __m256i) -> __m256i {
    _mm256_and_si256(v, _mm256_set1_epi16(0xF))
}

/// Widened bytes' high nibbles.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn high_nibbles(v: __m256i) -> __m256i {
    _mm256_srli_epi16::<4>(v)
}

/// A legacy block's 16 bytes of nibbles at `at`: value `j` the low nibble of byte `j`, value
/// `16 + j` its high one.
///
/// # Safety
/// 16 readable bytes at `at`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn nibbles(at: *const u8) -> [__m256i; 2] {
    // SAFETY: the caller's bytes.
    let v = unsafe { widened(at) };
    [low_nibbles(v), high_nibbles(v)]
}

/// `w` with 16 added to each value whose bit is set in `bits` (a legacy Q5's fifth bits, bit `j`
/// for value `j`).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn with_fifth_bits(w: [__m256i; 2], bits: u32) -> [__m256i; 2] {
    let lane_bits = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, i16::MIN);
    let sixteen = |half: u32| {
        let set = _mm256_cmpeq_epi16(_mm256_and_si256(_mm256_set1_epi16(half as u16 as i16), lane_bits), lane_bits);
        _mm256_and_si256(set, _mm256_set1_epi16(16))
    };
    [_mm256_or_si256(w[0], sixteen(bits)), _mm256_or_si256(w[1], sixteen(bits >> 16))]
}

/// Each value less `by`: Q4_0's and Q5_0's values, stored plus 8 and 16, Q6_K's plus 32.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn offset(w: [__m256i; 2], by: i16) -> [__m256i; 2] {
    w.map(|w| _mm256_sub_epi16(w, _mm256_set1_epi16(by)))
}

/// A legacy type: `$w` the values of the block at `$at`, `$min` its minimum.
macro_rules! legacy {
    ($name:ident, $bytes:expr, |$at:ident| w: $w:expr, min: $min:expr $(; const $extra:ident: $ty:ty = $value:expr)*) => {
        pub(super) struct $name;
        impl Blocks for $name {
            const BYTES: usize = $bytes;
            const SUBS: usize = 1;
            $(const $extra: $ty = $value;)*
            type Meta = ();
            fn no_meta() {}
            unsafe fn meta(_: *const u8) {}
            #[inline]
            #[target_feature(enable = "avx2,f16c")]
            unsafe fn block($at: *const u8, _: (), _: usize) -> Block {
                // SAFETY: the type's block at `at` (the caller's bytes).
                unsafe { Block { w: $w, scales: _mm256_setzero_ps(), d: half($at), min: $min } }
            }
        }
    };
}

legacy!(Q4_0, 18, |at| w: offset(nibbles(at.add(2)), 8), min: 0.0; const HAS_MINS: bool = false);
legacy!(Q4_1, 20, |at| w: nibbles(at.add(4)), min: half(at.add(2)));
legacy!(Q5_0, 22, |at| w: offset(with_fifth_bits(nibbles(at.add(6)), u32_at(at.add(2))), 16), min: 0.0; const HAS_MINS: bool = false);
legacy!(Q5_1, 24, |at| w: with_fifth_bits(nibbles(at.add(8)), u32_at(at.add(4))), min: half(at.add(2)));
legacy!(
    Q8_0, 34,
    |at| w: [_mm256_cvtepi8_epi16(_mm_loadu_si128(at.add(2).cast())), _mm256_cvtepi8_epi16(_mm_loadu_si128(at.add(18).cast()))],
    min: 0.0;
    const HAS_MINS: bool = false
);

/// Lane `s` of `v` in every lane.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn every_lane(v: __m256, s: usize) -> __m256 {
    _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(s as i32))
}

/// A K-quant with Q4_K's scales and minimums (`$w` its block `$s` from its block at `$at`): one
/// scale a block of 32, `d * sc`, in every lane.
macro_rules! k_quant {
    ($name:ident, $bytes:expr, |$at:ident, $s:ident| $w:expr) => {
        pub(super) struct $name;
        impl Blocks for $name {
            const BYTES: usize = $bytes;
            const SUBS: usize = 8;
            const ONE_SCALE: bool = false;
            type Meta = KScales;
            fn no_meta() -> KScales {
                KScales::ZERO
            }
            #[inline]
            #[target_feature(enable = "avx2,f16c")]
            unsafe fn meta(at: *const u8) -> KScales {
                // SAFETY: the caller's block.
                unsafe { k_scales(at) }
            }
            #[inline]
            #[target_feature(enable = "avx2,f16c")]
            unsafe fn block($at: *const u8, k: KScales, $s: usize) -> Block {
                // SAFETY: the type's block at `at` (the caller's bytes).
                let w = unsafe { $w };
                Block { w, scales: every_lane(k.scales, $s), d: 0.0, min: k.mins[$s] }
            }
        }
    };
}

/// Block `s` of a Q4_K-like run layout from `at`: run `s / 2` of 32 bytes holds block `s` (even:
/// the low nibbles; odd: the high ones).
///
/// # Safety
/// 32 readable bytes at `at + 32 (s / 2)`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn k_nibbles(at: *const u8, s: usize) -> [__m256i; 2] {
    // SAFETY: the caller's bytes.
    let run = unsafe { [widened(at.add(32 * (s / 2))), widened(at.add(32 * (s / 2) + 16))] };
    if s.is_multiple_of(2) { run.map(|v| low_nibbles(v)) } else { run.map(|v| high_nibbles(v)) }
}

/// Bits `shift` and up of widened bytes, moved to bit `to` and masked by `mask` there.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn bits_to(v: __m256i, shift: i32, to: i32, mask: i16) -> __m256i {
    let moved =
        if shift <= to { _mm256_sll_epi16(v, _mm_cvtsi32_si128(to - shift)) } else { _mm256_srl_epi16(v, _mm_cvtsi32_si128(shift - to)) };
    _mm256_and_si256(moved, _mm256_set1_epi16(mask))
}

// Q4_K: runs from 16. Q5_K: runs from 48, and 32 bytes of fifth bits from 16 (bit `s` of byte `l`
// for value `l` of block `s`).
k_quant!(Q4K, 144, |at, s| k_nibbles(at.add(16), s));
k_quant!(Q5K, 176, |at, s| {
    let (w, qh) = (k_nibbles(at.add(48), s), [widened(at.add(16)), widened(at.add(32))]);
    [0, 1].map(|h| _mm256_or_si256(w[h], bits_to(qh[h], s as i32, 4, 16)))
});

pub(super) struct Q6K;
impl Blocks for Q6K {
    const BYTES: usize = 210;
    const SUBS: usize = 8;
    const HAS_MINS: bool = false;
    const ONE_SCALE: bool = false;
    /// `d` times each of the 16 signed scale bytes (one per 16 values), a lane each.
    type Meta = [__m256; 2];
    fn no_meta() -> [__m256; 2] {
        // SAFETY: all-zero bits are zeros.
        unsafe { std::mem::zeroed() }
    }
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn meta(at: *const u8) -> [__m256; 2] {
        // SAFETY: a Q6_K block at `at`: 16 scale bytes from 192, `d` at 208.
        let (bytes, d) = unsafe { (_mm_loadu_si128(at.add(192).cast()), half(at.add(208))) };
        let eight = |bytes: __m128i| _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)));
        [eight(bytes), eight(_mm_unpackhi_epi64(bytes, bytes))]
    }
    /// Half `s / 4` of 128 values; within it, block `k = s % 4`: the low (`k` 0, 1) or high
    /// nibbles of `ql`'s bytes `32 (k % 2)` on, two bits of `qh` from bit `2k`; scales `2k` and
    /// `2k + 1` of the half's 8 (16 values each).
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn block(at: *const u8, scales: [__m256; 2], s: usize) -> Block {
        let (half_at, k) = (s / 4, s % 4);
        // SAFETY: a Q6_K block at `at`: `ql` from 0, `qh` from 128.
        let (ql, qh) = unsafe {
            let (ql, qh) = (at.add(64 * half_at + 32 * (k % 2)), at.add(128 + 32 * half_at));
            ([widened(ql), widened(ql.add(16))], [widened(qh), widened(qh.add(16))])
        };
        let low = if k < 2 { ql.map(|v| low_nibbles(v)) } else { ql.map(|v| high_nibbles(v)) };
        let w = [0, 1].map(|h| _mm256_or_si256(low[h], bits_to(qh[h], 2 * k as i32, 4, 0x30)));
        // Quads 0-3 take scale `2k`, 4-7 scale `2k + 1`, in the sums' order [0 1 4 5 | 2 3 6 7].
        let lanes = _mm256_setr_epi32(0, 0, 1, 1, 0, 0, 1, 1);
        let scales = _mm256_permutevar8x32_ps(scales[half_at], _mm256_add_epi32(lanes, _mm256_set1_epi32(2 * k as i32)));
        Block { w: offset(w, 32), scales, d: 0.0, min: 0.0 }
    }
}
