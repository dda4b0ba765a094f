//! Any method's policy trainer behind one interface, built in one place ([`PolicyTrainer::new`],
//! [`PolicyTrainer::resume`]) from a method's settings and what the run learns from, so each edge
//! has one loop that drives them all: the [`Trainer`] steps, `checkpoint` (one shape for every
//! method), `set_peers`, `set_beta`, the policy and its LoRA settings. A step of PPO, GRPO or RLOO
//! is a rollout iteration; a step of DPO is a batch of rankings.

use std::future::Future;
use std::rc::Rc;

use serde::Serialize;
use tinyrlhf_model::{CausalLm, LoraConfig, ModelConfig, ScalarModel};
use tinyrlhf_tokenizer::SpecialIds;

use crate::checkpoint::{TrainCheckpoint, TrainError};
use crate::data::examples::Example;
use crate::data::rankings::TokenRanking;
use crate::methods::dpo::{DpoConfig, DpoStepStats, DpoTrainer};
use crate::methods::group::{GroupConfig, GroupStats, GroupTrainer};
use crate::methods::method::{Method, with_changes};
use crate::methods::ppo::{PpoModels, PpoStats, PpoTrainer};
use crate::methods::ppo_config::PpoConfig;
use crate::parallel::peers::Peers;
use crate::stages::trainer::{StepReport, Trainer};

/// A method and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodSettings {
    Ppo(PpoConfig),
    /// GRPO or RLOO (the settings name which).
    Group(GroupConfig),
    Dpo(DpoConfig),
}

impl MethodSettings {
    /// `method`'s defaults with `changes` (a JSON object of the settings a person changed, or null)
    /// laid over them, checked.
    pub fn with_changes(method: Method, changes: &serde_json::Value) -> Result<Self, TrainError> {
        let settings = match method {
            Method::Ppo => Self::Ppo(with_changes(PpoConfig::default(), changes, "PPO")?),
            Method::Grpo | Method::Rloo => Self::Group(method.group_config(changes)?),
            Method::Dpo => Self::Dpo(with_changes(DpoConfig::default(), changes, "DPO")?),
        };
        settings.validate()?;
        Ok(settings)
    }

    pub fn method(&self) -> Method {
        match self {
            Self::Ppo(_) => Method::Ppo,
            Self::Group(s) => s.method.into(),
            Self::Dpo(_) => Method::Dpo,
        }
    }

    /// Refuses settings that make a run meaningless, naming the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        match self {
            Self::Ppo(s) => s.validate(),
            Self::Group(s) => s.validate(),
            Self::Dpo(s) => s.validate(),
        }
    }

    /// The settings a resumed run takes from these rather than from its checkpoint (a changed
    /// other one is refused by the edge that can tell: the CLI's run record).
    pub const APPLIED_ON_RESUME: [&str; 1] = ["iterations"];

    /// Iterations in all, for the sampling methods (DPO's length is its epochs).
    pub fn iterations(&self) -> Option<usize> {
        match self {
            Self::Ppo(s) => Some(s.iterations),
            Self::Group(s) => Some(s.iterations),
            Self::Dpo(_) => None,
        }
    }

    /// Answer tokens a rollout may sample (none for DPO, which samples nothing).
    pub fn max_new_tokens(&self) -> Option<usize> {
        match self {
            Self::Ppo(s) => Some(s.max_new_tokens),
            Self::Group(s) => Some(s.max_new_tokens),
            Self::Dpo(_) => None,
        }
    }
}

/// What a policy run starts from and learns from; each method takes what it needs and refuses a
/// run without it.
#[derive(Debug, Clone)]
pub struct PolicyInputs {
    /// The SFT model: the frozen reference, and the policy's start unless `policy` is given.
    pub sft: CausalLm,
    pub config: ModelConfig,
    /// A policy to continue tuning (the tab's earlier run of this method).
    pub policy: Option<CausalLm>,
    /// PPO, GRPO and RLOO optimise its score.
    pub reward: Option<ScalarModel>,
    /// Chat-template prompt ids to sample answers to (PPO, GRPO, RLOO).
    pub prompts: Vec<Vec<u32>>,
    /// Demonstrations for PPO-ptx.
    pub demonstrations: Vec<Example>,
    /// The rankings DPO learns from, and those it is measured on.
    pub rankings: Vec<TokenRanking>,
    pub held_out: Vec<TokenRanking>,
    pub special: SpecialIds,
}

impl PolicyInputs {
    /// Inputs with only the models and token ids set; a method's own data is added by field.
    pub fn new(sft: CausalLm, config: ModelConfig, special: SpecialIds) -> Self {
        Self {
            sft,
            config,
            policy: None,
            reward: None,
            prompts: vec![],
            demonstrations: vec![],
            rankings: vec![],
            held_out: vec![],
            special,
        }
    }

    fn reward(&self, method: Method) -> Result<ScalarModel, TrainError> {
        self.reward.clone().ok_or_else(|| TrainError::Setting(format!("{method} needs a reward model: train one first")))
    }
}

/// A policy run of one method.
pub enum PolicyTrainer {
    Ppo(Box<PpoTrainer>),
    Group(Box<GroupTrainer>),
    Dpo(Box<DpoTrainer>),
}

impl std::fmt::Debug for PolicyTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PolicyTrainer({}, step {}/{})", self.method().name(), self.steps_done(), self.total_steps())
    }
}

/// What one step did, as its method reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PolicyStats {
    Ppo(PpoStats),
    Group(GroupStats),
    Dpo(DpoStepStats),
}

impl StepReport for PolicyStats {
    /// The step (iteration) this was, counted from 1.
    fn step(&self) -> usize {
        match self {
            Self::Ppo(s) => s.iteration,
            Self::Group(s) => s.iteration,
            Self::Dpo(s) => s.step,
        }
    }

    /// Why the step kept the last good policy instead of updating, if it did.
    fn setback(&self) -> Option<&str> {
        match self {
            Self::Ppo(s) => s.restored.as_deref(),
            Self::Group(s) => s.restored.as_deref(),
            Self::Dpo(s) => s.skipped.as_deref(),
        }
    }

    /// A one-line summary for a progress bar.
    fn summary(&self) -> String {
        match self {
            Self::Ppo(s) => {
                format!("score {:+.2} · KL {:.2} · EOS {:.0}% · {:.1} tokens", s.score, s.kl, 100.0 * s.eos_rate, s.mean_length)
            }
            Self::Group(s) => {
                format!("score {:+.2} · KL {:.2} · EOS {:.0}% · {:.1} tokens", s.score, s.kl, 100.0 * s.eos_rate, s.mean_length)
            }
            Self::Dpo(s) => format!(
                "epoch {} · loss {:.3} · margin {:+.2} · accuracy {:.0}%",
                s.epoch,
                s.loss,
                s.metrics.rewards_margins,
                100.0 * s.metrics.rewards_accuracies
            ),
        }
    }

    fn held_out(&self) -> Option<String> {
        let Self::Dpo(s) = self else { return None };
        let h = s.held_out?;
        Some(format!(
            "epoch {}: held-out implicit-reward accuracy {:.1}% ({} pairs), margin {:+.3}, loss {:.3}",
            s.epoch,
            100.0 * h.accuracy,
            h.pairs,
            h.margin,
            h.loss
        ))
    }
}

impl PolicyStats {
    /// The first rollout's prompt and answer ids, for showing (the sampling methods).
    pub fn sample(&self) -> Option<(&[u32], &[u32])> {
        match self {
            Self::Ppo(s) => Some((&s.sample_prompt, &s.sample_response)),
            Self::Group(s) => Some((&s.sample_prompt, &s.sample_response)),
            Self::Dpo(_) => None,
        }
    }
}

impl PolicyTrainer {
    /// A fresh run of the method `settings` name.
    pub async fn new(settings: MethodSettings, inputs: PolicyInputs) -> Result<Self, TrainError> {
        let method = settings.method();
        let SpecialIds { eos, pad } = inputs.special;
        Ok(match settings {
            MethodSettings::Ppo(settings) => {
                let models = PpoModels {
                    reward: inputs.reward(method)?,
                    sft: inputs.sft,
                    config: inputs.config,
                    value: None,
                    policy: inputs.policy,
                };
                Self::Ppo(Box::new(PpoTrainer::new(models, inputs.prompts, inputs.demonstrations, eos, pad, settings)?))
            }
            MethodSettings::Group(settings) => {
                let reward = inputs.reward(method)?;
                let trainer = GroupTrainer::new(inputs.sft, inputs.policy, inputs.config, reward, inputs.prompts, eos, pad, settings)?;
                Self::Group(Box::new(trainer))
            }
            MethodSettings::Dpo(settings) => {
                let policy = inputs.policy.unwrap_or_else(|| inputs.sft.clone());
                let trainer =
                    DpoTrainer::with_policy(policy, &inputs.sft, inputs.config, inputs.rankings, inputs.held_out, pad, settings).await?;
                Self::Dpo(Box::new(trainer))
            }
        })
    }

    /// A run of `settings`' method continued from its checkpoint, with the checkpoint's settings
    /// but those of [`MethodSettings::APPLIED_ON_RESUME`] (how many iterations it runs in all).
    /// `inputs.policy` is not used: the checkpoint holds the policy.
    pub async fn resume(settings: &MethodSettings, checkpoint: &TrainCheckpoint, inputs: PolicyInputs) -> Result<Self, TrainError> {
        let SpecialIds { eos, pad } = inputs.special;
        let method = settings.method();
        let mut run = match method {
            Method::Ppo => {
                let models =
                    PpoModels { reward: inputs.reward(method)?, sft: inputs.sft, config: inputs.config, value: None, policy: None };
                Self::Ppo(Box::new(PpoTrainer::resume(models, checkpoint, inputs.prompts, inputs.demonstrations, eos, pad)?))
            }
            Method::Grpo | Method::Rloo => {
                let reward = inputs.reward(method)?;
                Self::Group(Box::new(GroupTrainer::resume(checkpoint, inputs.sft, reward, inputs.prompts, eos, pad)?))
            }
            Method::Dpo => Self::Dpo(Box::new(DpoTrainer::resume(checkpoint, &inputs.sft, inputs.rankings, inputs.held_out, pad).await?)),
        };
        if let Some(iterations) = settings.iterations() {
            run.set_iterations(iterations);
        }
        Ok(run)
    }

    pub fn method(&self) -> Method {
        match self {
            Self::Ppo(_) => Method::Ppo,
            Self::Group(t) => t.settings().method.into(),
            Self::Dpo(_) => Method::Dpo,
        }
    }

    /// Runs a sampling method to `iterations` in all (a resumed run extended, said so by the edge);
    /// DPO's length is its epochs and stays.
    pub fn set_iterations(&mut self, iterations: usize) {
        match self {
            Self::Ppo(t) => t.set_iterations(iterations),
            Self::Group(t) => t.set_iterations(iterations),
            Self::Dpo(_) => {}
        }
    }

    pub async fn checkpoint(&self) -> Result<TrainCheckpoint, TrainError> {
        match self {
            Self::Ppo(t) => t.checkpoint().await,
            Self::Group(t) => t.checkpoint().await,
            Self::Dpo(t) => t.checkpoint().await,
        }
    }

    /// Trains together with `peers` (the other workers' copies of this run).
    pub fn set_peers(&mut self, peers: Rc<dyn Peers>) {
        match self {
            Self::Ppo(t) => t.set_peers(peers),
            Self::Group(t) => t.set_peers(peers),
            Self::Dpo(t) => t.set_peers(peers),
        }
    }

    /// The KL leash (DPO: its beta), moved between steps.
    pub fn set_beta(&mut self, beta: f64) -> Result<(), TrainError> {
        match self {
            Self::Ppo(t) => t.set_beta(beta),
            Self::Group(t) => t.set_beta(beta),
            Self::Dpo(t) => t.set_beta(beta),
        }
    }

    pub fn policy(&self) -> CausalLm {
        match self {
            Self::Ppo(t) => t.policy(),
            Self::Group(t) => t.policy(),
            Self::Dpo(t) => t.policy(),
        }
    }

    pub fn lora(&self) -> Option<&LoraConfig> {
        match self {
            Self::Ppo(t) => t.settings().train.lora.as_ref(),
            Self::Group(t) => t.settings().train.lora.as_ref(),
            Self::Dpo(t) => t.settings().train.lora.as_ref(),
        }
    }

    /// The run's settings as JSON (for a manifest).
    pub fn settings_json(&self) -> serde_json::Value {
        let json = |v: Result<serde_json::Value, serde_json::Error>| v.expect("settings serialise");
        match self {
            Self::Ppo(t) => json(serde_json::to_value(t.settings())),
            Self::Group(t) => json(serde_json::to_value(t.settings())),
            Self::Dpo(t) => json(serde_json::to_value(t.settings())),
        }
    }

    /// PPO's own trainer (its value model explains answers token by token).
    pub fn ppo(&self) -> Option<&PpoTrainer> {
        match self {
            Self::Ppo(t) => Some(t),
            _ => None,
        }
    }
}

impl Trainer for PolicyTrainer {
    type Stats = PolicyStats;

    #[allow(clippy::manual_async_fn)] // a trait's `impl Future` is spelled this way
    fn step(&mut self) -> impl Future<Output = Result<PolicyStats, TrainError>> {
        async move {
            Ok(match self {
                Self::Ppo(t) => PolicyStats::Ppo(t.step().await?),
                Self::Group(t) => PolicyStats::Group(t.step().await?),
                Self::Dpo(t) => PolicyStats::Dpo(t.step().await?),
            })
        }
    }

    fn steps_done(&self) -> usize {
        match self {
            Self::Ppo(t) => t.iterations_done(),
            Self::Group(t) => t.iterations_done(),
            Self::Dpo(t) => t.steps_done(),
        }
    }

    /// Iterations for the sampling methods (their `iterations` setting), batches for DPO.
    fn total_steps(&self) -> usize {
        match self {
            Self::Ppo(t) => t.settings().iterations,
            Self::Group(t) => t.settings().iterations,
            Self::Dpo(t) => t.total_steps(),
        }
    }
}
