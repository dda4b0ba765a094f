//! AdamW in one pass over each weight: on the CPU backend here, on a GPU in one kernel a weight
//! (`adamw_gpu.rs`).
//!
//! burn's `AdamW` updates a weight in about fifteen element-wise ops (the two moments, their bias
//! corrections, the square root, the division, the decay), each a pass over the weight on one
//! thread with a fresh tensor: for a 135 M-parameter model a tenth of a training step on a 2-core
//! AMD EPYC (`perf`, docs/benchmarks.md). Here the same arithmetic in the same order runs once per
//! element, in place, split over rayon's threads: the same bits. The state is burn's
//! (`AdamWState`), so checkpoints written before read the same; on another backend burn's own step
//! runs. A saved state is read onto the CPU backend, whatever the run's device: burn
//! reads it onto its default device (WebGPU first in the wasm build, where the CPU fallback never
//! started it, so the load failed) and moves it to the weight's device at its first step anyway.
//! Saving reads it back the other way: burn serialises a state with synchronous reads, which a
//! browser's WebGPU cannot do, so a state on a GPU is first read to the CPU, asynchronously, by
//! [`read_moments_back`].

use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::optim::{
    AdamW as BurnAdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, GradientsParams, LearningRate, ModuleOptimizer, Optimizer,
    RecordState, StateSink, StateSource,
};
use burn::tensor::{DType, Device, FloatDType, Tensor};
use rayon::prelude::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use crate::log_softmax::{on_cpu_backend, owned};
use crate::own_kernels::has_own_kernels;
use crate::row_kernels::{BLOCK, simd};

/// AdamW's settings: burn's defaults (betas 0.9 and 0.999, epsilon 1e-5) and a weight decay.
#[derive(Clone, Debug)]
pub struct AdamWSettings {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
}

/// `optimizer`'s step of `module` at `lr`, in place. The module is moved out of its slot for the
/// step rather than cloned: a weight that no other model holds is then updated where it lies,
/// where a clone would make every weight shared and the step copy each one first (a whole model
/// each step: 538 MB for 135 M parameters, on one thread while the other core of a 2-core AMD EPYC
/// waited; docs/benchmarks.md).
/// The optimizer does not fail on a module it was made for; if it panicked, the process aborts
/// rather than leave the slot empty.
pub fn step_in_place<M: burn::module::Module>(optimizer: &mut ModuleOptimizer, lr: f64, module: &mut M, grads: GradientsParams) {
    step_in_place_scaled(optimizer, lr, module, grads, 1.0);
}

/// [`step_in_place`] on the gradients times `gradient_scale` (a clipping factor): the scale is
/// taken inside the step's one pass, where multiplying each gradient first cost a launch a weight
/// on a GPU (420 of a SmolLM2-shaped LoRA DPO step's). The same bits as scaling first.
pub fn step_in_place_scaled<M: burn::module::Module>(
    optimizer: &mut ModuleOptimizer,
    lr: f64,
    module: &mut M,
    grads: GradientsParams,
    gradient_scale: f32,
) {
    // burn's optimizer interface has no room for it: the step reads it on this thread, which is
    // the one `ModuleOptimizer::step` visits the weights on.
    let before = GRADIENT_SCALE.replace(gradient_scale);
    replace_with::replace_with_or_abort(module, |module| optimizer.step(lr, module, grads));
    GRADIENT_SCALE.set(before);
}

thread_local! {
    /// What the step in progress on this thread multiplies each gradient by.
    static GRADIENT_SCALE: std::cell::Cell<f32> = const { std::cell::Cell::new(1.0) };
}

impl AdamWSettings {
    pub fn with_weight_decay(weight_decay: f32) -> Self {
        Self { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-5, weight_decay }
    }

    /// The optimizer for a module.
    pub fn init(&self) -> ModuleOptimizer {
        let burn = AdamWConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(self.weight_decay)
            .build();
        ModuleOptimizer::from(AdamW { settings: self.clone(), burn })
    }
}

/// The optimizer: the fused step on the CPU backend, burn's elsewhere.
#[derive(Clone)]
struct AdamW {
    settings: AdamWSettings,
    burn: BurnAdamW,
}

/// burn's AdamW state, read back onto the CPU backend; off it, with a slot for its copy on the CPU.
#[derive(Clone)]
pub struct Moments<const D: usize> {
    state: AdamWState<D>,
    on_host: Option<Arc<HostCopy<D>>>,
}

impl<const D: usize> Moments<D> {
    /// `state` as a step left it: off the CPU backend it is registered for [`read_moments_back`].
    fn stepped(state: AdamWState<D>) -> Self {
        if on_cpu_backend(&state.momentum.moment_1.device()) {
            return Self { state, on_host: None };
        }
        let slot = Arc::new(HostCopy { on_device: state.clone(), read: Mutex::new(None) });
        let weak: Weak<dyn ReadBack> = Arc::downgrade(&slot) as Weak<dyn ReadBack>;
        let mut live = ON_DEVICE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if live.len() == live.capacity() {
            live.retain(|state| state.strong_count() > 0);
        }
        live.push(weak);
        Self { state, on_host: Some(slot) }
    }

    /// The state for the next step; the host copy's hold on the tensors is let go first, so a step
    /// that updates in place still can.
    fn into_state(self) -> AdamWState<D> {
        drop(self.on_host);
        self.state
    }
}

impl<const D: usize> RecordState for Moments<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        let read = self.on_host.as_ref().and_then(|slot| slot.read.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone());
        read.as_ref().unwrap_or(&self.state).state_flatten(prefix, out);
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, _device: &Device) -> Option<Self> {
        AdamWState::state_unflatten(prefix, src, &Device::flex()).map(|state| Self { state, on_host: None })
    }
}

/// A state on a GPU and, once read, its copy on the CPU backend.
struct HostCopy<const D: usize> {
    on_device: AdamWState<D>,
    read: Mutex<Option<AdamWState<D>>>,
}

/// A state that can be read back to the CPU.
trait ReadBack: Send + Sync {
    fn read_back(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + '_>>;
}

impl<const D: usize> ReadBack for HostCopy<D> {
    fn read_back(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + '_>> {
        Box::pin(async move {
            let m = &self.on_device.momentum;
            let cpu = Device::flex();
            let to_cpu = async |t: &Tensor<D>| -> Result<Tensor<D>, String> {
                Ok(Tensor::from_data(t.clone().into_data_async().await.map_err(|e| format!("{e:?}"))?, &cpu))
            };
            let max_moment_2 = match &m.max_moment_2 {
                Some(t) => Some(to_cpu(t).await?),
                None => None,
            };
            let momentum = AdaptiveMomentumState {
                time: m.time,
                moment_1: to_cpu(&m.moment_1).await?,
                moment_2: to_cpu(&m.moment_2).await?,
                max_moment_2,
            };
            *self.read.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(AdamWState { momentum });
            Ok(())
        })
    }
}

/// The states last stepped off the CPU backend (dropped ones are let go as the list grows).
static ON_DEVICE: Mutex<Vec<Weak<dyn ReadBack>>> = Mutex::new(Vec::new());

/// Reads every AdamW state now on a GPU back to the CPU, so that serialising an optimizer
/// (`ModuleOptimizer::into_bytes`, whose reads are synchronous) reads no GPU memory. Nothing to do
/// for a run on the CPU backend.
pub async fn read_moments_back() -> Result<(), String> {
    let live: Vec<Arc<dyn ReadBack>> = {
        let mut states = ON_DEVICE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        states.retain(|state| state.strong_count() > 0);
        states.iter().filter_map(Weak::upgrade).collect()
    };
    for state in live {
        state.read_back().await?;
    }
    Ok(())
}

impl Optimizer for AdamW {
    type State<const D: usize> = Moments<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        let grad_scale = GRADIENT_SCALE.get();
        let burns = |tensor, grad: Tensor<D>, state: Option<Moments<D>>| {
            let grad = if grad_scale == 1.0 { grad } else { grad.mul_scalar(grad_scale) };
            let (tensor, state) = self.burn.step(lr, tensor, grad, state.map(Moments::into_state));
            (tensor, state.map(Moments::stepped))
        };
        if !has_own_kernels(&device) || tensor.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return burns(tensor, grad, state);
        }
        // Gradients accumulated over micro-batches can come back tracked; the update never is.
        let (tensor, grad) = (tensor.inner(), grad.inner());
        let s = &self.settings;
        let (time, moments) = match state.map(Moments::into_state) {
            Some(AdamWState { momentum: m }) if m.max_moment_2.is_none() => (m.time + 1, Some((m.moment_1, m.moment_2))),
            Some(state) => return burns(tensor, grad, Some(Moments { state, on_host: None })),
            None => (1, None),
        };
        let step = AdamWStep {
            beta_1: s.beta_1,
            beta_2: s.beta_2,
            epsilon: s.epsilon,
            correction_1: 1.0 - s.beta_1.powi(time as i32),
            correction_2: 1.0 - s.beta_2.powi(time as i32),
            lr: lr as f32,
            decay: (1.0 - lr * f64::from(s.weight_decay)) as f32,
            grad_scale,
        };
        let (weight, moment_1, moment_2) = match moments {
            Some((moment_1, moment_2)) => <Dispatch as FusedAdamW>::adamw_step(
                tensor.into_dispatch(),
                grad.into_dispatch(),
                moment_1.inner().into_dispatch(),
                moment_2.inner().into_dispatch(),
                step,
            ),
            None => <Dispatch as FusedAdamW>::adamw_first_step(tensor.into_dispatch(), grad.into_dispatch(), step),
        };
        let momentum = AdaptiveMomentumState {
            time,
            moment_1: Tensor::from_dispatch(moment_1),
            moment_2: Tensor::from_dispatch(moment_2),
            max_moment_2: None,
        };
        (Tensor::from_dispatch(weight), Some(Moments::stepped(AdamWState { momentum })))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        Moments { state: <BurnAdamW as Optimizer>::to_device(state.into_state(), device), on_host: None }
    }
}

/// AdamW's constants for one step.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    pub(crate) beta_1: f32,
    pub(crate) beta_2: f32,
    pub(crate) epsilon: f32,
    /// `1 - beta_1^t` and `1 - beta_2^t`, the bias corrections.
    pub(crate) correction_1: f32,
    pub(crate) correction_2: f32,
    pub(crate) lr: f32,
    /// `1 - lr · weight_decay`.
    pub(crate) decay: f32,
    /// What each gradient is multiplied by first (a clipping factor; 1 for none).
    pub(crate) grad_scale: f32,
}

/// AdamW's step in one pass: on the CPU backend here, on cubecl's GPU runtimes in `adamw_gpu.rs`.
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Fusion: cfg(all(feature = "cube", feature = "fusion")))]
pub trait FusedAdamW: Backend {
    /// `(weight, moment_1, moment_2)` after one AdamW step.
    #[fusion(meta = |weight, _grad, moment_1, moment_2, _step| (weight.clone(), moment_1.clone(), moment_2.clone()))]
    fn adamw_step(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// [`FusedAdamW::adamw_step`] from zero moments (a weight's first step), which it never reads:
    /// no zeros to fill on a GPU.
    #[fusion(meta = |weight, _grad, _step| (weight.clone(), weight.clone(), weight.clone()))]
    fn adamw_first_step(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl FusedAdamW for Flex {
    fn adamw_first_step(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let zeros = || Self::float_zeros(weight.shape(), &weight.device(), FloatDType::F32);
        let (moment_1, moment_2) = (zeros(), zeros());
        Self::adamw_step(weight, grad, moment_1, moment_2, step)
    }

    fn adamw_step(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (mut weight, mut moment_1, mut moment_2) = (owned(weight), owned(moment_1), owned(moment_2));
        let grad = grad.to_contiguous();
        adamw(weight.storage_mut(), grad.as_slice::<f32>().unwrap_or_default(), moment_1.storage_mut(), moment_2.storage_mut(), step);
        (weight, moment_1, moment_2)
    }
}

/// One AdamW step in place over a weight, its gradient and its two moments, in burn's order of
/// operations (`burn_optim::AdamW`): the same bits as its fifteen passes.
fn adamw(weight: &mut [f32], grad: &[f32], moment_1: &mut [f32], moment_2: &mut [f32], step: AdamWStep) {
    weight
        .par_chunks_mut(BLOCK)
        .zip(moment_1.par_chunks_mut(BLOCK))
        .zip(moment_2.par_chunks_mut(BLOCK))
        .zip(grad.par_chunks(BLOCK))
        .for_each(|(((w, m), v), g)| {
            simd!((), |w: &'a mut [f32], m: &'a mut [f32], v: &'a mut [f32], g: &'a [f32], step: AdamWStep| {
                let (f1, f2) = (1.0 - step.beta_1, 1.0 - step.beta_2);
                for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                    let g = g * step.grad_scale;
                    *m = *m * step.beta_1 + g * f1;
                    *v = *v * step.beta_2 + g * g * f2;
                    let delta = (*m / step.correction_1) / ((*v / step.correction_2).sqrt() + step.epsilon);
                    *w = *w * step.decay - delta * step.lr;
                }
            })
        });
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::{Distribution, Tensor};

    use super::*;

    fn weights(linear: &Linear) -> Vec<f32> {
        let mut all = linear.weight.val().into_data().try_to_vec::<f32>().unwrap();
        all.extend(linear.bias.as_ref().unwrap().val().into_data().try_to_vec::<f32>().unwrap());
        all
    }

    /// Three steps of the fused AdamW and of burn's on the same layer and batches: the same bits.
    #[test]
    fn the_fused_step_gives_burns_adamw_bits_with_and_without_weight_decay() {
        let device = Device::flex().autodiff();
        for weight_decay in [0.0, 0.1] {
            let start = LinearConfig::new(70, 50).init(&device);
            let (mut ours, mut theirs) = (start.clone(), start);
            let settings = AdamWSettings::with_weight_decay(weight_decay);
            let (mut fused, mut burn) = (settings.init(), AdamWConfig::new().with_weight_decay(weight_decay).init());
            for _ in 0..3 {
                let x = Tensor::<2>::random([4, 70], Distribution::Normal(0.0, 1.0), &device);
                let grads = GradientsParams::from_grads(ours.forward(x.clone()).powf_scalar(2.0).sum().backward(), &ours);
                ours = fused.step(1e-2, ours, grads);
                let grads = GradientsParams::from_grads(theirs.forward(x).powf_scalar(2.0).sum().backward(), &theirs);
                theirs = burn.step(1e-2, theirs, grads);
            }
            assert_eq!(weights(&ours), weights(&theirs), "weight decay {weight_decay}");
        }
    }

    /// A clipping factor taken inside the step gives the bits of the gradients scaled first.
    #[test]
    fn a_scaled_step_equals_the_step_on_scaled_gradients() {
        let device = Device::flex().autodiff();
        let start = LinearConfig::new(30, 20).init(&device);
        let (mut inside, mut first) = (start.clone(), start);
        let settings = AdamWSettings::with_weight_decay(0.1);
        let (mut optim_inside, mut optim_first) = (settings.init(), settings.init());
        for factor in [0.37f32, 1.0, 0.05] {
            let x = Tensor::<2>::random([4, 30], Distribution::Normal(0.0, 1.0), &device);
            let grads = GradientsParams::from_grads(inside.forward(x.clone()).powf_scalar(2.0).sum().backward(), &inside);
            step_in_place_scaled(&mut optim_inside, 1e-2, &mut inside, grads, factor);
            let loss = first.forward(x).powf_scalar(2.0).sum();
            let mut grads = GradientsParams::from_grads(loss.backward(), &first);
            let (weight, bias) = (first.weight.id, first.bias.as_ref().unwrap().id);
            let scaled = grads.remove::<2>(weight).unwrap().mul_scalar(factor);
            grads.register(weight, scaled);
            let scaled = grads.remove::<1>(bias).unwrap().mul_scalar(factor);
            grads.register(bias, scaled);
            step_in_place(&mut optim_first, 1e-2, &mut first, grads);
            assert_eq!(weights(&inside), weights(&first), "factor {factor}");
        }
    }
}
