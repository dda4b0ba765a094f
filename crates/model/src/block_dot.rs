//! Decoding's products straight from a GGUF row's blocks, on AVX-512 VNNI: each pair of blocks of
//! 32 weights becomes 64 unsigned bytes, 16 quad scales and two minimums in registers (`pairs.rs`),
//! never stored, and meets every row of activations it is paired with while it is there, as two
//! `vpdpbusd` against the activations' high and low bytes (`int_dot.rs`). Several rows of `W` (or
//! of `x`) go through at once, so their sums are independent chains the CPU runs side by side.
//! Q4_0 and Q8_0, summed a block at a time (`int_dot::one_scale`), go to `lanes.rs` instead,
//! sixteen rows a register (laid out at load), the rows past its groups to AVX2's loop.
//!
//! The arithmetic is `quant_dot.rs`'s unpacked row on `int_dot.rs`'s quads, operation for
//! operation and in the same order (each block's quads exact in i32, to f32, times quad scale times
//! the activations' scale, into the same lanes, the same fold, the same minimums' sum): the same
//! bits, which the tests hold it to. Types whose values are signed (Q5_0, Q6_K) are
//! read as unsigned bytes `q + offset`, and each quad's sum of activations times the offset taken off in
//! integers: the same quads. Only where the values wait between the steps differs: the unpacked
//! row stored a row's bytes and scales to read them back, which was most of a token's time
//! (docs/benchmarks.md).
//!
//! `unsafe` as in `int_dot.rs`: the intrinsics have no safe form; each read is inside a row whose
//! length [`dot_rows`] asserts, on features [`available`] found.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

pub(crate) mod lanes;
mod pairs;

use pairs::{Blocks, Pair, Q4_1, Q4K, Q5_0, Q5_1, Q5K, Q6K, one_scales, row_of, signed};

use crate::gguf_quants::GgmlType;
use crate::int_dot::{BLOCK, QUAD, QuantizedRows, fold_sixteen, one_scale};
use crate::quant_dot::mins_dot;

/// Whether this CPU has what the products here are compiled for.
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("f16c")
}

/// Each of `rows` (whole rows of `ggml_type`, `row_bytes` each) dotted with each row of `xs`
/// (rows of `W`'s width) into `out` `[rows, n]`. `mins` is scratch for the rows' minimums, kept
/// between calls. `ggml_type` is one `quant_dot::has_packed_dot` takes; [`available`] said yes.
pub(crate) fn dot_rows(ggml_type: GgmlType, rows: &[u8], row_bytes: usize, xs: &QuantizedRows, out: &mut [f32], mins: &mut Vec<f32>) {
    assert!(available(), "AVX-512 BW/VL/VNNI and F16C");
    if one_scale(ggml_type) {
        // The rows past `lanes.rs`'s groups (and matrices of fewer than 16 rows), a block at a
        // time as the lanes sum them: AVX2's loop, which every AVX-512 CPU runs.
        return crate::block_dot_avx2::dot_rows(ggml_type, rows, row_bytes, xs, out, mins);
    }
    // SAFETY: `available` found the features; `rows_of` asserts every length it reads by.
    unsafe {
        match ggml_type {
            GgmlType::Q4_1 => rows_of::<Q4_1>(rows, row_bytes, xs, out, mins),
            GgmlType::Q5_0 => rows_of::<Q5_0>(rows, row_bytes, xs, out, mins),
            GgmlType::Q5_1 => rows_of::<Q5_1>(rows, row_bytes, xs, out, mins),
            GgmlType::Q4K => rows_of::<Q4K>(rows, row_bytes, xs, out, mins),
            GgmlType::Q5K => rows_of::<Q5K>(rows, row_bytes, xs, out, mins),
            GgmlType::Q6K => rows_of::<Q6K>(rows, row_bytes, xs, out, mins),
            other => unreachable!("{} has no blocks to dot", other.name()),
        }
    }
}

/// Rows of `W` in groups sized so that each group's sums fit the 32 registers beside the blocks
/// being read: 4 rows of `W` against one row of `x` (four independent sums; Q8_0 too, since the
/// quads: one row at a time it read 9-12 GB/s, docs/benchmarks.md), 2 against 2, 2 against 4 (each
/// pair of blocks unpacked once for four rows of `x`, and their activations read once for two rows
/// of `W`: four and eight answers 1.1-1.25x over one row against 4), what is left one row at a time.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
fn rows_of<T: Blocks>(rows: &[u8], row_bytes: usize, xs: &QuantizedRows, out: &mut [f32], mins: &mut Vec<f32>) {
    let cols = row_bytes / T::BYTES * T::SUBS * BLOCK;
    let (n, count) = (xs.q.len() / cols.max(1), rows.len() / row_bytes.max(1));
    assert!(row_bytes.is_multiple_of(T::BYTES) && rows.len() == count * row_bytes && xs.q.len() == n * cols && out.len() == count * n);
    assert!(xs.scales.len() * BLOCK == xs.q.len() && xs.sums.len() == xs.scales.len());
    let bytes = xs.bytes();
    assert!(bytes.high.len() == xs.q.len() && bytes.low.len() == xs.q.len() && bytes.high_sums.len() * QUAD == xs.q.len());
    mins.resize(4 * (cols / BLOCK), 0.0);
    let group = |r: usize, j: usize| Group { first_row: r, first_x: j, row_bytes, cols, n };
    let mut j = 0;
    while j < n {
        // `$r` rows of `W` at a time against rows `j..j + $n` of `x`, then what is left one at a time.
        macro_rules! groups {
            ($r:literal, $n:literal) => {{
                let mut r = 0;
                while r + $r <= count {
                    // SAFETY: the group's rows and activations are inside the lengths asserted above.
                    unsafe { group_dot::<T, $r, $n>(rows, xs, out, mins, group(r, j)) };
                    r += $r;
                }
                while r < count {
                    // SAFETY: as above.
                    unsafe { group_dot::<T, 1, $n>(rows, xs, out, mins, group(r, j)) };
                    r += 1;
                }
                $n
            }};
        }
        j += match n - j {
            1 => groups!(4, 1),
            2 | 3 => groups!(2, 2),
            _ => groups!(2, 4),
        };
    }
}

/// How far ahead of the rows being read the next rows are asked for, in rows of `W`, into L2: the
/// rows' blocks are read in several streams at once, which the CPU's own prefetching followed
/// poorly (a Q8_0 head of 49,152 x 576 read at 6 GB/s here without it, 11 with it; into L2 rather
/// than L1 and 16 rows rather than 32, Q5_0 rows 8.5 -> 9.9 GB/s: docs/benchmarks.md).
const PREFETCH_ROWS: usize = 16;

/// Which rows of `W` and of `x` a [`group_dot`] takes.
#[derive(Clone, Copy)]
struct Group {
    first_row: usize,
    first_x: usize,
    row_bytes: usize,
    cols: usize,
    /// Rows of `x` in all: `out`'s width.
    n: usize,
}

/// `R` rows of `W` against `N` rows of `x`, a pair of blocks at a time; each pair of rows' sums in
/// its own register, an even block's quads in lanes 0-7 and the odd one's in 8-15.
///
/// # Safety
/// The CPU has what [`available`] checks; the group's rows are inside `rows`, its rows of `x`
/// inside `xs`, and `mins` holds `R` rows of minimums.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn group_dot<T: Blocks, const R: usize, const N: usize>(
    rows: &[u8],
    xs: &QuantizedRows,
    out: &mut [f32],
    mins: &mut [f32],
    g: Group,
) {
    let (blocks, bytes) = (g.cols / BLOCK, xs.bytes());
    let row_at: [*const u8; R] = std::array::from_fn(|r| rows[(g.first_row + r) * g.row_bytes..].as_ptr());
    let x_at: [usize; N] = std::array::from_fn(|j| (g.first_x + j) * g.cols);
    let x_scales: [&[f32]; N] = std::array::from_fn(|j| &xs.scales[(g.first_x + j) * blocks..][..blocks]);
    let mut sums = [[_mm512_setzero_ps(); N]; R];
    let ahead = PREFETCH_ROWS * g.row_bytes;
    // Blocks `b = t SUBS + 2p` and `b + 1` (`$both` false, a constant: `b` alone, a row's last) of
    // type block `t` of every row into the sums, with what the rows' type blocks share (`$metas`).
    macro_rules! pair {
        ($t:expr, $p:expr, $metas:expr, $both:expr) => {{
            let (t, p, both) = ($t, $p, $both);
            let b = t * T::SUBS + 2 * p;
            let mask: __mmask16 = if both { 0xFFFF } else { 0x00FF };
            // What each row of `x` brings to the pair, read once for all rows of `W`: its high and
            // low bytes, its quads' sums of high bytes times the offset (negated: where the high
            // products start), its two scales in the pair's lanes (for one-scale types, in lanes
            // `2r` and `2r + 1` for row `r` of `W`, to meet all rows' `d` in one product).
            let (mut high, mut low, mut offsets) = ([_mm512_setzero_si512(); N], [_mm512_setzero_si512(); N], [_mm512_setzero_si512(); N]);
            let (mut x_pair, mut row_scales) = ([_mm512_setzero_ps(); N], [_mm256_setzero_ps(); N]);
            for j in 0..N {
                let x = x_at[j] + b * BLOCK;
                // SAFETY: the pair's 64 activations (32 where `b` is alone: the rest masked off,
                // never read) and their 16 quads are inside the row of `x`.
                unsafe {
                    let (h, l) = (bytes.high.as_ptr().add(x), bytes.low.as_ptr().add(x));
                    (high[j], low[j]) = if both {
                        (_mm512_loadu_si512(h.cast()), _mm512_loadu_si512(l.cast()))
                    } else {
                        (_mm512_maskz_loadu_epi8(u32::MAX as u64, h), _mm512_maskz_loadu_epi8(u32::MAX as u64, l.cast()))
                    };
                    if let Some(shift) = T::OFFSET_SHIFT {
                        let high_sums = _mm512_maskz_loadu_epi32(mask, bytes.high_sums.as_ptr().add(x / QUAD));
                        offsets[j] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_sll_epi32(high_sums, _mm_cvtsi32_si128(shift)));
                    }
                }
                let (first, second) = (_mm512_set1_ps(x_scales[j][b]), _mm512_set1_ps(if both { x_scales[j][b + 1] } else { 0.0 }));
                if T::ONE_SCALE {
                    row_scales[j] = _mm512_castps512_ps256(_mm512_mask_blend_ps(0xAAAA, first, second));
                } else {
                    x_pair[j] = _mm512_mask_blend_ps(0xFF00, first, second);
                }
            }
            // A loop, not `array::from_fn`: a closure's call was not inlined for the K-quants.
            let mut pairs = [Pair::ZERO; R];
            for (r, slot) in pairs.iter_mut().enumerate() {
                // SAFETY: type block `t` of row `r` (and `t + 1` where a legacy pair reads both) is
                // inside the row (the caller's lengths).
                let (at, pair) = unsafe {
                    let at = row_at[r].add(t * T::BYTES);
                    (at, T::pair(at, $metas[r], p, both))
                };
                // Each pair's last byte: every line of the rows, where a pair spans one line at most.
                let next = at.wrapping_add(p * T::PAIR_BYTES + ahead);
                if T::PAIR_BYTES > 64 {
                    _mm_prefetch::<_MM_HINT_T1>(next.cast());
                }
                _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(T::PAIR_BYTES - 1).cast());
                if T::HAS_MINS {
                    mins[r * blocks + b] = pair.mins[0];
                    if both {
                        mins[r * blocks + b + 1] = pair.mins[1];
                    }
                }
                *slot = pair;
            }
            if T::ONE_SCALE {
                let d = one_scales(pairs.each_ref().map(|pair| pair.d_bits));
                for scales in &mut row_scales {
                    *scales = _mm256_mul_ps(d, *scales);
                }
            }
            for r in 0..R {
                let pair = &pairs[r];
                // The weights as signed bytes, for the unsigned low bytes of `x`.
                let signed = signed::<T>(pair.q);
                for j in 0..N {
                    // 256 (q . high - offset sum of high) + low . (q - offset): w . x.
                    let mut quads = _mm512_dpbusd_epi32(offsets[j], pair.q, high[j]);
                    quads = _mm512_dpbusd_epi32(_mm512_slli_epi32::<8>(quads), low[j], signed);
                    // Scale times the activations' scale, as the unpacked row's lanes have it.
                    let scales = if T::ONE_SCALE { row_of(row_scales[j], r) } else { _mm512_mul_ps(pair.scales, x_pair[j]) };
                    let scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(quads), scales);
                    sums[r][j] = _mm512_mask_add_ps(sums[r][j], mask, sums[r][j], scaled);
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
        let no_metas = [T::no_meta(); R];
        for pair in 0..types / 2 {
            pair!(2 * pair, 0, no_metas, true);
        }
        if types % 2 == 1 {
            pair!(types - 1, 0, no_metas, false);
        }
    } else {
        // An even number of blocks a type block, read in pairs.
        for t in 0..types {
            let metas = metas!(t);
            for p in 0..T::SUBS / 2 {
                pair!(t, p, metas, true);
            }
        }
    }
    for r in 0..R {
        for j in 0..N {
            let (x_sums, mins) = (&xs.sums[(g.first_x + j) * blocks..][..blocks], &mins[r * blocks..][..blocks]);
            let dot = fold_sixteen(sums[r][j]);
            out[(g.first_row + r) * g.n + g.first_x + j] = if T::HAS_MINS { dot + mins_dot(mins, x_sums) } else { dot };
        }
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
