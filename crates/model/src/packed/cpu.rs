//! A packed weight's products on the CPU (natively and in wasm) for a few rows of activations:
//! each row of `W` widened as it is read and dotted with every row (a few rows differentiated), or,
//! for decoding, dotted in integers straight from its blocks (`block_dot.rs`, `quant_dot.rs`),
//! several matrices in one parallel pass and, for a matrix cut among workers, the helpers' rows
//! asked for in one exchange. Many rows go through `W` a tile at a time instead (`packed.rs`).

use rayon::prelude::*;

use super::{FEW_ROWS_STEP, PackedWeight};
use crate::gguf_quants::GgmlType;
use crate::int_dot::{IntDot, QuantizedRows};
use crate::quant_dot::{UnpackedRow, dot_row};
use crate::row_kernels::simd;
use crate::row_shards::Shards;

/// `x` `[n, in]` (row-major, `n` few) @ W^T -> `[n, out]` row-major: each thread widens its own
/// rows of `W` a few at a time and dots them with every row of `x`; each value is one row's dot
/// product, the same bits however many threads share the rows.
pub(super) fn few_rows_product(x: &[f32], weight: &PackedWeight) -> Vec<f32> {
    let (rows, cols) = (weight.0.rows, weight.0.cols);
    let n = x.len() / cols;
    let mut out_t = vec![0.0f32; rows * n]; // [out, n]
    out_t.par_chunks_mut(FEW_ROWS_STEP * n).enumerate().for_each(|(step, out)| {
        let w = weight.held_rows_values(step * FEW_ROWS_STEP, out.len() / n); // [len, in]
        for (w_row, out_row) in w.chunks_exact(cols).zip(out.chunks_exact_mut(n)) {
            for (x_row, o) in x.chunks_exact(cols).zip(out_row) {
                *o = dot(w_row, x_row);
            }
        }
    });
    transposed(out_t, n)
}

/// Decoding's products of `x` `[n, in]` with each of `weights` (`[n, out]` each): the rows held
/// here, and for a matrix cut among workers the helpers' rows, asked of them in one exchange
/// before this worker computes its own (every cut matrix is one server's).
pub(super) fn decode_products(x: &[f32], n: usize, weights: &[&PackedWeight]) -> Vec<Vec<f32>> {
    let cut: Vec<&Shards> = weights.iter().filter_map(|w| w.shards()).collect();
    if cut.is_empty() {
        return unpacked_products_of(x, weights);
    }
    let (held, mut answers) = Shards::decode_together(&cut, x, n, || unpacked_products_of(x, weights));
    let mut cut_index = 0;
    held.into_iter()
        .zip(weights)
        .map(|(mine, w)| match w.shards() {
            None => mine,
            Some(_) => {
                let parts: Vec<Vec<f32>> = answers.iter_mut().map(|helper| std::mem::take(&mut helper[cut_index])).collect();
                cut_index += 1;
                side_by_side(n, mine, parts)
            }
        })
        .collect()
}

/// `[n, a]`, then `[n, b]`, ... (row-major each) as `[n, a + b + ...]`.
pub(super) fn side_by_side(n: usize, first: Vec<f32>, rest: Vec<Vec<f32>>) -> Vec<f32> {
    if n == 1 {
        return rest.into_iter().fold(first, |mut all, part| {
            all.extend(part);
            all
        });
    }
    let parts: Vec<Vec<f32>> = std::iter::once(first).chain(rest).collect();
    let widths: Vec<usize> = parts.iter().map(|p| p.len() / n).collect();
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for r in 0..n {
        for (part, &width) in parts.iter().zip(&widths) {
            out.extend_from_slice(&part[r * width..(r + 1) * width]);
        }
    }
    out
}

/// `x` `[n, in]` (row-major, `n` few) @ W^T -> `[n, out]` for each of `weights` (their rows held
/// here), block-quantized `W`s of the same `in`, in one parallel pass (a layer's query, key and
/// value projections: `x` quantized once and one fork and join for the three): each job takes its
/// own rows of one `W` and dots each with every row of `x` in integers, straight from the blocks
/// with AVX-512 (`block_dot.rs`), else each row unpacked to bytes first (`quant_dot.rs`). Each value
/// is one row's dot product, the same bits on either path and however many threads share the rows.
pub(crate) fn unpacked_products_of(x: &[f32], weights: &[&PackedWeight]) -> Vec<Vec<f32>> {
    let cols = weights.first().map_or(1, |w| w.0.cols);
    let n = x.len() / cols;
    let xs = &QuantizedRows::new(x);
    lay_out_for_the_blocks(xs);
    let mut outs: Vec<Vec<f32>> = weights.iter().map(|w| vec![0.0f32; w.0.rows * n]).collect(); // [out, n] each
    let in_lanes = weights.iter().any(|w| w.0.in_lanes);
    let step_rows = decode_step_rows(weights.iter().map(|w| w.0.rows).sum(), in_lanes);
    let jobs: Vec<(&PackedWeight, usize, &mut [f32])> = weights
        .iter()
        .zip(outs.iter_mut())
        .flat_map(|(&w, out)| out.chunks_mut(step_rows * n).enumerate().map(move |(step, out)| (w, step * step_rows, out)))
        .collect();
    // One scratch per rayon job, not per chunk: a vocabulary-sized head is hundreds of chunks.
    jobs.into_par_iter().for_each_init(DecodeScratch::default, |scratch, (weight, start, out)| {
        let row_bytes = weight.row_bytes();
        let bytes = &weight.0.bytes[start * row_bytes..(start + out.len() / n) * row_bytes];
        #[cfg(target_arch = "x86_64")]
        if weight.0.in_lanes {
            return dot_rows_in_lanes(weight, start, bytes, xs, out, scratch);
        }
        dot_rows(weight.ggml_type(), bytes, row_bytes, xs, out, scratch);
    });
    outs.into_iter().map(|out| transposed(out, n)).collect()
}

/// What a thread's decoding products reuse from job to job.
#[derive(Default)]
pub(super) struct DecodeScratch {
    #[cfg(target_arch = "x86_64")]
    mins: Vec<f32>,
    row: UnpackedRow,
}

/// The instructions an x86-64 CPU's decoding products run on: what each layout below is made for
/// (wasm's always unpack rows).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kernels {
    /// Straight from the blocks with AVX-512 VNNI (`block_dot.rs`), Q4_0 and Q8_0 in lanes (`block_dot/lanes.rs`).
    Avx512Vnni,
    /// Straight from the blocks with AVX2 (`block_dot_avx2.rs`), Q4_0 and Q8_0 in lanes (`block_dot_avx2/lanes.rs`).
    Avx2,
    /// Rows unpacked to bytes (`quant_dot.rs`) on [`IntDot`]'s instructions.
    Unpacked,
}

#[cfg(target_arch = "x86_64")]
impl Kernels {
    fn here() -> Self {
        if crate::block_dot::available() {
            Self::Avx512Vnni
        } else if crate::block_dot_avx2::available() {
            Self::Avx2
        } else {
            Self::Unpacked
        }
    }
}

/// The activations' layout that [`dot_rows`] reads on this CPU, made before the jobs fork: made
/// by the first job that reads it, the other threads' jobs waited on it asleep (a futex's wait
/// and wake-up in every product: at two threads 2-3% of a token's samples and an idle thread).
fn lay_out_for_the_blocks(xs: &QuantizedRows) {
    #[cfg(target_arch = "x86_64")]
    match Kernels::here() {
        Kernels::Avx512Vnni => {
            xs.bytes();
        }
        Kernels::Avx2 => {
            xs.paired();
            xs.minus_eight_sums();
        }
        Kernels::Unpacked => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = xs;
}

/// Whether this CPU's decoding products read `W` (`rows` rows of `ggml_type` in `bytes`) laid out
/// otherwise than the file has them, laying them out if so: Q4_0 and Q8_0 on AVX-512 VNNI and on
/// AVX2, sixteen rows in the lanes of a register (`block_dot/lanes.rs`; AVX2 reads each group as
/// two halves of eight, `block_dot_avx2/lanes.rs`). Never in wasm, whose rows other
/// workers may hold (`row_shards.rs`); a GPU's upload reads them back in the file's layout.
pub(super) fn lay_out_rows(ggml_type: GgmlType, bytes: &mut [u8], rows: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::block_dot::lanes;
        if Kernels::here() != Kernels::Unpacked && crate::int_dot::one_scale(ggml_type) && rows >= lanes::ROWS {
            lanes::interleave(ggml_type, bytes, bytes.len() / rows);
            return true;
        }
    }
    let _ = (ggml_type, bytes, rows);
    false
}

/// Rows `start..start + len` of `bytes` (`ggml_type`) laid out by [`lay_out_rows`] (`row_bytes` a
/// row), as the file lays them out.
pub(super) fn plain_rows(ggml_type: GgmlType, bytes: &[u8], row_bytes: usize, start: usize, len: usize) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    return crate::block_dot::lanes::plain_rows(ggml_type, bytes, row_bytes, start, len);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = ggml_type;
        bytes[start * row_bytes..(start + len) * row_bytes].to_vec() // nothing is laid out here
    }
}

/// [`dot_rows`] for rows `start..` of `weight` (`bytes`) laid out by [`lay_out_rows`]: whole groups
/// of its rows sixteen at a time, the rows past them as the file has them.
#[cfg(target_arch = "x86_64")]
fn dot_rows_in_lanes(weight: &PackedWeight, start: usize, bytes: &[u8], xs: &QuantizedRows, out: &mut [f32], scratch: &mut DecodeScratch) {
    use crate::block_dot::lanes;
    let (row_bytes, n) = (weight.row_bytes(), xs.q.len() / weight.0.cols);
    assert!(start.is_multiple_of(lanes::ROWS), "a job starts at a group");
    let grouped = lanes::grouped(weight.0.rows).saturating_sub(start).min(bytes.len() / row_bytes);
    let (groups, groups_out) = (&bytes[..grouped * row_bytes], &mut out[..grouped * n]);
    match Kernels::here() {
        Kernels::Avx512Vnni => lanes::dot_groups(weight.ggml_type(), groups, row_bytes, xs, groups_out),
        Kernels::Avx2 => crate::block_dot_avx2::lanes::dot_groups(weight.ggml_type(), groups, row_bytes, xs, groups_out),
        Kernels::Unpacked => unreachable!("rows are laid out in lanes for AVX2 and AVX-512 only"),
    }
    dot_rows(weight.ggml_type(), &bytes[grouped * row_bytes..], row_bytes, xs, &mut out[grouped * n..], scratch);
}

/// Rows `bytes` of a `W` of `ggml_type` dotted with each row of `xs` into `out` `[rows, n]`.
pub(super) fn dot_rows(
    ggml_type: GgmlType,
    bytes: &[u8],
    row_bytes: usize,
    xs: &QuantizedRows,
    out: &mut [f32],
    scratch: &mut DecodeScratch,
) {
    #[cfg(target_arch = "x86_64")]
    match Kernels::here() {
        Kernels::Avx512Vnni => return crate::block_dot::dot_rows(ggml_type, bytes, row_bytes, xs, out, &mut scratch.mins),
        Kernels::Avx2 => return crate::block_dot_avx2::dot_rows(ggml_type, bytes, row_bytes, xs, out, &mut scratch.mins),
        Kernels::Unpacked => {}
    }
    let (n, int_dot, row_buf) = (out.len() / (bytes.len() / row_bytes).max(1), IntDot::here(), &mut scratch.row);
    simd!((), |out: &'a mut [f32],
               bytes: &'a [u8],
               xs: &'a QuantizedRows,
               row_buf: &'a mut UnpackedRow,
               row_bytes: usize,
               n: usize,
               ggml_type: GgmlType,
               int_dot: IntDot| {
        for (w_row, out_row) in bytes.chunks_exact(row_bytes).zip(out.chunks_exact_mut(n)) {
            dot_row(ggml_type, w_row, xs, out_row, row_buf, int_dot);
        }
    });
}

/// Rows of `W` a rayon job of a decoding product takes: a few jobs per thread, so that a small
/// projection (a key's 192 rows) still keeps every thread busy, and at most [`FEW_ROWS_STEP`];
/// whole groups of sixteen where rows are `in_lanes` ([`lay_out_rows`]).
pub(super) fn decode_step_rows(rows: usize, in_lanes: bool) -> usize {
    let (unit, least) = if in_lanes { (16, 16) } else { (4, 8) };
    rows.div_ceil(4 * rayon::current_num_threads()).next_multiple_of(unit).clamp(least, FEW_ROWS_STEP)
}

/// `[out, n]` row-major as `[n, out]`. A large one (a vocabulary-sized head's answers) a row of
/// the result a job on rayon's threads: done serially, the head's at a batch of eight was 2% of
/// a token's samples at two threads, while the other thread waited.
pub(super) fn transposed(out_t: Vec<f32>, n: usize) -> Vec<f32> {
    let rows = out_t.len() / n.max(1);
    if n == 1 || rows == 0 {
        return out_t;
    }
    let mut out = vec![0.0f32; out_t.len()];
    let gather = |(j, row): (usize, &mut [f32])| {
        for (r, v) in row.iter_mut().enumerate() {
            *v = out_t[r * n + j];
        }
    };
    if out.len() < PARALLEL_TRANSPOSE {
        out.chunks_mut(rows).enumerate().for_each(gather);
    } else {
        out.par_chunks_mut(rows).enumerate().for_each(gather);
    }
    out
}

/// Values from which [`transposed`] splits its rows among threads: a layer's products (a few
/// thousand values) take microseconds, less than handing them over.
const PARALLEL_TRANSPOSE: usize = 1 << 16;

/// `a · b` in 16 lanes (one AVX-512 vector), summed at the end: the compiler vectorizes it.
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let (a_blocks, b_blocks) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = a_blocks.remainder().iter().zip(b_blocks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_blocks.zip(b_blocks) {
        for lane in 0..16 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}
