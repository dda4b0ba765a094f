//! What a reward model says of answers: scores of whole chat sequences at their last token, the
//! pair accuracy and loss over rankings, and the calibration that makes the SFT model's own answers
//! score mean 0 (std 1). The reward trainer, PPO, GRPO, RLOO and the head-to-head all score
//! through here.

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use tinyrlhf_model::{ScalarModel, left_pad};

use crate::checkpoint::TrainError;
use crate::data::rankings::TokenRanking;
use crate::step::losses::{PreferencePairs, preference_loss};
use crate::step::read::values as read_values;

/// Loss and pair accuracy over a set of rankings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairEval {
    pub loss: f32,
    /// Fraction of pairs whose better completion scores strictly higher.
    pub accuracy: f32,
    pub pairs: usize,
}

/// Loss and pair accuracy of `model` on `rankings`, scored `batch_size` rankings at a time.
pub async fn evaluate(model: &ScalarModel, rankings: &[TokenRanking], batch_size: usize, pad: u32) -> Result<PairEval, TrainError> {
    let device = model.transformer.device();
    let (mut loss, mut correct, mut pairs) = (0.0f64, 0.0f64, 0usize);
    for chunk in rankings.chunks(batch_size.max(1)) {
        let refs: Vec<&TokenRanking> = chunk.iter().collect();
        let (rewards, batch_pairs) = score_rankings(model, &refs, pad, &device);
        // One read per batch: its loss, then its rewards.
        let numbers = read_values(Tensor::cat(vec![preference_loss(rewards.clone(), &batch_pairs, 0.0), rewards], 0)).await?;
        // The batch loss averages its rankings; weight it back up to a sum over rankings.
        loss += f64::from(numbers[0]) * chunk.len() as f64;
        correct += f64::from(pair_accuracy(&numbers[1..], &batch_pairs)) * batch_pairs.len() as f64;
        pairs += batch_pairs.len();
    }
    Ok(PairEval { loss: (loss / rankings.len().max(1) as f64) as f32, accuracy: (correct / pairs.max(1) as f64) as f32, pairs })
}

/// Scores of whole chat sequences, read at each one's last token (its EOS), `[n]`.
pub fn score_sequences(model: &ScalarModel, sequences: &[Vec<u32>], pad: u32, device: &Device) -> Tensor<1> {
    // Left padding puts every sequence's last token in the last column.
    let batch = left_pad(sequences, pad);
    let (ids, positions, mask) = batch.tensors(device);
    let per_token = model.forward(ids, positions, Some(mask)); // [n, len]
    let [n, len] = per_token.dims();
    per_token.slice([0..n, len - 1..len]).reshape([n])
}

pub(crate) fn score_rankings(model: &ScalarModel, rankings: &[&TokenRanking], pad: u32, device: &Device) -> (Tensor<1>, PreferencePairs) {
    let sequences: Vec<Vec<u32>> = rankings.iter().flat_map(|r| r.sequences.iter().cloned()).collect();
    (score_sequences(model, &sequences, pad, device), pairs_of(rankings))
}

/// The pairs of `rankings` with their completions laid out one ranking after another.
pub(crate) fn pairs_of(rankings: &[&TokenRanking]) -> PreferencePairs {
    let mut offset = 0;
    let layout: Vec<(usize, &[usize])> = rankings
        .iter()
        .map(|r| {
            offset += r.sequences.len();
            (offset - r.sequences.len(), r.order.as_slice())
        })
        .collect();
    PreferencePairs::from_rankings(&layout)
}

pub(crate) fn pair_accuracy(rewards: &[f32], pairs: &PreferencePairs) -> f32 {
    let beats = |w: usize, l: usize| matches!((rewards.get(w), rewards.get(l)), (Some(w), Some(l)) if w > l);
    let correct = pairs.winners.iter().zip(&pairs.losers).filter(|&(&w, &l)| beats(w, l)).count();
    correct as f32 / pairs.len().max(1) as f32
}

/// Mean and standard deviation of the scores `model` gives `sequences`.
pub async fn score_stats(model: &ScalarModel, sequences: &[Vec<u32>], batch_size: usize, pad: u32) -> Result<(f64, f64), TrainError> {
    let device = model.transformer.device();
    let mut scores = Vec::with_capacity(sequences.len());
    for chunk in sequences.chunks(batch_size.max(1)) {
        scores.extend(read_values(score_sequences(model, chunk, pad, &device)).await?.into_iter().map(f64::from));
    }
    let n = scores.len().max(1) as f64;
    let mean = scores.iter().sum::<f64>() / n;
    let std = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n).sqrt();
    Ok((mean, std))
}

/// Shifts (and with `unit_std`, scales) the head so `sequences` — SFT samples on training
/// prompts — score mean 0 (std 1). Returns the calibrated model and the `(mean, std)` it had.
pub async fn calibrate(
    model: ScalarModel,
    sequences: &[Vec<u32>],
    unit_std: bool,
    pad: u32,
) -> Result<(ScalarModel, (f64, f64)), TrainError> {
    let (mean, std) = score_stats(&model, sequences, 32, pad).await?;
    if !(mean.is_finite() && std.is_finite()) {
        return Err(TrainError::Setting(format!(
            "the reward model's scores have mean {mean} and std {std} on the calibration answers: a model that scores non-finite numbers cannot be calibrated (did its training blow up?)"
        )));
    }
    let gain = if unit_std && std > 1e-6 { 1.0 / std } else { 1.0 };
    let mut model = model;
    let weight = model.score.weight.val() * gain;
    model.score.weight = Param::initialized(model.score.weight.id, weight);
    if let Some(bias) = model.score.bias.take() {
        model.score.bias = Some(Param::initialized(bias.id, (bias.val() - mean) * gain));
    }
    Ok((model, (mean, std)))
}
