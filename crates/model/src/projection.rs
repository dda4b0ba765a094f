//! How every projection of both architectures is applied: `x @ W + b`, on all positions at once,
//! with a LoRA adapter (if any) kept beside its frozen weight.
//!
//! burn's `Param::val` composes an adapted weight as one dense `W + scale · a @ b`. Differentiated,
//! that costs a full fine-tune: autodiff computes the `[in, out]` gradient of the composed weight
//! (as large a matmul as the forward) before it reaches the small factors, and every forward,
//! sampling too, rewrites every adapted weight. PEFT computes `x @ W + scale · (x @ a) @ b`
//! instead; so do we: the frozen `W` is not tracked, so backward computes only the input's
//! gradient through it, and the factors' gradients are rank-sized.

use burn::nn::Linear;
use burn::tensor::module::linear as affine;
use burn::tensor::{Int, Tensor};

use crate::few_rows::{self, FEW_ROWS};

/// `linear` on `x` `[n, d_in]` -> `[n, d_out]`.
pub(crate) fn project(linear: &Linear, x: Tensor<2>) -> Tensor<2> {
    let [out] = project_together([linear], x);
    out
}

/// Each of `linears` on the same `x` `[n, d_in]` -> `[n, d_out]` each. Decoding's products are
/// split over the CPU's threads where that is on ([`few_rows`]), all of them at once.
pub(crate) fn project_together<const N: usize>(linears: [&Linear; N], x: Tensor<2>) -> [Tensor<2>; N] {
    let bases = linears.map(|linear| if linear.weight.adapter().is_some() { linear.weight.base() } else { linear.weight.val() });
    let d_out: usize = bases.iter().map(|w| w.dims()[1]).sum();
    let products: Vec<Tensor<2>> = if few_rows::splits(&x, [x.dims()[1], d_out]) {
        let products = few_rows::by_depth_together(x.clone(), bases.into()); // N x [n, d_out]
        products.into_iter().zip(linears).map(|(out, linear)| with_bias(out, linear)).collect()
    } else {
        bases.into_iter().zip(linears).map(|(w, linear)| affine(x.clone(), w, linear.bias.as_ref().map(|b| b.val()))).collect()
    };
    let mut products = products.into_iter();
    linears.map(|linear| {
        let out = products.next().expect("a product per projection");
        match linear.weight.adapter() {
            None => out,
            Some(adapter) => out + x.clone().matmul(adapter.a.val()).matmul(adapter.b.val()).mul_scalar(adapter.scale), // [n, d_out]
        }
    })
}

fn with_bias(out: Tensor<2>, linear: &Linear) -> Tensor<2> {
    match &linear.bias {
        Some(bias) => out + bias.val().unsqueeze(),
        None => out,
    }
}

/// `linear` applied to every position of `x` `[b, t, d_in]` as one `[b * t, d_in]` matrix: one large
/// matmul forward and backward, where burn keeps `[b, t, d_in] @ [d_in, d_out]` as b small ones.
pub(crate) fn rows(linear: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [out] = rows_together([linear], x);
    out
}

/// [`project_together`] on every position of `x` `[b, t, d_in]`, as [`rows`] does.
pub(crate) fn rows_together<const N: usize>(linears: [&Linear; N], x: Tensor<3>) -> [Tensor<3>; N] {
    let [b, t, d] = x.dims();
    project_together(linears, x.reshape([b * t, d])).map(|out| {
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
        return x.matmul(embedding.transpose());
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
}

impl LmHead {
    fn weight(&self) -> &Tensor<2> {
        match self {
            Self::Rows(w) | Self::Columns(w) => w,
        }
    }

    /// Whether the head is being trained (it needs the whole logits' gradient then).
    pub fn trains(&self) -> bool {
        self.weight().is_tracked()
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Rows(w) => w.dims()[0],
            Self::Columns(w) => w.dims()[1],
        }
    }

    /// Logits of `x` `[n, d]` -> `[n, vocab]`, reading the weight where it lies (a tied head as
    /// `(E @ x^T)^T`: see [`tied_head`]).
    pub fn logits(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Rows(e) => e.clone().matmul(x.transpose()).transpose(),
            Self::Columns(w) => x.matmul(w.clone()),
        }
    }

    /// The rows of `tokens` `[n]` -> `[n, d]`: token t's logit is `x · row t`.
    pub fn rows(&self, tokens: Tensor<1, Int>) -> Tensor<2> {
        match self {
            Self::Rows(e) => e.clone().select(0, tokens),
            Self::Columns(w) => w.clone().select(1, tokens).transpose(),
        }
    }

    /// `probs @ rows` for `probs` `[n, vocab]` -> `[n, d]`.
    pub fn expected_rows(&self, probs: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Rows(e) => probs.matmul(e.clone()),
            Self::Columns(w) => w.clone().matmul(probs.transpose()).transpose(),
        }
    }
}
