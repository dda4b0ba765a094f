//! Gradient clipping by the global norm (all parameters as one vector), reporting that norm.
//! burn's own clipping works per parameter and does not say the norm, which training stats need.
//! A non-finite norm means the update must not happen. On a GPU every read back is a round trip,
//! so a step reads its numbers once: [`guarded_step`] reads the norm together with whatever the
//! trainer wants to show, and [`clip_on_device`] clips without reading at all (PPO reads its
//! minibatches' numbers once per iteration and undoes the iteration when one was not finite).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use tinyrlhf_model::{StatsPart, step_in_place_scaled, step_stats};

use crate::parallel::peers::{GradientExchange, Peers};

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

/// The largest magnitude a trained weight may reach. Real models' weights lie within about ±100;
/// one past this came from an update that blew up (a learning rate far too large, say), whose
/// weights are finite but make the next forward overflow.
pub const WEIGHT_LIMIT: f32 = 1e4;

struct LargestWeights(Vec<Tensor<1>>);

impl ModuleVisitor for LargestWeights {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if value.is_require_grad() {
            self.0.push(value.detach().abs().max().reshape([1]));
        }
    }
}

/// The largest magnitude among `module`'s trained (not frozen) weights, as a one-element tensor
/// still on the device; `None` when nothing trains. NaN if a weight is NaN.
pub fn largest_trained_weight<M: Module>(module: &M) -> Option<Tensor<1>> {
    let mut visitor = LargestWeights(vec![]);
    module.visit(&mut visitor);
    // `max` skips NaN on some backends: a NaN weight turns the sum NaN instead.
    (!visitor.0.is_empty()).then(|| {
        let parts = Tensor::cat(visitor.0, 0);
        parts.clone().max() + parts.sum().mul_scalar(0.0)
    })
}

/// Why the weights a step produced cannot be kept, if they cannot: `largest` (from
/// [`largest_trained_weight`]) is not finite or past [`WEIGHT_LIMIT`].
pub fn blown_up(largest: f32) -> Option<String> {
    (!(largest.is_finite() && largest <= WEIGHT_LIMIT))
        .then(|| format!("the update made a weight {largest:e}, past ±{WEIGHT_LIMIT:e} (is the learning rate too large?)"))
}

/// The most one AdamW step can move a weight, in learning rates: |m̂/√v̂| stays below
/// (1-β1)/√(1-β2) / √(1-β1²/β2) ≈ 7.3 for burn's default betas (0.9, 0.999); 10 leaves a margin.
const ADAM_STEP_IN_LRS: f64 = 10.0;

/// Why a step of learning rate `lr` must not be taken on weights whose largest is `largest`, if
/// it must not: they are not finite, or the step could carry one past [`WEIGHT_LIMIT`]. Checked
/// before the step, from the same read as the gradient norm, so it costs no round trip.
fn would_blow_up(largest: f32, lr: f64) -> Option<String> {
    let reach = f64::from(largest) + ADAM_STEP_IN_LRS * lr;
    (!(largest.is_finite() && reach <= f64::from(WEIGHT_LIMIT))).then(|| {
        format!(
            "a step of learning rate {lr:e} could move a weight from {largest:e} past ±{WEIGHT_LIMIT:e}; the update was skipped and the weights kept (is the learning rate too large?)"
        )
    })
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: Tensor<1>,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g * self.factor.clone().unsqueeze::<D>());
        }
    }
}

struct StepParts<'a> {
    grads: &'a GradientsParams,
    parts: Vec<StatsPart>,
}

impl ModuleVisitor for StepParts<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let flat = |t: Tensor<D>| {
            let n = t.shape().num_elements();
            t.reshape([n])
        };
        let value = param.val();
        let trained = value.is_require_grad().then(|| flat(value.detach()));
        let grad = self.grads.get::<D>(param.id).map(flat);
        if grad.is_some() || trained.is_some() {
            self.parts.push((grad, trained));
        }
    }
}

/// `[squared global norm of the gradients, largest trained weight]` of `module`, on the device.
fn squared_norm_and_largest<M: Module>(module: &M, grads: &GradientsParams, device: &Device) -> Tensor<1> {
    let mut visitor = StepParts { grads, parts: vec![] };
    module.visit(&mut visitor);
    step_stats(visitor.parts, device).unwrap_or_else(|| Tensor::zeros([2], device))
}

/// The global L2 norm of `module`'s gradients, as a one-element tensor still on the device.
pub fn global_norm<M: Module>(module: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    let mut visitor = SquaredNorms { grads, parts: vec![] };
    module.visit(&mut visitor);
    (!visitor.parts.is_empty()).then(|| Tensor::cat(visitor.parts, 0).sum().sqrt())
}

/// Scales every gradient of `module` by the one-element `factor`, on the device.
fn scale<M: Module>(module: &M, grads: &mut GradientsParams, factor: Tensor<1>) {
    module.visit(&mut Scale { grads, factor });
}

/// Clips `grads` to the global norm `max_norm` (0: no clipping) without reading anything back, and
/// returns the norm before clipping (`None` when there are no gradients). A non-finite norm makes
/// the gradients non-finite too: the caller must check the norm before trusting the update.
pub fn clip_on_device<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> Option<Tensor<1>> {
    let norm = global_norm(module, grads)?;
    if max_norm > 0.0 {
        // max_norm / norm above 1 means no clipping; a zero norm gives +inf, clamped to 1 too.
        scale(module, grads, norm.clone().recip().mul_scalar(max_norm).clamp_max(1.0));
    }
    Some(norm)
}

/// What [`guarded_step`] did: the update and the gradient norm before clipping, or why it was
/// skipped (the weights unchanged).
pub type Guarded = Result<f32, String>;

/// One optimizer step of `module` on `objective`, with the gradient clipped to `max_norm` — unless
/// something is not finite: `host_loss` (a loss the trainer computed on the host, checked before
/// any backward pass), the gradient norm, or one of the numbers in `read_along`; or the step could
/// blow a weight up (`would_blow_up`). Then `module` is left untouched, the reason says so,
/// and Adam's moments never see the bad numbers. The step updates `module` in place
/// ([`step_in_place`]); an error (a peer gone, a device lost) leaves it as it was.
/// `read_along` (the loss and whatever the trainer reports) is read in the same read as the norm
/// and returned, in order, one list per peer.
///
/// With several [`Peers`], `objective` is this peer's shard of the step's loss (`None` when its
/// shard is empty), the gradients are summed over the peers, and every peer takes the same step.
#[allow(clippy::too_many_arguments)]
pub async fn guarded_step<M: Module>(
    module: &mut M,
    optimizer: &mut ModuleOptimizer,
    lr: f64,
    objective: Option<Tensor<1>>,
    host_loss: Option<f32>,
    read_along: Vec<Tensor<1>>,
    max_norm: f64,
    peers: &dyn Peers,
) -> Result<(Vec<Vec<f32>>, Guarded), crate::TrainError> {
    if let Some(loss) = host_loss.filter(|l| !l.is_finite()) {
        return Ok((vec![], Err(format!("loss is {loss}; the update was skipped and the last good weights kept"))));
    }
    let grads = objective.map_or_else(GradientsParams::new, |o| GradientsParams::from_grads(o.backward(), &*module));
    guarded_update(module, optimizer, lr, grads, read_along, max_norm, peers).await
}

/// [`guarded_step`] with the gradients already computed (summed over several backward passes, say);
/// the loss the trainer computed on the host is checked by the caller.
pub async fn guarded_update<M: Module>(
    module: &mut M,
    optimizer: &mut ModuleOptimizer,
    lr: f64,
    grads: GradientsParams,
    read_along: Vec<Tensor<1>>,
    max_norm: f64,
    peers: &dyn Peers,
) -> Result<(Vec<Vec<f32>>, Guarded), crate::TrainError> {
    let Some(device) = module.devices().into_iter().next() else {
        return Err(crate::TrainError::Setting("the model has no parameters".into()));
    };
    // The norm and the largest weight in one pair, read with the trainer's numbers in one read.
    let (grads, squares, largest, numbers) = if peers.count() > 1 {
        let mut exchange = GradientExchange::default();
        exchange.add(&*module, &grads);
        let mut summed = exchange.run(peers, read_along).await?;
        let grads = summed.next(&*module, &device);
        let read = crate::step::read::values(squared_norm_and_largest(&*module, &grads, &device)).await?;
        (grads, read[0], read[1], summed.numbers)
    } else {
        let pair = squared_norm_and_largest(&*module, &grads, &device);
        let mut numbers = crate::step::read::values(Tensor::cat([vec![pair], read_along].concat(), 0)).await?;
        let (squares, largest) = (numbers.remove(0), numbers.remove(0));
        (grads, squares, largest, vec![numbers])
    };
    let norm = squares.sqrt();
    if let Some(bad) = numbers.iter().flatten().find(|x| !x.is_finite()) {
        return Ok((numbers.clone(), Err(format!("loss is {bad}; the update was skipped and the last good weights kept"))));
    }
    if !norm.is_finite() {
        return Ok((numbers, Err(format!("gradient norm is {norm}; the update was skipped and the last good weights kept"))));
    }
    if let Some(why) = would_blow_up(largest, lr) {
        return Ok((numbers, Err(why)));
    }
    // Clipped inside the optimizer's pass: a scaled copy of each gradient first was a launch a weight.
    let clip = if max_norm > 0.0 && f64::from(norm) > max_norm { (max_norm / f64::from(norm)) as f32 } else { 1.0 };
    step_in_place_scaled(optimizer, lr, module, grads, clip);
    dispatch(&device)?;
    Ok((numbers, Ok(norm)))
}

/// Hands the operations queued so far (an optimizer's update, say) to the device without waiting
/// for them. burn's fusion queues them lazily: left there, an update mixes with whatever comes next
/// (a new trainer, a model dropped), and on wgpu such a mixed queue dispatches many times slower
/// than the update alone (docs/gpu.md).
pub(crate) fn dispatch(device: &Device) -> Result<(), crate::TrainError> {
    device.flush().map_err(|e| crate::TrainError::Device(format!("the device could not take the update: {e}")))
}
