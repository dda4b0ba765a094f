//! LoRA on GPT-2 with burn's own adapters ([`Module::apply_lora`]): a trainable low-rank update
//! `scale · (a @ b)` on the weights of every attention and MLP projection (`c_attn`, `c_proj`,
//! `c_fc`), `scale = alpha / rank`, and every other weight frozen, as PEFT does for GPT-2
//! (`target_modules = ["c_attn", "c_proj", "c_fc"]`, `bias = "none"`).
//!
//! The frozen base is never written, so a policy with adapters and its reference share one copy
//! of the base weights. Adapters leave in PEFT's layout: `adapter_config.json` and
//! `adapter_model.safetensors` with PEFT's names, `lora_A.weight` `[rank, in]` and
//! `lora_B.weight` `[out, rank]` (burn keeps `a` `[in, rank]` and `b` `[rank, out]`; GPT-2's
//! `Conv1D` stores weights `[in, out]`, hence PEFT's `fan_in_fan_out`).

use burn::module::{Lora, Module, ModuleMapper, ModuleVisitor, Param, ParamGroup};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::checkpoint::{CheckpointError, Weights, WeightsWriter};
use crate::gpt::{Gpt, ScalarModel};

/// The projections LoRA adapts, by their GPT-2 module names.
pub const LORA_TARGETS: [&str; 3] = ["c_attn", "c_proj", "c_fc"];

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
    pub fn validate(&self) -> Result<(), String> {
        if self.rank == 0 {
            return Err("LoRA rank must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(format!("LoRA alpha {} must be a positive number", self.alpha));
        }
        Ok(())
    }
}

/// The module paths of the weights LoRA adapts in a `layers`-block GPT-2 under `prefix`.
fn target_paths(layers: usize, prefix: &str) -> Vec<String> {
    (0..layers)
        .flat_map(|i| ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"].map(|m| format!("{prefix}h.{i}.{m}.weight")))
        .collect()
}

fn lora(config: &LoraConfig, layers: usize, prefix: &str) -> Lora {
    Lora::new(config.rank, config.alpha).set_param_group(ParamGroup::from_paths(target_paths(layers, prefix)))
}

/// `gpt` with fresh adapters (`b = 0`: it computes what it computed before) and every base weight
/// frozen.
pub fn with_lora(gpt: Gpt, config: &LoraConfig) -> Gpt {
    let layers = gpt.h.len();
    gpt.apply_lora(lora(config, layers, ""))
}

/// A reward or value model with adapters on its transformer and its score head trained in full
/// (PEFT's `modules_to_save = ["score"]`).
pub fn scalar_with_lora(model: ScalarModel, config: &LoraConfig) -> ScalarModel {
    let layers = model.transformer.h.len();
    model.apply_lora(lora(config, layers, "transformer.")).unfreeze_group(ParamGroup::from_paths(vec!["score.weight", "score.bias"]))
}

/// Whether any weight of `module` carries an adapter.
pub fn has_adapters<M: Module>(module: &M) -> bool {
    struct Finder(bool);
    impl ModuleVisitor for Finder {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.0 |= container == "Reparameterization" && name == "lora";
        }
    }
    let mut finder = Finder(false);
    module.visit(&mut finder);
    finder.0
}

/// PEFT's name for factor `a` or `b` of the adapter on the weight at `path` (`h.0.attn.c_attn`).
fn peft_name(path: &str, factor: &str) -> String {
    let matrix = if factor == "a" { "lora_A" } else { "lora_B" };
    format!("base_model.model.transformer.{path}.{matrix}.weight")
}

/// Where a visitor or mapper is inside the model: the module path, and whether it is inside an
/// adapter (`h.0.attn.c_attn.weight.lora.a`: the weight `h.0.attn.c_attn`, factor `a`).
#[derive(Default)]
struct Path(Vec<String>);

impl Path {
    fn factor(&self) -> Option<(String, &str)> {
        match self.0.as_slice() {
            [stem @ .., weight, lora, factor] if weight == "weight" && lora == "lora" => Some((stem.join("."), factor.as_str())),
            _ => None,
        }
    }
}

/// The adapters of `gpt` as PEFT writes them: `adapter_config.json` text and
/// `adapter_model.safetensors` bytes. Async: reading tensors back from a GPU is.
pub async fn save_peft_adapter(gpt: &Gpt, config: &LoraConfig) -> Result<(String, Vec<u8>), CheckpointError> {
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
            if let Some((weight, factor)) = self.path.factor() {
                let [rows, cols] = param.lazy_shape().dims::<2>();
                // PEFT keeps nn.Linear's [out, in]: both factors transposed.
                self.out.push(peft_name(&weight, factor), param.val().reshape([rows, cols]).transpose());
            }
        }
    }
    let mut collect = Collect { path: Path::default(), out: WeightsWriter::default() };
    gpt.visit(&mut collect);
    let bytes = collect.out.to_bytes().await?;
    let adapter_config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": 0.0,
        "target_modules": LORA_TARGETS,
        "fan_in_fan_out": true,
        "bias": "none",
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
        "inference_mode": true,
    });
    Ok((serde_json::to_string_pretty(&adapter_config).expect("json"), bytes))
}

/// `base` with the adapters of a PEFT `adapter_config.json` + `adapter_model.safetensors` (made for
/// this base: every tensor's shape is checked and a tensor of another base is refused by name).
pub fn load_peft_adapter(base: Gpt, adapter_config_json: &[u8], safetensors: &[u8]) -> Result<(LoraConfig, Gpt), CheckpointError> {
    #[derive(Deserialize)]
    struct PeftConfig {
        r: usize,
        lora_alpha: f64,
        #[serde(default)]
        use_rslora: bool,
        #[serde(default)]
        use_dora: bool,
    }
    let bad = |problem: String| CheckpointError::Format(format!("adapter_config.json: {problem}"));
    let peft: PeftConfig = serde_json::from_slice(adapter_config_json).map_err(|e| bad(e.to_string()))?;
    if peft.use_rslora || peft.use_dora {
        return Err(bad("rsLoRA and DoRA adapters are not supported".into()));
    }
    let config = LoraConfig { rank: peft.r, alpha: peft.lora_alpha };
    config.validate().map_err(bad)?;
    let weights = Weights::from_safetensors(safetensors)?;
    struct Fill {
        path: Path,
        weights: Weights,
        error: Option<CheckpointError>,
    }
    impl ModuleMapper for Fill {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.0.push(name.to_owned());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.0.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some((weight, factor)) = self.path.factor() else { return param };
            let name = peft_name(&weight, factor);
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
    let gpt = with_lora(base, &config).map(&mut fill);
    if let Some(error) = fill.error {
        return Err(error);
    }
    fill.weights.finish("the adapter was made for another base model")?;
    Ok((config, gpt))
}
