//! A GGUF header as Hugging Face's `config.json`: its `general.architecture` and `{arch}.*`
//! hyperparameters become the config of the same model, every size checked against the file's own
//! tensors before anything is sized by it and every setting a positive number. Llama 3's rope
//! scaling, which llama.cpp's converter stored as per-frequency factors (`rope_freqs`), is
//! recovered as settings and checked. Which architectures a file may name, and what each adds to
//! the config (Gemma 3's keys), the families say ([`crate::FamilyConfig::GGUF`]).

use serde_json::{Value, json};

use crate::causal_lm::gguf_families;
use crate::checkpoint::CheckpointError;
use crate::gguf::{GgufHeader, GgufTensor, GgufValue};

/// How one architecture a GGUF file may name is laid out, in llama.cpp's terms and HF's: a row of
/// its family's [`crate::FamilyConfig::GGUF`].
#[derive(Debug)]
pub struct GgufFamily {
    /// `general.architecture`.
    pub(crate) gguf: &'static str,
    pub(crate) model_type: &'static str,
    pub(crate) class: &'static str,
    /// A layer's norms: llama.cpp's stem and HF's.
    pub(crate) norms: &'static [(&'static str, &'static str)],
    /// llama.cpp permuted the query and key rows (`LlamaModel.permute`).
    pub(crate) permuted: bool,
    /// What the converter added to every norm weight (Gemma's `1 + w`).
    pub(crate) norm_shift: f32,
    /// The family's own keys, from the header into the config (which holds the Llama family's
    /// keys by then), given the layer count and the width per query head.
    pub(crate) settings: Option<FamilySettings>,
}

/// A family's own keys from a header into the config: `(header, config, layers, hidden / heads)`.
pub(crate) type FamilySettings = fn(&GgufHeader, &mut Value, u64, u64) -> Result<(), CheckpointError>;

impl GgufFamily {
    /// A Llama-style architecture: the family's two norms a layer, nothing shifted or added.
    pub(crate) const fn llama_style(gguf: &'static str, model_type: &'static str, class: &'static str, permuted: bool) -> Self {
        Self { gguf, model_type, class, norms: &LLAMA_NORMS, permuted, norm_shift: 0.0, settings: None }
    }
}

/// A Llama-style layer's norms: llama.cpp's stem and HF's.
const LLAMA_NORMS: [(&str, &str); 2] = [("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm")];

/// llama.cpp's architecture name of a model type (`gemma3_text` -> `gemma3`), and whether its
/// converter permuted the query and key rows.
pub(crate) fn gguf_architecture(model_type: &str) -> Option<(&'static str, bool)> {
    gguf_families().find(|f| f.model_type == model_type).map(|f| (f.gguf, f.permuted))
}

/// What the header says about turning llama.cpp's tensors into HF's.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) family: &'static GgufFamily,
    pub(crate) config: Value,
    /// The rope base and head size, when Llama 3's scaling factors are among the tensors.
    pub(crate) rope_freqs: Option<(f64, usize)>,
    /// `llama` files have permuted query/key rows: (query heads, key/value heads).
    pub(crate) permuted_heads: Option<(usize, usize)>,
}

pub(crate) fn format(reason: String) -> CheckpointError {
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

/// A setting the file may give that must be a positive number (a norm's epsilon, a rope base, a
/// cap): `None` when absent; a NaN, an infinity, zero or a negative number refused naming the key.
pub(crate) fn positive(header: &GgufHeader, key: &str) -> Result<Option<f64>, CheckpointError> {
    let Some(value) = header.get(key) else { return Ok(None) };
    match decimal(value) {
        Some(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
        Some(v) => Err(format(format!("metadata `{key}` is {v}; it must be a positive number"))),
        None => Err(format(format!("metadata `{key}` is not a number"))),
    }
}

/// The largest context, head size or MLP width a header may state: far past any model's, small
/// enough that tables sized by them (rotary frequencies, caches) cannot exhaust the memory.
const MAX_SIZE: u64 = 1 << 24;

/// Refuses sizes a header states that its own tensors cannot hold: more layers than the file has
/// tensors, a width other than the embeddings', heads that do not divide it, a context past
/// [`MAX_SIZE`]. Every count is checked before anything is sized by it.
fn check_sizes(header: &GgufHeader, key: &dyn Fn(&str) -> String, sizes: [u64; 6], embeddings: &GgufTensor) -> Result<(), CheckpointError> {
    let [hidden, heads, kv_heads, layers, ffn, context] = sizes;
    let bad = |field: &str, value: u64, why: String| Err(format(format!("metadata `{}` is {value}: {why}", key(field))));
    let tensors = header.tensors.len() as u64;
    if layers == 0 || layers > tensors {
        return bad("block_count", layers, format!("the file holds {tensors} tensors, and every layer has several"));
    }
    if embeddings.shape.len() != 2 || embeddings.shape[1] as u64 != hidden {
        return bad("embedding_length", hidden, format!("the embeddings `token_embd.weight` are {:?}", embeddings.shape));
    }
    if heads == 0 || heads > hidden {
        return bad("attention.head_count", heads, format!("heads must be from 1 to the width, {hidden}"));
    }
    if kv_heads == 0 || kv_heads > heads || heads % kv_heads != 0 {
        return bad("attention.head_count_kv", kv_heads, format!("key/value heads must divide the {heads} query heads"));
    }
    for (field, value) in [("feed_forward_length", ffn), ("context_length", context)] {
        if value == 0 || value > MAX_SIZE {
            return bad(field, value, format!("it must be from 1 to {MAX_SIZE}"));
        }
    }
    if let Some(head_dim) = header.get(&key("attention.key_length")) {
        let head_dim = head_dim.as_u64().filter(|&d| (1..=MAX_SIZE).contains(&d));
        if head_dim.is_none() {
            return Err(format(format!("metadata `{}` must be a whole number from 1 to {MAX_SIZE}", key("attention.key_length"))));
        }
    }
    Ok(())
}

/// The HF config a header describes, and how its tensors are laid out.
pub(crate) fn layout(header: &GgufHeader) -> Result<Layout, CheckpointError> {
    let arch = header.get("general.architecture").and_then(GgufValue::as_str).unwrap_or("(none)");
    let Some(family) = gguf_families().find(|f| f.gguf == arch) else {
        let shown: String = arch.chars().take(60).collect();
        let mut known: Vec<&str> = vec![];
        for family in gguf_families() {
            if !known.contains(&family.gguf) {
                known.push(family.gguf);
            }
        }
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
    let (ffn, context) = (required(header, &key("feed_forward_length"))?, required(header, &key("context_length"))?);
    check_sizes(header, &key, [hidden, heads, kv_heads, layers, ffn, context], embeddings)?;
    let mut config = json!({
        "model_type": family.model_type,
        "architectures": [family.class],
        "vocab_size": embeddings.shape[0],
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "hidden_act": "silu",
        "max_position_embeddings": context,
        "rms_norm_eps": positive(header, &key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6),
        "tie_word_embeddings": header.tensor("output.weight").is_none(),
        "attention_bias": header.tensor("blk.0.attn_q.bias").is_some(),
        "rope_parameters": rope(header, &key)?,
    });
    if let Some(head_dim) = header.get(&key("attention.key_length")) {
        config["head_dim"] = head_dim.as_u64().into();
    }
    if let Some(settings) = family.settings {
        settings(header, &mut config, layers, hidden / heads.max(1))?;
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

/// HF's `rope_parameters`: the base frequency, and the scaling the file states (`linear`) or
/// implies by its factors (Llama 3's `rope_freqs`).
fn rope(header: &GgufHeader, key: &dyn Fn(&str) -> String) -> Result<Value, CheckpointError> {
    let theta = positive(header, &key("rope.freq_base"))?.unwrap_or(10_000.0);
    let scaling = header.get(&key("rope.scaling.type")).and_then(GgufValue::as_str).unwrap_or("none");
    match scaling {
        "none" => {}
        "linear" => {
            let factor = positive(header, &key("rope.scaling.factor"))?.unwrap_or(1.0);
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
pub(crate) fn llama3_rope(factors: &[f32], theta: f64, head_dim: usize) -> Result<Value, CheckpointError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
