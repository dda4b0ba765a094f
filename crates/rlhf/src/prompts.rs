//! How much of a prompt a model sees: the one decision of the prompt budget, for both edges and
//! every stage that samples. A row holds the prompt and then the answer, so the prompt may keep
//! the context less the answer's tokens; never fewer than the two ids that
//! [`Tokenizer::encode_prompt_within`] keeps (the template's opening and the generation prompt),
//! so a model whose context is not larger than the answer gets a short prompt and a shorter answer
//! instead of an underflow.

use tinyrlhf_tokenizer::{Tokenizer, TokenizerError};

/// How long an answer sampled to be read or ranked may be, in tokens: the CLI's `sample`, `eval`
/// and `chat`, and the page's Rank and Compare views. The training methods have their own
/// `max_new_tokens` settings.
pub const ANSWER_TOKENS: usize = 48;

/// The most ids a prompt may keep in a `context`-token model that must leave `answer_tokens` for
/// the answer.
pub fn prompt_budget(context: usize, answer_tokens: usize) -> usize {
    context.saturating_sub(answer_tokens.max(1)).max(2)
}

/// A prompt's chat-template ids within [`prompt_budget`], and whether it was cut.
pub fn prompt_ids(tokenizer: &Tokenizer, context: usize, prompt: &str, answer_tokens: usize) -> Result<(Vec<u32>, bool), TokenizerError> {
    tokenizer.encode_prompt_within(prompt, prompt_budget(context, answer_tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_32_token_context_leaves_room_for_the_answer_and_never_underflows() {
        assert_eq!(prompt_budget(32, 8), 24);
        assert_eq!(prompt_budget(32, 0), 31, "at least one token of answer");
        assert_eq!(prompt_budget(32, 32), 2, "an answer as long as the context still leaves a prompt");
        assert_eq!(prompt_budget(32, 100), 2);
        let tokenizer = Tokenizer::train(["the cat sat on the mat and the dog ran after the red ball"].into_iter(), 280).unwrap();
        let long = "the cat sat on the mat ".repeat(20);
        let (ids, cut) = prompt_ids(&tokenizer, 32, &long, 48).unwrap();
        assert!(cut && ids.len() == 2, "{ids:?}");
        let (ids, cut) = prompt_ids(&tokenizer, 32, "the cat", 8).unwrap();
        assert!(!cut && ids.len() <= 24);
    }
}
