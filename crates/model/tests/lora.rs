//! LoRA: adapters start as a no-op, the merged export equals base + adapter, the adapter file has
//! PEFT's names and shapes for GPT-2 and loads back exactly, and an adapter for another base is
//! refused naming the tensor.

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{config, model, values};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use tinyrlhf_model::FamilyConfig;
use tinyrlhf_model::{
    CausalLm, LoraConfig, ScalarModel, has_adapters, left_pad, load_lm, load_peft_adapter, load_peft_scalar_adapter, save_lm,
    save_peft_adapter, save_peft_scalar_adapter, with_lora,
};

const LORA: LoraConfig = LoraConfig { rank: 4, alpha: 8.0 };

fn probe(device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2, Int>) {
    left_pad(&[vec![5, 9, 3, 7], vec![2, 11]], 0).tensors(device)
}

fn logits(lm: &CausalLm) -> Vec<f32> {
    let (ids, pos, mask) = probe(&lm.device());
    values(lm.logits(lm.forward(ids, pos, Some(mask))))
}

/// PEFT's tensors for a `layers`-block GPT-2 of width `d` (MLP 4d): name and `[rows, cols]`.
fn peft_layout(layers: usize, d: usize, rank: usize) -> Vec<(String, Vec<usize>)> {
    let mut out = vec![];
    for i in 0..layers {
        for (module, d_in, d_out) in [("attn.c_attn", d, 3 * d), ("attn.c_proj", d, d), ("mlp.c_fc", d, 4 * d), ("mlp.c_proj", 4 * d, d)] {
            let stem = format!("base_model.model.transformer.h.{i}.{module}");
            out.push((format!("{stem}.lora_A.weight"), vec![rank, d_in]));
            out.push((format!("{stem}.lora_B.weight"), vec![d_out, rank]));
        }
    }
    out
}

/// A PEFT adapter file with seeded values in `layout`, as a trained adapter would be.
fn adapter_file(layout: &[(String, Vec<usize>)]) -> Vec<u8> {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = layout
        .iter()
        .enumerate()
        .map(|(t, (name, shape))| {
            let n = shape.iter().product::<usize>();
            let values = (0..n).flat_map(|i| (((i * 7 + t * 13) % 17) as f32 * 0.01 - 0.08).to_le_bytes());
            (name.clone(), shape.clone(), values.collect())
        })
        .collect();
    let views = data.iter().map(|(n, s, b)| (n.as_str(), TensorView::new(Dtype::F32, s.clone(), b).unwrap()));
    safetensors::serialize(views, None).unwrap()
}

fn peft_config(rank: usize, alpha: f64) -> Vec<u8> {
    serde_json::json!({"peft_type": "LORA", "r": rank, "lora_alpha": alpha, "target_modules": ["c_attn", "c_proj", "c_fc"], "fan_in_fan_out": true})
        .to_string()
        .into_bytes()
}

#[test]
fn fresh_adapters_change_nothing_and_freeze_the_base() {
    let (_, lm) = model(3);
    let adapted = with_lora(lm.clone(), &LORA);
    assert!(has_adapters(&adapted) && !has_adapters(&lm));
    assert_eq!(logits(&adapted), logits(&lm));
    assert!(!common::gpt2(&adapted).h[0].attn.c_attn.weight_val(&burn::tensor::Device::flex()).is_require_grad());
}

#[test]
fn the_adapter_file_has_peft_names_and_shapes_for_gpt2_and_loads_back_exactly() {
    let (_, base) = model(4);
    let c = config();
    let layout = peft_layout(c.n_layer, c.n_embd, LORA.rank);
    let (_, adapted) = load_peft_adapter(base.clone(), &peft_config(LORA.rank, LORA.alpha), &adapter_file(&layout)).unwrap();
    assert_ne!(logits(&adapted), logits(&base), "a trained adapter changes the model");

    let (config_json, bytes) = pollster::block_on(save_peft_adapter(&adapted, &LORA)).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut written: Vec<(String, Vec<usize>)> = file.tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec())).collect();
    written.sort();
    let mut expected = layout.clone();
    expected.sort();
    assert_eq!(written, expected);
    let config: serde_json::Value = serde_json::from_str(&config_json).unwrap();
    assert_eq!((config["peft_type"].as_str(), config["r"].as_u64(), config["lora_alpha"].as_f64()), (Some("LORA"), Some(4), Some(8.0)));
    assert_eq!(config["target_modules"], serde_json::json!(["c_attn", "c_proj", "c_fc"]));
    assert_eq!(config["fan_in_fan_out"], true);

    let (_, again) = load_peft_adapter(base, config_json.as_bytes(), &bytes).unwrap();
    assert_eq!(logits(&again), logits(&adapted));
}

#[test]
fn the_merged_export_is_base_plus_alpha_over_rank_times_a_b_as_peft_computes_it() {
    let (device, base) = model(5);
    let c = config();
    let layout = peft_layout(c.n_layer, c.n_embd, LORA.rank);
    let file = adapter_file(&layout);
    let (_, adapted) = load_peft_adapter(base.clone(), &peft_config(LORA.rank, LORA.alpha), &file).unwrap();
    let (_, merged) = load_lm(c.to_json().as_bytes(), &pollster::block_on(save_lm(&adapted)).unwrap(), &device).unwrap();
    assert!(!has_adapters(&merged));
    for (a, b) in logits(&merged).iter().zip(logits(&adapted)) {
        assert!((a - b).abs() <= 1e-5 + 1e-5 * b.abs(), "merged {a} vs adapted {b}");
    }
    // One weight by PEFT's formula for GPT-2's Conv1D: W + (B @ A)^T * alpha / r.
    let read = |name: &str| {
        let t = SafeTensors::deserialize(&file).unwrap().tensor(name).unwrap().data().to_vec();
        let shape = layout.iter().find(|(n, _)| n == name).unwrap().1.clone();
        let values: Vec<f32> = t.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        Tensor::<2>::from_data(TensorData::new(values, [shape[0], shape[1]]), &device)
    };
    let stem = "base_model.model.transformer.h.1.mlp.c_fc";
    let delta =
        read(&format!("{stem}.lora_B.weight")).matmul(read(&format!("{stem}.lora_A.weight"))).transpose() * (LORA.alpha / LORA.rank as f64);
    let expected = values(common::gpt2(&base).h[1].mlp.c_fc.weight_val(&burn::tensor::Device::flex()) + delta);
    let got = values(common::gpt2(&merged).h[1].mlp.c_fc.weight_val(&burn::tensor::Device::flex()));
    for (g, e) in got.iter().zip(&expected) {
        assert!((g - e).abs() <= 1e-6, "{g} vs {e}");
    }
}

#[test]
fn an_adapter_for_another_base_is_refused_naming_the_tensor() {
    let (_, base) = model(6);
    let c = config();
    let wider = peft_layout(c.n_layer, c.n_embd * 2, LORA.rank);
    let err = load_peft_adapter(base.clone(), &peft_config(LORA.rank, LORA.alpha), &adapter_file(&wider)).unwrap_err().to_string();
    assert!(err.contains("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight") && err.contains("shape"), "{err}");
    let deeper = peft_layout(c.n_layer + 1, c.n_embd, LORA.rank);
    let err = load_peft_adapter(base.clone(), &peft_config(LORA.rank, LORA.alpha), &adapter_file(&deeper)).unwrap_err().to_string();
    assert!(err.contains(&format!("h.{}.", c.n_layer)) && err.contains("another base"), "{err}");
    let err = load_peft_adapter(base, &peft_config(0, 8.0), &adapter_file(&peft_layout(c.n_layer, c.n_embd, 1))).unwrap_err().to_string();
    assert!(err.contains("adapter_config.json") && err.contains("rank"), "{err}");
}

#[test]
fn an_adapter_kept_frozen_under_a_new_one_computes_as_the_two_merged_and_only_the_new_one_trains() {
    let (device, base) = model(7);
    let c = config();
    let file = adapter_file(&peft_layout(c.n_layer, c.n_embd, LORA.rank));
    let (_, first) = load_peft_adapter(base, &peft_config(LORA.rank, LORA.alpha), &file).unwrap();
    let stacked = first.clone().with_adapters_frozen();
    assert!(!has_adapters(&stacked), "a frozen adapter is not one a run trains or saves");
    assert_eq!(logits(&stacked), logits(&first));
    // A second run's adapter over the first: the dense model is the base with both merged in.
    let trained: Vec<(String, Vec<usize>)> = peft_layout(c.n_layer, c.n_embd, 2);
    let (_, second) = load_peft_adapter(stacked, &peft_config(2, 4.0), &adapter_file(&trained)).unwrap();
    let (_, merged) = load_lm(c.to_json().as_bytes(), &pollster::block_on(save_lm(&second)).unwrap(), &device).unwrap();
    for (a, b) in logits(&merged).iter().zip(logits(&second)) {
        assert!((a - b).abs() <= 1e-5 + 1e-5 * b.abs(), "merged {a} vs stacked {b}");
    }
    let (_, saved) = pollster::block_on(save_peft_adapter(&second, &LoraConfig { rank: 2, alpha: 4.0 })).unwrap();
    assert_eq!(SafeTensors::deserialize(&saved).unwrap().len(), trained.len(), "only the newest adapter is written");
}

#[test]
fn a_reward_models_adapter_and_head_load_back_on_its_base_and_are_refused_as_a_language_models() {
    let (_, base) = model(8);
    let c = config();
    let file = adapter_file(&peft_layout(c.n_layer, c.n_embd, LORA.rank));
    let (_, adapted) = load_peft_adapter(base.clone(), &peft_config(LORA.rank, LORA.alpha), &file).unwrap();
    let reward = ScalarModel { transformer: adapted, score: ScalarModel::new(base.clone()).score };
    let (config_json, bytes) = pollster::block_on(save_peft_scalar_adapter(&reward, &LORA)).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config_json).unwrap();
    assert_eq!((config["task_type"].as_str(), config["modules_to_save"][0].as_str()), (Some("SEQ_CLS"), Some("score")));
    let (_, again) = load_peft_scalar_adapter(ScalarModel::new(base.clone()), config_json.as_bytes(), &bytes).unwrap();
    let scores = |m: &ScalarModel| {
        let (ids, pos, mask) = probe(&m.transformer.device());
        values(m.forward(ids, pos, Some(mask)))
    };
    assert_eq!(scores(&again.with_adapters_frozen()), scores(&reward));
    let err = load_peft_adapter(base, config_json.as_bytes(), &bytes).unwrap_err().to_string();
    assert!(err.contains("task_type SEQ_CLS") && err.contains("a language model's"), "{err}");
}
