//! Choosing the next token of every row on the device: greedy by argmax, or sampled by inverse
//! CDF — the first token whose cumulative probability reaches a uniform draw times the kept mass —
//! after top-k / top-p have zeroed what they cut. Only the chosen ids ever need to leave the device.
//!
//! burn's sort and top-k read the tensor back on the GPU backends (a synchronous read, which
//! WebGPU forbids), so the top-k / top-p cut is found without sorting: a bisection per row on the
//! threshold, all rows at once, in a fixed number of element-wise passes. Tokens tied with the last
//! one kept are all kept.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Int, Tensor};

use crate::sample::SamplingConfig;

/// Bisection steps for a top-k / top-p threshold: the cut is found to 2^-32 of the row's range.
const BISECTION_STEPS: usize = 32;

/// One token per row of `logits` (`[n, vocab]`), with its log-prob under softmax(logits /
/// temperature) before any cut (plain softmax when greedy). `uniforms` (`[n, 1]`, each in (0, 1))
/// are the draws; greedy ignores them. Returns `([n, 1]` ids, `[n, 1]` log-probs), on the device.
pub fn choose_tokens(logits: Tensor<2>, uniforms: Tensor<2>, config: &SamplingConfig) -> (Tensor<2, Int>, Tensor<2>) {
    let [n, vocab] = logits.dims();
    if config.temperature == 0.0 {
        let token = logits.clone().argmax(1); // [n, 1]
        let logprob = log_softmax(logits, 1).gather(1, token.clone());
        return (token, logprob);
    }
    let logprobs = log_softmax(logits / f64::from(config.temperature), 1); // [n, vocab]
    let mut probs = logprobs.clone().exp();
    if config.top_k > 0 && config.top_k < vocab {
        let ones = probs.ones_like();
        let keep = at_least(logprobs.clone(), ones, config.top_k as f64);
        probs = probs.mask_fill(keep.bool_not(), 0.0);
    }
    if config.top_p < 1.0 {
        // The mass is of the whole distribution, as in the host-side samplers this replaces.
        let keep = at_least(probs.clone(), probs.clone(), f64::from(config.top_p));
        probs = probs.mask_fill(keep.bool_not(), 0.0);
    }
    let cdf = probs.cumsum(1); // [n, vocab]
    let target = (uniforms * cdf.clone().narrow(1, vocab - 1, 1)).expand([n, vocab]);
    // Tokens whose cumulative mass is still below the draw come before the chosen one.
    let token = cdf.lower(target).int().sum_dim(1).clamp_max(vocab as i64 - 1); // [n, 1]
    let logprob = logprobs.gather(1, token.clone());
    (token, logprob)
}

/// Per row, the tokens whose `values` are at or above the largest threshold that keeps a total of
/// `weights` of at least `target` (`[n, vocab]` -> `[n, vocab]` mask): with unit weights, the
/// `target` largest; with probabilities as both, the smallest most-likely set reaching that mass.
fn at_least(values: Tensor<2>, weights: Tensor<2>, target: f64) -> Tensor<2, Bool> {
    let [n, vocab] = values.dims();
    let mut lo = values.clone().min_dim(1); // [n, 1]: keeps everything, so enough
    let mut hi = values.clone().max_dim(1); // [n, 1]
    for _ in 0..BISECTION_STEPS {
        let mid = (lo.clone() + hi.clone()) / 2.0;
        let kept = weights.clone().mask_fill(values.clone().lower(mid.clone().expand([n, vocab])), 0.0).sum_dim(1);
        let enough = kept.greater_equal_elem(target); // [n, 1]
        lo = lo.mask_where(enough.clone(), mid.clone());
        hi = hi.mask_where(enough.bool_not(), mid);
    }
    values.greater_equal(lo.expand([n, vocab]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn config(temperature: f32, top_k: usize, top_p: f32) -> SamplingConfig {
        SamplingConfig { temperature, top_k, top_p, ..Default::default() }
    }

    /// `rows` copies of `logits`, each with its own uniform draw; the chosen ids and log-probs.
    fn draw(logits: &[f32], rows: usize, config: &SamplingConfig, seed: u64) -> (Vec<usize>, Vec<f32>) {
        let device = Device::flex();
        let vocab = logits.len();
        let all: Vec<f32> = (0..rows).flat_map(|_| logits.iter().copied()).collect();
        let logits = Tensor::<2>::from_data(TensorData::new(all, [rows, vocab]), &device);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let draws: Vec<f32> = (0..rows).map(|_| crate::sample::uniform(&mut rng)).collect();
        let uniforms = Tensor::<2>::from_data(TensorData::new(draws, [rows, 1]), &device);
        let (tokens, logprobs) = choose_tokens(logits, uniforms, config);
        let tokens = tokens.into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        (tokens.into_iter().map(|t| t as usize).collect(), logprobs.into_data().try_to_vec::<f32>().unwrap())
    }

    fn counts(tokens: &[usize], vocab: usize) -> Vec<usize> {
        let mut seen = vec![0; vocab];
        tokens.iter().for_each(|&t| seen[t] += 1);
        seen
    }

    /// log softmax(logits / t), in f64.
    fn reference_logprobs(logits: &[f32], t: f64) -> Vec<f64> {
        let scaled: Vec<f64> = logits.iter().map(|&l| f64::from(l) / t).collect();
        let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + scaled.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        scaled.iter().map(|x| x - lse).collect()
    }

    #[test]
    fn greedy_takes_the_largest_logit_with_its_untempered_logprob() {
        let logits = [0.5, 2.5, -1.0, 2.0];
        let (tokens, logprobs) = draw(&logits, 3, &config(0.0, 0, 1.0), 0);
        assert_eq!(tokens, vec![1, 1, 1]);
        assert!((f64::from(logprobs[0]) - reference_logprobs(&logits, 1.0)[1]).abs() < 1e-6);
    }

    #[test]
    fn sampling_follows_the_tempered_distribution_and_reports_its_logprob() {
        let logits = [1.0, 0.0, -0.5];
        let expected = reference_logprobs(&logits, 0.5);
        let (tokens, logprobs) = draw(&logits, 20_000, &config(0.5, 0, 1.0), 3);
        for (token, seen) in counts(&tokens, 3).into_iter().enumerate() {
            assert!((seen as f64 / 20_000.0 - expected[token].exp()).abs() < 0.012, "token {token}: {seen}");
        }
        for (&t, &lp) in tokens.iter().zip(&logprobs) {
            assert!((f64::from(lp) - expected[t]).abs() < 1e-5);
        }
    }

    #[test]
    fn top_k_samples_only_among_the_k_most_likely() {
        let logits = [3.0, 0.0, 2.9, 2.8, -5.0];
        let (tokens, _) = draw(&logits, 2_000, &config(5.0, 2, 1.0), 7);
        let seen = counts(&tokens, 5);
        assert!(seen[0] > 0 && seen[2] > 0 && seen[0] + seen[2] == 2_000, "{seen:?}");
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_the_mass() {
        // probabilities ~ [0.64, 0.24, 0.09, 0.03]: p = 0.8 keeps the first two, 0.9 three.
        let logits = [3.0, 2.0, 1.0, 0.0];
        let seen = counts(&draw(&logits, 2_000, &config(1.0, 0, 0.8), 1).0, 4);
        assert!(seen[0] > 0 && seen[1] > 0 && seen[2] == 0 && seen[3] == 0, "{seen:?}");
        let seen = counts(&draw(&logits, 2_000, &config(1.0, 0, 0.9), 1).0, 4);
        assert!(seen[2] > 0 && seen[3] == 0, "{seen:?}");
    }

    #[test]
    fn top_k_and_top_p_together_keep_the_shorter_of_the_two_sets() {
        let logits = [3.0, 2.0, 1.0, 0.0];
        let seen = counts(&draw(&logits, 2_000, &config(1.0, 3, 0.8), 2).0, 4);
        assert!(seen[0] > 0 && seen[1] > 0 && seen[2] == 0, "top-p is shorter: {seen:?}");
        let seen = counts(&draw(&logits, 2_000, &config(1.0, 1, 0.99), 2).0, 4);
        assert_eq!(seen, vec![2_000, 0, 0, 0], "top-k is shorter");
    }

    #[test]
    fn a_token_of_zero_probability_is_never_drawn_whatever_the_draw() {
        // Extreme draws at both ends of (0, 1) land on a kept token.
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 5.0, 4.0, 0.0, 5.0, 4.0], [2, 3]), &device);
        let uniforms = Tensor::<2>::from_data(TensorData::new(vec![0.5f32 / 16_777_216.0, 1.0 - 0.5 / 16_777_216.0], [2, 1]), &device);
        let (tokens, _) = choose_tokens(logits, uniforms, &config(1.0, 2, 1.0));
        let tokens = tokens.into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        assert_eq!(tokens, vec![1, 2]);
    }

    #[test]
    fn the_same_draws_give_the_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let seed = rng.random::<u64>();
        let a = draw(&logits, 64, &config(1.2, 10, 0.9), seed);
        assert_eq!(a, draw(&logits, 64, &config(1.2, 10, 0.9), seed));
        assert_ne!(a.0, draw(&logits, 64, &config(1.2, 10, 0.9), seed + 1).0);
    }
}
