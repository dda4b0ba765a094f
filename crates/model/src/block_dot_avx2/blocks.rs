//! How each GGUF type's blocks become [`Block`]s for `block_dot_avx2.rs`: a block of 32 weights as
//! two registers of 16 signed 16-bit values, its quads' scales and its minimum, read straight from
//! the row's bytes as `quant_dot.rs` unpacks them (the same values).

use std::arch::x86_64::*;

use crate::block_bytes::{KScales, half_lanes, k_scales, u32_at};

/// A block of 32 weights `w = scale * q + min` in registers: `w` the values 0-15 and 16-31 as
/// signed 16-bit lanes, the scale of each quad in the order `block_dot_avx2.rs` sums them,
/// `[0 1 4 5 | 2 3 6 7]` (a legacy type's one scale `d` in every lane), the minimum.
pub(super) struct Block {
    pub w: [__m256i; 2],
    pub scales: __m256,
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
    /// Whether a type block's blocks of 32 are written out one by one rather than looped over in
    /// pairs (`block_dot_avx2.rs`). Where a block is read by its number, not only its parity
    /// (Q5_K's fifth bits, Q6_K's halves, shifts and scales), the loop left that to branches,
    /// shifts by a register and the scales stored to the stack every block; written out, those
    /// are constants (Q5_K and Q6_K 23% fewer nanoseconds a block). Q4_K's blocks differ by parity
    /// alone, and it ran 7% slower written out.
    const WRITTEN_OUT: bool = false;

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

/// A legacy Q5 block's values as bytes, value `j` in byte `j`: the nibbles of the 16 bytes at
/// `qs` (the low ones, then the high ones) and, from the four bytes at `qh`, each value's fifth bit
/// as a byte of all ones where it is set (llama.cpp's spreading of the bits: byte `j` takes the
/// byte holding bit `j` and every other bit set, then equals all ones or not). Put together in
/// bytes and widened once: fewer operations than each bit tested in 16-bit lanes.
///
/// # Safety
/// 16 readable bytes at `qs`, four at `qh`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn q5_bytes(qs: *const u8, qh: *const u8) -> (__m256i, __m256i) {
    // SAFETY: the caller's bytes.
    let (v, bits) = unsafe { (_mm_loadu_si128(qs.cast()), u32_at(qh)) };
    let low_four = _mm_set1_epi8(0xF);
    let nibbles = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16::<4>(v), low_four), _mm_and_si128(v, low_four));
    let each_byte = _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0);
    let spread = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), each_byte);
    let all_but_own_bit = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
    (nibbles, _mm256_cmpeq_epi8(_mm256_or_si256(spread, all_but_own_bit), _mm256_set1_epi8(-1)))
}

/// Bytes as two registers of 16-bit lanes, signed (`SIGNED`) or not.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn lanes<const SIGNED: bool>(v: __m256i) -> [__m256i; 2] {
    let halves = [_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v)];
    halves.map(|h| if SIGNED { _mm256_cvtepi8_epi16(h) } else { _mm256_cvtepu8_epi16(h) })
}

/// A Q5_0 block's values less 16 at `at`: `nibble | 0xf0` as a signed byte where the fifth bit is
/// clear (the nibble less 16), the nibble where it is set.
///
/// # Safety
/// A Q5_0 block at `at`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn q5_0(at: *const u8) -> [__m256i; 2] {
    // SAFETY: `qh` at 2, `qs` at 6.
    let (nibbles, fifth) = unsafe { q5_bytes(at.add(6), at.add(2)) };
    lanes::<true>(_mm256_or_si256(nibbles, _mm256_andnot_si256(fifth, _mm256_set1_epi8(0xf0u8 as i8))))
}

/// A Q5_1 block's values at `at`: the nibble plus 16 where the fifth bit is set.
///
/// # Safety
/// A Q5_1 block at `at`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn q5_1(at: *const u8) -> [__m256i; 2] {
    // SAFETY: `qh` at 4, `qs` at 8.
    let (nibbles, fifth) = unsafe { q5_bytes(at.add(8), at.add(4)) };
    lanes::<false>(_mm256_or_si256(nibbles, _mm256_and_si256(fifth, _mm256_set1_epi8(16))))
}

/// Each value less `by`: Q4_0's values, stored plus 8, Q6_K's plus 32.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn offset(w: [__m256i; 2], by: i16) -> [__m256i; 2] {
    w.map(|w| _mm256_sub_epi16(w, _mm256_set1_epi16(by)))
}

/// A Q4_1 or Q5_1 block's `d` in every lane and its minimum `m`, both from the block's first four
/// bytes as one read (as [`half_lanes`], so that no running sum waits on it).
///
/// # Safety
/// Four readable bytes at `at`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn d_and_min(at: *const u8) -> (__m256, f32) {
    // SAFETY: the caller's bytes.
    let d_m = _mm256_cvtph_ps(_mm_set1_epi32(unsafe { u32_at(at) } as i32));
    (_mm256_moveldup_ps(d_m), _mm256_cvtss_f32(_mm256_movehdup_ps(d_m)))
}

/// A legacy type: `$w` the values of the block at `$at`, `$scales_min` its scale in every lane
/// and its minimum.
macro_rules! legacy {
    ($name:ident, $bytes:expr, |$at:ident| w: $w:expr, scales_min: $scales_min:expr $(; const $extra:ident: $ty:ty = $value:expr)*) => {
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
                unsafe {
                    let (scales, min) = $scales_min;
                    Block { w: $w, scales, min }
                }
            }
        }
    };
}

legacy!(Q4_0, 18, |at| w: offset(nibbles(at.add(2)), 8), scales_min: (half_lanes(at), 0.0); const HAS_MINS: bool = false);
legacy!(Q4_1, 20, |at| w: nibbles(at.add(4)), scales_min: d_and_min(at));
legacy!(
    Q5_0, 22,
    |at| w: q5_0(at),
    scales_min: (half_lanes(at), 0.0);
    const HAS_MINS: bool = false
);
legacy!(Q5_1, 24, |at| w: q5_1(at), scales_min: d_and_min(at));
legacy!(
    Q8_0, 34,
    |at| w: [_mm256_cvtepi8_epi16(_mm_loadu_si128(at.add(2).cast())), _mm256_cvtepi8_epi16(_mm_loadu_si128(at.add(18).cast()))],
    scales_min: (half_lanes(at), 0.0);
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
    ($name:ident, $bytes:expr, |$at:ident, $s:ident| $w:expr $(; const $extra:ident: $ty:ty = $value:expr)*) => {
        pub(super) struct $name;
        impl Blocks for $name {
            const BYTES: usize = $bytes;
            const SUBS: usize = 8;
            $(const $extra: $ty = $value;)*
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
                Block { w, scales: every_lane(k.scales, $s), min: k.mins[$s] }
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
k_quant!(
    Q5K, 176,
    |at, s| {
        let (w, qh) = (k_nibbles(at.add(48), s), [widened(at.add(16)), widened(at.add(32))]);
        [0, 1].map(|h| _mm256_or_si256(w[h], bits_to(qh[h], s as i32, 4, 16)))
    };
    const WRITTEN_OUT: bool = true
);

pub(super) struct Q6K;
impl Blocks for Q6K {
    const BYTES: usize = 210;
    const SUBS: usize = 8;
    const HAS_MINS: bool = false;
    const WRITTEN_OUT: bool = true;
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
        let (bytes, d) = unsafe { (_mm_loadu_si128(at.add(192).cast()), half_lanes(at.add(208))) };
        let eight = |bytes: __m128i| _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)));
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
        Block { w: offset(w, 32), scales, min: 0.0 }
    }
}
