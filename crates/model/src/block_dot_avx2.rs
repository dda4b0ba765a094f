//! Decoding's products straight from a GGUF row's blocks on AVX2, for the CPUs without AVX-512
//! VNNI (`block_dot.rs`): each block of 32 weights becomes two registers of 16-bit values, its
//! quads' scales and its minimum (`blocks.rs`), never stored, and meets each row of activations it
//! is grouped with while it is there, in `vpmaddwd` against the 16-bit activations, pairs added
//! into quads. Several rows of `W` (or of `x`) go through at once, so their sums are
//! independent chains.
//!
//! The arithmetic is `quant_dot.rs`'s unpacked row on `int_dot.rs`'s AVX2 quads, operation for
//! operation and in the same order: the same bits, which the tests hold it to. Q4_0 and Q8_0 are
//! summed a block at a time (`int_dot::one_scale`): each block's quads added into one integer;
//! their rows laid out in groups of sixteen go to `lanes.rs`, the rows past the groups come here.
//! Only where the values wait differs: the unpacked row was stored and read back, for every row of `W`.
//!
//! `unsafe` as in `int_dot.rs`: the intrinsics' loads have no safe form; each read is inside a row
//! whose length [`dot_rows`] asserts, on features [`available`] found.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

mod blocks;
pub(crate) mod lanes;

use blocks::{Block, Blocks, Q4_0, Q4_1, Q4K, Q5_0, Q5_1, Q5K, Q6K, Q8_0};

use crate::gguf_quants::GgmlType;
use crate::int_dot::{BLOCK, QuantizedRows, add_block};
use crate::quant_dot::mins_dot;

/// Where each of a block's 32 activations goes in `QuantizedRows::paired`: the values that
/// [`paired`] puts in a block's two registers of weights, side by side, so that `vpmaddwd` of each
/// register gives one pair of each quad in the same lane, and one `vpaddd` the quads, in the order
/// `[0 1 4 5 | 2 3 6 7]` (quad `k` is values `4k..4k + 4`).
pub(crate) const PAIRED: [usize; 32] = [
    0, 1, 4, 5, 16, 17, 20, 21, 8, 9, 12, 13, 24, 25, 28, 29, // the first value pair of each quad
    2, 3, 6, 7, 18, 19, 22, 23, 10, 11, 14, 15, 26, 27, 30, 31, // the second
];

/// A block's weights, values 0-15 and 16-31, as [`PAIRED`] has the activations: each 128-bit half
/// takes 32-bit lanes (pairs of values) 0 and 2 of both registers, then 1 and 3. Two shuffles a
/// block, for all the rows of `x` it meets, where adding each row's pairs into quads had taken a
/// `vphaddd` (several operations) a row.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn paired(w: [__m256i; 2]) -> [__m256i; 2] {
    let (low, high) = (_mm256_castsi256_ps(w[0]), _mm256_castsi256_ps(w[1]));
    [_mm256_castps_si256(_mm256_shuffle_ps::<0b10_00_10_00>(low, high)), _mm256_castps_si256(_mm256_shuffle_ps::<0b11_01_11_01>(low, high))]
}

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
            GgmlType::Q4_0 => rows_by_blocks::<Q4_0>(rows, row_bytes, xs, out),
            GgmlType::Q4_1 => rows_of::<Q4_1>(rows, row_bytes, xs, out, mins),
            GgmlType::Q5_0 => rows_of::<Q5_0>(rows, row_bytes, xs, out, mins),
            GgmlType::Q5_1 => rows_of::<Q5_1>(rows, row_bytes, xs, out, mins),
            GgmlType::Q8_0 => rows_by_blocks::<Q8_0>(rows, row_bytes, xs, out),
            GgmlType::Q4K => rows_of::<Q4K>(rows, row_bytes, xs, out, mins),
            GgmlType::Q5K => rows_of::<Q5K>(rows, row_bytes, xs, out, mins),
            GgmlType::Q6K => rows_of::<Q6K>(rows, row_bytes, xs, out, mins),
            other => unreachable!("{} has no blocks to dot", other.name()),
        }
    }
}

/// Every row of `W` against one, two or four rows of `x` at a time (each block decoded once for
/// all of them; each row of `x` a pair of sums, even and odd blocks' quads, which fit AVX2's 16
/// registers beside a block and the activations it meets). One row of `W` at a time: two rows had
/// paid only while each block's scale waited on the sums before it (`half_lanes`); since, one row
/// against two rows of `x` runs 4-14% faster than two against two (Q8_0 level), and one against one
/// faster than two against one; four rows of `W` spilled the sums to the stack every block.
#[target_feature(enable = "avx2,f16c")]
fn rows_of<T: Blocks>(rows: &[u8], row_bytes: usize, xs: &QuantizedRows, out: &mut [f32], mins: &mut Vec<f32>) {
    let cols = row_bytes / T::BYTES * T::SUBS * BLOCK;
    let (n, count) = (xs.q.len() / cols.max(1), rows.len() / row_bytes.max(1));
    assert!(row_bytes.is_multiple_of(T::BYTES) && rows.len() == count * row_bytes && xs.q.len() == n * cols && out.len() == count * n);
    assert!(xs.scales.len() * BLOCK == xs.q.len() && xs.sums.len() == xs.scales.len() && xs.paired().len() == xs.q.len());
    mins.resize(cols / BLOCK, 0.0);
    let mut first_x = 0;
    while first_x < n {
        // SAFETY: the rows and activations are inside the lengths asserted above.
        first_x += unsafe {
            match n - first_x {
                1 => rows_against::<T, 1>(rows, row_bytes, xs, out, mins, first_x),
                2 | 3 => rows_against::<T, 2>(rows, row_bytes, xs, out, mins, first_x),
                _ => rows_against::<T, 4>(rows, row_bytes, xs, out, mins, first_x),
            }
        };
    }
}

/// How far ahead of the rows being read the next rows are asked for, in rows of `W` (as
/// `block_dot.rs` does, for the same reason: several streams at once).
const PREFETCH_ROWS: usize = 16;

/// Every row of `W` against rows `first_x..first_x + N` of `x`, into `out` `[rows, n]`; returns
/// `N`. What each row of `x` shares with every row of `W` (where its values and scales are, its
/// blocks' sums) is found once here, and each row's eight lanes are folded eight rows at a time
/// ([`Folds`]): set up and folded row by row, a row of 576 or 896 weights (most of a small model's
/// rows) took 13-30% longer a block than a row of 4,608.
///
/// # Safety
/// The CPU has what [`available`] checks; `rows_of`'s lengths hold, and `first_x + N <= n`.
#[target_feature(enable = "avx2,f16c")]
unsafe fn rows_against<T: Blocks, const N: usize>(
    rows: &[u8],
    row_bytes: usize,
    xs: &QuantizedRows,
    out: &mut [f32],
    mins: &mut [f32],
    first_x: usize,
) -> usize {
    let (blocks, count) = (mins.len(), rows.len() / row_bytes);
    let (cols, n) = (blocks * BLOCK, out.len() / count.max(1));
    let x = RowsOfX {
        at: std::array::from_fn(|j| xs.paired()[(first_x + j) * cols..][..cols].as_ptr()),
        scales: std::array::from_fn(|j| &xs.scales[(first_x + j) * blocks..][..blocks]),
    };
    let x_sums: [&[f32]; N] = std::array::from_fn(|j| &xs.sums[(first_x + j) * blocks..][..blocks]);
    let mut folds = Folds::new(T::HAS_MINS);
    for (r, row) in rows.chunks_exact(row_bytes).enumerate() {
        // SAFETY: `row` is a whole row of `W`, `mins` holds its blocks, the caller's features.
        let sums = unsafe { row_dot::<T, N>(row.as_ptr(), &x, mins, PREFETCH_ROWS * row_bytes) };
        for (j, sum) in sums.into_iter().enumerate() {
            let min = if T::HAS_MINS { mins_dot(mins, x_sums[j]) } else { 0.0 };
            folds.push(sum, min, r * n + first_x + j, out);
        }
    }
    folds.flush(out);
    N
}

/// Where `N` rows of `x` are: their 16-bit values in [`PAIRED`]'s order and their blocks' scales.
struct RowsOfX<'a, const N: usize> {
    at: [*const i16; N],
    scales: [&'a [f32]; N],
}

/// One row of `W` at `row` against the rows of `x`, a block at a time: for each row of `x` its
/// even and odd blocks' quads (`int_dot.rs`'s lanes 0-7 and 8-15) added, eight lanes. The quads stay
/// in the order [`PAIRED`] gives them, `[0 1 4 5 | 2 3 6 7]`, the same for every block: a lane's sum
/// is the same additions wherever it lies, so the sums are put back in order once, in the fold,
/// rather than every block's quads on the way in. Writes the row's minimums into `mins`.
///
/// # Safety
/// The CPU has what [`available`] checks; `row` starts a whole row of `mins.len()` blocks of 32,
/// and each row of `x` holds as many.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn row_dot<T: Blocks, const N: usize>(row: *const u8, x: &RowsOfX<N>, mins: &mut [f32], ahead: usize) -> [__m256; N] {
    let blocks = mins.len();
    let mut sums = [[_mm256_setzero_ps(); 2]; N];
    // Block `s` of type block `t` into the sums of parity `$parity`, with what the type block's
    // blocks share (`$meta`).
    macro_rules! block {
        ($t:expr, $s:expr, $meta:expr, $parity:expr) => {{
            let (t, s) = ($t, $s);
            let b = t * T::SUBS + s;
            // SAFETY: type block `t` is inside the row (the caller's lengths).
            let (at, block): (*const u8, Block) = unsafe {
                let at = row.add(t * T::BYTES);
                (at, T::block(at, $meta, s))
            };
            // The last byte of the block's share of the row: every line of the rows, the shares being under 64 bytes.
            _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(ahead + T::BYTES * (s + 1) / T::SUBS - 1).cast());
            if T::HAS_MINS {
                // SAFETY: `mins` holds the row's blocks.
                unsafe { *mins.get_unchecked_mut(b) = block.min };
            }
            let w = paired(block.w);
            for j in 0..N {
                // SAFETY: the block's 32 activations are inside the row of `x`. Read where
                // they are used: the registers are the sums'.
                let xj = unsafe {
                    let at = x.at[j].add(b * BLOCK);
                    [_mm256_loadu_si256(at.cast()), _mm256_loadu_si256(at.add(16).cast())]
                };
                let quads = _mm256_add_epi32(_mm256_madd_epi16(w[0], xj[0]), _mm256_madd_epi16(w[1], xj[1]));
                // Scale times the activations' scale, as the unpacked row's lanes have it.
                // SAFETY: `b` is one of the row's blocks.
                let x_scale = unsafe { *x.scales[j].get_unchecked(b) };
                let scales = _mm256_mul_ps(block.scales, _mm256_set1_ps(x_scale));
                let sum = &mut sums[j][$parity];
                *sum = _mm256_add_ps(*sum, _mm256_mul_ps(_mm256_cvtepi32_ps(quads), scales));
            }
        }};
    }
    let types = blocks / T::SUBS;
    if T::SUBS == 1 {
        for pair in 0..types / 2 {
            block!(2 * pair, 0, T::no_meta(), 0);
            block!(2 * pair + 1, 0, T::no_meta(), 1);
        }
        if types % 2 == 1 {
            block!(types - 1, 0, T::no_meta(), 0);
        }
    } else if T::WRITTEN_OUT {
        // A K-quant's 8 blocks, each by its own number (`Blocks::WRITTEN_OUT`). Even `s`, even parity.
        assert_eq!(T::SUBS, 8, "K-quants have 8 blocks of 32");
        for t in 0..types {
            // SAFETY: type block `t` is inside the row.
            let meta = unsafe { T::meta(row.add(t * T::BYTES)) };
            block!(t, 0, meta, 0);
            block!(t, 1, meta, 1);
            block!(t, 2, meta, 0);
            block!(t, 3, meta, 1);
            block!(t, 4, meta, 0);
            block!(t, 5, meta, 1);
            block!(t, 6, meta, 0);
            block!(t, 7, meta, 1);
        }
    } else {
        // An even number of blocks a type block, so `s`'s parity is the block's.
        for t in 0..types {
            // SAFETY: type block `t` is inside the row.
            let meta = unsafe { T::meta(row.add(t * T::BYTES)) };
            for pair in 0..T::SUBS / 2 {
                block!(t, 2 * pair, meta, 0);
                block!(t, 2 * pair + 1, meta, 1);
            }
        }
    }
    sums.map(|[even, odd]| _mm256_add_ps(even, odd))
}

/// Rows of a one-scale type (`int_dot::one_scale`: Q4_0, Q8_0) against each row of `x`, a block
/// at a time, four rows of `x` at most together: each block's quads added into its integer sum,
/// then [`add_block`].
#[target_feature(enable = "avx2,f16c")]
fn rows_by_blocks<T: Blocks>(rows: &[u8], row_bytes: usize, xs: &QuantizedRows, out: &mut [f32]) {
    let blocks = row_bytes / T::BYTES;
    let (cols, count) = (blocks * BLOCK, rows.len() / row_bytes.max(1));
    let n = xs.q.len() / cols.max(1);
    assert!(T::SUBS == 1 && !T::HAS_MINS && row_bytes == blocks * T::BYTES && rows.len() == count * row_bytes);
    assert!(xs.q.len() == n * cols && out.len() == count * n && xs.scales.len() * BLOCK == xs.q.len() && xs.paired().len() == xs.q.len());
    let mut first_x = 0;
    while first_x < n {
        // SAFETY: the rows and activations are inside the lengths asserted above.
        first_x += unsafe {
            match n - first_x {
                1 => rows_by_blocks_against::<T, 1>(rows, row_bytes, xs, out, [first_x, n]),
                2 | 3 => rows_by_blocks_against::<T, 2>(rows, row_bytes, xs, out, [first_x, n]),
                _ => rows_by_blocks_against::<T, 4>(rows, row_bytes, xs, out, [first_x, n]),
            }
        };
    }
}

/// [`rows_by_blocks`] for rows `first_x..first_x + N` of the `n` of `x`; returns `N`.
///
/// # Safety
/// The CPU has what [`available`] checks; `rows_by_blocks`'s lengths hold, and `first_x + N <= n`.
#[target_feature(enable = "avx2,f16c")]
unsafe fn rows_by_blocks_against<T: Blocks, const N: usize>(
    rows: &[u8],
    row_bytes: usize,
    xs: &QuantizedRows,
    out: &mut [f32],
    [first_x, n]: [usize; 2],
) -> usize {
    let blocks = row_bytes / T::BYTES;
    let cols = blocks * BLOCK;
    let x_at: [*const i16; N] = std::array::from_fn(|j| xs.paired()[(first_x + j) * cols..][..cols].as_ptr());
    let x_scales: [&[f32]; N] = std::array::from_fn(|j| &xs.scales[(first_x + j) * blocks..][..blocks]);
    for (r, row) in rows.chunks_exact(row_bytes).enumerate() {
        let (mut sums, mut in_lanes) = ([0.0f32; N], _mm_setzero_ps());
        let mut b = 0;
        // Eight blocks at a time: their sums made by one tree of `vphaddd` for the eight, where a
        // block alone took seven operations (one answer on the 0.5B Q4_0 33 -> 18 tok/s that way).
        while b + 8 <= blocks {
            let (mut w, mut d) = ([[_mm256_setzero_si256(); 2]; 8], [0.0f32; 8]);
            for k in 0..8 {
                // SAFETY: block `b + k` is inside the row (the caller's lengths).
                (w[k], d[k]) = unsafe { one_scale_block::<T>(row.as_ptr().add((b + k) * T::BYTES), PREFETCH_ROWS * row_bytes) };
            }
            // SAFETY: eight f32s.
            let d = unsafe { _mm256_loadu_ps(d.as_ptr()) };
            let mut values = [_mm256_setzero_ps(); 4];
            for j in 0..N {
                let mut quads = [_mm256_setzero_si256(); 8];
                for (k, quads) in quads.iter_mut().enumerate() {
                    // SAFETY: block `b + k`'s 32 activations are inside the row of `x`.
                    *quads = unsafe { block_quads(w[k], x_at[j].add((b + k) * BLOCK)) };
                }
                // `add_block` in eight lanes, then added in order.
                // SAFETY: blocks `b..b + 8` are the row's.
                let scales = _mm256_mul_ps(d, unsafe { _mm256_loadu_ps(x_scales[j].as_ptr().add(b)) });
                values[j] = _mm256_mul_ps(_mm256_cvtepi32_ps(eight_summed(&quads)), scales);
            }
            if N == 1 {
                sums[0] = added_in_order(sums[0], values[0]);
            } else {
                in_lanes = added_in_order_by_rows(in_lanes, values);
            }
            b += 8;
        }
        if N > 1 {
            let mut lanes = [0.0f32; 4];
            // SAFETY: four f32s of room.
            unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), in_lanes) };
            sums.copy_from_slice(&lanes[..N]);
        }
        while b < blocks {
            // SAFETY: block `b` is inside the row (the caller's lengths).
            let (w, d) = unsafe { one_scale_block::<T>(row.as_ptr().add(b * T::BYTES), PREFETCH_ROWS * row_bytes) };
            for j in 0..N {
                // SAFETY: the block's 32 activations are inside the row of `x`.
                let quads = unsafe { block_quads(w, x_at[j].add(b * BLOCK)) };
                // SAFETY: `b` is one of the row's blocks.
                sums[j] = add_block(sums[j], summed(quads), d, unsafe { *x_scales[j].get_unchecked(b) });
            }
            b += 1;
        }
        out[r * n + first_x..][..N].copy_from_slice(&sums);
    }
    N
}

/// The one-scale block at `at`: its weights in [`paired`]'s order and its `d`; the bytes `ahead`
/// past its last asked for.
///
/// # Safety
/// A block of `T` at `at`; the CPU has what [`available`] checks.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn one_scale_block<T: Blocks>(at: *const u8, ahead: usize) -> ([__m256i; 2], f32) {
    // SAFETY: the caller's block.
    let block = unsafe { T::block(at, T::no_meta(), 0) };
    _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(ahead + T::BYTES - 1).cast());
    (paired(block.w), _mm256_cvtss_f32(block.scales))
}

/// A block's weights `w` ([`paired`]) against its 32 activations at `x` ([`PAIRED`]'s order): its
/// eight quads.
///
/// # Safety
/// 32 readable values at `x`; the CPU has what [`available`] checks.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn block_quads(w: [__m256i; 2], x: *const i16) -> __m256i {
    // SAFETY: the caller's activations.
    let (low, high) = unsafe { (_mm256_loadu_si256(x.cast()), _mm256_loadu_si256(x.add(16).cast())) };
    _mm256_add_epi32(_mm256_madd_epi16(w[0], low), _mm256_madd_epi16(w[1], high))
}

/// `sum` plus each lane of `v`, lane 0 first, in registers (stored and read back a lane at a time,
/// each read waited on the store).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn added_in_order(sum: f32, v: __m256) -> f32 {
    let mut sum = _mm_set_ss(sum);
    for half in [_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v)] {
        sum = _mm_add_ss(sum, half);
        sum = _mm_add_ss(sum, _mm_movehdup_ps(half));
        sum = _mm_add_ss(sum, _mm_unpackhi_ps(half, half));
        sum = _mm_add_ss(sum, _mm_shuffle_ps::<0b11_11_11_11>(half, half));
    }
    _mm_cvtss_f32(sum)
}

/// [`added_in_order`] for four rows of `x` at once: `sums` row `j`'s sum in lane `j`, `v[j]` its eight
/// blocks' values. Turned into eight registers of four rows each, one addition a block for all.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn added_in_order_by_rows(mut sums: __m128, v: [__m256; 4]) -> __m128 {
    let (t0, t1) = (_mm256_castps_pd(_mm256_unpacklo_ps(v[0], v[1])), _mm256_castps_pd(_mm256_unpackhi_ps(v[0], v[1])));
    let (t2, t3) = (_mm256_castps_pd(_mm256_unpacklo_ps(v[2], v[3])), _mm256_castps_pd(_mm256_unpackhi_ps(v[2], v[3])));
    // Blocks 0 | 4, 1 | 5, 2 | 6 and 3 | 7, each the four rows' values.
    let blocks = [_mm256_unpacklo_pd(t0, t2), _mm256_unpackhi_pd(t0, t2), _mm256_unpacklo_pd(t1, t3), _mm256_unpackhi_pd(t1, t3)];
    for pair in blocks {
        sums = _mm_add_ps(sums, _mm_castpd_ps(_mm256_castpd256_pd128(pair)));
    }
    for pair in blocks {
        sums = _mm_add_ps(sums, _mm_castpd_ps(_mm256_extractf128_pd::<1>(pair)));
    }
    sums
}

/// Eight registers' lanes each added (in integers: exact in any order): lane `k` the sum of `v[k]`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn eight_summed(v: &[__m256i; 8]) -> __m256i {
    // [v0's 0+1, 2+3, v1's 0+1, 2+3 | v0's 4+5, 6+7, v1's ...], then each register's four quarters.
    let pairs =
        [_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]), _mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7])];
    // [v0..v3's low halves | their high halves], and v4..v7's.
    let (low, high) = (_mm256_hadd_epi32(pairs[0], pairs[1]), _mm256_hadd_epi32(pairs[2], pairs[3]));
    _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(low, high), _mm256_permute2x128_si256::<0x31>(low, high))
}

/// The eight lanes of `v` added (in integers: exact in any order).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn summed(v: __m256i) -> i32 {
    let four = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let two = _mm_add_epi32(four, _mm_shuffle_epi32::<0b01_00_11_10>(four));
    _mm_cvtsi128_si32(_mm_add_epi32(two, _mm_shuffle_epi32::<0b10_11_00_01>(two)))
}

/// Up to eight dot products' lanes (even and odd added, [`PAIRED`]'s order) waiting to be folded
/// into their places in `out`, with their minimums' sums where their type has minimums.
/// Folded together ([`fold_eights`]), eight rows take a handful of operations where each took a
/// dozen alone.
struct Folds {
    with_mins: bool,
    lanes: [__m256; 8],
    mins: [f32; 8],
    at: [usize; 8],
    len: usize,
}

impl Folds {
    fn new(with_mins: bool) -> Self {
        // SAFETY: an all-zero `__m256` is a valid value.
        Self { with_mins, lanes: [unsafe { std::mem::zeroed() }; 8], mins: [0.0; 8], at: [0; 8], len: 0 }
    }

    /// `lanes` (plus `min`, the row's minimums' dot product, where the type has minimums) to go
    /// to `out[at]`; the eighth waiting folds them all.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn push(&mut self, lanes: __m256, min: f32, at: usize, out: &mut [f32]) {
        (self.lanes[self.len], self.mins[self.len], self.at[self.len]) = (lanes, min, at);
        self.len += 1;
        if self.len == 8 {
            self.flush(out);
        }
    }

    /// Every waiting dot product folded into its place.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn flush(&mut self, out: &mut [f32]) {
        let dots = fold_eights(&self.lanes);
        let (len, first) = (self.len, self.at[0]);
        self.len = 0;
        if !self.with_mins && len == 8 && self.at[7] == first + 7 {
            // One answer's rows, side by side in `out`.
            // SAFETY: eight f32 in `out` from `first`.
            return unsafe { _mm256_storeu_ps(out[first..first + 8].as_mut_ptr(), dots) };
        }
        let mut each = [0.0f32; 8];
        // SAFETY: `each` has room for eight f32.
        unsafe { _mm256_storeu_ps(each.as_mut_ptr(), dots) };
        for k in 0..len {
            out[self.at[k]] = if self.with_mins { each[k] + self.mins[k] } else { each[k] };
        }
    }
}

/// Eight rows' lanes, each in [`PAIRED`]'s order `h` (quads `[0 1 4 5 | 2 3 6 7]`), folded as
/// `int_dot.rs` folds eight lanes in order `s` (after even onto odd): halves onto halves, `s[i] +
/// s[i + 4]`, which are `h[0] + h[2]`, `h[1] + h[3]`, `h[4] + h[6]` and `h[5] + h[7]`; then the
/// first two plus the last two; then those two. Here eight rows side by side, each the same
/// additions of the same two values.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn fold_eights(h: &[__m256; 8]) -> __m256 {
    // Each row as [h0 h2 h1 h3 | h4 h6 h5 h7], so that adjacent lanes make the four sums.
    let p = h.map(|h| _mm256_permute_ps::<0b11_01_10_00>(h));
    // [A's four sums 0 1, B's 0 1 | A's 2 3, B's 2 3], for the pairs of rows.
    let fours = [_mm256_hadd_ps(p[0], p[1]), _mm256_hadd_ps(p[2], p[3]), _mm256_hadd_ps(p[4], p[5]), _mm256_hadd_ps(p[6], p[7])];
    // The first two plus the last two: [A's two, B's two | C's two, D's two], and E to H.
    let twos = |a: __m256, b: __m256| _mm256_add_ps(_mm256_permute2f128_ps::<0x20>(a, b), _mm256_permute2f128_ps::<0x31>(a, b));
    let (abcd, efgh) = (twos(fours[0], fours[1]), twos(fours[2], fours[3]));
    // [A B E F | C D G H], then in order.
    let ones = _mm256_hadd_ps(abcd, efgh);
    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(ones)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int_dot::IntDot;
    use crate::quant_dot::tests::{TYPES, activations};
    use crate::quant_dot::{UnpackedRow, dot_row};

    /// Every grouping: 1 to 5 rows of `x` (groups of 1, 2 and 4), 9 rows of `W` (so 9 to 45 dot
    /// products: folds of eight and what is left), an odd number of blocks per row for the legacy types.
    #[test]
    fn products_from_the_blocks_on_avx2_give_the_unpacked_rows_bits_for_every_type_and_grouping() {
        if !available() {
            return;
        }
        for ggml_type in TYPES {
            let cols = if ggml_type.block_len() == 32 { 288 } else { 512 };
            let rows = ggml_type.example_bytes(9 * cols).unwrap();
            let row_bytes = rows.len() / 9;
            for n in 1..=5 {
                let x = QuantizedRows::new(&(0..n).flat_map(|seed| activations(cols, seed)).collect::<Vec<_>>());
                let mut expected = vec![0.0f32; 9 * n];
                for (row, out) in rows.chunks_exact(row_bytes).zip(expected.chunks_exact_mut(n)) {
                    dot_row(ggml_type, row, &x, out, &mut UnpackedRow::default(), IntDot::Portable);
                }
                let mut found = vec![0.0f32; 9 * n];
                dot_rows(ggml_type, &rows, row_bytes, &x, &mut found, &mut Vec::new());
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&found), bits(&expected), "{}, {n} rows of x", ggml_type.name());
            }
        }
    }
}
