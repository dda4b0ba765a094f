//! What generation costs on a GPU, counted: generated ids come back once per `READ_EVERY` tokens,
//! not once per token. Its own test binary, so no other test's reads land in the count.

mod common;

use common::{PAD, model};
use tinyrlhf_model::{READ_EVERY, SamplingConfig, device_reads, generate};

#[test]
fn generated_ids_are_read_back_once_per_eight_tokens_and_stop_at_the_read_after_the_last_eos() {
    let (_, lm) = model(21);
    let prompts = vec![vec![3u32, 4, 5], vec![9], vec![20, 21, 22, 23], vec![7, 7]];
    let sampling = |max_new_tokens, temperature| SamplingConfig { max_new_tokens, temperature, seed: 4, ..Default::default() };

    // No EOS in the vocabulary: every row runs all 20 tokens, read in 3 pieces (8 + 8 + 4).
    let before = device_reads();
    let out = pollster::block_on(generate(&lm, &prompts, u32::MAX, PAD, &sampling(20, 1.0))).unwrap();
    assert_eq!(device_reads() - before, 20usize.div_ceil(READ_EVERY) as u64);
    assert!(out.tokens.iter().all(|t| t.len() == 20) && out.logprobs.iter().all(|l| l.len() == 20));

    // Greedy, with the EOS made the row's first greedy token: the row ends at once, and the first
    // read (after 8 tokens made on the device) finds it done, so a 40-token budget costs one read.
    let greedy = pollster::block_on(generate(&lm, &prompts[..1], u32::MAX, PAD, &sampling(4, 0.0))).unwrap();
    let eos = greedy.tokens[0][0];
    let before = device_reads();
    let out = pollster::block_on(generate(&lm, &prompts[..1], eos, PAD, &sampling(40, 0.0))).unwrap();
    assert_eq!(out.tokens[0], vec![eos]);
    assert_eq!(device_reads() - before, 1, "the first read finds the only row finished: no more tokens, no more reads");
}
