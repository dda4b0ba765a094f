//! The CLI and the tab decide alike. One table of settings, rankings files and model-dependent
//! limits, each case run through the CLI's command line and through the calls the tab's worker
//! entry points make (`web/src/training.rs`: `startReward`, `startTraining`; `parseRankings`,
//! `parsePrompts`), on the shipped SFT model: both accept it, or both refuse it naming the same
//! setting.

mod common;

use std::path::Path;

use burn::tensor::Device;
use serde_json::{Value, json};
use tinyrlhf_model::{ScalarModel, load_scalar_model};
use tinyrlhf_rlhf::{
    LanguageModel, Method, MethodSettings, ModelFiles, PolicyInputs, PolicyTrainer, RankingSet, RewardConfig, RewardTrainer,
    load_language_model, training_prompt_ids, with_changes,
};
use tinyrlhf_tokenizer::TokenizerFiles;

use common::{shipped_sft, tinyrlhf, world_rankings_and_reward_model};

/// One decision: `method`'s run with `flags` on the command line and `changes` in the tab, on the
/// rankings file `rankings`; `refused`: the phrase both refusals hold, or `None` if both accept.
struct Case {
    method: &'static str,
    flags: &'static [&'static str],
    changes: Value,
    rankings: &'static str,
    refused: Option<&'static str>,
}

fn case(method: &'static str, flags: &'static [&'static str], changes: Value, refused: Option<&'static str>) -> Case {
    Case { method, flags, changes, rankings: "r.jsonl", refused }
}

fn cases() -> Vec<Case> {
    vec![
        // Settings the library checks, by whichever edge they arrive from.
        case("dpo", &["--beta", "0"], json!({"beta": 0.0}), Some("beta")),
        case("dpo", &["--beta", "0.5", "--loss", "ipo"], json!({"beta": 0.5, "loss": "ipo"}), None),
        case("dpo", &["--loss", "kto"], json!({"loss": "kto"}), Some("kto")),
        case("dpo", &["--lr", "0"], json!({"lr": 0.0}), Some("lr = 0")),
        case("dpo", &["--batch", "0"], json!({"batch_size": 0}), Some("batch_size")),
        case("dpo", &["--epochs", "0"], json!({"epochs": 0}), Some("epochs")),
        case("dpo", &["--activation-budget-mib", "0"], json!({"activation_budget_mib": 0}), Some("activation_budget_mib = 0")),
        case("dpo", &["--lora-rank", "0"], json!({"lora": {"rank": 0, "alpha": 16.0}}), Some("rank")),
        case("dpo", &["--lora-rank", "4", "--lora-alpha", "1e300"], json!({"lora": {"rank": 4, "alpha": 1e300}}), Some("LoRA alpha")),
        case("dpo", &["--lora-rank", "4", "--lora-alpha", "8"], json!({"lora": {"rank": 4, "alpha": 8.0}}), None),
        case("reward", &["--lr", "-1"], json!({"lr": -1.0}), Some("lr = -1")),
        case("reward", &["--epochs", "0"], json!({"epochs": 0}), Some("epochs")),
        case("reward", &[], json!({}), None),
        case("grpo", &["-k", "65"], json!({"samples_per_prompt": 65}), Some("answers per prompt must be 1 to 64")),
        case("grpo", &["--epsilon", "0.2", "--epsilon-high", "0.1"], json!({"epsilon": 0.2, "epsilon_high": 0.1}), Some("epsilon_high")),
        case("rloo", &["--temperature", "0"], json!({"temperature": 0.0}), Some("temperature")),
        case("ppo", &["--kl-coef", "-1"], json!({"kl_coef": -1.0}), Some("kl_coef")),
        case("ppo", &[], json!({}), None),
        // Limits that depend on the model: its context, its narrowest matrix.
        case("grpo", &["--max-new-tokens", "124"], json!({"max_new_tokens": 124}), Some("leaves no room for the prompt")),
        case("ppo", &["--lora-rank", "100000"], json!({"lora": {"rank": 100000, "alpha": 16.0}}), Some("LoRA rank 100000")),
        // The rankings minimum: one usable ranking trains; a file whose one ranking orders the
        // same answer twice is refused where it is read.
        Case { rankings: "one.jsonl", ..case("dpo", &[], json!({}), None) },
        Case { rankings: "same.jsonl", ..case("dpo", &[], json!({}), Some("are the same text")) },
        Case { rankings: "same.jsonl", ..case("reward", &[], json!({}), Some("are the same text")) },
    ]
}

/// What the tab's worker holds when a run starts: the SFT model and a reward model.
struct Tab {
    sft: LanguageModel,
    reward: ScalarModel,
}

/// The tab's decision: the calls `startReward` and `startTraining` make, in their order.
fn tab_decides(tab: &Tab, case: &Case, dir: &Path) -> Result<(), String> {
    let LanguageModel { config, model, tokenizer, .. } = &tab.sft;
    let ranking_set = || {
        let bytes = std::fs::read(dir.join(case.rankings)).unwrap();
        let rankings = tinyrlhf_data::read_preferences(case.rankings, &bytes).map_err(|e| e.to_string())?;
        let set = RankingSet::prepare(tokenizer, &rankings, None, config.context_length());
        set.check_trainable("this tab").map_err(|e| e.to_string())?;
        Ok::<_, String>(set)
    };
    if case.method == "reward" {
        let settings: RewardConfig = with_changes(RewardConfig::default(), &case.changes, "reward model").map_err(|e| e.to_string())?;
        let set = ranking_set()?;
        let pad = tokenizer.special_ids().pad;
        return RewardTrainer::on_rankings(model.clone(), config.clone(), set, pad, settings).map(drop).map_err(|e| e.to_string());
    }
    let method: Method = case.method.parse().map_err(|e: tinyrlhf_rlhf::TrainError| e.to_string())?;
    let settings = MethodSettings::with_changes(method, &case.changes).map_err(|e| e.to_string())?;
    let mut inputs =
        PolicyInputs { reward: Some(tab.reward.clone()), ..PolicyInputs::new(model.clone(), config.clone(), tokenizer.special_ids()) };
    match settings.max_new_tokens() {
        Some(new_tokens) => {
            let bytes = std::fs::read(dir.join("world/prompts.jsonl")).unwrap();
            let prompts = tinyrlhf_data::read_prompts("prompts.jsonl", &bytes).map_err(|e| e.to_string())?;
            inputs.prompts = training_prompt_ids(tokenizer, config.context_length(), &prompts, new_tokens).map_err(|e| e.to_string())?;
        }
        None => {
            let set = ranking_set()?;
            (inputs.rankings, inputs.held_out) = (set.train, set.held_out);
        }
    }
    pollster::block_on(PolicyTrainer::new(settings, inputs)).map(drop).map_err(|e| e.to_string())
}

/// The CLI's decision: the command run to its end (runs are one short epoch or iteration), or
/// its refusal's message.
fn cli_decides(case: &Case, dir: &Path, sft: &str) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir.join("out"));
    let mut args: Vec<&str> = match case.method {
        "reward" => vec!["reward", "--model", sft, "--rankings", case.rankings],
        "dpo" => vec!["dpo", "--policy", sft, "--rankings", case.rankings],
        method => vec![method, "--policy", sft, "--reward", "rm", "--prompts", "world/prompts.jsonl", "--iterations", "1"],
    };
    args.extend(["--out", "out"]);
    if matches!(case.method, "reward" | "dpo") && !case.flags.contains(&"--epochs") {
        args.extend(["--epochs", "1"]);
    }
    args.extend(case.flags);
    let out = tinyrlhf(&args, dir);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1 | 2) => Err(stderr),
        other => panic!("tinyrlhf {args:?} crashed ({other:?}):\n{stderr}"),
    }
}

#[test]
fn the_cli_and_the_tab_accept_and_refuse_the_same_settings_rankings_and_limits() {
    let scratch = world_rankings_and_reward_model("edges");
    let dir = scratch.path();
    let sft_dir = shipped_sft();
    let sft = sft_dir.to_str().unwrap();
    let rankings = std::fs::read_to_string(dir.join("r.jsonl")).unwrap();
    let first = rankings.lines().next().unwrap();
    std::fs::write(dir.join("one.jsonl"), format!("{first}\n")).unwrap();
    let mut same: Value = serde_json::from_str(first).unwrap();
    let answer = same["completions"][0].clone();
    same["completions"].as_array_mut().unwrap().iter_mut().for_each(|c| *c = answer.clone());
    std::fs::write(dir.join("same.jsonl"), format!("{same}\n")).unwrap();

    let device = Device::flex();
    let read = |name: &str| std::fs::read(sft_dir.join(name)).unwrap();
    let (config, weights, tokenizer_json) = (read("config.json"), read("model.safetensors"), read("tokenizer.json"));
    let optional = |name: &str| std::fs::read(sft_dir.join(name)).ok();
    let (tokenizer_config, template, generation) =
        (optional("tokenizer_config.json"), optional("chat_template.jinja"), optional("generation_config.json"));
    let files = ModelFiles {
        config_json: &config,
        safetensors: weights.as_slice().into(),
        tokenizer: TokenizerFiles {
            tokenizer_json: &tokenizer_json,
            tokenizer_config_json: tokenizer_config.as_deref(),
            chat_template_jinja: template.as_deref(),
            generation_config_json: generation.as_deref(),
        },
    };
    let reward = {
        let rm = |name: &str| std::fs::read(dir.join("rm").join(name)).unwrap();
        load_scalar_model(&rm("config.json"), &rm("model.safetensors"), &device).unwrap().1
    };
    let tab = Tab { sft: load_language_model(files, &device).unwrap(), reward };

    for case in cases() {
        let what = format!("{} {:?} / {} on {}", case.method, case.flags, case.changes, case.rankings);
        let (cli, tab) = (cli_decides(&case, dir, sft), tab_decides(&tab, &case, dir));
        match case.refused {
            None => {
                assert!(cli.is_ok(), "{what}: the CLI refused what the tab accepts:\n{}", cli.unwrap_err());
                assert!(tab.is_ok(), "{what}: the tab refused what the CLI accepts:\n{}", tab.unwrap_err());
            }
            Some(phrase) => {
                let (cli, tab) =
                    (cli.expect_err(&format!("{what}: the CLI accepted it")), tab.expect_err(&format!("{what}: the tab accepted it")));
                assert!(cli.contains(phrase), "{what}: the CLI's refusal does not say {phrase:?}:\n{cli}");
                assert!(tab.contains(phrase), "{what}: the tab's refusal does not say {phrase:?}:\n{tab}");
            }
        }
    }
}
