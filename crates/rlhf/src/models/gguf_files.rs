//! A GGUF file loaded as a model folder: [`tinyrlhf_model::GgufModel`] gives the config and the
//! weights under HF names, [`tinyrlhf_tokenizer::GgufVocab`] the `tokenizer.json` and
//! `tokenizer_config.json` its metadata describes; then the folder's own loader checks them against
//! each other. Both edges load a `.gguf` through here (the CLI from a path, the page from a picked
//! file read in slices).

use burn::tensor::Device;
use tinyrlhf_model::{GgufModel, GgufValue};
use tinyrlhf_tokenizer::{GgufVocab, TokenizerFiles};

use crate::models::model_files::{LanguageModel, ModelFiles, ModelFilesError, Safetensors, load_language_model};

/// What messages call the file: errors read "GGUF file: …".
const FILE: &str = "GGUF file";

/// The language model, tokenizer and chat template of a GGUF file.
pub fn load_gguf_model(model: GgufModel, device: &Device) -> Result<LanguageModel, ModelFilesError> {
    let vocab = gguf_vocab(&model)?;
    let tokenizer_json = vocab.tokenizer_json().map_err(|e| error(e.to_string()))?;
    let tokenizer_config_json = vocab.tokenizer_config_json();
    let files = ModelFiles {
        config_json: &model.config_json,
        safetensors: Safetensors::Read(model.weights),
        tokenizer: TokenizerFiles {
            tokenizer_json: &tokenizer_json,
            tokenizer_config_json: Some(&tokenizer_config_json),
            ..TokenizerFiles::default()
        },
    };
    load_language_model(files, device).map_err(in_gguf_words)
}

/// An error of the folder loader in the words of the file the person has: the folder's files are
/// made here from the GGUF's header, tensors and metadata, and naming them would send the person
/// looking for files they do not have.
fn in_gguf_words(e: ModelFilesError) -> ModelFilesError {
    let part = match e.file {
        "config.json" => "its header's settings",
        "model.safetensors" => "its tensors",
        "tokenizer.json" | "tokenizer_config.json" => "its tokenizer (tokenizer.ggml.* metadata)",
        "chat_template.jinja" => "its chat template (tokenizer.chat_template)",
        _ => "its contents",
    };
    let reason = e.message.strip_prefix(&format!("{}: ", e.file)).unwrap_or(&e.message);
    // A config's own errors name `config.json` too.
    let reason = reason.replace("config.json is not valid: ", "not valid: ").replace("config.json field ", "setting ");
    error(format!("{part}: {reason}"))
}

fn error(message: String) -> ModelFilesError {
    ModelFilesError { file: FILE, message: format!("{FILE}: {message}") }
}

/// The tokenizer's metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`), checked for type.
fn gguf_vocab(model: &GgufModel) -> Result<GgufVocab, ModelFilesError> {
    let get = |key: &str| model.metadata.get(key);
    let text = |key: &str| get(key).and_then(GgufValue::as_str).map(str::to_owned);
    let id = |key: &str| get(key).and_then(GgufValue::as_u64).and_then(|id| u32::try_from(id).ok());
    let strings = |key: &str| -> Result<Vec<String>, ModelFilesError> {
        let Some(value) = get(key) else { return Ok(vec![]) };
        let items = value.as_array().ok_or_else(|| error(format!("metadata `{key}` is not an array")))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| item.as_str().map(str::to_owned).ok_or_else(|| error(format!("metadata `{key}` item {i} is not a string"))))
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    if tokens.is_empty() {
        return Err(error("metadata `tokenizer.ggml.tokens` is missing: the file carries no tokenizer".into()));
    }
    let token_types = match get("tokenizer.ggml.token_type").and_then(GgufValue::as_array) {
        Some(types) => types.iter().map(|t| t.as_u64().map_or(-1, |t| t as i64)).collect(),
        None => vec![],
    };
    let scores = match get("tokenizer.ggml.scores") {
        None => vec![],
        Some(value) => {
            let items = value.as_array().ok_or_else(|| error("metadata `tokenizer.ggml.scores` is not an array".into()))?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_f64()
                        .map(|s| s as f32)
                        .ok_or_else(|| error(format!("metadata `tokenizer.ggml.scores` item {i} is not a number")))
                })
                .collect::<Result<_, _>>()?
        }
    };
    let add_bos = match get("tokenizer.ggml.add_bos_token") {
        None => None,
        Some(GgufValue::Bool(add)) => Some(*add),
        Some(_) => return Err(error("metadata `tokenizer.ggml.add_bos_token` is not true or false".into())),
    };
    Ok(GgufVocab {
        architecture: text("general.architecture").unwrap_or_default(),
        model: text("tokenizer.ggml.model").unwrap_or_default(),
        scores,
        add_bos,
        pre: text("tokenizer.ggml.pre"),
        tokens,
        token_types,
        merges: strings("tokenizer.ggml.merges")?,
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        pad: id("tokenizer.ggml.padding_token_id"),
        chat_template: text("tokenizer.chat_template"),
    })
}
