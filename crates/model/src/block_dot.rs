//! Decoding's products straight from a GGUF row's blocks, on AVX-512: each block of 32 weights
//! becomes 32 16-bit integers, 16 lane scales and a minimum in registers, never stored, and meets
//! every row of activations it is paired with while it is there. Several rows of `W` (or of `x`) go
//! through at once, so their sums are independent chains the CPU runs side by side.
//!
//! The arithmetic is `quant_dot.rs`'s unpacked row on `int_dot.rs`'s instructions, operation for
//! operation and in the same order (each block's pairs in i32, to f32, times lane scale times the
//! activations' scale, even and odd blocks apart, the same fold, the same minimums' sum): the same
//! bits, which the tests hold it to. Only where the values wait between the steps differs: the
//! unpacked row stored a row's bytes and 16 scales per block to read them back, which was most of
//! a token's time (docs/benchmarks.md).
//!
//! `unsafe` as in `int_dot.rs`: the intrinsics have no safe form; each read is inside a row whose
//! length [`dot_rows`] asserts, on features [`available`] found.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::gguf_quants::GgmlType;
use crate::int_dot::{BLOCK, QuantizedRows, fold_sixteen};
use crate::quant_dot::mins_dot;

/// Whether this CPU has what the products here are compiled for.
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("f16c")
}

/// Each of `rows` (whole rows of `ggml_type`, `row_bytes` each) dotted with each row of `xs`
/// (rows of `W`'s width) into `out` `[rows, n]`. `mins` is scratch for the rows' minimums, kept
/// between calls. `ggml_type` is one `quant_dot::has_packed_dot` takes; [`available`] said yes.
pub(crate) fn dot_rows(ggml_type: GgmlType, rows: &[u8], row_bytes: usize, xs: &QuantizedRows, out: &mut [f32], mins: &mut Vec<f32>) {
    assert!(available(), "AVX-512 BW/VL and F16C");
    // SAFETY: `available` found the features; `rows_of` asserts every length it reads by.
    unsafe {
        match ggml_type {
            GgmlType::Q4_0 => rows_of::<Q4_0>(rows, row_bytes, xs, out, mins),
            GgmlType::Q4_1 => rows_of::<Q4_1>(rows, row_bytes, xs, out, mins),
            GgmlType::Q5_0 => rows_of::<Q5_0>(rows, row_bytes, xs, out, mins),
            GgmlType::Q5_1 => rows_of::<Q5_1>(rows, row_bytes, xs, out, mins),
            GgmlType::Q8_0 => rows_of::<Q8_0>(rows, row_bytes, xs, out, mins),
            GgmlType::Q4K => rows_of::<Q4K>(rows, row_bytes, xs, out, mins),
            GgmlType::Q5K => rows_of::<Q5K>(rows, row_bytes, xs, out, mins),
            GgmlType::Q6K => rows_of::<Q6K>(rows, row_bytes, xs, out, mins),
            other => unreachable!("{} has no blocks to dot", other.name()),
        }
    }
}

/// Rows of `W` in groups sized so that each group's sums fit the 32 registers beside the block
/// being read: 4 rows of `W` against one row of `x` (Q8_0: one, [`Blocks::FOUR_ROWS`]), 2 against
/// 2, 1 against up to 4.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
fn rows_of<T: Blocks>(rows: &[u8], row_bytes: usize, xs: &QuantizedRows, out: &mut [f32], mins: &mut Vec<f32>) {
    let cols = row_bytes / T::BYTES * T::SUBS * BLOCK;
    let (n, count) = (xs.q.len() / cols.max(1), rows.len() / row_bytes.max(1));
    assert!(row_bytes.is_multiple_of(T::BYTES) && rows.len() == count * row_bytes && xs.q.len() == n * cols && out.len() == count * n);
    assert!(xs.scales.len() * BLOCK == xs.q.len() && xs.sums.len() == xs.scales.len());
    mins.resize(4 * (cols / BLOCK), 0.0);
    let group = |r: usize, j: usize, rows: usize, xs: usize| Group { first_row: r, first_x: j, rows, xs, row_bytes, cols, n };
    let mut j = 0;
    while j < n {
        let taken = match n - j {
            1 => 1,
            2 | 3 => 2,
            _ => 4,
        };
        let mut r = 0;
        // SAFETY (each call): the group's rows and activations are inside the lengths asserted above.
        unsafe {
            match taken {
                1 => {
                    while T::FOUR_ROWS && r + 4 <= count {
                        group_dot::<T, 4, 1>(rows, xs, out, mins, group(r, j, 4, 1));
                        r += 4;
                    }
                    while r < count {
                        group_dot::<T, 1, 1>(rows, xs, out, mins, group(r, j, 1, 1));
                        r += 1;
                    }
                }
                2 => {
                    while r + 2 <= count {
                        group_dot::<T, 2, 2>(rows, xs, out, mins, group(r, j, 2, 2));
                        r += 2;
                    }
                    while r < count {
                        group_dot::<T, 1, 2>(rows, xs, out, mins, group(r, j, 1, 2));
                        r += 1;
                    }
                }
                _ => {
                    for r in 0..count {
                        group_dot::<T, 1, 4>(rows, xs, out, mins, group(r, j, 1, 4));
                    }
                }
            }
        }
        j += taken;
    }
}

/// How far ahead of the rows being read the next rows are asked for, in rows of `W`: the rows'
/// blocks are read in several streams at once, which the CPU's own prefetching followed poorly
/// (a Q8_0 head of 49,152 x 576 read at 6 GB/s here without it, 11 with it: docs/benchmarks.md).
const PREFETCH_ROWS: usize = 32;

/// Which rows of `W` and of `x` a [`group_dot`] takes.
#[derive(Clone, Copy)]
struct Group {
    first_row: usize,
    first_x: usize,
    rows: usize,
    xs: usize,
    row_bytes: usize,
    cols: usize,
    /// Rows of `x` in all: `out`'s width.
    n: usize,
}

/// `R` rows of `W` against `N` rows of `x`, block by block; each pair's sums in its own even and
/// odd registers.
///
/// # Safety
/// The CPU has what [`available`] checks; the group's rows are inside `rows`, its rows of `x`
/// inside `xs`, and `mins` holds `R` rows of minimums.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn group_dot<T: Blocks, const R: usize, const N: usize>(
    rows: &[u8],
    xs: &QuantizedRows,
    out: &mut [f32],
    mins: &mut [f32],
    g: Group,
) {
    debug_assert!(g.rows == R && g.xs == N);
    let blocks = g.cols / BLOCK;
    let row_at: [*const u8; R] = std::array::from_fn(|r| rows[(g.first_row + r) * g.row_bytes..].as_ptr());
    let x_at: [*const i16; N] = std::array::from_fn(|j| xs.q[(g.first_x + j) * g.cols..].as_ptr());
    let x_scales: [&[f32]; N] = std::array::from_fn(|j| &xs.scales[(g.first_x + j) * blocks..][..blocks]);
    let (mut even, mut odd) = ([[_mm512_setzero_ps(); N]; R], [[_mm512_setzero_ps(); N]; R]);
    let ahead = PREFETCH_ROWS * g.row_bytes;
    // Block `sub` of type block `t` of every row, into the even or odd sums (`$odd` a constant
    // where the loops unroll), with what the rows' type blocks share (`$metas`, one per row).
    macro_rules! block {
        ($t:expr, $sub:expr, $metas:expr, $odd:expr) => {{
            let (t, sub) = ($t, $sub);
            let b = t * T::SUBS + sub;
            for r in 0..R {
                // SAFETY: block `t` of row `r` is inside the row (the caller's lengths).
                let at = unsafe { row_at[r].add(t * T::BYTES) };
                // SAFETY: as above.
                let block = unsafe { T::block(at, $metas[r], sub) };
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(sub * (T::BYTES / T::SUBS) + ahead).cast());
                mins[r * blocks + b] = block.min;
                for j in 0..N {
                    // SAFETY: block `b` of the row of `x` is inside it.
                    let x16 = unsafe { _mm512_loadu_si512(x_at[j].add(b * BLOCK).cast()) };
                    let pairs = _mm512_cvtepi32_ps(_mm512_madd_epi16(block.q, x16));
                    let scaled = _mm512_mul_ps(pairs, _mm512_mul_ps(block.scales, _mm512_set1_ps(x_scales[j][b])));
                    if $odd {
                        odd[r][j] = _mm512_add_ps(odd[r][j], scaled);
                    } else {
                        even[r][j] = _mm512_add_ps(even[r][j], scaled);
                    }
                }
            }
        }};
    }
    // What type block `t` of each row shares among its blocks of 32.
    macro_rules! metas {
        ($t:expr) => {{
            let mut metas = [T::no_meta(); R];
            for (r, meta) in metas.iter_mut().enumerate() {
                // SAFETY: type block `$t` is inside the row.
                *meta = unsafe { T::meta(row_at[r].add($t * T::BYTES)) };
            }
            metas
        }};
    }
    let types = blocks / T::SUBS;
    if T::SUBS == 1 {
        for pair in 0..types / 2 {
            let metas = metas!(2 * pair);
            block!(2 * pair, 0, metas, false);
            let metas = metas!(2 * pair + 1);
            block!(2 * pair + 1, 0, metas, true);
        }
        if types % 2 == 1 {
            let metas = metas!(types - 1);
            block!(types - 1, 0, metas, false);
        }
    } else {
        // An even number of blocks a type block: block `b`'s parity is `sub`'s.
        for t in 0..types {
            let metas = metas!(t);
            for pair in 0..T::SUBS / 2 {
                block!(t, 2 * pair, metas, false);
                block!(t, 2 * pair + 1, metas, true);
            }
        }
    }
    for r in 0..R {
        for j in 0..N {
            let (sums, mins) = (&xs.sums[(g.first_x + j) * blocks..][..blocks], &mins[r * blocks..][..blocks]);
            out[(g.first_row + r) * g.n + g.first_x + j] = fold_sixteen(_mm512_add_ps(even[r][j], odd[r][j])) + mins_dot(mins, sums);
        }
    }
}

/// A block of 32 weights `w = scale * q + min` in registers: `q` 16-bit integers (each widened
/// from its bits straight to 16: a signed-byte form would have to be widened across the register's
/// halves, the costlier instruction), the scale of each lane's pair of values (lanes 0-7 the first
/// 16 values, 8-15 the second), the minimum.
struct Block {
    q: __m512i,
    scales: __m512,
    min: f32,
}

/// A GGUF type read block by block, as `quant_dot.rs` unpacks it.
trait Blocks {
    /// Bytes of one of the type's blocks (a K-quant's super-block of 256 values).
    const BYTES: usize;
    /// Blocks of 32 values in it.
    const SUBS: usize;
    /// Whether rows of this type go four at a time against one row of `x` (one at a time, Q8_0's
    /// 34-byte blocks read at 14 GB/s here, four at a time at 6-10; the other types, busier per
    /// block, gained a quarter from the four independent sums).
    const FOUR_ROWS: bool = true;

    /// What a type block's blocks of 32 share, read once for all of them (a K-quant's scales and
    /// minimums, in registers).
    type Meta: Copy;

    /// A [`Self::Meta`] to overwrite.
    fn no_meta() -> Self::Meta;

    /// The [`Self::Meta`] of the type's block at `at`.
    ///
    /// # Safety
    /// `at` starts [`Self::BYTES`] readable bytes; the CPU has what [`available`] checks.
    unsafe fn meta(at: *const u8) -> Self::Meta;

    /// Block `sub` (of [`Self::SUBS`]) of the type's block at `at`, whose [`Self::Meta`] is `meta`.
    ///
    /// # Safety
    /// As [`Self::meta`].
    unsafe fn block(at: *const u8, meta: Self::Meta, sub: usize) -> Block;
}

/// The f16 at `at`, exactly.
///
/// # Safety
/// Two readable bytes at `at`; F16C.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn half(at: *const u8) -> f32 {
    // SAFETY: the caller's bytes.
    let bits = unsafe { at.cast::<u16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// 16 bytes of nibbles as 32 values 0..16: value `j` the low nibble of byte `j`, `16 + j` its high.
///
/// # Safety
/// 16 readable bytes at `at`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn nibbles(at: *const u8) -> __m512i {
    // SAFETY: the caller's bytes.
    let bytes = unsafe { _mm256_cvtepu8_epi16(_mm_loadu_si128(at.cast())) }; // a byte a 16-bit lane
    let (low, high) = (_mm256_and_si256(bytes, _mm256_set1_epi16(0xF)), _mm256_srli_epi16(bytes, 4));
    _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1)
}

/// `q` with 16 added to the values whose bit is set in `bits` (Q5's fifth bits).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
fn with_fifth_bits(q: __m512i, bits: __mmask32) -> __m512i {
    _mm512_mask_add_epi16(q, bits, q, _mm512_set1_epi16(16))
}

/// The u32 at `at`.
///
/// # Safety
/// Four readable bytes at `at`.
#[inline]
unsafe fn u32_at(at: *const u8) -> u32 {
    // SAFETY: the caller's bytes.
    unsafe { at.cast::<u32>().read_unaligned() }
}

/// A legacy type: `$q` its 32 values and `$min` its minimum, from its block at `$at` and its scale `$d`.
macro_rules! legacy {
    ($name:ident, $bytes:expr, |$at:ident, $d:ident| q: $q:expr, min: $min:expr) => {
        legacy!($name, $bytes, |$at, $d| q: $q, min: $min, four_rows: true);
    };
    ($name:ident, $bytes:expr, |$at:ident, $d:ident| q: $q:expr, min: $min:expr, four_rows: $four:expr) => {
        struct $name;
        impl Blocks for $name {
            const BYTES: usize = $bytes;
            const SUBS: usize = 1;
            const FOUR_ROWS: bool = $four;
            type Meta = ();
            fn no_meta() {}
            unsafe fn meta(_: *const u8) {}
            #[inline]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
            unsafe fn block($at: *const u8, _: (), _: usize) -> Block {
                // SAFETY: the type's block at `at` (the caller's bytes).
                unsafe {
                    let $d = half($at);
                    Block { q: $q, scales: _mm512_set1_ps($d), min: $min }
                }
            }
        }
    };
}

legacy!(Q4_0, 18, |at, d| q: nibbles(at.add(2)), min: -8.0 * d);
legacy!(Q4_1, 20, |at, d| q: nibbles(at.add(4)), min: half(at.add(2)));
legacy!(Q5_0, 22, |at, d| q: with_fifth_bits(nibbles(at.add(6)), u32_at(at.add(2))), min: -16.0 * d);
legacy!(Q5_1, 24, |at, d| q: with_fifth_bits(nibbles(at.add(8)), u32_at(at.add(4))), min: half(at.add(2)));
legacy!(Q8_0, 34, |at, d| q: _mm512_cvtepi8_epi16(_mm256_loadu_si256(at.add(2).cast())), min: 0.0, four_rows: false);

/// Q4_K's and Q5_K's 8 scales `d * sc` and minimums `-dmin * m` of their blocks of 32, a lane each.
#[derive(Clone, Copy)]
struct KScales {
    scales: __m256,
    mins: __m256,
}

impl KScales {
    // SAFETY: all-zero bits are eight zeros.
    const ZERO: Self = unsafe { std::mem::zeroed() };
}

/// The [`KScales`] of the Q4_K or Q5_K block at `at`: its 12 bytes of 6-bit scales and minimums
/// rearranged as 8 bytes of each in four u32 (as llama.cpp's own products do), then to floats; the
/// same values `scale_min_k4` gives.
///
/// # Safety
/// 16 readable bytes at `at`; F16C.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn k_scales(at: *const u8) -> KScales {
    const LOW_SIX: u32 = 0x3f3f_3f3f;
    const LOW_FOUR: u32 = 0x0f0f_0f0f;
    const LOW_TWO: u32 = 0x0303_0303;
    // SAFETY: `d`, `dmin` and 12 bytes of scales are the block's first 16 bytes.
    let (d, dmin, [a, b, c]) = unsafe { (half(at), half(at.add(2)), [4, 8, 12].map(|i| u32_at(at.add(i)))) };
    let scales = [a & LOW_SIX, (c & LOW_FOUR) | (((a >> 6) & LOW_TWO) << 4)];
    let mins = [b & LOW_SIX, ((c >> 4) & LOW_FOUR) | (((b >> 6) & LOW_TWO) << 4)];
    let floats = |[low, high]: [u32; 2]| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, high as i32, low as i32)));
    KScales { scales: _mm256_mul_ps(_mm256_set1_ps(d), floats(scales)), mins: _mm256_mul_ps(_mm256_set1_ps(-dmin), floats(mins)) }
}

/// Lane `sub` of `k`'s scales in every lane, and of its minimums.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
fn k_lane(k: KScales, sub: usize) -> (__m512, f32) {
    let lane = _mm512_set1_epi32(sub as i32);
    let scales = _mm512_permutexvar_ps(lane, _mm512_castps256_ps512(k.scales));
    (scales, _mm_cvtss_f32(_mm256_castps256_ps128(_mm256_permutevar8x32_ps(k.mins, _mm512_castsi512_si256(lane)))))
}

/// Q4_K's or Q5_K's sub-block `sub`'s low 4 bits: the low (even `sub`) or high nibbles of run
/// `sub / 2`'s 32 bytes at `qs`, a 16-bit lane each.
///
/// # Safety
/// The block's 4 runs at `qs`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn k4_nibbles(qs: *const u8, sub: usize) -> __m512i {
    // SAFETY: run `sub / 2` of 4.
    let run = unsafe { _mm512_cvtepu8_epi16(_mm256_loadu_si256(qs.add(32 * (sub / 2)).cast())) };
    if sub.is_multiple_of(2) { _mm512_and_si512(run, _mm512_set1_epi16(0xF)) } else { _mm512_srli_epi16(run, 4) }
}

/// A K-quant with Q4_K's scales and minimums (`$q` its block `$sub`'s values from its block at `$at`).
macro_rules! k_quant {
    ($name:ident, $bytes:expr, |$at:ident, $sub:ident| $q:expr) => {
        struct $name;
        impl Blocks for $name {
            const BYTES: usize = $bytes;
            const SUBS: usize = 8;
            type Meta = KScales;
            fn no_meta() -> KScales {
                KScales::ZERO
            }
            #[inline]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
            unsafe fn meta(at: *const u8) -> KScales {
                // SAFETY: the caller's block.
                unsafe { k_scales(at) }
            }
            #[inline]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
            unsafe fn block($at: *const u8, k: KScales, $sub: usize) -> Block {
                // SAFETY: the type's block at `at` (the caller's bytes).
                let q = unsafe { $q };
                let (scales, min) = k_lane(k, $sub);
                Block { q, scales, min }
            }
        }
    };
}

// Q4_K: its runs from 16. Q5_K: 32 bytes of fifth bits from 16 (bit `sub` of each for block
// `sub`), its runs from 48.
k_quant!(Q4K, 144, |at, sub| k4_nibbles(at.add(16), sub));
k_quant!(Q5K, 176, |at, sub| with_fifth_bits(
    k4_nibbles(at.add(48), sub),
    _mm256_test_epi8_mask(_mm256_loadu_si256(at.add(16).cast()), _mm256_set1_epi8((1u8 << sub) as i8))
));

struct Q6K;
impl Blocks for Q6K {
    const BYTES: usize = 210;
    const SUBS: usize = 8;
    /// `d` times each of the 16 signed scale bytes (one per 16 values), a lane each.
    type Meta = __m512;
    fn no_meta() -> __m512 {
        // SAFETY: all-zero bits are sixteen zeros.
        unsafe { std::mem::zeroed() }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
    unsafe fn meta(at: *const u8) -> __m512 {
        // SAFETY: a Q6_K block at `at`: 16 scale bytes from 192, `d` at 208.
        let (bytes, d) = unsafe { (_mm_loadu_si128(at.add(192).cast()), half(at.add(208))) };
        _mm512_mul_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)))
    }
    /// Half `sub / 4` of 128 values; within it, sub-block `s = sub % 4`: the low (`s < 2`) or high
    /// nibbles of 32 bytes of `ql` (the first or second 32, by `s % 2`), two bits of `qh` from bit
    /// `2 s`, minus 32; scales `2 sub` and `2 sub + 1`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
    unsafe fn block(at: *const u8, scales: __m512, sub: usize) -> Block {
        let (half_at, s) = (sub / 4, sub % 4);
        // SAFETY: a Q6_K block at `at`: `ql` from 0, `qh` from 128.
        let (ql, qh) = unsafe {
            (_mm256_loadu_si256(at.add(64 * half_at + 32 * (s % 2)).cast()), _mm256_loadu_si256(at.add(128 + 32 * half_at).cast()))
        };
        let low = if s < 2 { ql } else { _mm256_srli_epi16(ql, 4) };
        let high = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * s as i32)), _mm256_set1_epi8(3));
        let q = _mm256_or_si256(_mm256_and_si256(low, _mm256_set1_epi8(0xF)), _mm256_slli_epi16(high, 4));
        let lanes = _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(2 * sub as i32), _mm512_set1_epi32(2 * sub as i32 + 1));
        Block { q: _mm512_cvtepi8_epi16(_mm256_sub_epi8(q, _mm256_set1_epi8(32))), scales: _mm512_permutexvar_ps(lanes, scales), min: 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int_dot::IntDot;
    use crate::quant_dot::tests::{TYPES, activations};
    use crate::quant_dot::{UnpackedRow, dot_row};

    /// Every grouping: 1 to 6 rows of `x` (groups of 4, 2 and 1), 7 rows of `W` (groups of 4 and 2
    /// and one left), an odd number of blocks per row for the legacy types.
    #[test]
    fn products_from_the_blocks_give_the_unpacked_rows_bits_for_every_type_and_grouping() {
        if !available() {
            return;
        }
        for ggml_type in TYPES {
            let cols = if ggml_type.block_len() == 32 { 288 } else { 512 };
            let rows = ggml_type.example_bytes(7 * cols).unwrap();
            let row_bytes = rows.len() / 7;
            for n in 1..=6 {
                let x = QuantizedRows::new(&(0..n).flat_map(|seed| activations(cols, seed)).collect::<Vec<_>>());
                let mut expected = vec![0.0f32; 7 * n];
                for (row, out) in rows.chunks_exact(row_bytes).zip(expected.chunks_exact_mut(n)) {
                    dot_row(ggml_type, row, &x, out, &mut UnpackedRow::default(), IntDot::Portable);
                }
                let mut found = vec![0.0f32; 7 * n];
                dot_rows(ggml_type, &rows, row_bytes, &x, &mut found, &mut Vec::new());
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&found), bits(&expected), "{}, {n} rows of x", ggml_type.name());
            }
        }
    }
}
