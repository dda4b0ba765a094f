//! `Gemma3Config`: the shape of a Gemma 3 text decoder, read and written as Hugging Face's
//! `config.json` (`model_type` `gemma3_text`; the multimodal `gemma3` config's `text_config` reads
//! the same way).
//!
//! Keys a file leaves out take `Gemma3TextConfig`'s defaults, as transformers fills them. Each layer
//! is sliding-window or full attention (`layer_types`, or in older files every
//! `sliding_window_pattern`-th layer full), and each kind has its own rope settings
//! (`rope_parameters.{sliding_attention,full_attention}`, or the older `rope_local_base_freq` for
//! sliding layers and `rope_theta` + `rope_scaling` for full ones). Anything that would change the
//! computation and is not implemented is refused naming the field and its value.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::checkpoint::CheckpointError;
use crate::config::ConfigError;
use crate::family::FamilyConfig;
use crate::gguf::{GgufHeader, GgufValue};
use crate::gguf_config::{GgufFamily, format, positive};
use crate::rope::{RopeParameters, Rotary};

pub const SLIDING: &str = "sliding_attention";
pub const FULL: &str = "full_attention";

/// The rope settings of each kind of layer (`rope_parameters` as transformers 5 writes it).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LayerRope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_attention: Option<RopeParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_attention: Option<RopeParameters>,
}

/// Shape and hyper-parameters of a Gemma 3 text model, in HF's `config.json` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gemma3Config {
    /// `gemma3_text`.
    pub model_type: String,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "defaults::hidden_size")]
    pub hidden_size: usize,
    /// Width of the GeGLU MLP.
    #[serde(default = "defaults::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "defaults::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "defaults::num_key_value_heads")]
    pub num_key_value_heads: usize,
    #[serde(default = "defaults::head_dim")]
    pub head_dim: usize,
    #[serde(default = "defaults::hidden_activation")]
    pub hidden_activation: String,
    #[serde(default = "defaults::max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "defaults::rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "defaults::yes")]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    /// Attention scores are scaled by `query_pre_attn_scalar^-1/2` (not `head_dim^-1/2`).
    #[serde(default = "defaults::query_pre_attn_scalar")]
    pub query_pre_attn_scalar: f64,
    /// Tokens a sliding layer's query sees, itself included.
    #[serde(default = "defaults::sliding_window")]
    pub sliding_window: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<String>>,
    /// Older files: every this-many-th layer is full attention (transformers' default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window_pattern: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_logit_softcapping: Option<f64>,
    /// Read and kept, not applied: transformers' and llama.cpp's Gemma 3 ignore it (see `gemma3.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_logit_softcapping: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_bidirectional_attention: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<LayerRope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_local_base_freq: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeParameters>,
    #[serde(default)]
    pub bos_token_id: Option<Value>,
    #[serde(default)]
    pub eos_token_id: Option<Value>,
    #[serde(default)]
    pub pad_token_id: Option<Value>,
}

/// `Gemma3TextConfig`'s defaults (Gemma 3 4B's shape).
mod defaults {
    pub fn vocab_size() -> usize {
        262_208
    }
    pub fn hidden_size() -> usize {
        2304
    }
    pub fn intermediate_size() -> usize {
        9216
    }
    pub fn num_hidden_layers() -> usize {
        26
    }
    pub fn num_attention_heads() -> usize {
        8
    }
    pub fn num_key_value_heads() -> usize {
        4
    }
    pub fn head_dim() -> usize {
        256
    }
    pub fn hidden_activation() -> String {
        "gelu_pytorch_tanh".into()
    }
    pub fn max_position_embeddings() -> usize {
        131_072
    }
    pub fn rms_norm_eps() -> f64 {
        1e-6
    }
    pub fn yes() -> bool {
        true
    }
    pub fn query_pre_attn_scalar() -> f64 {
        256.0
    }
    pub fn sliding_window() -> usize {
        4096
    }
    /// Rope bases when a file names none: full layers 1M, sliding layers 10k.
    pub const FULL_THETA: f64 = 1_000_000.0;
    pub const SLIDING_THETA: f64 = 10_000.0;
    pub const SLIDING_WINDOW_PATTERN: usize = 6;
}

impl Gemma3Config {
    /// Reads a `gemma3_text` config, or a multimodal `gemma3` config's `text_config`.
    pub fn from_value(value: Value) -> Result<Self, ConfigError> {
        let value = match value.get("model_type").and_then(Value::as_str) {
            Some("gemma3") => {
                let mut text = value.get("text_config").cloned().unwrap_or(Value::Object(Default::default()));
                if let Value::Object(fields) = &mut text {
                    fields.insert("model_type".into(), "gemma3_text".into());
                }
                text
            }
            _ => value,
        };
        let config: Self = serde_json::from_value(value).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Each layer's kind, [`SLIDING`] or [`FULL`].
    pub fn layer_kinds(&self) -> Vec<String> {
        match &self.layer_types {
            Some(kinds) => kinds.clone(),
            None => {
                let pattern = self.sliding_window_pattern.unwrap_or(defaults::SLIDING_WINDOW_PATTERN).max(1);
                (0..self.num_hidden_layers).map(|i| if (i + 1) % pattern == 0 { FULL } else { SLIDING }.to_owned()).collect()
            }
        }
    }

    /// The rope settings and fallback base of each kind of layer, from either form of the keys.
    fn rope_of(&self, kind: &str) -> (RopeParameters, f64) {
        let given =
            self.rope_parameters.as_ref().and_then(|r| if kind == FULL { r.full_attention.clone() } else { r.sliding_attention.clone() });
        match kind {
            FULL => (given.or(self.rope_scaling.clone()).unwrap_or_default(), self.rope_theta.unwrap_or(defaults::FULL_THETA)),
            _ => (given.unwrap_or_default(), self.rope_local_base_freq.unwrap_or(defaults::SLIDING_THETA)),
        }
    }

    /// The rotation of each kind of layer: `(sliding, full)`.
    pub(crate) fn rotaries(&self) -> (Rotary, Rotary) {
        let rotary = |kind| {
            let (settings, theta) = self.rope_of(kind);
            Rotary { inv_freq: settings.inv_freq(theta, self.head_dim) }
        };
        (rotary(SLIDING), rotary(FULL))
    }

    /// Refuses configs this crate does not compute exactly, and shapes past the Llama family's limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem: String| Err(ConfigError::Unsupported { field, problem });
        if self.model_type != "gemma3_text" {
            return bad("model_type", format!("{:?} is not \"gemma3_text\"", self.model_type));
        }
        if self.hidden_activation != "gelu_pytorch_tanh" {
            return bad("hidden_activation", format!("{:?}; Gemma 3 here uses \"gelu_pytorch_tanh\" (GeGLU)", self.hidden_activation));
        }
        let sizes = [
            self.vocab_size,
            self.max_position_embeddings,
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.head_dim,
        ];
        for ((field, limit), value) in crate::LlamaConfig::LIMITS.into_iter().zip(sizes) {
            if value == 0 {
                return bad(field, "must be at least 1".into());
            }
            if value > limit {
                return bad(field, format!("{value} is more than this tool accepts ({limit})"));
            }
        }
        if self.kv_heads() == 0 || !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return bad(
                "num_key_value_heads",
                format!("{} does not divide num_attention_heads {}", self.kv_heads(), self.num_attention_heads),
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad("head_dim", format!("{} is odd; rotary embeddings rotate pairs", self.head_dim));
        }
        if self.sliding_window == 0 {
            return bad("sliding_window", "0; a sliding layer must see at least its own token".into());
        }
        if self.sliding_window_pattern == Some(0) {
            return bad("sliding_window_pattern", "0; every n-th layer is full attention, n >= 1".into());
        }
        if let Some(kinds) = &self.layer_types {
            if kinds.len() != self.num_hidden_layers {
                return bad("layer_types", format!("{} entries for {} layers", kinds.len(), self.num_hidden_layers));
            }
            if let Some(kind) = kinds.iter().find(|k| *k != SLIDING && *k != FULL) {
                return bad("layer_types", format!("{kind:?}; Gemma 3's layers are \"{SLIDING}\" or \"{FULL}\""));
            }
        }
        if self.use_bidirectional_attention == Some(true) {
            return bad("use_bidirectional_attention", "true; only causal attention is computed here".into());
        }
        for (field, cap) in
            [("final_logit_softcapping", self.final_logit_softcapping), ("attn_logit_softcapping", self.attn_logit_softcapping)]
        {
            if cap.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
                return bad(field, format!("{cap:?} must be a positive number"));
            }
        }
        if !(self.query_pre_attn_scalar.is_finite() && self.query_pre_attn_scalar > 0.0) {
            return bad("query_pre_attn_scalar", format!("{} must be a positive number", self.query_pre_attn_scalar));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad("rms_norm_eps", format!("{} must be a small positive number", self.rms_norm_eps));
        }
        for kind in [SLIDING, FULL] {
            let (settings, theta) = self.rope_of(kind);
            settings.validate(theta).map_err(|e| match e {
                ConfigError::Unsupported { field, problem } => {
                    ConfigError::Unsupported { field, problem: format!("{problem} ({kind} layers)") }
                }
                other => other,
            })?;
        }
        crate::config::check_param_count(self.num_params(), "num_hidden_layers")
    }
}

const GEMMA3_NORMS: [(&str, &str); 4] = [
    ("attn_norm", "input_layernorm"),
    ("post_attention_norm", "post_attention_layernorm"),
    ("ffn_norm", "pre_feedforward_layernorm"),
    ("post_ffw_norm", "post_feedforward_layernorm"),
];

/// How llama.cpp writes Gemma 3: four norms a layer, each stored as `1 + w`, and keys of its own.
pub(crate) const GEMMA3_GGUF: GgufFamily = GgufFamily {
    gguf: "gemma3",
    model_type: "gemma3_text",
    class: "Gemma3ForCausalLM",
    norms: &GEMMA3_NORMS,
    permuted: false,
    norm_shift: 1.0,
    settings: Some(gguf_settings),
};

/// Gemma 3's keys from a GGUF header into `config` (which holds the Llama family's): what the file says, and what
/// llama.cpp decides for a key the file leaves out (`src/models/gemma3.cpp`): with a window, layers
/// slide by `attention.sliding_window_pattern` (a flag per layer, or every n-th full; 6 when
/// absent) with rope base `rope.freq_base_swa` (10k when absent) and no scaling; without one, every
/// layer is full. Queries are scaled by `head_dim^-1/2`, by `(hidden / heads)^-1/2` for the 62-layer 27B.
fn gguf_settings(header: &GgufHeader, config: &mut Value, layers: u64, hidden_per_head: u64) -> Result<(), CheckpointError> {
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
    let local_theta = positive(header, "gemma3.rope.freq_base_swa")?.unwrap_or(10_000.0);
    let full = config["rope_parameters"].take();
    config["rope_parameters"] = json!({
        "full_attention": full,
        "sliding_attention": {"rope_type": "default", "rope_theta": local_theta},
    });
    if let Some(cap) = positive(header, "gemma3.final_logit_softcapping")? {
        config["final_logit_softcapping"] = cap.into();
    }
    if let Some(map) = config.as_object_mut() {
        for llama_only in ["hidden_act", "attention_bias"] {
            map.remove(llama_only);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Gemma3Config, ConfigError> {
        Gemma3Config::from_value(serde_json::from_str(json).unwrap())
    }

    const SMALL: &str = r#"{"model_type":"gemma3_text","vocab_size":100,"hidden_size":32,"intermediate_size":64,
        "num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":16,"max_position_embeddings":256,
        "sliding_window":8,"sliding_window_pattern":2}"#;

    #[test]
    fn the_older_pattern_gives_every_nth_layer_full_attention() {
        let config = parse(SMALL).unwrap();
        assert_eq!(config.layer_kinds(), [SLIDING, FULL, SLIDING, FULL]);
        let default_pattern =
            parse(&SMALL.replace(r#","sliding_window_pattern":2"#, r#","num_hidden_layers":6"#).replace(r#""num_hidden_layers":4,"#, ""))
                .unwrap();
        assert_eq!(default_pattern.layer_kinds().iter().filter(|k| *k == FULL).count(), 1);
    }

    #[test]
    fn each_layer_kind_has_its_own_rope_base() {
        let (sliding, full) = parse(SMALL).unwrap().rotaries();
        // 1 / theta^(2/16) for the second frequency: 10k locally, 1M globally.
        assert!((sliding.inv_freq[1] - 10_000f32.powf(-0.125)).abs() < 1e-7);
        assert!((full.inv_freq[1] - 1_000_000f32.powf(-0.125)).abs() < 1e-7);
        let scaled =
            parse(&SMALL.replace(r#""sliding_window":8"#, r#""sliding_window":8,"rope_scaling":{"rope_type":"linear","factor":8.0}"#))
                .unwrap();
        let (same_sliding, scaled_full) = scaled.rotaries();
        assert_eq!(same_sliding.inv_freq, sliding.inv_freq);
        assert!((scaled_full.inv_freq[1] * 8.0 - full.inv_freq[1]).abs() < 1e-9);
    }

    #[test]
    fn the_multimodal_config_reads_its_text_part() {
        let text: Value = serde_json::from_str(SMALL).unwrap();
        let wrapped = serde_json::json!({"model_type": "gemma3", "text_config": text, "vision_config": {}});
        assert_eq!(Gemma3Config::from_value(wrapped).unwrap(), parse(SMALL).unwrap());
    }

    #[test]
    fn impossible_windows_layer_kinds_and_rope_types_are_refused_naming_the_field() {
        for (change, field) in [
            (r#""sliding_window":0"#, "sliding_window"),
            (r#""sliding_window":8,"layer_types":["sliding_attention"]"#, "layer_types"),
            (
                r#""sliding_window":8,"layer_types":["sliding_attention","full_attention","chunked_attention","full_attention"]"#,
                "chunked_attention",
            ),
            (r#""sliding_window":8,"rope_parameters":{"full_attention":{"rope_type":"yarn","factor":2.0}}"#, "yarn"),
            (r#""sliding_window":8,"hidden_activation":"relu""#, "hidden_activation"),
        ] {
            let message = parse(&SMALL.replace(r#""sliding_window":8"#, change)).unwrap_err().to_string();
            assert!(message.contains(field), "{change}: {message}");
        }
    }

    #[test]
    fn gemma3_270m_has_its_parameter_count() {
        // google/gemma-3-270m: 268,098,176 parameters (tied head).
        let config = parse(
            r#"{"model_type":"gemma3_text","vocab_size":262144,"hidden_size":640,"intermediate_size":2048,"num_hidden_layers":18,
            "num_attention_heads":4,"num_key_value_heads":1,"head_dim":256,"max_position_embeddings":32768,"sliding_window":512}"#,
        )
        .unwrap();
        assert_eq!(config.num_params(), 268_098_176);
    }
}
