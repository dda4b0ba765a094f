//! `--lora-rank` / `--lora-alpha` / `--merge`, shared by every training command, and what a run
//! writes as its tuned model.
//!
//! A run that trains every weight writes a model folder. A LoRA run writes its adapter, not a copy
//! of the base: `OUT/adapter/` in PEFT's layout (`adapter_config.json` naming the base in
//! `base_model_name_or_path`, `adapter_model.safetensors`), which `PeftModel.from_pretrained(base,
//! "OUT/adapter")` loads, for the Llama family `OUT/adapter.gguf`, which `llama-cli -m base.gguf
//! --lora OUT/adapter.gguf` applies, and the run's tokenizer. Every command loads such a folder as
//! its base with the adapter frozen beside it (a packed base stays packed). A reward model trained
//! with adapters is written the same way (PEFT's `SEQ_CLS` task, the score head among its tensors)
//! and loads onto its base. `--merge` writes the merged model as well: a language model tuned on a
//! GGUF base as `OUT/model.gguf` in the base's types (`tinyrlhf_model::merged_gguf`: projections of
//! 4 to 6 bits become Q8_0, and the run says which), anything else as an f32 model folder.

use std::path::Path;

use clap::Args;
use tinyrlhf_model::{CausalLm, LoraConfig, ModelConfig, ScalarModel};
use tinyrlhf_tokenizer::Tokenizer;

use crate::files::{self, Result};
use crate::model_dirs;

#[derive(Debug, Args)]
pub struct LoraArgs {
    /// Train LoRA adapters of this rank on the attention and MLP projections instead of every
    /// weight (the base stays frozen; the output is the adapter, OUT/adapter/).
    #[arg(long)]
    lora_rank: Option<usize>,
    /// LoRA's alpha: the update is scaled by alpha / rank.
    #[arg(long, default_value_t = LoraConfig::default().alpha, requires = "lora_rank")]
    lora_alpha: f64,
    /// Also write the merged model (base + adapter) into OUT: on a GGUF base, OUT/model.gguf in the
    /// base's types (projections of 4-6 bits as Q8_0, which keeps the update); else a model folder (f32 safetensors).
    #[arg(long, requires = "lora_rank")]
    merge: bool,
}

impl LoraArgs {
    pub fn config(&self) -> Option<LoraConfig> {
        self.lora_rank.map(|rank| LoraConfig { rank, alpha: self.lora_alpha })
    }

    pub fn merge(&self) -> bool {
        self.merge
    }
}

/// A tuned language model (a policy, an SFT model) or reward model.
#[derive(Clone, Copy)]
pub enum TunedModel<'a> {
    Language(&'a CausalLm),
    Scalar(&'a ScalarModel),
}

impl TunedModel<'_> {
    /// Every weight, adapters merged: `model.safetensors`.
    fn merged_weights(self) -> Result<Vec<u8>> {
        let weights = match self {
            Self::Language(model) => pollster::block_on(tinyrlhf_model::save_lm(model)),
            Self::Scalar(model) => pollster::block_on(tinyrlhf_model::save_scalar_model(model)),
        };
        weights.map_err(|e| e.to_string())
    }
}

/// What a run tuned, to be written into `out`.
pub struct Tuned<'a> {
    pub model: TunedModel<'a>,
    pub config_json: &'a str,
    /// Every weight, for a run that trains every weight (its checkpoint's).
    pub weights: Option<&'a [u8]>,
    pub lora: Option<&'a LoraConfig>,
    /// The model the run started from, which a LoRA run's adapter names; none for a model made
    /// fresh (its adapters are merged: there is no file for them to adapt).
    pub base: Option<Base<'a>>,
    pub merge: bool,
    pub tokenizer: &'a Tokenizer,
}

/// The model a run started from: where it is, and what its weights are (an adapter records it and
/// loads onto nothing else).
#[derive(Debug, Clone, Copy)]
pub struct Base<'a> {
    pub path: &'a Path,
    pub identity: &'a str,
}

/// Writes the tuned model into `out` with `manifest` (which gains `base` and `merged` for a LoRA
/// run). Files of an earlier save that no longer describe the model are removed: a merged copy
/// left from an earlier `--merge` would otherwise load instead of the newer adapter.
pub fn save_tuned(out: &Path, tuned: &Tuned, manifest: &serde_json::Value) -> Result<()> {
    let (Some(lora), Some(base)) = (tuned.lora, tuned.base) else {
        let merged;
        let weights = match tuned.weights {
            Some(weights) => weights,
            None => {
                merged = tuned.model.merged_weights()?;
                &merged
            }
        };
        return model_dirs::save_weights_dir(out, tuned.config_json, weights, tuned.tokenizer, manifest);
    };
    let identity = base.identity;
    let base = std::path::absolute(base.path).map_err(|e| format!("{}: {e}", base.path.display()))?;
    let mut manifest = manifest.clone();
    manifest["base"] = base.display().to_string().into();
    manifest["base_identity"] = identity.into();
    manifest["merged"] = tuned.merge.into();
    model_dirs::save_tokenizer(out, tuned.tokenizer)?;
    let adapter = save_adapter(out, tuned.model, tuned.config_json, lora, Base { path: &base, identity })?;
    let merged_gguf = tuned.merge && matches!(tuned.model, TunedModel::Language(_)) && model_dirs::is_gguf(&base);
    // What an earlier save left that no longer describes the model would load instead of it.
    let stale: &[&str] = match (tuned.merge, merged_gguf) {
        (false, _) => &["model.safetensors", "config.json", MERGED_GGUF],
        (true, true) => &["model.safetensors", "config.json"],
        (true, false) => &[MERGED_GGUF],
    };
    for stale in stale {
        files::remove_file(&out.join(stale))?;
    }
    if merged_gguf {
        let config = ModelConfig::from_json_bytes(tuned.config_json.as_bytes()).map_err(|e| e.to_string())?;
        let merged = tinyrlhf_model::merged_gguf(&files::read_large(&base)?, &config, &adapter, lora)
            .map_err(|e| format!("{}: {e}", base.display()))?;
        files::write_atomic(&out.join(MERGED_GGUF), &merged.bytes)?;
        let requantized: Vec<String> = merged.requantized.iter().map(|(name, from)| format!("{name} ({from})")).collect();
        let mut by_type: std::collections::BTreeMap<&str, usize> = Default::default();
        merged.requantized.iter().for_each(|(_, from)| *by_type.entry(from).or_default() += 1);
        let by_type: Vec<String> = by_type.iter().map(|(from, n)| format!("{n} {from}")).collect();
        eprintln!(
            "merged model written to {} in its base's types{}",
            out.join(MERGED_GGUF).display(),
            if by_type.is_empty() {
                String::new()
            } else {
                format!(
                    " but Q8_0 for {} projections, whose grid would round the update away (manifest.json names them)",
                    by_type.join(", ")
                )
            }
        );
        manifest["merged_file"] = MERGED_GGUF.into();
        manifest["requantized_as_q8_0"] = requantized.into();
        model_dirs::save_manifest(out, &manifest)
    } else if tuned.merge {
        let weights = tuned.model.merged_weights()?;
        model_dirs::save_weights_dir(out, tuned.config_json, &weights, tuned.tokenizer, &manifest)
    } else {
        model_dirs::save_manifest(out, &manifest)
    }
}

/// The merged model of a LoRA run on a GGUF base.
const MERGED_GGUF: &str = "model.gguf";

/// Writes `tuned`'s adapters to `out/adapter/` (and a language model's to `out/adapter.gguf`), naming
/// `base` by its path (PEFT's `base_model_name_or_path`) and its identity (the weights' metadata);
/// their safetensors bytes.
fn save_adapter(out: &Path, tuned: TunedModel, config_json: &str, lora: &LoraConfig, base: Base) -> Result<Vec<u8>> {
    let (config, weights) = match tuned {
        TunedModel::Language(model) => pollster::block_on(tinyrlhf_model::save_peft_adapter(model, lora)),
        TunedModel::Scalar(model) => pollster::block_on(tinyrlhf_model::save_peft_scalar_adapter(model, lora)),
    }
    .map_err(|e| e.to_string())?;
    let weights = tinyrlhf_model::with_recorded_base(&weights, base.identity).map_err(|e| e.to_string())?;
    let mut config: serde_json::Value = serde_json::from_str(&config).expect("PEFT's config is JSON");
    config["base_model_name_or_path"] = base.path.display().to_string().into();
    files::write_atomic(&out.join(model_dirs::ADAPTER_WEIGHTS), &weights)?;
    files::write_atomic(&out.join(model_dirs::ADAPTER_CONFIG), serde_json::to_string_pretty(&config).expect("json").as_bytes())?;
    // llama.cpp applies adapters to language models; a reward model's adapter has no GGUF reader.
    if let TunedModel::Language(_) = tuned {
        let model = ModelConfig::from_json_bytes(config_json.as_bytes()).map_err(|e| e.to_string())?;
        if let Some(gguf) = tinyrlhf_model::gguf_lora_adapter(&model, &weights, lora.alpha).map_err(|e| e.to_string())? {
            files::write_atomic(&out.join("adapter.gguf"), &gguf)?;
        }
    }
    Ok(weights)
}
