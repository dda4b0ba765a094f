//! Gemma 3's text decoder, the whole model in one file: token embeddings scaled by sqrt(d), blocks
//! with four RMSNorms each (before and after attention, before and after the MLP) that scale by
//! `1 + w`, grouped-query attention with per-head q/k norms, rotary embeddings with a base per kind
//! of layer, sliding-window layers among full ones, a GeGLU MLP (gelu, tanh form), a final norm, the
//! tied head, and soft-capped logits when the config sets them.
//!
//! `attn_logit_softcapping` is read and not applied: transformers' Gemma 3 keeps the setting but
//! passes no cap to its attention, and llama.cpp's Gemma 3 graph has none (Gemma 2 capped scores;
//! Gemma 3 replaced that with q/k norms). The fixture sets it, so applying it would fail there.
//!
//! Field names are Hugging Face's (`embed_tokens`, `layers.{i}.self_attn.q_norm`,
//! `pre_feedforward_layernorm`, ...), so checkpoints map onto them by path as the Llama family's do.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Int, Tensor};

use serde_json::Value;

use crate::config::ConfigError;
use crate::decode_attention::{DecodeShape, attends_in_place};
use crate::decoder::{GatedMlp, grouped_attention, head_logits, linear, map_layer_projections, own_or_tied_head};
use crate::embedding::TokenEmbedding;
use crate::family::{Family, FamilyConfig, HfLayout};
use crate::gemma3_config::{FULL, GEMMA3_GGUF, Gemma3Config, SLIDING};
use crate::gguf_config::GgufFamily;
use crate::kv_cache::{LayerCache, window_bias};
use crate::llama::Llama;
use crate::projection::{LmHead, Projection, rows, rows_together};
use crate::rms_norm::{plus_one_add_and_norm, plus_one_rms_norm};
use crate::rope::{Rotary, apply_rope};
use crate::row_kernels::GateActivation;

/// Gemma's RMSNorm: x / rms(x) * (1 + w), over the last axis (its weights start at zero).
#[derive(Module, Debug)]
pub struct GemmaRmsNorm {
    pub weight: Param<Tensor<1>>,
    pub epsilon: f64,
}

impl GemmaRmsNorm {
    fn new(d: usize, epsilon: f64, device: &Device) -> Self {
        Self { weight: Initializer::Zeros.init([d], device), epsilon }
    }

    /// One kernel on a GPU (`rms_norm.rs`); these ops, the reference, on the CPU.
    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if let Some(normed) = plus_one_rms_norm(self.weight.val(), self.epsilon, x.clone()) {
            return normed;
        }
        let d = self.weight.dims()[0];
        let rms = (x.clone().square().mean_dim(D - 1) + self.epsilon).sqrt(); // [..., 1]
        let scale = self.weight.val() + 1.0;
        let shape: [usize; D] = std::array::from_fn(|i| if i == D - 1 { d } else { 1 });
        x / rms * scale.reshape(shape)
    }

    /// `(x + delta, norm(x + delta))`: one kernel on a GPU.
    fn add_and_forward<const D: usize>(&self, x: Tensor<D>, delta: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
        if let Some(both) = plus_one_add_and_norm(self.weight.val(), self.epsilon, x.clone(), delta.clone()) {
            return both;
        }
        let sum = x + delta;
        (sum.clone(), self.forward(sum))
    }
}

/// Causal grouped-query self-attention with q/k norms.
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub q_proj: Projection,
    pub k_proj: Projection,
    pub v_proj: Projection,
    pub o_proj: Projection,
    pub q_norm: GemmaRmsNorm,
    pub k_norm: GemmaRmsNorm,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// sqrt(head_dim / query_pre_attn_scalar): applied to the queries, the scores are scaled by
    /// `query_pre_attn_scalar^-1/2` where attention divides by sqrt(head_dim).
    pub query_scale: f64,
}

impl SelfAttention {
    fn init(c: &Gemma3Config, device: &Device) -> Self {
        let (d, hd, h, kv) = (c.hidden_size, c.head_dim, c.num_attention_heads, c.kv_heads());
        Self {
            q_proj: linear(d, h * hd, c.attention_bias, device),
            k_proj: linear(d, kv * hd, c.attention_bias, device),
            v_proj: linear(d, kv * hd, c.attention_bias, device),
            o_proj: linear(h * hd, d, c.attention_bias, device),
            q_norm: GemmaRmsNorm::new(hd, c.rms_norm_eps, device),
            k_norm: GemmaRmsNorm::new(hd, c.rms_norm_eps, device),
            n_head: h,
            n_kv_head: kv,
            head_dim: hd,
            query_scale: (hd as f64 / c.query_pre_attn_scalar).sqrt(),
        }
    }

    fn forward(&self, x: Tensor<3>, rope: &(Tensor<4>, Tensor<4>), bias: Tensor<4>, cache: Option<&mut LayerCache>) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (h, kv, hd) = (self.n_head, self.n_kv_head, self.head_dim);
        let heads = |x: Tensor<3>, n: usize| x.reshape([b, t, n, hd]).swap_dims(1, 2); // [b, n, t, hd]
        let [q, k, v] = rows_together([&self.q_proj, &self.k_proj, &self.v_proj], x);
        let cache = match cache {
            Some(cache) if t == 1 && attends_in_place(&[q.device(), k.device(), v.device()], hd) => {
                return self.decode_one([q, k, v], rope, bias, cache);
            }
            cache => cache,
        };
        let (q, k, v) = (heads(q, h), heads(k, kv), heads(v, kv));
        let q = apply_rope(self.q_norm.forward(q), rope) * self.query_scale;
        let k = apply_rope(self.k_norm.forward(k), rope);
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
    /// cache written in place (`decode_attention.rs`; one kernel on a GPU); a sliding layer's window is in `bias`.
    fn decode_one(&self, [q, k, v]: [Tensor<3>; 3], rope: &(Tensor<4>, Tensor<4>), bias: Tensor<4>, cache: &mut LayerCache) -> Tensor<3> {
        let (b, h, kv, hd) = (q.dims()[0], self.n_head, self.n_kv_head, self.head_dim);
        let flat = |x: Tensor<3>, n: usize, norm: Option<&GemmaRmsNorm>| {
            let x = x.reshape([b, n, hd]);
            let x = norm.map_or(x.clone(), |norm| norm.forward(x));
            x.reshape([b, n * hd]) // [b, n * hd]
        };
        let qkv = [flat(q, h, Some(&self.q_norm)), flat(k, kv, Some(&self.k_norm)), flat(v, kv, None)];
        // The queries' scale joins the scores' 1 / sqrt(hd).
        let scale = (self.query_scale / (hd as f64).sqrt()) as f32;
        let shape = DecodeShape { heads: h, kv_heads: kv, head_dim: hd, len: 0, window: 0, scale };
        let out = cache.attend_rotated(qkv, rope, bias, shape); // [b, h * hd]
        rows(&self.o_proj, out.reshape([b, 1, h * hd]))
    }
}

/// One decoder layer: each sublayer's output is normed before it joins the residual stream.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub input_layernorm: GemmaRmsNorm,
    pub self_attn: SelfAttention,
    pub post_attention_layernorm: GemmaRmsNorm,
    pub pre_feedforward_layernorm: GemmaRmsNorm,
    /// GeGLU: down(gelu_tanh(gate(x)) * up(x)).
    pub mlp: GatedMlp,
    pub post_feedforward_layernorm: GemmaRmsNorm,
    /// A sliding-window layer (else full attention).
    pub sliding: bool,
}

impl DecoderLayer {
    /// The residual stream `x` `[b, t, d]` (and `normed`, its `input_layernorm`) through the layer
    /// -> the stream after it and `next_norm` of it (the next layer's input norm, or the final
    /// norm): each residual sum taken in its norm's kernel on a GPU.
    fn forward(
        &self,
        x: Tensor<3>,
        normed: Tensor<3>,
        next_norm: &GemmaRmsNorm,
        rope: &(Tensor<4>, Tensor<4>),
        bias: Tensor<4>,
        cache: Option<&mut LayerCache>,
    ) -> (Tensor<3>, Tensor<3>) {
        let attended = self.self_attn.forward(normed, rope, bias, cache);
        let (x, normed) = self.pre_feedforward_layernorm.add_and_forward(x, self.post_attention_layernorm.forward(attended));
        let fed = self.mlp.forward(normed);
        next_norm.add_and_forward(x, self.post_feedforward_layernorm.forward(fed))
    }
}

/// A Gemma 3 text model. `run` gives hidden states after the final norm, [`Gemma3::logits`]
/// applies the tied head (soft-capped when the config says).
#[derive(Module, Debug)]
pub struct Gemma3 {
    pub embed_tokens: TokenEmbedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: GemmaRmsNorm,
    /// `None` when the head is tied to `embed_tokens` (every released Gemma 3).
    pub lm_head: Option<Projection>,
    pub max_position_embeddings: usize,
    pub sliding_window: usize,
    pub final_softcap: Option<f64>,
    #[module(skip)]
    pub rotary_sliding: Rotary,
    #[module(skip)]
    pub rotary_full: Rotary,
}

impl FamilyConfig for Gemma3Config {
    type Model = Gemma3;
    /// The text model's, and the multimodal one's whose `text_config` is read.
    const MODEL_TYPES: &'static [&'static str] = &["gemma3_text", "gemma3"];
    const GGUF: &'static [GgufFamily] = &[GEMMA3_GGUF];

    fn from_json_value(value: Value) -> Result<Self, ConfigError> {
        Self::from_value(value)
    }

    fn architecture(&self) -> &str {
        &self.model_type
    }

    fn heads(&self) -> usize {
        self.num_attention_heads
    }

    fn kv_heads(&self) -> usize {
        self.num_key_value_heads
    }

    fn head_dim(&self) -> usize {
        self.head_dim
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

    /// Llama's count and Gemma's own: two more norms a layer (after attention and after the MLP) and
    /// attention wider than the model (270M: 4 heads of 256 on a width of 640), whose queries and
    /// output are kept. Measured in the tab on Gemma 3 270M (sizes.spec.ts, 2026-11-27).
    fn activations_per_layer_token(&self) -> usize {
        8 * self.hidden_size + 2 * self.num_attention_heads * self.head_dim + 3 * self.intermediate_size
    }

    fn num_params(&self) -> usize {
        let [v, d, m, l, h, kv, hd] = [
            self.vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.num_key_value_heads,
            self.head_dim,
        ]
        .map(|x| x as u128);
        let bias = if self.attention_bias { h * hd + 2 * kv * hd + d } else { 0 };
        let attention = 2 * d * h * hd + 2 * d * kv * hd + bias + 2 * hd;
        let block = attention + 3 * d * m + 4 * d;
        let head = if self.tie_word_embeddings { 0 } else { v * d };
        usize::try_from(v * d + l * block + d + head).unwrap_or(usize::MAX)
    }

    fn with_special_tokens(mut self, pad: u32, eos: u32) -> Self {
        self.pad_token_id = Some(pad.into());
        self.eos_token_id = Some(eos.into());
        self
    }

    /// Both kinds of layer, whatever the pattern: a sliding one then a full one, and a window
    /// shorter than the context.
    fn miniature(mut self, layers: usize, vocab: usize, context: usize) -> Self {
        self.num_hidden_layers = self.num_hidden_layers.min(layers);
        (self.vocab_size, self.max_position_embeddings) = (self.vocab_size.min(vocab), self.max_position_embeddings.min(context));
        let kinds = (0..self.num_hidden_layers).map(|i| if i % 2 == 0 { SLIDING } else { FULL }.to_owned());
        self.layer_types = Some(kinds.collect());
        self.sliding_window = self.sliding_window.min(context / 4);
        self
    }

    fn init(&self, device: &Device) -> Gemma3 {
        let (d, m, eps) = (self.hidden_size, self.intermediate_size, self.rms_norm_eps);
        let norm = || GemmaRmsNorm::new(d, eps, device);
        let (rotary_sliding, rotary_full) = self.rotaries();
        Gemma3 {
            embed_tokens: TokenEmbedding::init(self.vocab_size, d, device),
            layers: self
                .layer_kinds()
                .iter()
                .map(|kind| DecoderLayer {
                    input_layernorm: norm(),
                    self_attn: SelfAttention::init(self, device),
                    post_attention_layernorm: norm(),
                    pre_feedforward_layernorm: norm(),
                    mlp: GatedMlp::init(d, m, GateActivation::GeluTanh, device),
                    post_feedforward_layernorm: norm(),
                    sliding: kind == SLIDING,
                })
                .collect(),
            norm: norm(),
            lm_head: (!self.tie_word_embeddings).then(|| linear(d, self.vocab_size, false, device)),
            max_position_embeddings: self.max_position_embeddings,
            sliding_window: self.sliding_window,
            final_softcap: self.final_logit_softcapping,
            rotary_sliding,
            rotary_full,
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a config always serialises")
    }
}

impl Family for Gemma3 {
    const NAME: &'static str = "gemma3";
    const HF: HfLayout = Llama::HF;

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
        self.norm.weight.device()
    }

    /// Sliding layers add their window to `bias`.
    fn run(
        &self,
        input_ids: Tensor<2, Int>,
        position_ids: Tensor<2, Int>,
        bias: Tensor<4>,
        mut caches: Option<&mut Vec<LayerCache>>,
    ) -> Tensor<3> {
        let [_, _, t_query, t_keys] = bias.dims();
        let sliding_bias = bias.clone() + window_bias(t_query, t_keys, self.sliding_window, &bias.device());
        let (rope_sliding, rope_full) = (self.rotary_sliding.cos_sin(position_ids.clone()), self.rotary_full.cos_sin(position_ids));
        // Scaled in the embedding's precision, as transformers does: sqrt(d) rounded to f32.
        let scale = (self.width() as f32).sqrt();
        let mut x = self.embed_tokens.forward(input_ids) * scale; // [b, t, d]
        let first_norm = self.layers.first().map_or(&self.norm, |layer| &layer.input_layernorm);
        let mut normed = first_norm.forward(x.clone());
        for (i, layer) in self.layers.iter().enumerate() {
            let cache = caches.as_deref_mut().map(|c| &mut c[i]);
            let (rope, bias) = if layer.sliding { (&rope_sliding, sliding_bias.clone()) } else { (&rope_full, bias.clone()) };
            let next_norm = self.layers.get(i + 1).map_or(&self.norm, |next| &next.input_layernorm);
            (x, normed) = layer.forward(x, normed, next_norm, rope, bias, cache);
        }
        normed
    }

    /// Soft-capped when the config says.
    fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = hidden.dims();
        let flat = hidden.reshape([b * t, d]);
        let logits = head_logits(&self.lm_head, &self.embed_tokens, flat);
        let logits = match self.final_softcap {
            Some(cap) => (logits / cap).tanh() * cap,
            None => logits,
        };
        logits.reshape([b, t, self.vocab_size()])
    }

    /// None when the logits are soft-capped: they are not the plain product.
    fn head(&self) -> Option<LmHead> {
        self.final_softcap.is_none().then(|| own_or_tied_head(&self.lm_head, &self.embed_tokens, &self.device()))
    }

    fn without_head(self) -> Self {
        Self { lm_head: None, ..self }
    }
}
