//! Training checkpoints as bytes, and the errors trainers report.
//!
//! One shape for every trainer: the model's `config.json` and, for a run that trains every weight,
//! its `model.safetensors` (a loadable model on their own); a LoRA run keeps its adapters instead,
//! never a copy of the frozen base it started from (an input of the run). Then the optimizer state (burn's burnpack bytes, keyed by parameter ids that are
//! stable across save and load), the trainer's own state as JSON (step, settings), and for PPO the
//! value model it trains beside the policy (weights and optimizer). Writing them to disk,
//! atomically, is the caller's business.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Bytes, DType, Tensor};
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

/// The files a checkpoint is kept as: the CLI's `checkpoint/` folder, the tab's saved run.
impl TrainCheckpoint {
    const CONFIG: &str = "config.json";
    const OPTIMIZER: &str = "optimizer.bpk";
    /// Last of the files: where they are written one by one, its presence marks a complete checkpoint.
    pub const TRAINER: &str = "trainer.json";
    const WEIGHTS: &str = "model.safetensors";
    const ADAPTER: &str = "adapter.safetensors";
    const VALUE: [&str; 2] = ["value.safetensors", "value_optimizer.bpk"];

    /// Its parts as named files, `trainer.json` last.
    pub fn files(&self) -> Vec<(&'static str, &[u8])> {
        let mut files: Vec<(&str, &[u8])> = vec![];
        if let Some(value) = &self.value {
            files.extend(Self::VALUE.into_iter().zip([&value.weights[..], &value.optimizer[..]]));
        }
        files.extend(self.adapter.as_deref().map(|adapter| (Self::ADAPTER, adapter)));
        files.extend(self.weights.as_deref().map(|weights| (Self::WEIGHTS, weights)));
        files.push((Self::CONFIG, self.config_json.as_bytes()));
        files.push((Self::OPTIMIZER, &self.optimizer));
        files.push((Self::TRAINER, self.state_json.as_bytes()));
        files
    }

    /// Every name [`files`](Self::files) may give.
    pub const NAMES: [&str; 7] =
        [Self::CONFIG, Self::OPTIMIZER, Self::TRAINER, Self::WEIGHTS, Self::ADAPTER, Self::VALUE[0], Self::VALUE[1]];

    /// A checkpoint from the files [`files`](Self::files) gave: `file(name)` hands one's bytes
    /// over, `None` for one that was not kept. A part every checkpoint has, or half of the value
    /// model, missing is refused naming the file, as is text that is not UTF-8.
    pub fn from_files(mut file: impl FnMut(&str) -> Option<Vec<u8>>) -> Result<Self, TrainError> {
        let mut needed = |name: &str| file(name).ok_or_else(|| TrainError::Checkpoint(format!("it has no {name}")));
        let text = |name: &str, bytes: Vec<u8>| {
            String::from_utf8(bytes).map_err(|e| TrainError::Checkpoint(format!("{name} is not UTF-8 text: {e}")))
        };
        let config_json = text(Self::CONFIG, needed(Self::CONFIG)?)?;
        let optimizer = needed(Self::OPTIMIZER)?;
        let state_json = text(Self::TRAINER, needed(Self::TRAINER)?)?;
        let [value_weights, value_optimizer] = Self::VALUE.map(&mut file);
        let value = match (value_weights, value_optimizer) {
            (Some(weights), Some(optimizer)) => Some(ValueCheckpoint { weights, optimizer }),
            (None, None) => None,
            (Some(_), None) => return Err(TrainError::Checkpoint(format!("it has {} but no {}", Self::VALUE[0], Self::VALUE[1]))),
            (None, Some(_)) => return Err(TrainError::Checkpoint(format!("it has {} but no {}", Self::VALUE[1], Self::VALUE[0]))),
        };
        Ok(Self { config_json, weights: file(Self::WEIGHTS), optimizer, state_json, value, adapter: file(Self::ADAPTER) })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("there is nothing to train on")]
    NoData,
    /// Data given that cannot be trained on: what it is and why.
    #[error("{0}")]
    Unusable(String),
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

/// An optimizer's state (Adam's moments, keyed by the stable parameter ids) as bytes; moments on
/// a GPU are read back first (burn's own reads there are synchronous, which WebGPU forbids).
pub async fn optimizer_to_bytes(optimizer: &burn::optim::ModuleOptimizer) -> Result<Vec<u8>, TrainError> {
    tinyrlhf_model::read_moments_back().await.map_err(|e| TrainError::Checkpoint(format!("optimizer state: {e}")))?;
    optimizer.into_bytes().map(|b| b.to_vec()).map_err(|e| TrainError::Checkpoint(format!("optimizer state: {e:?}")))
}

/// `optimizer` with the state saved by [`optimizer_to_bytes`] for `module`'s parameters.
///
/// The state is checked against `module` first: burn reads an optimizer record on trust (a tensor
/// without a parameter id panics in the load, a moment of another shape in the next step), and in
/// wasm a panic kills the tab.
pub fn optimizer_from_bytes<M: Module>(
    optimizer: burn::optim::ModuleOptimizer,
    bytes: &[u8],
    module: &M,
) -> Result<burn::optim::ModuleOptimizer, TrainError> {
    // Shared, so the check's reader and burn's read one copy.
    let bytes = Bytes::from_bytes_vec(bytes.to_vec()).shared();
    check_optimizer_state(bytes.clone(), &parameter_shapes(module)).map_err(|e| TrainError::Checkpoint(format!("optimizer state: {e}")))?;
    optimizer.from_bytes(bytes).map_err(|e| TrainError::Checkpoint(format!("optimizer state: {e:?}")))
}

/// Every parameter's shape, by its id.
fn parameter_shapes<M: Module>(module: &M) -> BTreeMap<u64, Vec<usize>> {
    struct Shapes(BTreeMap<u64, Vec<usize>>);
    impl ModuleVisitor for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.insert(param.id.val(), param.shape().to_vec());
        }
    }
    let mut shapes = Shapes(BTreeMap::new());
    module.visit(&mut shapes);
    shapes.0
}

/// Whether a burnpack optimizer record fits parameters of these `shapes`: every tensor an f32 state
/// of a known parameter (`{id}.{field}`) with that parameter's shape, every recorded rank its rank.
fn check_optimizer_state(bytes: Bytes, shapes: &BTreeMap<u64, Vec<usize>>) -> Result<(), String> {
    let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| format!("{e:?}"))?;
    for (name, value) in reader.scalars() {
        let Some(id) = name.strip_suffix(".__rank") else { continue };
        let shape =
            id.parse::<u64>().ok().and_then(|id| shapes.get(&id)).ok_or_else(|| format!("`{name}` is for no parameter of this model"))?;
        if usize::try_from(*value).ok() != Some(shape.len()) {
            return Err(format!("`{name}` is {value:?}, the parameter's rank is {}", shape.len()));
        }
    }
    for tensor in reader.into_tensors().map_err(|e| format!("{e:?}"))? {
        let name = &tensor.name;
        let id = tensor.param_id.ok_or_else(|| format!("`{name}` names no parameter"))?;
        let shape = shapes.get(&id).ok_or_else(|| format!("`{name}` is for parameter {id}, which this model does not have"))?;
        if !name.starts_with(&format!("{id}.")) {
            return Err(format!("`{name}` is recorded for parameter {id}"));
        }
        if tensor.dtype != DType::F32 || tensor.shape.as_slice() != shape.as_slice() {
            return Err(format!("`{name}` is {:?} {:?}, its parameter {:?}", tensor.dtype, tensor.shape.as_slice(), shape));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::Device;
    use tinyrlhf_model::AdamWSettings;

    use super::*;

    /// A linear layer after one AdamW step, and the optimizer's state as bytes.
    fn stepped() -> (Linear, Vec<u8>) {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(3, 2).init(&device);
        let loss = layer.forward(Tensor::<2>::ones([4, 3], &device)).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        let mut optim = AdamWSettings::with_weight_decay(0.0).init();
        let layer = optim.step(1e-3, layer, grads);
        (layer, pollster::block_on(optimizer_to_bytes(&optim)).unwrap())
    }

    /// `bytes` rewritten with `edit` applied to its tensors and scalars.
    fn rewritten(bytes: &[u8], edit: impl Fn(&mut Vec<burn_pack::Tensor>, &mut BTreeMap<String, burn_pack::Scalar>)) -> Vec<u8> {
        let reader = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).unwrap();
        let (mut scalars, paths) = (reader.scalars().clone(), reader.metadata().clone());
        let mut tensors = reader.into_tensors().unwrap();
        edit(&mut tensors, &mut scalars);
        let mut writer = burn_pack::Writer::new(tensors);
        for (key, value) in &scalars {
            writer = writer.with_scalar(key, *value);
        }
        for (key, value) in &paths {
            writer = writer.with_metadata(key, value);
        }
        writer.into_bytes().unwrap().to_vec()
    }

    type Contents = (BTreeMap<String, (Option<u64>, Vec<usize>, Vec<u8>)>, BTreeMap<String, burn_pack::Scalar>);

    fn contents(bytes: &[u8]) -> Contents {
        let reader = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).unwrap();
        let scalars = reader.scalars().clone();
        let tensors = reader.into_tensors().unwrap().into_iter().map(|t| {
            let (name, _, shape, id, data) = t.into_parts().unwrap();
            (name, (id, shape.to_vec(), data.to_vec()))
        });
        (tensors.collect(), scalars)
    }

    fn refusal(layer: &Linear, bytes: &[u8]) -> String {
        match optimizer_from_bytes(AdamWSettings::with_weight_decay(0.0).init(), bytes, layer) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("the optimizer state was accepted"),
        }
    }

    fn checkpoint(value: bool) -> TrainCheckpoint {
        TrainCheckpoint {
            config_json: "{}".into(),
            weights: Some(vec![1, 2]),
            optimizer: vec![3],
            state_json: "{\"step\": 2}".into(),
            value: value.then(|| ValueCheckpoint { weights: vec![4], optimizer: vec![5, 6] }),
            adapter: Some(vec![7]),
        }
    }

    fn from(files: &[(&str, &[u8])]) -> Result<TrainCheckpoint, TrainError> {
        let mut files: BTreeMap<String, Vec<u8>> = files.iter().map(|(name, bytes)| (name.to_string(), bytes.to_vec())).collect();
        TrainCheckpoint::from_files(|name| files.remove(name))
    }

    #[test]
    fn a_checkpoint_comes_back_from_its_files_with_trainer_json_written_last() {
        for value in [false, true] {
            let saved = checkpoint(value);
            let files = saved.files();
            assert_eq!(files.last().unwrap().0, TrainCheckpoint::TRAINER);
            assert!(files.iter().all(|(name, _)| TrainCheckpoint::NAMES.contains(name)));
            assert_eq!(from(&files).unwrap(), saved);
        }
        let bare = TrainCheckpoint { weights: None, adapter: None, ..checkpoint(false) };
        assert_eq!(from(&bare.files()).unwrap(), bare);
    }

    #[test]
    fn a_checkpoint_missing_a_file_or_half_its_value_model_is_refused_naming_the_file() {
        let saved = checkpoint(true);
        for missing in ["config.json", "optimizer.bpk", "trainer.json", "value.safetensors", "value_optimizer.bpk"] {
            let files: Vec<_> = saved.files().into_iter().filter(|(name, _)| *name != missing).collect();
            let message = from(&files).unwrap_err().to_string();
            assert!(message.contains(missing), "{missing}: {message}");
        }
        let files: Vec<_> =
            saved.files().into_iter().map(|(name, bytes)| (name, if name == "trainer.json" { &[0xff][..] } else { bytes })).collect();
        assert!(from(&files).unwrap_err().to_string().contains("trainer.json is not UTF-8"));
    }

    #[test]
    fn an_optimizer_state_saved_for_a_model_loads_back_onto_it() {
        let (layer, bytes) = stepped();
        let optim = optimizer_from_bytes(AdamWSettings::with_weight_decay(0.0).init(), &bytes, &layer).unwrap();
        // The same tensors and scalars (their order in the bytes follows a hash map's).
        assert_eq!(contents(&pollster::block_on(optimizer_to_bytes(&optim)).unwrap()), contents(&bytes));
    }

    #[test]
    fn an_optimizer_tensor_without_a_parameter_is_refused_naming_it() {
        // burn's own load panics on this one ("should carry a parameter id"), killing a wasm tab.
        let (layer, bytes) = stepped();
        let bytes = rewritten(&bytes, |tensors, _| tensors[0].param_id = None);
        let message = refusal(&layer, &bytes);
        assert!(message.contains("names no parameter"), "{message}");
    }

    #[test]
    fn an_optimizer_moment_of_another_shape_is_refused_naming_it() {
        let (layer, bytes) = stepped();
        let bytes = rewritten(&bytes, |tensors, _| {
            let weight = tensors.iter().position(|t| t.shape.len() == 2).unwrap();
            let (name, _, _, id, data) = tensors.remove(weight).into_parts().unwrap();
            tensors.push(burn_pack::Tensor::new(name, DType::F32, [data.len() / 4], id, data));
        });
        let message = refusal(&layer, &bytes);
        assert!(message.contains("its parameter"), "{message}");
    }

    #[test]
    fn an_optimizer_state_for_another_model_or_rank_is_refused() {
        let (layer, bytes) = stepped();
        let other = rewritten(&bytes, |tensors, _| tensors.iter_mut().for_each(|t| t.param_id = t.param_id.map(|id| id ^ 1)));
        assert!(refusal(&layer, &other).contains("which this model does not have"));
        let ranks = rewritten(&bytes, |_, scalars| {
            scalars.iter_mut().filter(|(name, _)| name.ends_with(".__rank")).for_each(|(_, rank)| *rank = burn_pack::Scalar::UInt(3));
        });
        assert!(refusal(&layer, &ranks).contains("the parameter's rank"));
    }
}
