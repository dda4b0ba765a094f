//! The tied LM head's product for many rows, `x @ E^T`, whose weight gradient comes back in the
//! embedding's own layout.
//!
//! Written with burn's ops, `x.matmul(E.transpose())` is differentiated as a product and a
//! transpose: the product's gradient `x^T @ g` is `[d, vocab]`, and the transpose's backward hands
//! the embedding a strided `[vocab, d]` view of it. The embedding's lookup adds its own gradient
//! to that view, and AdamW needs it contiguous: two passes that walk 28 M values (SmolLM2's
//! 49,152 x 576) against their layout, on one thread (2.3% of a 135 M-parameter training step's
//! samples on a 2-core AMD EPYC, the other core waiting; docs/benchmarks.md). Here the weight's
//! gradient is computed as `g^T @ x`, `[vocab, d]` from the start: the same product, written
//! where the embedding's gradient lies.
//!
//! On the CPU backend only; elsewhere (WebGPU) burn's ops compute the same values.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;

use crate::log_softmax::on_cpu_backend;

/// Logits of `x` `[n, d]` through the tied embedding `E` `[vocab, d]`: `x @ E^T` -> `[n, vocab]`,
/// differentiable in both.
pub(crate) fn tied_logits(x: Tensor<2>, embedding: Tensor<2>) -> Tensor<2> {
    if on_cpu_backend(&x.device()) {
        Tensor::from_dispatch(<Dispatch as TiedHead>::tied_head_logits(x.into_dispatch(), embedding.into_dispatch()))
    } else {
        x.matmul(embedding.transpose())
    }
}

/// The forward; the autodiff implementation adds the backward.
#[backend_extension(Flex, Autodiff)]
pub trait TiedHead: Backend {
    fn tied_head_logits(x: FloatTensor<Self>, embedding: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl TiedHead for Flex {
    fn tied_head_logits(x: FloatTensor<Self>, embedding: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(x, Self::float_swap_dims(embedding, 0, 1)) // [n, vocab]
    }
}

#[derive(Debug)]
struct TiedHeadBackward;

impl<B: Backend> Backward<B, 2> for TiedHeadBackward {
    /// `x` and `E`.
    type State = [FloatTensor<B>; 2];

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x, embedding] = ops.state;
        let grad = grads.consume::<B>(&ops.node); // g [n, vocab]
        let [x_parent, embedding_parent] = ops.parents;
        if let Some(node) = embedding_parent {
            grads.register::<B>(node.id, B::float_matmul(B::float_swap_dims(grad.clone(), 0, 1), x)); // g^T x [vocab, d]
        }
        if let Some(node) = x_parent {
            grads.register::<B>(node.id, B::float_matmul(grad, embedding)); // g E [n, d]
        }
    }
}

impl<B: Backend + TiedHead, C: CheckpointStrategy> TiedHead for Autodiff<B, C> {
    fn tied_head_logits(x: FloatTensor<Self>, embedding: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (embedding, embedding_node) = embedding.into_parts();
        match TiedHeadBackward.prepare::<C>([x_node, embedding_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::tied_head_logits(x.clone(), embedding.clone());
                prep.finish([x, embedding], out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::tied_head_logits(x, embedding)),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::module::embedding as lookup;
    use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

    fn close(ours: Tensor<2>, theirs: Tensor<2>, what: &str) {
        let (a, b) = (ours.into_data().try_to_vec::<f32>().unwrap(), theirs.into_data().try_to_vec::<f32>().unwrap());
        assert_eq!(a.len(), b.len(), "{what}");
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{what}: relative difference {worst}");
    }

    /// A tied model's step: the embedding both looked up and the head, so its two gradients add.
    #[test]
    fn the_tied_heads_logits_and_gradients_equal_burns_transposed_product() {
        let device = Device::flex().autodiff();
        let (vocab, d, n) = (37, 12, 9);
        let ids = Tensor::<2, Int>::from_data(TensorData::new((0..n as i64).map(|i| (i * 5) % vocab as i64).collect(), [1, n]), &device);
        let embedding = Tensor::<2>::random([vocab, d], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let weights = Tensor::<2>::random([n, vocab], Distribution::Normal(0.0, 1.0), &device);
        let step = |ours: bool| {
            let x = lookup(embedding.clone(), ids.clone()).reshape([n, d]).tanh(); // [n, d]
            let logits = if ours { super::tied_logits(x, embedding.clone()) } else { x.matmul(embedding.clone().transpose()) };
            let grads = (logits.clone() * weights.clone()).sum().backward();
            (logits.inner(), embedding.grad(&grads).expect("the embedding trains"))
        };
        let ((ours, our_grad), (theirs, their_grad)) = (step(true), step(false));
        close(ours, theirs, "logits");
        close(our_grad, their_grad, "the embedding's gradient");
    }
}
