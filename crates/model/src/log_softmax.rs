//! The log-softmax of a language model's logits, as the losses use it: the log-probability of each
//! position's chosen token (differentiable), and for a frozen head the probabilities, log-sum-exp
//! and entropy of a chunk of positions (not differentiated).
//!
//! Built from burn's ops, `log_softmax(logits).gather(targets)` is about ten passes over
//! `[tokens, vocab]` — forward and backward, each on one thread, each a fresh tensor — and keeps
//! the log-softmax for the backward. On the CPU backend these are one pass each way
//! ([`crate::row_kernels`]) and the backward keeps only the logits and a log-sum-exp per row;
//! elsewhere (WebGPU) burn's ops compute the same values.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension};
use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use crate::row_kernels;

/// `log softmax(logits)[target]` per row of `logits` `[n, vocab]`, `targets` `[n]` -> `[n]`.
/// Differentiable in `logits`.
pub fn chosen_token_logprobs(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    if fused(&logits) {
        let (logprobs, _) = <Dispatch as LogSoftmaxKernels>::log_softmax_at(logits.into_dispatch(), targets.into_dispatch());
        return Tensor::from_dispatch(logprobs);
    }
    let n = logits.dims()[0];
    log_softmax(logits, 1).gather(1, targets.reshape([n, 1])).reshape([n])
}

/// Per row of `logits` `[n, vocab]`, not differentiated: the probabilities `[n, vocab]`, the
/// log-sum-exp `[n]` and the entropy `[n]`.
pub fn softmax_with_stats(logits: Tensor<2>) -> (Tensor<2>, Tensor<1>, Tensor<1>) {
    let logits = logits.detach();
    if fused(&logits) {
        let (probs, lse, entropy) = <Dispatch as LogSoftmaxKernels>::softmax_stats(logits.into_dispatch());
        return (Tensor::from_dispatch(probs), Tensor::from_dispatch(lse), Tensor::from_dispatch(entropy));
    }
    let n = logits.dims()[0];
    let logp = log_softmax(logits.clone(), 1); // [n, vocab]
    let lse = (logits - logp.clone()).narrow(1, 0, 1).reshape([n]);
    let probs = logp.clone().exp();
    let entropy = (probs.clone() * logp).sum_dim(1).neg().reshape([n]);
    (probs, lse, entropy)
}

/// The log-sum-exp of each row of `logits` `[n, vocab]` -> `[n]`, not differentiated.
pub fn log_sum_exp_rows(logits: Tensor<2>) -> Tensor<1> {
    let logits = logits.detach();
    if fused(&logits) {
        return Tensor::from_dispatch(<Dispatch as LogSoftmaxKernels>::row_log_sum_exp(logits.into_dispatch()));
    }
    let n = logits.dims()[0];
    let max = logits.clone().max_dim(1); // [n, 1]
    ((logits - max.clone()).exp().sum_dim(1).log() + max).reshape([n])
}

/// The kernels run on the CPU backend, on f32 logits.
fn fused(logits: &Tensor<2>) -> bool {
    has_row_kernels(&logits.device()) && logits.dtype() == DType::F32
}

/// Whether [`softmax_with_stats`] and [`log_sum_exp_rows`] are one pass over each row on `device`
/// (the CPU backend's kernels) rather than several of burn's ops.
pub fn has_row_kernels(device: &Device) -> bool {
    on_cpu_backend(device)
}

pub(crate) fn on_cpu_backend(device: &Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), DispatchDevice::Flex(_))
}

#[backend_extension(Flex, Autodiff)]
pub trait LogSoftmaxKernels: Backend {
    /// `(log p(target) [n], log-sum-exp [n])` per row of `logits` `[n, vocab]`; the first is
    /// differentiable in `logits`.
    fn log_softmax_at(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// The gradient of `Σ grad · log p(target)` with respect to the logits `[n, vocab]`.
    fn log_softmax_at_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// The log-sum-exp `[n]` of each row, not differentiated.
    fn row_log_sum_exp(logits: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `(probabilities [n, vocab], log-sum-exp [n], entropy [n])`, not differentiated.
    fn softmax_stats(logits: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// `t`'s f32 values in order (a view when it is contiguous, else a copy).
pub(crate) fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(values) => values.into(),
        None => t.to_contiguous().as_slice::<f32>().map(<[f32]>::to_vec).unwrap_or_default().into(),
    }
}

/// Token ids of any integer dtype, as i64 (an id that does not fit gives -1: outside the vocabulary).
fn ids(t: &FlexTensor) -> Vec<i64> {
    let data = t.to_contiguous().into_data();
    data.convert::<i64>().try_into_vec::<i64>().unwrap_or_else(|_| vec![-1; t.shape().num_elements()])
}

/// `t`, contiguous from its first element and held by nothing else (copied if it was not), so it
/// can be written in place.
pub(crate) fn owned(t: FlexTensor) -> FlexTensor {
    let whole = t.layout().contiguous_offsets() == Some((0, t.layout().num_elements()));
    if whole && t.is_unique() && t.bytes().len() == t.layout().num_elements() * 4 {
        t
    } else {
        FlexTensor::from_data(t.to_contiguous().into_data())
    }
}

fn flex(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl LogSoftmaxKernels for Flex {
    fn log_softmax_at(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [n, vocab] = logits.shape().dims();
        let (chosen, lse) = row_kernels::log_softmax_at(&values(&logits), vocab, &ids(&targets));
        (flex(chosen, [n]), flex(lse, [n]))
    }

    fn log_softmax_at_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let [n, vocab] = logits.shape().dims();
        flex(row_kernels::log_softmax_at_backward(&values(&logits), vocab, &ids(&targets), &values(&lse), &values(&grad)), [n, vocab])
    }

    fn row_log_sum_exp(logits: FloatTensor<Self>) -> FloatTensor<Self> {
        let [n, vocab] = logits.shape().dims();
        flex(row_kernels::log_sum_exps(&values(&logits), vocab), [n])
    }

    fn softmax_stats(logits: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [n, vocab] = logits.shape().dims();
        // A chunk's logits are the head's fresh product, held by nothing else: written in place.
        let mut probs = owned(logits);
        let (lse, entropy) = row_kernels::softmax_in_place(probs.storage_mut::<f32>(), vocab);
        (probs, flex(lse, [n]), flex(entropy, [n]))
    }
}

#[derive(Debug)]
struct LogSoftmaxAtBackward;

impl<B: Backend + LogSoftmaxKernels> Backward<B, 1> for LogSoftmaxAtBackward {
    /// The logits, the targets and each row's log-sum-exp.
    type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (logits, targets, lse) = ops.state;
        let grad = grads.consume::<B>(&ops.node); // [n]
        if let [Some(node)] = ops.parents {
            grads.register::<B>(node.id, B::log_softmax_at_backward(logits, targets, lse, grad));
        }
    }
}

impl<B: Backend + LogSoftmaxKernels, C: CheckpointStrategy> LogSoftmaxKernels for Autodiff<B, C> {
    fn log_softmax_at(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (logits, node) = logits.into_parts();
        let (chosen, lse) = B::log_softmax_at(logits.clone(), targets.clone());
        let chosen = match LogSoftmaxAtBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((logits, targets, lse.clone()), chosen),
            OpsKind::UnTracked(prep) => prep.finish(chosen),
        };
        (chosen, Self::from_inner(lse))
    }

    fn log_softmax_at_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::log_softmax_at_backward(Self::inner(logits), targets, Self::inner(lse), Self::inner(grad)))
    }

    fn row_log_sum_exp(logits: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::row_log_sum_exp(Self::inner(logits)))
    }

    fn softmax_stats(logits: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (probs, lse, entropy) = B::softmax_stats(Self::inner(logits));
        (Self::from_inner(probs), Self::from_inner(lse), Self::from_inner(entropy))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor, TensorData};

    use super::*;

    fn close(a: Tensor<2>, b: Tensor<2>, what: &str) {
        let (a, b) = (a.into_data().try_to_vec::<f32>().unwrap(), b.into_data().try_to_vec::<f32>().unwrap());
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{what}: relative difference {worst}");
    }

    #[test]
    fn chosen_token_logprobs_and_their_gradient_equal_burns_log_softmax_and_gather() {
        let device = Device::flex().autodiff();
        let (n, vocab) = (7, 301);
        let logits = (Tensor::<2>::random([n, vocab], Distribution::Normal(0.0, 4.0), &device)).require_grad();
        let targets = Tensor::<1, Int>::from_data(TensorData::new((0..n as i64).map(|i| (i * 43) % 301).collect::<Vec<_>>(), [n]), &device);
        let weights = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device);

        let ours = chosen_token_logprobs(logits.clone() * 1.0, targets.clone());
        let grads = (ours.clone() * weights.clone()).sum().backward();
        let ours_grad = logits.grad(&grads).unwrap();
        let theirs = log_softmax(logits.clone() * 1.0, 1).gather(1, targets.reshape([n, 1])).reshape([n]);
        let grads = (theirs.clone() * weights).sum().backward();
        let theirs_grad = logits.grad(&grads).unwrap();

        close(ours.reshape([1, n]), theirs.reshape([1, n]), "log-probs");
        close(ours_grad, theirs_grad, "gradient");
    }

    #[test]
    fn softmax_with_stats_equals_burns_softmax_log_sum_exp_and_entropy() {
        let device = Device::flex();
        let logits = Tensor::<2>::random([5, 1001], Distribution::Normal(0.0, 3.0), &device);
        let (probs, lse, entropy) = softmax_with_stats(logits.clone());
        let logp = log_softmax(logits.clone(), 1);
        close(probs, logp.clone().exp(), "probabilities");
        close(lse.clone().reshape([1, 5]), (logits.clone() - logp.clone()).narrow(1, 0, 1).reshape([1, 5]), "log-sum-exp");
        close(entropy.reshape([1, 5]), (logp.clone().exp() * logp).sum_dim(1).neg().reshape([1, 5]), "entropy");
        close(log_sum_exp_rows(logits.clone()).reshape([1, 5]), lse.reshape([1, 5]), "log-sum-exp alone");
    }
}
