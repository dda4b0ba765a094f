//! A real instruction model of the Llama family, SmolLM2-135M-Instruct, answers as transformers
//! does: the same chat-template ids and the same greedy answers to five everyday prompts.
//!
//! The same file as llama.cpp keeps it (`SmolLM2-135M-Instruct.Q4_1.gguf`, Q4_1, Q8_0 and F32
//! tensors), read directly, gives transformers' greedy answers and logits on that file.
//!
//! Opt-in (a 93 MB download and torch): make the folder with `bash bench/smollm2/run.sh` (it says
//! how), then `TINYRLHF_SMOLLM2=DIR TINYRLHF_SMOLLM2_GGUF=FILE.gguf TINYRLHF_TORCH_PYTHON=python
//! cargo test -p tinyrlhf-tests --test smollm2 -- --ignored`.

use std::path::PathBuf;

use tinyrlhf_tests::{same_answers, same_last_logits, transformers_answers};

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
    same_last_logits(&model, &theirs);
    same_answers(&model, &theirs, 32);
}
