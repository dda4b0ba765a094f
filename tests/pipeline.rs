//! The seed's story end to end, at a very small size on CPU: data -> tokenizer -> pretraining ->
//! SFT. Pretraining and SFT losses fall, and the SFT model ends its answers with EOS far more often
//! than the base model, which only continues text.

use burn::tensor::Device;
use tinyrlhf_data::{demonstrations, held_out_prompts, pretraining_corpus};
use tinyrlhf_model::{CausalLm, GptConfig, ModelConfig, SamplingConfig, generate};
use tinyrlhf_rlhf::{Example, SupervisedConfig, SupervisedTrainer, chat_example, pack};
use tinyrlhf_tokenizer::Tokenizer;

fn train(trainer: &mut SupervisedTrainer, steps: usize, held_out: &[Example]) -> (f32, f32) {
    let before = pollster::block_on(trainer.evaluate(held_out)).unwrap();
    for _ in 0..steps {
        let stats = pollster::block_on(trainer.step()).unwrap();
        assert!(stats.skipped.is_none(), "{stats:?}");
    }
    (before, pollster::block_on(trainer.evaluate(held_out)).unwrap())
}

fn eos_rate(lm: &CausalLm, tokenizer: &Tokenizer, prompts: &[String]) -> f64 {
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| tokenizer.encode_prompt(p).unwrap()).collect();
    let special = tokenizer.special_ids();
    let sampling = SamplingConfig { max_new_tokens: 64, temperature: 0.0, ..Default::default() };
    let out = pollster::block_on(generate(lm, &ids, special.eos, special.pad, &sampling)).unwrap();
    out.finished.iter().filter(|&&f| f).count() as f64 / prompts.len() as f64
}

#[test]
fn pretraining_then_sft_turns_a_text_continuer_into_an_answerer() {
    let seed = 11;
    let corpus = pretraining_corpus(seed, 3000);
    let demos = demonstrations(seed, 3000);
    let texts = corpus.iter().cloned().chain(demos.iter().map(|d| format!(" {} {}", d.prompt, d.response)));
    let tokenizer = Tokenizer::train(texts, 600).unwrap();
    let pad = tokenizer.special_ids().pad;

    let device = Device::flex();
    device.seed(seed);
    let config = ModelConfig::from(GptConfig::new(tokenizer.vocab_size(), 128, 64, 2, 2));

    // Pretraining: plain text, every token a target.
    let stream = tokenizer.encode(&corpus.join("\n")).unwrap();
    let mut examples = pack(&stream, 48);
    let held_out_text = examples.split_off(examples.len() - 16);
    let mut settings = SupervisedConfig::new(150, 16, seed);
    settings.schedule.peak = 3e-3;
    let mut pretrain = SupervisedTrainer::new(config.init(&device), config.clone(), examples, pad, settings).unwrap();
    let (before, after) = train(&mut pretrain, 150, &held_out_text);
    assert!(after < before * 0.6, "pretraining loss {before} -> {after}");
    let base = pretrain.model();

    // SFT: chat-template demonstrations, loss on answers only.
    let mut sft_examples: Vec<Example> =
        demos.iter().filter_map(|d| chat_example(&tokenizer, &d.prompt, &d.response, 128).unwrap()).collect();
    let held_out_demos = sft_examples.split_off(sft_examples.len() - 32);
    let mut settings = SupervisedConfig::new(300, 16, seed);
    settings.schedule.peak = 3e-3;
    let mut sft = SupervisedTrainer::new(base.clone(), config, sft_examples, pad, settings).unwrap();
    let (before, after) = train(&mut sft, 300, &held_out_demos);
    assert!(after < before * 0.7, "SFT loss {before} -> {after}");

    let prompts: Vec<String> = held_out_prompts(seed, 40).into_iter().map(|p| p.prompt).collect();
    let (base_eos, sft_eos) = (eos_rate(&base, &tokenizer, &prompts), eos_rate(&sft.model(), &tokenizer, &prompts));
    assert!(sft_eos >= 0.7 && sft_eos > base_eos + 0.5, "EOS rate: base {base_eos}, SFT {sft_eos}");
}
