//! [`RmsNormKernels`] on cubecl's GPU runtimes: one workgroup a row, its threads summing squares
//! over strided columns, a tree sum in workgroup memory (1 KiB), then each thread writing its
//! columns normed. No subgroup operations, inside WebGPU's default limits.

use burn::backend::TensorMetadata;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::FloatDType;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeCount, CubeDim};

use crate::decode_sampler_gpu::all_reduce;
use crate::rms_norm::{NormSettings, RmsNormKernels};

/// Threads a row: a power of two.
const THREADS: usize = 256;

impl RmsNormKernels for CubeBackend {
    fn rms_norm(x: CubeTensor, gamma: CubeTensor, settings: NormSettings) -> CubeTensor {
        let (x, gamma) = (into_contiguous(x), into_contiguous(gamma));
        let out = CubeBackend::float_empty(x.shape(), &x.device, FloatDType::F32);
        // The sum's two bindings are never read or written: one value each, not aliases of
        // `x` and `out` (WebGPU refuses a buffer bound twice where one binding writes).
        let unused = || CubeBackend::float_empty([1].into(), &x.device, FloatDType::F32);
        launch(x.clone(), unused(), gamma, unused(), out.clone(), settings, false);
        out
    }

    fn added_rms_norm(x: CubeTensor, delta: CubeTensor, gamma: CubeTensor, settings: NormSettings) -> (CubeTensor, CubeTensor) {
        let [x, delta, gamma] = [x, delta, gamma].map(into_contiguous);
        let new = || CubeBackend::float_empty(x.shape(), &x.device, FloatDType::F32);
        let (sum, out) = (new(), new());
        launch(x, delta, gamma, sum.clone(), out.clone(), settings, true);
        (sum, out)
    }

    fn rms_norm_backward(x: CubeTensor, gamma: CubeTensor, grad: CubeTensor, settings: NormSettings) -> (CubeTensor, CubeTensor) {
        let [x, gamma, grad] = [x, gamma, grad].map(into_contiguous);
        let new = || CubeBackend::float_empty(x.shape(), &x.device, FloatDType::F32);
        let (dx, shares) = (new(), new());
        let shape = x.shape();
        let width = shape[shape.num_dims() - 1];
        let rows = shape.num_elements() / width.max(1);
        let client = x.client.clone();
        rms_norm_backward_kernel::launch(
            &client,
            CubeCount::Static(rows as u32, 1, 1),
            CubeDim::new_1d(THREADS as u32),
            x.into_tensor_arg(),
            gamma.into_tensor_arg(),
            grad.into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            shares.clone().into_tensor_arg(),
            width,
            settings.epsilon,
            settings.offset,
            THREADS / 2,
            THREADS,
        );
        (dx, shares)
    }
}

fn launch(x: CubeTensor, delta: CubeTensor, gamma: CubeTensor, sum: CubeTensor, out: CubeTensor, settings: NormSettings, added: bool) {
    let shape = x.shape();
    let width = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / width.max(1);
    let client = x.client.clone();
    rms_norm_kernel::launch(
        &client,
        CubeCount::Static(rows as u32, 1, 1),
        CubeDim::new_1d(THREADS as u32),
        x.into_tensor_arg(),
        delta.into_tensor_arg(),
        gamma.into_tensor_arg(),
        sum.into_tensor_arg(),
        out.into_tensor_arg(),
        width,
        settings.epsilon,
        settings.offset,
        THREADS / 2,
        added,
        THREADS,
    );
}

/// Row `CUBE_POS_X` of `x` (plus `delta`'s when `added`, that sum written to `sum`) normed into `out`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn rms_norm_kernel(
    x: &Tensor<f32>,
    delta: &Tensor<f32>,
    gamma: &Tensor<f32>,
    sum: &mut Tensor<f32>,
    out: &mut Tensor<f32>,
    width: usize,
    epsilon: f32,
    offset: f32,
    half_threads: usize,
    #[comptime] added: bool,
    #[comptime] threads: usize,
) {
    let (row, t) = (CUBE_POS_X as usize, UNIT_POS_X as usize);
    let start = row * width;
    let mut squares = Shared::<[f32]>::new_slice(threads);
    let mut partial = f32::new(0.0);
    let mut col = t;
    while col < width {
        let mut value = x[start + col];
        if comptime![added] {
            value += delta[start + col];
            sum[start + col] = value;
        }
        partial += value * value;
        col += threads;
    }
    squares[t] = partial;
    sync_cube();
    let mut stride = half_threads;
    while stride > 0 {
        if t < stride {
            squares[t] += squares[t + stride];
        }
        sync_cube();
        stride /= 2;
    }
    let rms = f32::sqrt(squares[0] / f32::cast_from(width) + epsilon);
    col = t;
    while col < width {
        let mut value = x[start + col];
        if comptime![added] {
            value += delta[start + col];
        }
        out[start + col] = value / rms * (offset + gamma[col]);
        col += threads;
    }
}

/// Row `CUBE_POS_X`'s backward: `d x = (dy w - x · mean(dy w x) / rms²) / rms` (`w` the scale,
/// `offset + gamma`) and the row's share of d gamma, `dy x / rms`. Two tree sums (1 KiB).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn rms_norm_backward_kernel(
    x: &Tensor<f32>,
    gamma: &Tensor<f32>,
    grad: &Tensor<f32>,
    dx: &mut Tensor<f32>,
    shares: &mut Tensor<f32>,
    width: usize,
    epsilon: f32,
    offset: f32,
    half_threads: usize,
    #[comptime] threads: usize,
) {
    let (row, t) = (CUBE_POS_X as usize, UNIT_POS_X as usize);
    let start = row * width;
    let mut scratch = Shared::<[f32]>::new_slice(threads);
    let mut square_sum = f32::new(0.0);
    let mut weighted_sum = f32::new(0.0);
    let mut col = t;
    while col < width {
        let value = x[start + col];
        square_sum += value * value;
        weighted_sum += grad[start + col] * (offset + gamma[col]) * value;
        col += threads;
    }
    let rms = f32::sqrt(all_reduce(&mut scratch, square_sum, half_threads, false) / f32::cast_from(width) + epsilon);
    let mean = all_reduce(&mut scratch, weighted_sum, half_threads, false) / f32::cast_from(width);
    col = t;
    while col < width {
        let value = x[start + col];
        let dy = grad[start + col];
        dx[start + col] = (dy * (offset + gamma[col]) - value * mean / (rms * rms)) / rms;
        shares[start + col] = dy * value / rms;
        col += threads;
    }
}
