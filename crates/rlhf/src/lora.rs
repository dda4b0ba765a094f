//! What a trainer trains: every weight of its model, or LoRA adapters on it (burn's `apply_lora`,
//! see `tinyrlhf_model::with_lora`) with the base frozen. A frozen base is never written, so the
//! policy and its reference (the SFT model) share one copy of it.
//!
//! Saved weights are merged (base + adapter, a plain model folder); a LoRA run resumed from them
//! puts fresh adapters on the merged weights and starts its optimizer afresh, since Adam's moments
//! belong to the adapters that were merged.

use burn::module::Module;
use tinyrlhf_model::{CausalLm, LoraConfig, ScalarModel, scalar_with_lora, with_lora, with_stable_param_ids};

use crate::checkpoint::TrainError;

/// Refuses a LoRA setting that cannot train (rank 0, a non-positive alpha).
pub(crate) fn check(lora: Option<&LoraConfig>) -> Result<(), TrainError> {
    lora.map_or(Ok(()), |l| l.validate().map_err(TrainError::Setting))
}

/// A language model ready to train: with adapters when `lora` is set, on autodiff, with parameter
/// ids from its names (so optimizer state reloads onto the same model).
pub(crate) fn trainable_lm(model: CausalLm, lora: Option<&LoraConfig>) -> CausalLm {
    let model = match lora {
        Some(config) => with_lora(model, config),
        None => model,
    };
    with_stable_param_ids(model.train(), "")
}

/// A reward or value model ready to train (its score head always trains in full).
pub(crate) fn trainable_scalar(model: ScalarModel, lora: Option<&LoraConfig>, prefix: &str) -> ScalarModel {
    let model = match lora {
        Some(config) => scalar_with_lora(model, config),
        None => model,
    };
    with_stable_param_ids(model.train(), prefix)
}
