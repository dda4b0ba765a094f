//! Rotary position embeddings as Hugging Face computes them, for every family that uses them: the
//! settings (`rope_parameters`, or the older `rope_theta` + `rope_scaling`), the inverse frequencies
//! of each rope type, and the rotation of queries and keys by each row's own position ids (so a
//! left-padded row computes exactly as the row alone).

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
    let mut halves = x.clone().chunk(2, 3);
    let (x2, x1) = (halves.pop().unwrap(), halves.pop().unwrap());
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}
