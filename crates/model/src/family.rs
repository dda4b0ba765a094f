//! What the crate asks of an architecture. A family is one file (its model and forward, beside its
//! `config.json` reader) implementing [`Family`] for the model and [`FamilyConfig`] for the config,
//! and one line in `causal_lm.rs`' `families!` list, which makes the `CausalLm` and `ModelConfig`
//! variants, the dispatch, and the lists of `model_type`s, GGUF architectures and presets from the
//! constants here. LoRA's targets, checkpoint names, the sizes check, the KV cache and every
//! trainer ask through these traits, never by matching on the family.

use burn::tensor::{Device, Int, Tensor};
use serde_json::Value;

use crate::config::ConfigError;
use crate::embedding::TokenEmbedding;
use crate::gguf_config::GgufFamily;
use crate::kv_cache::LayerCache;
use crate::projection::{LmHead, Projection};

/// How Hugging Face names and lays out a family's weights, and what PEFT adapts in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HfLayout {
    /// The prefix of the transformer's weights: `transformer` (GPT-2), `model` (Llama, Gemma).
    pub prefix: &'static str,
    /// Its projections keep weights `[in, out]` (GPT-2's `Conv1D`, PEFT's `fan_in_fan_out`), where
    /// `nn.Linear` keeps `[out, in]`.
    pub fan_in_fan_out: bool,
    /// The token embeddings' module under the prefix (`embed_tokens`), stored `[vocab, d]` as
    /// burn stores them, whatever `fan_in_fan_out` says.
    pub embedding: &'static str,
    /// A layer's attention and MLP projections, by their HF paths inside the layer
    /// (`self_attn.q_proj`), each beside llama.cpp's tensor stem (`attn_q`): what LoRA adapts.
    pub projections: &'static [(&'static str, &'static str)],
}

impl HfLayout {
    /// The module names PEFT's `target_modules` lists: each projection's last name, once.
    pub fn lora_targets(&self) -> Vec<&'static str> {
        let mut targets = vec![];
        for (path, _) in self.projections {
            let name = path.rsplit('.').next().unwrap_or(path);
            if !targets.contains(&name) {
                targets.push(name);
            }
        }
        targets
    }
}

/// A named shape of a family ([`FamilyConfig::PRESETS`]): `make` gives it for a vocabulary size.
pub struct Preset<C> {
    pub name: &'static str,
    /// The vocabulary of the real model whose shape it copies (its head then costs what the real
    /// one's does); `None` for tinyrlhf's own shapes.
    pub vocab: Option<usize>,
    pub make: fn(usize) -> C,
}

/// A language model of one architecture: hidden states from token ids, logits from hidden states.
pub trait Family: Sized {
    /// `gpt2`, `llama` (which covers Qwen2 and Qwen3: the weights alone do not tell them apart), ...
    const NAME: &'static str;
    const HF: HfLayout;

    /// The model with `f` applied to each attention and MLP projection (LoRA's targets; not the LM
    /// head), with its HF module name (`model.layers.0.self_attn.q_proj`).
    fn map_projections(self, f: &mut impl FnMut(&str, Projection) -> Projection) -> Self;

    /// The model with `f` applied to its token embedding, where it is one that may stay packed.
    fn map_embedding(self, f: impl FnOnce(TokenEmbedding) -> TokenEmbedding) -> Self;

    fn vocab_size(&self) -> usize;

    /// The most tokens a row may hold.
    fn context_length(&self) -> usize;

    /// Width of the hidden states.
    fn width(&self) -> usize;

    fn num_layers(&self) -> usize;

    fn device(&self) -> Device;

    /// Hidden states after the final norm, `[b, t, d]`, of `input_ids` at `position_ids` under the
    /// additive attention `bias` (causal and padding); with `caches`, the new keys and values join
    /// each layer's cache. `CausalLm::forward` and `forward_cached` make the bias and the caches.
    fn run(
        &self,
        input_ids: Tensor<2, Int>,
        position_ids: Tensor<2, Int>,
        bias: Tensor<4>,
        caches: Option<&mut Vec<LayerCache>>,
    ) -> Tensor<3>;

    /// The LM head: hidden `[b, t, d]` -> logits `[b, t, vocab]`.
    fn logits(&self, hidden: Tensor<3>) -> Tensor<3>;

    /// The LM head's weight when the logits are the plain product `hidden @ W` (no bias, no cap).
    fn head(&self) -> Option<LmHead>;

    /// The same model without an LM head of its own (a reward or value model reads hidden states).
    fn without_head(self) -> Self;
}

/// A family's `config.json`: its shape, as every size estimate and cache asks it.
pub trait FamilyConfig: Sized + 'static {
    type Model: Family;

    /// The `model_type`s whose `config.json` this family reads.
    const MODEL_TYPES: &'static [&'static str];

    /// How llama.cpp writes this family's GGUF files, one row per `general.architecture`.
    const GGUF: &'static [GgufFamily] = &[];

    /// The shapes `tinyrlhf train --preset` and the benchmarks name.
    const PRESETS: &'static [Preset<Self>] = &[];

    /// Reads a parsed `config.json` whose `model_type` is one of [`Self::MODEL_TYPES`], checking
    /// that it describes a model this crate computes exactly.
    fn from_json_value(value: Value) -> Result<Self, ConfigError>;

    /// `model_type` (`gpt2`, `llama`, `qwen2`, `qwen3`, `gemma3_text`).
    fn architecture(&self) -> &str;

    /// Attention (query) heads.
    fn heads(&self) -> usize;

    /// Key/value heads (as many as query heads without grouped-query attention).
    fn kv_heads(&self) -> usize;

    fn head_dim(&self) -> usize;

    fn vocab_size(&self) -> usize;

    fn context_length(&self) -> usize;

    fn width(&self) -> usize;

    fn num_layers(&self) -> usize;

    /// Width of the MLP's inner activations.
    fn mlp_width(&self) -> usize;

    /// f32 values one token keeps in each layer for the backward pass, at the least (what every
    /// memory estimate counts): the MLP's three inner activations (gate, up and their product, or
    /// GPT-2's fc output, its GELU and the product's input) and six of the width (norm inputs and
    /// outputs, residuals, attention output). Measured on Qwen2.5-0.5B's shape: 3 inner + 7.5 widths.
    fn activations_per_layer_token(&self) -> usize {
        6 * self.width() + 3 * self.mlp_width()
    }

    /// Parameter count (a tied head counted once). Counted in u128 so any config from a file,
    /// however absurd, gives a number, not an overflow (usize is 32 bits on wasm32); saturates.
    fn num_params(&self) -> usize;

    /// Records the special token ids, as HF's config carries them.
    fn with_special_tokens(self, pad: u32, eos: u32) -> Self;

    /// Sets dropout, for a family that has any.
    fn with_dropout(self, _p: f64) -> Self {
        self
    }

    /// This shape with every option it has, cut to `layers`, `vocab` and `context` (each at most
    /// what it was), every kind of layer it has among them.
    fn miniature(self, layers: usize, vocab: usize, context: usize) -> Self;

    /// A freshly initialised model of this shape.
    fn init(&self, device: &Device) -> Self::Model;

    fn to_json(&self) -> String;
}
