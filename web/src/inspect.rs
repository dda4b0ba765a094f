//! Looking at what training did: reward-model scores of answers, a policy's answer explained token
//! by token, and the blind head-to-head of any two models under a scripted labeler.

use tinyrlhf_data::Labeler;
use tinyrlhf_rlhf::{HeadToHeadConfig, PpoConfig, TokenRanking, explain_response, gold_and_proxy, head_to_head};
use wasm_bindgen::prelude::*;

use crate::training::reward_model;
use crate::{Session, js, json_value, loaded_sft, model_named, promise, prompt_ids};

#[wasm_bindgen]
impl Session {
    /// The reward model's scores of `completions` (JSON list) as answers to `prompt`; `finished_json`
    /// (JSON list, may be empty: all ended) says which were cut, scored as cut (no EOS).
    pub fn scores(&self, prompt: String, completions_json: String, finished_json: String) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let model = loaded_sft(&state)?;
            let reward = reward_model(&state)?;
            let completions: Vec<String> = serde_json::from_str(&completions_json).map_err(js)?;
            let finished: Vec<bool> = serde_json::from_str(&finished_json).map_err(js)?;
            let order: Vec<usize> = (0..completions.len()).collect();
            let context = model.config.context_length();
            let (tokens, _) = TokenRanking::new(&model.tokenizer, &prompt, &completions, &finished, &order, context).map_err(js)?;
            let scores = tinyrlhf_rlhf::stages::scoring::score_sequences(
                &reward,
                &tokens.sequences,
                model.tokenizer.special_ids().pad,
                &model.model.device(),
            );
            let scores: Vec<f32> = tinyrlhf_model::read_f32(scores).await.map_err(js)?;
            json_value(&scores)
        })
    }

    /// Per-token log pi/pi_ref and advantage of policy `which`'s answer `response` to `prompt`, with
    /// the tokens as text. The advantage uses the PPO run's value model while that run is live, the
    /// reward model otherwise. Resolves to `{tokens, explained}` ([`tinyrlhf_rlhf::TokenExplanation`]).
    pub fn explain(&self, which: String, prompt: String, response: String, temperature: f32) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let model = loaded_sft(&state)?;
            let policy = model_named(&state, &which)?;
            let reward = reward_model(&state)?;
            let (value, beta) = {
                let s = state.borrow();
                let ppo = s.run.as_ref().and_then(|r| r.ppo()).filter(|_| which == "ppo");
                (ppo.map_or_else(|| reward.clone(), |t| t.value_model()), ppo.map_or(PpoConfig::default().kl_coef, |t| t.beta()))
            };
            let response_ids = model.tokenizer.encode_response(&prompt, &response).map_err(js)?;
            let (prompt_ids, _) = prompt_ids(&model, &prompt, response_ids.len() + 1)?;
            let settings = PpoConfig { temperature, ..PpoConfig::default() };
            let special = model.tokenizer.special_ids();
            let explained = explain_response(
                &policy,
                &model.model,
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
            // The model's own EOS, whatever its text, shows as one mark.
            let shown = |t: u32| if t == special.eos { Ok("⏎".to_owned()) } else { model.tokenizer.decode(&[t]) };
            let tokens = response_ids.iter().map(|&t| shown(t)).collect::<Result<Vec<_>, _>>().map_err(js)?;
            json_value(&serde_json::json!({"tokens": tokens, "explained": explained}))
        })
    }

    /// Blind head-to-head of model `a` against model `b` ("sft", "base" or a policy's name) on
    /// `prompts` (JSON list), judged by `labeler`: one answer each per prompt, as the library's judge samples them. Resolves to
    /// `{win_rate, wins, ties, losses, kl, eos_rate, ...}` from `a`'s side.
    pub fn evaluate(&self, a: String, b: String, prompts_json: String, labeler: String, seed: u64) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let model = loaded_sft(&state)?;
            let labeler: Labeler = labeler.parse().map_err(js)?;
            let (ours, theirs) = (model_named(&state, &a)?, model_named(&state, &b)?);
            let prompts: Vec<String> = serde_json::from_str(&prompts_json).map_err(js)?;
            let settings = HeadToHeadConfig::judge(prompts.len(), seed);
            json_value(&head_to_head(&ours, &theirs, &model.tokenizer, &prompts, &labeler, &settings).await.map_err(js)?)
        })
    }

    /// Policy `which` on `prompts` (JSON list): the reward model's mean score of its answers (the
    /// proxy), `labeler`'s blind win-rate over SFT (the gold) and its KL to SFT. Resolves to
    /// `{kl, proxy, gold, eos_rate}`.
    #[wasm_bindgen(js_name = goldAndProxy)]
    pub fn gold_and_proxy(&self, which: String, prompts_json: String, labeler: String, seed: u64) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let model = loaded_sft(&state)?;
            let labeler: Labeler = labeler.parse().map_err(js)?;
            let policy = model_named(&state, &which)?;
            let reward = reward_model(&state)?;
            let prompts: Vec<String> = serde_json::from_str(&prompts_json).map_err(js)?;
            let settings = HeadToHeadConfig::judge(prompts.len(), seed);
            let measured = gold_and_proxy(&policy, &model.model, &reward, &model.tokenizer, &prompts, &labeler, &settings).await;
            json_value(&measured.map_err(js)?)
        })
    }
}
