//! A small random GPT-2 shared by the model's behaviour tests.

#![allow(dead_code)]

use burn::tensor::Device;
use tinyrlhf_model::FamilyConfig;
use tinyrlhf_model::{CausalLm, Gpt, GptConfig};

pub const PAD: u32 = 0;
pub const EOS: u32 = 1;

pub fn config() -> GptConfig {
    GptConfig::new(48, 32, 32, 2, 4).with_special_tokens(PAD, EOS)
}

pub fn model(seed: u64) -> (Device, CausalLm) {
    let device = Device::flex();
    device.seed(seed);
    let lm = CausalLm::Gpt2(config().init(&device));
    (device, lm)
}

/// The GPT-2 inside `model`, to reach its layers.
pub fn gpt2(model: &CausalLm) -> &Gpt {
    match model {
        CausalLm::Gpt2(lm) => lm,
        other => panic!("a GPT-2 was expected, got the {} family", other.family()),
    }
}

pub fn values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
