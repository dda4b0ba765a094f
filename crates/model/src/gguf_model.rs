//! A GGUF file as a model folder: its `general.architecture` and `{arch}.*` hyperparameters become
//! Hugging Face's `config.json`, and llama.cpp's tensor names and layouts become HF's, so every
//! stage loads a `.gguf` through the same code as a folder. Bytes arrive in pieces ([`GgufStream`]):
//! the tab reads a person's 100 MB file in slices, each tensor is widened to f32 once its last byte
//! is in, and its raw bytes are let go.
//!
//! Two things llama.cpp's converter changed are undone here: for `llama` it permuted the rows of
//! the query and key projections (`LlamaModel.permute`, for ggml's interleaved rotation; HF and we
//! rotate halves), and Llama 3's rope scaling it stored as per-frequency factors (`rope_freqs`)
//! instead of settings, from which the settings are recovered and checked.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::checkpoint::{CheckpointError, Weights};
use crate::gguf::{GgufError, GgufHeader, GgufTensor, GgufValue, tensor_f32};
use crate::gguf_quants::GgmlType;
use crate::packed::PackedWeight;

/// The architectures a GGUF file may name, and HF's class for each.
const ARCHITECTURES: [(&str, &str); 3] = [("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM"), ("qwen3", "Qwen3ForCausalLM")];

/// A whole GGUF file read: the HF config it describes, its weights under HF names, and its
/// metadata (the tokenizer's vocabulary, merges and chat template are there).
#[derive(Debug)]
pub struct GgufModel {
    pub config_json: Vec<u8>,
    pub weights: Weights,
    pub metadata: BTreeMap<String, GgufValue>,
}

impl GgufModel {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let mut stream = GgufStream::new();
        stream.push(bytes)?;
        stream.finish()
    }
}

/// What the header says about turning llama.cpp's tensors into HF's.
#[derive(Debug)]
struct Layout {
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
        let (header, _) = self.header.as_ref()?;
        let held = |t: &GgufTensor| if stays_packed(t) { (t.end - t.start) as u64 } else { 4 * t.shape.iter().product::<usize>() as u64 };
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
    let Some(&(_, class)) = ARCHITECTURES.iter().find(|(name, _)| *name == arch) else {
        let shown: String = arch.chars().take(60).collect();
        let known: Vec<&str> = ARCHITECTURES.iter().map(|(name, _)| *name).collect();
        return Err(format(format!("general.architecture is {shown:?}; tinyrlhf runs GGUF files of {}", known.join(", "))));
    };
    let key = |k: &str| format!("{arch}.{k}");
    let hidden = required(header, &key("embedding_length"))?;
    let heads = required(header, &key("attention.head_count"))?;
    let kv_heads = match header.get(&key("attention.head_count_kv")) {
        None => heads,
        Some(_) => required(header, &key("attention.head_count_kv"))?,
    };
    let embeddings = header.tensor("token_embd.weight").ok_or_else(|| format("it has no tensor `token_embd.weight`".into()))?;
    let mut config = json!({
        "model_type": arch,
        "architectures": [class],
        "vocab_size": embeddings.shape[0],
        "hidden_size": hidden,
        "intermediate_size": required(header, &key("feed_forward_length"))?,
        "num_hidden_layers": required(header, &key("block_count"))?,
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
    for (hf, gguf) in [("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"), ("pad_token_id", "padding_token_id")] {
        if let Some(id) = header.get(&format!("tokenizer.ggml.{gguf}")).and_then(GgufValue::as_u64) {
            config[hf] = id.into();
        }
    }
    let permuted_heads = (arch == "llama").then_some((heads as usize, kv_heads as usize));
    // Llama 3's scaling is in a tensor's values: the config waits for them.
    let rope_freqs = header.tensor("rope_freqs.weight").map(|_| {
        let head_dim = header.get(&key("rope.dimension_count")).and_then(GgufValue::as_u64).unwrap_or(hidden / heads.max(1));
        (config["rope_parameters"]["rope_theta"].as_f64().unwrap_or(10_000.0), head_dim as usize)
    });
    Ok(Layout { config, permuted_heads, rope_freqs })
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

/// A layer's tensors: llama.cpp's stem and HF's (under `model.layers.{i}.`).
pub(crate) const LAYER_TENSORS: [(&str, &str); 11] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
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
    let hf = hf_name(name)?;
    let values = unpermuted(tensor, values, layout)?;
    Ok(Some((hf, tensor.shape.clone(), values)))
}

/// A layer's projection weight stored in a type narrower than f32, kept as its bytes (its rows
/// put in HF's order): the base of a run stays in its file's precision (`packed.rs`).
fn packed_projection(tensor: &GgufTensor, bytes: &[u8], layout: &Layout) -> Result<Option<(String, PackedWeight)>, CheckpointError> {
    if !stays_packed(tensor) {
        return Ok(None);
    }
    let hf = hf_name(&tensor.name)?;
    let [rows, cols] = [tensor.shape[0], tensor.shape[1]];
    let bytes = unpermuted(tensor, bytes.to_vec(), layout)?; // rows of whole blocks move as rows of values do
    let packed = PackedWeight::new(tensor.ggml_type, bytes, [rows, cols]).ok_or_else(|| CheckpointError::Shape {
        name: tensor.name.clone(),
        expected: vec![rows, cols],
        found: tensor.shape.clone(),
    })?;
    Ok(Some((hf, packed)))
}

/// Whether a tensor is an attention or MLP projection's weight stored in a type other than F32 that
/// the reader dequantizes: those stay packed.
fn stays_packed(tensor: &GgufTensor) -> bool {
    let is_projection = tensor.name.starts_with("blk.") && tensor.name.ends_with(".weight") && tensor.shape.len() == 2;
    is_projection
        && !matches!(tensor.ggml_type, GgmlType::F32)
        && tensor.ggml_type.is_read()
        && hf_name(&tensor.name).is_ok_and(|hf| hf.ends_with("_proj.weight"))
}

/// llama.cpp's name for a tensor → HF's.
fn hf_name(name: &str) -> Result<String, CheckpointError> {
    let unexpected =
        || CheckpointError::Unexpected { name: name.to_owned(), hint: "llama.cpp names no such tensor in a Llama-family model".into() };
    Ok(match name {
        "token_embd.weight" => "model.embed_tokens.weight".to_owned(),
        "output_norm.weight" => "model.norm.weight".to_owned(),
        "output.weight" => "lm_head.weight".to_owned(),
        _ => {
            let rest = name.strip_prefix("blk.").ok_or_else(unexpected)?;
            let (layer, part) = rest.split_once('.').ok_or_else(unexpected)?;
            let layer: usize = layer.parse().map_err(|_| unexpected())?;
            let (stem, kind) = part.rsplit_once('.').ok_or_else(unexpected)?;
            let hf_stem = LAYER_TENSORS.iter().find(|(gguf, _)| *gguf == stem).map(|(_, hf)| *hf).ok_or_else(unexpected)?;
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
