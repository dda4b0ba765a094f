//! Token embeddings, f32 or kept packed in their file's precision, and the tied LM head they are.
//!
//! A small model's embedding is its largest matrix (Qwen2.5-0.5B: 151,936 x 896, 545 MB as f32,
//! 145 MB as the Q8_0 its GGUF stores). Under LoRA it is frozen, so it stays as the file stores it
//! ([`PackedWeight`]): a lookup widens only the rows of the tokens it reads, and the tied head's
//! products go through `packed.rs`, which never widens the whole matrix. A full-weight run trains
//! it, so [`TokenEmbedding::merged`] widens it once.
//!
//! On a GPU the same holds: a lookup widens its rows there (`packed_gpu.rs`) and the head's products
//! go through the projections' op.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::module::embedding;
use burn::tensor::{Device, Int, Tensor};

use crate::gguf_quants::GgmlType;
use crate::own_kernels::has_own_kernels;
use crate::packed::PackedWeight;
use crate::projection::{LmHead, tied_head};

/// The embedding of every token, `[vocab, d]`: f32 weights of its own, or frozen and packed.
#[derive(Module, Debug)]
pub struct TokenEmbedding {
    /// `[vocab, d]` f32; `None` when the embedding stays packed.
    pub weight: Option<Param<Tensor<2>>>,
    #[module(skip)]
    pub packed: Option<PackedWeight>,
}

impl TokenEmbedding {
    /// Fresh f32 embeddings ~ N(0, 0.02) (HF's initialisation).
    pub(crate) fn init(vocab: usize, d: usize, device: &Device) -> Self {
        Self { weight: Some(Initializer::Normal { mean: 0.0, std: 0.02 }.init([vocab, d], device)), packed: None }
    }

    /// `[vocab, d]`.
    pub fn dims(&self) -> [usize; 2] {
        match (&self.weight, &self.packed) {
            (Some(weight), _) => weight.lazy_shape().dims(),
            (None, Some(packed)) => packed.shape(),
            (None, None) => unreachable!("an embedding has f32 or packed weights"),
        }
    }

    /// The embeddings of `ids` `[b, t]` -> `[b, t, d]` on `ids`' device.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        match (&self.weight, &self.packed) {
            (Some(weight), _) => embedding(weight.val(), ids),
            (None, Some(packed)) => {
                let ([b, t], d) = (ids.dims(), packed.shape()[1]);
                // The tokenizer's ids are checked against the vocabulary where a model is loaded
                // (`model_files.rs`); an id beyond it reads a zero row rather than panicking here.
                packed.rows(ids.reshape([b * t])).reshape([b, t, d])
            }
            (None, None) => unreachable!("an embedding has f32 or packed weights"),
        }
    }

    /// The tied head's logits of `x` `[n, d]`: `x @ E^T` -> `[n, vocab]`, differentiable in `x`.
    pub(crate) fn tied_logits(&self, x: Tensor<2>) -> Tensor<2> {
        match (&self.weight, &self.packed) {
            (Some(weight), _) => tied_head(x, weight.val()),
            (None, Some(packed)) => packed.matmul(x),
            (None, None) => unreachable!("an embedding has f32 or packed weights"),
        }
    }

    /// The tied head for products with its token rows ([`LmHead`]), on `device`.
    pub(crate) fn head(&self, device: &Device) -> LmHead {
        match (&self.weight, &self.packed) {
            (Some(weight), _) => LmHead::Rows(weight.val()),
            (None, Some(packed)) if has_own_kernels(device) => LmHead::Packed(packed.clone()),
            (None, Some(packed)) => LmHead::Rows(packed.hf_tensor(device)),
            (None, None) => unreachable!("an embedding has f32 or packed weights"),
        }
    }

    /// This embedding kept as `packed` (`[vocab, d]`, checked by the caller).
    pub(crate) fn packed(packed: PackedWeight) -> Self {
        Self { weight: None, packed: Some(packed) }
    }

    /// The f32 embedding kept packed as `ggml_type`; `None` if it is packed already or its rows
    /// are not whole blocks of the type.
    pub(crate) fn packed_as(self, ggml_type: GgmlType) -> Option<Self> {
        let weight = self.weight?.val(); // [vocab, d]: HF's order
        let shape = weight.dims();
        let values: Vec<f32> = weight.into_data().try_to_vec::<f32>().ok()?;
        Some(Self { weight: None, packed: Some(PackedWeight::quantized(ggml_type, &values, shape)?) })
    }

    /// f32 weights of its own on `device` (a packed embedding widened once), to train or save.
    pub(crate) fn merged(self, device: &Device) -> Self {
        match self.packed {
            Some(packed) if self.weight.is_none() => Self { weight: Some(Param::from_tensor(packed.hf_tensor(device))), packed: None },
            _ => self,
        }
    }
}
