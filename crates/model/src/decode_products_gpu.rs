//! [`DecodeProducts`] on cubecl's GPU runtimes: one thread an output value, the dot product of its
//! row of `x` with a column of burn's `[in, out]` weight. Neighbouring threads read neighbouring
//! columns, so each step of the sum is one coalesced read of a weight row.

use burn::backend::TensorMetadata;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::{FloatDType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

use crate::decode_products::{DecodeProducts, PackedGate, PackedParts, Parts};
use crate::packed::PackedWeight;
use crate::packed_decode_gpu::{few_rows_gated, few_rows_plus, few_rows_products3};
use crate::row_kernels::GateActivation;

fn empty(shape: [usize; 2], like: &CubeTensor) -> CubeTensor {
    CubeBackend::float_empty(Shape::from(shape), &like.device, FloatDType::F32)
}

/// Cubes and their size for `total` threads.
fn grid(like: &CubeTensor, total: usize) -> (CubeCount, CubeDim) {
    let cube_dim = CubeDim::new(&like.client, total);
    (calculate_cube_count_elemwise(&like.client, total, cube_dim), cube_dim)
}

impl DecodeProducts for CubeBackend {
    fn products(x: CubeTensor, w1: CubeTensor, w2: CubeTensor, w3: CubeTensor, parts: Parts) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [x, w1, w2, w3] = [x, w1, w2, w3].map(into_contiguous);
        let (rows, d_in) = (x.shape()[0], x.shape()[1]);
        let [o1, o2, o3] = parts.widths.map(|width| empty([rows, width.max(1)], &x));
        let total = rows * parts.widths.iter().sum::<usize>();
        let (count, dim) = grid(&x, total);
        products_kernel::launch(
            &x.client.clone(),
            count,
            dim,
            x.into_tensor_arg(),
            w1.into_tensor_arg(),
            w2.into_tensor_arg(),
            w3.into_tensor_arg(),
            o1.clone().into_tensor_arg(),
            o2.clone().into_tensor_arg(),
            o3.clone().into_tensor_arg(),
            d_in,
            parts.widths[0],
            parts.widths[1],
            parts.widths[2],
            total,
        );
        (o1, o2, o3)
    }

    fn biased_product(x: CubeTensor, weight: CubeTensor, bias: CubeTensor) -> CubeTensor {
        let [x, weight, bias] = [x, weight, bias].map(into_contiguous);
        let (rows, d_in, width) = (x.shape()[0], x.shape()[1], weight.shape()[1]);
        let out = empty([rows, width], &x);
        let (count, dim) = grid(&x, rows * width);
        biased_kernel::launch(
            &x.client.clone(),
            count,
            dim,
            x.into_tensor_arg(),
            weight.into_tensor_arg(),
            bias.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            d_in,
            width,
            rows * width,
        );
        out
    }

    fn gated_product(x: CubeTensor, gate: CubeTensor, up: CubeTensor, act: GateActivation) -> CubeTensor {
        let [x, gate, up] = [x, gate, up].map(into_contiguous);
        let (rows, d_in, width) = (x.shape()[0], x.shape()[1], gate.shape()[1]);
        let out = empty([rows, width], &x);
        let (count, dim) = grid(&x, rows * width);
        gated_kernel::launch(
            &x.client.clone(),
            count,
            dim,
            x.into_tensor_arg(),
            gate.into_tensor_arg(),
            up.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            d_in,
            width,
            rows * width,
            act == GateActivation::GeluTanh,
        );
        out
    }

    fn added_product(x: CubeTensor, weight: CubeTensor, residual: CubeTensor) -> CubeTensor {
        let [x, weight, residual] = [x, weight, residual].map(into_contiguous);
        let (rows, d_in, width) = (x.shape()[0], x.shape()[1], weight.shape()[1]);
        let out = empty([rows, width], &x);
        let (count, dim) = grid(&x, rows * width);
        added_kernel::launch(
            &x.client.clone(),
            count,
            dim,
            x.into_tensor_arg(),
            weight.into_tensor_arg(),
            residual.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            d_in,
            width,
            rows * width,
        );
        out
    }

    fn packed_products(x: CubeTensor, parts: PackedParts) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [a, b, c] = few_rows_products3(x, &parts.0);
        (a, b, c)
    }

    fn packed_plus(x: CubeTensor, addend: CubeTensor, weight: PackedWeight, per_value: bool) -> CubeTensor {
        few_rows_plus(x, into_contiguous(addend), &weight, per_value)
    }

    fn packed_gated(x: CubeTensor, gated: PackedGate) -> CubeTensor {
        few_rows_gated(x, &gated.gate, &gated.up, gated.act == GateActivation::GeluTanh)
    }
}

/// Row `row` of `x` `[n, d_in]` dotted with column `col` of `w` `[d_in, width]`.
#[cube]
fn dot(x: &Tensor<f32>, row: usize, w: &Tensor<f32>, col: usize, d_in: usize, width: usize) -> f32 {
    let mut sum = f32::new(0.0);
    for i in 0..d_in {
        sum += x[row * d_in + i] * w[i * width + col];
    }
    sum
}

/// Seven tensors, the most WebGPU's default limits bind at once.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn products_kernel(
    x: &Tensor<f32>,
    w1: &Tensor<f32>,
    w2: &Tensor<f32>,
    w3: &Tensor<f32>,
    o1: &mut Tensor<f32>,
    o2: &mut Tensor<f32>,
    o3: &mut Tensor<f32>,
    d_in: usize,
    width1: usize,
    width2: usize,
    width3: usize,
    total: usize,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let widths = width1 + width2 + width3;
    let (row, col) = (ABSOLUTE_POS / widths, ABSOLUTE_POS % widths);
    if col < width1 {
        o1[row * width1 + col] = dot(x, row, w1, col, d_in, width1);
    } else if col < width1 + width2 {
        let c = col - width1;
        o2[row * width2 + c] = dot(x, row, w2, c, d_in, width2);
    } else {
        let c = col - width1 - width2;
        o3[row * width3 + c] = dot(x, row, w3, c, d_in, width3);
    }
}

#[cube(launch)]
fn biased_kernel(
    x: &Tensor<f32>,
    weight: &Tensor<f32>,
    bias: &Tensor<f32>,
    out: &mut Tensor<f32>,
    d_in: usize,
    width: usize,
    total: usize,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let (row, col) = (ABSOLUTE_POS / width, ABSOLUTE_POS % width);
    out[ABSOLUTE_POS] = dot(x, row, weight, col, d_in, width) + bias[col];
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn gated_kernel(
    x: &Tensor<f32>,
    gate: &Tensor<f32>,
    up: &Tensor<f32>,
    out: &mut Tensor<f32>,
    d_in: usize,
    width: usize,
    total: usize,
    #[comptime] gelu: bool,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let (row, col) = (ABSOLUTE_POS / width, ABSOLUTE_POS % width);
    let mut g = f32::new(0.0);
    let mut u = f32::new(0.0);
    for i in 0..d_in {
        let value = x[row * d_in + i];
        g += value * gate[i * width + col];
        u += value * up[i * width + col];
    }
    let mut activated = g / (1.0 + f32::exp(-g));
    if comptime![gelu] {
        activated = 0.5 * g * (1.0 + f32::tanh(0.797_884_6 * (g + 0.044_715 * g * g * g)));
    }
    out[ABSOLUTE_POS] = activated * u;
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn added_kernel(
    x: &Tensor<f32>,
    weight: &Tensor<f32>,
    residual: &Tensor<f32>,
    out: &mut Tensor<f32>,
    d_in: usize,
    width: usize,
    total: usize,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let (row, col) = (ABSOLUTE_POS / width, ABSOLUTE_POS % width);
    out[ABSOLUTE_POS] = residual[ABSOLUTE_POS] + dot(x, row, weight, col, d_in, width);
}
