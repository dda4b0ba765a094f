//! GRPO and RLOO reproduce TRL 1.16 (`preference_optim.json`, see
//! `fixtures/trl-parity/README-trl-pref.md`): GRPO's advantages for every reward scaling (with a
//! zero-std group), its clipped token loss, clip ratios and gradient for every loss aggregation
//! with and without the k3 KL (bias-corrected or not, asymmetric clipping, on policy); RLOO's
//! KL-penalised leave-one-out advantages (normalised or not) and its sequence-level loss. The
//! rollout's answer masking is PPO's, checked against the same fixture. Every shape comes from it.

use tinyrlhf_rlhf::methods::group_math::{
    LossAggregation, RewardScaling, TokenLossConfig, grpo_advantages, grpo_loss, masked_token_mean, rloo_advantages, rloo_loss, trl_std,
};
use tinyrlhf_rlhf::methods::ppo_math::postprocess_responses;
use tinyrlhf_tests::preference::{fixture, floats, mask, rows};

const RTOL: f64 = 1e-10;
const ATOL: f64 = 1e-12;
/// TRL's boolean-mask metrics are float32 means.
const F32: f64 = 1e-6;
/// std-derived values against an exact float64 computation (TRL's nanstd Bessel factor is float32;
/// we mimic it, so these hold far tighter, but the README promises this).
const STD: f64 = 1e-7;

fn close(what: &str, actual: f64, expected: f64, rtol: f64) {
    assert!((actual - expected).abs() <= ATOL + rtol * expected.abs(), "{what}: got {actual}, expected {expected}");
}

fn all_close(what: &str, actual: &[f64], expected: &[f64], rtol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        close(&format!("{what}[{i}]"), *a, *e, rtol);
    }
}

fn masked_close(what: &str, actual: &[Vec<f64>], expected: &[Vec<f64>], mask: &[Vec<bool>], rtol: f64) {
    for (b, ((a, e), m)) in actual.iter().zip(expected).zip(mask).enumerate() {
        for (t, ((a, e), k)) in a.iter().zip(e).zip(m).enumerate() {
            if *k {
                close(&format!("{what}[{b}][{t}]"), *a, *e, rtol);
            }
        }
    }
}

#[test]
fn the_rollout_keeps_answers_up_to_and_including_the_first_eos_as_trl_does() {
    let f = fixture();
    let rollout = &f["grpo"]["rollout"];
    let (eos, pad) = (f["eos_token_id"].as_u64().unwrap() as u32, f["pad_token_id"].as_u64().unwrap() as u32);
    let raw: Vec<Vec<u32>> = rows(&rollout["raw_sampled_completion_ids"]).iter().map(|r| r.iter().map(|&x| x as u32).collect()).collect();
    let post = postprocess_responses(&raw, eos, pad);
    let expected_mask = mask(&rollout["completion_mask"]);
    for (b, (len, m)) in post.sequence_lengths.iter().zip(&expected_mask).enumerate() {
        // PPO's sequence_length is the index of the last kept token.
        assert_eq!(len + 1, m.iter().filter(|&&k| k).count(), "row {b}");
    }
    let tokens: usize = expected_mask.iter().flatten().filter(|&&k| k).count();
    assert_eq!(tokens as u64, rollout["num_items_in_batch"].as_u64().unwrap());
}

#[test]
fn grpo_advantages_match_trl_for_every_scaling_and_a_zero_std_group() {
    let f = fixture();
    let group = f["grpo"]["config"]["num_generations"].as_u64().unwrap() as usize;
    for case in ["main", "zero_std_group"] {
        for (name, scaling) in [("group", RewardScaling::Group), ("batch", RewardScaling::Batch), ("none", RewardScaling::None)] {
            let e = &f["grpo"]["advantages"][case][name];
            let what = format!("{case}/{name}");
            let rewards = floats(&e["rewards"]);
            let ours = grpo_advantages(&rewards, group, scaling);
            all_close(&format!("{what} mean_grouped_rewards"), &ours.mean_grouped_rewards, &floats(&e["mean_grouped_rewards"]), RTOL);
            all_close(&format!("{what} std_rewards"), &ours.std_rewards, &floats(&e["std_rewards"]), STD);
            all_close(&format!("{what} advantages"), &ours.advantages, &floats(&e["advantages"]), STD);
            all_close(&format!("{what} advantages (TRL's float32 rewards)"), &ours.advantages, &floats(&e["advantages_trl_f32"]), F32);
            let zero: Vec<f64> = ours.is_std_zero.iter().map(|&z| f64::from(u8::from(z))).collect();
            assert_eq!(zero, floats(&e["is_std_zero"]), "{what} is_std_zero");
            let m = &e["metrics"];
            close(&format!("{what} reward"), rewards.iter().sum::<f64>() / rewards.len() as f64, m["reward"].as_f64().unwrap(), RTOL);
            close(&format!("{what} reward_std"), trl_std(&rewards), m["reward_std"].as_f64().unwrap(), STD);
            close(
                &format!("{what} frac_reward_zero_std"),
                zero.iter().sum::<f64>() / zero.len() as f64,
                m["frac_reward_zero_std"].as_f64().unwrap(),
                F32,
            );
        }
    }
}

#[test]
fn grpo_loss_clip_ratios_and_gradient_match_trl_for_every_aggregation_with_and_without_kl() {
    let f = fixture();
    let loss = &f["grpo"]["loss"];
    let inputs = &loss["inputs"];
    let completion_mask = mask(&inputs["completion_mask"]);
    let (logp, reference) = (rows(&inputs["per_token_logps"]), rows(&inputs["ref_per_token_logps"]));
    let old_inputs = rows(&inputs["old_per_token_logps"]);
    let advantages = floats(&inputs["advantages"]);
    let max_completion_length = f["grpo"]["config"]["max_completion_length"].as_u64().unwrap() as usize;
    let cases = loss["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 12);
    for (name, e) in cases {
        let aggregation: LossAggregation = e["loss_type"].as_str().unwrap().parse().unwrap();
        let on_policy = !e["old_per_token_logps"].as_str().unwrap().starts_with("loss.inputs");
        let c = TokenLossConfig {
            aggregation,
            beta: e["beta"].as_f64().unwrap(),
            epsilon_low: e["epsilon_low"].as_f64().unwrap(),
            epsilon_high: e["epsilon_high"].as_f64().unwrap(),
            bias_correction_kl: e["use_bias_correction_kl"].as_bool().unwrap(),
            max_completion_length,
            tokens_in_generation: inputs["num_items_in_batch"].as_f64().unwrap(),
        };
        let ours = grpo_loss(&logp, (!on_policy).then_some(&old_inputs), &reference, &completion_mask, &advantages, &c);
        close(&format!("{name} loss"), ours.loss, e["loss"].as_f64().unwrap(), RTOL);
        masked_close(&format!("{name} per_token_loss"), &ours.per_token_loss, &rows(&e["per_token_loss"]), &completion_mask, RTOL);
        masked_close(&format!("{name} coef_1"), &ours.coef_1, &rows(&e["coef_1"]), &completion_mask, RTOL);
        masked_close(&format!("{name} gradient"), &ours.grad, &rows(&e["grad_loss_wrt_per_token_logps"]), &completion_mask, RTOL);
        if c.beta > 0.0 {
            masked_close(&format!("{name} per_token_kl"), &ours.per_token_kl, &rows(&e["per_token_kl"]), &completion_mask, RTOL);
            close(&format!("{name} kl"), ours.kl, e["metrics"]["kl"].as_f64().unwrap(), RTOL);
        }
        let m = &e["metrics"];
        close(
            &format!("{name} entropy"),
            masked_token_mean(&rows(&inputs["entropies"]), &completion_mask),
            m["entropy"].as_f64().unwrap(),
            RTOL,
        );
        let clip = serde_json::to_value(ours.clip).unwrap();
        for key in ["clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "clip_ratio/low_min", "clip_ratio/high_max"] {
            close(&format!("{name} {key}"), clip[key].as_f64().unwrap(), m[key].as_f64().unwrap(), F32);
        }
    }
}

#[test]
fn rloo_advantages_match_trl_with_the_kl_in_the_reward_normalised_or_not() {
    let f = fixture();
    let a = &f["rloo"]["advantages"];
    let inputs = &a["inputs"];
    let group = f["rloo"]["config"]["num_generations"].as_u64().unwrap() as usize;
    let (rewards, completion_mask) = (floats(&inputs["rewards"]), mask(&inputs["completion_mask"]));
    let (old, reference) = (rows(&inputs["old_per_token_logps"]), rows(&inputs["ref_per_token_logps"]));
    for (name, e) in a["cases"].as_object().unwrap() {
        let (beta, normalize) = (e["beta"].as_f64().unwrap(), e["normalize_advantages"].as_bool().unwrap());
        let ours = rloo_advantages(&rewards, &old, &reference, &completion_mask, group, beta, normalize);
        if beta > 0.0 {
            // TRL computes the KL only when it is used.
            all_close(&format!("{name} sequence_kl"), &ours.sequence_kl, &floats(&e["sequence_kl"]), RTOL);
            close(&format!("{name} kl"), ours.kl, e["metrics"]["kl"].as_f64().unwrap(), RTOL);
        }
        all_close(&format!("{name} rewards_after_kl"), &ours.rewards_after_kl, &floats(&e["rewards_after_kl"]), RTOL);
        all_close(&format!("{name} baselines"), &ours.baselines, &floats(&e["baselines"]), RTOL);
        all_close(&format!("{name} advantages"), &ours.advantages, &floats(&e["advantages"]), if normalize { STD } else { RTOL });
        all_close(&format!("{name} advantages (TRL's float32 rewards)"), &ours.advantages, &floats(&e["advantages_trl_f32"]), F32);
        let old_logps: Vec<f64> =
            old.iter().zip(&completion_mask).map(|(r, m)| r.iter().zip(m).filter(|(_, k)| **k).map(|(x, _)| x).sum()).collect();
        all_close(&format!("{name} old_logps"), &old_logps, &floats(&e["old_logps"]), RTOL);
        all_close(
            &format!("{name} advantages_unnormalised"),
            &ours.rewards_after_kl.iter().zip(&ours.baselines).map(|(r, b)| r - b).collect::<Vec<_>>(),
            &floats(&e["advantages_unnormalised"]),
            RTOL,
        );
    }
}

#[test]
fn rloo_sequence_level_clipped_loss_and_gradient_match_trl() {
    let f = fixture();
    let e = &f["rloo"]["loss"];
    let inputs = &e["inputs"];
    let completion_mask = mask(&inputs["completion_mask"]);
    let ours = rloo_loss(
        &rows(&inputs["per_token_logps"]),
        &floats(&inputs["old_logps"]),
        &completion_mask,
        &floats(&inputs["advantages"]),
        e["epsilon_low"].as_f64().unwrap(),
        e["epsilon_high"].as_f64().unwrap(),
    );
    close("rloo loss", ours.loss, e["loss"].as_f64().unwrap(), RTOL);
    masked_close("rloo gradient", &ours.grad, &rows(&e["grad_loss_wrt_per_token_logps"]), &completion_mask, RTOL);
    let m = &e["metrics"];
    close("rloo entropy", masked_token_mean(&rows(&inputs["entropies"]), &completion_mask), m["entropy"].as_f64().unwrap(), RTOL);
    let clip = serde_json::to_value(ours.clip).unwrap();
    for key in ["clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "clip_ratio/low_min", "clip_ratio/high_max"] {
        close(&format!("rloo {key}"), clip[key].as_f64().unwrap(), m[key].as_f64().unwrap(), F32);
    }
}

#[test]
fn a_perturbed_fixture_value_fails_the_comparison() {
    let f = fixture();
    let e = &f["grpo"]["advantages"]["main"]["group"];
    let ours = grpo_advantages(&floats(&e["rewards"]), 4, RewardScaling::Group).advantages;
    let perturbed: Vec<f64> = floats(&e["advantages"]).iter().map(|a| a * (1.0 + 1e-6)).collect();
    assert!(std::panic::catch_unwind(|| all_close("advantages", &ours, &perturbed, STD)).is_err(), "a 1e-6 change must be caught");
}
