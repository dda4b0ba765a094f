//! The GRPO / RLOO trainer on tiny random models: iterations run with finite, sensible stats for
//! both methods, an update in groups of answers moves the policy as the whole batch at once does,
//! a resumed run continues exactly, and settings out of range are refused naming the field.

mod common;

use common::{lm_values, models};
use tinyrlhf_rlhf::{GroupConfig, GroupMethod, GroupTrainer, TrainSettings};

const PAD: u32 = 0;
const EOS: u32 = 1;

fn prompts() -> Vec<Vec<u32>> {
    (0..6u32).map(|i| vec![2, 4 + i, 3]).collect()
}

fn settings(method: GroupMethod) -> GroupConfig {
    GroupConfig {
        method,
        iterations: 3,
        prompts_per_iteration: 2,
        samples_per_prompt: 3,
        max_new_tokens: 6,
        train: TrainSettings { lr: 1e-3, ..GroupConfig::default().train },
        ..GroupConfig::default()
    }
}

#[test]
fn both_methods_step_with_finite_stats_and_move_the_policy() {
    for method in [GroupMethod::Grpo, GroupMethod::Rloo] {
        let (config, sft, reward) = models(21);
        let mut trainer = GroupTrainer::new(sft, None, config, reward, prompts(), EOS, PAD, settings(method)).unwrap();
        let first = pollster::block_on(trainer.step()).unwrap();
        assert!(first.restored.is_none(), "{method:?}: {:?}", first.restored);
        assert!(first.kl.abs() < 1e-5, "{method:?}: the policy starts as the reference");
        assert_eq!(first.clip.region_mean, 0.0, "{method:?}: ratio 1 on the first update");
        for x in [first.score, first.loss, first.entropy, first.reward_std, f64::from(first.grad_norm)] {
            assert!(x.is_finite(), "{method:?}: {first:?}");
        }
        let second = pollster::block_on(trainer.step()).unwrap();
        assert!(second.kl.abs() > 0.0, "{method:?}: the update moved the policy");
    }
}

#[test]
fn an_update_in_groups_of_answers_moves_the_policy_as_the_whole_batch_does() {
    let (config, sft, reward) = models(24);
    for method in [GroupMethod::Grpo, GroupMethod::Rloo] {
        // 16 answers of up to 24 tokens after 3-token prompts: 1 MiB of this model's activations
        // holds about 227 tokens, so the update takes two or more groups.
        let settings = |activation_budget_mib| GroupConfig {
            prompts_per_iteration: 4,
            samples_per_prompt: 4,
            max_new_tokens: 24,
            train: TrainSettings { activation_budget_mib, ..settings(method).train },
            ..settings(method)
        };
        let step = |budget| {
            let mut trainer =
                GroupTrainer::new(sft.clone(), None, config.clone(), reward.clone(), prompts(), EOS, PAD, settings(budget)).unwrap();
            let stats = pollster::block_on(trainer.step()).unwrap();
            assert!(stats.restored.is_none(), "{method:?}: {:?}", stats.restored);
            (stats, lm_values(&trainer.policy()))
        };
        let ((whole, at_once), (grouped, in_groups)) = (step(512), step(1));
        assert_eq!(whole.update_groups, 1, "{method:?}");
        assert!(grouped.update_groups > 1, "{method:?}: {} group(s)", grouped.update_groups);
        assert_eq!((whole.loss, whole.score), (grouped.loss, grouped.score), "{method:?}: the same rollout and loss");
        assert!((whole.grad_norm - grouped.grad_norm).abs() <= 1e-4 * whole.grad_norm, "{method:?}: {whole:?} {grouped:?}");
        let start = lm_values(&sft);
        let moved = start.iter().zip(&at_once).filter(|(a, b)| a != b).count();
        assert!(moved > start.len() / 2, "{method:?}: the update moved {moved} of {} weights", start.len());
        for (i, (a, b)) in at_once.iter().zip(&in_groups).enumerate() {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{method:?}: weight {i} is {a} at once and {b} in groups");
        }
    }
}

#[test]
fn a_resumed_group_run_continues_exactly_where_it_stopped() {
    let (config, sft, reward) = models(22);
    let run = |stop_after: Option<usize>| -> Vec<(f64, f64)> {
        let mut trainer =
            GroupTrainer::new(sft.clone(), None, config.clone(), reward.clone(), prompts(), EOS, PAD, settings(GroupMethod::Rloo)).unwrap();
        let mut seen = Vec::new();
        for i in 0..3 {
            if stop_after == Some(i) {
                let checkpoint = pollster::block_on(trainer.checkpoint()).unwrap();
                trainer = GroupTrainer::resume(&checkpoint, sft.clone(), reward.clone(), prompts(), EOS, PAD).unwrap();
                assert_eq!(trainer.iterations_done(), i);
            }
            let stats = pollster::block_on(trainer.step()).unwrap();
            seen.push((stats.score, stats.loss));
        }
        seen
    };
    assert_eq!(run(Some(2)), run(None));
}

#[test]
fn settings_out_of_range_are_refused_naming_the_field() {
    let (config, sft, reward) = models(23);
    for (settings, field) in [
        (GroupConfig { samples_per_prompt: 1, ..GroupConfig::default() }, "samples_per_prompt"),
        (GroupConfig { epsilon: 1.0, ..GroupConfig::default() }, "epsilon"),
        (GroupConfig { epsilon_high: Some(0.0), ..GroupConfig::default() }, "epsilon_high"),
        (GroupConfig { beta: Some(-0.1), ..GroupConfig::default() }, "beta"),
        (
            GroupConfig { train: TrainSettings { activation_budget_mib: 0, ..GroupConfig::default().train }, ..GroupConfig::default() },
            "activation_budget_mib",
        ),
    ] {
        let err = GroupTrainer::new(sft.clone(), None, config.clone(), reward.clone(), prompts(), EOS, PAD, settings).unwrap_err();
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}
