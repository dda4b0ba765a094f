//! A language model folder, as bytes: the files that make one model (`config.json`,
//! `model.safetensors`, `tokenizer.json`, and Hugging Face's `tokenizer_config.json` and
//! `chat_template.jinja` when present), read and checked against each other. Both edges load
//! models through here (the CLI from a directory, the page from picked files), so both refuse the
//! same folders with the same words.

use burn::module::Module;
use burn::tensor::Device;
use tinyrlhf_model::{CausalLm, ModelConfig, ScalarModel, Weights, short_identity};
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
    /// What its weights are (`tinyrlhf_model::ContentDigest`'s identity): an adapter trained on it
    /// records this, and goes on no other base.
    pub identity: String,
}

/// Loads a model folder for the RLHF stages. Dropout is switched off whatever `config.json` says
/// (transformers writes 0.1): every stage here trains without it, as TRL's trainers do.
pub fn load_language_model(files: ModelFiles, device: &Device) -> Result<LanguageModel, ModelFilesError> {
    let config = ModelConfig::from_json_bytes(files.config_json).map_err(|e| ModelFilesError::new("config.json", e))?.with_dropout(0.0);
    let tokenizer = tokenizer_for(&config, files.tokenizer)?;
    let weights = match files.safetensors {
        Safetensors::Bytes(bytes) => Weights::from_safetensors(bytes),
        Safetensors::Read(weights) => Ok(weights),
    }
    .map_err(|e| ModelFilesError::new("model.safetensors", e))?;
    let identity = weights.identity();
    let model = tinyrlhf_model::lm_from_weights(&config, weights, device).map_err(|e| ModelFilesError::new("model.safetensors", e))?;
    Ok(LanguageModel { config, model, tokenizer, identity })
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

/// Whether an adapter may go on a base other than the one it records ([`check_adapter_base`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherBase {
    Refused,
    /// The person says the adapter fits (the base was converted or re-saved in a way that
    /// changed its bytes, say).
    Allowed,
}

/// Refuses an adapter whose safetensors records another base identity than `base`'s: on a model
/// of the same shape but other weights it would load and compute nonsense. An adapter that records
/// none (PEFT's own) is taken as it is.
pub fn check_adapter_base(base_identity: &str, adapter_safetensors: &[u8], other: OtherBase) -> Result<(), ModelFilesError> {
    let recorded = tinyrlhf_model::recorded_base(adapter_safetensors).map_err(|e| ModelFilesError::new(ADAPTER_WEIGHTS, e))?;
    match recorded {
        Some(recorded) if recorded != base_identity && other == OtherBase::Refused => Err(ModelFilesError::new(
            ADAPTER_WEIGHTS,
            format!(
                "the adapter was trained on a base whose weights are {}, but this base's are {}: another model, on which \
                 the adapter would compute nonsense",
                short_identity(&recorded),
                short_identity(base_identity)
            ),
        )),
        _ => Ok(()),
    }
}

/// Where a LoRA run's adapter weights are, within its folder (and in messages).
const ADAPTER_WEIGHTS: &str = "adapter/adapter_model.safetensors";
const ADAPTER_CONFIG: &str = "adapter/adapter_config.json";

/// `base` with a LoRA run's adapter, frozen beside its weights (the result trains and samples like
/// any model folder), and the run's tokenizer, checked against the base. The adapter must have
/// been trained on this base ([`check_adapter_base`]).
pub fn with_adapter(base: LanguageModel, files: AdapterFiles, other: OtherBase) -> Result<LanguageModel, ModelFilesError> {
    check_adapter_base(&base.identity, files.adapter_safetensors, other)?;
    let tokenizer = tokenizer_for(&base.config, files.tokenizer)?;
    let (_, adapted) =
        tinyrlhf_model::load_peft_adapter(base.model, files.adapter_config_json, files.adapter_safetensors).map_err(adapter_error)?;
    // Kept beside the base, frozen: a packed base stays packed. A later stage adds its own
    // adapters over it, or merges it all to train in full (`lora::trainable_lm`).
    let model = adapted.with_adapters_frozen();
    let identity = tinyrlhf_model::adapted_identity(&base.identity, files.adapter_safetensors).map_err(adapter_error)?;
    Ok(LanguageModel { config: base.config, model, tokenizer, identity })
}

/// An adapter's error under the file at fault: its config's problems are `adapter_config.json`'s.
fn adapter_error(e: tinyrlhf_model::CheckpointError) -> ModelFilesError {
    match e {
        tinyrlhf_model::CheckpointError::AdapterConfig(reason) => ModelFilesError::new(ADAPTER_CONFIG, reason),
        e => ModelFilesError::new(ADAPTER_WEIGHTS, e),
    }
}

/// A reward model trained with adapters: `base` (the language model it started from, loaded by the
/// caller) under its score head with its adapters frozen beside the base's weights, and the run's
/// tokenizer, checked against the base. The base is not copied: a caller that holds it already
/// (the policy's base) passes a clone, which shares its weights.
pub fn scalar_with_adapter(
    base: LanguageModel,
    files: AdapterFiles,
    other: OtherBase,
) -> Result<(ModelConfig, ScalarModel, Tokenizer), ModelFilesError> {
    check_adapter_base(&base.identity, files.adapter_safetensors, other)?;
    let tokenizer = tokenizer_for(&base.config, files.tokenizer)?;
    let start = ScalarModel::new(base.model);
    let (_, adapted) =
        tinyrlhf_model::load_peft_scalar_adapter(start, files.adapter_config_json, files.adapter_safetensors).map_err(adapter_error)?;
    Ok((base.config, adapted.with_adapters_frozen().no_grad(), tokenizer))
}

/// The tokenizer of `files`, checked to fit `config` (every id within its embedding).
fn tokenizer_for(config: &ModelConfig, files: TokenizerFiles) -> Result<Tokenizer, ModelFilesError> {
    let tokenizer = Tokenizer::from_files(files).map_err(|e| tokenizer_error(e, files.chat_template_jinja.is_some()))?;
    check_fits(config, &tokenizer)?;
    Ok(tokenizer)
}

/// Refuses a tokenizer whose ids the model cannot embed. Llama-family and Gemma models often pad
/// their embeddings past the tokenizer (Qwen2.5: 151,936 rows for 151,665 tokens); GPT-2 folders
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

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(recorded: Option<&str>) -> Vec<u8> {
        let bytes: Vec<u8> = [0.5f32, 0.25].iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &bytes).unwrap();
        let file = safetensors::serialize([("base_model.model.a.lora_A.weight", view)], None).unwrap();
        match recorded {
            Some(base) => tinyrlhf_model::with_recorded_base(&file, base).unwrap(),
            None => file,
        }
    }

    #[test]
    fn an_adapter_recorded_for_another_base_is_refused_unless_the_person_allows_it() {
        let on_a = adapter(Some("xxh3-128:aaaa"));
        assert!(check_adapter_base("xxh3-128:aaaa", &on_a, OtherBase::Refused).is_ok());
        let refused = check_adapter_base("xxh3-128:bbbb", &on_a, OtherBase::Refused).unwrap_err();
        assert_eq!(refused.file, "adapter/adapter_model.safetensors");
        assert!(refused.message.contains("xxh3-128:aaaa") && refused.message.contains("xxh3-128:bbbb"), "{refused}");
        assert!(check_adapter_base("xxh3-128:bbbb", &on_a, OtherBase::Allowed).is_ok());
        // PEFT's own adapters record no base: taken as they are.
        assert!(check_adapter_base("xxh3-128:bbbb", &adapter(None), OtherBase::Refused).is_ok());
    }
}
