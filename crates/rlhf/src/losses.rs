//! Loss functions as free functions over tensors.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Log-probability of each target token: `log softmax(logits)[target]`, `[b, t]`.
pub fn token_logprobs(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<2> {
    let [b, t, _] = logits.dims();
    log_softmax(logits, 2).gather(2, targets.reshape([b, t, 1])).reshape([b, t])
}

/// Mean next-token cross-entropy over the tokens whose weight is 1.
/// `logits` `[b, t, vocab]`, `targets` `[b, t]`, `weights` `[b, t]` of 0/1.
pub fn lm_loss(logits: Tensor<3>, targets: Tensor<2, Int>, weights: Tensor<2>) -> Tensor<1> {
    let count = weights.clone().sum().clamp_min(1.0);
    (token_logprobs(logits, targets) * weights).sum().neg() / count
}
