//! [`StepStatsKernels`] on cubecl's GPU runtimes: one workgroup sweeps two weights' gradients and
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
    fn add_to_pair(
        pair: CubeTensor,
        grad_a: CubeTensor,
        weight_a: CubeTensor,
        grad_b: CubeTensor,
        weight_b: CubeTensor,
        has: PairInputs,
    ) -> CubeTensor {
        let [pair, grad_a, weight_a, grad_b, weight_b] = [pair, grad_a, weight_a, grad_b, weight_b].map(into_contiguous);
        let out = CubeBackend::float_empty([2].into(), &pair.device, FloatDType::F32);
        let length = |t: &CubeTensor, held: bool| if held { t.meta.shape().num_elements() } else { 0 };
        let lengths = [
            length(&grad_a, has.grads[0]),
            length(&weight_a, has.weights[0]),
            length(&grad_b, has.grads[1]),
            length(&weight_b, has.weights[1]),
        ];
        let client = pair.client.clone();
        pair_kernel::launch(
            &client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(THREADS as u32),
            pair.into_tensor_arg(),
            grad_a.into_tensor_arg(),
            weight_a.into_tensor_arg(),
            grad_b.into_tensor_arg(),
            weight_b.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            lengths[0],
            lengths[1],
            lengths[2],
            lengths[3],
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
    grad_a: &Tensor<f32>,
    weight_a: &Tensor<f32>,
    grad_b: &Tensor<f32>,
    weight_b: &Tensor<f32>,
    out: &mut Tensor<f32>,
    grad_a_len: usize,
    weight_a_len: usize,
    grad_b_len: usize,
    weight_b_len: usize,
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
    while i < grad_a_len {
        let g = grad_a[i];
        flags |= select(non_finite(g), 1u32, 0u32);
        sum += g * g;
        i += threads;
    }
    i = t;
    while i < grad_b_len {
        let g = grad_b[i];
        flags |= select(non_finite(g), 1u32, 0u32);
        sum += g * g;
        i += threads;
    }
    i = t;
    while i < weight_a_len {
        let w = f32::abs(weight_a[i]);
        flags |= select(not_a_number(w), 2u32, 0u32);
        most = f32::max(most, w);
        i += threads;
    }
    i = t;
    while i < weight_b_len {
        let w = f32::abs(weight_b[i]);
        flags |= select(not_a_number(w), 2u32, 0u32);
        most = f32::max(most, w);
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
