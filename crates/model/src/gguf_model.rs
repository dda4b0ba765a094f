//! A GGUF file as a model folder: its header becomes Hugging Face's `config.json`
//! (`gguf_config.rs`), and llama.cpp's tensor names and layouts become HF's, so every stage loads a
//! `.gguf` through the same code as a folder. Bytes arrive in pieces ([`GgufStream`]): the tab
//! reads a person's 100 MB file in slices, each tensor is widened to f32 once its last byte is in,
//! and its raw bytes are let go.
//!
//! What llama.cpp's converter changed in the tensors is undone here: for `llama` it permuted the
//! rows of the query and key projections (`LlamaModel.permute`, for ggml's interleaved rotation;
//! HF and we rotate halves), and to Gemma 3's norms (which scale by `1 + w`) it added the one.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::causal_lm::ModelConfig;
use crate::checkpoint::{CheckpointError, Weights};
use crate::decoder::LAYER_PROJECTIONS;
use crate::gguf::{GgufError, GgufHeader, GgufTensor, GgufValue, tensor_f32};
use crate::gguf_config::{GgufFamily, Layout, format, layout, llama3_rope};
use crate::gguf_quants::GgmlType;
use crate::packed::PackedWeight;
use crate::row_shards::{RowServer, shard};

/// A whole GGUF file read: the HF config it describes, its weights under HF names, and its
/// metadata (the tokenizer's vocabulary, merges and chat template are there).
#[derive(Debug)]
pub struct GgufModel {
    pub config_json: Vec<u8>,
    pub weights: Weights,
    pub metadata: BTreeMap<String, GgufValue>,
}

impl GgufModel {
    /// The file's bytes handed to a [`GgufStream`] a slice at a time: whole, its tensors' bytes
    /// stayed in the stream until the last one was read, a second copy of the file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let mut stream = GgufStream::new();
        for slice in bytes.chunks(GgufStream::SLICE) {
            stream.push(slice)?;
        }
        stream.finish()
    }
}

/// Bytes of a GGUF file pushed in order, piece by piece, becoming a [`GgufModel`].
#[derive(Debug, Default)]
pub struct GgufStream {
    header: Option<(GgufHeader, Layout)>,
    /// Bytes received and not yet consumed; `pending[0]` is the file's byte `consumed`.
    pending: Vec<u8>,
    consumed: usize,
    next: usize,
    weights: Weights,
    rope_factors: Option<Vec<f32>>,
    /// Where the packed matrices' rows past this worker's go, when other workers hold a share.
    row_server: Option<Arc<dyn RowServer>>,
}

impl GgufStream {
    /// A good size for the pieces pushed: the stream holds what it was given until each tensor in
    /// it is complete, so pieces much larger than a tensor only add a copy of them.
    pub const SLICE: usize = 16 << 20;

    pub fn new() -> Self {
        Self::default()
    }

    /// A stream that keeps only this worker's share of each large packed matrix and hands the
    /// other rows to `server`'s helpers as they arrive (`row_shards.rs`): the base is held once
    /// among the workers.
    pub fn sharing_rows(server: Arc<dyn RowServer>) -> Self {
        Self { row_server: Some(server), ..Self::default() }
    }

    /// The file's next bytes. Errors as soon as what has arrived cannot be a model we run.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), CheckpointError> {
        self.pending.extend_from_slice(bytes);
        if self.header.is_none() {
            let header = match GgufHeader::read(&self.pending) {
                Ok(header) => header,
                Err(GgufError::Truncated(_)) => return Ok(()),
                Err(e) => return Err(format(e.to_string())),
            };
            let layout = layout(&header)?;
            if let (Some(server), Ok(config)) =
                (&self.row_server, ModelConfig::from_json_bytes(&serde_json::to_vec(&layout.config).unwrap_or_default()))
            {
                server.size_known(config.num_params());
            }
            self.header = Some((header, layout));
        }
        let (header, layout) = self.header.as_ref().expect("read above");
        let available = self.consumed + self.pending.len();
        let mut done_to = self.consumed;
        while let Some(tensor) = header.tensors.get(self.next) {
            if tensor.end > available {
                break;
            }
            let bytes = &self.pending[tensor.start - self.consumed..tensor.end - self.consumed];
            self.weights.digest.add(&tensor.name, tensor.ggml_type.name(), &tensor.shape, bytes);
            if let Some((name, packed)) =
                packed_projection(tensor, &self.pending[tensor.start - self.consumed..tensor.end - self.consumed], layout)?
            {
                let packed = match &self.row_server {
                    Some(server) => {
                        shard(packed, server, self.next as u32).map_err(|e| format(format!("tensor `{}`: {e}", tensor.name)))?
                    }
                    None => packed,
                };
                self.weights.insert_packed(name, packed);
                done_to = tensor.end;
                self.next += 1;
                continue;
            }
            let values = tensor_f32(tensor, &self.pending, self.consumed).map_err(|e| format(e.to_string()))?;
            if tensor.name == "rope_freqs.weight" {
                self.rope_factors = Some(values.clone());
            }
            if let Some((name, shape, values)) = hf_tensor(tensor, values, layout)? {
                self.weights.insert_values(name, shape, values)?;
            }
            done_to = tensor.end;
            self.next += 1;
        }
        // Until the data begins, the header's bytes stay: they are read again whole.
        if self.next > 0 {
            self.pending.drain(..done_to - self.consumed);
            self.consumed = done_to;
        }
        Ok(())
    }

    /// The HF config the header describes, once it has arrived (Llama 3's rope scaling aside,
    /// which waits for its tensor): enough to size the model before its weights are read.
    pub fn config_json(&self) -> Option<Vec<u8>> {
        self.header.as_ref().map(|(_, layout)| serde_json::to_vec(&layout.config).expect("a JSON value serialises"))
    }

    /// Bytes the model's weights will take once loaded (the projections kept packed, every other
    /// tensor f32), once the header has arrived: enough to size the model before its weights are read.
    pub fn held_bytes(&self) -> Option<u64> {
        let (header, layout) = self.header.as_ref()?;
        let held = |t: &GgufTensor| {
            if stays_packed(t, layout.family) { (t.end - t.start) as u64 } else { 4 * t.shape.iter().product::<usize>() as u64 }
        };
        // Llama 3's rope factors go into the config, not the weights.
        Some(header.tensors.iter().filter(|t| t.name != "rope_freqs.weight").map(held).sum())
    }

    pub fn finish(self) -> Result<GgufModel, CheckpointError> {
        let Some((header, layout)) = self.header else {
            return Err(format(format!("the file ends at byte {}, inside its header", self.pending.len())));
        };
        if let Some(tensor) = header.tensors.get(self.next) {
            let arrived = self.consumed + self.pending.len();
            return Err(format(format!(
                "the file ends at byte {arrived}, inside tensor `{}` (which ends at byte {})",
                tensor.name, tensor.end
            )));
        }
        let mut config = layout.config;
        if let (Some((theta, head_dim)), Some(factors)) = (layout.rope_freqs, &self.rope_factors) {
            config["rope_parameters"] = llama3_rope(factors, theta, head_dim)?;
        }
        let config_json = serde_json::to_vec_pretty(&config).expect("a JSON value serialises");
        Ok(GgufModel { config_json, weights: self.weights, metadata: header.metadata })
    }
}

/// The per-head query/key norms (Qwen3, Gemma 3): llama.cpp's stem and HF's, as
/// [`LAYER_PROJECTIONS`] has the projections.
const QK_NORMS: [(&str, &str); 2] = [("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm")];

/// A tensor under its HF name: name, shape, values.
type HfTensor = (String, Vec<usize>, Vec<f32>);

/// llama.cpp's name for a tensor → HF's, its values in HF's layout; `None` for what holds no
/// learned weight (`rope_freqs`, already in the config).
fn hf_tensor(tensor: &GgufTensor, values: Vec<f32>, layout: &Layout) -> Result<Option<HfTensor>, CheckpointError> {
    let name = tensor.name.as_str();
    if name == "rope_freqs.weight" {
        return Ok(None);
    }
    let hf = hf_name(name, layout.family)?;
    let mut values = unpermuted(tensor, values, layout)?;
    if layout.family.norm_shift != 0.0 && hf.ends_with("norm.weight") {
        values.iter_mut().for_each(|v| *v -= layout.family.norm_shift);
    }
    Ok(Some((hf, tensor.shape.clone(), values)))
}

/// A layer's projection weight or the embeddings stored in a type narrower than f32, kept as its bytes (its rows
/// put in HF's order): the base of a run stays in its file's precision (`packed.rs`).
fn packed_projection(tensor: &GgufTensor, bytes: &[u8], layout: &Layout) -> Result<Option<(String, PackedWeight)>, CheckpointError> {
    if !stays_packed(tensor, layout.family) {
        return Ok(None);
    }
    let hf = hf_name(&tensor.name, layout.family)?;
    let [rows, cols] = [tensor.shape[0], tensor.shape[1]];
    let bytes = unpermuted(tensor, bytes.to_vec(), layout)?; // rows of whole blocks move as rows of values do
    let packed = PackedWeight::new(tensor.ggml_type, bytes, [rows, cols]).ok_or_else(|| {
        CheckpointError::Gguf(format!(
            "tensor `{}` is {} of shape {:?}: its rows of {cols} values are not whole {} blocks",
            tensor.name,
            tensor.ggml_type.name(),
            tensor.shape,
            tensor.ggml_type.name()
        ))
    })?;
    Ok(Some((hf, packed)))
}

/// Whether a tensor is an attention or MLP projection's weight, or the token embeddings, stored in a
/// type other than F32 that the reader dequantizes: those stay packed.
fn stays_packed(tensor: &GgufTensor, family: &GgufFamily) -> bool {
    let is_projection = tensor.name.starts_with("blk.") && tensor.name.ends_with(".weight") && tensor.shape.len() == 2;
    let is_embedding = tensor.name == "token_embd.weight" && tensor.shape.len() == 2;
    (is_projection || is_embedding)
        && !matches!(tensor.ggml_type, GgmlType::F32)
        && tensor.ggml_type.is_read()
        && hf_name(&tensor.name, family).is_ok_and(|hf| is_embedding || hf.ends_with("_proj.weight"))
}

/// llama.cpp's name for a tensor of a `family` model → HF's.
fn hf_name(name: &str, family: &GgufFamily) -> Result<String, CheckpointError> {
    let unexpected = || CheckpointError::Unexpected {
        name: name.to_owned(),
        hint: format!("llama.cpp names no such tensor in a {} model", family.gguf),
    };
    Ok(match name {
        "token_embd.weight" => "model.embed_tokens.weight".to_owned(),
        "output_norm.weight" => "model.norm.weight".to_owned(),
        "output.weight" => "lm_head.weight".to_owned(),
        _ => {
            let rest = name.strip_prefix("blk.").ok_or_else(unexpected)?;
            let (layer, part) = rest.split_once('.').ok_or_else(unexpected)?;
            let layer: usize = layer.parse().map_err(|_| unexpected())?;
            let (stem, kind) = part.rsplit_once('.').ok_or_else(unexpected)?;
            let own = LAYER_PROJECTIONS.iter().chain(&QK_NORMS).find(|(_, gguf)| *gguf == stem).map(|(hf, _)| *hf);
            let hf_stem = own.or_else(|| family.norms.iter().find(|(gguf, _)| *gguf == stem).map(|(_, hf)| *hf)).ok_or_else(unexpected)?;
            format!("model.layers.{layer}.{hf_stem}.{kind}")
        }
    })
}

/// `values` (a row-major `[rows, ...]` tensor of any element) with the query and key rows a
/// `llama` file permuted put back in HF's order.
fn unpermuted<T: Copy + Default>(tensor: &GgufTensor, values: Vec<T>, layout: &Layout) -> Result<Vec<T>, CheckpointError> {
    let name = tensor.name.as_str();
    let heads = match (layout.permuted_heads, name.rsplit('.').nth(1)) {
        (Some((q, _)), Some("attn_q")) => Some(q),
        (Some((_, kv)), Some("attn_k")) => Some(kv),
        _ => None,
    };
    match heads {
        Some(heads) => unpermute(&values, tensor.shape[0], heads).ok_or_else(|| {
            CheckpointError::Gguf(format!(
                "tensor `{name}` has {} rows, which do not split into the header's {heads} heads of two equal halves each",
                tensor.shape[0]
            ))
        }),
        None => Ok(values),
    }
}

/// llama.cpp's `LlamaModel.permute` of a projection's rows (what [`unpermute`] undoes).
pub(crate) fn permute(values: &[f32], rows: usize, heads: usize) -> Vec<f32> {
    let (head_dim, cols) = (rows / heads, values.len() / rows);
    let half = head_dim / 2;
    let mut out = vec![0.0; values.len()];
    // out[h, a, b] = in[h, b, a] with in viewed as (heads, 2, half) and out as (heads, half, 2).
    for h in 0..heads {
        for a in 0..half {
            for b in 0..2 {
                let (to, from) = (h * head_dim + a * 2 + b, h * head_dim + b * half + a);
                out[to * cols..(to + 1) * cols].copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// Undoes `LlamaModel.permute`: within each head llama.cpp interleaved the two halves of the rows
/// (`reshape(heads, 2, half, ...).swapaxes(1, 2)`); HF row `h·d + b·d/2 + a` is its row `h·d + 2a + b`.
fn unpermute<T: Copy + Default>(values: &[T], rows: usize, heads: usize) -> Option<Vec<T>> {
    let head_dim = rows.checked_div(heads)?;
    if head_dim * heads != rows || head_dim % 2 != 0 || rows == 0 {
        return None;
    }
    let cols = values.len() / rows;
    let half = head_dim / 2;
    let mut out = vec![T::default(); values.len()];
    for h in 0..heads {
        for b in 0..2 {
            for a in 0..half {
                let (to, from) = (h * head_dim + b * half + a, h * head_dim + 2 * a + b);
                out[to * cols..(to + 1) * cols].copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_undoes_llama_cpps_permutation() {
        let (rows, cols, heads) = (12, 3, 2);
        let values: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        assert_eq!(unpermute(&permute(&values, rows, heads), rows, heads).unwrap(), values);
        assert!(unpermute(&values, 12, 5).is_none());
    }
}
