//! tinyrlhf in the browser: the thin layer between the page's Web Worker and the library crates.
//! This file is the session: it loads models and samples; `training.rs` trains (reward model, then
//! PPO, GRPO, RLOO or DPO step by step); `sft.rs` fine-tunes; `inspect.rs` explains and compares;
//! `peers.rs` lets the page's workers train one run together; `formats.rs` answers what needs no
//! session (files, labelers, limits); `test_hooks.rs` is for the browser tests only.
//!
//! Boundary: bytes and JSON strings in, JSON strings out; every error is a `JsError` with a message
//! a person can read. The worker fetches files and owns this module; the page never touches it.
//! The backend is chosen here, once, at [`Session::create`]: burn on WebGPU, or burn's CPU backend
//! (flex) compiled to wasm. Which one to ask for is the worker's decision (it can see the adapter).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use burn::tensor::Device;
use serde::Serialize;
use std::collections::BTreeMap;

use tinyrlhf_model::{CausalLm, GgufStream, ModelConfig, SamplingConfig, ScalarModel, WeightsStream, generate};
use tinyrlhf_rlhf::{GpuKernels, LanguageModel, ModelFiles, RewardTrainer, Safetensors, check_same_shape, load_language_model};
use tinyrlhf_tokenizer::TokenizerFiles;
use wasm_bindgen::prelude::*;

mod formats;
mod inspect;
mod memory;
mod peers;
mod rows;
mod sft;
mod test_hooks;
mod training;

pub use peers::worker_count;
pub use rows::RowHelper;
pub use training::defaults;

#[wasm_bindgen(start)]
pub fn start() {
    run_static_constructors_once();
    console_error_panic_hook::set_once();
}

/// The module's static constructors, run once as it starts. Left to the linker, every exported
/// function ran them again on each call (wasm-ld wraps each export of a module that never calls
/// them itself): 0.33 ms a call in Chromium, which a row helper answering thousands of requests a
/// second, and every call the page makes, paid. Calling them here makes the linker leave the
/// exports alone.
#[allow(unsafe_code)] // the linker's own function; it takes nothing and is called once, first
fn run_static_constructors_once() {
    #[cfg(target_family = "wasm")]
    {
        unsafe extern "C" {
            fn __wasm_call_ctors();
        }
        // SAFETY: wasm-ld defines it for every module; this is its only call, before any other code.
        unsafe { __wasm_call_ctors() };
    }
}

/// Every error the page shows comes through here, cut as the CLI cuts its own.
pub(crate) fn js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&tinyrlhf_rlhf::messages::shown(&e.to_string()))
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String, JsError> {
    serde_json::to_string(value).map_err(js)
}

pub(crate) type Model = LanguageModel;

/// Everything a session holds besides the device. Trainers are taken out while they step, so no
/// borrow lives across an await (the worker also runs one request at a time).
#[derive(Default)]
pub(crate) struct State {
    sft: Option<Rc<Model>>,
    base: Option<CausalLm>,
    reward: Option<ScalarModel>,
    /// The LoRA settings of the reward model when it was trained here with adapters (and holds them).
    reward_lora: Option<tinyrlhf_model::LoraConfig>,
    reward_trainer: Option<RewardTrainer>,
    /// Tuned policies by name: a method's ("ppo", "dpo", ...) or "imported".
    policies: BTreeMap<String, CausalLm>,
    /// The LoRA settings of the policies that were trained here with adapters (and still hold them).
    adapters: BTreeMap<String, tinyrlhf_model::LoraConfig>,
    run: Option<tinyrlhf_rlhf::PolicyTrainer>,
    sft_run: Option<sft::SftRun>,
    /// The workers that train together (`peers.rs`); none: this one alone.
    peers: Option<Rc<dyn tinyrlhf_rlhf::Peers>>,
    /// Workers holding the SFT model's base between them (`rows.rs`), this one included; 0 or 1: this one alone.
    row_workers: usize,
}

impl State {
    /// Drops everything trained from the SFT model (it is being replaced).
    fn forget_trained(&mut self) {
        self.reward = None;
        self.reward_lora = None;
        self.reward_trainer = None;
        self.policies.clear();
        self.adapters.clear();
        self.run = None;
    }
}

/// One SFT model on one device, and what the tab trains from it.
#[wasm_bindgen]
pub struct Session {
    device: Device,
    backend: String,
    /// A GPU's kernels: chosen from its limits at the start, perhaps turned off by the agreement
    /// check. `None` on the CPU.
    kernels: Rc<RefCell<Option<GpuKernels>>>,
    pub(crate) state: Rc<RefCell<State>>,
}

#[derive(Serialize)]
struct ModelInfo {
    /// `gpt2`, `llama`, `qwen2`, `qwen3` or `gemma3_text`.
    architecture: String,
    parameters: usize,
    layers: usize,
    width: usize,
    heads: usize,
    context: usize,
    vocab: usize,
    /// The chat template's Jinja source.
    chat_template: String,
    /// What to tell the person once about how prompts reach the model (no chat template).
    template_note: Option<&'static str>,
    /// No pad token: padding uses EOS.
    pad_is_eos: bool,
    /// What it costs to train here, and whether LoRA is the default for it.
    footprint: tinyrlhf_rlhf::Footprint,
}

#[derive(Serialize)]
struct Checked {
    agrees: bool,
    summary: String,
    /// "fused kernels", or "unfused kernels (why)".
    kernels: String,
}

#[derive(Serialize)]
struct Samples {
    completions: Vec<String>,
    finished: Vec<bool>,
    /// The prompt was longer than the context allows and lost its beginning.
    truncated: bool,
    /// The prompt's tokens (as the model reads it: its chat template applied), once for all K.
    prompt_tokens: usize,
    /// New tokens, all answers together.
    tokens: usize,
    /// On WebGPU, the GPU kernels launched for each token of the longest answer (the prompt's
    /// pass included); `None` on the CPU.
    kernels_per_token: Option<f64>,
}

#[cfg(target_family = "wasm")]
async fn webgpu() -> Result<Device, JsError> {
    Device::wgpu_options().init_async().await.map_err(|e| js(format!("WebGPU could not be initialised: {e}")))
}

#[cfg(not(target_family = "wasm"))]
async fn webgpu() -> Result<Device, JsError> {
    Err(js("WebGPU exists only in the browser build"))
}

pub(crate) fn promise(f: impl std::future::Future<Output = Result<JsValue, JsError>> + 'static) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move { f.await.map_err(JsValue::from) })
}

pub(crate) fn json_value<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    Ok(JsValue::from_str(&to_json(value)?))
}

/// The SFT model the session holds: what every tuned model here starts from.
pub(crate) fn loaded_sft(state: &Rc<RefCell<State>>) -> Result<Rc<Model>, JsError> {
    state.borrow().sft.clone().ok_or_else(|| js("no model is loaded"))
}

/// The SFT model's identity, which the adapters trained on it record. A model trained in this tab
/// has none until an adapter needs it: then it is taken from the weights the tab saves of it
/// (what a reload loads), once.
pub(crate) async fn sft_identity(state: &Rc<RefCell<State>>) -> Result<String, JsError> {
    let model = loaded_sft(state)?;
    if !model.identity.is_empty() {
        return Ok(model.identity.clone());
    }
    let bytes = tinyrlhf_model::save_lm(&model.model).await.map_err(js)?;
    let identity = tinyrlhf_model::safetensors_identity(&bytes).map_err(js)?;
    let mut s = state.borrow_mut();
    if s.sft.as_ref().is_some_and(|current| Rc::ptr_eq(current, &model)) {
        s.sft = Some(Rc::new(Model { identity: identity.clone(), ..(*model).clone() }));
    }
    Ok(identity)
}

/// The model called `which`: "sft", "base", or a tuned policy's name.
pub(crate) fn model_named(state: &Rc<RefCell<State>>, which: &str) -> Result<CausalLm, JsError> {
    let s = state.borrow();
    match which {
        "sft" => s.sft.as_ref().map(|m| m.model.clone()).ok_or_else(|| js("no model is loaded")),
        "base" => s.base.clone().ok_or_else(|| js("the base model is not loaded")),
        name => s.policies.get(name).cloned().ok_or_else(|| js(format!("there is no {name} policy yet"))),
    }
}

/// Prompt ids that leave `room` tokens for the answer, and whether the prompt was cut.
pub(crate) fn prompt_ids(model: &Model, prompt: &str, room: usize) -> Result<(Vec<u32>, bool), JsError> {
    tinyrlhf_rlhf::prompt_ids(&model.tokenizer, model.config.context_length(), prompt, room).map_err(js)
}

#[wasm_bindgen]
impl Session {
    /// A session on `backend`: "webgpu" or "cpu".
    pub async fn create(backend: String) -> Result<Session, JsError> {
        let device = match backend.as_str() {
            "webgpu" => webgpu().await?,
            "cpu" => Device::flex(),
            other => return Err(js(format!("unknown backend {other:?}; use webgpu or cpu"))),
        };
        let kernels = (backend == "webgpu").then(|| tinyrlhf_rlhf::kernels_by_limits(&device));
        Ok(Session { device, backend, kernels: Rc::new(RefCell::new(kernels)), state: Rc::default() })
    }

    /// Which kernels this session's GPU runs: "fused kernels" or "unfused kernels (why)";
    /// undefined on the CPU.
    pub fn kernels(&self) -> Option<String> {
        self.kernels.borrow().as_ref().map(|k| k.to_string())
    }

    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Generated tokens per second of a model shaped like `config_json` on this session's backend
    /// (random weights: the speed does not depend on them): 4 answers of 8 tokens (one read back),
    /// timed after a warm-up run that also compiles a GPU's kernels. The worker compares backends
    /// with it.
    #[wasm_bindgen(js_name = generationSpeed)]
    pub fn generation_speed(&self, config_json: Vec<u8>) -> js_sys::Promise {
        let device = self.device.clone();
        promise(async move {
            let config = ModelConfig::from_json_bytes(&config_json).map_err(js)?;
            let lm = config.init(&device);
            let prompt: Vec<u32> = (0..8).map(|i| i % config.vocab_size() as u32).collect();
            let tokens = tinyrlhf_model::READ_EVERY.min(config.context_length().saturating_sub(prompt.len() + 1)).max(1);
            let sampling = |max_new_tokens| SamplingConfig { max_new_tokens, ..Default::default() };
            // No EOS id inside the vocabulary: every answer runs its full length.
            generate(&lm, &vec![prompt.clone(); 4], u32::MAX, 0, &sampling(tokens)).await.map_err(js)?;
            let start = web_time::Instant::now();
            generate(&lm, &vec![prompt; 4], u32::MAX, 0, &sampling(tokens)).await.map_err(js)?;
            Ok(JsValue::from_f64((4 * tokens) as f64 / start.elapsed().as_secs_f64().max(1e-9)))
        })
    }

    /// How this session's device compares with the CPU backend on a miniature of the model shaped
    /// like `config_json` (logits, seeded sampling, training steps), choosing its kernels on the
    /// way (`tinyrlhf_rlhf::check_gpu`): `{agrees, summary, kernels}` as JSON. `failures` resolves
    /// to the device errors WebGPU reported since it was last asked (a kernel it could not build),
    /// or null. The worker keeps WebGPU only where it agrees.
    pub fn agreement(&self, config_json: Vec<u8>, failures: js_sys::Function) -> js_sys::Promise {
        let (device, kernels) = (self.device.clone(), self.kernels.clone());
        promise(async move {
            let config = ModelConfig::from_json_bytes(&config_json).map_err(js)?;
            let reported = async || {
                let promise = js_sys::Promise::resolve(&failures.call0(&JsValue::NULL).ok()?);
                wasm_bindgen_futures::JsFuture::from(promise).await.ok()?.as_string()
            };
            let found = tinyrlhf_rlhf::check_gpu(&[config], &Device::flex(), &device, reported).await.map_err(js)?;
            let summary = found.agreements.iter().map(|(_, a)| a.to_string()).collect::<Vec<_>>().join("; ");
            let checked = Checked { agrees: found.agrees, summary, kernels: found.kernels.to_string() };
            *kernels.borrow_mut() = Some(found.kernels);
            json_value(&checked)
        })
    }

    /// Loads a model folder's files as the SFT model (`tokenizer_config.json` and
    /// `chat_template.jinja` and `generation_config.json` when the folder has them; the weights as
    /// read by a [`WeightsUpload`]).
    /// On any error the current model stays; on success everything trained from the previous one
    /// is dropped, and the new model is also the comparison's base until [`Session::load_base`]
    /// says otherwise (sharing its tensors: no second copy). Returns the model's shape and template
    /// as JSON.
    pub fn load(
        &self,
        config_json: &[u8],
        weights: WeightsUpload,
        tokenizer_json: &[u8],
        tokenizer_config_json: Option<Vec<u8>>,
        chat_template_jinja: Option<Vec<u8>>,
        generation_config_json: Option<Vec<u8>>,
    ) -> Result<String, JsError> {
        let config = ModelConfig::from_json_bytes(config_json).map_err(|e| js(format!("config.json: {e}")))?;
        let footprint = tinyrlhf_rlhf::check_fits_tab(&config, None).map_err(js)?;
        let files = ModelFiles {
            config_json,
            safetensors: Safetensors::Read(weights.finish()?),
            tokenizer: TokenizerFiles {
                tokenizer_json,
                tokenizer_config_json: tokenizer_config_json.as_deref(),
                chat_template_jinja: chat_template_jinja.as_deref(),
                generation_config_json: generation_config_json.as_deref(),
            },
        };
        let model = load_language_model(files, &self.device).map_err(js)?;
        self.install(model, footprint)
    }

    /// Loads one GGUF file (llama.cpp's, Ollama's, LM Studio's) as the SFT model, as [`Session::load`]
    /// loads a folder: its config, weights, tokenizer and chat template all come from the file.
    #[wasm_bindgen(js_name = loadGguf)]
    pub fn load_gguf(&self, upload: WeightsUpload) -> Result<String, JsError> {
        let row_workers = upload.rows.as_ref().map_or(1, |rows| rows.workers());
        let Upload::Gguf(stream) = upload.upload else {
            return Err(js("the file is not a GGUF file (it does not begin with \"GGUF\")"));
        };
        let gguf = stream.finish().map_err(|e| js(format!("GGUF file: {e}")))?;
        let config = ModelConfig::from_json_bytes(&gguf.config_json).map_err(|e| js(format!("GGUF file: {e}")))?;
        let footprint = tinyrlhf_rlhf::check_fits_tab(&config, Some(gguf.weights.held_bytes())).map_err(js)?;
        let model = tinyrlhf_rlhf::load_gguf_model(gguf, &self.device).map_err(js)?;
        let info = self.install(model, footprint)?;
        self.state.borrow_mut().row_workers = row_workers;
        Ok(info)
    }

    /// Workers holding the SFT model's base between them, this one included (`rows.rs`).
    #[wasm_bindgen(js_name = rowWorkers)]
    pub fn row_workers(&self) -> usize {
        self.state.borrow().row_workers.max(1)
    }

    /// Makes `model` the SFT model: everything trained from the previous one is dropped, and it is
    /// also the comparison's base. Returns its shape and template as JSON.
    fn install(&self, model: LanguageModel, footprint: tinyrlhf_rlhf::Footprint) -> Result<String, JsError> {
        let LanguageModel { config, model, tokenizer, identity } = model;
        let special = tokenizer.special_ids();
        let info = ModelInfo {
            parameters: config.num_params(),
            architecture: config.architecture().to_owned(),
            layers: config.num_layers(),
            width: config.width(),
            heads: config.heads(),
            context: config.context_length(),
            vocab: config.vocab_size(),
            chat_template: tokenizer.chat_template().source().to_owned(),
            template_note: tokenizer.template_note(),
            pad_is_eos: special.pad == special.eos,
            footprint,
        };
        let mut state = self.state.borrow_mut();
        state.forget_trained();
        state.base = Some(model.clone());
        state.sft_run = None;
        state.sft = Some(Rc::new(Model { config, model, tokenizer, identity }));
        to_json(&info)
    }

    /// The SFT model's `tokenizer.json` (for a GGUF model, the one its metadata describes).
    #[wasm_bindgen(js_name = tokenizerJson)]
    pub fn tokenizer_json(&self) -> Result<String, JsError> {
        loaded_sft(&self.state)?.tokenizer.to_json().map_err(js)
    }

    /// Checks that `config.json` describes the SFT model's shape, before anything is built from it
    /// (a config can ask for any size; building first would let it exhaust the tab's memory).
    fn same_config(&self, config_json: &[u8]) -> Result<(), JsError> {
        let model = loaded_sft(&self.state)?;
        let config = ModelConfig::from_json_bytes(config_json).map_err(js)?;
        check_same_shape("this model", &model.config, &config).map_err(js)?;
        Ok(())
    }

    /// A model of the SFT model's shape from `config.json` + `model.safetensors` bytes, or an error
    /// naming what does not fit.
    pub(crate) fn same_shape(&self, config_json: &[u8], safetensors: &[u8]) -> Result<CausalLm, JsError> {
        self.same_config(config_json)?;
        let (_, lm) = tinyrlhf_model::load_lm(config_json, safetensors, &self.device).map_err(|e| js(format!("model: {e}")))?;
        Ok(lm)
    }

    /// The SFT model's `tokenizer_config.json` (its EOS, pad and chat template), which every
    /// exported model of this session shares.
    #[wasm_bindgen(js_name = tokenizerConfigJson)]
    pub fn tokenizer_config_json(&self) -> Result<String, JsError> {
        Ok(loaded_sft(&self.state)?.tokenizer.config_json())
    }

    /// Loads the base (pretrained) model for the comparison view, when it is not the SFT model
    /// as loaded.
    #[wasm_bindgen(js_name = loadBase)]
    pub fn load_base(&self, config_json: &[u8], weights: WeightsUpload) -> Result<(), JsError> {
        self.same_config(config_json)?;
        let config = loaded_sft(&self.state)?.config.clone();
        let weights = weights.finish()?;
        let base = tinyrlhf_model::lm_from_weights(&config, weights, &self.device).map_err(|e| js(format!("base model: {e}")))?;
        self.state.borrow_mut().base = Some(base);
        Ok(())
    }

    /// The SFT model's `config.json`, which every exported model of this session shares.
    #[wasm_bindgen(js_name = configJson)]
    pub fn config_json(&self) -> Result<String, JsError> {
        Ok(loaded_sft(&self.state)?.config.to_json())
    }

    /// `k` answers to `prompt` from `which` model ("sft", "base" or a policy's name), sampled together,
    /// repeats removed (a ranking orders different answers), so fewer than `k` may come back.
    /// Resolves to JSON `{completions, finished, truncated, tokens}`.
    pub fn sample(&self, which: String, prompt: String, k: usize, temperature: f32, max_new_tokens: usize, seed: u64) -> js_sys::Promise {
        let (state, backend) = (self.state.clone(), self.backend.clone());
        promise(async move {
            let model = loaded_sft(&state)?;
            let lm = model_named(&state, &which)?;
            tinyrlhf_rlhf::data::rankings::check_answers_to_rank(k, "K").map_err(js)?;
            let room = max_new_tokens.max(1);
            let (ids, truncated) = prompt_ids(&model, &prompt, room)?;
            let prompt_tokens = ids.len();
            let special = model.tokenizer.special_ids();
            let sampling = SamplingConfig { max_new_tokens: room, temperature, seed, ..SamplingConfig::default() };
            let before = tinyrlhf_model::launches::launched();
            let out = generate(&lm, &vec![ids; k], special.eos, special.pad, &sampling).await.map_err(js)?;
            let steps = out.tokens.iter().map(Vec::len).max().unwrap_or(0).max(1);
            let launched = tinyrlhf_model::launches::since(before).map(|launched| launched as f64 / steps as f64);
            let kernels_per_token = launched.filter(|_| backend == "webgpu");
            let texts = out.tokens.iter().map(|t| model.tokenizer.decode_response(t)).collect::<Result<Vec<_>, _>>().map_err(js)?;
            let tokens = out.tokens.iter().map(Vec::len).sum();
            let (completions, finished) = tinyrlhf_data::distinct(&texts, &out.finished);
            json_value(&Samples { completions, finished, truncated, prompt_tokens, tokens, kernels_per_token })
        })
    }
}

/// A model's weights read in pieces (the worker passes slices of the person's `File`), so that
/// the tab never holds the whole file: each tensor becomes f32 as soon as it has arrived. The
/// first bytes say the format: a GGUF file (for [`Session::load_gguf`]) or `model.safetensors`.
#[wasm_bindgen]
#[derive(Default)]
pub struct WeightsUpload {
    upload: Upload,
    /// Where a GGUF base's rows past this worker's go, when its workers share it (`rows.rs`).
    rows: Option<Arc<rows::PageRows>>,
}

#[derive(Default)]
enum Upload {
    #[default]
    Unknown,
    Safetensors(WeightsStream),
    Gguf(GgufStream),
}

#[wasm_bindgen]
impl WeightsUpload {
    #[wasm_bindgen(constructor)]
    pub fn new() -> WeightsUpload {
        WeightsUpload::default()
    }

    /// An upload whose GGUF base, when it is too large for each worker to hold a copy, is held
    /// between this worker and row-helper workers (the page's `tinyrlhfRows`): one per core, or as
    /// many as the page's `?workers=N` asks for.
    #[wasm_bindgen(js_name = sharingRows)]
    pub fn sharing_rows(cores: usize, requested: Option<usize>) -> WeightsUpload {
        WeightsUpload { rows: Some(rows::PageRows::new(cores, requested)), ..WeightsUpload::default() }
    }

    /// The file's next bytes, in order. A GGUF model too large for the tab is refused as soon as
    /// its header has arrived, before its weights are read.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), JsError> {
        if matches!(self.upload, Upload::Unknown) {
            self.upload = match &self.rows {
                _ if !bytes.starts_with(b"GGUF") => Upload::Safetensors(WeightsStream::new()),
                Some(rows) => Upload::Gguf(GgufStream::sharing_rows(rows.clone())),
                None => Upload::Gguf(GgufStream::new()),
            };
        }
        match &mut self.upload {
            Upload::Gguf(stream) => {
                let known = stream.config_json().is_some();
                stream.push(bytes).map_err(|e| js(format!("GGUF file: {e}")))?;
                if let (false, Some(config)) = (known, stream.config_json()) {
                    let config = ModelConfig::from_json_bytes(&config).map_err(|e| js(format!("GGUF file: {e}")))?;
                    tinyrlhf_rlhf::check_fits_tab(&config, stream.held_bytes()).map_err(js)?;
                }
                Ok(())
            }
            Upload::Safetensors(stream) => stream.push(bytes).map_err(|e| js(format!("model.safetensors: {e}"))),
            Upload::Unknown => unreachable!("set above"),
        }
    }
}

impl WeightsUpload {
    /// The tensors under their HF names, whichever format they came in.
    fn finish(self) -> Result<tinyrlhf_model::Weights, JsError> {
        match self.upload {
            Upload::Gguf(stream) => stream.finish().map(|m| m.weights).map_err(|e| js(format!("GGUF file: {e}"))),
            Upload::Safetensors(stream) => stream.finish().map_err(|e| js(format!("model.safetensors: {e}"))),
            Upload::Unknown => Err(js("the weights file is empty")),
        }
    }
}
