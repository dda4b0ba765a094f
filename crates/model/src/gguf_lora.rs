//! A LoRA adapter for llama.cpp: PEFT's `adapter_model.safetensors` rewritten as the GGUF LoRA file
//! llama.cpp's `convert_lora_to_gguf.py` writes (`general.type = adapter`, `adapter.type = lora`,
//! `adapter.lora.alpha`, tensors `blk.{i}.attn_q.weight.lora_a` / `.lora_b` in F32), so
//! `llama-cli -m model.gguf --lora adapter.gguf` applies what a run learned. As that converter does,
//! the `lora_b` of a Llama query or key projection gets llama.cpp's row permutation (its rows are
//! the projection's output rows, which llama.cpp keeps permuted).

use safetensors::SafeTensors;

use crate::causal_lm::ModelConfig;
use crate::checkpoint::CheckpointError;
use crate::decoder::LAYER_PROJECTIONS;
use crate::gguf::{GgufValue, GgufWriter};
use crate::gguf_config::gguf_architecture;
use crate::gguf_model::permute;

/// The GGUF LoRA file of a PEFT adapter for a Llama-family or Gemma 3 `config`; `None` for GPT-2,
/// whose fused projections llama.cpp names differently.
pub fn gguf_lora_adapter(config: &ModelConfig, adapter_safetensors: &[u8], alpha: f64) -> Result<Option<Vec<u8>>, CheckpointError> {
    let Some((architecture, permuted)) = gguf_architecture(config.architecture()) else { return Ok(None) };
    let file = SafeTensors::deserialize(adapter_safetensors).map_err(|e| CheckpointError::Format(e.to_string()))?;
    let mut writer = GgufWriter::new()
        .metadata("general.architecture", GgufValue::String(architecture.into()))
        .metadata("general.type", GgufValue::String("adapter".into()))
        .metadata("general.name", GgufValue::String("Adapter".into()))
        .metadata("adapter.type", GgufValue::String("lora".into()))
        .metadata("adapter.lora.alpha", GgufValue::F32(alpha as f32))
        .metadata("general.quantization_version", GgufValue::U32(2));
    let mut names: Vec<String> = file.names().into_iter().map(str::to_owned).collect();
    names.sort();
    for name in names {
        let unexpected =
            || CheckpointError::Unexpected { name: name.clone(), hint: format!("not a PEFT LoRA factor of a {architecture} layer") };
        let view = file.tensor(&name).map_err(|e| CheckpointError::Format(e.to_string()))?;
        let (gguf_name, stem, factor) = gguf_name(&name).ok_or_else(unexpected)?;
        let values: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let shape = view.shape().to_vec();
        let heads = match stem {
            "attn_q" => Some(config.heads()),
            "attn_k" => Some(config.kv_heads()),
            _ => None,
        };
        let values = match heads {
            Some(heads) if factor == "b" && permuted => permute(&values, shape[0], heads),
            _ => values,
        };
        writer = writer.tensor(&gguf_name, shape, values);
    }
    Ok(Some(writer.to_bytes()))
}

/// `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` → (`blk.{i}.attn_q.weight.lora_a`, `attn_q`, `a`).
pub(crate) fn gguf_name(peft: &str) -> Option<(String, &'static str, &'static str)> {
    let rest = peft.strip_prefix("base_model.model.model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, factor) = match rest.strip_suffix(".weight")? {
        m if m.ends_with(".lora_A") => (m.strip_suffix(".lora_A")?, "a"),
        m if m.ends_with(".lora_B") => (m.strip_suffix(".lora_B")?, "b"),
        _ => return None,
    };
    let (_, stem) = LAYER_PROJECTIONS.iter().find(|(hf, _)| *hf == module)?;
    Some((format!("blk.{layer}.{stem}.weight.lora_{factor}"), stem, factor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_names_become_llama_cpps() {
        let (name, stem, factor) = gguf_name("base_model.model.model.layers.3.self_attn.q_proj.lora_B.weight").unwrap();
        assert_eq!((name.as_str(), stem, factor), ("blk.3.attn_q.weight.lora_b", "attn_q", "b"));
        assert_eq!(gguf_name("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight").unwrap().0, "blk.0.ffn_down.weight.lora_a");
        assert!(gguf_name("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight").is_none());
    }
}
