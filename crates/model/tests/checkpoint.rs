//! Checkpoints: save then load is exact, and a file that does not fit its config is refused with
//! an error naming the tensor and both shapes.

mod common;

use burn::tensor::{Device, Int, Tensor};
use common::{config, model, values};
use tinyrlhf_model::FamilyConfig;
use tinyrlhf_model::{CheckpointError, ModelConfig, ScalarModel, left_pad, load_lm, load_scalar_model, save_lm, save_scalar_model};

fn save(lm: &tinyrlhf_model::CausalLm) -> Vec<u8> {
    pollster::block_on(save_lm(lm)).unwrap()
}

fn probe(device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2, Int>) {
    left_pad(&[vec![5, 9, 3, 7], vec![2, 11]], 0).tensors(device)
}

#[test]
fn save_then_load_gives_bit_identical_logits() {
    let (device, lm) = model(1);
    let (ids, pos, mask) = probe(&device);
    let before = values(lm.logits(lm.forward(ids.clone(), pos.clone(), Some(mask.clone()))));
    let (_, loaded) = load_lm(config().to_json().as_bytes(), &save(&lm), &device).unwrap();
    let after = values(loaded.logits(loaded.forward(ids, pos, Some(mask))));
    assert_eq!(before, after);
}

#[test]
fn a_reward_model_round_trips_with_its_bias() {
    let (device, lm) = model(2);
    let mut rm = ScalarModel::new(lm);
    rm.score.bias = Some(burn::module::Param::from_tensor(Tensor::from_floats([0.75], &device)));
    let bytes = pollster::block_on(save_scalar_model(&rm)).unwrap();
    let (_, loaded) = load_scalar_model(config().to_json().as_bytes(), &bytes, &device).unwrap();
    let (ids, pos, mask) = probe(&device);
    let a = values(rm.forward(ids.clone(), pos.clone(), Some(mask.clone())));
    let b = values(loaded.forward(ids, pos, Some(mask)));
    assert_eq!(a, b);
}

#[test]
fn a_config_wider_than_the_weights_is_refused_naming_tensor_and_shapes() {
    let (device, lm) = model(3);
    let mut wider = config();
    wider.n_embd = 64;
    let err = load_lm(wider.to_json().as_bytes(), &save(&lm), &device).unwrap_err();
    match &err {
        CheckpointError::Shape { name, expected, found } => {
            assert_eq!(name, "transformer.wte.weight");
            assert_eq!((expected.as_slice(), found.as_slice()), ([48, 64].as_slice(), [48, 32].as_slice()));
        }
        other => panic!("expected a shape error, got {other}"),
    }
    let message = err.to_string();
    assert!(message.contains("transformer.wte.weight") && message.contains("[48, 32]") && message.contains("[48, 64]"), "{message}");
}

#[test]
fn a_missing_tensor_is_refused_by_name() {
    let (device, lm) = model(4);
    let mut deeper = config();
    deeper.n_layer = 3;
    let err = load_lm(deeper.to_json().as_bytes(), &save(&lm), &device).unwrap_err();
    assert!(matches!(&err, CheckpointError::Missing { name, .. } if name == "transformer.h.2.ln_1.weight"), "{err}");
}

#[test]
fn weights_of_a_deeper_model_are_refused_as_unexpected() {
    let (device, lm) = model(5);
    let mut shallower = config();
    shallower.n_layer = 1;
    let err = load_lm(shallower.to_json().as_bytes(), &save(&lm), &device).unwrap_err();
    assert!(matches!(&err, CheckpointError::Unexpected { name, .. } if name.starts_with("transformer.h.1.")), "{err}");
}

#[test]
fn a_reward_model_file_is_not_taken_for_a_language_model() {
    let (device, lm) = model(6);
    let bytes = pollster::block_on(save_scalar_model(&ScalarModel::new(lm))).unwrap();
    let err = load_lm(config().to_json().as_bytes(), &bytes, &device).unwrap_err();
    assert!(matches!(&err, CheckpointError::Unexpected { name, .. } if name.starts_with("score.")), "{err}");
}

#[test]
fn garbage_and_bad_configs_are_refused_with_a_reason() {
    let (device, lm) = model(7);
    let err = load_lm(config().to_json().as_bytes(), b"definitely not safetensors", &device).unwrap_err();
    assert!(matches!(err, CheckpointError::Format(_)), "{err}");
    let err = load_lm(b"{ not json", &save(&lm), &device).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
    let mut relu = config();
    relu.activation_function = "relu".into();
    let err = load_lm(relu.to_json().as_bytes(), &save(&lm), &device).unwrap_err();
    assert!(err.to_string().contains("activation_function"), "{err}");
}

#[test]
fn presets_build_and_compute() {
    let device = Device::flex();
    for preset in ["tiny", "small", "llama-tiny"] {
        let config = ModelConfig::preset(preset, 300).unwrap();
        let lm = config.init(&device);
        let (ids, pos, mask) = probe(&device);
        let logits = values(lm.logits(lm.forward(ids, pos, Some(mask))));
        assert_eq!(logits.len(), 2 * 4 * 300);
        assert!(logits.iter().all(|l| l.is_finite()));
        let params: usize = burn::module::Module::num_params(&lm);
        assert_eq!(params, config.num_params(), "{preset}");
    }
}
