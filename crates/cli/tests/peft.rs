//! A LoRA run's two exports load where people use them: PEFT puts our adapter on the base the run
//! started from (transformers folders: GPT-2, and the Llama family's Llama 3 and Qwen2) and gives
//! the logits of our merged model (`--merge`), which transformers loads as it loads any folder.
//!
//! Opt-in, since it needs torch: `TINYRLHF_PEFT_PYTHON=/path/to/python cargo test -p tinyrlhf-cli
//! --test peft -- --ignored`, with a Python that has `tests/python/requirements-peft.txt`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ok as tinyrlhf, ranked_sft};

#[test]
#[ignore = "needs a Python with torch, transformers and peft (TINYRLHF_PEFT_PYTHON)"]
fn peft_puts_our_adapter_on_the_base_and_gives_the_merged_models_logits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let gpt2 = std::env::var_os("TINYRLHF_HF_FIXTURE").map(PathBuf::from).unwrap_or_else(|| root.join("tests/fixtures/hf-gpt2-style"));
    let llama =
        std::env::var_os("TINYRLHF_LLAMA_FIXTURES").map(PathBuf::from).unwrap_or_else(|| root.join("tests/fixtures/hf-llama-family"));
    for fixture in [gpt2, llama.join("hf-llama3"), llama.join("hf-qwen2")] {
        check_peft_on(&root, &fixture);
    }
}

fn check_peft_on(root: &Path, fixture: &Path) {
    let python = std::env::var_os("TINYRLHF_PEFT_PYTHON").expect("TINYRLHF_PEFT_PYTHON: a Python with tests/python/requirements-peft.txt");
    let name = fixture.file_name().unwrap().to_string_lossy().into_owned();
    let dir = std::env::temp_dir().join(format!("tinyrlhf-peft-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    ranked_sft(fixture, &dir);
    let lora = ["--lora-rank", "4", "--lora-alpha", "8", "--lr", "5e-3", "--merge"];
    tinyrlhf(
        &[&["dpo", "--policy", "sft", "--rankings", "rankings.jsonl", "--epochs", "2", "--out", "dpo-lora"][..], &lora].concat(),
        &dir,
    );

    let out =
        Command::new(python).arg(root.join("tests/python/peft_peer.py")).args(["sft", "dpo-lora"]).current_dir(&dir).output().unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (peft, moved) = (report["peft_vs_merged"].as_f64().unwrap(), report["merged_vs_base"].as_f64().unwrap());
    println!("{name}: PEFT vs merged: {peft:e}; merged vs base: {moved}");
    assert!(peft < 1e-4, "{name}: PEFT's adapted model differs from our merged one by {peft}");
    assert!(moved > 1e-2, "{name}: the adapter changed nothing ({moved})");
    std::fs::remove_dir_all(dir).ok();
}
