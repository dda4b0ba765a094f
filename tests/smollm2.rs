//! A real instruction model of the Llama family, SmolLM2-135M-Instruct, answers as transformers
//! does: the same chat-template ids and the same greedy answers to five everyday prompts.
//!
//! Opt-in (a 93 MB download and torch): make the folder with `bash bench/smollm2/run.sh` (it says
//! how), then `TINYRLHF_SMOLLM2=DIR TINYRLHF_TORCH_PYTHON=python cargo test -p tinyrlhf-tests
//! --test smollm2 -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::Command;

use tinyrlhf_model::{SamplingConfig, generate};

#[test]
#[ignore = "needs the SmolLM2 folder (TINYRLHF_SMOLLM2) and a Python with torch and transformers (TINYRLHF_TORCH_PYTHON)"]
fn smollm2_gives_transformers_greedy_answers_to_five_everyday_prompts() {
    let dir = PathBuf::from(std::env::var_os("TINYRLHF_SMOLLM2").expect("TINYRLHF_SMOLLM2: the SmolLM2-135M-Instruct folder"));
    let python = std::env::var_os("TINYRLHF_TORCH_PYTHON").expect("TINYRLHF_TORCH_PYTHON: a Python with torch and transformers");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let new_tokens = 32;
    let out = Command::new(python)
        .arg(root.join("bench/smollm2/hf_peer.py"))
        .args(["greedy", dir.to_str().unwrap(), root.join("bench/smollm2/heldout.jsonl").to_str().unwrap(), "5", &new_tokens.to_string()])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "hf_peer.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let model = tinyrlhf_tests::load_folder(&dir, "config.json");
    let special = model.tokenizer.special_ids();
    assert_eq!(u64::from(special.eos), theirs["eos_token_id"].as_u64().unwrap());
    let greedy = SamplingConfig { temperature: 0.0, max_new_tokens: new_tokens, ..SamplingConfig::default() };
    for case in theirs["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let ids = model.tokenizer.encode_prompt(prompt).unwrap();
        assert_eq!(serde_json::to_value(&ids).unwrap(), case["ids"], "{prompt}: the chat template's ids");
        let ours = pollster::block_on(generate(&model.model, &[ids], special.eos, special.pad, &greedy)).unwrap();
        let text = model.tokenizer.decode_response(&ours.tokens[0]).unwrap();
        println!("{prompt}\n  -> {text}");
        assert_eq!(serde_json::to_value(&ours.tokens[0]).unwrap(), case["greedy"], "{prompt}: ours {text:?}, theirs {}", case["text"]);
    }
}
