//! The whole pipeline through files, as a user runs it: data to a sampled and evaluated SFT model,
//! rankings to a reward model to PPO and a comparison, and a killed run that resumes.

use std::process::Command;

use super::common::{fresh_dir, ok, tinyrlhf};
use super::{fails, small_ppo, world};

#[test]
fn data_tokenizer_pretrain_sft_sample_and_eval_run_through_files() {
    let scratch = fresh_dir("pipeline");
    let dir = scratch.path();
    world(dir);
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
        dir,
    );
    for file in ["config.json", "model.safetensors", "tokenizer.json", "manifest.json", "metrics.jsonl"] {
        assert!(dir.join("base").join(file).exists(), "base/{file}");
    }
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("base/manifest.json")).unwrap()).unwrap();
    assert!(manifest["data"]["corpus"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(std::fs::read_to_string(dir.join("base/metrics.jsonl")).unwrap().lines().count(), 6);

    ok(&["sft", "--model", "base", "--demos", "world/demos.jsonl", "--steps", "4", "--batch", "4", "--out", "sft"], dir);
    ok(
        &["sample", "--model", "sft", "--prompts", "world/heldout.jsonl", "-k", "3", "--max-new-tokens", "8", "--out", "samples.jsonl"],
        dir,
    );
    let samples = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 12);
    let first: serde_json::Value = serde_json::from_str(samples.lines().next().unwrap()).unwrap();
    assert_eq!(first["completions"].as_array().unwrap().len(), 3);

    let report = ok(&["eval", "--model", "sft", "--prompts", "world/heldout.jsonl", "--max-new-tokens", "8", "--json", "eval.json"], dir);
    assert!(report.contains("EOS within 8 tokens"), "{report}");
    let eval: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("eval.json")).unwrap()).unwrap();
    assert!(eval["eos_rate"].as_f64().is_some() && eval["rankable_rate"].as_f64().is_some());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn rank_reward_ppo_and_compare_run_through_files() {
    let scratch = fresh_dir("rlhf");
    let dir = scratch.path();
    world(dir);
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
        dir,
    );
    ok(
        &["sample", "--model", "sft", "--prompts", "world/prompts.jsonl", "-k", "4", "--max-new-tokens", "6", "--out", "samples.jsonl"],
        dir,
    );
    let ranked = ok(&["rank", "--samples", "samples.jsonl", "--labeler", "concise", "--out", "rankings.jsonl"], dir);
    assert!(ranked.contains("labeler concise ranked"), "{ranked}");
    let rankings = std::fs::read_to_string(dir.join("rankings.jsonl")).unwrap();
    assert!(rankings.lines().count() >= 10, "{ranked}");

    let trained = ok(&["reward", "--model", "sft", "--rankings", "rankings.jsonl", "--epochs", "2", "--out", "rm"], dir);
    assert!(trained.contains("held-out pair accuracy") && trained.contains("calibrated"), "{trained}");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("rm/manifest.json")).unwrap()).unwrap();
    assert!(manifest["held_out"]["accuracy"].as_f64().is_some());

    ok(&[&small_ppo("world/prompts.jsonl", "policy")[..], &["--iterations", "2"]].concat(), dir);
    let metrics = std::fs::read_to_string(dir.join("policy/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2);
    // A second run into the same directory must say --resume; with it, the run goes on to 3.
    let ppo = [&small_ppo("world/prompts.jsonl", "policy")[..], &["--iterations", "3"]].concat();
    assert!(fails(&ppo, dir).contains("--resume"));
    let resumed = ok(&[&ppo[..], &["--resume"]].concat(), dir);
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
        dir,
    );
    assert!(report.contains("win-rate of policy over reference"), "{report}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn an_interrupted_run_keeps_a_loadable_checkpoint_and_resumes_from_it() {
    let scratch = fresh_dir("resume");
    let dir = scratch.path();
    world(dir);
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
        .current_dir(dir)
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

    let refused = tinyrlhf(&[&args[..], &["--steps", "9"]].concat(), dir);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"), "a second run must not overwrite the first silently");
    let out = ok(&[&args[..], &["--steps", "9", "--resume"]].concat(), dir);
    assert!(out.contains("resuming"), "{out}");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&trainer_json).unwrap()).unwrap();
    assert_eq!(state["step"], 9);
    assert!(dir.join("base/model.safetensors").exists());
    std::fs::remove_dir_all(dir).ok();
}
