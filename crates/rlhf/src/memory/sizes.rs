//! Sizes a run asks for, checked against its model before anything is allocated: answers per
//! prompt, LoRA rank, and the memory one step's batch needs. An absurd flag or knob is refused
//! with the numbers instead of aborting the process (natively an allocation failure aborts; in
//! wasm it traps and kills the tab). Both edges get the same limits from here.
//!
//! The memory figures are lower bounds: of what autodiff must keep for one backward pass, each
//! layer's MLP activations and a few tensors of the model's width; of sampling, the KV cache and the logits of scoring. A run
//! refused by them could not have fitted; a run they pass may still need more. The limit is the machine's memory, which the edge states once
//! ([`set_memory_limit`]); a tab's is the 4 GiB a wasm32 instance can address.

use std::sync::atomic::{AtomicU64, Ordering};

use tinyrlhf_model::{LoraConfig, ModelConfig};

use crate::checkpoint::TrainError;
use crate::memory::footprint::TAB_MEMORY_LIMIT;

/// Activations one backward pass may hold by default, in MiB: every trainer's batch goes through
/// the model in groups this size, their gradients summed (each config's `activation_budget_mib`).
pub const DEFAULT_ACTIVATION_BUDGET_MIB: u64 = 512;

/// The most answers sampled for one prompt: rankings (InstructGPT ranked 4 to 9) and groups
/// (GRPO's papers use 8 to 64).
pub const MAX_ANSWERS_PER_PROMPT: usize = 64;

static MEMORY_LIMIT: AtomicU64 = AtomicU64::new(if cfg!(target_arch = "wasm32") { TAB_MEMORY_LIMIT } else { u64::MAX });

/// States how much memory this process may use (the CLI: the machine's). Until it is set, a
/// native process has no limit and a wasm32 one has the tab's.
pub fn set_memory_limit(bytes: u64) {
    MEMORY_LIMIT.store(bytes, Ordering::Relaxed);
}

pub fn memory_limit() -> u64 {
    MEMORY_LIMIT.load(Ordering::Relaxed)
}

/// Refuses `k` answers per prompt below 1 or above [`MAX_ANSWERS_PER_PROMPT`]; `what` names the
/// setting as the person set it.
pub fn check_answers_per_prompt(k: usize, what: &str) -> Result<(), TrainError> {
    if k == 0 || k > MAX_ANSWERS_PER_PROMPT {
        return Err(TrainError::Setting(format!("{what} = {k}: answers per prompt must be 1 to {MAX_ANSWERS_PER_PROMPT}")));
    }
    Ok(())
}

/// Refuses a LoRA rank larger than the narrowest side of a matrix it adapts: such an update has
/// no low rank left to learn, only more memory.
pub fn check_lora_rank(config: &ModelConfig, lora: Option<&LoraConfig>) -> Result<(), TrainError> {
    let Some(lora) = lora else { return Ok(()) };
    let narrowest = config.width().min(config.kv_width());
    if lora.rank > narrowest {
        return Err(TrainError::Setting(format!(
            "LoRA rank {} is larger than this {} model's narrowest adapted matrix ({narrowest}); use at most {narrowest}",
            lora.rank,
            config.architecture()
        )));
    }
    Ok(())
}

/// f32 values one token keeps for the backward pass, at the least: each layer's, as its family
/// counts them ([`ModelConfig::activations_per_layer_token`]). On the CPU backend attention keeps no
/// `t x t` scores (tinyrlhf-model's `recompute.rs`; on WebGPU it does, beyond this bound) and the
/// LM head no whole logits (`logprobs.rs`).
fn activations_per_token(config: &ModelConfig) -> u64 {
    (config.num_layers() as u64).saturating_mul(config.activations_per_layer_token() as u64)
}

/// At least how many bytes one forward and backward over `rows` sequences of `tokens` keeps.
pub fn training_step_bytes(config: &ModelConfig, rows: usize, tokens: usize) -> u64 {
    (rows as u64).saturating_mul(tokens as u64).saturating_mul(activations_per_token(config)).saturating_mul(4)
}

/// At least how many bytes sampling `rows` sequences of up to `tokens` holds: the key/value cache
/// and the logits of scoring them.
pub fn sampling_bytes(config: &ModelConfig, rows: usize, tokens: usize) -> u64 {
    let per_token = 2 * config.num_layers() * config.kv_width() + config.vocab_size();
    (rows as u64).saturating_mul(tokens as u64).saturating_mul(per_token as u64).saturating_mul(4)
}

/// Refuses `bytes` over the memory limit, saying what needed them.
pub fn check_memory(what: &str, bytes: u64) -> Result<(), TrainError> {
    let limit = memory_limit();
    if bytes > limit {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        return Err(TrainError::Setting(format!(
            "{what} would need at least {:.1} GiB, more than the {:.1} GiB this {} has; use a smaller batch or shorter answers",
            gib(bytes),
            gib(limit),
            if cfg!(target_arch = "wasm32") { "tab" } else { "machine" }
        )));
    }
    Ok(())
}

/// [`check_memory`] for one training step over `rows` sequences of `tokens`.
pub fn check_training_step(config: &ModelConfig, rows: usize, tokens: usize, what: &str) -> Result<(), TrainError> {
    check_memory(&format!("{what} ({rows} sequences of {tokens} tokens)"), training_step_bytes(config, rows, tokens))
}

/// [`check_memory`] for sampling `rows` sequences of up to `tokens`.
pub fn check_sampling(config: &ModelConfig, rows: usize, tokens: usize, what: &str) -> Result<(), TrainError> {
    check_memory(&format!("{what} ({rows} answers, {tokens} tokens each with the prompt)"), sampling_bytes(config, rows, tokens))
}

/// The checks of a run that samples `rows` answers of up to `new_tokens` to prompts of up to
/// `longest_prompt` tokens each iteration and trains on `train_rows` of them at a time.
pub(crate) fn check_sampling_run(
    config: &ModelConfig,
    lora: Option<&LoraConfig>,
    rows: usize,
    train_rows: usize,
    tokens: usize,
    what: &str,
) -> Result<(), TrainError> {
    check_lora_rank(config, lora)?;
    check_sampling(config, rows, tokens, &format!("sampling a {what} batch"))?;
    check_training_step(config, train_rows, tokens, &format!("a {what} update"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyrlhf_model::{GptConfig, LlamaConfig};

    #[test]
    fn a_lora_rank_wider_than_the_narrowest_matrix_is_refused_naming_the_most() {
        let smollm2: ModelConfig = LlamaConfig::smollm2_135m(49_152).into();
        // SmolLM2's k_proj maps 576 to 3 key/value heads of 64: 192 wide.
        assert!(check_lora_rank(&smollm2, Some(&LoraConfig { rank: 192, alpha: 16.0 })).is_ok());
        let message = check_lora_rank(&smollm2, Some(&LoraConfig { rank: 193, alpha: 16.0 })).unwrap_err().to_string();
        assert!(message.contains("use at most 192"), "{message}");
        let tiny: ModelConfig = GptConfig::tiny(1000).into();
        assert!(check_lora_rank(&tiny, Some(&LoraConfig { rank: 100_000, alpha: 16.0 })).is_err());
        assert!(check_lora_rank(&tiny, None).is_ok());
    }

    #[test]
    fn answers_per_prompt_are_bounded_on_both_sides() {
        assert!(check_answers_per_prompt(4, "-k").is_ok());
        assert!(check_answers_per_prompt(MAX_ANSWERS_PER_PROMPT, "-k").is_ok());
        let message = check_answers_per_prompt(100_000, "-k").unwrap_err().to_string();
        assert!(message.contains("-k = 100000") && message.contains("1 to 64"), "{message}");
        assert!(check_answers_per_prompt(0, "-k").is_err());
    }

    #[test]
    fn memory_estimates_grow_with_the_batch_and_refuse_with_the_figures() {
        let tiny: ModelConfig = GptConfig::tiny(803).into();
        let step = training_step_bytes(&tiny, 16, 128);
        // 16 x 128 tokens of a 4-layer, 128-wide model: tens of MB, not GB.
        assert!((10e6..500e6).contains(&(step as f64)), "{step}");
        assert_eq!(training_step_bytes(&tiny, 32, 128), 2 * step);
        assert!(sampling_bytes(&tiny, 16, 128) < step);
        // The limit is process-wide: only this test sets it, and it puts it back.
        let before = memory_limit();
        set_memory_limit(8 << 30);
        let fits = check_training_step(&tiny, 16, 128, "a step");
        let message = check_training_step(&tiny, 100_000, 128, "an SFT step").unwrap_err().to_string();
        let huge = check_sampling(&tiny, usize::MAX, usize::MAX, "sampling").unwrap_err();
        set_memory_limit(before);
        assert!(fits.is_ok());
        assert!(message.contains("an SFT step (100000 sequences of 128 tokens)") && message.contains("8.0 GiB"), "{message}");
        assert!(huge.to_string().contains("GiB"), "{huge}");
    }
}
