//! The reward model trainer. A reward model is the SFT model with a scalar head (init
//! N(0, 1/sqrt(d+1))) that reads the hidden state at the EOS. Each K-way ranking is one batch
//! element expanded to its C(K,2) pairs, loss -1/C(K,2) sum log sigmoid(r_w - r_l), so a ranking of
//! nine counts as much as a pair (InstructGPT). Dropout is off. At the end of each epoch the
//! held-out rankings are scored (pair accuracy); after training, [`calibrate`] sets the head's bias
//! (and gain) so the SFT model's own samples score mean 0, std 1, which keeps PPO's reward scale
//! independent of how the reward model happened to drift.

use std::future::Future;
use std::rc::Rc;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use tinyrlhf_model::{AdamWSettings, CausalLm, LoraConfig, ModelConfig, ScalarModel};
use web_time::Instant;

use crate::checkpoint::TrainError;
use crate::data::rankings::{RankingSet, TokenRanking};
use crate::parallel::peers::{Alone, Peers, Reader, Wire, gather, shard};
use crate::stages::scoring::{PairEval, calibrate, evaluate, pair_accuracy, pairs_of, score_sequences};
use crate::stages::trainer::{StepReport, Trainer};
use crate::step::grads::guarded_update;
use crate::step::groups::{checked_group_tokens, ranking_groups, sequence_parts};
use crate::step::losses::{preference_loss, preference_loss_gradient};
use crate::step::read::values as read_values;
use crate::step::schedule::LrSchedule;
use crate::step::settings::TrainSettings;

/// Reward model training settings. The defaults train a reward model for the `tiny` preset from a
/// few dozen rankings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardConfig {
    pub epochs: usize,
    /// Rankings per step.
    pub batch_size: usize,
    /// TRL's `center_rewards_coefficient`: pulls rewards toward zero; 0 turns it off.
    pub center_coef: f64,
    /// Calibration scales the head so the SFT answers' scores have std 1 too (else it only shifts
    /// them to mean 0).
    #[serde(default = "unit_std")]
    pub unit_std: bool,
    /// The learning rate (decaying linearly to 10%), clipping, weight decay, seed, LoRA, and the
    /// activation budget (a step's rankings go through the model in groups, as DPO's do).
    #[serde(flatten)]
    pub train: TrainSettings,
}

impl RewardConfig {
    /// Refuses settings that make a run meaningless, naming the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |what: String| Err(TrainError::Setting(what));
        self.train.validate()?;
        if self.batch_size == 0 || self.epochs == 0 {
            return bad("batch size and epochs must be at least 1".into());
        }
        if !(self.center_coef.is_finite() && self.center_coef >= 0.0) {
            return bad(format!("center_coef = {}: it must be 0 (off) or more", self.center_coef));
        }
        Ok(())
    }
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self { epochs: 8, batch_size: 8, center_coef: 0.0, unit_std: unit_std(), train: TrainSettings::with_lr(1e-4) }
    }
}

fn unit_std() -> bool {
    true
}

/// What one reward-model step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardStepStats {
    pub step: usize,
    /// 1-based epoch this step belongs to.
    pub epoch: usize,
    pub loss: f32,
    /// Pair accuracy on this batch, before the update.
    pub accuracy: f32,
    pub lr: f64,
    pub grad_norm: f32,
    pub pairs: usize,
    pub pairs_per_sec: f64,
    /// Training speed of this step: prompt and answer tokens (no padding) through the training
    /// forward and backward, per second of the update.
    pub tokens_per_sec: f64,
    /// Set on the last step of an epoch when there are held-out rankings.
    pub held_out: Option<PairEval>,
    pub skipped: Option<String>,
}

/// A finished reward model and what its calibration did.
#[derive(Debug, Clone)]
pub struct Calibrated {
    pub model: ScalarModel,
    /// SFT answers it was calibrated on.
    pub answers: usize,
    /// Their scores before calibration.
    pub mean_before: f64,
    pub std_before: f64,
    pub unit_std: bool,
    /// The adapters it was trained with (beside a frozen base, which saving it need not write).
    pub lora: Option<LoraConfig>,
}

impl Calibrated {
    /// What the calibration did, in a line.
    pub fn summary(&self) -> String {
        format!(
            "calibrated on {} SFT answers: scores had mean {:.3}, std {:.3}; now mean 0{}",
            self.answers,
            self.mean_before,
            self.std_before,
            if self.unit_std { ", std 1" } else { "" }
        )
    }
}

/// Trains a [`ScalarModel`] on rankings, one batch of rankings per [`RewardTrainer::step`].
pub struct RewardTrainer {
    model: ScalarModel,
    config: ModelConfig,
    optim: ModuleOptimizer,
    settings: RewardConfig,
    train: Vec<TokenRanking>,
    held_out: Vec<TokenRanking>,
    pad: u32,
    step: usize,
    device: Device,
    peers: Rc<dyn Peers>,
    /// SFT answers the finished model is calibrated on.
    calibration: Vec<Vec<u32>>,
    /// Tokens one backward pass may hold (`step::groups`).
    group_tokens: usize,
}

impl std::fmt::Debug for RewardTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewardTrainer").field("step", &self.step).field("rankings", &self.train.len()).finish()
    }
}

impl RewardTrainer {
    /// Starts from the SFT model `sft` with a fresh scalar head.
    pub fn new(
        sft: CausalLm,
        config: ModelConfig,
        train: Vec<TokenRanking>,
        held_out: Vec<TokenRanking>,
        pad: u32,
        settings: RewardConfig,
    ) -> Result<Self, TrainError> {
        Self::from_scalar_model(ScalarModel::new(sft), config, train, held_out, pad, settings)
    }

    /// Starts from the SFT model `sft` on a prepared set of rankings; its SFT answers are kept to
    /// calibrate the finished model on ([`RewardTrainer::calibrated`]).
    pub fn on_rankings(sft: CausalLm, config: ModelConfig, set: RankingSet, pad: u32, settings: RewardConfig) -> Result<Self, TrainError> {
        let calibration = set.calibration_set();
        let RankingSet { train, held_out, .. } = set;
        let mut trainer = Self::new(sft, config, train, held_out, pad, settings)?;
        trainer.calibration = calibration;
        Ok(trainer)
    }

    /// Continues training an existing reward model.
    pub fn from_scalar_model(
        model: ScalarModel,
        config: ModelConfig,
        train: Vec<TokenRanking>,
        held_out: Vec<TokenRanking>,
        pad: u32,
        settings: RewardConfig,
    ) -> Result<Self, TrainError> {
        if train.is_empty() {
            return Err(TrainError::NoData);
        }
        settings.validate()?;
        for (i, r) in train.iter().chain(&held_out).enumerate() {
            let k = r.sequences.len();
            let mut sorted = r.order.clone();
            sorted.sort_unstable();
            if k < 2 || sorted != (0..k).collect::<Vec<_>>() {
                return Err(TrainError::Setting(format!("ranking {i} is not an order of its {k} completions (K must be 2 or more)")));
            }
            if let Some(s) = r.sequences.iter().find(|s| s.len() > config.context_length() || s.is_empty()) {
                return Err(TrainError::Setting(format!(
                    "ranking {i} has a {}-token sequence; the context holds {}",
                    s.len(),
                    config.context_length()
                )));
            }
        }
        // A step holds one group of sequences at a time.
        let group_tokens = checked_group_tokens(
            &config,
            settings.train.lora.as_ref(),
            &train,
            settings.batch_size,
            settings.train.activation_budget_mib,
            "a reward-model step",
        )?;
        let device = model.transformer.device();
        let model = crate::models::lora::trainable_scalar(model, settings.train.lora.as_ref(), "");
        let optim = AdamWSettings::with_weight_decay(settings.train.weight_decay).init();
        let peers: Rc<dyn Peers> = Rc::new(Alone);
        Ok(Self { model, config, optim, settings, train, held_out, pad, step: 0, device, peers, calibration: vec![], group_tokens })
    }

    /// Shares each step with `peers` (identical trainers on other workers): each scores its shard
    /// of the batch and the held-out rankings, and all apply the summed gradient.
    pub fn set_peers(&mut self, peers: Rc<dyn Peers>) {
        self.peers = peers;
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.settings.batch_size)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The reward model as it stands, for inference.
    pub fn model(&self) -> ScalarModel {
        self.model.valid()
    }

    /// The reward model as it stands, calibrated on the SFT answers of its rankings (mean 0, and
    /// std 1 unless the settings say otherwise): what a finished run hands on.
    pub async fn calibrated(&self) -> Result<Calibrated, TrainError> {
        let (model, (mean_before, std_before)) = calibrate(self.model(), &self.calibration, self.settings.unit_std, self.pad).await?;
        let lora = self.settings.train.lora.clone();
        Ok(Calibrated { model, answers: self.calibration.len(), mean_before, std_before, unit_std: self.settings.unit_std, lora })
    }

    /// One step on the next batch of rankings.
    pub async fn step(&mut self) -> Result<RewardStepStats, TrainError> {
        let start = Instant::now();
        let per_epoch = self.steps_per_epoch();
        let (epoch, within) = (self.step / per_epoch, self.step % per_epoch);
        let order = crate::data::order::epoch_order(self.settings.train.seed, epoch, self.train.len());
        let chosen: Vec<&TokenRanking> =
            order.iter().skip(within * self.settings.batch_size).take(self.settings.batch_size).map(|&i| &self.train[i]).collect();
        // Rankings are few, so no warm-up.
        let lr = LrSchedule::linear(self.settings.train.lr, self.total_steps(), 0.1).at(self.step);
        self.step += 1;

        // This peer's shard of the batch, a group of rankings at a time ([`ranking_groups`]), each
        // group's loss weighted by its share of the batch so that the groups' and the peers'
        // gradients sum to the whole batch's.
        let peers = self.peers.clone();
        let mine = &chosen[shard(chosen.len(), peers.rank(), peers.count())];
        let mut grads = GradientsAccumulator::<ScalarModel>::new();
        let (mut losses, mut rewards) = (vec![], vec![]);
        for group in ranking_groups(mine, self.group_tokens, |r| r) {
            let (loss, group_rewards) = self.group_gradient(&group, chosen.len(), &mut grads).await?;
            losses.push(loss);
            rewards.push(group_rewards);
        }
        // The loss and the rewards come back in the one read the step makes, with the gradient norm.
        let read_along = if losses.is_empty() { vec![] } else { vec![Tensor::cat(losses, 0).sum(), Tensor::cat(rewards, 0)] };
        let (numbers, outcome) =
            guarded_update(&mut self.model, &mut self.optim, lr, grads.grads(), read_along, self.settings.train.max_grad_norm, &*peers)
                .await?;
        // Each peer's numbers: its weighted loss, then its rankings' rewards (in batch order).
        let loss = numbers.iter().filter_map(|n| n.first()).sum::<f32>();
        let rewards: Vec<f32> = numbers.iter().flat_map(|n| n.get(1..).unwrap_or_default()).copied().collect();
        let pairs = pairs_of(&chosen);
        let mut stats = RewardStepStats {
            step: self.step,
            epoch: epoch + 1,
            loss: if numbers.is_empty() { f32::NAN } else { loss },
            accuracy: pair_accuracy(&rewards, &pairs),
            lr,
            grad_norm: f32::NAN,
            pairs: pairs.len(),
            pairs_per_sec: 0.0,
            tokens_per_sec: 0.0,
            held_out: None,
            skipped: None,
        };
        match outcome {
            Ok(norm) => stats.grad_norm = norm,
            Err(reason) => {
                stats.skipped = Some(reason);
                return Ok(stats);
            }
        }
        stats.pairs_per_sec = pairs.len() as f64 / start.elapsed().as_secs_f64();
        let tokens: usize = chosen.iter().flat_map(|r| &r.sequences).map(Vec::len).sum();
        stats.tokens_per_sec = tokens as f64 / start.elapsed().as_secs_f64();
        if within + 1 == per_epoch && !self.held_out.is_empty() {
            stats.held_out = Some(self.evaluate(&self.held_out).await?);
        }
        Ok(stats)
    }

    /// The gradient of `group`'s share of a batch of `batch_rankings` rankings, added to `grads`;
    /// its loss and its rewards (detached, in the group's order). A group that fits the budget goes
    /// through the model at once; a larger one (a single long ranking) is scored first without the
    /// graph, then each part of its sequences is sent back with its rewards' share of the loss's
    /// gradient.
    async fn group_gradient(
        &self,
        group: &[&TokenRanking],
        batch_rankings: usize,
        grads: &mut GradientsAccumulator<ScalarModel>,
    ) -> Result<(Tensor<1>, Tensor<1>), TrainError> {
        let share = group.len() as f64 / batch_rankings as f64;
        let (pairs, center) = (pairs_of(group), self.settings.center_coef);
        let sequences: Vec<Vec<u32>> = group.iter().flat_map(|r| r.sequences.iter().cloned()).collect();
        let parts = sequence_parts(sequences.iter().map(Vec::len), self.group_tokens);
        if let [_] = parts[..] {
            let rewards = score_sequences(&self.model, &sequences, self.pad, &self.device);
            let loss = preference_loss(rewards.clone(), &pairs, center) * share;
            let (loss_value, rewards) = (loss.clone().detach(), rewards.detach());
            grads.accumulate(&self.model, GradientsParams::from_grads(loss.backward(), &self.model));
            return Ok((loss_value, rewards));
        }
        let scoring = self.model.valid();
        let mut values = Vec::with_capacity(sequences.len());
        for part in &parts {
            let scores = score_sequences(&scoring, &sequences[part.clone()], self.pad, &scoring.transformer.device());
            values.extend(read_values(scores).await?.into_iter().map(f64::from));
        }
        let (loss, gradient) = preference_loss_gradient(&values, &pairs, center);
        for part in parts {
            let rewards = score_sequences(&self.model, &sequences[part.clone()], self.pad, &self.device);
            let weights: Vec<f32> = gradient[part.clone()].iter().map(|g| (g * share) as f32).collect();
            let surrogate = (rewards * Tensor::from_data(TensorData::new(weights, [part.len()]), &self.device)).sum();
            grads.accumulate(&self.model, GradientsParams::from_grads(surrogate.backward(), &self.model));
        }
        let floats = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), &self.device);
        Ok((floats(vec![(loss * share) as f32]), floats(values.iter().map(|&v| v as f32).collect())))
    }

    /// Loss and pair accuracy of the current model on `rankings`, no update; with peers, each
    /// scores its shard and the sums are shared.
    pub async fn evaluate(&self, rankings: &[TokenRanking]) -> Result<PairEval, TrainError> {
        let peers = &*self.peers;
        let mine = &rankings[shard(rankings.len(), peers.rank(), peers.count())];
        let own = evaluate(&self.model.valid(), mine, self.settings.batch_size, self.pad).await?;
        if peers.count() == 1 {
            return Ok(own);
        }
        // Sums over this shard: the loss over its rankings, its correct pairs, its pairs.
        let sums = [f64::from(own.loss) * mine.len() as f64, f64::from(own.accuracy) * own.pairs as f64, own.pairs as f64];
        let (mut loss, mut correct, mut pairs) = (0.0, 0.0, 0.0);
        for part in gather(peers, Wire::default().f64s(&sums).bytes()).await? {
            let sums = Reader::new(&part).f64s()?;
            let [l, c, p] = sums[..] else { return Err(TrainError::Peers("a peer's evaluation is malformed".into())) };
            (loss, correct, pairs) = (loss + l, correct + c, pairs + p);
        }
        Ok(PairEval {
            loss: (loss / rankings.len().max(1) as f64) as f32,
            accuracy: (correct / pairs.max(1.0)) as f32,
            pairs: pairs as usize,
        })
    }
}

impl Trainer for RewardTrainer {
    type Stats = RewardStepStats;

    fn step(&mut self) -> impl Future<Output = Result<RewardStepStats, TrainError>> {
        RewardTrainer::step(self)
    }

    fn steps_done(&self) -> usize {
        self.step
    }

    fn total_steps(&self) -> usize {
        self.steps_per_epoch() * self.settings.epochs
    }
}

impl StepReport for RewardStepStats {
    fn step(&self) -> usize {
        self.step
    }

    fn setback(&self) -> Option<&str> {
        self.skipped.as_deref()
    }

    fn summary(&self) -> String {
        format!("epoch {} · loss {:.3} · batch accuracy {:.0}%", self.epoch, self.loss, 100.0 * self.accuracy)
    }

    fn held_out(&self) -> Option<String> {
        let h = self.held_out?;
        Some(format!("epoch {}: held-out pair accuracy {:.1}% ({} pairs), loss {:.3}", self.epoch, 100.0 * h.accuracy, h.pairs, h.loss))
    }
}

#[cfg(test)]
mod tests {
    use tinyrlhf_model::GptConfig;

    use super::*;

    fn ranking(p: u32, answers: usize) -> TokenRanking {
        let sequences = (0..answers).map(|a| [vec![2, p, 3], vec![7 + a as u32; a + 1], vec![1]].concat()).collect();
        TokenRanking { sequences, order: (0..answers).rev().collect(), prompt_len: 3 }
    }

    #[test]
    fn a_step_in_groups_and_parts_makes_the_update_of_the_whole_batch_at_once() {
        let device = Device::flex();
        device.seed(5);
        let config = ModelConfig::from(GptConfig::new(24, 48, 32, 2, 2));
        let sft = tinyrlhf_model::drawn(config.init(&device));
        let train: Vec<TokenRanking> = (10..14).map(|p| ranking(p, 3)).collect();
        let settings = RewardConfig {
            epochs: 1,
            batch_size: 4,
            center_coef: 0.01,
            train: TrainSettings { lr: 1e-2, ..RewardConfig::default().train },
            ..RewardConfig::default()
        };
        // One fresh score head, drawn once, for every run: tests running beside this one draw from
        // the same device's generator, so a seed set here would not give each run the same head.
        let scalar = tinyrlhf_model::drawn(ScalarModel::new(sft));
        let trained = |budget: usize| {
            let mut trainer =
                RewardTrainer::from_scalar_model(scalar.clone(), config.clone(), train.clone(), vec![], 0, settings.clone()).unwrap();
            trainer.group_tokens = budget;
            let stats = pollster::block_on(trainer.step()).unwrap();
            let sequences: Vec<Vec<u32>> = train.iter().flat_map(|r| r.sequences.clone()).collect();
            let scores = score_sequences(&trainer.model(), &sequences, 0, &device).into_data().try_to_vec::<f32>().unwrap();
            (stats.loss, stats.grad_norm, stats.accuracy, scores)
        };
        let whole = trained(usize::MAX);
        // 15 tokens: groups of one or two rankings; 1 token: every answer a part of its own.
        for budget in [15, 1] {
            let (loss, norm, accuracy, scores) = trained(budget);
            let near = |a: f32, b: f32| (a - b).abs() <= 1e-5 * b.abs().max(1.0);
            assert!(near(loss, whole.0) && near(norm, whole.1) && accuracy == whole.2, "budget {budget}: {loss} {norm} vs {whole:?}");
            for (a, b) in scores.iter().zip(&whole.3) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "budget {budget}: {a} vs {b}");
            }
        }
    }
}
