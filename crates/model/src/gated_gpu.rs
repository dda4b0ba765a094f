//! [`GatedKernels`] on cubecl's GPU runtimes: a thread a value, forward and backward, with the
//! activation's formulas of `row_kernels.rs` (tanh as `1 - 2 / (e^{2z} + 1)`, exact at both ends).

use burn::backend::TensorMetadata;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::FloatDType;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

use crate::gated::GatedKernels;
use crate::row_kernels::GateActivation;

impl GatedKernels for CubeBackend {
    fn gated(gate: CubeTensor, up: CubeTensor, act: GateActivation) -> CubeTensor {
        let [gate, up] = [gate, up].map(into_contiguous);
        let out = CubeBackend::float_empty(gate.shape(), &gate.device, FloatDType::F32);
        let (client, total) = (gate.client.clone(), gate.shape().num_elements());
        let cube_dim = CubeDim::new(&client, total);
        let cube_count = calculate_cube_count_elemwise(&client, total, cube_dim);
        let unused = || CubeBackend::float_empty([1].into(), &gate.device, FloatDType::F32);
        gated_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            gate.clone().into_tensor_arg(),
            up.into_tensor_arg(),
            unused().into_tensor_arg(),
            out.clone().into_tensor_arg(),
            unused().into_tensor_arg(),
            total,
            act == GateActivation::GeluTanh,
            false,
        );
        out
    }

    fn gated_backward(gate: CubeTensor, up: CubeTensor, grad: CubeTensor, act: GateActivation) -> (CubeTensor, CubeTensor) {
        let [gate, up, grad] = [gate, up, grad].map(into_contiguous);
        let new = || CubeBackend::float_empty(gate.shape(), &gate.device, FloatDType::F32);
        let (d_gate, d_up) = (new(), new());
        let (client, total) = (gate.client.clone(), gate.shape().num_elements());
        let cube_dim = CubeDim::new(&client, total);
        let cube_count = calculate_cube_count_elemwise(&client, total, cube_dim);
        gated_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            gate.into_tensor_arg(),
            up.into_tensor_arg(),
            grad.into_tensor_arg(),
            d_gate.clone().into_tensor_arg(),
            d_up.clone().into_tensor_arg(),
            total,
            act == GateActivation::GeluTanh,
            true,
        );
        (d_gate, d_up)
    }
}

/// `act(g)` and `act'(g)`.
#[cube]
fn activation(g: f32, #[comptime] gelu: bool) -> (f32, f32) {
    if comptime![gelu] {
        let z = 0.797_884_6f32 * (g + 0.044_715f32 * g * g * g);
        let t = 1.0f32 - 2.0f32 / (f32::exp(2.0f32 * z) + 1.0f32);
        let dz = 0.797_884_6f32 * (1.0f32 + 3.0f32 * 0.044_715f32 * g * g);
        (0.5f32 * g * (1.0f32 + t), 0.5f32 * (1.0f32 + t) + 0.5f32 * g * (1.0f32 - t * t) * dz)
    } else {
        let s = 1.0f32 / (1.0f32 + f32::exp(-g));
        (g * s, s * (g * (1.0f32 - s) + 1.0f32))
    }
}

/// Forward: `first` = `act(gate) · up`. Backward: `first` = d gate = `grad · up · act'(gate)`,
/// `second` = d up = `grad · act(gate)`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn gated_kernel(
    gate: &Tensor<f32>,
    up: &Tensor<f32>,
    grad: &Tensor<f32>,
    first: &mut Tensor<f32>,
    second: &mut Tensor<f32>,
    total: usize,
    #[comptime] gelu: bool,
    #[comptime] backward: bool,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let (a, slope) = activation(gate[ABSOLUTE_POS], gelu);
    if comptime![backward] {
        let dy = grad[ABSOLUTE_POS];
        first[ABSOLUTE_POS] = dy * up[ABSOLUTE_POS] * slope;
        second[ABSOLUTE_POS] = dy * a;
    } else {
        first[ABSOLUTE_POS] = a * up[ABSOLUTE_POS];
    }
}
