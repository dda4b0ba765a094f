//! The Llama family, the whole model in one file: token embeddings, pre-RMSNorm blocks with
//! grouped-query attention and rotary position embeddings, a SwiGLU MLP, a final RMSNorm and a
//! tied or untied LM head. Qwen2 (q/k/v biases) and Qwen3 (per-head q/k RMSNorm, explicit
//! `head_dim`) are switches of the same blocks (see `llama_config.rs`).
//!
//! Field names are Hugging Face's (`embed_tokens`, `layers.{i}.self_attn.q_proj`, `mlp.gate_proj`,
//! `input_layernorm`, `norm`, `lm_head`), so checkpoints map onto them by path. burn's `Projection`
//! keeps its weight `[in, out]` where HF's `nn.Projection` keeps `[out, in]`: `checkpoint.rs` transposes
//! on the way in and out.
//!
//! Rotary embeddings rotate halves (HF's `rotate_half`) by each row's own position ids, so a
//! left-padded row computes exactly as the row alone (tested against transformers).

use burn::module::Module;
use burn::nn::{RmsNorm, RmsNormConfig};
use burn::tensor::{Device, Int, Tensor};

use serde_json::Value;

use crate::config::ConfigError;
use crate::decode_attention::{DecodeShape, attends_in_place};
use crate::decoder::{GatedMlp, LAYER_PROJECTIONS, grouped_attention, head_logits, linear, map_layer_projections, own_or_tied_head};
use crate::embedding::TokenEmbedding;
use crate::family::{Family, FamilyConfig, HfLayout, Preset};
use crate::gguf_config::GgufFamily;
use crate::kv_cache::LayerCache;
use crate::llama_config::{LLAMA_FAMILY, LlamaConfig};
use crate::own_kernels::{attention_fits, on_gpu_kernels};
use crate::projection::{LmHead, Projection, rows, rows_together};
use crate::rms_norm::{add_and_norm, rms_norm};
use crate::rope::{Rotary, apply_rope};
use crate::row_kernels::GateActivation;
use crate::train_attention::rotated_attention;

/// Causal grouped-query self-attention.
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub q_proj: Projection,
    pub k_proj: Projection,
    pub v_proj: Projection,
    pub o_proj: Projection,
    /// Qwen3's per-head RMSNorm of queries and keys, over `head_dim`.
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
}

impl SelfAttention {
    fn init(c: &LlamaConfig, device: &Device) -> Self {
        let (d, hd, h, kv) = (c.hidden_size, c.head_dim(), c.num_attention_heads, c.kv_heads());
        let norm = || c.qk_norm().then(|| RmsNormConfig::new(hd).with_epsilon(c.rms_norm_eps).init(device));
        Self {
            q_proj: linear(d, h * hd, c.qkv_bias(), device),
            k_proj: linear(d, kv * hd, c.qkv_bias(), device),
            v_proj: linear(d, kv * hd, c.qkv_bias(), device),
            o_proj: linear(h * hd, d, c.o_bias(), device),
            q_norm: norm(),
            k_norm: norm(),
            n_head: h,
            n_kv_head: kv,
            head_dim: hd,
        }
    }

    fn forward(&self, x: Tensor<3>, rope: &(Tensor<4>, Tensor<4>), bias: Tensor<4>, cache: Option<&mut LayerCache>) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (h, kv, hd) = (self.n_head, self.n_kv_head, self.head_dim);
        let heads = |x: Tensor<3>, n: usize, norm: &Option<RmsNorm>| {
            let x = x.reshape([b, t, n, hd]); // [b, t, n, hd]
            let x = match norm {
                Some(norm) => rms_norm(norm, x),
                None => x,
            };
            x.swap_dims(1, 2) // [b, n, t, hd]
        };
        let [q, k, v] = rows_together([&self.q_proj, &self.k_proj, &self.v_proj], x);
        let cache = match cache {
            Some(cache) if t == 1 && attends_in_place(&[q.device(), k.device(), v.device()], hd) => {
                return self.decode_one([q, k, v], rope, bias, cache);
            }
            cache => cache,
        };
        let (q, k, v) = (heads(q, h, &self.q_norm), heads(k, kv, &self.k_norm), heads(v, kv, &None));
        if cache.is_none() && attention_fits(hd) && on_gpu_kernels(&q.device()) {
            // One op turns the queries and the keys together, forward and backward.
            let out = rotated_attention(q, k, v, rope, bias); // [b, h, t, hd]
            return rows(&self.o_proj, out.swap_dims(1, 2).reshape([b, t, h * hd]));
        }
        let (q, k) = (apply_rope(q, rope), apply_rope(k, rope));
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v), // [b, kv, t_past + t, hd]
            None => (k, v),
        };
        let out = grouped_attention(q, k, v, bias); // [b, h, t, hd]
        rows(&self.o_proj, out.swap_dims(1, 2).reshape([b, t, h * hd])) // [b, t, d]
    }
}

impl SelfAttention {
    /// A decoded token's attention `[b, 1, d]` from its projections `[b, 1, n * hd]`, through the
    /// cache written in place (`decode_attention.rs`; one kernel on a GPU).
    fn decode_one(&self, [q, k, v]: [Tensor<3>; 3], rope: &(Tensor<4>, Tensor<4>), bias: Tensor<4>, cache: &mut LayerCache) -> Tensor<3> {
        let (b, h, kv, hd) = (q.dims()[0], self.n_head, self.n_kv_head, self.head_dim);
        let flat = |x: Tensor<3>, n: usize, norm: &Option<RmsNorm>| {
            let x = x.reshape([b, n, hd]);
            let x = match norm {
                Some(norm) => rms_norm(norm, x),
                None => x,
            };
            x.reshape([b, n * hd]) // [b, n * hd]
        };
        let qkv = [flat(q, h, &self.q_norm), flat(k, kv, &self.k_norm), flat(v, kv, &None)];
        let shape = DecodeShape { heads: h, kv_heads: kv, head_dim: hd, len: 0, window: 0, scale: (hd as f32).sqrt().recip() };
        let out = cache.attend_rotated(qkv, rope, bias, shape); // [b, h * hd]
        rows(&self.o_proj, out.reshape([b, 1, h * hd]))
    }
}

/// One pre-RMSNorm decoder layer.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: SelfAttention,
    pub post_attention_layernorm: RmsNorm,
    /// SwiGLU: down(silu(gate(x)) * up(x)).
    pub mlp: GatedMlp,
}

impl DecoderLayer {
    /// The residual stream `x` `[b, t, d]` (and `normed`, its `input_layernorm`) through the layer
    /// -> the stream after it and `next_norm` of it (the next layer's input norm, or the final
    /// norm): each residual sum is taken in the following norm's kernel on a GPU.
    fn forward(
        &self,
        x: Tensor<3>,
        normed: Tensor<3>,
        next_norm: &RmsNorm,
        rope: &(Tensor<4>, Tensor<4>),
        bias: Tensor<4>,
        cache: Option<&mut LayerCache>,
    ) -> (Tensor<3>, Tensor<3>) {
        let attended = self.self_attn.forward(normed, rope, bias, cache);
        let (x, normed) = add_and_norm(&self.post_attention_layernorm, x, attended);
        self.mlp.forward_added_normed(normed, x, next_norm)
    }
}

/// A Llama-family language model. `run` gives hidden states after the final norm,
/// [`Llama::logits`] applies the LM head (the embeddings when tied).
#[derive(Module, Debug)]
pub struct Llama {
    pub embed_tokens: TokenEmbedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// `None` when the head is tied to `embed_tokens`.
    pub lm_head: Option<Projection>,
    pub max_position_embeddings: usize,
    #[module(skip)]
    pub rotary: Rotary,
}

impl FamilyConfig for LlamaConfig {
    type Model = Llama;
    const MODEL_TYPES: &'static [&'static str] = &LLAMA_FAMILY;
    const GGUF: &'static [GgufFamily] = &[
        GgufFamily::llama_style("llama", "llama", "LlamaForCausalLM", true),
        GgufFamily::llama_style("qwen2", "qwen2", "Qwen2ForCausalLM", false),
        GgufFamily::llama_style("qwen3", "qwen3", "Qwen3ForCausalLM", false),
    ];
    const PRESETS: &'static [Preset<Self>] = &[
        Preset { name: "llama-tiny", vocab: None, make: |vocab| LlamaConfig::new(vocab, 128, 96, 4, 6, 2) },
        Preset { name: "smollm2-135m", vocab: Some(49_152), make: LlamaConfig::smollm2_135m },
        Preset { name: "qwen2.5-0.5b", vocab: Some(151_936), make: LlamaConfig::qwen25_05b },
    ];

    fn from_json_value(value: Value) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_value(value).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn architecture(&self) -> &str {
        &self.model_type
    }

    fn heads(&self) -> usize {
        self.num_attention_heads
    }

    fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn context_length(&self) -> usize {
        self.max_position_embeddings
    }

    fn width(&self) -> usize {
        self.hidden_size
    }

    fn num_layers(&self) -> usize {
        self.num_hidden_layers
    }

    fn mlp_width(&self) -> usize {
        self.intermediate_size
    }

    fn num_params(&self) -> usize {
        let [v, d, m, l, h, kv, hd] = [
            self.vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.kv_heads(),
            self.head_dim(),
        ]
        .map(|x| x as u128);
        let bias = if self.qkv_bias() { h * hd + 2 * kv * hd } else { 0 } + if self.o_bias() { d } else { 0 };
        let norms = if self.qk_norm() { 2 * hd } else { 0 };
        let attention = d * h * hd + 2 * d * kv * hd + h * hd * d + bias + norms;
        let block = attention + 3 * d * m + 2 * d;
        let head = if self.tie_word_embeddings { 0 } else { v * d };
        usize::try_from(v * d + l * block + d + head).unwrap_or(usize::MAX)
    }

    fn with_special_tokens(mut self, pad: u32, eos: u32) -> Self {
        self.pad_token_id = Some(pad.into());
        self.eos_token_id = Some(eos.into());
        self
    }

    fn miniature(mut self, layers: usize, vocab: usize, context: usize) -> Self {
        self.num_hidden_layers = self.num_hidden_layers.min(layers);
        (self.vocab_size, self.max_position_embeddings) = (self.vocab_size.min(vocab), self.max_position_embeddings.min(context));
        if let Some(kinds) = &mut self.layer_types {
            kinds.truncate(layers);
        }
        self
    }

    fn init(&self, device: &Device) -> Llama {
        let (d, m) = (self.hidden_size, self.intermediate_size);
        let norm = || RmsNormConfig::new(d).with_epsilon(self.rms_norm_eps).init(device);
        Llama {
            embed_tokens: TokenEmbedding::init(self.vocab_size, d, device),
            layers: (0..self.num_hidden_layers)
                .map(|_| DecoderLayer {
                    input_layernorm: norm(),
                    self_attn: SelfAttention::init(self, device),
                    post_attention_layernorm: norm(),
                    mlp: GatedMlp::init(d, m, GateActivation::Silu, device),
                })
                .collect(),
            norm: norm(),
            lm_head: (!self.tie_word_embeddings).then(|| linear(d, self.vocab_size, false, device)),
            max_position_embeddings: self.max_position_embeddings,
            rotary: Rotary { inv_freq: self.inv_freq() },
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a config always serialises")
    }
}

impl Family for Llama {
    const NAME: &'static str = "llama";
    const HF: HfLayout = HfLayout { prefix: "model", fan_in_fan_out: false, embedding: "embed_tokens", projections: &LAYER_PROJECTIONS };

    fn map_projections(self, f: &mut impl FnMut(&str, Projection) -> Projection) -> Self {
        let layers = self
            .layers
            .into_iter()
            .enumerate()
            .map(|(i, layer)| {
                let SelfAttention { q_proj, k_proj, v_proj, o_proj, .. } = layer.self_attn;
                let ([q_proj, k_proj, v_proj, o_proj], mlp) = map_layer_projections(i, [q_proj, k_proj, v_proj, o_proj], layer.mlp, f);
                let self_attn = SelfAttention { q_proj, k_proj, v_proj, o_proj, ..layer.self_attn };
                DecoderLayer { self_attn, mlp, ..layer }
            })
            .collect();
        Self { layers, ..self }
    }

    fn map_embedding(self, f: impl FnOnce(TokenEmbedding) -> TokenEmbedding) -> Self {
        Self { embed_tokens: f(self.embed_tokens), ..self }
    }

    fn vocab_size(&self) -> usize {
        self.embed_tokens.dims()[0]
    }

    fn context_length(&self) -> usize {
        self.max_position_embeddings
    }

    fn width(&self) -> usize {
        self.embed_tokens.dims()[1]
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn device(&self) -> Device {
        // The final norm is f32 wherever the model lives; the embedding may be packed on the host.
        self.norm.gamma.device()
    }

    fn run(
        &self,
        input_ids: Tensor<2, Int>,
        position_ids: Tensor<2, Int>,
        bias: Tensor<4>,
        mut caches: Option<&mut Vec<LayerCache>>,
    ) -> Tensor<3> {
        let rope = self.rotary.cos_sin(position_ids);
        let mut x = self.embed_tokens.forward(input_ids); // [b, t, d]
        let first_norm = self.layers.first().map_or(&self.norm, |layer| &layer.input_layernorm);
        let mut normed = rms_norm(first_norm, x.clone());
        for (i, layer) in self.layers.iter().enumerate() {
            let cache = caches.as_deref_mut().map(|c| &mut c[i]);
            let next_norm = self.layers.get(i + 1).map_or(&self.norm, |next| &next.input_layernorm);
            (x, normed) = layer.forward(x, normed, next_norm, &rope, bias.clone(), cache);
        }
        normed
    }

    fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = hidden.dims();
        let vocab = self.vocab_size();
        let flat = hidden.reshape([b * t, d]);
        head_logits(&self.lm_head, &self.embed_tokens, flat).reshape([b, t, vocab])
    }

    fn head(&self) -> Option<LmHead> {
        Some(own_or_tied_head(&self.lm_head, &self.embed_tokens, &self.device()))
    }

    fn without_head(self) -> Self {
        Self { lm_head: None, ..self }
    }
}
