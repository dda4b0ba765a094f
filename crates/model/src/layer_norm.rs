//! GPT-2's LayerNorm as one kernel on a GPU, forward and backward. burn's `LayerNorm` is two means,
//! a subtraction, a product, a square root, a division, the scale and the shift, most launched
//! alone between the products around them, and as many again in autodiff's backward: a GPT-2
//! block's two norms were about a fifth of its launches. The backward is one kernel (the input's
//! gradient and each row's share of the scale's) and two column sums. The CPU keeps burn's module
//! (its numbers are the project's reference).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::LayerNorm;
use burn::tensor::{Tensor, TensorData};

use crate::own_kernels::on_gpu_kernels;

/// `norm` (whose epsilon is `epsilon`: burn keeps its own private) on `x` `[.., d]`.
pub(crate) fn layer_norm<const D: usize>(norm: &LayerNorm, epsilon: f64, x: Tensor<D>) -> Tensor<D> {
    let Some(beta) = norm.beta.as_ref().filter(|_| on_gpu_kernels(&x.device())) else {
        return norm.forward(x);
    };
    let shape = x.dims();
    let d = shape[D - 1];
    let rows = x.reshape([shape.iter().product::<usize>() / d.max(1), d]);
    let out = <Dispatch as LayerNormKernels>::shifted_norm(
        rows.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        epsilon as f32,
    );
    Tensor::<2>::from_dispatch(out).reshape(shape)
}

/// `(x - mean) / sqrt(var + epsilon) · gamma + beta` over rows `[n, d]` (`var` the biased one).
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Fusion: cfg(all(feature = "cube", feature = "fusion")), Autodiff)]
pub trait LayerNormKernels: Backend {
    #[fusion(meta = |x, _gamma, _beta, _epsilon| x.clone())]
    fn shifted_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f32) -> FloatTensor<Self>;

    /// `(d x, each row's share of d gamma)` from the output's gradient `grad` `[n, d]`.
    #[fusion(meta = |x, _gamma, _grad, _epsilon| (x.clone(), x.clone()))]
    fn shifted_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// A row's mean and `1 / sqrt(var + epsilon)`.
fn moments(row: &[f32], epsilon: f32) -> (f32, f32) {
    let mean = row.iter().sum::<f32>() / row.len() as f32;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / row.len() as f32;
    (mean, 1.0 / (var + epsilon).sqrt())
}

fn values(t: FloatTensor<Flex>) -> Vec<f32> {
    t.into_data().try_to_vec().expect("f32 values")
}

impl LayerNormKernels for Flex {
    fn shifted_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f32) -> FloatTensor<Self> {
        let (shape, device) = (x.shape(), x.device());
        let (mut x, gamma, beta) = (values(x), values(gamma), values(beta));
        for row in x.chunks_mut(gamma.len().max(1)) {
            let (mean, inv) = moments(row, epsilon);
            row.iter_mut().zip(gamma.iter().zip(&beta)).for_each(|(v, (g, b))| *v = (*v - mean) * inv * g + b);
        }
        Self::float_from_data(TensorData::new(x, shape), &device)
    }

    fn shifted_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (shape, device) = (x.shape(), x.device());
        let (x, gamma, grad) = (values(x), values(gamma), values(grad));
        let d = gamma.len().max(1);
        let (mut dx, mut shares) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        for (((x, dy), dx), share) in x.chunks(d).zip(grad.chunks(d)).zip(dx.chunks_mut(d)).zip(shares.chunks_mut(d)) {
            let (mean, inv) = moments(x, epsilon);
            // d x = inv (g - mean(g) - x̂ mean(g x̂)), g = dy gamma, x̂ = (x - mean) inv.
            let normed: Vec<f32> = x.iter().map(|v| (v - mean) * inv).collect();
            let g_mean = dy.iter().zip(&gamma).map(|(dy, g)| dy * g).sum::<f32>() / d as f32;
            let gx_mean = dy.iter().zip(&gamma).zip(&normed).map(|((dy, g), n)| dy * g * n).sum::<f32>() / d as f32;
            for i in 0..d {
                dx[i] = inv * (dy[i] * gamma[i] - g_mean - normed[i] * gx_mean);
                share[i] = dy[i] * normed[i];
            }
        }
        let tensor = |v: Vec<f32>| Self::float_from_data(TensorData::new(v, shape.clone()), &device);
        (tensor(dx), tensor(shares))
    }
}

/// The norm's backward, from its input and scale (nothing of the forward is kept).
#[derive(Debug)]
struct LayerNormBackward(f32);

impl<B: Backend + LayerNormKernels> Backward<B, 3> for LayerNormBackward {
    /// x `[n, d]` and gamma `[d]`.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, gamma) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let d = gamma.shape()[0];
        let [x_parent, gamma_parent, beta_parent] = ops.parents;
        let column_sum = |t: FloatTensor<B>| B::float_reshape(B::float_sum_dim(t, 0), [d].into());
        if let Some(node) = beta_parent {
            grads.register::<B>(node.id, column_sum(grad.clone()));
        }
        let (dx, shares) = B::shifted_norm_backward(x, gamma, grad, self.0);
        if let Some(node) = gamma_parent {
            grads.register::<B>(node.id, column_sum(shares));
        }
        if let Some(node) = x_parent {
            grads.register::<B>(node.id, dx);
        }
    }
}

impl<B: Backend + LayerNormKernels, C: CheckpointStrategy> LayerNormKernels for Autodiff<B, C> {
    fn shifted_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f32) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (gamma, gamma_node) = gamma.into_parts();
        let (beta, beta_node) = beta.into_parts();
        match LayerNormBackward(epsilon).prepare::<C>([x_node, gamma_node, beta_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::shifted_norm(x.clone(), gamma.clone(), beta, epsilon);
                prep.finish((x, gamma), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::shifted_norm(x, gamma, beta, epsilon)),
        }
    }

    fn shifted_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, shares) = B::shifted_norm_backward(Self::inner(x), Self::inner(gamma), Self::inner(grad), epsilon);
        (Self::from_inner(dx), Self::from_inner(shares))
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Device, Distribution};

    use super::*;

    /// The one-op norm (the kernels' arithmetic, on the host) gives burn's module's values and
    /// autodiff's gradients for the input, the scale and the shift.
    #[test]
    fn the_one_op_layer_norm_gives_burns_values_and_gradients() {
        let device = Device::flex().autodiff();
        let mut norm = LayerNormConfig::new(24).with_epsilon(1e-5).init(&device);
        let random = |shape: [usize; 1], mean: f64| Tensor::<1>::random(shape, Distribution::Normal(mean, 0.5), &device).require_grad();
        norm.gamma = norm.gamma.map(|_| random([24], 1.0));
        norm.beta = norm.beta.map(|b| b.map(|_| random([24], 0.0)));
        let x = Tensor::<2>::random([6, 24], Distribution::Normal(0.5, 2.0), &device).require_grad();
        let weights = Tensor::<2>::random([6, 24], Distribution::Normal(0.0, 1.0), &device);
        let beta = norm.beta.as_ref().unwrap().val();
        let ours = Tensor::<2>::from_dispatch(<Dispatch as LayerNormKernels>::shifted_norm(
            x.clone().into_dispatch(),
            norm.gamma.val().into_dispatch(),
            beta.clone().into_dispatch(),
            1e-5,
        ));
        let theirs = norm.forward(x.clone());
        let worst = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0f32, f32::max);
        let flat = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        assert!(worst(&flat(ours.clone()), &flat(theirs.clone())) < 1e-5);
        let gradients = |out: Tensor<2>| {
            let grads = (out * weights.clone()).sum().backward();
            let one = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap();
            [flat(x.grad(&grads).unwrap()), one(norm.gamma.val().grad(&grads).unwrap()), one(beta.grad(&grads).unwrap())]
        };
        for ((ours, theirs), name) in gradients(ours).into_iter().zip(gradients(theirs)).zip(["x", "gamma", "beta"]) {
            let gap = worst(&ours, &theirs);
            assert!(gap < 1e-5, "d {name}: {gap}");
        }
    }
}
