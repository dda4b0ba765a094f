//! One model type for every architecture: [`CausalLm`] (candle's `enum Model` pattern) is what the
//! trainers, the sampler and both edges hold, and [`ModelConfig`] is its `config.json`, read by
//! `model_type`. A second architecture is a new variant here and one file beside `gpt.rs`.
//!
//! burn's derive puts the variant's name into every parameter path (`Gpt2.h.0.attn.c_attn.weight`);
//! `checkpoint.rs` maps such paths to each architecture's Hugging Face names, so saved files,
//! optimizer state and LoRA targets keep the names they had.

use burn::module::Module;
use burn::nn::{Initializer, Linear};
use burn::tensor::{Device, Int, Tensor};
use serde_json::Value;

use crate::config::{ConfigError, GptConfig};
use crate::embedding::TokenEmbedding;
use crate::gemma3::Gemma3;
use crate::gemma3_config::Gemma3Config;
use crate::gpt::Gpt;
use crate::kv_cache::{KvCache, LayerCache, attention_bias};
use crate::llama::Llama;
use crate::llama_config::{LLAMA_FAMILY, LlamaConfig};
use crate::packed::PackedWeight;
use crate::projection::{LmHead, Projection};

/// The architectures tinyrlhf computes, by their `model_type`.
pub const ARCHITECTURES: [&str; 5] = ["gpt2", "llama", "qwen2", "qwen3", "gemma3_text"];

/// A causal language model of any supported architecture.
#[derive(Module, Debug)]
pub enum CausalLm {
    Gpt2(Gpt),
    Llama(Llama),
    Gemma3(Gemma3),
}

impl CausalLm {
    /// The model with `f` applied to each attention and MLP projection (LoRA's targets), with its
    /// HF module name (`model.layers.0.self_attn.q_proj`).
    pub(crate) fn map_projections(self, mut f: impl FnMut(&str, Projection) -> Projection) -> Self {
        match self {
            Self::Gpt2(m) => Self::Gpt2(m.map_projections(&mut f)),
            Self::Llama(m) => Self::Llama(m.map_projections(&mut f)),
            Self::Gemma3(m) => Self::Gemma3(m.map_projections(&mut f)),
        }
    }

    /// The model with `f` applied to its token embedding (GPT-2's stays burn's: it is never packed).
    pub(crate) fn map_embedding(self, f: impl FnOnce(TokenEmbedding) -> TokenEmbedding) -> Self {
        match self {
            Self::Gpt2(m) => Self::Gpt2(m),
            Self::Llama(m) => Self::Llama(Llama { embed_tokens: f(m.embed_tokens), ..m }),
            Self::Gemma3(m) => Self::Gemma3(Gemma3 { embed_tokens: f(m.embed_tokens), ..m }),
        }
    }

    /// The weights kept in their file's precision (handles: clones share the bytes).
    pub fn packed(&self) -> Vec<PackedWeight> {
        let mut found = vec![];
        self.clone()
            .map_projections(|_, projection| {
                found.extend(projection.packed.clone());
                projection
            })
            .map_embedding(|embedding| {
                found.extend(embedding.packed.clone());
                embedding
            });
        found
    }

    /// Its adapters frozen beside their weights, under any frozen before: a base for a later run's
    /// adapters that keeps a packed base packed (merging would widen it).
    pub fn with_adapters_frozen(self) -> Self {
        self.map_projections(|_, projection| projection.with_adapter_frozen())
    }

    /// Every update merged into its weight, every packed weight widened to f32: the dense model
    /// this one computes, with no adapters (to save, or to train in full).
    pub fn merged(self) -> Self {
        let device = self.device();
        self.map_projections(|_, projection| projection.merged(&device)).map_embedding(|embedding| embedding.merged(&device))
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Gpt2(m) => m.vocab_size(),
            Self::Llama(m) => m.vocab_size(),
            Self::Gemma3(m) => m.vocab_size(),
        }
    }

    /// The most tokens a row may hold.
    pub fn context_length(&self) -> usize {
        match self {
            Self::Gpt2(m) => m.context_length(),
            Self::Llama(m) => m.context_length(),
            Self::Gemma3(m) => m.context_length(),
        }
    }

    /// Width of the hidden states.
    pub fn width(&self) -> usize {
        match self {
            Self::Gpt2(m) => m.width(),
            Self::Llama(m) => m.width(),
            Self::Gemma3(m) => m.width(),
        }
    }

    /// `gpt2`, `llama` (which covers Qwen2 and Qwen3: the weights alone do not tell them apart)
    /// or `gemma3`.
    pub fn family(&self) -> &'static str {
        match self {
            Self::Gpt2(_) => "gpt2",
            Self::Llama(_) => "llama",
            Self::Gemma3(_) => "gemma3",
        }
    }

    pub fn num_layers(&self) -> usize {
        match self {
            Self::Gpt2(m) => m.h.len(),
            Self::Llama(m) => m.layers.len(),
            Self::Gemma3(m) => m.layers.len(),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Self::Gpt2(m) => m.device(),
            Self::Llama(m) => m.device(),
            Self::Gemma3(m) => m.device(),
        }
    }

    /// Hidden states after the final norm, `[batch, seq, d_model]`.
    ///
    /// `attention_mask` (`[batch, seq]`, 1 = real token, 0 = padding) hides padded keys; with
    /// left padding pass position ids that count only real tokens (see [`crate::left_pad`]).
    pub fn forward(&self, input_ids: Tensor<2, Int>, position_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        let [_, t] = input_ids.dims();
        let bias = attention_bias(attention_mask, t, t, &input_ids.device());
        self.run(input_ids, position_ids, bias, None)
    }

    /// Like [`CausalLm::forward`] for the new tokens only, attending also to everything in
    /// `cache`, which then holds the new tokens too. `attention_mask` covers the new tokens.
    pub fn forward_cached(
        &self,
        input_ids: Tensor<2, Int>,
        position_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        cache: &mut KvCache,
    ) -> Tensor<3> {
        let bias = cache.extend(attention_mask, self.num_layers());
        self.run(input_ids, position_ids, bias, Some(&mut cache.layers))
    }

    fn run(
        &self,
        input_ids: Tensor<2, Int>,
        position_ids: Tensor<2, Int>,
        bias: Tensor<4>,
        caches: Option<&mut Vec<LayerCache>>,
    ) -> Tensor<3> {
        match self {
            Self::Gpt2(m) => m.run(input_ids, position_ids, bias, caches),
            Self::Llama(m) => m.run(input_ids, position_ids, bias, caches),
            Self::Gemma3(m) => m.run(input_ids, position_ids, bias, caches),
        }
    }

    /// The LM head: hidden `[b, t, d]` -> logits `[b, t, vocab]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match self {
            Self::Gpt2(m) => m.logits(hidden),
            Self::Llama(m) => m.logits(hidden),
            Self::Gemma3(m) => m.logits(hidden),
        }
    }

    /// The LM head's weight, for products with its token rows ([`LmHead`]), when the logits are
    /// the plain product `hidden @ W` (no bias); `None` when they are not (soft-capped logits).
    pub fn head(&self) -> Option<LmHead> {
        let own_or_tied = |head: &Option<Projection>, embedding: &TokenEmbedding, device: &Device| match head {
            Some(head) => LmHead::Columns(head.weight_val(device)),
            None => embedding.head(device),
        };
        match self {
            Self::Gpt2(m) => Some(LmHead::Rows(m.wte.weight.val())),
            Self::Llama(m) => Some(own_or_tied(&m.lm_head, &m.embed_tokens, &m.device())),
            Self::Gemma3(m) => m.final_softcap.is_none().then(|| own_or_tied(&m.lm_head, &m.embed_tokens, &m.device())),
        }
    }
}

/// A model's `config.json`, by architecture.
// A handful exist at a time: the variants' sizes do not matter, and boxing one would cost clarity.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    Gpt2(GptConfig),
    Llama(LlamaConfig),
    Gemma3(Gemma3Config),
}

impl From<GptConfig> for ModelConfig {
    fn from(c: GptConfig) -> Self {
        Self::Gpt2(c)
    }
}

impl From<LlamaConfig> for ModelConfig {
    fn from(c: LlamaConfig) -> Self {
        Self::Llama(c)
    }
}

impl From<Gemma3Config> for ModelConfig {
    fn from(c: Gemma3Config) -> Self {
        Self::Gemma3(c)
    }
}

impl ModelConfig {
    /// Parses `config.json` bytes by its `model_type` (absent: GPT-2, as our first files were) and
    /// checks the model is one this crate computes exactly.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let model_type = match value.get("model_type") {
            None | Some(Value::Null) => "gpt2".to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => return Err(ConfigError::Unsupported { field: "model_type", problem: format!("{other} is not a string") }),
        };
        if model_type == "gpt2" {
            return Ok(Self::Gpt2(GptConfig::from_json_bytes(bytes)?));
        }
        if model_type == "gemma3_text" || model_type == "gemma3" {
            return Ok(Self::Gemma3(Gemma3Config::from_value(value)?));
        }
        if !LLAMA_FAMILY.contains(&model_type.as_str()) {
            let shown: String = model_type.chars().take(60).collect();
            return Err(ConfigError::Unsupported {
                field: "model_type",
                problem: format!("{shown:?} is an architecture tinyrlhf does not run; it runs {}", ARCHITECTURES.join(", ")),
            });
        }
        let config: LlamaConfig = serde_json::from_value(value).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(Self::Llama(config))
    }

    pub fn to_json(&self) -> String {
        match self {
            Self::Gpt2(c) => c.to_json(),
            Self::Llama(c) => serde_json::to_string_pretty(c).expect("a config always serialises"),
            Self::Gemma3(c) => serde_json::to_string_pretty(c).expect("a config always serialises"),
        }
    }

    /// A preset by name: `tiny`, `small`, `gpt2-124m` (GPT-2), `llama-tiny`, `smollm2-135m` (Llama),
    /// `qwen2.5-0.5b` (Qwen2).
    pub fn preset(name: &str, vocab_size: usize) -> Option<Self> {
        match name {
            "llama-tiny" => Some(Self::Llama(LlamaConfig::new(vocab_size, 128, 96, 4, 6, 2))),
            "smollm2-135m" => Some(Self::Llama(LlamaConfig::smollm2_135m(vocab_size))),
            "qwen2.5-0.5b" => Some(Self::Llama(LlamaConfig::qwen25_05b(vocab_size))),
            other => GptConfig::preset(other, vocab_size).map(Self::Gpt2),
        }
    }

    /// The names [`ModelConfig::preset`] takes.
    pub const PRESETS: [&'static str; 6] = ["tiny", "small", "gpt2-124m", "llama-tiny", "smollm2-135m", "qwen2.5-0.5b"];

    /// The vocabulary of the real model whose shape a preset copies (`smollm2-135m`: 49,152), so its
    /// head costs what the real one does; `None` for our own shapes.
    pub fn preset_vocab(name: &str) -> Option<usize> {
        match name {
            "smollm2-135m" => Some(49_152),
            "qwen2.5-0.5b" => Some(151_936),
            _ => None,
        }
    }

    /// `model_type`: `gpt2`, `llama`, `qwen2`, `qwen3` or `gemma3_text`.
    pub fn architecture(&self) -> &str {
        match self {
            Self::Gpt2(_) => "gpt2",
            Self::Llama(c) => &c.model_type,
            Self::Gemma3(c) => &c.model_type,
        }
    }

    /// `gpt2`, `llama` or `gemma3`, as [`CausalLm::family`].
    pub fn family(&self) -> &'static str {
        match self {
            Self::Gpt2(_) => "gpt2",
            Self::Llama(_) => "llama",
            Self::Gemma3(_) => "gemma3",
        }
    }

    /// Attention (query) heads.
    pub fn heads(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_head,
            Self::Llama(c) => c.num_attention_heads,
            Self::Gemma3(c) => c.num_attention_heads,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.vocab_size,
            Self::Llama(c) => c.vocab_size,
            Self::Gemma3(c) => c.vocab_size,
        }
    }

    pub fn context_length(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_positions,
            Self::Llama(c) => c.max_position_embeddings,
            Self::Gemma3(c) => c.max_position_embeddings,
        }
    }

    pub fn width(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_embd,
            Self::Llama(c) => c.hidden_size,
            Self::Gemma3(c) => c.hidden_size,
        }
    }

    pub fn num_layers(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_layer,
            Self::Llama(c) => c.num_hidden_layers,
            Self::Gemma3(c) => c.num_hidden_layers,
        }
    }

    /// Key/value heads (as many as query heads without grouped-query attention).
    pub fn kv_heads(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_head,
            Self::Llama(c) => c.kv_heads(),
            Self::Gemma3(c) => c.kv_heads(),
        }
    }

    /// Width of one layer's keys (or values) per token: what a KV cache holds per token and layer.
    pub fn kv_width(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_embd,
            Self::Llama(c) => c.kv_heads() * c.head_dim(),
            Self::Gemma3(c) => c.kv_heads() * c.head_dim,
        }
    }

    /// Width of the MLP's inner activations.
    pub fn mlp_width(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.mlp_width(),
            Self::Llama(c) => c.intermediate_size,
            Self::Gemma3(c) => c.intermediate_size,
        }
    }

    pub fn num_params(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.num_params(),
            Self::Llama(c) => c.num_params(),
            Self::Gemma3(c) => c.num_params(),
        }
    }

    /// What two models must share to read the same tokens into the same hidden states:
    /// architecture, vocabulary, context, width, layers.
    pub fn shape(&self) -> (String, usize, usize, usize, usize) {
        (self.architecture().to_owned(), self.vocab_size(), self.context_length(), self.width(), self.num_layers())
    }

    /// Sets dropout (GPT-2 only: the other families here have none).
    pub fn with_dropout(self, p: f64) -> Self {
        match self {
            Self::Gpt2(c) => Self::Gpt2(c.with_dropout(p)),
            other => other,
        }
    }

    /// Records the special token ids, as HF's config carries them.
    pub fn with_special_tokens(self, pad: u32, eos: u32) -> Self {
        match self {
            Self::Gpt2(c) => Self::Gpt2(c.with_special_tokens(pad, eos)),
            Self::Llama(c) => Self::Llama(c.with_special_tokens(pad, eos)),
            Self::Gemma3(c) => Self::Gemma3(c.with_special_tokens(pad, eos)),
        }
    }

    /// This architecture with every option it has (biases, norms, grouped heads, rope scaling, tied
    /// head) and its widths, cut to 2 layers, a 256-token vocabulary and a 64-token context: the
    /// same kernels as the full model at a size any device holds in a moment (a check of a
    /// backend's arithmetic runs on it).
    pub fn miniature(&self) -> Self {
        const LAYERS: usize = 2;
        const VOCAB: usize = 256;
        const CONTEXT: usize = 64;
        match self {
            Self::Gpt2(c) => {
                let mut c = c.clone();
                (c.n_layer, c.vocab_size, c.n_positions) = (c.n_layer.min(LAYERS), c.vocab_size.min(VOCAB), c.n_positions.min(CONTEXT));
                Self::Gpt2(c)
            }
            Self::Llama(c) => {
                let mut c = c.clone();
                c.num_hidden_layers = c.num_hidden_layers.min(LAYERS);
                (c.vocab_size, c.max_position_embeddings) = (c.vocab_size.min(VOCAB), c.max_position_embeddings.min(CONTEXT));
                if let Some(kinds) = &mut c.layer_types {
                    kinds.truncate(LAYERS);
                }
                Self::Llama(c)
            }
            Self::Gemma3(c) => {
                // Both kinds of layer, whatever the pattern: a sliding one and a full one.
                let mut c = c.clone();
                c.num_hidden_layers = c.num_hidden_layers.min(LAYERS);
                (c.vocab_size, c.max_position_embeddings) = (c.vocab_size.min(VOCAB), c.max_position_embeddings.min(CONTEXT));
                c.layer_types =
                    Some(vec![crate::gemma3_config::SLIDING.into(), crate::gemma3_config::FULL.into()][..c.num_hidden_layers].to_vec());
                c.sliding_window = c.sliding_window.min(CONTEXT / 4);
                Self::Gemma3(c)
            }
        }
    }

    /// A freshly initialised model of this shape.
    pub fn init(&self, device: &Device) -> CausalLm {
        match self {
            Self::Gpt2(c) => CausalLm::Gpt2(c.init(device)),
            Self::Llama(c) => CausalLm::Llama(c.init(device)),
            Self::Gemma3(c) => CausalLm::Gemma3(c.init(device)),
        }
    }
}

/// A language model with a scalar read-out at every position: the reward model and the value model.
/// Laid out as HF's `*ForSequenceClassification` (`transformer.*` for GPT-2, `model.*` for the
/// Llama family, `score.weight` `[1, d]`), plus a `score.bias` that centres rewards (HF's head has
/// none; a file without it loads with bias 0).
#[derive(Module, Debug)]
pub struct ScalarModel {
    pub transformer: CausalLm,
    pub score: Linear,
}

impl ScalarModel {
    /// The dense model this one computes ([`CausalLm::merged`]).
    pub fn merged(self) -> Self {
        Self { transformer: self.transformer.merged(), score: self.score }
    }

    /// Its adapters frozen ([`CausalLm::with_adapters_frozen`]), its head as it was.
    pub fn with_adapters_frozen(self) -> Self {
        Self { transformer: self.transformer.with_adapters_frozen(), score: self.score }
    }

    /// Puts a fresh head on `transformer` (its LM head, if it has its own, is dropped): weight
    /// ~ N(0, 1/sqrt(d + 1)) as in the RLHF papers' reward heads, bias 0.
    pub fn new(transformer: CausalLm) -> Self {
        let transformer = match transformer {
            CausalLm::Llama(m) => CausalLm::Llama(m.without_head()),
            CausalLm::Gemma3(m) => CausalLm::Gemma3(m.without_head()),
            gpt => gpt,
        };
        let (d, device) = (transformer.width(), transformer.device());
        let std = 1.0 / ((d + 1) as f64).sqrt();
        let score = Linear {
            weight: Initializer::Normal { mean: 0.0, std }.init([d, 1], &device),
            bias: Some(Initializer::Zeros.init([1], &device)),
        };
        // Drawn now rather than at first use, so the head depends only on the generator's state
        // here: workers that seed it just before making their copies get the same head.
        score.weight.val();
        Self { transformer, score }
    }

    /// One scalar per position, `[batch, seq]`. Arguments as in [`CausalLm::forward`].
    pub fn forward(&self, input_ids: Tensor<2, Int>, position_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<2> {
        let hidden = self.transformer.forward(input_ids, position_ids, attention_mask); // [b, t, d]
        let [b, t, _] = hidden.dims();
        self.score.forward(hidden).reshape([b, t])
    }
}
