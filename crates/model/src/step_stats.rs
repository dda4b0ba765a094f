//! The two numbers a guarded optimizer step reads before it updates: the sum of every squared
//! gradient (the global norm's square) and the largest magnitude among the trained weights, for a
//! module's weights taken one at a time.
//!
//! Taken as burn's ops they are a square, a sum, an absolute value and a maximum a weight, then a
//! concatenation of all of them (a slice assignment a weight) and the final sum and maximum: about
//! eight launches a weight on a GPU, where a LoRA step trains hundreds of small adapters (a
//! quarter of a LoRA DPO step's launches, docs/gpu.md). On cubecl's GPU runtimes the pair is
//! carried from weight to weight instead, one kernel for every two weights adding their squares
//! and magnitudes to the pair the last one wrote. The CPU keeps burn's ops (its numbers stay the
//! project's reference); so do tensors too large for one workgroup to sweep.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Device, Tensor, TensorData};

use crate::own_kernels::on_gpu_kernels;

/// The most values a kernel's one workgroup sweeps: larger weights (a full model's embedding, say)
/// take burn's reductions, which spread over the whole GPU.
const SWEPT_BY_ONE_WORKGROUP: usize = 1 << 20;

/// One weight's part of the pair: its gradient (`None`: it got none) and, if it is trained, its
/// values, each flattened to one dimension.
pub type StatsPart = (Option<Tensor<1>>, Option<Tensor<1>>);

/// `[sum of squared gradients, largest |trained weight|]` over `parts`, still on the device
/// (`None` when there are no parts). Either is NaN when a value it covers is NaN (burn's `max`
/// skips NaN on some backends; the kernel checks the bits, as WGSL may fold `x != x`).
pub fn step_stats(parts: Vec<StatsPart>, device: &Device) -> Option<Tensor<1>> {
    if parts.is_empty() {
        return None;
    }
    if !on_gpu_kernels(device) {
        return Some(separately(parts, device));
    }
    let device = device.clone().inner();
    let swept = |t: &Option<Tensor<1>>| t.as_ref().is_none_or(|t| t.dims()[0] <= SWEPT_BY_ONE_WORKGROUP);
    let (small, large): (Vec<StatsPart>, Vec<StatsPart>) = parts.into_iter().partition(|(g, w)| swept(g) && swept(w));
    let mut pair: Option<Tensor<1>> = None;
    // Two weights a kernel: seven tensors bound, WebGPU's default most.
    let mut small = small.into_iter();
    while let Some(first) = small.next() {
        let second = small.next().unwrap_or((None, None));
        // WebGPU binds no empty buffer: what is absent is one unread value.
        let absent = || Tensor::<1>::empty([1], &device);
        let has = PairInputs {
            pair: pair.is_some(),
            grads: [first.0.is_some(), second.0.is_some()],
            weights: [first.1.is_some(), second.1.is_some()],
        };
        let held = |t: Option<Tensor<1>>| t.map_or_else(absent, |t| t.inner()).into_dispatch();
        let out = <Dispatch as StepStatsKernels>::add_to_pair(
            pair.unwrap_or_else(absent).into_dispatch(),
            held(first.0),
            held(first.1),
            held(second.0),
            held(second.1),
            has,
        );
        pair = Some(Tensor::from_dispatch(out));
    }
    for part in large {
        let part = separately(vec![part], &device);
        pair = Some(match pair {
            None => part,
            Some(pair) => {
                let [(sum, max), (squares, largest)] = [pair, part].map(|t| (t.clone().narrow(0, 0, 1), t.narrow(0, 1, 1)));
                // A NaN passes through the additions where `max_pair` might drop it.
                let largest = max.clone().max_pair(largest.clone()) + (max + largest).mul_scalar(0.0);
                Tensor::cat(vec![sum + squares, largest], 0)
            }
        });
    }
    pair
}

/// Which of [`StepStatsKernels::add_to_pair`]'s inputs hold values (an absent one is a stand-in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairInputs {
    /// A pair from the weights before (else the pair starts at zero).
    pub pair: bool,
    pub grads: [bool; 2],
    pub weights: [bool; 2],
}

/// burn's ops: each weight's sum of squares and largest magnitude, concatenated, then summed and
/// maximised (a NaN weight turns the maximum NaN through the sum: `max` may skip it).
fn separately(parts: Vec<StatsPart>, device: &Device) -> Tensor<1> {
    let (mut squares, mut largest) = (vec![], vec![]);
    for (grad, weight) in parts {
        squares.extend(grad.map(|g| g.inner().square().sum()));
        largest.extend(weight.map(|w| w.inner().abs().max().reshape([1])));
    }
    let zero = || Tensor::<1>::zeros([1], &device.clone().inner());
    let squares = if squares.is_empty() { zero() } else { Tensor::cat(squares, 0).sum() };
    let largest = if largest.is_empty() {
        zero()
    } else {
        let all = Tensor::cat(largest, 0);
        all.clone().max() + all.sum().mul_scalar(0.0)
    };
    Tensor::cat(vec![squares, largest], 0)
}

/// The pair `[squares, largest]` carried from weight to weight.
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Fusion: cfg(all(feature = "cube", feature = "fusion")), Autodiff)]
pub trait StepStatsKernels: Backend {
    /// `pair` (`[2]`) with two weights' gradients' squares added to the first and their values'
    /// magnitudes taken into the second; `has` says which inputs hold values.
    #[fusion(dtype = grad_a, shape = [2].into())]
    fn add_to_pair(
        pair: FloatTensor<Self>,
        grad_a: FloatTensor<Self>,
        weight_a: FloatTensor<Self>,
        grad_b: FloatTensor<Self>,
        weight_b: FloatTensor<Self>,
        has: PairInputs,
    ) -> FloatTensor<Self>;
}

impl StepStatsKernels for Flex {
    fn add_to_pair(
        pair: FloatTensor<Self>,
        grad_a: FloatTensor<Self>,
        weight_a: FloatTensor<Self>,
        grad_b: FloatTensor<Self>,
        weight_b: FloatTensor<Self>,
        has: PairInputs,
    ) -> FloatTensor<Self> {
        let device = pair.device();
        let values =
            |t: FloatTensor<Self>, held: bool| -> Vec<f32> { if held { t.into_data().try_to_vec().expect("f32 values") } else { vec![] } };
        let pair = if has.pair { values(pair, true) } else { vec![0.0, 0.0] };
        let pair = added_to_pair([pair[0], pair[1]], &values(grad_a, has.grads[0]), &values(weight_a, has.weights[0]));
        let out = added_to_pair(pair, &values(grad_b, has.grads[1]), &values(weight_b, has.weights[1]));
        Self::float_from_data(TensorData::new(out.to_vec(), [2]), &device)
    }
}

/// The kernel's arithmetic on the host: a non-finite value (or pair) makes its half NaN.
fn added_to_pair(pair: [f32; 2], grad: &[f32], weight: &[f32]) -> [f32; 2] {
    let squares = pair[0] + grad.iter().map(|g| g * g).sum::<f32>();
    let largest = weight.iter().fold(pair[1], |m, w| m.max(w.abs()));
    let finite = |before: f32, values: &[f32]| before.is_finite() && values.iter().all(|v| v.is_finite());
    [
        if finite(pair[0], grad) { squares } else { f32::NAN },
        if pair[1].is_nan() || weight.iter().any(|w| w.is_nan()) { f32::NAN } else { largest },
    ]
}

impl<B: Backend + StepStatsKernels, C: CheckpointStrategy> StepStatsKernels for Autodiff<B, C> {
    // Gradients and weights are read, never differentiated.
    fn add_to_pair(
        pair: FloatTensor<Self>,
        grad_a: FloatTensor<Self>,
        weight_a: FloatTensor<Self>,
        grad_b: FloatTensor<Self>,
        weight_b: FloatTensor<Self>,
        has: PairInputs,
    ) -> FloatTensor<Self> {
        let i = Self::inner;
        Self::from_inner(B::add_to_pair(i(pair), i(grad_a), i(weight_a), i(grad_b), i(weight_b), has))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pair carried weight by weight is what burn's ops give all at once, and a NaN anywhere
    /// makes its half NaN (an infinite gradient too: the norm must not be trusted).
    #[test]
    fn the_carried_pair_gives_the_squared_norm_and_the_largest_weight_and_keeps_a_nan() {
        let device = Device::flex();
        let tensor = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), &device);
        let parts = || {
            vec![
                (Some(tensor(vec![3.0, -4.0])), Some(tensor(vec![0.5, -7.0]))),
                (Some(tensor(vec![12.0])), None),
                (None, Some(tensor(vec![2.0]))),
            ]
        };
        let expected: Vec<f32> = separately(parts(), &device).into_data().try_to_vec().unwrap();
        assert_eq!(expected, [169.0, 7.0]);
        let mut pair = [0.0, 0.0];
        for (grad, weight) in parts() {
            let values = |t: Option<Tensor<1>>| t.map(|t| t.into_data().try_to_vec::<f32>().unwrap()).unwrap_or_default();
            pair = added_to_pair(pair, &values(grad), &values(weight));
        }
        assert_eq!(pair, [169.0, 7.0]);
        assert!(added_to_pair(pair, &[f32::INFINITY], &[])[0].is_nan());
        assert!(added_to_pair(pair, &[], &[f32::NAN])[1].is_nan());
        let nan_before = added_to_pair([f32::NAN, f32::NAN], &[1.0], &[1.0]);
        assert!(nan_before[0].is_nan() && nan_before[1].is_nan());
        let through_the_op = <Dispatch as StepStatsKernels>::add_to_pair(
            tensor(vec![1.0, 2.0]).into_dispatch(),
            tensor(vec![2.0]).into_dispatch(),
            tensor(vec![-5.0]).into_dispatch(),
            tensor(vec![9.0]).into_dispatch(),
            tensor(vec![9.0]).into_dispatch(),
            PairInputs { pair: true, grads: [true, false], weights: [true, false] },
        );
        assert_eq!(Tensor::<1>::from_dispatch(through_the_op).into_data().try_to_vec::<f32>().unwrap(), [5.0, 5.0]);
    }
}
