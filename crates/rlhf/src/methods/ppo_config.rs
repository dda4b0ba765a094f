//! PPO's settings, in one place for every edge: the defaults that work on the shipped `tiny`
//! model, and the checks that refuse a meaningless run before anything is loaded.

use serde::{Deserialize, Serialize};

use crate::checkpoint::TrainError;
use crate::methods::ppo_math::KlEstimator;
use crate::step::settings::TrainSettings;

/// PPO settings. The defaults are the ones that work on the shipped `tiny` model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PpoConfig {
    /// Iterations planned; the learning rate decays linearly to 0 over them.
    pub iterations: usize,
    /// Rollouts per iteration.
    pub batch_size: usize,
    /// Answers sampled for each prompt of an iteration (the batch holds batch_size / K prompts).
    pub samples_per_prompt: usize,
    pub minibatch_size: usize,
    /// Passes over each rollout batch.
    pub ppo_epochs: usize,
    /// Sampling temperature for rollouts; log-probs are taken under logits / temperature too.
    pub temperature: f32,
    pub max_new_tokens: usize,
    /// beta, the KL coefficient (the starting value when adaptive).
    pub kl_coef: f64,
    pub kl_estimator: KlEstimator,
    /// Target KL per sequence for the adaptive controller; `None` keeps beta fixed.
    pub kl_target: Option<f64>,
    pub kl_horizon: f64,
    pub gamma: f64,
    pub lam: f64,
    pub cliprange: f64,
    pub cliprange_value: f64,
    pub vf_coef: f64,
    pub whiten_rewards: bool,
    /// Subtracted from the score of a response that never says EOS.
    pub missing_eos_penalty: f64,
    /// Weight of the pretraining/SFT language-model loss mixed into each update (PPO-ptx); 0 = off.
    pub ptx_coef: f64,
    /// A rollout whose mean KL to the reference (nats per sequence) exceeds this restores the last
    /// good policy.
    pub kl_limit: f64,
    /// The learning rate (decaying linearly to 0), clipping, seed, LoRA, and the activation budget
    /// (each minibatch goes through the policy and the value model in groups of answers within
    /// it, both models' activations counted: they run side by side).
    #[serde(flatten)]
    pub train: TrainSettings,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            iterations: 40,
            batch_size: 16,
            samples_per_prompt: 1,
            minibatch_size: 8,
            ppo_epochs: 4,
            temperature: 0.7,
            max_new_tokens: 48,
            kl_coef: 0.05,
            kl_estimator: KlEstimator::K1,
            kl_target: None,
            kl_horizon: 10_000.0,
            gamma: 1.0,
            lam: 0.95,
            cliprange: 0.2,
            cliprange_value: 0.2,
            vf_coef: 0.1,
            whiten_rewards: false,
            missing_eos_penalty: 1.0,
            ptx_coef: 0.0,
            kl_limit: 50.0,
            train: TrainSettings::with_lr(5e-5),
        }
    }
}

impl PpoConfig {
    /// Refuses settings that would make a run meaningless or its numbers NaN, naming the field;
    /// every edge (flags, the page's knobs) gets the same answer.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field: &str, value: f64, want: &str| Err(TrainError::Setting(format!("{field} = {value}: {want}")));
        self.train.validate()?;
        crate::memory::sizes::check_answers_per_prompt(self.samples_per_prompt, "samples_per_prompt")?;
        if let Some(target) = self.kl_target
            && !(target.is_finite() && target > 0.0)
        {
            // beta is scaled by KL / target: a target of 0 makes it infinite, then NaN.
            return bad("kl_target", target, "a target KL must be above 0 (leave it out for a fixed beta)");
        }
        if !(self.kl_coef.is_finite() && self.kl_coef >= 0.0) {
            return bad("kl_coef", self.kl_coef, "beta must be 0 or more");
        }
        for (field, value) in [("cliprange", self.cliprange), ("cliprange_value", self.cliprange_value)] {
            if !(value > 0.0 && value < 1.0) {
                return bad(field, value, "a clip range must be in (0, 1)");
            }
        }
        if !(self.kl_horizon.is_finite() && self.kl_horizon > 0.0) {
            return bad("kl_horizon", self.kl_horizon, "the horizon must be above 0");
        }
        if self.kl_limit.is_nan() || self.kl_limit <= 0.0 {
            return bad("kl_limit", self.kl_limit, "the divergence guard's limit must be above 0 (inf turns it off)");
        }
        if self.iterations == 0 {
            return Err(TrainError::Setting("iterations = 0: a run needs at least 1 iteration".into()));
        }
        Ok(())
    }
}
