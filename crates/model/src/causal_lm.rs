//! One model type for every architecture: [`CausalLm`] (candle's `enum Model` pattern) is what the
//! trainers, the sampler and both edges hold, and [`ModelConfig`] is its `config.json`, read by
//! `model_type`. Both are made by the one list of families, `families!` below: a new architecture
//! is its file (a model implementing [`Family`], a config implementing [`FamilyConfig`]) and a line
//! there.
//!
//! burn's derive puts the variant's name into every parameter path (`Gpt2.h.0.attn.c_attn.weight`);
//! `checkpoint.rs` maps such paths to each architecture's Hugging Face names, so saved files,
//! optimizer state and LoRA targets keep the names they had.

use burn::module::Module;
use burn::nn::{Initializer, Linear};
use burn::tensor::{Device, Int, Tensor};
use serde_json::Value;

use crate::config::ConfigError;
use crate::embedding::TokenEmbedding;
use crate::family::{Family, FamilyConfig, HfLayout};
use crate::gguf_config::GgufFamily;
use crate::gguf_quants::GgmlType;
use crate::kv_cache::{KvCache, attention_bias};
use crate::packed::PackedWeight;
use crate::projection::{LmHead, Projection};

/// Makes, from one line per family (`Variant(model type, config type)`), the two enums, their
/// dispatch (`each_family!`), and what the crate looks up by family: the HF layout of a variant
/// burn names in a parameter path, the config of a `model_type`, the GGUF architectures, the
/// presets. `$d` is a `$` handed in, so the macro can write a macro of its own.
macro_rules! families {
    ($d:tt $($variant:ident($model:ty, $config:ty)),+ $(,)?) => {
        /// A causal language model of any supported architecture.
        #[derive(Module, Debug)]
        pub enum CausalLm {
            $($variant($model),)+
        }

        /// A model's `config.json`, by architecture.
        // A handful exist at a time: the variants' sizes do not matter, and boxing one would cost clarity.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq)]
        pub enum ModelConfig {
            $($variant($config),)+
        }

        $(impl From<$config> for ModelConfig {
            fn from(c: $config) -> Self {
                Self::$variant(c)
            }
        })+

        /// `$body` with `$m` bound to the family's model (or config) inside `$value`, whatever its
        /// variant; with `=> $to`, the result wrapped in `$to`'s variant of the same name.
        macro_rules! each_family {
            (config $d value:expr, |$d m:ident| $d body:expr) => {
                match $d value {
                    $(ModelConfig::$variant($d m) => $d body,)+
                }
            };
            ($d value:expr, $d from:ident => $d to:ident, |$d m:ident| $d body:expr) => {
                match $d value {
                    $($d from::$variant($d m) => $d to::$variant($d body),)+
                }
            };
            ($d value:expr, |$d m:ident| $d body:expr) => {
                match $d value {
                    $(CausalLm::$variant($d m) => $d body,)+
                }
            };
        }

        /// The HF layout of the family whose `CausalLm` variant burn names `variant` in a parameter path.
        pub(crate) fn hf_layout(variant: &str) -> Option<HfLayout> {
            $(if variant == stringify!($variant) {
                return Some(<$model as Family>::HF);
            })+
            None
        }

        /// The `model_type`s tinyrlhf computes, each family's in turn.
        pub fn architectures() -> Vec<&'static str> {
            [$(<$config as FamilyConfig>::MODEL_TYPES),+].concat()
        }

        /// The architectures a GGUF file may name, each family's rows in turn.
        pub(crate) fn gguf_families() -> impl Iterator<Item = &'static GgufFamily> {
            [$(<$config as FamilyConfig>::GGUF),+].into_iter().flatten()
        }

        impl ModelConfig {
            /// The config of the family that reads `model_type`, or `None` if none does.
            fn of_model_type(model_type: &str, value: Value) -> Option<Result<Self, ConfigError>> {
                $(if <$config as FamilyConfig>::MODEL_TYPES.contains(&model_type) {
                    return Some(<$config as FamilyConfig>::from_json_value(value).map(Self::$variant));
                })+
                None
            }

            /// A preset by name ([`ModelConfig::presets`]), for a vocabulary of `vocab_size`.
            pub fn preset(name: &str, vocab_size: usize) -> Option<Self> {
                $(if let Some(p) = <$config as FamilyConfig>::PRESETS.iter().find(|p| p.name == name) {
                    return Some(Self::$variant((p.make)(vocab_size)));
                })+
                None
            }

            /// The names [`ModelConfig::preset`] takes, each with the vocabulary of the real model
            /// whose shape it copies (`smollm2-135m`: 49,152), so its head costs what the real
            /// one's does; `None` for tinyrlhf's own shapes.
            pub fn presets() -> Vec<(&'static str, Option<usize>)> {
                let mut found = vec![];
                $(found.extend(<$config as FamilyConfig>::PRESETS.iter().map(|p| (p.name, p.vocab)));)+
                found
            }
        }
    };
}

families! {$
    Gpt2(crate::gpt::Gpt, crate::config::GptConfig),
    Llama(crate::llama::Llama, crate::llama_config::LlamaConfig),
    Gemma3(crate::gemma3::Gemma3, crate::gemma3_config::Gemma3Config),
    Mistral(crate::llama::Llama, crate::mistral::MistralConfig),
}

fn layout_of<F: Family>(_: &F) -> HfLayout {
    F::HF
}

fn name_of<F: Family>(_: &F) -> &'static str {
    F::NAME
}

impl CausalLm {
    /// The model with `f` applied to each attention and MLP projection (LoRA's targets), with its
    /// HF module name (`model.layers.0.self_attn.q_proj`).
    pub(crate) fn map_projections(self, mut f: impl FnMut(&str, Projection) -> Projection) -> Self {
        each_family!(self, CausalLm => CausalLm, |m| m.map_projections(&mut f))
    }

    /// The model with `f` applied to its token embedding (GPT-2's stays burn's: it is never packed).
    pub(crate) fn map_embedding(self, f: impl FnOnce(TokenEmbedding) -> TokenEmbedding) -> Self {
        each_family!(self, CausalLm => CausalLm, |m| m.map_embedding(f))
    }

    /// Each attention and MLP projection's HF module name and burn's `[in, out]`: the shapes of
    /// the model's matrix products (what `tinyrlhf bench --products` times one by one).
    pub fn projection_dims(&self) -> Vec<(String, [usize; 2])> {
        let mut found = vec![];
        self.clone().map_projections(|name, projection| {
            found.push((name.to_owned(), projection.dims()));
            projection
        });
        found
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

    /// The same model with its frozen weights as a GGUF file of these types holds them (what
    /// llama.cpp's `llama-quantize` writes): every attention and MLP projection packed as
    /// `projections`, the token embedding (and a tied head) as `embedding`; norms, biases and
    /// GPT-2's embeddings stay f32. `None` if a type is not one [`crate::quantize`] writes, a row is
    /// not whole blocks of it, or a projection is packed already or carries an adapter.
    pub fn quantized(self, projections: GgmlType, embedding: GgmlType) -> Option<Self> {
        let mut whole = true;
        let model = self.map_projections(|_, p| {
            p.clone().packed_as(projections).unwrap_or_else(|| {
                whole = false;
                p
            })
        });
        let model = model.map_embedding(|e| {
            e.clone().packed_as(embedding).unwrap_or_else(|| {
                whole = false;
                e
            })
        });
        whole.then_some(model)
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
        each_family!(self, |m| m.vocab_size())
    }

    /// The most tokens a row may hold.
    pub fn context_length(&self) -> usize {
        each_family!(self, |m| m.context_length())
    }

    /// Width of the hidden states.
    pub fn width(&self) -> usize {
        each_family!(self, |m| m.width())
    }

    /// `gpt2`, `llama` (which covers Qwen2 and Qwen3: the weights alone do not tell them apart)
    /// or `gemma3`.
    pub fn family(&self) -> &'static str {
        each_family!(self, |m| name_of(m))
    }

    /// How Hugging Face names its weights and what PEFT adapts in it.
    pub fn hf_layout(&self) -> HfLayout {
        each_family!(self, |m| layout_of(m))
    }

    pub fn num_layers(&self) -> usize {
        each_family!(self, |m| m.num_layers())
    }

    pub fn device(&self) -> Device {
        each_family!(self, |m| m.device())
    }

    /// Hidden states after the final norm, `[batch, seq, d_model]`.
    ///
    /// `attention_mask` (`[batch, seq]`, 1 = real token, 0 = padding) hides padded keys; with
    /// left padding pass position ids that count only real tokens (see [`crate::left_pad`]).
    pub fn forward(&self, input_ids: Tensor<2, Int>, position_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        let [_, t] = input_ids.dims();
        let bias = attention_bias(attention_mask, t, t, &input_ids.device());
        each_family!(self, |m| m.run(input_ids, position_ids, bias, None))
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
        each_family!(self, |m| m.run(input_ids, position_ids, bias, Some(&mut cache.layers)))
    }

    /// The LM head: hidden `[b, t, d]` -> logits `[b, t, vocab]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        each_family!(self, |m| m.logits(hidden))
    }

    /// The LM head's weight, for products with its token rows ([`LmHead`]), when the logits are
    /// the plain product `hidden @ W` (no bias); `None` when they are not (soft-capped logits).
    pub fn head(&self) -> Option<LmHead> {
        each_family!(self, |m| m.head())
    }

    /// The same model without an LM head of its own (a reward or value model reads hidden states).
    pub fn without_head(self) -> Self {
        each_family!(self, CausalLm => CausalLm, |m| m.without_head())
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
        Self::of_model_type(&model_type, value).unwrap_or_else(|| {
            let shown: String = model_type.chars().take(60).collect();
            let problem = format!("{shown:?} is an architecture tinyrlhf does not run; it runs {}", architectures().join(", "));
            Err(ConfigError::Unsupported { field: "model_type", problem })
        })
    }

    pub fn to_json(&self) -> String {
        each_family!(config self, |c| c.to_json())
    }

    /// The vocabulary of the real model whose shape the preset `name` copies ([`Self::presets`]).
    pub fn preset_vocab(name: &str) -> Option<usize> {
        Self::presets().into_iter().find(|(preset, _)| *preset == name).and_then(|(_, vocab)| vocab)
    }

    /// The preset names, for a message: `tiny, small, ...`.
    pub fn preset_names() -> String {
        Self::presets().iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
    }

    /// `model_type`: `gpt2`, `llama`, `qwen2`, `qwen3` or `gemma3_text` ([`architectures`]).
    pub fn architecture(&self) -> &str {
        each_family!(config self, |c| c.architecture())
    }

    /// `gpt2`, `llama` or `gemma3`, as [`CausalLm::family`].
    pub fn family(&self) -> &'static str {
        fn name<C: FamilyConfig>(_: &C) -> &'static str {
            C::Model::NAME
        }
        each_family!(config self, |c| name(c))
    }

    /// Attention (query) heads.
    pub fn heads(&self) -> usize {
        each_family!(config self, |c| c.heads())
    }

    pub fn vocab_size(&self) -> usize {
        each_family!(config self, |c| c.vocab_size())
    }

    pub fn context_length(&self) -> usize {
        each_family!(config self, |c| c.context_length())
    }

    pub fn width(&self) -> usize {
        each_family!(config self, |c| c.width())
    }

    pub fn num_layers(&self) -> usize {
        each_family!(config self, |c| c.num_layers())
    }

    /// Key/value heads (as many as query heads without grouped-query attention).
    pub fn kv_heads(&self) -> usize {
        each_family!(config self, |c| c.kv_heads())
    }

    /// Width of one layer's keys (or values) per token: what a KV cache holds per token and layer.
    pub fn kv_width(&self) -> usize {
        each_family!(config self, |c| c.kv_heads() * c.head_dim())
    }

    /// Width of the MLP's inner activations.
    pub fn mlp_width(&self) -> usize {
        each_family!(config self, |c| c.mlp_width())
    }

    /// f32 values one token keeps in each layer for the backward pass, at the least
    /// ([`FamilyConfig::activations_per_layer_token`]).
    pub fn activations_per_layer_token(&self) -> usize {
        each_family!(config self, |c| c.activations_per_layer_token())
    }

    pub fn num_params(&self) -> usize {
        each_family!(config self, |c| c.num_params())
    }

    /// What two models must share to read the same tokens into the same hidden states:
    /// architecture, vocabulary, context, width, layers.
    pub fn shape(&self) -> (String, usize, usize, usize, usize) {
        (self.architecture().to_owned(), self.vocab_size(), self.context_length(), self.width(), self.num_layers())
    }

    /// Sets dropout (GPT-2 only: the other families here have none).
    pub fn with_dropout(self, p: f64) -> Self {
        each_family!(self, ModelConfig => ModelConfig, |c| c.with_dropout(p))
    }

    /// Records the special token ids, as HF's config carries them.
    pub fn with_special_tokens(self, pad: u32, eos: u32) -> Self {
        each_family!(self, ModelConfig => ModelConfig, |c| c.with_special_tokens(pad, eos))
    }

    /// This architecture with every option it has (biases, norms, grouped heads, rope scaling, tied
    /// head, kinds of layer) and its widths, cut to 2 layers, a 256-token vocabulary and a 64-token
    /// context: the same kernels as the full model at a size any device holds in a moment (a check
    /// of a backend's arithmetic runs on it).
    pub fn miniature(&self) -> Self {
        each_family!(self.clone(), ModelConfig => ModelConfig, |c| c.miniature(2, 256, 64))
    }

    /// A freshly initialised model of this shape.
    pub fn init(&self, device: &Device) -> CausalLm {
        each_family!(self, ModelConfig => CausalLm, |c| c.init(device))
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
        let transformer = transformer.without_head();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn every_family() -> Vec<ModelConfig> {
        let gemma3 = serde_json::json!({"model_type": "gemma3_text", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 64});
        let mistral = serde_json::json!({"model_type": "mistral", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64, "sliding_window": 32});
        let mut found: Vec<ModelConfig> = ["tiny", "llama-tiny"].iter().map(|p| ModelConfig::preset(p, 64).unwrap()).collect();
        for json in [gemma3, mistral] {
            found.push(ModelConfig::from_json_bytes(json.to_string().as_bytes()).unwrap());
        }
        found
    }

    #[test]
    fn each_family_visits_exactly_the_projections_its_layout_names_and_lora_adapts_them() {
        for config in every_family() {
            let model = config.init(&Device::flex());
            let layout = model.hf_layout();
            // Layer 0's, `model.layers.0.self_attn.q_proj` -> `self_attn.q_proj`.
            let visited: Vec<String> = model
                .projection_dims()
                .into_iter()
                .filter_map(|(name, _)| {
                    let parts: Vec<&str> = name.splitn(4, '.').collect();
                    (parts[2] == "0").then(|| parts[3].to_owned())
                })
                .collect();
            let listed: Vec<&str> = layout.projections.iter().map(|(path, _)| *path).collect();
            assert_eq!(visited, listed.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{}", config.architecture());
            let targets = layout.lora_targets();
            assert!(listed.iter().all(|path| targets.contains(&path.rsplit('.').next().unwrap())), "{}", config.architecture());
        }
    }

    #[test]
    fn every_architecture_the_list_names_is_read_and_others_are_refused_naming_them() {
        let names = architectures();
        for expected in ["gpt2", "llama", "qwen2", "qwen3", "gemma3_text", "gemma3", "mistral"] {
            assert!(names.contains(&expected), "{expected} missing from {names:?}");
        }
        for config in every_family() {
            let again = ModelConfig::from_json_bytes(config.to_json().as_bytes()).unwrap();
            assert_eq!(again, config);
        }
        let err = ModelConfig::from_json_bytes(br#"{"model_type": "phi3"}"#).unwrap_err().to_string();
        assert!(err.contains("\"phi3\"") && err.contains("mistral") && err.contains("gemma3_text"), "{err}");
        let mut gguf: Vec<&str> = gguf_families().map(|f| f.gguf).collect();
        gguf.dedup();
        assert_eq!(gguf, ["llama", "qwen2", "qwen3", "gemma3", "llama"]);
        assert_eq!(crate::gguf_config::gguf_architecture("mistral"), Some(("llama", true)));
    }
}
