//! What every trainer is set the same way: its optimiser, its seed, LoRA and the memory one
//! backward pass may hold. Flattened into each trainer's settings (the reward model's, DPO's,
//! PPO's, GRPO's and RLOO's), as TRL's trainers share one base config, so a setting, its default
//! and its check are written once and read the same at every edge (a flag, the page's knob).

use serde::{Deserialize, Serialize};
use tinyrlhf_model::LoraConfig;

use crate::checkpoint::TrainError;
use crate::memory::sizes::DEFAULT_ACTIVATION_BUDGET_MIB;

/// The settings every trainer shares. Each trainer's own defaults pick its learning rate
/// ([`TrainSettings::with_lr`]); the schedule it decays by is the trainer's
/// ([`crate::step::schedule::LrSchedule`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// The peak learning rate.
    pub lr: f64,
    /// Gradients with a larger global norm are scaled down to it; 0 turns clipping off.
    pub max_grad_norm: f64,
    /// AdamW's decoupled weight decay (TRL's `weight_decay`); 0 turns it off.
    #[serde(default)]
    pub weight_decay: f32,
    /// Fixes the batch order and the sampling.
    pub seed: u64,
    /// LoRA adapters (rank, alpha) on the base model's projections instead of training every
    /// weight; `None`: full training.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    /// Activations one backward pass may hold, in MiB: a step's rows go through the model in groups
    /// this size, their gradients summed, so a large model's step holds one group's activations
    /// rather than the whole batch's (Qwen2.5-0.5B keeps about 1.9 MB a token). More buys fewer
    /// passes.
    #[serde(default = "default_activation_budget_mib")]
    pub activation_budget_mib: u64,
}

fn default_activation_budget_mib() -> u64 {
    DEFAULT_ACTIVATION_BUDGET_MIB
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self { lr: 1e-4, max_grad_norm: 1.0, weight_decay: 0.0, seed: 0, lora: None, activation_budget_mib: DEFAULT_ACTIVATION_BUDGET_MIB }
    }
}

impl TrainSettings {
    /// The shared defaults at learning rate `lr`.
    pub fn with_lr(lr: f64) -> Self {
        Self { lr, ..Self::default() }
    }

    /// Refuses a setting that makes a run meaningless or its numbers NaN, naming the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |what: String| Err(TrainError::Setting(what));
        crate::models::lora::check(self.lora.as_ref())?;
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr = {}: the learning rate must be above 0", self.lr));
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm < 0.0 {
            return bad(format!("max_grad_norm = {}: it must be 0 (no clipping) or more", self.max_grad_norm));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("weight_decay = {}: it must be 0 (off) or more", self.weight_decay));
        }
        if self.activation_budget_mib == 0 {
            return bad("activation_budget_mib = 0: a backward pass needs at least 1 MiB".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shared_setting_out_of_range_is_refused_naming_its_field() {
        assert!(TrainSettings::default().validate().is_ok());
        assert!(TrainSettings { max_grad_norm: 0.0, ..TrainSettings::default() }.validate().is_ok(), "0: no clipping");
        let cases = [
            (TrainSettings { lr: 0.0, ..TrainSettings::default() }, "lr = 0"),
            (TrainSettings { lr: f64::NAN, ..TrainSettings::default() }, "lr = NaN"),
            (TrainSettings { max_grad_norm: f64::NAN, ..TrainSettings::default() }, "max_grad_norm"),
            (TrainSettings { max_grad_norm: -1.0, ..TrainSettings::default() }, "max_grad_norm"),
            (TrainSettings { weight_decay: -0.1, ..TrainSettings::default() }, "weight_decay"),
            (TrainSettings { activation_budget_mib: 0, ..TrainSettings::default() }, "activation_budget_mib = 0"),
            (TrainSettings { lora: Some(LoraConfig { rank: 0, alpha: 1.0 }), ..TrainSettings::default() }, "rank"),
        ];
        for (settings, field) in cases {
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains(field), "{field}: {error}");
        }
    }

    #[test]
    fn flattened_settings_read_as_the_flat_json_older_runs_wrote() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Trainer {
            epochs: usize,
            #[serde(flatten)]
            train: TrainSettings,
        }
        let older = serde_json::json!({"epochs": 2, "lr": 0.001, "max_grad_norm": 1.0, "seed": 3});
        let read: Trainer = serde_json::from_value(older).unwrap();
        assert_eq!(read, Trainer { epochs: 2, train: TrainSettings { lr: 0.001, seed: 3, ..TrainSettings::default() } });
        let written = serde_json::to_value(&read).unwrap();
        assert_eq!(written["lr"], 0.001, "flat, as the page's knobs and the run records name them: {written}");
    }
}
