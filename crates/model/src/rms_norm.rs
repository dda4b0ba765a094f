//! RMSNorm, and a residual sum with the RMSNorm of that sum, each one kernel on a GPU. burn's
//! `RmsNorm` is six element-wise ops and a reduction, and burn's fusion runs most of them alone
//! between the products around them: a Llama layer's two norms and its residual sums were about
//! fifteen launches a decoded token, and autodiff's backward as many again in training. On a GPU
//! training takes the one-kernel norm too, with a backward of one kernel (the input's gradient
//! and each row's share of the weight's) and a column sum; the residual sum stays burn's there.
//! The CPU keeps burn's norm (its numbers are the project's reference).
//!
//! Both compute burn's formula, `x / sqrt(mean(x²) + eps) * (offset + gamma)` (`offset` 1 for Gemma's
//! norm, which scales by `1 + weight`), one row of the last dimension a workgroup on a GPU.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::RmsNorm;
use burn::tensor::{Tensor, TensorData};

use crate::own_kernels::on_gpu_kernels;

/// `norm` on `x` `[.., d]`: one kernel on a GPU (its backward one more and a column sum), burn's
/// module on the CPU.
pub(crate) fn rms_norm<const D: usize>(norm: &RmsNorm, x: Tensor<D>) -> Tensor<D> {
    let gamma = norm.gamma.val();
    if !(on_gpu_kernels(&x.device()) && on_gpu_kernels(&gamma.device())) {
        return norm.forward(x);
    }
    normed(gamma, norm_settings(norm.epsilon, 0.0), x)
}

/// `(x + delta, norm(x + delta))` for `x`, `delta` `[.., d]`: one kernel on a GPU (training too:
/// its backward is the sum's and the norm's); burn's sum and [`rms_norm`] on the CPU.
pub(crate) fn add_and_norm<const D: usize>(norm: &RmsNorm, x: Tensor<D>, delta: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
    let gamma = norm.gamma.val();
    if ![x.device(), delta.device(), gamma.device()].iter().all(on_gpu_kernels) {
        let sum = x + delta;
        return (sum.clone(), rms_norm(norm, sum));
    }
    added_normed(gamma, norm_settings(norm.epsilon, 0.0), x, delta)
}

/// Gemma's norm, `x / rms(x) * (1 + weight)`, as [`rms_norm`] on a GPU; `None` elsewhere (the
/// caller's own ops are the reference).
pub(crate) fn plus_one_rms_norm<const D: usize>(weight: Tensor<1>, epsilon: f64, x: Tensor<D>) -> Option<Tensor<D>> {
    (on_gpu_kernels(&x.device()) && on_gpu_kernels(&weight.device())).then(|| normed(weight, norm_settings(epsilon, 1.0), x))
}

/// Gemma's norm of a residual sum with the sum, as [`add_and_norm`] on a GPU; `None` elsewhere.
pub(crate) fn plus_one_add_and_norm<const D: usize>(
    weight: Tensor<1>,
    epsilon: f64,
    x: Tensor<D>,
    delta: Tensor<D>,
) -> Option<(Tensor<D>, Tensor<D>)> {
    [x.device(), delta.device(), weight.device()]
        .iter()
        .all(on_gpu_kernels)
        .then(|| added_normed(weight, norm_settings(epsilon, 1.0), x, delta))
}

fn normed<const D: usize>(gamma: Tensor<1>, settings: NormSettings, x: Tensor<D>) -> Tensor<D> {
    let shape = x.dims();
    let out = <Dispatch as RmsNormKernels>::rms_norm(x.rows().into_dispatch(), gamma.into_dispatch(), settings);
    Tensor::<2>::from_dispatch(out).reshape(shape)
}

fn added_normed<const D: usize>(gamma: Tensor<1>, settings: NormSettings, x: Tensor<D>, delta: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
    let shape = x.dims();
    let (sum, normed) = <Dispatch as RmsNormKernels>::added_rms_norm(
        x.rows().into_dispatch(),
        delta.rows().into_dispatch(),
        gamma.into_dispatch(),
        settings,
    );
    (Tensor::<2>::from_dispatch(sum).reshape(shape), Tensor::<2>::from_dispatch(normed).reshape(shape))
}

fn norm_settings(epsilon: f64, offset: f32) -> NormSettings {
    NormSettings { epsilon: epsilon as f32, offset }
}

trait Rows {
    /// `[.., d]` as `[rows, d]`.
    fn rows(self) -> Tensor<2>;
}

impl<const D: usize> Rows for Tensor<D> {
    fn rows(self) -> Tensor<2> {
        let shape = self.dims();
        let d = shape[D - 1];
        self.reshape([shape.iter().product::<usize>() / d.max(1), d])
    }
}

/// A norm's `epsilon`, and what its scale adds to its weight (0, or Gemma's 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormSettings {
    pub epsilon: f32,
    pub offset: f32,
}

/// The norms over rows `[n, d]` (see the module's formula).
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Fusion: cfg(all(feature = "cube", feature = "fusion")), Autodiff)]
pub trait RmsNormKernels: Backend {
    #[fusion(meta = |x, _gamma, _settings| x.clone())]
    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, settings: NormSettings) -> FloatTensor<Self>;

    /// `(x + delta, norm(x + delta))`.
    #[fusion(meta = |x, _delta, _gamma, _settings| (x.clone(), x.clone()))]
    fn added_rms_norm(
        x: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        settings: NormSettings,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The norm's backward from its output's gradient `grad` `[n, d]`: `(d x [n, d], each row's
    /// share of d gamma [n, d])`, the shares summed over rows by the caller.
    #[fusion(meta = |x, _gamma, _grad, _settings| (x.clone(), x.clone()))]
    fn rms_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        settings: NormSettings,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl RmsNormKernels for Flex {
    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, settings: NormSettings) -> FloatTensor<Self> {
        let (shape, device) = (x.shape(), x.device());
        let x: Vec<f32> = x.into_data().try_to_vec().expect("f32 values");
        let out = normed_rows(&x, &gamma.into_data().try_to_vec::<f32>().expect("f32 values"), settings);
        Self::float_from_data(TensorData::new(out, shape), &device)
    }

    fn added_rms_norm(
        x: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        settings: NormSettings,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (shape, device) = (x.shape(), x.device());
        let sum = Self::float_add(x, delta);
        let values: Vec<f32> = sum.clone().into_data().try_to_vec().expect("f32 values");
        let out = normed_rows(&values, &gamma.into_data().try_to_vec::<f32>().expect("f32 values"), settings);
        (sum, Self::float_from_data(TensorData::new(out, shape), &device))
    }

    fn rms_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        settings: NormSettings,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (shape, device) = (x.shape(), x.device());
        let values = |t: FloatTensor<Self>| -> Vec<f32> { t.into_data().try_to_vec().expect("f32 values") };
        let (x, gamma, grad) = (values(x), values(gamma), values(grad));
        let (mut dx, mut shares) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        let d = gamma.len().max(1);
        for (((x, dy), dx), share) in x.chunks(d).zip(grad.chunks(d)).zip(dx.chunks_mut(d)).zip(shares.chunks_mut(d)) {
            let rms = (x.iter().map(|v| v * v).sum::<f32>() / d as f32 + settings.epsilon).sqrt();
            // d x = (dy w - x · mean(dy w x) / rms²) / rms, w = offset + gamma.
            let mean = x.iter().zip(dy).zip(&gamma).map(|((x, dy), g)| dy * (settings.offset + g) * x).sum::<f32>() / d as f32;
            for i in 0..d {
                dx[i] = (dy[i] * (settings.offset + gamma[i]) - x[i] * mean / (rms * rms)) / rms;
                share[i] = dy[i] * x[i] / rms;
            }
        }
        let tensor = |v: Vec<f32>| Self::float_from_data(TensorData::new(v, shape.clone()), &device);
        (tensor(dx), tensor(shares))
    }
}

/// Every row of `x` (rows of `gamma.len()` values) normed: the module's formula on the host.
fn normed_rows(x: &[f32], gamma: &[f32], settings: NormSettings) -> Vec<f32> {
    x.chunks(gamma.len().max(1))
        .flat_map(|row| {
            let rms = (row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32 + settings.epsilon).sqrt();
            row.iter().zip(gamma).map(move |(v, g)| v / rms * (settings.offset + g))
        })
        .collect()
}

/// The norm's backward, from its input and weight (nothing of the forward is kept).
#[derive(Debug)]
struct RmsNormBackward(NormSettings);

impl<B: Backend + RmsNormKernels> Backward<B, 2> for RmsNormBackward {
    /// x `[n, d]` and gamma `[d]`.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, gamma) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let d = gamma.shape()[0];
        let (dx, shares) = B::rms_norm_backward(x, gamma, grad, self.0);
        let [x_parent, gamma_parent] = ops.parents;
        if let Some(node) = gamma_parent {
            grads.register::<B>(node.id, B::float_reshape(B::float_sum_dim(shares, 0), [d].into()));
        }
        if let Some(node) = x_parent {
            grads.register::<B>(node.id, dx);
        }
    }
}

/// `x + delta`'s backward: the gradient passes to both as it is.
#[derive(Debug)]
struct SumBackward;

impl<B: Backend> Backward<B, 2> for SumBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let [x_parent, delta_parent] = ops.parents;
        if let Some(node) = x_parent {
            grads.register::<B>(node.id, grad.clone());
        }
        if let Some(node) = delta_parent {
            grads.register::<B>(node.id, grad);
        }
    }
}

impl<B: Backend + RmsNormKernels, C: CheckpointStrategy> RmsNormKernels for Autodiff<B, C> {
    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, settings: NormSettings) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (gamma, gamma_node) = gamma.into_parts();
        match RmsNormBackward(settings).prepare::<C>([x_node, gamma_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::rms_norm(x.clone(), gamma.clone(), settings);
                prep.finish((x, gamma), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::rms_norm(x, gamma, settings)),
        }
    }

    /// Two nodes from one kernel: the sum (its gradient passed to both inputs) and the norm of it,
    /// each differentiated as if taken alone.
    fn added_rms_norm(
        x: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        settings: NormSettings,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (x, x_node) = x.into_parts();
        let (delta, delta_node) = delta.into_parts();
        let (gamma, gamma_node) = gamma.into_parts();
        let (sum, normed) = B::added_rms_norm(x, delta, gamma.clone(), settings);
        let sum = SumBackward.prepare::<C>([x_node, delta_node]).compute_bound().stateless(sum);
        let (sum_values, sum_node) = sum.clone().into_parts();
        let normed = match RmsNormBackward(settings).prepare::<C>([sum_node, gamma_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((sum_values, gamma), normed),
            OpsKind::UnTracked(prep) => prep.finish(normed),
        };
        (sum, normed)
    }

    fn rms_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        settings: NormSettings,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, shares) = B::rms_norm_backward(Self::inner(x), Self::inner(gamma), Self::inner(grad), settings);
        (Self::from_inner(dx), Self::from_inner(shares))
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::RmsNormConfig;
    use burn::tensor::{Device, Distribution};

    use super::*;

    /// The host's formula (what a GPU's kernel is checked against) gives burn's module's values.
    #[test]
    fn the_norms_formula_gives_burns_rms_norm() {
        let device = Device::flex();
        let norm = RmsNormConfig::new(24).with_epsilon(1e-6).init(&device);
        let norm = RmsNorm { gamma: norm.gamma.map(|g| Tensor::random([24], Distribution::Normal(1.0, 0.5), &g.device())), ..norm };
        let (x, delta) = (
            Tensor::<3>::random([2, 3, 24], Distribution::Normal(0.0, 2.0), &device),
            Tensor::<3>::random([2, 3, 24], Distribution::Normal(0.0, 1.0), &device),
        );
        let expected = norm.forward(x.clone() + delta.clone());
        let rows = |t: Tensor<3>| t.reshape([6, 24]).into_dispatch();
        let (sum, normed) = <Dispatch as RmsNormKernels>::added_rms_norm(
            rows(x.clone()),
            rows(delta.clone()),
            norm.gamma.val().into_dispatch(),
            norm_settings(norm.epsilon, 0.0),
        );
        let (sum, normed) = (Tensor::<2>::from_dispatch(sum).reshape([2, 3, 24]), Tensor::<2>::from_dispatch(normed).reshape([2, 3, 24]));
        let gap = |a: Tensor<3>, b: Tensor<3>| -> f32 { (a - b).abs().max().into_scalar() };
        assert!(gap(sum.clone(), x + delta) == 0.0);
        assert!(gap(normed, expected.clone()) < 1e-6);
        let alone = Tensor::<2>::from_dispatch(<Dispatch as RmsNormKernels>::rms_norm(
            rows(sum),
            norm.gamma.val().into_dispatch(),
            norm_settings(norm.epsilon, 0.0),
        ));
        assert!(gap(alone.reshape([2, 3, 24]), expected) < 1e-6);
    }

    /// The one-op norm's backward (the GPU kernel's arithmetic, on the host) gives autodiff's
    /// gradients of burn's module, for the input and the weight.
    #[test]
    fn the_norms_backward_gives_autodiffs_gradients_of_burns_rms_norm() {
        let device = Device::flex().autodiff();
        let norm = RmsNormConfig::new(24).with_epsilon(1e-6).init(&device);
        let norm =
            RmsNorm { gamma: norm.gamma.map(|g| Tensor::random([24], Distribution::Normal(1.0, 0.5), &g.device()).require_grad()), ..norm };
        let x = Tensor::<2>::random([6, 24], Distribution::Normal(0.0, 2.0), &device).require_grad();
        let weights = Tensor::<2>::random([6, 24], Distribution::Normal(0.0, 1.0), &device);
        let ours = Tensor::<2>::from_dispatch(<Dispatch as RmsNormKernels>::rms_norm(
            x.clone().into_dispatch(),
            norm.gamma.val().into_dispatch(),
            norm_settings(norm.epsilon, 0.0),
        ));
        let gradients = |out: Tensor<2>| {
            let grads = (out * weights.clone()).sum().backward();
            let values = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
            (values(x.grad(&grads).unwrap()), norm.gamma.val().grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap())
        };
        let ((ours_x, ours_gamma), (theirs_x, theirs_gamma)) = (gradients(ours), gradients(norm.forward(x.clone())));
        let worst = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0f32, f32::max);
        assert!(worst(&ours_x, &theirs_x) < 1e-5, "d x: {}", worst(&ours_x, &theirs_x));
        assert!(worst(&ours_gamma, &theirs_gamma) < 1e-5, "d gamma: {}", worst(&ours_gamma, &theirs_gamma));
    }

    /// The sum and its norm from one kernel, differentiated: both outputs used downstream (as a
    /// residual stream uses them) give autodiff's gradients of burn's sum and module.
    #[test]
    fn the_added_norms_two_outputs_give_autodiffs_gradients_of_the_sum_and_the_norm() {
        let device = Device::flex().autodiff();
        let norm = RmsNormConfig::new(24).with_epsilon(1e-6).init(&device);
        let norm =
            RmsNorm { gamma: norm.gamma.map(|g| Tensor::random([24], Distribution::Normal(1.0, 0.5), &g.device()).require_grad()), ..norm };
        let random = |std: f64| Tensor::<2>::random([6, 24], Distribution::Normal(0.0, std), &device);
        let (x, delta) = (random(2.0).require_grad(), random(1.0).require_grad());
        let (w_sum, w_normed) = (random(1.0), random(1.0));
        let gradients = |(sum, normed): (Tensor<2>, Tensor<2>)| {
            let grads = (sum * w_sum.clone() + normed * w_normed.clone()).sum().backward();
            let values = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
            [
                values(x.grad(&grads).unwrap()),
                values(delta.grad(&grads).unwrap()),
                norm.gamma.val().grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap(),
            ]
        };
        let (sum, normed) = <Dispatch as RmsNormKernels>::added_rms_norm(
            x.clone().into_dispatch(),
            delta.clone().into_dispatch(),
            norm.gamma.val().into_dispatch(),
            norm_settings(norm.epsilon, 0.0),
        );
        let ours = gradients((Tensor::from_dispatch(sum), Tensor::from_dispatch(normed)));
        let sum = x.clone() + delta.clone();
        let theirs = gradients((sum.clone(), norm.forward(sum)));
        let worst = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0f32, f32::max);
        for ((ours, theirs), name) in ours.iter().zip(&theirs).zip(["x", "delta", "gamma"]) {
            assert!(worst(ours, theirs) < 1e-5, "d {name}: {}", worst(ours, theirs));
        }
    }
}
