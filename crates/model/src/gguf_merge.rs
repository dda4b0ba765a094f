//! A LoRA run's merged model as one GGUF file in its base's types: every tensor of the base GGUF
//! as it was (metadata, tokenizer, norms, embeddings byte for byte), and each adapted projection
//! `W + alpha / rank · B @ A` written back in its own type where that keeps the update (F32, F16,
//! BF16, Q8_0, as llama.cpp's reference quantizers write them). A projection of 4 to 6 bits (Q4_0
//! ... Q6_K) is written as Q8_0, and the result says which: rounded back onto its own grid, most of
//! a LoRA update is lost (on Gemma 3 270M, greedy answers of a Q5_0 re-quantization left the
//! adapter's, where Q8_0's kept them).
//! `B`'s rows of a Llama query or key projection get llama.cpp's permutation, as the base's do.

use std::collections::BTreeMap;

use safetensors::SafeTensors;

use crate::causal_lm::ModelConfig;
use crate::checkpoint::CheckpointError;
use crate::gguf::{GgufHeader, GgufWriter};
use crate::gguf_config::gguf_architecture;
use crate::gguf_lora::gguf_name;
use crate::gguf_model::permute;
use crate::gguf_quants::{GgmlType, dequantize, quantize};
use crate::lora::LoraConfig;

/// The merged file, and the adapted tensors written as Q8_0 because their own type is too coarse to
/// keep the update: `(name, its type in the base)`.
#[derive(Debug)]
pub struct MergedGguf {
    pub bytes: Vec<u8>,
    pub requantized: Vec<(String, &'static str)>,
}

/// `base` (a GGUF file of `config`'s model) with a PEFT adapter (`adapter_safetensors`, made with
/// `lora`) merged into its projections.
pub fn merged_gguf(
    base: &[u8],
    config: &ModelConfig,
    adapter_safetensors: &[u8],
    lora: &LoraConfig,
) -> Result<MergedGguf, CheckpointError> {
    let format = |what: String| CheckpointError::Format(what);
    let Some((architecture, permuted)) = gguf_architecture(config.architecture()) else {
        return Err(format(format!("a {} model has no GGUF layout to merge into", config.architecture())));
    };
    let header = GgufHeader::read(base).map_err(|e| format(e.to_string()))?;
    let factors = adapter_factors(adapter_safetensors, architecture)?;
    let scale = (lora.alpha / lora.rank as f64) as f32;
    let mut writer = GgufWriter::new();
    for (key, value) in &header.metadata {
        // The writer aligns tensors its own way.
        if key != "general.alignment" {
            writer = writer.metadata(key, value.clone());
        }
    }
    let mut requantized = vec![];
    let mut unused: Vec<&String> = factors.keys().collect();
    for tensor in &header.tensors {
        let bytes = &base[tensor.start..tensor.end];
        let Some(factors) = factors.get(&tensor.name) else {
            writer = writer.typed_tensor(&tensor.name, tensor.shape.clone(), tensor.ggml_type, bytes.to_vec());
            continue;
        };
        unused.retain(|n| **n != tensor.name);
        let [rows, cols] = tensor.shape[..] else { return Err(format(format!("{}: an adapted tensor must be a matrix", tensor.name))) };
        let (Some(a), Some(b)) = (&factors.a, &factors.b) else {
            return Err(format(format!("{}: the adapter has only one of lora_A and lora_B", tensor.name)));
        };
        let rank = a.len() / cols;
        if a.len() != rank * cols || b.len() != rows * rank || rank == 0 {
            return Err(format(format!("{}: the adapter's factors do not fit its [{rows}, {cols}]", tensor.name)));
        }
        if !tensor.ggml_type.is_read() {
            return Err(format(format!("{}: ggml type {} is not read here", tensor.name, tensor.ggml_type.name())));
        }
        let heads = match factors.stem {
            "attn_q" => Some(config.heads()),
            "attn_k" => Some(config.kv_heads()),
            _ => None,
        };
        let b = match heads {
            Some(heads) if permuted => permute(b, rows, heads),
            _ => b.clone(),
        };
        let mut w = dequantize(tensor.ggml_type, bytes); // [rows, cols]
        for (w_row, b_row) in w.chunks_exact_mut(cols).zip(b.chunks_exact(rank)) {
            for (&b_rk, a_row) in b_row.iter().zip(a.chunks_exact(cols)) {
                let coefficient = scale * b_rk;
                w_row.iter_mut().zip(a_row).for_each(|(w, a)| *w += coefficient * a);
            }
        }
        let (ggml_type, bytes) = match quantize(tensor.ggml_type, &w).filter(|_| keeps_an_update(tensor.ggml_type)) {
            Some(bytes) => (tensor.ggml_type, bytes),
            None => {
                requantized.push((tensor.name.clone(), tensor.ggml_type.name()));
                (
                    GgmlType::Q8_0,
                    quantize(GgmlType::Q8_0, &w)
                        .ok_or_else(|| format(format!("{}: rows of {cols} are not whole Q8_0 blocks", tensor.name)))?,
                )
            }
        };
        writer = writer.typed_tensor(&tensor.name, tensor.shape.clone(), ggml_type, bytes);
    }
    if let Some(name) = unused.first() {
        return Err(format(format!("the adapter adapts {name}, which the base GGUF does not have: it was made for another model")));
    }
    Ok(MergedGguf { bytes: writer.to_bytes(), requantized })
}

/// One projection's factors: `A` `[rank, in]` and `B` `[out, rank]`, row-major.
#[derive(Default)]
struct Factors {
    stem: &'static str,
    a: Option<Vec<f32>>,
    b: Option<Vec<f32>>,
}

/// A PEFT adapter's factors by the GGUF tensor they adapt (`blk.{i}.attn_q.weight`).
fn adapter_factors(adapter_safetensors: &[u8], architecture: &str) -> Result<BTreeMap<String, Factors>, CheckpointError> {
    let file = SafeTensors::deserialize(adapter_safetensors).map_err(|e| CheckpointError::Format(e.to_string()))?;
    let mut factors: BTreeMap<String, Factors> = BTreeMap::new();
    for name in file.names() {
        let unexpected =
            || CheckpointError::Unexpected { name: name.to_owned(), hint: format!("not a PEFT LoRA factor of a {architecture} layer") };
        let (gguf_name, stem, factor) = gguf_name(name).ok_or_else(unexpected)?;
        let view = file.tensor(name).map_err(|e| CheckpointError::Format(e.to_string()))?;
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(CheckpointError::Format(format!("{name}: LoRA factors are F32, this is {:?}", view.dtype())));
        }
        let values: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let target = gguf_name.strip_suffix(&format!(".lora_{factor}")).unwrap_or(&gguf_name).to_owned();
        let entry = factors.entry(target).or_insert_with(|| Factors { stem, ..Factors::default() });
        if factor == "a" { entry.a = Some(values) } else { entry.b = Some(values) }
    }
    Ok(factors)
}

/// Whether `ggml_type`'s grid is fine enough to keep a LoRA update: rounded back onto a 4- to 6-bit
/// grid, most of a small update is rounded away.
fn keeps_an_update(ggml_type: GgmlType) -> bool {
    matches!(ggml_type, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16 | GgmlType::Q8_0)
}
