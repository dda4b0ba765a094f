//! An adapter's update added to its projection's output, `out + scale · h b` with `h = x a`, its `b`
//! side one kernel forward and one backward on a GPU. As burn's ops the `b` side was a product and
//! a scaled sum forward, a scalar product and two products backward: with seven adapted projections
//! a layer, a fifth of a LoRA step's launches. The rank (8, say) is the inner size of every sum
//! here, or the row count of what is summed over, so plain loops serve where a tiled product buys
//! nothing. The `a` side stays burn's products (a product of the model's width). The CPU keeps
//! burn's ops (its numbers are the project's reference).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Tensor, TensorData};

use crate::packed::on_gpu_kernels;
use crate::projection::LoraFactors;

/// `out + scale · (x a) b` for `out` `[n, d_out]` and `x` `[n, d_in]`.
pub(crate) fn add_low_rank(out: Tensor<2>, x: Tensor<2>, lora: &LoraFactors) -> Tensor<2> {
    let h = x.matmul(lora.a.val()); // [n, rank]
    if !on_gpu_kernels(&out.device()) {
        return out + h.matmul(lora.b.val()).mul_scalar(lora.scale);
    }
    let added =
        <Dispatch as LowRankKernels>::add_low_rank(out.into_dispatch(), h.into_dispatch(), lora.b.val().into_dispatch(), lora.scale as f32);
    Tensor::from_dispatch(added)
}

/// The `b` side of the update, forward and backward.
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Fusion: cfg(all(feature = "cube", feature = "fusion")), Autodiff)]
pub trait LowRankKernels: Backend {
    /// `out + scale · h b` for `h` `[n, rank]`, `b` `[rank, d_out]`.
    #[fusion(meta = |out, _h, _b, _scale| out.clone())]
    fn add_low_rank(out: FloatTensor<Self>, h: FloatTensor<Self>, b: FloatTensor<Self>, scale: f32) -> FloatTensor<Self>;

    /// `(d h, d b)` = `(scale · grad b^T, scale · h^T grad)` from the output's gradient `grad`.
    #[fusion(meta = |h, b, _grad, _scale| (h.clone(), b.clone()))]
    fn low_rank_backward(
        h: FloatTensor<Self>,
        b: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

fn values(t: FloatTensor<Flex>) -> Vec<f32> {
    t.into_data().try_to_vec().expect("f32 values")
}

impl LowRankKernels for Flex {
    fn add_low_rank(out: FloatTensor<Self>, h: FloatTensor<Self>, b: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        let (shape, device, rank) = (out.shape(), out.device(), h.shape()[1]);
        let width = shape[1];
        let (mut out, h, b) = (values(out), values(h), values(b));
        for (i, out) in out.iter_mut().enumerate() {
            let (row, col) = (i / width, i % width);
            *out += scale * (0..rank).map(|r| h[row * rank + r] * b[r * width + col]).sum::<f32>();
        }
        Self::float_from_data(TensorData::new(out, shape), &device)
    }

    fn low_rank_backward(
        h: FloatTensor<Self>,
        b: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (h_shape, b_shape, device) = (h.shape(), b.shape(), h.device());
        let (n, rank, width) = (h_shape[0], h_shape[1], b_shape[1]);
        let (h, b, grad) = (values(h), values(b), values(grad));
        let dh: Vec<f32> = (0..n * rank)
            .map(|i| scale * (0..width).map(|col| grad[i / rank * width + col] * b[i % rank * width + col]).sum::<f32>())
            .collect();
        let db: Vec<f32> = (0..rank * width)
            .map(|i| scale * (0..n).map(|row| h[row * rank + i / width] * grad[row * width + i % width]).sum::<f32>())
            .collect();
        (Self::float_from_data(TensorData::new(dh, h_shape), &device), Self::float_from_data(TensorData::new(db, b_shape), &device))
    }
}

/// The update's backward: the output's gradient passes to the base's output as it is.
#[derive(Debug)]
struct LowRankBackward(f32);

impl<B: Backend + LowRankKernels> Backward<B, 3> for LowRankBackward {
    /// h and b.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (h, b) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let [out_parent, h_parent, b_parent] = ops.parents;
        if h_parent.is_some() || b_parent.is_some() {
            let (dh, db) = B::low_rank_backward(h, b, grad.clone(), self.0);
            if let Some(node) = h_parent {
                grads.register::<B>(node.id, dh);
            }
            if let Some(node) = b_parent {
                grads.register::<B>(node.id, db);
            }
        }
        if let Some(node) = out_parent {
            grads.register::<B>(node.id, grad);
        }
    }
}

impl<B: Backend + LowRankKernels, C: CheckpointStrategy> LowRankKernels for Autodiff<B, C> {
    fn add_low_rank(out: FloatTensor<Self>, h: FloatTensor<Self>, b: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        let (out, out_node) = out.into_parts();
        let (h, h_node) = h.into_parts();
        let (b, b_node) = b.into_parts();
        match LowRankBackward(scale).prepare::<C>([out_node, h_node, b_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let added = B::add_low_rank(out, h.clone(), b.clone(), scale);
                prep.finish((h, b), added)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::add_low_rank(out, h, b, scale)),
        }
    }

    fn low_rank_backward(
        h: FloatTensor<Self>,
        b: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dh, db) = B::low_rank_backward(Self::inner(h), Self::inner(b), Self::inner(grad), scale);
        (Self::from_inner(dh), Self::from_inner(db))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::*;

    /// The one-op update (the kernels' arithmetic, on the host) gives burn's ops' values and the
    /// gradients of the base's output, `x`, `a` and `b`.
    #[test]
    fn the_low_rank_update_and_its_gradients_equal_burns_products() {
        let device = Device::flex().autodiff();
        let random = |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad();
        let (out, x, a, b) = (random([5, 7]), random([5, 6]), random([6, 3]), random([3, 7]));
        let weights = Tensor::<2>::random([5, 7], Distribution::Normal(0.0, 1.0), &device);
        let scale = 2.5f32;
        let ours = Tensor::<2>::from_dispatch(<Dispatch as LowRankKernels>::add_low_rank(
            out.clone().into_dispatch(),
            x.clone().matmul(a.clone()).into_dispatch(),
            b.clone().into_dispatch(),
            scale,
        ));
        let theirs = out.clone() + x.clone().matmul(a.clone()).matmul(b.clone()).mul_scalar(scale);
        let values = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        let worst = |a: Vec<f32>, b: Vec<f32>| a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0f32, f32::max);
        assert!(worst(values(ours.clone()), values(theirs.clone())) < 1e-5);
        let gradients = |sum: Tensor<2>| {
            let grads = (sum * weights.clone()).sum().backward();
            [&out, &x, &a, &b].map(|t| values(t.grad(&grads).unwrap()))
        };
        for ((ours, theirs), name) in gradients(ours).into_iter().zip(gradients(theirs)).zip(["out", "x", "a", "b"]) {
            let gap = worst(ours, theirs);
            assert!(gap < 1e-5, "d {name}: {gap}");
        }
    }
}
