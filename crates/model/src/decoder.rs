//! The pieces of a Llama-style decoder that the Llama family and Gemma 3 share: how a layer names
//! its seven projections (the one list LoRA's targets, checkpoint names and llama.cpp's tensor
//! names come from), grouped-query attention, the gated MLP, and the LM head (own or tied).
//! A family file puts them together with its own norms and embedding scale.

use burn::module::Module;
use burn::nn::RmsNorm;
use burn::tensor::{Device, Tensor};

use crate::decode_products::{added_product, gated_product};
use crate::embedding::TokenEmbedding;
use crate::gated::gated;
use crate::own_kernels::{attention_fits, on_gpu_kernels};
use crate::projection::{LmHead, Projection, project, project_together};
use crate::recompute::attention;
use crate::rms_norm::{add_and_norm, rms_norm};
use crate::row_kernels::GateActivation;

/// A decoder layer's projections by their HF paths under `model.layers.{i}.`, in the order
/// [`map_layer_projections`] visits them, each beside llama.cpp's tensor stem (`blk.{i}.attn_q`).
pub(crate) const LAYER_PROJECTIONS: [(&str, &str); 7] = [
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
];

/// HF's initialisation for these families: N(0, 0.02) weights, zero biases.
pub(crate) fn linear(d_in: usize, d_out: usize, bias: bool, device: &Device) -> Projection {
    Projection::init(d_in, d_out, 0.02, bias, device)
}

/// Grouped-query attention without repeating keys and values: the `groups` query heads that share
/// a key/value head are stacked along the query axis, `[b, kv * groups, t, hd]` ->
/// `[b, kv, groups * t, hd]` (HF's `repeat_kv` gives query head j the key/value head j / groups),
/// and the additive mask `[b or 1, 1, t, t_keys]` is tiled to match. Every backend's attention then sees
/// as many query as key heads, and nothing of the size of the keys is copied or summed back. On a
/// GPU the kernels read the shared heads themselves (`train_attention.rs`): nothing is stacked.
pub(crate) fn grouped_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>) -> Tensor<4> {
    if on_gpu_kernels(&q.device()) && attention_fits(q.dims()[3]) {
        // The GPU's kernels read each key/value head where it lies.
        return crate::train_attention::attention(q, k, v, bias);
    }
    let [b, h, t, hd] = q.dims();
    let kv = k.dims()[1];
    let groups = h / kv;
    if groups == 1 {
        return attention(q, k, v, bias);
    }
    let [bias_rows, _, _, t_keys] = bias.dims(); // bias_rows: b or 1
    let q = q.reshape([b, kv, groups * t, hd]);
    let bias = bias.unsqueeze_dim::<5>(2).expand([bias_rows, 1, groups, t, t_keys]).reshape([bias_rows, 1, groups * t, t_keys]);
    let out = attention(q, k, v, bias); // [b, kv, groups * t, hd]
    out.reshape([b, h, t, hd])
}

/// A gated MLP: down(act(gate(x)) * up(x)); SwiGLU with `silu` (Llama, Qwen), GeGLU with the tanh
/// `gelu` (Gemma).
#[derive(Module, Debug)]
pub struct GatedMlp {
    pub gate_proj: Projection,
    pub up_proj: Projection,
    pub down_proj: Projection,
    #[module(skip)]
    pub activation: GateActivation,
}

impl GatedMlp {
    pub(crate) fn init(d: usize, m: usize, activation: GateActivation, device: &Device) -> Self {
        Self {
            gate_proj: linear(d, m, false, device),
            up_proj: linear(d, m, false, device),
            down_proj: linear(m, d, false, device),
            activation,
        }
    }

    pub(crate) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        project(&self.down_proj, self.gated(x.reshape([b * t, d]))).reshape([b, t, d])
    }

    /// `(residual + self.forward(x), norm of that)`: decoding on a GPU sums the residual in the
    /// last product's kernel, anything else in the norm's ([`add_and_norm`]: one kernel on a GPU,
    /// training too).
    pub(crate) fn forward_added_normed(&self, x: Tensor<3>, residual: Tensor<3>, norm: &RmsNorm) -> (Tensor<3>, Tensor<3>) {
        let [b, t, d] = x.dims();
        let hidden = self.gated(x.reshape([b * t, d])); // [b * t, m]
        match added_product(&self.down_proj, &hidden, &residual.clone().reshape([b * t, d])) {
            Some(sum) => {
                let sum = sum.reshape([b, t, d]);
                (sum.clone(), rms_norm(norm, sum))
            }
            None => add_and_norm(norm, residual, project(&self.down_proj, hidden).reshape([b, t, d])),
        }
    }

    /// act(x @ gate) * (x @ up) for rows `x` `[n, d]` -> `[n, m]`.
    fn gated(&self, x: Tensor<2>) -> Tensor<2> {
        if let Some(hidden) = gated_product(&self.gate_proj, &self.up_proj, &x, self.activation) {
            return hidden;
        }
        let [gate, up] = project_together([&self.gate_proj, &self.up_proj], x); // [n, m] each
        gated(gate, up, self.activation)
    }
}

/// The attention and MLP projections of layer `i`, through `f` with their HF names
/// (`model.layers.{i}.self_attn.q_proj`), in [`LAYER_PROJECTIONS`]' order.
pub(crate) fn map_layer_projections(
    i: usize,
    [q, k, v, o]: [Projection; 4],
    mlp: GatedMlp,
    f: &mut impl FnMut(&str, Projection) -> Projection,
) -> ([Projection; 4], GatedMlp) {
    let GatedMlp { gate_proj, up_proj, down_proj, activation } = mlp;
    let mut mapped = [q, k, v, o, gate_proj, up_proj, down_proj]
        .into_iter()
        .zip(LAYER_PROJECTIONS)
        .map(|(projection, (part, _))| f(&format!("model.layers.{i}.{part}"), projection));
    let mut next = || mapped.next().expect("seven projections in, seven out");
    let attention = [next(), next(), next(), next()];
    (attention, GatedMlp { gate_proj: next(), up_proj: next(), down_proj: next(), activation })
}

/// Logits `[rows, vocab]` of hidden rows `[rows, d]` through an untied `lm_head` or the embeddings.
pub(crate) fn head_logits(lm_head: &Option<Projection>, embed_tokens: &TokenEmbedding, hidden: Tensor<2>) -> Tensor<2> {
    match lm_head {
        Some(head) => project(head, hidden),
        None => embed_tokens.tied_logits(hidden),
    }
}

/// The LM head's weight of a model with an untied `lm_head` or a head tied to `embed_tokens`.
pub(crate) fn own_or_tied_head(lm_head: &Option<Projection>, embed_tokens: &TokenEmbedding, device: &Device) -> LmHead {
    match lm_head {
        Some(head) => LmHead::Columns(head.weight_val(device)),
        None => embed_tokens.head(device),
    }
}
