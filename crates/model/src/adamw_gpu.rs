//! AdamW's step on cubecl's GPU runtimes (WebGPU in the tab, wgpu or CUDA natively) in one kernel
//! a weight: burn's AdamW takes about fifteen element-wise ops, most launched on their own, and a
//! LoRA run has hundreds of small adapters (a 0.5 B model's LoRA DPO step launched 17,000 kernels,
//! docs/gpu.md). The same arithmetic, in burn's order, as the CPU's one pass (`adamw.rs`).

use burn::backend::ops::FloatTensorOps;
use burn::tensor::FloatDType;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

use crate::adamw::{AdamWStep, FusedAdamW};

impl FusedAdamW for CubeBackend {
    fn adamw_step(
        weight: CubeTensor,
        grad: CubeTensor,
        moment_1: CubeTensor,
        moment_2: CubeTensor,
        step: AdamWStep,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        launch(weight, grad, Some((moment_1, moment_2)), step)
    }

    fn adamw_first_step(weight: CubeTensor, grad: CubeTensor, step: AdamWStep) -> (CubeTensor, CubeTensor, CubeTensor) {
        launch(weight, grad, None, step)
    }
}

/// One launch over the weight; without `moments` (a first step) the weight stands in their
/// bindings, never read (WebGPU lets a buffer be bound more than once where none writes it).
fn launch(
    weight: CubeTensor,
    grad: CubeTensor,
    moments: Option<(CubeTensor, CubeTensor)>,
    step: AdamWStep,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let [weight, grad] = [weight, grad].map(into_contiguous);
    let first = moments.is_none();
    let (moment_1, moment_2) = match moments {
        Some((m, v)) => (into_contiguous(m), into_contiguous(v)),
        None => (weight.clone(), weight.clone()),
    };
    let (shape, device, client) = (weight.meta.shape().clone(), weight.device.clone(), weight.client.clone());
    let total = shape.num_elements();
    let new = || CubeBackend::float_empty(shape.clone(), &device, FloatDType::F32);
    let (weight_out, moment_1_out, moment_2_out) = (new(), new(), new());
    let cube_dim = CubeDim::new(&client, total);
    let cube_count = calculate_cube_count_elemwise(&client, total, cube_dim);
    adamw_kernel::launch(
        &client,
        cube_count,
        cube_dim,
        weight.into_tensor_arg(),
        grad.into_tensor_arg(),
        moment_1.into_tensor_arg(),
        moment_2.into_tensor_arg(),
        weight_out.clone().into_tensor_arg(),
        moment_1_out.clone().into_tensor_arg(),
        moment_2_out.clone().into_tensor_arg(),
        step.beta_1,
        step.beta_2,
        step.epsilon,
        step.correction_1,
        step.correction_2,
        step.lr,
        step.decay,
        step.grad_scale,
        total,
        first,
    );
    (weight_out, moment_1_out, moment_2_out)
}

/// One value of one AdamW step: the moments, their bias corrections, the decayed weight less the
/// step (burn's `AdamW`, operation by operation); a `first` step's moments are zeros, not read.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adamw_kernel(
    weight: &Tensor<f32>,
    grad: &Tensor<f32>,
    moment_1: &Tensor<f32>,
    moment_2: &Tensor<f32>,
    weight_out: &mut Tensor<f32>,
    moment_1_out: &mut Tensor<f32>,
    moment_2_out: &mut Tensor<f32>,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    correction_1: f32,
    correction_2: f32,
    lr: f32,
    decay: f32,
    grad_scale: f32,
    total: usize,
    #[comptime] first: bool,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let g = grad[ABSOLUTE_POS] * grad_scale;
    let mut m = f32::new(0.0);
    let mut v = f32::new(0.0);
    if !comptime![first] {
        m = moment_1[ABSOLUTE_POS];
        v = moment_2[ABSOLUTE_POS];
    }
    m = m * beta_1 + g * (1.0 - beta_1);
    v = v * beta_2 + g * g * (1.0 - beta_2);
    let delta = (m / correction_1) / (f32::sqrt(v / correction_2) + epsilon);
    moment_1_out[ABSOLUTE_POS] = m;
    moment_2_out[ABSOLUTE_POS] = v;
    weight_out[ABSOLUTE_POS] = weight[ABSOLUTE_POS] * decay - delta * lr;
}
