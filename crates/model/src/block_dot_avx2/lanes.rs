//! Q4_0 and Q8_0 rows in `block_dot/lanes.rs`'s groups of sixteen, on AVX2: each half of a group
//! (eight rows) a row a 32-bit lane, its blocks' sums in `vpmaddwd` lanes, and one conversion,
//! scale product and addition a block for the eight rows (`int_dot::add_block`), where a row at a
//! time (`block_dot_avx2::rows_by_blocks`) took a horizontal sum and one of those a row.
//!
//! A run's 16 bytes for four rows (their quad `k`) widen to sixteen 16-bit values; `vpmaddwd`
//! against the row of `x`'s quad `k` (its four 16-bit values in every 64 bits) gives each row's
//! two pairs, and `vphaddd` of rows 0-3's and 4-7's pairs the eight rows' sums, in the lane order
//! [`ROW_OF_LANE`]. Q4_0's nibbles are read 0..16 and the block's sum starts at -8 times the sum
//! of its activations (`QuantizedRows::minus_eight_sums`); Q8_0's bytes widen signed. Each block's
//! sum is the exact integer every path sums, so the bits are every path's: the tests hold them to
//! the unpacked rows'.
//!
//! `unsafe` as in `block_dot_avx2.rs`: each read is inside a group whose length
//! `block_dot::lanes::each_group` asserts, on features `available` found.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::block_dot::lanes::{InLanes, Q4_0, Q8_0, ROWS, Rows, ask_ahead, each_group, run_at};
use crate::gguf_quants::GgmlType;
use crate::int_dot::{BLOCK, QUAD, QuantizedRows};

/// Rows of a group one register's sums hold: a row a 32-bit lane.
const HALF: usize = ROWS / 2;

/// The row (of a half) whose sum each lane holds after `vphaddd` of rows 0-3's and 4-7's pairs.
const ROW_OF_LANE: [usize; HALF] = [0, 1, 4, 5, 2, 3, 6, 7];

/// Whole groups `groups` of `ggml_type` (laid out by `block_dot::lanes::interleave`, `row_bytes` a
/// row) dotted with each row of `xs` into `out` `[rows, n]`. `block_dot_avx2::available` said yes.
pub(crate) fn dot_groups(ggml_type: GgmlType, groups: &[u8], row_bytes: usize, xs: &QuantizedRows, out: &mut [f32]) {
    match ggml_type {
        GgmlType::Q4_0 => dot_groups_of::<Q4_0>(groups, row_bytes, xs, out),
        GgmlType::Q8_0 => dot_groups_of::<Q8_0>(groups, row_bytes, xs, out),
        other => unreachable!("{} is never laid out in lanes", other.name()),
    }
}

fn dot_groups_of<T: InLanes>(groups: &[u8], row_bytes: usize, xs: &QuantizedRows, out: &mut [f32]) {
    assert!(super::available(), "AVX2 and F16C");
    let offsets = xs.minus_eight_sums();
    assert!(offsets.len() == xs.scales.len());
    each_group::<T>(groups, row_bytes, xs, out.len(), |at| {
        let mut took = 0;
        for half in 0..2 {
            // SAFETY: `available` found the features; `each_group` checked the group and the rows
            // of `x`.
            took = unsafe {
                match at.n - at.first_x {
                    1 => half_against::<T, 1>(xs, offsets, out, at, half),
                    2 | 3 => half_against::<T, 2>(xs, offsets, out, at, half),
                    _ => half_against::<T, 4>(xs, offsets, out, at, half),
                }
            };
        }
        took
    });
}

/// Quad `k` of the block of `x` at `x`: its four 16-bit values in every 64 bits.
///
/// # Safety
/// The quad is inside the block.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn x_quad(x: *const i16, k: usize) -> __m256i {
    // SAFETY: the caller's quad.
    _mm256_set1_epi64x(unsafe { x.add(QUAD * k).cast::<i64>().read_unaligned() })
}

/// Half `half` of the group (rows `8 half..8 half + 8`) against `N` rows of `x` (1, 2 or 4), a block
/// at a time: each row of `x` gathers two registers of pair sums (rows 0-3 and 4-7), then
/// [`add_block`](crate::int_dot::add_block) in eight lanes. Returns `N`.
///
/// # Safety
/// The CPU has what `block_dot_avx2::available` checks; the group and the rows of `x` are inside
/// `xs`, `offsets` a value a block of `xs`.
#[target_feature(enable = "avx2,f16c")]
unsafe fn half_against<T: InLanes, const N: usize>(xs: &QuantizedRows, offsets: &[i32], out: &mut [f32], at: Rows, half: usize) -> usize {
    let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7); // ROW_OF_LANE: the `d` of each lane's row
    let mut sums = [_mm256_setzero_ps(); N];
    for b in 0..at.blocks {
        // The second half reads what the first brought in.
        if half == 0 {
            ask_ahead::<T>(at.group, b);
        }
        let block = at.group.as_ptr().wrapping_add(b * T::GROUP_BLOCK);
        let first = at.first_x * at.blocks + b;
        // Not `array::from_fn`: a closure has no target features, and its call was not inlined.
        let mut x = [std::ptr::null::<i16>(); N];
        for (j, x) in x.iter_mut().enumerate() {
            // SAFETY: block `b` of row `first_x + j` is inside `xs`.
            *x = unsafe { xs.q.as_ptr().add((first + j * at.blocks) * BLOCK) };
        }
        let mut pairs = [[_mm256_setzero_si256(); 2]; N];
        for k in 0..T::RUNS {
            for (p, first_row) in [0, HALF / 2].into_iter().enumerate() {
                // SAFETY: four rows' quads of run `k`, inside the group's block.
                let raw = unsafe { _mm_loadu_si128(block.add(run_at(HALF * half + first_row, k)).cast()) };
                if T::NIBBLES {
                    let w = _mm256_cvtepu8_epi16(raw);
                    let (low, high) = (_mm256_and_si256(w, _mm256_set1_epi16(0xF)), _mm256_srli_epi16::<4>(w));
                    for j in 0..N {
                        // SAFETY: quads `k` and `k + 4` are inside the block of `x`.
                        let (xl, xh) = unsafe { (x_quad(x[j], k), x_quad(x[j], k + 4)) };
                        pairs[j][p] = _mm256_add_epi32(pairs[j][p], _mm256_madd_epi16(low, xl));
                        pairs[j][p] = _mm256_add_epi32(pairs[j][p], _mm256_madd_epi16(high, xh));
                    }
                } else {
                    let w = _mm256_cvtepi8_epi16(raw);
                    for j in 0..N {
                        // SAFETY: quad `k` is inside the block of `x`.
                        let xq = unsafe { x_quad(x[j], k) };
                        pairs[j][p] = _mm256_add_epi32(pairs[j][p], _mm256_madd_epi16(w, xq));
                    }
                }
            }
        }
        // SAFETY: the half's 8 `d` are 16 bytes of the block's first 32.
        let d_rows = unsafe { _mm256_cvtph_ps(_mm_loadu_si128(block.add(2 * HALF * half).cast())) };
        let d_rows = _mm256_permutevar8x32_ps(d_rows, order);
        for j in 0..N {
            let mut block_sums = _mm256_hadd_epi32(pairs[j][0], pairs[j][1]);
            // SAFETY: block `first + j * blocks` is one of `xs`'s.
            let (offset, scale) =
                unsafe { (*offsets.get_unchecked(first + j * at.blocks), *xs.scales.get_unchecked(first + j * at.blocks)) };
            if T::NIBBLES {
                block_sums = _mm256_add_epi32(block_sums, _mm256_set1_epi32(offset));
            }
            let scale = _mm256_mul_ps(d_rows, _mm256_set1_ps(scale));
            sums[j] = _mm256_add_ps(sums[j], _mm256_mul_ps(_mm256_cvtepi32_ps(block_sums), scale));
        }
    }
    for (j, sums) in sums.into_iter().enumerate() {
        let mut values = [0.0f32; HALF];
        // SAFETY: 8 f32s of room.
        unsafe { _mm256_storeu_ps(values.as_mut_ptr(), sums) };
        for (row, v) in ROW_OF_LANE.into_iter().zip(values) {
            out[at.out_first + (HALF * half + row) * at.n + at.first_x + j] = v;
        }
    }
    N
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_dot::lanes::interleave;
    use crate::int_dot::IntDot;
    use crate::quant_dot::tests::activations;
    use crate::quant_dot::{UnpackedRow, dot_row};

    /// Odd and even numbers of blocks, 1 to 7 rows of `x` (fours, pairs and one left), two groups;
    /// the largest activations and the extreme bytes too (every byte value of Q8_0's, -128 included).
    #[test]
    fn rows_in_lanes_on_avx2_give_the_unpacked_rows_bits() {
        if !super::super::available() {
            return;
        }
        for (ggml_type, cols) in [GgmlType::Q4_0, GgmlType::Q8_0].into_iter().flat_map(|t| [(t, 288), (t, 512)]) {
            let rows = 2 * ROWS;
            let mut bytes = ggml_type.example_bytes(rows * cols).unwrap();
            let row_bytes = bytes.len() / rows;
            // The first row's values every byte in turn, its `d`s left as they are.
            let block_bytes = if ggml_type == GgmlType::Q4_0 { 18 } else { 34 };
            for (i, block) in bytes[..row_bytes].chunks_exact_mut(block_bytes).enumerate() {
                for (v, byte) in block[2..].iter_mut().enumerate() {
                    *byte = (i * 32 + v * 7) as u8;
                }
            }
            let mut laid = bytes.clone();
            interleave(ggml_type, &mut laid, row_bytes);
            for n in 1..=7 {
                let mut x: Vec<f32> = (0..n).flat_map(|seed| activations(cols, seed)).collect();
                x[3] = -1e3; // the block's largest, -32767
                let x = QuantizedRows::new(&x);
                let mut expected = vec![0.0f32; rows * n];
                for (row, out) in bytes.chunks_exact(row_bytes).zip(expected.chunks_exact_mut(n)) {
                    dot_row(ggml_type, row, &x, out, &mut UnpackedRow::default(), IntDot::Portable);
                }
                let mut found = vec![0.0f32; rows * n];
                dot_groups(ggml_type, &laid, row_bytes, &x, &mut found);
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&found), bits(&expected), "{} {cols} wide, {n} rows of x", ggml_type.name());
            }
        }
    }
}
