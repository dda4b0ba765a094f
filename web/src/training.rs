//! Training in the tab, one step per call so the page can chart, pause and stop between steps: the
//! reward model, then a policy by any method (PPO, GRPO, RLOO from the reward model; DPO from the
//! rankings alone). Each method's policy is kept under the method's name, and a new run of a method
//! continues from its policy. Settings arrive as the person's changes only; the defaults are the
//! library's.

use std::rc::Rc;

use burn::module::Module;
use serde::Serialize;
use tinyrlhf_data::Ranking;
use tinyrlhf_model::ScalarModel;
use tinyrlhf_rlhf::{
    Method, MethodSettings, OtherBase, PolicyInputs, PolicyTrainer, RankingSet, RewardConfig, RewardTrainer, TrainCheckpoint, Trainer,
    check_adapter_base, with_changes,
};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::{Model, Session, State, js, json_value, loaded_sft, promise, sft_identity, to_json};

/// One step of `run`; its stats as JSON, with the sampled answer shown (as text) where there is
/// one, whether the run is done, and on WebGPU the kernels the step launched (`gpu_kernels`).
async fn step_json(run: &mut PolicyTrainer, model: &Model, on_gpu: bool) -> Result<serde_json::Value, JsError> {
    let before = tinyrlhf_model::launches::launched();
    let stats = run.step().await.map_err(js)?;
    let launched = tinyrlhf_model::launches::since(before).filter(|_| on_gpu);
    let mut value = serde_json::to_value(&stats).map_err(js)?;
    if let Some(map) = value.as_object_mut() {
        // Token ids mean nothing to the page: the text replaces them.
        map.remove("sample_prompt");
        map.remove("sample_response");
    }
    if let Some((prompt, response)) = stats.sample() {
        value["sample"] = serde_json::json!({
            "prompt": model.tokenizer.decode_text(prompt).map_err(js)?,
            "response": model.tokenizer.decode_response(response).map_err(js)?,
        });
    }
    value["done"] = run.is_done().into();
    if let Some(launched) = launched {
        value["gpu_kernels"] = launched.into();
    }
    Ok(value)
}

/// What a new policy run will do: `total` steps (iterations for the methods that sample answers),
/// and for DPO the rankings it learns from.
#[derive(Serialize)]
struct RunPlan {
    method: Method,
    total: usize,
    /// Whether it continues from this method's saved policy (else it starts at SFT).
    continues: bool,
    /// The steps an interrupted run had done when it was saved, for a run resumed from its
    /// checkpoint: `total` are the steps it has left.
    resumed_at: Option<usize>,
    train: Option<usize>,
    held_out: Option<usize>,
    pairs: Option<usize>,
    skipped: Option<String>,
}

/// Rankings ready to learn from, or an error saying why there are too few.
fn ranking_set(model: &Model, rankings_json: &str, what: &str) -> Result<RankingSet, JsError> {
    let rankings: Vec<Ranking> = serde_json::from_str(rankings_json).map_err(js)?;
    let set = RankingSet::prepare(&model.tokenizer, &rankings, None, model.config.context_length());
    set.check_trainable(&format!("{what}: this tab")).map_err(js)?;
    Ok(set)
}

pub(crate) fn changes(json: &str) -> Result<serde_json::Value, JsError> {
    if json.trim().is_empty() { Ok(serde_json::Value::Null) } else { serde_json::from_str(json).map_err(|e| js(format!("settings: {e}"))) }
}

#[wasm_bindgen]
impl Session {
    /// Starts training a reward model from the SFT model on `rankings` (JSON list), split and
    /// tokenized as [`RankingSet::prepare`] decides; `changes_json`: the settings the person
    /// changed. Resolves to `{train, held_out, pairs, steps, skipped, prompts_cut}`.
    #[wasm_bindgen(js_name = startReward)]
    pub fn start_reward(&self, rankings_json: &str, changes_json: &str) -> Result<String, JsError> {
        let model = loaded_sft(&self.state)?;
        let settings: RewardConfig = with_changes(RewardConfig::default(), &changes(changes_json)?, "reward model").map_err(js)?;
        let set = ranking_set(&model, rankings_json, "a reward model")?;
        let mut info = serde_json::json!({
            "train": set.train.len(), "held_out": set.held_out.len(), "pairs": set.train_pairs(),
            "skipped": set.skipped_summary(), "prompts_cut": set.prompts_cut,
        });
        self.device.seed(settings.train.seed);
        let pad = model.tokenizer.special_ids().pad;
        let mut trainer = RewardTrainer::on_rankings(model.model.clone(), model.config.clone(), set, pad, settings).map_err(js)?;
        info["steps"] = trainer.total_steps().into();
        let mut state = self.state.borrow_mut();
        if let Some(peers) = &state.peers {
            trainer.set_peers(peers.clone());
        }
        state.reward_trainer = Some(trainer);
        Ok(info.to_string())
    }

    /// One reward-model step. Resolves to `{stats, done, dropped}`; on the last step the model is
    /// calibrated (SFT answers score mean 0, std 1) and becomes the session's reward model, and the
    /// policies tuned against the old one are dropped (`dropped`: their names).
    #[wasm_bindgen(js_name = rewardStep)]
    pub fn reward_step(&self) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let mut trainer = state.borrow_mut().reward_trainer.take().ok_or_else(|| js("no reward model is being trained"))?;
            let stats = trainer.step().await.map_err(js)?;
            let done = trainer.is_done();
            let mut dropped = vec![];
            if done {
                let calibrated = trainer.calibrated().await.map_err(js)?;
                let mut s = state.borrow_mut();
                s.reward = Some(calibrated.model);
                s.reward_lora = calibrated.lora;
                dropped = Method::ALL.into_iter().filter(|m| m.needs_reward_model()).map(Method::name).collect();
                s.policies.retain(|name, _| !dropped.contains(&name.as_str()));
                s.adapters.retain(|name, _| !dropped.contains(&name.as_str()));
                if s.run.as_ref().is_some_and(|r| r.method().needs_reward_model()) {
                    s.run = None;
                }
            } else {
                state.borrow_mut().reward_trainer = Some(trainer);
            }
            json_value(&serde_json::json!({"stats": stats, "done": done, "dropped": dropped}))
        })
    }

    /// Starts a `method` run ("ppo", "grpo", "rloo" or "dpo") from that method's policy (SFT at
    /// first): the sampling methods on `prompts` (JSON list) against the reward model, DPO on
    /// `rankings` (JSON list). `changes_json`: the settings the person changed. With `checkpoint`
    /// (the files `runCheckpoint` gave after a step of an interrupted run), that run goes on where
    /// it stopped, as `tinyrlhf --resume` does: its settings but the number of iterations, Adam's
    /// moments, its step and (PPO) value model. Resolves to the run's plan, `{method, total,
    /// continues, resumed_at, train, held_out, pairs, skipped}`.
    #[wasm_bindgen(js_name = startTraining)]
    pub fn start_training(
        &self,
        method: String,
        prompts_json: String,
        rankings_json: String,
        changes_json: String,
        checkpoint: Option<js_sys::Object>,
    ) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let method: Method = method.parse().map_err(js)?;
            let settings = MethodSettings::with_changes(method, &changes(&changes_json)?).map_err(js)?;
            let model = loaded_sft(&state)?;
            let start = state.borrow().policies.get(method.name()).cloned();
            let mut plan = RunPlan {
                method,
                total: 0,
                continues: start.is_some(),
                resumed_at: None,
                train: None,
                held_out: None,
                pairs: None,
                skipped: None,
            };
            let mut inputs = PolicyInputs {
                policy: start,
                reward: state.borrow().reward.clone(),
                ..PolicyInputs::new(model.model.clone(), model.config.clone(), model.tokenizer.special_ids())
            };
            match settings.max_new_tokens() {
                Some(new_tokens) => inputs.prompts = training_prompt_ids(&model, &prompts_json, new_tokens)?,
                None => {
                    let set = ranking_set(&model, &rankings_json, "DPO")?;
                    (plan.train, plan.held_out, plan.pairs, plan.skipped) =
                        (Some(set.train.len()), Some(set.held_out.len()), Some(set.train_pairs()), set.skipped_summary());
                    (inputs.rankings, inputs.held_out) = (set.train, set.held_out);
                }
            }
            // An interrupted run goes on, unless it has done the steps now asked of it: then a new
            // one starts from its policy.
            let resumed = match checkpoint {
                Some(files) => {
                    let checkpoint = TrainCheckpoint::from_files(|name| {
                        js_sys::Reflect::get(&files, &name.into())
                            .ok()
                            .and_then(|v| v.dyn_into::<js_sys::Uint8Array>().ok())
                            .map(|b| b.to_vec())
                    });
                    let run = PolicyTrainer::resume(&settings, &checkpoint.map_err(js)?, inputs.clone()).await;
                    Some(run.map_err(|e| js(format!("the saved run cannot go on: {e}")))?).filter(|run| !run.is_done())
                }
                None => None,
            };
            plan.resumed_at = resumed.as_ref().map(|run| run.steps_done());
            let mut run = match resumed {
                Some(run) => run,
                None => PolicyTrainer::new(settings, inputs).await.map_err(js)?,
            };
            plan.total = run.total_steps().saturating_sub(run.steps_done());
            if let Some(peers) = state.borrow().peers.clone() {
                run.set_peers(peers);
            }
            state.borrow_mut().run = Some(run);
            json_value(&plan)
        })
    }

    /// What the current run needs to go on after a reload, as named files (`{name: Uint8Array}`,
    /// the CLI's `checkpoint/` folder): for `startTraining`.
    #[wasm_bindgen(js_name = runCheckpoint)]
    pub fn run_checkpoint(&self) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let run = state.borrow_mut().run.take().ok_or_else(|| js("no training run has been started"))?;
            let checkpoint = run.checkpoint().await;
            state.borrow_mut().run = Some(run);
            let files = js_sys::Object::new();
            for (name, bytes) in checkpoint.map_err(js)?.files() {
                js_sys::Reflect::set(&files, &name.into(), &js_sys::Uint8Array::from(bytes).into())
                    .map_err(|_| js("could not build the run's checkpoint"))?;
            }
            Ok(files.into())
        })
    }

    /// One step of the current run, with the KL leash moved to `beta` first when given (a bad
    /// value is refused and the run stays as it was). Resolves to its stats (named as the method
    /// names them) with `done`, and `sample` (the first answer of the rollout, as text) for the
    /// sampling methods. The method's policy after the step replaces the one kept under its name.
    /// A step that fails (a worker stopped mid-update) ends the run and keeps the policy of the
    /// last completed step: the failed one may have moved part of the weights.
    #[wasm_bindgen(js_name = trainStep)]
    pub fn train_step(&self, beta: Option<f64>) -> js_sys::Promise {
        let (state, on_gpu) = (self.state.clone(), self.backend == "webgpu");
        promise(async move {
            let model = loaded_sft(&state)?;
            if let Some(beta) = beta {
                state.borrow_mut().run.as_mut().ok_or_else(|| js("no training run has been started"))?.set_beta(beta).map_err(js)?;
            }
            let mut run = state.borrow_mut().run.take().ok_or_else(|| js("no training run has been started"))?;
            let stats = step_json(&mut run, &model, on_gpu).await?;
            let mut s = state.borrow_mut();
            let name = run.method().name().to_string();
            match run.lora() {
                Some(lora) => s.adapters.insert(name.clone(), lora.clone()),
                None => s.adapters.remove(&name),
            };
            s.policies.insert(name, run.policy());
            s.run = Some(run);
            json_value(&stats)
        })
    }

    /// The `model.safetensors` bytes (its family's HF names) of the policy kept as `name`.
    #[wasm_bindgen(js_name = policyWeights)]
    pub fn policy_weights(&self, name: String) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let policy = state.borrow().policies.get(&name).cloned().ok_or_else(|| js(format!("there is no {name} policy yet")))?;
            let bytes = tinyrlhf_model::save_lm(&policy).await.map_err(js)?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// The adapters of the policy kept as `name`, when it was trained here with LoRA, as the files
    /// `tinyrlhf` writes beside a merged model: `{config}` (PEFT's `adapter_config.json`),
    /// `{safetensors}` (`adapter_model.safetensors`) and, for the Llama family, `{gguf}` (llama.cpp's
    /// LoRA file). Resolves to null for a policy without adapters.
    #[wasm_bindgen(js_name = policyAdapter)]
    pub fn policy_adapter(&self, name: String) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let (policy, lora) = {
                let s = state.borrow();
                match (s.policies.get(&name), s.adapters.get(&name)) {
                    (Some(policy), Some(lora)) => (policy.clone(), lora.clone()),
                    _ => return Ok(JsValue::NULL),
                }
            };
            let config = loaded_sft(&state)?.config.clone();
            let (adapter_config, safetensors) = tinyrlhf_model::save_peft_adapter(&policy, &lora).await.map_err(js)?;
            let safetensors = tinyrlhf_model::with_recorded_base(&safetensors, &sft_identity(&state).await?).map_err(js)?;
            let gguf = tinyrlhf_model::gguf_lora_adapter(&config, &safetensors, lora.alpha).map_err(js)?;
            adapter_files(adapter_config, &safetensors, gguf.as_deref())
        })
    }

    /// Keeps a tuned policy (saved by the tab, or written by the CLI) as `name`: `safetensors` is a
    /// whole model, or with `adapter_config` (PEFT's `adapter_config.json`, as `policyAdapter` gives
    /// it) a LoRA policy's adapter, put back on the SFT model it was tuned from (what the tab saves
    /// of a LoRA policy: no merged copy). On error the current one stays. A run of that name starts
    /// over from it.
    #[wasm_bindgen(js_name = loadPolicy)]
    pub fn load_policy(&self, name: String, config_json: &[u8], safetensors: &[u8], adapter_config: Option<String>) -> Result<(), JsError> {
        let (policy, lora) = match adapter_config.filter(|_| tinyrlhf_model::is_peft_adapter(safetensors)) {
            Some(peft) => {
                self.same_config(config_json)?;
                let sft = loaded_sft(&self.state)?;
                check_adapter_base(&sft.identity, safetensors, OtherBase::Refused).map_err(|e| js(format!("adapter: {}", e.message)))?;
                let sft = sft.model.clone();
                let (lora, policy) =
                    tinyrlhf_model::load_peft_adapter(sft, peft.as_bytes(), safetensors).map_err(|e| js(format!("adapter: {e}")))?;
                (policy, Some(lora))
            }
            None => (self.same_shape(config_json, safetensors)?, None),
        };
        let mut state = self.state.borrow_mut();
        match lora {
            Some(lora) => state.adapters.insert(name.clone(), lora),
            None => state.adapters.remove(&name),
        };
        state.policies.insert(name.clone(), policy);
        if state.run.as_ref().is_some_and(|r| r.method().name() == name) {
            state.run = None;
        }
        Ok(())
    }

    /// Forgets the reward model and every tuned policy (the page has deleted their saved copies).
    #[wasm_bindgen(js_name = forgetTraining)]
    pub fn forget_training(&self) {
        self.state.borrow_mut().forget_trained();
    }

    /// The reward model's `model.safetensors` bytes (HF's `*ForSequenceClassification` + bias):
    /// with adapters, merged into a copy of the base (an export asked for it).
    #[wasm_bindgen(js_name = rewardWeights)]
    pub fn reward_weights(&self) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let reward = reward_model(&state)?;
            let bytes = tinyrlhf_model::save_scalar_model(&reward).await.map_err(js)?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// The reward model's adapters and score head, when it was trained here with LoRA: `{config}`
    /// (PEFT's `adapter_config.json`, a `SEQ_CLS` task) and `{safetensors}`, what the tab saves and
    /// hands its helpers instead of a merged copy of the base. Resolves to null without adapters.
    #[wasm_bindgen(js_name = rewardAdapter)]
    pub fn reward_adapter(&self) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let (reward, lora) = {
                let s = state.borrow();
                match (&s.reward, &s.reward_lora) {
                    (Some(reward), Some(lora)) => (reward.clone(), lora.clone()),
                    _ => return Ok(JsValue::NULL),
                }
            };
            let (adapter_config, safetensors) = tinyrlhf_model::save_peft_scalar_adapter(&reward, &lora).await.map_err(js)?;
            let safetensors = tinyrlhf_model::with_recorded_base(&safetensors, &sft_identity(&state).await?).map_err(js)?;
            adapter_files(adapter_config, &safetensors, None)
        })
    }

    /// Loads a reward model saved by the tab or by `tinyrlhf reward`: `safetensors` is a whole
    /// model, or with `adapter_config` (as `rewardAdapter` gives it) its adapters and head, put on
    /// the SFT model's weights (shared, not copied). On error the current one stays.
    #[wasm_bindgen(js_name = loadReward)]
    pub fn load_reward(&self, config_json: &[u8], safetensors: &[u8], adapter_config: Option<String>) -> Result<(), JsError> {
        self.same_config(config_json)?;
        let (reward, lora) = match adapter_config.filter(|_| tinyrlhf_model::is_peft_adapter(safetensors)) {
            Some(peft) => {
                let sft = loaded_sft(&self.state)?;
                check_adapter_base(&sft.identity, safetensors, OtherBase::Refused)
                    .map_err(|e| js(format!("reward model's adapter: {}", e.message)))?;
                let start = ScalarModel::new(sft.model.clone());
                let (lora, reward) = tinyrlhf_model::load_peft_scalar_adapter(start, peft.as_bytes(), safetensors)
                    .map_err(|e| js(format!("reward model's adapter: {e}")))?;
                (reward.with_adapters_frozen().no_grad(), Some(lora))
            }
            None => {
                let (_, reward) = tinyrlhf_model::load_scalar_model(config_json, safetensors, &self.device)
                    .map_err(|e| js(format!("reward model: {e}")))?;
                (reward, None)
            }
        };
        let mut state = self.state.borrow_mut();
        state.reward = Some(reward);
        state.reward_lora = lora;
        Ok(())
    }
}

/// An adapter's files as the page takes them: `{config, safetensors, gguf}` (`gguf` null where
/// llama.cpp has no reader for it).
fn adapter_files(config: String, safetensors: &[u8], gguf: Option<&[u8]>) -> Result<JsValue, JsError> {
    let files = js_sys::Object::new();
    let set = |key: &str, value: JsValue| {
        js_sys::Reflect::set(&files, &key.into(), &value).map_err(|_| js("could not build the adapter's files"))
    };
    set("config", config.into())?;
    set("safetensors", js_sys::Uint8Array::from(safetensors).into())?;
    set("gguf", gguf.map_or(JsValue::NULL, |bytes| js_sys::Uint8Array::from(bytes).into()))?;
    Ok(files.into())
}

/// Chat-template ids of `prompts_json` (a JSON list), each leaving room for `new_tokens`.
fn training_prompt_ids(model: &Model, prompts_json: &str, new_tokens: usize) -> Result<Vec<Vec<u32>>, JsError> {
    let prompts: Vec<String> = serde_json::from_str(prompts_json).map_err(js)?;
    tinyrlhf_rlhf::training_prompt_ids(&model.tokenizer, model.config.context_length(), &prompts, new_tokens).map_err(js)
}

/// The reward model, or the error a method that needs one reports.
pub(crate) fn reward_model(state: &Rc<std::cell::RefCell<State>>) -> Result<ScalarModel, JsError> {
    state.borrow().reward.clone().ok_or_else(|| js("there is no reward model yet"))
}

/// Every setting the page shows, with the library's defaults: `{reward, ppo, grpo, rloo, dpo}`,
/// and which methods need the reward model.
#[wasm_bindgen]
pub fn defaults() -> Result<String, JsError> {
    let methods: Vec<_> = Method::ALL
        .into_iter()
        .map(
            |m| serde_json::json!({"name": m.name(), "needs_reward_model": m.needs_reward_model(), "samples_answers": m.samples_answers()}),
        )
        .collect();
    to_json(&serde_json::json!({"settings": tinyrlhf_rlhf::all_default_settings(), "methods": methods}))
}
