//! Loss functions as free functions over tensors: next-token cross-entropy, the reward model's
//! ranking loss, and PPO's clipped policy and value losses. Masks are float tensors of 0/1
//! (1 = counts), so a padded position contributes nothing to a loss or its gradient.

use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::{Int, Tensor, TensorData};
use tinyrlhf_model::chosen_token_logprobs;

/// Log-probability of each target token: `log softmax(logits)[target]`, `[b, t]`.
pub fn token_logprobs(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<2> {
    let [b, t, vocab] = logits.dims();
    chosen_token_logprobs(logits.reshape([b * t, vocab]), targets.reshape([b * t])).reshape([b, t])
}

/// Entropy of each position's distribution, `[b, t]`.
pub fn token_entropy(logits: Tensor<3>) -> Tensor<2> {
    let [b, t, _] = logits.dims();
    let logp = log_softmax(logits, 2);
    (logp.clone().exp() * logp).sum_dim(2).neg().reshape([b, t])
}

/// Mean of `values` where `mask` is 1.
pub fn masked_mean<const D: usize>(values: Tensor<D>, mask: Tensor<D>) -> Tensor<1> {
    let count = mask.clone().sum().clamp_min(1.0);
    (values * mask).sum() / count
}

/// Preference pairs over a vector of rewards: `rewards[winner]` should beat `rewards[loser]`.
/// Each pair has a weight; a K-way ranking gives each of its C(K,2) pairs 1/(C(K,2) * rankings),
/// so every ranking counts once however long it is (InstructGPT eq. 1).
#[derive(Debug, Clone, PartialEq)]
pub struct PreferencePairs {
    pub winners: Vec<usize>,
    pub losers: Vec<usize>,
    pub weights: Vec<f32>,
    /// Subtracted from each difference (TRL's `margin` column); empty for none.
    pub margins: Vec<f32>,
}

impl PreferencePairs {
    /// All pairs of rankings laid out one after another in `rewards`: ranking `r` occupies
    /// `offsets[r]..offsets[r] + order.len()`, and `order` lists its completions best first.
    pub fn from_rankings(rankings: &[(usize, &[usize])]) -> Self {
        let mut pairs = Self { winners: vec![], losers: vec![], weights: vec![], margins: vec![] };
        for &(offset, order) in rankings {
            let k = order.len();
            let weight = 1.0 / ((k * (k - 1) / 2) as f32 * rankings.len() as f32);
            for (i, &better) in order.iter().enumerate() {
                for &worse in &order[i + 1..] {
                    pairs.winners.push(offset + better);
                    pairs.losers.push(offset + worse);
                    pairs.weights.push(weight);
                }
            }
        }
        pairs
    }

    pub fn len(&self) -> usize {
        self.winners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.winners.is_empty()
    }
}

/// The reward model's loss: weighted sum of -log sigmoid(r_w - r_l - margin), plus
/// `center_coef` times the weighted mean of (r_w + r_l)^2, which keeps rewards near zero.
pub fn preference_loss(rewards: Tensor<1>, pairs: &PreferencePairs, center_coef: f64) -> Tensor<1> {
    let device = rewards.device();
    let n = pairs.len();
    let index =
        |ids: &[usize]| Tensor::<1, Int>::from_data(TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [n]), &device);
    let floats = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [n]), &device);
    let winners = rewards.clone().select(0, index(&pairs.winners));
    let losers = rewards.select(0, index(&pairs.losers));
    let weights = floats(&pairs.weights);
    let mut margin = winners.clone() - losers.clone();
    if !pairs.margins.is_empty() {
        margin = margin - floats(&pairs.margins);
    }
    let mut loss = (log_sigmoid(margin) * weights.clone()).sum().neg();
    if center_coef != 0.0 {
        let sum = winners + losers;
        loss = loss + (sum.clone() * sum * weights).sum() * center_coef;
    }
    loss
}

/// [`preference_loss`] of `rewards` on the host, in f64, and its gradient with respect to each
/// reward: what a step that scores a large ranking in parts pushes back through each part.
pub fn preference_loss_gradient(rewards: &[f64], pairs: &PreferencePairs, center_coef: f64) -> (f64, Vec<f64>) {
    let (mut loss, mut grad) = (0.0, vec![0.0; rewards.len()]);
    for (p, (&w, &l)) in pairs.winners.iter().zip(&pairs.losers).enumerate() {
        let weight = f64::from(pairs.weights[p]);
        let margin = rewards[w] - rewards[l] - pairs.margins.get(p).map_or(0.0, |&m| f64::from(m));
        // -log sigmoid(m) = softplus(-m), and its derivative in m is -sigmoid(-m).
        let softplus = if margin > 0.0 { (-margin).exp().ln_1p() } else { -margin + margin.exp().ln_1p() };
        let pull = weight / (1.0 + margin.exp());
        let sum = rewards[w] + rewards[l];
        loss += weight * softplus + center_coef * weight * sum * sum;
        let centre = 2.0 * center_coef * weight * sum;
        grad[w] += centre - pull;
        grad[l] += centre + pull;
    }
    (loss, grad)
}

/// PPO's clipped surrogate and its diagnostics, each a one-element tensor.
#[derive(Debug, Clone)]
pub struct PolicyLoss {
    pub loss: Tensor<1>,
    /// Fraction of tokens where the clipped term was the larger loss.
    pub clipfrac: Tensor<1>,
    /// 0.5 * mean (log ratio)^2, an estimate of KL(old || new).
    pub approx_kl: Tensor<1>,
}

/// max(-A r, -A clip(r, 1 - eps, 1 + eps)) averaged over valid tokens, r = exp(new - old).
/// All `[b, t]`; `valid` is 1 on the response tokens up to and including EOS.
pub fn clipped_policy_loss(
    new_logprobs: Tensor<2>,
    old_logprobs: Tensor<2>,
    advantages: Tensor<2>,
    valid: Tensor<2>,
    cliprange: f64,
) -> PolicyLoss {
    // Zeroing the log ratio on padding keeps exp() finite there; the mask removes it anyway.
    let log_ratio = (new_logprobs - old_logprobs) * valid.clone();
    let ratio = log_ratio.clone().exp();
    let unclipped = advantages.clone().neg() * ratio.clone();
    let clipped = advantages.neg() * ratio.clamp(1.0 - cliprange, 1.0 + cliprange);
    let clipfrac = masked_mean(clipped.clone().greater(unclipped.clone()).float(), valid.clone());
    let loss = masked_mean(unclipped.max_pair(clipped), valid.clone());
    let approx_kl = masked_mean(log_ratio.clone() * log_ratio, valid) * 0.5;
    PolicyLoss { loss, clipfrac, approx_kl }
}

/// 0.5 * max((V - R)^2, (clip(V, V_old ± eps) - R)^2) averaged over `valid` (which reaches one
/// token past EOS); also the fraction of tokens where clipping chose. Returns `(loss, clipfrac)`.
pub fn clipped_value_loss(
    values: Tensor<2>,
    old_values: Tensor<2>,
    returns: Tensor<2>,
    valid: Tensor<2>,
    cliprange: f64,
) -> (Tensor<1>, Tensor<1>) {
    let values = values * valid.clone();
    let clipped = old_values.clone() + (values.clone() - old_values).clamp(-cliprange, cliprange);
    let unclipped_loss = (values - returns.clone()).square();
    let clipped_loss = (clipped - returns).square();
    let clipfrac = masked_mean(clipped_loss.clone().greater(unclipped_loss.clone()).float(), valid.clone());
    (masked_mean(unclipped_loss.max_pair(clipped_loss), valid) * 0.5, clipfrac)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    #[test]
    fn the_host_preference_loss_and_its_gradient_equal_the_tensor_loss_and_its_autodiff() {
        let device = Device::flex().autodiff();
        let rewards = [0.3, -1.2, 2.5, 0.0, 14.0, -9.0];
        let mut pairs = PreferencePairs::from_rankings(&[(0, &[2, 0, 1][..]), (3, &[1, 0][..]), (5, &[0][..])]);
        pairs.winners.push(5);
        pairs.losers.push(4);
        pairs.weights.push(0.25);
        for (center_coef, margins) in [(0.0, vec![]), (0.01, vec![0.5, -0.25, 0.0, 1.0, 2.0])] {
            pairs.margins = margins;
            let leaf = Tensor::<1>::from_data(TensorData::new(rewards.map(|r| r as f32).to_vec(), [rewards.len()]), &device).require_grad();
            let loss = preference_loss(leaf.clone(), &pairs, center_coef);
            let expected_loss = loss.clone().into_data().try_to_vec::<f32>().unwrap()[0];
            let expected_grad = leaf.grad(&loss.backward()).unwrap().into_data().try_to_vec::<f32>().unwrap();
            let (host_loss, host_grad) = preference_loss_gradient(&rewards, &pairs, center_coef);
            assert!((host_loss as f32 - expected_loss).abs() <= 1e-5 * (1.0 + expected_loss.abs()), "{host_loss} vs {expected_loss}");
            for (i, (a, b)) in host_grad.iter().zip(&expected_grad).enumerate() {
                assert!((*a as f32 - b).abs() <= 1e-5 * (1.0 + b.abs()), "reward {i}: {a} vs {b} (center {center_coef})");
            }
        }
    }
}
