//! The supervised trainer: SFT trains only on answers, loss falls, a resumed run continues exactly,
//! and a non-finite loss, or an update that would blow the weights up, leaves the weights alone.

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use tinyrlhf_model::{CausalLm, GptConfig, ModelConfig};
use tinyrlhf_rlhf::{Example, LmBatch, SupervisedConfig, SupervisedTrainer, Trainer, chat_example, pack};
use tinyrlhf_tokenizer::Tokenizer;

fn tokenizer() -> Tokenizer {
    let corpus = ["what is two plus two? two plus two is four.", "the cat is black. the dog is brown!"];
    Tokenizer::train(corpus.iter().cycle().take(100), 300).unwrap()
}

fn model(vocab: usize, seed: u64) -> (Device, ModelConfig, CausalLm) {
    let device = Device::flex();
    device.seed(seed);
    let config = ModelConfig::from(GptConfig::new(vocab, 32, 32, 2, 2));
    let lm = config.init(&device);
    (device, config, lm)
}

fn weights(lm: &CausalLm) -> Vec<f32> {
    let bytes = pollster::block_on(tinyrlhf_model::save_lm(lm)).unwrap();
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

#[test]
fn sft_examples_train_on_the_response_and_eos_only() {
    let tok = tokenizer();
    let example = chat_example(&tok, "what is two plus two?", "four.", 64).unwrap().unwrap();
    let prompt_len = tok.encode_prompt("what is two plus two?").unwrap().len();
    let response = tok.encode_response("what is two plus two?", "four.").unwrap();
    assert_eq!(example.tokens.len(), prompt_len + response.len());
    assert!(example.target[..prompt_len].iter().all(|t| !t));
    assert!(example.target[prompt_len..].iter().all(|&t| t));
    assert_eq!(*example.tokens.last().unwrap(), tok.special_ids().eos);

    // In the batch, the counted targets are the response tokens and EOS, each at the position
    // that predicts it.
    let batch = LmBatch::new(&[&example], tok.special_ids().pad, &Device::flex());
    let trained: Vec<u32> = batch.targets.into_data().iter::<i64>().map(|t| t as u32).collect();
    assert_eq!(trained, response);
    let positions: Vec<i64> = batch.trained.into_data().iter::<i64>().collect();
    assert_eq!(positions, (prompt_len as i64 - 1..example.tokens.len() as i64 - 1).collect::<Vec<_>>());
    assert!(chat_example(&tok, "a very long prompt indeed", "and answer", 5).unwrap().is_none());
}

#[test]
fn loss_falls_when_training_on_a_small_corpus() {
    let tok = tokenizer();
    let stream = tok.encode(&"the cat is black. the dog is brown! ".repeat(40)).unwrap();
    let examples = pack(&stream, 16);
    let (_, config, lm) = model(tok.vocab_size(), 1);
    let mut settings = SupervisedConfig::new(40, 4, 0);
    settings.schedule.peak = 3e-3;
    let mut trainer = SupervisedTrainer::new(lm, config, examples.clone(), 0, settings).unwrap();
    let before = pollster::block_on(trainer.evaluate(&examples)).unwrap();
    let mut last = None;
    for _ in 0..40 {
        last = Some(pollster::block_on(trainer.step()).unwrap());
    }
    let after = pollster::block_on(trainer.evaluate(&examples)).unwrap();
    let last = last.unwrap();
    assert!(last.skipped.is_none() && last.grad_norm.is_finite() && last.tokens == 4 * 16);
    assert!(after < before * 0.5, "loss {before} -> {after}");
}

#[test]
fn a_resumed_run_continues_exactly_where_it_stopped() {
    let tok = tokenizer();
    let examples = pack(&tok.encode(&"two plus two is four. the cat is black. ".repeat(30)).unwrap(), 12);
    let settings = SupervisedConfig::new(8, 3, 5);
    let run = |lm: CausalLm, config: ModelConfig| SupervisedTrainer::new(lm, config, examples.clone(), 0, settings.clone()).unwrap();

    let (device, config, lm) = model(tok.vocab_size(), 2);
    let mut straight = run(lm.clone(), config.clone());
    for _ in 0..6 {
        pollster::block_on(straight.step()).unwrap();
    }

    let mut first = run(lm, config);
    for _ in 0..3 {
        pollster::block_on(first.step()).unwrap();
    }
    let checkpoint = pollster::block_on(first.checkpoint()).unwrap();
    drop(first);
    let mut resumed = SupervisedTrainer::resume(&checkpoint, None, examples.clone(), 0, &device).unwrap();
    assert_eq!(resumed.steps_done(), 3);
    for _ in 0..3 {
        pollster::block_on(resumed.step()).unwrap();
    }
    let (a, b) = (weights(&straight.model()), weights(&resumed.model()));
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-6, "weights differ by {diff}");
}

#[test]
fn a_non_finite_loss_skips_the_update_and_keeps_the_weights() {
    let tok = tokenizer();
    let examples: Vec<Example> = pack(&tok.encode(&"the dog is brown. ".repeat(20)).unwrap(), 8);
    let (device, config, mut lm) = model(tok.vocab_size(), 3);
    let poisoned = Tensor::<1>::from_floats(vec![f32::NAN; config.width()].as_slice(), &device);
    let CausalLm::Gpt2(inner) = &mut lm else { unreachable!("a GPT-2") };
    inner.ln_f.gamma = Param::from_tensor(poisoned);
    let mut trainer = SupervisedTrainer::new(lm, config, examples, 0, SupervisedConfig::new(4, 2, 0)).unwrap();
    let before = weights(&trainer.model());
    let stats = pollster::block_on(trainer.step()).unwrap();
    assert!(stats.skipped.as_deref().is_some_and(|s| s.contains("skipped")), "{stats:?}");
    assert_eq!(trainer.steps_done(), 1);
    let after = weights(&trainer.model());
    assert!(before.iter().zip(&after).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn an_update_that_would_blow_the_weights_up_is_skipped_and_said() {
    let tok = tokenizer();
    let examples: Vec<Example> = pack(&tok.encode(&"the dog is brown. ".repeat(20)).unwrap(), 8);
    let (_, config, lm) = model(tok.vocab_size(), 4);
    // Adam moves each weight by about the learning rate: 1e30 leaves them finite but absurd.
    let mut settings = SupervisedConfig::new(4, 2, 0);
    settings.schedule.peak = 1e30;
    settings.schedule.warmup = 1;
    let mut trainer = SupervisedTrainer::new(lm, config, examples.clone(), 0, settings).unwrap();
    let before = weights(&trainer.model());
    let stats = pollster::block_on(trainer.step()).unwrap();
    let why = stats.skipped.expect("the step is skipped");
    assert!(why.contains("past ±1e4") && why.contains("learning rate"), "{why}");
    let after = weights(&trainer.model());
    assert!(before.iter().zip(&after).all(|(a, b)| a.to_bits() == b.to_bits()), "the weights are the ones before the step");
    // The model the run keeps still computes: its loss is finite.
    assert!(pollster::block_on(trainer.evaluate(&examples)).unwrap().is_finite());
}

#[test]
fn with_lora_only_the_adapters_learn_and_the_base_stays_bit_for_bit() {
    let tok = tokenizer();
    let stream = tok.encode(&"the cat is black. the dog is brown! ".repeat(40)).unwrap();
    let examples = pack(&stream, 16);
    let (_, config, lm) = model(tok.vocab_size(), 1);
    let mut settings = SupervisedConfig::new(30, 4, 0);
    settings.schedule.peak = 1e-2;
    settings.lora = Some(tinyrlhf_model::LoraConfig { rank: 4, alpha: 8.0 });
    let mut trainer = SupervisedTrainer::new(lm.clone(), config, examples.clone(), 0, settings).unwrap();
    let before = pollster::block_on(trainer.evaluate(&examples)).unwrap();
    for _ in 0..30 {
        assert!(pollster::block_on(trainer.step()).unwrap().skipped.is_none());
    }
    let after = pollster::block_on(trainer.evaluate(&examples)).unwrap();
    assert!(after < before * 0.95, "loss {before} -> {after}");
    // The frozen base is the model it started from, so it can serve as the reference unchanged.
    let tuned = trainer.model();
    let base = |g: &CausalLm| -> Vec<Vec<f32>> {
        let CausalLm::Gpt2(g) = g else { unreachable!("a GPT-2") };
        let ln = g.h[0].ln_1.gamma.val().into_data().try_to_vec::<f32>().unwrap();
        vec![
            g.wte.weight.val().into_data().try_to_vec::<f32>().unwrap(),
            g.h[1].attn.c_attn.weight_val(&burn::tensor::Device::flex()).into_data().try_to_vec::<f32>().unwrap(),
            ln,
        ]
    };
    assert_eq!(base(&tuned), base(&lm));
    assert!(tinyrlhf_model::has_adapters(&tuned));
    // What is saved is the merged model: the base plus what the adapters learned.
    assert_ne!(weights(&tuned), weights(&lm));
}
