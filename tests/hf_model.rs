//! A model folder written by Hugging Face `transformers` (GPT-2, a GPT-2-style tokenizer whose only
//! special token is `<|endoftext|>`, no pad token, a Jinja chat template) loads as the model the
//! pipeline works from: the same logits as transformers, the same chat-template text and ids as
//! `apply_chat_template`, padding with EOS. Every shape, id and template comes from the folder
//! (`$TINYRLHF_HF_FIXTURE` to use another).

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;
use tinyrlhf_model::{SamplingConfig, generate};
use tinyrlhf_rlhf::{LanguageModel, ModelFiles, load_language_model};
use tinyrlhf_tests::{FixtureTensor, assert_close, hf_fixture_dir, safetensors_values};
use tinyrlhf_tokenizer::TokenizerFiles;

/// The folder's files, the optional ones `None` when absent.
struct Folder {
    config: Vec<u8>,
    weights: Vec<u8>,
    tokenizer: Vec<u8>,
    tokenizer_config: Option<Vec<u8>>,
    template: Option<Vec<u8>>,
}

impl Folder {
    fn read() -> Self {
        let dir = hf_fixture_dir();
        let file = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()));
        let optional = |name: &str| std::fs::read(dir.join(name)).ok();
        Self {
            config: file("config.json"),
            weights: file("model.safetensors"),
            tokenizer: file("tokenizer.json"),
            tokenizer_config: optional("tokenizer_config.json"),
            template: optional("chat_template.jinja"),
        }
    }

    fn files(&self) -> ModelFiles<'_> {
        ModelFiles {
            config_json: &self.config,
            safetensors: self.weights.as_slice().into(),
            tokenizer: TokenizerFiles {
                tokenizer_json: &self.tokenizer,
                tokenizer_config_json: self.tokenizer_config.as_deref(),
                chat_template_jinja: self.template.as_deref(),
                generation_config_json: None,
            },
        }
    }

    fn load(&self) -> LanguageModel {
        load_language_model(self.files(), &Device::flex()).expect("the transformers folder loads")
    }
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(hf_fixture_dir().join("expected.json")).unwrap()).unwrap()
}

fn ints(t: &FixtureTensor, device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(t.as_i64(), [t.shape[0], t.shape[1]]), device)
}

#[test]
fn a_transformers_folder_loads_padding_with_eos_and_gives_transformers_logits_on_a_left_padded_batch() {
    let model = Folder::read().load();
    let expected = expected();
    assert_eq!(model.config.vocab_size() as u64, expected["vocab_size"].as_u64().unwrap());
    let eos = expected["eos_token_id"].as_u64().unwrap() as u32;
    assert!(expected["pad_token_id"].is_null(), "the fixture has no pad token");
    let special = model.tokenizer.special_ids();
    assert_eq!((special.eos, special.pad), (eos, eos), "no pad token: padding uses EOS");

    let bytes = std::fs::read(hf_fixture_dir().join(expected["logits_file"].as_str().unwrap())).unwrap();
    let batch = safetensors_values(&bytes);
    let (ids, mask) = (&batch["input_ids"], &batch["attention_mask"]);
    assert!(ids.as_i64().iter().zip(&mask.values).any(|(&id, &m)| m == 0.0 && id == i64::from(eos)), "the batch is padded with EOS");
    let device = Device::flex();
    let hidden = model.model.forward(ints(ids, &device), ints(&batch["position_ids"], &device), Some(ints(mask, &device)));
    let logits: Vec<f32> = model.model.logits(hidden).into_data().try_to_vec::<f32>().unwrap();
    let vocab = model.config.vocab_size();
    assert_close("logits", &logits, &batch["logits"].values, |i| mask.values[i / vocab] == 1.0, 1e-4, 1e-5);
}

#[test]
fn the_chat_template_gives_apply_chat_template_s_text_and_ids() {
    let tokenizer = Folder::read().load().tokenizer;
    let cases = expected()["template_cases"].as_array().unwrap().clone();
    assert!(!cases.is_empty());
    for case in cases {
        let messages = case["messages"].as_array().unwrap();
        let content = |i: usize| messages[i]["content"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let text = case["text"].as_str().unwrap();
        let template = tokenizer.chat_template();
        if case["add_generation_prompt"].as_bool().unwrap() {
            assert_eq!(messages.len(), 1, "a generation prompt after one user turn");
            assert_eq!(template.prompt_text(content(0)).unwrap(), text);
            assert_eq!(tokenizer.encode_prompt(content(0)).unwrap(), ids, "{text:?}");
        } else {
            assert_eq!(messages.len(), 2, "a user turn and its answer");
            assert_eq!(tokenizer.render_chat(content(0), content(1)).unwrap(), text);
            // Prompt then answer, cut after EOS: what the template writes after it is not trained.
            let mut ours = tokenizer.encode_prompt(content(0)).unwrap();
            ours.extend(tokenizer.encode_response(content(0), content(1)).unwrap());
            assert_eq!(ours.last(), Some(&tokenizer.special_ids().eos));
            assert_eq!(ours[..], ids[..ours.len()], "{text:?}");
            assert_eq!(tokenizer.decode_response(&tokenizer.encode_response(content(0), content(1)).unwrap()).unwrap(), content(1));
        }
        assert_eq!(tokenizer.encode(text).unwrap(), ids, "{text:?}");
    }
}

#[test]
fn a_batch_padded_with_eos_samples_each_prompt_as_it_samples_alone() {
    let model = Folder::read().load();
    let tokenizer = &model.tokenizer;
    let special = tokenizer.special_ids();
    let prompts: Vec<Vec<u32>> =
        ["Return a list.", "What does a dictionary map to in the end?"].iter().map(|p| tokenizer.encode_prompt(p).unwrap()).collect();
    assert_ne!(prompts[0].len(), prompts[1].len(), "different lengths, so one row is padded");
    let greedy = SamplingConfig { temperature: 0.0, max_new_tokens: 12, ..SamplingConfig::default() };
    let together = pollster::block_on(generate(&model.model, &prompts, special.eos, special.pad, &greedy)).unwrap();
    for (i, prompt) in prompts.iter().enumerate() {
        let alone = pollster::block_on(generate(&model.model, std::slice::from_ref(prompt), special.eos, special.pad, &greedy)).unwrap();
        assert_eq!(together.tokens[i], alone.tokens[0], "prompt {i}");
        // An answer holds no padding: it ends at its EOS or at the length limit.
        let eos_at = together.tokens[i].iter().position(|&t| t == special.eos);
        assert!(eos_at.is_none_or(|at| at == together.tokens[i].len() - 1));
    }
}

#[test]
fn a_folder_that_does_not_hold_together_is_refused_naming_the_file() {
    let folder = Folder::read();
    let device = Device::flex();
    let refused = |files: ModelFiles| load_language_model(files, &device).unwrap_err().to_string();

    let mut config: Value = serde_json::from_slice(&folder.config).unwrap();
    config["vocab_size"] = (config["vocab_size"].as_u64().unwrap() + 7).into();
    let config = config.to_string();
    let message = refused(ModelFiles { config_json: config.as_bytes(), ..folder.files() });
    assert!(message.starts_with("tokenizer.json: its vocabulary has") && message.contains("vocab_size"), "{message}");

    let tokenizer_config = serde_json::json!({"eos_token": "<|im_end|>"}).to_string();
    let files = folder.files();
    let message = refused(ModelFiles {
        tokenizer: TokenizerFiles { tokenizer_config_json: Some(tokenizer_config.as_bytes()), ..files.tokenizer },
        ..files
    });
    assert!(message.contains("tokenizer_config.json: `eos_token` \"<|im_end|>\" is not in tokenizer.json's vocabulary"), "{message}");

    let files = folder.files();
    let template = Some(&b"{{ raise_exception('only system turns') }}"[..]);
    let message = refused(ModelFiles { tokenizer: TokenizerFiles { chat_template_jinja: template, ..files.tokenizer }, ..files });
    assert!(message.starts_with("chat_template.jinja: chat template") && message.contains("only system turns"), "{message}");

    let user_only = b"{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }}{% endif %}{% endfor %}";
    let files = folder.files();
    let message = refused(ModelFiles { tokenizer: TokenizerFiles { chat_template_jinja: Some(user_only), ..files.tokenizer }, ..files });
    assert!(message.contains("no assistant turn"), "{message}");

    let message = refused(ModelFiles { safetensors: folder.weights[..folder.weights.len() / 2].into(), ..folder.files() });
    assert!(message.starts_with("model.safetensors: "), "{message}");
}
