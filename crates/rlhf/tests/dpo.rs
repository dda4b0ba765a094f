//! The DPO trainer on a tiny random model: it learns a preference from rankings (held-out implicit
//! reward accuracy, and the policy's own probabilities move toward the preferred answers), a resumed
//! run continues exactly (a LoRA run with its whole adapter), and settings out of range are refused before anything is computed.

use burn::tensor::Device;
use tinyrlhf_model::{CausalLm, GptConfig, LoraConfig, ModelConfig, save_peft_adapter};
use tinyrlhf_rlhf::methods::dpo::sequence_logprobs;
use tinyrlhf_rlhf::{DpoConfig, DpoLoss, DpoTrainer, TokenRanking, TrainSettings};

const PAD: u32 = 0;
const EOS: u32 = 1;

fn model(seed: u64) -> (ModelConfig, CausalLm) {
    let device = Device::flex();
    device.seed(seed);
    let config = ModelConfig::from(GptConfig::new(24, 48, 32, 2, 2));
    let lm = config.init(&device);
    (config, lm)
}

/// Answers with more 7s are better.
fn ranking(p: u32) -> TokenRanking {
    TokenRanking {
        sequences: vec![vec![2, p, 3, 7, 7, EOS], vec![2, p, 3, 7, 9, EOS], vec![2, p, 3, 9, 9, EOS]],
        order: vec![0, 1, 2],
        prompt_len: 3,
    }
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    pollster::block_on(f)
}

#[test]
fn dpo_learns_to_prefer_the_better_answers_of_rankings_for_every_loss() {
    for loss in [DpoLoss::Sigmoid, DpoLoss::Ipo, DpoLoss::Hinge] {
        let (config, sft) = model(11);
        let train: Vec<TokenRanking> = (10..20).map(ranking).collect();
        let held_out: Vec<TokenRanking> = (20..23).map(ranking).collect();
        let settings = DpoConfig {
            epochs: 8,
            batch_size: 5,
            loss,
            train: TrainSettings { lr: 3e-3, ..DpoConfig::default().train },
            ..DpoConfig::default()
        };
        let mut trainer = block(DpoTrainer::new(sft.clone(), config, train, held_out.clone(), PAD, settings)).unwrap();
        let first = block(trainer.evaluate_held_out()).unwrap();
        assert!((first.margin).abs() < 1e-6, "{loss:?}: the policy starts as the reference, margin {}", first.margin);
        let mut last = None;
        while !trainer.is_done() {
            let stats = block(trainer.step()).unwrap();
            assert!(stats.skipped.is_none(), "{loss:?}: {:?}", stats.skipped);
            assert!(stats.loss.is_finite() && stats.grad_norm.is_finite());
            last = stats.held_out.or(last);
        }
        let held = last.expect("held-out numbers at the end of each epoch");
        assert_eq!(held.pairs, 9);
        assert!(held.accuracy >= 0.99 && held.margin > 0.0, "{loss:?}: held-out {held:?}");
        // The policy itself now gives the best held-out answer more probability than the reference did.
        let device = sft.device();
        let best: Vec<_> = held_out.iter().map(|r| r.examples().swap_remove(0)).collect();
        let gain = |m: &CausalLm| sequence_logprobs(m, &best, PAD, &device).into_data().try_to_vec::<f32>().unwrap();
        let (before, after) = (gain(&sft), gain(&trainer.policy()));
        assert!(before.iter().zip(&after).all(|(b, a)| a > b), "{loss:?}: {before:?} -> {after:?}");
    }
}

/// Every step's loss to the end, the trainer checkpointed and resumed from that checkpoint
/// after `stop_after` steps (a kill and a `--resume`); and the trainer at the end.
fn run_to_the_end(mut trainer: DpoTrainer, sft: &CausalLm, train: &[TokenRanking], stop_after: Option<usize>) -> (Vec<f64>, DpoTrainer) {
    let mut losses = Vec::new();
    while !trainer.is_done() {
        if stop_after == Some(trainer.steps_done()) {
            let checkpoint = block(trainer.checkpoint()).unwrap();
            trainer = block(DpoTrainer::resume(&checkpoint, sft, train.to_vec(), vec![], PAD)).unwrap();
        }
        losses.push(block(trainer.step()).unwrap().loss);
    }
    (losses, trainer)
}

#[test]
fn a_resumed_dpo_run_continues_exactly_where_it_stopped() {
    let (config, sft) = model(12);
    let train: Vec<TokenRanking> = (10..17).map(ranking).collect();
    let settings =
        DpoConfig { epochs: 2, batch_size: 3, train: TrainSettings { lr: 1e-3, ..DpoConfig::default().train }, ..DpoConfig::default() };
    let run = |stop_after: Option<usize>| -> Vec<f64> {
        let trainer = block(DpoTrainer::new(sft.clone(), config.clone(), train.clone(), vec![], PAD, settings.clone())).unwrap();
        run_to_the_end(trainer, &sft, &train, stop_after).0
    };
    let whole = run(None);
    assert_eq!(whole.len(), 6);
    assert_eq!(run(Some(4)), whole);
}

#[test]
fn a_resumed_lora_run_continues_exactly_and_its_adapter_holds_the_whole_run() {
    let (config, sft) = model(14);
    let train: Vec<TokenRanking> = (10..17).map(ranking).collect();
    let lora = LoraConfig { rank: 4, alpha: 8.0 };
    let settings = DpoConfig {
        epochs: 2,
        batch_size: 3,
        train: TrainSettings { lr: 1e-2, lora: Some(lora.clone()), ..DpoConfig::default().train },
        ..DpoConfig::default()
    };
    // The adapters' A is drawn at random (from a stream other tests share): both runs below start
    // from one drawn here, through a checkpoint taken before the first step.
    let fresh = block(DpoTrainer::new(sft.clone(), config.clone(), train.clone(), vec![], PAD, settings)).unwrap();
    let start = block(fresh.checkpoint()).unwrap();
    assert!(start.adapter.is_some(), "a LoRA checkpoint keeps its adapters apart");
    let run = |stop_after: Option<usize>| -> (Vec<f64>, Vec<u8>) {
        let trainer = block(DpoTrainer::resume(&start, &sft, train.clone(), vec![], PAD)).unwrap();
        let (losses, trainer) = run_to_the_end(trainer, &sft, &train, stop_after);
        (losses, block(save_peft_adapter(&trainer.policy(), &lora)).unwrap().1)
    };
    let (whole, whole_adapter) = run(None);
    let (resumed, resumed_adapter) = run(Some(4));
    assert_eq!(whole.len(), 6);
    assert_eq!(resumed, whole, "the adapters and their Adam moments come back as they were");
    assert!(resumed_adapter == whole_adapter, "the exported adapter is the whole run's, not the stretch after the resume");
}

#[test]
fn settings_out_of_range_are_refused_naming_the_field() {
    let (config, sft) = model(13);
    for (settings, field) in [
        (DpoConfig { beta: 0.0, ..DpoConfig::default() }, "beta"),
        (DpoConfig { beta: f64::NAN, ..DpoConfig::default() }, "beta"),
        (DpoConfig { train: TrainSettings { lr: -1.0, ..DpoConfig::default().train }, ..DpoConfig::default() }, "lr"),
        (DpoConfig { epochs: 0, ..DpoConfig::default() }, "epochs"),
    ] {
        let err = block(DpoTrainer::new(sft.clone(), config.clone(), vec![ranking(10)], vec![], PAD, settings)).unwrap_err();
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}
