//! Llama-family folders written by Hugging Face `transformers` (Llama with grouped-query attention
//! and a tied head, Llama 3 rope scaling with an untied head, Qwen2's q/k/v biases, Qwen3's qk-norm
//! and explicit head_dim) load as the model the pipeline works from and compute what transformers
//! computes: logits of a left-padded batch, greedy continuations alone and batched, chat-template
//! text and ids, special tokens. Every shape, id and template comes from the folders
//! (`$TINYRLHF_LLAMA_FIXTURES` to use others).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde_json::Value;
use tinyrlhf_model::ModelConfig;
use tinyrlhf_tests::{assert_close, llama_expected, llama_fixture_folders, llama_fixture_logits, load_folder, same_greedy_as_the_fixture};

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()))
}

fn folders() -> Vec<PathBuf> {
    let folders = llama_fixture_folders();
    assert!(folders.len() >= 4, "the Llama-family fixtures are missing: {folders:?}");
    folders
}

#[test]
fn every_llama_family_folder_gives_transformers_logits_on_a_left_padded_batch() {
    for dir in folders() {
        let model = load_folder(&dir, "config.json");
        let vocab = model.config.vocab_size();
        assert_eq!(vocab as u64, llama_expected(&dir)["vocab_size"].as_u64().unwrap());
        assert!(matches!(model.config, ModelConfig::Llama(_)), "{}", dir.display());
        let (ours, theirs, mask) = llama_fixture_logits(&model, &dir);
        assert!(mask.values.contains(&0.0), "{}: the batch is padded", dir.display());
        assert_close(&format!("{} logits", dir.display()), &ours, &theirs.values, |i| mask.values[i / vocab] == 1.0, 1e-4, 1e-5);
    }
}

#[test]
fn the_older_rope_keys_read_as_the_newer_ones() {
    for dir in folders() {
        let (new, legacy) = (load_folder(&dir, "config.json"), load_folder(&dir, "config_legacy.json"));
        assert_eq!(llama_fixture_logits(&new, &dir).0, llama_fixture_logits(&legacy, &dir).0, "{}", dir.display());
    }
}

#[test]
fn a_perturbed_reference_logit_is_caught() {
    let dir = &folders()[0];
    let model = load_folder(dir, "config.json");
    let (ours, mut theirs, mask) = llama_fixture_logits(&model, dir);
    let vocab = model.config.vocab_size();
    let real = mask.values.iter().position(|&m| m == 1.0).unwrap() * vocab;
    theirs.values[real + 3] += 1e-2;
    let caught = std::panic::catch_unwind(|| assert_close("logits", &ours, &theirs.values, |i| mask.values[i / vocab] == 1.0, 1e-4, 1e-5));
    assert!(caught.is_err(), "a logit moved by 0.01 must fail the comparison");
}

#[test]
fn greedy_continuations_alone_and_left_padded_in_a_batch_equal_transformers() {
    for dir in folders() {
        same_greedy_as_the_fixture(&dir);
    }
}

#[test]
fn special_tokens_and_chat_templates_are_the_folders() {
    for dir in folders() {
        let tokenizer = load_folder(&dir, "config.json").tokenizer;
        let expected = llama_expected(&dir);
        let special = tokenizer.special_ids();
        assert_eq!(u64::from(special.eos), expected["eos_token_id"].as_u64().unwrap(), "{}", dir.display());
        assert_eq!(u64::from(special.pad), expected["pad_token_id"].as_u64().unwrap(), "{}", dir.display());
        for case in expected["template_cases"].as_array().unwrap() {
            let messages = case["messages"].as_array().unwrap();
            let content = |i: usize| messages[i]["content"].as_str().unwrap();
            let role = |i: usize| messages[i]["role"].as_str().unwrap();
            let (text, ids): (&str, Vec<u32>) = (case["text"].as_str().unwrap(), serde_json::from_value(case["ids"].clone()).unwrap());
            assert_eq!(tokenizer.encode(text).unwrap(), ids, "{}: {text:?}", dir.display());
            let template = tokenizer.chat_template();
            match (case["add_generation_prompt"].as_bool().unwrap(), messages.len()) {
                (true, 1) => {
                    // The template's default system turn comes with the user's prompt.
                    assert_eq!(template.prompt_text(content(0)).unwrap(), text);
                    assert_eq!(tokenizer.encode_prompt(content(0)).unwrap(), ids);
                }
                (false, 2) => {
                    assert_eq!(tokenizer.render_chat(content(0), content(1)).unwrap(), text);
                    let mut ours = tokenizer.encode_prompt(content(0)).unwrap();
                    let answer = tokenizer.encode_response(content(0), content(1)).unwrap();
                    assert_eq!(tokenizer.decode_response(&answer).unwrap(), content(1), "no GPT-2 habits: nothing stripped");
                    ours.extend(answer);
                    assert_eq!(ours[..], ids[..ours.len()], "{text:?}");
                }
                _ => assert_eq!(role(0), "system", "a case this test does not know"),
            }
        }
    }
}

#[test]
fn an_architecture_we_do_not_run_is_refused_naming_it_and_those_we_do() {
    let dir = &folders()[0];
    let mut config: Value = serde_json::from_slice(&read(dir, "config.json")).unwrap();
    config["model_type"] = "phi3".into();
    let message = ModelConfig::from_json_bytes(config.to_string().as_bytes()).unwrap_err().to_string();
    assert!(
        message.contains("model_type") && message.contains("phi3") && message.contains("llama, qwen2, qwen3, gemma3_text"),
        "{message}"
    );
    config["model_type"] = "llama".into();
    config["rope_parameters"]["rope_type"] = "yarn".into();
    let message = ModelConfig::from_json_bytes(config.to_string().as_bytes()).unwrap_err().to_string();
    assert!(message.contains("rope_type") && message.contains("yarn"), "{message}");
}

#[test]
fn a_misshaped_tensor_is_named_with_both_shapes() {
    let dir = &folders()[0];
    let mut config: Value = serde_json::from_slice(&read(dir, "config.json")).unwrap();
    let width = config["intermediate_size"].as_u64().unwrap();
    config["intermediate_size"] = (width + 8).into();
    let message =
        tinyrlhf_model::load_lm(config.to_string().as_bytes(), &read(dir, "model.safetensors"), &Device::flex()).unwrap_err().to_string();
    assert!(message.contains("mlp.") && message.contains(&format!("{width}")) && message.contains(&format!("{}", width + 8)), "{message}");
}

/// A family is its file and a line: Mistral's `config.json` reads as its own family and runs on the
/// Llama layers. transformers' `MistralForCausalLM` computes `LlamaForCausalLM`'s function when
/// no window applies, so the Llama fixture's weights under Mistral's config give the fixture's
/// logits; a window shorter than the context caps the context (rows no longer than the window
/// attend as transformers lets them); the config is written back as Mistral's.
#[test]
fn a_mistral_config_is_its_own_family_and_computes_transformers_logits() {
    let dir = folders().into_iter().find(|d| d.ends_with("hf-llama")).expect("the hf-llama fixture");
    let mut config: Value = serde_json::from_slice(&read(&dir, "config.json")).unwrap();
    config["model_type"] = "mistral".into();
    config["architectures"] = serde_json::json!(["MistralForCausalLM"]);
    config["sliding_window"] = Value::Null;
    let path = std::env::temp_dir().join(format!("tinyrlhf-mistral-{}.json", std::process::id()));
    std::fs::write(&path, config.to_string()).unwrap();
    let model = load_folder(&dir, path.to_str().unwrap());
    std::fs::remove_file(&path).ok();
    assert!(matches!(model.config, ModelConfig::Mistral(_)), "{:?}", model.config.architecture());
    assert_eq!(model.config.architecture(), "mistral");
    let vocab = model.config.vocab_size();
    let (ours, theirs, mask) = llama_fixture_logits(&model, &dir);
    assert_close("Mistral logits", &ours, &theirs.values, |i| mask.values[i / vocab] == 1.0, 1e-4, 1e-5);
    assert_eq!(ModelConfig::from_json_bytes(model.config.to_json().as_bytes()).unwrap(), model.config);

    config["sliding_window"] = 16.into();
    let windowed = ModelConfig::from_json_bytes(config.to_string().as_bytes()).unwrap();
    assert_eq!(windowed.context_length(), 16);
    assert_eq!(windowed.init(&Device::flex()).context_length(), 16);
    config["sliding_window"] = 0.into();
    let err = ModelConfig::from_json_bytes(config.to_string().as_bytes()).unwrap_err().to_string();
    assert!(err.contains("sliding_window"), "{err}");
}
