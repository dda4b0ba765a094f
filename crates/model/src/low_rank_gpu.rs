//! [`LowRankKernels`] on cubecl's GPU runtimes: a thread an output value, summing over the rank
//! forward; backward one launch for both gradients, the first `n · rank` threads each one value of
//! `d h` (a sum over the output's width), the rest each one of `d b` (a sum over the rows).

use burn::backend::TensorMetadata;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::FloatDType;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

use crate::low_rank::LowRankKernels;

impl LowRankKernels for CubeBackend {
    fn add_low_rank(out: CubeTensor, h: CubeTensor, b: CubeTensor, scale: f32) -> CubeTensor {
        let [out, h, b] = [out, h, b].map(into_contiguous);
        let added = CubeBackend::float_empty(out.shape(), &out.device, FloatDType::F32);
        let (rank, width) = (h.shape()[1], b.shape()[1]);
        let (client, total) = (out.client.clone(), out.shape().num_elements());
        let cube_dim = CubeDim::new(&client, total);
        let cube_count = calculate_cube_count_elemwise(&client, total, cube_dim);
        add_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            out.into_tensor_arg(),
            h.into_tensor_arg(),
            b.into_tensor_arg(),
            added.clone().into_tensor_arg(),
            rank,
            width,
            scale,
            total,
        );
        added
    }

    fn low_rank_backward(h: CubeTensor, b: CubeTensor, grad: CubeTensor, scale: f32) -> (CubeTensor, CubeTensor) {
        let [h, b, grad] = [h, b, grad].map(into_contiguous);
        let (n, rank, width) = (h.shape()[0], h.shape()[1], b.shape()[1]);
        let dh = CubeBackend::float_empty(h.shape(), &h.device, FloatDType::F32);
        let db = CubeBackend::float_empty(b.shape(), &h.device, FloatDType::F32);
        let (client, total) = (h.client.clone(), n * rank + rank * width);
        let cube_dim = CubeDim::new(&client, total);
        let cube_count = calculate_cube_count_elemwise(&client, total, cube_dim);
        backward_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            h.into_tensor_arg(),
            b.into_tensor_arg(),
            grad.into_tensor_arg(),
            dh.clone().into_tensor_arg(),
            db.clone().into_tensor_arg(),
            n,
            rank,
            width,
            scale,
            total,
        );
        (dh, db)
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn add_kernel(
    out: &Tensor<f32>,
    h: &Tensor<f32>,
    b: &Tensor<f32>,
    added: &mut Tensor<f32>,
    rank: usize,
    width: usize,
    scale: f32,
    total: usize,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let (row, col) = (ABSOLUTE_POS / width, ABSOLUTE_POS % width);
    let mut sum = f32::new(0.0);
    for r in 0..rank {
        sum += h[row * rank + r] * b[r * width + col];
    }
    added[ABSOLUTE_POS] = out[ABSOLUTE_POS] + scale * sum;
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn backward_kernel(
    h: &Tensor<f32>,
    b: &Tensor<f32>,
    grad: &Tensor<f32>,
    dh: &mut Tensor<f32>,
    db: &mut Tensor<f32>,
    n: usize,
    rank: usize,
    width: usize,
    scale: f32,
    total: usize,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let mut sum = f32::new(0.0);
    if ABSOLUTE_POS < n * rank {
        // d h [row, r] = scale · grad [row, :] · b [r, :]
        let (row, r) = (ABSOLUTE_POS / rank, ABSOLUTE_POS % rank);
        for col in 0..width {
            sum += grad[row * width + col] * b[r * width + col];
        }
        dh[ABSOLUTE_POS] = scale * sum;
    } else {
        // d b [r, col] = scale · h [:, r] · grad [:, col]
        let i = ABSOLUTE_POS - n * rank;
        let (r, col) = (i / width, i % width);
        for row in 0..n {
            sum += h[row * rank + r] * grad[row * width + col];
        }
        db[i] = scale * sum;
    }
}
