//! Attention and SwiGLU for training, with backwards that recompute what autodiff would keep.
//!
//! Built from burn's differentiable ops, a training forward keeps every intermediate until the
//! backward: attention its `[b, h, t, t]` scores, masked scores and probabilities (three tensors
//! that grow with the square of the sequence), SwiGLU its sigmoid and both products. For a LoRA
//! step on a 0.5B model those are most of the step's memory. These ops keep only their inputs
//! (queries, keys, values; gate and up), compute the forward with the backend's fused kernel (the
//! CPU backend's attention never materialises the scores), and rebuild the rest, one layer at a
//! time, in the backward — PyTorch's memory-efficient attention and recomputed activations.
//!
//! The ops run on the CPU backend (natively and in wasm); elsewhere (WebGPU) the same values come
//! from burn's ops, as before.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{AttentionModuleOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::activation::silu;
use burn::tensor::module::attention as burn_attention;
use burn::tensor::{DType, Tensor, TensorData};

use crate::log_softmax::{on_cpu_backend, values};
use crate::row_kernels;

/// softmax(q k^T / sqrt(head_dim) + bias) v for `q` `[b, h, t, hd]`, `k`, `v` `[b, h, t_keys, hd]`
/// and an additive `bias` broadcast to `[b, h, t, t_keys]`; the bias gets no gradient.
pub(crate) fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>) -> Tensor<4> {
    if on_cpu_backend(&q.device()) {
        let out =
            <Dispatch as Recomputed>::recomputed_attention(q.into_dispatch(), k.into_dispatch(), v.into_dispatch(), bias.into_dispatch());
        Tensor::from_dispatch(out)
    } else {
        burn_attention(q, k, v, None, Some(bias), AttentionModuleOptions::default())
    }
}

/// silu(gate) * up, elementwise.
pub(crate) fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    if on_cpu_backend(&gate.device()) {
        Tensor::from_dispatch(<Dispatch as Recomputed>::recomputed_swiglu(gate.into_dispatch(), up.into_dispatch()))
    } else {
        silu(gate) * up
    }
}

/// The forward passes; the autodiff implementation adds the recomputing backwards.
#[backend_extension(Flex, Autodiff)]
pub trait Recomputed: Backend {
    fn recomputed_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, bias: FloatTensor<Self>)
    -> FloatTensor<Self>;
    fn recomputed_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `(d gate, d up)` from the output's gradient.
    fn recomputed_swiglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl Recomputed for Flex {
    fn recomputed_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::attention(q, k, v, None, Some(bias), AttentionModuleOptions::default())
    }

    fn recomputed_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        if !f32_pair(&gate, &up) {
            return swiglu_by_ops::<Self>(gate, up);
        }
        let shape = gate.shape();
        let out = row_kernels::swiglu(&values(&gate), &values(&up));
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn recomputed_swiglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !f32_pair(&gate, &up) {
            return swiglu_backward_by_ops::<Self>(gate, up, grad);
        }
        let shape = gate.shape();
        let (d_gate, d_up) = row_kernels::swiglu_backward(&values(&gate), &values(&up), &values(&grad));
        (FlexTensor::from_data(TensorData::new(d_gate, shape.clone())), FlexTensor::from_data(TensorData::new(d_up, shape)))
    }
}

fn f32_pair(gate: &FlexTensor, up: &FlexTensor) -> bool {
    gate.dtype() == DType::F32 && up.dtype() == DType::F32 && gate.shape() == up.shape()
}

/// SwiGLU from burn's ops (for dtypes the kernel does not take).
fn swiglu_by_ops<B: Backend>(gate: FloatTensor<B>, up: FloatTensor<B>) -> FloatTensor<B> {
    B::float_mul(B::float_mul(gate.clone(), B::sigmoid(gate)), up)
}

/// SwiGLU's backward from burn's ops (for dtypes the kernel does not take).
fn swiglu_backward_by_ops<B: Backend>(gate: FloatTensor<B>, up: FloatTensor<B>, grad: FloatTensor<B>) -> (FloatTensor<B>, FloatTensor<B>) {
    let s = B::sigmoid(gate.clone());
    let d_up = B::float_mul(grad.clone(), B::float_mul(gate.clone(), s.clone()));
    // d silu(g) / dg = s (1 + g (1 - s))
    let one_minus_s = B::float_add_scalar(B::float_neg(s.clone()), 1.0.into());
    let slope = B::float_mul(s, B::float_add_scalar(B::float_mul(gate, one_minus_s), 1.0.into()));
    (B::float_mul(B::float_mul(grad, up), slope), d_up)
}

/// The attention probabilities `[b, h, t, t_keys]`, as the forward computed them.
fn probabilities<B: Backend>(q: &FloatTensor<B>, k: &FloatTensor<B>, bias: &FloatTensor<B>) -> FloatTensor<B> {
    let scale = 1.0 / (q.shape()[3] as f64).sqrt();
    let scores = B::float_matmul(q.clone(), B::float_swap_dims(k.clone(), 2, 3)); // [b, h, t, t_keys]
    let scores = B::float_add(B::float_mul_scalar(scores, scale.into()), bias.clone());
    B::softmax(scores, 3)
}

#[derive(Debug)]
struct AttentionBackward;

impl<B: Backend> Backward<B, 3> for AttentionBackward {
    /// q, k, v and the bias: the probabilities are rebuilt from them.
    type State = [FloatTensor<B>; 4];

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [q, k, v, bias] = ops.state;
        let grad = grads.consume::<B>(&ops.node); // dO [b, h, t, hd]
        let scale = 1.0 / (q.shape()[3] as f64).sqrt();
        let p = probabilities::<B>(&q, &k, &bias); // [b, h, t, t_keys]
        // dS = P ⊙ (dP - rowsum(dP ⊙ P)), dP = dO V^T: the softmax's backward.
        let dp = B::float_matmul(grad.clone(), B::float_swap_dims(v, 2, 3));
        let row = B::float_sum_dim(B::float_mul(dp.clone(), p.clone()), 3);
        let ds = B::float_mul_scalar(B::float_mul(p.clone(), B::float_sub(dp, row)), scale.into());
        let [q_parent, k_parent, v_parent] = ops.parents;
        if let Some(node) = v_parent {
            grads.register::<B>(node.id, B::float_matmul(B::float_swap_dims(p, 2, 3), grad)); // P^T dO
        }
        if let Some(node) = k_parent {
            grads.register::<B>(node.id, B::float_matmul(B::float_swap_dims(ds.clone(), 2, 3), q)); // dS^T Q
        }
        if let Some(node) = q_parent {
            grads.register::<B>(node.id, B::float_matmul(ds, k)); // dS K
        }
    }
}

#[derive(Debug)]
struct SwigluBackward;

impl<B: Backend + Recomputed> Backward<B, 2> for SwigluBackward {
    type State = [FloatTensor<B>; 2];

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [gate, up] = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let (d_gate, d_up) = B::recomputed_swiglu_backward(gate, up, grad);
        let [gate_parent, up_parent] = ops.parents;
        if let Some(node) = up_parent {
            grads.register::<B>(node.id, d_up);
        }
        if let Some(node) = gate_parent {
            grads.register::<B>(node.id, d_gate);
        }
    }
}

impl<B: Backend + Recomputed, C: CheckpointStrategy> Recomputed for Autodiff<B, C> {
    fn recomputed_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (q, q_node) = q.into_parts();
        let (k, k_node) = k.into_parts();
        let (v, v_node) = v.into_parts();
        let bias = Self::inner(bias);
        match AttentionBackward.prepare::<C>([q_node, k_node, v_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::recomputed_attention(q.clone(), k.clone(), v.clone(), bias.clone());
                prep.finish([q, k, v, bias], out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::recomputed_attention(q, k, v, bias)),
        }
    }

    fn recomputed_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let (gate, gate_node) = gate.into_parts();
        let (up, up_node) = up.into_parts();
        match SwigluBackward.prepare::<C>([gate_node, up_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::recomputed_swiglu(gate.clone(), up.clone());
                prep.finish([gate, up], out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::recomputed_swiglu(gate, up)),
        }
    }

    fn recomputed_swiglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (d_gate, d_up) = B::recomputed_swiglu_backward(Self::inner(gate), Self::inner(up), Self::inner(grad));
        (Self::from_inner(d_gate), Self::from_inner(d_up))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::silu;
    use burn::tensor::module::attention as burn_attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Device, Distribution, Tensor, TensorData};

    fn close(a: Tensor<4>, b: Tensor<4>, what: &str) {
        let (a, b) = (a.into_data().try_to_vec::<f32>().unwrap(), b.into_data().try_to_vec::<f32>().unwrap());
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{what}: relative difference {worst}");
    }

    fn random(shape: [usize; 4], device: &Device) -> Tensor<4> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device).require_grad()
    }

    #[test]
    fn attention_and_its_gradients_equal_burns_attention_with_a_padded_causal_bias() {
        let device = Device::flex().autodiff();
        let ([b, h, t, hd], t_keys) = ([2, 3, 5, 8], 5);
        let (q, k, v) = (random([b, h, t, hd], &device), random([b, h, t_keys, hd], &device), random([b, h, t_keys, hd], &device));
        // Causal, and the first row's first key is padding.
        let bias: Vec<f32> = (0..b)
            .flat_map(|row| (0..t).flat_map(move |i| (0..t_keys).map(move |j| if j > i || (row == 0 && j == 0) { -1e9 } else { 0.0 })))
            .collect();
        let bias = Tensor::<4>::from_data(TensorData::new(bias, [b, 1, t, t_keys]), &device);
        let weights = Tensor::<4>::random([b, h, t, hd], Distribution::Normal(0.0, 1.0), &device);

        let ours = super::attention(q.clone(), k.clone(), v.clone(), bias.clone());
        let grads = (ours.clone() * weights.clone()).sum().backward();
        let ours_grads = [q.grad(&grads).unwrap(), k.grad(&grads).unwrap(), v.grad(&grads).unwrap()];

        let theirs = burn_attention(q.clone(), k.clone(), v.clone(), None, Some(bias), AttentionModuleOptions::default());
        let grads = (theirs.clone() * weights).sum().backward();
        let theirs_grads = [q.grad(&grads).unwrap(), k.grad(&grads).unwrap(), v.grad(&grads).unwrap()];

        close(ours.inner(), theirs.inner(), "output");
        for ((ours, theirs), name) in ours_grads.into_iter().zip(theirs_grads).zip(["q", "k", "v"]) {
            close(ours, theirs, name);
        }
    }

    #[test]
    fn swiglu_and_its_gradients_equal_silu_times_up() {
        let device = Device::flex().autodiff();
        let (gate, up) = (random([2, 3, 4, 6], &device), random([2, 3, 4, 6], &device));
        let weights = Tensor::<4>::random([2, 3, 4, 6], Distribution::Normal(0.0, 1.0), &device);

        let ours = super::swiglu(gate.clone(), up.clone());
        let grads = (ours.clone() * weights.clone()).sum().backward();
        let ours_grads = [gate.grad(&grads).unwrap(), up.grad(&grads).unwrap()];
        let theirs = silu(gate.clone()) * up.clone();
        let grads = (theirs.clone() * weights).sum().backward();
        let theirs_grads = [gate.grad(&grads).unwrap(), up.grad(&grads).unwrap()];

        close(ours.inner(), theirs.inner(), "output");
        close(ours_grads[0].clone(), theirs_grads[0].clone(), "gate");
        close(ours_grads[1].clone(), theirs_grads[1].clone(), "up");
    }
}
