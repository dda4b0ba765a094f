//! [`RotationKernels`] on cubecl's GPU runtimes: a thread a value of the contiguous `[b, t, heads,
//! hd]` output, reading its value and its partner (the other half of the head) through the input's
//! strides, so the queries and keys need no copy on either side of the heads' swap; the queries and
//! the keys together in one launch where both turn.

use burn::backend::TensorMetadata;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::FloatDType;
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

use crate::rope::RotationKernels;

impl RotationKernels for CubeBackend {
    fn rotate(x: CubeTensor, cos: CubeTensor, sin: CubeTensor, inverse: bool) -> CubeTensor {
        let shape = x.shape();
        let out = CubeBackend::float_empty([shape[0], shape[2], shape[1], shape[3]].into(), &x.device, FloatDType::F32);
        let total = out.shape().num_elements();
        let client = x.client.clone();
        let cube_dim = CubeDim::new(&client, total);
        let cube_count = calculate_cube_count_elemwise(&client, total, cube_dim);
        rotate_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            x.into_tensor_arg(),
            cos.into_tensor_arg(),
            sin.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            total,
            inverse,
        );
        out
    }

    fn rotate_pair(q: CubeTensor, k: CubeTensor, cos: CubeTensor, sin: CubeTensor, inverse: bool) -> (CubeTensor, CubeTensor) {
        let laid_out = |x: &CubeTensor| {
            let shape = x.shape();
            CubeBackend::float_empty([shape[0], shape[2], shape[1], shape[3]].into(), &x.device, FloatDType::F32)
        };
        let (q_out, k_out) = (laid_out(&q), laid_out(&k));
        let queries = q_out.shape().num_elements();
        let total = queries + k_out.shape().num_elements();
        let client = q.client.clone();
        let cube_dim = CubeDim::new(&client, total);
        let cube_count = calculate_cube_count_elemwise(&client, total, cube_dim);
        rotate_pair_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            cos.into_tensor_arg(),
            sin.into_tensor_arg(),
            q_out.clone().into_tensor_arg(),
            k_out.clone().into_tensor_arg(),
            queries,
            total,
            inverse,
        );
        (q_out, k_out)
    }
}

/// Value `ABSOLUTE_POS` of `out` (see [`rotate_at`]).
#[cube(launch)]
fn rotate_kernel(x: &Tensor<f32>, cos: &Tensor<f32>, sin: &Tensor<f32>, out: &mut Tensor<f32>, total: usize, #[comptime] inverse: bool) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    rotate_at(x, cos, sin, out, ABSOLUTE_POS, inverse);
}

/// The queries' values first, then the keys'.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn rotate_pair_kernel(
    q: &Tensor<f32>,
    k: &Tensor<f32>,
    cos: &Tensor<f32>,
    sin: &Tensor<f32>,
    q_out: &mut Tensor<f32>,
    k_out: &mut Tensor<f32>,
    queries: usize,
    total: usize,
    #[comptime] inverse: bool,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    if ABSOLUTE_POS < queries {
        rotate_at(q, cos, sin, q_out, ABSOLUTE_POS, inverse);
    } else {
        rotate_at(k, cos, sin, k_out, ABSOLUTE_POS - queries, inverse);
    }
}

/// Value `at` of `out` `[b, t, heads, hd]`: `x cos + rotate_half(x) sin` (`- ... sin` when
/// `inverse`) of `x` `[b, heads, t, hd]`, `cos` and `sin` `[b, 1, t, hd]` shared by the heads.
#[cube]
fn rotate_at(x: &Tensor<f32>, cos: &Tensor<f32>, sin: &Tensor<f32>, out: &mut Tensor<f32>, at: usize, #[comptime] inverse: bool) {
    let (hd, heads, t) = (out.shape(3), out.shape(2), out.shape(1));
    let d = at % hd;
    let hi = (at / hd) % heads;
    let ti = (at / (hd * heads)) % t;
    let bi = at / (hd * heads * t);
    let half = hd / 2;
    let row = bi * x.stride(0) + hi * x.stride(1) + ti * x.stride(2);
    let angle = bi * cos.stride(0) + ti * cos.stride(2) + d * cos.stride(3);
    let partner = if d < half { d + half } else { d - half };
    let mut turned = x[row + partner * x.stride(3)] * sin[angle];
    if d < half {
        turned = -turned;
    }
    if comptime![inverse] {
        turned = -turned;
    }
    out[at] = x[row + d * x.stride(3)] * cos[angle] + turned;
}
