//! Our GPT-2 reproduces Hugging Face transformers on the reference checkpoint in the fixtures:
//! logits on a left-padded batch, logits without a mask, tempered response log-probs, and the reward
//! model's per-token and final scores. Every dimension comes from the fixture's `config.json`, so the
//! same tests hold for any GPT-2 checkpoint of that layout (set `TINYRLHF_FIXTURES`).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use tinyrlhf_model::{CausalLm, ScalarModel, gather_positions, load_lm, load_scalar_model};
use tinyrlhf_tests::{FixtureTensor, assert_close, read_fixture, read_safetensors};

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

struct Batch {
    ids: FixtureTensor,
    mask: FixtureTensor,
    positions: FixtureTensor,
    expected: std::collections::HashMap<String, FixtureTensor>,
}

fn batch() -> Batch {
    let mut t = read_safetensors("gpt2_forward.safetensors");
    Batch {
        ids: t.remove("input_ids").unwrap(),
        mask: t.remove("attention_mask").unwrap(),
        positions: t.remove("position_ids").unwrap(),
        expected: t,
    }
}

fn int_tensor(t: &FixtureTensor, device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(t.as_i64(), [t.shape[0], t.shape[1]]), device)
}

fn policy(device: &Device) -> CausalLm {
    let (_, gpt) = load_lm(&read_fixture("gpt2_tiny/config.json"), &read_fixture("gpt2_tiny/model.safetensors"), device)
        .expect("reference checkpoint loads");
    gpt
}

fn reward_model(device: &Device) -> ScalarModel {
    let (_, rm) = load_scalar_model(&read_fixture("gpt2_tiny_rm/config.json"), &read_fixture("gpt2_tiny_rm/model.safetensors"), device)
        .expect("reference reward model loads");
    rm
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// For a `[b, t, vocab]` tensor flattened, whether element i sits on a real (unmasked) token.
fn on_real_token(mask: &FixtureTensor, per_position: usize) -> impl Fn(usize) -> bool + '_ {
    move |i| mask.values[i / per_position] == 1.0
}

#[test]
fn logits_match_hf_on_a_left_padded_batch_with_mask_and_positions() {
    let device = Device::flex();
    let b = batch();
    let gpt = policy(&device);
    let hidden = gpt.forward(int_tensor(&b.ids, &device), int_tensor(&b.positions, &device), Some(int_tensor(&b.mask, &device)));
    let logits = values(gpt.logits(hidden));
    let expected = &b.expected["logits"];
    let vocab = *expected.shape.last().unwrap();
    assert_close("logits", &logits, &expected.values, on_real_token(&b.mask, vocab), RTOL, ATOL);
}

#[test]
fn logits_match_hf_without_a_mask() {
    let device = Device::flex();
    let b = batch();
    let gpt = policy(&device);
    let [rows, len] = [b.ids.shape[0], b.ids.shape[1]];
    let positions: Vec<i64> = (0..rows).flat_map(|_| 0..len as i64).collect();
    let positions = Tensor::from_data(TensorData::new(positions, [rows, len]), &device);
    let logits = values(gpt.logits(gpt.forward(int_tensor(&b.ids, &device), positions, None)));
    assert_close("logits_nomask", &logits, &b.expected["logits_nomask"].values, |_| true, RTOL, ATOL);
}

#[test]
fn response_logprobs_at_temperature_match_hf() {
    let device = Device::flex();
    let b = batch();
    let meta: serde_json::Value = serde_json::from_slice(&read_fixture("gpt2_forward.json")).unwrap();
    let context = meta["context_length"].as_u64().unwrap() as usize;
    let temperature = meta["temperature"].as_f64().unwrap();
    let expected = &b.expected[&format!("response_logprobs_T{temperature}")];
    let [rows, len] = [b.ids.shape[0], b.ids.shape[1]];
    let response_len = len - context;
    assert_eq!(expected.shape, vec![rows, response_len]);

    let gpt = policy(&device);
    let hidden = gpt.forward(int_tensor(&b.ids, &device), int_tensor(&b.positions, &device), Some(int_tensor(&b.mask, &device)));
    // The logits at position i predict token i + 1.
    let logits = gpt.logits(hidden).narrow(1, context - 1, response_len) / temperature; // [b, r, vocab]
    let responses = int_tensor(&b.ids, &device).narrow(1, context, response_len).reshape([rows, response_len, 1]);
    let logprobs = log_softmax(logits, 2).gather(2, responses).reshape([rows, response_len]);
    assert_close("response logprobs", &values(logprobs), &expected.values, |_| true, RTOL, ATOL);
}

#[test]
fn reward_model_matches_hf_per_token_and_at_the_last_real_token() {
    let device = Device::flex();
    let b = batch();
    let rm = reward_model(&device);
    let per_token = rm.forward(int_tensor(&b.ids, &device), int_tensor(&b.positions, &device), Some(int_tensor(&b.mask, &device)));
    assert_close("rm_per_token", &values(per_token.clone()), &b.expected["rm_per_token"].values, on_real_token(&b.mask, 1), RTOL, ATOL);

    // HF reads the score at the last token that is not padding.
    let len = b.ids.shape[1];
    let last: Vec<usize> = b.mask.values.chunks(len).map(|row| row.iter().rposition(|&m| m == 1.0).unwrap()).collect();
    let expected_last: Vec<usize> = b.expected["rm_sequence_lengths"].as_i64().iter().map(|&i| i as usize).collect();
    assert_eq!(last, expected_last);
    let scores = values(gather_positions(per_token, &last));
    assert_close("rm_score", &scores, &b.expected["rm_score"].values, |_| true, RTOL, ATOL);
}

#[test]
fn saving_the_reference_checkpoint_writes_hf_names_shapes_and_values_back() {
    let device = Device::flex();
    let original = read_fixture("gpt2_tiny/model.safetensors");
    let saved = pollster::block_on(tinyrlhf_model::save_lm(&policy(&device))).unwrap();
    let (a, b) = (safetensors::SafeTensors::deserialize(&original).unwrap(), safetensors::SafeTensors::deserialize(&saved).unwrap());
    let mut names_a = a.names();
    let mut names_b = b.names();
    names_a.sort();
    names_b.sort();
    assert_eq!(names_a, names_b);
    for name in names_a {
        let (ta, tb) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
        assert_eq!((ta.shape(), ta.data()), (tb.shape(), tb.data()), "{name}");
    }

    let original = read_fixture("gpt2_tiny_rm/model.safetensors");
    let saved = pollster::block_on(tinyrlhf_model::save_scalar_model(&reward_model(&device))).unwrap();
    let (a, b) = (safetensors::SafeTensors::deserialize(&original).unwrap(), safetensors::SafeTensors::deserialize(&saved).unwrap());
    let score = (a.tensor("score.weight").unwrap(), b.tensor("score.weight").unwrap());
    assert_eq!((score.0.shape(), score.0.data()), (score.1.shape(), score.1.data()));
    assert_eq!(b.tensor("score.bias").unwrap().shape(), &[1]);
}
