//! [`DecodeSampler`](crate::decode_sampler::DecodeSampler) on the CPU backend: each row's choice in
//! a few vectorised passes over its logits, rows split over rayon's threads.
//!
//! The same choice as `choose.rs` (a test holds the two together), made the way a CPU does it
//! cheaply. `choose.rs` as burn's ops was about ten passes over `[n, vocab]` with libm's scalar
//! `exp` twice per logit and a fresh tensor each pass: a sixth of eight answers' time on Gemma 3's
//! 262,144-token vocabulary. Here a greedy row is two passes (the maximum, then `Σ e^(s - max)`),
//! a sampled row the same two, its `Σ` kept per block of [`BLOCK`] logits, and a walk that adds
//! the block sums up to the draw and recomputes one block's `e^(s - max)`. The top-k and top-p
//! cuts come from a partial sort (`select_nth_unstable` for the k-th largest logit; the nucleus
//! sorted among the candidates above a threshold lowered until they weigh enough), then one more
//! pass for the kept blocks' sums.

use crate::decode_sampler::ChooseStep;
use crate::row_kernels::{exp, simd};

/// Logits a block of the inverse CDF's walk.
const BLOCK: usize = 64;

/// Partial sums a pass keeps (a fixed order, so every SIMD level gives the same bits).
const LANES: usize = 16;

/// Each row's `(id, 1.0 if a logit is not finite else 0.0, the id's log-prob)`; `logits` holds
/// rows of `vocab`, `draws` one uniform per row.
pub(crate) fn choose_rows(logits: &[f32], vocab: usize, draws: &[f32], step: &ChooseStep) -> Vec<(u32, f32, f32)> {
    use rayon::prelude::*;
    logits.par_chunks(vocab).zip(draws.par_iter()).map(|(row, &draw)| choose_row(row, draw, step)).collect()
}

/// One row's choice.
fn choose_row(row: &[f32], draw: f32, step: &ChooseStep) -> (u32, f32, f32) {
    // 1. The largest logit, and whether every one is finite (a non-finite row stops the answer).
    let (max, finite) = simd!((f32, bool), |row: &'a [f32]| { max_and_finite(row) });
    if !finite {
        return (0, 1.0, f32::NAN);
    }
    let inv_t = if step.temperature == 0.0 { 1.0 } else { 1.0 / step.temperature };
    let shift = max * inv_t; // the largest scaled logit
    let scale = Scale { inv_t, shift };

    // 2. `Σ e^(s - max)` a block at a time: the log-sum-exp, and the walk's coarse steps.
    let every = Cut { lowest: f32::NEG_INFINITY, lightest: 0.0 };
    let blocks = simd!(Vec<f32>, |row: &'a [f32], scale: Scale, every: Cut| { block_sums(row, scale, every) });
    let total = blocks.iter().sum::<f32>();
    let lse = shift + total.ln();
    if step.temperature == 0.0 {
        let id = row.iter().position(|&l| l == max).unwrap_or(0);
        return (id as u32, 0.0, row[id] * inv_t - lse);
    }

    // 3. The cuts, as thresholds: a logit at least `lowest` and a weight `e^(s - max)` at least
    //    `lightest`, ties with the last token kept all kept.
    let lowest = if step.top_k > 0 && step.top_k < row.len() { kth_largest(row, step.top_k) } else { f32::NEG_INFINITY };
    let lightest = if step.top_p < 1.0 { nucleus_floor(row, scale, lowest, step.top_p * total) } else { 0.0 };
    let cut = Cut { lowest, lightest };
    let blocks =
        if cut == every { blocks } else { simd!(Vec<f32>, |row: &'a [f32], scale: Scale, cut: Cut| { block_sums(row, scale, cut) }) };

    // 4. The inverse CDF: the first token whose running kept weight reaches the draw's share. The
    //    block sums find its block; the block's own weights, added one by one, the token.
    let target = draw * blocks.iter().sum::<f32>();
    let mut below = 0.0f32;
    let mut last = None;
    for (b, &sum) in blocks.iter().enumerate() {
        if sum == 0.0 {
            continue;
        }
        last = Some(b);
        if below + sum < target {
            below += sum;
            continue;
        }
        let id = token_reaching(row, b, scale, cut, below, target);
        return (id as u32, 0.0, row[id] * inv_t - lse);
    }
    // Only a total that is not a number leaves the loop.
    let id = last.map_or(0, |b| token_reaching(row, b, scale, cut, below, f32::INFINITY));
    (id as u32, 0.0, row[id] * inv_t - lse)
}

/// In block `b` of `row`, the first kept token whose weight, added to `below`, reaches `target`;
/// the last kept one if the block's own order of sums leaves them a rounding short.
fn token_reaching(row: &[f32], b: usize, scale: Scale, cut: Cut, below: f32, target: f32) -> usize {
    let start = b * BLOCK;
    let mut reached = below;
    let mut last = start;
    for (i, &l) in row[start..(start + BLOCK).min(row.len())].iter().enumerate() {
        let e = scale.weight(l);
        if !cut.keeps(l, e) || e == 0.0 {
            continue;
        }
        reached += e;
        last = start + i;
        if reached >= target {
            break;
        }
    }
    last
}

/// What the top-k and top-p cuts keep: a logit at least `lowest` whose weight is at least
/// `lightest`.
#[derive(Clone, Copy, PartialEq)]
struct Cut {
    lowest: f32,
    lightest: f32,
}

impl Cut {
    #[inline(always)]
    fn keeps(self, l: f32, e: f32) -> bool {
        l >= self.lowest && e >= self.lightest
    }
}

/// A logit's weight `e^(l / T - max)`.
#[derive(Clone, Copy)]
struct Scale {
    inv_t: f32,
    shift: f32,
}

impl Scale {
    #[inline(always)]
    fn weight(self, l: f32) -> f32 {
        exp(l * self.inv_t - self.shift)
    }
}

/// The largest entry of `row`, and whether every entry is finite (`0 · x` is NaN for an infinite or
/// NaN `x`, so one sum of them says it without a branch).
#[inline(always)]
fn max_and_finite(row: &[f32]) -> (f32, bool) {
    let (mut max, mut zero) = ([f32::NEG_INFINITY; LANES], [0.0f32; LANES]);
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for ((m, z), &x) in max.iter_mut().zip(&mut zero).zip(chunk) {
            *m = if x > *m { x } else { *m };
            *z += 0.0 * x;
        }
    }
    let fold = |m: f32, x: f32| if x > m { x } else { m };
    let max = tail.iter().copied().fold(max.into_iter().fold(f32::NEG_INFINITY, fold), fold);
    let zero = zero.into_iter().sum::<f32>() + tail.iter().map(|&x| 0.0 * x).sum::<f32>();
    (max, zero == 0.0)
}

/// `Σ e^(l / T - max)` over each [`BLOCK`] of `row`, counting only what `cut` keeps.
#[inline(always)]
fn block_sums(row: &[f32], scale: Scale, cut: Cut) -> Vec<f32> {
    let weight = |l: f32| {
        let e = scale.weight(l);
        if cut.keeps(l, e) { e } else { 0.0 }
    };
    row.chunks(BLOCK)
        .map(|block| {
            let mut lanes = [0.0f32; LANES];
            let chunks = block.chunks_exact(LANES);
            let tail = chunks.remainder();
            for chunk in chunks {
                for (lane, &l) in lanes.iter_mut().zip(chunk) {
                    *lane += weight(l);
                }
            }
            lanes.into_iter().sum::<f32>() + tail.iter().map(|&l| weight(l)).sum::<f32>()
        })
        .collect()
}

/// The `k`-th largest logit (`0 < k < row.len()`), by a partial sort of a copy.
fn kth_largest(row: &[f32], k: usize) -> f32 {
    let mut values = row.to_vec();
    *values.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a)).1
}

/// The smallest weight `e^(s - max)` the nucleus keeps: the heaviest tokens (among those at least
/// `lowest`) whose weights add up to `mass`, or 0 (no cut) when all of them together weigh less.
/// Only the candidates above a threshold are sorted; the threshold falls by `2^-8` a pass until
/// they weigh `mass`.
fn nucleus_floor(row: &[f32], scale: Scale, lowest: f32, mass: f32) -> f32 {
    let mut floor = 1.0f32;
    loop {
        floor *= 1.0 / 256.0;
        let light = floor < f32::MIN_POSITIVE;
        let mut candidates: Vec<f32> =
            row.iter().filter(|&&l| l >= lowest).map(|&l| scale.weight(l)).filter(|&e| light || e >= floor).collect();
        if candidates.iter().sum::<f32>() < mass && !light {
            continue;
        }
        candidates.sort_unstable_by(|a, b| b.total_cmp(a));
        let mut kept = 0.0f32;
        for &e in &candidates {
            kept += e;
            if kept >= mass {
                return e;
            }
        }
        return 0.0;
    }
}
