//! What several integration tests share (each test crate uses some of it).
#![allow(dead_code)]

use burn::tensor::Device;
use tinyrlhf_model::{CausalLm, GptConfig, ModelConfig, ScalarModel};

/// A tiny GPT (vocabulary 24, context 48, width 32, 2 layers, 2 heads) as SFT model and reward
/// model, both random from `seed`.
pub fn models(seed: u64) -> (ModelConfig, CausalLm, ScalarModel) {
    let device = Device::flex();
    device.seed(seed);
    let config = ModelConfig::from(GptConfig::new(24, 48, 32, 2, 2));
    (config.clone(), config.init(&device), ScalarModel::new(config.init(&device)))
}

/// `lm` as its safetensors bytes: two models compared bit for bit.
pub fn lm_bytes(lm: &CausalLm) -> Vec<u8> {
    pollster::block_on(tinyrlhf_model::save_lm(lm)).unwrap()
}

/// Every weight of `lm`, tensor after tensor in name order: two models compared weight by weight.
pub fn lm_values(lm: &CausalLm) -> Vec<f32> {
    safetensors_values(&lm_bytes(lm))
}

/// Every value of a safetensors file of f32 tensors, tensor after tensor in name order.
fn safetensors_values(bytes: &[u8]) -> Vec<f32> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut names = file.names();
    names.sort();
    names
        .iter()
        .flat_map(|n| file.tensor(n).unwrap().data().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect::<Vec<_>>())
        .collect()
}
