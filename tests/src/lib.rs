//! Shared helpers for the end-to-end and parity tests: where the fixtures are, and reading them.

use std::collections::HashMap;
use std::path::PathBuf;

/// The reference-value folder: `$TINYRLHF_FIXTURES`, else the copy in `tests/fixtures/trl-parity`.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("TINYRLHF_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/trl-parity"),
    }
}

/// The Hugging Face model folder (`transformers`' own GPT-2, GPT-2-style tokenizer, no pad token,
/// a chat template): `$TINYRLHF_HF_FIXTURE`, else the copy in `tests/fixtures/hf-gpt2-style`.
pub fn hf_fixture_dir() -> PathBuf {
    match std::env::var_os("TINYRLHF_HF_FIXTURE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/hf-gpt2-style"),
    }
}

/// The Llama-family model folders (`hf-llama`, `hf-llama3`, `hf-qwen2`, `hf-qwen3`, each written by
/// transformers): `$TINYRLHF_LLAMA_FIXTURES`, else the copy in `tests/fixtures/hf-llama-family`.
pub fn llama_fixtures_dir() -> PathBuf {
    match std::env::var_os("TINYRLHF_LLAMA_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/hf-llama-family"),
    }
}

/// Every model folder under [`llama_fixtures_dir`], sorted by name.
pub fn llama_fixture_folders() -> Vec<PathBuf> {
    model_folders(llama_fixtures_dir())
}

/// The Gemma 3 model folders (`hf-gemma3`, `hf-gemma3-pattern`, `hf-gemma3-sp`, written by transformers):
/// `$TINYRLHF_GEMMA3_FIXTURES`, else the copy in `tests/fixtures/hf-gemma3`.
pub fn gemma3_fixture_folders() -> Vec<PathBuf> {
    model_folders(match std::env::var_os("TINYRLHF_GEMMA3_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/hf-gemma3"),
    })
}

/// Every folder with a `config.json` under `dir`, sorted by name.
fn model_folders(dir: PathBuf) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.join("config.json").is_file())
        .collect();
    folders.sort();
    folders
}

/// A model folder on disk loaded as both edges load one (`config` names its config file, e.g.
/// `config_legacy.json`); the optional tokenizer files are used when present.
pub fn load_folder(dir: &std::path::Path, config: &str) -> tinyrlhf_rlhf::LanguageModel {
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()));
    let (config, weights, tokenizer) = (read(config), read("model.safetensors"), read("tokenizer.json"));
    let optional = |name: &str| std::fs::read(dir.join(name)).ok();
    let (tokenizer_config, template, generation) =
        (optional("tokenizer_config.json"), optional("chat_template.jinja"), optional("generation_config.json"));
    let files = tinyrlhf_rlhf::ModelFiles {
        config_json: &config,
        safetensors: weights.as_slice().into(),
        tokenizer: tinyrlhf_tokenizer::TokenizerFiles {
            tokenizer_json: &tokenizer,
            tokenizer_config_json: tokenizer_config.as_deref(),
            chat_template_jinja: template.as_deref(),
            generation_config_json: generation.as_deref(),
        },
    };
    tinyrlhf_rlhf::load_language_model(files, &burn::tensor::Device::flex()).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// A fixture folder's greedy continuations, each prompt alone and all of them left-padded in one
/// batch, equal what transformers generated (`expected.json`), with no EOS stop as they were made.
pub fn same_greedy_as_the_fixture(dir: &std::path::Path) {
    use tinyrlhf_model::{SamplingConfig, generate};
    let model = load_folder(dir, "config.json");
    let expected = llama_expected(dir);
    let ids = |key: &str| -> Vec<Vec<u32>> { serde_json::from_value(expected[key].clone()).unwrap() };
    let (prompts, alone, batched) = (ids("greedy_prompts"), ids("greedy_alone"), ids("greedy_batched_left_padded"));
    let new_tokens = expected["greedy_new_tokens"].as_u64().unwrap() as usize;
    let pad = model.tokenizer.special_ids().pad;
    // u32::MAX as EOS is never drawn.
    let greedy = SamplingConfig { temperature: 0.0, max_new_tokens: new_tokens, ..SamplingConfig::default() };
    for (prompt, want) in prompts.iter().zip(&alone) {
        let got = pollster::block_on(generate(&model.model, std::slice::from_ref(prompt), u32::MAX, pad, &greedy)).unwrap();
        assert_eq!(&got.tokens[0], want, "{} alone", dir.display());
    }
    let together = pollster::block_on(generate(&model.model, &prompts, u32::MAX, pad, &greedy)).unwrap();
    assert_eq!(together.tokens, batched, "{} batched", dir.display());
}

/// A model fixture folder's `expected.json` (what transformers computed for it).
pub fn llama_expected(dir: &std::path::Path) -> serde_json::Value {
    let path = dir.join("expected.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// `model`'s logits on a fixture folder's left-padded batch, transformers' logits, and the mask.
pub fn llama_fixture_logits(model: &tinyrlhf_rlhf::LanguageModel, dir: &std::path::Path) -> (Vec<f32>, FixtureTensor, FixtureTensor) {
    use burn::tensor::{Device, Int, Tensor, TensorData};
    let path = dir.join(llama_expected(dir)["logits_file"].as_str().unwrap());
    let batch = safetensors_values(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    let device = Device::flex();
    let ints = |t: &FixtureTensor| Tensor::<2, Int>::from_data(TensorData::new(t.as_i64(), [t.shape[0], t.shape[1]]), &device);
    let (ids, mask) = (&batch["input_ids"], &batch["attention_mask"]);
    let hidden = model.model.forward(ints(ids), ints(&batch["position_ids"]), Some(ints(mask)));
    (model.model.logits(hidden).into_data().try_to_vec::<f32>().unwrap(), batch["logits"].clone(), mask.clone())
}

pub fn read_fixture(relative: &str) -> Vec<u8> {
    let path = fixtures_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// A tensor from a safetensors file, as (shape, values widened to f64).
#[derive(Debug, Clone)]
pub struct FixtureTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

impl FixtureTensor {
    pub fn as_i64(&self) -> Vec<i64> {
        self.values.iter().map(|&v| v as i64).collect()
    }
}

/// Every tensor of a safetensors fixture (F32, F64, I64 supported).
pub fn read_safetensors(relative: &str) -> HashMap<String, FixtureTensor> {
    safetensors_values(&read_fixture(relative))
}

/// Every tensor of safetensors bytes, widened to f64.
pub fn safetensors_values(bytes: &[u8]) -> HashMap<String, FixtureTensor> {
    let file = safetensors::SafeTensors::deserialize(bytes).expect("fixture is valid safetensors");
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            use safetensors::Dtype;
            let data = view.data();
            let values: Vec<f64> = match view.dtype() {
                Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
                Dtype::F64 => data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect(),
                Dtype::I64 => data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
                other => panic!("fixture tensor {name} has unsupported dtype {other:?}"),
            };
            (name, FixtureTensor { shape: view.shape().to_vec(), values })
        })
        .collect()
}

/// Asserts |a - e| <= atol + rtol * |e| elementwise where `keep` is true, naming the first miss.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f64], keep: impl Fn(usize) -> bool, rtol: f64, atol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let mut compared = 0;
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        if !keep(i) {
            continue;
        }
        compared += 1;
        let a = a as f64;
        assert!((a - e).abs() <= atol + rtol * e.abs(), "{what}[{i}]: got {a}, expected {e} (rtol {rtol}, atol {atol})");
    }
    assert!(compared > 0, "{what}: nothing compared");
}

/// TRL 1.16's preference-optimisation reference values (`preference_optim.json`) as JSON, and its
/// lists read back as numbers.
pub mod preference {
    use serde_json::Value;

    pub fn fixture() -> Value {
        serde_json::from_slice(&super::read_fixture("preference_optim.json")).expect("preference_optim.json parses")
    }

    pub fn floats(v: &Value) -> Vec<f64> {
        v.as_array().expect("a list").iter().map(|x| x.as_f64().expect("a number")).collect()
    }

    pub fn rows(v: &Value) -> Vec<Vec<f64>> {
        v.as_array().expect("rows").iter().map(floats).collect()
    }

    /// Rows of 0/1 as booleans.
    pub fn mask(v: &Value) -> Vec<Vec<bool>> {
        rows(v).into_iter().map(|r| r.into_iter().map(|x| x != 0.0).collect()).collect()
    }
}

/// transformers' prompt ids (the chat template's, or for a model without one the prompt as
/// written with its BOS), last logits and greedy answers for the first five held-out prompts of
/// the SmolLM2 proof, reading `path` (a folder or a `.gguf`) with `bench/smollm2/hf_peer.py` in
/// `$TINYRLHF_TORCH_PYTHON` (opt-in real-model tests only).
pub fn transformers_answers(path: &std::path::Path, new_tokens: usize) -> serde_json::Value {
    let python = std::env::var_os("TINYRLHF_TORCH_PYTHON").expect("TINYRLHF_TORCH_PYTHON: a Python with torch and transformers");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(python)
        .arg(root.join("bench/smollm2/hf_peer.py"))
        .args(["greedy", path.to_str().unwrap(), root.join("bench/smollm2/heldout.jsonl").to_str().unwrap(), "5", &new_tokens.to_string()])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "hf_peer.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Our logits after each of `theirs`' prompts equal transformers' (1e-3).
pub fn same_last_logits(model: &tinyrlhf_rlhf::LanguageModel, theirs: &serde_json::Value) {
    use burn::tensor::{Device, Int, Tensor, TensorData};
    let device = Device::flex();
    for case in theirs["cases"].as_array().unwrap() {
        let ids: Vec<i64> = serde_json::from_value(case["ids"].clone()).unwrap();
        let n = ids.len();
        let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
        let positions = Tensor::<1, Int>::arange(0..n as i64, &device).reshape([1, n]);
        let logits = model.model.logits(model.model.forward(input, positions, None));
        let vocab = model.config.vocab_size();
        let last: Vec<f32> = logits.slice([0..1, n - 1..n, 0..vocab]).into_data().try_to_vec::<f32>().unwrap();
        let want: Vec<f64> = serde_json::from_value(case["last_logits"].clone()).unwrap();
        assert_close(&format!("{}: logits after the prompt", case["prompt"]), &last, &want, |_| true, 1e-3, 1e-3);
    }
}

/// Our prompt ids and greedy answers equal transformers'.
pub fn same_answers(model: &tinyrlhf_rlhf::LanguageModel, theirs: &serde_json::Value, new_tokens: usize) {
    use tinyrlhf_model::{SamplingConfig, generate};
    let special = model.tokenizer.special_ids();
    assert_eq!(u64::from(special.eos), theirs["eos_token_id"].as_u64().unwrap());
    let greedy = SamplingConfig { temperature: 0.0, max_new_tokens: new_tokens, ..SamplingConfig::default() };
    for case in theirs["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let ids = model.tokenizer.encode_prompt(prompt).unwrap();
        assert_eq!(serde_json::to_value(&ids).unwrap(), case["ids"], "{prompt}: the prompt's ids");
        let ours = pollster::block_on(generate(&model.model, &[ids], special.eos, special.pad, &greedy)).unwrap();
        let text = model.tokenizer.decode_response(&ours.tokens[0]).unwrap();
        println!("{prompt}\n  -> {text}");
        assert_eq!(serde_json::to_value(&ours.tokens[0]).unwrap(), case["greedy"], "{prompt}: ours {text:?}, theirs {}", case["text"]);
    }
}
