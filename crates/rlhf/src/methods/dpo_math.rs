//! DPO's arithmetic (Rafailov et al. 2023) as TRL 1.16's `DPOTrainer._compute_loss` does it, in
//! float64 on the host, with its gradient with respect to each sequence's log-probability.
//!
//! The trainer reads the policy's sequence log-probs back (one read per step, which it needs for
//! the statistics anyway), computes the loss and these gradients here, and back-propagates
//! `sum_s grad_s * logp_s` through the model: the same gradient as differentiating the loss
//! through the graph, with the arithmetic checked against TRL to 1e-10.

use serde::{Deserialize, Serialize};

/// Which preference loss. `sigmoid` is DPO; `ipo` is IPO (Azar et al. 2023) with TRL's per-token
/// length normalisation; `hinge` is SLiC's hinge on the scaled margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpoLoss {
    #[default]
    Sigmoid,
    Ipo,
    Hinge,
}

impl std::str::FromStr for DpoLoss {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "sigmoid" => Ok(Self::Sigmoid),
            "ipo" => Ok(Self::Ipo),
            "hinge" => Ok(Self::Hinge),
            other => Err(format!("unknown DPO loss {other:?}; use sigmoid, ipo or hinge")),
        }
    }
}

/// One preference pair: the sequence log-probs (summed over the completion tokens, EOS included)
/// of the chosen and rejected answers under the policy and the reference, the completions' token
/// counts, and the pair's weight in the batch (weights sum to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpoPair {
    pub policy_chosen: f64,
    pub policy_rejected: f64,
    pub ref_chosen: f64,
    pub ref_rejected: f64,
    pub chosen_tokens: usize,
    pub rejected_tokens: usize,
    pub weight: f64,
}

/// What the loss says of one pair: its loss, implicit rewards `beta * (policy - reference)`, and
/// d(weighted batch loss)/d(policy sequence log-prob) of each side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpoPairLoss {
    pub loss: f64,
    pub chosen_reward: f64,
    pub rejected_reward: f64,
    pub grad_chosen: f64,
    pub grad_rejected: f64,
}

/// The batch means TRL logs, under the names it logs them (`rewards/chosen`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DpoMetrics {
    #[serde(rename = "rewards/chosen")]
    pub rewards_chosen: f64,
    #[serde(rename = "rewards/rejected")]
    pub rewards_rejected: f64,
    /// Share of pairs whose chosen reward is strictly above the rejected one.
    #[serde(rename = "rewards/accuracies")]
    pub rewards_accuracies: f64,
    #[serde(rename = "rewards/margins")]
    pub rewards_margins: f64,
    #[serde(rename = "logps/chosen")]
    pub logps_chosen: f64,
    #[serde(rename = "logps/rejected")]
    pub logps_rejected: f64,
}

/// A batch's loss (the weighted mean of the pairs'), each pair's terms, and the metrics (weighted
/// means, which are TRL's plain means when the weights are equal).
#[derive(Debug, Clone, PartialEq)]
pub struct DpoBatchLoss {
    pub loss: f64,
    pub pairs: Vec<DpoPairLoss>,
    pub metrics: DpoMetrics,
}

fn log_sigmoid(x: f64) -> f64 {
    // Stable for large |x|: log(1 / (1 + e^-x)).
    if x >= 0.0 { -(-x).exp().ln_1p() } else { x - x.exp().ln_1p() }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { x.exp() / (1.0 + x.exp()) }
}

/// One pair's loss and gradients under `loss` with coefficient `beta`.
pub fn dpo_pair_loss(pair: &DpoPair, beta: f64, loss: DpoLoss) -> DpoPairLoss {
    let chosen_logratio = pair.policy_chosen - pair.ref_chosen;
    let rejected_logratio = pair.policy_rejected - pair.ref_rejected;
    let delta = chosen_logratio - rejected_logratio;
    // d loss / d chosen_logratio; the rejected side gets its negative (scaled for IPO).
    let (value, grad_chosen, grad_rejected) = match loss {
        DpoLoss::Sigmoid => {
            // -log sigmoid(beta * delta); d/d delta = -beta * sigmoid(-beta * delta).
            let g = -beta * sigmoid(-beta * delta);
            (-log_sigmoid(beta * delta), g, -g)
        }
        DpoLoss::Hinge => {
            let slack = 1.0 - beta * delta;
            if slack > 0.0 { (slack, -beta, beta) } else { (0.0, 0.0, 0.0) }
        }
        DpoLoss::Ipo => {
            let (nc, nr) = (pair.chosen_tokens.max(1) as f64, pair.rejected_tokens.max(1) as f64);
            let gap = chosen_logratio / nc - rejected_logratio / nr - 1.0 / (2.0 * beta);
            (gap * gap, 2.0 * gap / nc, -2.0 * gap / nr)
        }
    };
    DpoPairLoss {
        loss: value,
        chosen_reward: beta * chosen_logratio,
        rejected_reward: beta * rejected_logratio,
        grad_chosen: pair.weight * grad_chosen,
        grad_rejected: pair.weight * grad_rejected,
    }
}

/// The weighted batch loss of `pairs`, with every pair's terms and TRL's metrics.
pub fn dpo_loss(pairs: &[DpoPair], beta: f64, loss: DpoLoss) -> DpoBatchLoss {
    let terms: Vec<DpoPairLoss> = pairs.iter().map(|p| dpo_pair_loss(p, beta, loss)).collect();
    let total_weight: f64 = pairs.iter().map(|p| p.weight).sum::<f64>().max(f64::MIN_POSITIVE);
    let mean =
        |f: &dyn Fn(&DpoPair, &DpoPairLoss) -> f64| pairs.iter().zip(&terms).map(|(p, t)| p.weight * f(p, t)).sum::<f64>() / total_weight;
    let metrics = DpoMetrics {
        rewards_chosen: mean(&|_, t| t.chosen_reward),
        rewards_rejected: mean(&|_, t| t.rejected_reward),
        rewards_accuracies: mean(&|_, t| f64::from(u8::from(t.chosen_reward > t.rejected_reward))),
        rewards_margins: mean(&|_, t| t.chosen_reward - t.rejected_reward),
        logps_chosen: mean(&|p, _| p.policy_chosen),
        logps_rejected: mean(&|p, _| p.policy_rejected),
    };
    DpoBatchLoss { loss: pairs.iter().zip(&terms).map(|(p, t)| p.weight * t.loss).sum(), pairs: terms, metrics }
}

/// Sum of each row's per-token log-probs where `mask` is true: a sequence's log-probability over its
/// completion tokens (whatever stands at masked-out positions).
pub fn sequence_logps(per_token: &[Vec<f64>], mask: &[Vec<bool>]) -> Vec<f64> {
    per_token.iter().zip(mask).map(|(row, m)| row.iter().zip(m).filter(|(_, keep)| **keep).map(|(x, _)| x).sum()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(delta: f64) -> DpoPair {
        DpoPair {
            policy_chosen: -3.0 + delta,
            policy_rejected: -4.0,
            ref_chosen: -3.0,
            ref_rejected: -4.0,
            chosen_tokens: 3,
            rejected_tokens: 5,
            weight: 1.0,
        }
    }

    #[test]
    fn every_gradient_matches_a_finite_difference() {
        for loss in [DpoLoss::Sigmoid, DpoLoss::Ipo, DpoLoss::Hinge] {
            let p = pair(0.7);
            let t = dpo_pair_loss(&p, 0.1, loss);
            let h = 1e-6;
            let bump = |dc: f64, dr: f64| {
                dpo_pair_loss(&DpoPair { policy_chosen: p.policy_chosen + dc, policy_rejected: p.policy_rejected + dr, ..p }, 0.1, loss)
                    .loss
            };
            let numeric_chosen = (bump(h, 0.0) - bump(-h, 0.0)) / (2.0 * h);
            let numeric_rejected = (bump(0.0, h) - bump(0.0, -h)) / (2.0 * h);
            assert!((numeric_chosen - t.grad_chosen).abs() < 1e-6, "{loss:?}: {numeric_chosen} vs {}", t.grad_chosen);
            assert!((numeric_rejected - t.grad_rejected).abs() < 1e-6, "{loss:?}: {numeric_rejected} vs {}", t.grad_rejected);
        }
    }

    #[test]
    fn at_the_reference_the_sigmoid_loss_is_log_two_and_rewards_are_zero() {
        let t = dpo_pair_loss(&pair(0.0), 0.1, DpoLoss::Sigmoid);
        assert!((t.loss - std::f64::consts::LN_2).abs() < 1e-12);
        assert_eq!((t.chosen_reward, t.rejected_reward), (0.0, 0.0));
        assert!(!log_sigmoid(-800.0).is_nan() && log_sigmoid(800.0) == 0.0);
    }

    #[test]
    fn weights_make_the_batch_loss_a_weighted_mean() {
        let pairs = [DpoPair { weight: 0.75, ..pair(1.0) }, DpoPair { weight: 0.25, ..pair(-1.0) }];
        let batch = dpo_loss(&pairs, 0.1, DpoLoss::Sigmoid);
        let expected = 0.75 * batch.pairs[0].loss + 0.25 * batch.pairs[1].loss;
        assert!((batch.loss - expected).abs() < 1e-12);
        assert_eq!(batch.metrics.rewards_accuracies, 0.75);
    }
}
