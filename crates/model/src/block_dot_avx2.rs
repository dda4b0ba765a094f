//! Decoding's products straight from a GGUF row's blocks on AVX2, for the CPUs without AVX-512
//! VNNI (`block_dot.rs`): each block of 32 weights becomes two registers of 16-bit values, its
//! quads' scales and its minimum (`blocks.rs`), never stored, and meets each row of activations it
//! is grouped with while it is there, in `vpmaddwd` against the 16-bit activations, adjacent pairs
//! added into quads. Several rows of `W` (or of `x`) go through at once, so their sums are
//! independent chains.
//!
//! The arithmetic is `quant_dot.rs`'s unpacked row on `int_dot.rs`'s AVX2 quads, operation for
//! operation and in the same order: the same bits, which the tests hold it to. Only where the
//! values wait differs: the unpacked row was stored and read back, for every row of `W`.
//!
//! `unsafe` as in `int_dot.rs`: the intrinsics' loads have no safe form; each read is inside a row
//! whose length [`dot_rows`] asserts, on features [`available`] found.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

mod blocks;

use blocks::{Block, Blocks, Q4_0, Q4_1, Q4K, Q5_0, Q5_1, Q5K, Q6K, Q8_0};

use crate::gguf_quants::GgmlType;
use crate::int_dot::{BLOCK, QuantizedRows};
use crate::quant_dot::mins_dot;

/// Whether this CPU has what the products here are compiled for.
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c")
}

/// Each of `rows` (whole rows of `ggml_type`, `row_bytes` each) dotted with each row of `xs`
/// (rows of `W`'s width) into `out` `[rows, n]`. `mins` is scratch for the rows' minimums, kept
/// between calls. `ggml_type` is one `quant_dot::has_packed_dot` takes; [`available`] said yes.
pub(crate) fn dot_rows(ggml_type: GgmlType, rows: &[u8], row_bytes: usize, xs: &QuantizedRows, out: &mut [f32], mins: &mut Vec<f32>) {
    assert!(available(), "AVX2 and F16C");
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

/// Rows of `W` in groups whose sums (two registers each: even and odd blocks' quads) fit AVX2's
/// 16 registers beside a block and the activations it meets: one row of `W` against one, two or
/// four rows of `x` (each block decoded once for all of them). Two rows of `W` at a time paid only
/// while each block's scale waited on the sums before it (`half_lanes`): since, one row against
/// two rows of `x` runs 4-14% faster than two against two (Q8_0 level), and one against one faster
/// than two against one; four rows of `W` spilled the sums to the stack every block.
#[target_feature(enable = "avx2,f16c")]
fn rows_of<T: Blocks>(rows: &[u8], row_bytes: usize, xs: &QuantizedRows, out: &mut [f32], mins: &mut Vec<f32>) {
    let cols = row_bytes / T::BYTES * T::SUBS * BLOCK;
    let (n, count) = (xs.q.len() / cols.max(1), rows.len() / row_bytes.max(1));
    assert!(row_bytes.is_multiple_of(T::BYTES) && rows.len() == count * row_bytes && xs.q.len() == n * cols && out.len() == count * n);
    assert!(xs.scales.len() * BLOCK == xs.q.len() && xs.sums.len() == xs.scales.len());
    mins.resize(4 * (cols / BLOCK), 0.0);
    let group = |r: usize, j: usize| Group { first_row: r, first_x: j, row_bytes, cols, n };
    let mut j = 0;
    while j < n {
        // Each row of `W` against rows `j..j + $n` of `x`.
        macro_rules! groups {
            ($n:literal) => {{
                for r in 0..count {
                    // SAFETY: the group's rows and activations are inside the lengths asserted above.
                    unsafe { group_dot::<T, 1, $n>(rows, xs, out, mins, group(r, j)) };
                }
                $n
            }};
        }
        j += match n - j {
            1 => groups!(1),
            2 | 3 => groups!(2),
            _ => groups!(4),
        };
    }
}

/// How far ahead of the rows being read the next rows are asked for, in rows of `W` (as
/// `block_dot.rs` does, for the same reason: several streams at once).
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

/// `R` rows of `W` against `N` rows of `x`, a block at a time; each pair of rows' sums in two
/// registers, an even block's quads in one and an odd block's in the other (`int_dot.rs`'s lanes
/// 0-7 and 8-15). The quads stay in the order `vphaddd` leaves them, `[0 1 4 5 | 2 3 6 7]`, the
/// same for every block: a lane's sum is the same additions wherever it lies, so the sums are put
/// back in order once, at the end, rather than every block's quads on the way in.
///
/// # Safety
/// The CPU has what [`available`] checks; the group's rows are inside `rows`, its rows of `x`
/// inside `xs`, and `mins` holds `R` rows of minimums.
#[target_feature(enable = "avx2,f16c")]
unsafe fn group_dot<T: Blocks, const R: usize, const N: usize>(
    rows: &[u8],
    xs: &QuantizedRows,
    out: &mut [f32],
    mins: &mut [f32],
    g: Group,
) {
    let blocks = g.cols / BLOCK;
    let row_at: [*const u8; R] = std::array::from_fn(|r| rows[(g.first_row + r) * g.row_bytes..].as_ptr());
    let x_at: [*const i16; N] = std::array::from_fn(|j| xs.q[(g.first_x + j) * g.cols..].as_ptr());
    let x_scales: [&[f32]; N] = std::array::from_fn(|j| &xs.scales[(g.first_x + j) * blocks..][..blocks]);
    let mut sums = [[[_mm256_setzero_ps(); 2]; N]; R];
    let ahead = PREFETCH_ROWS * g.row_bytes;
    // Block `s` of type block `t` of every row into the sums of parity `$parity`, with what the
    // rows' type blocks share (`$metas`).
    macro_rules! block {
        ($t:expr, $s:expr, $metas:expr, $parity:expr) => {{
            let (t, s) = ($t, $s);
            let b = t * T::SUBS + s;
            for r in 0..R {
                // SAFETY: type block `t` of row `r` is inside the row (the caller's lengths).
                let (at, block): (*const u8, Block) = unsafe {
                    let at = row_at[r].add(t * T::BYTES);
                    (at, T::block(at, $metas[r], s))
                };
                // The last byte of the block's share of the row: every line of the rows, the shares being under 64 bytes.
                _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(ahead + T::BYTES * (s + 1) / T::SUBS - 1).cast());
                if T::HAS_MINS {
                    // SAFETY: `mins` holds `R` rows of `blocks`.
                    unsafe { *mins.get_unchecked_mut(r * blocks + b) = block.min };
                }
                for j in 0..N {
                    // SAFETY: the block's 32 activations are inside the row of `x`. Read where
                    // they are used: the registers are the sums'.
                    let x = unsafe {
                        let at = x_at[j].add(b * BLOCK);
                        [_mm256_loadu_si256(at.cast()), _mm256_loadu_si256(at.add(16).cast())]
                    };
                    let pairs = [_mm256_madd_epi16(block.w[0], x[0]), _mm256_madd_epi16(block.w[1], x[1])];
                    // Pairs [0-3 | 4-7] and [8-11 | 12-15] add to quads [0 1 4 5 | 2 3 6 7].
                    let quads = _mm256_hadd_epi32(pairs[0], pairs[1]);
                    // Scale times the activations' scale, as the unpacked row's lanes have it.
                    // SAFETY: `b` is one of the row's blocks.
                    let x_scale = unsafe { *x_scales[j].get_unchecked(b) };
                    let scales = _mm256_mul_ps(block.scales, _mm256_set1_ps(x_scale));
                    let sum = &mut sums[r][j][$parity];
                    *sum = _mm256_add_ps(*sum, _mm256_mul_ps(_mm256_cvtepi32_ps(quads), scales));
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
            block!(2 * pair, 0, no_metas, 0);
            block!(2 * pair + 1, 0, no_metas, 1);
        }
        if types % 2 == 1 {
            block!(types - 1, 0, no_metas, 0);
        }
    } else if T::WRITTEN_OUT {
        // A K-quant's 8 blocks, each by its own number (`Blocks::WRITTEN_OUT`). Even `s`, even parity.
        assert_eq!(T::SUBS, 8, "K-quants have 8 blocks of 32");
        for t in 0..types {
            let metas = metas!(t);
            block!(t, 0, metas, 0);
            block!(t, 1, metas, 1);
            block!(t, 2, metas, 0);
            block!(t, 3, metas, 1);
            block!(t, 4, metas, 0);
            block!(t, 5, metas, 1);
            block!(t, 6, metas, 0);
            block!(t, 7, metas, 1);
        }
    } else {
        // An even number of blocks a type block, so `s`'s parity is the block's.
        for t in 0..types {
            let metas = metas!(t);
            for pair in 0..T::SUBS / 2 {
                block!(t, 2 * pair, metas, 0);
                block!(t, 2 * pair + 1, metas, 1);
            }
        }
    }
    for r in 0..R {
        for j in 0..N {
            let (x_sums, mins) = (&xs.sums[(g.first_x + j) * blocks..][..blocks], &mins[r * blocks..][..blocks]);
            let dot = fold_eight(in_order(_mm256_add_ps(sums[r][j][0], sums[r][j][1])));
            out[(g.first_row + r) * g.n + g.first_x + j] = if T::HAS_MINS { dot + mins_dot(mins, x_sums) } else { dot };
        }
    }
}

/// Quads `[0 1 4 5 | 2 3 6 7]` (as `vphaddd` leaves them) in order.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn in_order(quads: __m256) -> __m256 {
    _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(quads), 0b11_01_10_00))
}

/// Lanes 8 -> 4 -> 2 -> 1, halves onto halves (`int_dot.rs`'s fold, after even onto odd).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn fold_eight(eight: __m256) -> f32 {
    let four = _mm_add_ps(_mm256_castps256_ps128(eight), _mm256_extractf128_ps(eight, 1));
    let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
    _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps(two, two, 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int_dot::IntDot;
    use crate::quant_dot::tests::{TYPES, activations};
    use crate::quant_dot::{UnpackedRow, dot_row};

    /// Every grouping: 1 to 5 rows of `x` (groups of 1 and 2), 7 rows of `W` (groups of 4 and 2
    /// and what is left), an odd number of blocks per row for the legacy types.
    #[test]
    fn products_from_the_blocks_on_avx2_give_the_unpacked_rows_bits_for_every_type_and_grouping() {
        if !available() {
            return;
        }
        for ggml_type in TYPES {
            let cols = if ggml_type.block_len() == 32 { 288 } else { 512 };
            let rows = ggml_type.example_bytes(7 * cols).unwrap();
            let row_bytes = rows.len() / 7;
            for n in 1..=5 {
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
