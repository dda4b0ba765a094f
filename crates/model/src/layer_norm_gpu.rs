//! [`LayerNormKernels`] on cubecl's GPU runtimes: one workgroup a row, its threads summing over
//! strided columns with tree sums in workgroup memory (1 KiB): the mean, then the centred squares
//! (burn's two-pass variance), then each thread writes its columns. The backward adds two more sums
//! (the scaled gradient's, and its product with the normed row's). No subgroup operations.

use burn::backend::TensorMetadata;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::FloatDType;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeCount, CubeDim};

use crate::decode_sampler_gpu::all_reduce;
use crate::layer_norm::LayerNormKernels;

/// Threads a row: a power of two.
const THREADS: usize = 256;

/// The rows and width of `x` `[n, d]`.
fn rows_and_width(x: &CubeTensor) -> (usize, usize) {
    let shape = x.shape();
    let width = shape[shape.num_dims() - 1];
    (shape.num_elements() / width.max(1), width)
}

impl LayerNormKernels for CubeBackend {
    fn shifted_norm(x: CubeTensor, gamma: CubeTensor, beta: CubeTensor, epsilon: f32) -> CubeTensor {
        let [x, gamma, beta] = [x, gamma, beta].map(into_contiguous);
        let out = CubeBackend::float_empty(x.shape(), &x.device, FloatDType::F32);
        let (rows, width) = rows_and_width(&x);
        let client = x.client.clone();
        forward_kernel::launch(
            &client,
            CubeCount::Static(rows as u32, 1, 1),
            CubeDim::new_1d(THREADS as u32),
            x.into_tensor_arg(),
            gamma.into_tensor_arg(),
            beta.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            width,
            epsilon,
            THREADS / 2,
            THREADS,
        );
        out
    }

    fn shifted_norm_backward(x: CubeTensor, gamma: CubeTensor, grad: CubeTensor, epsilon: f32) -> (CubeTensor, CubeTensor) {
        let [x, gamma, grad] = [x, gamma, grad].map(into_contiguous);
        let new = || CubeBackend::float_empty(x.shape(), &x.device, FloatDType::F32);
        let (dx, shares) = (new(), new());
        let (rows, width) = rows_and_width(&x);
        let client = x.client.clone();
        backward_kernel::launch(
            &client,
            CubeCount::Static(rows as u32, 1, 1),
            CubeDim::new_1d(THREADS as u32),
            x.into_tensor_arg(),
            gamma.into_tensor_arg(),
            grad.into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            shares.clone().into_tensor_arg(),
            width,
            epsilon,
            THREADS / 2,
            THREADS,
        );
        (dx, shares)
    }
}

/// Row `start`'s mean and `1 / sqrt(var + epsilon)`, every thread getting both.
#[cube]
fn moments(
    x: &Tensor<f32>,
    start: usize,
    width: usize,
    epsilon: f32,
    scratch: &mut Shared<[f32]>,
    half_threads: usize,
    #[comptime] threads: usize,
) -> (f32, f32) {
    let t = UNIT_POS_X as usize;
    let mut partial = f32::new(0.0);
    let mut col = t;
    while col < width {
        partial += x[start + col];
        col += threads;
    }
    let mean = all_reduce(scratch, partial, half_threads, false) / f32::cast_from(width);
    partial = f32::new(0.0);
    col = t;
    while col < width {
        let centred = x[start + col] - mean;
        partial += centred * centred;
        col += threads;
    }
    let var = all_reduce(scratch, partial, half_threads, false) / f32::cast_from(width);
    (mean, 1.0f32 / f32::sqrt(var + epsilon))
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn forward_kernel(
    x: &Tensor<f32>,
    gamma: &Tensor<f32>,
    beta: &Tensor<f32>,
    out: &mut Tensor<f32>,
    width: usize,
    epsilon: f32,
    half_threads: usize,
    #[comptime] threads: usize,
) {
    let start = CUBE_POS_X as usize * width;
    let mut scratch = Shared::<[f32]>::new_slice(threads);
    let (mean, inv) = moments(x, start, width, epsilon, &mut scratch, half_threads, threads);
    let mut col = UNIT_POS_X as usize;
    while col < width {
        out[start + col] = (x[start + col] - mean) * inv * gamma[col] + beta[col];
        col += threads;
    }
}

/// `d x = inv (g - mean(g) - x̂ mean(g x̂))` (`g = dy gamma`, `x̂` the normed row) and the row's
/// share of d gamma, `dy x̂`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn backward_kernel(
    x: &Tensor<f32>,
    gamma: &Tensor<f32>,
    grad: &Tensor<f32>,
    dx: &mut Tensor<f32>,
    shares: &mut Tensor<f32>,
    width: usize,
    epsilon: f32,
    half_threads: usize,
    #[comptime] threads: usize,
) {
    let t = UNIT_POS_X as usize;
    let start = CUBE_POS_X as usize * width;
    let mut scratch = Shared::<[f32]>::new_slice(threads);
    let (mean, inv) = moments(x, start, width, epsilon, &mut scratch, half_threads, threads);
    let mut g_sum = f32::new(0.0);
    let mut gx_sum = f32::new(0.0);
    let mut col = t;
    while col < width {
        let g = grad[start + col] * gamma[col];
        g_sum += g;
        gx_sum += g * (x[start + col] - mean) * inv;
        col += threads;
    }
    let g_mean = all_reduce(&mut scratch, g_sum, half_threads, false) / f32::cast_from(width);
    let gx_mean = all_reduce(&mut scratch, gx_sum, half_threads, false) / f32::cast_from(width);
    col = t;
    while col < width {
        let normed = (x[start + col] - mean) * inv;
        let dy = grad[start + col];
        dx[start + col] = inv * (dy * gamma[col] - g_mean - normed * gx_mean);
        shares[start + col] = dy * normed;
        col += threads;
    }
}
