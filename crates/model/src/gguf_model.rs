//! A GGUF file as a model folder: its `general.architecture` and `{arch}.*` hyperparameters become
//! Hugging Face's `config.json`, and llama.cpp's tensor names and layouts become HF's, so every
//! stage loads a `.gguf` through the same code as a folder. Bytes arrive in pieces ([`GgufStream`]):
//! the tab reads a person's 100 MB file in slices, each tensor is widened to f32 once its last byte
//! is in, and its raw bytes are let go.
//!
//! What llama.cpp's converter changed is undone here: for `llama` it permuted the rows of the query
//! and key projections (`LlamaModel.permute`, for ggml's interleaved rotation; HF and we rotate
//! halves), Llama 3's rope scaling it stored as per-frequency factors (`rope_freqs`) instead of
//! settings, from which the settings are recovered and checked, and to Gemma 3's norms (which
//! scale by `1 + w`) it added the one. What a Gemma 3 file leaves out, llama.cpp decides in its
//! code, and the config says the same ([`gemma3_settings`]).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::checkpoint::{CheckpointError, Weights};
use crate::gguf::{GgufError, GgufHeader, GgufTensor, GgufValue, tensor_f32};
use crate::gguf_quants::GgmlType;
use crate::packed::PackedWeight;

/// How one architecture a GGUF file may name is laid out, in llama.cpp's terms and HF's.
#[derive(Debug)]
struct GgufFamily {
    /// `general.architecture`.
    gguf: &'static str,
    model_type: &'static str,
    class: &'static str,
    /// A layer's norms: llama.cpp's stem and HF's.
    norms: &'static [(&'static str, &'static str)],
    /// llama.cpp permuted the query and key rows (`LlamaModel.permute`).
    permuted: bool,
    /// What the converter added to every norm weight (Gemma's `1 + w`).
    norm_shift: f32,
}

const LLAMA_NORMS: [(&str, &str); 2] = [("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm")];
const GEMMA3_NORMS: [(&str, &str); 4] = [
    ("attn_norm", "input_layernorm"),
    ("post_attention_norm", "post_attention_layernorm"),
    ("ffn_norm", "pre_feedforward_layernorm"),
    ("post_ffw_norm", "post_feedforward_layernorm"),
];

/// The architectures a GGUF file may name.
const FAMILIES: [GgufFamily; 4] = [
    GgufFamily { gguf: "llama", model_type: "llama", class: "LlamaForCausalLM", norms: &LLAMA_NORMS, permuted: true, norm_shift: 0.0 },
    GgufFamily { gguf: "qwen2", model_type: "qwen2", class: "Qwen2ForCausalLM", norms: &LLAMA_NORMS, permuted: false, norm_shift: 0.0 },
    GgufFamily { gguf: "qwen3", model_type: "qwen3", class: "Qwen3ForCausalLM", norms: &LLAMA_NORMS, permuted: false, norm_shift: 0.0 },
    GgufFamily {
        gguf: "gemma3",
        model_type: "gemma3_text",
        class: "Gemma3ForCausalLM",
        norms: &GEMMA3_NORMS,
        permuted: false,
        norm_shift: 1.0,
    },
];

/// llama.cpp's architecture name of a model type (`gemma3_text` -> `gemma3`), and whether its
/// converter permuted the query and key rows.
pub(crate) fn gguf_architecture(model_type: &str) -> Option<(&'static str, bool)> {
    FAMILIES.iter().find(|f| f.model_type == model_type).map(|f| (f.gguf, f.permuted))
}

/// A whole GGUF file read: the HF config it describes, its weights under HF names, and its
/// metadata (the tokenizer's vocabulary, merges and chat template are there).
#[derive(Debug)]
pub struct GgufModel {
    pub config_json: Vec<u8>,
    pub weights: Weights,
    pub metadata: BTreeMap<String, GgufValue>,
}

impl GgufModel {
    /// The file's bytes handed to a [`GgufStream`] a slice at a time: whole, its tensors' bytes
    /// stayed in the stream until the last one was read, a second copy of the file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let mut stream = GgufStream::new();
        for slice in bytes.chunks(GgufStream::SLICE) {
            stream.push(slice)?;
        }
        stream.finish()
    }
}

/// What the header says about turning llama.cpp's tensors into HF's.
#[derive(Debug)]
struct Layout {
    family: &'static GgufFamily,
    config: Value,
    /// The rope base and head size, when Llama 3's scaling factors are among the tensors.
    rope_freqs: Option<(f64, usize)>,
    /// `llama` files have permuted query/key rows: (query heads, key/value heads).
    permuted_heads: Option<(usize, usize)>,
}

/// Bytes of a GGUF file pushed in order, piece by piece, becoming a [`GgufModel`].
#[derive(Debug, Default)]
pub struct GgufStream {
    header: Option<(GgufHeader, Layout)>,
    /// Bytes received and not yet consumed; `pending[0]` is the file's byte `consumed`.
    pending: Vec<u8>,
    consumed: usize,
    next: usize,
    weights: Weights,
    rope_factors: Option<Vec<f32>>,
}

impl GgufStream {
    /// A good size for the pieces pushed: the stream holds what it was given until each tensor in
    /// it is complete, so pieces much larger than a tensor only add a copy of them.
    pub const SLICE: usize = 16 << 20;

    pub fn new() -> Self {
        Self::default()
    }

    /// The file's next bytes. Errors as soon as what has arrived cannot be a model we run.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), CheckpointError> {
        self.pending.extend_from_slice(bytes);
        if self.header.is_none() {
            let header = match GgufHeader::read(&self.pending) {
                Ok(header) => header,
                Err(GgufError::Truncated(_)) => return Ok(()),
                Err(e) => return Err(format(e.to_string())),
            };
            let layout = layout(&header)?;
            self.header = Some((header, layout));
        }
        let (header, layout) = self.header.as_ref().expect("read above");
        let available = self.consumed + self.pending.len();
        let mut done_to = self.consumed;
        while let Some(tensor) = header.tensors.get(self.next) {
            if tensor.end > available {
                break;
            }
            if let Some((name, packed)) =
                packed_projection(tensor, &self.pending[tensor.start - self.consumed..tensor.end - self.consumed], layout)?
            {
                self.weights.insert_packed(name, packed);
                done_to = tensor.end;
                self.next += 1;
                continue;
            }
            let values = tensor_f32(tensor, &self.pending, self.consumed).map_err(|e| format(e.to_string()))?;
            if tensor.name == "rope_freqs.weight" {
                self.rope_factors = Some(values.clone());
            }
            if let Some((name, shape, values)) = hf_tensor(tensor, values, layout)? {
                self.weights.insert_values(name, shape, values)?;
            }
            done_to = tensor.end;
            self.next += 1;
        }
        // Until the data begins, the header's bytes stay: they are read again whole.
        if self.next > 0 {
            self.pending.drain(..done_to - self.consumed);
            self.consumed = done_to;
        }
        Ok(())
    }

    /// The HF config the header describes, once it has arrived (Llama 3's rope scaling aside,
    /// which waits for its tensor): enough to size the model before its weights are read.
    pub fn config_json(&self) -> Option<Vec<u8>> {
        self.header.as_ref().map(|(_, layout)| serde_json::to_vec(&layout.config).expect("a JSON value serialises"))
    }

    /// Bytes the model's weights will take once loaded (the projections kept packed, every other
    /// tensor f32), once the header has arrived: enough to size the model before its weights are read.
    pub fn held_bytes(&self) -> Option<u64> {
        let (header, layout) = self.header.as_ref()?;
        let held = |t: &GgufTensor| {
            if stays_packed(t, layout.family) { (t.end - t.start) as u64 } else { 4 * t.shape.iter().product::<usize>() as u64 }
        };
        // Llama 3's rope factors go into the config, not the weights.
        Some(header.tensors.iter().filter(|t| t.name != "rope_freqs.weight").map(held).sum())
    }

    pub fn finish(self) -> Result<GgufModel, CheckpointError> {
        let Some((header, layout)) = self.header else {
            return Err(format(format!("the file ends at byte {}, inside its header", self.pending.len())));
        };
        if let Some(tensor) = header.tensors.get(self.next) {
            let arrived = self.consumed + self.pending.len();
            return Err(format(format!(
                "the file ends at byte {arrived}, inside tensor `{}` (which ends at byte {})",
                tensor.name, tensor.end
            )));
        }
        let mut config = layout.config;
        if let (Some((theta, head_dim)), Some(factors)) = (layout.rope_freqs, &self.rope_factors) {
            config["rope_parameters"] = llama3_rope(factors, theta, head_dim)?;
        }
        let config_json = serde_json::to_vec_pretty(&config).expect("a JSON value serialises");
        Ok(GgufModel { config_json, weights: self.weights, metadata: header.metadata })
    }
}

fn format(reason: String) -> CheckpointError {
    CheckpointError::Gguf(reason)
}

/// A metadata value the config needs, or an error naming the key.
fn required(header: &GgufHeader, key: &str) -> Result<u64, CheckpointError> {
    header.get(key).and_then(GgufValue::as_u64).ok_or_else(|| format(format!("metadata `{key}` is missing or not a whole number")))
}

/// An f32 from the file as the decimal it was written from (1e-5, not 9.99999974e-6).
fn decimal(value: &GgufValue) -> Option<f64> {
    match value {
        GgufValue::F32(v) => v.to_string().parse().ok(),
        other => other.as_f64(),
    }
}

/// The HF config a header describes, and how its tensors are laid out.
fn layout(header: &GgufHeader) -> Result<Layout, CheckpointError> {
    let arch = header.get("general.architecture").and_then(GgufValue::as_str).unwrap_or("(none)");
    let Some(family) = FAMILIES.iter().find(|f| f.gguf == arch) else {
        let shown: String = arch.chars().take(60).collect();
        let known: Vec<&str> = FAMILIES.iter().map(|f| f.gguf).collect();
        return Err(format(format!("general.architecture is {shown:?}; tinyrlhf runs GGUF files of {}", known.join(", "))));
    };
    let key = |k: &str| format!("{arch}.{k}");
    let hidden = required(header, &key("embedding_length"))?;
    let heads = required(header, &key("attention.head_count"))?;
    let kv_heads = match header.get(&key("attention.head_count_kv")) {
        None => heads,
        Some(_) => required(header, &key("attention.head_count_kv"))?,
    };
    let layers = required(header, &key("block_count"))?;
    let embeddings = header.tensor("token_embd.weight").ok_or_else(|| format("it has no tensor `token_embd.weight`".into()))?;
    let mut config = json!({
        "model_type": family.model_type,
        "architectures": [family.class],
        "vocab_size": embeddings.shape[0],
        "hidden_size": hidden,
        "intermediate_size": required(header, &key("feed_forward_length"))?,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "hidden_act": "silu",
        "max_position_embeddings": required(header, &key("context_length"))?,
        "rms_norm_eps": header.get(&key("attention.layer_norm_rms_epsilon")).and_then(decimal).unwrap_or(1e-6),
        "tie_word_embeddings": header.tensor("output.weight").is_none(),
        "attention_bias": header.tensor("blk.0.attn_q.bias").is_some(),
        "rope_parameters": rope(header, &key)?,
    });
    if let Some(head_dim) = header.get(&key("attention.key_length")) {
        config["head_dim"] = head_dim.as_u64().into();
    }
    if family.gguf == "gemma3" {
        gemma3_settings(header, &mut config, layers, hidden / heads.max(1))?;
    }
    for (hf, gguf) in [("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"), ("pad_token_id", "padding_token_id")] {
        if let Some(id) = header.get(&format!("tokenizer.ggml.{gguf}")).and_then(GgufValue::as_u64) {
            config[hf] = id.into();
        }
    }
    let permuted_heads = family.permuted.then_some((heads as usize, kv_heads as usize));
    // Llama 3's scaling is in a tensor's values: the config waits for them.
    let rope_freqs = header.tensor("rope_freqs.weight").map(|_| {
        let head_dim = header.get(&key("rope.dimension_count")).and_then(GgufValue::as_u64).unwrap_or(hidden / heads.max(1));
        (config["rope_parameters"]["rope_theta"].as_f64().unwrap_or(10_000.0), head_dim as usize)
    });
    Ok(Layout { family, config, permuted_heads, rope_freqs })
}

/// Gemma 3's keys in `config` (which holds the Llama family's): what the file says, and what
/// llama.cpp decides for a key the file leaves out (`src/models/gemma3.cpp`): with a window, layers
/// slide by `attention.sliding_window_pattern` (a flag per layer, or every n-th full; 6 when
/// absent) with rope base `rope.freq_base_swa` (10k when absent) and no scaling; without one, every
/// layer is full. Queries are scaled by `head_dim^-1/2`, by `(hidden / heads)^-1/2` for the 62-layer 27B.
fn gemma3_settings(header: &GgufHeader, config: &mut Value, layers: u64, hidden_per_head: u64) -> Result<(), CheckpointError> {
    let head_dim = config["head_dim"].as_u64().unwrap_or(256);
    config["head_dim"] = head_dim.into();
    config["hidden_activation"] = "gelu_pytorch_tanh".into();
    config["query_pre_attn_scalar"] = (if layers == 62 { hidden_per_head } else { head_dim }).into();
    let window = header.get("gemma3.attention.sliding_window").and_then(GgufValue::as_u64).filter(|&w| w > 0);
    let sliding: Vec<bool> = match (window, header.get("gemma3.attention.sliding_window_pattern")) {
        (None, _) => vec![false; layers as usize],
        (Some(_), Some(GgufValue::Array(flags))) => {
            let flags: Option<Vec<bool>> = flags.iter().map(|f| if let GgufValue::Bool(b) = f { Some(*b) } else { None }).collect();
            flags.filter(|f| f.len() as u64 == layers).ok_or_else(|| {
                format(format!("metadata `gemma3.attention.sliding_window_pattern` is not one true/false for each of the {layers} layers"))
            })?
        }
        (Some(_), pattern) => {
            let n = pattern.and_then(GgufValue::as_u64).unwrap_or(6);
            (0..layers).map(|i| n == 0 || i % n < n - 1).collect()
        }
    };
    config["layer_types"] = sliding.iter().map(|&s| if s { "sliding_attention" } else { "full_attention" }).collect();
    config["sliding_window"] = window.unwrap_or(4096).into();
    let local_theta = header.get("gemma3.rope.freq_base_swa").and_then(decimal).unwrap_or(10_000.0);
    let full = config["rope_parameters"].take();
    config["rope_parameters"] = json!({
        "full_attention": full,
        "sliding_attention": {"rope_type": "default", "rope_theta": local_theta},
    });
    if let Some(cap) = header.get("gemma3.final_logit_softcapping").and_then(decimal) {
        config["final_logit_softcapping"] = cap.into();
    }
    if let Some(map) = config.as_object_mut() {
        for llama_only in ["hidden_act", "attention_bias"] {
            map.remove(llama_only);
        }
    }
    Ok(())
}

/// HF's `rope_parameters`: the base frequency, and the scaling the file states (`linear`) or
/// implies by its factors (Llama 3's `rope_freqs`).
fn rope(header: &GgufHeader, key: &dyn Fn(&str) -> String) -> Result<Value, CheckpointError> {
    let theta = header.get(&key("rope.freq_base")).and_then(decimal).unwrap_or(10_000.0);
    let scaling = header.get(&key("rope.scaling.type")).and_then(GgufValue::as_str).unwrap_or("none");
    match scaling {
        "none" => {}
        "linear" => {
            let factor = header.get(&key("rope.scaling.factor")).and_then(decimal).unwrap_or(1.0);
            return Ok(json!({"rope_type": "linear", "rope_theta": theta, "factor": factor}));
        }
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(format(format!(
                "metadata `{}` is {shown:?}; tinyrlhf computes none, linear and Llama 3's",
                key("rope.scaling.type")
            )));
        }
    }
    Ok(json!({"rope_type": "default", "rope_theta": theta}))
}

/// HF's Llama 3 `rope_parameters` from the factors of `rope_freqs`.
fn llama3_rope(factors: &[f32], theta: f64, head_dim: usize) -> Result<Value, CheckpointError> {
    let (factor, low, high, original) = llama3_settings(factors, theta, head_dim).ok_or_else(|| {
        format("tensor `rope_freqs.weight` does not follow Llama 3's rope scaling, the only one tinyrlhf reads from it".into())
    })?;
    Ok(json!({"rope_type": "llama3", "rope_theta": theta, "factor": factor, "low_freq_factor": low,
        "high_freq_factor": high, "original_max_position_embeddings": original as u64}))
}

/// (factor, low_freq_factor, high_freq_factor, original context) that give `factors` under HF's
/// Llama 3 formula. Llama 3 models all use low 1 and high 4; the original context follows from a
/// frequency in the smooth band (or, with none there, from the gap between the bands), and the
/// result is checked against every factor.
fn llama3_settings(factors: &[f32], theta: f64, head_dim: usize) -> Option<(f64, f64, f64, f64)> {
    let (low, high) = (1.0, 4.0);
    let factor = factors.iter().fold(1.0f64, |m, &f| m.max(f as f64));
    let wavelen = |i: usize| 2.0 * std::f64::consts::PI * theta.powf((2 * i) as f64 / head_dim as f64);
    let tol = 1e-4;
    let smooth = factors.iter().position(|&f| (f as f64 - 1.0).abs() > tol && (f as f64 - factor).abs() > tol * factor);
    let original = match smooth {
        Some(i) => {
            let s = (1.0 / factors[i] as f64 - 1.0 / factor) / (1.0 - 1.0 / factor);
            wavelen(i) * (low + s * (high - low))
        }
        None => {
            let last_unscaled = factors.iter().rposition(|&f| (f as f64 - 1.0).abs() <= tol).map(wavelen)?;
            let first_scaled = factors.iter().position(|&f| (f as f64 - factor).abs() <= tol * factor).map(wavelen)?;
            (high * last_unscaled * first_scaled / low).sqrt()
        }
    };
    let expected = |i: usize| {
        let w = wavelen(i);
        if w < original / high {
            1.0
        } else if w > original / low {
            factor
        } else {
            let s = (original / w - low) / (high - low);
            1.0 / ((1.0 - s) / factor + s)
        }
    };
    let fits = factors.len() == head_dim / 2 && factors.iter().enumerate().all(|(i, &f)| (f as f64 - expected(i)).abs() <= tol * factor);
    fits.then_some((factor, low, high, original.round()))
}

/// A layer's tensors other than its norms: llama.cpp's stem and HF's (under `model.layers.{i}.`).
pub(crate) const LAYER_TENSORS: [(&str, &str); 9] = [
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// A tensor under its HF name: name, shape, values.
type HfTensor = (String, Vec<usize>, Vec<f32>);

/// llama.cpp's name for a tensor → HF's, its values in HF's layout; `None` for what holds no
/// learned weight (`rope_freqs`, already in the config).
fn hf_tensor(tensor: &GgufTensor, values: Vec<f32>, layout: &Layout) -> Result<Option<HfTensor>, CheckpointError> {
    let name = tensor.name.as_str();
    if name == "rope_freqs.weight" {
        return Ok(None);
    }
    let hf = hf_name(name, layout.family)?;
    let mut values = unpermuted(tensor, values, layout)?;
    if layout.family.norm_shift != 0.0 && hf.ends_with("norm.weight") {
        values.iter_mut().for_each(|v| *v -= layout.family.norm_shift);
    }
    Ok(Some((hf, tensor.shape.clone(), values)))
}

/// A layer's projection weight or the embeddings stored in a type narrower than f32, kept as its bytes (its rows
/// put in HF's order): the base of a run stays in its file's precision (`packed.rs`).
fn packed_projection(tensor: &GgufTensor, bytes: &[u8], layout: &Layout) -> Result<Option<(String, PackedWeight)>, CheckpointError> {
    if !stays_packed(tensor, layout.family) {
        return Ok(None);
    }
    let hf = hf_name(&tensor.name, layout.family)?;
    let [rows, cols] = [tensor.shape[0], tensor.shape[1]];
    let bytes = unpermuted(tensor, bytes.to_vec(), layout)?; // rows of whole blocks move as rows of values do
    let packed = PackedWeight::new(tensor.ggml_type, bytes, [rows, cols]).ok_or_else(|| CheckpointError::Shape {
        name: tensor.name.clone(),
        expected: vec![rows, cols],
        found: tensor.shape.clone(),
    })?;
    Ok(Some((hf, packed)))
}

/// Whether a tensor is an attention or MLP projection's weight, or the token embeddings, stored in a
/// type other than F32 that the reader dequantizes: those stay packed.
fn stays_packed(tensor: &GgufTensor, family: &GgufFamily) -> bool {
    let is_projection = tensor.name.starts_with("blk.") && tensor.name.ends_with(".weight") && tensor.shape.len() == 2;
    let is_embedding = tensor.name == "token_embd.weight" && tensor.shape.len() == 2;
    (is_projection || is_embedding)
        && !matches!(tensor.ggml_type, GgmlType::F32)
        && tensor.ggml_type.is_read()
        && hf_name(&tensor.name, family).is_ok_and(|hf| is_embedding || hf.ends_with("_proj.weight"))
}

/// llama.cpp's name for a tensor of a `family` model → HF's.
fn hf_name(name: &str, family: &GgufFamily) -> Result<String, CheckpointError> {
    let unexpected = || CheckpointError::Unexpected {
        name: name.to_owned(),
        hint: format!("llama.cpp names no such tensor in a {} model", family.gguf),
    };
    Ok(match name {
        "token_embd.weight" => "model.embed_tokens.weight".to_owned(),
        "output_norm.weight" => "model.norm.weight".to_owned(),
        "output.weight" => "lm_head.weight".to_owned(),
        _ => {
            let rest = name.strip_prefix("blk.").ok_or_else(unexpected)?;
            let (layer, part) = rest.split_once('.').ok_or_else(unexpected)?;
            let layer: usize = layer.parse().map_err(|_| unexpected())?;
            let (stem, kind) = part.rsplit_once('.').ok_or_else(unexpected)?;
            let hf_stem =
                LAYER_TENSORS.iter().chain(family.norms).find(|(gguf, _)| *gguf == stem).map(|(_, hf)| *hf).ok_or_else(unexpected)?;
            format!("model.layers.{layer}.{hf_stem}.{kind}")
        }
    })
}

/// `values` (a row-major `[rows, ...]` tensor of any element) with the query and key rows a
/// `llama` file permuted put back in HF's order.
fn unpermuted<T: Copy + Default>(tensor: &GgufTensor, values: Vec<T>, layout: &Layout) -> Result<Vec<T>, CheckpointError> {
    let name = tensor.name.as_str();
    let heads = match (layout.permuted_heads, name.rsplit('.').nth(1)) {
        (Some((q, _)), Some("attn_q")) => Some(q),
        (Some((_, kv)), Some("attn_k")) => Some(kv),
        _ => None,
    };
    match heads {
        Some(heads) => unpermute(&values, tensor.shape[0], heads).ok_or_else(|| CheckpointError::Shape {
            name: name.to_owned(),
            expected: vec![heads, 2],
            found: tensor.shape.clone(),
        }),
        None => Ok(values),
    }
}

/// llama.cpp's `LlamaModel.permute` of a projection's rows (what [`unpermute`] undoes).
pub(crate) fn permute(values: &[f32], rows: usize, heads: usize) -> Vec<f32> {
    let (head_dim, cols) = (rows / heads, values.len() / rows);
    let half = head_dim / 2;
    let mut out = vec![0.0; values.len()];
    // out[h, a, b] = in[h, b, a] with in viewed as (heads, 2, half) and out as (heads, half, 2).
    for h in 0..heads {
        for a in 0..half {
            for b in 0..2 {
                let (to, from) = (h * head_dim + a * 2 + b, h * head_dim + b * half + a);
                out[to * cols..(to + 1) * cols].copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// Undoes `LlamaModel.permute`: within each head llama.cpp interleaved the two halves of the rows
/// (`reshape(heads, 2, half, ...).swapaxes(1, 2)`); HF row `h·d + b·d/2 + a` is its row `h·d + 2a + b`.
fn unpermute<T: Copy + Default>(values: &[T], rows: usize, heads: usize) -> Option<Vec<T>> {
    let head_dim = rows.checked_div(heads)?;
    if head_dim * heads != rows || head_dim % 2 != 0 || rows == 0 {
        return None;
    }
    let cols = values.len() / rows;
    let half = head_dim / 2;
    let mut out = vec![T::default(); values.len()];
    for h in 0..heads {
        for b in 0..2 {
            for a in 0..half {
                let (to, from) = (h * head_dim + b * half + a, h * head_dim + 2 * a + b);
                out[to * cols..(to + 1) * cols].copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_undoes_llama_cpps_permutation() {
        let (rows, cols, heads) = (12, 3, 2);
        let values: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        assert_eq!(unpermute(&permute(&values, rows, heads), rows, heads).unwrap(), values);
        assert!(unpermute(&values, 12, 5).is_none());
    }

    #[test]
    fn llama3_settings_are_recovered_from_the_factors_they_make() {
        // Llama 3.2's: theta 5e5, head_dim 64, factor 32, low 1, high 4, original 8192.
        let (theta, head_dim, factor, original) = (5e5f64, 64, 32.0f64, 8192.0f64);
        let factors: Vec<f32> = (0..head_dim / 2)
            .map(|i| {
                let w = 2.0 * std::f64::consts::PI * theta.powf((2 * i) as f64 / head_dim as f64);
                if w < original / 4.0 {
                    1.0
                } else if w > original {
                    factor as f32
                } else {
                    let s = (original / w - 1.0) / 3.0;
                    (1.0 / ((1.0 - s) / factor + s)) as f32
                }
            })
            .collect();
        assert_eq!(llama3_settings(&factors, theta, head_dim), Some((32.0, 1.0, 4.0, 8192.0)));
        let mut wrong = factors.clone();
        wrong[0] = 2.0;
        assert_eq!(llama3_settings(&wrong, theta, head_dim), None);
    }
}
