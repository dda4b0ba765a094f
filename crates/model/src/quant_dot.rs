//! Decoding's products with a block-quantized weight, without widening the weight: each row of `W`
//! is unpacked once into signed bytes with a scale per 16 values and a minimum per 32
//! ([`UnpackedRow`]: every type read here fits that form, the K-quants' sub-blocks included) and
//! met by every row of activations, quantized once per product to 16 bits (`int_dot.rs`), in
//! integer multiply-adds. The minimums of the types that have them (Q4_1, Q5_1, Q4_K, Q5_K) meet
//! each block's f32 sum of activations.
//!
//! llama.cpp quantizes the activations to 8 bits; built and measured here, that way changed greedy
//! answers a few dozen tokens in (docs/benchmarks.md), so they get 16.
//!
//! The unpacking is plain loops over fixed-size chunks that the compiler vectorizes, compiled for
//! the CPU at run time through `pulp` ([`crate::row_kernels::simd`]); in wasm, for simd128.

use half::f16;

use crate::gguf_quants::{GgmlType, scale_min_k4};
use crate::int_dot::{IntDot, QUAD, QuantizedRows, one_scale};

/// Values per block of a minimum (a legacy block; a K-quant's sub-block).
pub(crate) const QK: usize = 32;

/// Whether products with weights of `ggml_type` go through [`dot_row`]: the block-quantized types
/// (F16 and BF16 have no block scales to factor out: their rows are widened as before).
pub(crate) fn has_packed_dot(ggml_type: GgmlType) -> bool {
    matches!(
        ggml_type,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K
    )
}

/// A row of `W` unpacked for the products: each value `w = scale * q + min`, `q` a signed
/// byte, with a scale per 16 values (Q6_K's granularity; the other types repeat theirs) given to
/// each of its 4 quads (`int_dot.rs`: 8 quads a block of 32), and a minimum (or offset times
/// scale) per 32. Reused from row to row: no allocation once warm.
#[derive(Debug, Default)]
pub(crate) struct UnpackedRow {
    q: Vec<i8>,
    scales: Vec<f32>,
    mins: Vec<f32>,
}

/// One row of `W` (whole blocks of `ggml_type`, as the file stores it) dotted with each row of
/// activations `xs` (rows of `W`'s width), into `out` (one value per row of `xs`): the row is
/// unpacked once into `row_buf`, then met by every row of `xs` on `int_dot`'s instructions.
/// `ggml_type` is one [`has_packed_dot`] takes.
#[inline(always)]
pub(crate) fn dot_row(ggml_type: GgmlType, row: &[u8], xs: &QuantizedRows, out: &mut [f32], row_buf: &mut UnpackedRow, int_dot: IntDot) {
    unpack(ggml_type, row, row_buf);
    let cols = row_buf.q.len();
    let rows = xs.q.chunks_exact(cols).zip(xs.scales.chunks_exact(cols / QK)).zip(xs.sums.chunks_exact(cols / QK));
    let (with_minimums, by_blocks) = (has_minimums(ggml_type), one_scale(ggml_type));
    for (((x, x_scales), sums), o) in rows.zip(out) {
        let dot = if by_blocks {
            int_dot.dot_blocks(&row_buf.q, &row_buf.scales, x, x_scales)
        } else {
            int_dot.dot(&row_buf.q, &row_buf.scales, x, x_scales)
        };
        *o = if with_minimums { dot + mins_dot(&row_buf.mins, sums) } else { dot };
    }
}

/// Whether `ggml_type`'s blocks carry a minimum of their own (`w = scale * q + min`); the others'
/// values are signed integers times a scale, Q4_0's and Q5_0's offsets taken off in unpacking.
pub(crate) fn has_minimums(ggml_type: GgmlType) -> bool {
    matches!(ggml_type, GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K)
}

/// The minimums times their blocks' sums of activations, in 8 lanes (one pass the compiler
/// vectorizes, where one running sum was a chain of dependent additions), summed in one order.
/// Not `packed::dot`'s 16 lanes: that order changed one of the 100 greedy answers held to the
/// f32 product's (docs/benchmarks.md).
#[inline(always)]
pub(crate) fn mins_dot(mins: &[f32], sums: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (min_chunks, sum_chunks) = (mins.chunks_exact(8), sums.chunks_exact(8));
    let tail: f32 = min_chunks.remainder().iter().zip(sum_chunks.remainder()).map(|(m, s)| m * s).sum();
    for (m, s) in min_chunks.zip(sum_chunks) {
        for l in 0..8 {
            lanes[l] += m[l] * s[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `row` (whole blocks of `ggml_type`) into `u`.
#[inline(always)]
fn unpack(ggml_type: GgmlType, row: &[u8], u: &mut UnpackedRow) {
    // One loop per type: a `match` inside the loop was a jump through a table every block (and a
    // closure per type was compiled apart, for the baseline CPU).
    macro_rules! blocks {
        ($values:expr, $bytes:expr, |$b:ident, $q:ident, $s:ident, $m:ident| $unpack:expr) => {{
            let len = row.len() / $bytes * $values;
            u.q.resize(len, 0);
            u.scales.resize(len / QUAD, 0.0);
            u.mins.resize(len / QK, 0.0);
            let q = u.q.chunks_exact_mut($values);
            let scales = u.scales.chunks_exact_mut($values / QUAD);
            let mins = u.mins.chunks_exact_mut($values / QK);
            for ((($b, $q), $s), $m) in row.chunks_exact($bytes).zip(q).zip(scales).zip(mins) {
                $unpack
            }
        }};
    }
    match ggml_type {
        GgmlType::Q4_0 => blocks!(QK, 18, |b, q, s, m| legacy(offset(nibbles(&b[2..18]), 8), half_at(b, 0), 0.0, q, s, m)),
        GgmlType::Q4_1 => blocks!(QK, 20, |b, q, s, m| legacy(nibbles(&b[4..20]), half_at(b, 0), half_at(b, 2), q, s, m)),
        GgmlType::Q5_0 => {
            blocks!(QK, 22, |b, q, s, m| legacy(offset(with_fifth_bits(nibbles(&b[6..22]), &b[2..6]), 16), half_at(b, 0), 0.0, q, s, m))
        }
        GgmlType::Q5_1 => {
            blocks!(QK, 24, |b, q, s, m| legacy(with_fifth_bits(nibbles(&b[8..24]), &b[4..8]), half_at(b, 0), half_at(b, 2), q, s, m))
        }
        GgmlType::Q8_0 => blocks!(QK, 34, |b, q, s, m| legacy(signed(&b[2..34]), half_at(b, 0), 0.0, q, s, m)),
        GgmlType::Q4K => blocks!(256, 144, |b, q, s, m| k4_like(b, 16, false, q, s, m)),
        GgmlType::Q5K => blocks!(256, 176, |b, q, s, m| k4_like(b, 48, true, q, s, m)),
        GgmlType::Q6K => blocks!(256, 210, |b, q, s, m| q6_k(b, q, s, m)),
        other => unreachable!("{} is not unpacked: it has no blocks", other.name()),
    }
}

/// A legacy block: 32 values `d * q + min`.
#[inline(always)]
fn legacy(w: [i8; QK], d: f32, min: f32, q: &mut [i8], scales: &mut [f32], mins: &mut [f32]) {
    // Fixed lengths: a slice's own length would make each copy a call to `memcpy`.
    q[..QK].copy_from_slice(&w);
    scales[..QK / QUAD].fill(d);
    mins[0] = min;
}

#[inline(always)]
fn half_at(block: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([block[at], block[at + 1]]).to_f32()
}

/// A legacy block's 16 bytes of nibbles as values 0..16: value `j` the low nibble of byte `j`,
/// value `16 + j` its high nibble.
#[inline(always)]
fn nibbles(qs: &[u8]) -> [i8; QK] {
    let mut w = [0i8; QK];
    for j in 0..16 {
        w[j] = (qs[j] & 0xF) as i8;
        w[j + 16] = (qs[j] >> 4) as i8;
    }
    w
}

/// Q5's fifth bits (`qh`, bit `j` for value `j`) added to the nibbles as 16.
#[inline(always)]
fn with_fifth_bits(mut w: [i8; QK], qh: &[u8]) -> [i8; QK] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    for (j, w) in w.iter_mut().enumerate() {
        *w |= (((qh >> j) & 1) << 4) as i8;
    }
    w
}

/// Each value less `by`: Q4_0's and Q5_0's values, stored plus 8 and 16.
#[inline(always)]
fn offset(mut w: [i8; QK], by: i8) -> [i8; QK] {
    for w in &mut w {
        *w -= by;
    }
    w
}

/// Bytes as the signed bytes they store.
#[inline(always)]
fn signed(bytes: &[u8]) -> [i8; QK] {
    let mut w = [0i8; QK];
    for (w, &b) in w.iter_mut().zip(bytes) {
        *w = b as i8;
    }
    w
}

/// Q4_K (`fifth` false: 4 runs of 32 bytes from `at`, each byte's low nibble in sub-block
/// `2 run` and its high nibble in `2 run + 1`) or Q5_K (`fifth`: a fifth bit per value in the 32
/// bytes of `qh` before them, two bits per run): values `d * scale * q - dmin * min` per sub-block.
#[inline(always)]
fn k4_like(b: &[u8], at: usize, fifth: bool, q: &mut [i8], scales: &mut [f32], mins: &mut [f32]) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let qh = &b[16..48];
    for run in 0..4 {
        let bytes = &b[at + 32 * run..at + 32 * run + 32];
        let (low, high) = q[64 * run..64 * run + 64].split_at_mut(QK);
        for l in 0..QK {
            let (h_low, h_high) = if fifth { (((qh[l] >> (2 * run)) & 1) << 4, ((qh[l] >> (2 * run + 1)) & 1) << 4) } else { (0, 0) };
            low[l] = ((bytes[l] & 0xF) | h_low) as i8;
            high[l] = ((bytes[l] >> 4) | h_high) as i8;
        }
    }
    for k in 0..8 {
        let (sc, m) = scale_min_k4(k, &b[4..16]);
        scales[8 * k..8 * k + 8].fill(d * sc);
        mins[k] = -dmin * m;
    }
}

/// Q6_K: per half of 128 values, four sub-blocks of 32 (`l`, `l + 32`, `l + 64`, `l + 96`) from 4
/// low bits and 2 high bits, minus 32; a signed 8-bit scale per 16 values, no minimum.
#[inline(always)]
fn q6_k(b: &[u8], q: &mut [i8], scales: &mut [f32], mins: &mut [f32]) {
    let d = half_at(b, 208);
    for half in 0..2 {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..160 + 32 * half];
        let q = &mut q[128 * half..128 * half + 128];
        for l in 0..QK {
            q[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            q[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            q[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            q[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
        for (k, &sc) in b[192 + 8 * half..200 + 8 * half].iter().enumerate() {
            scales[4 * (8 * half + k)..4 * (8 * half + k + 1)].fill(d * sc as i8 as f32);
        }
    }
    mins.fill(0.0);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gguf_quants::dequantize;

    pub(crate) const TYPES: [GgmlType; 8] =
        [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K];

    pub(crate) fn activations(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0) * if i % 97 == 0 { 8.0 } else { 1.0 }).collect()
    }

    /// The bound 16-bit activations allow: each value off by at most half its block's step, times
    /// the weights it meets, plus f32 rounding.
    #[test]
    fn unpacked_rows_dot_as_the_widened_rows_do_for_every_type_and_every_row_of_activations() {
        let cols = 512;
        for ggml_type in TYPES {
            let row = ggml_type.example_bytes(cols).unwrap();
            let w = dequantize(ggml_type, &row);
            let xs: Vec<f32> = (0..3).flat_map(|seed| activations(cols, seed)).collect();
            let mut found = [0.0f32; 3];
            dot_row(ggml_type, &row, &QuantizedRows::new(&xs), &mut found, &mut UnpackedRow::default(), IntDot::here());
            for (x, found) in xs.chunks_exact(cols).zip(found) {
                let expected: f64 = w.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum();
                let scale: f64 = w.iter().zip(x).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                let step: f64 = w
                    .chunks_exact(QK)
                    .zip(x.chunks_exact(QK))
                    .map(|(w, x)| {
                        x.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64)) / 65534.0 * w.iter().map(|a| a.abs() as f64).sum::<f64>()
                    })
                    .sum();
                assert!((found as f64 - expected).abs() <= step + 1e-5 * scale, "{}: {found} vs {expected}", ggml_type.name());
            }
        }
    }
}
