//! What a trainer trains: every weight of its model (a base kept packed widened to f32 first), or
//! LoRA adapters on it (`tinyrlhf_model::with_lora`) with the base frozen, packed or not. A frozen base is never written, so the
//! policy and its reference (the SFT model) share one copy of it.
//!
//! A LoRA run's checkpoint keeps the policy's adapters (PEFT's tensors), never the base: a resumed
//! run puts *those* adapters back on the base it started from (an input of the run) and continues
//! with their optimizer state, so after any kill and resume the exported adapter on the base is
//! the model trained. PPO's value model keeps its adapters and score head the same way.

use burn::module::Module;
use tinyrlhf_model::{
    CausalLm, LoraConfig, ModelConfig, ScalarModel, drawn, has_adapters, load_peft_adapter, load_scalar_adapter, save_peft_adapter,
    save_scalar_adapter, scalar_with_lora, with_lora, with_stable_param_ids,
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
        Some(_) => model,
        // Trained in full: a base kept packed is widened to f32 once, here, and the adapters it
        // stood on are merged in; every weight trains.
        None => model.merged().unfreeze(),
    };
    // Drawn now (fresh adapters): a step's scoring without the graph shares them.
    drawn(with_stable_param_ids(model.train(), ""))
}

/// A reward or value model ready to train (its score head always trains in full).
pub(crate) fn trainable_scalar(model: ScalarModel, lora: Option<&LoraConfig>, prefix: &str) -> ScalarModel {
    let model = match lora {
        // A resumed value model already carries its adapters.
        Some(config) if !has_adapters(&model) => scalar_with_lora(model, config),
        Some(_) => model,
        // Every weight of the transformer trains (an adapter folder's base came frozen); the head
        // as it came.
        None => {
            let merged = model.merged();
            ScalarModel { transformer: merged.transformer.unfreeze(), score: merged.score }
        }
    };
    drawn(with_stable_param_ids(model.train(), prefix))
}

/// What a checkpoint keeps of `policy`, as `(weights, adapter)`: every weight for a run that
/// trains every weight; only the adapters (PEFT's `adapter_model.safetensors`) for a LoRA run.
pub(crate) async fn policy_parts(policy: &CausalLm, lora: Option<&LoraConfig>) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), TrainError> {
    Ok(match lora {
        Some(config) => (None, Some(save_peft_adapter(policy, config).await?.1)),
        None => (Some(tinyrlhf_model::save_lm(policy).await?), None),
    })
}

/// What a checkpoint keeps of a value model: every weight, or with LoRA its adapters and head.
pub(crate) async fn value_bytes(value: &ScalarModel, lora: Option<&LoraConfig>) -> Result<Vec<u8>, TrainError> {
    Ok(match lora {
        Some(_) => save_scalar_adapter(value).await?,
        None => tinyrlhf_model::save_scalar_model(value).await?,
    })
}

/// The value model saved by [`value_bytes`]: with LoRA, `start` (the model it started from) with
/// the saved adapters and head.
pub(crate) fn resumed_value(
    bytes: &[u8],
    start: ScalarModel,
    config_json: &str,
    lora: Option<&LoraConfig>,
) -> Result<ScalarModel, TrainError> {
    Ok(match lora {
        Some(lora) => load_scalar_adapter(start, lora, bytes)?,
        None => tinyrlhf_model::load_scalar_model(config_json.as_bytes(), bytes, &start.transformer.device())?.1,
    })
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
    let config = ModelConfig::from_json_bytes(checkpoint.config_json.as_bytes()).map_err(tinyrlhf_model::CheckpointError::from)?;
    if let (Some(lora), Some(adapter)) = (lora, &checkpoint.adapter) {
        let peft = serde_json::json!({"r": lora.rank, "lora_alpha": lora.alpha}).to_string();
        let (_, policy) = load_peft_adapter(base.clone(), peft.as_bytes(), adapter)?;
        return Ok((config, policy, true));
    }
    let weights = checkpoint
        .weights
        .as_ref()
        .ok_or_else(|| TrainError::Checkpoint("it holds neither the model's weights nor its adapters".into()))?;
    let merged = tinyrlhf_model::lm_from_config(&config, weights, &base.device())?;
    Ok((config, merged, lora.is_none()))
}
