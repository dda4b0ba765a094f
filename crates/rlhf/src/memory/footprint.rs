//! How much memory a model needs to go through the recipe in a browser tab, and whether it fits:
//! decided from `config.json` (or a GGUF file's header) alone, so the page can refuse a model
//! before reading its weights.
//!
//! Trained in full, every stage at once holds the policy, its reference, the reward model and the
//! value model (4 f32 copies), AdamW's two moments for the two that learn (4) and their gradients
//! (2): 10. With LoRA the frozen base is held as loaded (a GGUF file's projections in the file's
//! precision, the rest f32), shared by the policy and the reference, and by the reward and value
//! models (2 copies), plus the weights while they load (1), plus one training step's activations
//! ([`STEP_TOKENS`] tokens, as `sizes.rs` counts them). A tab's wasm memory is at most 4 GiB
//! (32-bit addresses).

use serde::Serialize;
use tinyrlhf_model::ModelConfig;

use crate::parallel::peers::MAX_SHARED_PARAMETERS;

/// The most linear memory a wasm32 instance can have.
pub const TAB_MEMORY_LIMIT: u64 = 4 << 30;

/// What a model costs in the tab.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Footprint {
    pub parameters: usize,
    /// Above [`MAX_SHARED_PARAMETERS`] the tab trains LoRA adapters unless the person says otherwise.
    pub lora_by_default: bool,
    /// Estimated bytes to train it with the default choice of LoRA.
    pub training_bytes: u64,
    pub limit_bytes: u64,
    /// Held-out prompts a finished run is judged on against SFT (two answers each, both models).
    pub judged_prompts: usize,
    /// Held-out prompts demo mode judges each method on.
    pub demo_judged_prompts: usize,
}

/// Judging a run on 32 prompts takes seconds at 30 M parameters; the sampling scales with the
/// parameters, so a larger model is judged on fewer prompts (at least 8: a win-rate of 16 answers
/// still tells a shift from noise) and the person waits about as long after every run.
pub fn judged_prompts(parameters: usize, at_small_size: usize) -> usize {
    const FLOOR: usize = 8;
    let scaled = (at_small_size as u128 * MAX_SHARED_PARAMETERS as u128 / parameters.max(1) as u128) as usize;
    scaled.clamp(FLOOR.min(at_small_size), at_small_size)
}

/// The tokens of the training step a LoRA estimate counts: four answers of 128 tokens.
pub const STEP_TOKENS: usize = 512;

/// Estimated bytes to train the model `config` describes in the tab, with or without LoRA, its
/// weights taking `held_bytes` as loaded (`None`: f32).
pub fn training_bytes(config: &ModelConfig, held_bytes: Option<u64>, lora: bool) -> u64 {
    let f32_weights = 4 * config.num_params() as u64;
    if !lora {
        return f32_weights.saturating_mul(10);
    }
    let base = held_bytes.unwrap_or(f32_weights);
    base.saturating_mul(3).saturating_add(crate::memory::sizes::training_step_bytes(config, 4, STEP_TOKENS / 4))
}

/// The footprint of the model `config` describes, its weights taking `held_bytes` as loaded
/// (`None`: f32, as a folder's are).
pub fn footprint(config: &ModelConfig, held_bytes: Option<u64>) -> Footprint {
    let parameters = config.num_params();
    let lora_by_default = parameters > MAX_SHARED_PARAMETERS;
    Footprint {
        parameters,
        lora_by_default,
        training_bytes: training_bytes(config, held_bytes, lora_by_default),
        limit_bytes: TAB_MEMORY_LIMIT,
        judged_prompts: judged_prompts(parameters, 32),
        demo_judged_prompts: judged_prompts(parameters, 64),
    }
}

/// The footprint, or why the tab cannot hold the model (with the numbers).
pub fn check_fits_tab(config: &ModelConfig, held_bytes: Option<u64>) -> Result<Footprint, String> {
    let f = footprint(config, held_bytes);
    if f.training_bytes > f.limit_bytes {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        return Err(format!(
            "this {} model has {:.0} M parameters: training it here would take about {:.1} GiB{}, more than a tab can hold ({:.0} GiB); use the command line for it",
            config.architecture(),
            f.parameters as f64 / 1e6,
            gib(f.training_bytes),
            if f.lora_by_default { " even with LoRA" } else { "" },
            gib(f.limit_bytes)
        ));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyrlhf_model::{GptConfig, LlamaConfig};

    #[test]
    fn small_models_train_in_full_smollm2_with_lora_and_fewer_judged_prompts_and_a_billion_parameters_is_refused_with_the_numbers() {
        let tiny = footprint(&GptConfig::tiny(1000).into(), None);
        assert!(!tiny.lora_by_default && tiny.training_bytes == 40 * tiny.parameters as u64);
        let smollm2 = check_fits_tab(&LlamaConfig::smollm2_135m(49_152).into(), None).unwrap();
        assert!(smollm2.lora_by_default);
        // Judging waits about as long: 32 prompts for the tiny model, 8 for SmolLM2's 135 M.
        assert_eq!((tiny.judged_prompts, tiny.demo_judged_prompts), (32, 64));
        assert_eq!((smollm2.judged_prompts, smollm2.demo_judged_prompts), (8, 14));
        // Three f32 copies of 135 M parameters and a step's activations.
        assert!((1.8e9..2.4e9).contains(&(smollm2.training_bytes as f64)), "{smollm2:?}");
        // Llama 3.2 1B's shape in f32: 1.24 G parameters.
        let mut big = LlamaConfig::new(128_256, 8192, 2048, 16, 32, 8);
        big.intermediate_size = 8192;
        let message = check_fits_tab(&big.into(), None).unwrap_err();
        assert!(message.contains("1236 M parameters") && message.contains("GiB even with LoRA") && message.contains("4 GiB"), "{message}");
    }

    #[test]
    fn a_half_billion_model_fits_the_tab_with_its_projections_in_four_bits_and_not_in_f32() {
        // Qwen2.5-0.5B's shape, tied; a Q4_0 file's projections are 18 bytes per 32 values.
        let mut qwen = LlamaConfig::new(151_936, 32_768, 896, 24, 14, 2);
        qwen.intermediate_size = 4864;
        qwen.tie_word_embeddings = true;
        let config: ModelConfig = qwen.into();
        let projections: u64 = 24 * (2 * 896 * 896 + 2 * 896 * 128 + 3 * 896 * 4864);
        let held = projections * 18 / 32 + 4 * (config.num_params() as u64 - projections);
        let fits = check_fits_tab(&config, Some(held)).unwrap();
        assert!(fits.lora_by_default && fits.training_bytes < 3_500_000_000, "{fits:?}");
        let message = check_fits_tab(&config, None).unwrap_err();
        assert!(message.contains("even with LoRA"), "{message}");
    }
}
