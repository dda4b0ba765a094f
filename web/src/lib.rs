//! tinyrlhf in the browser: the one thin file between the page's Web Worker and the library crates.
//!
//! Boundary: bytes and JSON strings in, JSON strings out; every error is a `JsError` with a message
//! a person can read. The worker fetches files and owns this module; the page never touches it.
//! The backend is chosen here, once, at [`Session::create`]: burn on WebGPU, or burn's CPU backend
//! (flex) compiled to wasm. Which one to ask for is the worker's decision (it can see the adapter).

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;
use serde::Serialize;
use tinyrlhf_data::{Labeler, Ranking};
use tinyrlhf_model::{Gpt, GptConfig, SamplingConfig, generate};
use tinyrlhf_tokenizer::Tokenizer;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn to_json<T: Serialize>(value: &T) -> Result<String, JsError> {
    serde_json::to_string(value).map_err(js)
}

struct Model {
    config: GptConfig,
    gpt: Gpt,
    tokenizer: Tokenizer,
}

/// One model on one device.
#[wasm_bindgen]
pub struct Session {
    device: Device,
    backend: String,
    model: Rc<RefCell<Option<Rc<Model>>>>,
}

#[derive(Serialize)]
struct ModelInfo {
    parameters: usize,
    layers: usize,
    width: usize,
    heads: usize,
    context: usize,
    vocab: usize,
}

#[derive(Serialize)]
struct Samples {
    completions: Vec<String>,
    finished: Vec<bool>,
    /// The prompt was longer than the context allows and lost its beginning.
    truncated: bool,
    tokens: usize,
}

#[cfg(target_family = "wasm")]
async fn webgpu() -> Result<Device, JsError> {
    Device::wgpu_options().init_async().await.map_err(|e| js(format!("WebGPU could not be initialised: {e}")))
}

#[cfg(not(target_family = "wasm"))]
async fn webgpu() -> Result<Device, JsError> {
    Err(js("WebGPU exists only in the browser build"))
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
        Ok(Session { device, backend, model: Rc::default() })
    }

    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Loads a model directory's three files. On any error the current model stays.
    /// Returns the model's shape as JSON.
    pub fn load(&self, config_json: &[u8], safetensors: &[u8], tokenizer_json: &[u8]) -> Result<String, JsError> {
        let tokenizer = Tokenizer::from_json_bytes(tokenizer_json).map_err(|e| js(format!("tokenizer.json: {e}")))?;
        let (config, gpt) = tinyrlhf_model::load_gpt(config_json, safetensors, &self.device).map_err(|e| js(format!("model: {e}")))?;
        if config.vocab_size != tokenizer.vocab_size() {
            return Err(js(format!("the model's vocabulary ({}) does not match the tokenizer's ({})", config.vocab_size, tokenizer.vocab_size())));
        }
        let info = ModelInfo { parameters: config.num_params(), layers: config.n_layer, width: config.n_embd, heads: config.n_head, context: config.n_positions, vocab: config.vocab_size };
        *self.model.borrow_mut() = Some(Rc::new(Model { config, gpt, tokenizer }));
        to_json(&info)
    }

    /// `k` answers to `prompt`, sampled together. Resolves to JSON `{completions, finished,
    /// truncated, tokens}`.
    pub fn sample(&self, prompt: String, k: usize, temperature: f32, max_new_tokens: usize, seed: u64) -> js_sys::Promise {
        let model = self.model.borrow().clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let model = model.ok_or_else(|| js("no model is loaded"))?;
            let room = max_new_tokens.clamp(1, model.config.n_positions - 1);
            let (ids, truncated) = model.tokenizer.encode_prompt_within(&prompt, model.config.n_positions - room).map_err(js)?;
            let special = model.tokenizer.special_ids();
            let sampling = SamplingConfig { max_new_tokens: room, temperature, top_k: 0, top_p: 1.0, seed };
            let out = generate(&model.gpt, &vec![ids; k.max(1)], special.eos, special.pad, &sampling).await.map_err(js)?;
            let completions = out.tokens.iter().map(|t| model.tokenizer.decode_response(t)).collect::<Result<Vec<_>, _>>().map_err(js)?;
            let tokens = out.tokens.iter().map(Vec::len).sum();
            Ok(JsValue::from_str(&to_json(&Samples { completions, finished: out.finished, truncated, tokens })?))
        })
    }
}

/// A scripted labeler's order of `completions` (JSON list of strings), best first, as JSON.
#[wasm_bindgen(js_name = rankWithLabeler)]
pub fn rank_with_labeler(labeler: &str, prompt: &str, completions_json: &str) -> Result<String, JsError> {
    let labeler: Labeler = labeler.parse().map_err(js)?;
    let completions: Vec<String> = serde_json::from_str(completions_json).map_err(js)?;
    to_json(&labeler.rank(prompt, &completions))
}

/// Rankings (or TRL pairs) from JSONL text, as a JSON list; the error names `file`, line and field.
#[wasm_bindgen(js_name = parseRankings)]
pub fn parse_rankings(file: &str, text: &str) -> Result<String, JsError> {
    to_json(&tinyrlhf_data::read_preferences(file, text).map_err(js)?)
}

/// Rankings (a JSON list) as the CLI's rankings JSONL.
#[wasm_bindgen(js_name = rankingsToJsonl)]
pub fn rankings_to_jsonl(rankings_json: &str) -> Result<String, JsError> {
    let rankings: Vec<Ranking> = serde_json::from_str(rankings_json).map_err(js)?;
    Ok(tinyrlhf_data::write_jsonl(&rankings))
}

/// Rankings (a JSON list) as TRL pairwise JSONL: every C(K,2) pair of each ranking.
#[wasm_bindgen(js_name = rankingsToPairsJsonl)]
pub fn rankings_to_pairs_jsonl(rankings_json: &str) -> Result<String, JsError> {
    let rankings: Vec<Ranking> = serde_json::from_str(rankings_json).map_err(js)?;
    let pairs: Vec<_> = rankings.iter().flat_map(Ranking::pairs).collect();
    Ok(tinyrlhf_data::write_jsonl(&pairs))
}
