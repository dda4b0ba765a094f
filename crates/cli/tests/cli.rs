//! The `tinyrlhf` binary as a user runs it: the whole supervised pipeline through files, errors
//! that name file, line and field without writing anything, and a killed run that resumes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fresh_dir, ok, tinyrlhf};

fn world(dir: &Path) {
    ok(&["data", "--out", "world", "--pretrain-lines", "600", "--demos", "600", "--prompts", "40", "--heldout", "12"], dir);
    ok(&["tokenizer", "--corpus", "world/pretrain.txt", "--demos", "world/demos.jsonl", "--vocab", "400", "--out", "tok.json"], dir);
}

#[test]
fn data_tokenizer_pretrain_sft_sample_and_eval_run_through_files() {
    let dir = fresh_dir("pipeline");
    world(&dir);
    ok(
        &[
            "pretrain",
            "--tokenizer",
            "tok.json",
            "--corpus",
            "world/pretrain.txt",
            "--seq-len",
            "32",
            "--steps",
            "6",
            "--batch",
            "4",
            "--out",
            "base",
        ],
        &dir,
    );
    for file in ["config.json", "model.safetensors", "tokenizer.json", "manifest.json", "metrics.jsonl"] {
        assert!(dir.join("base").join(file).exists(), "base/{file}");
    }
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("base/manifest.json")).unwrap()).unwrap();
    assert!(manifest["data"]["corpus"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(std::fs::read_to_string(dir.join("base/metrics.jsonl")).unwrap().lines().count(), 6);

    ok(&["sft", "--model", "base", "--demos", "world/demos.jsonl", "--steps", "4", "--batch", "4", "--out", "sft"], &dir);
    ok(
        &["sample", "--model", "sft", "--prompts", "world/heldout.jsonl", "-k", "3", "--max-new-tokens", "8", "--out", "samples.jsonl"],
        &dir,
    );
    let samples = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 12);
    let first: serde_json::Value = serde_json::from_str(samples.lines().next().unwrap()).unwrap();
    assert_eq!(first["completions"].as_array().unwrap().len(), 3);

    let report = ok(&["eval", "--model", "sft", "--prompts", "world/heldout.jsonl", "--max-new-tokens", "8", "--json", "eval.json"], &dir);
    assert!(report.contains("EOS within 8 tokens"), "{report}");
    let eval: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("eval.json")).unwrap()).unwrap();
    assert!(eval["eos_rate"].as_f64().is_some() && eval["rankable_rate"].as_f64().is_some());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn malformed_jsonl_is_refused_naming_file_line_and_field_and_nothing_is_written() {
    let dir = fresh_dir("malformed");
    world(&dir);
    ok(
        &[
            "pretrain",
            "--tokenizer",
            "tok.json",
            "--corpus",
            "world/pretrain.txt",
            "--seq-len",
            "16",
            "--steps",
            "2",
            "--batch",
            "2",
            "--out",
            "base",
        ],
        &dir,
    );
    std::fs::write(dir.join("bad.jsonl"), "{\"prompt\":\"hi\",\"response\":\"hello\"}\n{\"prompt\":\"hi\"}\n").unwrap();
    let out = tinyrlhf(&["sft", "--model", "base", "--demos", "bad.jsonl", "--steps", "2", "--out", "sft"], &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("bad.jsonl:2: field `response`: missing"), "{stderr}");
    assert!(!dir.join("sft").exists(), "nothing may be written");

    std::fs::write(dir.join("broken.json"), "{ not a tokenizer").unwrap();
    let out = tinyrlhf(&["pretrain", "--tokenizer", "broken.json", "--corpus", "world/pretrain.txt", "--steps", "2", "--out", "x"], &dir);
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.json"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn an_interrupted_run_keeps_a_loadable_checkpoint_and_resumes_from_it() {
    let dir = fresh_dir("resume");
    world(&dir);
    let args = [
        "pretrain",
        "--tokenizer",
        "tok.json",
        "--corpus",
        "world/pretrain.txt",
        "--seq-len",
        "16",
        "--batch",
        "2",
        "--save-every",
        "3",
        "--out",
        "base",
    ];
    // A run of 9 steps cut after 5 stands for a kill: its last checkpoint is at step 3.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tinyrlhf"))
        .args(args)
        .args(["--steps", "100000"])
        .current_dir(&dir)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let trainer_json = dir.join("base/checkpoint/trainer.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !trainer_json.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(trainer_json.exists(), "a checkpoint was written before the kill");

    let refused = tinyrlhf(&[&args[..], &["--steps", "9"]].concat(), &dir);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"), "a second run must not overwrite the first silently");
    let out = ok(&[&args[..], &["--steps", "9", "--resume"]].concat(), &dir);
    assert!(out.contains("resuming"), "{out}");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&trainer_json).unwrap()).unwrap();
    assert_eq!(state["step"], 9);
    assert!(dir.join("base/model.safetensors").exists());
    std::fs::remove_dir_all(dir).ok();
}

/// The smallest PPO run from `sft` against `rm`: batch 4 of 6-token answers.
fn small_ppo<'a>(prompts: &'a str, out: &'a str) -> Vec<&'a str> {
    let mut args = vec!["ppo", "--policy", "sft", "--reward", "rm", "--prompts", prompts, "--out", out];
    args.extend(["--batch", "4", "--minibatch", "2", "--max-new-tokens", "6"]);
    args
}

fn fails(args: &[&str], dir: &Path) -> String {
    let out = tinyrlhf(args, dir);
    assert!(!out.status.success(), "tinyrlhf {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn rank_reward_ppo_and_compare_run_through_files() {
    let dir = fresh_dir("rlhf");
    world(&dir);
    ok(
        &[
            "pretrain",
            "--tokenizer",
            "tok.json",
            "--corpus",
            "world/pretrain.txt",
            "--seq-len",
            "16",
            "--steps",
            "4",
            "--batch",
            "2",
            "--out",
            "sft",
        ],
        &dir,
    );
    ok(
        &["sample", "--model", "sft", "--prompts", "world/prompts.jsonl", "-k", "4", "--max-new-tokens", "6", "--out", "samples.jsonl"],
        &dir,
    );
    let ranked = ok(&["rank", "--samples", "samples.jsonl", "--labeler", "concise", "--out", "rankings.jsonl"], &dir);
    assert!(ranked.contains("labeler concise ranked"), "{ranked}");
    let rankings = std::fs::read_to_string(dir.join("rankings.jsonl")).unwrap();
    assert!(rankings.lines().count() >= 10, "{ranked}");

    let trained = ok(&["reward", "--model", "sft", "--rankings", "rankings.jsonl", "--epochs", "2", "--out", "rm"], &dir);
    assert!(trained.contains("held-out pair accuracy") && trained.contains("calibrated"), "{trained}");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("rm/manifest.json")).unwrap()).unwrap();
    assert!(manifest["held_out"]["accuracy"].as_f64().is_some());

    ok(&[&small_ppo("world/prompts.jsonl", "policy")[..], &["--iterations", "2"]].concat(), &dir);
    let metrics = std::fs::read_to_string(dir.join("policy/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2);
    // A second run into the same directory must say --resume; with it, the run goes on to 3.
    let ppo = [&small_ppo("world/prompts.jsonl", "policy")[..], &["--iterations", "3"]].concat();
    assert!(fails(&ppo, &dir).contains("--resume"));
    let resumed = ok(&[&ppo[..], &["--resume"]].concat(), &dir);
    assert!(resumed.contains("resuming policy at iteration 2"), "{resumed}");
    assert_eq!(std::fs::read_to_string(dir.join("policy/metrics.jsonl")).unwrap().lines().count(), 3);
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    for key in [
        "score",
        "kl",
        "kl_k3",
        "entropy",
        "pg_clipfrac",
        "vf_clipfrac",
        "approx_kl",
        "vf_loss",
        "explained_variance",
        "mean_length",
        "eos_rate",
        "beta",
    ] {
        assert!(first[key].as_f64().is_some(), "metrics lack {key}: {first}");
    }
    for file in ["config.json", "model.safetensors", "tokenizer.json", "value/model.safetensors"] {
        assert!(dir.join("policy").join(file).exists(), "policy/{file}");
    }
    let report = ok(
        &[
            "eval",
            "--policy",
            "policy",
            "--reference",
            "sft",
            "--prompts",
            "world/heldout.jsonl",
            "--labeler",
            "concise",
            "--max-new-tokens",
            "6",
            "--json",
            "c.json",
        ],
        &dir,
    );
    assert!(report.contains("win-rate of policy over reference"), "{report}");
    std::fs::remove_dir_all(dir).ok();
}

/// The transformers-made GPT-2 folder the `tests` crate checks for parity (`$TINYRLHF_HF_FIXTURE`).
fn hf_fixture() -> PathBuf {
    std::env::var_os("TINYRLHF_HF_FIXTURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf-gpt2-style"))
}

#[test]
fn a_transformers_gpt2_folder_goes_through_sft_rankings_reward_ppo_and_dpo_padding_with_eos() {
    let dir = fresh_dir("hf");
    world(&dir);
    let hf = hf_fixture();
    let hf = hf.to_str().unwrap();
    ok(&["sft", "--model", hf, "--demos", "world/demos.jsonl", "--steps", "3", "--batch", "4", "--out", "sft"], &dir);
    // The tuned folder keeps the person's template and EOS, and still has no pad token.
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("sft/tokenizer_config.json")).unwrap()).unwrap();
    let template = std::fs::read_to_string(Path::new(hf).join("chat_template.jinja")).unwrap();
    assert_eq!(config["chat_template"].as_str(), Some(template.as_str()));
    assert_eq!(config["eos_token"], "<|endoftext|>");
    assert!(config.get("pad_token").is_none(), "{config}");

    ok(
        &["sample", "--model", "sft", "--prompts", "world/prompts.jsonl", "-k", "3", "--max-new-tokens", "6", "--out", "samples.jsonl"],
        &dir,
    );
    ok(&["rank", "--samples", "samples.jsonl", "--labeler", "concise", "--out", "rankings.jsonl"], &dir);
    ok(&["reward", "--model", "sft", "--rankings", "rankings.jsonl", "--epochs", "1", "--out", "rm"], &dir);
    // Prompts as a person writes them: one per line.
    std::fs::write(dir.join("prompts.txt"), "Return the number of items.\nWhat does a dictionary map?\n\nSort a list.\n").unwrap();
    let ppo = [&small_ppo("prompts.txt", "ppo")[..], &["--iterations", "2"]].concat();
    ok(&ppo, &dir);
    let metrics = std::fs::read_to_string(dir.join("ppo/metrics.jsonl")).unwrap();
    for line in metrics.lines() {
        let stats: serde_json::Value = serde_json::from_str(line).unwrap();
        // Answers cut at 6 tokens have no EOS, and this barely tuned model rarely writes one (about
        // 1 in 1000 per token): padding them with EOS must not make them count as ended.
        let (eos_rate, length) = (stats["eos_rate"].as_f64().unwrap(), stats["mean_length"].as_f64().unwrap());
        assert!(eos_rate < 0.5 && length > 0.0 && length <= 6.0, "{stats}");
        assert!(stats["kl"].as_f64().unwrap().is_finite(), "{stats}");
    }
    ok(&["dpo", "--policy", "sft", "--rankings", "rankings.jsonl", "--epochs", "1", "--batch", "4", "--out", "dpo"], &dir);
    for run in ["ppo", "dpo"] {
        for file in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            assert!(dir.join(run).join(file).exists(), "{run}/{file}");
        }
    }
    let chat = ok(&["eval", "--model", "dpo", "--prompts", "world/heldout.jsonl", "--max-new-tokens", "6"], &dir);
    assert!(chat.contains("EOS within 6 tokens"), "{chat}");

    // LoRA: the run writes its adapter, not a copy of the base; every command loads it on the base
    // it names. `--merge` writes the merged model as well, which computes the same.
    let lora = ["--lora-rank", "4", "--lora-alpha", "8"];
    let lora_dpo = |out: &'static str| {
        [&["dpo", "--policy", "sft", "--rankings", "rankings.jsonl", "--epochs", "1", "--batch", "4", "--out", out][..], &lora].concat()
    };
    ok(&lora_dpo("dpo-lora"), &dir);
    ok(&[&lora_dpo("dpo-merged")[..], &["--merge"]].concat(), &dir);
    ok(&[&small_ppo("prompts.txt", "ppo-lora")[..], &["--iterations", "2"], &lora].concat(), &dir);
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
        ok(&args, &dir);
        std::fs::read_to_string(dir.join(out)).unwrap()
    };
    assert_eq!(
        greedy("dpo-lora", "from-adapter.jsonl"),
        greedy("dpo-merged", "from-merged.jsonl"),
        "the adapter on its base is the merged model"
    );
    ok(&["eval", "--model", "dpo-lora", "--prompts", "world/heldout.jsonl", "--max-new-tokens", "6"], &dir);
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
    let dir = fresh_dir("llama");
    ok(&["data", "--out", "world", "--pretrain-lines", "50", "--demos", "60", "--prompts", "12", "--heldout", "4"], &dir);
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
            &dir,
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
        &dir,
    );
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("sft/config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "qwen2", "{config}");
    ok(
        &["sample", "--model", "sft", "--prompts", "world/prompts.jsonl", "-k", "3", "--max-new-tokens", "5", "--out", "samples.jsonl"],
        &dir,
    );
    ok(&["rank", "--samples", "samples.jsonl", "--labeler", "concise", "--out", "rankings.jsonl"], &dir);
    ok(&with_lora(&["reward", "--model", "sft", "--rankings", "rankings.jsonl", "--epochs", "1", "--out", "rm"]), &dir);
    // A LoRA reward model is its adapters and score head on the SFT model it names, no copy of it.
    assert!(!dir.join("rm/model.safetensors").exists());
    let rm = safetensors_names(&dir.join("rm/adapter/adapter_model.safetensors"));
    assert!(rm.contains(&"score.weight".to_owned()) && rm.iter().any(|n| n.ends_with("q_proj.lora_A.weight")), "{rm:?}");
    assert!(!rm.contains(&"model.layers.0.self_attn.q_proj.bias".to_owned()), "the base is not copied: {rm:?}");
    ok(&with_lora(&[&small_ppo("world/prompts.jsonl", "ppo")[..], &["--iterations", "1"]].concat()), &dir);
    ok(&with_lora(&["dpo", "--policy", "sft", "--rankings", "rankings.jsonl", "--epochs", "1", "--batch", "4", "--out", "dpo"]), &dir);
    for method in ["grpo", "rloo"] {
        let args = ["--policy", "sft", "--reward", "rm", "--prompts", "world/prompts.jsonl", "--out", method];
        ok(
            &with_lora(
                &[&[method][..], &args, &["--iterations", "1", "--prompts-per-iteration", "2", "-k", "2", "--max-new-tokens", "5"]]
                    .concat(),
            ),
            &dir,
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
    let report = ok(&["eval", "--model", "dpo", "--prompts", "world/heldout.jsonl", "--max-new-tokens", "4"], &dir);
    assert!(report.contains("EOS within 4 tokens"), "{report}");
    std::fs::remove_dir_all(dir).ok();
}

fn safetensors_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header]).unwrap();
    header.as_object().unwrap().keys().filter(|k| *k != "__metadata__").cloned().collect()
}

#[test]
fn bad_rankings_and_mismatched_reward_models_are_refused_before_training() {
    let dir = fresh_dir("badrlhf");
    world(&dir);
    ok(
        &[
            "pretrain",
            "--tokenizer",
            "tok.json",
            "--corpus",
            "world/pretrain.txt",
            "--seq-len",
            "16",
            "--steps",
            "2",
            "--batch",
            "2",
            "--out",
            "sft",
        ],
        &dir,
    );
    let good = r#"{"prompt":"hi","completions":["hello.","hi there, friend."],"ranking":[0,1]}"#;
    let cases = [
        (r#"{"prompt":"hi","completions":["a","b","c"],"ranking":[0,0,1]}"#, "field `ranking`: index 0 appears twice"),
        (r#"{"prompt":"hi","completions":["a"],"ranking":[0]}"#, "field `completions`: a ranking needs at least 2 completions, found 1"),
        (r#"{"prompt":"hi","completions":["a","b","c"],"ranking":[1,0]}"#, "field `ranking`: ranks 2 completions but there are 3"),
        (r#"{"prompt":"hi","completions":["a","a"],"ranking":[1,0]}"#, "field `completions`: completions 0 and 1 are the same text"),
        // 2^32 + 1 would alias to 1 where usize is 32 bits (the page's wasm32).
        (r#"{"prompt":"hi","completions":["a","b"],"ranking":[0,4294967297]}"#, "field `ranking`: index 4294967297"),
    ];
    for (line, message) in cases {
        std::fs::write(dir.join("bad.jsonl"), format!("{good}\n{line}\n")).unwrap();
        let stderr = fails(&["reward", "--model", "sft", "--rankings", "bad.jsonl", "--out", "rm"], &dir);
        assert!(stderr.contains(&format!("bad.jsonl:2: {message}")), "{stderr}");
        assert!(!dir.join("rm").exists(), "nothing may be written");
    }

    std::fs::write(dir.join("latin1.jsonl"), [good.as_bytes(), b"\n{\"prompt\":\"caf\xe9\"}\n"].concat()).unwrap();
    let stderr = fails(&["reward", "--model", "sft", "--rankings", "latin1.jsonl", "--out", "rm"], &dir);
    assert!(stderr.contains("latin1.jsonl:2: not valid UTF-8"), "{stderr}");

    // A reward model from another tokenizer, and one of another size.
    std::fs::write(dir.join("pairs.jsonl"), r#"{"prompt":"hi","chosen":"hello.","rejected":"go away."}"#.to_owned() + "\n").unwrap();
    ok(&["tokenizer", "--corpus", "world/pretrain.txt", "--demos", "world/demos.jsonl", "--vocab", "350", "--out", "tok2.json"], &dir);
    ok(
        &[
            "pretrain",
            "--tokenizer",
            "tok2.json",
            "--corpus",
            "world/pretrain.txt",
            "--seq-len",
            "16",
            "--steps",
            "1",
            "--batch",
            "2",
            "--out",
            "other",
        ],
        &dir,
    );
    ok(&["reward", "--model", "other", "--rankings", "pairs.jsonl", "--epochs", "1", "--out", "rm-other"], &dir);
    let stderr = fails(&["ppo", "--policy", "sft", "--reward", "rm-other", "--prompts", "world/prompts.jsonl", "--out", "p"], &dir);
    assert!(stderr.contains("another tokenizer"), "{stderr}");
    ok(
        &[
            "pretrain",
            "--tokenizer",
            "tok.json",
            "--preset",
            "small",
            "--corpus",
            "world/pretrain.txt",
            "--seq-len",
            "16",
            "--steps",
            "1",
            "--batch",
            "2",
            "--out",
            "big",
        ],
        &dir,
    );
    ok(&["reward", "--model", "big", "--rankings", "pairs.jsonl", "--epochs", "1", "--out", "rm-big"], &dir);
    let stderr = fails(&["ppo", "--policy", "sft", "--reward", "rm-big", "--prompts", "world/prompts.jsonl", "--out", "p"], &dir);
    assert!(stderr.contains("different size"), "{stderr}");
    assert!(!dir.join("p").exists(), "nothing may be written");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_zero_save_period_and_a_zero_kl_target_are_refused_with_a_message() {
    let dir = fresh_dir("zeros");
    let stderr = fails(&["pretrain", "--tokenizer", "tok.json", "--corpus", "c.txt", "--save-every", "0", "--out", "base"], &dir);
    assert!(stderr.contains("--save-every") && stderr.contains("must be at least 1"), "{stderr}");
    let stderr = fails(&["ppo", "--policy", "sft", "--reward", "rm", "--prompts", "p.jsonl", "--save-every", "0", "--out", "p"], &dir);
    assert!(stderr.contains("must be at least 1"), "{stderr}");
    let stderr = fails(&["ppo", "--policy", "sft", "--reward", "rm", "--prompts", "p.jsonl", "--kl-target", "0", "--out", "p"], &dir);
    assert!(stderr.contains("kl_target = 0: a target KL must be above 0"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_gpu_backend_that_cannot_start_is_an_error_naming_it_and_the_cpu_way_out() {
    let dir = fresh_dir("backend");
    // This test binary is built without the GPU features: the same path a missing driver takes.
    for backend in ["wgpu", "cuda"] {
        let stderr = fails(&["ppo", "--policy", "sft", "--reward", "rm", "--prompts", "p.jsonl", "--backend", backend, "--out", "p"], &dir);
        assert!(stderr.contains(&format!("--backend {backend}:")) && stderr.contains("`--backend cpu`"), "{stderr}");
        assert!(stderr.contains(&format!("--features {backend}")), "says how to build it: {stderr}");
        assert!(!dir.join("p").exists(), "nothing may be written");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bench_refuses_an_unknown_preset_a_zero_size_or_a_model_past_memory_before_measuring_anything() {
    let dir = fresh_dir("bench-bad");
    let cases: [(&[&str], &str); 3] = [
        (&["--preset", "tiny,nope"], "--preset \"nope\" is not one of"),
        (&["--preset", "tiny", "--vocab", "0"], "must be at least 1"),
        (&["--preset", "tiny", "--vocab", "100000000000"], "would need at least"),
    ];
    for (flags, says) in cases {
        let out = tinyrlhf(&[&["bench", "--json"][..], flags].concat(), &dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(out.status.code(), Some(1 | 2)) && stderr.contains(says), "{flags:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{flags:?}: nothing measured before the refusal");
    }
}

#[test]
fn bench_json_is_one_object_with_every_figure_a_script_tracks() {
    let dir = fresh_dir("bench");
    let out = tinyrlhf(
        &["bench", "--json", "--preset", "tiny", "--vocab", "64", "--batch", "2", "--seq-len", "8", "--steps", "1"]
            .into_iter()
            .chain(["--new-tokens", "16", "--runs", "1", "--ppo-iterations", "1"])
            .collect::<Vec<_>>(),
        &dir,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.trim().lines().count(), 1, "one JSON object, one line: {stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
    let figures = &json["runs"][0]["figures"];
    assert_eq!(json["runs"][0]["preset"], "tiny");
    assert!(figures["train_step"]["tok_s"].as_f64().unwrap() > 0.0);
    let lora_dpo = &figures["lora_dpo_step"];
    assert!(lora_dpo["reference_secs"].as_f64().unwrap() > 0.0 && lora_dpo["policy_secs"].as_f64().unwrap() > 0.0);
    assert!(json["memory_bandwidth_gb_s"].as_f64().unwrap() > 0.0);
    for g in figures["generate"].as_array().unwrap() {
        assert!(g["kv_cache_tok_s"].as_f64().unwrap() > 0.0 && g["no_cache_tok_s"].as_f64().unwrap() > 0.0);
        // The sampler chooses tokens on the device and reads the ids back once per 8 tokens.
        assert_eq!(g["device_reads_per_token"].as_f64(), Some(1.0 / 8.0));
        // Kernel counts belong to GPU backends: on the CPU they are absent, not 0.
        assert!(g["kernels_per_token"].is_null());
    }
    let ppo = &figures["ppo_iteration"];
    let split = ["rollout_secs", "scoring_secs", "update_secs"].map(|k| ppo[k].as_f64().unwrap());
    assert!((ppo["secs"].as_f64().unwrap() - split.iter().sum::<f64>()).abs() < 1e-9);
    // Rollout: 48 tokens in reads of 8; scoring: one; the update's numbers: one.
    assert_eq!(figures["device_reads_per_ppo_iteration"].as_u64(), Some(48 / 8 + 2));
    assert_eq!(figures["device_reads_per_reward_step"].as_u64(), Some(1));
    for method in ["grpo_iteration", "rloo_iteration", "dpo_step", "reward_step"] {
        assert!(figures[method]["secs"].as_f64().unwrap() > 0.0, "{method}");
    }
}

#[test]
fn chat_says_a_line_is_not_utf8_and_answers_the_next() {
    use std::io::Write;
    let shipped = common::shipped_sft();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tinyrlhf"))
        .args(["chat", "--model", shipped.to_str().unwrap(), "--max-new-tokens", "4"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi \xff there\nlist two animals.\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("that line is not UTF-8 text (byte 4)"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1, "one answer, to the second line");
}
