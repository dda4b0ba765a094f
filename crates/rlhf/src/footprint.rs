//! How much memory a model needs to go through the recipe in a browser tab, and whether it fits:
//! decided from `config.json` alone, so the page can refuse a model before reading its weights.
//!
//! The estimate counts f32 copies of the weights. Trained in full, every stage at once holds the
//! policy, its reference, the reward model and the value model (4 copies), AdamW's two moments for
//! the two that learn (4) and their gradients (2): 10. With LoRA the frozen base is shared by the
//! policy and the reference, and the scalar base by the reward and value models (2 copies), plus
//! the weights file while it loads (1): 3, the adapters and activations a tenth on top. A tab's
//! wasm memory is at most 4 GiB (32-bit addresses).

use serde::Serialize;
use tinyrlhf_model::ModelConfig;

use crate::peers::MAX_SHARED_PARAMETERS;

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

/// Estimated bytes to train a model of `parameters` in the tab, with or without LoRA.
pub fn training_bytes(parameters: usize, lora: bool) -> u64 {
    let weights = 4 * parameters as u64;
    if lora { weights * 3 + weights * 3 / 10 } else { weights * 10 }
}

/// The footprint of the model `config` describes.
pub fn footprint(config: &ModelConfig) -> Footprint {
    let parameters = config.num_params();
    let lora_by_default = parameters > MAX_SHARED_PARAMETERS;
    Footprint {
        parameters,
        lora_by_default,
        training_bytes: training_bytes(parameters, lora_by_default),
        limit_bytes: TAB_MEMORY_LIMIT,
        judged_prompts: judged_prompts(parameters, 32),
        demo_judged_prompts: judged_prompts(parameters, 64),
    }
}

/// The footprint, or why the tab cannot hold the model (with the numbers).
pub fn check_fits_tab(config: &ModelConfig) -> Result<Footprint, String> {
    let f = footprint(config);
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
        let tiny = footprint(&GptConfig::tiny(1000).into());
        assert!(!tiny.lora_by_default && tiny.training_bytes == 40 * tiny.parameters as u64);
        let smollm2 = check_fits_tab(&LlamaConfig::smollm2_135m(49_152).into()).unwrap();
        assert!(smollm2.lora_by_default);
        // Judging waits about as long: 32 prompts for the tiny model, 8 for SmolLM2's 135 M.
        assert_eq!((tiny.judged_prompts, tiny.demo_judged_prompts), (32, 64));
        assert_eq!((smollm2.judged_prompts, smollm2.demo_judged_prompts), (8, 14));
        assert!((1.5e9..2.0e9).contains(&(smollm2.training_bytes as f64)), "{smollm2:?}");
        // Llama 3.2 1B's shape: 1.24 G parameters.
        let mut big = LlamaConfig::new(128_256, 8192, 2048, 16, 32, 8);
        big.intermediate_size = 8192;
        let message = check_fits_tab(&big.into()).unwrap_err();
        assert!(message.contains("1236 M parameters") && message.contains("GiB even with LoRA") && message.contains("4 GiB"), "{message}");
    }
}
