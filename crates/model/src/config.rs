//! `GptConfig`: the model's shape, read and written as Hugging Face's GPT-2 `config.json`.
//!
//! The field names are HF's so that a checkpoint directory we write loads in
//! `GPT2LMHeadModel.from_pretrained`, and HF GPT-2 checkpoints load here. Keys HF writes that do not
//! change the computation are ignored on read; keys that would change it (a different activation,
//! untied head, upcast attention) are refused by [`GptConfig::validate`].

use serde::{Deserialize, Serialize};

use crate::family::FamilyConfig;

/// Shape and hyper-parameters of a GPT-2 model, in HF's `config.json` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    /// Size of the token embedding table (tokenizer vocabulary, special tokens included).
    pub vocab_size: usize,
    /// Context length: the number of learned position embeddings.
    pub n_positions: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block; must divide `n_embd`.
    pub n_head: usize,
    /// MLP width; `None` means 4 * n_embd, as in GPT-2.
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// Must be GPT-2's tanh-approximated GELU.
    #[serde(default = "default_activation")]
    pub activation_function: String,
    /// Dropout after embeddings. Zero in every RLHF stage.
    #[serde(default)]
    pub embd_pdrop: f64,
    /// Dropout on attention probabilities.
    #[serde(default)]
    pub attn_pdrop: f64,
    /// Dropout on each residual branch.
    #[serde(default)]
    pub resid_pdrop: f64,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub reorder_and_upcast_attn: bool,
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// HF's class list; written so `from_pretrained` picks the LM-head class.
    #[serde(default)]
    pub architectures: Vec<String>,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_activation() -> String {
    "gelu_new".into()
}
fn default_true() -> bool {
    true
}
fn default_model_type() -> String {
    "gpt2".into()
}

/// A `config.json` that cannot describe the model this crate computes.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config.json is not valid: {0}")]
    Parse(String),
    #[error("config.json field `{field}`: {problem}")]
    Unsupported { field: &'static str, problem: String },
}

impl GptConfig {
    /// Every field at GPT-2's defaults with the given shape; dropout off.
    pub fn new(vocab_size: usize, n_positions: usize, n_embd: usize, n_layer: usize, n_head: usize) -> Self {
        Self {
            vocab_size,
            n_positions,
            n_embd,
            n_layer,
            n_head,
            n_inner: None,
            layer_norm_epsilon: default_eps(),
            activation_function: default_activation(),
            embd_pdrop: 0.0,
            attn_pdrop: 0.0,
            resid_pdrop: 0.0,
            bos_token_id: None,
            eos_token_id: None,
            pad_token_id: None,
            tie_word_embeddings: true,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            reorder_and_upcast_attn: false,
            model_type: default_model_type(),
            architectures: vec!["GPT2LMHeadModel".into()],
        }
    }

    /// The page's default: d 128, 4 layers, 4 heads, context 128 (~1 M parameters with a 1-2k vocab).
    pub fn tiny(vocab_size: usize) -> Self {
        Self::new(vocab_size, 128, 128, 4, 4)
    }

    /// d 256, 6 layers, 8 heads, context 256.
    pub fn small(vocab_size: usize) -> Self {
        Self::new(vocab_size, 256, 256, 6, 8)
    }

    /// GPT-2 124M's shape (d 768, 12 layers, 12 heads, context 1024), for the native CLI.
    pub fn gpt2_124m(vocab_size: usize) -> Self {
        Self::new(vocab_size, 1024, 768, 12, 12)
    }

    /// Parses `config.json` bytes and checks the model is one this crate computes exactly.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_slice(bytes).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Upper bounds far above any GPT-2-family model (GPT-2 XL: 48 layers, d 1600, vocabulary
    /// 50,257, context 1024) that stop an absurd `config.json` before anything is allocated.
    pub const LIMITS: [(&'static str, usize); 6] =
        [("vocab_size", 1 << 20), ("n_positions", 1 << 16), ("n_embd", 1 << 14), ("n_layer", 256), ("n_head", 256), ("n_inner", 1 << 16)];

    /// The most parameters a config may describe (4e9; a tab holds far fewer).
    pub const MAX_PARAMS: usize = 4_000_000_000;

    /// Refuses configs whose computation differs from GPT-2's as implemented here, and shapes past
    /// [`Self::LIMITS`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem: String| Err(ConfigError::Unsupported { field, problem });
        if self.model_type != "gpt2" {
            return bad("model_type", format!("{:?} is not \"gpt2\"", self.model_type));
        }
        if !matches!(self.activation_function.as_str(), "gelu_new" | "gelu_pytorch_tanh") {
            return bad(
                "activation_function",
                format!("{:?}; only GPT-2's tanh GELU (\"gelu_new\") is supported", self.activation_function),
            );
        }
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
        ] {
            if value == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        let sizes = [self.vocab_size, self.n_positions, self.n_embd, self.n_layer, self.n_head, self.mlp_width()];
        for ((field, limit), value) in Self::LIMITS.into_iter().zip(sizes) {
            if value > limit {
                return bad(field, format!("{value} is more than this tool accepts ({limit})"));
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return bad("n_head", format!("{} does not divide n_embd {}", self.n_head, self.n_embd));
        }
        if !self.tie_word_embeddings {
            return bad("tie_word_embeddings", "false; the LM head is tied to the token embeddings".into());
        }
        if !self.scale_attn_weights || self.scale_attn_by_inverse_layer_idx || self.reorder_and_upcast_attn {
            return bad("scale_attn_weights", "only GPT-2's 1/sqrt(head_dim) attention scaling is supported".into());
        }
        for (field, p) in [("embd_pdrop", self.embd_pdrop), ("attn_pdrop", self.attn_pdrop), ("resid_pdrop", self.resid_pdrop)] {
            if !(0.0..1.0).contains(&p) {
                return bad(field, format!("{p} is not a probability in [0, 1)"));
            }
        }
        if !(self.layer_norm_epsilon.is_finite() && self.layer_norm_epsilon > 0.0) {
            return bad("layer_norm_epsilon", format!("{} must be a small positive number", self.layer_norm_epsilon));
        }
        check_param_count(self.num_params(), "n_layer")
    }
}

/// Refuses a config that describes more than [`GptConfig::MAX_PARAMS`] parameters, naming `field`
/// (the layer count, the usual culprit).
pub(crate) fn check_param_count(params: usize, field: &'static str) -> Result<(), ConfigError> {
    if params > GptConfig::MAX_PARAMS {
        return Err(ConfigError::Unsupported {
            field,
            problem: format!("the config describes {params} parameters; at most {} are accepted", GptConfig::MAX_PARAMS),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hf_fixture_config_and_ignores_extra_keys() {
        let json = br#"{"activation_function":"gelu_new","n_embd":64,"n_head":4,"n_layer":2,
            "n_positions":32,"vocab_size":32,"summary_type":"cls_index","model_type":"gpt2"}"#;
        let c = GptConfig::from_json_bytes(json).unwrap();
        assert_eq!((c.n_embd, c.n_layer, c.head_dim(), c.mlp_width()), (64, 2, 16, 256));
    }

    #[test]
    fn round_trips_through_json() {
        let c = GptConfig::tiny(1000).with_special_tokens(0, 1);
        assert_eq!(GptConfig::from_json_bytes(c.to_json().as_bytes()).unwrap(), c);
    }

    #[test]
    fn refuses_another_activation_naming_the_field() {
        let mut c = GptConfig::tiny(100);
        c.activation_function = "relu".into();
        let err = GptConfig::from_json_bytes(c.to_json().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("activation_function"), "{err}");
    }

    #[test]
    fn refuses_heads_that_do_not_divide_the_width() {
        let err = GptConfig::new(10, 8, 30, 1, 4).validate().unwrap_err();
        assert!(err.to_string().contains("n_head"), "{err}");
    }

    #[test]
    fn an_absurd_shape_is_refused_naming_the_field_before_anything_is_built() {
        let mut c = GptConfig::tiny(100);
        c.n_layer = 1_000_000_000;
        let err = GptConfig::from_json_bytes(c.to_json().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("`n_layer`: 1000000000 is more than"), "{err}");
        let mut c = GptConfig::new(1 << 20, 1 << 16, 1 << 14, 256, 128);
        c.n_inner = Some(1 << 16);
        assert!(c.validate().unwrap_err().to_string().contains("parameters"));
        let json = br#"{"n_embd":64,"n_head":4,"n_layer":2,"n_positions":32,"vocab_size":32,"layer_norm_epsilon":-1}"#;
        assert!(GptConfig::from_json_bytes(json).unwrap_err().to_string().contains("layer_norm_epsilon"));
    }

    #[test]
    fn gpt2_124m_preset_has_124m_parameters() {
        let n = GptConfig::gpt2_124m(50257).num_params();
        assert_eq!(n, 124_439_808);
    }
}
