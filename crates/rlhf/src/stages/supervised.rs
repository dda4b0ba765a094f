//! The supervised trainer. Pretraining and SFT are one loop — next-token cross-entropy with AdamW,
//! warm-up + cosine decay and global-norm clipping — over different [`Example`]s.
//!
//! `step()` runs one batch and returns its stats; the loop that calls it lives at the edge (the CLI
//! prints stats, the web worker posts them). Batches follow a shuffled order per epoch, fixed by the
//! seed and the step number alone, so a resumed run sees exactly the batches it would have seen.
//! A step whose loss or gradient is not finite changes nothing and says so in its stats.

use std::future::Future;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use tinyrlhf_model::{AdamWSettings, CausalLm, LoraConfig, ModelConfig};
use web_time::Instant;

use crate::checkpoint::{TrainCheckpoint, TrainError, optimizer_from_bytes, optimizer_to_bytes};
use crate::data::examples::{Example, LmBatch};
use crate::parallel::peers::Alone;
use crate::stages::trainer::{StepReport, Trainer};
use crate::step::grads::guarded_step;
use crate::step::logprobs::next_token_loss;
use crate::step::read::scalar as read;
use crate::step::schedule::{Decay, LrSchedule};

/// Optimisation settings shared by pretraining and SFT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupervisedConfig {
    pub schedule: LrSchedule,
    pub batch_size: usize,
    pub weight_decay: f32,
    /// Gradients with a larger global norm are scaled down to it; 0 turns clipping off.
    pub max_grad_norm: f64,
    /// Fixes the batch order.
    pub seed: u64,
    /// LoRA adapters (rank, alpha) on the base model's projections instead of training every
    /// weight; `None`: full training.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
}

impl SupervisedConfig {
    /// Defaults that train the `tiny` preset well: peak lr 1e-3, 5% warm-up, floor 10%.
    pub fn new(total_steps: usize, batch_size: usize, seed: u64) -> Self {
        Self {
            schedule: LrSchedule { peak: 1e-3, warmup: (total_steps / 20).max(1), total: total_steps, floor: 0.1, decay: Decay::Cosine },
            batch_size,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            seed,
            lora: None,
        }
    }
}

/// A supervised run as a person sets it up (the page's SFT, the CLI's `pretrain` and `sft`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftSettings {
    /// Optimisation steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate (linear warm-up over 5% of the steps, cosine decay to 10%).
    pub lr: f64,
    /// Fixes the batch order.
    pub seed: u64,
    /// LoRA adapters (rank, alpha) on the base model's projections instead of training every
    /// weight; `None`: full training.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
}

impl Default for SftSettings {
    fn default() -> Self {
        Self { steps: 100, batch_size: 16, lr: 1e-3, seed: 0, lora: None }
    }
}

impl SftSettings {
    /// The trainer's settings for this run.
    pub fn supervised(&self) -> Result<SupervisedConfig, TrainError> {
        if self.steps == 0 || self.batch_size == 0 {
            return Err(TrainError::Setting("SFT needs at least 1 step of at least 1 sequence".into()));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(TrainError::Setting(format!("learning rate {} must be a positive number", self.lr)));
        }
        let mut config = SupervisedConfig::new(self.steps, self.batch_size, self.seed);
        config.schedule.peak = self.lr;
        config.lora = self.lora.clone();
        Ok(config)
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// 1-based number of this step.
    pub step: usize,
    pub loss: f32,
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Trained target tokens in the batch.
    pub tokens: usize,
    pub tokens_per_sec: f64,
    /// Why the update was skipped or undone (a non-finite loss or gradient, a blown-up weight), if it was.
    pub skipped: Option<String>,
}

/// Trains a [`CausalLm`] on examples, one batch per [`SupervisedTrainer::step`].
pub struct SupervisedTrainer {
    model: CausalLm,
    config: ModelConfig,
    optim: ModuleOptimizer,
    settings: SupervisedConfig,
    examples: Vec<Example>,
    pad: u32,
    step: usize,
    device: Device,
    epoch_order: Option<(usize, Vec<usize>)>,
}

impl std::fmt::Debug for SupervisedTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisedTrainer").field("step", &self.step).field("examples", &self.examples.len()).finish()
    }
}

impl SupervisedTrainer {
    /// Starts training `model` (any device; autodiff is switched on here).
    pub fn new(
        model: CausalLm,
        config: ModelConfig,
        examples: Vec<Example>,
        pad: u32,
        settings: SupervisedConfig,
    ) -> Result<Self, TrainError> {
        if examples.is_empty() {
            return Err(TrainError::NoData);
        }
        if settings.batch_size == 0 {
            return Err(TrainError::Setting("batch size must be at least 1".into()));
        }
        if let Some(e) = examples.iter().find(|e| e.tokens.len() < 2 || e.tokens.len() > config.context_length() + 1) {
            return Err(TrainError::Setting(format!(
                "an example has {} tokens; examples need 2 to {} (context + 1)",
                e.tokens.len(),
                config.context_length() + 1
            )));
        }
        // Ids from another tokenizer than the model's (a resume on another model's folder) would
        // index past the embedding.
        let vocab = config.vocab_size();
        if let Some(id) = examples.iter().flat_map(|e| &e.tokens).find(|&&id| id as usize >= vocab) {
            return Err(TrainError::Setting(format!(
                "token id {id} is outside this model's vocabulary of {vocab}: the examples were tokenized for another model"
            )));
        }
        let device = model.device();
        crate::models::lora::check(settings.lora.as_ref())?;
        crate::memory::sizes::check_lora_rank(&config, settings.lora.as_ref())?;
        let longest = examples.iter().map(|e| e.tokens.len()).max().unwrap_or(0);
        crate::memory::sizes::check_training_step(&config, settings.batch_size, longest, "a training step")?;
        let model = crate::models::lora::trainable_lm(model, settings.lora.as_ref());
        let optim = AdamWSettings::with_weight_decay(settings.weight_decay).init();
        Ok(Self { model, config, optim, settings, examples, pad, step: 0, device, epoch_order: None })
    }

    /// Continues from a checkpoint made by [`SupervisedTrainer::checkpoint`]; `base` is the model
    /// the run started from (none: a model pretrained from scratch), on which a LoRA run's adapters
    /// are put back.
    pub fn resume(
        checkpoint: &TrainCheckpoint,
        base: Option<&CausalLm>,
        examples: Vec<Example>,
        pad: u32,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let state: SupervisedState = serde_json::from_str(&checkpoint.state_json).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        let lora = state.settings.lora.as_ref();
        let (config, model, optimizer_fits) = match base {
            Some(base) => crate::models::lora::resumed_policy(checkpoint, base, lora)?,
            None => {
                let weights = checkpoint.weights.as_ref().ok_or_else(|| {
                    TrainError::Checkpoint("a LoRA run's checkpoint holds its adapters only: resume it on the model it started from".into())
                })?;
                let (config, model) = tinyrlhf_model::load_lm(checkpoint.config_json.as_bytes(), weights, device)?;
                (config, model, lora.is_none())
            }
        };
        let mut trainer = Self::new(model, config, examples, pad, state.settings)?;
        if optimizer_fits {
            trainer.optim = optimizer_from_bytes(trainer.optim, &checkpoint.optimizer, &trainer.model)?;
        }
        trainer.step = state.step;
        Ok(trainer)
    }

    /// Ends the run at `steps` in all (a resumed run extended or cut short): the learning rate's
    /// decay is stretched or shortened to end there.
    pub fn set_total_steps(&mut self, steps: usize) {
        self.settings.schedule.total = steps;
    }

    pub fn settings(&self) -> &SupervisedConfig {
        &self.settings
    }

    /// The model as it stands, for inference (no autodiff).
    pub fn model(&self) -> CausalLm {
        self.model.valid()
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The examples of step `step`: consecutive slices of a per-epoch shuffle of all examples.
    fn batch_indices(&mut self, step: usize) -> Vec<usize> {
        crate::data::order::batch_indices(self.settings.seed, step, self.settings.batch_size, self.examples.len(), &mut self.epoch_order)
    }

    /// One optimisation step on the next batch.
    pub async fn step(&mut self) -> Result<StepStats, TrainError> {
        let start = Instant::now();
        let indices = self.batch_indices(self.step);
        let batch: Vec<&Example> = indices.iter().map(|&i| &self.examples[i]).collect();
        let batch = LmBatch::new(&batch, self.pad, &self.device);
        let lr = self.settings.schedule.at(self.step);
        self.step += 1;

        let hidden = self.model.forward(batch.inputs.clone(), batch.positions.clone(), None);
        let loss = next_token_loss(&self.model, hidden, &batch);
        let (numbers, outcome) = guarded_step(
            &mut self.model,
            &mut self.optim,
            lr,
            Some(loss.clone()),
            None,
            vec![loss.detach()],
            self.settings.max_grad_norm,
            &Alone,
        )
        .await?;
        let mut stats = StepStats {
            step: self.step,
            loss: numbers.first().and_then(|n| n.first()).copied().unwrap_or(f32::NAN),
            lr,
            grad_norm: f32::NAN,
            tokens: batch.target_tokens,
            tokens_per_sec: 0.0,
            skipped: None,
        };
        match outcome {
            Ok(norm) => stats.grad_norm = norm,
            Err(reason) => {
                stats.skipped = Some(reason);
                return Ok(stats);
            }
        }
        stats.tokens_per_sec = batch.target_tokens as f64 / start.elapsed().as_secs_f64();
        Ok(stats)
    }

    /// Mean loss per target token over `examples` (no update), in batches of the training size.
    pub async fn evaluate(&self, examples: &[Example]) -> Result<f32, TrainError> {
        let model = self.model.valid();
        let (mut total, mut count) = (0.0f64, 0usize);
        for chunk in examples.chunks(self.settings.batch_size.max(1)) {
            let refs: Vec<&Example> = chunk.iter().collect();
            let batch = LmBatch::new(&refs, self.pad, &self.device);
            let hidden = model.forward(batch.inputs.clone(), batch.positions.clone(), None);
            let loss = read(next_token_loss(&model, hidden, &batch)).await?;
            total += f64::from(loss) * batch.target_tokens as f64;
            count += batch.target_tokens;
        }
        Ok((total / count.max(1) as f64) as f32)
    }

    /// Everything needed to continue later: weights, optimizer state, step and settings.
    pub async fn checkpoint(&self) -> Result<TrainCheckpoint, TrainError> {
        let (weights, adapter) = crate::models::lora::policy_parts(&self.model.valid(), self.settings.lora.as_ref()).await?;
        let optimizer = optimizer_to_bytes(&self.optim).await?;
        let state = SupervisedState { step: self.step, settings: self.settings.clone() };
        Ok(TrainCheckpoint {
            config_json: self.config.to_json(),
            weights,
            optimizer,
            state_json: serde_json::to_string_pretty(&state).expect("state serialises"),
            value: None,
            adapter,
        })
    }
}

impl Trainer for SupervisedTrainer {
    type Stats = StepStats;

    fn step(&mut self) -> impl Future<Output = Result<StepStats, TrainError>> {
        SupervisedTrainer::step(self)
    }

    fn steps_done(&self) -> usize {
        self.step
    }

    /// The schedule's length: a resumed run extended or cut short ends where it now says.
    fn total_steps(&self) -> usize {
        self.settings.schedule.total
    }
}

impl StepReport for StepStats {
    fn step(&self) -> usize {
        self.step
    }

    fn setback(&self) -> Option<&str> {
        self.skipped.as_deref()
    }

    fn summary(&self) -> String {
        format!("loss {:.3} · lr {:.1e} · {:.0} tok/s", self.loss, self.lr, self.tokens_per_sec)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SupervisedState {
    step: usize,
    settings: SupervisedConfig,
}
