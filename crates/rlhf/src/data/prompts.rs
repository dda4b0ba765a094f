//! How much of a prompt a model sees: the one decision of the prompt budget, for both edges and
//! every stage that samples. A row holds the prompt and then the answer, so the prompt may keep
//! the context less the answer's tokens; never fewer than the two ids that
//! [`Tokenizer::encode_prompt_within`] keeps (the template's opening and the generation prompt),
//! so a model whose context is not larger than the answer gets a short prompt and a shorter answer
//! instead of an underflow. An answer length a person *asks for* is checked first
//! ([`check_answer_room`]): it must leave every prompt [`MIN_PROMPT_TOKENS`] of its own text.

use tinyrlhf_tokenizer::{Tokenizer, TokenizerError};

use crate::checkpoint::TrainError;

/// How long an answer sampled to be read or ranked may be, in tokens: the CLI's `sample`, `eval`
/// and `chat`, and the page's Rank and Compare views. The training methods have their own
/// `max_new_tokens` settings.
pub const ANSWER_TOKENS: usize = 48;

/// The most ids a prompt may keep in a `context`-token model that must leave `answer_tokens` for
/// the answer.
pub fn prompt_budget(context: usize, answer_tokens: usize) -> usize {
    context.saturating_sub(answer_tokens.max(1)).max(2)
}

/// The fewest tokens of its own text a prompt keeps beside the answer a person asks for.
pub const MIN_PROMPT_TOKENS: usize = 8;

/// Refuses an answer of `answer_tokens` that would leave a prompt fewer than
/// [`MIN_PROMPT_TOKENS`] of its own in a `context`-token model, after the chat template's own
/// tokens; `what` names the setting as the person set it.
pub fn check_answer_room(tokenizer: &Tokenizer, context: usize, answer_tokens: usize, what: &str) -> Result<(), TrainError> {
    let template = tokenizer.encode_prompt("").map_err(|e| TrainError::Setting(e.to_string()))?.len();
    let most = context.saturating_sub(template + MIN_PROMPT_TOKENS);
    if answer_tokens > most {
        return Err(TrainError::Setting(format!(
            "{what} = {answer_tokens} leaves no room for the prompt: the model's context is {context} tokens, the chat template takes {template} and a prompt keeps at least {MIN_PROMPT_TOKENS} of its own, so answers may be at most {most} tokens"
        )));
    }
    Ok(())
}

/// The chat-template ids of a training run's `prompts`, each leaving room for an answer of
/// `new_tokens` and its end-of-sequence token; refused if `new_tokens` leaves no prompt.
pub fn training_prompt_ids(
    tokenizer: &Tokenizer,
    context: usize,
    prompts: &[String],
    new_tokens: usize,
) -> Result<Vec<Vec<u32>>, TrainError> {
    let with_end = new_tokens.saturating_add(1);
    check_answer_room(tokenizer, context, with_end, "max_new_tokens + 1 (the end of the answer)")?;
    prompts
        .iter()
        .map(|p| prompt_ids(tokenizer, context, p, with_end).map(|(ids, _)| ids).map_err(|e| TrainError::Setting(e.to_string())))
        .collect()
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

    #[test]
    fn an_answer_length_that_leaves_no_prompt_is_refused_naming_the_context() {
        let tokenizer = Tokenizer::train(["the cat sat on the mat and the dog ran after the red ball"].into_iter(), 280).unwrap();
        let template = tokenizer.encode_prompt("").unwrap().len();
        let most = 128 - template - MIN_PROMPT_TOKENS;
        assert!(check_answer_room(&tokenizer, 128, most, "--max-new-tokens").is_ok());
        let message = check_answer_room(&tokenizer, 128, most + 1, "--max-new-tokens").unwrap_err().to_string();
        assert!(message.contains(&format!("--max-new-tokens = {}", most + 1)) && message.contains("context is 128 tokens"), "{message}");
        assert!(message.contains(&format!("at most {most} tokens")), "{message}");
        let prompts = vec!["the cat".to_owned(), "the dog ran".to_owned()];
        let ids = training_prompt_ids(&tokenizer, 128, &prompts, 48).unwrap();
        assert_eq!(ids, prompts.iter().map(|p| tokenizer.encode_prompt(p).unwrap()).collect::<Vec<_>>());
        assert!(training_prompt_ids(&tokenizer, 128, &prompts, most).is_err(), "the end-of-answer token needs its place too");
    }
}
