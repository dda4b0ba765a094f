//! A real instruction model of the Llama family, SmolLM2-135M-Instruct, answers as transformers
//! does: the same chat-template ids and the same greedy answers to five everyday prompts.
//!
//! The same file as llama.cpp keeps it (`SmolLM2-135M-Instruct.Q4_1.gguf`, Q4_1, Q8_0 and F32
//! tensors), read directly, gives transformers' greedy answers and logits on that file.
//!
//! Opt-in (a 93 MB download and torch): make the folder with `bash bench/smollm2/run.sh` (it says
//! how), then `TINYRLHF_SMOLLM2=DIR TINYRLHF_SMOLLM2_GGUF=FILE.gguf TINYRLHF_TORCH_PYTHON=python
//! cargo test -p tinyrlhf-tests --test smollm2 -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::Command;

use tinyrlhf_model::{SamplingConfig, generate};

/// transformers' chat-template ids, last logits and greedy answers for the first five held-out
/// prompts, reading `path` (a folder or a `.gguf`).
fn transformers_answers(path: &Path, new_tokens: usize) -> serde_json::Value {
    let python = std::env::var_os("TINYRLHF_TORCH_PYTHON").expect("TINYRLHF_TORCH_PYTHON: a Python with torch and transformers");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(python)
        .arg(root.join("bench/smollm2/hf_peer.py"))
        .args(["greedy", path.to_str().unwrap(), root.join("bench/smollm2/heldout.jsonl").to_str().unwrap(), "5", &new_tokens.to_string()])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "hf_peer.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "needs the SmolLM2 folder (TINYRLHF_SMOLLM2) and a Python with torch and transformers (TINYRLHF_TORCH_PYTHON)"]
fn smollm2_gives_transformers_greedy_answers_to_five_everyday_prompts() {
    let dir = PathBuf::from(std::env::var_os("TINYRLHF_SMOLLM2").expect("TINYRLHF_SMOLLM2: the SmolLM2-135M-Instruct folder"));
    let model = tinyrlhf_tests::load_folder(&dir, "config.json");
    same_answers(&model, &transformers_answers(&dir, 32), 32);
}

#[test]
#[ignore = "needs SmolLM2's GGUF (TINYRLHF_SMOLLM2_GGUF) and a Python with torch, transformers and gguf (TINYRLHF_TORCH_PYTHON)"]
fn smollm2_gguf_gives_transformers_greedy_answers_and_logits_on_the_same_file() {
    let file = PathBuf::from(std::env::var_os("TINYRLHF_SMOLLM2_GGUF").expect("TINYRLHF_SMOLLM2_GGUF: SmolLM2-135M-Instruct.Q4_1.gguf"));
    let bytes = std::fs::read(&file).unwrap();
    let gguf = tinyrlhf_model::GgufModel::from_bytes(&bytes).unwrap();
    let model = tinyrlhf_rlhf::load_gguf_model(gguf, &burn::tensor::Device::flex()).unwrap();
    let theirs = transformers_answers(&file, 32);
    for case in theirs["cases"].as_array().unwrap() {
        let ids: Vec<i64> = serde_json::from_value(case["ids"].clone()).unwrap();
        let n = ids.len();
        let device = burn::tensor::Device::flex();
        let input = burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(ids, [1, n]), &device);
        let positions = burn::tensor::Tensor::<1, burn::tensor::Int>::arange(0..n as i64, &device).reshape([1, n]);
        let logits = model.model.logits(model.model.forward(input, positions, None));
        let vocab = model.config.vocab_size();
        let last: Vec<f32> = logits.slice([0..1, n - 1..n, 0..vocab]).into_data().try_to_vec::<f32>().unwrap();
        let want: Vec<f64> = serde_json::from_value(case["last_logits"].clone()).unwrap();
        tinyrlhf_tests::assert_close(&format!("{}: logits after the prompt", case["prompt"]), &last, &want, |_| true, 1e-3, 1e-3);
    }
    same_answers(&model, &theirs, 32);
}

/// Our chat-template ids and greedy answers equal transformers'.
fn same_answers(model: &tinyrlhf_rlhf::LanguageModel, theirs: &serde_json::Value, new_tokens: usize) {
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
