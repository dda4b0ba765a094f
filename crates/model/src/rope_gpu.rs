//! [`RotationKernels`] on cubecl's GPU runtimes: a thread a value of the contiguous `[b, t, heads,
//! hd]` output, reading its value and its partner (the other half of the head) through the input's
//! strides, so the queries and keys need no copy on either side of the heads' swap.

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
}

/// Value `ABSOLUTE_POS` of `out` `[b, t, heads, hd]`: `x cos + rotate_half(x) sin` (`- ... sin`
/// when `inverse`) of `x` `[b, heads, t, hd]`, `cos` and `sin` `[b, 1, t, hd]` shared by the heads.
#[cube(launch)]
fn rotate_kernel(x: &Tensor<f32>, cos: &Tensor<f32>, sin: &Tensor<f32>, out: &mut Tensor<f32>, total: usize, #[comptime] inverse: bool) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let (hd, heads, t) = (out.shape(3), out.shape(2), out.shape(1));
    let d = ABSOLUTE_POS % hd;
    let hi = (ABSOLUTE_POS / hd) % heads;
    let ti = (ABSOLUTE_POS / (hd * heads)) % t;
    let bi = ABSOLUTE_POS / (hd * heads * t);
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
    out[ABSOLUTE_POS] = x[row + d * x.stride(3)] * cos[angle] + turned;
}
