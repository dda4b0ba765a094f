//! The CPU backend's widest element-wise passes as plain loops over slices: the log-softmax of a
//! language model's logits (tens of thousands of entries a token) and a gated MLP's activations
//! (SwiGLU, GeGLU).
//!
//! burn's CPU backend runs an element-wise op as one pass on one thread, and `exp` as libm's scalar
//! `expf`; a log-softmax and its backward are about ten passes over `[tokens, vocab]`. These
//! kernels make each one pass, split over rayon's threads by rows
//! or fixed-size blocks, with an `exp` the compiler vectorises, compiled for the CPU's SIMD level
//! at run time (`pulp`: AVX-512, AVX2 + FMA, NEON; SIMD128 in wasm, where rayon runs on the one
//! thread).
//!
//! Same bits on every machine: a row or block is summed by one thread in a fixed order of
//! [`LANES`] partial sums, and nothing is contracted into FMAs (Rust never does), so the SIMD level
//! and the thread count change the speed only.

use rayon::prelude::*;

/// Partial sums (and maxima) a row is reduced with: one AVX2 vector of f32.
pub(crate) const LANES: usize = 8;

/// Elements per block of an element-wise pass over a flat buffer (256 KiB of f32).
pub(crate) const BLOCK: usize = 1 << 16;

/// `e^x` within 2 ulp of libm's (Cephes' `expf`: `x = n ln 2 + r`, a degree-6 polynomial in `r`),
/// 0 below `ln` of the smallest normal f32, `inf` above 88.37 (where `2^n` would need the exponent
/// 128; `e^x` < 2.7e38 is lost there, never reached by a softmax's `x - max` <= 0), NaN for NaN;
/// straight-line code that vectorises.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer in the low bits
    const MIN: f32 = -87.336_55; // ln of the smallest normal f32
    const MAX: f32 = 88.37; // n <= 127
    let clamped = x.clamp(MIN, MAX);
    let shifted = clamped * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let exponent = (shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32).wrapping_add(127) as u32;
    let scaled = y * f32::from_bits(exponent << 23);
    if x < MIN {
        0.0
    } else if x > MAX {
        f32::INFINITY
    } else {
        scaled // NaN stays NaN: every comparison above is false for it
    }
}

/// Runs `$body` compiled for the CPU's SIMD level: a `pulp::WithSimd` whose `with_simd` holds the
/// loop itself (a closure handed to `pulp` is compiled on its own, for the baseline CPU, unless
/// the compiler chooses to inline it). Everything the body calls is `#[inline(always)]`.
macro_rules! simd {
    ($out:ty, |$($name:ident: $ty:ty),*| $body:block) => {{
        struct Kernel<'a> { $($name: $ty),*, _life: std::marker::PhantomData<&'a ()> }
        impl pulp::WithSimd for Kernel<'_> {
            type Output = $out;
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) -> $out {
                let Kernel { $($name),*, .. } = self;
                $body
            }
        }
        pulp::Arch::new().dispatch(Kernel { $($name),*, _life: std::marker::PhantomData })
    }};
}
pub(crate) use simd;

/// The largest entry of `row` (NaN entries are skipped; an all-NaN or empty row gives -inf).
#[inline(always)]
pub(crate) fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = if x > *lane { x } else { *lane };
        }
    }
    let max = tail.iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    lanes.into_iter().fold(max, |m, x| if x > m { x } else { m })
}

/// `Σ e^(x - shift)` over `row`, in [`LANES`] partial sums.
#[inline(always)]
fn row_sum_exp(row: &[f32], shift: f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += exp(x - shift);
        }
    }
    lanes.into_iter().sum::<f32>() + tail.iter().map(|&x| exp(x - shift)).sum::<f32>()
}

/// The log-sum-exp of one row of logits.
#[inline(always)]
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row_max(row);
    if max == f32::NEG_INFINITY {
        // A row of -inf gives -inf; a row of NaN, NaN.
        return if row.iter().any(|x| x.is_nan()) { f32::NAN } else { max };
    }
    max + row_sum_exp(row, max).ln()
}

/// Per row of `logits` `[rows, vocab]`: `log p(target)` and the row's log-sum-exp. A target outside
/// the vocabulary gives NaN (what a training step's guard stops at), not a panic.
pub(crate) fn log_softmax_at(logits: &[f32], vocab: usize, targets: &[i64]) -> (Vec<f32>, Vec<f32>) {
    let pairs: Vec<(f32, f32)> = logits
        .par_chunks(vocab)
        .zip(targets.par_iter())
        .map(|(row, &target)| {
            let lse = simd!(f32, |row: &'a [f32]| { log_sum_exp(row) });
            let chosen = usize::try_from(target).ok().and_then(|t| row.get(t)).map_or(f32::NAN, |&x| x - lse);
            (chosen, lse)
        })
        .collect();
    pairs.into_iter().unzip()
}

/// Only the rows' log-sum-exps.
pub(crate) fn log_sum_exps(logits: &[f32], vocab: usize) -> Vec<f32> {
    logits.par_chunks(vocab).map(|row| simd!(f32, |row: &'a [f32]| { log_sum_exp(row) })).collect()
}

/// The gradient of `Σ_i grad_i · log p_i(target_i)` with respect to the logits `[rows, vocab]`:
/// `grad_i · (onehot(target_i) - softmax(row_i))`, from the rows' log-sum-exps.
pub(crate) fn log_softmax_at_backward(logits: &[f32], vocab: usize, targets: &[i64], lse: &[f32], grad: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; logits.len()];
    out.par_chunks_mut(vocab).zip(logits.par_chunks(vocab)).enumerate().for_each(|(i, (out, row))| {
        let (g, shift) = (grad[i], lse[i]);
        simd!((), |out: &'a mut [f32], row: &'a [f32], g: f32, shift: f32| {
            for (o, &x) in out.iter_mut().zip(row) {
                *o = -g * exp(x - shift);
            }
        });
        if let Some(o) = usize::try_from(targets[i]).ok().and_then(|t| out.get_mut(t)) {
            *o += g;
        }
    });
    out
}

/// Per row of `logits` `[rows, vocab]`: the probabilities (overwriting the logits), the
/// log-sum-exp and the entropy `lse - Σ p x`.
pub(crate) fn softmax_in_place(logits: &mut [f32], vocab: usize) -> (Vec<f32>, Vec<f32>) {
    let pairs: Vec<(f32, f32)> = logits
        .par_chunks_mut(vocab)
        .map(|row| {
            simd!((f32, f32), |row: &'a mut [f32]| {
                // e^(x - max) / Σ, not e^(x - lse): a row of scores far from 0 (an attention row
                // whose every key is hidden, all near -1e9) keeps its own scale in `x - max`,
                // where `lse` rounds to a multiple of 64 there.
                let max = row_max(row);
                let (lse, inv_sum) = if max == f32::NEG_INFINITY {
                    (log_sum_exp(row), f32::NAN)
                } else {
                    let sum = row_sum_exp(row, max);
                    (max + sum.ln(), 1.0 / sum)
                };
                let mut lanes = [0.0f32; LANES];
                let mut chunks = row.chunks_exact_mut(LANES);
                for chunk in chunks.by_ref() {
                    for (lane, x) in lanes.iter_mut().zip(chunk) {
                        let p = exp(*x - max) * inv_sum;
                        *lane += p * *x;
                        *x = p;
                    }
                }
                let mut expected = 0.0f32;
                for x in chunks.into_remainder() {
                    let p = exp(*x - max) * inv_sum;
                    expected += p * *x;
                    *x = p;
                }
                (lse, lse - (lanes.into_iter().sum::<f32>() + expected))
            })
        })
        .collect();
    pairs.into_iter().unzip()
}

/// The activation of a gated MLP's gate: SwiGLU's `silu` (Llama, Qwen) or GeGLU's `gelu` in its
/// tanh form (Gemma).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateActivation {
    Silu,
    GeluTanh,
}

/// sqrt(2 / pi), the tanh form of gelu's scale.
const GELU_SCALE: f32 = 0.797_884_6;
const GELU_CUBIC: f32 = 0.044_715;

/// `(act(g), act'(g))`. tanh as `1 - 2 / (e^{2z} + 1)`: exact at both ends (`e^{2z}` 0 or inf).
#[inline(always)]
fn activation(act: GateActivation, g: f32) -> (f32, f32) {
    match act {
        GateActivation::Silu => {
            let s = 1.0 / (1.0 + exp(-g));
            (g * s, s * (g * (1.0 - s) + 1.0))
        }
        GateActivation::GeluTanh => {
            let z = GELU_SCALE * (g + GELU_CUBIC * g * g * g);
            let t = 1.0 - 2.0 / (exp(2.0 * z) + 1.0);
            let dz = GELU_SCALE * (1.0 + 3.0 * GELU_CUBIC * g * g);
            (0.5 * g * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * g * (1.0 - t * t) * dz)
        }
    }
}

/// `act(gate) · up`, element by element.
pub(crate) fn gated(gate: &[f32], up: &[f32], act: GateActivation) -> Vec<f32> {
    let mut out = vec![0.0f32; gate.len()];
    out.par_chunks_mut(BLOCK).zip(gate.par_chunks(BLOCK)).zip(up.par_chunks(BLOCK)).for_each(|((out, gate), up)| {
        simd!((), |out: &'a mut [f32], gate: &'a [f32], up: &'a [f32], act: GateActivation| {
            // One loop per activation, each with its formula inlined, so each vectorises.
            let mut each = |act| out.iter_mut().zip(gate).zip(up).for_each(|((o, &g), &u)| *o = activation(act, g).0 * u);
            match act {
                GateActivation::Silu => each(GateActivation::Silu),
                GateActivation::GeluTanh => each(GateActivation::GeluTanh),
            }
        })
    });
    out
}

/// The gated unit's input gradients from the output's `grad`: `(d gate, d up)` =
/// `(grad · up · act'(g), grad · act(g))`.
pub(crate) fn gated_backward(gate: &[f32], up: &[f32], grad: &[f32], act: GateActivation) -> (Vec<f32>, Vec<f32>) {
    let (mut d_gate, mut d_up) = (vec![0.0f32; gate.len()], vec![0.0f32; gate.len()]);
    d_gate
        .par_chunks_mut(BLOCK)
        .zip(d_up.par_chunks_mut(BLOCK))
        .zip(gate.par_chunks(BLOCK))
        .zip(up.par_chunks(BLOCK))
        .zip(grad.par_chunks(BLOCK))
        .for_each(|((((d_gate, d_up), gate), up), grad)| {
            simd!((), |d_gate: &'a mut [f32], d_up: &'a mut [f32], gate: &'a [f32], up: &'a [f32], grad: &'a [f32], act: GateActivation| {
                let mut each = |act| {
                    for ((((dg, du), &g), &u), &dy) in d_gate.iter_mut().zip(d_up.iter_mut()).zip(gate).zip(up).zip(grad) {
                        let (a, slope) = activation(act, g);
                        *du = dy * a;
                        *dg = dy * u * slope;
                    }
                };
                match act {
                    GateActivation::Silu => each(GateActivation::Silu),
                    GateActivation::GeluTanh => each(GateActivation::GeluTanh),
                }
            })
        });
    (d_gate, d_up)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm_and_keeps_its_edges() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (ours, libm) = (exp(x), x.exp());
            assert!((ours - libm).abs() <= 2.0 * f32::EPSILON * libm, "exp({x}): {ours} against {libm}");
            x += 0.0137;
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn log_softmax_at_and_its_gradient_match_the_direct_formulas() {
        let vocab = 37;
        let logits: Vec<f32> = (0..3 * vocab).map(|i| ((i * 7919) % 101) as f32 / 9.0 - 5.0).collect();
        let targets = [4i64, 36, 99];
        let (chosen, lse) = log_softmax_at(&logits, vocab, &targets);
        for (i, row) in logits.chunks(vocab).enumerate() {
            let direct = row.iter().map(|&x| f64::from(x).exp()).sum::<f64>().ln();
            assert!((f64::from(lse[i]) - direct).abs() < 1e-5, "row {i}: {} against {direct}", lse[i]);
        }
        assert!((chosen[0] - (logits[4] - lse[0])).abs() < 1e-6 && (chosen[1] - (logits[vocab + 36] - lse[1])).abs() < 1e-6);
        assert!(chosen[2].is_nan(), "a target outside the vocabulary gives NaN");
        let grad = log_softmax_at_backward(&logits, vocab, &targets, &lse, &[1.0, 2.0, 0.5]);
        let row_1 = &grad[vocab..2 * vocab];
        assert!(row_1.iter().sum::<f32>().abs() < 1e-5, "one-hot minus a distribution sums to 0");
        assert!(row_1[36] > 0.0 && row_1[0] < 0.0);
    }
}
