//! Generated bad input never panics: random and mutated bytes through every reader of outside data
//! (rankings/pairs JSONL, `config.json` of every family, `model.safetensors`, `tokenizer.json`, GGUF
//! files with packed weights and SentencePiece vocabularies, a LoRA run's checkpoint on a packed
//! base) give a value or an
//! error, and never allocate more than the input justifies (an absurd shape is refused before
//! anything is built). CI runs a bounded number of cases from a fixed seed, so a run is
//! repeatable; `PROPTEST_CASES` raises the count and `PROPTEST_RNG_SEED` picks another seed.

use burn::tensor::{Device, Int, Tensor, TensorData};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::RngSeed;
use serde_json::json;
use tinyrlhf_data::{Ranking, read_preferences};
use tinyrlhf_model::FamilyConfig;
use tinyrlhf_model::{
    GgufHeader, GgufModel, GgufValue, GgufWriter, GptConfig, LlamaConfig, LoraConfig, ModelConfig, load_lm, load_peft_adapter,
    load_scalar_model, save_lm, save_peft_adapter, with_lora,
};
use tinyrlhf_rlhf::{Example, LanguageModel, SupervisedConfig, SupervisedTrainer, TrainCheckpoint, load_gguf_model};
use tinyrlhf_tokenizer::Tokenizer;

fn cases(default: u32) -> ProptestConfig {
    fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
        std::env::var(name).ok()?.parse().ok()
    }
    let cases = env("PROPTEST_CASES").unwrap_or(default);
    let rng_seed = RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(20261122));
    ProptestConfig { cases, rng_seed, failure_persistence: None, ..ProptestConfig::default() }
}

/// The Qwen3 fixture's Q8_0 GGUF, two short examples, and the checkpoint of one LoRA step on them.
static LORA_CHECKPOINT: std::sync::LazyLock<(LanguageModel, Vec<Example>, TrainCheckpoint)> = std::sync::LazyLock::new(|| {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/gguf/hf-qwen3.q8_0.gguf")).unwrap();
    let base = load_gguf_model(GgufModel::from_bytes(&bytes).unwrap(), &Device::flex()).unwrap();
    let examples: Vec<Example> = ["hello there, friend", "the cat sat on the mat"]
        .iter()
        .map(|text| {
            let tokens = base.tokenizer.encode(text).unwrap();
            Example { target: vec![true; tokens.len()], tokens }
        })
        .collect();
    let mut settings = SupervisedConfig::new(4, 2, 7);
    settings.lora = Some(LoraConfig { rank: 4, alpha: 8.0 });
    let mut trainer = SupervisedTrainer::new(base.model.clone(), base.config.clone(), examples.clone(), 0, settings).unwrap();
    pollster::block_on(trainer.step()).unwrap();
    let checkpoint = pollster::block_on(trainer.checkpoint()).unwrap();
    assert!(checkpoint.weights.is_none() && checkpoint.adapter.is_some(), "a LoRA checkpoint holds adapters, not weights");
    (base, examples, checkpoint)
});

fn read_fixture_bytes(relative: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/{relative}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The sizes and settings of a Gemma 3 GGUF header.
const GEMMA3_KEYS: [&str; 12] = [
    "gemma3.block_count",
    "gemma3.embedding_length",
    "gemma3.attention.head_count",
    "gemma3.attention.head_count_kv",
    "gemma3.feed_forward_length",
    "gemma3.context_length",
    "gemma3.attention.key_length",
    "gemma3.attention.layer_norm_rms_epsilon",
    "gemma3.rope.freq_base",
    "gemma3.rope.freq_base_swa",
    "gemma3.final_logit_softcapping",
    "gemma3.attention.sliding_window",
];

/// Any number a header may hold where a size or a setting is: whole numbers of every width
/// (huge ones too), and floats with NaN, infinities, zero and negatives.
fn gguf_number() -> impl Strategy<Value = GgufValue> {
    prop_oneof![
        prop_oneof![Just(0u64), Just(1), Just(2), Just(3), Just(1 << 40), Just(u64::MAX), any::<u64>(), 0..100_000u64]
            .prop_map(GgufValue::U64),
        any::<u32>().prop_map(GgufValue::U32),
        prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY), Just(0.0f32), Just(-1.0), Just(1e-6), any::<f32>()]
            .prop_map(GgufValue::F32),
    ]
}

/// `gguf` written again with metadata `key` set to `value` (added if absent), tensors unchanged.
fn with_metadata(gguf: &[u8], key: &str, value: GgufValue) -> Vec<u8> {
    let header = GgufHeader::read(gguf).unwrap();
    let mut metadata = header.metadata.clone();
    metadata.insert(key.to_owned(), value);
    let mut writer = metadata.into_iter().fold(GgufWriter::new(), |w, (k, v)| w.metadata(&k, v));
    for t in &header.tensors {
        writer = writer.typed_tensor(&t.name, t.shape.clone(), t.ggml_type, gguf[t.start..t.end].to_vec());
    }
    writer.to_bytes()
}

/// The Llama fixture's folder and an adapter for it (`adapter_config.json`, its weights).
static ADAPTER: std::sync::LazyLock<(LanguageModel, String, Vec<u8>)> = std::sync::LazyLock::new(|| {
    let base = load_gguf_model(GgufModel::from_bytes(&read_fixture_bytes("gguf/hf-llama.f32.gguf")).unwrap(), &Device::flex()).unwrap();
    let lora = LoraConfig { rank: 4, alpha: 8.0 };
    let (config, weights) = pollster::block_on(save_peft_adapter(&with_lora(base.model.clone(), &lora), &lora)).unwrap();
    (base, config, weights)
});

const ADAPTER_FIELDS: [&str; 8] = ["peft_type", "r", "lora_alpha", "target_modules", "fan_in_fan_out", "task_type", "bias", "use_dora"];

/// What a person might write in a field of `adapter_config.json`.
fn adapter_value() -> impl Strategy<Value = serde_json::Value> {
    let modules =
        prop::sample::subsequence(vec!["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"], 0..8);
    prop_oneof![
        modules.prop_map(|m| json!(m)),
        prop_oneof![Just(json!("all-linear")), Just(json!("LORA")), Just(json!("IA3")), Just(json!("CAUSAL_LM")), Just(json!("SEQ_CLS"))],
        prop_oneof![Just(json!(true)), Just(json!(false)), Just(json!(null)), Just(json!("none")), Just(json!("all"))],
        number(),
    ]
}

fn shipped_tokenizer() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../www/public/models/tokenizer.json");
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// `bytes` with a few of its first `span` bytes overwritten and possibly cut short: mostly-valid
/// input that reaches past the first syntax check.
fn mutate(mut bytes: Vec<u8>, edits: &[(Index, u8)], cut: Option<Index>, span: usize) -> Vec<u8> {
    let span = span.min(bytes.len());
    for (at, byte) in edits {
        if span > 0 {
            bytes[at.index(span)] = *byte;
        }
    }
    if let Some(cut) = cut {
        bytes.truncate(cut.index(bytes.len() + 1));
    }
    bytes
}

fn edits() -> impl Strategy<Value = (Vec<(Index, u8)>, Option<Index>)> {
    (prop::collection::vec((any::<Index>(), any::<u8>()), 0..6), prop::option::of(any::<Index>()))
}

/// Numbers as a file may hold them: small, at the edges of u32/u64, negative, fractional.
fn number() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        (0u64..12).prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        Just(json!(u64::from(u32::MAX) + 1)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("JSON has no NaN", |f| f.is_finite()).prop_map(|f| json!(f)),
    ]
}

fn ranking_line() -> impl Strategy<Value = String> {
    let text = prop_oneof![Just(String::new()), "[a-z .!?]{0,40}", any::<String>()];
    (text.clone(), prop::collection::vec(text, 0..12), prop::collection::vec(number(), 0..12), any::<bool>()).prop_map(
        |(prompt, completions, ranking, pair)| {
            if pair {
                let chosen = completions.first().cloned().unwrap_or_default();
                json!({"prompt": prompt, "chosen": chosen, "rejected": completions.get(1)}).to_string()
            } else {
                json!({"prompt": prompt, "completions": completions, "ranking": ranking}).to_string()
            }
        },
    )
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn the_rankings_reader_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_preferences("random.jsonl", &bytes);
    }

    #[test]
    fn every_ranking_the_reader_accepts_is_valid(lines in prop::collection::vec(ranking_line(), 1..5), (e, cut) in edits()) {
        let text = lines.join("\n");
        for bytes in [text.clone().into_bytes(), mutate(text.into_bytes(), &e, cut, usize::MAX)] {
            if let Ok(rankings) = read_preferences("generated.jsonl", &bytes) {
                for r in &rankings {
                    prop_assert!(r.check().is_ok(), "accepted an invalid ranking: {r:?}");
                    prop_assert!((2..=Ranking::MAX_COMPLETIONS).contains(&r.completions.len()));
                }
            }
        }
    }

    #[test]
    fn a_config_from_a_file_is_refused_or_within_the_limits(fields in prop::collection::vec((prop::sample::select(vec!["vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "layer_norm_epsilon", "resid_pdrop"]), number()), 0..9)) {
        let mut config = json!({"model_type": "gpt2", "vocab_size": 64, "n_positions": 16, "n_embd": 16, "n_layer": 1, "n_head": 2});
        for (field, value) in fields {
            config[field] = value;
        }
        if let Ok(c) = GptConfig::from_json_bytes(config.to_string().as_bytes()) {
            prop_assert!(c.num_params() <= GptConfig::MAX_PARAMS);
            for ((field, limit), value) in GptConfig::LIMITS.into_iter().zip([c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head, c.mlp_width()]) {
                prop_assert!(value <= limit, "{field} = {value} accepted");
            }
        }
    }

    #[test]
    fn a_llama_config_from_a_file_is_refused_or_within_the_limits(fields in prop::collection::vec((prop::sample::select(vec!["vocab_size", "max_position_embeddings", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta"]), number()), 0..9)) {
        let mut config = json!({"model_type": "llama", "vocab_size": 64, "max_position_embeddings": 16, "hidden_size": 16,
            "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1});
        for (field, value) in fields {
            config[field] = value;
        }
        if let Ok(ModelConfig::Llama(c)) = ModelConfig::from_json_bytes(config.to_string().as_bytes()) {
            prop_assert!(c.num_params() <= GptConfig::MAX_PARAMS);
            let sizes = [c.vocab_size, c.max_position_embeddings, c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads, c.head_dim()];
            for ((field, limit), value) in LlamaConfig::LIMITS.into_iter().zip(sizes) {
                prop_assert!(value <= limit && value > 0, "{field} = {value} accepted");
            }
        }
    }

    #[test]
    fn a_gemma3_config_from_a_file_is_refused_or_within_the_limits(
        fields in prop::collection::vec((prop::sample::select(vec!["vocab_size", "max_position_embeddings", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "sliding_window", "sliding_window_pattern", "query_pre_attn_scalar", "rope_theta", "rope_local_base_freq", "final_logit_softcapping"]), number()), 0..9),
        kinds in prop::option::of(prop::collection::vec(prop::sample::select(vec!["sliding_attention", "full_attention", "chunked_attention", ""]), 0..4)),
    ) {
        let mut config = json!({"model_type": "gemma3_text", "vocab_size": 64, "max_position_embeddings": 16, "hidden_size": 16,
            "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
            "sliding_window": 4});
        for (field, value) in fields {
            config[field] = value;
        }
        if let Some(kinds) = kinds {
            config["layer_types"] = json!(kinds);
        }
        if let Ok(ModelConfig::Gemma3(c)) = ModelConfig::from_json_bytes(config.to_string().as_bytes()) {
            prop_assert!(c.num_params() <= GptConfig::MAX_PARAMS);
            let sizes = [c.vocab_size, c.max_position_embeddings, c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads, c.head_dim];
            for ((field, limit), value) in LlamaConfig::LIMITS.into_iter().zip(sizes) {
                prop_assert!(value <= limit && value > 0, "{field} = {value} accepted");
            }
            let kinds = c.layer_kinds();
            prop_assert_eq!(kinds.len(), c.num_hidden_layers, "one kind a layer");
            prop_assert!(kinds.iter().all(|k| k == "sliding_attention" || k == "full_attention"), "{kinds:?} accepted");
            prop_assert!(c.sliding_window > 0);
        }
    }
}

proptest! {
    // Each case builds a (tiny) model: fewer cases.
    #![proptest_config(cases(200))]

    #[test]
    fn a_mutated_model_folder_loads_or_is_refused(config_edits in edits(), weight_edits in edits(), header_only in any::<bool>()) {
        let device = Device::flex();
        let config = ModelConfig::from(GptConfig::new(40, 8, 8, 1, 2));
        let weights = pollster::block_on(save_lm(&config.init(&device))).unwrap();
        // The safetensors header (its first bytes) is where a mutation reaches the shapes and offsets.
        let span = if header_only { 8 + u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize } else { usize::MAX };
        let config_json = mutate(config.to_json().into_bytes(), &config_edits.0, config_edits.1, usize::MAX);
        let weights = mutate(weights, &weight_edits.0, weight_edits.1, span);
        let _ = load_lm(&config_json, &weights, &device);
        let _ = load_scalar_model(&config_json, &weights, &device);
    }

    #[test]
    fn a_mutated_gguf_file_loads_or_is_refused((e, cut) in edits(), header_only in any::<bool>()) {
        // llama.cpp's Q8_0 conversion of the Qwen3 fixture (tests/fixtures/gguf/make.py).
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/gguf/hf-qwen3.q8_0.gguf")).unwrap();
        // The header (metadata, tokenizer, tensor table) is where a mutation reaches sizes and offsets.
        let span = if header_only { GgufHeader::read(&bytes).unwrap().data_start } else { usize::MAX };
        if let Ok(model) = GgufModel::from_bytes(&mutate(bytes, &e, cut, span)) {
            let _ = load_gguf_model(model, &Device::flex());
        }
    }

    #[test]
    fn a_mutated_gemma3_gguf_with_a_sentencepiece_vocabulary_loads_or_is_refused_and_runs((e, cut) in edits(), header_only in any::<bool>()) {
        // llama.cpp's Q8_0 conversion of the Gemma 3 fixture with a SentencePiece tokenizer: its
        // projections and embedding stay packed, so a mutated block reaches the packed products.
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/gguf/hf-gemma3-sp.q8_0.gguf")).unwrap();
        let span = if header_only { GgufHeader::read(&bytes).unwrap().data_start } else { usize::MAX };
        if let Ok(model) = GgufModel::from_bytes(&mutate(bytes, &e, cut, span)) {
            let device = Device::flex();
            if let Ok(loaded) = load_gguf_model(model, &device) {
                let ids = loaded.tokenizer.encode("hello there").unwrap_or_default();
                let ids: Vec<i64> = ids.iter().map(|&t| i64::from(t)).chain([1]).collect();
                let n = ids.len();
                let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
                let positions = Tensor::<2, Int>::from_data(TensorData::new((0..n as i64).collect::<Vec<_>>(), [1, n]), &device);
                let _ = loaded.model.logits(loaded.model.forward(input, positions, None));
            }
        }
    }

    #[test]
    fn a_gguf_header_claiming_absurd_sizes_is_refused_without_allocating(sizes in prop::collection::vec(prop_oneof![any::<u64>(), Just(u64::MAX), Just(1 << 40), 0..64u64], 5), item_type in 0..13u32) {
        // Tensor count, metadata count, a key's length, an array's item type and length: each read
        // before the bytes it claims, so none may allocate more than the file holds.
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&sizes[0].to_le_bytes());
        bytes.extend_from_slice(&sizes[1].to_le_bytes());
        bytes.extend_from_slice(&sizes[2].min(4).to_le_bytes());
        bytes.extend_from_slice(b"key!");
        bytes.extend_from_slice(&9u32.to_le_bytes());
        bytes.extend_from_slice(&item_type.to_le_bytes());
        bytes.extend_from_slice(&sizes[3].to_le_bytes());
        bytes.extend_from_slice(&sizes[4].to_le_bytes());
        bytes.extend_from_slice(&[7; 64]);
        let _ = GgufHeader::read(&bytes);
        let _ = GgufModel::from_bytes(&bytes);
    }

    #[test]
    fn a_mutated_lora_checkpoint_on_a_packed_base_resumes_or_is_refused(part in 0..3usize, (e, cut) in edits()) {
        // A LoRA run's checkpoint (adapters, Adam's moments, the trainer's state) on the Qwen3
        // fixture's Q8_0 GGUF, whose projections stay packed; one of its parts mutated.
        let (base, examples, checkpoint) = &*LORA_CHECKPOINT;
        let mut mutated = checkpoint.clone();
        match part {
            0 => mutated.adapter = mutated.adapter.map(|a| mutate(a, &e, cut, usize::MAX)),
            1 => mutated.optimizer = mutate(mutated.optimizer, &e, cut, usize::MAX),
            _ => mutated.state_json = String::from_utf8_lossy(&mutate(mutated.state_json.into_bytes(), &e, cut, usize::MAX)).into_owned(),
        }
        if let Ok(mut trainer) = SupervisedTrainer::resume(&mutated, Some(&base.model), examples.clone(), 0, &Device::flex()) {
            let _ = pollster::block_on(trainer.step());
        }
    }

    #[test]
    fn a_gguf_header_stating_any_size_or_setting_is_refused_or_within_its_own_tensors(key in prop::sample::select(GEMMA3_KEYS.to_vec()), value in gguf_number()) {
        // The Gemma 3 fixture rewritten with one of its sizes or settings replaced: a count is
        // bounded by what the file's own tensors can hold before anything is sized by it (a
        // `block_count` of 2^40 once allocated a terabyte), a setting must be a positive number.
        let bytes = with_metadata(&read_fixture_bytes("gguf/hf-gemma3-sp.q8_0.gguf"), key, value.clone());
        let Ok(model) = GgufModel::from_bytes(&bytes) else { return Ok(()) };
        let config: serde_json::Value = serde_json::from_slice(&model.config_json).unwrap();
        let tensors = GgufHeader::read(&bytes).unwrap().tensors.len() as u64;
        prop_assert!(config["num_hidden_layers"].as_u64().is_some_and(|n| (1..=tensors).contains(&n)), "{key} = {value:?}: {config}");
        for setting in ["rms_norm_eps", "final_logit_softcapping"] {
            if let Some(v) = config.get(setting).filter(|v| !v.is_null()) {
                prop_assert!(v.as_f64().is_some_and(|v| v.is_finite() && v > 0.0), "{key} = {value:?} gave {setting} {v}");
            }
        }
        let _ = load_gguf_model(model, &Device::flex());
    }

    #[test]
    fn an_adapter_config_is_read_whole_and_any_field_that_does_not_fit_is_refused(field in prop::sample::select(ADAPTER_FIELDS.to_vec()), value in adapter_value()) {
        // The fixture's own adapter with one field of `adapter_config.json` replaced: loading
        // either refuses it, naming adapter_config.json's field, or the field still says what the
        // adapter is (an edit that changes what it computes is never ignored).
        let (base, config_json, weights) = &*ADAPTER;
        let mut config: serde_json::Value = serde_json::from_str(config_json).unwrap();
        let original = config.clone();
        config[field] = value;
        match load_peft_adapter(base.model.clone(), config.to_string().as_bytes(), weights) {
            Err(e) => prop_assert!(matches!(e, tinyrlhf_model::CheckpointError::AdapterConfig(_)), "{field}: {e}"),
            Ok((lora, _)) => {
                prop_assert_eq!(lora.rank, original["r"].as_u64().unwrap() as usize);
                for same in ["peft_type", "fan_in_fan_out", "r"] {
                    prop_assert!(config[same] == original[same] || config[same].is_null() && same != "r", "{field} = {}: accepted", config[field]);
                }
                if let Some(found) = config["target_modules"].as_array().filter(|_| config["target_modules"] != original["target_modules"]) {
                    let mut found: Vec<&str> = found.iter().map(|t| t.as_str().unwrap()).collect();
                    let mut ours: Vec<&str> = original["target_modules"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
                    found.sort_unstable();
                    found.dedup();
                    ours.sort_unstable();
                    prop_assert_eq!(found, ours);
                }
            }
        }
    }

    #[test]
    fn a_mutated_tokenizer_loads_or_is_refused((e, cut) in edits()) {
        let _ = Tokenizer::from_json_bytes(&mutate(shipped_tokenizer(), &e, cut, usize::MAX));
    }
}

#[test]
fn a_nan_weight_is_refused_naming_the_tensor() {
    let device = Device::flex();
    let config = ModelConfig::from(GptConfig::new(40, 8, 8, 1, 2));
    let weights = pollster::block_on(save_lm(&config.init(&device))).unwrap();
    let file = safetensors::SafeTensors::deserialize(&weights).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> =
        file.tensors().into_iter().map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec())).collect();
    let poisoned = tensors.iter_mut().find(|(name, ..)| name == "transformer.h.0.mlp.c_fc.weight").expect("GPT-2 names");
    poisoned.2[12..16].copy_from_slice(&f32::NAN.to_le_bytes());
    let views = tensors.iter().map(|(name, shape, data)| {
        (name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap())
    });
    let bad = safetensors::serialize(views, None).unwrap();
    let err = load_lm(config.to_json().as_bytes(), &bad, &device).expect_err("a NaN weight is refused");
    assert!(err.to_string().contains("`transformer.h.0.mlp.c_fc.weight` holds NaN at index 3"), "{err}");
}

#[test]
fn a_bad_escape_inside_the_decoder_is_an_error_not_a_panic() {
    // The case the property test found: tokenizers 0.23 unwraps its decoder reader's result, so a
    // malformed string there panicked (and would have killed the page's wasm).
    let json = String::from_utf8(shipped_tokenizer()).unwrap().replacen("\"decoder\": {", "\"decoder\": {\"x\": \"\\udc00\", ", 1);
    assert!(json.contains("\\udc00"), "the shipped tokenizer has a decoder");
    let err = Tokenizer::from_json_bytes(json.as_bytes()).expect_err("refused");
    assert!(err.to_string().contains("surrogate"), "{err}");
}

#[test]
fn a_config_far_larger_than_its_weights_is_refused_before_the_model_is_built() {
    let device = Device::flex();
    let small = ModelConfig::from(GptConfig::new(40, 8, 8, 1, 2));
    let weights = pollster::block_on(save_lm(&small.init(&device))).unwrap();
    // Within every bound, but 200 layers of width 1024 would be 2.5 G parameters built for nothing.
    let huge = ModelConfig::from(GptConfig::new(40, 8, 1024, 200, 8));
    let err = load_lm(huge.to_json().as_bytes(), &weights, &device).expect_err("refused");
    assert!(err.to_string().contains("parameters but model.safetensors holds"), "{err}");
}

#[test]
fn a_gguf_with_two_blocks_swapped_is_another_model_and_the_same_weights_rewritten_are_the_same() {
    let bytes = read_fixture_bytes("gguf/hf-llama.q8_0.gguf");
    let header = GgufHeader::read(&bytes).unwrap();
    let rewrite = |rename: &dyn Fn(&str) -> String| {
        let writer = header.metadata.iter().fold(GgufWriter::new(), |w, (k, v)| w.metadata(k, v.clone()));
        let writer = header
            .tensors
            .iter()
            .fold(writer, |w, t| w.typed_tensor(&rename(&t.name), t.shape.clone(), t.ggml_type, bytes[t.start..t.end].to_vec()));
        GgufModel::from_bytes(&writer.to_bytes()).unwrap().weights.identity()
    };
    let original = GgufModel::from_bytes(&bytes).unwrap().weights.identity();
    assert_eq!(rewrite(&|name| name.to_owned()), original, "the same tensors in a file written again");
    let swapped = rewrite(&|name| match name.strip_prefix("blk.0.") {
        Some(rest) => format!("blk.1.{rest}"),
        None => name.strip_prefix("blk.1.").map_or_else(|| name.to_owned(), |rest| format!("blk.0.{rest}")),
    });
    assert_ne!(swapped, original, "blocks 0 and 1 swapped: every tensor is there, but it is another model");
}
