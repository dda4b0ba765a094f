//! tinyrlhf in the browser: the one thin file between the page's Web Worker and the library crates:
//! load models, sample, train the reward model and run PPO step by step, explain and compare.
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
use tinyrlhf_model::{Gpt, GptConfig, SamplingConfig, ScalarModel, generate};
use tinyrlhf_rlhf::{
    PpoConfig, PpoModels, PpoTrainer, RankingSet, RewardConfig, RewardTrainer, TokenRanking, calibrate, check_same_shape, explain_response,
    response_kl,
};
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

/// Everything a session holds besides the device. Trainers are taken out while they step, so no
/// borrow lives across an await (the worker also runs one request at a time).
#[derive(Default)]
struct State {
    sft: Option<Rc<Model>>,
    base: Option<Gpt>,
    reward: Option<ScalarModel>,
    reward_trainer: Option<RewardTrainer>,
    calibration: Vec<Vec<u32>>,
    ppo: Option<PpoTrainer>,
    policy: Option<Gpt>,
}

/// One SFT model on one device, and what the tab trains from it.
#[wasm_bindgen]
pub struct Session {
    device: Device,
    backend: String,
    state: Rc<RefCell<State>>,
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

fn promise(f: impl std::future::Future<Output = Result<JsValue, JsError>> + 'static) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move { f.await.map_err(JsValue::from) })
}

fn json_value<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    Ok(JsValue::from_str(&to_json(value)?))
}

fn sft(state: &Rc<RefCell<State>>) -> Result<Rc<Model>, JsError> {
    state.borrow().sft.clone().ok_or_else(|| js("no model is loaded"))
}

/// Prompt ids that leave `room` tokens for the answer, and whether the prompt was cut.
fn prompt_ids(model: &Model, prompt: &str, room: usize) -> Result<(Vec<u32>, bool), JsError> {
    model.tokenizer.encode_prompt_within(prompt, model.config.n_positions - room).map_err(js)
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
        Ok(Session { device, backend, state: Rc::default() })
    }

    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Loads the SFT model directory's three files. On any error the current model stays.
    /// Returns the model's shape as JSON.
    pub fn load(&self, config_json: &[u8], safetensors: &[u8], tokenizer_json: &[u8]) -> Result<String, JsError> {
        let tokenizer = Tokenizer::from_json_bytes(tokenizer_json).map_err(|e| js(format!("tokenizer.json: {e}")))?;
        let (config, gpt) = tinyrlhf_model::load_gpt(config_json, safetensors, &self.device).map_err(|e| js(format!("model: {e}")))?;
        if config.vocab_size != tokenizer.vocab_size() {
            return Err(js(format!(
                "the model's vocabulary ({}) does not match the tokenizer's ({})",
                config.vocab_size,
                tokenizer.vocab_size()
            )));
        }
        let info = ModelInfo {
            parameters: config.num_params(),
            layers: config.n_layer,
            width: config.n_embd,
            heads: config.n_head,
            context: config.n_positions,
            vocab: config.vocab_size,
        };
        self.state.borrow_mut().sft = Some(Rc::new(Model { config, gpt, tokenizer }));
        to_json(&info)
    }

    /// Checks that `config.json` describes the SFT model's shape, before anything is built from it
    /// (a config can ask for any size; building first would let it exhaust the tab's memory).
    fn same_config(&self, config_json: &[u8]) -> Result<(), JsError> {
        let model = sft(&self.state)?;
        let config = GptConfig::from_json_bytes(config_json).map_err(js)?;
        check_same_shape("this model", &model.config, &config).map_err(js)?;
        Ok(())
    }

    /// A model of the SFT model's shape from `config.json` + `model.safetensors` bytes, or an error
    /// naming what does not fit.
    fn same_shape(&self, config_json: &[u8], safetensors: &[u8]) -> Result<Gpt, JsError> {
        self.same_config(config_json)?;
        let (_, gpt) = tinyrlhf_model::load_gpt(config_json, safetensors, &self.device).map_err(|e| js(format!("model: {e}")))?;
        Ok(gpt)
    }

    /// Loads the base (pretrained) model for the comparison view.
    #[wasm_bindgen(js_name = loadBase)]
    pub fn load_base(&self, config_json: &[u8], safetensors: &[u8]) -> Result<(), JsError> {
        let gpt = self.same_shape(config_json, safetensors)?;
        self.state.borrow_mut().base = Some(gpt);
        Ok(())
    }

    /// Loads a tuned policy (saved by the tab or by `tinyrlhf ppo`). On error the current one stays.
    #[wasm_bindgen(js_name = loadPolicy)]
    pub fn load_policy(&self, config_json: &[u8], safetensors: &[u8]) -> Result<(), JsError> {
        let gpt = self.same_shape(config_json, safetensors)?;
        let mut state = self.state.borrow_mut();
        state.policy = Some(gpt);
        state.ppo = None;
        Ok(())
    }

    /// Loads a reward model saved by the tab or by `tinyrlhf reward`.
    #[wasm_bindgen(js_name = loadReward)]
    pub fn load_reward(&self, config_json: &[u8], safetensors: &[u8]) -> Result<(), JsError> {
        self.same_config(config_json)?;
        let (_, reward) =
            tinyrlhf_model::load_scalar_model(config_json, safetensors, &self.device).map_err(|e| js(format!("reward model: {e}")))?;
        self.state.borrow_mut().reward = Some(reward);
        Ok(())
    }

    /// The SFT model's `config.json`, which every exported model of this session shares.
    #[wasm_bindgen(js_name = configJson)]
    pub fn config_json(&self) -> Result<String, JsError> {
        Ok(sft(&self.state)?.config.to_json())
    }

    /// `k` answers to `prompt` from `which` model ("sft", "base" or "policy"), sampled together,
    /// repeats removed (a ranking orders different answers), so fewer than `k` may come back.
    /// Resolves to JSON `{completions, finished, truncated, tokens}`.
    pub fn sample(&self, which: String, prompt: String, k: usize, temperature: f32, max_new_tokens: usize, seed: u64) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let model = sft(&state)?;
            let gpt = match which.as_str() {
                "sft" => model.gpt.clone(),
                "base" => state.borrow().base.clone().ok_or_else(|| js("the base model is not loaded"))?,
                "policy" => state.borrow().policy.clone().unwrap_or_else(|| model.gpt.clone()),
                other => return Err(js(format!("unknown model {other:?}"))),
            };
            if !(1..=Ranking::MAX_COMPLETIONS).contains(&k) {
                return Err(js(format!("K = {k}: sample 1 to {} answers at a time", Ranking::MAX_COMPLETIONS)));
            }
            let room = max_new_tokens.clamp(1, model.config.n_positions - 1);
            let (ids, truncated) = prompt_ids(&model, &prompt, room)?;
            let special = model.tokenizer.special_ids();
            let sampling = SamplingConfig { max_new_tokens: room, temperature, top_k: 0, top_p: 1.0, seed };
            let out = generate(&gpt, &vec![ids; k], special.eos, special.pad, &sampling).await.map_err(js)?;
            let texts = out.tokens.iter().map(|t| model.tokenizer.decode_response(t)).collect::<Result<Vec<_>, _>>().map_err(js)?;
            let tokens = out.tokens.iter().map(Vec::len).sum();
            let completions = tinyrlhf_data::distinct(&texts);
            let finished = completions.iter().map(|c| out.finished[texts.iter().position(|t| t == c).unwrap_or(0)]).collect();
            json_value(&Samples { completions, finished, truncated, tokens })
        })
    }

    /// Starts training a reward model from the SFT model on `rankings` (JSON list), split and
    /// tokenized as [`RankingSet::prepare`] decides. Resolves to `{train, held_out, pairs, steps,
    /// skipped, prompts_cut}` (`skipped`: a sentence, or null).
    #[wasm_bindgen(js_name = startReward)]
    pub fn start_reward(&self, rankings_json: &str, epochs: usize, lr: f64, seed: u64) -> Result<String, JsError> {
        let model = sft(&self.state)?;
        let rankings: Vec<Ranking> = serde_json::from_str(rankings_json).map_err(js)?;
        let set = RankingSet::prepare(&model.tokenizer, &rankings, None, model.config.n_positions);
        if set.train.len() + set.held_out.len() < 2 {
            let skipped = set.skipped_summary().map(|s| format!("; {s}")).unwrap_or_default();
            return Err(js(format!(
                "a reward model needs at least 2 usable rankings; there are {}{skipped}",
                set.train.len() + set.held_out.len()
            )));
        }
        let calibration = set.calibration_set();
        let info = serde_json::json!({
            "train": set.train.len(), "held_out": set.held_out.len(), "pairs": set.train_pairs(),
            "skipped": set.skipped_summary(), "prompts_cut": set.prompts_cut,
        });
        let RankingSet { train, held_out, .. } = set;
        self.device.seed(seed);
        let settings = RewardConfig { epochs, lr, seed, ..RewardConfig::default() };
        let pad = model.tokenizer.special_ids().pad;
        let trainer = RewardTrainer::new(model.gpt.clone(), model.config.clone(), train, held_out, pad, settings).map_err(js)?;
        let mut info = info;
        info["steps"] = trainer.total_steps().into();
        let mut state = self.state.borrow_mut();
        state.reward_trainer = Some(trainer);
        state.calibration = calibration;
        Ok(info.to_string())
    }

    /// One reward-model step. Resolves to `{stats, done}`; on the last step the model is
    /// calibrated (SFT answers score mean 0, std 1) and becomes the session's reward model.
    #[wasm_bindgen(js_name = rewardStep)]
    pub fn reward_step(&self) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let mut trainer = state.borrow_mut().reward_trainer.take().ok_or_else(|| js("no reward model is being trained"))?;
            let stats = trainer.step().await.map_err(js)?;
            let done = trainer.is_done();
            if done {
                let calibration = std::mem::take(&mut state.borrow_mut().calibration);
                let pad = sft(&state)?.tokenizer.special_ids().pad;
                let (model, _) = calibrate(trainer.model(), &calibration, true, pad).await.map_err(js)?;
                // The policy was tuned against the old reward model: the next run starts from SFT.
                let mut s = state.borrow_mut();
                s.reward = Some(model);
                s.policy = None;
                s.ppo = None;
            } else {
                state.borrow_mut().reward_trainer = Some(trainer);
            }
            json_value(&serde_json::json!({"stats": stats, "done": done}))
        })
    }

    /// The reward model's scores of `completions` (JSON list) as answers to `prompt`.
    pub fn scores(&self, prompt: String, completions_json: String) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let model = sft(&state)?;
            let reward = state.borrow().reward.clone().ok_or_else(|| js("there is no reward model yet"))?;
            let completions: Vec<String> = serde_json::from_str(&completions_json).map_err(js)?;
            let order: Vec<usize> = (0..completions.len()).collect();
            let tokens = TokenRanking::new(&model.tokenizer, &prompt, &completions, &order, model.config.n_positions).map_err(js)?;
            let scores =
                tinyrlhf_rlhf::reward::score_sequences(&reward, &tokens.sequences, model.tokenizer.special_ids().pad, &model.gpt.device());
            let scores: Vec<f32> =
                scores.into_data_async().await.map_err(|e| js(format!("{e:?}")))?.try_to_vec().map_err(|e| js(format!("{e:?}")))?;
            json_value(&scores)
        })
    }

    /// Starts PPO from the current policy (the SFT model at first) against the reward model, on
    /// `prompts` (JSON list of strings) with `settings` (JSON of `PpoConfig` fields; missing ones
    /// take the defaults).
    #[wasm_bindgen(js_name = startPpo)]
    pub fn start_ppo(&self, prompts_json: &str, settings_json: &str) -> Result<(), JsError> {
        let model = sft(&self.state)?;
        let reward = self.state.borrow().reward.clone().ok_or_else(|| js("train a reward model first"))?;
        let prompts: Vec<String> = serde_json::from_str(prompts_json).map_err(js)?;
        let mut settings = serde_json::to_value(PpoConfig::default()).map_err(js)?;
        let overrides: serde_json::Value = serde_json::from_str(settings_json).map_err(js)?;
        if let (Some(base), Some(over)) = (settings.as_object_mut(), overrides.as_object()) {
            base.extend(over.clone());
        }
        let settings: PpoConfig = serde_json::from_value(settings).map_err(|e| js(format!("PPO settings: {e}")))?;
        let room = settings.max_new_tokens + 1;
        let ids = prompts.iter().map(|p| prompt_ids(&model, p, room).map(|(ids, _)| ids)).collect::<Result<Vec<_>, _>>()?;
        let special = model.tokenizer.special_ids();
        let policy = self.state.borrow().policy.clone();
        let models = PpoModels { sft: model.gpt.clone(), config: model.config.clone(), reward, value: None, policy };
        let trainer = PpoTrainer::new(models, ids, vec![], special.eos, special.pad, settings).map_err(js)?;
        self.state.borrow_mut().ppo = Some(trainer);
        Ok(())
    }

    /// One PPO iteration. Resolves to its stats with the first rollout as text (`sample`).
    #[wasm_bindgen(js_name = ppoStep)]
    pub fn ppo_step(&self) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let model = sft(&state)?;
            let mut trainer = state.borrow_mut().ppo.take().ok_or_else(|| js("PPO has not been started"))?;
            let result = trainer.step().await;
            let policy = trainer.policy();
            {
                let mut s = state.borrow_mut();
                s.ppo = Some(trainer);
                s.policy = Some(policy);
            }
            let stats = result.map_err(js)?;
            let mut value = serde_json::to_value(&stats).map_err(js)?;
            value["sample"] = serde_json::json!({
                "prompt": model.tokenizer.decode_text(&stats.sample_prompt).map_err(js)?,
                "response": model.tokenizer.decode_response(&stats.sample_response).map_err(js)?,
            });
            json_value(&value)
        })
    }

    /// The current policy's `model.safetensors` bytes (HF GPT-2 names).
    #[wasm_bindgen(js_name = policyWeights)]
    pub fn policy_weights(&self) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let policy = state.borrow().policy.clone().ok_or_else(|| js("there is no tuned policy yet"))?;
            let bytes = tinyrlhf_model::save_gpt(&policy).await.map_err(js)?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// The reward model's `model.safetensors` bytes (HF `GPT2ForSequenceClassification` + bias).
    #[wasm_bindgen(js_name = rewardWeights)]
    pub fn reward_weights(&self) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let reward = state.borrow().reward.clone().ok_or_else(|| js("there is no reward model yet"))?;
            let bytes = tinyrlhf_model::save_scalar_model(&reward).await.map_err(js)?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// Per-token log pi/pi_ref and advantage of the policy's answer `response` to `prompt`, with
    /// the tokens as text. Resolves to `{tokens, log_ratio, advantage, score}`.
    pub fn explain(&self, prompt: String, response: String, temperature: f32) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let model = sft(&state)?;
            let (policy, reward, value, beta) = {
                let s = state.borrow();
                let reward = s.reward.clone().ok_or_else(|| js("there is no reward model yet"))?;
                let value = s.ppo.as_ref().map_or_else(|| reward.clone(), PpoTrainer::value_model);
                let beta = s.ppo.as_ref().map_or(PpoConfig::default().kl_coef, PpoTrainer::beta);
                (s.policy.clone().unwrap_or_else(|| model.gpt.clone()), reward, value, beta)
            };
            let response_ids = model.tokenizer.encode_response(&response).map_err(js)?;
            let (prompt_ids, _) = prompt_ids(&model, &prompt, response_ids.len() + 1)?;
            let settings = PpoConfig { temperature, ..PpoConfig::default() };
            let special = model.tokenizer.special_ids();
            let explained = explain_response(
                &policy,
                &model.gpt,
                &value,
                &reward,
                &prompt_ids,
                &response_ids,
                &settings,
                beta,
                special.eos,
                special.pad,
            )
            .await
            .map_err(js)?;
            let tokens = response_ids.iter().map(|&t| model.tokenizer.decode(&[t])).collect::<Result<Vec<_>, _>>().map_err(js)?;
            json_value(
                &serde_json::json!({"tokens": tokens, "log_ratio": explained.log_ratio, "advantage": explained.advantage, "score": explained.score}),
            )
        })
    }

    /// Blind comparison of the policy with the SFT model on `prompts` (JSON list), judged by
    /// `labeler`: one answer each per prompt. Resolves to `{win_rate, wins, ties, losses, kl}`.
    pub fn evaluate(&self, prompts_json: String, labeler: String, temperature: f32, seed: u64) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let model = sft(&state)?;
            let labeler: Labeler = labeler.parse().map_err(js)?;
            let policy = state.borrow().policy.clone().unwrap_or_else(|| model.gpt.clone());
            let prompts: Vec<String> = serde_json::from_str(&prompts_json).map_err(js)?;
            let max_new = 48;
            let ids = prompts.iter().map(|p| prompt_ids(&model, p, max_new).map(|(ids, _)| ids)).collect::<Result<Vec<_>, _>>()?;
            let special = model.tokenizer.special_ids();
            let sampling = |seed| SamplingConfig { max_new_tokens: max_new, temperature, top_k: 0, top_p: 1.0, seed };
            let ours = generate(&policy, &ids, special.eos, special.pad, &sampling(seed)).await.map_err(js)?;
            let theirs = generate(&model.gpt, &ids, special.eos, special.pad, &sampling(seed ^ 0xA5A5)).await.map_err(js)?;
            let decode = |tokens: &[Vec<u32>]| tokens.iter().map(|t| model.tokenizer.decode_response(t)).collect::<Result<Vec<_>, _>>();
            let tally = labeler.tally(&prompts, &decode(&ours.tokens).map_err(js)?, &decode(&theirs.tokens).map_err(js)?);
            let kl = response_kl(&policy, &model.gpt, &ids, &ours.tokens, temperature, special.eos, special.pad).await.map_err(js)?;
            let n = prompts.len().max(1) as f64;
            json_value(&serde_json::json!({
                "win_rate": tally.win_rate(), "wins": tally.wins, "ties": tally.ties, "losses": tally.losses,
                "kl": kl.iter().sum::<f64>() / n,
                "eos_rate": ours.finished.iter().filter(|&&f| f).count() as f64 / n,
            }))
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

/// Rankings (or TRL pairs) from a JSONL file's bytes, decoded strictly, as a JSON list; the error
/// names `file`, line and field.
#[wasm_bindgen(js_name = parseRankings)]
pub fn parse_rankings(file: &str, bytes: &[u8]) -> Result<String, JsError> {
    to_json(&tinyrlhf_data::read_preferences(file, bytes).map_err(js)?)
}

/// The same checks as a file's ranking gets (K, distinct answers, a permutation), for a ranking
/// made in the page; the error names the field.
#[wasm_bindgen(js_name = checkRanking)]
pub fn check_ranking(ranking_json: &str) -> Result<(), JsError> {
    let ranking: Ranking = serde_json::from_str(ranking_json).map_err(js)?;
    ranking.check().map_err(js)
}

/// The limits the page checks before sending work: `{max_completions, max_file_bytes}`.
#[wasm_bindgen]
pub fn limits() -> Result<String, JsError> {
    to_json(&serde_json::json!({"max_completions": Ranking::MAX_COMPLETIONS, "max_file_bytes": tinyrlhf_data::MAX_FILE_BYTES}))
}

/// Traps the module on purpose (a wasm `unreachable`, as any panic would), so the browser tests can
/// prove the page recovers from a dead worker. Nothing calls it but those tests.
#[wasm_bindgen(js_name = trapForTests)]
pub fn trap_for_tests() {
    std::process::abort()
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

/// A scripted labeler's strict ranking of `completions` (ties dropped) as a ranking record, or
/// `null` when it cannot tell two of them apart.
#[wasm_bindgen(js_name = strictRanking)]
pub fn strict_ranking(labeler: &str, prompt: &str, completions_json: &str) -> Result<String, JsError> {
    let labeler: Labeler = labeler.parse().map_err(js)?;
    let completions: Vec<String> = serde_json::from_str(completions_json).map_err(js)?;
    to_json(&labeler.strict_ranking(prompt, &completions))
}

/// `n` prompts of the built-in world's training set (never the held-out ones), as a JSON list.
#[wasm_bindgen(js_name = trainingPrompts)]
pub fn training_prompts(n: usize, seed: u64) -> Result<String, JsError> {
    to_json(&tinyrlhf_data::training_prompts(seed, n).into_iter().map(|p| p.prompt).collect::<Vec<_>>())
}
