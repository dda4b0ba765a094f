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
use tinyrlhf_model::{GgufHeader, GgufModel, GptConfig, LlamaConfig, LoraConfig, ModelConfig, load_lm, load_scalar_model, save_lm};
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
