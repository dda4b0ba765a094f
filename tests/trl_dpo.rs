//! DPO, IPO and hinge losses reproduce TRL 1.16's `DPOTrainer._compute_loss`
//! (`preference_optim.json`, see `fixtures/trl-parity/README-trl-pref.md`): per-pair and mean loss,
//! implicit rewards, accuracies, margins, TRL's logged metrics and the gradient with respect to the
//! per-token log-probs; and end to end on the fixture GPT-2 against a perturbed reference, from token
//! ids to the loss. Every shape comes from the fixture.

use std::collections::HashMap;

use burn::tensor::Device;
use serde_json::Value;
use tinyrlhf_model::{CausalLm, load_lm};
use tinyrlhf_rlhf::methods::dpo::sequence_logprobs;
use tinyrlhf_rlhf::methods::dpo_math::{DpoLoss, DpoPair, dpo_loss, sequence_logps};
use tinyrlhf_rlhf::{DpoMetrics, Example};
use tinyrlhf_tests::preference::{fixture, floats, mask, rows};
use tinyrlhf_tests::{read_fixture, read_safetensors};

const RTOL: f64 = 1e-10;
const ATOL: f64 = 1e-12;

fn close(what: &str, actual: f64, expected: f64, rtol: f64, atol: f64) {
    assert!((actual - expected).abs() <= atol + rtol * expected.abs(), "{what}: got {actual}, expected {expected}");
}

fn all_close(what: &str, actual: &[f64], expected: &[f64], rtol: f64, atol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        close(&format!("{what}[{i}]"), *a, *e, rtol, atol);
    }
}

fn metrics_close(what: &str, m: &DpoMetrics, expected: &Value, rtol: f64, atol: f64) {
    let ours = serde_json::to_value(m).unwrap();
    for name in ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"] {
        // Accuracies are a float32 mean of booleans in TRL.
        let rtol = if name == "rewards/accuracies" { rtol.max(1e-6) } else { rtol };
        close(&format!("{what} {name}"), ours[name].as_f64().unwrap(), expected[name].as_f64().expect(name), rtol, atol);
    }
}

/// The fixture's pairs (rows 0..N chosen, N..2N rejected) with equal weights, from per-token log-probs.
fn synthetic_pairs(inputs: &Value, policy_key: &str) -> (Vec<DpoPair>, Vec<Vec<bool>>) {
    let label_mask = mask(&inputs["label_mask"]);
    let policy = sequence_logps(&rows(&inputs[policy_key]), &label_mask);
    let reference = sequence_logps(&rows(&inputs["ref_per_token_logps"]), &label_mask);
    let counts: Vec<usize> = mask(&inputs["completion_mask"]).iter().map(|r| r.iter().filter(|&&k| k).count()).collect();
    let n = policy.len() / 2;
    let pairs = (0..n)
        .map(|i| DpoPair {
            policy_chosen: policy[i],
            policy_rejected: policy[n + i],
            ref_chosen: reference[i],
            ref_rejected: reference[n + i],
            chosen_tokens: counts[i],
            rejected_tokens: counts[n + i],
            weight: 1.0 / n as f64,
        })
        .collect();
    (pairs, label_mask)
}

fn check_synthetic(name: &str, loss_type: DpoLoss, policy_key: &str) {
    let f = fixture();
    let synthetic = &f["dpo"]["synthetic"];
    let expected = &synthetic["losses"][name];
    let beta = expected["beta"].as_f64().unwrap();
    let (pairs, label_mask) = synthetic_pairs(&synthetic["inputs"], policy_key);
    let n = pairs.len();
    assert_eq!(n as u64, synthetic["n_pairs"].as_u64().unwrap());
    let s = &synthetic["sequence_logps"];
    all_close(
        "policy_chosen_logps",
        &pairs.iter().map(|p| p.policy_chosen).collect::<Vec<_>>(),
        &floats(&s["policy_chosen_logps"]),
        RTOL,
        ATOL,
    );
    all_close(
        "ref_rejected_logps",
        &pairs.iter().map(|p| p.ref_rejected).collect::<Vec<_>>(),
        &floats(&s["ref_rejected_logps"]),
        RTOL,
        ATOL,
    );

    let batch = dpo_loss(&pairs, beta, loss_type);
    close(&format!("{name} loss"), batch.loss, expected["loss"].as_f64().unwrap(), RTOL, ATOL);
    let field = |f: &dyn Fn(&tinyrlhf_rlhf::methods::dpo_math::DpoPairLoss) -> f64| batch.pairs.iter().map(f).collect::<Vec<_>>();
    all_close(&format!("{name} per_pair_loss"), &field(&|t| t.loss), &floats(&expected["per_pair_loss"]), RTOL, ATOL);
    all_close(&format!("{name} chosen_rewards"), &field(&|t| t.chosen_reward), &floats(&expected["chosen_rewards"]), RTOL, ATOL);
    all_close(&format!("{name} rejected_rewards"), &field(&|t| t.rejected_reward), &floats(&expected["rejected_rewards"]), RTOL, ATOL);
    all_close(&format!("{name} margins"), &field(&|t| t.chosen_reward - t.rejected_reward), &floats(&expected["margins"]), RTOL, ATOL);
    let accuracies = field(&|t| f64::from(u8::from(t.chosen_reward > t.rejected_reward)));
    assert_eq!(accuracies, floats(&expected["reward_accuracies"]), "{name} reward_accuracies");
    metrics_close(name, &batch.metrics, &expected["metrics"], RTOL, ATOL);

    // d loss / d per-token log-prob: the pair's sequence gradient on every label position, 0 elsewhere.
    let expected_grad = rows(&expected["grad_loss_wrt_policy_per_token_logps"]);
    for (row, (grad_row, mask_row)) in expected_grad.iter().zip(&label_mask).enumerate() {
        let term = &batch.pairs[row % n];
        let sequence_grad = if row < n { term.grad_chosen } else { term.grad_rejected };
        let ours: Vec<f64> = mask_row.iter().map(|&k| if k { sequence_grad } else { 0.0 }).collect();
        all_close(&format!("{name} gradient row {row}"), &ours, grad_row, RTOL, ATOL);
    }
}

#[test]
fn the_sigmoid_loss_matches_trl_pair_by_pair_with_its_gradient() {
    check_synthetic("sigmoid", DpoLoss::Sigmoid, "policy_per_token_logps");
}

#[test]
fn the_ipo_loss_matches_trl_with_its_per_token_length_normalisation() {
    check_synthetic("ipo", DpoLoss::Ipo, "policy_per_token_logps");
}

#[test]
fn the_hinge_loss_matches_trl_including_a_pair_in_the_zero_region() {
    check_synthetic("hinge", DpoLoss::Hinge, "policy_per_token_logps");
}

#[test]
fn values_at_masked_positions_change_nothing() {
    for (name, loss) in [("sigmoid", DpoLoss::Sigmoid), ("ipo", DpoLoss::Ipo), ("hinge", DpoLoss::Hinge)] {
        check_synthetic(name, loss, "policy_per_token_logps_with_garbage");
    }
}

#[test]
fn a_perturbed_fixture_value_fails_the_comparison() {
    let f = fixture();
    let synthetic = &f["dpo"]["synthetic"];
    let (pairs, _) = synthetic_pairs(&synthetic["inputs"], "policy_per_token_logps");
    let expected = synthetic["losses"]["sigmoid"]["loss"].as_f64().unwrap();
    let ours = dpo_loss(&pairs, 0.1, DpoLoss::Sigmoid).loss;
    let perturbed = expected * (1.0 + 1e-9);
    assert!(std::panic::catch_unwind(|| close("loss", ours, perturbed, RTOL, ATOL)).is_err(), "a 1e-9 change must be caught");
}

/// The fixture's GPT-2 and its reference: the same weights with the overlay's tensors replaced.
fn end_to_end_models(device: &Device) -> (CausalLm, CausalLm) {
    let config = read_fixture("gpt2_tiny/config.json");
    let weights = read_fixture("gpt2_tiny/model.safetensors");
    let (_, policy) = load_lm(&config, &weights, device).expect("gpt2_tiny loads");
    let overlay = read_safetensors("dpo_ref_overlay.safetensors");
    let base = safetensors::SafeTensors::deserialize(&weights).expect("valid safetensors");
    let mut tensors: HashMap<String, (Vec<usize>, Vec<u8>)> = HashMap::new();
    for (name, view) in base.tensors() {
        let bytes = match overlay.get(&name) {
            Some(t) => t.values.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect(),
            None => view.data().to_vec(),
        };
        tensors.insert(name, (view.shape().to_vec(), bytes));
    }
    assert!(overlay.keys().all(|k| tensors.contains_key(k)), "every overlay tensor replaces one of the model's");
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, (shape, bytes))| {
            (name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).unwrap())
        })
        .collect();
    let reference_weights = safetensors::serialize(views, None).expect("serialises");
    let (_, reference) = load_lm(&config, &reference_weights, device).expect("reference loads");
    (policy, reference)
}

#[test]
fn end_to_end_on_the_fixture_gpt2_the_dpo_loss_matches_trl_from_token_ids() {
    let device = Device::flex();
    let f = fixture();
    let e2e = &f["dpo"]["end_to_end"];
    let (policy, reference) = end_to_end_models(&device);
    let ids = rows(&e2e["batch"]["input_ids"]);
    let completion = mask(&e2e["batch"]["completion_mask"]);
    let attention = mask(&e2e["batch"]["attention_mask"]);
    // Each row as an example: its real tokens, targets where the completion mask is 1.
    let examples: Vec<Example> = ids
        .iter()
        .zip(&completion)
        .zip(&attention)
        .map(|((row, c), a)| {
            let len = a.iter().filter(|&&k| k).count();
            Example { tokens: row[..len].iter().map(|&t| t as u32).collect(), target: c[..len].to_vec() }
        })
        .collect();
    let pad = f["pad_token_id"].as_u64().unwrap() as u32;
    let logps = |model: &CausalLm| -> Vec<f64> {
        sequence_logprobs(model, &examples, pad, &device).into_data().try_to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
    };
    let (policy_logps, reference_logps) = (logps(&policy), logps(&reference));
    let expected = &e2e["float64"];
    let p = policy_logps.len() / 2;
    // Float32 forward against TRL's float64 twin: sequence sums of ~8 tokens.
    let (rtol, atol) = (1e-5, 2e-5);
    all_close("policy chosen logps", &policy_logps[..p], &floats(&expected["policy_chosen_logps"]), rtol, atol);
    all_close("policy rejected logps", &policy_logps[p..], &floats(&expected["policy_rejected_logps"]), rtol, atol);
    all_close("ref chosen logps", &reference_logps[..p], &floats(&expected["ref_chosen_logps"]), rtol, atol);
    all_close("ref rejected logps", &reference_logps[p..], &floats(&expected["ref_rejected_logps"]), rtol, atol);

    let counts: Vec<usize> = completion.iter().map(|r| r.iter().filter(|&&k| k).count()).collect();
    let pairs: Vec<DpoPair> = (0..p)
        .map(|i| DpoPair {
            policy_chosen: policy_logps[i],
            policy_rejected: policy_logps[p + i],
            ref_chosen: reference_logps[i],
            ref_rejected: reference_logps[p + i],
            chosen_tokens: counts[i],
            rejected_tokens: counts[p + i],
            weight: 1.0 / p as f64,
        })
        .collect();
    let beta = e2e["beta"].as_f64().unwrap();
    let batch = dpo_loss(&pairs, beta, DpoLoss::Sigmoid);
    close("end-to-end loss vs float64", batch.loss, expected["loss"].as_f64().unwrap(), 1e-5, 1e-6);
    close("end-to-end loss vs TRL's fp32 path", batch.loss, e2e["trl_fused_fp32"]["loss"].as_f64().unwrap(), 1e-5, 1e-6);
    all_close("per_pair_loss", &batch.pairs.iter().map(|t| t.loss).collect::<Vec<_>>(), &floats(&expected["per_pair_loss"]), 1e-5, 1e-6);
    metrics_close("end-to-end", &batch.metrics, &expected["metrics"], 1e-5, 1e-6);
}
