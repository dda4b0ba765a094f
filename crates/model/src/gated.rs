//! A gated MLP's unit, `act(gate) · up` (SwiGLU with silu, GeGLU with gelu's tanh form), as one
//! op whose backward recomputes the activation from its inputs rather than keeping it.
//!
//! Built from burn's ops, a training forward keeps the activation, its sigmoid or tanh and both
//! products until the backward (three more tensors of the MLP's width a layer), and on a GPU the
//! unit and its backward were several launches each. Here the CPU runs the row kernels
//! (`row_kernels::gated`), cubecl's GPU runtimes one kernel forward and one backward
//! (`gated_gpu.rs`); both keep only `gate` and `up`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::activation::{gelu_approximate, silu};
use burn::tensor::{DType, Tensor, TensorData};

use crate::log_softmax::values;
use crate::own_kernels::has_own_kernels;
use crate::row_kernels::{self, GateActivation};

/// act(gate) * up, elementwise: SwiGLU with [`GateActivation::Silu`], GeGLU with `GeluTanh`.
pub(crate) fn gated<const D: usize>(gate: Tensor<D>, up: Tensor<D>, act: GateActivation) -> Tensor<D> {
    if has_own_kernels(&gate.device()) {
        Tensor::from_dispatch(<Dispatch as GatedKernels>::gated(gate.into_dispatch(), up.into_dispatch(), act))
    } else {
        match act {
            GateActivation::Silu => silu(gate) * up,
            GateActivation::GeluTanh => gelu_approximate(gate) * up,
        }
    }
}

/// The unit forward, and its backward from the inputs; the autodiff implementation ties them.
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Fusion: cfg(all(feature = "cube", feature = "fusion")), Autodiff)]
pub trait GatedKernels: Backend {
    #[fusion(meta = |gate, _up, _act| gate.clone())]
    fn gated(gate: FloatTensor<Self>, up: FloatTensor<Self>, act: GateActivation) -> FloatTensor<Self>;
    /// `(d gate, d up)` from the output's gradient.
    #[fusion(meta = |gate, _up, _grad, _act| (gate.clone(), gate.clone()))]
    fn gated_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        act: GateActivation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl GatedKernels for Flex {
    fn gated(gate: FloatTensor<Self>, up: FloatTensor<Self>, act: GateActivation) -> FloatTensor<Self> {
        let shape = gate.shape();
        let (gate, up) = (as_f32(gate), as_f32(up));
        FlexTensor::from_data(TensorData::new(row_kernels::gated(&values(&gate), &values(&up), act), shape))
    }

    fn gated_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        act: GateActivation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let shape = gate.shape();
        let (gate, up, grad) = (as_f32(gate), as_f32(up), as_f32(grad));
        let (d_gate, d_up) = row_kernels::gated_backward(&values(&gate), &values(&up), &values(&grad), act);
        (FlexTensor::from_data(TensorData::new(d_gate, shape.clone())), FlexTensor::from_data(TensorData::new(d_up, shape)))
    }
}

/// `t` as f32 (this crate's models are f32; another float dtype is converted for the kernels).
pub(crate) fn as_f32(t: FlexTensor) -> FlexTensor {
    if t.dtype() == DType::F32 { t } else { <Flex as FloatTensorOps<Flex>>::float_cast(t, burn::tensor::FloatDType::F32) }
}

#[derive(Debug)]
struct GatedBackward(GateActivation);

impl<B: Backend + GatedKernels> Backward<B, 2> for GatedBackward {
    type State = [FloatTensor<B>; 2];

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [gate, up] = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let (d_gate, d_up) = B::gated_backward(gate, up, grad, self.0);
        let [gate_parent, up_parent] = ops.parents;
        if let Some(node) = up_parent {
            grads.register::<B>(node.id, d_up);
        }
        if let Some(node) = gate_parent {
            grads.register::<B>(node.id, d_gate);
        }
    }
}

impl<B: Backend + GatedKernels, C: CheckpointStrategy> GatedKernels for Autodiff<B, C> {
    fn gated(gate: FloatTensor<Self>, up: FloatTensor<Self>, act: GateActivation) -> FloatTensor<Self> {
        let (gate, gate_node) = gate.into_parts();
        let (up, up_node) = up.into_parts();
        match GatedBackward(act).prepare::<C>([gate_node, up_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::gated(gate.clone(), up.clone(), act);
                prep.finish([gate, up], out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gated(gate, up, act)),
        }
    }

    fn gated_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        act: GateActivation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (d_gate, d_up) = B::gated_backward(Self::inner(gate), Self::inner(up), Self::inner(grad), act);
        (Self::from_inner(d_gate), Self::from_inner(d_up))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::{gelu_approximate, silu};
    use burn::tensor::{Device, Distribution, Tensor};

    use crate::recompute::tests::{close, random};
    use crate::row_kernels::GateActivation;

    #[test]
    fn gated_units_and_their_gradients_equal_burns_activation_times_up() {
        let device = Device::flex().autodiff();
        let (gate, up) = (random([2, 3, 4, 6], &device), random([2, 3, 4, 6], &device));
        let weights = Tensor::<4>::random([2, 3, 4, 6], Distribution::Normal(0.0, 1.0), &device);

        type Activation = fn(Tensor<4>) -> Tensor<4>;
        let activations: [(GateActivation, Activation); 2] = [(GateActivation::Silu, silu), (GateActivation::GeluTanh, gelu_approximate)];
        for (act, burns) in activations {
            let ours = super::gated(gate.clone(), up.clone(), act);
            let grads = (ours.clone() * weights.clone()).sum().backward();
            let ours_grads = [gate.grad(&grads).unwrap(), up.grad(&grads).unwrap()];
            let theirs = burns(gate.clone()) * up.clone();
            let grads = (theirs.clone() * weights.clone()).sum().backward();
            let theirs_grads = [gate.grad(&grads).unwrap(), up.grad(&grads).unwrap()];

            close(ours.inner(), theirs.inner(), &format!("{act:?} output"), 1e-4);
            close(ours_grads[0].clone(), theirs_grads[0].clone(), &format!("{act:?} gate"), 1e-4);
            close(ours_grads[1].clone(), theirs_grads[1].clone(), &format!("{act:?} up"), 1e-4);
        }
    }
}
