//! A language model folder, as bytes: the files that make one model (`config.json`,
//! `model.safetensors`, `tokenizer.json`, and Hugging Face's `tokenizer_config.json` and
//! `chat_template.jinja` when present), read and checked against each other. Both edges load
//! models through here (the CLI from a directory, the page from picked files), so both refuse the
//! same folders with the same words.

use burn::module::Module;
use burn::tensor::Device;
use tinyrlhf_model::{CausalLm, ModelConfig, ScalarModel, Weights};
use tinyrlhf_tokenizer::{Tokenizer, TokenizerError, TokenizerFiles};

/// The bytes of a model folder's files; the optional ones are `None` when absent.
#[derive(Debug)]
pub struct ModelFiles<'a> {
    pub config_json: &'a [u8],
    pub safetensors: Safetensors<'a>,
    pub tokenizer: TokenizerFiles<'a>,
}

/// `model.safetensors`: its bytes, or its tensors already read piece by piece
/// ([`tinyrlhf_model::WeightsStream`], for a caller that should not hold a large file whole).
#[derive(Debug)]
pub enum Safetensors<'a> {
    Bytes(&'a [u8]),
    Read(Weights),
}

impl<'a> From<&'a [u8]> for Safetensors<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Self::Bytes(bytes)
    }
}

/// A folder that cannot be used: the file at fault, and a message that begins with its name.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ModelFilesError {
    pub file: &'static str,
    pub message: String,
}

impl ModelFilesError {
    fn new(file: &'static str, reason: impl std::fmt::Display) -> Self {
        Self { file, message: format!("{file}: {reason}") }
    }
}

/// A language model with the tokenizer and chat template it was trained with.
#[derive(Debug, Clone)]
pub struct LanguageModel {
    pub config: ModelConfig,
    pub model: CausalLm,
    pub tokenizer: Tokenizer,
}

/// Loads a model folder for the RLHF stages. Dropout is switched off whatever `config.json` says
/// (transformers writes 0.1): every stage here trains without it, as TRL's trainers do.
pub fn load_language_model(files: ModelFiles, device: &Device) -> Result<LanguageModel, ModelFilesError> {
    let config = ModelConfig::from_json_bytes(files.config_json).map_err(|e| ModelFilesError::new("config.json", e))?.with_dropout(0.0);
    let tokenizer = tokenizer_for(&config, files.tokenizer)?;
    let weights = match files.safetensors {
        Safetensors::Bytes(bytes) => Weights::from_safetensors(bytes),
        Safetensors::Read(weights) => Ok(weights),
    };
    let model = weights
        .and_then(|weights| tinyrlhf_model::lm_from_weights(&config, weights, device))
        .map_err(|e| ModelFilesError::new("model.safetensors", e))?;
    Ok(LanguageModel { config, model, tokenizer })
}

/// A LoRA run's output folder: PEFT's `adapter/adapter_config.json` and
/// `adapter/adapter_model.safetensors`, and the run's tokenizer files (its chat template may be
/// new); the base it adapts is loaded by the caller, which knows where it is.
#[derive(Debug)]
pub struct AdapterFiles<'a> {
    pub adapter_config_json: &'a [u8],
    pub adapter_safetensors: &'a [u8],
    pub tokenizer: TokenizerFiles<'a>,
}

/// `base` with a LoRA run's adapter, frozen beside its weights (the result trains and samples like
/// any model folder), and the run's tokenizer, checked against the base.
pub fn with_adapter(base: LanguageModel, files: AdapterFiles) -> Result<LanguageModel, ModelFilesError> {
    let tokenizer = tokenizer_for(&base.config, files.tokenizer)?;
    let (_, adapted) = tinyrlhf_model::load_peft_adapter(base.model, files.adapter_config_json, files.adapter_safetensors)
        .map_err(|e| ModelFilesError::new("adapter/adapter_model.safetensors", e))?;
    // Kept beside the base, frozen: a packed base stays packed. A later stage adds its own
    // adapters over it, or merges it all to train in full (`lora::trainable_lm`).
    let model = adapted.with_adapters_frozen();
    Ok(LanguageModel { config: base.config, model, tokenizer })
}

/// A reward model trained with adapters: `base` (the language model it started from, loaded by the
/// caller) under its score head with its adapters frozen beside the base's weights, and the run's
/// tokenizer, checked against the base. The base is not copied: a caller that holds it already
/// (the policy's base) passes a clone, which shares its weights.
pub fn scalar_with_adapter(base: LanguageModel, files: AdapterFiles) -> Result<(ModelConfig, ScalarModel, Tokenizer), ModelFilesError> {
    let tokenizer = tokenizer_for(&base.config, files.tokenizer)?;
    let start = ScalarModel::new(base.model);
    let (_, adapted) = tinyrlhf_model::load_peft_scalar_adapter(start, files.adapter_config_json, files.adapter_safetensors)
        .map_err(|e| ModelFilesError::new("adapter/adapter_model.safetensors", e))?;
    Ok((base.config, adapted.with_adapters_frozen().no_grad(), tokenizer))
}

/// Refuses a tokenizer whose ids the model cannot embed. Llama-family and Gemma models often pad
/// their embeddings past the tokenizer (Qwen2.5: 151,936 rows for 151,665 tokens); GPT-2 folders
/// The tokenizer of `files`, checked to fit `config` (every id within its embedding).
fn tokenizer_for(config: &ModelConfig, files: TokenizerFiles) -> Result<Tokenizer, ModelFilesError> {
    let tokenizer = Tokenizer::from_files(files).map_err(|e| tokenizer_error(e, files.chat_template_jinja.is_some()))?;
    check_fits(config, &tokenizer)?;
    Ok(tokenizer)
}

/// match exactly.
fn check_fits(config: &ModelConfig, tokenizer: &Tokenizer) -> Result<(), ModelFilesError> {
    let fits = match config {
        ModelConfig::Gpt2(_) => config.vocab_size() == tokenizer.vocab_size(),
        _ => config.vocab_size() >= tokenizer.vocab_size(),
    };
    if fits {
        return Ok(());
    }
    Err(ModelFilesError::new(
        "tokenizer.json",
        format!(
            "its vocabulary has {} ids but config.json's vocab_size is {}: they are not one model's",
            tokenizer.vocab_size(),
            config.vocab_size()
        ),
    ))
}

/// A tokenizer error under the file it belongs to (its message names that file already).
fn tokenizer_error(e: TokenizerError, separate_template: bool) -> ModelFilesError {
    let template_file = if separate_template { "chat_template.jinja" } else { "tokenizer_config.json" };
    match e {
        TokenizerError::Template(_) | TokenizerError::TemplateNotText => ModelFilesError::new(template_file, e),
        TokenizerError::Config(_) => ModelFilesError { file: "tokenizer_config.json", message: e.to_string() },
        e => ModelFilesError { file: "tokenizer.json", message: e.to_string() },
    }
}
