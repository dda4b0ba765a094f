//! PPO's arithmetic between a rollout and the updates, as free functions over plain numbers:
//! truncation after EOS, the missing-EOS penalty, per-token KL, reward shaping, GAE and masked
//! whitening, and the adaptive KL coefficient. Row `i`, column `t` is token `t` of response `i`.
//!
//! The layout is TRL 1.12's (`trl/experimental/ppo/ppo_trainer.py`), reproduced to 1e-9 in tests:
//! `sequence_length` is the index of the last real token (the EOS); log-probs count up to and
//! including it; values count one position further, the state *after* the EOS, which is where the
//! score is paid (clamped to the last column). Paying the score one step after the EOS lets the
//! value head learn the score from the same hidden state the reward model reads.
//!
//! These run on the host in f64: a rollout is a few thousand numbers, and the loops read like
//! the papers' equations. The losses that need gradients are tensors, in `losses.rs`.

use serde::{Deserialize, Serialize};

/// Rows of per-token values, `[batch][response_len]`.
pub type Rows = Vec<Vec<f64>>;
/// Rows of flags, `true` where the position is padding.
pub type Mask = Vec<Vec<bool>>;

/// Which estimate of KL(policy || reference) a token contributes (see joschu.net/blog/kl-approx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// log pi - log ref: unbiased, can be negative per token.
    #[default]
    K1,
    /// (r - 1) - log r with r = ref / pi: unbiased, never negative, lower variance.
    K3,
}

impl std::str::FromStr for KlEstimator {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "k1" => Ok(Self::K1),
            "k3" => Ok(Self::K3),
            other => Err(format!("unknown KL estimator {other:?}; use k1 or k3")),
        }
    }
}

/// Responses after truncation: everything after the first EOS becomes padding.
#[derive(Debug, Clone, PartialEq)]
pub struct Postprocessed {
    pub responses: Vec<Vec<u32>>,
    /// Index of each row's last real token (the EOS when there is one).
    pub sequence_lengths: Vec<usize>,
    pub contain_eos: Vec<bool>,
}

/// Truncates each row after its first `eos` and reads off lengths the way TRL does: the last real
/// token is the one before the first `pad` (the last column when there is none). A row that starts
/// with `pad` keeps length 0 rather than TRL's -1; the sampler never produces one.
pub fn postprocess_responses(responses: &[Vec<u32>], eos: u32, pad: u32) -> Postprocessed {
    let mut out = Postprocessed { responses: vec![], sequence_lengths: vec![], contain_eos: vec![] };
    for row in responses {
        let mut truncated = row.clone();
        if let Some(end) = row.iter().position(|&t| t == eos) {
            truncated[end + 1..].fill(pad);
        }
        let first_pad = truncated.iter().position(|&t| t == pad).unwrap_or(truncated.len());
        out.sequence_lengths.push(first_pad.saturating_sub(1));
        out.contain_eos.push(truncated.contains(&eos));
        out.responses.push(truncated);
    }
    out
}

/// [`postprocess_responses`] for the sampler's rows (each up to and including its first EOS, never
/// padding), right-padded with `pad` one column past the longest. Lengths come from the rows
/// themselves, not from finding `pad`, so `pad == eos` (GPT-2 has no pad token) works: the EOS
/// counts as the answer's last token and a row cut by the length limit has none.
pub fn postprocess_generated(generated: &[Vec<u32>], eos: u32, pad: u32) -> Postprocessed {
    let width = generated.iter().map(Vec::len).max().unwrap_or(0) + 1;
    let mut out = Postprocessed { responses: vec![], sequence_lengths: vec![], contain_eos: vec![] };
    for row in generated {
        let end = row.iter().position(|&t| t == eos).map_or(row.len(), |i| i + 1);
        out.responses.push(row[..end].iter().copied().chain(std::iter::repeat(pad)).take(width).collect());
        out.sequence_lengths.push(end.saturating_sub(1));
        out.contain_eos.push(row[..end].contains(&eos));
    }
    out
}

/// Responses without an EOS lose `penalty` from their score (the "EOS trick").
pub fn apply_missing_eos_penalty(scores: &[f64], contain_eos: &[bool], penalty: f64) -> Vec<f64> {
    scores.iter().zip(contain_eos).map(|(&s, &eos)| if eos { s } else { s - penalty }).collect()
}

/// `(padding_mask, padding_mask_p1)`: positions after the last real token, and after the one
/// past it (where values and the score still count).
pub fn padding_masks(sequence_lengths: &[usize], len: usize) -> (Mask, Mask) {
    let mask = |extra: usize| sequence_lengths.iter().map(|&s| (0..len).map(|t| t > s + extra).collect()).collect();
    (mask(0), mask(1))
}

/// Per-token KL(policy || reference) from the two log-probs of each sampled token; 0 on padding.
pub fn per_token_kl(logprobs: &Rows, ref_logprobs: &Rows, padding: &Mask, estimator: KlEstimator) -> Rows {
    rows_map3(logprobs, ref_logprobs, padding, |lp, rlp, pad| {
        if pad {
            return 0.0;
        }
        let logr = rlp - lp;
        match estimator {
            KlEstimator::K1 => -logr,
            KlEstimator::K3 => logr.exp() - 1.0 - logr,
        }
    })
}

/// r_t = -beta * KL_t, plus the score at the position after each row's last token (or at the last
/// column when the row fills it).
pub fn shape_rewards(kl: &Rows, scores: &[f64], sequence_lengths: &[usize], kl_coef: f64) -> Rows {
    let mut rewards: Rows = kl.iter().map(|row| row.iter().map(|k| -kl_coef * k).collect()).collect();
    for ((row, &score), &s) in rewards.iter_mut().zip(scores).zip(sequence_lengths) {
        let end = if s + 1 < row.len() { s + 1 } else { s };
        row[end] += score;
    }
    rewards
}

/// Mean over the positions where `valid` is true.
pub fn masked_mean(values: &Rows, valid: &Mask) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for (row, keep) in values.iter().zip(valid) {
        for (&v, &k) in row.iter().zip(keep) {
            if k {
                sum += v;
                n += 1;
            }
        }
    }
    sum / n.max(1) as f64
}

/// Unbiased (Bessel-corrected) variance over the valid positions; 0 with fewer than two.
pub fn masked_var(values: &Rows, valid: &Mask) -> f64 {
    let mean = masked_mean(values, valid);
    let centred: Rows = values.iter().map(|row| row.iter().map(|v| (v - mean).powi(2)).collect()).collect();
    let n = valid.iter().flatten().filter(|&&k| k).count();
    if n < 2 {
        return 0.0;
    }
    // Bessel's n / (n - 1) in f32, as TRL gets it (torch divides integer tensors in float32); the
    // difference is 1e-8 relative, but it is what the reference values contain.
    let bessel = f64::from(n as f32 / (n - 1) as f32);
    masked_mean(&centred, valid) * bessel
}

/// (x - mean) / sqrt(var + 1e-8) with statistics from the valid positions only, so padding
/// neither shifts nor scales anything. `shift_mean = false` adds the mean back (rewards keep
/// their sign). Every position is transformed; callers zero the padding afterwards.
pub fn masked_whiten(values: &Rows, valid: &Mask, shift_mean: bool) -> Rows {
    let (mean, var) = (masked_mean(values, valid), masked_var(values, valid));
    let scale = 1.0 / (var + 1e-8).sqrt();
    let back = if shift_mean { 0.0 } else { mean };
    values.iter().map(|row| row.iter().map(|v| (v - mean) * scale + back).collect()).collect()
}

/// Generalised advantage estimation, backwards over each row: delta_t = r_t + gamma V_{t+1} - V_t,
/// A_t = delta_t + gamma lambda A_{t+1}, with V after the last column taken as 0.
pub fn gae(rewards: &Rows, values: &Rows, gamma: f64, lam: f64) -> Rows {
    rewards
        .iter()
        .zip(values)
        .map(|(r, v)| {
            let len = r.len();
            let mut advantages = vec![0.0; len];
            let mut last = 0.0;
            for t in (0..len).rev() {
                let next = if t + 1 < len { v[t + 1] } else { 0.0 };
                let delta = r[t] + gamma * next - v[t];
                last = delta + gamma * lam * last;
                advantages[t] = last;
            }
            advantages
        })
        .collect()
}

/// Settings of the reward shaping and advantage computation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdvantageConfig {
    pub kl_coef: f64,
    pub kl_estimator: KlEstimator,
    pub gamma: f64,
    pub lam: f64,
    pub whiten_rewards: bool,
    pub missing_eos_penalty: f64,
}

/// Everything phases 3-5 of a PPO iteration produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Advantages {
    pub scores: Vec<f64>,
    pub padding_mask: Mask,
    pub padding_mask_p1: Mask,
    pub kl: Rows,
    pub rewards: Rows,
    /// Values with positions past `padding_mask_p1` set to 0, as the value loss compares against.
    pub values: Rows,
    pub advantages_raw: Rows,
    pub returns: Rows,
    /// Whitened over the valid tokens, 0 on padding.
    pub advantages: Rows,
}

/// Phases 3-5 of a PPO iteration on one rollout: penalise missing EOS, per-token KL, shaped
/// rewards (optionally whitened), GAE, returns, whitened advantages.
pub fn compute_advantages(
    post: &Postprocessed,
    scores: &[f64],
    logprobs: &Rows,
    ref_logprobs: &Rows,
    values: &Rows,
    config: &AdvantageConfig,
) -> Advantages {
    let len = post.responses.first().map_or(0, Vec::len);
    let scores = apply_missing_eos_penalty(scores, &post.contain_eos, config.missing_eos_penalty);
    let (padding_mask, padding_mask_p1) = padding_masks(&post.sequence_lengths, len);
    let valid_p1 = invert(&padding_mask_p1);
    let values: Rows = rows_map2(values, &padding_mask_p1, |v, pad| if pad { 0.0 } else { v });
    let kl = per_token_kl(logprobs, ref_logprobs, &padding_mask, config.kl_estimator);
    let mut rewards = shape_rewards(&kl, &scores, &post.sequence_lengths, config.kl_coef);
    if config.whiten_rewards {
        rewards = masked_whiten(&rewards, &valid_p1, false);
        rewards = rows_map2(&rewards, &padding_mask_p1, |r, pad| if pad { 0.0 } else { r });
    }
    let advantages_raw = gae(&rewards, &values, config.gamma, config.lam);
    let returns: Rows = advantages_raw.iter().zip(&values).map(|(a, v)| a.iter().zip(v).map(|(a, v)| a + v).collect()).collect();
    let whitened = masked_whiten(&advantages_raw, &invert(&padding_mask), true);
    let advantages = rows_map2(&whitened, &padding_mask, |a, pad| if pad { 0.0 } else { a });
    Advantages { scores, padding_mask, padding_mask_p1, kl, rewards, values, advantages_raw, returns, advantages }
}

/// Ziegler et al.'s proportional controller for beta: nudge it toward the KL target, by at most
/// 20% of `n_steps / horizon` per update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveKl {
    pub value: f64,
    pub target: f64,
    pub horizon: f64,
}

impl AdaptiveKl {
    /// `current_kl` per sequence, measured on a batch of `n_steps` sequences.
    pub fn update(&mut self, current_kl: f64, n_steps: usize) {
        let error = (current_kl / self.target - 1.0).clamp(-0.2, 0.2);
        self.value *= 1.0 + error * n_steps as f64 / self.horizon;
    }
}

/// `true` where `padding` is `false`.
pub fn invert(padding: &Mask) -> Mask {
    padding.iter().map(|row| row.iter().map(|p| !p).collect()).collect()
}

fn rows_map2(a: &Rows, m: &Mask, f: impl Fn(f64, bool) -> f64) -> Rows {
    a.iter().zip(m).map(|(a, m)| a.iter().zip(m).map(|(&a, &m)| f(a, m)).collect()).collect()
}

fn rows_map3(a: &Rows, b: &Rows, m: &Mask, f: impl Fn(f64, f64, bool) -> f64) -> Rows {
    a.iter().zip(b).zip(m).map(|((a, b), m)| a.iter().zip(b).zip(m).map(|((&a, &b), &m)| f(a, b, m)).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_pads_after_the_first_eos_only() {
        let post = postprocess_responses(&[vec![4, 1, 5, 1], vec![4, 4, 4, 4]], 1, 0);
        assert_eq!(post.responses, vec![vec![4, 1, 0, 0], vec![4, 4, 4, 4]]);
        assert_eq!(post.sequence_lengths, vec![1, 3]);
        assert_eq!(post.contain_eos, vec![true, false]);
    }

    #[test]
    fn generated_rows_read_the_same_as_trl_and_also_when_pad_is_eos() {
        let generated = [vec![4, 1], vec![4, 4, 4], vec![4, 5, 1]];
        let padded: Vec<Vec<u32>> = generated.iter().map(|r| r.iter().copied().chain([0; 4]).take(4).collect()).collect();
        assert_eq!(postprocess_generated(&generated, 1, 0), postprocess_responses(&padded, 1, 0));
        // pad == eos: the EOS is still the last real token, and the row without one has none.
        let post = postprocess_generated(&generated, 1, 1);
        assert_eq!(post.responses, vec![vec![4, 1, 1, 1], vec![4, 4, 4, 1], vec![4, 5, 1, 1]]);
        assert_eq!(post.sequence_lengths, vec![1, 2, 2]);
        assert_eq!(post.contain_eos, vec![true, false, true]);
    }

    #[test]
    fn gae_with_lambda_one_and_gamma_one_is_reward_to_go_minus_value() {
        let rewards = vec![vec![1.0, 0.0, 2.0]];
        let values = vec![vec![0.5, 0.25, 0.0]];
        let adv = gae(&rewards, &values, 1.0, 1.0);
        assert_eq!(adv, vec![vec![3.0 - 0.5, 2.0 - 0.25, 2.0]]);
    }

    #[test]
    fn whitening_ignores_padding_entirely() {
        let valid = vec![vec![true, true, false]];
        let a = masked_whiten(&vec![vec![1.0, 3.0, 100.0]], &valid, true);
        let b = masked_whiten(&vec![vec![1.0, 3.0, -7.0]], &valid, true);
        assert_eq!(a[0][..2], b[0][..2]);
    }
}
