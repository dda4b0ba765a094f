//! Generation: the KV cache changes nothing but speed, padding changes nothing at all, sampling is
//! seeded, rows stop at EOS, and the log-probs returned are the model's.

mod common;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use common::{EOS, PAD, max_abs_diff, model, values};
use tinyrlhf_model::{Generation, KvCache, SampleError, SamplingConfig, generate, left_pad};

fn run(lm: &tinyrlhf_model::CausalLm, prompts: &[Vec<u32>], eos: u32, config: &SamplingConfig) -> Generation {
    pollster::block_on(generate(lm, prompts, eos, PAD, config)).unwrap()
}

fn greedy(max_new_tokens: usize) -> SamplingConfig {
    SamplingConfig { max_new_tokens, temperature: 0.0, ..Default::default() }
}

#[test]
fn cached_decoding_gives_the_logits_of_the_full_forward() {
    let (device, lm) = model(11);
    let tokens: Vec<i64> = vec![4, 8, 15, 16, 23, 42, 7, 3, 9];
    let n = tokens.len();
    let row = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v.clone(), [1, v.len()]), &device);
    let full = values(lm.logits(lm.forward(row(tokens.clone()), row((0..n as i64).collect()), None)));

    // A 4-token prefill, then one token at a time.
    let mut cache = KvCache::default();
    let mut cached = values(lm.logits(lm.forward_cached(row(tokens[..4].to_vec()), row((0..4).collect()), row(vec![1; 4]), &mut cache)));
    for (i, &token) in tokens.iter().enumerate().skip(4) {
        let step = lm.forward_cached(row(vec![token]), row(vec![i as i64]), row(vec![1]), &mut cache);
        cached.extend(values(lm.logits(step)));
    }
    assert_eq!(cache.len(), n);
    assert!(max_abs_diff(&full, &cached) < 1e-5, "{}", max_abs_diff(&full, &cached));
}

#[test]
fn a_left_padded_row_computes_exactly_like_the_row_alone() {
    let (device, lm) = model(12);
    let short = vec![5u32, 6, 7];
    let padded = left_pad(&[vec![9, 8, 7, 6, 5, 4], short.clone()], PAD);
    let (ids, pos, mask) = padded.tensors(&device);
    let batch = values(lm.logits(lm.forward(ids, pos, Some(mask))));
    let alone = left_pad(&[short], PAD);
    let (ids, pos, mask) = alone.tensors(&device);
    let single = values(lm.logits(lm.forward(ids, pos, Some(mask))));
    let vocab = lm.vocab_size();
    // Row 1, last three positions.
    let real = &batch[(6 + 3) * vocab..12 * vocab];
    assert!(max_abs_diff(real, &single) < 1e-5, "{}", max_abs_diff(real, &single));
}

#[test]
fn batched_generation_with_left_padding_equals_one_prompt_at_a_time() {
    let (_, lm) = model(13);
    // The 26-token prompt can take only 6 more tokens in a 32-token context; the others take 10.
    let long: Vec<u32> = (0..26).map(|i| 2 + i % 40).collect();
    let prompts = vec![vec![3u32, 4, 5, 6, 7], vec![9], long, vec![20, 21, 22]];
    let batched = run(&lm, &prompts, u32::MAX, &greedy(10));
    assert_eq!(batched.tokens.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 6, 10]);
    for (i, prompt) in prompts.iter().enumerate() {
        let alone = run(&lm, std::slice::from_ref(prompt), u32::MAX, &greedy(10));
        assert_eq!(alone.tokens[0], batched.tokens[i], "row {i}");
        assert!(max_abs_diff(&alone.logprobs[0], &batched.logprobs[i]) < 1e-5);
    }
}

#[test]
fn the_same_seed_gives_the_same_samples_and_another_seed_differs() {
    let (_, lm) = model(14);
    let prompts = vec![vec![3u32, 4], vec![7, 8, 9]];
    let sampling = |seed| SamplingConfig { max_new_tokens: 12, temperature: 1.5, seed, ..Default::default() };
    let a = run(&lm, &prompts, EOS, &sampling(1));
    assert_eq!(a, run(&lm, &prompts, EOS, &sampling(1)));
    assert_ne!(a.tokens, run(&lm, &prompts, EOS, &sampling(2)).tokens);
}

#[test]
fn a_row_stops_at_its_first_eos_and_reports_finished() {
    let (_, lm) = model(15);
    let prompt = vec![vec![10u32, 11, 12]];
    // Make the greedy continuation's first token the EOS: that row must end right there.
    let first = run(&lm, &prompt, u32::MAX, &greedy(5)).tokens[0][0];
    let out = run(&lm, &prompt, first, &greedy(5));
    assert_eq!(out.tokens[0], vec![first]);
    assert!(out.finished[0]);
    let unfinished = run(&lm, &prompt, u32::MAX, &greedy(5));
    assert_eq!((unfinished.tokens[0].len(), unfinished.finished[0]), (5, false));
}

#[test]
fn returned_logprobs_are_the_models_tempered_logprobs() {
    let (device, lm) = model(16);
    let prompt = vec![2u32, 30, 31, 5];
    let temperature = 0.7;
    let sampling = SamplingConfig { max_new_tokens: 6, temperature, seed: 3, ..Default::default() };
    let out = run(&lm, std::slice::from_ref(&prompt), u32::MAX, &sampling);
    let response = &out.tokens[0];

    let all: Vec<i64> = prompt.iter().chain(response).map(|&t| t as i64).collect();
    let n = all.len();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(all.clone(), [1, n]), &device);
    let pos = Tensor::<2, Int>::from_data(TensorData::new((0..n as i64).collect::<Vec<_>>(), [1, n]), &device);
    let logits = lm.logits(lm.forward(ids, pos, None)).narrow(1, prompt.len() - 1, response.len()) / temperature as f64;
    let index: Vec<i64> = response.iter().map(|&t| t as i64).collect();
    let index = Tensor::<3, Int>::from_data(TensorData::new(index, [1, response.len(), 1]), &device);
    let expected = values(log_softmax(logits, 2).gather(2, index));
    assert!(max_abs_diff(&expected, &out.logprobs[0]) < 1e-4, "{expected:?} vs {:?}", out.logprobs[0]);
}

#[test]
fn top_k_one_and_a_tiny_top_p_are_greedy() {
    let (_, lm) = model(17);
    let prompts = vec![vec![3u32, 9, 27]];
    let greedy_tokens = run(&lm, &prompts, EOS, &greedy(8)).tokens;
    for (top_k, top_p) in [(1, 1.0), (0, 1e-6)] {
        let sampling = SamplingConfig { max_new_tokens: 8, temperature: 1.0, top_k, top_p, seed: 9 };
        assert_eq!(run(&lm, &prompts, EOS, &sampling).tokens, greedy_tokens);
    }
}

#[test]
fn generation_stops_at_the_end_of_the_context() {
    let (_, lm) = model(18);
    let prompt = vec![(0..30).map(|i| 2 + i % 40).collect::<Vec<u32>>()];
    let out = run(&lm, &prompt, u32::MAX, &greedy(100));
    assert_eq!(out.tokens[0].len(), lm.context_length() - 30);
    assert!(!out.finished[0]);
}

#[test]
fn bad_prompts_get_errors_not_panics() {
    let (_, lm) = model(19);
    let generate = |prompts: &[Vec<u32>]| pollster::block_on(generate(&lm, prompts, EOS, PAD, &greedy(4)));
    assert_eq!(generate(&[vec![3], vec![]]).unwrap_err(), SampleError::EmptyPrompt { index: 1 });
    let long = vec![3u32; 32];
    assert_eq!(generate(&[long]).unwrap_err(), SampleError::PromptTooLong { index: 0, len: 32, max: 31 });
    assert_eq!(generate(&[vec![3, 999]]).unwrap_err(), SampleError::TokenOutOfVocab { index: 0, token: 999, vocab: 48 });
    assert_eq!(generate(&[]).unwrap(), Generation::default());
}
