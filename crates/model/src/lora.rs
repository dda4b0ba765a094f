//! LoRA: a trainable low-rank update `scale · (a @ b)` beside the weight of every attention and MLP
//! projection (`Projection::lora`, applied as PEFT applies it: see `projection.rs`), `scale = alpha / rank`,
//! and every other weight frozen, as PEFT does (`bias = "none"`) with its target modules for each
//! architecture: GPT-2's `c_attn`, `c_proj`, `c_fc`; the Llama family's `q_proj`, `k_proj`,
//! `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`.
//!
//! The frozen base is never written, so a policy with adapters and its reference share one copy
//! of the base weights. Adapters leave in PEFT's layout: `adapter_config.json` and
//! `adapter_model.safetensors` with PEFT's names, `lora_A.weight` `[rank, in]` and
//! `lora_B.weight` `[out, rank]` (we keep `a` `[in, rank]` and `b` `[rank, out]`; GPT-2's
//! `Conv1D` stores weights `[in, out]`, hence PEFT's `fan_in_fan_out` there).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::causal_lm::{CausalLm, ScalarModel};
use crate::checkpoint::{CheckpointError, Weights, WeightsWriter, hf_name};
use crate::sample::uniform;

/// The target modules of `model`'s architecture.
pub fn lora_targets(model: &CausalLm) -> Vec<&'static str> {
    model.hf_layout().lora_targets()
}

/// Low-rank adapters' shape: the update of a weight `[in, out]` is `alpha / rank · a @ b`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    /// Rank of the update (PEFT's `r`).
    pub rank: usize,
    /// Scale numerator (PEFT's `lora_alpha`).
    pub alpha: f64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self { rank: 8, alpha: 16.0 }
    }
}

impl LoraConfig {
    /// Refuses a rank of 0 and an alpha that is not a positive number or whose scale overflows
    /// (a rank past the model's width is refused against the model: `check_lora_rank`).
    pub fn validate(&self) -> Result<(), String> {
        if self.rank == 0 {
            return Err("LoRA rank must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(format!("LoRA alpha {} must be a positive number", self.alpha));
        }
        // The update is scaled by alpha / rank in f32: a scale past f32's range makes every
        // adapted output infinite.
        let scale = (self.alpha / self.rank as f64) as f32;
        if !scale.is_finite() || scale > MAX_SCALE {
            return Err(format!(
                "LoRA alpha {:e} over rank {} scales the update by {:e}, more than {MAX_SCALE:e}: the adapted outputs would overflow",
                self.alpha,
                self.rank,
                self.alpha / self.rank as f64
            ));
        }
        Ok(())
    }
}

/// The largest LoRA scale (alpha / rank) taken: PEFT's usual settings scale by 0.5 to 64, and an
/// update scaled past this overflows f32 as soon as its factors are of order one.
const MAX_SCALE: f32 = 1e6;

/// `model` with fresh adapters on every attention and MLP projection (`b = 0`: it computes what it
/// computed before) and every other weight frozen. Each `a` is drawn ~ N(0, 1/rank) from one seeded
/// stream on the host, so a run starts from the same adapters every time and on every backend
/// (a device's own generator differs between the CPU and WebGPU).
pub fn with_lora(model: CausalLm, config: &LoraConfig) -> CausalLm {
    let device = model.device();
    let mut rng = ChaCha8Rng::seed_from_u64(LORA_SEED);
    model.no_grad().map_projections(|_, projection| {
        let [d_in, _] = projection.dims();
        let a = (0..d_in * config.rank).map(|_| normal(&mut rng) / config.rank as f32).collect();
        let a = Tensor::from_data(TensorData::new(a, [d_in, config.rank]), &device);
        projection.with_lora(a, config.alpha)
    })
}

/// The stream fresh adapters are drawn from.
const LORA_SEED: u64 = 0x10_4A;

/// A standard normal draw (Box-Muller on two of the stream's uniforms).
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let (u, v) = (uniform(rng), uniform(rng));
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

/// A reward or value model with adapters on its transformer and its score head trained in full
/// (PEFT's `modules_to_save = ["score"]`).
pub fn scalar_with_lora(model: ScalarModel, config: &LoraConfig) -> ScalarModel {
    ScalarModel { transformer: with_lora(model.transformer, config), score: model.score.unfreeze() }
}

/// Whether any weight of `module` carries an adapter.
pub fn has_adapters<M: Module>(module: &M) -> bool {
    struct Finder {
        path: Path,
        found: bool,
    }
    impl ModuleVisitor for Finder {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.0.push(name.to_owned());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
            self.found |= self.path.factor().is_some();
        }
    }
    let mut finder = Finder { path: Path::default(), found: false };
    module.visit(&mut finder);
    finder.found
}

/// PEFT's name for factor `a` or `b` of the adapter on the weight at burn's `path`
/// (`Gpt2.h.0.attn.c_attn.weight` -> `base_model.model.transformer.h.0.attn.c_attn.lora_A.weight`).
fn peft_name(path: &[String], factor: &str) -> String {
    let (weight, _) = hf_name(path);
    let stem = weight.strip_suffix(".weight").unwrap_or(&weight);
    let matrix = if factor == "a" { "lora_A" } else { "lora_B" };
    format!("base_model.model.{stem}.{matrix}.weight")
}

/// Where a visitor or mapper is inside the model: the module path, and whether it is inside an
/// adapter (`h.0.attn.c_attn.lora.a`: factor `a` of the projection `h.0.attn.c_attn`).
#[derive(Default)]
struct Path(Vec<String>);

impl Path {
    /// PEFT's name of the factor at this path, if it is one.
    fn factor(&self) -> Option<String> {
        match self.0.as_slice() {
            [projection @ .., lora, factor] if lora == "lora" && (factor == "a" || factor == "b") => {
                let weight: Vec<String> = projection.iter().cloned().chain(["weight".to_owned()]).collect();
                Some(peft_name(&weight, factor))
            }
            _ => None,
        }
    }
}

/// The adapter factors of `module` under PEFT's names, as PEFT stores them.
fn adapter_factors<M: Module>(module: &M) -> WeightsWriter {
    struct Collect {
        path: Path,
        out: WeightsWriter,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.0.push(name.to_owned());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(name) = self.path.factor() {
                let [rows, cols] = param.lazy_shape().dims::<2>();
                // PEFT keeps nn.Linear's [out, in]: both factors transposed.
                self.out.push(name, param.val().reshape([rows, cols]).transpose());
            }
        }
    }
    let mut collect = Collect { path: Path::default(), out: WeightsWriter::default() };
    module.visit(&mut collect);
    collect.out
}

/// `module` (with adapters already on it) with each factor's values taken from `weights` by
/// PEFT's name; every shape is checked.
fn fill_factors<M: Module>(module: M, weights: &mut Weights) -> Result<M, CheckpointError> {
    struct Fill<'a> {
        path: Path,
        weights: &'a mut Weights,
        error: Option<CheckpointError>,
    }
    impl ModuleMapper for Fill<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.0.push(name.to_owned());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.0.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some(name) = self.path.factor() else { return param };
            let [rows, cols] = param.lazy_shape().dims::<2>();
            let expected = vec![cols, rows];
            match self.weights.tensors.remove(&name) {
                None => self.error.get_or_insert(CheckpointError::Missing { name, expected }),
                Some((found, _)) if found != expected => self.error.get_or_insert(CheckpointError::Shape { name, expected, found }),
                Some((_, values)) => {
                    let (id, tensor, mapper) = param.consume();
                    let loaded: Tensor<2> = Tensor::from_data(TensorData::new(values, [cols, rows]), &tensor.device());
                    let value = loaded.transpose().reshape(tensor.shape()).set_require_grad(tensor.is_require_grad());
                    return Param::from_mapped_value(id, value, mapper);
                }
            };
            param
        }
    }
    let mut fill = Fill { path: Path::default(), weights, error: None };
    let module = module.map(&mut fill);
    match fill.error {
        Some(error) => Err(error),
        None => Ok(module),
    }
}

/// The adapters of `model` as PEFT writes them: `adapter_config.json` text and
/// `adapter_model.safetensors` bytes. Async: reading tensors back from a GPU is.
pub async fn save_peft_adapter(model: &CausalLm, config: &LoraConfig) -> Result<(String, Vec<u8>), CheckpointError> {
    let bytes = adapter_factors(model).to_bytes().await?;
    Ok((peft_config(model, config, CAUSAL_LM), bytes))
}

/// A reward or value model's adapters and score head ([`save_scalar_adapter`]) with PEFT's
/// `adapter_config.json` for a sequence classifier (`SEQ_CLS`, the head in `modules_to_save`).
pub async fn save_peft_scalar_adapter(model: &ScalarModel, config: &LoraConfig) -> Result<(String, Vec<u8>), CheckpointError> {
    let bytes = save_scalar_adapter(model).await?;
    Ok((peft_config(&model.transformer, config, SEQ_CLS), bytes))
}

/// PEFT's task types: a language model's adapter, a reward or value model's.
const CAUSAL_LM: &str = "CAUSAL_LM";
const SEQ_CLS: &str = "SEQ_CLS";

fn peft_config(model: &CausalLm, config: &LoraConfig, task: &str) -> String {
    let adapter_config = json!({
        "peft_type": "LORA",
        "task_type": task,
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": 0.0,
        "target_modules": lora_targets(model),
        "fan_in_fan_out": model.hf_layout().fan_in_fan_out,
        "bias": "none",
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": (task == SEQ_CLS).then_some(["score"]),
        "inference_mode": true,
    });
    serde_json::to_string_pretty(&adapter_config).expect("json")
}

/// The LoRA settings of a PEFT `adapter_config.json` made for a `task` model on `model` (a missing
/// `task_type` is taken as that task). Every field that changes what the adapter computes is read
/// and checked against what this model's adapters are: the type, the rank and scale, the target
/// modules, the weights' layout.
fn peft_lora_config(adapter_config_json: &[u8], task: &str, model: &CausalLm) -> Result<LoraConfig, CheckpointError> {
    #[derive(Deserialize)]
    struct PeftConfig {
        peft_type: Option<String>,
        r: usize,
        lora_alpha: f64,
        #[serde(default)]
        use_rslora: bool,
        #[serde(default)]
        use_dora: bool,
        task_type: Option<String>,
        target_modules: Option<serde_json::Value>,
        fan_in_fan_out: Option<bool>,
        bias: Option<String>,
    }
    let bad = |problem: String| CheckpointError::AdapterConfig(problem);
    let peft: PeftConfig = serde_json::from_slice(adapter_config_json).map_err(|e| bad(format!("not a PEFT LoRA config: {e}")))?;
    if let Some(kind) = peft.peft_type.as_deref().filter(|kind| *kind != "LORA") {
        return Err(bad(format!("peft_type is {kind:?}: only LoRA adapters (\"LORA\") are read")));
    }
    if peft.use_rslora || peft.use_dora {
        return Err(bad("rsLoRA and DoRA adapters are not supported".into()));
    }
    if let Some(bias) = peft.bias.as_deref().filter(|bias| *bias != "none") {
        return Err(bad(format!("bias is {bias:?}: adapters that train biases are not read (\"none\" is)")));
    }
    match peft.task_type.as_deref() {
        Some(found) if found != task => {
            let what = |t: &str| if t == SEQ_CLS { "a reward or value model's (SEQ_CLS)" } else { "a language model's (CAUSAL_LM)" };
            return Err(bad(format!("task_type {found}: this is {} adapter where {} is needed", what(found), what(task))));
        }
        _ => {}
    }
    let layout = model.hf_layout();
    if let Some(found) = peft.fan_in_fan_out.filter(|&found| found != layout.fan_in_fan_out) {
        return Err(bad(format!(
            "fan_in_fan_out is {found}, but this model's projections store their weights {} (fan_in_fan_out {})",
            if layout.fan_in_fan_out { "[in, out]" } else { "[out, in]" },
            layout.fan_in_fan_out
        )));
    }
    if let Some(targets) = &peft.target_modules {
        check_targets(targets, &layout.lora_targets()).map_err(bad)?;
    }
    let config = LoraConfig { rank: peft.r, alpha: peft.lora_alpha };
    config.validate().map_err(bad)?;
    Ok(config)
}

/// PEFT's `target_modules` must name the projections this model's adapters stand on, all of
/// them (in any order), or be PEFT's `"all-linear"`, which means the same here. A module may be
/// named by its whole path (`model.layers.0.self_attn.q_proj`: how PEFT saves `all-linear`).
fn check_targets(found: &serde_json::Value, ours: &[&str]) -> Result<(), String> {
    let listed: Option<Vec<&str>> = match found {
        serde_json::Value::String(all) if all == "all-linear" => return Ok(()),
        serde_json::Value::Array(items) => items.iter().map(|item| Some(item.as_str()?.rsplit('.').next().unwrap_or_default())).collect(),
        _ => None,
    };
    let Some(mut listed) = listed else {
        return Err(format!("target_modules is {found}: a list of module names is read, or \"all-linear\""));
    };
    listed.sort_unstable();
    listed.dedup();
    let mut expected = ours.to_vec();
    expected.sort_unstable();
    if listed == expected {
        return Ok(());
    }
    Err(format!("target_modules is {listed:?}, but this model's adapters stand on {expected:?}: an adapter for other modules"))
}

/// Refuses adapters whose factors have another rank than the config's `r`, naming both (every
/// tensor's shape follows from `r`: a mismatch would be reported tensor by tensor otherwise).
fn check_rank(weights: &Weights, config: &LoraConfig) -> Result<(), CheckpointError> {
    let found = weights
        .tensors
        .iter()
        .find(|(name, _)| name.ends_with(".lora_A.weight"))
        .map(|(name, (shape, _))| (name, shape.first().copied().unwrap_or(0)));
    match found {
        Some((name, rank)) if rank != config.rank => Err(CheckpointError::AdapterConfig(format!(
            "r is {}, but the adapter's tensors have rank {rank} (`{name}` has {rank} rows): they are not one adapter",
            config.rank
        ))),
        _ => Ok(()),
    }
}

/// Whether `safetensors` holds a PEFT adapter (its tensors under `base_model.model.`) rather than a
/// model's weights.
pub fn is_peft_adapter(safetensors: &[u8]) -> bool {
    safetensors::SafeTensors::deserialize(safetensors).is_ok_and(|file| file.names().iter().any(|n| n.starts_with("base_model.model.")))
}

/// `base` with the adapters of a PEFT `adapter_config.json` + `adapter_model.safetensors` (made for
/// this base: every tensor's shape is checked and a tensor of another base is refused by name).
pub fn load_peft_adapter(
    base: CausalLm,
    adapter_config_json: &[u8],
    safetensors: &[u8],
) -> Result<(LoraConfig, CausalLm), CheckpointError> {
    let config = peft_lora_config(adapter_config_json, CAUSAL_LM, &base)?;
    let mut weights = Weights::from_safetensors(safetensors)?;
    check_rank(&weights, &config)?;
    let model = fill_factors(with_lora(base, &config), &mut weights)?;
    weights.finish("the adapter was made for another base model")?;
    Ok((config, model))
}

/// `base` (a language model's transformer under a score head) with a reward or value model's
/// adapters and head saved by [`save_peft_scalar_adapter`].
pub fn load_peft_scalar_adapter(
    base: ScalarModel,
    adapter_config_json: &[u8],
    safetensors: &[u8],
) -> Result<(LoraConfig, ScalarModel), CheckpointError> {
    let config = peft_lora_config(adapter_config_json, SEQ_CLS, &base.transformer)?;
    check_rank(&Weights::from_safetensors(safetensors)?, &config)?;
    let model = load_scalar_adapter(base, &config, safetensors)?;
    Ok((config, model))
}

/// What a reward or value model trained with adapters adds to the model it started from: its
/// adapters (PEFT's names) and its score head, as safetensors bytes. With the model it started
/// from, [`load_scalar_adapter`] rebuilds it; no copy of the frozen base is written.
pub async fn save_scalar_adapter(model: &ScalarModel) -> Result<Vec<u8>, CheckpointError> {
    adapter_factors(model).with_module_at(&model.score, &["score"]).to_bytes().await
}

/// `base` with the adapters and score head saved by [`save_scalar_adapter`] (made with `config`
/// on this base: shapes are checked, a tensor of another model is refused by name).
pub fn load_scalar_adapter(base: ScalarModel, config: &LoraConfig, safetensors: &[u8]) -> Result<ScalarModel, CheckpointError> {
    let mut weights = Weights::from_safetensors(safetensors)?;
    let ScalarModel { transformer, score } = fill_factors(scalar_with_lora(base, config), &mut weights)?;
    let device = transformer.device();
    let score = weights.load_into_at(score, &["score"], &device)?;
    weights.finish("the adapters were made for another model")?;
    Ok(ScalarModel { transformer, score })
}

#[cfg(test)]
mod tests {
    use super::check_targets;

    #[test]
    fn target_modules_may_be_short_names_whole_paths_or_all_linear_but_must_cover_every_projection() {
        let ours = ["q_proj", "k_proj"];
        for accepted in [
            serde_json::json!("all-linear"),
            serde_json::json!(["k_proj", "q_proj"]),
            serde_json::json!(["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.1.self_attn.q_proj"]),
        ] {
            assert_eq!(check_targets(&accepted, &ours), Ok(()), "{accepted}");
        }
        let partial = check_targets(&serde_json::json!(["model.layers.0.self_attn.q_proj"]), &ours).unwrap_err();
        assert!(partial.contains("an adapter for other modules"), "{partial}");
        assert!(check_targets(&serde_json::json!(7), &ours).is_err());
    }
}
