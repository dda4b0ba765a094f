//! Every projection of both architectures and how it is applied: `x @ W + b`, on all positions at
//! once, with a LoRA adapter (if any) kept beside its frozen weight.
//!
//! The update is PEFT's `x @ W + scale · (x @ a) @ b`, not a composed `W + scale · a @ b`:
//! differentiated, the composed weight costs a full fine-tune (autodiff computes its `[in, out]`
//! gradient, as large a matmul as the forward, before it reaches the small factors), and every
//! forward, sampling too, would rewrite every adapted weight. The frozen `W` is not tracked, so
//! backward computes only the input's gradient through it, and the factors' gradients are
//! rank-sized. The frozen `W` may stay packed in its file's precision (`packed.rs`).

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::module::linear as affine;
use burn::tensor::{Device, Int, Tensor};

use crate::decode_products;
use crate::few_rows::{self, FEW_ROWS};
use crate::gguf_quants::GgmlType;
use crate::low_rank::{adapted, add_low_rank};
use crate::packed::PackedWeight;

/// One projection of a transformer, `x @ W + b` with burn's `W` `[in, out]`: f32 weights of its
/// own, or a frozen base kept packed as its file stores it ([`PackedWeight`]); with LoRA factors
/// beside it when adapted.
#[derive(Module, Debug)]
pub struct Projection {
    /// `[in, out]` f32; `None` when the base stays packed.
    pub weight: Option<Param<Tensor<2>>>,
    #[module(skip)]
    pub packed: Option<PackedWeight>,
    pub bias: Option<Param<Tensor<1>>>,
    /// The adapter being trained (or the last one loaded), PEFT's `lora_A`/`lora_B`.
    pub lora: Option<LoraFactors>,
    /// Adapters of earlier runs this model stands on, frozen, applied beside the weight: a packed
    /// base has no f32 weight to merge them into (a LoRA SFT's adapter under a LoRA DPO's).
    pub frozen: Vec<LoraFactors>,
}

/// A low-rank update `scale · a @ b` (PEFT's `lora_A`, `lora_B`, transposed: `a` `[in, rank]`,
/// `b` `[rank, out]`).
#[derive(Module, Debug)]
pub struct LoraFactors {
    pub a: Param<Tensor<2>>,
    pub b: Param<Tensor<2>>,
    pub scale: f64,
}

impl Projection {
    /// Fresh f32 weights `[d_in, d_out]` ~ N(0, std), and a zero bias if asked for.
    pub(crate) fn init(d_in: usize, d_out: usize, std: f64, bias: bool, device: &Device) -> Self {
        Self {
            weight: Some(Initializer::Normal { mean: 0.0, std }.init([d_in, d_out], device)),
            packed: None,
            bias: bias.then(|| Initializer::Zeros.init([d_out], device)),
            lora: None,
            frozen: vec![],
        }
    }

    /// The weight `[in, out]` as f32 (a packed one dequantized onto `device`), without its update.
    pub fn weight_val(&self, device: &Device) -> Tensor<2> {
        match (&self.weight, &self.packed) {
            (Some(weight), _) => weight.val(),
            (None, Some(packed)) => packed.hf_tensor(device).transpose(),
            (None, None) => unreachable!("a projection has f32 or packed weights"),
        }
    }

    /// burn's `[in, out]`.
    pub fn dims(&self) -> [usize; 2] {
        match (&self.weight, &self.packed) {
            (Some(weight), _) => weight.lazy_shape().dims(),
            (None, Some(packed)) => packed.dims(),
            (None, None) => unreachable!("a projection has f32 or packed weights"),
        }
    }

    /// This projection with fresh factors `a` `[in, rank]` and `b` = 0 (it computes what it
    /// computed before), trained; its own weights and bias frozen.
    pub(crate) fn with_lora(self, a: Tensor<2>, alpha: f64) -> Self {
        let ([_, d_out], [_, rank]) = (self.dims(), a.dims());
        let b = Tensor::<2>::zeros([rank, d_out], &a.device());
        let lora = LoraFactors { a: Param::from_tensor(a), b: Param::from_tensor(b), scale: alpha / rank as f64 };
        Self { lora: Some(lora), ..self.no_grad() }
    }

    /// This projection with its adapter frozen beside the weight, under any it stood on already:
    /// the base a later run's adapter (or a full fine-tune, through [`Projection::merged`]) stands on.
    pub(crate) fn with_adapter_frozen(self) -> Self {
        let mut frozen = self.frozen;
        frozen.extend(self.lora.map(|lora| lora.no_grad()));
        Self { lora: None, frozen, ..self }
    }

    /// This projection's f32 weight kept packed as `ggml_type` (as a GGUF of that type holds it);
    /// `None` if it has no f32 weight of its own, carries an adapter, or its rows are not whole
    /// blocks of the type.
    pub(crate) fn packed_as(self, ggml_type: GgmlType) -> Option<Self> {
        let weight = self.weight.as_ref().filter(|_| self.lora.is_none() && self.frozen.is_empty())?.val();
        let [d_in, d_out] = weight.dims();
        let values: Vec<f32> = weight.transpose().into_data().try_to_vec::<f32>().ok()?; // HF's [out, in]
        let packed = PackedWeight::quantized(ggml_type, &values, [d_out, d_in])?;
        Some(Self { weight: None, packed: Some(packed), ..self })
    }

    /// The packed base, when it is all this projection applies (no f32 weight, no adapter).
    pub(crate) fn only_packed(&self) -> Option<&PackedWeight> {
        (self.weight.is_none() && self.lora.is_none() && self.frozen.is_empty()).then_some(self.packed.as_ref()).flatten()
    }

    /// The dense `[in, out]` weight this projection applies, every update merged in: f32 weights of
    /// its own with no factors, for saving or training in full.
    pub fn merged(self, device: &Device) -> Self {
        if self.weight.is_some() && self.lora.is_none() && self.frozen.is_empty() {
            return self;
        }
        let base = self.weight_val(device);
        let weight =
            self.frozen.iter().chain(&self.lora).fold(base, |w, lora| w + lora.a.val().matmul(lora.b.val()).mul_scalar(lora.scale));
        Self { weight: Some(Param::from_tensor(weight)), packed: None, bias: self.bias, lora: None, frozen: vec![] }
    }
}

/// `projection` on `x` `[n, d_in]` -> `[n, d_out]`.
pub(crate) fn project(projection: &Projection, x: Tensor<2>) -> Tensor<2> {
    let [out] = project_together([projection], x);
    out
}

/// Each of `projections` on the same `x` `[n, d_in]` -> `[n, d_out]` each. Decoding's products with
/// f32 weights are split over the CPU's threads where that is on ([`few_rows`]), all at once.
pub(crate) fn project_together<const N: usize>(projections: [&Projection; N], x: Tensor<2>) -> [Tensor<2>; N] {
    if let Some(products) = decode_products::products(projections, &x) {
        return products;
    }
    if let Some(packed) = only_packed(projections)
        && let Some(products) = PackedWeight::decode_together(packed, &x)
    {
        let mut projections = projections.into_iter();
        return products.map(|out| with_bias(out, projections.next().expect("a projection a product")));
    }
    let dense: Vec<Tensor<2>> = projections.iter().filter_map(|p| p.weight.as_ref().map(|w| w.val())).collect();
    let d_out: usize = dense.iter().map(|w| w.dims()[1]).sum();
    let split = dense.len() == N && few_rows::splits(&x, [x.dims()[1], d_out]);
    let mut products = if split { few_rows::by_depth_together(x.clone(), dense) } else { vec![] }.into_iter();
    projections.map(|projection| {
        if let Some(out) = adapted(projection, &x) {
            return out;
        }
        let out = match (&projection.weight, &projection.packed) {
            (Some(_), _) if split => with_bias(products.next().expect("a product per projection"), projection),
            (Some(weight), _) => affine(x.clone(), weight.val(), projection.bias.as_ref().map(|b| b.val())),
            (None, Some(packed)) => with_bias(packed.matmul(x.clone()), projection),
            (None, None) => unreachable!("a projection has f32 or packed weights"),
        };
        let updates = projection.frozen.iter().chain(&projection.lora);
        updates.fold(out, |out, lora| add_low_rank(out, x.clone(), lora)) // [n, d_out]
    })
}

/// Each projection's packed base, when every one has nothing else ([`Projection::only_packed`]).
fn only_packed<const N: usize>(projections: [&Projection; N]) -> Option<[&PackedWeight; N]> {
    projections.iter().all(|p| p.only_packed().is_some()).then(|| projections.map(|p| p.only_packed().expect("checked")))
}

fn with_bias(out: Tensor<2>, projection: &Projection) -> Tensor<2> {
    match &projection.bias {
        Some(bias) => out + bias.val().unsqueeze(),
        None => out,
    }
}

/// `projection` applied to every position of `x` `[b, t, d_in]` as one `[b * t, d_in]` matrix: one
/// large matmul forward and backward, where burn keeps `[b, t, d_in] @ [d_in, d_out]` as b small ones.
pub(crate) fn rows(projection: &Projection, x: Tensor<3>) -> Tensor<3> {
    let [out] = rows_together([projection], x);
    out
}

/// [`project_together`] on every position of `x` `[b, t, d_in]`, as [`rows`] does.
pub(crate) fn rows_together<const N: usize>(projections: [&Projection; N], x: Tensor<3>) -> [Tensor<3>; N] {
    let [b, t, d] = x.dims();
    project_together(projections, x.reshape([b * t, d])).map(|out| {
        let d_out = out.dims()[1];
        out.reshape([b, t, d_out]) // [b, t, d_out]
    })
}

/// Logits of `x` `[n, d]` through a tied embedding `E` `[vocab, d]`: `x @ E^T` -> `[n, vocab]`.
///
/// Decoding has a few rows; written as `x @ E^T`, the CPU's matrix kernels first copy all of `E`
/// into their own order on every token, so for a few rows the same product is taken as
/// `(E @ x^T)^T`, which reads `E` where it lies (a 49152-token head at batch 4: 3.9 ms a token
/// instead of 6.7). For many rows (training) the copy is amortised and the first form is faster.
pub(crate) fn tied_head(x: Tensor<2>, embedding: Tensor<2>) -> Tensor<2> {
    if x.dims()[0] > FEW_ROWS {
        return crate::tied_head::tied_logits(x, embedding);
    }
    let x_t = x.clone().transpose(); // [d, n]
    let logits_t = if few_rows::splits(&x, embedding.dims()) { few_rows::by_rows(embedding, x_t) } else { embedding.matmul(x_t) }; // [vocab, n]
    logits_t.transpose()
}

/// A model's LM head as it stores it, for the products that use its token rows directly: the
/// chosen tokens' logits and the expected row under a distribution (what a logit's gradient
/// carries back to the hidden state), without a `[tokens, vocab]` matrix that must outlive them.
#[derive(Debug, Clone)]
pub enum LmHead {
    /// Tied to the embeddings, `[vocab, d]`: a token's row is its embedding.
    Rows(Tensor<2>),
    /// A head of its own, burn's `[d, vocab]`.
    Columns(Tensor<2>),
    /// Tied to embeddings kept packed, `[vocab, d]` (frozen).
    Packed(PackedWeight),
}

impl LmHead {
    /// Whether the head is being trained (it needs the whole logits' gradient then).
    pub fn trains(&self) -> bool {
        match self {
            Self::Rows(w) | Self::Columns(w) => w.is_tracked(),
            Self::Packed(_) => false,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Rows(w) => w.dims()[0],
            Self::Columns(w) => w.dims()[1],
            Self::Packed(e) => e.shape()[0],
        }
    }

    /// Logits of `x` `[n, d]` -> `[n, vocab]`, a tied head's as [`tied_head`] takes them for `n`
    /// rows: contiguous rows of logits for many (the CPU's row kernels read them as they lie; the
    /// transposed `(E @ x^T)^T` made them copy each chunk of 85 x 49,152 against its layout first,
    /// 2% of a LoRA DPO step's samples on a 2-core AMD EPYC).
    pub fn logits(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Rows(e) => tied_head(x, e.clone()),
            Self::Columns(w) => x.matmul(w.clone()),
            Self::Packed(e) => e.matmul(x),
        }
    }

    /// The rows of `tokens` `[n]` -> `[n, d]`: token t's logit is `x · row t`.
    pub fn rows(&self, tokens: Tensor<1, Int>) -> Tensor<2> {
        match self {
            Self::Rows(e) => e.clone().select(0, tokens),
            Self::Columns(w) => w.clone().select(1, tokens).transpose(),
            Self::Packed(e) => e.rows(tokens),
        }
    }

    /// Rows `start..start + len` of the head, `[len, d]`, on `device` (a packed head's widened).
    pub fn rows_range(&self, start: usize, len: usize, device: &Device) -> Tensor<2> {
        match self {
            Self::Rows(e) => e.clone().narrow(0, start, len),
            Self::Columns(w) => w.clone().narrow(1, start, len).transpose(),
            Self::Packed(e) => e.rows_tensor(start, len, device),
        }
    }

    /// `probs @ rows` for `probs` `[n, vocab]` -> `[n, d]`.
    pub fn expected_rows(&self, probs: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Rows(e) => probs.matmul(e.clone()),
            Self::Columns(w) => w.clone().matmul(probs.transpose()).transpose(),
            Self::Packed(e) => e.matmul_transposed(probs),
        }
    }
}
