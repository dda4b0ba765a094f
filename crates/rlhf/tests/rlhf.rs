//! The reward and PPO trainers on tiny random models: the reward model learns a preference, PPO's
//! first minibatch sees ratio 1 and no clipping, its stats are finite and sensible, a KL past the
//! limit restores the last healthy policy, a minibatch in groups of answers updates as the whole
//! minibatch does, beta moves between iterations, and an explained answer's per-prefix reward
//! scores agree with the reward model's.

mod common;

use burn::tensor::Device;
use common::{lm_bytes, lm_values, models};
use tinyrlhf_model::{GptConfig, ModelConfig, ScalarModel};
use tinyrlhf_rlhf::stages::scoring::score_sequences;
use tinyrlhf_rlhf::{
    Method, MethodSettings, PolicyInputs, PolicyTrainer, PpoConfig, PpoModels, PpoTrainer, RankingSet, RewardConfig, RewardTrainer,
    TokenRanking, TrainSettings, Trainer, explain_response,
};
use tinyrlhf_tokenizer::SpecialIds;

const PAD: u32 = 0;
const EOS: u32 = 1;

fn prompts() -> Vec<Vec<u32>> {
    (0..12u32).map(|i| vec![2, 4 + i % 7, 5 + i % 11, 3]).collect()
}

fn settings() -> PpoConfig {
    PpoConfig {
        iterations: 4,
        batch_size: 6,
        minibatch_size: 3,
        ppo_epochs: 2,
        max_new_tokens: 8,
        train: TrainSettings { lr: 1e-3, ..PpoConfig::default().train },
        ..PpoConfig::default()
    }
}

#[test]
fn reward_model_learns_to_prefer_a_token_from_rankings() {
    let (config, sft, _) = models(1);
    // Answers containing token 7 are better; the more 7s, the better.
    let ranking = |p: u32| TokenRanking {
        sequences: vec![vec![2, p, 3, 7, 7, EOS], vec![2, p, 3, 7, 9, EOS], vec![2, p, 3, 9, 9, EOS]],
        order: vec![0, 1, 2],
        prompt_len: 3,
    };
    let train: Vec<TokenRanking> = (10..20).map(ranking).collect();
    let held_out: Vec<TokenRanking> = (20..24).map(ranking).collect();
    let settings = RewardConfig {
        epochs: 30,
        batch_size: 5,
        train: TrainSettings { lr: 3e-3, ..RewardConfig::default().train },
        ..RewardConfig::default()
    };
    let mut trainer = RewardTrainer::new(sft, config, train, held_out, PAD, settings).unwrap();
    let mut last = None;
    while !trainer.is_done() {
        let stats = pollster::block_on(trainer.step()).unwrap();
        assert!(stats.skipped.is_none());
        last = stats.held_out.or(last);
    }
    let last = last.expect("held-out accuracy is reported every epoch");
    assert_eq!(last.pairs, 12);
    assert!(last.accuracy >= 0.9, "held-out pair accuracy {}", last.accuracy);
}

#[test]
fn calibration_centres_scores_on_the_given_answers() {
    let (_, _, reward) = models(2);
    let answers: Vec<Vec<u32>> = (0..10u32).map(|i| vec![2, 4 + i, 3, 5 + i % 3, EOS]).collect();
    let (model, (before_mean, before_std)) = pollster::block_on(tinyrlhf_rlhf::calibrate(reward, &answers, true, PAD)).unwrap();
    assert!(before_std > 0.0 && before_mean.is_finite());
    let (mean, std) = pollster::block_on(tinyrlhf_rlhf::stages::scoring::score_stats(&model, &answers, 4, PAD)).unwrap();
    assert!(mean.abs() < 1e-4 && (std - 1.0).abs() < 1e-3, "mean {mean}, std {std}");
}

#[test]
fn a_finished_reward_model_is_calibrated_on_the_sft_answers_of_its_rankings() {
    let (config, sft, _) = models(5);
    let ranking = |p: u32| TokenRanking {
        sequences: vec![vec![2, p, 3, 7, EOS], vec![2, p, 3, 9, 8, EOS], vec![2, p, 3, 6, EOS]],
        order: vec![0, 1, 2],
        prompt_len: 3,
    };
    let set = RankingSet { train: (10..16).map(ranking).collect(), ..RankingSet::default() };
    let answers = set.calibration_set();
    let settings = RewardConfig { epochs: 1, batch_size: 3, ..RewardConfig::default() };
    let mut trainer = RewardTrainer::on_rankings(sft, config, set, PAD, settings).unwrap();
    while !trainer.is_done() {
        pollster::block_on(trainer.step()).unwrap();
    }
    let calibrated = pollster::block_on(trainer.calibrated()).unwrap();
    assert_eq!(calibrated.answers, 18);
    assert!(calibrated.std_before > 0.0, "{}", calibrated.summary());
    let (mean, std) = pollster::block_on(tinyrlhf_rlhf::stages::scoring::score_stats(&calibrated.model, &answers, 4, PAD)).unwrap();
    assert!(mean.abs() < 1e-4 && (std - 1.0).abs() < 1e-3, "mean {mean}, std {std}");
}

#[test]
fn every_method_is_built_from_its_settings_and_a_sampling_method_without_a_reward_model_is_refused_by_name() {
    let (config, sft, reward) = models(6);
    let special = SpecialIds { pad: PAD, eos: EOS };
    let inputs = PolicyInputs { prompts: prompts(), ..PolicyInputs::new(sft, config, special) };
    for method in [Method::Ppo, Method::Grpo, Method::Rloo] {
        let settings = MethodSettings::with_changes(method, &serde_json::json!({"iterations": 2})).unwrap();
        assert_eq!(settings.method(), method);
        let refused = pollster::block_on(PolicyTrainer::new(settings.clone(), inputs.clone())).unwrap_err().to_string();
        assert!(refused.contains(&format!("{method} needs a reward model")), "{refused}");
        let with_reward = PolicyInputs { reward: Some(reward.clone()), ..inputs.clone() };
        let trainer = pollster::block_on(PolicyTrainer::new(settings, with_reward)).unwrap();
        assert_eq!((trainer.method(), trainer.total_steps(), trainer.steps_done()), (method, 2, 0));
    }
    let unknown = MethodSettings::with_changes(Method::Dpo, &serde_json::json!({"betta": 0.2})).unwrap_err().to_string();
    assert!(unknown.contains("\"betta\""), "{unknown}");
}

#[test]
fn rankings_that_are_not_orders_are_refused_before_training() {
    let (config, sft, _) = models(3);
    let bad = TokenRanking { sequences: vec![vec![2, 5, EOS], vec![2, 6, EOS]], order: vec![0, 0], prompt_len: 1 };
    let err = RewardTrainer::new(sft, config, vec![bad], vec![], PAD, RewardConfig::default()).unwrap_err();
    assert!(err.to_string().contains("ranking 0"), "{err}");
}

#[test]
fn first_ppo_minibatch_has_ratio_one_and_no_clipping_and_stats_are_sane() {
    let (config, sft, reward) = models(4);
    let models = PpoModels { sft, config, reward, value: None, policy: None };
    let mut trainer = PpoTrainer::new(models, prompts(), vec![], EOS, PAD, settings()).unwrap();
    let stats = pollster::block_on(trainer.step()).unwrap();
    assert!(stats.restored.is_none());
    assert!(stats.first_minibatch_max_log_ratio < 1e-5, "max |log ratio| {}", stats.first_minibatch_max_log_ratio);
    assert_eq!(stats.first_minibatch_clipfrac, 0.0);
    // The policy starts as the reference: no KL yet.
    assert!(stats.kl.abs() < 1e-5 && stats.kl_k3.abs() < 1e-5, "kl {} / {}", stats.kl, stats.kl_k3);
    assert!(stats.entropy > 0.0 && stats.mean_length >= 1.0 && (0.0..=1.0).contains(&stats.eos_rate));
    for x in [stats.score, stats.pg_loss, stats.vf_loss, stats.approx_kl, stats.explained_variance, stats.pg_clipfrac, stats.vf_clipfrac] {
        assert!(x.is_finite());
    }
    assert!(stats.rollout_secs > 0.0 && stats.update_secs > 0.0);
    // The update moved the policy.
    let second = pollster::block_on(trainer.step()).unwrap();
    assert!(second.kl.abs() > 0.0);
}

#[test]
fn a_ppo_minibatch_in_groups_of_answers_updates_as_the_whole_minibatch_does() {
    // Minibatches of 8 answers of up to 24 tokens after 4-token prompts: 1 MiB of this model's
    // activations holds about 227 tokens, both models' together, so each takes several groups.
    let settings = |activation_budget_mib| PpoConfig {
        batch_size: 16,
        minibatch_size: 8,
        max_new_tokens: 24,
        train: TrainSettings { activation_budget_mib, ..settings().train },
        ..settings()
    };
    // Drawn once: the device's generator is shared with the tests running beside this one, so two
    // draws from the same seed can differ.
    let (config, sft, reward) = models(5);
    let iterate = |budget| {
        let models = PpoModels { sft: sft.clone(), config: config.clone(), reward: reward.clone(), value: None, policy: None };
        let mut trainer = PpoTrainer::new(models, prompts(), vec![], EOS, PAD, settings(budget)).unwrap();
        let stats = pollster::block_on(trainer.step()).unwrap();
        assert!(stats.restored.is_none(), "{:?}", stats.restored);
        (stats, lm_values(&trainer.policy()))
    };
    let ((whole, at_once), (grouped, in_groups)) = (iterate(512), iterate(1));
    // 2 epochs of 2 minibatches.
    assert_eq!(whole.update_groups, 4);
    assert!(grouped.update_groups > 4, "{} groups", grouped.update_groups);
    assert_eq!(whole.score, grouped.score, "the same rollout");
    for (what, a, b) in [
        ("pg_loss", whole.pg_loss, grouped.pg_loss),
        ("vf_loss", whole.vf_loss, grouped.vf_loss),
        ("approx_kl", whole.approx_kl, grouped.approx_kl),
    ] {
        assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{what}: {a} whole, {b} in groups");
    }
    assert_eq!(at_once.len(), in_groups.len());
    let apart = at_once.iter().zip(&in_groups).filter(|(a, b)| (*a - *b).abs() > 1e-5 * (1.0 + a.abs())).count();
    assert_eq!(apart, 0, "{apart} of {} weights differ", at_once.len());
}

#[test]
fn a_kl_past_the_limit_restores_the_last_healthy_policy() {
    let (config, sft, reward) = models(5);
    let models = PpoModels { sft, config, reward, value: None, policy: None };
    let mut trainer = PpoTrainer::new(
        models,
        prompts(),
        vec![],
        EOS,
        PAD,
        PpoConfig {
            // k3 is positive wherever the policies differ (k1's sample mean can be below 0), and a
            // larger step makes the second rollout's KL plainly above the limit.
            kl_limit: 1e-9,
            kl_estimator: tinyrlhf_rlhf::KlEstimator::K3,
            train: TrainSettings { lr: 1e-3, ..settings().train },
            ..settings()
        },
    )
    .unwrap();
    let before = lm_bytes(&trainer.policy());
    // Iteration 1: KL 0, healthy; it updates. Iteration 2 sees KL > 0 and restores.
    assert!(pollster::block_on(trainer.step()).unwrap().restored.is_none());
    assert_ne!(lm_bytes(&trainer.policy()), before);
    let stats = pollster::block_on(trainer.step()).unwrap();
    let why = stats.restored.expect("restored");
    assert!(why.contains("limit"), "{why}");
    assert_eq!(lm_bytes(&trainer.policy()), before);
}

#[test]
fn a_reward_model_of_another_size_is_refused() {
    let (config, sft, _) = models(6);
    let other = ScalarModel::new(ModelConfig::from(GptConfig::new(24, 48, 16, 1, 2)).init(&Device::flex()));
    let err = PpoTrainer::new(PpoModels { sft, config, reward: other, value: None, policy: None }, prompts(), vec![], EOS, PAD, settings())
        .unwrap_err();
    assert!(err.to_string().contains("has a different size"), "{err}");
}

#[test]
fn a_resumed_ppo_run_continues_exactly_where_it_stopped() {
    // One set of models for both runs: other tests reseed the shared device while they run.
    let (config, sft, reward) = models(7);
    let models = || PpoModels { sft: sft.clone(), config: config.clone(), reward: reward.clone(), value: None, policy: None };
    let run = |stop_after: Option<usize>| -> Vec<(f64, f64)> {
        let mut trainer = PpoTrainer::new(models(), prompts(), vec![], EOS, PAD, settings()).unwrap();
        let mut seen = Vec::new();
        for i in 0..3 {
            if stop_after == Some(i) {
                let checkpoint = pollster::block_on(trainer.checkpoint()).unwrap();
                trainer = PpoTrainer::resume(models(), &checkpoint, prompts(), vec![], EOS, PAD).unwrap();
                assert_eq!(trainer.iterations_done(), i);
            }
            let stats = pollster::block_on(trainer.step()).unwrap();
            seen.push((stats.score, stats.kl));
        }
        seen
    };
    assert_eq!(run(Some(2)), run(None));
}

#[test]
fn a_lora_ppo_checkpoint_keeps_adapters_and_heads_only_and_resumes_to_the_same_models() {
    let (config, sft, reward) = models(9);
    let models = || PpoModels { sft: sft.clone(), config: config.clone(), reward: reward.clone(), value: None, policy: None };
    let lora = PpoConfig {
        train: TrainSettings { lora: Some(tinyrlhf_model::LoraConfig { rank: 2, alpha: 4.0 }), lr: 1e-2, ..settings().train },
        ..settings()
    };
    let mut trainer = PpoTrainer::new(models(), prompts(), vec![], EOS, PAD, lora).unwrap();
    pollster::block_on(trainer.step()).unwrap();
    let checkpoint = pollster::block_on(trainer.checkpoint()).unwrap();
    // The SFT and reward models the run started from are the rest: no copy of either is kept.
    assert!(checkpoint.weights.is_none() && checkpoint.adapter.is_some());
    let value = &checkpoint.value.as_ref().unwrap().weights;
    let whole = pollster::block_on(tinyrlhf_model::save_scalar_model(&reward)).unwrap();
    assert!(value.len() < whole.len() / 2, "the value model's part: {} bytes; the whole model: {}", value.len(), whole.len());

    let resumed = PpoTrainer::resume(models(), &checkpoint, prompts(), vec![], EOS, PAD).unwrap();
    assert_eq!(resumed.iterations_done(), 1);
    let again = pollster::block_on(resumed.checkpoint()).unwrap();
    assert!(again.adapter == checkpoint.adapter, "the policy's adapters come back as they were");
    assert!(again.value.as_ref().unwrap().weights == *value, "the value model's adapters and head come back as they were");
    assert_eq!(lm_bytes(&resumed.policy()), lm_bytes(&trainer.policy()), "the policy is the one trained");
}

#[test]
fn explaining_an_answer_scores_every_prefix_and_the_whole_answer_scores_as_the_reward_model_does() {
    let (_, sft, reward) = models(8);
    let (prompt, response) = (vec![2u32, 5, 6, 3], vec![7u32, 8, 9, EOS]);
    let settings = PpoConfig::default();
    let explained =
        pollster::block_on(explain_response(&sft, &sft, &reward, &reward, &prompt, &response, &settings, 0.05, EOS, PAD)).unwrap();
    assert_eq!(explained.prefix_scores.len(), response.len());
    assert!(explained.log_ratio.iter().all(|r| r.abs() < 1e-6), "the policy is the reference: {:?}", explained.log_ratio);
    let score_of = |ids: &[u32]| {
        let scores = score_sequences(&reward, &[ids.to_vec()], PAD, &sft.device());
        f64::from(scores.into_data().try_to_vec::<f32>().unwrap()[0])
    };
    let whole: Vec<u32> = prompt.iter().chain(&response).copied().collect();
    assert!((explained.prefix_scores[3] - score_of(&whole)).abs() < 1e-5);
    assert!((explained.prefix_scores[1] - score_of(&whole[..prompt.len() + 2])).abs() < 1e-5);
    assert!((explained.prompt_score - score_of(&prompt)).abs() < 1e-5);
    assert!((explained.score - score_of(&whole)).abs() < 1e-5, "an answer that ended has no EOS penalty");
}

#[test]
fn beta_moves_between_ppo_iterations_and_a_bad_beta_changes_nothing() {
    let (config, sft, reward) = models(9);
    let models = PpoModels { sft, config, reward, value: None, policy: None };
    let mut trainer = PpoTrainer::new(models, prompts(), vec![], EOS, PAD, settings()).unwrap();
    assert_eq!(pollster::block_on(trainer.step()).unwrap().beta, 0.05);
    trainer.set_beta(0.3).unwrap();
    let why = trainer.set_beta(-1.0).unwrap_err().to_string();
    assert!(why.contains("kl_coef"), "{why}");
    assert_eq!(pollster::block_on(trainer.step()).unwrap().beta, 0.3);
    assert_eq!(trainer.settings().kl_coef, 0.3);
}
