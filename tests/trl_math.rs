//! The reward-model and PPO math reproduces TRL 1.12 on its own numbers (`ppo_math.json`,
//! `preference_losses.json`): truncation, EOS penalty, masks, k1/k3 KL, shaped rewards with and
//! without whitening, GAE, returns, whitened advantages, clipped policy and value losses with their
//! clip fractions, masked whitening and the adaptive KL controller; Bradley-Terry loss with its
//! gradients, margin and centring, and the K-wise ranking loss. Host math is f64 (1e-9); tensor
//! losses run in f32 on the CPU backend (1e-5 relative).

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use tinyrlhf_rlhf::methods::ppo_math::{
    AdaptiveKl, AdvantageConfig, KlEstimator, Rows, compute_advantages, invert, masked_whiten, postprocess_responses,
};
use tinyrlhf_rlhf::step::losses::{PreferencePairs, clipped_policy_loss, clipped_value_loss, preference_loss};
use tinyrlhf_tests::read_fixture;

fn json(name: &str) -> Value {
    serde_json::from_slice(&read_fixture(name)).expect("fixture is JSON")
}

fn rows(v: &Value) -> Rows {
    v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn close(what: &str, actual: f64, expected: f64, tol: f64) {
    assert!((actual - expected).abs() <= tol * (1.0 + expected.abs()), "{what}: got {actual}, expected {expected}");
}

fn rows_close(what: &str, actual: &Rows, expected: &Rows) {
    assert_eq!(actual.len(), expected.len(), "{what}: rows");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a.len(), e.len(), "{what}[{i}]: columns");
        for (t, (&a, &e)) in a.iter().zip(e).enumerate() {
            close(&format!("{what}[{i}][{t}]"), a, e, 1e-9);
        }
    }
}

fn tensor(r: &Rows, device: &Device) -> Tensor<2> {
    let data: Vec<f32> = r.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(data, [r.len(), r[0].len()]), device)
}

fn mask_tensor(m: &[Vec<bool>], device: &Device) -> Tensor<2> {
    tensor(&m.iter().map(|r| r.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect()).collect(), device)
}

fn scalar(t: Tensor<1>) -> f64 {
    f64::from(t.into_scalar::<f32>())
}

fn check_variant(name: &str, estimator: KlEstimator, whiten: bool) {
    let fixture = json("ppo_math.json");
    let (config, inputs, expected) = (&fixture["config"], &fixture["inputs"], &fixture["expected"][name]);
    let f = |k: &str| config[k].as_f64().unwrap();
    let responses: Vec<Vec<u32>> = inputs["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
        .collect();
    let post = postprocess_responses(
        &responses,
        config["stop_token_id"].as_u64().unwrap() as u32,
        config["pad_token_id"].as_u64().unwrap() as u32,
    );
    let expected_responses: Vec<Vec<u32>> =
        rows(&expected["postprocessed_responses"]).iter().map(|r| r.iter().map(|&x| x as u32).collect()).collect();
    assert_eq!(post.responses, expected_responses, "{name}: truncation");
    let lengths: Vec<usize> = floats(&expected["sequence_lengths"]).iter().map(|&x| x as usize).collect();
    assert_eq!(post.sequence_lengths, lengths, "{name}: sequence lengths");
    let eos: Vec<bool> = expected["contain_eos"].as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect();
    assert_eq!(post.contain_eos, eos, "{name}: contain_eos");

    let settings = AdvantageConfig {
        kl_coef: f("kl_coef"),
        kl_estimator: estimator,
        gamma: f("gamma"),
        lam: f("lam"),
        whiten_rewards: whiten,
        missing_eos_penalty: f("missing_eos_penalty"),
    };
    let adv = compute_advantages(
        &post,
        &floats(&inputs["scores"]),
        &rows(&inputs["logprobs"]),
        &rows(&inputs["ref_logprobs"]),
        &rows(&inputs["values"]),
        &settings,
    );
    for (i, (&a, e)) in adv.scores.iter().zip(floats(&expected["scores_after_penalty"])).enumerate() {
        close(&format!("{name}: scores_after_penalty[{i}]"), a, e, 1e-9);
    }
    let bools = |v: &Value| -> Vec<Vec<bool>> {
        v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect()).collect()
    };
    assert_eq!(adv.padding_mask, bools(&expected["padding_mask"]), "{name}: padding_mask");
    assert_eq!(adv.padding_mask_p1, bools(&expected["padding_mask_p1"]), "{name}: padding_mask_p1");
    rows_close(&format!("{name}: kl"), &adv.kl, &rows(&expected["kl"]));
    rows_close(&format!("{name}: rewards"), &adv.rewards, &rows(&expected["rewards"]));
    rows_close(&format!("{name}: advantages_raw"), &adv.advantages_raw, &rows(&expected["advantages_raw"]));
    rows_close(&format!("{name}: returns"), &adv.returns, &rows(&expected["returns"]));
    rows_close(&format!("{name}: advantages"), &adv.advantages, &rows(&expected["advantages"]));

    // The losses, in f32 tensors, from TRL's new log-probs and value predictions.
    let device = Device::default();
    let (valid, valid_p1) = (mask_tensor(&invert(&adv.padding_mask), &device), mask_tensor(&invert(&adv.padding_mask_p1), &device));
    let policy = clipped_policy_loss(
        tensor(&rows(&inputs["new_logprobs"]), &device),
        tensor(&rows(&inputs["logprobs"]), &device),
        tensor(&adv.advantages, &device),
        valid,
        f("cliprange"),
    );
    let (vf_loss, vf_clipfrac) = clipped_value_loss(
        tensor(&rows(&inputs["vpred"]), &device),
        tensor(&adv.values, &device),
        tensor(&adv.returns, &device),
        valid_p1,
        f("cliprange_value"),
    );
    let e = |k: &str| expected[k].as_f64().unwrap();
    let (pg, vf) = (scalar(policy.loss), scalar(vf_loss));
    close(&format!("{name}: pg_loss"), pg, e("pg_loss"), 1e-5);
    close(&format!("{name}: vf_loss"), vf, e("vf_loss"), 1e-5);
    close(&format!("{name}: loss"), pg + f("vf_coef") * vf, e("loss"), 1e-5);
    close(&format!("{name}: pg_clipfrac"), scalar(policy.clipfrac), e("pg_clipfrac"), 1e-6);
    close(&format!("{name}: vf_clipfrac"), scalar(vf_clipfrac), e("vf_clipfrac"), 1e-6);
}

#[test]
fn ppo_k1_without_reward_whitening_matches_trl() {
    check_variant("k1_whiten0", KlEstimator::K1, false);
}

#[test]
fn ppo_k1_with_reward_whitening_matches_trl() {
    check_variant("k1_whiten1", KlEstimator::K1, true);
}

#[test]
fn ppo_k3_without_reward_whitening_matches_trl() {
    check_variant("k3_whiten0", KlEstimator::K3, false);
}

#[test]
fn ppo_k3_with_reward_whitening_matches_trl() {
    check_variant("k3_whiten1", KlEstimator::K3, true);
}

#[test]
fn masked_whitening_uses_only_valid_positions_with_unbiased_variance() {
    let extras = &json("ppo_math.json")["extras"];
    let input = vec![floats(&extras["masked_whiten_input"])];
    let valid = vec![extras["masked_whiten_mask"].as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect()];
    let whitened = masked_whiten(&input, &valid, true);
    // TRL's reference ran in float32 here; 1e-7 is its precision.
    for (i, (&a, e)) in whitened[0].iter().zip(floats(&extras["masked_whiten_unbiased"])).enumerate() {
        close(&format!("masked_whiten[{i}]"), a, e, 1e-7);
    }
}

#[test]
fn adaptive_kl_controller_matches_trl() {
    for case in json("ppo_math.json")["extras"]["adaptive_kl"].as_array().unwrap() {
        let f = |k: &str| case[k].as_f64().unwrap();
        let mut beta = AdaptiveKl { value: f("value"), target: f("target"), horizon: f("horizon") };
        beta.update(f("current_kl"), f("n_steps") as usize);
        close(&format!("adaptive kl at KL {}", f("current_kl")), beta.value, f("new_value"), 1e-12);
    }
}

fn leaf(values: &[f64], device: &Device) -> Tensor<1> {
    let data: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(data, [values.len()]), device).require_grad()
}

fn bt_pairs(n: usize, margins: Vec<f32>) -> PreferencePairs {
    PreferencePairs { winners: (0..n).collect(), losers: (n..2 * n).collect(), weights: vec![1.0 / n as f32; n], margins }
}

#[test]
fn bradley_terry_loss_gradients_margin_and_centring_match_trl() {
    let bt = &json("preference_losses.json")["bradley_terry"];
    let (chosen, rejected) = (floats(&bt["rewards_chosen"]), floats(&bt["rewards_rejected"]));
    let n = chosen.len();
    let device = Device::default().autodiff();
    let rewards = leaf(&[chosen.clone(), rejected.clone()].concat(), &device);
    let loss = preference_loss(rewards.clone(), &bt_pairs(n, vec![]), 0.0);
    let grads = loss.backward();
    close("loss", scalar(loss), bt["loss"].as_f64().unwrap(), 1e-5);
    let grad: Vec<f32> = rewards.grad(&grads).expect("rewards have a gradient").into_data().try_to_vec().unwrap();
    for (i, (g, e)) in
        grad.iter().zip(floats(&bt["grad_rewards_chosen"]).into_iter().chain(floats(&bt["grad_rewards_rejected"]))).enumerate()
    {
        close(&format!("gradient[{i}]"), f64::from(*g), e, 1e-5);
    }

    let margins: Vec<f32> = floats(&bt["margin"]).iter().map(|&m| m as f32).collect();
    let rewards = leaf(&[chosen.clone(), rejected.clone()].concat(), &device);
    close(
        "loss with margin",
        scalar(preference_loss(rewards.clone(), &bt_pairs(n, margins), 0.0)),
        bt["loss_with_margin"].as_f64().unwrap(),
        1e-5,
    );
    let coef = bt["center_rewards_coefficient"].as_f64().unwrap();
    close(
        "loss with centring",
        scalar(preference_loss(rewards, &bt_pairs(n, vec![]), coef)),
        bt["loss_with_center"].as_f64().unwrap(),
        1e-5,
    );
    let accuracy = chosen.iter().zip(&rejected).filter(|(c, r)| c > r).count() as f64 / n as f64;
    close("accuracy", accuracy, bt["accuracy"].as_f64().unwrap(), 1e-12);
}

#[test]
fn kwise_ranking_loss_averages_all_pairs_like_instructgpt() {
    let kw = &json("preference_losses.json")["kwise_ranking"];
    let rewards = floats(&kw["rewards_in_rank_order"]);
    let order: Vec<usize> = (0..rewards.len()).collect();
    let pairs = PreferencePairs::from_rankings(&[(0, &order)]);
    let expected: Vec<(usize, usize)> =
        kw["pairs"].as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize)).collect();
    assert_eq!(pairs.winners.iter().copied().zip(pairs.losers.iter().copied()).collect::<Vec<_>>(), expected);
    let loss = preference_loss(leaf(&rewards, &Device::default().autodiff()), &pairs, 0.0);
    close("k-wise loss", scalar(loss), kw["loss"].as_f64().unwrap(), 1e-5);
}

#[test]
fn a_ranking_of_nine_weighs_as_much_as_a_pair() {
    let nine: Vec<usize> = (0..9).collect();
    let pairs = PreferencePairs::from_rankings(&[(0, &[0, 1]), (2, &nine)]);
    let sum = |range: std::ops::Range<usize>| pairs.weights[range].iter().sum::<f32>();
    assert_eq!(pairs.len(), 1 + 36);
    assert!((sum(0..1) - 0.5).abs() < 1e-6 && (sum(1..37) - 0.5).abs() < 1e-5);
}

#[test]
fn padded_positions_contribute_nothing_to_the_ppo_losses() {
    let device = Device::default();
    let valid = vec![vec![true, true, false]];
    let base = |pad: f64| -> (f64, f64) {
        let new = tensor(&vec![vec![-1.0, -0.5, pad]], &device);
        let old = tensor(&vec![vec![-1.2, -0.4, -pad]], &device);
        let adv = tensor(&vec![vec![1.0, -0.5, pad]], &device);
        let policy = clipped_policy_loss(new, old, adv, mask_tensor(&valid, &device), 0.2);
        let (vf, _) = clipped_value_loss(
            tensor(&vec![vec![0.3, 0.1, pad]], &device),
            tensor(&vec![vec![0.2, 0.0, pad]], &device),
            tensor(&vec![vec![1.0, 1.0, pad]], &device),
            mask_tensor(&valid, &device),
            0.2,
        );
        (scalar(policy.loss), scalar(vf))
    };
    let (a, b) = (base(0.0), base(1e6));
    assert!(a.0.is_finite() && a.1.is_finite());
    assert_eq!(a, b, "a huge value on a padded position changed the losses");
}

#[test]
fn identical_log_probs_give_ratio_one_and_no_clipping() {
    let device = Device::default();
    let lp = vec![vec![-1.0, -2.0, -0.1]];
    let policy = clipped_policy_loss(
        tensor(&lp, &device),
        tensor(&lp, &device),
        tensor(&vec![vec![5.0, -5.0, 1.0]], &device),
        mask_tensor(&[vec![true; 3]], &device),
        0.2,
    );
    assert_eq!(scalar(policy.clipfrac), 0.0);
    assert_eq!(scalar(policy.approx_kl), 0.0);
    close("loss is -mean(A)", scalar(policy.loss), -1.0 / 3.0, 1e-6);
}
