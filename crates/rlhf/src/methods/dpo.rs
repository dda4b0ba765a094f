//! Direct preference optimisation (Rafailov et al. 2023): the policy learns from rankings
//! directly, with no reward model and no value model — two networks instead of PPO's four. Each
//! K-way ranking gives its C(K,2) pairs, weighted 1/C(K,2) so a ranking of nine counts as much as
//! a pair, as the reward model weighs them. The frozen reference (the SFT model) scores every
//! answer once, up front; a step is then a forward and backward pass of the policy per group of
//! rankings whose activations fit `activation_budget_mib`, their gradients summed (a ranking larger
//! than that goes a few answers at a time, scored first without the graph).
//!
//! [`DpoTrainer::step`] reads as numbered phases; the loss and its gradient are `dpo_math.rs`
//! (checked against TRL 1.16). A step whose loss or gradient is not finite leaves the policy as it
//! was (the last good weights) and says so.

use std::ops::Range;
use std::rc::Rc;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use tinyrlhf_model::{AdamWSettings, CausalLm, ModelConfig};
use web_time::Instant;

use crate::checkpoint::{TrainCheckpoint, TrainError, optimizer_from_bytes, optimizer_to_bytes};
use crate::data::examples::{Example, LmBatch};
use crate::data::order::epoch_order;
use crate::data::rankings::TokenRanking;
use crate::methods::dpo_math::{DpoLoss, DpoMetrics, DpoPair, dpo_loss};
use crate::parallel::peers::{Alone, Peers, gather_rows, shard};
use crate::step::grads::guarded_update;
use crate::step::groups::{checked_group_tokens, ranking_groups, sequence_parts};
use crate::step::logprobs::trained_logprobs;
use crate::step::losses::PreferencePairs;
use crate::step::read::values as read_values;
use crate::step::schedule::LrSchedule;
use crate::step::settings::TrainSettings;

/// DPO settings. The defaults tune the shipped `tiny` SFT model from a few dozen rankings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DpoConfig {
    /// Passes over the training rankings.
    pub epochs: usize,
    /// Rankings per step.
    pub batch_size: usize,
    /// How far the policy may move from the reference: the implicit reward is beta * log ratio.
    pub beta: f64,
    pub loss: DpoLoss,
    /// The learning rate (decaying linearly to 0), clipping, seed, LoRA, activation budget.
    #[serde(flatten)]
    pub train: TrainSettings,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self { epochs: 6, batch_size: 8, beta: 0.1, loss: DpoLoss::Sigmoid, train: TrainSettings::with_lr(3e-4) }
    }
}

impl DpoConfig {
    /// Refuses settings that make a run meaningless, naming the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |what: String| Err(TrainError::Setting(what));
        self.train.validate()?;
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return bad(format!("beta = {}: it must be above 0", self.beta));
        }
        for (field, value) in [("epochs", self.epochs), ("batch_size", self.batch_size)] {
            if value == 0 {
                return bad(format!("{field} = 0: it must be at least 1"));
            }
        }
        Ok(())
    }
}

/// DPO loss and implicit-reward accuracy on held-out rankings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpoEval {
    pub loss: f64,
    /// Share of pairs whose better answer gets the higher implicit reward.
    pub accuracy: f64,
    pub margin: f64,
    pub pairs: usize,
}

/// What one DPO step did; the TRL metrics keep TRL's names (`rewards/chosen`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpoStepStats {
    pub step: usize,
    /// 1-based epoch this step belongs to.
    pub epoch: usize,
    pub loss: f64,
    #[serde(flatten)]
    pub metrics: DpoMetrics,
    pub lr: f64,
    pub grad_norm: f32,
    pub pairs: usize,
    pub pairs_per_sec: f64,
    /// Training speed of this step: prompt and answer tokens (no padding) through the training
    /// forward and backward, per second of the update.
    pub tokens_per_sec: f64,
    /// Set on the last step of an epoch when there are held-out rankings.
    pub held_out: Option<DpoEval>,
    /// Why the update was skipped and the last good weights kept, if it was.
    pub skipped: Option<String>,
}

/// A ranking with the reference's log-probability of each of its answers.
#[derive(Debug, Clone)]
struct Scored {
    ranking: TokenRanking,
    reference: Vec<f64>,
}

/// Trains a policy on rankings with DPO, one batch of rankings per [`DpoTrainer::step`].
pub struct DpoTrainer {
    policy: CausalLm,
    config: ModelConfig,
    optim: ModuleOptimizer,
    settings: DpoConfig,
    train: Vec<Scored>,
    held_out: Vec<Scored>,
    pad: u32,
    step: usize,
    device: Device,
    peers: Rc<dyn Peers>,
    /// Tokens one backward pass may hold (`step::groups`).
    group_tokens: usize,
}

impl std::fmt::Debug for DpoTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpoTrainer").field("step", &self.step).field("rankings", &self.train.len()).finish()
    }
}

impl DpoTrainer {
    /// Starts from the SFT model `sft`, which is also the frozen reference. The reference's
    /// log-probs of every answer are computed here, once.
    pub async fn new(
        sft: CausalLm,
        config: ModelConfig,
        train: Vec<TokenRanking>,
        held_out: Vec<TokenRanking>,
        pad: u32,
        settings: DpoConfig,
    ) -> Result<Self, TrainError> {
        Self::with_policy(sft.clone(), &sft, config, train, held_out, pad, settings).await
    }

    /// Continues from a checkpoint made by [`DpoTrainer::checkpoint`]; `sft` is the run's reference
    /// and the rankings are the same.
    pub async fn resume(
        checkpoint: &TrainCheckpoint,
        sft: &CausalLm,
        train: Vec<TokenRanking>,
        held_out: Vec<TokenRanking>,
        pad: u32,
    ) -> Result<Self, TrainError> {
        let state: DpoState = serde_json::from_str(&checkpoint.state_json).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        let (config, policy, optimizer_fits) = crate::models::lora::resumed_policy(checkpoint, sft, state.settings.train.lora.as_ref())?;
        crate::models::compat::check_model_shape("the reference", &config, sft)?;
        let mut trainer = Self::with_policy(policy, sft, config, train, held_out, pad, state.settings).await?;
        if optimizer_fits {
            trainer.optim = optimizer_from_bytes(trainer.optim, &checkpoint.optimizer, &trainer.policy)?;
        }
        trainer.step = state.step;
        Ok(trainer)
    }

    /// Starts from `policy` (a DPO policy saved earlier, say) with `reference` as the frozen
    /// reference; a fresh optimizer.
    pub async fn with_policy(
        policy: CausalLm,
        reference: &CausalLm,
        config: ModelConfig,
        train: Vec<TokenRanking>,
        held_out: Vec<TokenRanking>,
        pad: u32,
        settings: DpoConfig,
    ) -> Result<Self, TrainError> {
        settings.validate()?;
        if train.is_empty() {
            return Err(TrainError::NoData);
        }
        for (i, r) in train.iter().chain(&held_out).enumerate() {
            if r.sequences.len() < 2 || r.sequences.iter().any(|s| s.len() <= r.prompt_len || s.len() > config.context_length()) {
                return Err(TrainError::Setting(format!(
                    "ranking {i} needs 2 or more answers, each non-empty and within the context of {}",
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
            "a DPO step",
        )?;
        let device = policy.device();
        let train = score_with_reference(reference, train, settings.batch_size, pad).await?;
        let held_out = score_with_reference(reference, held_out, settings.batch_size, pad).await?;
        let policy = crate::models::lora::trainable_lm(policy, settings.train.lora.as_ref());
        let optim = AdamWSettings::with_weight_decay(settings.train.weight_decay).init();
        Ok(Self { policy, config, optim, settings, train, held_out, pad, step: 0, device, peers: Rc::new(Alone), group_tokens })
    }

    /// Shares each step with `peers` (identical trainers on other workers): each back-propagates
    /// its shard of the batch's rankings, and all apply the summed gradient.
    pub fn set_peers(&mut self, peers: Rc<dyn Peers>) {
        self.peers = peers;
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.settings.batch_size)
    }

    pub fn total_steps(&self) -> usize {
        self.steps_per_epoch() * self.settings.epochs
    }

    pub fn steps_done(&self) -> usize {
        self.step
    }

    pub fn is_done(&self) -> bool {
        self.step >= self.total_steps()
    }

    pub fn settings(&self) -> &DpoConfig {
        &self.settings
    }

    /// Changes beta between steps (the page's slider). Refused, changing nothing, if the settings
    /// would not validate.
    pub fn set_beta(&mut self, beta: f64) -> Result<(), TrainError> {
        let settings = DpoConfig { beta, ..self.settings.clone() };
        settings.validate()?;
        self.settings = settings;
        Ok(())
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The policy as it stands, for inference.
    pub fn policy(&self) -> CausalLm {
        self.policy.valid()
    }

    /// One step on the next batch of rankings.
    pub async fn step(&mut self) -> Result<DpoStepStats, TrainError> {
        let start = Instant::now();
        let per_epoch = self.steps_per_epoch();
        let (epoch, within) = (self.step / per_epoch, self.step % per_epoch);
        let lr = LrSchedule::linear(self.settings.train.lr, self.total_steps(), 0.0).at(self.step);
        self.step += 1;

        // 1. The batch: the next rankings of this epoch's shuffle, all their answers in one batch.
        let order = epoch_order(self.settings.train.seed, epoch, self.train.len());
        let batch: Vec<&Scored> =
            order.iter().skip(within * self.settings.batch_size).take(self.settings.batch_size).map(|&i| &self.train[i]).collect();
        let examples: Vec<Example> = batch.iter().flat_map(|s| s.ranking.examples()).collect();

        // 2. This peer's rankings through the policy a group at a time (`groups`): each group's
        //    answers' log-probabilities, read back, and the gradient of its pairs' share of the
        //    loss pushed back at once, so one group's activations are held at a time.
        let peers = self.peers.clone();
        let mine = &batch[shard(batch.len(), peers.rank(), peers.count())];
        let budget = self.group_tokens;
        let mut own: Vec<f64> = Vec::with_capacity(mine.iter().map(|s| s.ranking.sequences.len()).sum());
        let mut grads = GradientsAccumulator::<CausalLm>::new();
        for group in ranking_groups(mine, budget, |s| &s.ranking) {
            let examples: Vec<Example> = group.iter().flat_map(|s| s.ranking.examples()).collect();
            let parts = sequence_parts(examples.iter().map(|e| e.tokens.len()), budget);
            // A group of several parts is scored whole first, without the graph: every answer's
            // log-probability is needed before any part's gradient is known.
            let unscored = parts.len() > 1;
            let (values, mut tracked) = if unscored {
                (self.scored_without_graph(&examples, &parts).await?, None)
            } else {
                let logps = sequence_logprobs(&self.policy, &examples, self.pad, &self.device); // [answers]
                (read_values(logps.clone().detach()).await?.into_iter().map(f64::from).collect(), Some(logps))
            };
            let coefficients = group_gradient(&group, &values, batch.len(), self.settings.beta, self.settings.loss);
            for part in parts {
                let logps =
                    tracked.take().unwrap_or_else(|| sequence_logprobs(&self.policy, &examples[part.clone()], self.pad, &self.device));
                let weights = Tensor::from_data(TensorData::new(coefficients[part.clone()].to_vec(), [part.len()]), &self.device);
                let surrogate = (logps * weights).sum(); // d/dθ of the group's share of the loss
                grads.accumulate(&self.policy, GradientsParams::from_grads(surrogate.backward(), &self.policy));
            }
            own.extend(values);
        }
        let parts = gather_rows(&*peers, vec![own]).await?;
        let policy: Vec<f64> = parts.concat();
        if policy.len() != examples.len() {
            return Err(TrainError::Peers(format!("the peers scored {} answers of {}", policy.len(), examples.len())));
        }

        // 3. The loss of every pair, for the stats (its gradient went back in phase 2).
        let (pairs, _) = batch_pairs(&batch, &policy);
        let loss = dpo_loss(&pairs, self.settings.beta, self.settings.loss);
        let mut stats = DpoStepStats {
            step: self.step,
            epoch: epoch + 1,
            loss: loss.loss,
            metrics: loss.metrics,
            lr,
            grad_norm: f32::NAN,
            pairs: pairs.len(),
            pairs_per_sec: 0.0,
            tokens_per_sec: 0.0,
            held_out: None,
            skipped: None,
        };

        // 4. The update from the summed gradients; skipped on NaN/inf (the last good weights kept).
        let loss_value = if policy.iter().all(|x| x.is_finite()) { loss.loss as f32 } else { f32::NAN };
        let outcome = if loss_value.is_finite() {
            let (_, outcome) =
                guarded_update(&mut self.policy, &mut self.optim, lr, grads.grads(), vec![], self.settings.train.max_grad_norm, &*peers)
                    .await?;
            outcome
        } else {
            Err(format!("loss is {loss_value}; the update was skipped and the last good weights kept"))
        };
        match outcome {
            Ok(norm) => stats.grad_norm = norm,
            Err(reason) => {
                stats.skipped = Some(reason);
                return Ok(stats);
            }
        }
        stats.pairs_per_sec = pairs.len() as f64 / start.elapsed().as_secs_f64();
        stats.tokens_per_sec = examples.iter().map(|e| e.tokens.len()).sum::<usize>() as f64 / start.elapsed().as_secs_f64();

        // 5. At the end of an epoch, the held-out rankings.
        if within + 1 == per_epoch && !self.held_out.is_empty() {
            stats.held_out = Some(self.evaluate_held_out().await?);
        }
        Ok(stats)
    }

    /// The policy's log-probability of each of `examples`, a part at a time, without the graph.
    async fn scored_without_graph(&self, examples: &[Example], parts: &[Range<usize>]) -> Result<Vec<f64>, TrainError> {
        let policy = self.policy.valid();
        let device = policy.device();
        let mut values = Vec::with_capacity(examples.len());
        for part in parts {
            values.extend(
                read_values(sequence_logprobs(&policy, &examples[part.clone()], self.pad, &device)).await?.into_iter().map(f64::from),
            );
        }
        Ok(values)
    }

    /// Loss and implicit-reward accuracy of the current policy on the held-out rankings.
    pub async fn evaluate_held_out(&self) -> Result<DpoEval, TrainError> {
        let policy = self.policy.valid();
        let (mut loss, mut accuracy, mut margin, mut pairs) = (0.0, 0.0, 0.0, 0usize);
        let chunks: Vec<&[Scored]> = self.held_out.chunks(self.settings.batch_size).collect();
        for chunk in &chunks {
            let batch: Vec<&Scored> = chunk.iter().collect();
            let examples: Vec<Example> = batch.iter().flat_map(|s| s.ranking.examples()).collect();
            let logps: Vec<f64> =
                read_values(sequence_logprobs(&policy, &examples, self.pad, &self.device)).await?.into_iter().map(f64::from).collect();
            let (batch_pairs, _) = batch_pairs(&batch, &logps);
            let result = dpo_loss(&batch_pairs, self.settings.beta, self.settings.loss);
            // Each chunk's numbers are means over its rankings; weigh them back to a sum.
            let share = chunk.len() as f64 / self.held_out.len() as f64;
            loss += result.loss * share;
            accuracy += result.metrics.rewards_accuracies * share;
            margin += result.metrics.rewards_margins * share;
            pairs += batch_pairs.len();
        }
        Ok(DpoEval { loss, accuracy, margin, pairs })
    }

    /// Everything needed to continue later: policy weights, optimizer state, step and settings.
    pub async fn checkpoint(&self) -> Result<TrainCheckpoint, TrainError> {
        let state = DpoState { step: self.step, settings: self.settings.clone() };
        let (weights, adapter) = crate::models::lora::policy_parts(&self.policy.valid(), self.settings.train.lora.as_ref()).await?;
        Ok(TrainCheckpoint {
            config_json: self.config.to_json(),
            weights,
            optimizer: optimizer_to_bytes(&self.optim).await?,
            state_json: serde_json::to_string_pretty(&state).expect("state serialises"),
            value: None,
            adapter,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct DpoState {
    step: usize,
    settings: DpoConfig,
}

/// The gradient of a batch's loss with respect to the log-probability of each answer of `group`
/// (`values` theirs, laid out ranking after ranking), where the batch has `batch_rankings` rankings:
/// each ranking's pairs weigh 1/C(K,2) of one ranking in the batch.
fn group_gradient(group: &[&Scored], values: &[f64], batch_rankings: usize, beta: f64, loss: DpoLoss) -> Vec<f32> {
    let (pairs, layout) = batch_pairs(group, values);
    let share = group.len() as f64 / batch_rankings as f64;
    let mut grad = vec![0.0f32; values.len()];
    for (term, &(chosen, rejected)) in dpo_loss(&pairs, beta, loss).pairs.iter().zip(&layout) {
        grad[chosen] += (share * term.grad_chosen) as f32;
        grad[rejected] += (share * term.grad_rejected) as f32;
    }
    grad
}

/// `rankings` with the reference's log-probability of each answer, `batch_size` rankings a pass.
async fn score_with_reference(
    reference: &CausalLm,
    rankings: Vec<TokenRanking>,
    batch_size: usize,
    pad: u32,
) -> Result<Vec<Scored>, TrainError> {
    let device = reference.device();
    let mut scored = Vec::with_capacity(rankings.len());
    for chunk in rankings.chunks(batch_size) {
        let examples: Vec<Example> = chunk.iter().flat_map(TokenRanking::examples).collect();
        let logps = read_values(sequence_logprobs(reference, &examples, pad, &device)).await?;
        let mut logps = logps.into_iter().map(f64::from);
        for r in chunk {
            scored.push(Scored { reference: logps.by_ref().take(r.sequences.len()).collect(), ranking: r.clone() });
        }
    }
    Ok(scored)
}

/// The pairs of a batch of rankings whose answers' policy log-probs are `policy` (answers laid out
/// ranking after ranking), and where each pair's chosen and rejected answers sit in that layout.
fn batch_pairs(batch: &[&Scored], policy: &[f64]) -> (Vec<DpoPair>, Vec<(usize, usize)>) {
    let mut offsets = Vec::with_capacity(batch.len());
    let mut reference = Vec::with_capacity(policy.len());
    let mut tokens = Vec::with_capacity(policy.len());
    for s in batch {
        offsets.push((reference.len(), s.ranking.order.as_slice()));
        reference.extend(&s.reference);
        tokens.extend(s.ranking.sequences.iter().map(|q| q.len() - s.ranking.prompt_len));
    }
    let pairs = PreferencePairs::from_rankings(&offsets);
    let layout: Vec<(usize, usize)> = pairs.winners.iter().copied().zip(pairs.losers.iter().copied()).collect();
    let dpo = layout
        .iter()
        .zip(&pairs.weights)
        .map(|(&(c, r), &w)| DpoPair {
            policy_chosen: policy[c],
            policy_rejected: policy[r],
            ref_chosen: reference[c],
            ref_rejected: reference[r],
            chosen_tokens: tokens[c],
            rejected_tokens: tokens[r],
            weight: f64::from(w),
        })
        .collect();
    (dpo, layout)
}

/// Each example's log-probability under `model` summed over its target tokens (the answer and its
/// EOS), `[examples]`; differentiable when `model` is being trained.
pub fn sequence_logprobs(model: &CausalLm, examples: &[Example], pad: u32, device: &Device) -> Tensor<1> {
    let refs: Vec<&Example> = examples.iter().collect();
    let batch = LmBatch::new(&refs, pad, device);
    let hidden = model.forward(batch.inputs.clone(), batch.positions.clone(), None); // [n, len, d]
    let per_token = trained_logprobs(model, hidden, &batch); // [m]
    batch.rows.matmul(per_token.reshape([batch.target_tokens, 1])).reshape([refs.len()]) // [n]
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use tinyrlhf_model::GptConfig;

    use super::*;

    fn ranking(p: u32, answers: usize) -> TokenRanking {
        let sequences = (0..answers).map(|a| [vec![2, p, 3], vec![7; a + 1], vec![1]].concat()).collect();
        TokenRanking { sequences, order: (0..answers).collect(), prompt_len: 3 }
    }

    #[test]
    fn a_step_in_groups_and_parts_makes_the_update_of_the_whole_batch_at_once() {
        let device = Device::flex();
        device.seed(5);
        let config = ModelConfig::from(GptConfig::new(24, 48, 32, 2, 2));
        let sft = config.init(&device);
        let train: Vec<TokenRanking> = (10..14).map(|p| ranking(p, 3)).collect();
        let settings =
            DpoConfig { epochs: 1, batch_size: 4, train: TrainSettings { lr: 1e-2, ..DpoConfig::default().train }, ..DpoConfig::default() };
        let trained = |budget: usize| {
            let trainer = DpoTrainer::new(sft.clone(), config.clone(), train.clone(), vec![], 0, settings.clone());
            let mut trainer = pollster::block_on(trainer).unwrap();
            trainer.group_tokens = budget;
            let stats = pollster::block_on(trainer.step()).unwrap();
            let probe: Vec<Example> = train.iter().flat_map(TokenRanking::examples).collect();
            let logps = sequence_logprobs(&trainer.policy(), &probe, 0, &device).into_data().try_to_vec::<f32>().unwrap();
            (stats.loss, stats.grad_norm, logps)
        };
        let whole = trained(usize::MAX);
        for budget in [15, 1] {
            let (loss, norm, logps) = trained(budget);
            let near = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1.0);
            assert!(near(loss, whole.0) && near(norm.into(), whole.1.into()), "budget {budget}: {loss} {norm} vs {whole:?}");
            for (a, b) in logps.iter().zip(&whole.2) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "budget {budget}: {a} vs {b}");
            }
        }
    }
}
