//! GPT-2, the whole model in one file: embeddings, pre-LayerNorm blocks with causal multi-head
//! attention and a GELU MLP, and the tied LM head.
//!
//! Field names are Hugging Face's (`wte`, `h.{i}.attn.c_attn`, `ln_f`, …) so checkpoints map onto
//! them by path (see `checkpoint.rs`). burn's `Projection` stores its weight `[in, out]`, exactly as HF's
//! GPT-2 `Conv1D` does, so no weight is transposed on the way in or out.
//!
//! Padding is handled the way HF does it: an attention mask hides padded keys and explicit
//! position ids skip them, so a left-padded row gives the same logits on its real tokens as the row
//! alone (tested).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, Initializer, LayerNorm, LayerNormConfig};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Int, Tensor};

use serde_json::Value;

use crate::config::{ConfigError, GptConfig};
use crate::embedding::TokenEmbedding;
use crate::family::{Family, FamilyConfig, HfLayout, Preset};
use crate::kv_cache::LayerCache;
use crate::layer_norm::layer_norm;
use crate::projection::{LmHead, Projection, project, rows, tied_head};
use crate::recompute::attention;

/// GPT-2's initialisation: N(0, 0.02) weights, zero biases; projections into the residual stream
/// scaled by 1/sqrt(2 * n_layer) so the stream's variance does not grow with depth.
fn linear(d_in: usize, d_out: usize, std: f64, device: &Device) -> Projection {
    Projection::init(d_in, d_out, std, true, device)
}

fn new_layer_norm(config: &GptConfig, device: &Device) -> LayerNorm {
    LayerNormConfig::new(config.n_embd).with_epsilon(config.layer_norm_epsilon).init(device)
}

/// GPT-2's GELU, tanh approximation ("gelu_new"): 0.5 x (1 + tanh(u)) with
/// u = sqrt(2/pi) (x + 0.044715 x^3), computed as x * sigmoid(2u), the same function. On the CPU a
/// sigmoid is one `exp` whose backward reuses its output, where tanh costs two libm `tanhf` calls
/// (forward, and again in its backward): tanh was a fifth of a training step. x*x rather than powf:
/// WGSL's `pow` is undefined for negative bases, and GELU sees plenty of those.
fn gelu_new<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    const TWO_SQRT_2_OVER_PI: f64 = 2.0 * 0.797_884_560_802_865_4;
    let two_u = x.clone() * ((x.clone() * x.clone()) * (0.044715 * TWO_SQRT_2_OVER_PI) + TWO_SQRT_2_OVER_PI);
    x * sigmoid(two_u)
}

/// Causal self-attention with a fused query/key/value projection.
#[derive(Module, Debug)]
pub struct Attention {
    pub c_attn: Projection,
    pub c_proj: Projection,
    pub attn_dropout: Dropout,
    pub resid_dropout: Dropout,
    pub n_head: usize,
}

impl Attention {
    fn init(config: &GptConfig, device: &Device) -> Self {
        let d = config.n_embd;
        let proj_std = 0.02 / (2.0 * config.n_layer as f64).sqrt();
        Self {
            c_attn: linear(d, 3 * d, 0.02, device),
            c_proj: linear(d, d, proj_std, device),
            attn_dropout: DropoutConfig::new(config.attn_pdrop).init(),
            resid_dropout: DropoutConfig::new(config.resid_pdrop).init(),
            n_head: config.n_head,
        }
    }

    /// `bias` is 0 where a query may see a key and a large negative number where it may not, broadcast over
    /// heads. With a cache, the new keys and values are appended and attention spans all of them.
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>, cache: Option<&mut LayerCache>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let head_dim = d / self.n_head;
        let split_heads = |x: Tensor<3>| x.reshape([b, t, self.n_head, head_dim]).swap_dims(1, 2);

        let mut qkv = rows(&self.c_attn, x).chunk(3, 2); // 3 x [b, t, d]
        let v = split_heads(qkv.pop().unwrap()); // [b, h, t, hd]
        let k = split_heads(qkv.pop().unwrap());
        let q = split_heads(qkv.pop().unwrap());
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v), // [b, h, t_past + t, hd]
            None => (k, v),
        };

        let out = if self.attn_dropout.prob > 0.0 {
            let scores = q.matmul(k.swap_dims(2, 3)) / (head_dim as f64).sqrt(); // [b, h, t, t_keys]
            let probs = self.attn_dropout.forward(softmax(scores + bias, 3));
            probs.matmul(v)
        } else {
            // The fused attention: no score tensors are kept, in the forward or for the backward.
            attention(q, k, v, bias)
        }; // [b, h, t, hd]
        let out = out.swap_dims(1, 2).reshape([b, t, d]); // [b, t, d]
        self.resid_dropout.forward(rows(&self.c_proj, out))
    }
}

/// The position-wise feed-forward network: d -> 4d -> GELU -> d.
#[derive(Module, Debug)]
pub struct Mlp {
    pub c_fc: Projection,
    pub c_proj: Projection,
    pub dropout: Dropout,
}

impl Mlp {
    fn init(config: &GptConfig, device: &Device) -> Self {
        let proj_std = 0.02 / (2.0 * config.n_layer as f64).sqrt();
        Self {
            c_fc: linear(config.n_embd, config.mlp_width(), 0.02, device),
            c_proj: linear(config.mlp_width(), config.n_embd, proj_std, device),
            dropout: DropoutConfig::new(config.resid_pdrop).init(),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let hidden = gelu_new(project(&self.c_fc, x.reshape([b * t, d]))); // [b * t, 4d]
        self.dropout.forward(project(&self.c_proj, hidden).reshape([b, t, d]))
    }
}

/// One pre-LayerNorm transformer block.
#[derive(Module, Debug)]
pub struct Block {
    pub ln_1: LayerNorm,
    pub attn: Attention,
    pub ln_2: LayerNorm,
    pub mlp: Mlp,
}

impl Block {
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>, cache: Option<&mut LayerCache>, epsilon: f64) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(layer_norm(&self.ln_1, epsilon, x), bias, cache);
        x.clone() + self.mlp.forward(layer_norm(&self.ln_2, epsilon, x))
    }
}

/// The GPT-2 transformer. `run` gives hidden states; [`Gpt::logits`] applies the tied LM head.
#[derive(Module, Debug)]
pub struct Gpt {
    pub wte: Embedding,
    pub wpe: Embedding,
    pub drop: Dropout,
    pub h: Vec<Block>,
    pub ln_f: LayerNorm,
    /// Every LayerNorm's epsilon (`layer_norm_epsilon`): burn's module keeps its own private, and
    /// the GPU's one-kernel norm needs it.
    #[module(skip)]
    pub layer_norm_epsilon: f64,
}

impl FamilyConfig for GptConfig {
    type Model = Gpt;
    const MODEL_TYPES: &'static [&'static str] = &["gpt2"];
    const PRESETS: &'static [Preset<Self>] = &[
        Preset { name: "tiny", vocab: None, make: GptConfig::tiny },
        Preset { name: "small", vocab: None, make: GptConfig::small },
        Preset { name: "gpt2-124m", vocab: None, make: GptConfig::gpt2_124m },
    ];

    fn from_json_value(value: Value) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_value(value).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn architecture(&self) -> &str {
        "gpt2"
    }

    fn heads(&self) -> usize {
        self.n_head
    }

    fn kv_heads(&self) -> usize {
        self.n_head
    }

    fn head_dim(&self) -> usize {
        self.n_embd / self.n_head.max(1)
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn context_length(&self) -> usize {
        self.n_positions
    }

    fn width(&self) -> usize {
        self.n_embd
    }

    fn num_layers(&self) -> usize {
        self.n_layer
    }

    fn mlp_width(&self) -> usize {
        self.n_inner.unwrap_or(self.n_embd.saturating_mul(4))
    }

    fn num_params(&self) -> usize {
        let [v, p, d, l, m] = [self.vocab_size, self.n_positions, self.n_embd, self.n_layer, self.mlp_width()].map(|x| x as u128);
        let block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * m + m) + (m * d + d);
        usize::try_from(v * d + p * d + l * block + 2 * d).unwrap_or(usize::MAX)
    }

    fn with_special_tokens(mut self, pad: u32, eos: u32) -> Self {
        self.pad_token_id = Some(pad);
        self.eos_token_id = Some(eos);
        self.bos_token_id = Some(eos);
        self
    }

    /// Sets the three dropout probabilities at once (pretraining may use it; RLHF stages keep 0).
    fn with_dropout(mut self, p: f64) -> Self {
        self.embd_pdrop = p;
        self.attn_pdrop = p;
        self.resid_pdrop = p;
        self
    }

    fn miniature(mut self, layers: usize, vocab: usize, context: usize) -> Self {
        (self.n_layer, self.vocab_size, self.n_positions) =
            (self.n_layer.min(layers), self.vocab_size.min(vocab), self.n_positions.min(context));
        self
    }

    fn init(&self, device: &Device) -> Gpt {
        let embedding = |rows, std| Embedding { weight: Initializer::Normal { mean: 0.0, std }.init([rows, self.n_embd], device) };
        Gpt {
            wte: embedding(self.vocab_size, 0.02),
            wpe: embedding(self.n_positions, 0.02),
            drop: DropoutConfig::new(self.embd_pdrop).init(),
            h: (0..self.n_layer)
                .map(|_| Block {
                    ln_1: new_layer_norm(self, device),
                    attn: Attention::init(self, device),
                    ln_2: new_layer_norm(self, device),
                    mlp: Mlp::init(self, device),
                })
                .collect(),
            ln_f: new_layer_norm(self, device),
            layer_norm_epsilon: self.layer_norm_epsilon,
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a config always serialises")
    }
}

impl Family for Gpt {
    const NAME: &'static str = "gpt2";
    /// GPT-2's `Conv1D` keeps `[in, out]`, as burn does: nothing is transposed on the way in or out.
    const HF: HfLayout = HfLayout {
        prefix: "transformer",
        fan_in_fan_out: true,
        embedding: "wte",
        projections: &[("attn.c_attn", "attn_qkv"), ("attn.c_proj", "attn_output"), ("mlp.c_fc", "ffn_up"), ("mlp.c_proj", "ffn_down")],
    };

    fn map_projections(self, f: &mut impl FnMut(&str, Projection) -> Projection) -> Self {
        let h = self
            .h
            .into_iter()
            .enumerate()
            .map(|(i, block)| {
                let name = |part: &str| format!("transformer.h.{i}.{part}");
                let attn = Attention {
                    c_attn: f(&name("attn.c_attn"), block.attn.c_attn),
                    c_proj: f(&name("attn.c_proj"), block.attn.c_proj),
                    ..block.attn
                };
                let mlp = Mlp { c_fc: f(&name("mlp.c_fc"), block.mlp.c_fc), c_proj: f(&name("mlp.c_proj"), block.mlp.c_proj), ..block.mlp };
                Block { attn, mlp, ..block }
            })
            .collect();
        Self { h, ..self }
    }

    /// GPT-2's embedding stays burn's: it is never packed.
    fn map_embedding(self, _f: impl FnOnce(TokenEmbedding) -> TokenEmbedding) -> Self {
        self
    }

    fn vocab_size(&self) -> usize {
        self.wte.weight.dims()[0]
    }

    fn context_length(&self) -> usize {
        self.wpe.weight.dims()[0]
    }

    fn width(&self) -> usize {
        self.wte.weight.dims()[1]
    }

    fn num_layers(&self) -> usize {
        self.h.len()
    }

    fn device(&self) -> Device {
        self.wte.weight.device()
    }

    fn run(
        &self,
        input_ids: Tensor<2, Int>,
        position_ids: Tensor<2, Int>,
        bias: Tensor<4>,
        mut caches: Option<&mut Vec<LayerCache>>,
    ) -> Tensor<3> {
        let x = self.wte.forward(input_ids) + self.wpe.forward(position_ids); // [b, t, d]
        let mut x = self.drop.forward(x);
        for (i, block) in self.h.iter().enumerate() {
            let cache = caches.as_deref_mut().map(|c| &mut c[i]);
            x = block.forward(x, bias.clone(), cache, self.layer_norm_epsilon);
        }
        layer_norm(&self.ln_f, self.layer_norm_epsilon, x)
    }

    /// The tied LM head.
    fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = hidden.dims();
        let wte = self.wte.weight.val(); // [vocab, d]
        let vocab = wte.dims()[0];
        tied_head(hidden.reshape([b * t, d]), wte).reshape([b, t, vocab])
    }

    fn head(&self) -> Option<LmHead> {
        Some(LmHead::Rows(self.wte.weight.val()))
    }

    /// Its head is its embedding: a reward model keeps it and reads hidden states.
    fn without_head(self) -> Self {
        self
    }
}
