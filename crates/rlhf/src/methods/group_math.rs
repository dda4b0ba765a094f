//! GRPO's and RLOO's arithmetic as TRL 1.16 does it (`GRPOTrainer`, `RLOOTrainer`), in float64 on
//! the host, with the gradient of each loss with respect to every per-token log-probability. Both
//! sample a group of K answers per prompt and use the group itself as the baseline, so neither needs
//! a value model: GRPO (Shao et al. 2024) centres each reward on its group's mean and scales it;
//! RLOO (Ahmadian et al. 2024) subtracts the mean of the other K-1 answers' rewards.
//!
//! Rows `b` of a batch belong to prompt `b / K`. Per-token arrays are `[rows][completion columns]`;
//! `mask` is true on an answer's tokens up to and including its EOS.

use serde::{Deserialize, Serialize};

type Rows = Vec<Vec<f64>>;

/// How GRPO scales the centred rewards: by the group's std (TRL's default), by the whole batch's, or
/// not at all (Dr. GRPO's advice). Rewards are centred on their group's mean in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewardScaling {
    #[default]
    Group,
    Batch,
    None,
}

/// How token losses become the batch loss, as TRL 1.16 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossAggregation {
    /// Mean over each answer's tokens, then over answers (GRPO's paper).
    Grpo,
    /// Sum over all tokens / (answers x max completion length) (Dr. GRPO).
    DrGrpo,
    /// Sum over all tokens / tokens in the whole generation batch (DAPO; TRL's default).
    #[default]
    Dapo,
    /// Sum over all tokens / tokens in this batch.
    Bnpo,
}

macro_rules! from_str_by_serde {
    ($t:ty, $what:literal) => {
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(name: &str) -> Result<Self, String> {
                serde_json::from_value(serde_json::Value::String(name.into())).map_err(|_| format!("unknown {} {name:?}", $what))
            }
        }
    };
}
from_str_by_serde!(RewardScaling, "reward scaling (use group, batch or none)");
from_str_by_serde!(LossAggregation, "loss aggregation (use grpo, dr_grpo, dapo or bnpo)");

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

/// Unbiased standard deviation as TRL's `nanstd` computes it: its Bessel factor n/(n-1) is formed
/// in float32 even for float64 input, which moves the result by ~1e-8 relative.
pub fn trl_std(x: &[f64]) -> f64 {
    let n = x.len();
    if n < 2 {
        return f64::NAN;
    }
    let m = mean(x);
    let biased = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n as f64;
    (biased * f64::from(n as f32 / (n - 1) as f32)).sqrt()
}

/// Exact unbiased standard deviation (torch's `Tensor.std()`).
pub fn unbiased_std(x: &[f64]) -> f64 {
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() as f64 - 1.0)).sqrt()
}

/// GRPO's advantages of `rewards` in groups of `group` answers, with what TRL logs about them.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupAdvantages {
    pub mean_grouped_rewards: Vec<f64>,
    pub std_rewards: Vec<f64>,
    pub advantages: Vec<f64>,
    pub is_std_zero: Vec<bool>,
}

pub fn grpo_advantages(rewards: &[f64], group: usize, scaling: RewardScaling) -> GroupAdvantages {
    let groups: Vec<&[f64]> = rewards.chunks(group).collect();
    let repeat = |per_group: Vec<f64>| per_group.into_iter().flat_map(|v| std::iter::repeat_n(v, group)).collect::<Vec<_>>();
    let mean_grouped_rewards = repeat(groups.iter().map(|g| mean(g)).collect());
    let std_rewards = match scaling {
        RewardScaling::Batch => vec![trl_std(rewards); rewards.len()],
        RewardScaling::Group | RewardScaling::None => repeat(groups.iter().map(|g| trl_std(g)).collect()),
    };
    let advantages = rewards
        .iter()
        .zip(&mean_grouped_rewards)
        .zip(&std_rewards)
        .map(|((r, m), s)| {
            let centred = r - m;
            let a = if scaling == RewardScaling::None { centred } else { centred / (s + 1e-4) };
            if a.is_nan() { 0.0 } else { a }
        })
        .collect();
    // torch.isclose(std, 0): |std| <= 1e-8.
    let is_std_zero = std_rewards.iter().map(|s| s.abs() <= 1e-8).collect();
    GroupAdvantages { mean_grouped_rewards, std_rewards, advantages, is_std_zero }
}

/// RLOO's advantages: the KL to the reference (k1 of the rollout's log-probs, no gradient) taken
/// out of each reward, then each reward minus the mean of the other answers to its prompt;
/// optionally normalised over the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaveOneOut {
    pub sequence_kl: Vec<f64>,
    pub rewards_after_kl: Vec<f64>,
    pub baselines: Vec<f64>,
    pub advantages: Vec<f64>,
    /// sum(per-token KL) / tokens, what TRL logs as `kl`.
    pub kl: f64,
}

pub fn rloo_advantages(
    rewards: &[f64],
    old: &Rows,
    reference: &Rows,
    mask: &[Vec<bool>],
    group: usize,
    beta: f64,
    normalize: bool,
) -> LeaveOneOut {
    let (mut kl_sum, mut tokens) = (0.0, 0usize);
    let sequence_kl: Vec<f64> = old
        .iter()
        .zip(reference)
        .zip(mask)
        .map(|((o, r), m)| {
            let row: f64 = o.iter().zip(r).zip(m).filter(|(_, k)| **k).map(|((o, r), _)| o - r).sum();
            kl_sum += row;
            tokens += m.iter().filter(|&&k| k).count();
            row
        })
        .collect();
    let rewards_after_kl: Vec<f64> = rewards.iter().zip(&sequence_kl).map(|(r, kl)| r - beta * kl).collect();
    let mut baselines = Vec::with_capacity(rewards.len());
    for g in rewards_after_kl.chunks(group) {
        let sum: f64 = g.iter().sum();
        baselines.extend(g.iter().map(|r| (sum - r) / (g.len() as f64 - 1.0)));
    }
    let mut advantages: Vec<f64> = rewards_after_kl.iter().zip(&baselines).map(|(r, b)| r - b).collect();
    if normalize {
        let (m, s) = (mean(&advantages), unbiased_std(&advantages));
        advantages.iter_mut().for_each(|a| *a = (*a - m) / (s + 1e-4));
    }
    LeaveOneOut { sequence_kl, rewards_after_kl, baselines, advantages, kl: kl_sum / tokens.max(1) as f64 }
}

/// Settings of the clipped token-level loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLossConfig {
    pub aggregation: LossAggregation,
    pub beta: f64,
    pub epsilon_low: f64,
    pub epsilon_high: f64,
    /// Multiply the k3 KL by the importance ratio (TRL's `use_bias_correction_kl`, default on).
    pub bias_correction_kl: bool,
    /// Dr. GRPO's constant: the longest completion allowed.
    pub max_completion_length: usize,
    /// DAPO's normaliser: tokens in the whole generation batch.
    pub tokens_in_generation: f64,
}

/// Clip statistics as TRL logs them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ClipStats {
    #[serde(rename = "clip_ratio/low_mean")]
    pub low_mean: f64,
    #[serde(rename = "clip_ratio/high_mean")]
    pub high_mean: f64,
    #[serde(rename = "clip_ratio/region_mean")]
    pub region_mean: f64,
    #[serde(rename = "clip_ratio/low_min")]
    pub low_min: f64,
    #[serde(rename = "clip_ratio/high_max")]
    pub high_max: f64,
}

/// A loss over a batch, its gradient with respect to each per-token log-prob, and what is logged.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupLoss {
    pub loss: f64,
    pub grad: Rows,
    pub per_token_loss: Rows,
    pub coef_1: Rows,
    /// The KL term's per-token values (after bias correction); empty when beta is 0.
    pub per_token_kl: Rows,
    /// Masked mean of `per_token_kl` (0 when beta is 0).
    pub kl: f64,
    pub clip: ClipStats,
}

/// -min(c1 A, c2 A) and its derivative with respect to log c1 (c1 = exp(log ratio)); torch.min
/// splits the gradient of a tie, and clamp passes it only inside its bounds.
fn clipped_term(c1: f64, a: f64, low: f64, high: f64) -> (f64, f64) {
    let c2 = c1.clamp(low, high);
    let (u, v) = (c1 * a, c2 * a);
    let inside = (low..=high).contains(&c1);
    let (du, dv) = (a * c1, if inside { a * c1 } else { 0.0 });
    let d = if u < v {
        du
    } else if v < u {
        dv
    } else {
        0.5 * (du + dv)
    };
    (-u.min(v), -d)
}

/// GRPO's clipped token-level loss with optional k3 KL to the reference. `old` is `None` on
/// policy (TRL then uses the detached current log-probs: ratio 1, but its gradient stays).
pub fn grpo_loss(
    logp: &Rows,
    old: Option<&Rows>,
    reference: &Rows,
    mask: &[Vec<bool>],
    advantages: &[f64],
    c: &TokenLossConfig,
) -> GroupLoss {
    let (rows, cols) = (logp.len(), logp.first().map_or(0, Vec::len));
    let (low, high) = (1.0 - c.epsilon_low, 1.0 + c.epsilon_high);
    let counts: Vec<f64> = mask.iter().map(|m| m.iter().filter(|&&k| k).count() as f64).collect();
    let total: f64 = counts.iter().sum();
    // Weight of each token's loss in the batch loss.
    let weight = |b: usize| match c.aggregation {
        LossAggregation::Grpo => 1.0 / (counts[b].max(1.0) * rows as f64),
        LossAggregation::Bnpo => 1.0 / total.max(1.0),
        LossAggregation::DrGrpo => 1.0 / (rows * c.max_completion_length) as f64,
        LossAggregation::Dapo => 1.0 / c.tokens_in_generation,
    };
    let mut out = GroupLoss {
        loss: 0.0,
        grad: vec![vec![0.0; cols]; rows],
        per_token_loss: vec![vec![0.0; cols]; rows],
        coef_1: vec![vec![0.0; cols]; rows],
        per_token_kl: if c.beta > 0.0 { vec![vec![0.0; cols]; rows] } else { vec![] },
        kl: 0.0,
        clip: ClipStats { low_min: f64::INFINITY, high_max: f64::NEG_INFINITY, ..ClipStats::default() },
    };
    let (mut low_count, mut high_count, mut kl_sum) = (0.0, 0.0, 0.0);
    for b in 0..rows {
        let a = advantages[b];
        let (mut row_low, mut row_high) = (0.0, 0.0);
        for t in 0..cols {
            if !mask[b][t] {
                continue;
            }
            let c1 = old.map_or(1.0, |o| (logp[b][t] - o[b][t]).exp());
            let (mut l, mut d) = clipped_term(c1, a, low, high);
            if c.beta > 0.0 {
                let x = reference[b][t] - logp[b][t];
                let k3 = x.exp() - x - 1.0;
                let dk3 = 1.0 - x.exp();
                let (kl, dkl) = if c.bias_correction_kl { (k3 * c1, dk3 * c1 + k3 * c1) } else { (k3, dk3) };
                out.per_token_kl[b][t] = kl;
                kl_sum += kl;
                l += c.beta * kl;
                d += c.beta * dkl;
            }
            out.coef_1[b][t] = c1;
            out.per_token_loss[b][t] = l;
            out.loss += weight(b) * l;
            out.grad[b][t] = weight(b) * d;
            let (is_low, is_high) = (c1 < low && a < 0.0, c1 > high && a > 0.0);
            row_low += f64::from(u8::from(is_low));
            row_high += f64::from(u8::from(is_high));
        }
        low_count += row_low;
        high_count += row_high;
        let n = counts[b].max(1.0);
        out.clip.low_min = out.clip.low_min.min(row_low / n);
        out.clip.high_max = out.clip.high_max.max(row_high / n);
    }
    let tokens = total.max(1.0);
    out.clip.low_mean = low_count / tokens;
    out.clip.high_mean = high_count / tokens;
    out.clip.region_mean = (low_count + high_count) / tokens;
    out.kl = kl_sum / tokens;
    out
}

/// RLOO's sequence-level clipped loss: one importance ratio per answer (the sum of its token
/// log-probs against the rollout's), the plain mean over answers.
pub fn rloo_loss(logp: &Rows, old_logps: &[f64], mask: &[Vec<bool>], advantages: &[f64], epsilon_low: f64, epsilon_high: f64) -> GroupLoss {
    let (rows, cols) = (logp.len(), logp.first().map_or(0, Vec::len));
    let (low, high) = (1.0 - epsilon_low, 1.0 + epsilon_high);
    let mut out = GroupLoss {
        loss: 0.0,
        grad: vec![vec![0.0; cols]; rows],
        per_token_loss: vec![],
        coef_1: vec![],
        per_token_kl: vec![],
        kl: 0.0,
        clip: ClipStats { low_min: f64::INFINITY, high_max: f64::NEG_INFINITY, ..ClipStats::default() },
    };
    let (mut lows, mut highs) = (0.0, 0.0);
    for b in 0..rows {
        let logps: f64 = logp[b].iter().zip(&mask[b]).filter(|(_, k)| **k).map(|(x, _)| x).sum();
        let c1 = (logps - old_logps[b]).exp();
        let a = advantages[b];
        let (l, d) = clipped_term(c1, a, low, high);
        out.loss += l / rows as f64;
        for (g, &keep) in out.grad[b].iter_mut().zip(&mask[b]) {
            if keep {
                *g = d / rows as f64;
            }
        }
        let (is_low, is_high) = (f64::from(u8::from(c1 < low && a < 0.0)), f64::from(u8::from(c1 > high && a > 0.0)));
        lows += is_low;
        highs += is_high;
        out.clip.low_min = out.clip.low_min.min(is_low);
        out.clip.high_max = out.clip.high_max.max(is_high);
    }
    let n = rows.max(1) as f64;
    (out.clip.low_mean, out.clip.high_mean, out.clip.region_mean) = (lows / n, highs / n, (lows + highs) / n);
    out
}

/// Masked mean of per-token values (TRL's `entropy` metric and friends).
pub fn masked_token_mean(values: &Rows, mask: &[Vec<bool>]) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for (row, m) in values.iter().zip(mask) {
        for (v, &k) in row.iter().zip(m) {
            if k {
                sum += v;
                n += 1;
            }
        }
    }
    sum / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(aggregation: LossAggregation, beta: f64) -> TokenLossConfig {
        TokenLossConfig {
            aggregation,
            beta,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            bias_correction_kl: true,
            max_completion_length: 4,
            tokens_in_generation: 5.0,
        }
    }

    #[test]
    fn grpo_gradients_match_finite_differences_for_every_aggregation() {
        let logp = vec![vec![-1.0, -0.5, -2.0], vec![-0.3, -1.2, 0.0]];
        let old = vec![vec![-1.1, -0.9, -1.7], vec![-0.2, -1.0, 0.0]];
        let reference = vec![vec![-0.9, -0.6, -2.2], vec![-0.4, -1.1, 0.0]];
        let mask = vec![vec![true, true, true], vec![true, true, false]];
        for aggregation in [LossAggregation::Grpo, LossAggregation::DrGrpo, LossAggregation::Dapo, LossAggregation::Bnpo] {
            for advantages in [[0.8, -0.6], [-0.5, 1.2]] {
                let c = config(aggregation, 0.04);
                let base = grpo_loss(&logp, Some(&old), &reference, &mask, &advantages, &c);
                for (b, t) in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)] {
                    let h = 1e-6;
                    let mut plus = logp.clone();
                    plus[b][t] += h;
                    let mut minus = logp.clone();
                    minus[b][t] -= h;
                    let f = |x: &Rows| grpo_loss(x, Some(&old), &reference, &mask, &advantages, &c).loss;
                    let numeric = (f(&plus) - f(&minus)) / (2.0 * h);
                    assert!((numeric - base.grad[b][t]).abs() < 1e-6, "{aggregation:?} {b},{t}: {numeric} vs {}", base.grad[b][t]);
                }
            }
        }
    }

    #[test]
    fn leave_one_out_baselines_are_the_mean_of_the_other_answers() {
        let rewards = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0];
        let zero = vec![vec![0.0]; 6];
        let loo = rloo_advantages(&rewards, &zero, &zero, &vec![vec![true]; 6], 3, 0.05, false);
        assert_eq!(loo.baselines, vec![2.5, 2.0, 1.5, 25.0, 20.0, 15.0]);
        assert_eq!(loo.advantages[0], -1.5);
    }

    #[test]
    fn names_parse_as_trl_writes_them() {
        assert_eq!("dr_grpo".parse::<LossAggregation>(), Ok(LossAggregation::DrGrpo));
        assert_eq!("none".parse::<RewardScaling>(), Ok(RewardScaling::None));
        assert!("mean".parse::<RewardScaling>().is_err());
    }
}
