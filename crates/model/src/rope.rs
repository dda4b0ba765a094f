//! Rotary position embeddings as Hugging Face computes them, for every family that uses them: the
//! settings (`rope_parameters`, or the older `rope_theta` + `rope_scaling`), the inverse frequencies
//! of each rope type, and the rotation of queries and keys by each row's own position ids (so a
//! left-padded row computes exactly as the row alone).
//!
//! The rotation is burn's ops on the CPU (its numbers are the project's reference). On cubecl's GPU
//! runtimes it is one kernel, forward and backward (the backward is the rotation by the opposite
//! angles): as burn's ops it was two slices, a negation, a concatenation, two products and a sum,
//! and about as many again in autodiff's backward — a tenth of a LoRA step's launches, with the
//! queries and the keys of every layer rotated.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Rotary embedding settings as HF writes them (`rope_parameters`, or the older `rope_scaling`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RopeParameters {
    #[serde(default, alias = "type", skip_serializing_if = "Option::is_none")]
    pub rope_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_freq_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_freq_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<usize>,
}

/// How rotary frequencies are made, after validation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rope {
    Default { theta: f64 },
    Linear { theta: f64, factor: f64 },
    Llama3 { theta: f64, factor: f64, low: f64, high: f64, original: f64 },
}

impl RopeParameters {
    /// The validated settings; `theta` is the base to use when these settings name none.
    fn rope(&self, theta: f64) -> Result<Rope, ConfigError> {
        let bad = |field, problem: String| Err(ConfigError::Unsupported { field, problem });
        let theta = self.rope_theta.unwrap_or(theta);
        if !(theta.is_finite() && theta > 1.0) {
            return bad("rope_theta", format!("{theta} must be a number above 1"));
        }
        let factor = || match self.factor {
            Some(f) if f.is_finite() && f >= 1.0 => Ok(f),
            other => Err(ConfigError::Unsupported { field: "rope_parameters.factor", problem: format!("{other:?} must be a number >= 1") }),
        };
        match self.rope_type.as_deref().unwrap_or("default") {
            "default" => Ok(Rope::Default { theta }),
            "linear" => Ok(Rope::Linear { theta, factor: factor()? }),
            "llama3" => {
                let (low, high) = (self.low_freq_factor.unwrap_or(0.0), self.high_freq_factor.unwrap_or(0.0));
                let original = self.original_max_position_embeddings.unwrap_or(0) as f64;
                if !(low > 0.0 && high > low && high.is_finite() && original > 0.0) {
                    return bad(
                        "rope_parameters",
                        format!(
                            "llama3 scaling needs low_freq_factor < high_freq_factor and original_max_position_embeddings (got {low}, {high}, {original})"
                        ),
                    );
                }
                Ok(Rope::Llama3 { theta, factor: factor()?, low, high, original })
            }
            other => bad("rope_parameters.rope_type", format!("{other:?}; tinyrlhf computes \"default\", \"linear\" and \"llama3\"")),
        }
    }

    /// Refuses settings this crate does not compute, naming the field.
    pub(crate) fn validate(&self, theta: f64) -> Result<(), ConfigError> {
        self.rope(theta).map(|_| ())
    }

    /// The inverse frequencies of a `head_dim` rotation, `head_dim / 2` of them, as HF's rope
    /// initialisers compute them; `theta` as in [`Self::validate`], which settings must pass.
    pub(crate) fn inv_freq(&self, theta: f64, head_dim: usize) -> Vec<f32> {
        let base = |theta: f64| (0..head_dim / 2).map(move |i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64));
        let freqs: Vec<f64> = match self.rope(theta).unwrap_or(Rope::Default { theta: 10_000.0 }) {
            Rope::Default { theta } => base(theta).collect(),
            Rope::Linear { theta, factor } => base(theta).map(|f| f / factor).collect(),
            Rope::Llama3 { theta, factor, low, high, original } => {
                let (low_wavelen, high_wavelen) = (original / low, original / high);
                base(theta)
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (original / wavelen - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        freqs.into_iter().map(|f| f as f32).collect()
    }
}

/// The rotary inverse frequencies of one kind of layer: derived from the config, not learned, not
/// saved.
#[derive(Debug, Clone)]
pub struct Rotary {
    pub(crate) inv_freq: Vec<f32>,
}

impl Rotary {
    /// cos and sin of every row's angles, `[b, 1, t, head_dim]` each, shared by the layers of a kind.
    pub(crate) fn cos_sin(&self, position_ids: Tensor<2, Int>) -> (Tensor<4>, Tensor<4>) {
        let [b, t] = position_ids.dims();
        let half = self.inv_freq.len();
        let inv_freq = Tensor::<1>::from_data(TensorData::new(self.inv_freq.clone(), [half]), &position_ids.device());
        let freqs = position_ids.float().reshape([b, t, 1]) * inv_freq.reshape([1, 1, half]); // [b, t, hd / 2]
        let angles = Tensor::cat(vec![freqs.clone(), freqs], 2).reshape([b, 1, t, 2 * half]); // [b, 1, t, hd]
        (angles.clone().cos(), angles.sin())
    }
}

/// `x` `[b, heads, t, hd]` rotated by the angles whose cosines and sines are `cos`, `sin`
/// `[b, 1, t, hd]`: x cos + rotate_half(x) sin, with rotate_half(x) = (-x2, x1).
pub(crate) fn apply_rope(x: Tensor<4>, (cos, sin): &(Tensor<4>, Tensor<4>)) -> Tensor<4> {
    if crate::own_kernels::on_gpu_kernels(&x.device()) {
        let rotated =
            <Dispatch as RotationKernels>::rotate(x.into_dispatch(), cos.clone().into_dispatch(), sin.clone().into_dispatch(), false);
        // Laid out [b, t, heads, hd], as the projections lay them: swapped back, no copy.
        return Tensor::<4>::from_dispatch(rotated).swap_dims(1, 2);
    }
    let mut halves = x.clone().chunk(2, 3);
    let (x2, x1) = (halves.pop().unwrap(), halves.pop().unwrap());
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

/// The rotation as one op: `x` `[b, heads, t, hd]` (any strides), `cos`, `sin` `[b, 1, t, hd]`.
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Fusion: cfg(all(feature = "cube", feature = "fusion")), Autodiff)]
pub trait RotationKernels: Backend {
    /// `x cos + rotate_half(x) sin` as a contiguous `[b, t, heads, hd]` (the projections' layout,
    /// so the heads swap back and join without a copy); by the opposite angles (`- rotate_half(x)
    /// sin`) when `inverse`, which is the rotation's backward.
    #[fusion(meta = |x, _cos, _sin, _inverse| crate::train_attention::heads_swapped(x))]
    fn rotate(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, inverse: bool) -> FloatTensor<Self>;

    /// [`RotationKernels::rotate`] of the queries and the keys in one launch; not differentiated
    /// (the attention's op calls it forward and backward, `train_attention.rs`).
    #[fusion(meta = |q, k, _cos, _sin, _inverse| (crate::train_attention::heads_swapped(q), crate::train_attention::heads_swapped(k)))]
    fn rotate_pair(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        inverse: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl RotationKernels for Flex {
    fn rotate(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, inverse: bool) -> FloatTensor<Self> {
        let (shape, device) = (x.shape(), x.device());
        let [b, heads, t, hd] = [shape[0], shape[1], shape[2], shape[3]];
        let values = |t: FloatTensor<Self>| -> Vec<f32> { t.into_data().try_to_vec().expect("f32 values") };
        let (x, cos, sin) = (values(x), values(cos), values(sin));
        let sign = if inverse { -1.0 } else { 1.0 };
        let mut out = vec![0.0f32; x.len()];
        for (o, out) in out.iter_mut().enumerate() {
            // `o` runs over [b, t, heads, hd]; `i` is the same value in `x`'s [b, heads, t, hd].
            let (d, hi, ti, bi) = (o % hd, o / hd % heads, o / (hd * heads) % t, o / (hd * heads * t));
            let i = ((bi * heads + hi) * t + ti) * hd + d;
            let c = (bi * t + ti) * hd + d;
            let (partner, turn) = if d < hd / 2 { (i + hd / 2, -1.0) } else { (i - hd / 2, 1.0) };
            *out = x[i] * cos[c] + sign * turn * x[partner] * sin[c];
        }
        Self::float_from_data(TensorData::new(out, [b, t, heads, hd]), &device)
    }

    fn rotate_pair(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        inverse: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        (Self::rotate(q, cos.clone(), sin.clone(), inverse), Self::rotate(k, cos, sin, inverse))
    }
}

/// The rotation's backward: the gradient rotated by the opposite angles.
#[derive(Debug)]
struct RotationBackward {
    inverse: bool,
}

impl<B: Backend + RotationKernels> Backward<B, 1> for RotationBackward {
    /// cos and sin.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (cos, sin) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let [parent] = ops.parents;
        if let Some(node) = parent {
            // The gradient of the [b, t, heads, hd] output, read as [b, heads, t, hd]; the rotated
            // gradient swapped back to the input's shape.
            let rotated = B::rotate(B::float_swap_dims(grad, 1, 2), cos, sin, !self.inverse);
            grads.register::<B>(node.id, B::float_swap_dims(rotated, 1, 2));
        }
    }
}

impl<B: Backend + RotationKernels, C: CheckpointStrategy> RotationKernels for Autodiff<B, C> {
    fn rotate(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, inverse: bool) -> FloatTensor<Self> {
        let (x, node) = x.into_parts();
        // The angles come from position ids: they take no gradient.
        let (cos, sin) = (Self::inner(cos), Self::inner(sin));
        match (RotationBackward { inverse }).prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::rotate(x, cos.clone(), sin.clone(), inverse);
                prep.finish((cos, sin), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::rotate(x, cos, sin, inverse)),
        }
    }

    fn rotate_pair(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        inverse: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let i = Self::inner;
        let (q, k) = B::rotate_pair(i(q), i(k), i(cos), i(sin), inverse);
        (Self::from_inner(q), Self::from_inner(k))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;

    /// The one-op rotation (the GPU kernel's arithmetic, on the host) gives burn's ops' values and
    /// gradient, for queries laid out as the attention makes them (heads swapped in: not contiguous).
    #[test]
    fn the_one_op_rotation_gives_burns_rotation_and_its_gradient() {
        let device = Device::flex().autodiff();
        let rotary = Rotary { inv_freq: RopeParameters::default().inv_freq(10_000.0, 8) };
        let positions = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 0, 0, 1], [2, 3]), &device);
        let rope = rotary.cos_sin(positions);
        let start = Tensor::<4>::random([2, 3, 4, 8], Distribution::Normal(0.0, 1.0), &device).require_grad(); // [b, t, heads, hd]
        let weights = Tensor::<4>::random([2, 4, 3, 8], Distribution::Normal(0.0, 1.0), &device);
        let ours = Tensor::<4>::from_dispatch(<Dispatch as RotationKernels>::rotate(
            start.clone().swap_dims(1, 2).into_dispatch(),
            rope.0.clone().into_dispatch(),
            rope.1.clone().into_dispatch(),
            false,
        ))
        .swap_dims(1, 2);
        let theirs = apply_rope(start.clone().swap_dims(1, 2), &rope);
        let values = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
        let worst = |a: Vec<f32>, b: Vec<f32>| a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst(values(ours.clone()), values(theirs.clone())) < 1e-6);
        let gradient = |out: Tensor<4>| values(start.grad(&(out * weights.clone()).sum().backward()).unwrap());
        assert!(worst(gradient(ours.clone()), gradient(theirs)) < 1e-6);
        // The inverse rotation undoes it, in the projections' layout.
        let back = <Dispatch as RotationKernels>::rotate(ours.into_dispatch(), rope.0.into_dispatch(), rope.1.into_dispatch(), true);
        assert!(worst(values(Tensor::from_dispatch(back)), values(start)) < 1e-6);
    }
}
