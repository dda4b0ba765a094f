//! Batched generation with a KV cache: greedy, temperature, top-k, top-p; seeded.
//!
//! The sampler knows token ids, not text. Prompts of different lengths are left-padded and decoded
//! together; each row stops at its first EOS. Besides the tokens it returns each token's log-prob
//! under the distribution PPO optimises — softmax(logits / temperature), before any top-k/top-p
//! filtering — so a rollout carries the numbers PPO needs.
//!
//! Tokens are chosen on the device ([`choose_tokens`]) from uniform draws made up front on the
//! host from the seed, so a seed fixes the answers on every backend. Rows that reached EOS keep
//! feeding padding there, and the ids are read back once per [`READ_EVERY`] tokens: on a GPU each
//! read is a round trip that stalls the queue. The read is async because WebGPU allows no other
//! kind; on the CPU backend the future is ready at once.

use burn::tensor::{Bool, Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::awake_threads::KeepAwake;
use crate::batch::left_pad;
use crate::causal_lm::CausalLm;
use crate::choose::choose_tokens;
use crate::decode_attention::fused_for;
use crate::decode_sampler::{ChooseStep, choose_decoded};
use crate::device_read::read_f32;
use crate::generating::Generating;
use crate::kv_cache::KvCache;
use crate::log_softmax::on_cpu_backend;

/// Generated ids are read back once per this many tokens (and when the last token is made): a row
/// may run up to this many tokens past its EOS on the device, which costs less than a read.
pub const READ_EVERY: usize = 8;

/// How to choose tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// Tokens to generate at most per row; fewer if the context fills up first.
    pub max_new_tokens: usize,
    /// 0 picks the most likely token (greedy); otherwise logits are divided by it.
    pub temperature: f32,
    /// Sample only among the `top_k` most likely tokens; 0 turns it off.
    pub top_k: usize,
    /// Sample only among the most likely tokens whose probabilities sum to `top_p`; 1 turns it off.
    pub top_p: f32,
    /// The same seed, model and prompts give the same tokens.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self { max_new_tokens: 64, temperature: 1.0, top_k: 0, top_p: 1.0, seed: 0 }
    }
}

/// What came out of [`generate`], one entry per prompt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Generation {
    /// Generated ids, up to and including the first EOS; never padding.
    pub tokens: Vec<Vec<u32>>,
    /// log pi(token | prefix) for each generated token, under softmax(logits / temperature)
    /// (plain softmax(logits) when greedy).
    pub logprobs: Vec<Vec<f32>>,
    /// True where the row ended with EOS; false where it ran out of tokens or context.
    pub finished: Vec<bool>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SampleError {
    #[error("prompt {index} is empty; give at least one token")]
    EmptyPrompt { index: usize },
    #[error("prompt {index} has {len} tokens but the model's context holds {max} (one must stay free for the answer)")]
    PromptTooLong { index: usize, len: usize, max: usize },
    #[error("prompt {index} contains token id {token}, outside the model's vocabulary of {vocab}")]
    TokenOutOfVocab { index: usize, token: u32, vocab: usize },
    #[error("invalid sampling setting: {0}")]
    InvalidConfig(String),
    #[error(
        "the model produced non-finite logits at token {step} of the answer: its weights or adapters overflow f32 (an adapter scaled by too large a LoRA alpha over its rank, or a run that diverged)"
    )]
    NonFiniteLogits { step: usize },
    #[error("reading logits from the device failed: {0}")]
    Device(String),
}

/// The smallest temperature above 0 (greedy) sampling accepts.
pub const MIN_TEMPERATURE: f32 = 1e-3;

impl SamplingConfig {
    fn validate(&self) -> Result<(), SampleError> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(SampleError::InvalidConfig(format!("temperature {} must be >= 0", self.temperature)));
        }
        // Dividing logits by a temperature this small overflows them to infinity.
        if self.temperature > 0.0 && self.temperature < MIN_TEMPERATURE {
            return Err(SampleError::InvalidConfig(format!(
                "temperature {} is too small to divide logits by: use 0 for greedy, or at least {MIN_TEMPERATURE}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(SampleError::InvalidConfig(format!("top_p {} must be in (0, 1]", self.top_p)));
        }
        Ok(())
    }
}

/// Continues every prompt until EOS, `max_new_tokens`, or the end of the context.
pub async fn generate(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    eos: u32,
    pad: u32,
    config: &SamplingConfig,
) -> Result<Generation, SampleError> {
    config.validate()?;
    let (ctx, vocab) = (model.context_length(), model.vocab_size());
    for (index, prompt) in prompts.iter().enumerate() {
        if prompt.is_empty() {
            return Err(SampleError::EmptyPrompt { index });
        }
        if prompt.len() >= ctx {
            return Err(SampleError::PromptTooLong { index, len: prompt.len(), max: ctx - 1 });
        }
        if let Some(&token) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(SampleError::TokenOutOfVocab { index, token, vocab });
        }
    }
    let n = prompts.len();
    let mut out = Generation { tokens: vec![vec![]; n], logprobs: vec![vec![]; n], finished: vec![false; n] };
    if n == 0 {
        return Ok(out);
    }

    let device = model.device();
    let (_awake, _generating) = (KeepAwake::new(on_cpu_backend(&device)), Generating::start());
    let padded = left_pad(prompts, pad);
    // Each row may grow until its own last position; a long prompt does not shorten the others.
    let limit: Vec<usize> = prompts.iter().map(|p| config.max_new_tokens.min(ctx - p.len())).collect();
    let max_new = limit.iter().copied().max().unwrap_or(0);
    if max_new == 0 {
        return Ok(out);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let draws: Vec<f32> = (0..n * max_new).map(|_| uniform(&mut rng)).collect();
    let draws = Tensor::<2>::from_data(TensorData::new(draws, [n, max_new]), &device); // [n, max_new]
    let column = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [n, 1]), &device);
    let mut positions: Vec<i64> = prompts.iter().map(|p| p.len() as i64).collect();
    let done = |out: &Generation, row: usize| out.finished[row] || out.tokens[row].len() >= limit[row];
    let mut stopped = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; n], [n, 1]), &device);
    let mut cache = KvCache::default();
    let mut unread: Vec<Tensor<2>> = vec![]; // [n, 3] per token: id, non-finite flag, log-prob

    let (ids, pos, mask) = padded.tensors(&device);
    let mut hidden = model.forward_cached(ids, pos, mask, &mut cache); // [n, len, d]
    // On a GPU a step's choice is one kernel (`decode_sampler.rs`), on the CPU a few passes a row;
    // either keeps its stops as 0/1. Other backends take `choose.rs`' ops.
    let fused = fused_for(std::slice::from_ref(&device));
    let mut stopped_rows = Tensor::<2>::zeros([n, 1], &device);
    for step in 0..max_new {
        let t = hidden.dims()[1];
        let logits = model.logits(hidden.narrow(1, t - 1, 1)).reshape([n, vocab]);
        let token = if (fused && fused_for(&[logits.device()])) || on_cpu_backend(&logits.device()) {
            let (chosen, after) = choose_decoded(logits, draws.clone(), stopped_rows, ChooseStep::new(step, config, pad, eos, vocab));
            stopped_rows = after;
            unread.push(chosen.clone()); // [n, 3]
            chosen.narrow(1, 0, 1).int() // [n, 1]
        } else {
            let non_finite = logits.clone().is_finite().bool_not().any_dim(1); // [n, 1]
            let (token, logprob) = choose_tokens(logits, draws.clone().narrow(1, step, 1), config);
            let token = token.mask_fill(stopped.clone(), pad as i64); // [n, 1]
            // An EOS outside the vocabulary is never drawn (and would not fit a GPU's i32 ids).
            if (eos as usize) < vocab {
                stopped = stopped.bool_or(token.clone().equal_elem(eos as i64));
            }
            // Ids are below 2^24, so they travel exactly as f32 beside the other two.
            unread.push(Tensor::cat(vec![token.clone().float(), non_finite.float(), logprob], 1));
            token
        };

        if unread.len() == READ_EVERY || step + 1 == max_new {
            let first = step + 1 - unread.len();
            let numbers = read_f32(Tensor::stack::<3>(std::mem::take(&mut unread), 1)).await.map_err(SampleError::Device)?;
            let steps = numbers.len() / (3 * n);
            for (row, values) in numbers.chunks_exact(3 * steps).enumerate() {
                for (s, v) in values.chunks_exact(3).enumerate() {
                    if done(&out, row) {
                        break;
                    }
                    if v[1] != 0.0 {
                        return Err(SampleError::NonFiniteLogits { step: first + s });
                    }
                    let token = v[0] as u32;
                    out.tokens[row].push(token);
                    out.logprobs[row].push(v[2]);
                    out.finished[row] = token == eos;
                }
            }
            if (0..n).all(|row| done(&out, row)) {
                break;
            }
        }
        if step + 1 == max_new {
            break;
        }
        // Rows that are done keep feeding padding at a valid position; their outputs are ignored.
        let pos = column(positions.iter().map(|&p| p.min(ctx as i64 - 1)).collect());
        positions.iter_mut().for_each(|p| *p += 1);
        hidden = model.forward_cached(token, pos, column(vec![1; n]), &mut cache); // [n, 1, d]
    }
    Ok(out)
}

/// A uniform draw in (0, 1), never 0 or 1, from the sampler's seeded stream: 24 random bits, centred.
pub(crate) fn uniform(rng: &mut ChaCha8Rng) -> f32 {
    ((rng.random::<u32>() >> 8) as f32 + 0.5) / 16_777_216.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_are_refused() {
        let config = |temperature, top_p| SamplingConfig { temperature, top_p, ..Default::default() };
        assert!(config(-1.0, 1.0).validate().is_err());
        assert!(config(f32::NAN, 1.0).validate().is_err());
        assert!(config(1.0, 0.0).validate().is_err());
        assert!(config(1.0, 1.5).validate().is_err());
    }

    #[test]
    fn draws_stay_inside_the_open_interval() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert!((0..10_000).map(|_| uniform(&mut rng)).all(|u| u > 0.0 && u < 1.0));
    }
}
