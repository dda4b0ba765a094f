//! [`StepStatsKernels`] on cubecl's GPU runtimes: one workgroup sweeps a weight's gradient and
//! values with strided threads, tree-reduces the squares and the magnitudes in workgroup memory
//! (2 KiB), and its first thread writes the pair. Non-finite values are found by their bits, as
//! WGSL may assume there are none.

use burn::backend::ops::FloatTensorOps;
use burn::tensor::FloatDType;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeCount, CubeDim};

use crate::step_stats::{PairInputs, StepStatsKernels};

/// Threads of the one workgroup: a power of two.
const THREADS: usize = 256;

impl StepStatsKernels for CubeBackend {
    fn add_to_pair(pair: CubeTensor, grad: CubeTensor, weight: CubeTensor, has: PairInputs) -> CubeTensor {
        let [pair, grad, weight] = [pair, grad, weight].map(into_contiguous);
        let out = CubeBackend::float_empty([2].into(), &pair.device, FloatDType::F32);
        let length = |t: &CubeTensor, held: bool| if held { t.meta.shape().num_elements() } else { 0 };
        let (grad_len, weight_len) = (length(&grad, has.grad), length(&weight, has.weight));
        let client = pair.client.clone();
        pair_kernel::launch(
            &client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(THREADS as u32),
            pair.into_tensor_arg(),
            grad.into_tensor_arg(),
            weight.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            grad_len,
            weight_len,
            THREADS / 2,
            has.pair,
            THREADS,
        );
        out
    }
}

/// Whether `value`'s bits are an infinity or a NaN (an all-ones exponent).
#[cube]
fn non_finite(value: f32) -> bool {
    (u32::reinterpret(value) & 0x7f80_0000u32) == 0x7f80_0000u32
}

/// Whether `value`'s bits are a NaN (an all-ones exponent, a mantissa).
#[cube]
fn not_a_number(value: f32) -> bool {
    (u32::reinterpret(value) & 0x7fff_ffffu32) > 0x7f80_0000u32
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn pair_kernel(
    pair: &Tensor<f32>,
    grad: &Tensor<f32>,
    weight: &Tensor<f32>,
    out: &mut Tensor<f32>,
    grad_len: usize,
    weight_len: usize,
    half_threads: usize,
    #[comptime] started: bool,
    #[comptime] threads: usize,
) {
    let t = UNIT_POS_X as usize;
    let mut squares = Shared::<[f32]>::new_slice(threads);
    let mut largest = Shared::<[f32]>::new_slice(threads);
    // Per thread: 1 for a non-finite gradient, 2 for a NaN weight (summed as flags by `max`).
    let mut bad = Shared::<[u32]>::new_slice(threads);
    let mut sum = f32::new(0.0);
    let mut most = f32::new(0.0);
    let mut flags = 0u32;
    let mut i = t;
    while i < grad_len {
        let g = grad[i];
        if non_finite(g) {
            flags |= 1u32;
        }
        sum += g * g;
        i += threads;
    }
    i = t;
    while i < weight_len {
        let w = f32::abs(weight[i]);
        if not_a_number(w) {
            flags |= 2u32;
        }
        if w > most {
            most = w;
        }
        i += threads;
    }
    squares[t] = sum;
    largest[t] = most;
    bad[t] = flags;
    sync_cube();
    let mut stride = half_threads;
    while stride > 0 {
        if t < stride {
            squares[t] += squares[t + stride];
            if largest[t + stride] > largest[t] {
                largest[t] = largest[t + stride];
            }
            bad[t] |= bad[t + stride];
        }
        sync_cube();
        stride /= 2;
    }
    if t == 0 {
        let mut total = squares[0];
        let mut top = largest[0];
        let mut flags = bad[0];
        if comptime![started] {
            if non_finite(pair[0]) {
                flags |= 1u32;
            }
            if not_a_number(pair[1]) {
                flags |= 2u32;
            }
            total += pair[0];
            if pair[1] > top {
                top = pair[1];
            }
        }
        let nan = f32::reinterpret(0x7fc0_0000u32);
        out[0] = if (flags & 1u32) != 0u32 { nan } else { total };
        out[1] = if (flags & 2u32) != 0u32 { nan } else { top };
    }
}
