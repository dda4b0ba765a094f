//! Training checkpoints as bytes, and the errors trainers report.
//!
//! One shape for every trainer: the model's `config.json` and, for a run that trains every weight,
//! its `model.safetensors` (a loadable model on their own); a LoRA run keeps its adapters instead,
//! never a copy of the frozen base it started from (an input of the run). Then the optimizer state (burn's burnpack bytes, keyed by parameter ids that are
//! stable across save and load), the trainer's own state as JSON (step, settings), and for PPO the
//! value model it trains beside the policy (weights and optimizer). Writing them to disk,
//! atomically, is the caller's business.

use tinyrlhf_model::CheckpointError;

/// A resumable snapshot of a trainer.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainCheckpoint {
    pub config_json: String,
    /// Every weight of the policy, for a run that trains every weight; `None` for a LoRA run,
    /// whose policy is the base it started from with `adapter` on it.
    pub weights: Option<Vec<u8>>,
    pub optimizer: Vec<u8>,
    pub state_json: String,
    /// A second model trained alongside (PPO's value model), if the method has one.
    pub value: Option<ValueCheckpoint>,
    /// A LoRA run's policy adapters (PEFT's `adapter_model.safetensors`): a resumed run continues
    /// from the base it started on with these.
    pub adapter: Option<Vec<u8>>,
}

/// The value model's part of a PPO checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueCheckpoint {
    /// Every weight of the value model; with LoRA, only its adapters and score head
    /// ([`tinyrlhf_model::save_scalar_adapter`]: the reward model it started from is the rest).
    pub weights: Vec<u8>,
    pub optimizer: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("there is nothing to train on")]
    NoData,
    #[error("invalid training setting: {0}")]
    Setting(String),
    #[error(transparent)]
    Model(#[from] CheckpointError),
    #[error("checkpoint cannot be resumed: {0}")]
    Checkpoint(String),
    #[error("{0}")]
    Incompatible(String),
    #[error("reading from the device failed: {0} (a GPU may have been lost or run out of memory; the CPU backend computes the same)")]
    Device(String),
    #[error("sampling failed: {0}")]
    Sampling(String),
    /// An exchange with the other copies of the trainer failed (one stopped); see `peers`.
    #[error("training across workers failed: {0}")]
    Peers(String),
}

/// An optimizer's state (Adam's moments, keyed by the stable parameter ids) as bytes.
pub fn optimizer_to_bytes(optimizer: &burn::optim::ModuleOptimizer) -> Result<Vec<u8>, TrainError> {
    optimizer.into_bytes().map(|b| b.to_vec()).map_err(|e| TrainError::Checkpoint(format!("optimizer state: {e:?}")))
}

/// `optimizer` with the state saved by [`optimizer_to_bytes`].
pub fn optimizer_from_bytes(optimizer: burn::optim::ModuleOptimizer, bytes: &[u8]) -> Result<burn::optim::ModuleOptimizer, TrainError> {
    optimizer
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| TrainError::Checkpoint(format!("optimizer state: {e:?}")))
}
