//! A model's identity: a 128-bit hash of its tensors as its file stores them (each tensor's name,
//! type, shape and bytes, in name order). Two files of one model agree whatever the order of their
//! tensors; a file whose weights differ anywhere (another checkpoint of the same config, two
//! blocks' tensors swapped) does not. It is taken as the tensors stream in, so a base is read once,
//! with XXH3-128: what it guards against is a wrong base given by mistake, not a forged one, and a
//! cryptographic hash would add seconds to every load of a large base in the tab.
//!
//! An adapter records the identity of the base it was trained on in its safetensors metadata
//! (`tinyrlhf.base`, beside PEFT's own `format`), where PEFT and llama.cpp ignore it and it travels
//! with the weights it describes; a model that is a base with an adapter on it has an identity of
//! its own ([`adapted_identity`]), so adapters may stand on adapters.

use std::collections::BTreeMap;

use safetensors::SafeTensors;
use xxhash_rust::xxh3::Xxh3;

use crate::checkpoint::{CheckpointError, IGNORED_SUFFIXES};

/// The safetensors metadata key under which an adapter names its base's identity.
pub const BASE_KEY: &str = "tinyrlhf.base";

/// Tensors' digests by name, gathered in any order.
#[derive(Debug, Default, Clone)]
pub struct ContentDigest {
    tensors: BTreeMap<String, u128>,
}

impl ContentDigest {
    /// Takes one tensor: `dtype` as its file names it (`F32`, `BF16`, `Q4_K`...).
    pub fn add(&mut self, name: &str, dtype: &str, shape: &[usize], bytes: &[u8]) {
        let mut hasher = Xxh3::new();
        hasher.update(dtype.as_bytes());
        hasher.update(&[0]);
        for &dim in shape {
            hasher.update(&(dim as u64).to_le_bytes());
        }
        hasher.update(bytes);
        self.tensors.insert(name.to_owned(), hasher.digest128());
    }

    /// `xxh3-128:` and the hex digest of every tensor taken, by name.
    pub fn identity(&self) -> String {
        let mut hasher = Xxh3::new();
        for (name, digest) in &self.tensors {
            hasher.update(&(name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update(&digest.to_le_bytes());
        }
        format!("{PREFIX}{:032x}", hasher.digest128())
    }
}

/// The identity of the model a safetensors file holds (its metadata, and the buffers loading
/// lets go, aside): what loading the file gives [`crate::Weights::identity`].
pub fn safetensors_identity(bytes: &[u8]) -> Result<String, CheckpointError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Format(e.to_string()))?;
    let mut digest = ContentDigest::default();
    for (name, view) in file.tensors() {
        if IGNORED_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            continue;
        }
        digest.add(&name, &format!("{:?}", view.dtype()), view.shape(), view.data());
    }
    Ok(digest.identity())
}

/// The identity of `base` with the adapter `adapter_safetensors` on it.
pub fn adapted_identity(base: &str, adapter_safetensors: &[u8]) -> Result<String, CheckpointError> {
    let adapter = safetensors_identity(adapter_safetensors)?;
    let mut hasher = Xxh3::new();
    hasher.update(base.as_bytes());
    hasher.update(&[0]);
    hasher.update(adapter.as_bytes());
    Ok(format!("{PREFIX}{:032x}", hasher.digest128()))
}

/// The base identity an adapter's safetensors records, if it records one (PEFT's own adapters
/// and those of older tinyrlhf do not).
pub fn recorded_base(adapter_safetensors: &[u8]) -> Result<Option<String>, CheckpointError> {
    let (_, metadata) = SafeTensors::read_metadata(adapter_safetensors).map_err(|e| CheckpointError::Format(e.to_string()))?;
    Ok(metadata.metadata().as_ref().and_then(|m| m.get(BASE_KEY)).cloned())
}

/// `adapter_safetensors` with `base` recorded as the identity of the base it was trained on.
pub fn with_recorded_base(adapter_safetensors: &[u8], base: &str) -> Result<Vec<u8>, CheckpointError> {
    let bad = |e: safetensors::SafeTensorError| CheckpointError::Format(e.to_string());
    let file = SafeTensors::deserialize(adapter_safetensors).map_err(bad)?;
    let (_, header) = SafeTensors::read_metadata(adapter_safetensors).map_err(bad)?;
    let mut metadata = header.metadata().clone().unwrap_or_default();
    metadata.insert(BASE_KEY.to_owned(), base.to_owned());
    safetensors::serialize(file.tensors(), Some(metadata)).map_err(bad)
}

/// How an identity begins: the hash that made it.
const PREFIX: &str = "xxh3-128:";

/// An identity's hash and its first 12 hex digits: enough to tell two models apart in a message.
pub fn short_identity(identity: &str) -> &str {
    let end = identity.find(':').map_or(0, |colon| colon + 1) + 12;
    identity.get(..end).unwrap_or(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::{Dtype, tensor::TensorView};

    fn file(a: &[f32], b: &[f32], metadata: Option<std::collections::HashMap<String, String>>) -> Vec<u8> {
        let (a, b): (Vec<u8>, Vec<u8>) =
            (a.iter().flat_map(|v| v.to_le_bytes()).collect(), b.iter().flat_map(|v| v.to_le_bytes()).collect());
        let tensors = [
            ("a", TensorView::new(Dtype::F32, vec![a.len() / 4], &a).unwrap()),
            ("b", TensorView::new(Dtype::F32, vec![b.len() / 4], &b).unwrap()),
        ];
        safetensors::serialize(tensors, metadata).unwrap()
    }

    #[test]
    fn the_identity_follows_the_weights_not_the_file_layout_or_metadata() {
        let one = file(&[1.0, 2.0], &[3.0], None);
        let tagged = file(&[1.0, 2.0], &[3.0], Some([("format".into(), "pt".into())].into()));
        assert_eq!(safetensors_identity(&one).unwrap(), safetensors_identity(&tagged).unwrap());
        // The same values under swapped names, or one value changed: another model.
        let swapped = file(&[3.0], &[1.0, 2.0], None);
        let changed = file(&[1.0, 2.5], &[3.0], None);
        assert_ne!(safetensors_identity(&one).unwrap(), safetensors_identity(&swapped).unwrap());
        assert_ne!(safetensors_identity(&one).unwrap(), safetensors_identity(&changed).unwrap());
        // Loading the file gives the same identity as reading its bytes, streamed or whole.
        assert_eq!(crate::checkpoint::Weights::from_safetensors(&one).unwrap().identity(), safetensors_identity(&one).unwrap());
        let mut stream = crate::WeightsStream::new();
        one.chunks(5).for_each(|piece| stream.push(piece).unwrap());
        assert_eq!(stream.finish().unwrap().identity(), safetensors_identity(&one).unwrap());
        // Gathered in any order, the same identity.
        let (mut forward, mut backward) = (ContentDigest::default(), ContentDigest::default());
        forward.add("x", "F32", &[1], &[0; 4]);
        forward.add("y", "F32", &[1], &[1; 4]);
        backward.add("y", "F32", &[1], &[1; 4]);
        backward.add("x", "F32", &[1], &[0; 4]);
        assert_eq!(forward.identity(), backward.identity());
    }

    #[test]
    fn an_adapter_carries_its_base_and_an_adapted_model_has_an_identity_of_its_own() {
        let adapter = file(&[0.5], &[0.25], Some([("format".into(), "pt".into())].into()));
        assert_eq!(recorded_base(&adapter).unwrap(), None);
        let recorded = with_recorded_base(&adapter, "xxh3-128:abc").unwrap();
        assert_eq!(recorded_base(&recorded).unwrap().as_deref(), Some("xxh3-128:abc"));
        assert_eq!(safetensors_identity(&recorded).unwrap(), safetensors_identity(&adapter).unwrap(), "metadata is not weights");
        let on_one = adapted_identity("xxh3-128:abc", &recorded).unwrap();
        assert_ne!(on_one, adapted_identity("xxh3-128:abd", &recorded).unwrap());
        assert_ne!(on_one, "xxh3-128:abc");
        assert_eq!(short_identity(&on_one).len(), "xxh3-128:".len() + 12);
    }
}
