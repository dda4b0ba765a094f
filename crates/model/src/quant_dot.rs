//! Decoding's products with a quantized weight as llama.cpp computes them (`ggml_vec_dot_*_q8_*`):
//! the activations quantized once per token to 8 bits in blocks of 32 ([`Q8Block`]: a scale, 32
//! signed bytes, their sum), and each row of `W` dotted block by block in integers, its 4-, 5-, 6-
//! or 8-bit values against the activations' 8, the two blocks' scales applied once per block in
//! f32. No value of `W` is widened to f32, so a token reads the packed bytes and little else.
//!
//! Blocks of 32 fit every type read here: the legacy types' blocks are 32 values, and the
//! K-quants' 256-value super-blocks are sub-blocks of 32 (Q4_K, Q5_K) or 16 (Q6_K) with scales of
//! their own, so each sub-block's integer sum meets one activation block. (llama.cpp quantizes
//! activations for the K-quants in blocks of 256; blocks of 32 lose less to rounding.)
//!
//! The integer loops are plain loops over fixed-size arrays that the compiler turns into the SIMD
//! level's widening multiply-adds (AVX2/AVX-512 `vpmaddwd`, simd128's `i32x4.dot_i16x8_s`), compiled
//! for the CPU at run time through `pulp` ([`crate::row_kernels::simd`]).

use half::f16;

use crate::gguf_quants::GgmlType;

/// Values per activation block.
pub(crate) const QK: usize = 32;

/// 32 activations as `d * q[i]`, with `sum` = the sum of `q` (what a weight block's offset or
/// minimum multiplies).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Q8Block {
    d: f32,
    sum: i32,
    q: [i8; QK],
}

/// Whether products with weights of `ggml_type` go through [`dot_row`]: the block-quantized types
/// (F32, F16 and BF16 weights have no integer form to meet).
pub(crate) fn has_integer_dot(ggml_type: GgmlType) -> bool {
    matches!(
        ggml_type,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K
    )
}

/// `x` (a multiple of [`QK`] values) in 8-bit blocks as llama.cpp's `quantize_row_q8_0` rounds
/// them: `d = max|x| / 127`, `q = round(x / d)`.
#[inline(always)]
pub(crate) fn quantize_row(x: &[f32]) -> Vec<Q8Block> {
    x.chunks_exact(QK)
        .map(|x| {
            let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut q = [0i8; QK];
            for (q, &v) in q.iter_mut().zip(x) {
                *q = (v * id).round() as i8;
            }
            Q8Block { d, sum: q.iter().map(|&q| q as i32).sum(), q }
        })
        .collect()
}

/// One row of `W` (whole blocks of `ggml_type`, as the file stores it) dotted with the activations
/// `x` quantized by [`quantize_row`]; `ggml_type` is one [`has_integer_dot`] takes.
#[inline(always)]
pub(crate) fn dot_row(ggml_type: GgmlType, row: &[u8], x: &[Q8Block]) -> f32 {
    match ggml_type {
        GgmlType::Q4_0 => dot_q4_0(row, x),
        GgmlType::Q4_1 => dot_q4_1(row, x),
        GgmlType::Q5_0 => dot_q5_0(row, x),
        GgmlType::Q5_1 => dot_q5_1(row, x),
        GgmlType::Q8_0 => dot_q8_0(row, x),
        GgmlType::Q4K => dot_q4_k(row, x),
        GgmlType::Q5K => dot_q5_k(row, x),
        GgmlType::Q6K => dot_q6_k(row, x),
        other => unreachable!("{} has no integer dot product", other.name()),
    }
}

#[inline(always)]
fn half_at(block: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([block[at], block[at + 1]]).to_f32()
}

/// `sum w[i] * x[i]` over `N` values, in i32 (at most 32 * 63 * 127 in magnitude per call).
#[inline(always)]
fn idot<const N: usize>(w: &[i8; N], x: &[i8]) -> i32 {
    let x: &[i8; N] = x.try_into().expect("N activations");
    let mut sum = 0i32;
    for i in 0..N {
        sum += (w[i] as i16 * x[i] as i16) as i32;
    }
    sum
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

/// `d * (q - 8)`.
fn dot_q4_0(row: &[u8], x: &[Q8Block]) -> f32 {
    let mut acc = 0.0f32;
    for (b, x) in row.chunks_exact(18).zip(x) {
        let sum = idot(&nibbles(&b[2..18]), &x.q) - 8 * x.sum;
        acc += half_at(b, 0) * x.d * sum as f32;
    }
    acc
}

/// `d * q + m`.
fn dot_q4_1(row: &[u8], x: &[Q8Block]) -> f32 {
    let mut acc = 0.0f32;
    for (b, x) in row.chunks_exact(20).zip(x) {
        let sum = idot(&nibbles(&b[4..20]), &x.q);
        acc += half_at(b, 0) * x.d * sum as f32 + half_at(b, 2) * x.d * x.sum as f32;
    }
    acc
}

/// `d * (q - 16)`, `q` five bits.
fn dot_q5_0(row: &[u8], x: &[Q8Block]) -> f32 {
    let mut acc = 0.0f32;
    for (b, x) in row.chunks_exact(22).zip(x) {
        let sum = idot(&with_fifth_bits(nibbles(&b[6..22]), &b[2..6]), &x.q) - 16 * x.sum;
        acc += half_at(b, 0) * x.d * sum as f32;
    }
    acc
}

/// `d * q + m`, `q` five bits.
fn dot_q5_1(row: &[u8], x: &[Q8Block]) -> f32 {
    let mut acc = 0.0f32;
    for (b, x) in row.chunks_exact(24).zip(x) {
        let sum = idot(&with_fifth_bits(nibbles(&b[8..24]), &b[4..8]), &x.q);
        acc += half_at(b, 0) * x.d * sum as f32 + half_at(b, 2) * x.d * x.sum as f32;
    }
    acc
}

/// `d * q`, `q` a signed byte.
fn dot_q8_0(row: &[u8], x: &[Q8Block]) -> f32 {
    let mut acc = 0.0f32;
    for (b, x) in row.chunks_exact(34).zip(x) {
        let mut w = [0i8; QK];
        for (w, &q) in w.iter_mut().zip(&b[2..34]) {
            *w = q as i8;
        }
        acc += half_at(b, 0) * x.d * idot(&w, &x.q) as f32;
    }
    acc
}

/// The 6-bit scale and minimum of Q4_K/Q5_K sub-block `j` (of 8), as integers (`get_scale_min_k4`).
#[inline(always)]
fn scale_min_k4(j: usize, scales: &[u8]) -> (i32, i32) {
    let (sc, m) = if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        ((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4))
    };
    (sc as i32, m as i32)
}

/// Per sub-block of 32: `d * sc * q - dmin * m`; `low(run)` gives sub-block `2 run`'s 32 values,
/// `high(run)` sub-block `2 run + 1`'s.
#[inline(always)]
fn dot_k4_like(b: &[u8], x: &[Q8Block], values: impl Fn(usize) -> ([i8; QK], [i8; QK])) -> f32 {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let scales = &b[4..16];
    let (mut scaled, mut mins) = (0.0f32, 0.0f32);
    for run in 0..4 {
        let (low, high) = values(run);
        for (k, w) in [(2 * run, low), (2 * run + 1, high)] {
            let (sc, m) = scale_min_k4(k, scales);
            let x = &x[k];
            scaled += x.d * (sc * idot(&w, &x.q)) as f32;
            mins += x.d * (m * x.sum) as f32;
        }
    }
    d * scaled - dmin * mins
}

/// Q4_K: 4 runs of 32 bytes, each byte's low nibble in one sub-block and its high in the next.
fn dot_q4_k(row: &[u8], x: &[Q8Block]) -> f32 {
    row.chunks_exact(144)
        .zip(x.chunks_exact(8))
        .map(|(b, x)| {
            dot_k4_like(b, x, |run| {
                let q = &b[16 + 32 * run..48 + 32 * run];
                let (mut low, mut high) = ([0i8; QK], [0i8; QK]);
                for l in 0..QK {
                    (low[l], high[l]) = ((q[l] & 0xF) as i8, (q[l] >> 4) as i8);
                }
                (low, high)
            })
        })
        .sum()
}

/// Q5_K: Q4_K's layout with a fifth bit per value in 32 bytes of `qh`, two bits per run.
fn dot_q5_k(row: &[u8], x: &[Q8Block]) -> f32 {
    row.chunks_exact(176)
        .zip(x.chunks_exact(8))
        .map(|(b, x)| {
            let qh = &b[16..48];
            dot_k4_like(b, x, |run| {
                let q = &b[48 + 32 * run..80 + 32 * run];
                let (mut low, mut high) = ([0i8; QK], [0i8; QK]);
                for l in 0..QK {
                    low[l] = ((q[l] & 0xF) | (((qh[l] >> (2 * run)) & 1) << 4)) as i8;
                    high[l] = ((q[l] >> 4) | (((qh[l] >> (2 * run + 1)) & 1) << 4)) as i8;
                }
                (low, high)
            })
        })
        .sum()
}

/// Q6_K: per half of 128 values, four blocks of 32 (`l`, `l + 32`, `l + 64`, `l + 96`) from 4 low
/// bits and 2 high bits, minus 32; a signed 8-bit scale per 16 values.
fn dot_q6_k(row: &[u8], x: &[Q8Block]) -> f32 {
    row.chunks_exact(210)
        .zip(x.chunks_exact(8))
        .map(|(b, x)| {
            let d = half_at(b, 208);
            let mut acc = 0.0f32;
            for half in 0..2 {
                let ql = &b[64 * half..64 * half + 64];
                let qh = &b[128 + 32 * half..160 + 32 * half];
                let sc = &b[192 + 8 * half..200 + 8 * half];
                let mut w = [[0i8; QK]; 4];
                for l in 0..QK {
                    w[0][l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                    w[1][l] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                    w[2][l] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                    w[3][l] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                }
                for (k, w) in w.iter().enumerate() {
                    let x = &x[4 * half + k];
                    let (low, high) = (w[..16].try_into().expect("16"), w[16..].try_into().expect("16"));
                    let (sc_low, sc_high) = (sc[2 * k] as i8 as i32, sc[2 * k + 1] as i8 as i32);
                    let sum = sc_low * idot::<16>(low, &x.q[..16]) + sc_high * idot::<16>(high, &x.q[16..]);
                    acc += x.d * sum as f32;
                }
            }
            d * acc
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf_quants::dequantize;

    const TYPES: [GgmlType; 8] =
        [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K];

    fn activations(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0) * if i % 97 == 0 { 8.0 } else { 1.0 }).collect()
    }

    fn widened(x: &[Q8Block]) -> Vec<f32> {
        x.iter().flat_map(|b| b.q.map(|q| b.d * q as f32)).collect()
    }

    #[test]
    fn integer_dots_equal_the_widened_row_dotted_with_the_widened_activations() {
        let cols = 512;
        for ggml_type in TYPES {
            let row = ggml_type.example_bytes(cols).unwrap();
            let w = dequantize(ggml_type, &row);
            for seed in 0..3 {
                let x = quantize_row(&activations(cols, seed));
                let expected: f64 = w.iter().zip(widened(&x)).map(|(&a, b)| a as f64 * b as f64).sum();
                let scale: f64 = w.iter().zip(widened(&x)).map(|(&a, b)| (a as f64 * b as f64).abs()).sum();
                let found = dot_row(ggml_type, &row, &x) as f64;
                assert!((found - expected).abs() <= 1e-5 * scale, "{}: {found} vs {expected} (scale {scale})", ggml_type.name());
            }
        }
    }

    #[test]
    fn quantized_activations_keep_each_block_within_half_a_step() {
        let x = activations(256, 1);
        let q = quantize_row(&x);
        for (block, (values, b)) in x.chunks_exact(QK).zip(&q).enumerate() {
            assert_eq!(b.sum, b.q.iter().map(|&q| q as i32).sum::<i32>());
            assert!(b.q.iter().any(|&q| q.unsigned_abs() == 127), "block {block} uses the whole range");
            for (v, q) in values.iter().zip(b.q) {
                assert!((v - b.d * q as f32).abs() <= 0.5 * b.d * 1.0001, "block {block}: {v} vs {}", b.d * q as f32);
            }
        }
        assert!(quantize_row(&[0.0; QK])[0].q.iter().all(|&q| q == 0));
    }

    #[test]
    fn integer_dots_stay_within_the_activations_rounding_of_the_f32_product() {
        let cols = 1024;
        for ggml_type in TYPES {
            let row = ggml_type.example_bytes(cols).unwrap();
            let w = dequantize(ggml_type, &row);
            let x = activations(cols, 2);
            let exact: f64 = w.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
            // Each activation moves by at most half its block's step, d / 2 = max|x| / 254.
            let bound: f64 = w
                .chunks_exact(QK)
                .zip(x.chunks_exact(QK))
                .map(|(w, x)| {
                    let step = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64 / 254.0;
                    w.iter().map(|&a| a.abs() as f64 * step).sum::<f64>()
                })
                .sum();
            let found = dot_row(ggml_type, &row, &quantize_row(&x)) as f64;
            assert!((found - exact).abs() <= bound * 1.01 + 1e-6, "{}: {found} vs {exact} (bound {bound})", ggml_type.name());
        }
    }
}
