//! What a trainer trains: every weight of its model, or LoRA adapters on it (burn's `apply_lora`,
//! see `tinyrlhf_model::with_lora`) with the base frozen. A frozen base is never written, so the
//! policy and its reference (the SFT model) share one copy of it.
//!
//! Saved weights are merged (base + adapter, a plain model folder). A checkpoint also keeps the
//! policy's adapters apart (PEFT's tensors), so a resumed run puts *those* adapters back on the
//! base it started from and continues with their optimizer state: after any kill and resume the
//! exported adapter on the base is the merged model.

use burn::module::Module;
use tinyrlhf_model::{
    CausalLm, LoraConfig, ModelConfig, ScalarModel, has_adapters, load_peft_adapter, save_peft_adapter, scalar_with_lora, with_lora,
    with_stable_param_ids,
};

use crate::checkpoint::{TrainCheckpoint, TrainError};

/// Refuses a LoRA setting that cannot train (rank 0, a non-positive alpha).
pub(crate) fn check(lora: Option<&LoraConfig>) -> Result<(), TrainError> {
    lora.map_or(Ok(()), |l| l.validate().map_err(TrainError::Setting))
}

/// A language model ready to train: with adapters when `lora` is set, on autodiff, with parameter
/// ids from its names (so optimizer state reloads onto the same model).
pub(crate) fn trainable_lm(model: CausalLm, lora: Option<&LoraConfig>) -> CausalLm {
    let model = match lora {
        // A resumed policy already carries its adapters.
        Some(config) if !has_adapters(&model) => with_lora(model, config),
        _ => model,
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

/// The adapters of `policy` for a checkpoint (PEFT's `adapter_model.safetensors`); none for a run
/// that trains every weight.
pub(crate) async fn adapter_bytes(policy: &CausalLm, lora: Option<&LoraConfig>) -> Result<Option<Vec<u8>>, TrainError> {
    match lora {
        Some(config) => Ok(Some(save_peft_adapter(policy, config).await?.1)),
        None => Ok(None),
    }
}

/// The policy a run resumed from `checkpoint` continues with, and whether its optimizer state
/// belongs to it: `base` (what the run started from) with the checkpoint's adapters when it kept
/// them; else the checkpoint's weights, with fresh adapters if `lora` (an older checkpoint, whose
/// adapters were merged: their Adam moments no longer fit).
pub(crate) fn resumed_policy(
    checkpoint: &TrainCheckpoint,
    base: &CausalLm,
    lora: Option<&LoraConfig>,
) -> Result<(ModelConfig, CausalLm, bool), TrainError> {
    let device = base.device();
    let (config, merged) = tinyrlhf_model::load_lm(checkpoint.config_json.as_bytes(), &checkpoint.weights, &device)?;
    match (lora, &checkpoint.adapter) {
        (Some(lora), Some(adapter)) => {
            let peft = serde_json::json!({"r": lora.rank, "lora_alpha": lora.alpha}).to_string();
            let (_, policy) = load_peft_adapter(base.clone(), peft.as_bytes(), adapter)?;
            Ok((config, policy, true))
        }
        (Some(_), None) => Ok((config, merged, false)),
        (None, _) => Ok((config, merged, true)),
    }
}
