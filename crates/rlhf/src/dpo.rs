//! Direct preference optimisation (Rafailov et al. 2023): the policy learns from rankings
//! directly, with no reward model and no value model — two networks instead of PPO's four. Each
//! K-way ranking gives its C(K,2) pairs, weighted 1/C(K,2) so a ranking of nine counts as much as
//! a pair, as the reward model weighs them. The frozen reference (the SFT model) scores every
//! answer once, up front; a step is then one forward and backward pass of the policy.
//!
//! [`DpoTrainer::step`] reads as numbered phases; the loss and its gradient are `dpo_math.rs`
//! (checked against TRL 1.16). A step whose loss or gradient is not finite leaves the policy as it
//! was (the last good weights) and says so.

use std::rc::Rc;

use burn::module::Module;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use tinyrlhf_model::{CausalLm, LoraConfig, ModelConfig};
use web_time::Instant;

use crate::checkpoint::{TrainCheckpoint, TrainError, optimizer_from_bytes, optimizer_to_bytes};
use crate::dpo_math::{DpoLoss, DpoMetrics, DpoPair, dpo_loss};
use crate::examples::{Example, LmBatch};
use crate::grads::guarded_step;
use crate::logprobs::chosen_logprobs;
use crate::losses::PreferencePairs;
use crate::order::epoch_order;
use crate::peers::{Alone, Peers, gather_rows, shard};
use crate::rankings::TokenRanking;
use crate::read::values as read_values;

/// DPO settings. The defaults tune the shipped `tiny` SFT model from a few dozen rankings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DpoConfig {
    /// Passes over the training rankings.
    pub epochs: usize,
    /// Rankings per step.
    pub batch_size: usize,
    pub lr: f64,
    /// How far the policy may move from the reference: the implicit reward is beta * log ratio.
    pub beta: f64,
    pub loss: DpoLoss,
    pub max_grad_norm: f64,
    pub seed: u64,
    /// LoRA adapters (rank, alpha) on the base model's projections instead of training every
    /// weight; `None`: full training.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self { epochs: 6, batch_size: 8, lr: 3e-4, beta: 0.1, loss: DpoLoss::Sigmoid, max_grad_norm: 1.0, seed: 0, lora: None }
    }
}

impl DpoConfig {
    /// Refuses settings that make a run meaningless, naming the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |what: String| Err(TrainError::Setting(what));
        crate::lora::check(self.lora.as_ref())?;
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return bad(format!("beta = {}: it must be above 0", self.beta));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr = {}: the learning rate must be above 0", self.lr));
        }
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("epochs and batch size must be at least 1".into());
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
        let (config, policy, optimizer_fits) = crate::lora::resumed_policy(checkpoint, sft, state.settings.lora.as_ref())?;
        crate::compat::check_model_shape("the reference", &config, sft)?;
        let mut trainer = Self::with_policy(policy, sft, config, train, held_out, pad, state.settings).await?;
        if optimizer_fits {
            trainer.optim = optimizer_from_bytes(trainer.optim, &checkpoint.optimizer)?;
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
        crate::sizes::check_ranking_run(&config, settings.lora.as_ref(), &train, settings.batch_size, "a DPO step")?;
        let device = policy.device();
        let train = score_with_reference(reference, train, settings.batch_size, pad).await?;
        let held_out = score_with_reference(reference, held_out, settings.batch_size, pad).await?;
        let policy = crate::lora::trainable_lm(policy, settings.lora.as_ref());
        let optim = AdamWConfig::new().with_weight_decay(0.0).init();
        Ok(Self { policy, config, optim, settings, train, held_out, pad, step: 0, device, peers: Rc::new(Alone) })
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
        let lr = self.settings.lr * (1.0 - self.step as f64 / self.total_steps().max(1) as f64);
        self.step += 1;

        // 1. The batch: the next rankings of this epoch's shuffle, all their answers in one batch.
        let order = epoch_order(self.settings.seed, epoch, self.train.len());
        let batch: Vec<&Scored> =
            order.iter().skip(within * self.settings.batch_size).take(self.settings.batch_size).map(|&i| &self.train[i]).collect();
        let examples: Vec<Example> = batch.iter().flat_map(|s| s.ranking.examples()).collect();

        // 2. The policy's log-probability of every answer, read back once: with peers, each reads
        //    its shard of the rankings' answers and the peers' lists, in rank order, make the whole.
        let peers = self.peers.clone();
        let mine: Vec<Example> = batch[shard(batch.len(), peers.rank(), peers.count())].iter().flat_map(|s| s.ranking.examples()).collect();
        let logps = (!mine.is_empty()).then(|| sequence_logprobs(&self.policy, &mine, self.pad, &self.device)); // [answers]
        let own: Vec<f64> = match &logps {
            Some(l) => read_values(l.clone().detach()).await?.into_iter().map(f64::from).collect(),
            None => vec![],
        };
        let parts = gather_rows(&*peers, vec![own]).await?;
        let offset: usize = parts.iter().take(peers.rank()).map(Vec::len).sum();
        let policy: Vec<f64> = parts.concat();
        if policy.len() != examples.len() {
            return Err(TrainError::Peers(format!("the peers scored {} answers of {}", policy.len(), examples.len())));
        }

        // 3. The loss of every pair, and its gradient with respect to each answer's log-prob.
        let (pairs, layout) = batch_pairs(&batch, &policy);
        let loss = dpo_loss(&pairs, self.settings.beta, self.settings.loss);
        let mut grad = vec![0.0f32; policy.len()];
        for (term, &(chosen, rejected)) in loss.pairs.iter().zip(&layout) {
            grad[chosen] += term.grad_chosen as f32;
            grad[rejected] += term.grad_rejected as f32;
        }
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

        // 4. Back-propagate sum(grad * logp): the DPO gradient, through the model; skip on NaN/inf.
        let grad = grad[offset..offset + mine.len()].to_vec();
        let surrogate = logps.map(|l| (l * Tensor::from_data(TensorData::new(grad, [mine.len()]), &self.device)).sum());
        let loss_value = if policy.iter().all(|x| x.is_finite()) { loss.loss as f32 } else { f32::NAN };
        let (model, _, outcome) = guarded_step(
            self.policy.clone(),
            &mut self.optim,
            lr,
            surrogate,
            Some(loss_value),
            vec![],
            self.settings.max_grad_norm,
            &*peers,
        )
        .await?;
        self.policy = model;
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
        let (weights, adapter) = crate::lora::policy_parts(&self.policy.valid(), self.settings.lora.as_ref()).await?;
        Ok(TrainCheckpoint {
            config_json: self.config.to_json(),
            weights,
            optimizer: optimizer_to_bytes(&self.optim)?,
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
    let hidden = model.forward(batch.inputs, batch.positions, None); // [n, len, d]
    let per_token = chosen_logprobs(model, hidden, batch.targets, 1.0, false).0 * batch.weights; // [n, len]
    let [n, _] = per_token.dims();
    per_token.sum_dim(1).reshape([n])
}
