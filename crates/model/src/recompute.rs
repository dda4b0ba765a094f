//! Attention for training, with a backward that recomputes what autodiff would keep (the gated
//! MLP unit does the same in `gated.rs`).
//!
//! Built from burn's differentiable ops, a training forward keeps every intermediate until the
//! backward: attention its `[b, h, t, t]` scores, masked scores and probabilities (three tensors
//! that grow with the square of the sequence), SwiGLU its sigmoid and both products, GeGLU (built
//! from burn's ops as `gelu_approximate`) three more tensors of the MLP's width. For a LoRA
//! step on a 0.5B model those are most of the step's memory. These ops keep only their inputs
//! (queries, keys, values; gate and up), compute the forward with the backend's fused kernel (the
//! CPU backend's attention never materialises the scores), and rebuild the rest, one layer at a
//! time, in the backward — PyTorch's memory-efficient attention and recomputed activations.
//!
//! The ops run on the CPU backend (natively and in wasm); cubecl's GPU runtimes (WebGPU in the tab)
//! take `train_attention.rs`' kernels, which recompute the same way.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{AttentionModuleOptions, FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::module::attention as burn_attention;
use burn::tensor::{DType, Tensor, TensorData};

use crate::kv_cache::MASKED;
use crate::log_softmax::{on_cpu_backend, owned, values};
use crate::own_kernels::{attention_fits, on_gpu_kernels};
use crate::row_kernels;

/// softmax(q k^T / sqrt(head_dim) + bias) v for `q` `[b, h, t, hd]`, `k`, `v` `[b, h, t_keys, hd]`
/// and an additive `bias` broadcast to `[b, h, t, t_keys]`; the bias gets no gradient.
pub(crate) fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>) -> Tensor<4> {
    if on_cpu_backend(&q.device()) {
        let out =
            <Dispatch as Recomputed>::recomputed_attention(q.into_dispatch(), k.into_dispatch(), v.into_dispatch(), bias.into_dispatch());
        Tensor::from_dispatch(out)
    } else if on_gpu_kernels(&q.device()) && attention_fits(q.dims()[3]) {
        crate::train_attention::attention(q, k, v, bias)
    } else {
        burn_attention(q, k, v, None, Some(bias), AttentionModuleOptions::default())
    }
}

/// The forward passes; the autodiff implementation adds the recomputing backwards.
#[backend_extension(Flex, Autodiff)]
pub trait Recomputed: Backend {
    fn recomputed_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, bias: FloatTensor<Self>)
    -> FloatTensor<Self>;
    /// The softmax of attention `scores` over their last dimension (keys), as the forward took it.
    fn recomputed_probabilities(scores: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl Recomputed for Flex {
    fn recomputed_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let hidden = hidden_keys(&bias);
        <Self as ModuleOps<Self>>::attention(q, k, v, Some(hidden), Some(bias), AttentionModuleOptions::default())
    }

    /// One pass a row with the row kernels' `exp`: burn's softmax takes five, and libm's `expf`
    /// its slow underflow path on every hidden key's score.
    fn recomputed_probabilities(scores: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = scores.shape();
        let t_keys = shape[shape.num_dims() - 1];
        let mut scores = owned(as_f32(scores));
        row_kernels::softmax_in_place(scores.storage_mut(), t_keys);
        scores
    }
}

/// The keys `bias` hides ([`MASKED`]), as burn's mask `[b or 1, 1, t, t_keys]`: the CPU's attention
/// sets a masked score to -inf before its `exp`, where a score of -1e9 took libm's underflow path
/// (errno and all; with the backward's softmax, 2% of a 135 M-parameter training step's samples on
/// a 2-core AMD EPYC). The same probabilities: `exp` of either is 0. A query that sees no key at
/// all (padding) keeps its bias alone, so its softmax stays uniform, as the backward rebuilds it
/// from the bias.
fn hidden_keys(bias: &FlexTensor) -> FlexTensor {
    let shape = bias.shape();
    let t_keys = shape[3];
    let mut hidden: Vec<bool> = values(&as_f32(bias.clone())).iter().map(|&b| b <= MASKED / 2.0).collect();
    for row in hidden.chunks_mut(t_keys.max(1)) {
        if row.iter().all(|&h| h) {
            row.fill(false);
        }
    }
    FlexTensor::from_data(TensorData::new(hidden, shape))
}

/// `t` as f32 (this crate's models are f32; another float dtype is converted for the kernels).
fn as_f32(t: FlexTensor) -> FlexTensor {
    if t.dtype() == DType::F32 { t } else { <Flex as FloatTensorOps<Flex>>::float_cast(t, burn::tensor::FloatDType::F32) }
}

/// The attention scores `q k^T / sqrt(head_dim) + bias` `[b, h, t, t_keys]`.
fn scores<B: Backend>(q: &FloatTensor<B>, k: &FloatTensor<B>, bias: &FloatTensor<B>) -> FloatTensor<B> {
    let scale = 1.0 / (q.shape()[3] as f64).sqrt();
    let scores = B::float_matmul(q.clone(), B::float_swap_dims(k.clone(), 2, 3)); // [b, h, t, t_keys]
    B::float_add(B::float_mul_scalar(scores, scale.into()), bias.clone())
}

#[derive(Debug)]
struct AttentionBackward;

impl<B: Backend + Recomputed> Backward<B, 3> for AttentionBackward {
    /// q, k, v and the bias: the probabilities are rebuilt from them.
    type State = [FloatTensor<B>; 4];

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [q, k, v, bias] = ops.state;
        let grad = grads.consume::<B>(&ops.node); // dO [b, h, t, hd]
        let scale = 1.0 / (q.shape()[3] as f64).sqrt();
        let p = B::recomputed_probabilities(scores::<B>(&q, &k, &bias)); // [b, h, t, t_keys]
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

    fn recomputed_probabilities(scores: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::recomputed_probabilities(Self::inner(scores)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use burn::tensor::module::attention as burn_attention;
    use burn::tensor::ops::AttentionModuleOptions;

    use burn::tensor::{Device, Distribution, Tensor, TensorData};

    /// Fails unless `a` and `b` agree within `tolerance`, relative to `1 + |b|`.
    pub(crate) fn close(a: Tensor<4>, b: Tensor<4>, what: &str, tolerance: f32) {
        let (a, b) = (a.into_data().try_to_vec::<f32>().unwrap(), b.into_data().try_to_vec::<f32>().unwrap());
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0f32, f32::max);
        assert!(worst < tolerance, "{what}: relative difference {worst}");
    }

    /// Standard normal values, tracked.
    pub(crate) fn random(shape: [usize; 4], device: &Device) -> Tensor<4> {
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

        close(ours.inner(), theirs.inner(), "output", 1e-4);
        for ((ours, theirs), name) in ours_grads.into_iter().zip(theirs_grads).zip(["q", "k", "v"]) {
            close(ours, theirs, name, 1e-4);
        }
    }
}
