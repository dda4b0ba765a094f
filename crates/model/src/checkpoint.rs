//! Weights in and out as safetensors bytes, under each architecture's Hugging Face tensor names and
//! layouts.
//!
//! A module's parameter path (`Gpt2.h.0.attn.c_attn.weight`, from burn's module traversal, the
//! enum variant first) becomes the HF name in [`hf_name`], the one place that knows both: GPT-2
//! under `transformer.`, the Llama family under `model.` (its head as `lm_head`), a scalar model's
//! head as `score`, norms' `gamma`/`beta` as `weight`/`bias`. Layouts: HF's GPT-2 `Conv1D` stores
//! `[in, out]` as burn's `Linear` does; every `nn.Linear` (the Llama family's projections and head,
//! the scalar head) stores `[out, in]` and is transposed on the way in and out. F16 and BF16 files
//! (how most Llama-family models are shared) are widened to f32. Loading claims tensors by name and
//! refuses any missing, misshaped or left over, naming the tensor and both shapes; nothing is
//! half-loaded, because the model is only returned when every tensor fitted.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::causal_lm::{CausalLm, ModelConfig, ScalarModel, hf_layout};
use crate::config::ConfigError;
use crate::digest::ContentDigest;
use crate::embedding::TokenEmbedding;
use crate::packed::PackedWeight;
use crate::projection::Projection;

/// HF writes these buffers in some checkpoints; they hold no learned weights (GPT-2's causal mask,
/// older Llama files' rotary frequencies), so they are accepted and ignored.
pub(crate) const IGNORED_SUFFIXES: [&str; 3] = [".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq"];

/// A tied head: HF leaves it out of most files but some carry it; it is the embeddings again.
const TIED_HEAD: &str = "lm_head.weight";

/// A checkpoint that does not fit the model it is loaded into.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("weights file is not valid safetensors: {0}")]
    Format(String),
    /// A GGUF file that cannot be read: the reason, worded for GGUF.
    #[error("{0}")]
    Gguf(String),
    #[error("tensor `{name}` is missing from the weights (expected shape {expected:?})")]
    Missing { name: String, expected: Vec<usize> },
    #[error("tensor `{name}` has shape {found:?} but the config needs {expected:?}")]
    Shape { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor `{name}` is {dtype}; only F32, F16 and BF16 weights are supported")]
    Dtype { name: String, dtype: String },
    #[error("tensor `{name}` is not part of this model ({hint})")]
    Unexpected { name: String, hint: String },
    #[error("tensor `{name}` holds {value} at index {index}; weights must be finite numbers")]
    NotFinite { name: String, index: usize, value: f32 },
    /// A PEFT `adapter_config.json` that does not describe adapters for this model: why.
    #[error("adapter_config.json: {0}")]
    AdapterConfig(String),
    #[error("config.json describes {needed} parameters but model.safetensors holds {found} values; they are not one model")]
    TooFewWeights { needed: usize, found: usize },
}

type Result<T> = std::result::Result<T, CheckpointError>;

/// The Hugging Face name of the parameter at burn's module `path`, and whether HF stores it
/// transposed (`nn.Linear`'s `[out, in]`).
pub(crate) fn hf_name(path: &[String]) -> (String, bool) {
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    // A language model's path starts with its variant (`Llama.layers.0...`), a scalar model's with
    // `transformer.` then the variant; the head of either sits outside the family's prefix.
    let (family, rest) = match parts.as_slice() {
        ["transformer", variant, rest @ ..] | [variant, rest @ ..] if hf_layout(variant).is_some() => (hf_layout(variant), rest),
        other => (None, other),
    };
    let (name, linear) = match (family, rest) {
        (Some(layout), ["lm_head", head @ ..]) => (format!("lm_head.{}", head.join(".")), !layout.fan_in_fan_out),
        (Some(layout), rest) => {
            (format!("{}.{}", layout.prefix, rest.join(".")), !layout.fan_in_fan_out && rest.first() != Some(&layout.embedding))
        }
        (None, other) => (other.join("."), matches!(other.first(), Some(&"score"))),
    };
    for (burn, hf) in [(".gamma", ".weight"), (".beta", ".bias")] {
        if let Some(stem) = name.strip_suffix(burn) {
            return (format!("{stem}{hf}"), false);
        }
    }
    let transposed = linear && name.ends_with(".weight");
    (name, transposed)
}

/// A tensor's values widened to f32, or the dtype it has.
fn values_f32(view: &TensorView) -> std::result::Result<Vec<f32>, Dtype> {
    let data = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => return Err(other),
    })
}

/// The tensors of a safetensors file, claimed one by one as modules load from them.
#[derive(Debug, Default)]
pub struct Weights {
    pub(crate) tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// Projection weights kept in their file's precision, HF's `[out, in]`.
    pub(crate) packed: BTreeMap<String, PackedWeight>,
    /// The file's tensors as it stores them: the model's identity.
    pub(crate) digest: ContentDigest,
}

impl Weights {
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        let file = SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Format(e.to_string()))?;
        let mut weights = Self::default();
        for (name, view) in file.tensors() {
            weights.insert(name, &view)?;
        }
        Ok(weights)
    }

    /// Keeps one tensor of the file, widened to f32 (ignored buffers are let go).
    pub(crate) fn insert(&mut self, name: String, view: &TensorView) -> Result<()> {
        if IGNORED_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            return Ok(());
        }
        self.digest.add(&name, &format!("{:?}", view.dtype()), view.shape(), view.data());
        let values = values_f32(view).map_err(|dtype| CheckpointError::Dtype { name: name.clone(), dtype: format!("{dtype:?}") })?;
        self.insert_values(name, view.shape().to_vec(), values)
    }

    /// The identity of the model these tensors make ([`crate::digest`]): the same for every
    /// file that holds the same tensors.
    pub fn identity(&self) -> String {
        self.digest.identity()
    }

    /// Keeps one tensor already widened to f32 (read from another format: GGUF).
    pub(crate) fn insert_values(&mut self, name: String, shape: Vec<usize>, values: Vec<f32>) -> Result<()> {
        // A NaN loaded would surface many steps later as a diverged run; refuse it by name here.
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(CheckpointError::NotFinite { name, index, value });
        }
        self.tensors.insert(name, (shape, values));
        Ok(())
    }

    /// Keeps a projection's weight as its file stores it.
    pub(crate) fn insert_packed(&mut self, name: String, packed: PackedWeight) {
        self.packed.insert(name, packed);
    }

    /// Bytes the tensors take as held: packed ones as their file stores them, the rest f32.
    pub fn held_bytes(&self) -> u64 {
        let packed: u64 = self.packed.values().map(PackedWeight::held_bytes).sum();
        packed + self.tensors.values().map(|(_, v)| 4 * v.len() as u64).sum::<u64>()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name) || self.packed.contains_key(name)
    }

    /// `model` with every projection and embedding whose weight is kept packed holding it (in
    /// place of f32 weights of its own); shapes are checked.
    fn pack_into(&mut self, model: CausalLm) -> Result<CausalLm> {
        let mut error = None;
        let layout = model.hf_layout();
        let name = format!("{}.{}.weight", layout.prefix, layout.embedding);
        let model = model.map_embedding(|embedding| {
            let Some(packed) = self.packed.remove(&name) else { return embedding };
            if packed.shape() != embedding.dims() {
                let found = packed.shape().to_vec();
                error.get_or_insert(CheckpointError::Shape { name: name.clone(), expected: embedding.dims().to_vec(), found });
                return embedding;
            }
            TokenEmbedding::packed(packed)
        });
        let model = model.map_projections(|name, projection| {
            let Some(packed) = self.packed.remove(&format!("{name}.weight")) else { return projection };
            let [d_in, d_out] = projection.dims();
            if packed.shape() != [d_out, d_in] {
                let found = packed.shape().to_vec();
                error.get_or_insert(CheckpointError::Shape { name: format!("{name}.weight"), expected: vec![d_out, d_in], found });
                return projection;
            }
            Projection { weight: None, packed: Some(packed), ..projection }
        });
        error.map_or(Ok(model), Err)
    }

    /// Refuses a config that needs far more parameters than the file holds, before the model it
    /// describes is built (a config can ask for any size; the file is what was really sent). A
    /// near miss is built, then refused naming the tensor that does not fit: building is bounded
    /// by a few times the file's size.
    pub fn check_holds(&self, config: &ModelConfig) -> Result<()> {
        let packed: usize = self.packed.values().map(|p| p.shape().iter().product::<usize>()).sum();
        let found: usize = self.tensors.values().map(|(_, v)| v.len()).sum::<usize>() + packed;
        let needed = config.num_params();
        if needed > found.saturating_mul(8).max(1 << 20) { Err(CheckpointError::TooFewWeights { needed, found }) } else { Ok(()) }
    }

    /// Replaces every parameter of `module` by the tensor of its HF name, on `device`.
    pub fn load_into<M: Module>(&mut self, module: M, device: &Device) -> Result<M> {
        self.load_into_at(module, &[], device)
    }

    /// Like [`Weights::load_into`] for a part of a model found at `at` within it (`["score"]`).
    pub(crate) fn load_into_at<M: Module>(&mut self, module: M, at: &[&str], device: &Device) -> Result<M> {
        let path = at.iter().map(|s| (*s).to_owned()).collect();
        let mut loader = Loader { weights: self, device, path, error: None };
        let module = module.map(&mut loader);
        match loader.error {
            Some(e) => Err(e),
            None => Ok(module),
        }
    }

    /// Errors if any tensor was not claimed: the file describes a different model. A tied head the
    /// file carries anyway is the embeddings again and is let go.
    pub fn finish(mut self, hint: &str) -> Result<()> {
        self.tensors.remove(TIED_HEAD);
        match self.tensors.into_keys().chain(self.packed.into_keys()).next() {
            Some(name) => Err(CheckpointError::Unexpected { name, hint: hint.to_owned() }),
            None => Ok(()),
        }
    }
}

struct Loader<'a> {
    weights: &'a mut Weights,
    device: &'a Device,
    path: Vec<String>,
    error: Option<CheckpointError>,
}

impl Loader<'_> {
    fn take<const D: usize>(&mut self, name: &str, transposed: bool, expected: [usize; D]) -> Result<Tensor<D>> {
        let mut stored = expected.to_vec();
        if transposed {
            stored.reverse();
        }
        let (shape, values) = self
            .weights
            .tensors
            .remove(name)
            .ok_or_else(|| CheckpointError::Missing { name: name.to_owned(), expected: stored.clone() })?;
        if shape != stored {
            return Err(CheckpointError::Shape { name: name.to_owned(), expected: stored, found: shape });
        }
        // Uploaded in burn's `[in, out]` order, not as a transposed view of HF's `[out, in]`: the
        // CPU's matrix kernels read a view like that by first copying it into their own order, on
        // every call. Decoding a few rows at a time, that copy cost more than the product itself
        // (a 135M model's projections at batch 4: 57 ms a token through views, 21 ms stored so).
        let values = if transposed && D == 2 { transpose(&values, shape[0], shape[1]) } else { values };
        Ok(Tensor::<D>::from_data(TensorData::new(values, expected.to_vec()), self.device))
    }
}

/// The row-major `[rows, cols]` matrix `values` as row-major `[cols, rows]`, in cache-sized tiles.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0.0; values.len()];
    for row_start in (0..rows).step_by(TILE) {
        for col_start in (0..cols).step_by(TILE) {
            for row in row_start..(row_start + TILE).min(rows) {
                for col in col_start..(col_start + TILE).min(cols) {
                    out[col * rows + row] = values[row * cols + col];
                }
            }
        }
    }
    out
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        let (name, transposed) = hf_name(&self.path);
        let expected: [usize; D] = param.lazy_shape().dims();
        match self.take(&name, transposed, expected) {
            Ok(tensor) => param.transform_for_load(tensor, stable_id(&name)),
            Err(e) => {
                self.error = Some(e);
                param
            }
        }
    }
}

/// Collects modules' parameters under their HF names, then writes safetensors bytes.
#[derive(Debug, Default)]
pub struct WeightsWriter {
    /// Name, shape as HF stores it, and the values (as 2-d so one list holds every rank).
    tensors: Vec<(String, Vec<usize>, Tensor<2>)>,
}

impl WeightsWriter {
    /// Adds every parameter of `module` under its HF name.
    pub fn with_module<M: Module>(self, module: &M) -> Self {
        self.with_module_at(module, &[])
    }

    /// Like [`WeightsWriter::with_module`] for a part of a model found at `at` within it (`["score"]`).
    pub(crate) fn with_module_at<M: Module>(mut self, module: &M, at: &[&str]) -> Self {
        let path = at.iter().map(|s| (*s).to_owned()).collect();
        module.visit(&mut Collector { path, out: &mut self.tensors });
        self
    }

    /// Adds one tensor under `name`, as stored.
    pub(crate) fn push(&mut self, name: String, tensor: Tensor<2>) {
        self.tensors.push((name, tensor.dims().to_vec(), tensor));
    }

    /// The safetensors file. Async because reading tensors back from a GPU is (WebGPU forbids a
    /// blocking read); on CPU the future is ready at once.
    pub async fn to_bytes(self) -> Result<Vec<u8>> {
        let mut named = Vec::with_capacity(self.tensors.len());
        for (name, shape, tensor) in self.tensors {
            let data = tensor.into_data_async().await.map_err(|e| CheckpointError::Format(format!("{e:?}")))?;
            let values: Vec<f32> = data.try_to_vec::<f32>().map_err(|e| CheckpointError::Format(format!("{e:?}")))?;
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            named.push((name, shape, bytes));
        }
        let views = named.iter().map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes).expect("sizes match by construction");
            (name.as_str(), view)
        });
        let metadata = [("format".to_owned(), "pt".to_owned())].into_iter().collect();
        safetensors::serialize(views, Some(metadata)).map_err(|e| CheckpointError::Format(e.to_string()))
    }
}

struct Collector<'a> {
    path: Vec<String>,
    out: &'a mut Vec<(String, Vec<usize>, Tensor<2>)>,
}

impl ModuleVisitor for Collector<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (name, transposed) = hf_name(&self.path);
        let tensor = param.val();
        let dims = tensor.dims();
        let (rows, cols) = match D {
            1 => (1, dims[0]),
            2 => (dims[0], dims[1]),
            _ => unreachable!("the models have only 1-d and 2-d parameters"),
        };
        let flat: Tensor<2> = tensor.reshape([rows, cols]);
        // Only a matrix has an `[out, in]` to restore (a Gemma norm's `weight` is a vector).
        let (shape, flat) = if transposed && D == 2 { (vec![cols, rows], flat.transpose()) } else { (dims.to_vec(), flat) };
        self.out.push((name, shape, flat));
    }
}

/// A language model from `config.json` and `model.safetensors` bytes.
pub fn load_lm(config_json: &[u8], safetensors: &[u8], device: &Device) -> Result<(ModelConfig, CausalLm)> {
    let config = ModelConfig::from_json_bytes(config_json)?;
    let model = lm_from_config(&config, safetensors, device)?;
    Ok((config, model))
}

/// A language model of a parsed (and perhaps adjusted) `config` from `model.safetensors` bytes.
pub fn lm_from_config(config: &ModelConfig, safetensors: &[u8], device: &Device) -> Result<CausalLm> {
    lm_from_weights(config, Weights::from_safetensors(safetensors)?, device)
}

/// A language model of `config` from tensors already read (e.g. by a [`crate::WeightsStream`]).
pub fn lm_from_weights(config: &ModelConfig, mut weights: Weights, device: &Device) -> Result<CausalLm> {
    weights.check_holds(config)?;
    let model = weights.pack_into(config.init(device))?;
    let model = weights.load_into(model, device)?;
    weights.finish(&format!(
        "config.json describes a {}-layer {} language model; a reward or value model loads as a scalar model",
        config.num_layers(),
        config.architecture()
    ))?;
    Ok(model)
}

/// A language model's `model.safetensors` bytes (HF's `*ForCausalLM` layout, a tied head omitted).
/// LoRA adapters are merged into the weights they adapt.
pub async fn save_lm(model: &CausalLm) -> Result<Vec<u8>> {
    WeightsWriter::default().with_module(&model.clone().merged()).to_bytes().await
}

/// A reward or value model from `config.json` and `model.safetensors` bytes.
pub fn load_scalar_model(config_json: &[u8], safetensors: &[u8], device: &Device) -> Result<(ModelConfig, ScalarModel)> {
    let config = ModelConfig::from_json_bytes(config_json)?;
    let mut weights = Weights::from_safetensors(safetensors)?;
    if !weights.contains("score.bias") {
        weights.tensors.insert("score.bias".into(), (vec![1], vec![0.0]));
    }
    weights.check_holds(&config)?;
    let model = weights.load_into(ScalarModel::new(config.init(device)), device)?;
    weights.finish(&format!("config.json describes a {}-layer {} scalar model", config.num_layers(), config.architecture()))?;
    Ok((config, model))
}

/// A reward or value model's `model.safetensors` bytes (HF's `*ForSequenceClassification` + bias).
/// LoRA adapters are merged into the weights they adapt.
pub async fn save_scalar_model(model: &ScalarModel) -> Result<Vec<u8>> {
    WeightsWriter::default().with_module(&model.clone().merged()).to_bytes().await
}

/// Gives every parameter an id derived from its HF name, so optimizer state saved with one copy of
/// a model applies to the same model reloaded later (loading assigns the same ids).
/// `prefix` keeps two models trained side by side (PPO's policy and value) apart.
pub fn with_stable_param_ids<M: Module>(module: M, prefix: &str) -> M {
    module.map(&mut StableIds { prefix, path: vec![] })
}

/// `module` with its random weights drawn now. A fresh module's weights (a new score head, LoRA's
/// `A`) are drawn at their first use by each clone anew, so a copy taken for scoring without the
/// graph (`valid()`) would score with other weights than the module it was taken from; drawn once,
/// every clone shares them.
pub fn drawn<M: Module>(module: M) -> M {
    struct Draw;
    impl ModuleVisitor for Draw {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Draw);
    module
}

fn stable_id(name: &str) -> ParamId {
    // FNV-1a: stable across runs and Rust versions, unlike std's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    ParamId::from(hash)
}

struct StableIds<'a> {
    prefix: &'a str,
    path: Vec<String>,
}

impl ModuleMapper for StableIds<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, tensor, mapper) = param.consume();
        Param::from_mapped_value(stable_id(&format!("{}{}", self.prefix, hf_name(&self.path).0)), tensor, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::transpose;

    #[test]
    fn transpose_moves_every_value_across_tile_edges() {
        let (rows, cols) = (33, 70);
        let values: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let out = transpose(&values, rows, cols);
        for row in 0..rows {
            for col in 0..cols {
                assert_eq!(out[col * rows + row], values[row * cols + col], "({row}, {col})");
            }
        }
    }
}
