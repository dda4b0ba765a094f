//! Whether models can work together: a reward model, a value model, a reference or a policy to
//! compare must read the policy's tokens with the policy's shape. One answer for every edge (the
//! CLI's stages, the page's imports) and every trainer that pairs models.

use tinyrlhf_model::{CausalLm, ModelConfig};
use tinyrlhf_tokenizer::Tokenizer;

use crate::checkpoint::TrainError;

/// What must agree for two models to share token ids and hidden states: architecture family,
/// vocabulary, context, width, layers, heads.
type Shape = (&'static str, usize, usize, usize, usize, usize);

fn shape(c: &ModelConfig) -> Shape {
    (c.family(), c.vocab_size(), c.context_length(), c.width(), c.num_layers(), c.heads())
}

/// `other` (named by `role`, e.g. "the reward model in rm/") has the policy's shape, or an error
/// that shows both.
pub fn check_same_shape(role: &str, policy: &ModelConfig, other: &ModelConfig) -> Result<(), TrainError> {
    compare(role, shape(policy), shape(other))
}

fn compare(role: &str, policy: Shape, other: Shape) -> Result<(), TrainError> {
    if policy == other {
        return Ok(());
    }
    Err(TrainError::Incompatible(format!(
        "{role} has a different size (architecture, vocabulary, context, width, layers, heads = {:?}) than the policy ({:?}); it must come from the same SFT model",
        other, policy
    )))
}

/// A model already built (e.g. the reward model handed to a trainer) has the policy's shape; heads
/// are not visible in the weights, so they are taken as the policy's.
pub fn check_model_shape(role: &str, policy: &ModelConfig, other: &CausalLm) -> Result<(), TrainError> {
    let found = (other.family(), other.vocab_size(), other.context_length(), other.width(), other.num_layers(), policy.heads());
    compare(role, shape(policy), found)
}

/// `other`'s tokenizer is the policy's: the same ids for the same text.
pub fn check_same_tokenizer(role: &str, policy: &Tokenizer, other: &Tokenizer) -> Result<(), TrainError> {
    let json = |t: &Tokenizer| t.to_json().map_err(|e| TrainError::Incompatible(e.to_string()));
    if json(policy)? == json(other)? {
        return Ok(());
    }
    Err(TrainError::Incompatible(format!("{role} was made with another tokenizer than the policy; use models from one pipeline")))
}

/// Both checks, for models that come with their tokenizer (a model directory).
pub fn check_compatible(role: &str, policy: (&ModelConfig, &Tokenizer), other: (&ModelConfig, &Tokenizer)) -> Result<(), TrainError> {
    check_same_tokenizer(role, policy.1, other.1)?;
    check_same_shape(role, policy.0, other.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyrlhf_model::GptConfig;

    #[test]
    fn a_model_of_another_shape_is_refused_showing_both_shapes() {
        let gpt = GptConfig::tiny(300);
        let policy = ModelConfig::from(gpt.clone());
        assert!(check_same_shape("the reward model", &policy, &policy.clone()).is_ok());
        let other = ModelConfig::from(GptConfig { n_layer: gpt.n_layer + 1, ..gpt });
        let message = check_same_shape("the reward model in rm/", &policy, &other).unwrap_err().to_string();
        assert!(message.contains("the reward model in rm/ has a different size"), "{message}");
        assert!(message.contains(&format!("{:?}", shape(&policy))), "{message}");
    }

    #[test]
    fn a_model_of_another_tokenizer_is_refused() {
        let a = Tokenizer::train(["the cat sat on the mat"].into_iter(), 280).unwrap();
        let b = Tokenizer::train(["a dog ran to the red ball"].into_iter(), 280).unwrap();
        assert!(check_same_tokenizer("the reference", &a, &a).is_ok());
        assert!(check_same_tokenizer("the reference", &a, &b).unwrap_err().to_string().contains("another tokenizer"));
    }
}
