//! What the page asks of the library without a session: files parsed and written in the CLI's
//! formats (rankings, TRL pairs, prompts, demonstrations), a scripted labeler's order, a model's
//! cost in the tab before its weights are read, and the limits the page checks before it sends work.

use tinyrlhf_data::{Labeler, Ranking};
use tinyrlhf_model::ModelConfig;
use wasm_bindgen::prelude::*;

use crate::{js, to_json};

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

/// What a model folder's `config.json` would cost to train in the tab (JSON: parameters, whether
/// LoRA is the default, estimated and allowed bytes), or why the tab cannot hold it: checked
/// before its weights are read.
#[wasm_bindgen(js_name = modelFootprint)]
pub fn model_footprint(config_json: &[u8]) -> Result<String, JsError> {
    let config = ModelConfig::from_json_bytes(config_json).map_err(|e| js(format!("config.json: {e}")))?;
    to_json(&tinyrlhf_rlhf::check_fits_tab(&config, None).map_err(js)?)
}

/// Whether a file starting with `head` is a GGUF model, by its bytes: Ollama keeps its models as
/// `sha256-…` blobs with no extension.
#[wasm_bindgen(js_name = isGguf)]
pub fn is_gguf(head: &[u8]) -> bool {
    tinyrlhf_model::is_gguf(head)
}

/// Prompts from a file's bytes (JSONL of `{"prompt"}` or one per line) as a JSON list; the error
/// names `file`, line and field.
#[wasm_bindgen(js_name = parsePrompts)]
pub fn parse_prompts(file: &str, bytes: &[u8]) -> Result<String, JsError> {
    to_json(&tinyrlhf_data::read_prompts(file, bytes).map_err(js)?)
}

/// Demonstrations (`{"prompt", "response"}` JSONL) from a file's bytes as a JSON list; the error
/// names `file`, line and field.
#[wasm_bindgen(js_name = parseDemonstrations)]
pub fn parse_demonstrations(file: &str, bytes: &[u8]) -> Result<String, JsError> {
    to_json(&tinyrlhf_data::read_demonstrations(file, bytes).map_err(js)?)
}

/// The same checks as a file's ranking gets (K, distinct answers, a permutation), for a ranking
/// made in the page; the error names the field.
#[wasm_bindgen(js_name = checkRanking)]
pub fn check_ranking(ranking_json: &str) -> Result<(), JsError> {
    let ranking: Ranking = serde_json::from_str(ranking_json).map_err(js)?;
    ranking.check().map_err(js)
}

/// The limits the page checks before sending work, how long an answer to read or rank is, and the
/// temperature answers are judged and compared at: `{max_completions, min_rankings, max_file_bytes,
/// answer_tokens, judge_temperature}`.
#[wasm_bindgen]
pub fn limits() -> Result<String, JsError> {
    to_json(&serde_json::json!({
        "max_completions": Ranking::MAX_COMPLETIONS,
        "min_rankings": tinyrlhf_rlhf::RankingSet::MIN_TRAINABLE,
        "max_file_bytes": tinyrlhf_data::MAX_FILE_BYTES,
        "answer_tokens": tinyrlhf_rlhf::ANSWER_TOKENS,
        "judge_temperature": tinyrlhf_rlhf::HeadToHeadConfig::JUDGE_TEMPERATURE,
    }))
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

/// A scripted labeler's strict ranking of `completions` (ties dropped; each kept one with its
/// `finished` flag) as a ranking record, or `null` when it cannot tell two of them apart.
#[wasm_bindgen(js_name = strictRanking)]
pub fn strict_ranking(labeler: &str, prompt: &str, completions_json: &str, finished_json: &str) -> Result<String, JsError> {
    let labeler: Labeler = labeler.parse().map_err(js)?;
    let completions: Vec<String> = serde_json::from_str(completions_json).map_err(js)?;
    let finished: Vec<bool> = serde_json::from_str(finished_json).map_err(js)?;
    to_json(&labeler.strict_ranking(prompt, &completions, &finished))
}

/// Whether a typed prompt is about the shipped model's small world: its unknown words, a prompt of
/// the world to try, and the world in a line (`tinyrlhf_data::coverage`), as JSON.
#[wasm_bindgen(js_name = promptCoverage)]
pub fn prompt_coverage(prompt: &str) -> Result<String, JsError> {
    to_json(&tinyrlhf_data::coverage(prompt))
}

/// `n` prompts of the built-in world's training set (never the held-out ones), as a JSON list.
#[wasm_bindgen(js_name = trainingPrompts)]
pub fn training_prompts(n: usize, seed: u64) -> Result<String, JsError> {
    to_json(&tinyrlhf_data::training_prompts(seed, n).into_iter().map(|p| p.prompt).collect::<Vec<_>>())
}
