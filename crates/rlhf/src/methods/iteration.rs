//! What every sampling method's iteration (PPO, GRPO, RLOO) shares, decided once: how its rollout
//! samples, the figures every rollout reports, and the guard that keeps the last healthy policy
//! when the KL to the reference runs away. (Its learning rate: [`crate::step::schedule`].)

use tinyrlhf_model::SamplingConfig;

use crate::methods::ppo_math::{Mask, Postprocessed, Rows, masked_mean};
use crate::methods::rollout::peer_seed;

/// How iteration `iteration` (from 1) samples on peer `rank`: a seed of its own per iteration, so a
/// resumed run samples as the uninterrupted one would have, and per peer.
pub(crate) fn rollout_sampling(max_new_tokens: usize, temperature: f32, seed: u64, iteration: usize, rank: usize) -> SamplingConfig {
    let seed = peer_seed(seed ^ (iteration as u64).wrapping_mul(0x2545_F491_4F6C_DD1D), rank);
    SamplingConfig { max_new_tokens, temperature, top_k: 0, top_p: 1.0, seed }
}

/// The figures of a rollout every method reports, per answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RolloutFigures {
    /// The reward model's mean score.
    pub score: f64,
    /// Mean per-token entropy of the policy over the answers' tokens.
    pub entropy: f64,
    /// Mean answer length in tokens, its EOS included.
    pub mean_length: f64,
    /// Share of the answers that end with EOS.
    pub eos_rate: f64,
}

impl RolloutFigures {
    pub fn of(scores: &[f64], entropy: &Rows, valid: &Mask, post: &Postprocessed) -> Self {
        let n = scores.len().max(1) as f64;
        Self {
            score: scores.iter().sum::<f64>() / n,
            entropy: masked_mean(entropy, valid),
            mean_length: post.sequence_lengths.iter().map(|&l| (l + 1) as f64).sum::<f64>() / n,
            eos_rate: post.contain_eos.iter().filter(|&&e| e).count() as f64 / n,
        }
    }
}

/// Why an iteration must not update (the KL per answer past `limit`, or a score or the KL not
/// finite): the policy goes back to the last healthy iteration's. `None`: go on.
pub(crate) fn kl_guard(kl: f64, limit: f64, scores: &[f64]) -> Option<String> {
    (!kl.is_finite() || kl > limit || scores.iter().any(|x| !x.is_finite())).then(|| {
        format!(
            "KL to the reference is {kl:.2} nats (limit {limit}) or a score is not finite; restored the policy of the last healthy iteration"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_iteration_and_peer_samples_with_its_own_seed_and_the_first_peer_as_one_alone() {
        let seed = |iteration, rank| rollout_sampling(8, 1.0, 42, iteration, rank).seed;
        assert_ne!(seed(1, 0), seed(2, 0));
        assert_ne!(seed(1, 0), seed(1, 1));
        assert_eq!(seed(3, 0), rollout_sampling(8, 1.0, 42, 3, 0).seed);
    }

    #[test]
    fn the_guard_stops_a_runaway_kl_or_a_non_finite_score_only() {
        assert_eq!(kl_guard(0.5, 10.0, &[0.1, -0.2]), None);
        assert!(kl_guard(12.0, 10.0, &[0.1]).unwrap().contains("12.00 nats (limit 10)"));
        assert!(kl_guard(f64::NAN, 10.0, &[0.1]).is_some());
        assert!(kl_guard(0.5, 10.0, &[f64::INFINITY]).is_some());
    }
}
