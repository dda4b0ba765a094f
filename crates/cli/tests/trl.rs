//! Rankings go out to TRL and the adapter comes back: `tinyrlhf export` of a rankings file trains
//! with TRL's own `trl dpo` under `accelerate launch` on two CPU processes, its loss falls as our
//! DPO's does on the same rankings, and the adapter TRL saved loads in tinyrlhf (its base named
//! by a hub id, found with `--base`) with transformers + PEFT's logits.
//!
//! Opt-in, since it needs torch: `TINYRLHF_TRL_PYTHON=/path/to/python cargo test -p tinyrlhf-cli
//! --test trl -- --ignored`, with a Python that has `tests/python/requirements-trl.txt` (its `trl`
//! command beside it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::{Device, Int, Tensor};
use common::{ok as tinyrlhf, ranked_sft};
use tinyrlhf_rlhf::{AdapterFiles, ModelFiles, OtherBase, Safetensors};
use tinyrlhf_tokenizer::TokenizerFiles;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
#[ignore = "needs a Python with torch, transformers, peft, trl and accelerate (TINYRLHF_TRL_PYTHON)"]
fn trl_trains_our_export_on_two_processes_and_its_adapter_comes_back() {
    let python = PathBuf::from(
        std::env::var_os("TINYRLHF_TRL_PYTHON").expect("TINYRLHF_TRL_PYTHON: a Python with tests/python/requirements-trl.txt"),
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let llama =
        std::env::var_os("TINYRLHF_LLAMA_FIXTURES").map(PathBuf::from).unwrap_or_else(|| root.join("tests/fixtures/hf-llama-family"));
    let fixture = llama.join("hf-qwen2");
    let dir = std::env::temp_dir().join(format!("tinyrlhf-trl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // 1. Rankings of an SFT model's answers, and our own LoRA DPO run on them.
    ranked_sft(&fixture, &dir);
    let dpo = ["dpo", "--policy", "sft", "--rankings", "rankings.jsonl", "--epochs", "2", "--batch", "8", "--lr", "5e-3"];
    tinyrlhf(&[&dpo[..], &["--lora-rank", "4", "--lora-alpha", "8", "--out", "ours"]].concat(), &dir);

    // 2. The same rankings and that run's settings, out to TRL.
    tinyrlhf(&["export", "--to", "trl", "--rankings", "rankings.jsonl", "--model", "sft", "--from-run", "ours", "--out", "trl"], &dir);
    let config = std::fs::read_to_string(dir.join("trl/dpo.yaml")).unwrap();
    for line in ["lora_r: 4", "lora_alpha: 8", "num_train_epochs: 2", "learning_rate: 0.005", "per_device_train_batch_size: 8"] {
        assert!(config.lines().any(|l| l == line), "dpo.yaml lacks {line:?}:\n{config}");
    }

    // 3. TRL's DPO on two CPU processes.
    let trl = python.with_file_name("trl");
    let out = Command::new(&trl)
        .args(["dpo", "--config", "dpo.yaml", "--accelerate_config", "accelerate/cpu.yaml", "--use_cpu", "true"])
        .current_dir(dir.join("trl"))
        .env("PATH", format!("{}:{}", python.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default()))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "trl dpo failed:\n{log}");
    // Two processes of 8 pairs a step: an epoch is the pairs over 16 (one process would take twice the steps).
    let pairs = std::fs::read_to_string(dir.join("trl/data/preferences/train.jsonl")).unwrap().lines().count();
    let (trl_losses, trl_steps) = trl_log(&dir.join("trl/runs/dpo"));
    assert_eq!(trl_steps, 2 * pairs.div_ceil(16), "TRL's steps for {pairs} pairs, 2 epochs, 2 processes:\n{log}");
    let our_losses: Vec<f64> = std::fs::read_to_string(dir.join("ours/metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("loss")?.as_f64())
        .collect();
    println!("TRL's DPO losses: {trl_losses:?}\nour DPO losses: {our_losses:?}");
    // Both start where DPO starts (the policy is its reference: log 2), and over the second half
    // both sit lower by about as much (single steps are noisy: each batch holds other pairs).
    let late = |losses: &[f64]| losses[losses.len() / 2..].iter().sum::<f64>() / (losses.len() - losses.len() / 2) as f64;
    for (who, losses) in [("TRL", &trl_losses), ("tinyrlhf", &our_losses)] {
        assert!((losses[0] - std::f64::consts::LN_2).abs() < 1e-3, "{who}'s first DPO loss is {}, not log 2", losses[0]);
        assert!(late(losses) < std::f64::consts::LN_2 - 0.02, "{who}'s DPO loss did not fall: {losses:?}");
    }
    let (theirs, ours) = (late(&trl_losses), late(&our_losses));
    println!("second-half mean loss: TRL {theirs:.4}, tinyrlhf {ours:.4}");
    assert!((theirs - ours).abs() < 0.05, "the two DPO runs' losses part: TRL {theirs}, tinyrlhf {ours}");

    // 4. The adapter comes back, its base named as on a cluster (a hub id), found with --base.
    let adapter = dir.join("trl/runs/dpo");
    let config_path = adapter.join("adapter_config.json");
    let mut peft = json(&config_path);
    peft["base_model_name_or_path"] = "someone/tiny-qwen2-sft".into();
    std::fs::write(&config_path, peft.to_string()).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_tinyrlhf"))
        .args(["chat", "--model", "trl/runs/dpo", "--max-new-tokens", "4"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("--base") && said.contains("someone/tiny-qwen2-sft"), "{said}");
    let report = tinyrlhf(
        &[
            "eval",
            "--policy",
            "trl/runs/dpo",
            "--base",
            "sft",
            "--reference",
            "ours",
            "--prompts",
            "world/heldout.jsonl",
            "--labeler",
            "concise",
        ],
        &dir,
    );
    assert!(report.contains("win-rate of policy over reference"), "eval printed no win-rate:\n{report}");

    // 5. Its logits are transformers + PEFT's.
    let device = Device::flex();
    let read = |path: PathBuf| std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let sft = dir.join("sft");
    let (config_json, weights, tokenizer_json) =
        (read(sft.join("config.json")), read(sft.join("model.safetensors")), read(sft.join("tokenizer.json")));
    let tokenizer_config = read(sft.join("tokenizer_config.json"));
    let template = std::fs::read(sft.join("chat_template.jinja")).ok();
    let tokenizer = || TokenizerFiles {
        tokenizer_json: &tokenizer_json,
        tokenizer_config_json: Some(&tokenizer_config),
        chat_template_jinja: template.as_deref(),
        generation_config_json: None,
    };
    let base = ModelFiles { config_json: &config_json, safetensors: Safetensors::Bytes(&weights), tokenizer: tokenizer() };
    let base = tinyrlhf_rlhf::load_language_model(base, &device).unwrap();
    let ids = base.tokenizer.encode_prompt("What does a dictionary map?").unwrap();
    let (adapter_config, adapter_weights) = (read(config_path.clone()), read(adapter.join("adapter_model.safetensors")));
    let files = AdapterFiles { adapter_config_json: &adapter_config, adapter_safetensors: &adapter_weights, tokenizer: tokenizer() };
    let adapted = tinyrlhf_rlhf::with_adapter(base, files, OtherBase::Refused).unwrap();
    let n = ids.len();
    let input =
        Tensor::<2, Int>::from_data(burn::tensor::TensorData::new(ids.iter().map(|&t| t as i64).collect::<Vec<_>>(), [1, n]), &device);
    let positions = Tensor::<2, Int>::from_data(burn::tensor::TensorData::new((0..n as i64).collect::<Vec<_>>(), [1, n]), &device);
    let ours: Vec<f32> = adapted.model.logits(adapted.model.forward(input, positions, None)).into_data().try_to_vec().unwrap();

    let out = Command::new(&python)
        .arg(root.join("tests/python/trl_peer.py"))
        .args([dir.join("sft").to_str().unwrap(), adapter.to_str().unwrap(), &serde_json::to_string(&ids).unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let peft_logits: Vec<f32> = theirs["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32))
        .collect();
    assert_eq!(ours.len(), peft_logits.len());
    let differ = ours.iter().zip(&peft_logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let moved = theirs["moved"].as_f64().unwrap();
    println!("tinyrlhf vs transformers + PEFT on TRL's adapter: {differ:e}; the adapter moved the logits by {moved}");
    assert!(moved > 1e-3, "TRL's adapter changed nothing ({moved})");
    assert!(differ < 1e-5, "tinyrlhf's logits with TRL's adapter differ from PEFT's by {differ}");
    std::fs::remove_dir_all(dir).ok();
}

/// The training losses TRL logged, in order, and its steps (its last checkpoint's `trainer_state.json`).
fn trl_log(run: &Path) -> (Vec<f64>, usize) {
    let mut checkpoints: Vec<(usize, PathBuf)> = std::fs::read_dir(run)
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let step = path.file_name()?.to_str()?.strip_prefix("checkpoint-")?.parse().ok()?;
            Some((step, path))
        })
        .collect();
    checkpoints.sort();
    let (_, last) = checkpoints.last().unwrap_or_else(|| panic!("{} holds no checkpoint", run.display()));
    let state = json(&last.join("trainer_state.json"));
    let losses = state["log_history"].as_array().unwrap().iter().filter_map(|entry| entry.get("loss")?.as_f64()).collect();
    (losses, state["global_step"].as_u64().unwrap() as usize)
}
