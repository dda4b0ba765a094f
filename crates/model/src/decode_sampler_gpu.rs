//! [`DecodeSampler`] on cubecl's GPU runtimes: one workgroup a row, its threads going over the
//! vocabulary a stride at a time for each pass (the maximum and its first index, the minimum, the
//! finite check; the softmax's sum; each bisection step of a cut; the inverse CDF as a scan a chunk
//! of `threads` tokens at a time, twice: once for the kept mass, once counting the tokens below the
//! draw), with tree sums in 2 KiB of workgroup memory. No subgroup operations.

use burn::backend::TensorMetadata;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::{FloatDType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeCount, CubeDim};

use crate::decode_sampler::{ChooseStep, DecodeSampler};

/// Bisection steps for a cut, as `choose.rs` takes them.
const BISECTION_STEPS: usize = 32;

/// Threads a row: a power of two.
const THREADS: usize = 256;

impl DecodeSampler for CubeBackend {
    fn choose_decoded(logits: CubeTensor, draws: CubeTensor, stopped: CubeTensor, step: ChooseStep) -> (CubeTensor, CubeTensor) {
        let [logits, draws, stopped] = [logits, draws, stopped].map(into_contiguous);
        let (n, vocab, steps) = (logits.shape()[0], logits.shape()[1], draws.shape()[1]);
        let new = |width: usize| CubeBackend::float_empty(Shape::from([n, width]), &logits.device, FloatDType::F32);
        let (chosen, stopped_after) = (new(3), new(1));
        let greedy = step.temperature == 0.0;
        let client = logits.client.clone();
        choose_kernel::launch(
            &client,
            CubeCount::Static(n as u32, 1, 1),
            CubeDim::new_1d(THREADS as u32),
            logits.into_tensor_arg(),
            draws.into_tensor_arg(),
            stopped.into_tensor_arg(),
            chosen.clone().into_tensor_arg(),
            stopped_after.clone().into_tensor_arg(),
            vocab,
            steps,
            step.step,
            if greedy { 1.0 } else { step.temperature },
            step.top_k as f32,
            step.top_p,
            step.pad as f32,
            step.eos.map_or(-1.0, |eos| eos as f32),
            THREADS / 2,
            greedy,
            !greedy && step.top_k > 0 && step.top_k < vocab,
            !greedy && step.top_p < 1.0,
            THREADS,
        );
        (chosen, stopped_after)
    }
}

/// Every thread's `value` summed (`max = false`) or maximised into `scratch[0]`, which every thread
/// returns.
#[cube]
pub(crate) fn all_reduce(scratch: &mut Shared<[f32]>, value: f32, half_threads: usize, #[comptime] max: bool) -> f32 {
    let t = UNIT_POS_X as usize;
    scratch[t] = value;
    sync_cube();
    let mut stride = half_threads;
    while stride > 0 {
        if t < stride {
            if comptime![max] {
                scratch[t] = f32::max(scratch[t], scratch[t + stride]);
            } else {
                scratch[t] += scratch[t + stride];
            }
        }
        sync_cube();
        stride /= 2;
    }
    let total = scratch[0];
    sync_cube();
    total
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn choose_kernel(
    logits: &Tensor<f32>,            // [n, vocab]
    draws: &Tensor<f32>,             // [n, steps]
    stopped: &Tensor<f32>,           // [n, 1]
    chosen: &mut Tensor<f32>,        // [n, 3]: id, non-finite, log-prob
    stopped_after: &mut Tensor<f32>, // [n, 1]
    vocab: usize,
    steps: usize,
    step: usize,
    temperature: f32,
    top_k: f32,
    top_p: f32,
    pad: f32,
    eos: f32,
    half_threads: usize,
    #[comptime] greedy: bool,
    #[comptime] cut_k: bool,
    #[comptime] cut_p: bool,
    #[comptime] threads: usize,
) {
    let (row, t) = (CUBE_POS_X as usize, UNIT_POS_X as usize);
    let base = row * vocab;
    let mut scratch = Shared::<[f32]>::new_slice(threads);
    let mut index = Shared::<[f32]>::new_slice(threads);

    // 1. The largest scaled logit and its first index, the smallest, whether any is not finite.
    let mut max = f32::new(-3.0e38);
    let mut arg = f32::new(0.0);
    let mut min = f32::new(3.0e38);
    let mut bad = f32::new(0.0);
    let mut i = t;
    while i < vocab {
        let raw = logits[base + i];
        // By the bits: an all-ones exponent is an infinity or a NaN (WGSL may fold `x != x`).
        if (u32::reinterpret(raw) & 0x7f80_0000u32) == 0x7f80_0000u32 {
            bad = 1.0f32;
        }
        let s = raw / temperature;
        if s > max {
            max = s;
            arg = f32::cast_from(i);
        }
        min = f32::min(min, s);
        i += threads;
    }
    scratch[t] = max;
    index[t] = arg;
    sync_cube();
    let mut stride = half_threads;
    while stride > 0 {
        if t < stride {
            let (a, b) = (scratch[t], scratch[t + stride]);
            if b > a || (b == a && index[t + stride] < index[t]) {
                scratch[t] = b;
                index[t] = index[t + stride];
            }
        }
        sync_cube();
        stride /= 2;
    }
    let (max, arg) = (scratch[0], index[0]);
    sync_cube();
    let min = -all_reduce(&mut scratch, -min, half_threads, true);
    let bad = all_reduce(&mut scratch, bad, half_threads, true);

    // 2. The softmax's normaliser.
    let mut partial = f32::new(0.0);
    i = t;
    while i < vocab {
        partial += f32::exp(logits[base + i] / temperature - max);
        i += threads;
    }
    let lse = max + f32::ln(all_reduce(&mut scratch, partial, half_threads, false));

    // 3. The cuts: the largest log-prob threshold keeping `top_k` tokens, then the largest
    //    probability threshold keeping `top_p` of the mass, each by bisection.
    let mut token = arg;
    if !comptime![greedy] {
        let mut lo_k = min - lse;
        if comptime![cut_k] {
            let mut hi = max - lse;
            for _ in 0..BISECTION_STEPS {
                let mid = (lo_k + hi) / 2.0f32;
                let mut count = f32::new(0.0);
                i = t;
                while i < vocab {
                    count += select(logits[base + i] / temperature - lse >= mid, f32::new(1.0), f32::new(0.0));
                    i += threads;
                }
                let enough = all_reduce(&mut scratch, count, half_threads, false) >= top_k;
                lo_k = select(enough, mid, lo_k);
                hi = select(enough, hi, mid);
            }
        }
        let mut lo_p = f32::new(0.0);
        if comptime![cut_p] {
            let mut smallest = f32::new(3.0e38);
            let mut largest = f32::new(0.0);
            i = t;
            while i < vocab {
                let l = logits[base + i] / temperature - lse;
                let p = select(l >= lo_k, f32::exp(l), f32::new(0.0));
                smallest = f32::min(smallest, p);
                largest = f32::max(largest, p);
                i += threads;
            }
            lo_p = -all_reduce(&mut scratch, -smallest, half_threads, true);
            let mut hi = all_reduce(&mut scratch, largest, half_threads, true);
            for _ in 0..BISECTION_STEPS {
                let mid = (lo_p + hi) / 2.0f32;
                let mut mass = f32::new(0.0);
                i = t;
                while i < vocab {
                    let l = logits[base + i] / temperature - lse;
                    let p = select(l >= lo_k, f32::exp(l), f32::new(0.0));
                    mass += select(p >= mid, p, f32::new(0.0));
                    i += threads;
                }
                let enough = all_reduce(&mut scratch, mass, half_threads, false) >= top_p;
                lo_p = select(enough, mid, lo_p);
                hi = select(enough, hi, mid);
            }
        }

        // 4. The inverse CDF: the kept mass by a scan, then the tokens whose running mass stays
        //    below the draw times it, by the same scan (the same sums in the same order).
        let draw = draws[row * steps + step];
        let mut target = f32::new(-1.0);
        let mut below = f32::new(0.0);
        for pass in 0..2u32 {
            let mut running = f32::new(0.0);
            let mut start = 0usize;
            while start < vocab {
                let j = start + t;
                let mut p = f32::new(0.0);
                if j < vocab {
                    let l = logits[base + j] / temperature - lse;
                    p = select(l >= lo_k, f32::exp(l), f32::new(0.0));
                    p = select(p >= lo_p, p, f32::new(0.0));
                }
                scratch[t] = p;
                sync_cube();
                let mut offset = 1usize;
                while offset < threads {
                    let mut sum = scratch[t];
                    if t >= offset {
                        sum += scratch[t - offset];
                    }
                    sync_cube();
                    scratch[t] = sum;
                    sync_cube();
                    offset *= 2;
                }
                if pass == 1 && j < vocab && running + scratch[t] < target {
                    below += 1.0f32;
                }
                running += scratch[threads - 1];
                sync_cube();
                start += threads;
            }
            target = draw * running;
        }
        let count = all_reduce(&mut scratch, below, half_threads, false);
        token = f32::min(count, f32::cast_from(vocab - 1));
    }

    // 5. The id (padding where the row had stopped), its log-prob, the stop at EOS.
    if t == 0 {
        let logprob = logits[base + usize::cast_from(token)] / temperature - lse;
        let was_stopped = stopped[row] > 0.5;
        let id = select(was_stopped, pad, token);
        chosen[row * 3] = id;
        chosen[row * 3 + 1] = bad;
        chosen[row * 3 + 2] = logprob;
        stopped_after[row] = select(was_stopped || id == eos, f32::new(1.0), f32::new(0.0));
    }
}
