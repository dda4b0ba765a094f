//! PPO with a KL leash to the SFT model (Ouyang et al. 2022; "The N Implementation Details of RLHF
//! with PPO", Huang et al.). [`PpoTrainer::step`] is one iteration, written as numbered phases:
//! rollout, log-probs and values, score, KL-shaped rewards and advantages, K epochs of clipped
//! updates, KL control. The arithmetic between the phases is `ppo_math.rs` (checked against TRL);
//! how a rollout is laid out and read by the models is `rollout.rs`.
//!
//! Four models: the policy (trained, starts as SFT), the reference (frozen SFT), the reward model
//! (frozen) and the value model. The value model is a separate network initialised from the
//! reward model, as in InstructGPT: it starts out already reading "how good is this answer" from
//! the hidden state, so the first iterations' advantages are not noise, and its updates cannot
//! disturb the policy's features the way a shared trunk would. The cost is a second forward and
//! backward pass, small at this size.
//!
//! Divergence guard: a step whose loss or gradient is not finite, or whose rollout shows a KL to
//! the reference above `kl_limit`, restores the policy and value from the last iteration that was
//! healthy and reports it in the stats. Adam's moments are kept: non-finite gradients never reach
//! them.

use std::rc::Rc;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tinyrlhf_model::{AdamWSettings, CausalLm, ModelConfig, ScalarModel, step_in_place};
use web_time::Instant;

use crate::checkpoint::{TrainCheckpoint, TrainError, ValueCheckpoint, optimizer_from_bytes, optimizer_to_bytes};
use crate::data::examples::{Example, LmBatch};
use crate::data::order::epoch_order;
use crate::methods::iteration::{RolloutFigures, kl_guard, rollout_sampling};
pub use crate::methods::ppo_config::PpoConfig;
use crate::methods::ppo_math::{
    AdaptiveKl, AdvantageConfig, Advantages, KlEstimator, Rows, compute_advantages, invert, masked_var, per_token_kl,
};
use crate::methods::ppo_minibatch::MinibatchStats;
use crate::methods::rollout::{RolloutBatch, ScoredRollout, response_logprobs, response_values, sample_and_score, share_rollout};
use crate::parallel::peers::{Alone, GradientExchange, Peers, shard};
use crate::parallel::threads::both;
use crate::step::grads::{blown_up, clip_on_device, largest_trained_weight};
use crate::step::groups::group_tokens;
use crate::step::logprobs::next_token_loss;
use crate::step::losses::{clipped_policy_loss, clipped_value_loss};
use crate::step::read::values as read_values;
use crate::step::schedule::LrSchedule;

/// What one PPO iteration did. Token means are over response tokens up to and including EOS.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PpoStats {
    pub iteration: usize,
    /// Mean reward-model score of the rollouts (before the missing-EOS penalty).
    pub score: f64,
    /// Mean total reward per sequence: score, penalty and the KL terms.
    pub reward: f64,
    /// KL(policy || reference) per sequence, k1 and k3 estimates.
    pub kl: f64,
    pub kl_k3: f64,
    /// Policy entropy per token (at the rollout temperature).
    pub entropy: f64,
    pub pg_loss: f64,
    pub pg_clipfrac: f64,
    pub approx_kl: f64,
    pub vf_loss: f64,
    pub vf_clipfrac: f64,
    pub explained_variance: f64,
    /// Response length in tokens, EOS included.
    pub mean_length: f64,
    pub eos_rate: f64,
    pub beta: f64,
    pub lr: f64,
    /// Largest |log ratio| and the clip fraction on the first minibatch of the first epoch, before
    /// any update: 0 and 0 when the rollout's log-probs match the trained forward.
    pub first_minibatch_max_log_ratio: f64,
    pub first_minibatch_clipfrac: f64,
    /// Backward passes the update took: its minibatches, each in groups of answers within the
    /// activation budget.
    pub update_groups: usize,
    pub rollout_secs: f64,
    pub scoring_secs: f64,
    pub update_secs: f64,
    /// Training speed of this step: prompt and answer tokens (no padding) through the training
    /// forward and backward, per second of the update.
    pub tokens_per_sec: f64,
    /// The first rollout of the batch, for showing: prompt ids and response ids.
    pub sample_prompt: Vec<u32>,
    pub sample_response: Vec<u32>,
    /// Why this iteration restored the last good policy instead of updating, if it did.
    pub restored: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PpoState {
    iteration: usize,
    beta: AdaptiveKl,
    settings: PpoConfig,
}

/// Trains a policy with PPO against a frozen reward model, one iteration per [`PpoTrainer::step`].
pub struct PpoTrainer {
    policy: CausalLm,
    value: ScalarModel,
    reference: CausalLm,
    reward: ScalarModel,
    last_good: (CausalLm, ScalarModel),
    policy_optim: ModuleOptimizer,
    value_optim: ModuleOptimizer,
    config: ModelConfig,
    settings: PpoConfig,
    beta: AdaptiveKl,
    prompts: Vec<Vec<u32>>,
    ptx: Vec<Example>,
    eos: u32,
    pad: u32,
    iteration: usize,
    device: Device,
    peers: Rc<dyn Peers>,
    /// Tokens (answers times their padded length, policy and value model together) one backward
    /// pass may hold.
    group_tokens: usize,
}

impl std::fmt::Debug for PpoTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PpoTrainer").field("iteration", &self.iteration).field("prompts", &self.prompts.len()).finish()
    }
}

/// The models PPO starts from.
#[derive(Debug, Clone)]
pub struct PpoModels {
    /// The SFT model; it becomes both the policy and the frozen reference.
    pub sft: CausalLm,
    pub config: ModelConfig,
    pub reward: ScalarModel,
    /// Defaults to a copy of the reward model.
    pub value: Option<ScalarModel>,
    /// Where the policy starts when continuing a run; defaults to the SFT model.
    pub policy: Option<CausalLm>,
}

impl PpoTrainer {
    /// `prompts` are chat-template prompt ids (`Tokenizer::encode_prompt`); `ptx` are SFT examples
    /// for the optional PPO-ptx term.
    pub fn new(
        models: PpoModels,
        prompts: Vec<Vec<u32>>,
        ptx: Vec<Example>,
        eos: u32,
        pad: u32,
        settings: PpoConfig,
    ) -> Result<Self, TrainError> {
        let PpoModels { sft, config, reward, value, policy } = models;
        if prompts.is_empty() {
            return Err(TrainError::NoData);
        }
        if settings.batch_size == 0
            || settings.minibatch_size == 0
            || settings.ppo_epochs == 0
            || settings.max_new_tokens == 0
            || settings.samples_per_prompt == 0
        {
            return Err(TrainError::Setting(
                "batch size, minibatch size, epochs, samples per prompt and new tokens must be at least 1".into(),
            ));
        }
        settings.validate()?;
        if settings.temperature.is_nan() || settings.temperature <= 0.0 {
            return Err(TrainError::Setting(format!("temperature {} must be above 0: PPO needs a sampling policy", settings.temperature)));
        }
        if settings.ptx_coef > 0.0 && ptx.is_empty() {
            return Err(TrainError::Setting("ptx_coef is set but there are no demonstrations to mix in".into()));
        }
        crate::models::compat::check_model_shape("the reward model", &config, &reward.transformer)?;
        let max_prompt = config.context_length() - 1;
        if let Some((i, p)) = prompts.iter().enumerate().find(|(_, p)| p.is_empty() || p.len() > max_prompt) {
            return Err(TrainError::Setting(format!("prompt {i} has {} tokens; prompts need 1 to {max_prompt}", p.len())));
        }
        let tokens = prompts.iter().map(Vec::len).max().unwrap_or(0) + settings.max_new_tokens;
        let group_tokens = group_tokens(&config, settings.train.activation_budget_mib);
        let train_rows = settings.minibatch_size.min(group_tokens / (2 * tokens)).max(1);
        crate::memory::sizes::check_sampling_run(&config, settings.train.lora.as_ref(), settings.batch_size, train_rows, tokens, "PPO")?;
        let device = sft.device();
        let value = value.unwrap_or_else(|| reward.clone());
        let reference = sft.clone();
        let policy = crate::models::lora::trainable_lm(policy.unwrap_or(sft), settings.train.lora.as_ref());
        let value = crate::models::lora::trainable_scalar(value, settings.train.lora.as_ref(), "value.");
        let beta = AdaptiveKl { value: settings.kl_coef, target: settings.kl_target.unwrap_or(0.0), horizon: settings.kl_horizon };
        Ok(Self {
            last_good: (policy.clone(), value.clone()),
            policy,
            value,
            reference,
            reward,
            policy_optim: AdamWSettings::with_weight_decay(settings.train.weight_decay).init(),
            value_optim: AdamWSettings::with_weight_decay(settings.train.weight_decay).init(),
            config,
            settings,
            beta,
            prompts,
            ptx,
            eos,
            pad,
            iteration: 0,
            device,
            peers: Rc::new(Alone),
            group_tokens,
        })
    }

    /// Shares each iteration with `peers` (identical trainers on other workers): each samples and
    /// scores its shard of the rollouts, and each minibatch's gradient is summed over their shards.
    pub fn set_peers(&mut self, peers: Rc<dyn Peers>) {
        self.peers = peers;
    }

    /// A snapshot to continue from with [`PpoTrainer::resume`]: the policy, and the value model
    /// beside it.
    pub async fn checkpoint(&self) -> Result<TrainCheckpoint, TrainError> {
        let state = PpoState { iteration: self.iteration, beta: self.beta, settings: self.settings.clone() };
        let lora = self.settings.train.lora.as_ref();
        let (weights, adapter) = crate::models::lora::policy_parts(&self.policy.valid(), lora).await?;
        Ok(TrainCheckpoint {
            config_json: self.config.to_json(),
            weights,
            optimizer: optimizer_to_bytes(&self.policy_optim).await?,
            state_json: serde_json::to_string_pretty(&state).expect("state serialises"),
            value: Some(ValueCheckpoint {
                weights: crate::models::lora::value_bytes(&self.value.valid(), lora).await?,
                optimizer: optimizer_to_bytes(&self.value_optim).await?,
            }),
            adapter,
        })
    }

    /// Continues a run from `checkpoint`; `models` are the run's SFT and reward models (its policy
    /// and value come from the checkpoint), and the prompts are the same. The next iteration is
    /// the one the interrupted run would have done next.
    pub fn resume(
        models: PpoModels,
        checkpoint: &TrainCheckpoint,
        prompts: Vec<Vec<u32>>,
        ptx: Vec<Example>,
        eos: u32,
        pad: u32,
    ) -> Result<Self, TrainError> {
        let state: PpoState = serde_json::from_str(&checkpoint.state_json).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        let saved_value = checkpoint
            .value
            .as_ref()
            .ok_or_else(|| TrainError::Checkpoint("a PPO checkpoint holds a value model; this one has none".into()))?;
        let config_json = models.config.to_json();
        let (_, policy, optimizer_fits) = crate::models::lora::resumed_policy(checkpoint, &models.sft, state.settings.train.lora.as_ref())?;
        // With LoRA the value model started as the reward model: its adapters and head go back on it.
        let start = models.value.clone().unwrap_or_else(|| models.reward.clone());
        let value = crate::models::lora::resumed_value(&saved_value.weights, start, &config_json, state.settings.train.lora.as_ref())?;
        let models = PpoModels { policy: Some(policy), value: Some(value), ..models };
        let mut trainer = Self::new(models, prompts, ptx, eos, pad, state.settings)?;
        if optimizer_fits {
            trainer.policy_optim = optimizer_from_bytes(trainer.policy_optim, &checkpoint.optimizer, &trainer.policy)?;
        }
        trainer.value_optim = optimizer_from_bytes(trainer.value_optim, &saved_value.optimizer, &trainer.value)?;
        trainer.iteration = state.iteration;
        trainer.beta = state.beta;
        Ok(trainer)
    }

    pub fn iterations_done(&self) -> usize {
        self.iteration
    }

    /// Runs to `iterations` in all (a resumed run extended or cut short); the other settings stay
    /// the checkpoint's.
    pub fn set_iterations(&mut self, iterations: usize) {
        self.settings.iterations = iterations;
    }

    pub fn settings(&self) -> &PpoConfig {
        &self.settings
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The policy as it stands, for inference.
    pub fn policy(&self) -> CausalLm {
        self.policy.valid()
    }

    pub fn value_model(&self) -> ScalarModel {
        self.value.valid()
    }

    pub fn reference(&self) -> &CausalLm {
        &self.reference
    }

    pub fn reward_model(&self) -> &ScalarModel {
        &self.reward
    }

    /// The KL coefficient now (it moves when adaptive).
    pub fn beta(&self) -> f64 {
        self.beta.value
    }

    /// Moves the KL leash between iterations (the page's slider); an adaptive controller goes on
    /// from the new value. Refused, changing nothing, if the settings would not validate.
    pub fn set_beta(&mut self, beta: f64) -> Result<(), TrainError> {
        let settings = PpoConfig { kl_coef: beta, ..self.settings.clone() };
        settings.validate()?;
        self.settings = settings;
        self.beta.value = beta;
        Ok(())
    }

    /// The prompts of iteration `i`: consecutive slices of a per-pass shuffle of all prompts, each
    /// repeated `samples_per_prompt` times.
    fn batch_prompts(&self, iteration: usize) -> Vec<usize> {
        let n = self.prompts.len();
        let k = self.settings.samples_per_prompt;
        let distinct = self.settings.batch_size.div_ceil(k);
        (0..distinct)
            .flat_map(|j| {
                let i = iteration * distinct + j;
                std::iter::repeat_n(epoch_order(self.settings.train.seed, i / n, n)[i % n], k)
            })
            .take(self.settings.batch_size)
            .collect()
    }

    /// One PPO iteration.
    pub async fn step(&mut self) -> Result<PpoStats, TrainError> {
        let s = self.settings.clone();
        let lr = LrSchedule::linear(s.train.lr, s.iterations, 0.0).at(self.iteration);
        self.iteration += 1;
        let mut stats = PpoStats { iteration: self.iteration, beta: self.beta.value, lr, ..PpoStats::default() };

        // 1-3. Rollout at temperature T, log-probs of policy and reference, reward-model scores.
        let chosen = self.batch_prompts(self.iteration - 1);
        let owned: Vec<Vec<u32>> = chosen.iter().map(|&i| self.prompts[i].clone()).collect();
        let peers = self.peers.clone();
        let mine = shard(owned.len(), peers.rank(), peers.count());
        let sampling = rollout_sampling(s.max_new_tokens, s.temperature, s.train.seed, self.iteration, peers.rank());
        let value = self.value.valid();
        let rollout = sample_and_score(
            &self.policy.valid(),
            &self.reference,
            &self.reward,
            Some(&value),
            &owned[mine],
            &sampling,
            self.eos,
            self.pad,
        )
        .await?;
        let rollout = share_rollout(&*peers, rollout, &owned, self.eos, self.pad).await?;
        let ScoredRollout { batch, post, generated, logprobs, ref_logprobs, entropy, scores, values, rollout_secs, scoring_secs } = rollout;
        let values = values.unwrap_or_default();
        stats.sample_prompt = owned[0].clone();
        stats.sample_response = generated[0].clone();
        stats.rollout_secs = rollout_secs;
        let start = Instant::now();

        // 4-5. Per-token KL penalty, score at the end, GAE, whitened advantages.
        let advantage_config = AdvantageConfig {
            kl_coef: self.beta.value,
            kl_estimator: s.kl_estimator,
            gamma: s.gamma,
            lam: s.lam,
            whiten_rewards: s.whiten_rewards,
            missing_eos_penalty: s.missing_eos_penalty,
        };
        let adv = compute_advantages(&post, &scores, &logprobs, &ref_logprobs, &values, &advantage_config);
        let valid = invert(&adv.padding_mask);
        let n = batch.rows as f64;
        let per_sequence = |r: &Rows| r.iter().map(|row| row.iter().sum::<f64>()).sum::<f64>() / n;
        let RolloutFigures { score, entropy, mean_length, eos_rate } = RolloutFigures::of(&scores, &entropy, &valid, &post);
        (stats.score, stats.entropy, stats.mean_length, stats.eos_rate) = (score, entropy, mean_length, eos_rate);
        stats.reward = per_sequence(&adv.rewards);
        stats.kl = per_sequence(&adv.kl);
        stats.kl_k3 = per_sequence(&per_token_kl(&logprobs, &ref_logprobs, &adv.padding_mask, KlEstimator::K3));
        let valid_p1 = invert(&adv.padding_mask_p1);
        let residual: Rows = adv.returns.iter().zip(&adv.values).map(|(r, v)| r.iter().zip(v).map(|(r, v)| r - v).collect()).collect();
        stats.explained_variance = 1.0 - masked_var(&residual, &valid_p1) / masked_var(&adv.returns, &valid_p1).max(1e-12);
        stats.scoring_secs = scoring_secs + start.elapsed().as_secs_f64();

        let kl_used = if s.kl_estimator == KlEstimator::K3 { stats.kl_k3 } else { stats.kl };
        if let Some(why) = kl_guard(kl_used, s.kl_limit, &scores) {
            self.restore();
            stats.restored = Some(why);
            return Ok(stats);
        }
        self.last_good = (self.policy.clone(), self.value.clone());

        // 6. K epochs of minibatches: clipped policy and value losses (+ PPO-ptx). Their numbers
        //    stay on the device until the last minibatch, then come back in one read; if one was
        //    not finite, the whole update is undone, Adam's moments included.
        let start = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(s.train.seed ^ (self.iteration as u64) ^ 0x5151);
        let old_logprobs = logprobs;
        let optimizers = (self.policy_optim.clone(), self.value_optim.clone());
        let mut measured = vec![];
        for _ in 0..s.ppo_epochs {
            let mut order: Vec<usize> = (0..batch.rows).collect();
            order.shuffle(&mut rng);
            for minibatch in order.chunks(s.minibatch_size) {
                let (numbers, groups) = self.update(&batch, minibatch, &old_logprobs, &adv, &valid, &valid_p1, lr, measured.len()).await?;
                measured.push(numbers);
                stats.update_groups += groups;
            }
        }
        let updates = measured.len();
        // Read with the minibatches' numbers: the largest trained weight of the policy and the value
        // model after the last update (finite weights can still have blown up).
        let (mut numbers, mut largest) = (vec![], vec![]);
        if !measured.is_empty() {
            let weights: Vec<Tensor<1>> =
                [largest_trained_weight(&self.policy), largest_trained_weight(&self.value)].into_iter().flatten().collect();
            let count = weights.len();
            numbers = read_values(Tensor::cat([measured, weights].concat(), 0)).await?;
            largest = numbers.split_off(numbers.len() - count);
        }
        let minibatches: Vec<MinibatchStats> = numbers.chunks_exact(MinibatchStats::COUNT).map(MinibatchStats::from_numbers).collect();
        if let Some(why) = largest.iter().find_map(|&w| blown_up(w)) {
            (self.policy_optim, self.value_optim) = optimizers;
            self.restore();
            stats.restored = Some(format!("{why}; restored the policy of the last healthy iteration"));
            return Ok(stats);
        }
        if let Some((m, bad)) = minibatches.iter().enumerate().find(|(_, m)| !m.is_finite()) {
            (self.policy_optim, self.value_optim) = optimizers;
            self.restore();
            stats.restored = Some(format!(
                "minibatch {} of the update gave a non-finite loss or gradient (loss {}, gradient norms {} and {}); restored the policy of the last healthy iteration",
                m + 1,
                bad.loss,
                bad.policy_grad_norm,
                bad.value_grad_norm
            ));
            return Ok(stats);
        }
        let mut sums = MinibatchStats::default();
        minibatches.iter().for_each(|m| sums.add(m));
        if let Some(first) = minibatches.first() {
            stats.first_minibatch_max_log_ratio = first.max_log_ratio;
            stats.first_minibatch_clipfrac = first.pg_clipfrac;
        }
        let n = updates.max(1) as f64;
        (stats.pg_loss, stats.pg_clipfrac, stats.approx_kl, stats.vf_loss, stats.vf_clipfrac) =
            (sums.pg_loss / n, sums.pg_clipfrac / n, sums.approx_kl / n, sums.vf_loss / n, sums.vf_clipfrac / n);
        stats.update_secs = start.elapsed().as_secs_f64();
        let row_tokens: usize = owned.iter().zip(&generated).map(|(p, g)| p.len() + g.len()).sum();
        stats.tokens_per_sec = (row_tokens * s.ppo_epochs) as f64 / stats.update_secs;

        // 7. KL control: nudge beta toward the target.
        if s.kl_target.is_some() {
            self.beta.update(kl_used, batch.rows);
        }
        Ok(stats)
    }

    /// One minibatch update, and what it measured before updating, still on the device (see
    /// [`MinibatchStats::from_numbers`]). This trainer's share of `rows` (all of them, or its
    /// shard when peers split the minibatch) goes through the models a group of answers at a time
    /// within the activation budget; each group's losses are weighted by its share of the
    /// minibatch's tokens, so the summed gradients are the whole minibatch's.
    #[allow(clippy::too_many_arguments)]
    async fn update(
        &mut self,
        batch: &RolloutBatch,
        rows: &[usize],
        old_logprobs: &Rows,
        adv: &Advantages,
        valid: &[Vec<bool>],
        valid_p1: &[Vec<bool>],
        lr: f64,
        update_index: usize,
    ) -> Result<(Tensor<1>, usize), TrainError> {
        let s = &self.settings;
        let device = &self.device;
        let peers = self.peers.clone();
        let mine = &rows[shard(rows.len(), peers.rank(), peers.count())];
        let tokens = |m: &[Vec<bool>], rows: &[usize]| rows.iter().map(|&i| m[i].iter().filter(|&&v| v).count()).sum::<usize>() as f64;
        // Both models' activations are held at once: they run side by side.
        let group_rows = (self.group_tokens / (2 * (batch.query_len + batch.response_len))).max(1);
        let mut policy_grads = GradientsAccumulator::<CausalLm>::new();
        let mut value_grads = GradientsAccumulator::<ScalarModel>::new();
        let mut measured = vec![];
        for (g, group) in mine.chunks(group_rows).enumerate() {
            let policy_share = tokens(valid, group) / tokens(valid, rows).max(1.0);
            let value_share = tokens(valid_p1, group) / tokens(valid_p1, rows).max(1.0);
            let pick = |r: &Rows| floats(group.iter().map(|&i| r[i].clone()).collect(), device);
            let pick_mask = |m: &[Vec<bool>]| {
                floats(group.iter().map(|&i| m[i].iter().map(|&k| if k { 1.0 } else { 0.0 }).collect()).collect(), device)
            };
            // PPO-ptx's demonstrations are not split: the first peer's first group adds their term whole.
            let ptx_batch = (s.ptx_coef > 0.0 && peers.rank() == 0 && g == 0).then(|| {
                let start = update_index * s.minibatch_size;
                let examples: Vec<&Example> = (0..s.minibatch_size).map(|j| &self.ptx[(start + j) % self.ptx.len()]).collect();
                LmBatch::new(&examples, self.pad, device)
            });
            let (valid, valid_p1) = (pick_mask(valid), pick_mask(valid_p1));
            let (old, advantages, old_values, returns) = (pick(old_logprobs), pick(&adv.advantages), pick(&adv.values), pick(&adv.returns));
            // The policy's and the value model's losses share no weights, so their forward and
            // backward passes are independent: natively they run side by side (see `parallel`).
            let (policy_model, value_model) = (self.policy.clone(), self.value.clone());
            let policy_part = move || {
                let (new_logprobs, _) = response_logprobs(&policy_model, batch, group, s.temperature, false, device);
                let log_ratio_max = ((new_logprobs.clone().detach() - old.clone()).abs() * valid.clone()).max();
                let policy = clipped_policy_loss(new_logprobs, old, advantages, valid, s.cliprange);
                let mut loss = policy.loss.clone() * policy_share;
                if let Some(lm) = ptx_batch {
                    let hidden = policy_model.forward(lm.inputs.clone(), lm.positions.clone(), None);
                    loss = loss + next_token_loss(&policy_model, hidden, &lm) * s.ptx_coef;
                }
                let grads = GradientsParams::from_grads(loss.backward(), &policy_model);
                (loss.detach(), policy, log_ratio_max, grads)
            };
            let value_part = move || {
                let vpred = response_values(&value_model, batch, group, device);
                let (vf_loss, vf_clipfrac) = clipped_value_loss(vpred, old_values, returns, valid_p1, s.cliprange_value);
                let vf_loss = vf_loss * value_share;
                let grads = GradientsParams::from_grads((vf_loss.clone() * s.vf_coef).backward(), &value_model);
                (vf_loss.detach(), vf_clipfrac * value_share, grads)
            };
            let ((policy_loss, policy, log_ratio_max, policy_part), (vf_loss, vf_clipfrac, value_part)) = both(policy_part, value_part);
            policy_grads.accumulate(&self.policy, policy_part);
            value_grads.accumulate(&self.value, value_part);
            let loss = policy_loss + vf_loss.clone() * s.vf_coef;
            let numbers =
                [loss, policy.loss * policy_share, policy.clipfrac * policy_share, policy.approx_kl * policy_share, vf_loss, vf_clipfrac];
            measured.push((Tensor::cat(numbers.into_iter().map(|x| x.detach()).collect(), 0), log_ratio_max.detach()));
        }
        // The groups' weighted means add up; the largest log ratio is the largest of any group's.
        let groups = measured.len();
        let numbers = if measured.is_empty() {
            Tensor::<1>::zeros([MinibatchStats::MEASURED], device)
        } else {
            let (means, largest): (Vec<Tensor<1>>, Vec<Tensor<1>>) = measured.into_iter().unzip();
            let sums = Tensor::stack::<2>(means, 0).sum_dim(0).reshape([MinibatchStats::MEASURED - 1]);
            Tensor::cat(vec![sums, Tensor::cat(largest, 0).max()], 0)
        };
        let (mut policy_grads, mut value_grads) = (policy_grads.grads(), value_grads.grads());

        let numbers = if peers.count() > 1 {
            let mut exchange = GradientExchange::default();
            exchange.add(&self.policy, &policy_grads);
            exchange.add(&self.value, &value_grads);
            let mut summed = exchange.run(&*peers, vec![numbers]).await?;
            (policy_grads, value_grads) = (summed.next(&self.policy, device), summed.next(&self.value, device));
            Tensor::from_data(TensorData::new(MinibatchStats::combine(&summed.numbers), [MinibatchStats::MEASURED]), device)
        } else {
            numbers
        };
        let zero = || Tensor::<1>::zeros([1], device);
        let policy_norm = clip_on_device(&self.policy, &mut policy_grads, s.train.max_grad_norm).unwrap_or_else(zero);
        let value_norm = clip_on_device(&self.value, &mut value_grads, s.train.max_grad_norm).unwrap_or_else(zero);
        step_in_place(&mut self.policy_optim, lr, &mut self.policy, policy_grads);
        step_in_place(&mut self.value_optim, lr, &mut self.value, value_grads);
        crate::step::grads::dispatch(device)?;
        Ok((Tensor::cat(vec![numbers, policy_norm.detach(), value_norm.detach()], 0), groups))
    }

    fn restore(&mut self) {
        (self.policy, self.value) = self.last_good.clone();
    }
}

fn floats(rows: Rows, device: &Device) -> Tensor<2> {
    let (b, t) = (rows.len(), rows.first().map_or(0, Vec::len));
    let data: Vec<f32> = rows.into_iter().flatten().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(data, [b, t]), device)
}
