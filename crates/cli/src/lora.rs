//! `--lora-rank` / `--lora-alpha`, shared by every training command, and the adapter a LoRA run
//! writes beside its merged model: `OUT/adapter/` in PEFT's layout (`adapter_config.json`,
//! `adapter_model.safetensors`), which `PeftModel.from_pretrained(base, "OUT/adapter")` loads, and
//! for the Llama family `OUT/adapter.gguf`, which `llama-cli -m base.gguf --lora OUT/adapter.gguf` applies.

use std::path::Path;

use clap::Args;
use tinyrlhf_model::{CausalLm, LoraConfig, ModelConfig};

use crate::files::{self, Result};

#[derive(Debug, Args)]
pub struct LoraArgs {
    /// Train LoRA adapters of this rank on the attention and MLP projections instead of every
    /// weight (the base stays frozen; the output is the merged model plus OUT/adapter/).
    #[arg(long)]
    lora_rank: Option<usize>,
    /// LoRA's alpha: the update is scaled by alpha / rank.
    #[arg(long, default_value_t = LoraConfig::default().alpha, requires = "lora_rank")]
    lora_alpha: f64,
}

impl LoraArgs {
    pub fn config(&self) -> Option<LoraConfig> {
        self.lora_rank.map(|rank| LoraConfig { rank, alpha: self.lora_alpha })
    }
}

/// Writes `policy`'s adapters to `out/adapter/` (and `out/adapter.gguf`) when the run trained with LoRA.
pub fn save_adapter(out: &Path, policy: &CausalLm, config_json: &str, lora: Option<&LoraConfig>) -> Result<()> {
    let Some(lora) = lora else { return Ok(()) };
    let model = ModelConfig::from_json_bytes(config_json.as_bytes()).map_err(|e| e.to_string())?;
    let (config, weights) = pollster::block_on(tinyrlhf_model::save_peft_adapter(policy, lora)).map_err(|e| e.to_string())?;
    let dir = out.join("adapter");
    files::write_atomic(&dir.join("adapter_model.safetensors"), &weights)?;
    files::write_atomic(&dir.join("adapter_config.json"), config.as_bytes())?;
    if let Some(gguf) = tinyrlhf_model::gguf_lora_adapter(&model, &weights, lora.alpha).map_err(|e| e.to_string())? {
        files::write_atomic(&out.join("adapter.gguf"), &gguf)?;
    }
    Ok(())
}
