//! Models that other tools made: a transformers GPT-2 folder and the Llama family's folders go
//! through every stage, and LoRA adapters come out under PEFT's names.

use std::path::{Path, PathBuf};

use super::common::{fresh_dir, ok};
use super::{small_ppo, world};

/// The transformers-made GPT-2 folder the `tests` crate checks for parity (`$TINYRLHF_HF_FIXTURE`).
fn hf_fixture() -> PathBuf {
    std::env::var_os("TINYRLHF_HF_FIXTURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf-gpt2-style"))
}

#[test]
fn a_transformers_gpt2_folder_goes_through_sft_rankings_reward_ppo_and_dpo_padding_with_eos() {
    let scratch = fresh_dir("hf");
    let dir = scratch.path();
    world(dir);
    let hf = hf_fixture();
    let hf = hf.to_str().unwrap();
    ok(&["sft", "--model", hf, "--demos", "world/demos.jsonl", "--steps", "3", "--batch", "4", "--out", "sft"], dir);
    // The tuned folder keeps the person's template and EOS, and still has no pad token.
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("sft/tokenizer_config.json")).unwrap()).unwrap();
    let template = std::fs::read_to_string(Path::new(hf).join("chat_template.jinja")).unwrap();
    assert_eq!(config["chat_template"].as_str(), Some(template.as_str()));
    assert_eq!(config["eos_token"], "<|endoftext|>");
    assert!(config.get("pad_token").is_none(), "{config}");

    ok(
        &["sample", "--model", "sft", "--prompts", "world/prompts.jsonl", "-k", "3", "--max-new-tokens", "6", "--out", "samples.jsonl"],
        dir,
    );
    ok(&["rank", "--samples", "samples.jsonl", "--labeler", "concise", "--out", "rankings.jsonl"], dir);
    ok(&["reward", "--model", "sft", "--rankings", "rankings.jsonl", "--epochs", "1", "--out", "rm"], dir);
    // Prompts as a person writes them: one per line.
    std::fs::write(dir.join("prompts.txt"), "Return the number of items.\nWhat does a dictionary map?\n\nSort a list.\n").unwrap();
    let ppo = [&small_ppo("prompts.txt", "ppo")[..], &["--iterations", "2"]].concat();
    ok(&ppo, dir);
    let metrics = std::fs::read_to_string(dir.join("ppo/metrics.jsonl")).unwrap();
    for line in metrics.lines() {
        let stats: serde_json::Value = serde_json::from_str(line).unwrap();
        // Answers cut at 6 tokens have no EOS, and this barely tuned model rarely writes one (about
        // 1 in 1000 per token): padding them with EOS must not make them count as ended.
        let (eos_rate, length) = (stats["eos_rate"].as_f64().unwrap(), stats["mean_length"].as_f64().unwrap());
        assert!(eos_rate < 0.5 && length > 0.0 && length <= 6.0, "{stats}");
        assert!(stats["kl"].as_f64().unwrap().is_finite(), "{stats}");
    }
    ok(&["dpo", "--policy", "sft", "--rankings", "rankings.jsonl", "--epochs", "1", "--batch", "4", "--out", "dpo"], dir);
    for run in ["ppo", "dpo"] {
        for file in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            assert!(dir.join(run).join(file).exists(), "{run}/{file}");
        }
    }
    let chat = ok(&["eval", "--model", "dpo", "--prompts", "world/heldout.jsonl", "--max-new-tokens", "6"], dir);
    assert!(chat.contains("EOS within 6 tokens"), "{chat}");

    // LoRA: the run writes its adapter, not a copy of the base; every command loads it on the base
    // it names. `--merge` writes the merged model as well, which computes the same.
    let lora = ["--lora-rank", "4", "--lora-alpha", "8"];
    let lora_dpo = |out: &'static str| {
        [&["dpo", "--policy", "sft", "--rankings", "rankings.jsonl", "--epochs", "1", "--batch", "4", "--out", out][..], &lora].concat()
    };
    ok(&lora_dpo("dpo-lora"), dir);
    ok(&[&lora_dpo("dpo-merged")[..], &["--merge"]].concat(), dir);
    ok(&[&small_ppo("prompts.txt", "ppo-lora")[..], &["--iterations", "2"], &lora].concat(), dir);
    for run in ["dpo-lora", "ppo-lora"] {
        let adapter: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(run).join("adapter/adapter_config.json")).unwrap()).unwrap();
        assert_eq!((adapter["r"].as_u64(), adapter["lora_alpha"].as_f64()), (Some(4), Some(8.0)), "{run}: {adapter}");
        let base = dir.join("sft").canonicalize().unwrap();
        assert_eq!(Path::new(adapter["base_model_name_or_path"].as_str().unwrap()).canonicalize().unwrap(), base, "{run}");
        assert!(dir.join(run).join("adapter/adapter_model.safetensors").exists(), "{run}");
        for copy in ["model.safetensors", "checkpoint/model.safetensors", "value"] {
            assert!(!dir.join(run).join(copy).exists(), "{run}/{copy}: a LoRA run writes no copy of its base unless asked");
        }
    }
    assert!(dir.join("dpo-merged/model.safetensors").exists() && dir.join("dpo-merged/config.json").exists());
    let greedy = |model: &str, out: &str| {
        let args = ["sample", "--model", model, "--prompts", "world/heldout.jsonl", "-k", "2", "--max-new-tokens", "6", "--out", out];
        ok(&args, dir);
        std::fs::read_to_string(dir.join(out)).unwrap()
    };
    assert_eq!(
        greedy("dpo-lora", "from-adapter.jsonl"),
        greedy("dpo-merged", "from-merged.jsonl"),
        "the adapter on its base is the merged model"
    );
    ok(&["eval", "--model", "dpo-lora", "--prompts", "world/heldout.jsonl", "--max-new-tokens", "6"], dir);
    std::fs::remove_dir_all(dir).ok();
}

/// The transformers-made Llama-family folders the `tests` crate checks for parity
/// (`$TINYRLHF_LLAMA_FIXTURES`), one per architecture.
fn llama_fixture(name: &str) -> PathBuf {
    std::env::var_os("TINYRLHF_LLAMA_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf-llama-family"))
        .join(name)
}

#[test]
fn a_llama_family_folder_goes_through_every_stage_with_lora_and_exports_peft_s_names() {
    let scratch = fresh_dir("llama");
    let dir = scratch.path();
    ok(&["data", "--out", "world", "--pretrain-lines", "50", "--demos", "60", "--prompts", "12", "--heldout", "4"], dir);
    for name in ["hf-llama", "hf-llama3", "hf-qwen3"] {
        let folder = llama_fixture(name);
        let out = format!("samples-{name}.jsonl");
        ok(
            &[
                "sample",
                "--model",
                folder.to_str().unwrap(),
                "--prompts",
                "world/heldout.jsonl",
                "-k",
                "2",
                "--max-new-tokens",
                "4",
                "--out",
                &out,
            ],
            dir,
        );
        assert_eq!(std::fs::read_to_string(dir.join(&out)).unwrap().lines().count(), 4, "{name}");
    }
    // Qwen2: q/k/v biases, and a pad token that is not EOS.
    let qwen2 = llama_fixture("hf-qwen2");
    fn with_lora<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [args, &["--lora-rank", "4", "--lora-alpha", "8"][..]].concat()
    }
    ok(
        &with_lora(&[
            "sft",
            "--model",
            qwen2.to_str().unwrap(),
            "--demos",
            "world/demos.jsonl",
            "--steps",
            "2",
            "--batch",
            "4",
            "--out",
            "sft",
            "--merge",
        ]),
        dir,
    );
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("sft/config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "qwen2", "{config}");
    ok(
        &["sample", "--model", "sft", "--prompts", "world/prompts.jsonl", "-k", "3", "--max-new-tokens", "5", "--out", "samples.jsonl"],
        dir,
    );
    ok(&["rank", "--samples", "samples.jsonl", "--labeler", "concise", "--out", "rankings.jsonl"], dir);
    ok(&with_lora(&["reward", "--model", "sft", "--rankings", "rankings.jsonl", "--epochs", "1", "--out", "rm"]), dir);
    // A LoRA reward model is its adapters and score head on the SFT model it names, no copy of it.
    assert!(!dir.join("rm/model.safetensors").exists());
    let rm = safetensors_names(&dir.join("rm/adapter/adapter_model.safetensors"));
    assert!(rm.contains(&"score.weight".to_owned()) && rm.iter().any(|n| n.ends_with("q_proj.lora_A.weight")), "{rm:?}");
    assert!(!rm.contains(&"model.layers.0.self_attn.q_proj.bias".to_owned()), "the base is not copied: {rm:?}");
    ok(&with_lora(&[&small_ppo("world/prompts.jsonl", "ppo")[..], &["--iterations", "1"]].concat()), dir);
    ok(&with_lora(&["dpo", "--policy", "sft", "--rankings", "rankings.jsonl", "--epochs", "1", "--batch", "4", "--out", "dpo"]), dir);
    for method in ["grpo", "rloo"] {
        let args = ["--policy", "sft", "--reward", "rm", "--prompts", "world/prompts.jsonl", "--out", method];
        ok(
            &with_lora(
                &[&[method][..], &args, &["--iterations", "1", "--prompts-per-iteration", "2", "-k", "2", "--max-new-tokens", "5"]]
                    .concat(),
            ),
            dir,
        );
    }
    for run in ["ppo", "dpo", "grpo", "rloo"] {
        let adapter: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(run).join("adapter/adapter_config.json")).unwrap()).unwrap();
        let targets: Vec<&str> = adapter["target_modules"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        assert_eq!(targets, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "{run}");
        assert_eq!(adapter["fan_in_fan_out"], false, "{run}");
        let names = safetensors_names(&dir.join(run).join("adapter/adapter_model.safetensors"));
        assert!(names.contains(&"base_model.model.model.layers.1.mlp.down_proj.lora_B.weight".to_owned()), "{run}: {names:?}");
        assert!(!dir.join(run).join("model.safetensors").exists(), "{run}: no merged copy unless --merge");
    }
    // PPO's value model is kept as its adapters and score head, never a copy of the reward model.
    let value = safetensors_names(&dir.join("ppo/checkpoint/value.safetensors"));
    assert!(value.contains(&"score.weight".to_owned()) && value.iter().any(|n| n.ends_with("lora_B.weight")), "{value:?}");
    assert!(!value.contains(&"model.norm.weight".to_owned()), "{value:?}");
    let report = ok(&["eval", "--model", "dpo", "--prompts", "world/heldout.jsonl", "--max-new-tokens", "4"], dir);
    assert!(report.contains("EOS within 4 tokens"), "{report}");
    std::fs::remove_dir_all(dir).ok();
}

fn safetensors_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header]).unwrap();
    header.as_object().unwrap().keys().filter(|k| *k != "__metadata__").cloned().collect()
}
