//! Training sequences for the supervised stages, and how a batch of them becomes tensors.
//!
//! An [`Example`] is a token sequence and, per token, whether predicting it counts in the loss.
//! Pretraining counts every token; SFT counts only the response and its EOS, so the model learns to
//! answer, not to write prompts.

use burn::tensor::{Device, Int, Tensor, TensorData};
use tinyrlhf_data::Demonstration;
use tinyrlhf_tokenizer::{Tokenizer, TokenizerError};

/// A token sequence and which of its tokens are prediction targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub tokens: Vec<u32>,
    /// `target[i]`: whether predicting `tokens[i]` (from `tokens[..i]`) is trained; `target[0]` is
    /// never used, as nothing precedes the first token.
    pub target: Vec<bool>,
}

/// Cuts a token stream into examples of `len + 1` tokens (`len` predictions each), every token a
/// target. The tail shorter than that is dropped.
pub fn pack(stream: &[u32], len: usize) -> Vec<Example> {
    stream.chunks_exact(len + 1).map(|chunk| Example { tokens: chunk.to_vec(), target: vec![true; len + 1] }).collect()
}

/// A chat-template example whose targets are the response tokens and the closing EOS only.
/// Returns `None` when prompt and response do not fit in `max_len` tokens.
pub fn chat_example(tokenizer: &Tokenizer, prompt: &str, response: &str, max_len: usize) -> Result<Option<Example>, TokenizerError> {
    let response = tokenizer.encode_response(prompt, response)?;
    let prompt = tokenizer.encode_prompt(prompt)?;
    if prompt.len() + response.len() > max_len {
        return Ok(None);
    }
    let target = std::iter::repeat_n(false, prompt.len()).chain(std::iter::repeat_n(true, response.len())).collect();
    Ok(Some(Example { tokens: [prompt, response].concat(), target }))
}

/// Demonstrations as [`chat_example`]s, and how many were left out for not fitting in `context`.
pub fn sft_examples(tokenizer: &Tokenizer, demos: &[Demonstration], context: usize) -> Result<(Vec<Example>, usize), TokenizerError> {
    let mut examples = Vec::with_capacity(demos.len());
    for demo in demos {
        examples.extend(chat_example(tokenizer, &demo.prompt, &demo.response, context)?);
    }
    let left_out = demos.len() - examples.len();
    Ok((examples, left_out))
}

/// `(train, validation)`: 2% of the examples (at least 1 when there are two, at most 200) held back
/// for a validation loss the trainer never steps on; the first ones, so the split is the same for a
/// given file.
pub fn split_validation(mut examples: Vec<Example>) -> (Vec<Example>, Vec<Example>) {
    let count = (examples.len() / 50).clamp(1, 200).min(examples.len().saturating_sub(1));
    let train = examples.split_off(count);
    (train, examples)
}

/// A batch as tensors: inputs `[batch, len]`, right-padded, and the targets that count in the loss.
/// Right padding needs no attention mask: causal attention never lets a real token see the padding
/// that follows it. Only the positions of counted targets go through the LM head: a prompt's (a
/// quarter to two thirds of a chat example) and padding's never reach it.
#[derive(Debug)]
pub struct LmBatch {
    pub inputs: Tensor<2, Int>,
    pub positions: Tensor<2, Int>,
    /// Where the counted targets are, as flat `row * len + t` indices of the batch's positions, `[m]`.
    pub trained: Tensor<1, Int>,
    /// The counted targets, in that order, `[m]`.
    pub targets: Tensor<1, Int>,
    /// 1 where a counted target belongs to a row, `[batch, m]`: sums them per row.
    pub rows: Tensor<2>,
    /// Number of counted targets, `m`.
    pub target_tokens: usize,
}

impl LmBatch {
    pub fn new(examples: &[&Example], pad: u32, device: &Device) -> Self {
        let b = examples.len();
        let len = examples.iter().map(|e| e.tokens.len() - 1).max().unwrap_or(0);
        let mut inputs = Vec::with_capacity(b * len);
        let (mut trained, mut targets, mut row_of) = (vec![], vec![], vec![]);
        for (row, e) in examples.iter().enumerate() {
            let n = e.tokens.len() - 1;
            inputs.extend(e.tokens[..n].iter().map(|&t| t as i64).chain(std::iter::repeat_n(pad as i64, len - n)));
            for (t, (&target, _)) in e.tokens[1..].iter().zip(&e.target[1..]).enumerate().filter(|(_, (_, counts))| **counts) {
                trained.push((row * len + t) as i64);
                targets.push(target as i64);
                row_of.push(row);
            }
        }
        let m = trained.len();
        let mut rows = vec![0.0f32; b * m];
        for (i, &row) in row_of.iter().enumerate() {
            rows[row * m + i] = 1.0;
        }
        let positions: Vec<i64> = (0..b).flat_map(|_| 0..len as i64).collect();
        Self {
            inputs: Tensor::from_data(TensorData::new(inputs, [b, len]), device),
            positions: Tensor::from_data(TensorData::new(positions, [b, len]), device),
            trained: Tensor::from_data(TensorData::new(trained, [m]), device),
            targets: Tensor::from_data(TensorData::new(targets, [m]), device),
            rows: Tensor::from_data(TensorData::new(rows, [b, m]), device),
            target_tokens: m,
        }
    }
}
