//! Training checkpoints as bytes, and the errors trainers report.
//!
//! A checkpoint is four parts: the model's `config.json` and `model.safetensors` (a loadable model
//! on their own), the optimizer state (burn's burnpack bytes, keyed by parameter ids that are
//! stable across save and load), and the trainer's own state as JSON (step, settings). Writing them
//! to disk, atomically, is the caller's business.

use tinyrlhf_model::CheckpointError;

/// A resumable snapshot of a trainer.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainCheckpoint {
    pub config_json: String,
    pub weights: Vec<u8>,
    pub optimizer: Vec<u8>,
    pub state_json: String,
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
    #[error("reading from the device failed: {0}")]
    Device(String),
}
