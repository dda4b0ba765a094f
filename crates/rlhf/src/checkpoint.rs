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

/// The parts of a checkpoint in one file, each under its name as a byte tensor.
const PARTS: [&str; 7] = ["config", "weights", "optimizer", "state", "value_weights", "value_optimizer", "adapter"];

impl TrainCheckpoint {
    /// The whole checkpoint as one safetensors file of byte tensors, one per part: what the page
    /// keeps in IndexedDB to continue a run after a reload (the CLI keeps the parts as files).
    pub fn to_bytes(&self) -> Result<Vec<u8>, TrainError> {
        let value = self.value.as_ref();
        let parts: [Option<&[u8]>; 7] = [
            Some(self.config_json.as_bytes()),
            self.weights.as_deref(),
            Some(&self.optimizer),
            Some(self.state_json.as_bytes()),
            value.map(|v| &v.weights[..]),
            value.map(|v| &v.optimizer[..]),
            self.adapter.as_deref(),
        ];
        let mut views = Vec::new();
        for (name, bytes) in PARTS.into_iter().zip(parts) {
            let Some(bytes) = bytes else { continue };
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![bytes.len()], bytes)
                .map_err(|e| TrainError::Checkpoint(format!("{name}: {e}")))?;
            views.push((name, view));
        }
        safetensors::serialize(views, None).map_err(|e| TrainError::Checkpoint(e.to_string()))
    }

    /// A checkpoint from [`Self::to_bytes`]; an error names the part that is missing or unreadable.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TrainError> {
        let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| TrainError::Checkpoint(format!("not a checkpoint: {e}")))?;
        let part = |name: &str| file.tensor(name).ok().map(|t| t.data().to_vec());
        let needed = |name: &str| part(name).ok_or_else(|| TrainError::Checkpoint(format!("the checkpoint has no {name}")));
        let text = |name: &str| {
            String::from_utf8(needed(name)?).map_err(|e| TrainError::Checkpoint(format!("the checkpoint's {name} is not UTF-8: {e}")))
        };
        let value = match (part("value_weights"), part("value_optimizer")) {
            (Some(weights), Some(optimizer)) => Some(ValueCheckpoint { weights, optimizer }),
            (None, None) => None,
            _ => return Err(TrainError::Checkpoint("the checkpoint has half a value model".into())),
        };
        Ok(Self {
            config_json: text("config")?,
            weights: part("weights"),
            optimizer: needed("optimizer")?,
            state_json: text("state")?,
            value,
            adapter: part("adapter"),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(value: bool, lora: bool) -> TrainCheckpoint {
        TrainCheckpoint {
            config_json: "{\"n_layer\": 2}".into(),
            weights: (!lora).then(|| vec![1, 2, 3]),
            optimizer: vec![4; 10],
            state_json: "{\"step\": 7}".into(),
            value: value.then(|| ValueCheckpoint { weights: vec![5, 6], optimizer: vec![] }),
            adapter: lora.then(|| vec![8, 9]),
        }
    }

    #[test]
    fn a_checkpoint_comes_back_whole_from_its_one_file() {
        for (value, lora) in [(false, false), (true, false), (false, true), (true, true)] {
            let saved = checkpoint(value, lora);
            assert_eq!(TrainCheckpoint::from_bytes(&saved.to_bytes().unwrap()).unwrap(), saved);
        }
    }

    #[test]
    fn a_file_that_is_not_a_checkpoint_is_refused_naming_what_is_missing() {
        let message = TrainCheckpoint::from_bytes(b"not safetensors").unwrap_err().to_string();
        assert!(message.contains("not a checkpoint"), "{message}");
        let empty = safetensors::serialize(Vec::<(&str, safetensors::tensor::TensorView)>::new(), None).unwrap();
        let message = TrainCheckpoint::from_bytes(&empty).unwrap_err().to_string();
        assert!(message.contains("has no config"), "{message}");
    }
}
