//! RMSNorm, and a residual sum with the RMSNorm of that sum, each one kernel on a GPU when nothing is
//! differentiated (sampling, scoring). burn's `RmsNorm` is six element-wise ops and a reduction, and
//! burn's fusion runs most of them alone between the products around them: a Llama layer's two norms
//! and its residual sums were about fifteen launches a decoded token. Training keeps burn's norm,
//! whose backward autodiff writes; the CPU keeps it too (its numbers are the project's reference).
//!
//! Both compute burn's formula, `x / sqrt(mean(x²) + eps) * (offset + gamma)` (`offset` 1 for Gemma's
//! norm, which scales by `1 + weight`), one row of the last dimension a workgroup on a GPU.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::RmsNorm;
use burn::tensor::{Tensor, TensorData};

use crate::decode_attention::fused_for;

/// `norm` on `x` `[.., d]`: one kernel on a GPU when nothing is differentiated, burn's module otherwise.
pub(crate) fn rms_norm<const D: usize>(norm: &RmsNorm, x: Tensor<D>) -> Tensor<D> {
    if !fused_for(&[x.device(), norm.gamma.val().device()]) {
        return norm.forward(x);
    }
    let shape = x.dims();
    let rows = x.rows();
    let out = <Dispatch as RmsNormKernels>::rms_norm(rows.into_dispatch(), norm.gamma.val().into_dispatch(), norm_settings(norm, 0.0));
    Tensor::<2>::from_dispatch(out).reshape(shape)
}

/// `(x + delta, norm(x + delta))` for `x`, `delta` `[.., d]`: one kernel on a GPU when nothing is
/// differentiated; burn's sum and module otherwise.
pub(crate) fn add_and_norm<const D: usize>(norm: &RmsNorm, x: Tensor<D>, delta: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
    if !fused_for(&[x.device(), delta.device(), norm.gamma.val().device()]) {
        let sum = x + delta;
        return (sum.clone(), norm.forward(sum));
    }
    let shape = x.dims();
    let (x, delta) = (x.rows(), delta.rows());
    let (sum, normed) = <Dispatch as RmsNormKernels>::added_rms_norm(
        x.into_dispatch(),
        delta.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm_settings(norm, 0.0),
    );
    (Tensor::<2>::from_dispatch(sum).reshape(shape), Tensor::<2>::from_dispatch(normed).reshape(shape))
}

fn norm_settings(norm: &RmsNorm, offset: f32) -> NormSettings {
    NormSettings { epsilon: norm.epsilon as f32, offset }
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

impl<B: Backend + RmsNormKernels, C: CheckpointStrategy> RmsNormKernels for Autodiff<B, C> {
    // Never reached with a tracked input (`fused_for`): the inner backend's forward.
    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, settings: NormSettings) -> FloatTensor<Self> {
        Self::from_inner(B::rms_norm(Self::inner(x), Self::inner(gamma), settings))
    }

    fn added_rms_norm(
        x: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        settings: NormSettings,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (sum, normed) = B::added_rms_norm(Self::inner(x), Self::inner(delta), Self::inner(gamma), settings);
        (Self::from_inner(sum), Self::from_inner(normed))
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
            norm_settings(&norm, 0.0),
        );
        let (sum, normed) = (Tensor::<2>::from_dispatch(sum).reshape([2, 3, 24]), Tensor::<2>::from_dispatch(normed).reshape([2, 3, 24]));
        let gap = |a: Tensor<3>, b: Tensor<3>| -> f32 { (a - b).abs().max().into_scalar() };
        assert!(gap(sum.clone(), x + delta) == 0.0);
        assert!(gap(normed, expected.clone()) < 1e-6);
        let alone = Tensor::<2>::from_dispatch(<Dispatch as RmsNormKernels>::rms_norm(
            rows(sum),
            norm.gamma.val().into_dispatch(),
            norm_settings(&norm, 0.0),
        ));
        assert!(gap(alone.reshape([2, 3, 24]), expected) < 1e-6);
    }
}
