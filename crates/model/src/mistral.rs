//! Mistral (`model_type` `mistral`: Mistral 7B, Ministral, the Mistral-architecture models people
//! tune), read and written as Hugging Face's `config.json`. Its layers are the Llama family's
//! (grouped-query attention, rotary embeddings, SwiGLU, RMSNorm), so the Llama model computes it;
//! what is its own is the sliding window. transformers lets each token see itself and the
//! `sliding_window - 1` before it, so a row no longer than the window computes as full attention:
//! the context is capped at the window, and every answer is the one transformers gives.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ConfigError;
use crate::family::FamilyConfig;
use crate::gguf_config::GgufFamily;
use crate::llama::Llama;
use crate::llama_config::LlamaConfig;

/// A Mistral `config.json`: the Llama family's keys, and the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MistralConfig {
    #[serde(flatten)]
    pub llama: LlamaConfig,
    /// The most tokens a token sees, itself included; `null` (Mistral 7B v0.2 on): all of them.
    #[serde(default)]
    pub sliding_window: Option<usize>,
}

impl MistralConfig {
    /// The same layers as a Llama config, with the context this one computes exactly.
    fn as_llama(&self) -> LlamaConfig {
        LlamaConfig { max_position_embeddings: self.context_length(), ..self.llama.clone() }
    }

    /// Refuses what the Llama layer does not compute for Mistral, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem: String| Err(ConfigError::Unsupported { field, problem });
        if self.llama.model_type != "mistral" {
            return bad("model_type", format!("{:?} is not \"mistral\"", self.llama.model_type));
        }
        if self.sliding_window == Some(0) {
            return bad("sliding_window", "0; each token must see at least itself".into());
        }
        // Every other key is the Llama family's, checked as a Llama config's.
        LlamaConfig { model_type: "llama".into(), ..self.llama.clone() }.validate()
    }
}

impl FamilyConfig for MistralConfig {
    type Model = Llama;
    const MODEL_TYPES: &'static [&'static str] = &["mistral"];
    /// llama.cpp converts Mistral as a `llama` model (query and key rows permuted); a GGUF file
    /// naming `llama` reads as the Llama family, which computes the same.
    const GGUF: &'static [GgufFamily] = &[GgufFamily::llama_style("llama", "mistral", "MistralForCausalLM", true)];

    fn from_json_value(value: Value) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_value(value).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn architecture(&self) -> &str {
        &self.llama.model_type
    }

    fn heads(&self) -> usize {
        self.llama.heads()
    }

    fn kv_heads(&self) -> usize {
        self.llama.kv_heads()
    }

    fn head_dim(&self) -> usize {
        self.llama.head_dim()
    }

    fn vocab_size(&self) -> usize {
        self.llama.vocab_size
    }

    /// The window, where it is shorter than the positions the model was trained on.
    fn context_length(&self) -> usize {
        self.sliding_window.map_or(self.llama.max_position_embeddings, |w| w.min(self.llama.max_position_embeddings))
    }

    fn width(&self) -> usize {
        self.llama.hidden_size
    }

    fn num_layers(&self) -> usize {
        self.llama.num_hidden_layers
    }

    fn mlp_width(&self) -> usize {
        self.llama.intermediate_size
    }

    fn num_params(&self) -> usize {
        self.llama.num_params()
    }

    fn with_special_tokens(self, pad: u32, eos: u32) -> Self {
        Self { llama: self.llama.with_special_tokens(pad, eos), ..self }
    }

    fn miniature(self, layers: usize, vocab: usize, context: usize) -> Self {
        Self { llama: self.llama.miniature(layers, vocab, context), ..self }
    }

    fn init(&self, device: &Device) -> Llama {
        self.as_llama().init(device)
    }

    fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a config always serialises")
    }
}
