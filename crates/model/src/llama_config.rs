//! `LlamaConfig`: the shape of a Llama-family decoder (Llama 2/3, TinyLlama, SmolLM2, Qwen2/2.5,
//! Qwen3), read and written as Hugging Face's `config.json`.
//!
//! transformers 5 writes rope settings as `rope_parameters`; most folders on disk still carry the
//! older `rope_theta` + `rope_scaling`. Both are read. The three `model_type`s differ in small
//! switches, decided here once: Qwen2 puts a bias on the query/key/value projections, Qwen3 normalises
//! each head's queries and keys (qk-norm), Llama and Qwen3 take `attention_bias` for all four.
//! Anything that would change the computation and is not implemented (another activation, rope
//! type, sliding windows) is refused naming the field and its value.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ConfigError;
use crate::family::FamilyConfig;
use crate::rope::RopeParameters;

/// The `model_type`s this file describes.
pub const LLAMA_FAMILY: [&str; 3] = ["llama", "qwen2", "qwen3"];

/// Shape and hyper-parameters of a Llama-family model, in HF's `config.json` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// `llama`, `qwen2` or `qwen3`.
    pub model_type: String,
    #[serde(default)]
    pub architectures: Vec<String>,
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); absent means one per query head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Absent means hidden_size / num_attention_heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default = "default_activation")]
    pub hidden_act: String,
    /// The context length.
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// HF's default for these classes is an untied head.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_sliding_window: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<String>>,
    /// Ids as HF writes them: a number, a list (Llama 3's EOS) or null.
    #[serde(default)]
    pub bos_token_id: Option<Value>,
    #[serde(default)]
    pub eos_token_id: Option<Value>,
    #[serde(default)]
    pub pad_token_id: Option<Value>,
}

fn default_activation() -> String {
    "silu".into()
}
fn default_eps() -> f64 {
    1e-6
}

impl LlamaConfig {
    /// A SmolLM2-style model (tied head, 3 query heads per key/value head) of the given shape.
    pub fn new(vocab_size: usize, context: usize, hidden: usize, layers: usize, heads: usize, kv_heads: usize) -> Self {
        Self {
            model_type: "llama".into(),
            architectures: vec!["LlamaForCausalLM".into()],
            vocab_size,
            hidden_size: hidden,
            intermediate_size: hidden * 8 / 3,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: Some(kv_heads),
            head_dim: None,
            hidden_act: default_activation(),
            max_position_embeddings: context,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: true,
            attention_bias: false,
            mlp_bias: false,
            rope_parameters: Some(RopeParameters { rope_type: Some("default".into()), rope_theta: Some(1e5), ..Default::default() }),
            rope_theta: None,
            rope_scaling: None,
            use_sliding_window: None,
            layer_types: None,
            bos_token_id: None,
            eos_token_id: None,
            pad_token_id: None,
        }
    }

    /// SmolLM2-135M's shape: d 576, 30 layers, 9 query / 3 key-value heads, MLP 1536, context 8192.
    pub fn smollm2_135m(vocab_size: usize) -> Self {
        Self { intermediate_size: 1536, ..Self::new(vocab_size, 8192, 576, 30, 9, 3) }
    }

    /// Qwen2.5-0.5B's shape: d 896, 24 layers, 14 query / 2 key-value heads, MLP 4864, q/k/v biases,
    /// rope base 1e6, tied head.
    pub fn qwen25_05b(vocab_size: usize) -> Self {
        Self {
            model_type: "qwen2".into(),
            architectures: vec!["Qwen2ForCausalLM".into()],
            intermediate_size: 4864,
            rms_norm_eps: 1e-6,
            rope_parameters: Some(RopeParameters { rope_type: Some("default".into()), rope_theta: Some(1e6), ..Default::default() }),
            ..Self::new(vocab_size, 32768, 896, 24, 14, 2)
        }
    }

    /// Qwen2 always has query/key/value biases; Llama and Qwen3 when `attention_bias`.
    pub fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias
    }

    /// Qwen2's output projection never has a bias.
    pub fn o_bias(&self) -> bool {
        self.model_type != "qwen2" && self.attention_bias
    }

    /// Qwen3 normalises each head's queries and keys before the rotation.
    pub fn qk_norm(&self) -> bool {
        self.model_type == "qwen3"
    }

    fn rope_settings(&self) -> Option<&RopeParameters> {
        self.rope_parameters.as_ref().or(self.rope_scaling.as_ref())
    }

    /// The rope base when the settings name none.
    fn default_theta(&self) -> f64 {
        self.rope_theta.unwrap_or(10_000.0)
    }

    /// The rotary inverse frequencies, `head_dim / 2` of them, as HF's rope initialisers compute them.
    pub fn inv_freq(&self) -> Vec<f32> {
        self.rope_settings().cloned().unwrap_or_default().inv_freq(self.default_theta(), self.head_dim())
    }

    /// Upper bounds far above any model of the family a tab or this CLI would tune.
    pub const LIMITS: [(&'static str, usize); 7] = [
        ("vocab_size", 1 << 20),
        ("max_position_embeddings", 1 << 20),
        ("hidden_size", 1 << 15),
        ("intermediate_size", 1 << 17),
        ("num_hidden_layers", 256),
        ("num_attention_heads", 256),
        ("head_dim", 1024),
    ];

    /// Refuses configs this crate does not compute exactly, and shapes past [`Self::LIMITS`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem: String| Err(ConfigError::Unsupported { field, problem });
        if !LLAMA_FAMILY.contains(&self.model_type.as_str()) {
            return bad("model_type", format!("{:?} is not one of {LLAMA_FAMILY:?}", self.model_type));
        }
        if self.hidden_act != "silu" {
            return bad("hidden_act", format!("{:?}; the Llama family here uses \"silu\" (SwiGLU)", self.hidden_act));
        }
        let sizes = [
            self.vocab_size,
            self.max_position_embeddings,
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.head_dim(),
        ];
        for ((field, limit), value) in Self::LIMITS.into_iter().zip(sizes) {
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
        if !self.head_dim().is_multiple_of(2) {
            return bad("head_dim", format!("{} is odd; rotary embeddings rotate pairs", self.head_dim()));
        }
        if self.mlp_bias {
            return bad("mlp_bias", "true; the family's MLPs here have no biases".into());
        }
        if self.use_sliding_window == Some(true) {
            return bad("use_sliding_window", "true; only full attention is computed here".into());
        }
        if let Some(kind) = self.layer_types.iter().flatten().find(|t| *t != "full_attention") {
            return bad("layer_types", format!("{kind:?}; only \"full_attention\" layers are computed here"));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad("rms_norm_eps", format!("{} must be a small positive number", self.rms_norm_eps));
        }
        self.rope_settings().cloned().unwrap_or_default().validate(self.default_theta())?;
        crate::config::check_param_count(self.num_params(), "num_hidden_layers")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> LlamaConfig {
        serde_json::from_str(json).unwrap()
    }

    const LLAMA3: &str = r#"{"model_type":"llama","vocab_size":100,"hidden_size":32,"intermediate_size":64,
        "num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":256,
        "rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,"factor":8.0,"low_freq_factor":1.0,
        "high_freq_factor":4.0,"original_max_position_embeddings":64}}"#;

    #[test]
    fn both_rope_forms_give_the_same_frequencies() {
        let new = parse(LLAMA3);
        let legacy = parse(&LLAMA3.replace("\"rope_parameters\"", "\"rope_theta\":500000.0,\"rope_scaling\""));
        new.validate().unwrap();
        legacy.validate().unwrap();
        assert_eq!(new.inv_freq(), legacy.inv_freq());
        // Llama 3 scaling keeps the fastest frequency and divides the slowest by the factor.
        let plain = LlamaConfig { rope_parameters: Some(RopeParameters { rope_theta: Some(5e5), ..Default::default() }), ..new.clone() };
        let (scaled, plain) = (new.inv_freq(), plain.inv_freq());
        assert_eq!(scaled[0], plain[0]);
        assert!((scaled[3] * 8.0 - plain[3]).abs() < 1e-9 * plain[3].abs().max(1.0));
    }

    #[test]
    fn an_unknown_rope_type_or_activation_is_refused_naming_the_field_and_value() {
        let yarn = parse(&LLAMA3.replace("\"llama3\"", "\"yarn\""));
        let message = yarn.validate().unwrap_err().to_string();
        assert!(message.contains("rope_type") && message.contains("yarn"), "{message}");
        let gelu = LlamaConfig { hidden_act: "gelu".into(), ..parse(LLAMA3) };
        let message = gelu.validate().unwrap_err().to_string();
        assert!(message.contains("hidden_act") && message.contains("gelu"), "{message}");
        let odd = LlamaConfig { num_key_value_heads: Some(3), ..parse(LLAMA3) };
        assert!(odd.validate().unwrap_err().to_string().contains("num_key_value_heads"));
    }

    #[test]
    fn smollm2_135m_preset_has_its_parameter_count() {
        // SmolLM2-135M: 134,515,008 parameters (tied head).
        assert_eq!(LlamaConfig::smollm2_135m(49_152).num_params(), 134_515_008);
    }

    #[test]
    fn qwen25_05b_preset_has_its_parameter_count() {
        // Qwen2.5-0.5B: 494,032,768 parameters (tied head).
        assert_eq!(LlamaConfig::qwen25_05b(151_936).num_params(), 494_032_768);
    }
}
