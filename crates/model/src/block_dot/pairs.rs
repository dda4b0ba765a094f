//! How each GGUF type's blocks become [`Pair`]s for `block_dot.rs`: two blocks of 32 weights as
//! 64 unsigned bytes, their quads' scales and their minimums, read straight from the row's bytes
//! as `quant_dot.rs` unpacks them (the same values, offsets aside).

use std::arch::x86_64::*;

use crate::block_bytes::{KScales, half, half_bits, k_scales, u32_at};

/// Two blocks of 32 weights `w = scale * (q - offset) + min` in registers: `q` 64 unsigned bytes
/// (the first block's values in order, then the second's), the scale of each quad (lanes 0-7 the first block's; for [`Blocks::ONE_SCALE`] types each
/// block's one scale `d` instead, as the f16 bits of the first in the low half), the two minimums.
pub(super) struct Pair {
    pub q: __m512i,
    pub scales: __m512,
    pub d_bits: u32,
    pub mins: [f32; 2],
}

impl Pair {
    // SAFETY: all-zero bits are zeros in every field.
    pub const ZERO: Self = unsafe { std::mem::zeroed() };
}

/// A GGUF type read a pair of blocks of 32 at a time, as `quant_dot.rs` unpacks it.
pub(super) trait Blocks {
    /// Bytes of one of the type's blocks (a K-quant's super-block of 256 values).
    const BYTES: usize;
    /// Blocks of 32 values in it.
    const SUBS: usize;
    /// Bytes a pair of blocks of 32 spans (for asking for them ahead).
    const PAIR_BYTES: usize = if Self::SUBS == 1 { 2 * Self::BYTES } else { 2 * Self::BYTES / Self::SUBS };
    /// `log2` of what each byte `q` holds over the weight's signed value, if anything (`vpdpbusd`
    /// reads the weights' bytes unsigned).
    const OFFSET_SHIFT: Option<i32> = None;
    /// Whether the blocks have minimums (`quant_dot::has_minimums`).
    const HAS_MINS: bool = true;
    /// Whether a block of 32 has one scale, [`Pair::d`].
    const ONE_SCALE: bool = false;

    /// What a type block's blocks of 32 share, read once for all of them (a K-quant's scales and
    /// minimums, in registers).
    type Meta: Copy;

    /// A [`Self::Meta`] to overwrite.
    fn no_meta() -> Self::Meta;

    /// The [`Self::Meta`] of the type's block at `at`.
    ///
    /// # Safety
    /// `at` starts [`Self::BYTES`] readable bytes; the CPU has what [`available`](super::available) checks.
    unsafe fn meta(at: *const u8) -> Self::Meta;

    /// Blocks `2p` and `2p + 1` of the type's block at `at`, whose [`Self::Meta`] is `meta`; for
    /// a legacy type (one block of 32 a type block), the blocks at `at` and `at + BYTES`, or with
    /// `both` false the one at `at` (the second's lanes then hold anything).
    ///
    /// # Safety
    /// As [`Self::meta`], and for a legacy pair with `both`, twice [`Self::BYTES`].
    unsafe fn pair(at: *const u8, meta: Self::Meta, p: usize, both: bool) -> Pair;
}

/// The two one-scale blocks' `d` of each row (their [`Pair::d_bits`]; four rows at most), row `r`'s
/// in lanes `2r` and `2r + 1`, exactly: all rows' halves widened by one instruction.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
pub(super) fn one_scales<const R: usize>(d_bits: [u32; R]) -> __m256 {
    const { assert!(R <= 4) };
    let bits = |r: usize| if r < R { d_bits[r] as u64 } else { 0 };
    _mm256_cvtph_ps(_mm_set_epi64x((bits(2) | bits(3) << 32) as i64, (bits(0) | bits(1) << 32) as i64))
}

/// Lanes `2r` and `2r + 1` of `v` in lanes 0-7 and 8-15: row `r`'s pair of [`one_scales`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
pub(super) fn row_of(v: __m256, r: usize) -> __m512 {
    let lanes = _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(2 * r as i32), _mm512_set1_epi32(2 * r as i32 + 1));
    _mm512_permutexvar_ps(lanes, _mm512_castps256_ps512(v))
}

/// `q` less `T`'s offset in every byte: the values as signed bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
pub(super) fn signed<T: Blocks>(q: __m512i) -> __m512i {
    match T::OFFSET_SHIFT {
        Some(shift) => _mm512_sub_epi8(q, _mm512_set1_epi8((1i32 << shift) as i8)),
        None => q,
    }
}

/// Two blocks' 16 bytes of nibbles as 64 values 0..16: value `j` of each block the low nibble of
/// its byte `j`, value `16 + j` the high one.
///
/// # Safety
/// 16 readable bytes at `first` and at `second`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn nibble_pair(first: *const u8, second: *const u8) -> __m512i {
    // SAFETY: the caller's bytes.
    let bytes = unsafe {
        let first = _mm512_broadcast_i32x4(_mm_loadu_si128(first.cast()));
        _mm512_mask_broadcast_i32x4(first, 0xFF00, _mm_loadu_si128(second.cast()))
    }; // 128-bit lanes [first | first | second | second]
    let shifts = _mm512_set_epi64(0x0004_0004_0004_0004, 0x0004_0004_0004_0004, 0, 0, 0x0004_0004_0004_0004, 0x0004_0004_0004_0004, 0, 0);
    _mm512_and_si512(_mm512_srlv_epi16(bytes, shifts), _mm512_set1_epi8(0xF))
}

/// 32 bytes' nibbles as 64 values 0..16: the low nibbles, then the high ones (a K-quant's run).
///
/// # Safety
/// 32 readable bytes at `at`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn nibble_run(at: *const u8) -> __m512i {
    // SAFETY: the caller's bytes.
    let run = unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(at.cast())) };
    _mm512_and_si512(_mm512_srlv_epi16(run, halves_shifted(0, 4)), _mm512_set1_epi8(0xF))
}

/// 16-bit shift counts: `low` in the lower 256 bits, `high` in the upper.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
fn halves_shifted(low: i16, high: i16) -> __m512i {
    _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(low)), _mm256_set1_epi16(high), 1)
}

/// `q` with 16 added to the values whose bit is set in `bits` (Q5's fifth bits).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
fn with_fifth_bits(q: __m512i, bits: __mmask64) -> __m512i {
    _mm512_mask_add_epi8(q, bits, q, _mm512_set1_epi8(16))
}

/// Two legacy Q5 blocks' fifth bits (`qh` at `at` in each), bit `j` for byte `j` of the pair.
///
/// # Safety
/// Four readable bytes at `first + at` and at `second + at`.
#[inline]
unsafe fn fifth_bits(first: *const u8, second: *const u8, at: usize) -> __mmask64 {
    // SAFETY: the caller's bytes.
    unsafe { u32_at(first.add(at)) as u64 | (u32_at(second.add(at)) as u64) << 32 }
}

/// A legacy type: `$q` the 64 bytes of the blocks at `$first` and `$second`, `$min` a block's
/// minimum from its bytes at `$at`.
macro_rules! legacy {
    ($name:ident, $bytes:expr, |$first:ident, $second:ident| q: $q:expr, |$at:ident| min: $min:expr $(; const $extra:ident: $ty:ty = $value:expr)*) => {
        pub(super) struct $name;
        impl Blocks for $name {
            const BYTES: usize = $bytes;
            const SUBS: usize = 1;
            const ONE_SCALE: bool = true;
            $(const $extra: $ty = $value;)*
            type Meta = ();
            fn no_meta() {}
            unsafe fn meta(_: *const u8) {}
            #[inline]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
            unsafe fn pair($first: *const u8, _: (), _: usize, both: bool) -> Pair {
                // SAFETY: the type's blocks at `first` and `second` (the caller's bytes).
                unsafe {
                    let $second = if both { $first.add($bytes) } else { $first };
                    let d_bits = half_bits($first) | half_bits($second) << 16;
                    let mins = [{ let $at = $first; $min }, { let $at = $second; $min }];
                    Pair { q: $q, scales: _mm512_setzero_ps(), d_bits, mins }
                }
            }
        }
    };
}

legacy!(Q4_1, 20, |first, second| q: nibble_pair(first.add(4), second.add(4)), |at| min: half(at.add(2)));
// Q5_0: its values are stored plus 16.
legacy!(
    Q5_0, 22,
    |first, second| q: with_fifth_bits(nibble_pair(first.add(6), second.add(6)), fifth_bits(first, second, 2)),
    |_at| min: 0.0;
    const OFFSET_SHIFT: Option<i32> = Some(4);
    const HAS_MINS: bool = false
);
legacy!(Q5_1, 24, |first, second| q: with_fifth_bits(nibble_pair(first.add(8), second.add(8)), fifth_bits(first, second, 4)), |at| min: half(at.add(2)));
/// Blocks `2p` and `2p + 1`'s scales in lanes 0-7 and 8-15, and their minimums.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
fn k_pair_scales(k: KScales, p: usize) -> (__m512, [f32; 2]) {
    let lanes = _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(2 * p as i32), _mm512_set1_epi32(2 * p as i32 + 1));
    (_mm512_permutexvar_ps(lanes, _mm512_castps256_ps512(k.scales)), [k.mins[2 * p], k.mins[2 * p + 1]])
}

/// A K-quant with Q4_K's scales and minimums (`$q` its blocks `2 $p` and `2 $p + 1` from its block at `$at`).
macro_rules! k_quant {
    ($name:ident, $bytes:expr, |$at:ident, $p:ident| $q:expr) => {
        pub(super) struct $name;
        impl Blocks for $name {
            const BYTES: usize = $bytes;
            const SUBS: usize = 8;
            type Meta = KScales;
            fn no_meta() -> KScales {
                KScales::ZERO
            }
            #[inline]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
            unsafe fn meta(at: *const u8) -> KScales {
                // SAFETY: the caller's block.
                unsafe { k_scales(at) }
            }
            #[inline]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
            unsafe fn pair($at: *const u8, k: KScales, $p: usize, _: bool) -> Pair {
                // SAFETY: the type's block at `at` (the caller's bytes).
                let q = unsafe { $q };
                let (scales, mins) = k_pair_scales(k, $p);
                Pair { q, scales, d_bits: 0, mins }
            }
        }
    };
}

// Q4_K: run `p` of 32 bytes from 16 holds blocks `2p` (low nibbles) and `2p + 1`. Q5_K: the same
// from 48, and 32 bytes of fifth bits from 16 (bit `b` of byte `l` for value `l` of block `b`).
k_quant!(Q4K, 144, |at, p| nibble_run(at.add(16 + 32 * p)));
k_quant!(Q5K, 176, |at, p| with_fifth_bits(
    nibble_run(at.add(48 + 32 * p)),
    _mm512_test_epi8_mask(
        _mm512_broadcast_i64x4(_mm256_loadu_si256(at.add(16).cast())),
        _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8(1 << (2 * p))), _mm256_set1_epi8((1u8 << (2 * p + 1)) as i8), 1)
    )
));

pub(super) struct Q6K;
impl Blocks for Q6K {
    const BYTES: usize = 210;
    const SUBS: usize = 8;
    // Six bits read unsigned: each value plus 32.
    const OFFSET_SHIFT: Option<i32> = Some(5);
    const HAS_MINS: bool = false;
    /// `d` times each of the 16 signed scale bytes (one per 16 values), a lane each.
    type Meta = __m512;
    fn no_meta() -> __m512 {
        // SAFETY: all-zero bits are sixteen zeros.
        unsafe { std::mem::zeroed() }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn meta(at: *const u8) -> __m512 {
        // SAFETY: a Q6_K block at `at`: 16 scale bytes from 192, `d` at 208.
        let (bytes, d) = unsafe { (_mm_loadu_si128(at.add(192).cast()), half(at.add(208))) };
        _mm512_mul_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)))
    }
    /// Half `p / 2` of 128 values; within it, blocks `s` and `s + 1` for `s = 2 (p % 2)`: the low
    /// (`s` 0) or high nibbles of the half's 64 bytes of `ql` (32 a block), two bits of the half's
    /// 32 bytes of `qh` from bit `2 s` and `2 s + 2`; scales `4p` to `4p + 3`, a quarter each.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn pair(at: *const u8, scales: __m512, p: usize, _: bool) -> Pair {
        let (half_at, s) = (p / 2, 2 * (p % 2));
        // SAFETY: a Q6_K block at `at`: `ql` from 0, `qh` from 128.
        let (ql, qh) = unsafe {
            (_mm512_loadu_si512(at.add(64 * half_at).cast()), _mm512_broadcast_i64x4(_mm256_loadu_si256(at.add(128 + 32 * half_at).cast())))
        };
        let low = if s == 0 { ql } else { _mm512_srli_epi16(ql, 4) };
        let high = _mm512_and_si512(_mm512_srlv_epi16(qh, halves_shifted(2 * s as i16, 2 * s as i16 + 2)), _mm512_set1_epi8(3));
        let q = _mm512_or_si512(_mm512_and_si512(low, _mm512_set1_epi8(0xF)), _mm512_slli_epi16(high, 4));
        let lanes = _mm512_add_epi32(_mm512_set1_epi32(4 * p as i32), _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0));
        Pair { q, scales: _mm512_permutexvar_ps(lanes, scales), d_bits: 0, mins: [0.0; 2] }
    }
}
