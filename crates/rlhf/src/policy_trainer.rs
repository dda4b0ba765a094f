//! Any method's policy trainer behind one interface, so each edge has one loop that drives them all:
//! `step`, `steps_done` / `total_steps` / `is_done`, `checkpoint` (one shape for every method),
//! `set_peers`, `set_beta`, the policy and its LoRA settings. A step of PPO, GRPO or RLOO is a
//! rollout iteration; a step of DPO is a batch of rankings.

use std::rc::Rc;

use serde::Serialize;
use tinyrlhf_model::{CausalLm, LoraConfig};

use crate::checkpoint::{TrainCheckpoint, TrainError};
use crate::dpo::{DpoStepStats, DpoTrainer};
use crate::group::{GroupMethod, GroupStats, GroupTrainer};
use crate::method::Method;
use crate::peers::Peers;
use crate::ppo::{PpoStats, PpoTrainer};

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

impl PolicyStats {
    /// The step (iteration) this was, counted from 1.
    pub fn step(&self) -> usize {
        match self {
            Self::Ppo(s) => s.iteration,
            Self::Group(s) => s.iteration,
            Self::Dpo(s) => s.step,
        }
    }

    /// Why the step kept the last good policy instead of updating, if it did.
    pub fn setback(&self) -> Option<&str> {
        match self {
            Self::Ppo(s) => s.restored.as_deref(),
            Self::Group(s) => s.restored.as_deref(),
            Self::Dpo(s) => s.skipped.as_deref(),
        }
    }

    /// The first rollout's prompt and answer ids, for showing (the sampling methods).
    pub fn sample(&self) -> Option<(&[u32], &[u32])> {
        match self {
            Self::Ppo(s) => Some((&s.sample_prompt, &s.sample_response)),
            Self::Group(s) => Some((&s.sample_prompt, &s.sample_response)),
            Self::Dpo(_) => None,
        }
    }

    /// A one-line summary for a progress bar.
    pub fn summary(&self) -> String {
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
}

impl PolicyTrainer {
    pub fn method(&self) -> Method {
        match self {
            Self::Ppo(_) => Method::Ppo,
            Self::Group(t) if t.settings().method == GroupMethod::Rloo => Method::Rloo,
            Self::Group(_) => Method::Grpo,
            Self::Dpo(_) => Method::Dpo,
        }
    }

    pub async fn step(&mut self) -> Result<PolicyStats, TrainError> {
        Ok(match self {
            Self::Ppo(t) => PolicyStats::Ppo(t.step().await?),
            Self::Group(t) => PolicyStats::Group(t.step().await?),
            Self::Dpo(t) => PolicyStats::Dpo(t.step().await?),
        })
    }

    pub fn steps_done(&self) -> usize {
        match self {
            Self::Ppo(t) => t.iterations_done(),
            Self::Group(t) => t.iterations_done(),
            Self::Dpo(t) => t.steps_done(),
        }
    }

    /// Iterations for the sampling methods (their `iterations` setting), batches for DPO.
    pub fn total_steps(&self) -> usize {
        match self {
            Self::Ppo(t) => t.settings().iterations,
            Self::Group(t) => t.settings().iterations,
            Self::Dpo(t) => t.total_steps(),
        }
    }

    pub fn is_done(&self) -> bool {
        self.steps_done() >= self.total_steps()
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
            Self::Ppo(t) => t.settings().lora.as_ref(),
            Self::Group(t) => t.settings().lora.as_ref(),
            Self::Dpo(t) => t.settings().lora.as_ref(),
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
