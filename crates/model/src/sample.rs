//! Batched generation with a KV cache: greedy, temperature, top-k, top-p; seeded.
//!
//! The sampler knows token ids, not text. Prompts of different lengths are left-padded and decoded
//! together; each row stops at its first EOS. Besides the tokens it returns each token's log-prob
//! under the distribution PPO optimises — softmax(logits / temperature), before any top-k/top-p
//! filtering — so a rollout carries the numbers PPO needs.
//!
//! Logits are read back to the host once per step to choose tokens. The read is async because
//! WebGPU allows no other kind; on the CPU backend the future is ready at once.

use burn::tensor::{Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::device_read::read_f32;
use crate::gpt::{Gpt, KvCache, left_pad};

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
    #[error("the model produced non-finite logits at step {step}")]
    NonFiniteLogits { step: usize },
    #[error("reading logits from the device failed: {0}")]
    Device(String),
}

impl SamplingConfig {
    fn validate(&self) -> Result<(), SampleError> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(SampleError::InvalidConfig(format!("temperature {} must be >= 0", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(SampleError::InvalidConfig(format!("top_p {} must be in (0, 1]", self.top_p)));
        }
        Ok(())
    }
}

/// Continues every prompt until EOS, `max_new_tokens`, or the end of the context.
pub async fn generate(model: &Gpt, prompts: &[Vec<u32>], eos: u32, pad: u32, config: &SamplingConfig) -> Result<Generation, SampleError> {
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
    let padded = left_pad(prompts, pad);
    // Each row may grow until its own last position; a long prompt does not shorten the others.
    let limit: Vec<usize> = prompts.iter().map(|p| config.max_new_tokens.min(ctx - p.len())).collect();
    let max_new = limit.iter().copied().max().unwrap_or(0);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut cache = KvCache::default();
    let mut positions: Vec<i64> = prompts.iter().map(|p| p.len() as i64).collect();
    let done = |out: &Generation, row: usize| out.finished[row] || out.tokens[row].len() >= limit[row];

    let (ids, pos, mask) = padded.tensors(&device);
    let mut hidden = model.forward_cached(ids, pos, mask, &mut cache); // [n, len, d]
    for step in 0..max_new {
        let t = hidden.dims()[1];
        let logits = model.logits(hidden.narrow(1, t - 1, 1)); // [n, 1, vocab]
        let logits = read_f32(logits).await.map_err(SampleError::Device)?;
        let mut next = Vec::with_capacity(n);
        for (row, row_logits) in logits.chunks_exact(vocab).enumerate() {
            if done(&out, row) {
                next.push(pad as i64);
                continue;
            }
            if row_logits.iter().any(|l| !l.is_finite()) {
                return Err(SampleError::NonFiniteLogits { step });
            }
            let (token, logprob) = choose_token(row_logits, config, &mut rng);
            out.tokens[row].push(token);
            out.logprobs[row].push(logprob);
            out.finished[row] = token == eos;
            next.push(token as i64);
        }
        if (0..n).all(|row| done(&out, row)) {
            break;
        }
        let column = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [n, 1]), &device);
        // Rows that are done keep feeding padding at a valid position; their outputs are ignored.
        let pos = column(positions.iter().map(|&p| p.min(ctx as i64 - 1)).collect());
        positions.iter_mut().for_each(|p| *p += 1);
        hidden = model.forward_cached(column(next), pos, column(vec![1; n]), &mut cache); // [n, 1, d]
    }
    Ok(out)
}

/// Picks one token from one row of logits; returns it with its log-prob (see [`Generation`]).
pub fn choose_token(logits: &[f32], config: &SamplingConfig, rng: &mut ChaCha8Rng) -> (u32, f32) {
    if config.temperature == 0.0 {
        let best = argmax(logits);
        return (best as u32, log_softmax(logits, 1.0)[best]);
    }
    let logprobs = log_softmax(logits, config.temperature);
    let mut candidates: Vec<usize> = (0..logits.len()).collect();
    if config.top_k > 0 || config.top_p < 1.0 {
        // Most likely first; ties by lower id so the order, and so the draw, is deterministic.
        candidates.sort_by(|&a, &b| logprobs[b].total_cmp(&logprobs[a]).then(a.cmp(&b)));
        if config.top_k > 0 {
            candidates.truncate(config.top_k);
        }
        if config.top_p < 1.0 {
            let mut mass = 0.0;
            let keep = candidates
                .iter()
                .position(|&i| {
                    mass += logprobs[i].exp();
                    mass >= config.top_p
                })
                .map_or(candidates.len(), |last| last + 1);
            candidates.truncate(keep);
        }
    }
    let total: f64 = candidates.iter().map(|&i| f64::from(logprobs[i]).exp()).sum();
    let mut threshold = rng.random::<f64>() * total;
    for &i in &candidates {
        threshold -= f64::from(logprobs[i]).exp();
        if threshold <= 0.0 {
            return (i as u32, logprobs[i]);
        }
    }
    let last = *candidates.last().expect("at least one candidate");
    (last as u32, logprobs[last])
}

fn argmax(values: &[f32]) -> usize {
    values.iter().enumerate().fold(0, |best, (i, &v)| if v > values[best] { i } else { best })
}

/// log softmax(logits / temperature), computed stably in f64.
pub fn log_softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
    let t = f64::from(temperature);
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &l| m.max(f64::from(l) / t));
    let lse = max + logits.iter().map(|&l| (f64::from(l) / t - max).exp()).sum::<f64>().ln();
    logits.iter().map(|&l| (f64::from(l) / t - lse) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(temperature: f32, top_k: usize, top_p: f32) -> SamplingConfig {
        SamplingConfig { temperature, top_k, top_p, ..Default::default() }
    }

    #[test]
    fn greedy_takes_the_largest_logit_with_its_untempered_logprob() {
        let logits = [0.5, 2.0, -1.0, 2.0];
        let (token, lp) = choose_token(&logits, &config(0.0, 0, 1.0), &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(token, 1, "ties go to the lower id");
        assert!((lp - log_softmax(&logits, 1.0)[1]).abs() < 1e-7);
    }

    #[test]
    fn top_k_samples_only_among_the_k_most_likely() {
        let logits = [3.0, 0.0, 2.9, 2.8, -5.0];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..500 {
            let (token, _) = choose_token(&logits, &config(5.0, 2, 1.0), &mut rng);
            assert!(token == 0 || token == 2, "{token}");
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_the_mass() {
        // probabilities ~ [0.64, 0.24, 0.09, 0.03]: p = 0.8 keeps the first two.
        let logits = [3.0, 2.0, 1.0, 0.0];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = [0; 4];
        for _ in 0..2000 {
            seen[choose_token(&logits, &config(1.0, 0, 0.8), &mut rng).0 as usize] += 1;
        }
        assert!(seen[0] > 0 && seen[1] > 0 && seen[2] == 0 && seen[3] == 0, "{seen:?}");
    }

    #[test]
    fn sampling_follows_the_tempered_distribution() {
        let logits = [1.0, 0.0];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let draws = 20_000;
        let ones = (0..draws).filter(|_| choose_token(&logits, &config(0.5, 0, 1.0), &mut rng).0 == 0).count();
        let expected = 1.0 / (1.0 + (-2.0f64).exp()); // softmax([2, 0])[0]
        assert!((ones as f64 / draws as f64 - expected).abs() < 0.015);
    }

    #[test]
    fn log_softmax_is_normalised_and_stable_for_huge_logits() {
        let lp = log_softmax(&[1000.0, 1001.0, 999.0], 0.7);
        let mass: f64 = lp.iter().map(|&l| f64::from(l).exp()).sum();
        assert!((mass - 1.0).abs() < 1e-6 && lp.iter().all(|l| l.is_finite()));
    }

    #[test]
    fn invalid_settings_are_refused() {
        assert!(config(-1.0, 0, 1.0).validate().is_err());
        assert!(config(f32::NAN, 0, 1.0).validate().is_err());
        assert!(config(1.0, 0, 0.0).validate().is_err());
        assert!(config(1.0, 0, 1.5).validate().is_err());
    }
}
