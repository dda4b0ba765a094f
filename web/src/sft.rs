//! Supervised fine-tuning in the tab, one step per call: the base model (the shipped one, or the
//! person's own model as loaded) learns the person's demonstrations in the chat template. When it
//! ends, the tuned model becomes the SFT model everything after it starts from, and what was
//! trained from the old one (reward model, policies) is dropped.

use std::rc::Rc;

use tinyrlhf_data::Demonstration;
use tinyrlhf_model::CausalLm;
use tinyrlhf_rlhf::{Example, SftSettings, SupervisedTrainer, Trainer, sft_examples, split_validation, with_changes};
use wasm_bindgen::prelude::*;

use crate::training::changes;
use crate::{LanguageModel, Session, State, js, json_value, loaded_sft, promise, to_json};

/// An SFT run and the held-back demonstrations its validation loss is measured on.
pub(crate) struct SftRun {
    trainer: SupervisedTrainer,
    validation: Vec<Example>,
}

#[wasm_bindgen]
impl Session {
    /// Starts SFT of the base model on `demos_json` (a JSON list of `{prompt, response}`, as
    /// `parseDemonstrations` gives); `changes_json`: the settings the person changed. Returns
    /// `{train, validation, left_out, steps}`.
    #[wasm_bindgen(js_name = startSft)]
    pub fn start_sft(&self, demos_json: &str, changes_json: &str) -> Result<String, JsError> {
        let model = loaded_sft(&self.state)?;
        let base = self.state.borrow().base.clone().ok_or_else(|| js("the base model is not loaded"))?;
        let demos: Vec<Demonstration> = serde_json::from_str(demos_json).map_err(js)?;
        let settings: SftSettings = with_changes(SftSettings::default(), &changes(changes_json)?, "SFT").map_err(js)?;
        let tokenizer = model.tokenizer.for_instructions().map_err(js)?;
        let (examples, left_out) = sft_examples(&tokenizer, &demos, model.config.context_length()).map_err(js)?;
        if examples.is_empty() {
            return Err(js(format!(
                "none of the {} demonstrations fits in the model's context of {} tokens",
                demos.len(),
                model.config.context_length()
            )));
        }
        let (train, validation) = split_validation(examples);
        let info = serde_json::json!({
            "train": train.len(), "validation": validation.len(), "left_out": left_out, "steps": settings.steps,
        });
        self.device.seed(settings.seed);
        let pad = model.tokenizer.special_ids().pad;
        let trainer = SupervisedTrainer::new(base, model.config.clone(), train, pad, settings.supervised().map_err(js)?).map_err(js)?;
        self.state.borrow_mut().sft_run = Some(SftRun { trainer, validation });
        to_json(&info)
    }

    /// One SFT step. Resolves to `{stats, done}`, with `val_loss` on the last step, when the tuned
    /// model becomes the SFT model (`sftWeights` then gives its bytes to keep).
    #[wasm_bindgen(js_name = sftStep)]
    pub fn sft_step(&self) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let mut run = state.borrow_mut().sft_run.take().ok_or_else(|| js("no SFT is running"))?;
            let stats = run.trainer.step().await.map_err(js)?;
            let done = run.trainer.is_done();
            let mut reply = serde_json::json!({"stats": stats, "done": done});
            if done {
                if !run.validation.is_empty() {
                    reply["val_loss"] = run.trainer.evaluate(&run.validation).await.map_err(js)?.into();
                }
                become_sft(&state, run.trainer.model())?;
            } else {
                state.borrow_mut().sft_run = Some(run);
            }
            json_value(&reply)
        })
    }

    /// The SFT model's `model.safetensors` bytes.
    #[wasm_bindgen(js_name = sftWeights)]
    pub fn sft_weights(&self) -> js_sys::Promise {
        let state = self.state.clone();
        promise(async move {
            let lm = loaded_sft(&state)?.model.clone();
            let bytes = tinyrlhf_model::save_lm(&lm).await.map_err(js)?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }
}

/// `lm` is the SFT model from now on; the reward model and the policies were trained from the
/// previous one, so they go.
fn become_sft(state: &Rc<std::cell::RefCell<State>>, lm: CausalLm) -> Result<(), JsError> {
    let model = loaded_sft(state)?;
    let mut s = state.borrow_mut();
    let tokenizer = model.tokenizer.for_instructions().map_err(js)?;
    // Its identity is taken when an adapter first needs it (`sft_identity`).
    s.sft = Some(Rc::new(LanguageModel { config: model.config.clone(), model: lm, tokenizer, identity: String::new() }));
    s.forget_trained();
    Ok(())
}
