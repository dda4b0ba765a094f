//! Gradient clipping by the global norm (all parameters as one vector), reporting that norm.
//! burn's own clipping works per parameter and does not say the norm, which training stats need.
//! A non-finite norm means the update must not happen: [`clip_global_norm`] says so.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

struct SquaredNorms<'a> {
    grads: &'a GradientsParams,
    parts: Vec<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorms<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.parts.push(g.square().sum());
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g * self.factor);
        }
    }
}

/// The global L2 norm of `module`'s gradients, as a one-element tensor still on the device.
pub fn global_norm<M: Module>(module: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    let mut visitor = SquaredNorms { grads, parts: vec![] };
    module.visit(&mut visitor);
    (!visitor.parts.is_empty()).then(|| Tensor::cat(visitor.parts, 0).sum().sqrt())
}

/// Scales every gradient of `module` by `factor`.
pub fn scale<M: Module>(module: &M, grads: &mut GradientsParams, factor: f64) {
    module.visit(&mut Scale { grads, factor });
}

/// The global norm of `grads` (0 when there are none), and the gradients scaled down to
/// `max_norm` when above it (`max_norm` 0: no clipping). `Err(reason)` when the norm is not finite:
/// the caller skips the update and keeps its last good weights.
pub async fn clip_global_norm<M: Module>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> Result<Result<f32, String>, crate::TrainError> {
    let norm = match global_norm(module, grads) {
        Some(norm) => crate::read::scalar(norm).await?,
        None => 0.0,
    };
    if !norm.is_finite() {
        return Ok(Err(format!("gradient norm is {norm}; the update was skipped and the last good weights kept")));
    }
    if max_norm > 0.0 && f64::from(norm) > max_norm {
        scale(module, grads, max_norm / f64::from(norm));
    }
    Ok(Ok(norm))
}

/// What [`guarded_step`] did: the update and the gradient norm before clipping, or why it was
/// skipped (the weights unchanged).
pub type Guarded = Result<f32, String>;

/// One optimizer step of `module` on `loss` (whose value, already read, is `loss_value`), with the
/// gradient clipped to `max_norm` — unless the loss or its gradient is not finite: then `module`
/// comes back untouched and the reason says so, and Adam's moments never see the bad numbers.
pub async fn guarded_step<M: Module>(
    module: M,
    optimizer: &mut ModuleOptimizer,
    lr: f64,
    loss: Tensor<1>,
    loss_value: f32,
    max_norm: f64,
) -> Result<(M, Guarded), crate::TrainError> {
    if !loss_value.is_finite() {
        return Ok((module, Err(format!("loss is {loss_value}; the update was skipped and the last good weights kept"))));
    }
    let mut grads = GradientsParams::from_grads(loss.backward(), &module);
    match clip_global_norm(&module, &mut grads, max_norm).await? {
        Ok(norm) => Ok((optimizer.step(lr, module, grads), Ok(norm))),
        Err(why) => Ok((module, Err(why))),
    }
}
